//! The delivery benchmark's coalescing run: many edits of one product within one second,
//! and how many applies the target gets for it (the level-triggered outbox should send the
//! latest state, not every edit).

use std::sync::atomic::Ordering;
use std::time::Duration;

use pimsync::simulate;
use serde::Serialize;
use tokio::time::Instant;

use super::common::{Server, connect, count, post, webhook, webhook_price};
use super::fake::Fake;
use super::{Args, GOAL_COALESCED_APPLIES, config_toml};

const COALESCE_KEY: &str = "HOT-SKU";
const COALESCE_CONNECTIONS: u64 = 8;

/// One coalescing run: many edits of one product in a second, applies it caused.
#[derive(Serialize)]
pub struct Coalescing {
    /// How long the target takes to answer each apply.
    pub target_delay_ms: u64,
    pub edits: u64,
    /// From the first edit's POST to the last edit's 202.
    pub send_seconds: f64,
    /// Requests the target received for the product.
    pub applies: u64,
    /// The target ended with the last edit's state.
    pub last_state_applied: bool,
    pub daemon_exit_ok: bool,
}

/// The price a PUT body (the canonical product) carries, in cents.
fn price_cents(body: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let amount = value["product"]["values"]["price"][0]["data"][0]["amount"].as_str()?;
    let (units, cents) = amount.split_once('.')?;
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// `edits` edits of one product within one second, versions rising, over
/// `COALESCE_CONNECTIONS` keep-alive connections (edit `i` is due `i/edits` s after the
/// start); then waits until the target holds the last state and the outbox is empty, and
/// counts the target's requests for the product.
pub fn run_coalescing(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    target_delay_ms: u64,
) -> Result<Coalescing, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-delivbench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("creating a directory in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("bench.db");
    let fake = runtime.block_on(Fake::start(true))?;
    (fake.state.delay_us).store(target_delay_ms * 1000, Ordering::Relaxed);
    let concurrency = args.concurrency.last().copied().unwrap_or(32);
    let mut server = Server::start(dir.path(), &config_toml(&db, fake.addr, concurrency))?;
    let (pid, addr) = (server.pid(), server.addr);
    let edits = args.coalesce_edits;
    println!(
        "coalescing, target answering after {target_delay_ms} ms: daemon pid {pid} on {addr}; \
         {edits} edits of {COALESCE_KEY} within 1 s"
    );
    let last_price = webhook_price(edits);
    let measured = runtime.block_on(async {
        let base_us = simulate::unix_now() * 1_000_000;
        let start = Instant::now();
        let tasks: Vec<_> = (0..COALESCE_CONNECTIONS)
            .map(|conn| {
                tokio::spawn(async move {
                    let host = addr.to_string();
                    let mut send = connect(addr).await?;
                    for seq in (1 + conn..=edits).step_by(COALESCE_CONNECTIONS as usize) {
                        let due = Duration::from_secs_f64((seq - 1) as f64 / edits as f64);
                        tokio::time::sleep_until(start + due).await;
                        let request = webhook(COALESCE_KEY, seq, base_us + seq as i64);
                        match post(&mut send, &host, &request).await {
                            Ok(202) => {}
                            other => return Err(format!("edit {seq}: {other:?}, not 202")),
                        }
                    }
                    Ok::<Instant, String>(Instant::now())
                })
            })
            .collect();
        let mut last_ack = start;
        for task in tasks {
            let done = task.await.map_err(|e| format!("edit task: {e}"))??;
            last_ack = last_ack.max(done);
        }
        let send_seconds = last_ack.duration_since(start).as_secs_f64();
        // Then the target reaches the last state and every outcome is committed.
        let deadline = Instant::now() + args.timeout;
        loop {
            let last_request = fake.state.per_key().get(COALESCE_KEY).cloned();
            let last = last_request.as_ref().map(|(_, body)| &body[..]);
            let done = last.and_then(price_cents) == Some(last_price)
                && count(&db, "SELECT count(*) FROM outbox")? == 0;
            if done {
                break;
            }
            if Instant::now() >= deadline {
                let (applies, last) = last_request.unwrap_or_default();
                let last = String::from_utf8_lossy(&last);
                let outbox = outbox_rows(&db);
                return Err(format!(
                    "{COALESCE_KEY} never reached its last state (price {last_price} cents): \
                     {applies} applies, outbox {outbox}; the last body: {last:.300}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(send_seconds)
    });
    let exit = server.stop()?;
    if !exit.success() {
        eprintln!("daemon {exit}; its stderr ends:\n{}", server.stderr_tail());
    }
    let send_seconds = measured?;
    let (applies, last) = (fake.state.per_key().get(COALESCE_KEY).cloned()).unwrap_or_default();
    let run = Coalescing {
        target_delay_ms,
        edits,
        send_seconds,
        applies,
        last_state_applied: price_cents(&last) == Some(last_price),
        daemon_exit_ok: exit.success(),
    };
    println!(
        "  sent in {send_seconds:.3} s; {applies} applies of {COALESCE_KEY}, last state applied: {}",
        run.last_state_applied
    );
    Ok(run)
}

pub fn print_coalescing(runs: &[Coalescing]) {
    if runs.is_empty() {
        return;
    }
    println!(
        "\ncoalescing: edits of one product within 1 s (goal ≤ {GOAL_COALESCED_APPLIES} applies)"
    );
    println!(
        "{:>16} {:>6} {:>8} {:>10} {:>11}",
        "target answers", "edits", "sent s", "applies", "last state"
    );
    for r in runs {
        let mark = if r.applies <= GOAL_COALESCED_APPLIES {
            "ok"
        } else {
            "MISSED"
        };
        println!(
            "{:>16} {:>6} {:>8.3} {:>10} {:>11}",
            format!("after {} ms", r.target_delay_ms),
            r.edits,
            r.send_seconds,
            format!("{} {mark}", r.applies),
            if r.last_state_applied {
                "applied"
            } else {
                "MISSING"
            }
        );
    }
}

/// The outbox rows, for a report when the product never arrived.
fn outbox_rows(db: &std::path::Path) -> String {
    let read = || -> rusqlite::Result<Vec<String>> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(db, flags)?;
        let now = pimsync::store::now_ms();
        let mut statement = conn.prepare(
            "SELECT state, attempts, next_attempt_at - ?1, lease_until - ?1, leased_hash,
                    desired_hash, last_error FROM outbox",
        )?;
        let rows = statement.query_map([now], |r| {
            Ok(format!(
                "state {} attempts {} due in {} ms lease ends in {:?} ms leased {:?} desired {} error {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.collect()
    };
    match read() {
        Ok(rows) => format!("{rows:?}"),
        Err(error) => format!("(cannot read the outbox: {error})"),
    }
}
