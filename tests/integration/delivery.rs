//! Delivery through the real binary to an in-process fake target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pimsync::simulate::{self, Edit, Sender};

use crate::fake_target::{FakeTarget, Reply};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

fn edit(key: &str, updated_us: i64, price_cents: i64) -> Edit<'_> {
    Edit {
        key,
        family: "chairs",
        updated_us,
        price_cents,
        stock: 1,
        body_size: 0,
    }
}

async fn send(sender: &Sender, daemon: &Daemon, e: &Edit<'_>) {
    let request =
        simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), simulate::unix_now(), e);
    let (status, body) = sender
        .post(&daemon.url("/webhooks/akeneo"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

fn price(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["product"]["values"]["price"][0]["data"][0]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn outbox_rows(daemon: &Daemon) -> i64 {
    count(&daemon.db, "SELECT count(*) FROM outbox")
}

#[tokio::test]
async fn every_acknowledged_change_is_applied_once_per_state() {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    let sender = Sender::default();
    for n in 0..50 {
        send(
            &sender,
            &daemon,
            &edit(&format!("P-{n}"), 1_000 + n, 100 + n),
        )
        .await;
    }
    fake.wait_for(WAIT, "50 products applied", |f| {
        f.received()
            .iter()
            .map(|r| r.key.clone())
            .collect::<BTreeSet<_>>()
            .len()
            == 50
    })
    .await;
    let received = fake.received();
    assert_eq!(received.len(), 50, "one call per product");
    assert!(received.iter().all(|r| r.method == "PUT"));
    assert!(
        received
            .iter()
            .all(|r| r.idempotency_key.starts_with("\"pimsync-"))
    );
    let p7 = received.iter().find(|r| r.key == "P-7").unwrap();
    assert_eq!(price(&p7.body), "1.07");
    // Done rows leave the outbox; what was applied is recorded.
    daemon_settles(&daemon).await;
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM applied"), 50);
    assert!(fake.max_active_per_key() <= 1);
}

/// 1,000 edits of `key` (prices 100.00 to 109.99, versions rising), 64 in flight at a
/// time; every one must be acknowledged 202.
async fn send_burst(daemon: &Daemon, key: &'static str) {
    let sender = Sender::default();
    let url = daemon.url("/webhooks/akeneo");
    let now = simulate::unix_now();
    let mut tasks = Vec::new();
    for n in 0..1000i64 {
        let (sender, url) = (sender.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let request = simulate::akeneo_product_updated(
                AKENEO_SECRET.as_bytes(),
                now,
                &edit(key, 10_000 + n, 10_000 + n),
            );
            sender.post(&url, &request).await.unwrap().0
        }));
        if tasks.len() >= 64 {
            assert_eq!(tasks.remove(0).await.unwrap(), 202);
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
}

/// Waits until the outbox is empty (every row settled as done).
async fn daemon_settles(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + WAIT;
    while outbox_rows(daemon) > 0 {
        if std::time::Instant::now() >= deadline {
            let rows = rows(
                &daemon.db,
                "SELECT product_key || ' ' || state || ' lease_until=' || coalesce(lease_until, '-') FROM outbox",
            );
            panic!("outbox never drained: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_thousand_quick_edits_of_one_sku_make_at_most_two_applies() {
    let fake = FakeTarget::start().await;
    // The first apply is held until every edit is acknowledged, however slowly a loaded
    // machine sends them: the edits must coalesce behind it, not race a timer.
    fake.close_gate();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    send_burst(&daemon, "HOT").await;
    fake.open_gate();
    daemon_settles(&daemon).await;
    let received = fake.received();
    assert!(received.len() <= 2, "{} applies", received.len());
    assert_eq!(
        price(&received.last().unwrap().body),
        "109.99",
        "the last version wins"
    );
    assert_eq!(
        fake.max_active_per_key(),
        1,
        "never two applies of one key at once"
    );
}

/// `delivery.min_interval` against a target that answers at once: a burst of 1,000 edits
/// of one SKU is applied once at its start and once with its last state, not once per
/// round trip; a lone edit of another product still goes out at once.
#[tokio::test]
async fn min_interval_coalesces_a_burst_for_a_fast_target() {
    const INTERVAL: Duration = Duration::from_secs(2);
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), "min_interval = \"2s\""),
    );
    let started = std::time::Instant::now();
    send_burst(&daemon, "BURST").await;
    let sending = started.elapsed();
    let sender = Sender::default();
    send(&sender, &daemon, &edit("LONE", 1, 500)).await;
    fake.wait_for(WAIT, "the lone edit", |f| {
        f.received().iter().any(|r| r.key == "LONE")
    })
    .await;
    let lone_after = started.elapsed();
    daemon_settles(&daemon).await;
    let burst: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.key == "BURST")
        .collect();
    // Two per interval the burst lasted (a loaded machine may send slower than one).
    let allowed = 2 + (sending.as_millis() / INTERVAL.as_millis()) as usize;
    assert!(
        burst.len() <= allowed,
        "{} applies for 1,000 edits sent in {sending:?}",
        burst.len()
    );
    assert_eq!(
        price(&burst.last().unwrap().body),
        "109.99",
        "the last edit wins"
    );
    assert!(
        lone_after - sending < INTERVAL,
        "a lone edit waited {:?}",
        lone_after - sending
    );
}

/// Edits landing while their product's apply settles: the settle can put the row back to
/// pending just before the worker leases it again, while the finishing apply still holds
/// the key. That lease must be handed back at once, not sit out its lease timeout (30 s
/// here; this test waits 20 s at most).
#[tokio::test]
async fn edits_racing_the_settle_of_their_own_apply_never_strand_a_lease() {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    send_burst(&daemon, "RACE").await;
    daemon_settles(&daemon).await;
    let received = fake.received();
    assert_eq!(price(&received.last().unwrap().body), "109.99");
    assert_eq!(fake.max_active_per_key(), 1);
}

#[tokio::test]
async fn retryable_failures_retry_with_the_same_idempotency_key_honouring_retry_after() {
    let fake = FakeTarget::start().await;
    fake.script([
        Reply {
            status: 503,
            retry_after: Some("1"),
            body: "maintenance",
        },
        Reply {
            status: 500,
            retry_after: None,
            body: "oops",
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    let sender = Sender::default();
    send(&sender, &daemon, &edit("R-1", 1, 500)).await;
    fake.wait_for(WAIT, "three attempts", |f| f.received().len() == 3)
        .await;
    daemon_settles(&daemon).await;
    let received = fake.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 500, 200]
    );
    let keys: BTreeSet<_> = received.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "same key on every retry: {keys:?}");
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
}

#[tokio::test]
async fn permanent_failures_dead_letter_with_the_message_and_a_new_edit_rearms() {
    let fake = FakeTarget::start().await;
    fake.script_key(
        "BAD",
        [Reply {
            status: 422,
            retry_after: None,
            body: "price must be positive",
        }],
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    let sender = Sender::default();
    send(&sender, &daemon, &edit("BAD", 1, -1)).await;
    send(&sender, &daemon, &edit("GOOD", 1, 100)).await;
    fake.wait_for(WAIT, "both tried", |f| f.received().len() == 2)
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    let (state, error) = loop {
        let row: (String, Option<String>) = db(&daemon.db)
            .query_row(
                "SELECT state, last_error FROM outbox WHERE product_key = 'BAD'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        if row.0 == "dead" || std::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state, "dead");
    assert!(error.unwrap().contains("HTTP 422: price must be positive"));
    // A dead row does not block a newer change of the same product.
    send(&sender, &daemon, &edit("BAD", 2, 100)).await;
    fake.wait_for(WAIT, "the fixed product applied", |f| {
        f.received()
            .iter()
            .any(|r| r.key == "BAD" && r.status == 200)
    })
    .await;
}

#[tokio::test]
async fn unchanged_content_makes_no_call_and_rows_from_another_process_are_found() {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    let sender = Sender::default();
    send(&sender, &daemon, &edit("SAME", 1, 100)).await;
    fake.wait_for(WAIT, "first apply", |f| f.received().len() == 1)
        .await;
    daemon_settles(&daemon).await;
    // Same content, newer version: nothing to do.
    send(&sender, &daemon, &edit("SAME", 2, 100)).await;
    assert_eq!(outbox_rows(&daemon), 0);
    // A row made pending by another process (as a resync does) whose desired hash equals
    // the applied one: settled without a call, found without a wake-up.
    db(&daemon.db)
        .execute(
            "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state, attempts,
                                 next_attempt_at, created_at, updated_at)
             SELECT target, product_key, hash, 'k', 'pending', 0, 0, 0, 0 FROM applied",
            [],
        )
        .unwrap();
    daemon_settles(&daemon).await;
    assert_eq!(fake.received().len(), 1, "no second call");
}

#[tokio::test]
async fn delete_after_upsert_and_a_late_older_upsert() {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    let sender = Sender::default();
    send(&sender, &daemon, &edit("D-1", 10, 100)).await;
    fake.wait_for(WAIT, "upsert", |f| f.received().len() == 1)
        .await;
    daemon_settles(&daemon).await;
    let removed = format!(
        r#"{{"events":[{{"action":"product.removed","event_id":"rm-1","event_datetime":"{}","author":"julia","author_type":"ui","pim_source":"x","data":{{"resource":{{"identifier":"D-1","uuid":"{}"}}}}}}]}}"#,
        simulate::rfc3339_us(20),
        simulate::uuid_for("D-1")
    );
    let request = simulate::akeneo_signed(
        AKENEO_SECRET.as_bytes(),
        simulate::unix_now(),
        removed.into_bytes(),
    );
    assert_eq!(
        sender
            .post(&daemon.url("/webhooks/akeneo"), &request)
            .await
            .unwrap()
            .0,
        202
    );
    fake.wait_for(WAIT, "delete", |f| f.received().len() == 2)
        .await;
    assert_eq!(fake.received()[1].method, "DELETE");
    daemon_settles(&daemon).await;
    // An upsert older than the deletion is dropped: the product stays deleted.
    send(&sender, &daemon, &edit("D-1", 15, 999)).await;
    assert_eq!(outbox_rows(&daemon), 0);
    // A newer one brings it back.
    send(&sender, &daemon, &edit("D-1", 30, 300)).await;
    fake.wait_for(WAIT, "re-create", |f| f.received().len() == 3)
        .await;
    assert_eq!(fake.received()[2].method, "PUT");
}

#[tokio::test]
async fn sigkill_mid_delivery_loses_nothing_and_redelivers_with_the_same_key() {
    let fake = FakeTarget::start().await;
    fake.close_gate();
    let dir = tempfile::tempdir().unwrap();
    let config = delivery_config_text(dir.path(), &fake.base_url(), "");
    let daemon = Daemon::start(dir.path(), &config);
    let sender = Sender::default();
    for n in 0..20 {
        send(&sender, &daemon, &edit(&format!("K-{n}"), 1, 100 + n)).await;
    }
    // Four applies (the concurrency) are in flight, held by the fake.
    fake.wait_for(WAIT, "applies in flight", |f| f.arrivals().len() >= 4)
        .await;
    std::process::Command::new("kill")
        .args(["-KILL", &daemon.pid().to_string()])
        .status()
        .unwrap();
    drop(daemon);
    let first_round: BTreeMap<String, String> = fake.arrivals().into_iter().collect();
    fake.open_gate();
    let restarted = Daemon::start(dir.path(), &config);
    fake.wait_for(WAIT, "all 20 applied after restart", |f| {
        f.received()
            .iter()
            .map(|r| r.key.clone())
            .collect::<BTreeSet<_>>()
            .len()
            == 20
    })
    .await;
    daemon_settles(&restarted).await;
    let received = fake.received();
    assert!(first_round.len() >= 4);
    for (key, idempotency_key) in &first_round {
        let applied: Vec<_> = received
            .iter()
            .filter(|r| &r.key == key && r.status == 200)
            .collect();
        assert!(
            !applied.is_empty(),
            "{key} was in flight at the kill and must be redelivered"
        );
        assert!(
            applied
                .iter()
                .all(|r| &r.idempotency_key == idempotency_key),
            "{key}: same idempotency key on redelivery"
        );
    }
}
