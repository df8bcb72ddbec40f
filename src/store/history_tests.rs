//! Targets that get every change (`coalesce = false`), and targets disabled by 410 Gone.

use std::time::Duration;

use pimsync_connectors::webhook::WebhookSettings;

use super::tests::*;
use super::*;
use crate::config::{TargetConfig, TargetKind, WebhookTarget};
use crate::store::{Lease, Outcome, Settle, Settled};

/// `history`: a webhook target with `coalesce = false`; `latest`: one that coalesces.
fn webhook_router() -> Arc<Router> {
    let target = |name: &str, coalesce: bool| TargetConfig {
        name: name.to_owned(),
        filter: Default::default(),
        mapping: Default::default(),
        delivery: Default::default(),
        kind: TargetKind::Webhook(Box::new(WebhookTarget {
            settings: WebhookSettings {
                url: "http://127.0.0.1:9/".into(),
                keys: vec![vec![1; 24]],
                headers: Vec::new(),
                timeout: Duration::from_secs(1),
                watch: Vec::new(),
            },
            coalesce,
        })),
    };
    Arc::new(Router::new(&[
        target("history", false),
        target("latest", true),
    ]))
}

fn done(lease: &Lease, outcome: Outcome) -> Settle {
    Settle {
        target: lease.target.clone(),
        product_key: lease.product_key.clone(),
        leased_hash: lease.desired_hash.clone(),
        owner: "w".into(),
        change_id: lease.change_id,
        outcome,
    }
}

fn applied() -> Outcome {
    Outcome::Applied {
        remote_ids: Default::default(),
        called: true,
    }
}

async fn three_versions(store: &Store, router: &Arc<Router>) {
    for (version, price) in [(1, 10), (2, 20), (3, 30)] {
        let change = upsert("A", version, snapshot("f", price));
        store
            .ingest(request(None, vec![change]), router.clone())
            .await
            .unwrap();
    }
}

fn price(lease: &Lease) -> i64 {
    let snapshot: pimsync_connectors::Snapshot =
        serde_json::from_str(lease.snapshot.as_deref().unwrap()).unwrap();
    snapshot.values["price"][0].data.as_i64().unwrap()
}

#[tokio::test]
async fn every_change_is_delivered_oldest_first_under_its_own_stable_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = webhook_router();
    three_versions(&store, &router).await;

    // The coalescing target gets the latest state once.
    let latest = store
        .lease("latest", "w", 10, 60_000, 0, false)
        .await
        .unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((price(&latest[0]), latest[0].change_id), (30, None));

    let mut delivered = Vec::new();
    let mut keys = Vec::new();
    for round in 0..3 {
        let lease = store
            .lease("history", "w", 10, 60_000, 0, true)
            .await
            .unwrap();
        assert_eq!(lease.len(), 1, "one product, one lease at a time");
        let lease = &lease[0];
        // A crash before the outcome: the same change comes back with the same key.
        store.release_leases(vec!["history".into()]).await.unwrap();
        let again = store
            .lease("history", "w", 10, 60_000, 0, true)
            .await
            .unwrap();
        assert_eq!(again[0].idempotency_key, lease.idempotency_key);
        assert_eq!(again[0].change_id, lease.change_id);
        delivered.push((price(lease), lease.version));
        keys.push(lease.idempotency_key.clone());
        let settled = store.settle(done(&again[0], applied())).await.unwrap();
        let expected = if round < 2 {
            Settled::Superseded
        } else {
            Settled::Done
        };
        assert_eq!(settled, expected);
    }
    assert_eq!(delivered, [(10, 1), (20, 2), (30, 3)]);
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3, "each change has its own webhook-id");
    assert!(
        store
            .lease("history", "w", 10, 60_000, 0, true)
            .await
            .unwrap()
            .is_empty()
    );
    let queued: i64 = store
        .read(|c| c.query_row("SELECT count(*) FROM history", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(queued, 0);
}

#[tokio::test]
async fn a_failed_change_is_retried_before_newer_ones_and_a_deletion_follows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = webhook_router();
    three_versions(&store, &router).await;
    let first = store
        .lease("history", "w", 10, 60_000, 0, true)
        .await
        .unwrap();
    let failed = Outcome::Failed {
        error: "HTTP 503".into(),
        retry_at: 0,
        max_attempts: 5,
    };
    // A newer change does not make a failed history entry moot.
    assert_eq!(
        store.settle(done(&first[0], failed)).await.unwrap(),
        Settled::Retrying
    );
    store
        .ingest(request(None, vec![delete("A", 4)]), router.clone())
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let lease = store
            .lease("history", "w", 10, 60_000, 0, true)
            .await
            .unwrap();
        let Some(lease) = lease.first() else { break };
        seen.push(if lease.deleted { -1 } else { price(lease) });
        store.settle(done(lease, applied())).await.unwrap();
    }
    assert_eq!(seen, [10, 20, 30, -1]);
}

