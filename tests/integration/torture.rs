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

// ---------------------------------------------------------------------------------------
// Bad input

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(pimsync::receiver::signature::hmac_sha256(key, parts))
}

pub(crate) fn standard_webhook(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> SignedRequest {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let ts = timestamp.to_string();
    let tag = pimsync::receiver::signature::hmac_sha256(
        &key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts),
            ("webhook-signature", format!("v1,{}", b64.encode(tag))),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn event_platform(secret: &str, body: &[u8]) -> SignedRequest {
    SignedRequest {
        headers: vec![
            ("content-type", "application/cloudevents+json".into()),
            (
                "x-akeneo-signature-primary",
                hmac_hex(secret.as_bytes(), &[body]),
            ),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn hmac_request(secret: &str, delivery: &str, body: &[u8]) -> SignedRequest {
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-github-delivery", delivery.into()),
            (
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(secret.as_bytes(), &[body])),
            ),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn payload(key: &str, version: i64) -> Vec<u8> {
    format!(
        r#"{{"changes":[{{"key":"{key}","op":"upsert","version":{version},"product":{{"family":"chairs","enabled":true,"values":{{}}}}}}]}}"#
    )
    .into_bytes()
}

pub(crate) fn cloud_event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"pim","type":"com.akeneo.pim.v1.product.updated","time":"2026-12-04T10:00:00Z","datacontenttype":"application/json","data":{{"product":{{"uuid":"0b8b9c39-7a44-4ab0-8a5c-3bd6a4e0d4b1"}}}}}}"#
    )
    .into_bytes()
}

fn with_header(mut r: SignedRequest, name: &'static str, value: &str) -> SignedRequest {
    r.headers.retain(|(n, _)| *n != name);
    r.headers.push((name, value.to_owned()));
    r
}

fn without_header(mut r: SignedRequest, name: &str) -> SignedRequest {
    r.headers.retain(|(n, _)| *n != name);
    r
}

fn with_body(mut r: SignedRequest, body: &[u8]) -> SignedRequest {
    r.body = body.to_vec().into();
    r
}

/// What requests can change in the store. Delivery to the log targets runs meanwhile and
/// moves rows from `outbox` to `applied`, so those two count as one set of routed pairs.
fn store_counts(db_path: &std::path::Path) -> [i64; 5] {
    [
        "SELECT count(*) FROM inbox",
        "SELECT count(*) FROM products",
        "SELECT coalesce(sum(version), 0) FROM products",
        "SELECT count(*) FROM (SELECT product_key, target FROM outbox
                               UNION SELECT product_key, target FROM applied)",
        "SELECT count(*) FROM fetch_queue",
    ]
    .map(|sql| count(db_path, sql))
}

