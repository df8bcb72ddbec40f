//! Torture tests through the real binary (issue 9): a SIGKILL crash loop under load, faults
//! at the target, and a corpus of bad requests.
//!
//! Short form (CI): 10 kills, a target down for 2 s. Long form:
//! `PIMSYNC_TORTURE_KILLS=100 PIMSYNC_TORTURE_DOWN_SECS=60 cargo test --test integration torture`.
//! `PIMSYNC_TORTURE_SEED` replays a run (every run prints its seed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pimsync::simulate::{self, Edit, Sender, SignedRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::fake_target::{FakeTarget, Reply};
use crate::harness::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    let seed = env_number("PIMSYNC_TORTURE_SEED", 0x5EED_0009);
    eprintln!("torture seed: {seed} (PIMSYNC_TORTURE_SEED={seed} replays this run)");
    seed
}

/// The price a PUT body carries, in cents: the test's edits use the version as the price.
fn price_cents(body: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let amount = value["product"]["values"]["price"][0]["data"][0]["amount"].as_str()?;
    let (units, cents) = amount.split_once('.')?;
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

const BASE_US: i64 = 1_760_000_000_000_000;

fn signed_edit(key: &str, version: i64) -> SignedRequest {
    simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        simulate::unix_now(),
        &Edit {
            key,
            family: "chairs",
            updated_us: BASE_US + version,
            price_cents: version,
            stock: version % 50,
            body_size: 1024,
        },
    )
}

/// Several `http` targets, each on its own fake, with fast retries.
fn http_targets_config(dir: &std::path::Path, targets: &[String], delivery: &str) -> String {
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"

[store]
path = "{db}"

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "{AKENEO_SECRET}"
"#,
        db = dir.join("pimsync.db").display()
    );
    for (n, url) in targets.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[targets]]
name = "t{n}"
kind = "http"
[targets.http]
base_url = "{url}"
[targets.delivery]
{delivery}
"#
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------
// Crash loop

/// The load: what has been acknowledged, and where the daemon currently listens.
struct Load {
    url: watch::Receiver<String>,
    stop: AtomicBool,
    next_version: AtomicI64,
    /// Every acknowledged version per key.
    acked: Mutex<HashMap<String, BTreeSet<i64>>>,
    acks: AtomicUsize,
    acked_event: Notify,
    retries: AtomicUsize,
}

