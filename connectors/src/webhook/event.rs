//! The `webhook` target's event: what is sent, and what is remembered between deliveries
//! to say which fields changed.
//!
//! Fields are either the target's mapping (field name → PIM attribute) or, without a
//! mapping, every value of the canonical snapshot under an id like `name:en_US` (see
//! [`value_id`]). A delivery remembers one short fingerprint per field (in the target's
//! remote ids, which the store keeps durably with what was applied), so the next event can
//! list the fields that differ from what this receiver last got — however many changes were
//! coalesced or filtered out in between.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::connector::{RemoteIds, Variant};
use crate::mapping::{FieldSource, Mapping};
use crate::product::{ProductKind, Snapshot};

/// Remote-id keys under which a delivery's fingerprints are remembered (JSON objects).
pub const FIELDS_KEY: &str = "fields";
pub const WATCHED_KEY: &str = "watched";

pub const UPSERTED: &str = "product.upserted";
pub const DELETED: &str = "product.deleted";

/// Field id → fingerprint of its value.
pub type Fingerprints = BTreeMap<String, String>;

/// The id of one attribute value in a snapshot: `attribute`, `attribute:locale`,
/// `attribute:locale:scope`, with `*` for a missing locale when there is a scope
/// (`sku:*:ecommerce`). The same notation names watched attributes in logs.
pub fn value_id(attribute: &str, locale: Option<&str>, scope: Option<&str>) -> String {
    match (locale, scope) {
        (None, None) => attribute.to_owned(),
        (Some(locale), None) => format!("{attribute}:{locale}"),
        (locale, Some(scope)) => format!("{attribute}:{}:{scope}", locale.unwrap_or("*")),
    }
}

/// The fields an event carries.
pub fn fields(
    mapping: &Mapping,
    snapshot: &Snapshot,
    variants: &[Variant],
) -> BTreeMap<String, Value> {
    if !mapping.fields.is_empty() {
        return mapping
            .fields
            .iter()
            .map(|(name, source)| (name.clone(), source.value(snapshot).unwrap_or(Value::Null)))
            .collect();
    }
    let mut out = BTreeMap::new();
    if let Some(family) = &snapshot.family {
        out.insert("@family".to_owned(), json!(family));
    }
    if !snapshot.categories.is_empty() {
        out.insert("@categories".to_owned(), json!(snapshot.categories));
    }
    if let Some(enabled) = snapshot.enabled {
        out.insert("@enabled".to_owned(), json!(enabled));
    }
    if let Some(parent) = &snapshot.parent {
        out.insert("@parent".to_owned(), json!(parent));
    }
    for (attribute, values) in &snapshot.values {
        for value in values {
            let id = value_id(attribute, value.locale.as_deref(), value.scope.as_deref());
            out.insert(id, value.data.clone());
        }
    }
    if !variants.is_empty() {
        let list: Vec<Value> = variants
            .iter()
            .map(|v| json!({"key": v.key, "product": v.snapshot}))
            .collect();
        out.insert("@variants".to_owned(), Value::Array(list));
    }
    out
}

