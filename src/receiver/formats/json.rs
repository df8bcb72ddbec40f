//! A small reader over `serde_json::Value` that reports errors with their path
//! (`events[2].data.resource.values.name[0].locale: expected a string or null`).
//!
//! serde's derive reports a type error without the field it happened in, and a sender
//! fixing a 1000-change batch needs to know which change and which field is wrong, so the
//! formats walk the parsed JSON with these helpers instead.

use std::collections::{BTreeMap, HashSet};

use pimsync_connectors::{AttributeValue, Snapshot};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Rejection;

/// Parses the raw body. serde_json's syntax errors carry a line and column but never echo
/// the input, so they are safe to return.
pub(super) fn parse_body(body: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|e| Rejection::Malformed(format!("invalid JSON: {e}")))
}

pub(super) fn malformed(path: &str, message: impl std::fmt::Display) -> Rejection {
    Rejection::Malformed(format!("{path}: {message}"))
}

/// Quotes a sender-supplied string for an error message, cut short so a huge value cannot
/// blow up a log line.
pub(super) fn quoted(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// RFC 3339 (`2026-12-04T10:00:00Z`, `2020-10-13T05:42:48+00:00`, fractions allowed) to
/// microseconds since the Unix epoch, the unit of timestamp versions.
pub(super) fn micros_since_epoch(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1000)).ok()
}

/// A delivery id that begins with the event's time, in UTC to the microsecond:
/// `2026-12-05T07:00:00.123456Z ev-1`. The inbox's duplicate index is keyed by it, and
/// event ids are random UUIDs: keyed by them alone, every request inserts at a random page
/// of the index, one more 4 KiB page written to the WAL and again to the database file per
/// request. Time first, the index grows at its end, where the pages of one commit are
/// shared. A sender's retry carries the same events, so the same id. A time outside years
/// 0 to 9999 leaves the ids alone.
pub(super) fn timed_delivery_id(micros: i64, ids: &str) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000);
    match at.ok().filter(|at| (0..=9999).contains(&at.year())) {
        Some(at) => match at.format(FORMAT) {
            Ok(time) => format!("{time} {ids}"),
            Err(_) => ids.to_owned(),
        },
        None => ids.to_owned(),
    }
}

/// A JSON object and where it sits in the document.
pub(super) struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub(super) fn new(value: &'a Value, path: impl Into<String>) -> Result<Obj<'a>, Rejection> {
        let path = path.into();
        match value.as_object() {
            Some(map) => Ok(Obj { path, map }),
            None if path.is_empty() => Err(malformed("body", "expected an object")),
            None => Err(malformed(&path, "expected an object")),
        }
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, message: impl std::fmt::Display) -> Rejection {
        malformed(&self.field_path(key), message)
    }

    /// Rejects fields outside `allowed`, naming all of them (a typo such as `verison` would
    /// otherwise be silently ignored and the change applied without a version).
    pub(super) fn deny_unknown(&self, allowed: &[&str]) -> Result<(), Rejection> {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| quoted(k))
            .collect();
        let at = if self.path.is_empty() {
            "body"
        } else {
            &self.path
        };
        match unknown.len() {
            0 => Ok(()),
            1 => Err(malformed(at, format!("unknown field {}", unknown[0]))),
            _ => Err(malformed(
                at,
                format!("unknown fields {}", unknown.join(", ")),
            )),
        }
    }

    /// The field's value; an explicit `null` counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(key, "expected a string")),
        }
    }

    pub(super) fn str(&self, key: &str) -> Result<&'a str, Rejection> {
        self.opt_str(key)?
            .ok_or_else(|| self.error(key, "required"))
    }

    pub(super) fn opt_bool(&self, key: &str) -> Result<Option<bool>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(key, "expected true or false")),
        }
    }

    pub(super) fn opt_i64(&self, key: &str) -> Result<Option<i64>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(key, "expected an integer")),
        }
    }

    pub(super) fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.error(key, "expected an array")),
        }
    }

    pub(super) fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::new(v, self.field_path(key)).map(Some),
        }
    }

    pub(super) fn obj(&self, key: &str) -> Result<Obj<'a>, Rejection> {
        self.opt_obj(key)?
            .ok_or_else(|| self.error(key, "required"))
    }

    /// An RFC 3339 timestamp field, in microseconds since the epoch.
    pub(super) fn opt_micros(&self, key: &str) -> Result<Option<i64>, Rejection> {
        match self.opt_str(key)? {
            None => Ok(None),
            Some(text) => micros_since_epoch(text).map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!("expected an RFC 3339 timestamp, got {}", quoted(text)),
                )
            }),
        }
    }

    /// A list of strings (categories).
    pub(super) fn strings(&self, key: &str) -> Result<Vec<String>, Rejection> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(malformed(
                    &format!("{}[{i}]", self.field_path(key)),
                    "expected a string",
                )),
            })
            .collect()
    }
}

/// Whether unknown fields in attribute values are errors (pimsync's own payload) or
/// ignored (a PIM's resource, which carries fields the canonical model has no room for).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    Strict,
    Lenient,
}

