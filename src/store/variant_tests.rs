//! Variants at a target that holds them inside their product model (Shopify): a variant's
//! change re-applies its model, and the variant is never applied on its own there.

use super::outbox::desired_hash_sql;
use super::tests::*;
use super::*;
use crate::store::{Outcome, Settle};
use pimsync_connectors::{ProductChange, ProductKind};

fn model(key: &str, version: i64) -> ProductChange {
    ProductChange {
        kind: ProductKind::ProductModel,
        ..upsert(key, version, snapshot("shirts", 0))
    }
}

fn variant(key: &str, parent: &str, version: i64, price: i64) -> ProductChange {
    let mut body = snapshot("shirts", price);
    body.parent = Some(parent.to_owned());
    upsert(key, version, body)
}

fn rows(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(dir.join("pimsync.db")).unwrap();
    let mut statement = conn
        .prepare(concat!(
            "SELECT target, product_key, ",
            desired_hash_sql!(),
            " FROM outbox ORDER BY target, product_key"
        ))
        .unwrap();
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Applies whatever `target` has due and returns the keys applied with their variants.
async fn apply_all(store: &Store, target: &str) -> Vec<(String, Vec<String>)> {
    let leases = store
        .lease(target, "w", 100, 60_000, 0, false)
        .await
        .unwrap();
    let mut applied = Vec::new();
    for lease in leases {
        let variants = lease.variants.iter().map(|(key, _)| key.clone()).collect();
        applied.push((lease.product_key.clone(), variants));
        let outcome = Outcome::Applied {
            remote_ids: Default::default(),
            called: true,
        };
        let settle = Settle {
            target: lease.target.clone(),
            product_key: lease.product_key.clone(),
            leased_hash: lease.desired_hash.clone(),
            owner: "w".into(),
            change_id: None,
            outcome,
        };
        store.settle(settle).await.unwrap();
    }
    applied
}

#[tokio::test]
async fn a_variant_change_reapplies_its_model_where_variants_live_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = Arc::new(Router::clone(&router(&[("shop", &[]), ("erp", &[])])).folding("shop"));
    let ingest = |changes| store.ingest(request(None, changes), router.clone());

    ingest(vec![model("SHIRT", 1), variant("SHIRT-S", "SHIRT", 1, 10)])
        .await
        .unwrap();
    // The shop gets the model with its variant; the ERP gets both products on their own.
    assert_eq!(
        apply_all(&store, "shop").await,
        [("SHIRT".to_owned(), vec!["SHIRT-S".to_owned()])]
    );
    let erp: Vec<String> = apply_all(&store, "erp")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(erp, ["SHIRT", "SHIRT-S"]);
    assert!(rows(dir.path()).is_empty());

    // The variant's price changes: the shop's model row is armed again, not a variant row.
    ingest(vec![variant("SHIRT-S", "SHIRT", 2, 11)])
        .await
        .unwrap();
    let armed = rows(dir.path());
    assert_eq!(armed.len(), 2, "{armed:?}");
    assert_eq!(
        (armed[0].0.as_str(), armed[0].1.as_str()),
        ("erp", "SHIRT-S")
    );
    assert_eq!(
        (armed[1].0.as_str(), armed[1].1.as_str()),
        ("shop", "SHIRT")
    );
    let first_rearm = armed[1].2.clone();
    // Redelivered unchanged: nothing new. A second variant: the model again.
    ingest(vec![variant("SHIRT-S", "SHIRT", 2, 11)])
        .await
        .unwrap();
    assert_eq!(rows(dir.path())[1].2, first_rearm);
    ingest(vec![variant("SHIRT-M", "SHIRT", 1, 12)])
        .await
        .unwrap();
    assert_ne!(rows(dir.path())[2].2, first_rearm);
    assert_eq!(
        apply_all(&store, "shop").await,
        [(
            "SHIRT".to_owned(),
            vec!["SHIRT-M".to_owned(), "SHIRT-S".to_owned()]
        )]
    );

    // A deleted variant leaves the model, which is applied without it.
    ingest(vec![delete("SHIRT-S", 3)]).await.unwrap();
    assert_eq!(
        apply_all(&store, "shop").await,
        [("SHIRT".to_owned(), vec!["SHIRT-M".to_owned()])]
    );
}

#[tokio::test]
async fn a_variant_of_a_model_not_at_the_target_waits_for_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let router = Arc::new(Router::clone(&router(&[("shop", &[])])).folding("shop"));
    // The variant first: nothing for the shop (its model is unknown).
    let early = request(None, vec![variant("CAP-S", "CAP", 1, 5)]);
    store.ingest(early, router.clone()).await.unwrap();
    assert!(rows(dir.path()).is_empty());
    // The model then arrives and carries it.
    store
        .ingest(request(None, vec![model("CAP", 1)]), router.clone())
        .await
        .unwrap();
    assert_eq!(
        apply_all(&store, "shop").await,
        [("CAP".to_owned(), vec!["CAP-S".to_owned()])]
    );
}
