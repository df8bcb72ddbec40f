//! URL and body templates of the generic REST connector.
//!
//! A URL template (`/items/{key}`, `/inventoryItem/eid:{key}`, `/items({id})`) fills each
//! `{name}` with one percent-encoded path segment. A body template is JSON whose strings
//! may hold `{{name}}` or `{{name|filter}}` placeholders: a string that is exactly one
//! placeholder becomes the value with its JSON type (a number stays a number, a missing
//! value becomes `null`); a placeholder inside a longer string is spliced in as text.
//!
//! Names are the built-ins below or the target's mapping fields. Filters: `text`,
//! `number` (a decimal such as a price amount as a JSON number), `bool`, `json` (the PIM
//! value as it is).

use serde_json::Value;

use crate::connector::{ApplyError, Variant};
use crate::erp::encode_path_segment;
use crate::mapping::Mapping;
use crate::product::{ProductKind, Snapshot};

/// Placeholders every template may use: the product key, the remote id remembered from
/// the last apply, the product kind, the idempotency key, the whole canonical product and
/// the keys of its variants.
pub const BUILTINS: &[&str] = &[
    "key",
    "id",
    "kind",
    "idempotency_key",
    "product",
    "variants",
];
pub const FILTERS: &[&str] = &["text", "number", "bool", "json"];

/// What placeholders are filled from during one apply.
pub(crate) struct Context<'a> {
    pub key: &'a str,
    pub id: Option<&'a str>,
    pub kind: ProductKind,
    pub idempotency_key: &'a str,
    pub snapshot: Option<&'a Snapshot>,
    pub variants: &'a [Variant],
    pub mapping: &'a Mapping,
}

impl Context<'_> {
    fn value(&self, name: &str, filter: Option<&str>) -> Result<Value, ApplyError> {
        let raw = match name {
            "key" => Value::String(self.key.to_owned()),
            "id" => self
                .id
                .map_or(Value::Null, |id| Value::String(id.to_owned())),
            "kind" => serde_json::to_value(self.kind).unwrap_or(Value::Null),
            "idempotency_key" => Value::String(self.idempotency_key.to_owned()),
            "product" => self
                .snapshot
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or(Value::Null),
            "variants" => self.variants.iter().map(|v| v.key.clone()).collect(),
            field => return Ok(self.field(field, filter)),
        };
        Ok(apply_filter(raw, filter))
    }

    fn field(&self, field: &str, filter: Option<&str>) -> Value {
        let (Some(source), Some(snapshot)) = (self.mapping.get(field), self.snapshot) else {
            return Value::Null;
        };
        let Some(raw) = source.value(snapshot) else {
            return Value::Null;
        };
        let amount = || source.decimal(snapshot).map_or(Value::Null, Value::String);
        match filter {
            Some("json") => raw,
            Some("number") => apply_filter(amount(), Some("number")),
            // Prices and metrics read as their amount unless the raw value is asked for.
            _ if source.currency.is_some() || matches!(raw, Value::Object(_)) => {
                apply_filter(amount(), filter)
            }
            _ if is_price_list(&raw) => apply_filter(amount(), filter),
            _ => apply_filter(raw, filter),
        }
    }
}

fn is_price_list(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i.get("amount").is_some()))
}

fn apply_filter(value: Value, filter: Option<&str>) -> Value {
    match (filter, value) {
        (_, Value::Null) => Value::Null,
        (Some("text"), value) => Value::String(text(&value)),
        (Some("number"), Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        (Some("bool"), Value::String(s)) => Value::Bool(matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes"
        )),
        (Some("bool"), Value::Number(n)) => Value::Bool(n.as_f64().is_some_and(|f| f != 0.0)),
        (_, value) => value,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Var(String),
}

/// A URL path template, relative to the target's base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("unclosed '{{' in \"{text}\""));
            };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let name = rest[open + 1..open + close].trim();
            if !is_name(name) {
                return Err(format!("invalid placeholder {{{name}}} in \"{text}\""));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in \"{text}\""));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(PathTemplate { parts })
    }

    pub fn names(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(name) => Some(name.as_str()),
                Part::Literal(_) => None,
            })
            .collect()
    }

    pub fn uses(&self, name: &str) -> bool {
        self.names().contains(&name)
    }

    pub(crate) fn render(&self, ctx: &Context<'_>) -> Result<String, ApplyError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(name) => {
                    let value = text(&ctx.value(name, None)?);
                    if value.is_empty() {
                        return Err(ApplyError::permanent(format!(
                            "the URL needs {{{name}}} but the product has no value for it"
                        )));
                    }
                    out.push_str(&encode_path_segment(&value));
                }
            }
        }
        Ok(out)
    }
}

/// A JSON body template.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyTemplate {
    json: Value,
}

impl BodyTemplate {
    pub fn parse(text: &str) -> Result<BodyTemplate, String> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
        let template = BodyTemplate { json };
        let mut problems = Vec::new();
        template.walk_strings(&template.json, &mut |s| {
            if let Err(e) = placeholders(s) {
                problems.push(e);
            }
        });
        match problems.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(template),
        }
    }

    /// Every placeholder name, for validation against the mapping.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.walk_strings(&self.json, &mut |s| {
            for (_, _, name, _) in placeholders(s).unwrap_or_default() {
                names.push(name);
            }
        });
        names
    }

    fn walk_strings(&self, value: &Value, f: &mut dyn FnMut(&str)) {
        match value {
            Value::String(s) => f(s),
            Value::Array(items) => items.iter().for_each(|v| self.walk_strings(v, f)),
            Value::Object(map) => map.values().for_each(|v| self.walk_strings(v, f)),
            _ => {}
        }
    }

    pub(crate) fn render(&self, ctx: &Context<'_>) -> Result<Value, ApplyError> {
        render_value(&self.json, ctx)
    }
}

