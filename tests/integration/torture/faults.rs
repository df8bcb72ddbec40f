//! Faults at the target: 5xx bursts, 429 with Retry-After, timeouts, connection resets,
//! the target down (2 s in CI, a minute in the long form), and Shopify's `THROTTLED`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pimsync::simulate::Sender;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::{converged, env_number, http_targets_config, outbox_drains, signed_edit, start_daemon};
use crate::fake_target::{FakeTarget, Reply};
use crate::harness::count;

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
// Shopify THROTTLED

/// The connectors' in-process fake Shopify Admin API (cost bucket, THROTTLED), shared by
/// path like the pacing benchmark does.
#[path = "../../../connectors/src/shopify/tests/fake.rs"]
mod shopify_fake;

/// The price Shopify holds for a product, in cents (the edits use the version as price).
fn shopify_price_cents(shop: &shopify_fake::Fake, key: &str) -> Option<i64> {
    let product = shop.product(key)?;
    let amount = product.input["variants"][0]["price"].as_str()?.to_owned();
    let (units, cents) = amount.split_once('.')?;
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

async fn shopify_converged(shop: &shopify_fake::Fake, keys: usize, version: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: Vec<String> = (0..keys)
            .map(|k| format!("FAULT-{k}"))
            .filter(|key| shopify_price_cents(shop, key) != Some(version))
            .collect();
        if behind.is_empty() {
            return;
        }
        // The fake has no change notification; poll it.
        assert!(
            Instant::now() < deadline,
            "{} products never reached v{version} at Shopify: {behind:?}",
            behind.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another app on the same shop: spends the cost bucket as fast as it refills, so the
/// connector's own view of the bucket is wrong and Shopify answers it `THROTTLED` (HTTP
/// 200, `errors[].extensions.code = "THROTTLED"`, with `extensions.cost.throttleStatus`).
async fn noisy_neighbour(url: String, stop: Arc<AtomicBool>) {
    let sender = Sender::default();
    let request = pimsync::simulate::SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-shopify-access-token", "static-token".into()),
        ],
        body: br#"{"operationName":"NeighbourBulkQuery","query":"query NeighbourBulkQuery { shop { name } }","variables":{}}"#
            .to_vec()
            .into(),
    };
    while !stop.load(Ordering::Relaxed) {
        let _ = sender.post(&url, &request).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The real daemon (in this process: the binary cannot be pointed at a fake Shopify, as
/// production always talks to `https://{shop}`) delivering to the fake Shopify while
/// another app drains the shop's cost bucket. THROTTLED waits for the bucket and is not a
/// failed attempt: with `max_attempts = 2`, products throttled more often than that still
/// converge, and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shopify_throttled_waits_for_the_bucket_and_converges_without_dead_rows() {
    use pimsync::config::{Config, TargetKind};
    // Few products: a THROTTLED pauses the target's work for a while, and each product
    // should meet it more often than max_attempts.
    const KEYS: usize = 3;
    const MAX_ATTEMPTS: usize = 2;
    let started = Instant::now();
    // 200 points, 100 restored per second. The neighbour spends every point as soon as it
    // is restored (a 1-point query, faster than 100 a second), so the bucket never holds
    // what any of pimsync's operations costs (2 or more).
    let shop = shopify_fake::Fake::start(200.0, 100.0).await;
    shop.state().costs.insert("NeighbourBulkQuery".into(), 1.0);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("pimsync.toml");
    std::fs::write(
        &config_path,
        format!(
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
secret = "{secret}"
[[targets]]
name = "shop"
kind = "shopify"
[targets.shopify]
shop = "torture.myshopify.com"
access_token = "static-token"
[targets.mapping]
title = {{ attribute = "name", locale = "en_US" }}
price = {{ attribute = "price", currency = "EUR" }}
[targets.delivery]
concurrency = 4
retry_base = "20ms"
retry_cap = "200ms"
max_retry_after = "5s"
request_timeout = "5s"
lease_timeout = "30s"
max_attempts = {MAX_ATTEMPTS}
"#,
            db = dir.path().join("pimsync.db").display(),
            secret = crate::harness::AKENEO_SECRET,
        ),
    )
    .unwrap();
    let mut config = Config::load(&config_path).unwrap();
    for target in &mut config.targets {
        if let TargetKind::Shopify(settings) = &mut target.kind {
            settings.endpoint_override = Some(shop.url.clone());
        }
    }
    let db_path = config.store.path.clone();
    let daemon = pimsync::daemon::Daemon::start(config).await.unwrap();
    let listener = pimsync::daemon::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/webhooks/akeneo", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon.serve(listener, async {
        let _ = stopped.await;
    }));
    let sender = Sender::default();

    // 1. A quiet shop: the connector paces itself and is never throttled.
    wave(&sender, &url, KEYS, 1).await;
    shopify_converged(&shop, KEYS, 1).await;
    let ours = |r: &shopify_fake::Recorded| r.operation.starts_with("Pimsync");
    let quiet_throttled = shop
        .requests()
        .iter()
        .filter(|r| ours(r) && r.throttled)
        .count();
    eprintln!("shopify: quiet shop converged, {quiet_throttled} THROTTLED");

    // 2. Another app drains the bucket while every product changes, until some product
    // has been throttled more often than max_attempts (how long that takes depends on the
    // machine's load, so it is awaited rather than timed).
    let before = shop.requests().len();
    let throttled_per_key = || {
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for r in shop.requests()[before..]
            .iter()
            .filter(|r| ours(r) && r.throttled)
        {
            let key = r.variables["identifier"]["customId"]["value"]
                .as_str()
                .unwrap_or("(no product)")
                .to_owned();
            *per_key.entry(key).or_default() += 1;
        }
        per_key
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let graphql = format!("{}/admin/api/2026-04/graphql.json", shop.url);
    let stop_neighbours = Arc::new(AtomicBool::new(false));
    let neighbours: Vec<_> = (0..3)
        .map(|_| tokio::spawn(noisy_neighbour(graphql.clone(), stop_neighbours.clone())))
        .collect();
    // Let the neighbour empty the bucket first (the fake has no event for it: poll).
    while shop.state().available >= 1.0 {
        assert!(
            Instant::now() < deadline,
            "the neighbour never emptied the bucket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wave(&sender, &url, KEYS, 2).await;
    while throttled_per_key().values().all(|&n| n <= MAX_ATTEMPTS) {
        assert!(
            Instant::now() < deadline,
            "no product was throttled more than max_attempts ({MAX_ATTEMPTS}) times in 20 s: {:?}",
            throttled_per_key()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_neighbours.store(true, Ordering::Relaxed);
    for neighbour in neighbours {
        neighbour.await.unwrap();
    }
    shopify_converged(&shop, KEYS, 2).await;
    outbox_drains(&db_path, Duration::from_secs(10)).await;

    let throttled_per_key = throttled_per_key();
    let throttled: usize = throttled_per_key.values().sum();
    let most = throttled_per_key.values().max().copied().unwrap_or(0);
    eprintln!(
        "shopify: {throttled} THROTTLED answers to pimsync ({} products, at most {most} for one), \
         converged at {:.1} s",
        throttled_per_key.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        throttled > KEYS,
        "the neighbour hardly throttled pimsync: {throttled}"
    );
    assert!(
        most > MAX_ATTEMPTS,
        "no product was throttled more than max_attempts ({MAX_ATTEMPTS}) times: {throttled_per_key:?}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
