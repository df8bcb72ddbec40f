//! Request bodies checked against Adobe's Swagger 2.0 of the admin REST API (2.4.9), read
//! from ../shared at test time.
//!
//! The validator covers the subset those bodies use: `type`, `properties`, `items`, `$ref`
//! to `#/definitions/…` and `required`. Two adjustments, per ../shared/schemas/README.md:
//! the Swagger marks every getter of a data interface as required, which real Magento does
//! not demand, so a few definitions have their `required` list relaxed (listed below); and
//! the Swagger never says `additionalProperties: false` while Magento silently drops unknown
//! keys, so this validator is strict and flags any key the schema does not name — a typo
//! would otherwise vanish without an error on either side.

use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/schemas/magento/admin-schema-2.4.9.yaml"
);

/// Definitions whose `required` list is over-wide, with what real Magento needs instead.
const RELAXED: &[(&str, &[&str])] = &[
    // 23 "required" fields; Magento fills every one it is not given from the config.
    ("catalog-inventory-data-stock-item-interface", &[]),
];

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(SCHEMA_PATH)
            .unwrap_or_else(|e| panic!("cannot read {SCHEMA_PATH}: {e}"));
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {SCHEMA_PATH}: {e}"))
    })
}

/// The body schema of an operation: paths → method → parameters[in=body].schema.
pub fn body_schema(method: &str, path: &str) -> &'static Value {
    let operation = &schema()["paths"][path][method.to_ascii_lowercase()];
    let parameters = operation["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no operation {method} {path} in the schema"));
    parameters
        .iter()
        .find(|p| p["in"] == "body")
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {path} takes no body"))
}

/// Every problem of `body` against the operation's schema, as `path: problem` lines.
pub fn validate(method: &str, path: &str, body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(body_schema(method, path), body, "$", &mut errors);
    errors
}

fn resolve(node: &'static Value) -> (&'static Value, Option<&'static str>) {
    let mut node = node;
    let mut name = None;
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let Some(definition) = reference.strip_prefix("#/definitions/") else {
            panic!("unsupported $ref {reference}");
        };
        name = Some(definition);
        node = &schema()["definitions"][definition];
        assert!(!node.is_null(), "dangling $ref {reference}");
    }
    (node, name)
}

fn check(schema: &'static Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let (schema, definition) = resolve(schema);
    let expected = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let fits = match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        other => panic!("unsupported type {other} at {at}"),
    };
    if !fits {
        errors.push(format!("{at}: expected {expected}, found {value}"));
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, item) in map {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => check(property, item, &format!("{at}.{key}"), errors),
                    None => errors.push(format!(
                        "{at}.{key}: unknown key (not in {})",
                        definition.unwrap_or("the body schema")
                    )),
                }
            }
            let relaxed = definition.and_then(|d| RELAXED.iter().find(|(name, _)| *name == d));
            let required: Vec<&str> = match relaxed {
                Some((_, fields)) => fields.to_vec(),
                None => schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
            };
            for field in required {
                if !map.contains_key(field) {
                    errors.push(format!("{at}: missing required {field}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// The Swagger path template of a request path below `/V1/`.
pub fn operation_path(path: &str) -> &'static str {
    if path == "inventory/source-items" {
        "/V1/inventory/source-items"
    } else if path.starts_with("products/") && path.matches('/').count() == 1 {
        "/V1/products/{sku}"
    } else {
        panic!("no schema mapping for request path {path}")
    }
}

#[test]
fn the_validator_flags_unknown_keys_wrong_types_and_missing_fields() {
    let body = serde_json::json!({"product": {
        "sku": "A",
        "name": 5,
        "colour": "red",
        "custom_attributes": [{"attribute_code": "url_key"}],
        "extension_attributes": {"stock_item": {"qty": 1, "is_in_stock": true}, "website_ids": ["1"]}
    }});
    let errors = validate("PUT", "/V1/products/{sku}", &body);
    assert_eq!(
        errors,
        [
            "$.product.colour: unknown key (not in catalog-data-product-interface)",
            "$.product.custom_attributes[0]: missing required value",
            "$.product.extension_attributes.website_ids[0]: expected integer, found \"1\"",
            "$.product.name: expected string, found 5",
        ]
    );
    // The stock item's 23 "required" fields are relaxed; the product's sku is not.
    let errors = validate(
        "PUT",
        "/V1/products/{sku}",
        &serde_json::json!({"product": {}}),
    );
    assert_eq!(errors, ["$.product: missing required sku"]);
    let errors = validate("POST", "/V1/inventory/source-items", &serde_json::json!({}));
    assert_eq!(errors, ["$: missing required sourceItems"]);
}
