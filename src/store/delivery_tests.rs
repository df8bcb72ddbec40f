//! The delivery side of the store: leases, settlements, echo suppression.

use super::tests::*;
use super::*;
use crate::store::{Outcome, Settle, Settled};

async fn leased_store() -> (tempfile::TempDir, Store, Arc<Router>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("t", &[])]);
    store
        .ingest(
            request(None, vec![upsert("A", 1, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    (dir, store, router)
}

fn settle(lease: &crate::store::Lease, owner: &str, outcome: Outcome) -> Settle {
    Settle {
        target: lease.target.clone(),
        product_key: lease.product_key.clone(),
        leased_hash: lease.desired_hash.clone(),
        owner: owner.into(),
        change_id: None,
        outcome,
    }
}

#[tokio::test]
async fn a_leased_row_is_not_leased_twice_until_its_lease_expires() {
    let (_dir, store, _) = leased_store().await;
    let first = store.lease("t", "w1", 10, 60_000, 0, false).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].snapshot.as_deref().map(|s| s.contains("price")),
        Some(true)
    );
    assert!(
        store
            .lease("t", "w2", 10, 60_000, 0, false)
            .await
            .unwrap()
            .is_empty()
    );
    // An expired lease (its dispatcher died) is taken again, with the same key.
    let short = store.lease("t", "w1", 10, -1, 0, false).await.unwrap();
    assert!(short.is_empty(), "still held by the first lease");
    store.release_leases(vec!["t".into()]).await.unwrap();
    let expired = store.lease("t", "w3", 10, -1, 0, false).await.unwrap();
    let again = store.lease("t", "w4", 10, 60_000, 0, false).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].idempotency_key, expired[0].idempotency_key);
    // The old holder can no longer settle it.
    let lost = store
        .settle(settle(&expired[0], "w3", Outcome::Released))
        .await
        .unwrap();
    assert_eq!(lost, Settled::LeaseLost);
}

