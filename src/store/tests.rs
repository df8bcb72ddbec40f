use std::sync::Arc;

use pimsync_connectors::{
    AttributeValue, ChangeBody, ChangeOp, ContentHash, ProductChange, ProductKind, Snapshot,
};
use serde_json::json;

use super::outbox::{desired_hash_sql, resolved_key};
use super::*;
use crate::config::{TargetConfig, TargetFilter, TargetKind};

pub(super) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("pimsync.db"),
        inbox_retention: std::time::Duration::from_secs(3600),
        inbox_max_rows: 0,
        max_batch: 64,
        queue_capacity: 1024,
        max_size: 0,
    }
}

pub(super) fn router(names: &[(&str, &[&str])]) -> Arc<Router> {
    let targets: Vec<TargetConfig> = names
        .iter()
        .map(|(name, families)| TargetConfig {
            name: (*name).to_owned(),
            filter: TargetFilter {
                families: families.iter().map(|f| (*f).to_owned()).collect(),
                ..Default::default()
            },
            mapping: Default::default(),
            delivery: Default::default(),
            kind: TargetKind::Log { path: None },
        })
        .collect();
    Arc::new(Router::new(&targets))
}

pub(super) fn snapshot(family: &str, price: i64) -> Snapshot {
    let mut s = Snapshot {
        family: Some(family.to_owned()),
        ..Default::default()
    };
    s.values.insert(
        "price".into(),
        vec![AttributeValue {
            locale: None,
            scope: None,
            data: json!(price),
        }],
    );
    s
}

pub(super) fn upsert(key: &str, version: i64, body: Snapshot) -> ProductChange {
    ProductChange {
        key: Some(key.to_owned()),
        uuid: Some(format!("uuid-{key}")),
        kind: ProductKind::Product,
        op: ChangeOp::Upsert,
        version,
        body: ChangeBody::Full(body),
        event_id: None,
    }
}

pub(super) fn delete(key: &str, version: i64) -> ProductChange {
    ProductChange {
        op: ChangeOp::Delete,
        body: ChangeBody::None,
        ..upsert(key, version, Snapshot::default())
    }
}

pub(super) fn request(delivery: Option<&str>, changes: Vec<ProductChange>) -> Ingest {
    Ingest {
        source: "pim".into(),
        delivery_id: delivery.map(str::to_owned),
        headers_json: "{}".into(),
        body: b"{}".to_vec(),
        changes: changes.into_iter().map(PreparedChange::new).collect(),
        echo_of: None,
    }
}

#[tokio::test]
async fn ingest_writes_inbox_product_and_one_outbox_row_per_matching_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[]), ("chairs-only", &["chairs"])]);
    let outcome = store
        .ingest(
            request(Some("d1"), vec![upsert("T-1", 10, snapshot("tables", 5))]),
            router,
        )
        .await
        .unwrap();
    assert_eq!(outcome.changed, 1);
    assert_eq!(outcome.outbox_rows, 1);
    let rows = store.outbox(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target, "all");
    assert_eq!(rows[0].state, "pending");
    let product = store.product("T-1").await.unwrap().unwrap();
    assert_eq!(product.version, 10);
    assert_eq!(rows[0].desired_hash, product.content_hash);
    assert_eq!(store.counts().await.unwrap().inbox, 1);
    store.close().await;
}