/// One PIM connection: edits random keys with ever higher versions and, like a PIM,
/// resends a request until it gets an answer.
async fn pim(load: Arc<Load>, sender: Sender, mut rng: StdRng, keys: usize) {
    let mut url_rx = load.url.clone();
    while !load.stop.load(Ordering::SeqCst) {
        let key = format!("CRASH-{}", rng.random_range(0..keys));
        let version = load.next_version.fetch_add(1, Ordering::SeqCst);
        loop {
            let url = format!("{}/webhooks/akeneo", url_rx.borrow_and_update().clone());
            // Signed afresh at each attempt, with the same event id (the dedup key).
            match sender.post(&url, &signed_edit(&key, version)).await {
                Ok((200 | 202, _)) => {
                    load.acked
                        .lock()
                        .unwrap()
                        .entry(key.clone())
                        .or_default()
                        .insert(version);
                    load.acks.fetch_add(1, Ordering::SeqCst);
                    load.acked_event.notify_waiters();
                    break;
                }
                Ok((503, _)) | Err(_) => {
                    // No answer: the daemon died (or is full). Retry once it is back; a
                    // short bound covers a connection that failed for another reason.
                    load.retries.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::time::timeout(Duration::from_millis(50), url_rx.changed()).await;
                }
                Ok((status, body)) => panic!(
                    "unexpected status {status} for {key} v{version}: {}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    }
}

async fn start_daemon(dir: &std::path::Path, config: &str) -> Daemon {
    let (dir, config) = (dir.to_owned(), config.to_owned());
    // Retries, resets and refused connections are the point here: keep the log to errors.
    tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&dir, &config, &[("RUST_LOG", "error")])
    })
    .await
    .unwrap()
}

/// Waits until `n` more changes are acknowledged (or `limit` passes).
async fn acks_reach(load: &Load, target: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = load.acked_event.notified();
        if load.acks.load(Ordering::SeqCst) >= target {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}

/// Waits until every fake holds, for every key, the body with the key's last version.
async fn converged(fakes: &[FakeTarget], expected: &BTreeMap<String, i64>, limit: Duration) {
    for (n, fake) in fakes.iter().enumerate() {
        fake.wait_for(limit, &format!("target t{n} converged"), |f| {
            let state = f.current_state();
            expected
                .iter()
                .all(|(key, v)| state.get(key).and_then(|b| price_cents(b)) == Some(*v))
        })
        .await;
    }
}

/// Waits until the outbox is empty: every row done, none dead.
async fn outbox_drains(db_path: &std::path::Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (rows, dead) = {
            let conn = db(db_path);
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
                .unwrap();
            let dead: i64 = conn
                .query_row(
                    "SELECT count(*) FROM outbox WHERE state = 'dead'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (rows, dead)
        };
        assert_eq!(dead, 0, "dead-lettered rows");
        if rows == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} outbox rows never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_loses_nothing_acknowledged_and_applies_each_state_once() {
    let started = Instant::now();
    let kills = env_number("PIMSYNC_TORTURE_KILLS", 10) as usize;
    let mut rng = StdRng::seed_from_u64(seed());
    const KEYS: usize = 60;
    const SENDERS: usize = 6;

    let fakes = vec![
        FakeTarget::start().await,
        FakeTarget::start().await,
        FakeTarget::start().await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = fakes.iter().map(FakeTarget::base_url).collect();
    let config = http_targets_config(
        dir.path(),
        &urls,
        "concurrency = 8\nretry_base = \"20ms\"\nretry_cap = \"200ms\"\n\
         request_timeout = \"2s\"\nlease_timeout = \"10s\"\nmax_attempts = 1000",
    );

    let mut daemon = start_daemon(dir.path(), &config).await;
    let (url_tx, url_rx) = watch::channel(format!("http://{}", daemon.addr));
    let load = Arc::new(Load {
        url: url_rx,
        stop: AtomicBool::new(false),
        next_version: AtomicI64::new(1),
        acked: Mutex::default(),
        acks: AtomicUsize::new(0),
        acked_event: Notify::new(),
        retries: AtomicUsize::new(0),
    });
    let sender = Sender::default();
    let pims: Vec<JoinHandle<()>> = (0..SENDERS)
        .map(|n| {
            let rng = StdRng::seed_from_u64(rng.random::<u64>() ^ n as u64);
            tokio::spawn(pim(load.clone(), sender.clone(), rng, KEYS))
        })
        .collect();

    for kill in 0..kills {
        // A random moment: after 0–150 more acknowledgements (0: while it recovers), plus
        // up to 20 ms, so kills land in commits, leases and applies alike.
        let more = rng.random_range(0..150);
        let target = load.acks.load(Ordering::SeqCst) + more;
        acks_reach(&load, target, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
        let pid = daemon.pid();
        // Dropping the daemon SIGKILLs it and reaps it.
        tokio::task::spawn_blocking(move || drop(daemon))
            .await
            .unwrap();
        eprintln!(
            "kill {}/{kills}: pid {pid} after {} acknowledgements",
            kill + 1,
            load.acks.load(Ordering::SeqCst)
        );
        daemon = start_daemon(dir.path(), &config).await;
        url_tx.send(format!("http://{}", daemon.addr)).unwrap();
    }

    // Stop the load; every request still unanswered is resent until acknowledged.
    acks_reach(
        &load,
        load.acks.load(Ordering::SeqCst) + 50,
        Duration::from_secs(5),
    )
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for pim in pims {
        pim.await.unwrap();
    }
    let acked = load.acked.lock().unwrap().clone();
    let expected: BTreeMap<String, i64> = acked
        .iter()
        .map(|(key, versions)| (key.clone(), *versions.last().unwrap()))
        .collect();
    let sent = load.next_version.load(Ordering::SeqCst) - 1;
    let acknowledged: usize = acked.values().map(BTreeSet::len).sum();
    assert_eq!(
        acknowledged as i64, sent,
        "every edit sent was acknowledged"
    );

    // One more SIGKILL-free restart is not needed: the last daemon drains.
    converged(&fakes, &expected, Duration::from_secs(30)).await;
    outbox_drains(&daemon.db, Duration::from_secs(10)).await;

    for (n, fake) in fakes.iter().enumerate() {
        let violations = fake.idempotency_violations();
        assert!(violations.is_empty(), "target t{n}: {violations:#?}");
        // Every state the target applied is one that was acknowledged for that key.
        for r in fake.received() {
            let version = price_cents(&r.body).expect("a PUT with a price");
            assert!(
                acked.get(&r.key).is_some_and(|v| v.contains(&version)),
                "t{n} got {} v{version}, never acknowledged",
                r.key
            );
        }
        let requests = fake.arrivals().len();
        eprintln!(
            "t{n}: {requests} requests, {} distinct (key, body) applied, for {acknowledged} acknowledged edits of {} keys",
            fake.distinct_applied(),
            expected.len()
        );
        assert!(fake.distinct_applied() <= acknowledged);
    }
    eprintln!(
        "crash loop: {kills} kills, {acknowledged} edits acknowledged, {} resends, {:.1} s",
        load.retries.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let exit = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// Faults at the target

/// A TCP front for a fake target that can reset connections and go down entirely.
#[derive(Clone)]
struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    inner: Arc<Mutex<ProxyInner>>,
}

#[derive(Default)]
struct ProxyInner {
    /// New connections to reset (after reading what the client sent) before passing again.
    resets_pending: usize,
    resets_done: usize,
    connections: Vec<AbortHandle>,
    accept: Option<AbortHandle>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            inner: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let proxy = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let reset = {
                    let mut inner = proxy.inner.lock().unwrap();
                    let reset = inner.resets_pending > 0;
                    if reset {
                        inner.resets_pending -= 1;
                        inner.resets_done += 1;
                    }
                    reset
                };
                let upstream = proxy.upstream;
                let connection = tokio::spawn(async move {
                    let mut client = client;
                    if reset {
                        // Take the request, then RST: the client cannot know whether it
                        // was applied.
                        let mut buf = [0u8; 4096];
                        let _ =
                            tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf))
                                .await;
                        let _ = client.set_zero_linger();
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut inner = proxy.inner.lock().unwrap();
                inner.connections.retain(|c| !c.is_finished());
                inner.connections.push(connection.abort_handle());
            }
        });
        self.inner.lock().unwrap().accept = Some(task.abort_handle());
    }

    /// Cuts every open connection (requests in flight lose their answer) and resets the
    /// next `n` connections.
    fn reset(&self, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        inner.resets_pending += n;
        for connection in inner.connections.drain(..) {
            connection.abort();
        }
    }

    fn resets_done(&self) -> usize {
        self.inner.lock().unwrap().resets_done
    }

    /// Stops listening: connections are refused.
    fn down(&self) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(accept) = inner.accept.take() {
            accept.abort();
        }
        for connection in inner.connections.drain(..) {
            connection.abort();
        }
    }

    async fn up(&self) {
        // The aborted accept task drops its listener asynchronously: retry the bind.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("could not listen on {} again", self.addr);
    }
}

/// Sends one edit of each key at `version` and checks that each is acknowledged.
async fn wave(sender: &Sender, url: &str, keys: usize, version: i64) {
    let mut tasks = Vec::new();
    for k in 0..keys {
        let (sender, url) = (sender.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let key = format!("FAULT-{k}");
            let (status, body) = sender
                .post(&url, &signed_edit(&key, version))
                .await
                .unwrap();
            assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

fn expect_all(keys: usize, version: i64) -> BTreeMap<String, i64> {
    (0..keys).map(|k| (format!("FAULT-{k}"), version)).collect()
}

fn reply(status: u16, retry_after: Option<&'static str>) -> Reply {
    Reply {
        status,
        retry_after,
        body: "{\"error\":\"injected\"}",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_faults_all_converge_without_dead_rows() {
    let started = Instant::now();
    let down_secs = env_number("PIMSYNC_TORTURE_DOWN_SECS", 2);
    const KEYS: usize = 20;
    const LIMIT: Duration = Duration::from_secs(30);
    let fake = FakeTarget::start().await;
    let proxy = FaultProxy::start(fake.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let config = http_targets_config(
        dir.path(),
        &[proxy.base_url()],
        "concurrency = 4\nretry_base = \"20ms\"\nretry_cap = \"500ms\"\n\
         request_timeout = \"1s\"\nlease_timeout = \"5s\"\nmax_attempts = 1000",
    );
    let daemon = start_daemon(dir.path(), &config).await;
    let url = daemon.url("/webhooks/akeneo");
    let sender = Sender::default();
    let fakes = [fake.clone()];
    let mut version = 1;

    // 1. A burst of 5xx.
    fake.script((0..30).map(|n| reply(if n % 2 == 0 { 503 } else { 500 }, None)));
    wave(&sender, &url, KEYS, version).await;
    converged(&fakes, &expect_all(KEYS, version), LIMIT).await;
    let failed = fake.received().iter().filter(|r| r.status >= 500).count();
    assert_eq!(failed, 30, "the whole 5xx burst was met");
    eprintln!(
        "5xx burst: converged at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. 429 with Retry-After: 1 — the next try of that key waits at least that long.
    version += 1;
    let before = fake.received().len();
    fake.script((0..6).map(|_| reply(429, Some("1"))));
    wave(&sender, &url, KEYS, version).await;
    converged(&fakes, &expect_all(KEYS, version), LIMIT).await;
    let received = fake.received()[before..].to_vec();
    let throttled: Vec<_> = received.iter().filter(|r| r.status == 429).collect();
    assert_eq!(throttled.len(), 6);
    for t in throttled {
        let next = received
            .iter()
            .filter(|r| r.key == t.key && r.seq > t.seq)
            .map(|r| r.at)
            .min()
            .expect("retried");
        // `at` is taken at the answer; allow for scheduling slack below the full second.
        assert!(
            next.duration_since(t.at) >= Duration::from_millis(900),
            "{} retried {:?} after a 429 with Retry-After: 1",
            t.key,
            next.duration_since(t.at)
        );
    }
    eprintln!("429: converged at {:.1} s", started.elapsed().as_secs_f64());

    // 3. Timeouts: the target answers after request_timeout (1 s) for a while.
    version += 1;
    fake.set_delay(Duration::from_millis(1500));
    let arrivals = fake.arrivals().len();
    wave(&sender, &url, KEYS, version).await;
    fake.wait_for(LIMIT, "8 requests held past the timeout", |f| {
        f.arrivals().len() >= arrivals + 8
    })
    .await;
    fake.set_delay(Duration::ZERO);
    converged(&fakes, &expect_all(KEYS, version), LIMIT).await;
    eprintln!(
        "timeouts: converged at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 4. Connection resets: open connections cut mid-request, then new ones reset.
    version += 1;
    fake.set_delay(Duration::from_millis(100));
    wave(&sender, &url, KEYS, version).await;
    let arrivals = fake.arrivals().len();
    fake.wait_for(LIMIT, "requests in flight", |f| {
        f.arrivals().len() > arrivals
    })
    .await;
    proxy.reset(10);
    fake.set_delay(Duration::ZERO);
    converged(&fakes, &expect_all(KEYS, version), LIMIT).await;
    assert_eq!(proxy.resets_done(), 10, "every reset was met");
    eprintln!(
        "resets: converged at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 5. The target down (connection refused) for a while, with changes arriving.
    version += 1;
    proxy.down();
    wave(&sender, &url, KEYS, version).await;
    tokio::time::sleep(Duration::from_secs(down_secs)).await;
    let dead = count(
        &daemon.db,
        "SELECT count(*) FROM outbox WHERE state = 'dead'",
    );
    assert_eq!(dead, 0, "nothing dead-lettered while the target was down");
    proxy.up().await;
    converged(&fakes, &expect_all(KEYS, version), LIMIT).await;
    eprintln!(
        "down {down_secs} s: converged at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    outbox_drains(&daemon.db, LIMIT).await;
    let violations = fake.idempotency_violations();
    assert!(violations.is_empty(), "{violations:#?}");
    // Each key went through `version` states: never applied more than that.
    assert!(fake.distinct_applied() <= KEYS * version as usize);
    eprintln!(
        "faults: {} requests, {} distinct states applied, {:.1} s",
        fake.arrivals().len(),
        fake.distinct_applied(),
        started.elapsed().as_secs_f64()
    );
}