fn render_value(value: &Value, ctx: &Context<'_>) -> Result<Value, ApplyError> {
    Ok(match value {
        Value::String(s) => {
            // Parsed at construction: a failure here cannot happen, but is not a panic.
            let found = placeholders(s).map_err(ApplyError::permanent)?;
            match found.as_slice() {
                [] => value.clone(),
                [(0, end, name, filter)] if *end == s.len() => {
                    ctx.value(name, filter.as_deref())?
                }
                _ => {
                    let mut out = String::new();
                    let mut at = 0;
                    for (start, end, name, filter) in &found {
                        out.push_str(&s[at..*start]);
                        out.push_str(&text(&ctx.value(name, filter.as_deref())?));
                        at = *end;
                    }
                    out.push_str(&s[at..]);
                    Value::String(out)
                }
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx)?)))
                .collect::<Result<_, ApplyError>>()?,
        ),
        other => other.clone(),
    })
}

type Placeholder = (usize, usize, String, Option<String>);

/// The `{{name|filter}}` placeholders of a string: (start, end, name, filter).
fn placeholders(s: &str) -> Result<Vec<Placeholder>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = s[from..].find("{{").map(|i| from + i) {
        let Some(close) = s[open..].find("}}").map(|i| open + i) else {
            return Err(format!("unclosed '{{{{' in \"{s}\""));
        };
        let inner = &s[open + 2..close];
        let (name, filter) = match inner.split_once('|') {
            Some((name, filter)) => (name.trim(), Some(filter.trim())),
            None => (inner.trim(), None),
        };
        if !is_name(name) {
            return Err(format!("invalid placeholder {{{{{inner}}}}}"));
        }
        if let Some(filter) = filter.filter(|f| !FILTERS.contains(f)) {
            return Err(format!(
                "unknown filter \"{filter}\" in {{{{{inner}}}}} (expected one of: {})",
                FILTERS.join(", ")
            ));
        }
        out.push((open, close + 2, name.to_owned(), filter.map(str::to_owned)));
        from = close + 2;
    }
    Ok(out)
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::FieldSource;
    use crate::product::AttributeValue;
    use serde_json::json;

    fn ctx_parts() -> (Snapshot, Mapping) {
        let mut s = Snapshot::default();
        let mut put = |name: &str, data: Value| {
            let value = AttributeValue {
                locale: None,
                scope: None,
                data,
            };
            s.values.insert(name.into(), vec![value]);
        };
        put("title", json!("Oak \"Chair\""));
        put("price", json!([{"amount": "49.90", "currency": "EUR"}]));
        put("stock", json!(12));
        put("web", json!("true"));
        let mut m = Mapping::default();
        for (field, attribute) in [
            ("name", "title"),
            ("price", "price"),
            ("stock", "stock"),
            ("web", "web"),
            ("ean", "ean"),
        ] {
            m.fields
                .insert(field.into(), FieldSource::attribute(attribute));
        }
        (s, m)
    }

    #[test]
    fn bodies_keep_types_and_splice_text() {
        let (s, m) = ctx_parts();
        let ctx = Context {
            key: "SKU 1",
            id: Some("42"),
            kind: ProductKind::Product,
            idempotency_key: "pimsync-abc",
            snapshot: Some(&s),
            variants: &[],
            mapping: &m,
        };
        let t = BodyTemplate::parse(
            r#"{"itemId": "{{key}}", "displayName": "{{name}} ({{key}})", "unitPrice": "{{price|number}}",
                "priceText": "{{price}}", "inventory": "{{stock}}", "web": "{{web|bool}}", "gtin": "{{ean}}",
                "lines": [{"ref": "{{id}}", "fixed": 3}], "kind": "{{kind}}"}"#,
        )
        .unwrap();
        assert_eq!(
            t.render(&ctx).unwrap(),
            json!({"itemId": "SKU 1", "displayName": "Oak \"Chair\" (SKU 1)", "unitPrice": 49.9,
                   "priceText": "49.90", "inventory": 12, "web": true, "gtin": null,
                   "lines": [{"ref": "42", "fixed": 3}], "kind": "product"})
        );
        let mut names = t.names();
        names.sort();
        names.dedup();
        assert_eq!(
            names,
            ["ean", "id", "key", "kind", "name", "price", "stock", "web"]
        );

        let p = PathTemplate::parse("/record/v1/inventoryItem/eid:{key}").unwrap();
        assert_eq!(
            p.render(&ctx).unwrap(),
            "/record/v1/inventoryItem/eid:SKU%201"
        );
        assert!(p.uses("key") && !p.uses("id"));
        let p = PathTemplate::parse("/items({id})").unwrap();
        assert_eq!(p.render(&ctx).unwrap(), "/items(42)");
        let ctx = Context { id: None, ..ctx };
        assert!(matches!(p.render(&ctx), Err(ApplyError::Permanent { .. })));
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(BodyTemplate::parse("{not json").is_err());
        assert!(BodyTemplate::parse(r#"{"a": "{{name"}"#).is_err());
        assert!(BodyTemplate::parse(r#"{"a": "{{name|upper}}"}"#).is_err());
        assert!(BodyTemplate::parse(r#"{"a": "{{}}"}"#).is_err());
        assert!(PathTemplate::parse("/items/{key").is_err());
        assert!(PathTemplate::parse("/items/key}").is_err());
        assert!(PathTemplate::parse("/items/{a b}").is_err());
    }
}
