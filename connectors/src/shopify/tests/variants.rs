//! A variant product on its own: it lives inside its model's Shopify product.

use super::fake::Fake;
use super::*;

#[tokio::test]
async fn a_variant_on_its_own_makes_no_call_and_no_duplicate_product() {
    let fake = Fake::start(1000.0, 100.0).await;
    let shop = build(settings(&fake));
    let mut snapshot = product("Shirt S", "19.90", 3);
    snapshot.parent = Some("SHIRT".into());
    let applied = upsert(&shop, "SHIRT-S", &snapshot, &RemoteIds::new(), "k1", 1)
        .await
        .expect("skipped, not failed");
    assert!(applied.skipped);
    assert!(fake.product("SHIRT-S").is_none());
    assert!(fake.operations().is_empty(), "{:?}", fake.operations());
}
