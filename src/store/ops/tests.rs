use std::sync::Arc;

use pimsync_connectors::{
    AttributeValue, ChangeBody, ChangeOp, ProductChange, ProductKind, Snapshot,
};
use serde_json::json;

use super::*;
use crate::route::Router;
use crate::store::tests::{config, router};
use crate::store::{Ingest, Lease, Outcome, PreparedChange, Settle, Store, now_ms};

fn change(key: &str, version: i64, family: &str, op: ChangeOp) -> ProductChange {
    let mut snapshot = Snapshot {
        family: Some(family.to_owned()),
        ..Default::default()
    };
    snapshot.values.insert(
        "price".into(),
        vec![AttributeValue {
            locale: None,
            scope: None,
            data: json!(version),
        }],
    );
    ProductChange {
        key: Some(key.to_owned()),
        uuid: None,
        kind: ProductKind::Product,
        op,
        version,
        body: match op {
            ChangeOp::Upsert => ChangeBody::Full(snapshot),
            ChangeOp::Delete => ChangeBody::None,
        },
        event_id: None,
    }
}

async fn ingest(store: &Store, router: &Arc<Router>, source: &str, changes: Vec<ProductChange>) {
    store
        .ingest(
            Ingest {
                source: source.into(),
                delivery_id: None,
                headers_json: r#"{"content-type":"application/json"}"#.into(),
                body: b"{\"raw\":true}".to_vec(),
                changes: changes.into_iter().map(PreparedChange::new).collect(),
                echo_of: None,
            },
            router.clone(),
        )
        .await
        .unwrap();
}

/// Leases every due row of `target` and settles each with `outcome`.
async fn settle_all(store: &Store, target: &str, outcome: Outcome) -> Vec<Lease> {
    let leases = store
        .lease(target, "w", 100, 60_000, 0, false)
        .await
        .unwrap();
    for lease in &leases {
        store
            .settle(Settle {
                target: lease.target.clone(),
                product_key: lease.product_key.clone(),
                leased_hash: lease.desired_hash.clone(),
                owner: "w".into(),
                change_id: None,
                outcome: outcome.clone(),
            })
            .await
            .unwrap();
    }
    leases
}

fn applied_ok() -> Outcome {
    Outcome::Applied {
        remote_ids: [("id".to_string(), "42".to_string())].into(),
        called: true,
    }
}

fn keys(rows: &[RowKey]) -> Vec<String> {
    rows.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn resync_marks_matching_targets_and_force_clears_only_the_applied_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[]), ("chairs", &["chairs"])]);
    ingest(
        &store,
        &router,
        "pim",
        vec![
            change("C-1", 1, "chairs", ChangeOp::Upsert),
            change("T-1", 1, "tables", ChangeOp::Upsert),
        ],
    )
    .await;
    settle_all(&store, "all", applied_ok()).await;
    settle_all(&store, "chairs", applied_ok()).await;
    assert!(store.outbox(10).await.unwrap().is_empty());

    let marked = store
        .resync(
            Resync {
                targets: vec!["chairs".into()],
                scope: ResyncScope::Keys(vec!["C-1".into(), "T-1".into(), "NOPE".into()]),
                force: false,
                list_rows: true,
            },
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!(keys(&marked.rows), ["chairs/C-1"]);
    assert_eq!(marked.unknown, ["NOPE"]);
    assert_eq!(marked.filtered_out, 1, "T-1 is not for the chairs target");
    let rows = store.outbox(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let canonical_key = rows[0].idempotency_key.clone();
    // Without force the applied hash still equals the desired one: settled without a call.
    let leases = settle_all(&store, "chairs", applied_ok()).await;
    assert_eq!(
        leases[0].applied_hash.as_deref(),
        Some(&*leases[0].desired_hash)
    );

    let marked = store
        .resync(
            Resync {
                targets: vec!["all".into(), "chairs".into()],
                scope: ResyncScope::All,
                force: true,
                list_rows: true,
            },
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!(keys(&marked.rows), ["all/C-1", "chairs/C-1", "all/T-1"]);
    assert_eq!(marked.forced, 3);
    let leases = store
        .lease("chairs", "w", 10, 60_000, 0, false)
        .await
        .unwrap();
    assert_eq!(leases[0].applied_hash.as_deref(), Some(""));
    assert_eq!(
        leases[0].remote_ids.get("id").map(String::as_str),
        Some("42")
    );
    assert_ne!(leases[0].idempotency_key, canonical_key);
    store.close().await;
}

#[tokio::test]
async fn resync_since_and_tombstones_resync_as_deletions_to_holders() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[]), ("chairs", &["chairs"])]);
    ingest(
        &store,
        &router,
        "pim",
        vec![change("C-1", 1, "chairs", ChangeOp::Upsert)],
    )
    .await;
    settle_all(&store, "all", applied_ok()).await;
    settle_all(&store, "chairs", applied_ok()).await;
    ingest(
        &store,
        &router,
        "pim",
        vec![change("C-1", 2, "chairs", ChangeOp::Delete)],
    )
    .await;
    settle_all(&store, "all", applied_ok()).await;
    settle_all(&store, "chairs", applied_ok()).await;

    let future = ResyncScope::Since(now_ms() + 60_000);
    let marked = store
        .resync(
            Resync {
                targets: vec!["all".into(), "chairs".into()],
                scope: future,
                force: false,
                list_rows: true,
            },
            router.clone(),
        )
        .await
        .unwrap();
    assert!(marked.rows.is_empty());

    let marked = store
        .resync(
            Resync {
                targets: vec!["all".into(), "chairs".into()],
                scope: ResyncScope::Since(0),
                force: false,
                list_rows: true,
            },
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!(keys(&marked.rows), ["all/C-1", "chairs/C-1"]);
    assert_eq!(marked.deletions, 2);
    let leases = store.lease("all", "w", 10, 60_000, 0, false).await.unwrap();
    assert!(leases[0].deleted);
    assert_eq!(leases[0].desired_hash, "deleted");
    store.close().await;
}

