//! Behaviour against the fake Shopify.

use std::time::Duration;

use serde_json::json;

use super::fake::{Failure, Fake};
use super::*;
use crate::shopify::{DeletionPolicy, MetafieldSpec, PRODUCT_ID, ShopifyAuth};

fn ops(fake: &Fake, name: &str) -> usize {
    fake.operations()
        .iter()
        .filter(|o| o.as_str() == name)
        .count()
}

#[tokio::test]
async fn create_then_update_by_custom_id() {
    let fake = Fake::start(1000.0, 100.0).await;
    let shop = build(settings(&fake));
    let created = upsert(
        &shop,
        "SKU-1",
        &product("Chair", "49.90", 7),
        &RemoteIds::new(),
        "k1",
        1,
    )
    .await
    .expect("create");
    let stored = fake.product("SKU-1").expect("product exists");
    assert_eq!(created.remote_ids[PRODUCT_ID], stored.id);
    assert_eq!(stored.input["title"], "Chair");
    assert_eq!(stored.input["vendor"], "Acme");
    assert_eq!(stored.input["tags"], json!(["new", "oak"]));
    assert_eq!(stored.input["status"], "ACTIVE");
    assert_eq!(
        stored.input["files"][0]["originalSource"],
        "https://cdn.example.com/a.jpg"
    );
    let variant = &stored.input["variants"][0];
    assert_eq!(variant["sku"], "SKU-1");
    assert_eq!(variant["price"], "49.90");
    assert_eq!(variant["barcode"], "4006381333931");
    assert_eq!(
        variant["optionValues"],
        json!([{"optionName": "Title", "name": "Default Title"}])
    );
    assert_eq!(
        variant["inventoryItem"]["measurement"]["weight"],
        json!({"value": 2.5, "unit": "KILOGRAMS"})
    );
    // The identifier metafield is sent with the product.
    assert_eq!(
        stored.input["metafields"][0],
        json!({"namespace": "pim", "key": "key", "type": "id", "value": "SKU-1"})
    );
    let item = &stored.variants[0].2;
    assert_eq!(fake.state().levels[item], 7);
    assert_eq!(created.remote_ids["inventory_item:SKU-1"], *item);

    let updated = upsert(
        &shop,
        "SKU-1",
        &product("Armchair", "59.00", 3),
        &created.remote_ids,
        "k2",
        1,
    )
    .await
    .expect("update");
    assert_eq!(updated.remote_ids[PRODUCT_ID], stored.id, "same product");
    let stored = fake.product("SKU-1").expect("product");
    assert_eq!(stored.input["title"], "Armchair");
    assert_eq!(fake.state().levels[item], 3);
    assert_eq!(fake.state().products.len(), 1);
    // The metafield definition is ensured once per shop, not per apply.
    assert_eq!(ops(&fake, "PimsyncMetafieldDefinitionCreate"), 1);
    let requests = fake.requests();
    let set = requests
        .iter()
        .find(|r| r.operation == "PimsyncProductSetWithVariants")
        .expect("productSet");
    assert_eq!(set.api_version, "2026-04");
    assert_eq!(
        set.variables["identifier"],
        json!({"customId": {"namespace": "pim", "key": "key", "value": "SKU-1"}})
    );
}

#[tokio::test]
async fn existing_definition_is_accepted() {
    let fake = Fake::start(1000.0, 100.0).await;
    fake.state()
        .definitions
        .push(("pim".into(), "key".into(), "id".into()));
    let shop = build(settings(&fake));
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("TAKEN means the definition exists");
}

