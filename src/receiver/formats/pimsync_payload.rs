//! pimsync's own JSON payload, carried by the `standard-webhooks` and `hmac` formats. Any
//! PIM or script that can sign a request can feed pimsync with it.
//!
//! # Shape
//!
//! ```json
//! {"changes": [
//!   {"key": "SKU-1",
//!    "uuid": "0b8e2c55-6a4e-4a8a-9a3c-2f7e0e4f2a11",
//!    "kind": "product",
//!    "op": "upsert",
//!    "version": 17,
//!    "partial": false,
//!    "product": {"family": "chairs", "categories": ["seating"], "enabled": true,
//!                "parent": null,
//!                "values": {"name": [{"locale": "en_US", "scope": null, "data": "Chair"}]}},
//!    "event_id": "evt-42"}
//! ]}
//! ```
//!
//! The body is an object with one field, `changes`: an array of 1 to 1000 changes. Each
//! change has these fields (`null` is the same as leaving a field out):
//!
//! | field      | type                             | meaning |
//! |------------|----------------------------------|---------|
//! | `key`      | string, required                 | The product key (SKU / Akeneo identifier): non-empty, at most 255 characters, no control characters. |
//! | `uuid`     | string, optional                 | The PIM's stable id for the product. |
//! | `kind`     | `"product"` or `"product_model"` | Default `"product"`. A product model is the parent of variants. |
//! | `op`       | `"upsert"` or `"delete"`, required | Make the product exist with this content, or make it gone. |
//! | `version`  | integer                          | Orders the changes of one product: a change older than the stored one is dropped. |
//! | `updated`  | string, RFC 3339                 | Alternative to `version`: the time of the change (e.g. `"2026-12-04T10:00:00Z"`), stored as microseconds since the Unix epoch. |
//! | `partial`  | boolean                          | Default `false`. `true`: the `product` values are merged into the stored product, value by value (attribute, locale, scope); other fields present in `product` replace the stored ones. Only with `"op": "upsert"`. |
//! | `product`  | object                           | Required with `"op": "upsert"`, not allowed with `"op": "delete"`. |
//! | `event_id` | string, optional                 | The sender's id for the change, kept for audit. |
//!
//! Exactly one of `version` and `updated` must be given. Both end up as one integer per
//! product and are compared as such, so a sender should stick to one of them.
//!
//! `product` has these fields, all optional:
//!
//! | field        | type               | meaning |
//! |--------------|--------------------|---------|
//! | `family`     | string             | The product family. |
//! | `categories` | array of strings   | Category codes. |
//! | `enabled`    | boolean            | Whether the product is enabled (targets may filter on it). |
//! | `parent`     | string             | The code of the product model this product is a variant of. |
//! | `values`     | object             | Attribute code → array of `{"locale": string or null, "scope": string or null, "data": any JSON}`. `locale` and `scope` may be left out (null: the attribute is not localizable / not scopable); `data` is required. One entry per (locale, scope). |
//!
//! Unknown fields, at any level, are rejected with an error naming them, so a typo (say
//! `verison`) cannot silently drop data. Errors point at the field, e.g.
//! `changes[3].op: expected "upsert" or "delete"`; the whole request is rejected (400) and
//! none of its changes is stored.

use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};
use serde_json::Value;

use super::Rejection;
use super::json::{Obj, Strictness, malformed, parse_body, quoted, snapshot};

/// Most changes in one request: bounds the work (and the transaction) one request causes.
pub const MAX_CHANGES: usize = 1000;
/// Longest product key, in characters: fits every target's SKU column.
pub const MAX_KEY_CHARS: usize = 255;

const CHANGE_FIELDS: &[&str] = &[
    "key", "uuid", "kind", "op", "version", "updated", "partial", "product", "event_id",
];
const PRODUCT_FIELDS: &[&str] = &["family", "categories", "enabled", "parent", "values"];

