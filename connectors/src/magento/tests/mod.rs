//! The connector against the in-process fake Magento; every test ends by validating all
//! bodies it sent against the admin REST Swagger.

mod fake;
mod schema;

use std::time::Duration;

use serde_json::{Value, json};

use self::fake::{Fake, FakeAuth};
use super::*;
use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::mapping::{FieldSource, Mapping};
use crate::product::{AttributeValue, ProductKind, Snapshot};

const TOKEN: &str = "integration-token";

fn value(locale: Option<&str>, data: Value) -> AttributeValue {
    AttributeValue {
        locale: locale.map(str::to_owned),
        scope: None,
        data,
    }
}

fn chair(name_en: &str, name_de: Option<&str>) -> Snapshot {
    let mut s = Snapshot {
        family: Some("chairs".into()),
        categories: vec!["seating".into(), "unmapped".into()],
        enabled: Some(true),
        ..Default::default()
    };
    let mut names = vec![value(Some("en_US"), json!(name_en))];
    if let Some(de) = name_de {
        names.push(value(Some("de_DE"), json!(de)));
    }
    s.values.insert("name".into(), names);
    s.values.insert(
        "description".into(),
        vec![
            value(Some("en_US"), json!("<p>Oak</p>")),
            value(Some("de_DE"), json!("<p>Eiche</p>")),
        ],
    );
    s.values.insert(
        "price".into(),
        vec![value(None, json!([{"amount": "49.90", "currency": "EUR"}]))],
    );
    s.values.insert(
        "weight".into(),
        vec![value(None, json!({"amount": "2.5", "unit": "KILOGRAM"}))],
    );
    s.values
        .insert("stock".into(), vec![value(None, json!(12))]);
    s.values.insert(
        "material".into(),
        vec![value(None, json!(["oak", "steel"]))],
    );
    s.values.insert(
        "care".into(),
        vec![
            value(Some("en_US"), json!("Wipe")),
            value(Some("de_DE"), json!("Abwischen")),
        ],
    );
    s
}

fn localized(attribute: &str, locale: &str) -> FieldSource {
    FieldSource {
        locale: Some(locale.into()),
        ..FieldSource::attribute(attribute)
    }
}

fn mapping() -> Mapping {
    let mut m = Mapping::default();
    m.fields.insert("name".into(), localized("name", "en_US"));
    m.fields
        .insert("description".into(), localized("description", "en_US"));
    m.fields.insert(
        "price".into(),
        FieldSource {
            currency: Some("EUR".into()),
            ..FieldSource::attribute("price")
        },
    );
    m.fields
        .insert("weight".into(), FieldSource::attribute("weight"));
    m.fields
        .insert("qty".into(), FieldSource::attribute("stock"));
    m
}

fn settings(fake: &Fake, auth: MagentoAuth) -> MagentoSettings {
    let mut s = MagentoSettings::new(fake.url.clone(), auth);
    s.store_views.insert("de_DE".into(), "de".into());
    s.store_views.insert("fr_FR".into(), "fr".into());
    s.categories.insert("seating".into(), 12);
    s.custom_attributes
        .insert("material".into(), FieldSource::attribute("material"));
    s.custom_attributes
        .insert("care_instructions".into(), localized("care", "en_US"));
    s
}

fn bearer() -> MagentoAuth {
    MagentoAuth::Bearer {
        access_token: TOKEN.into(),
    }
}

async fn start() -> (Fake, MagentoConnector) {
    let fake = Fake::start(FakeAuth::Bearer(TOKEN.into())).await;
    let connector =
        connector(settings(&fake, bearer()), mapping(), Duration::from_secs(5)).expect("connector");
    (fake, connector)
}

async fn upsert(
    c: &MagentoConnector,
    sku: &str,
    snapshot: &Snapshot,
) -> Result<Applied, ApplyError> {
    let ids = RemoteIds::new();
    c.apply(ApplyRequest {
        target: "magento",
        product_key: sku,
        desired: Desired::Upsert {
            kind: ProductKind::Product,
            snapshot,
            variants: &[],
        },
        remote_ids: &ids,
        idempotency_key: "k",
        attempt: 1,
        change: Default::default(),
    })
    .await
}

async fn delete(c: &MagentoConnector, sku: &str) -> Result<Applied, ApplyError> {
    let ids = RemoteIds::new();
    c.apply(ApplyRequest {
        target: "magento",
        product_key: sku,
        desired: Desired::Delete,
        remote_ids: &ids,
        idempotency_key: "k",
        attempt: 1,
        change: Default::default(),
    })
    .await
}

