//! The durability contract through the real binary: what got a 2xx survives SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pimsync::simulate::{self, Edit, Sender};
use tokio::sync::Mutex;

use crate::harness::*;

#[tokio::test]
async fn every_acknowledged_change_survives_sigkill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(dir.path(), "", "");
    let daemon = Daemon::start(dir.path(), &config);
    let url = daemon.url("/webhooks/akeneo");
    let pid = daemon.pid();
    let sender = Sender::default();
    let now = simulate::unix_now();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(tokio::sync::Notify::new());

    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (sender, url, acknowledged, acks, killed) = (
            sender.clone(),
            url.clone(),
            acknowledged.clone(),
            acks.clone(),
            killed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let key = format!("K-{worker}-{n}");
                let request = simulate::akeneo_product_updated(
                    AKENEO_SECRET.as_bytes(),
                    now,
                    &Edit {
                        key: &key,
                        family: "chairs",
                        updated_us: 1_000 + n,
                        price_cents: 100,
                        stock: 1,
                        body_size: 1024,
                    },
                );
                match sender.post(&url, &request).await {
                    Ok((202, _)) => {
                        acknowledged.lock().await.push(key);
                        if acks.fetch_add(1, Ordering::SeqCst) + 1 == 300 {
                            // Kill while the other workers still have requests in flight.
                            std::process::Command::new("kill")
                                .args(["-KILL", &pid.to_string()])
                                .status()
                                .unwrap();
                            killed.notify_waiters();
                        }
                    }
                    Ok((status, _)) => panic!("unexpected status {status}"),
                    // The connection died with the process: that request was never acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop(daemon);
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() >= 300,
        "only {} acknowledged",
        acknowledged.len()
    );

    // Restart on the same database: every acknowledged change is there, with its outbox rows.
    let restarted = Daemon::start(dir.path(), &config);
    let conn = db(&restarted.db);
    let mut missing = Vec::new();
    for key in &acknowledged {
        // Each of the three targets either still has the change to do, or has it applied.
        let converging: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM outbox WHERE product_key = ?1)
                      + (SELECT count(*) FROM applied a JOIN products p USING (product_key)
                         WHERE a.product_key = ?1 AND a.hash = p.content_hash
                           AND NOT EXISTS (SELECT 1 FROM outbox o
                                           WHERE o.product_key = ?1 AND o.target = a.target))",
                [key],
                |row| row.get(0),
            )
            .unwrap();
        if converging != 3 {
            missing.push(key.clone());
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let exit = restarted.terminate();
    assert!(exit.success(), "SIGTERM should exit cleanly: {exit:?}");
}
