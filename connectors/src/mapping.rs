//! Per-target field mapping: which PIM attribute (with locale, scope and currency) feeds
//! which platform field. The config declares it; each connector decides which platform
//! fields exist and how to send them. This module only reads values out of a snapshot.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::product::Snapshot;

/// Where a platform field's value comes from. `attribute` names a PIM attribute, or one of
/// the product's own properties: `@family`, `@categories`, `@enabled`, `@parent`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSource {
    pub attribute: String,
    /// For localizable attributes, e.g. `en_US`.
    pub locale: Option<String>,
    /// For scopable attributes: the channel, e.g. `ecommerce`.
    pub scope: Option<String>,
    /// For price collections: which currency's amount.
    pub currency: Option<String>,
}

impl FieldSource {
    pub fn attribute(name: &str) -> FieldSource {
        FieldSource {
            attribute: name.to_owned(),
            ..Default::default()
        }
    }

    /// The raw value: the one for this locale and scope; a value without locale (or scope)
    /// serves any locale (or scope), since the attribute is then not localizable (scopable).
    pub fn value(&self, snapshot: &Snapshot) -> Option<Value> {
        match self.attribute.as_str() {
            "@family" => return snapshot.family.clone().map(Value::String),
            "@categories" => {
                return Some(Value::Array(
                    snapshot
                        .categories
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ));
            }
            "@enabled" => return snapshot.enabled.map(Value::Bool),
            "@parent" => return snapshot.parent.clone().map(Value::String),
            _ => {}
        }
        let values = snapshot.values.get(&self.attribute)?;
        let fits = |wanted: &Option<String>, have: &Option<String>| {
            have.is_none() || wanted.is_none() || wanted == have
        };
        values
            .iter()
            .filter(|v| fits(&self.locale, &v.locale) && fits(&self.scope, &v.scope))
            // Prefer an exact locale/scope match over a global value.
            .max_by_key(|v| (v.locale.is_some() as u8) + (v.scope.is_some() as u8))
            .map(|v| v.data.clone())
            .filter(|data| !data.is_null())
    }

