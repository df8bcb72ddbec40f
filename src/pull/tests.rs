use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pimsync_connectors::akeneo::{AkeneoClient, AkeneoSettings};
use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};
use serde_json::json;
use time::macros::datetime;

use super::reconcile::run;
use super::*;
use crate::config::{
    PullConfig, Secret, SourceFormat, StoreConfig, TargetConfig, TargetFilter, TargetKind,
};
use crate::route::Router;
use crate::store::{Ingest, PreparedChange, Store};

#[path = "../../connectors/src/akeneo/fake.rs"]
mod fake_akeneo;
use fake_akeneo::FakeAkeneo;

fn store(dir: &Path) -> Store {
    Store::open(&StoreConfig {
        path: dir.join("pimsync.db"),
        inbox_retention: Duration::from_secs(3600),
        inbox_max_rows: 0,
        max_batch: 64,
        queue_capacity: 1024,
        max_size: 0,
    })
    .unwrap()
}

fn router() -> Arc<Router> {
    Arc::new(Router::new(&[TargetConfig {
        name: "shop".into(),
        filter: TargetFilter::default(),
        mapping: Default::default(),
        delivery: Default::default(),
        kind: TargetKind::Log { path: None },
    }]))
}

fn settings(fake: &FakeAkeneo) -> AkeneoSettings {
    let mut settings = AkeneoSettings::new(
        &fake.base_url(),
        fake_akeneo::CLIENT_ID,
        fake_akeneo::SECRET,
        fake_akeneo::USERNAME,
        fake_akeneo::PASSWORD,
    );
    settings.request_timeout = Duration::from_secs(5);
    settings
}

