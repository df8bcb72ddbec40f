//! The ingest benchmark's load generator: closed loops over keep-alive connections, each
//! importing its products once, then editing them, with the answers tallied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::common::raw::RawConnection;
use super::common::{Commits, WEBHOOK_PATH, commits, cpu_seconds, thread_cpu_seconds, webhook};

/// Answers counted by one connection or a whole level: latencies (µs) of the answers
/// completed inside the measured window (or of the import); counts over the whole level,
/// import and warmup included.
pub struct Tally {
    pub histogram: Histogram<u64>,
    pub accepted: u64,
    pub not_accepted: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        // 1 µs to 10 min, 3 significant digits; slower answers are clamped.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3);
        let histogram = histogram.unwrap_or_else(|_| unreachable!("valid bounds"));
        Tally {
            histogram,
            accepted: 0,
            not_accepted: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.accepted += other.accepted;
        for (what, n) in other.not_accepted {
            *self.not_accepted.entry(what).or_default() += n;
        }
    }
}

/// What a level's load generator does.
pub struct Load {
    pub addr: SocketAddr,
    pub connections: usize,
    /// Products per connection.
    pub keys: u64,
    pub warmup: Duration,
    pub measure: Duration,
    /// The daemon's admin listener, for the writer's commit counters.
    pub admin: Option<SocketAddr>,
}

/// The import's answers: latencies of the webhooks that created a product, and how long
/// it took until every connection had created all of its products.
pub struct Import {
    pub histogram: Histogram<u64>,
    pub seconds: f64,
}

/// CPU seconds used over the measured window.
pub struct Cpu {
    pub server: f64,
    /// The daemon's store writer thread alone: its cost per edit is the daemon's own cost,
    /// whatever the queueing of the load (the machine's speed still moves it).
    pub writer: f64,
    /// The async runtime's threads, where requests are received, verified and parsed.
    pub runtime: f64,
    pub loadgen: f64,
    /// The writer's transactions over the window (None when `/metrics` could not be read).
    pub commits: Option<Commits>,
}

/// Runs the closed loops through the import, the warmup and the measured window of edits;
/// returns the edits' tally, the import, the CPU used over the window, and how much
/// `applied` (the fake target's request counter) grew over it.
pub async fn drive(
    load: &Load,
    server_pid: u32,
    applied: Option<&AtomicU64>,
) -> (Tally, Import, Cpu, Option<u64>) {
    let start = Instant::now();
    let clock = SaveClock::new();
    let (imported, mut all_imported) = tokio::sync::mpsc::channel(load.connections);
    let window = Arc::new(OnceLock::new());
    let tasks: Vec<_> = (0..load.connections)
        .map(|conn| {
            let conn = Connection {
                addr: load.addr,
                index: conn,
                keys: load.keys,
                clock,
                imported: imported.clone(),
                window: window.clone(),
            };
            tokio::spawn(conn.run())
        })
        .collect();
    drop(imported);
    // Each connection sends its import's tally exactly once.
    let mut import = Tally::new();
    for _ in 0..load.connections {
        match all_imported.recv().await {
            Some(tally) => import.merge(tally),
            None => break,
        }
    }
    let import = Import {
        histogram: import.histogram,
        seconds: start.elapsed().as_secs_f64(),
    };
    let measure_from = Instant::now() + load.warmup;
    let _ = window.set((measure_from, measure_from + load.measure));
    let cpu = || Cpu {
        server: cpu_seconds(server_pid),
        writer: thread_cpu_seconds(server_pid, "pimsync-writer"),
        runtime: thread_cpu_seconds(server_pid, "tokio-rt-worker"),
        loadgen: cpu_seconds(std::process::id()),
        commits: load.admin.and_then(|admin| commits(admin).ok()),
    };
    let applies = || applied.map(|n| n.load(Ordering::Relaxed));
    tokio::time::sleep_until(measure_from).await;
    let before = cpu();
    let applies_before = applies();
    tokio::time::sleep_until(measure_from + load.measure).await;
    let after = cpu();
    let applies_after = applies();
    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(error) => {
                let what = format!("load task failed: {error}");
                *total.not_accepted.entry(what).or_default() += 1;
            }
        }
    }
    let applies = applies_after.zip(applies_before).map(|(a, b)| a - b);
    (
        total,
        import,
        Cpu {
            server: after.server - before.server,
            writer: after.writer - before.writer,
            runtime: after.runtime - before.runtime,
            loadgen: after.loadgen - before.loadgen,
            commits: after.commits.zip(before.commits).map(|(a, b)| a - b),
        },
        applies,
    )
}