#[tokio::test]
async fn bad_input_corpus_gets_the_right_4xx_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_env(
        dir.path(),
        &config_text(dir.path(), "body_limit = 4096", ""),
        &[("RUST_LOG", "error")],
    );
    let sender = Sender::default();
    let now = simulate::unix_now();
    let ak =
        |ts: i64, body: &[u8]| simulate::akeneo_signed(AKENEO_SECRET.as_bytes(), ts, body.to_vec());
    let ak_edit = |ts: i64| {
        simulate::akeneo_product_updated(
            AKENEO_SECRET.as_bytes(),
            ts,
            &Edit {
                key: "BAD-1",
                family: "chairs",
                updated_us: BASE_US,
                price_cents: 100,
                stock: 1,
                body_size: 1024,
            },
        )
    };
    let big = vec![b' '; 8192];
    let mut oversized_payload = payload("BAD-2", 1);
    oversized_payload.truncate(oversized_payload.len() - 1);
    oversized_payload.extend(std::iter::repeat_n(b' ', 8192));
    oversized_payload.push(b'}');

    // Requests first accepted, then replayed below: their replays must change nothing.
    let good_ak = ak_edit(now);
    let good_sw = standard_webhook(WHSEC, "msg_replay", now, &payload("BAD-3", 1));
    let good_ep = event_platform(EP_PRIMARY, &cloud_event("ev-replay"));
    let good_hmac = hmac_request(HMAC_SECRET, "delivery-replay", &payload("BAD-4", 1));
    for (path, request) in [
        ("/webhooks/akeneo", &good_ak),
        ("/webhooks/standard", &good_sw),
        ("/webhooks/akeneo-ep", &good_ep),
        ("/webhooks/hmac", &good_hmac),
    ] {
        let (status, body) = sender.post(&daemon.url(path), request).await.unwrap();
        assert_eq!(status, 202, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let baseline = store_counts(&daemon.db);

    let not_utf8: &[u8] = b"{\"events\":[\xff\xfe]}";
    #[rustfmt::skip]
    let corpus: Vec<(&str, &str, SignedRequest, u16)> = vec![
        // Akeneo Events API
        ("akeneo", "not JSON", ak(now, b"{not json"), 400),
        ("akeneo", "not UTF-8", ak(now, not_utf8), 400),
        ("akeneo", "events not a list", ak(now, br#"{"events":"x"}"#), 400),
        ("akeneo", "event without data", ak(now, br#"{"events":[{"action":"product.updated","event_id":"e"}]}"#), 400),
        ("akeneo", "JSON array", ak(now, b"[]"), 400),
        ("akeneo", "oversized", ak(now, &big), 413),
        ("akeneo", "wrong secret", simulate::akeneo_signed(b"wrong", now, good_ak.body.to_vec()), 401),
        ("akeneo", "no signature", without_header(good_ak.clone(), "x-akeneo-request-signature"), 401),
        ("akeneo", "no timestamp", without_header(good_ak.clone(), "x-akeneo-request-timestamp"), 401),
        ("akeneo", "signature not hex", with_header(good_ak.clone(), "x-akeneo-request-signature", "zz-not-hex"), 401),
        ("akeneo", "timestamp not a number", with_header(good_ak.clone(), "x-akeneo-request-timestamp", "yesterday"), 401),
        ("akeneo", "body tampered", with_body(good_ak.clone(), &good_ak.body.iter().copied().map(|b| if b == b'1' { b'2' } else { b }).collect::<Vec<_>>()), 401),
        ("akeneo", "signature of another timestamp", with_header(good_ak.clone(), "x-akeneo-request-timestamp", &(now + 1).to_string()), 401),
        ("akeneo", "replayed 10 min later (stale timestamp)", ak_edit(now - 600), 401),
        ("akeneo", "timestamp 10 min ahead", ak_edit(now + 600), 401),
        // Standard Webhooks
        ("standard", "not JSON", standard_webhook(WHSEC, "m1", now, b"{not json"), 400),
        ("standard", "no changes field", standard_webhook(WHSEC, "m2", now, b"{}"), 400),
        ("standard", "change without version", standard_webhook(WHSEC, "m3", now, br#"{"changes":[{"key":"K","op":"upsert","product":{}}]}"#), 400),
        ("standard", "unknown op", standard_webhook(WHSEC, "m4", now, br#"{"changes":[{"key":"K","op":"explode","version":1}]}"#), 400),
        ("standard", "empty key", standard_webhook(WHSEC, "m5", now, br#"{"changes":[{"key":"","op":"upsert","version":1,"product":{}}]}"#), 400),
        ("standard", "oversized", standard_webhook(WHSEC, "m6", now, &oversized_payload), 413),
        ("standard", "wrong secret", standard_webhook("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "m7", now, &payload("BAD-5", 1)), 401),
        ("standard", "no signature", without_header(standard_webhook(WHSEC, "m8", now, &payload("BAD-5", 1)), "webhook-signature"), 401),
        ("standard", "no id", without_header(standard_webhook(WHSEC, "m9", now, &payload("BAD-5", 1)), "webhook-id"), 401),
        ("standard", "signed for another id", with_header(standard_webhook(WHSEC, "m10", now, &payload("BAD-5", 1)), "webhook-id", "m11"), 401),
        ("standard", "only v1a entries", with_header(standard_webhook(WHSEC, "m12", now, &payload("BAD-5", 1)), "webhook-signature", "v1a,AAAA"), 401),
        ("standard", "replayed 10 min later (stale timestamp)", standard_webhook(WHSEC, "msg_replay", now - 600, &payload("BAD-3", 1)), 401),
        ("standard", "timestamp 10 min ahead", standard_webhook(WHSEC, "m13", now + 600, &payload("BAD-5", 1)), 401),
        // Akeneo Event Platform (no timestamp: replays are caught by the CloudEvent id)
        ("akeneo-ep", "not JSON", event_platform(EP_PRIMARY, b"{not json"), 400),
        ("akeneo-ep", "not a CloudEvent", event_platform(EP_PRIMARY, br#"{"hello":"world"}"#), 400),
        ("akeneo-ep", "oversized", event_platform(EP_PRIMARY, &big), 413),
        ("akeneo-ep", "wrong secret", event_platform("wrong", &cloud_event("ev-2")), 401),
        ("akeneo-ep", "no signature", without_header(event_platform(EP_PRIMARY, &cloud_event("ev-3")), "x-akeneo-signature-primary"), 401),
        ("akeneo-ep", "signature not hex", with_header(event_platform(EP_PRIMARY, &cloud_event("ev-4")), "x-akeneo-signature-primary", "not hex"), 401),
        ("akeneo-ep", "replayed (same id)", good_ep.clone(), 200),
        // Generic HMAC (no timestamp: replays are caught by the delivery id)
        ("hmac", "not JSON", hmac_request(HMAC_SECRET, "d1", b"{not json"), 400),
        ("hmac", "version not a number", hmac_request(HMAC_SECRET, "d2", br#"{"changes":[{"key":"K","op":"upsert","version":"one","product":{}}]}"#), 400),
        ("hmac", "oversized", hmac_request(HMAC_SECRET, "d3", &oversized_payload), 413),
        ("hmac", "wrong secret", hmac_request("wrong", "d4", &payload("BAD-6", 1)), 401),
        ("hmac", "no signature", without_header(hmac_request(HMAC_SECRET, "d5", &payload("BAD-6", 1)), "x-hub-signature-256"), 401),
        ("hmac", "sha1= prefix", with_header(hmac_request(HMAC_SECRET, "d6", &payload("BAD-6", 1)), "x-hub-signature-256", &format!("sha1={}", hmac_hex(HMAC_SECRET.as_bytes(), &[&payload("BAD-6", 1)]))), 401),
        ("hmac", "no prefix", with_header(hmac_request(HMAC_SECRET, "d7", &payload("BAD-6", 1)), "x-hub-signature-256", &hmac_hex(HMAC_SECRET.as_bytes(), &[&payload("BAD-6", 1)])), 401),
        ("hmac", "replayed (same delivery id)", good_hmac.clone(), 200),
    ];
    let mut wrong = Vec::new();
    for (source, case, request, expected) in &corpus {
        let path = match *source {
            "akeneo" => "/webhooks/akeneo",
            "standard" => "/webhooks/standard",
            "akeneo-ep" => "/webhooks/akeneo-ep",
            _ => "/webhooks/hmac",
        };
        let (status, body) = sender.post(&daemon.url(path), request).await.unwrap();
        if status != *expected {
            wrong.push(format!(
                "{source} / {case}: {status} (expected {expected}) {}",
                String::from_utf8_lossy(&body)
            ));
        }
        if (400..500).contains(&status) && status != 413 {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert!(
                body["error"].is_string(),
                "{source} / {case}: no error reason"
            );
        }
        assert_eq!(
            store_counts(&daemon.db),
            baseline,
            "{source} / {case} stored something"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
