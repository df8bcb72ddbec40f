//! The crash loop: SIGKILL the daemon at seeded random moments under continuous load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pimsync::simulate::Sender;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{
    converged, env_number, http_targets_config, outbox_drains, price_cents, seed, signed_edit,
    start_daemon,
};
use crate::fake_target::FakeTarget;

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