fn attr<'a>(product: &'a Value, code: &str) -> Option<&'a str> {
    product["custom_attributes"]
        .as_array()?
        .iter()
        .find(|a| a["attribute_code"] == code)?["value"]
        .as_str()
}

#[tokio::test]
async fn create_sends_global_values_store_views_and_msi_stock() {
    let (fake, c) = start().await;
    let applied = upsert(&c, "CH-001", &chair("Oak Chair", Some("Eichenstuhl")))
        .await
        .expect("apply");
    assert_eq!(applied.remote_ids["sku"], "CH-001");
    assert_eq!(applied.remote_ids["product_id"], "1");

    let calls: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.store, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            "PUT all products/CH-001",
            "PUT de products/CH-001",
            "POST all inventory/source-items",
        ],
        "fr has no values, so no store view call"
    );
    let global = fake.product("all", "CH-001").expect("created");
    assert_eq!(global["name"], "Oak Chair");
    assert_eq!(global["price"], json!(49.9));
    assert_eq!(global["weight"], json!(2.5));
    assert_eq!(global["status"], 1);
    assert_eq!(global["visibility"], 4);
    assert_eq!(global["attribute_set_id"], 4);
    assert_eq!(global["type_id"], "simple");
    assert_eq!(attr(&global, "url_key"), Some("oak-chair-ch-001"));
    assert_eq!(attr(&global, "description"), Some("<p>Oak</p>"));
    assert_eq!(attr(&global, "material"), Some("oak,steel"));
    assert_eq!(attr(&global, "care_instructions"), Some("Wipe"));
    assert_eq!(
        global["extension_attributes"],
        json!({"website_ids": [1], "category_links": [{"category_id": "12", "position": 0}]})
    );

    // The store view holds the localized values only: never a global one.
    let de = fake.product("de", "CH-001").expect("store view");
    let mut keys: Vec<_> = de.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["custom_attributes", "id", "name", "sku"]);
    assert_eq!(de["name"], "Eichenstuhl");
    assert_eq!(attr(&de, "url_key"), Some("eichenstuhl-ch-001"));
    assert_eq!(attr(&de, "description"), Some("<p>Eiche</p>"));
    assert_eq!(attr(&de, "care_instructions"), Some("Abwischen"));
    assert_eq!(attr(&de, "material"), None, "not localized");

    assert_eq!(
        fake.data()
            .source_items
            .get(&("CH-001".into(), "default".into())),
        Some(&12.0)
    );
    fake.assert_contract();
}

#[tokio::test]
async fn update_rewrites_values_and_url_key() {
    let (fake, c) = start().await;
    upsert(&c, "CH-001", &chair("Oak Chair", None))
        .await
        .expect("create");
    let mut changed = chair("Walnut Chair", None);
    changed.enabled = Some(false);
    changed
        .values
        .insert("stock".into(), vec![value(None, json!(0))]);
    let applied = upsert(&c, "CH-001", &changed).await.expect("update");
    assert_eq!(applied.remote_ids["product_id"], "1", "same product");
    let global = fake.product("all", "CH-001").expect("product");
    assert_eq!(global["name"], "Walnut Chair");
    assert_eq!(global["status"], 2);
    assert_eq!(attr(&global, "url_key"), Some("walnut-chair-ch-001"));
    let data = fake.data();
    assert_eq!(data.source_items[&("CH-001".into(), "default".into())], 0.0);
    assert!(
        !data
            .url_keys
            .contains_key(&("all".into(), "oak-chair-ch-001".into()))
    );
    drop(data);
    fake.assert_contract();
}

#[tokio::test]
async fn equal_names_do_not_collide_and_real_collisions_are_permanent() {
    let (fake, c) = start().await;
    upsert(&c, "CH-001", &chair("Chair", Some("Stuhl")))
        .await
        .expect("first");
    upsert(&c, "CH-002", &chair("Chair", Some("Stuhl")))
        .await
        .expect("same name");
    assert_eq!(
        attr(&fake.product("de", "CH-002").expect("p"), "url_key"),
        Some("stuhl-ch-002")
    );
    // Two SKUs that slug alike really collide: Magento's message reaches the operator.
    let error = upsert(&c, "ch 001", &chair("Chair", None))
        .await
        .expect_err("collision");
    assert_eq!(
        error,
        ApplyError::permanent("HTTP 400: URL key for specified store already exists.")
    );
    fake.assert_contract();
}

