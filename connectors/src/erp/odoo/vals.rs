//! Turns a product snapshot into the `vals` of an Odoo `create`/`write`, through the
//! target's mapping.

use serde_json::{Map, Value};

use crate::connector::ApplyError;
use crate::mapping::Mapping;
use crate::product::Snapshot;

/// The Odoo product fields the mapping may fill, besides custom `x_` fields. `categ` is
/// resolved to `categ_id` (by configured id or by category name).
pub const FIELDS: &[&str] = &[
    "name",
    "default_code",
    "barcode",
    "list_price",
    "description_sale",
    "weight",
    "categ",
    "active",
];

/// Whether `field` may appear in an Odoo target's mapping.
pub fn is_mappable(field: &str) -> bool {
    FIELDS.contains(&field) || (field.len() > 2 && field.starts_with("x_"))
}

/// The vals to write, and the category name still to be resolved to an id.
pub(super) struct Vals {
    pub vals: Map<String, Value>,
    pub categ: Option<String>,
}

/// Builds the vals. The key field always carries the product key: it is written in the
/// same transaction as the record, which is what makes a lost `create` response
/// recoverable (see `OdooConnector::find`).
pub(super) fn build(
    mapping: &Mapping,
    snapshot: &Snapshot,
    product_key: &str,
    key_field: &str,
) -> Result<Vals, ApplyError> {
    let mut vals = Map::new();
    let mut categ = None;
    for (field, source) in &mapping.fields {
        let value = match field.as_str() {
            // Required by Odoo; an empty name is never sent (the key stands in on create).
            "name" => source.text(snapshot).map(Value::String),
            // Char/text fields: a value the PIM no longer has is cleared in Odoo too.
            "default_code" | "barcode" | "description_sale" => Some(
                source
                    .text(snapshot)
                    .map_or(Value::Bool(false), Value::String),
            ),
            "list_price" | "weight" => match source.decimal(snapshot) {
                Some(text) => Some(number(field, &text)?),
                None => None,
            },
            "active" => match source.value(snapshot) {
                Some(value) => Some(Value::Bool(truthy(field, &value)?)),
                None => None,
            },
            "categ" => {
                categ = source
                    .text(snapshot)
                    .or_else(|| source.list(snapshot).into_iter().next());
                None
            }
            // Custom fields take the PIM's value as it is; metrics and prices as amounts.
            _ => Some(match source.value(snapshot) {
                None => Value::Bool(false),
                Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v,
                Some(_) => source
                    .decimal(snapshot)
                    .or_else(|| source.text(snapshot))
                    .map_or(Value::Bool(false), Value::String),
            }),
        };
        if let Some(value) = value {
            vals.insert(field.clone(), value);
        }
    }
    vals.insert(key_field.to_owned(), Value::String(product_key.to_owned()));
    // An upsert means "this product exists": bring back a record archived by a deletion,
    // unless the mapping decides.
    vals.entry("active").or_insert(Value::Bool(true));
    Ok(Vals { vals, categ })
}

fn number(field: &str, text: &str) -> Result<Value, ApplyError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| ApplyError::permanent(format!("{field}: \"{text}\" is not a number")))
}

fn truthy(field: &str, value: &Value) -> Result<bool, ApplyError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err(ApplyError::permanent(format!(
                "{field}: \"{s}\" is not a boolean"
            ))),
        },
        _ => Err(ApplyError::permanent(format!("{field}: not a boolean"))),
    }
}

/// The `ir.model.data` name of a product key: Odoo external ids may not contain spaces
/// or dots, so everything but ASCII letters, digits and `-` is written as `_XX` (hex).
/// Escaping `_` too keeps the mapping one-to-one.
pub(super) fn external_name(prefix: &str, product_key: &str) -> String {
    let mut out = format!("{prefix}_");
    for byte in product_key.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::FieldSource;
    use crate::product::AttributeValue;
    use serde_json::json;

    #[test]
    fn mapped_fields_become_vals() {
        let mut snapshot = Snapshot::default();
        let mut put = |name: &str, data: Value| {
            snapshot.values.insert(
                name.into(),
                vec![AttributeValue {
                    locale: None,
                    scope: None,
                    data,
                }],
            );
        };
        put("title", json!("Chair"));
        put("price", json!([{"amount": "49.90", "currency": "EUR"}]));
        put("weight", json!({"amount": "2.5", "unit": "KILOGRAM"}));
        put("material", json!("oak"));
        put("category", json!("Furniture"));
        let mut mapping = Mapping::default();
        for (field, attribute) in [
            ("name", "title"),
            ("list_price", "price"),
            ("weight", "weight"),
            ("x_material", "material"),
            ("barcode", "ean"),
            ("categ", "category"),
        ] {
            mapping
                .fields
                .insert(field.into(), FieldSource::attribute(attribute));
        }
        let built = build(&mapping, &snapshot, "SKU-1", "default_code").unwrap();
        assert_eq!(
            Value::Object(built.vals),
            json!({
                "name": "Chair", "list_price": 49.9, "weight": 2.5, "x_material": "oak",
                "barcode": false, "default_code": "SKU-1", "active": true
            })
        );
        assert_eq!(built.categ.as_deref(), Some("Furniture"));
    }

    #[test]
    fn external_names_are_one_to_one_and_valid() {
        assert_eq!(external_name("template", "SKU-1"), "template_SKU-1");
        assert_eq!(
            external_name("template", "a.b c_d"),
            "template_a_2eb_20c_5fd"
        );
        assert_ne!(external_name("t", "a_2e"), external_name("t", "a."));
    }
}