/// Reads the snapshot fields (`family`, `categories`, `enabled`, `parent`, `values`) of a
/// product-like object. Other fields of `obj` are the caller's business.
pub(super) fn snapshot(obj: &Obj<'_>, strictness: Strictness) -> Result<Snapshot, Rejection> {
    Ok(Snapshot {
        family: obj.opt_str("family")?.map(str::to_owned),
        categories: obj.strings("categories")?,
        enabled: obj.opt_bool("enabled")?,
        parent: obj.opt_str("parent")?.map(str::to_owned),
        values: values(obj, strictness)?,
    })
}

/// `values: {attribute: [{locale, scope, data}]}`. Two entries with the same locale and
/// scope are rejected: which one wins would otherwise depend on the order they are stored.
fn values(
    obj: &Obj<'_>,
    strictness: Strictness,
) -> Result<BTreeMap<String, Vec<AttributeValue>>, Rejection> {
    let mut out = BTreeMap::new();
    let Some(values) = obj.opt_obj("values")? else {
        return Ok(out);
    };
    for (attribute, entries) in values.map {
        let attribute_path = values.field_path(attribute);
        let Value::Array(entries) = entries else {
            return Err(malformed(&attribute_path, "expected an array of values"));
        };
        let mut seen = HashSet::new();
        let mut parsed = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let entry = Obj::new(entry, format!("{attribute_path}[{i}]"))?;
            if strictness == Strictness::Strict {
                entry.deny_unknown(&["locale", "scope", "data"])?;
            }
            let locale = entry.opt_str("locale")?.map(str::to_owned);
            let scope = entry.opt_str("scope")?.map(str::to_owned);
            let Some(data) = entry.map.get("data") else {
                return Err(entry.error("data", "required"));
            };
            if !seen.insert((locale.clone(), scope.clone())) {
                return Err(malformed(entry.path(), "duplicate locale and scope"));
            }
            parsed.push(AttributeValue {
                locale,
                scope,
                data: data.clone(),
            });
        }
        out.insert(attribute.clone(), parsed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timed_delivery_ids_sort_by_time_and_keep_the_ids() {
        let at = |text| micros_since_epoch(text).unwrap();
        assert_eq!(
            timed_delivery_id(at("2026-12-05T08:00:00.5+01:00"), "e-1,e-2"),
            "2026-12-05T07:00:00.500000Z e-1,e-2"
        );
        // Fixed width, so text order is time order, whatever the ids.
        let earlier = timed_delivery_id(at("2026-12-05T07:00:09.999999Z"), "zzz");
        let later = timed_delivery_id(at("2026-12-05T07:00:10Z"), "aaa");
        assert!(earlier < later, "{earlier} < {later}");
        assert_eq!(timed_delivery_id(at("0001-01-01T00:00:00Z"), "x").len(), 29);
        // Beyond what the fixed-width form can carry: the ids alone.
        assert_eq!(timed_delivery_id(i64::MIN, "ev-1"), "ev-1");
        assert_eq!(timed_delivery_id(i64::MAX, "ev-1"), "ev-1");
    }

    #[test]
    fn micros_handle_offsets_and_fractions() {
        assert_eq!(micros_since_epoch("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(
            micros_since_epoch("1970-01-01T01:00:01+01:00"),
            Some(1_000_000)
        );
        assert_eq!(micros_since_epoch("1970-01-01T00:00:00.000002Z"), Some(2));
        assert_eq!(micros_since_epoch("1969-12-31T23:59:59.5Z"), Some(-500_000));
        assert_eq!(micros_since_epoch("2020-10-13 05:42:48"), None);
    }

    #[test]
    fn errors_carry_the_path() {
        let v = json!({"a": {"b": [{"locale": 3, "data": 1}]}, "n": "x", "extra": 1, "more": 2});
        let root = Obj::new(&v, "").unwrap();
        let a = root.obj("a").unwrap();
        let Err(Rejection::Malformed(m)) = values(
            &Obj::new(&json!({"values": a.map}), "p").unwrap(),
            Strictness::Lenient,
        ) else {
            panic!("expected an error")
        };
        assert_eq!(m, "p.values.b[0].locale: expected a string");
        assert!(
            matches!(root.opt_i64("n"), Err(Rejection::Malformed(m)) if m == "n: expected an integer")
        );
        assert!(matches!(root.str("zz"), Err(Rejection::Malformed(m)) if m == "zz: required"));
        assert!(
            matches!(root.deny_unknown(&["a", "n", "extra"]), Err(Rejection::Malformed(m)) if m == r#"body: unknown field "more""#)
        );
        assert!(
            matches!(root.deny_unknown(&["a", "n"]), Err(Rejection::Malformed(m)) if m == r#"body: unknown fields "extra", "more""#)
        );
    }

    #[test]
    fn duplicate_locale_scope_is_rejected() {
        let v = json!({"values": {"name": [{"locale": "en_US", "data": 1}, {"locale": "en_US", "scope": null, "data": 2}]}});
        let obj = Obj::new(&v, "product").unwrap();
        assert!(
            matches!(snapshot(&obj, Strictness::Lenient), Err(Rejection::Malformed(m)) if m == "product.values.name[1]: duplicate locale and scope")
        );
    }

    #[test]
    fn quoted_cuts_long_text() {
        assert_eq!(quoted("ab"), "\"ab\"");
        assert_eq!(quoted(&"x".repeat(100)), format!("{:?}…", "x".repeat(64)));
    }
}
