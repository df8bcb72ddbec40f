//! Tests against the in-process fake Shopify (`fake.rs`) and the schema contract
//! (`contract.rs`).

mod contract;
pub mod fake;
mod scenarios;
mod stock;
mod variants;

use std::time::Duration;

use serde_json::{Value, json};

use super::{OptionAxis, ShopifySettings, connector};
use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds, Variant};
use crate::mapping::{FieldSource, Mapping};
use crate::product::{AttributeValue, ProductKind, Snapshot};
use fake::Fake;

pub fn settings(fake: &Fake) -> ShopifySettings {
    let mut s = ShopifySettings::new("test-shop.myshopify.com", "static-token");
    s.endpoint_override = Some(fake.url.clone());
    s.location_id = Some("42".into());
    s
}

pub fn mapping() -> Mapping {
    let mut m = Mapping::default();
    let mut add = |field: &str, attribute: &str, locale: Option<&str>, currency: Option<&str>| {
        m.fields.insert(
            field.into(),
            FieldSource {
                attribute: attribute.into(),
                locale: locale.map(str::to_owned),
                scope: None,
                currency: currency.map(str::to_owned),
            },
        );
    };
    add("title", "name", Some("en_US"), None);
    add("descriptionHtml", "description", Some("en_US"), None);
    add("vendor", "brand", None, None);
    add("tags", "tags", None, None);
    add("price", "price", None, Some("EUR"));
    add("barcode", "ean", None, None);
    add("weight", "weight", None, None);
    add("stock", "stock", None, None);
    add("images", "images", None, None);
    m
}

pub fn value(data: Value) -> Vec<AttributeValue> {
    vec![AttributeValue {
        locale: None,
        scope: None,
        data,
    }]
}

pub fn product(name: &str, price: &str, stock: i64) -> Snapshot {
    let mut s = Snapshot {
        enabled: Some(true),
        ..Default::default()
    };
    s.values.insert(
        "name".into(),
        vec![AttributeValue {
            locale: Some("en_US".into()),
            scope: None,
            data: json!(name),
        }],
    );
    s.values.insert("brand".into(), value(json!("Acme")));
    s.values.insert("tags".into(), value(json!(["new", "oak"])));
    s.values.insert(
        "price".into(),
        value(json!([{"amount": price, "currency": "EUR"}])),
    );
    s.values.insert("ean".into(), value(json!("4006381333931")));
    s.values.insert(
        "weight".into(),
        value(json!({"amount": "2.5", "unit": "KILOGRAM"})),
    );
    s.values.insert("stock".into(), value(json!(stock)));
    s.values.insert(
        "images".into(),
        value(json!(["https://cdn.example.com/a.jpg"])),
    );
    s
}

pub fn axes() -> Vec<OptionAxis> {
    vec![
        OptionAxis {
            name: "Color".into(),
            source: FieldSource::attribute("color"),
        },
        OptionAxis {
            name: "Size".into(),
            source: FieldSource::attribute("size"),
        },
    ]
}

pub fn variant(key: &str, color: &str, size: &str, stock: i64) -> Variant {
    let mut snapshot = Snapshot::default();
    snapshot.values.insert("color".into(), value(json!(color)));
    snapshot.values.insert("size".into(), value(json!(size)));
    snapshot.values.insert("stock".into(), value(json!(stock)));
    Variant {
        key: key.into(),
        snapshot,
    }
}

pub async fn upsert(
    connector: &dyn Connector,
    key: &str,
    snapshot: &Snapshot,
    remote_ids: &RemoteIds,
    idempotency_key: &str,
    attempt: u32,
) -> Result<Applied, ApplyError> {
    upsert_model(
        connector,
        key,
        ProductKind::Product,
        snapshot,
        &[],
        remote_ids,
        idempotency_key,
        attempt,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub async fn upsert_model(
    connector: &dyn Connector,
    key: &str,
    kind: ProductKind,
    snapshot: &Snapshot,
    variants: &[Variant],
    remote_ids: &RemoteIds,
    idempotency_key: &str,
    attempt: u32,
) -> Result<Applied, ApplyError> {
    connector
        .apply(ApplyRequest {
            target: "shop",
            product_key: key,
            desired: Desired::Upsert {
                kind,
                snapshot,
                variants,
            },
            remote_ids,
            idempotency_key,
            attempt,
            change: Default::default(),
        })
        .await
}

pub async fn delete(
    connector: &dyn Connector,
    key: &str,
    remote_ids: &RemoteIds,
) -> Result<Applied, ApplyError> {
    connector
        .apply(ApplyRequest {
            target: "shop",
            product_key: key,
            desired: Desired::Delete,
            remote_ids,
            idempotency_key: "pimsync-delete",
            attempt: 1,
            change: Default::default(),
        })
        .await
}

pub fn build(settings: ShopifySettings) -> super::ShopifyConnector {
    connector(settings, mapping(), Duration::from_secs(10)).expect("connector")
}