fn fingerprint(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

pub fn fingerprints(fields: &BTreeMap<String, Value>) -> Fingerprints {
    fields
        .iter()
        .map(|(id, value)| (id.clone(), fingerprint(value)))
        .collect()
}

/// The fingerprints remembered under `key`, or None if this receiver never got any (a
/// value that does not decode counts as never: the next event then lists every field).
pub fn remembered(remote_ids: &RemoteIds, key: &str) -> Option<Fingerprints> {
    serde_json::from_str(remote_ids.get(key)?).ok()
}

/// The fields whose value differs from what was last delivered, including fields that
/// were delivered and are gone now; every field when nothing was delivered yet.
pub fn changed(now: &Fingerprints, before: Option<&Fingerprints>) -> Vec<String> {
    let Some(before) = before else {
        return now.keys().cloned().collect();
    };
    let ids: BTreeSet<&String> = now.keys().chain(before.keys()).collect();
    ids.into_iter()
        .filter(|id| now.get(*id) != before.get(*id))
        .cloned()
        .collect()
}

/// What a watched attribute is worth, to tell whether it changed. A bare attribute name
/// watches all of its values (every locale and channel); with a locale, scope or currency
/// it watches the one value the mapping would read.
pub fn watched(sources: &[FieldSource], snapshot: &Snapshot) -> Fingerprints {
    sources
        .iter()
        .map(|source| {
            let whole = source.locale.is_none()
                && source.scope.is_none()
                && source.currency.is_none()
                && !source.attribute.starts_with('@');
            let value = if whole {
                snapshot
                    .values
                    .get(&source.attribute)
                    .map(|values| json!(values))
            } else {
                source.value(snapshot)
            };
            let id = value_id(
                &source.attribute,
                source.locale.as_deref(),
                source.scope.as_deref(),
            );
            (id, fingerprint(&value.unwrap_or(Value::Null)))
        })
        .collect()
}

/// Whether any watched attribute differs from when this receiver last got an event. A
/// receiver that never got one sees a change when any watched attribute has a value.
pub fn watched_changed(now: &Fingerprints, before: Option<&Fingerprints>) -> bool {
    match before {
        Some(before) => now != before,
        None => {
            let empty = fingerprint(&Value::Null);
            now.values().any(|f| *f != empty)
        }
    }
}

/// What an upsert event says about the product.
pub struct Upsert<'a> {
    pub target: &'a str,
    pub product_key: &'a str,
    pub kind: ProductKind,
    pub version: i64,
    pub accepted_at_ms: i64,
    pub changed: &'a [String],
    /// Mapped fields, or None to send the canonical snapshot.
    pub fields: Option<&'a BTreeMap<String, Value>>,
    pub snapshot: &'a Snapshot,
    pub variants: &'a [Variant],
}

/// The Standard Webhooks payload shape: `type`, `timestamp` (when the change was
/// accepted, not when it is sent, so a retried event has the same body) and `data`.
pub fn upserted(event: &Upsert<'_>) -> Value {
    let mut data = Map::new();
    data.insert("target".into(), json!(event.target));
    data.insert("product_key".into(), json!(event.product_key));
    data.insert("kind".into(), json!(event.kind));
    data.insert("version".into(), json!(event.version));
    data.insert("changed".into(), json!(event.changed));
    match event.fields {
        Some(fields) => {
            data.insert("fields".into(), json!(fields));
        }
        None => {
            data.insert("product".into(), json!(event.snapshot));
            if !event.variants.is_empty() {
                let variants: Vec<Value> = event
                    .variants
                    .iter()
                    .map(|v| json!({"key": v.key, "product": v.snapshot}))
                    .collect();
                data.insert("variants".into(), Value::Array(variants));
            }
        }
    }
    json!({
        "type": UPSERTED,
        "timestamp": rfc3339(event.accepted_at_ms),
        "data": data,
    })
}

pub fn deleted(target: &str, product_key: &str, version: i64, accepted_at_ms: i64) -> Value {
    json!({
        "type": DELETED,
        "timestamp": rfc3339(accepted_at_ms),
        "data": {
            "target": target,
            "product_key": product_key,
            "version": version,
        },
    })
}

fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::AttributeValue;

    fn product(description: &str, price: i64) -> Snapshot {
        let mut s = Snapshot {
            family: Some("chairs".into()),
            enabled: Some(true),
            ..Default::default()
        };
        let v = |locale: Option<&str>, scope: Option<&str>, data: Value| AttributeValue {
            locale: locale.map(str::to_owned),
            scope: scope.map(str::to_owned),
            data,
        };
        s.values.insert(
            "description".into(),
            vec![
                v(Some("en_US"), Some("ecommerce"), json!(description)),
                v(Some("de_DE"), Some("ecommerce"), json!("Stuhl")),
            ],
        );
        s.values
            .insert("price".into(), vec![v(None, None, json!(price))]);
        s.values
            .insert("sku".into(), vec![v(None, Some("print"), json!("X"))]);
        s
    }

    #[test]
    fn snapshot_values_get_one_id_each() {
        let ids: Vec<String> = fields(&Mapping::default(), &product("Chair", 5), &[])
            .into_keys()
            .collect();
        assert_eq!(
            ids,
            [
                "@enabled",
                "@family",
                "description:de_DE:ecommerce",
                "description:en_US:ecommerce",
                "price",
                "sku:*:print"
            ]
        );
    }

    #[test]
    fn changed_lists_new_different_and_removed_fields() {
        let none = Mapping::default();
        let first = fingerprints(&fields(&none, &product("Chair", 5), &[]));
        assert_eq!(changed(&first, None).len(), 6);
        let second = fingerprints(&fields(&none, &product("Chair", 6), &[]));
        assert_eq!(changed(&second, Some(&first)), ["price"]);
        let mut third = product("Armchair", 6);
        third.values.remove("sku");
        let third = fingerprints(&fields(&none, &third, &[]));
        assert_eq!(
            changed(&third, Some(&second)),
            ["description:en_US:ecommerce", "sku:*:print"]
        );
    }

    #[test]
    fn mapped_fields_are_named_by_the_mapping() {
        let mut mapping = Mapping::default();
        mapping.fields.insert(
            "text".into(),
            FieldSource {
                attribute: "description".into(),
                locale: Some("en_US".into()),
                scope: Some("ecommerce".into()),
                currency: None,
            },
        );
        mapping
            .fields
            .insert("missing".into(), FieldSource::attribute("nothing"));
        let f = fields(&mapping, &product("Chair", 5), &[]);
        assert_eq!(f["text"], json!("Chair"));
        assert_eq!(f["missing"], Value::Null);
    }

    #[test]
    fn watched_attributes_by_name_or_one_locale() {
        let whole = [FieldSource::attribute("description")];
        let english = [FieldSource {
            locale: Some("en_US".into()),
            ..FieldSource::attribute("description")
        }];
        let (a, b) = (product("Chair", 5), product("Chair", 6));
        // A price change touches neither.
        assert!(!watched_changed(
            &watched(&whole, &b),
            Some(&watched(&whole, &a))
        ));
        let mut german = a.clone();
        german.values.get_mut("description").unwrap()[0].data = json!("Stuhl!");
        german.values.get_mut("description").unwrap()[0].locale = Some("de_DE".into());
        german.values.get_mut("description").unwrap()[1].locale = Some("en_US".into());
        german.values.get_mut("description").unwrap()[1].data = json!("Chair");
        german.normalize();
        assert!(watched_changed(
            &watched(&whole, &german),
            Some(&watched(&whole, &a))
        ));
        assert!(!watched_changed(
            &watched(&english, &german),
            Some(&watched(&english, &a))
        ));
        assert!(watched_changed(
            &watched(&english, &product("Armchair", 5)),
            Some(&watched(&english, &a))
        ));
        // Never delivered: a change when the attribute has a value.
        assert!(watched_changed(&watched(&english, &a), None));
        assert!(!watched_changed(
            &watched(&[FieldSource::attribute("nothing")], &a),
            None
        ));
    }

    #[test]
    fn events_follow_the_standard_webhooks_shape() {
        let p = product("Chair", 5);
        let changed = vec!["price".to_owned()];
        let event = upserted(&Upsert {
            target: "agency",
            product_key: "SKU-1",
            kind: ProductKind::Product,
            version: 7,
            accepted_at_ms: 1_733_349_600_123,
            changed: &changed,
            fields: None,
            snapshot: &p,
            variants: &[],
        });
        assert_eq!(event["type"], "product.upserted");
        assert_eq!(event["timestamp"], "2024-12-04T22:00:00.123Z");
        assert_eq!(event["data"]["product_key"], "SKU-1");
        assert_eq!(event["data"]["changed"], json!(["price"]));
        assert_eq!(event["data"]["product"]["family"], "chairs");
        let gone = deleted("agency", "SKU-1", 8, 0);
        assert_eq!(gone["type"], "product.deleted");
        assert_eq!(gone["data"]["version"], 8);
    }
}