#[tokio::test]
async fn dead_rows_are_listed_shown_retried_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("erp", &[])]);
    ingest(
        &store,
        &router,
        "pim",
        vec![
            change("A", 1, "f", ChangeOp::Upsert),
            change("B", 1, "f", ChangeOp::Upsert),
        ],
    )
    .await;
    settle_all(
        &store,
        "erp",
        Outcome::Permanent {
            error: "HTTP 422: price must be positive".into(),
        },
    )
    .await;
    let read = ReadOnly::open(&dir.path().join("pimsync.db")).unwrap();
    let dead = read.dead_list(Some("erp")).unwrap();
    assert_eq!(
        keys(&dead.iter().map(|d| d.key.clone()).collect::<Vec<_>>()),
        ["erp/A", "erp/B"]
    );
    assert_eq!(dead[0].attempts, 1);
    assert!(read.dead_list(Some("other")).unwrap().is_empty());
    let detail = read.row_detail(&RowKey::new("erp", "A")).unwrap().unwrap();
    assert_eq!(detail.state, "dead");
    assert_eq!(
        detail.last_error.as_deref(),
        Some("HTTP 422: price must be positive")
    );
    assert_eq!(detail.product.as_ref().unwrap().0, 1);
    assert!(detail.applied.is_none());
    assert!(read.row_detail(&RowKey::new("erp", "Z")).unwrap().is_none());

    let retried = store
        .dead_retry(DeadSelection::Rows(vec![
            RowKey::new("erp", "A"),
            RowKey::new("erp", "Z"),
        ]))
        .await
        .unwrap();
    assert_eq!(keys(&retried), ["erp/A"]);
    let detail = read.row_detail(&RowKey::new("erp", "A")).unwrap().unwrap();
    assert_eq!((detail.state.as_str(), detail.attempts), ("pending", 0));
    assert!(detail.next_attempt_at <= now_ms());
    // Retrying again finds nothing dead.
    assert!(
        store
            .dead_retry(DeadSelection::Rows(vec![RowKey::new("erp", "A")]))
            .await
            .unwrap()
            .is_empty()
    );

    let discarded = store
        .dead_discard(DeadSelection::Rows(vec![
            RowKey::new("erp", "B"),
            RowKey::new("erp", "A"),
        ]))
        .await
        .unwrap();
    assert_eq!(keys(&discarded), ["erp/B"], "only dead rows are discarded");
    assert!(store.product("B").await.unwrap().is_some());

    settle_all(&store, "erp", Outcome::Permanent { error: "x".into() }).await;
    // The daemon's listing (admin API): newest first, at most `n`.
    let newest = store
        .dead_list(Some("erp".into()), DeadOrder::Newest(1))
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].key, RowKey::new("erp", "A"));
    let retried = store
        .dead_retry(DeadSelection::Targets(vec!["erp".into()]))
        .await
        .unwrap();
    assert_eq!(keys(&retried), ["erp/A"]);
    store.close().await;
}