#[tokio::test]
async fn applied_rows_leave_the_outbox_unless_a_newer_state_arrived() {
    let (_dir, store, router) = leased_store().await;
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    // A newer edit lands while the apply is in flight.
    store
        .ingest(
            request(None, vec![upsert("A", 2, snapshot("f", 2))]),
            router,
        )
        .await
        .unwrap();
    let done = Outcome::Applied {
        remote_ids: [("id".to_string(), "42".to_string())].into(),
        called: true,
    };
    assert_eq!(
        store
            .settle(settle(&lease, "w", done.clone()))
            .await
            .unwrap(),
        Settled::Superseded
    );
    let next = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    assert_ne!(next.desired_hash, lease.desired_hash);
    assert_eq!(
        next.applied_hash.as_deref(),
        Some(lease.desired_hash.as_str())
    );
    assert_eq!(next.remote_ids["id"], "42");
    assert_eq!(
        store.settle(settle(&next, "w", done)).await.unwrap(),
        Settled::Done
    );
    assert!(store.outbox(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn failures_count_towards_dead_but_throttling_does_not() {
    let (_dir, store, _) = leased_store().await;
    let fail = |max| Outcome::Failed {
        error: "503".into(),
        retry_at: 0,
        max_attempts: max,
    };
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.settle(settle(&lease, "w", fail(3))).await.unwrap(),
        Settled::Retrying
    );
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(lease.attempts, 1);
    let throttled = Outcome::Throttled {
        error: "429".into(),
        retry_at: 0,
    };
    assert_eq!(
        store.settle(settle(&lease, "w", throttled)).await.unwrap(),
        Settled::Retrying
    );
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(lease.attempts, 1, "throttling is not a failed attempt");
    assert_eq!(
        store.settle(settle(&lease, "w", fail(3))).await.unwrap(),
        Settled::Retrying
    );
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.settle(settle(&lease, "w", fail(3))).await.unwrap(),
        Settled::Dead
    );
    assert!(
        store
            .lease("t", "w", 10, 60_000, 0, false)
            .await
            .unwrap()
            .is_empty(),
        "dead rows are not leased"
    );
    let row = &store.outbox(10).await.unwrap()[0];
    assert_eq!((row.state.as_str(), row.attempts), ("dead", 3));
}

#[tokio::test]
async fn retries_wait_for_their_time() {
    let (_dir, store, _) = leased_store().await;
    let lease = store
        .lease("t", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    let later = now_ms() + 60_000;
    let outcome = Outcome::Failed {
        error: "timeout".into(),
        retry_at: later,
        max_attempts: 5,
    };
    store.settle(settle(&lease, "w", outcome)).await.unwrap();
    assert!(
        store
            .lease("t", "w", 10, 60_000, 0, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due("t").await.unwrap(), Some(later));
}

#[tokio::test]
async fn echoes_of_our_own_writes_are_ignored() {
    use crate::store::{Outcome, Settle};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("shop", &[])]);
    store
        .ingest(
            request(None, vec![upsert("A", 1, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    let lease = store
        .lease("shop", "w", 10, 60_000, 0, false)
        .await
        .unwrap()
        .remove(0);
    store
        .settle(Settle {
            target: "shop".into(),
            product_key: "A".into(),
            leased_hash: lease.desired_hash.clone(),
            owner: "w".into(),
            change_id: None,
            outcome: Outcome::Applied {
                remote_ids: Default::default(),
                called: true,
            },
        })
        .await
        .unwrap();
    // The shop's webhook comes back with what we wrote, at a newer version.
    let mut echo = request(None, vec![upsert("A", 2, snapshot("f", 1))]);
    echo.echo_of = Some("shop".into());
    let outcome = store.ingest(echo, router.clone()).await.unwrap();
    assert_eq!(
        (outcome.echoes, outcome.changed, outcome.unchanged),
        (1, 0, 0)
    );
    assert_eq!(
        store.product("A").await.unwrap().unwrap().version,
        1,
        "not processed"
    );
    // A real edit made in the shop is not an echo: it is processed like any change.
    let mut edit = request(None, vec![upsert("A", 3, snapshot("f", 9))]);
    edit.echo_of = Some("shop".into());
    let outcome = store.ingest(edit, router).await.unwrap();
    assert_eq!((outcome.echoes, outcome.changed), (0, 1));
    store.close().await;
}

/// `delivery.min_interval`: a row due within the interval after its product's last apply
/// is moved to the interval's end instead of leased, and edits meanwhile keep that time.
#[tokio::test]
async fn a_row_due_within_min_interval_of_the_last_apply_waits_for_its_end() {
    let (dir, store, router) = leased_store().await;
    const SPACING: i64 = 60_000;
    let first = store
        .lease("t", "w", 10, 60_000, SPACING, false)
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "never applied: leased at once");
    let applied = Outcome::Applied {
        remote_ids: Default::default(),
        called: true,
    };
    let done = store.settle(settle(&first[0], "w", applied)).await.unwrap();
    assert_eq!(done, Settled::Done);
    let next_attempt = || {
        rusqlite::Connection::open(dir.path().join("pimsync.db"))
            .unwrap()
            .query_row(
                "SELECT o.next_attempt_at - a.applied_at, o.state FROM outbox o
                 JOIN applied a USING (target, product_key)",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .unwrap()
    };
    for version in 2..5 {
        let edit = request(None, vec![upsert("A", version, snapshot("f", version))]);
        store.ingest(edit, router.clone()).await.unwrap();
        let leased = store
            .lease("t", "w", 10, 60_000, SPACING, false)
            .await
            .unwrap();
        assert!(
            leased.is_empty(),
            "version {version} leased within the interval"
        );
        assert_eq!(
            next_attempt(),
            (SPACING, "pending".into()),
            "version {version}"
        );
    }
    // The interval passes (the clock is moved, not waited for): one apply, the last version.
    rusqlite::Connection::open(dir.path().join("pimsync.db"))
        .unwrap()
        .execute_batch(
            "UPDATE applied SET applied_at = applied_at - 60000;
             UPDATE outbox SET next_attempt_at = next_attempt_at - 60000;",
        )
        .unwrap();
    let leased = store
        .lease("t", "w", 10, 60_000, SPACING, false)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].version, 4);
}