#[tokio::test]
async fn duplicate_delivery_is_not_processed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    let first = store
        .ingest(
            request(Some("d1"), vec![upsert("A", 1, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    // Same delivery id, different content: still a duplicate, content ignored.
    let second = store
        .ingest(
            request(Some("d1"), vec![upsert("A", 2, snapshot("f", 2))]),
            router.clone(),
        )
        .await
        .unwrap();
    assert!(second.duplicate);
    assert_eq!(store.product("A").await.unwrap().unwrap().version, 1);
    // No delivery id: never treated as a duplicate.
    for version in [3, 4] {
        let outcome = store
            .ingest(
                request(None, vec![upsert("A", version, snapshot("f", version))]),
                router.clone(),
            )
            .await
            .unwrap();
        assert!(!outcome.duplicate);
    }
    assert_eq!(store.counts().await.unwrap().inbox, 3);
    store.close().await;
}

#[tokio::test]
async fn older_versions_are_dropped_and_tombstones_are_not_resurrected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    store
        .ingest(
            request(None, vec![upsert("A", 20, snapshot("f", 2))]),
            router.clone(),
        )
        .await
        .unwrap();
    let stale = store
        .ingest(
            request(None, vec![upsert("A", 10, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!(stale.stale, 1);
    let deleted = store
        .ingest(request(None, vec![delete("A", 30)]), router.clone())
        .await
        .unwrap();
    assert_eq!(deleted.changed, 1);
    let product = store.product("A").await.unwrap().unwrap();
    assert!(product.deleted);
    assert_eq!(product.content_hash, "deleted");
    // A late upsert, older than or equal to the deletion, is dropped.
    for version in [25, 30] {
        let late = store
            .ingest(
                request(None, vec![upsert("A", version, snapshot("f", 9))]),
                router.clone(),
            )
            .await
            .unwrap();
        assert_eq!(late.stale, 1, "version {version}");
    }
    assert!(store.product("A").await.unwrap().unwrap().deleted);
    let rows = store.outbox(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].desired_hash, "deleted");
    // A newer upsert brings it back.
    store
        .ingest(
            request(None, vec![upsert("A", 31, snapshot("f", 3))]),
            router.clone(),
        )
        .await
        .unwrap();
    assert!(!store.product("A").await.unwrap().unwrap().deleted);
    store.close().await;
}

#[tokio::test]
async fn many_edits_of_one_product_coalesce_into_one_outbox_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("shop", &[]), ("erp", &[])]);
    let mut waits = Vec::new();
    for version in 1..=200 {
        let store = store.clone();
        let router = router.clone();
        waits.push(tokio::spawn(async move {
            store
                .ingest(
                    request(None, vec![upsert("SKU", version, snapshot("f", version))]),
                    router,
                )
                .await
        }));
    }
    for wait in waits {
        wait.await.unwrap().unwrap();
    }
    let rows = store.outbox(100).await.unwrap();
    assert_eq!(rows.len(), 2, "one row per target");
    let product = store.product("SKU").await.unwrap().unwrap();
    assert_eq!(
        product.version, 200,
        "the last version wins whatever the commit order"
    );
    assert!(rows.iter().all(|r| r.desired_hash == product.content_hash));
    assert_ne!(rows[0].idempotency_key, rows[1].idempotency_key);
    assert!(
        store
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 200
    );
    store.close().await;
}

#[tokio::test]
async fn a_change_moves_each_targets_row_by_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("wait", &[]), ("backoff", &[]), ("dead", &[]), ("new", &[])]);
    let first = request(None, vec![upsert("P", 1, snapshot("f", 1))]);
    store.ingest(first, router.clone()).await.unwrap();
    let later = now_ms() + 3_600_000;
    let side = Connection::open(store.path()).unwrap();
    side.pragma_update(None, "busy_timeout", 5000).unwrap();
    side.execute_batch(&format!(
        "UPDATE outbox SET next_attempt_at = {later} WHERE target = 'wait';
         UPDATE outbox SET attempts = 2, next_attempt_at = {later}, last_error = 'HTTP 503'
             WHERE target = 'backoff';
         UPDATE outbox SET state = 'dead', attempts = 9, last_error = 'HTTP 422'
             WHERE target = 'dead';
         DELETE FROM outbox WHERE target = 'new';"
    ))
    .unwrap();

    let second = request(None, vec![upsert("P", 2, snapshot("f", 2))]);
    let outcome = store.ingest(second, router).await.unwrap();
    assert_eq!(outcome.outbox_rows, 4);
    let hash = ContentHash(store.product("P").await.unwrap().unwrap().content_hash);
    struct Row {
        target: String,
        desired: String,
        idempotency: String,
        state: String,
        attempts: i64,
        due: i64,
        error: Option<String>,
    }
    let mut rows = side
        .prepare(concat!(
            "SELECT target, ",
            desired_hash_sql!(),
            ", idempotency_key, state, attempts, next_attempt_at, last_error FROM outbox ORDER BY target"
        ))
        .unwrap();
    let rows: Vec<Row> = rows
        .query_map([], |r| {
            let (target, desired): (String, String) = (r.get(0)?, r.get(1)?);
            Ok(Row {
                idempotency: resolved_key(&target, "P", r.get(2)?, &desired),
                target,
                desired,
                state: r.get(3)?,
                attempts: r.get(4)?,
                due: r.get(5)?,
                error: r.get(6)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["backoff", "dead", "new", "wait"]);
    for row in &rows {
        let target = row.target.as_str();
        assert_eq!(row.desired, hash.as_str(), "{target}");
        let expected = pimsync_connectors::idempotency_key(target, "P", &hash);
        assert_eq!(row.idempotency, expected, "{target}");
        assert_eq!(row.state, "pending", "{target}");
        assert_eq!(row.attempts, 0, "{target}");
        assert_eq!(row.error, None, "{target}");
        // A wait that is not a failure's backoff keeps its time; the others are due now.
        let due = row.due;
        assert_eq!(due == later, target == "wait", "{target}: due {due}");
    }
    store.close().await;
}

#[tokio::test]
async fn unchanged_content_moves_the_version_but_makes_no_outbox_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    store
        .ingest(
            request(None, vec![upsert("A", 1, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    let again = store
        .ingest(
            request(None, vec![upsert("A", 2, snapshot("f", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        (again.changed, again.unchanged, again.outbox_rows),
        (0, 1, 0)
    );
    assert_eq!(store.product("A").await.unwrap().unwrap().version, 2);
    store.close().await;
}

#[tokio::test]
async fn partial_changes_merge_into_the_stored_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    let mut full = snapshot("f", 1);
    full.values.insert(
        "name".into(),
        vec![AttributeValue {
            locale: Some("en_US".into()),
            scope: None,
            data: json!("Chair"),
        }],
    );
    store
        .ingest(request(None, vec![upsert("A", 1, full)]), router.clone())
        .await
        .unwrap();
    let mut delta = Snapshot::default();
    delta.values.insert(
        "price".into(),
        vec![AttributeValue {
            locale: None,
            scope: None,
            data: json!(7),
        }],
    );
    let mut change = upsert("A", 2, Snapshot::default());
    change.body = ChangeBody::Partial(delta);
    store
        .ingest(request(None, vec![change]), router)
        .await
        .unwrap();
    let stored: Snapshot =
        serde_json::from_str(&store.product("A").await.unwrap().unwrap().snapshot.unwrap())
            .unwrap();
    assert_eq!(stored.values["price"][0].data, json!(7));
    assert_eq!(stored.values["name"][0].data, json!("Chair"));
    assert_eq!(stored.family.as_deref(), Some("f"));
    store.close().await;
}

#[tokio::test]
async fn thin_events_queue_a_fetch_and_deletions_resolve_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    let thin = ProductChange {
        key: None,
        uuid: Some("u-1".into()),
        kind: ProductKind::Product,
        op: ChangeOp::Upsert,
        version: 5,
        body: ChangeBody::NeedsFetch,
        event_id: Some("e1".into()),
    };
    let outcome = store
        .ingest(request(Some("e1"), vec![thin]), router.clone())
        .await
        .unwrap();
    assert_eq!(outcome.fetch_queued, 1);
    assert_eq!(store.counts().await.unwrap().fetch_queue, 1);
    assert!(store.outbox(10).await.unwrap().is_empty());
    // The full product arrives (e.g. fetched); the queued fetch is settled.
    let mut full = upsert("K", 6, snapshot("f", 1));
    full.uuid = Some("u-1".into());
    store
        .ingest(request(None, vec![full]), router.clone())
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap().fetch_queue, 0);
    // A deletion carrying only the uuid finds the product key.
    let gone = ProductChange {
        key: None,
        uuid: Some("u-1".into()),
        kind: ProductKind::Product,
        op: ChangeOp::Delete,
        version: 7,
        body: ChangeBody::None,
        event_id: None,
    };
    store
        .ingest(request(None, vec![gone]), router)
        .await
        .unwrap();
    assert!(store.product("K").await.unwrap().unwrap().deleted);
    store.close().await;
}

#[tokio::test]
async fn deletions_reach_the_targets_the_product_was_routed_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("chairs", &["chairs"]), ("tables", &["tables"])]);
    store
        .ingest(
            request(None, vec![upsert("C", 1, snapshot("chairs", 1))]),
            router.clone(),
        )
        .await
        .unwrap();
    store
        .ingest(request(None, vec![delete("C", 2)]), router.clone())
        .await
        .unwrap();
    // Unknown product: every target is told.
    store
        .ingest(request(None, vec![delete("X", 2)]), router)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = store
        .outbox(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.target, r.product_key))
        .collect();
    assert_eq!(
        rows,
        [
            ("chairs".to_owned(), "C".to_owned()),
            ("chairs".to_owned(), "X".to_owned()),
            ("tables".to_owned(), "X".to_owned())
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn a_full_database_refuses_the_write_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_size = 1024 * 1024;
    let store = Store::open(&cfg).unwrap();
    let router = router(&[("all", &[])]);
    let big = request(None, vec![upsert("A", 1, snapshot("f", 1))]);
    let mut big = big;
    big.body = vec![b'x'; 2 * 1024 * 1024];
    let error = store.ingest(big, router.clone()).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(store.counts().await.unwrap().inbox, 0);
    assert!(store.product("A").await.unwrap().is_none());
    // Small writes still go through: the store recovers once there is room.
    store
        .ingest(
            request(None, vec![upsert("B", 1, snapshot("f", 1))]),
            router,
        )
        .await
        .unwrap();
    assert!(store.product("B").await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.queue_capacity = 1;
    let store = Store::open(&cfg).unwrap();
    let router = router(&[("all", &[])]);
    let mut saw_busy = false;
    let mut waits = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        let router = router.clone();
        waits.push(tokio::spawn(async move {
            store
                .ingest(
                    request(None, vec![upsert(&format!("K{i}"), 1, snapshot("f", i))]),
                    router,
                )
                .await
        }));
    }
    for wait in waits {
        if let Err(StoreError::Busy) = wait.await.unwrap() {
            saw_busy = true;
        }
    }
    assert!(saw_busy);
    store.close().await;
}

#[tokio::test]
async fn committed_changes_survive_reopening_and_writes_after_close_fail() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(&[("all", &[])]);
    {
        let store = Store::open(&config(dir.path())).unwrap();
        for i in 0..50 {
            store
                .ingest(
                    request(None, vec![upsert(&format!("K{i}"), 1, snapshot("f", i))]),
                    router.clone(),
                )
                .await
                .unwrap();
        }
        store.close().await;
        let late = store
            .ingest(
                request(None, vec![upsert("late", 1, snapshot("f", 1))]),
                router.clone(),
            )
            .await;
        assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
    }
    let store = Store::open(&config(dir.path())).unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.products, 50);
    assert_eq!(
        counts.outbox,
        vec![("all".to_owned(), "pending".to_owned(), 50)]
    );
    store.close().await;
}

#[tokio::test]
async fn inbox_pruning_honours_age_and_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    for i in 0..10 {
        store
            .ingest(
                request(None, vec![upsert(&format!("K{i}"), 1, snapshot("f", i))]),
                router.clone(),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.prune_inbox(0, 4).await.unwrap(), 6);
    assert_eq!(store.counts().await.unwrap().inbox, 4);
    assert_eq!(store.prune_inbox(now_ms() + 1000, 0).await.unwrap(), 4);
    assert_eq!(store.counts().await.unwrap().inbox, 0);
    // Products and outbox rows are desired state, not audit: pruning keeps them.
    assert_eq!(store.counts().await.unwrap().products, 10);
    store.close().await;
}

#[test]
fn a_database_from_a_newer_pimsync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let conn = Connection::open(&cfg.path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Store::open(&cfg),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}
