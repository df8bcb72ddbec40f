//! Stock: retries under the same idempotency key, and a location the item is not
//! stocked at yet.

use serde_json::json;

use super::fake::{Failure, Fake};
use super::*;
use crate::shopify::INVENTORY_ITEM_PREFIX;

#[tokio::test]
async fn stock_retry_reuses_the_idempotency_key() {
    let fake = Fake::start(1000.0, 100.0).await;
    let shop = build(settings(&fake));
    // The stock call takes effect but the answer is lost.
    fake.fail_next(
        "PimsyncInventorySetQuantities",
        Failure::StatusAfterEffect(503),
    );
    let p = product("Chair", "1.00", 5);
    let error = upsert(&shop, "S", &p, &RemoteIds::new(), "pimsync-abc", 1)
        .await
        .expect_err("503");
    assert!(matches!(error, ApplyError::Retryable { .. }), "{error:?}");
    upsert(&shop, "S", &p, &RemoteIds::new(), "pimsync-abc", 2)
        .await
        .expect("retry");
    let keys: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "PimsyncInventorySetQuantities")
        .map(|r| r.variables["idempotencyKey"].clone())
        .collect();
    assert_eq!(keys, [json!("pimsync-abc"), json!("pimsync-abc")]);
    assert_eq!(
        fake.state().replays,
        1,
        "Shopify replayed instead of applying twice"
    );

    // A previous attempt that failed under the key: a fresh per-attempt key is safe.
    fake.fail_next("PimsyncInventorySetQuantities", Failure::UserErrors(json!([{"code": "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", "field": null, "message": "failed"}])));
    upsert(
        &shop,
        "S",
        &product("Chair", "1.00", 9),
        &RemoteIds::new(),
        "pimsync-def",
        3,
    )
    .await
    .expect("fresh key");
    let last = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.operation == "PimsyncInventorySetQuantities")
        .expect("stock call");
    assert_eq!(last.variables["idempotencyKey"], "pimsync-def-attempt-3");
}

#[tokio::test]
async fn an_item_not_stocked_at_the_location_is_activated_then_set() {
    let fake = Fake::start(1000.0, 100.0).await;
    fake.state().stock_new_items = false;
    let shop = build(settings(&fake));
    let applied = upsert(
        &shop,
        "SKU-9",
        &product("Lamp", "9.90", 7),
        &RemoteIds::new(),
        "k1",
        1,
    )
    .await
    .expect("stock set after activating the item");
    let item = applied
        .remote_ids
        .iter()
        .find(|(k, _)| k.starts_with(INVENTORY_ITEM_PREFIX))
        .map(|(_, v)| v.clone())
        .expect("an inventory item");
    assert_eq!(fake.state().levels[&item], 7);
    assert!(fake.state().unstocked.is_empty());
    let count = |name: &str| fake.operations().iter().filter(|o| *o == name).count();
    assert_eq!(count("PimsyncInventoryActivate"), 1);
    assert_eq!(count("PimsyncInventorySetQuantities"), 2);
    // Stocked now: the next change sets the quantity directly.
    upsert(
        &shop,
        "SKU-9",
        &product("Lamp", "9.90", 3),
        &applied.remote_ids,
        "k2",
        1,
    )
    .await
    .expect("second apply");
    assert_eq!(fake.state().levels[&item], 3);
    assert_eq!(count("PimsyncInventoryActivate"), 1);
}
