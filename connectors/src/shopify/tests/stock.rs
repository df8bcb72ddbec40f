//! Stock at a location the item is not stocked at yet.

use super::fake::Fake;
use super::*;
use crate::shopify::INVENTORY_ITEM_PREFIX;

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