#[tokio::test]
async fn legacy_stock_goes_into_the_stock_item_without_msi() {
    let fake = Fake::start(FakeAuth::Bearer(TOKEN.into())).await;
    let mut s = settings(&fake, bearer());
    s.msi = false;
    s.store_views.clear();
    let c = connector(s, mapping(), Duration::from_secs(5)).expect("connector");
    upsert(&c, "CH-001", &chair("Chair", None))
        .await
        .expect("apply");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "no source-items call");
    let stock = &fake.product("all", "CH-001").expect("p")["extension_attributes"]["stock_item"];
    assert_eq!(stock, &json!({"qty": 12, "is_in_stock": true}));
    fake.assert_contract();
}

fn oauth_credentials(consumer_secret: &str) -> OAuthCredentials {
    OAuthCredentials {
        consumer_key: "ck-1".into(),
        consumer_secret: consumer_secret.into(),
        access_token: "at-1".into(),
        access_token_secret: "ats/1+x".into(),
    }
}

#[tokio::test]
async fn oauth_signed_requests_are_accepted_and_bad_signatures_refused() {
    let fake = Fake::start(FakeAuth::OAuth(oauth_credentials("cs 1"))).await;
    let good = connector(
        settings(&fake, MagentoAuth::OAuth1(oauth_credentials("cs 1"))),
        mapping(),
        Duration::from_secs(5),
    )
    .expect("connector");
    upsert(&good, "SKU/with space", &chair("Chair", Some("Stuhl")))
        .await
        .expect("signed");
    assert!(fake.product("all", "SKU/with space").is_some());
    assert!(fake.product("de", "SKU/with space").is_some());

    let bad = connector(
        settings(&fake, MagentoAuth::OAuth1(oauth_credentials("wrong"))),
        mapping(),
        Duration::from_secs(5),
    )
    .expect("connector");
    let error = upsert(&bad, "CH-9", &chair("Chair", None))
        .await
        .expect_err("401");
    let ApplyError::Permanent { message } = error else {
        panic!("{error:?}")
    };
    assert!(
        message.starts_with(
            "HTTP 401: The consumer isn't authorized to access Magento_Catalog::products."
        ),
        "{message}"
    );
    assert!(message.contains("enable_integration_as_bearer"));
    fake.assert_contract();
}

#[tokio::test]
async fn a_refused_bearer_token_explains_the_2_4_4_default() {
    let fake = Fake::start(FakeAuth::Bearer(TOKEN.into())).await;
    let auth = MagentoAuth::Bearer {
        access_token: "stale".into(),
    };
    let c = connector(settings(&fake, auth), mapping(), Duration::from_secs(5)).expect("c");
    let error = upsert(&c, "CH-1", &chair("Chair", None))
        .await
        .expect_err("401");
    assert!(
        error
            .message()
            .contains("oauth/consumer/enable_integration_as_bearer")
    );
    assert!(!error.message().contains("stale"), "never echo a token");
}