    /// The value as text: strings as they are, numbers and booleans printed.
    pub fn text(&self, snapshot: &Snapshot) -> Option<String> {
        match self.value(snapshot)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            // A metric ({"amount": 1.5, "unit": "KILOGRAM"}) reads as its amount.
            Value::Object(map) => map.get("amount").and_then(scalar_text),
            Value::Array(_) | Value::Null => None,
        }
    }

    /// A decimal amount as text, exactly as the PIM wrote it (no float rounding). Price
    /// collections (`[{"amount": "9.90", "currency": "EUR"}]`) pick `currency`.
    pub fn decimal(&self, snapshot: &Snapshot) -> Option<String> {
        match self.value(snapshot)? {
            Value::Array(prices) => prices
                .iter()
                .find(|p| {
                    self.currency.is_none()
                        || p.get("currency").and_then(Value::as_str) == self.currency.as_deref()
                })
                .and_then(|p| p.get("amount"))
                .and_then(scalar_text),
            Value::Object(metric) => metric.get("amount").and_then(scalar_text),
            other => scalar_text(&other),
        }
    }

    /// A whole number (stock levels).
    pub fn integer(&self, snapshot: &Snapshot) -> Option<i64> {
        let text = self.decimal(snapshot)?;
        text.parse::<i64>()
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(|f| f.round() as i64))
    }

    /// A list of strings: multi-selects and category lists as they are; a text value split
    /// on commas.
    pub fn list(&self, snapshot: &Snapshot) -> Vec<String> {
        match self.value(snapshot) {
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(other) => scalar_text(&other).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A target's mapping: platform field name → source. Field names are the connector's
/// (e.g. Shopify `title`, Magento `name`, Odoo `list_price`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub fields: BTreeMap<String, FieldSource>,
}

impl Mapping {
    pub fn get(&self, field: &str) -> Option<&FieldSource> {
        self.fields.get(field)
    }

    pub fn text(&self, field: &str, snapshot: &Snapshot) -> Option<String> {
        self.get(field)?.text(snapshot)
    }

    pub fn decimal(&self, field: &str, snapshot: &Snapshot) -> Option<String> {
        self.get(field)?.decimal(snapshot)
    }

    pub fn integer(&self, field: &str, snapshot: &Snapshot) -> Option<i64> {
        self.get(field)?.integer(snapshot)
    }

    pub fn list(&self, field: &str, snapshot: &Snapshot) -> Vec<String> {
        self.get(field)
            .map(|source| source.list(snapshot))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::AttributeValue;
    use serde_json::json;

    fn product() -> Snapshot {
        let mut s = Snapshot {
            family: Some("chairs".into()),
            categories: vec!["sale".into(), "seating".into()],
            enabled: Some(true),
            ..Default::default()
        };
        let v = |locale: Option<&str>, scope: Option<&str>, data: Value| AttributeValue {
            locale: locale.map(str::to_owned),
            scope: scope.map(str::to_owned),
            data,
        };
        s.values.insert(
            "name".into(),
            vec![
                v(Some("en_US"), None, json!("Chair")),
                v(Some("de_DE"), None, json!("Stuhl")),
            ],
        );
        s.values.insert(
            "description".into(),
            vec![
                v(Some("en_US"), Some("ecommerce"), json!("<p>Web</p>")),
                v(Some("en_US"), Some("print"), json!("Print")),
            ],
        );
        s.values.insert(
            "price".into(),
            vec![v(None, None, json!([{"amount": "49.90", "currency": "EUR"}, {"amount": "54.00", "currency": "USD"}]))],
        );
        s.values
            .insert("stock".into(), vec![v(None, None, json!(12))]);
        s.values.insert(
            "weight".into(),
            vec![v(None, None, json!({"amount": "2.5", "unit": "KILOGRAM"}))],
        );
        s.values
            .insert("tags".into(), vec![v(None, None, json!(["new", "oak"]))]);
        s
    }

    fn source(
        attribute: &str,
        locale: Option<&str>,
        scope: Option<&str>,
        currency: Option<&str>,
    ) -> FieldSource {
        FieldSource {
            attribute: attribute.into(),
            locale: locale.map(str::to_owned),
            scope: scope.map(str::to_owned),
            currency: currency.map(str::to_owned),
        }
    }

    #[test]
    fn values_are_picked_by_locale_scope_and_currency() {
        let p = product();
        assert_eq!(
            source("name", Some("de_DE"), None, None)
                .text(&p)
                .as_deref(),
            Some("Stuhl")
        );
        assert_eq!(
            source("description", Some("en_US"), Some("ecommerce"), None)
                .text(&p)
                .as_deref(),
            Some("<p>Web</p>")
        );
        assert_eq!(
            source("price", None, None, Some("USD"))
                .decimal(&p)
                .as_deref(),
            Some("54.00")
        );
        assert_eq!(
            source("price", None, None, Some("EUR"))
                .decimal(&p)
                .as_deref(),
            Some("49.90")
        );
        assert_eq!(source("price", None, None, Some("GBP")).decimal(&p), None);
        // A global value serves any locale.
        assert_eq!(
            source("stock", Some("fr_FR"), None, None).integer(&p),
            Some(12)
        );
        assert_eq!(
            source("weight", None, None, None).decimal(&p).as_deref(),
            Some("2.5")
        );
        assert_eq!(source("tags", None, None, None).list(&p), ["new", "oak"]);
        assert_eq!(source("missing", None, None, None).text(&p), None);
    }

    #[test]
    fn product_properties_are_reachable() {
        let p = product();
        assert_eq!(
            FieldSource::attribute("@family").text(&p).as_deref(),
            Some("chairs")
        );
        assert_eq!(
            FieldSource::attribute("@categories").list(&p),
            ["sale", "seating"]
        );
        assert_eq!(
            FieldSource::attribute("@enabled").text(&p).as_deref(),
            Some("true")
        );
    }
}