#[tokio::test]
async fn product_model_becomes_one_product_with_variants() {
    let fake = Fake::start(1000.0, 100.0).await;
    let mut s = settings(&fake);
    s.options = axes();
    let shop = build(s);
    let model = product("Shirt", "20.00", 0);
    let variants = [
        variant("SHIRT-R-S", "red", "S", 1),
        variant("SHIRT-R-M", "red", "M", 2),
        variant("SHIRT-B-S", "blue", "S", 3),
    ];
    let applied = upsert_model(
        &shop,
        "SHIRT",
        ProductKind::ProductModel,
        &model,
        &variants,
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("apply");
    let stored = fake.product("SHIRT").expect("product");
    assert_eq!(
        stored.input["productOptions"],
        json!([
            {"name": "Color", "values": [{"name": "red"}, {"name": "blue"}]},
            {"name": "Size", "values": [{"name": "S"}, {"name": "M"}]},
        ])
    );
    let inputs = stored.input["variants"].as_array().expect("variants");
    assert_eq!(inputs.len(), 3);
    assert_eq!(inputs[1]["sku"], "SHIRT-R-M");
    assert_eq!(
        inputs[1]["optionValues"],
        json!([{"optionName": "Color", "name": "red"}, {"optionName": "Size", "name": "M"}])
    );
    // Variants inherit the model's price.
    assert_eq!(inputs[2]["price"], "20.00");
    let levels = fake.state().levels.clone();
    for (sku, stock) in [("SHIRT-R-S", 1), ("SHIRT-R-M", 2), ("SHIRT-B-S", 3)] {
        let item = &applied.remote_ids[&format!("inventory_item:{sku}")];
        assert_eq!(levels[item], stock, "{sku}");
        assert!(applied.remote_ids.contains_key(&format!("variant:{sku}")));
    }
    // All three quantities in one idempotent call, under the apply's key.
    let stock_calls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.operation == "PimsyncInventorySetQuantities")
        .collect();
    assert_eq!(stock_calls.len(), 1);
    assert_eq!(stock_calls[0].variables["idempotencyKey"], "k");

    // A variant without an axis value is explained, not sent.
    let broken = [
        variant("X", "red", "S", 1),
        Variant {
            key: "Y".into(),
            snapshot: Snapshot::default(),
        },
    ];
    let error = upsert_model(
        &shop,
        "SHIRT2",
        ProductKind::ProductModel,
        &model,
        &broken,
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("missing axis");
    assert!(
        matches!(&error, ApplyError::Permanent { message } if message.contains("variant Y has no value for option \"Color\"")),
        "{error:?}"
    );
}

#[tokio::test]
async fn limits_fail_permanently_with_an_explanation() {
    let fake = Fake::start(1000.0, 100.0).await;
    let mut s = settings(&fake);
    s.options = axes();
    let shop = build(s.clone());
    let model = product("Shirt", "20.00", 0);
    let many: Vec<Variant> = (0..2049)
        .map(|i| variant(&format!("V{i}"), &format!("c{i}"), "S", 1))
        .collect();
    let error = upsert_model(
        &shop,
        "BIG",
        ProductKind::ProductModel,
        &model,
        &many,
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("too many variants");
    assert!(
        error
            .message()
            .contains("2049 variants, more than Shopify's limit of 2048"),
        "{error:?}"
    );
    let mut tagged = product("T", "1.00", 1);
    let tags: Vec<String> = (0..251).map(|i| format!("t{i}")).collect();
    tagged.values.insert("tags".into(), value(json!(tags)));
    let error = upsert(&shop, "T", &tagged, &RemoteIds::new(), "k", 1)
        .await
        .expect_err("too many tags");
    assert!(error.message().contains("251 tags"), "{error:?}");
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.operation.starts_with("PimsyncProductSet")),
        "nothing sent"
    );
    s.options.extend(axes().into_iter().map(|mut a| {
        a.name.push('2');
        a
    }));
    assert!(
        connector(s, mapping(), Duration::from_secs(1)).is_err(),
        "4 axes"
    );
}