fn source(fake: &FakeAkeneo, delete_missing: bool) -> SourceConfig {
    SourceConfig {
        name: "pim".into(),
        path: "/webhooks/pim".into(),
        format: SourceFormat::AkeneoEventPlatform {
            primary: Secret::new("p"),
            secondary: None,
        },
        api: Some(PullConfig {
            settings: settings(fake),
            fetch_batch: 100,
            delete_missing,
        }),
        echo_of: None,
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn sku(n: u32) -> String {
    format!("SKU-{n:04}")
}

async fn catalog(products: u32) -> FakeAkeneo {
    let fake = FakeAkeneo::start().await;
    for n in 0..products {
        fake.put_product(fake_akeneo::product(
            &uuid(n),
            &sku(n),
            "2026-01-10T10:00:00+00:00",
            &format!("Chair {n}"),
        ));
    }
    fake
}

fn thin(uuid: Option<&str>, key: Option<&str>, kind: ProductKind, version: i64) -> ProductChange {
    ProductChange {
        key: key.map(str::to_owned),
        uuid: uuid.map(str::to_owned),
        kind,
        op: ChangeOp::Upsert,
        version,
        body: ChangeBody::NeedsFetch,
        event_id: Some("ev".into()),
    }
}

async fn ingest(store: &Store, changes: Vec<ProductChange>) {
    store
        .ingest(
            Ingest {
                source: "pim".into(),
                delivery_id: None,
                headers_json: "{}".into(),
                body: Vec::new(),
                changes: changes.into_iter().map(PreparedChange::new).collect(),
                echo_of: None,
            },
            router(),
        )
        .await
        .unwrap();
}

fn sql(dir: &Path, query: &str) -> i64 {
    rusqlite::Connection::open(dir.join("pimsync.db"))
        .unwrap()
        .query_row(query, [], |row| row.get(0))
        .unwrap()
}

fn execute(dir: &Path, statement: &str) {
    rusqlite::Connection::open(dir.join("pimsync.db"))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

fn name_of(snapshot: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(snapshot).unwrap();
    value["values"]["name"][0]["data"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn thin_events_are_fetched_and_what_the_pim_lacks_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fake = catalog(3).await;
    fake.put_model(fake_akeneo::product_model(
        "chair_model",
        "2026-01-10T10:00:00+00:00",
        "Chair model",
    ));
    // SKU-0099 was stored from an earlier webhook; the PIM has deleted it since.
    let mut gone = fake_akeneo::product(&uuid(99), &sku(99), "2026-01-01T00:00:00+00:00", "Old");
    gone["values"]["name"][0]["data"] = json!("Old");
    let change =
        crate::receiver::formats::akeneo::resource_upsert(&gone, "r", ProductKind::Product)
            .unwrap();
    ingest(&store, vec![change]).await;
    let event_us = 1_800_000_000_000_000; // 2027: newer than every fixture
    ingest(
        &store,
        vec![
            thin(Some(&uuid(1)), None, ProductKind::Product, event_us),
            thin(Some(&uuid(2)), None, ProductKind::Product, event_us),
            thin(Some(&uuid(99)), None, ProductKind::Product, event_us),
            thin(
                None,
                Some("chair_model"),
                ProductKind::ProductModel,
                event_us,
            ),
            thin(
                None,
                Some("gone_model"),
                ProductKind::ProductModel,
                event_us,
            ),
        ],
    )
    .await;
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM fetch_queue"), 5);

    let client = AkeneoClient::new(settings(&fake)).unwrap();
    let round = fetch_once(&store, &router(), "pim", &client, 100)
        .await
        .unwrap();
    assert_eq!(
        (round.rows, round.fetched, round.deleted, round.invalid),
        (5, 3, 2, 0)
    );
    // One search for the three uuids, then the two models one by one.
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(requests[0].contains(r#""operator":"IN""#));

    let one = store.product(&sku(1)).await.unwrap().unwrap();
    assert_eq!(one.uuid.as_deref(), Some(uuid(1).as_str()));
    assert_eq!(name_of(one.snapshot.as_deref().unwrap()), "Chair 1");
    let model = store.product("chair_model").await.unwrap().unwrap();
    assert_eq!(model.kind, "product_model");
    // 404 / absent from the search: a deletion at the event's version, found by uuid.
    let deleted = store.product(&sku(99)).await.unwrap().unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.version, event_us);
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM fetch_queue"), 0);
    // SKU-0001, SKU-0002, chair_model upserted; SKU-0099 deleted; gone_model (never
    // stored here) deleted as ingest deletes any unknown key → one row each.
    assert_eq!(
        sql(
            dir.path(),
            "SELECT count(*) FROM outbox WHERE state = 'pending'"
        ),
        5
    );

    // An empty queue costs no API call.
    let round = fetch_once(&store, &router(), "pim", &client, 100)
        .await
        .unwrap();
    assert_eq!(round.rows, 0);
    assert_eq!(fake.requests().len(), 3);
    store.close().await;
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fake = catalog(1).await;
    ingest(
        &store,
        vec![thin(Some(&uuid(0)), None, ProductKind::Product, 1)],
    )
    .await;
    let mut bad = settings(&fake);
    bad.password = "wrong".into();
    let client = AkeneoClient::new(bad).unwrap();
    let error = fetch_once(&store, &router(), "pim", &client, 100)
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM fetch_queue"), 1);
    store.close().await;
}

#[tokio::test]
async fn reconcile_changes_only_what_differs_and_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fake = catalog(30).await;
    let mut updates = Vec::new();
    let report = reconcile(&store, router(), &source(&fake, false), Since::Full, |p| {
        updates.push(p.clone())
    })
    .await
    .unwrap();
    assert!(report.complete && !report.resumed);
    assert_eq!((report.fetched, report.changed), (30, 30));
    assert_eq!(report.outbox_rows, 30);
    let last = updates.last().unwrap();
    assert_eq!((last.fetched, last.total), (30, Some(30)));
    assert_eq!(
        sql(
            dir.path(),
            "SELECT count(*) FROM products WHERE uuid IS NOT NULL"
        ),
        30
    );

    // Everything delivered. Then one product changes in the PIM, one is deleted there,
    // and one got a newer webhook than the PIM's state (a stale page must not undo it).
    execute(dir.path(), "DELETE FROM outbox");
    fake.put_product(fake_akeneo::product(
        &uuid(5),
        &sku(5),
        "2026-02-01T00:00:00+00:00",
        "Renamed",
    ));
    fake.remove_product(&uuid(7));
    let newer = fake_akeneo::product(&uuid(9), &sku(9), "2026-03-01T00:00:00+00:00", "Webhook");
    ingest(
        &store,
        vec![
            crate::receiver::formats::akeneo::resource_upsert(&newer, "r", ProductKind::Product)
                .unwrap(),
        ],
    )
    .await;
    execute(dir.path(), "DELETE FROM outbox");

    let report = reconcile(&store, router(), &source(&fake, false), Since::Full, |_| {})
        .await
        .unwrap();
    assert_eq!(report.fetched, 29);
    assert_eq!((report.changed, report.unchanged, report.stale), (1, 27, 1));
    assert_eq!(report.missing, vec![sku(7)]);
    assert_eq!(report.deleted, 0);
    // Only the changed product is pushed; unchanged content creates no outbox row.
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM outbox"), 1);
    assert_eq!(
        sql(
            dir.path(),
            &format!(
                "SELECT count(*) FROM outbox WHERE product_key = '{}'",
                sku(5)
            )
        ),
        1
    );
    assert!(!store.product(&sku(7)).await.unwrap().unwrap().deleted);
    let kept = store.product(&sku(9)).await.unwrap().unwrap();
    assert_eq!(name_of(kept.snapshot.as_deref().unwrap()), "Webhook");

    // With delete_missing, the missing product is deleted (and routed as a deletion).
    // Its stored row must predate the run: wait past the millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = reconcile(&store, router(), &source(&fake, true), Since::Full, |_| {})
        .await
        .unwrap();
    assert_eq!(report.missing, vec![sku(7)]);
    assert_eq!(report.deleted, 1);
    assert!(store.product(&sku(7)).await.unwrap().unwrap().deleted);
    assert_eq!(
        sql(dir.path(), "SELECT count(*) FROM outbox"),
        2,
        "SKU-0005 still pending, SKU-0007's deletion"
    );
    store.close().await;
}

#[tokio::test]
async fn reconcile_since_asks_for_recent_products_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fake = catalog(5).await;
    fake.put_product(fake_akeneo::product(
        &uuid(3),
        &sku(3),
        "2026-02-01T00:00:00+00:00",
        "Recent",
    ));
    let since = Since::Time(datetime!(2026-01-20 00:00:00 UTC));
    let report = reconcile(&store, router(), &source(&fake, true), since, |_| {})
        .await
        .unwrap();
    assert_eq!(report.mode, "since:2026-01-20 00:00:00");
    assert_eq!((report.fetched, report.changed), (1, 1));
    // Not a full pull: nothing is "missing", nothing deleted.
    assert!(report.missing.is_empty());
    let first = fake.requests()[0].clone();
    assert!(
        first.contains(r#""updated":[{"operator":">","value":"2026-01-20 00:00:00"}]"#),
        "{first}"
    );
    // `last` after a completed run: since that run's start (minus a minute).
    let run_started = store.pull_run("pim").await.unwrap().unwrap().started_at;
    let report = reconcile(
        &store,
        router(),
        &source(&fake, false),
        Since::LastRun,
        |_| {},
    )
    .await
    .unwrap();
    let expected =
        time::OffsetDateTime::from_unix_timestamp((run_started - 60_000) / 1000).unwrap();
    assert_eq!(
        report.mode,
        format!(
            "since:{}",
            super::reconcile::akeneo_time_for_tests(expected)
        )
    );
    store.close().await;
}

#[tokio::test]
async fn an_interrupted_reconcile_resumes_from_the_committed_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fake = catalog(250).await;
    let first = run(
        &store,
        router(),
        &source(&fake, false),
        Since::Full,
        |_| {},
        Some(2),
    )
    .await
    .unwrap();
    assert!(!first.complete);
    assert_eq!((first.pages, first.fetched), (2, 200));
    let state = store.pull_run("pim").await.unwrap().unwrap();
    assert_eq!(state.phase.as_deref(), Some("products"));
    assert_eq!(state.fetched, 200);
    let cursor = state.cursor.clone().unwrap();
    assert!(
        cursor.contains(&format!("search_after={}", uuid(199))),
        "{cursor}"
    );
    let requests_before = fake.requests().len();

    // "Restart": a new store handle on the same file, a new call.
    store.close().await;
    let store = self::store(dir.path());
    let mut progress = Vec::new();
    let second = reconcile(&store, router(), &source(&fake, false), Since::Full, |p| {
        progress.push(p.clone())
    })
    .await
    .unwrap();
    assert!(second.resumed && second.complete);
    // The third product page, then the (empty) product models page.
    assert_eq!((second.pages, second.fetched), (2, 50));
    let resumed_with = &fake.requests()[requests_before];
    assert!(
        resumed_with.contains(&format!("search_after={}", uuid(199))),
        "{resumed_with}"
    );
    assert_eq!(progress[0].fetched, 250);
    assert_eq!(progress[0].total, Some(250));
    assert_eq!(
        sql(dir.path(), "SELECT count(*) FROM products"),
        250,
        "every product once"
    );
    assert!(
        second.missing.is_empty(),
        "pages before the restart count as seen"
    );
    assert_eq!(store.pull_run("pim").await.unwrap().unwrap().phase, None);

    // A different mode does not resume the other's cursor.
    let again = run(
        &store,
        router(),
        &source(&fake, false),
        Since::Full,
        |_| {},
        Some(1),
    )
    .await
    .unwrap();
    assert!(!again.resumed);
    let since = reconcile(
        &store,
        router(),
        &source(&fake, false),
        Since::Time(datetime!(2030-01-01 00:00:00 UTC)),
        |_| {},
    )
    .await
    .unwrap();
    assert!(!since.resumed && since.complete);
    assert_eq!(since.fetched, 0);
    store.close().await;
}

#[test]
fn since_parses_times_durations_and_keywords() {
    let now = datetime!(2026-12-04 10:00:00 UTC);
    assert_eq!(Since::parse("full", now), Ok(Since::Full));
    assert_eq!(Since::parse("last", now), Ok(Since::LastRun));
    assert_eq!(
        Since::parse("2026-12-01T08:00:00+02:00", now),
        Ok(Since::Time(datetime!(2026-12-01 06:00:00 UTC)))
    );
    assert_eq!(
        Since::parse("2026-12-01 06:00:00", now),
        Ok(Since::Time(datetime!(2026-12-01 06:00:00 UTC)))
    );
    assert_eq!(
        Since::parse("2026-12-01", now),
        Ok(Since::Time(datetime!(2026-12-01 00:00:00 UTC)))
    );
    assert_eq!(
        Since::parse("24h", now),
        Ok(Since::Time(datetime!(2026-12-03 10:00:00 UTC)))
    );
    assert!(Since::parse("yesterday-ish", now).is_err());
}

#[test]
fn progress_shows_rate_and_eta() {
    let progress = Progress {
        source: "pim".into(),
        phase: "products".into(),
        fetched: 500,
        total: Some(2000),
        rate: 100.0,
        elapsed: Duration::from_secs(5),
        eta: Some(Duration::from_secs(15)),
    };
    assert_eq!(
        progress.to_string(),
        "pim products: 500 fetched of 2000 (25.0%), 100/s, ETA 15s"
    );
}