/// When the simulated PIM saves an edit, in µs since the epoch: the real time, as Akeneo
/// stamps an event's `event_datetime` and a product's `updated` with the time of the save.
/// The receiver's delivery ids begin with that time (in the order the events happen), and
/// the product's version is it (each connection keeps its own strictly increasing).
#[derive(Clone, Copy)]
struct SaveClock {
    epoch_us: i64,
    started: Instant,
}

impl SaveClock {
    fn new() -> SaveClock {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        SaveClock {
            epoch_us: since_epoch.as_micros() as i64,
            started: Instant::now(),
        }
    }

    fn now_us(&self) -> i64 {
        self.epoch_us + self.started.elapsed().as_micros() as i64
    }
}

/// One keep-alive connection sending webhooks back to back: first one per product of its
/// own (the import, whose tally it sends on `imported`), then edits of them, until the
/// measured window, which the driver sets once every connection has imported, closes.
struct Connection {
    addr: SocketAddr,
    index: usize,
    keys: u64,
    clock: SaveClock,
    imported: tokio::sync::mpsc::Sender<Tally>,
    window: Arc<OnceLock<(Instant, Instant)>>,
}

impl Connection {
    async fn run(self) -> Tally {
        let mut tally = Tally::new();
        let mut import = Some(Tally::new());
        let mut sender: Option<RawConnection> = None;
        let mut seq: u64 = 0;
        let mut saved_us = 0;
        let mut refused = 0;
        loop {
            let window = self.window.get().copied();
            if window.is_some_and(|(_, until)| Instant::now() >= until) {
                break;
            }
            let send = match &mut sender {
                Some(send) => send,
                None => match RawConnection::connect(self.addr).await {
                    Ok(send) => {
                        refused = 0;
                        sender.insert(send)
                    }
                    Err(error) => {
                        *tally.not_accepted.entry(error).or_default() += 1;
                        refused += 1;
                        if refused == 100 {
                            break; // The daemon is gone; the level fails on its counts.
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // This connection's own products, each getting ever newer versions as keys wrap.
            let key = format!("B-{}-{}", self.index, seq % self.keys);
            saved_us = self.clock.now_us().max(saved_us + 1);
            let request = webhook(&key, seq, saved_us);
            seq += 1;
            let sent = Instant::now();
            let outcome = send.post(WEBHOOK_PATH, &request).await;
            let done = Instant::now();
            match outcome {
                Ok(202) => tally.accepted += 1,
                Ok(status) => *tally.not_accepted.entry(status.to_string()).or_default() += 1,
                Err(error) => {
                    *tally.not_accepted.entry(error).or_default() += 1;
                    sender = None;
                }
            }
            let micros = done.duration_since(sent).as_micros() as u64;
            if let Some(import_tally) = &mut import {
                import_tally.histogram.saturating_record(micros.max(1));
                if seq == self.keys {
                    if let Some(done_import) = import.take() {
                        let _ = self.imported.send(done_import).await;
                    }
                }
            } else if window.is_some_and(|(from, until)| done >= from && done < until) {
                tally.histogram.saturating_record(micros.max(1));
            }
        }
        // A connection that never finished its import (errors) must not hold the driver.
        if let Some(import_tally) = import {
            let _ = self.imported.send(import_tally).await;
        }
        tally
    }
}