#[tokio::test]
async fn metafields_are_sent_typed() {
    let fake = Fake::start(1000.0, 100.0).await;
    let mut s = settings(&fake);
    s.metafields = vec![
        MetafieldSpec {
            namespace: "custom".into(),
            key: "material".into(),
            kind: "single_line_text_field".into(),
            source: FieldSource::attribute("material"),
        },
        MetafieldSpec {
            namespace: "custom".into(),
            key: "colors".into(),
            kind: "list.single_line_text_field".into(),
            source: FieldSource::attribute("colors"),
        },
        MetafieldSpec {
            namespace: "custom".into(),
            key: "absent".into(),
            kind: "single_line_text_field".into(),
            source: FieldSource::attribute("nope"),
        },
    ];
    let shop = build(s);
    let mut p = product("Chair", "1.00", 1);
    p.values.insert("material".into(), value(json!("oak")));
    p.values
        .insert("colors".into(), value(json!(["red", "green"])));
    upsert(&shop, "M", &p, &RemoteIds::new(), "k", 1)
        .await
        .expect("apply");
    let metafields = fake.product("M").expect("product").input["metafields"].clone();
    assert_eq!(
        metafields,
        json!([
            {"namespace": "pim", "key": "key", "type": "id", "value": "M"},
            {"namespace": "custom", "key": "material", "type": "single_line_text_field", "value": "oak"},
            {"namespace": "custom", "key": "colors", "type": "list.single_line_text_field", "value": "[\"red\",\"green\"]"},
        ])
    );
}