#[tokio::test]
async fn status_counts_each_target_and_progress_follows_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("a", &[]), ("b", &["chairs"])]);
    ingest(
        &store,
        &router,
        "pim",
        vec![
            change("C-1", 1, "chairs", ChangeOp::Upsert),
            change("C-2", 1, "chairs", ChangeOp::Upsert),
            change("T-1", 1, "tables", ChangeOp::Upsert),
        ],
    )
    .await;
    settle_all(
        &store,
        "b",
        Outcome::Permanent {
            error: "boom".into(),
        },
    )
    .await;
    let leases = store.lease("a", "w", 1, 60_000, 0, false).await.unwrap();
    assert_eq!(leases.len(), 1);

    let read = ReadOnly::open(&dir.path().join("pimsync.db")).unwrap();
    let before = read
        .progress(&[RowKey::new("a", "C-2"), RowKey::new("b", "C-1")])
        .unwrap();
    assert_eq!(
        before,
        [RowProgress::Waiting, RowProgress::Dead(Some("boom".into()))]
    );

    let now = now_ms();
    let status = read
        .status(&["a".into(), "b".into(), "c".into()], now)
        .unwrap();
    let names: Vec<_> = status.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a = &status.targets[0];
    assert_eq!((a.pending, a.in_flight, a.dead), (2, 1, 0));
    assert!(a.oldest_pending_since.is_some_and(|t| t <= now));
    let b = &status.targets[1];
    assert_eq!((b.pending, b.in_flight, b.dead), (0, 0, 2));
    assert_eq!(b.last_error.as_ref().unwrap().error, "boom");
    assert_eq!(status.targets[2].pending, 0);
    assert_eq!(status.store.products, 3);
    assert!(status.store.db_bytes + status.store.wal_bytes > 0);
    // The daemon's view (admin API) reads the same figures.
    let daemon = store
        .target_status(vec!["a".into(), "b".into(), "c".into()], now)
        .await
        .unwrap();
    assert_eq!(daemon, status.targets);

    // Applied rows count for the last hour and leave the outbox.
    let lease = &leases[0];
    store
        .settle(Settle {
            target: "a".into(),
            product_key: lease.product_key.clone(),
            leased_hash: lease.desired_hash.clone(),
            owner: "w".into(),
            change_id: None,
            outcome: applied_ok(),
        })
        .await
        .unwrap();
    let status = read.status(&["a".into()], now_ms()).unwrap();
    assert_eq!(status.targets[0].applied_last_hour, 1);
    assert_eq!(status.targets[1].name, "b");
    assert!(!status.targets[1].configured);
    let after = read
        .progress(&[RowKey::new("a", lease.product_key.clone())])
        .unwrap();
    assert_eq!(after, [RowProgress::Applied]);

    // Many rows take the scan path and agree with the lookups.
    let many: Vec<RowKey> = (0..600)
        .map(|n| RowKey::new("a", format!("X-{n}")))
        .chain([RowKey::new("b", "C-2")])
        .collect();
    let states = read.progress(&many).unwrap();
    assert_eq!(states[0], RowProgress::Applied);
    assert_eq!(states[600], RowProgress::Dead(Some("boom".into())));
    store.close().await;
}

#[tokio::test]
async fn inbox_entries_are_listed_by_source_and_shown_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("a", &[])]);
    ingest(
        &store,
        &router,
        "one",
        vec![change("A", 1, "f", ChangeOp::Upsert)],
    )
    .await;
    ingest(
        &store,
        &router,
        "two",
        vec![change("B", 1, "f", ChangeOp::Upsert)],
    )
    .await;
    let read = ReadOnly::open(&dir.path().join("pimsync.db")).unwrap();
    let all = read.inbox_list(None, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].source, "two", "newest first");
    let one = read.inbox_list(Some("one"), 10).unwrap();
    assert_eq!(one.len(), 1);
    let entry = read.inbox_show(one[0].id).unwrap().unwrap();
    assert_eq!(entry.body, b"{\"raw\":true}");
    assert_eq!(
        entry.headers(),
        [("content-type".to_string(), "application/json".to_string())]
    );
    assert!(read.inbox_show(999).unwrap().is_none());
    store.close().await;
}

#[test]
fn read_only_refuses_a_missing_database_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let error = ReadOnly::open(&path).err().unwrap();
    assert!(error.to_string().contains("no database"), "{error}");
    assert!(!path.exists());
}

#[tokio::test]
async fn resync_of_more_than_a_page_marks_every_product_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = router(&[("all", &[])]);
    let keys: Vec<String> = (0..1_201).map(|i| format!("P-{i:05}")).collect();
    let changes = keys
        .iter()
        .map(|key| change(key, 1, "chairs", ChangeOp::Upsert))
        .collect();
    ingest(&store, &router, "pim", changes).await;
    while !settle_all(&store, "all", applied_ok()).await.is_empty() {}

    for scope in [
        ResyncScope::All,
        ResyncScope::Since(0),
        ResyncScope::Keys(keys.clone()),
    ] {
        let marked = store
            .resync(
                Resync {
                    targets: vec!["all".into()],
                    scope: scope.clone(),
                    force: false,
                    list_rows: true,
                },
                router.clone(),
            )
            .await
            .unwrap();
        assert_eq!(marked.marked, keys.len(), "{scope:?}");
        let marked_keys: Vec<&str> = marked.rows.iter().map(|r| &*r.product_key).collect();
        assert_eq!(marked_keys, keys, "{scope:?}");
    }
    // Without list_rows only the count comes back.
    let marked = store
        .resync(
            Resync {
                targets: vec!["all".into()],
                scope: ResyncScope::All,
                force: true,
                list_rows: false,
            },
            router.clone(),
        )
        .await
        .unwrap();
    assert_eq!((marked.marked, marked.forced), (keys.len(), keys.len()));
    assert!(marked.rows.is_empty());
    store.close().await;
}