#[tokio::test]
async fn magento_errors_are_classified_with_their_message() {
    let (fake, c) = start().await;
    let p = chair("Chair", None);
    fake.fail_next(
        400,
        r#"{"message":"The value of attribute \"%1\" must be set.","parameters":["price"]}"#,
    );
    assert_eq!(
        upsert(&c, "CH-1", &p).await,
        Err(ApplyError::permanent(
            "HTTP 400: The value of attribute \"price\" must be set."
        ))
    );
    fake.fail_next(503, "maintenance");
    assert!(matches!(
        upsert(&c, "CH-1", &p).await,
        Err(ApplyError::Retryable { .. })
    ));
    fake.fail_next(429, r#"{"message":"Too many requests"}"#);
    assert!(matches!(
        upsert(&c, "CH-1", &p).await,
        Err(ApplyError::Throttled { .. })
    ));
    // A failed store view says which one; the retry repeats the idempotent PUTs.
    fake.fail_next(200, r#"{"id": 1}"#);
    fake.fail_next(500, r#"{"message":"Something went wrong."}"#);
    let mut translated = p.clone();
    translated
        .values
        .get_mut("name")
        .expect("name")
        .push(value(Some("de_DE"), json!("Stuhl")));
    let error = upsert(&c, "CH-1", &translated)
        .await
        .expect_err("store view");
    assert_eq!(
        error.message(),
        "store view de: HTTP 500: Something went wrong."
    );
    upsert(&c, "CH-1", &translated).await.expect("retry");

    // Data Magento cannot take fails before any request.
    let before = fake.requests().len();
    let mut nameless = p.clone();
    nameless.values.remove("name");
    let error = upsert(&c, "CH-2", &nameless).await.expect_err("no name");
    assert!(error.message().contains("no name"), "{error}");
    let error = upsert(&c, &"X".repeat(65), &p).await.expect_err("long sku");
    assert!(matches!(error, ApplyError::Permanent { .. }));
    assert_eq!(fake.requests().len(), before);
    fake.assert_contract();
}

#[tokio::test]
async fn delete_policy_deletes_and_a_missing_product_is_done() {
    let fake = Fake::start(FakeAuth::Bearer(TOKEN.into())).await;
    let mut s = settings(&fake, bearer());
    s.deletion = DeletionPolicy::Delete;
    let c = connector(s, mapping(), Duration::from_secs(5)).expect("c");
    upsert(&c, "CH-1", &chair("Chair", None))
        .await
        .expect("create");
    delete(&c, "CH-1").await.expect("delete");
    assert!(fake.product("all", "CH-1").is_none());
    delete(&c, "CH-1").await.expect("already gone");
    let deletes = fake
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 2);
    fake.assert_contract();
}

#[tokio::test]
async fn disable_policy_sets_status_2_and_skips_missing_products() {
    let (fake, c) = start().await;
    upsert(&c, "CH-1", &chair("Chair", None))
        .await
        .expect("create");
    let applied = delete(&c, "CH-1").await.expect("disable");
    assert_eq!(applied.remote_ids["product_id"], "1");
    let product = fake.product("all", "CH-1").expect("kept");
    assert_eq!(product["status"], 2);
    assert_eq!(product["name"], "Chair");
    let before = fake.requests().len();
    delete(&c, "NEVER-SENT").await.expect("nothing to disable");
    let after = fake.requests();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[before].method, "GET");
    fake.assert_contract();
}

#[tokio::test]
async fn product_models_are_refused_clearly() {
    let (_fake, c) = start().await;
    let ids = RemoteIds::new();
    let snapshot = chair("Chair", None);
    let result = c
        .apply(ApplyRequest {
            target: "magento",
            product_key: "MODEL-1",
            desired: Desired::Upsert {
                kind: ProductKind::ProductModel,
                snapshot: &snapshot,
                variants: &[],
            },
            remote_ids: &ids,
            idempotency_key: "k",
            attempt: 1,
            change: Default::default(),
        })
        .await;
    assert!(matches!(result, Err(ApplyError::Permanent { .. })));
}

/// Every mapping field and setting at once, in both stock modes: each body the connector
/// can build passes the Swagger, strictly.
#[test]
fn every_body_shape_matches_the_swagger() {
    let snapshot = chair("Chair", Some("Stuhl"));
    let mut m = mapping();
    // The text fields not mapped yet read the localized description.
    for field in MAPPING_FIELDS {
        m.fields
            .entry((*field).to_owned())
            .or_insert_with(|| localized("description", "en_US"));
    }
    m.fields
        .insert("special_price".into(), FieldSource::attribute("weight"));
    m.fields
        .insert("cost".into(), FieldSource::attribute("weight"));
    m.fields
        .insert("status".into(), FieldSource::attribute("@enabled"));
    for msi in [true, false] {
        let mut s = MagentoSettings::new("http://x", bearer());
        s.msi = msi;
        s.store_views.insert("de_DE".into(), "de".into());
        s.categories.insert("seating".into(), 3);
        s.custom_attributes
            .insert("care".into(), localized("care", "en_US"));
        let ctx = mapping::BodyContext {
            settings: &s,
            mapping: &m,
        };
        let bodies = mapping::product_bodies(&ctx, "SKU-1", &snapshot).expect("bodies");
        let product = "/V1/products/{sku}";
        let mut checks = vec![("PUT", product, bodies.global.clone())];
        checks.extend(
            bodies
                .store_views
                .iter()
                .map(|(_, b)| ("PUT", product, b.clone())),
        );
        checks.extend(
            bodies
                .source_items
                .iter()
                .map(|b| ("POST", "/V1/inventory/source-items", b.clone())),
        );
        checks.push(("PUT", product, mapping::disable_body("SKU-1")));
        assert_eq!(checks.len(), if msi { 4 } else { 3 });
        for (method, path, body) in checks {
            assert_eq!(
                schema::validate(method, path, &body),
                Vec::<String>::new(),
                "{body:#}"
            );
        }
        assert_eq!(
            attr(&bodies.global["product"], "special_price"),
            Some("2.5")
        );
    }
}