#[tokio::test]
async fn deletion_policies() {
    for (policy, status) in [
        (DeletionPolicy::Archive, Some("ARCHIVED")),
        (DeletionPolicy::Draft, Some("DRAFT")),
        (DeletionPolicy::Delete, None),
    ] {
        let fake = Fake::start(1000.0, 100.0).await;
        let mut s = settings(&fake);
        s.deletion = policy;
        let shop = build(s);
        let applied = upsert(
            &shop,
            "D",
            &product("D", "1.00", 1),
            &RemoteIds::new(),
            "k",
            1,
        )
        .await
        .expect("create");
        let after = delete(&shop, "D", &applied.remote_ids)
            .await
            .expect("delete");
        assert_eq!(
            fake.product("D").map(|p| p.status),
            status.map(str::to_owned),
            "{policy:?}"
        );
        assert_eq!(after.remote_ids.is_empty(), status.is_none(), "{policy:?}");
        // Deleting again, or deleting what was never synced, is done.
        delete(&shop, "D", &after.remote_ids).await.expect("again");
        delete(&shop, "NEVER", &RemoteIds::new())
            .await
            .expect("never synced");
    }
    // Without remembered ids the product is found by its custom id.
    let fake = Fake::start(1000.0, 100.0).await;
    let mut s = settings(&fake);
    s.deletion = DeletionPolicy::Delete;
    let shop = build(s);
    upsert(
        &shop,
        "L",
        &product("L", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("create");
    delete(&shop, "L", &RemoteIds::new()).await.expect("delete");
    assert!(fake.product("L").is_none());
    assert!(
        fake.operations()
            .contains(&"PimsyncProductByIdentifier".to_owned())
    );
}

#[tokio::test]
async fn user_errors_are_classified() {
    let fake = Fake::start(1000.0, 100.0).await;
    let shop = build(settings(&fake));
    fake.fail_next("PimsyncProductSetWithVariants", Failure::UserErrors(json!([{"code": "INVALID_VARIANT", "field": ["input", "variants", "0", "price"], "message": "Price must be positive"}])));
    let error = upsert(
        &shop,
        "U",
        &product("U", "-1", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("invalid");
    assert_eq!(
        error,
        ApplyError::permanent(
            "productSet: INVALID_VARIANT (input.variants.0.price): Price must be positive"
        )
    );
    fake.fail_next("PimsyncInventorySetQuantities", Failure::UserErrors(json!([{"code": "IDEMPOTENCY_CONCURRENT_REQUEST", "field": null, "message": "in progress"}])));
    let error = upsert(
        &shop,
        "U",
        &product("U", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("concurrent");
    assert!(matches!(error, ApplyError::Retryable { .. }), "{error:?}");
    fake.fail_next("PimsyncProductSetWithVariants", Failure::Status(502));
    let error = upsert(
        &shop,
        "U",
        &product("U", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("502");
    assert!(matches!(error, ApplyError::Retryable { .. }), "{error:?}");
}

#[tokio::test]
async fn throttled_waits_for_the_bucket_and_pacing_avoids_it() {
    // A small bucket: 30 points, 20 per second; the first apply costs 30 (definition,
    // productSet, stock), later ones 20.
    let fake = Fake::start(30.0, 20.0).await;
    let shop = build(settings(&fake));
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("first");
    // A second connector that has not seen the bucket yet is answered THROTTLED.
    let stranger = build(settings(&fake));
    let error = upsert(
        &stranger,
        "B",
        &product("B", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("throttled");
    match error {
        ApplyError::Throttled { retry_after, .. } => assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
            "{retry_after:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.state().throttled, 1);
    // The first connector, which tracks the bucket, paces instead: no more THROTTLED.
    for i in 0..3 {
        shop.ready().await;
        upsert(
            &shop,
            &format!("P{i}"),
            &product("P", "1.00", 1),
            &RemoteIds::new(),
            "k",
            1,
        )
        .await
        .expect("paced");
    }
    assert_eq!(fake.state().throttled, 1);
    // HTTP 429 is throttled too.
    fake.fail_next("PimsyncProductSetWithVariants", Failure::Status(429));
    let error = upsert(
        &shop,
        "Z",
        &product("Z", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("429");
    assert!(matches!(error, ApplyError::Throttled { .. }), "{error:?}");
}

#[tokio::test]
async fn client_credentials_token_is_refreshed() {
    let fake = Fake::start(1000.0, 100.0).await;
    fake.state().token_lifetime = 1;
    let mut s = settings(&fake);
    s.auth = ShopifyAuth::ClientCredentials {
        client_id: "client-id".into(),
        client_secret: "client-secret".into(),
    };
    let shop = build(s.clone());
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("first");
    assert_eq!(fake.state().grants, 1, "one grant for several calls");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 2),
        &RemoteIds::new(),
        "k2",
        1,
    )
    .await
    .expect("refreshed");
    assert_eq!(fake.state().grants, 2, "refreshed before expiry");
    // A revoked token is replaced once, inside the apply.
    fake.state().token_lifetime = 3600;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 3),
        &RemoteIds::new(),
        "k3",
        1,
    )
    .await
    .expect("new token");
    fake.state().tokens.retain(|t| t == "static-token");
    upsert(
        &shop,
        "A",
        &product("A", "1.00", 4),
        &RemoteIds::new(),
        "k4",
        1,
    )
    .await
    .expect("after revocation");
    assert_eq!(fake.state().grants, 4);
    // Wrong credentials are permanent and say what to check.
    s.auth = ShopifyAuth::ClientCredentials {
        client_id: "client-id".into(),
        client_secret: "wrong".into(),
    };
    let error = upsert(
        &build(s),
        "A",
        &product("A", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect_err("bad secret");
    assert!(
        matches!(&error, ApplyError::Permanent { message } if message.contains("client_secret") && !message.contains("wrong")),
        "{error:?}"
    );
}

#[tokio::test]
async fn publications_are_published_once() {
    let fake = Fake::start(1000.0, 100.0).await;
    let mut s = settings(&fake);
    s.publications = vec!["7".into()];
    let shop = build(s);
    let first = upsert(
        &shop,
        "P",
        &product("P", "1.00", 1),
        &RemoteIds::new(),
        "k",
        1,
    )
    .await
    .expect("apply");
    assert_eq!(
        fake.product("P").expect("p").publications,
        ["gid://shopify/Publication/7"]
    );
    upsert(
        &shop,
        "P",
        &product("P", "2.00", 1),
        &first.remote_ids,
        "k2",
        1,
    )
    .await
    .expect("apply");
    assert_eq!(ops(&fake, "PimsyncPublishablePublish"), 1);
}