#[tokio::test]
async fn gone_disables_the_target_keeps_the_row_and_enabling_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = webhook_router();
    three_versions(&store, &router).await;
    let lease = store
        .lease("latest", "w", 10, 60_000, 0, false)
        .await
        .unwrap();
    let gone = Outcome::Gone {
        error: "HTTP 410 Gone: unsubscribed".into(),
    };
    assert_eq!(
        store.settle(done(&lease[0], gone)).await.unwrap(),
        Settled::Disabled
    );
    let disabled = store.target_disabled("latest").await.unwrap().unwrap();
    assert_eq!(disabled.reason, "HTTP 410 Gone: unsubscribed");
    assert!(store.target_disabled("history").await.unwrap().is_none());
    // The row is pending again, not an attempt, not dead.
    let (state, attempts): (String, i64) = store
        .read(|c| {
            c.query_row(
                "SELECT state, attempts FROM outbox WHERE target = 'latest'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let status = store
        .target_status(vec!["latest".into(), "history".into()], now_ms())
        .await
        .unwrap();
    assert_eq!(status[0].disabled.as_ref(), Some(&disabled));
    assert_eq!((status[0].pending, status[1].queued_changes), (1, 3));

    assert_eq!(
        store.enable_target("latest".into()).await.unwrap(),
        Some(disabled)
    );
    assert_eq!(store.enable_target("latest".into()).await.unwrap(), None);
    assert!(store.target_disabled("latest").await.unwrap().is_none());
    assert_eq!(
        store
            .lease("latest", "w", 10, 60_000, 0, false)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn discarding_a_dead_change_keeps_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = webhook_router();
    three_versions(&store, &router).await;
    let first = store
        .lease("history", "w", 10, 60_000, 0, true)
        .await
        .unwrap();
    let permanent = Outcome::Permanent {
        error: "HTTP 422".into(),
    };
    assert_eq!(
        store.settle(done(&first[0], permanent)).await.unwrap(),
        Settled::Dead
    );
    let row = crate::store::ops::RowKey::new("history", "A");
    let discarded = store
        .dead_discard(crate::store::ops::DeadSelection::Rows(vec![row]))
        .await
        .unwrap();
    assert_eq!(discarded.len(), 1);
    let next = store
        .lease("history", "w", 10, 60_000, 0, true)
        .await
        .unwrap();
    assert_eq!((price(&next[0]), next[0].version), (20, 2));
}

#[tokio::test]
async fn a_target_that_coalesces_now_drops_its_queued_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    three_versions(&store, &webhook_router()).await;
    let dropped = store
        .drop_history(vec!["latest".into(), "history".into()])
        .await
        .unwrap();
    assert_eq!(dropped, [("history".to_owned(), 3)]);
    let lease = store
        .lease("history", "w", 10, 60_000, 0, true)
        .await
        .unwrap();
    assert_eq!((price(&lease[0]), lease[0].change_id), (30, None));
}

#[tokio::test]
async fn an_event_target_gets_a_new_key_when_content_comes_back_to_an_earlier_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = webhook_router();
    let mut keys = Vec::new();
    for (version, price) in [(1, 10), (2, 20), (3, 10)] {
        let change = upsert("A", version, snapshot("f", price));
        store
            .ingest(request(None, vec![change]), router.clone())
            .await
            .unwrap();
        let lease = store
            .lease("latest", "w", 10, 60_000, 0, false)
            .await
            .unwrap();
        keys.push(lease[0].idempotency_key.clone());
        store.settle(done(&lease[0], applied())).await.unwrap();
    }
    assert_ne!(
        keys[0], keys[2],
        "A -> B -> A: the revert is an event of its own"
    );
}