/// Parses a pimsync payload into canonical changes, or explains the first problem found.
pub fn parse(body: &[u8]) -> Result<Vec<ProductChange>, Rejection> {
    let root = parse_body(body)?;
    let root = Obj::new(&root, "")?;
    root.deny_unknown(&["changes"])?;
    let Some(changes) = root.opt_array("changes")? else {
        return Err(malformed("changes", "required"));
    };
    if changes.is_empty() {
        return Err(malformed("changes", "must not be empty"));
    }
    if changes.len() > MAX_CHANGES {
        return Err(malformed(
            "changes",
            format!(
                "{} changes, at most {MAX_CHANGES} allowed per request",
                changes.len()
            ),
        ));
    }
    changes
        .iter()
        .enumerate()
        .map(|(i, change)| parse_change(change, &format!("changes[{i}]")))
        .collect()
}

fn parse_change(value: &Value, path: &str) -> Result<ProductChange, Rejection> {
    let change = Obj::new(value, path)?;
    change.deny_unknown(CHANGE_FIELDS)?;

    let key = change.str("key")?;
    validate_key(key).map_err(|m| malformed(&change.field_path("key"), m))?;
    let uuid = change.opt_str("uuid")?;
    if uuid == Some("") {
        return Err(malformed(&change.field_path("uuid"), "must not be empty"));
    }

    let kind = match change.opt_str("kind")? {
        None | Some("product") => ProductKind::Product,
        Some("product_model") => ProductKind::ProductModel,
        Some(other) => {
            return Err(malformed(
                &change.field_path("kind"),
                format!(
                    r#"expected "product" or "product_model", got {}"#,
                    quoted(other)
                ),
            ));
        }
    };
    let op = match change.str("op")? {
        "upsert" => ChangeOp::Upsert,
        "delete" => ChangeOp::Delete,
        other => {
            return Err(malformed(
                &change.field_path("op"),
                format!(r#"expected "upsert" or "delete", got {}"#, quoted(other)),
            ));
        }
    };

    let version = match (change.opt_i64("version")?, change.opt_micros("updated")?) {
        (Some(version), None) => version,
        (None, Some(micros)) => micros,
        (Some(_), Some(_)) => {
            return Err(malformed(
                path,
                r#"give one of "version" and "updated", not both"#,
            ));
        }
        (None, None) => return Err(malformed(path, r#""version" or "updated" required"#)),
    };

    let partial = change.opt_bool("partial")?.unwrap_or(false);
    let body = match op {
        ChangeOp::Upsert => {
            let product = change.obj("product")?;
            product.deny_unknown(PRODUCT_FIELDS)?;
            let snapshot = snapshot(&product, Strictness::Strict)?;
            if partial {
                ChangeBody::Partial(snapshot)
            } else {
                ChangeBody::Full(snapshot)
            }
        }
        ChangeOp::Delete => {
            if change.has("product") {
                return Err(malformed(
                    &change.field_path("product"),
                    "not allowed with \"op\": \"delete\"",
                ));
            }
            if partial {
                return Err(malformed(
                    &change.field_path("partial"),
                    "not allowed with \"op\": \"delete\"",
                ));
            }
            ChangeBody::None
        }
    };

    Ok(ProductChange {
        key: Some(key.to_owned()),
        uuid: uuid.map(str::to_owned),
        kind,
        op,
        version,
        body,
        event_id: change.opt_str("event_id")?.map(str::to_owned),
    })
}

/// Keys end up in URLs, SQL rows and targets' SKU fields: keep them printable and bounded.
fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(format!("longer than {MAX_KEY_CHARS} characters"));
    }
    if key.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::formats::test_support::malformed as err;
    use pimsync_connectors::{AttributeValue, Snapshot};
    use serde_json::json;

    fn one(change: Value) -> Result<Vec<ProductChange>, Rejection> {
        parse(json!({ "changes": [change] }).to_string().as_bytes())
    }

    #[test]
    fn full_upsert_with_every_field() {
        let changes = parse(
            br#"{"changes": [{"key": "SKU-1", "uuid": "u-1", "kind": "product_model",
                "op": "upsert", "version": 17, "partial": false, "event_id": "e-1",
                "product": {"family": "chairs", "categories": ["seating"], "enabled": true,
                    "parent": null,
                    "values": {"name": [{"locale": "en_US", "scope": null, "data": "Chair"}],
                               "weight": [{"data": {"amount": 3, "unit": "KILOGRAM"}}]}}}]}"#,
        )
        .unwrap();
        let mut values = std::collections::BTreeMap::new();
        values.insert(
            "name".to_owned(),
            vec![AttributeValue {
                locale: Some("en_US".into()),
                scope: None,
                data: json!("Chair"),
            }],
        );
        values.insert(
            "weight".to_owned(),
            vec![AttributeValue {
                locale: None,
                scope: None,
                data: json!({"amount": 3, "unit": "KILOGRAM"}),
            }],
        );
        assert_eq!(
            changes,
            vec![ProductChange {
                key: Some("SKU-1".into()),
                uuid: Some("u-1".into()),
                kind: ProductKind::ProductModel,
                op: ChangeOp::Upsert,
                version: 17,
                body: ChangeBody::Full(Snapshot {
                    family: Some("chairs".into()),
                    categories: vec!["seating".into()],
                    enabled: Some(true),
                    parent: None,
                    values,
                }),
                event_id: Some("e-1".into()),
            }]
        );
    }

    #[test]
    fn partial_upsert_with_updated_timestamp() {
        let changes = one(json!({"key": "SKU-2", "op": "upsert", "partial": true,
            "updated": "2026-12-04T10:00:00Z",
            "product": {"values": {"price": [{"scope": "web", "data": "12.50"}]}}}))
        .unwrap();
        let c = &changes[0];
        assert_eq!(c.kind, ProductKind::Product);
        assert_eq!(c.version, 1_796_378_400_000_000);
        assert_eq!(c.uuid, None);
        let ChangeBody::Partial(s) = &c.body else {
            panic!("expected Partial, got {:?}", c.body)
        };
        assert_eq!(s.values["price"][0].scope.as_deref(), Some("web"));
        assert_eq!(s.family, None);
    }

    #[test]
    fn delete() {
        let changes =
            one(json!({"key": "SKU-3", "op": "delete", "version": 5, "product": null})).unwrap();
        assert_eq!(changes[0].op, ChangeOp::Delete);
        assert_eq!(changes[0].body, ChangeBody::None);
        assert_eq!(changes[0].key.as_deref(), Some("SKU-3"));
    }

    #[test]
    fn body_level_errors() {
        assert!(err(parse(b"{")).starts_with("invalid JSON: "));
        assert_eq!(err(parse(b"[]")), "body: expected an object");
        assert_eq!(err(parse(b"{}")), "changes: required");
        assert_eq!(
            err(parse(br#"{"changes": []}"#)),
            "changes: must not be empty"
        );
        assert_eq!(
            err(parse(br#"{"changes": {}}"#)),
            "changes: expected an array"
        );
        assert_eq!(
            err(parse(br#"{"changes": [], "x": 1}"#)),
            r#"body: unknown field "x""#
        );
        let many =
            json!({"changes": vec![json!({"key": "k", "op": "delete", "version": 1}); 1001]});
        assert_eq!(
            err(parse(many.to_string().as_bytes())),
            "changes: 1001 changes, at most 1000 allowed per request"
        );
        let max = json!({"changes": vec![json!({"key": "k", "op": "delete", "version": 1}); 1000]});
        assert_eq!(parse(max.to_string().as_bytes()).unwrap().len(), 1000);
    }

    #[test]
    fn change_level_errors_name_the_field() {
        let ok = json!({"key": "K", "op": "upsert", "version": 1, "product": {}});
        assert!(one(ok.clone()).is_ok());
        let with = |field: &str, value: Value| {
            let mut c = ok.clone();
            c[field] = value;
            err(one(c))
        };
        let without = |field: &str| {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove(field);
            err(one(c))
        };
        assert_eq!(
            err(parse(br#"{"changes": [3]}"#)),
            "changes[0]: expected an object"
        );
        assert_eq!(without("key"), "changes[0].key: required");
        assert_eq!(with("key", json!("")), "changes[0].key: must not be empty");
        assert_eq!(with("key", json!(12)), "changes[0].key: expected a string");
        assert_eq!(
            with("key", json!("é".repeat(256))),
            "changes[0].key: longer than 255 characters"
        );
        assert!(
            one({
                let mut c = ok.clone();
                c["key"] = json!("é".repeat(255));
                c
            })
            .is_ok()
        );
        assert_eq!(
            with("key", json!("a\nb")),
            "changes[0].key: must not contain control characters"
        );
        assert_eq!(
            with("uuid", json!("")),
            "changes[0].uuid: must not be empty"
        );
        assert_eq!(
            with("kind", json!("variant")),
            r#"changes[0].kind: expected "product" or "product_model", got "variant""#
        );
        assert_eq!(without("op"), "changes[0].op: required");
        assert_eq!(
            with("op", json!("foo")),
            r#"changes[0].op: expected "upsert" or "delete", got "foo""#
        );
        assert_eq!(
            with("version", json!("17")),
            "changes[0].version: expected an integer"
        );
        assert_eq!(
            with("version", json!(1.5)),
            "changes[0].version: expected an integer"
        );
        assert_eq!(
            without("version"),
            r#"changes[0]: "version" or "updated" required"#
        );
        assert_eq!(
            with("updated", json!("2026-12-04T10:00:00Z")),
            r#"changes[0]: give one of "version" and "updated", not both"#
        );
        let mut bad_updated = ok.clone();
        bad_updated.as_object_mut().unwrap().remove("version");
        bad_updated["updated"] = json!("yesterday");
        assert_eq!(
            err(one(bad_updated)),
            r#"changes[0].updated: expected an RFC 3339 timestamp, got "yesterday""#
        );
        assert_eq!(
            with("partial", json!("yes")),
            "changes[0].partial: expected true or false"
        );
        assert_eq!(without("product"), "changes[0].product: required");
        assert_eq!(
            with("product", json!([])),
            "changes[0].product: expected an object"
        );
        assert_eq!(
            with("event_id", json!(1)),
            "changes[0].event_id: expected a string"
        );
        assert_eq!(
            with("verison", json!(1)),
            r#"changes[0]: unknown field "verison""#
        );
    }

    #[test]
    fn delete_must_not_carry_content() {
        assert_eq!(
            err(one(
                json!({"key": "K", "op": "delete", "version": 1, "product": {}})
            )),
            r#"changes[0].product: not allowed with "op": "delete""#
        );
        assert_eq!(
            err(one(
                json!({"key": "K", "op": "delete", "version": 1, "partial": true})
            )),
            r#"changes[0].partial: not allowed with "op": "delete""#
        );
    }

    #[test]
    fn product_level_errors_name_the_field() {
        let with_product = |product: Value| {
            err(one(
                json!({"key": "K", "op": "upsert", "version": 1, "product": product}),
            ))
        };
        assert_eq!(
            with_product(json!({"colour": "red"})),
            r#"changes[0].product: unknown field "colour""#
        );
        assert_eq!(
            with_product(json!({"family": 3})),
            "changes[0].product.family: expected a string"
        );
        assert_eq!(
            with_product(json!({"categories": "a"})),
            "changes[0].product.categories: expected an array"
        );
        assert_eq!(
            with_product(json!({"categories": ["a", 1]})),
            "changes[0].product.categories[1]: expected a string"
        );
        assert_eq!(
            with_product(json!({"enabled": 1})),
            "changes[0].product.enabled: expected true or false"
        );
        assert_eq!(
            with_product(json!({"values": []})),
            "changes[0].product.values: expected an object"
        );
        assert_eq!(
            with_product(json!({"values": {"name": "x"}})),
            "changes[0].product.values.name: expected an array of values"
        );
        assert_eq!(
            with_product(json!({"values": {"name": [{"locale": null}]}})),
            "changes[0].product.values.name[0].data: required"
        );
        assert_eq!(
            with_product(json!({"values": {"name": [{"data": 1, "lang": "en"}]}})),
            r#"changes[0].product.values.name[0]: unknown field "lang""#
        );
        assert_eq!(
            with_product(json!({"values": {"name": [{"data": 1}, {"data": 2}]}})),
            "changes[0].product.values.name[1]: duplicate locale and scope"
        );
    }

    #[test]
    fn errors_point_at_the_right_change() {
        let body = json!({"changes": [
            {"key": "A", "op": "delete", "version": 1},
            {"key": "B", "op": "delete", "version": 1},
            {"key": "C", "op": "remove", "version": 1},
        ]});
        assert_eq!(
            err(parse(body.to_string().as_bytes())),
            r#"changes[2].op: expected "upsert" or "delete", got "remove""#
        );
    }
}
