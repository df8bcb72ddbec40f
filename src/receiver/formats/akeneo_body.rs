//! The Akeneo Events API body as serde types: the receiver's one-pass parse.
//!
//! Why: walking a `serde_json::Value` tree (a node allocated per JSON value, fields looked
//! up by name, attribute values cloned out, the tree freed) took about a quarter of the
//! receiving thread's time per webhook, and that thread's time per request sets how fast
//! the store's writer is fed. Deserializing straight into these types builds the changes
//! in one pass over the bytes.
//!
//! It takes only bodies that `akeneo::parse`'s walk accepts, and builds exactly the changes
//! the walk builds (a differential test checks both on thousands of mutated bodies).
//! Everything else — any error, a string it would have to unescape where it borrows, a
//! repeated key — it declines with `None`, and the walk runs: it names the faulty field,
//! so no error message comes from here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use pimsync_connectors::{
    AttributeValue, ChangeBody, ChangeOp, ProductChange, ProductKind, Snapshot,
};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::akeneo::{MAX_EVENTS, kind_and_op};
use super::json::{micros_since_epoch, timed_delivery_id};

/// The changes of an Events API body and its delivery id, or `None` when the walk must
/// decide (see the module's documentation).
pub(super) fn parse(body: &[u8]) -> Option<(Vec<ProductChange>, String)> {
    let root: Obj<Body<'_>> = serde_json::from_slice(body).ok()?;
    let events = root.0.events?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return None;
    }
    let mut changes = Vec::with_capacity(events.len());
    let mut event_ids = Vec::with_capacity(events.len());
    let mut first_event_at = None;
    for Obj(event) in events {
        let (change, event_at) = event.into_change()?;
        first_event_at.get_or_insert(event_at);
        event_ids.push(change.event_id.clone().unwrap_or_default());
        changes.push(change);
    }
    let delivery_id = timed_delivery_id(first_event_at?, &event_ids.join(","));
    Some((changes, delivery_id))
}

/// A JSON object deserialized as `T`. serde's derived structs also take a JSON array
/// (fields by position), which the walk refuses; this takes objects only.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        deserializer.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// Fields are `Option`s because the walk takes `null` as absent; which are required is
/// checked after, as the walk does. Unknown fields are ignored, as by the walk.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    events: Option<Vec<Obj<Event<'a>>>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    action: Option<&'a str>,
    event_id: Option<String>,
    event_datetime: Option<&'a str>,
    #[serde(borrow)]
    data: Option<Obj<Data<'a>>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    resource: Option<Obj<Resource<'a>>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    identifier: Option<String>,
    code: Option<String>,
    uuid: Option<String>,
    updated: Option<&'a str>,
    family: Option<String>,
    categories: Option<Vec<String>>,
    enabled: Option<bool>,
    parent: Option<String>,
    values: Option<BTreeMap<String, Vec<Obj<Entry>>>>,
}

/// `data` may be `null` but not absent, as for the walk: a missing `Value` field is a
/// serde error.
#[derive(Deserialize)]
struct Entry {
    locale: Option<String>,
    scope: Option<String>,
    data: Value,
}

impl Event<'_> {
    /// The change and the event's time in microseconds, as `akeneo::parse_event` makes them.
    fn into_change(self) -> Option<(ProductChange, i64)> {
        let (kind, op) = kind_and_op(self.action?)?;
        let event_id = self.event_id?;
        let event_micros = micros_since_epoch(self.event_datetime?)?;
        let Obj(resource) = self.data?.0.resource?;
        let key = match kind {
            ProductKind::Product => resource.identifier,
            ProductKind::ProductModel => resource.code,
        };
        let uuid = resource.uuid;
        if key.as_deref() == Some("")
            || (key.is_none() && (kind == ProductKind::ProductModel || uuid.is_none()))
        {
            return None;
        }
        let (version, body) = match op {
            ChangeOp::Delete => (event_micros, ChangeBody::None),
            ChangeOp::Upsert => {
                let version = match resource.updated {
                    Some(text) => micros_since_epoch(text)?,
                    None => event_micros,
                };
                let snapshot = Snapshot {
                    family: resource.family,
                    categories: resource.categories.unwrap_or_default(),
                    enabled: resource.enabled,
                    parent: resource.parent,
                    values: values(resource.values.unwrap_or_default())?,
                };
                (version, ChangeBody::Full(snapshot))
            }
        };
        let change = ProductChange {
            key,
            uuid,
            kind,
            op,
            version,
            body,
            event_id: Some(event_id),
        };
        Some((change, event_micros))
    }
}

/// Attribute values as the walk keeps them: in the PIM's order, a repeated locale and scope
/// refused.
fn values(
    attributes: BTreeMap<String, Vec<Obj<Entry>>>,
) -> Option<BTreeMap<String, Vec<AttributeValue>>> {
    let mut out = BTreeMap::new();
    for (attribute, entries) in attributes {
        if repeats_a_scope(&entries) {
            return None;
        }
        let parsed = entries
            .into_iter()
            .map(|Obj(entry)| AttributeValue {
                locale: entry.locale,
                scope: entry.scope,
                data: entry.data,
            })
            .collect();
        out.insert(attribute, parsed);
    }
    Some(out)
}

/// Whether two entries share a locale and scope. Pairwise for the usual handful of entries;
/// a set for many, so that a large body cannot make this quadratic.
fn repeats_a_scope(entries: &[Obj<Entry>]) -> bool {
    fn scope(Obj(entry): &Obj<Entry>) -> (Option<&str>, Option<&str>) {
        (entry.locale.as_deref(), entry.scope.as_deref())
    }
    if entries.len() <= 8 {
        entries
            .iter()
            .enumerate()
            .any(|(i, a)| entries[..i].iter().any(|b| scope(a) == scope(b)))
    } else {
        let mut seen = HashSet::with_capacity(entries.len());
        !entries.iter().all(|entry| seen.insert(scope(entry)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::receiver::formats::akeneo::walk;
    use crate::simulate::{Edit, akeneo_product_updated};

    fn bases() -> Vec<Value> {
        let documented: Value =
            serde_json::from_slice(include_bytes!("testdata/akeneo_events.json")).unwrap();
        let edit = Edit {
            key: "B-3-17",
            family: "chairs",
            updated_us: 1_700_000_000_123_456,
            price_cents: 1999,
            stock: 3,
            body_size: 1024,
        };
        let benchmark: Value =
            serde_json::from_slice(&akeneo_product_updated(b"s", 0, &edit).body).unwrap();
        let event = |action: &str, id: &str, resource: Value| {
            json!({"action": action, "event_id": id, "event_datetime": "2020-10-13T05:02:48.5+02:00",
                   "author": "julia", "data": {"resource": resource}})
        };
        let several = json!({"events": [
            event("product.created", "e-1", json!({"identifier": "A \"quoted\" é", "updated": "2020-10-13T05:02:47Z",
                "family": null, "categories": ["b", "a", "a"], "enabled": false,
                "values": {"name": [{"locale": "en_US", "scope": null, "data": "x"},
                                    {"locale": "de_DE", "scope": null, "data": null}],
                           "empty": []}})),
            event("product.removed", "e-2", json!({"uuid": "u-2"})),
            event("product_model.updated", "e-3", json!({"code": "m", "values": {"a": [{"data": {"k": [1, 2.5]}}]}})),
            event("product_model.removed", "e-4", json!({"code": "m2", "values": {}})),
            event("product.updated", "e-5", json!({"uuid": "u-5"})),
        ]});
        vec![documented, benchmark, several]
    }

    /// Every value in `v` replaced by each of a few others, every key and element removed,
    /// every object given as the array of its values (which serde's derived structs would
    /// take by position).
    fn mutations(v: &Value) -> Vec<Value> {
        let alternatives = [
            json!(null),
            json!(1),
            json!(-2.5),
            json!(true),
            json!(""),
            json!("x"),
            json!("2020-10-13T05:02:49+00:00"),
            json!("product.removed"),
            json!([]),
            json!({}),
            json!([{}]),
        ];
        let mut out: Vec<Value> = alternatives.to_vec();
        match v {
            Value::Object(map) => {
                out.push(Value::Array(map.values().cloned().collect()));
                for (key, child) in map {
                    let mut without = map.clone();
                    without.remove(key);
                    out.push(Value::Object(without));
                    for mutated in mutations(child) {
                        let mut with = map.clone();
                        with.insert(key.clone(), mutated);
                        out.push(Value::Object(with));
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let mut without = items.clone();
                    without.remove(i);
                    out.push(Value::Array(without));
                    let mut twice = items.clone();
                    twice.insert(i, child.clone());
                    out.push(Value::Array(twice));
                    for mutated in mutations(child) {
                        let mut with = items.clone();
                        with[i] = mutated;
                        out.push(Value::Array(with));
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// The bodies the one-pass parse takes, it reads as the walk does; and it does take
    /// the usual ones, so the walk is not what runs.
    #[test]
    fn takes_only_what_the_walk_accepts_and_reads_it_the_same() {
        let (mut bodies, mut walk_accepted, mut taken) = (0, 0, 0);
        for base in bases() {
            let text = base.to_string();
            let fast = parse(text.as_bytes());
            assert!(fast.is_some(), "a valid body is declined: {text}");
            assert_eq!(walk(text.as_bytes()).ok(), fast);
            for mutated in mutations(&base) {
                let text = mutated.to_string();
                let fast = parse(text.as_bytes());
                let walked = walk(text.as_bytes());
                bodies += 1;
                walk_accepted += usize::from(walked.is_ok());
                if let Some(fast) = fast {
                    taken += 1;
                    assert_eq!(walked, Ok(fast), "{text}");
                }
            }
        }
        // Declined but accepted by the walk: removals with a malformed snapshot, product
        // keys in the wrong field type, and the like.
        assert!(bodies > 2_000, "{bodies} bodies");
        assert!(
            taken * 10 >= walk_accepted * 8,
            "{taken} of {walk_accepted} taken"
        );
    }

    /// What the value-level mutations cannot write: repeated keys, escaped strings where it
    /// borrows, trailing bytes, and a body that is not JSON.
    #[test]
    fn declines_what_only_the_walk_can_judge() {
        let event = r#"{"action":"product.updated","event_id":"e","event_datetime":"2020-10-13T05:02:48Z","data":{"resource":{"identifier":"k"}}}"#;
        let cases = [
            format!(r#"{{"events":[{event}],"events":[]}}"#),
            event.replace(r#""product.updated""#, r#""product.upd\u0061ted""#),
            event.replace(
                r#""identifier":"k""#,
                r#""identifier":"k","identifier":"j""#,
            ),
            format!(r#"{{"events":[{event}]}} x"#),
            "{".to_owned(),
        ];
        for body in &cases {
            let body = if body.starts_with(r#"{"action""#) {
                format!(r#"{{"events":[{body}]}}"#)
            } else {
                body.clone()
            };
            assert_eq!(parse(body.as_bytes()), None, "{body}");
        }
        // The walk's answers to them stand: an escaped action is still understood, repeated
        // keys keep the last, the rest are errors.
        let escaped = format!(
            r#"{{"events":[{}]}}"#,
            event.replace(r#""product.updated""#, r#""product.upd\u0061ted""#)
        );
        assert!(walk(escaped.as_bytes()).is_ok());
    }

    #[test]
    fn many_entries_of_one_attribute_are_checked_for_repeats() {
        let entries = |n: usize, repeat: bool| {
            let mut e: Vec<Value> = (0..n)
                .map(|i| json!({"locale": format!("l{i}"), "data": i}))
                .collect();
            if repeat {
                e.push(json!({"locale": "l3", "data": 0}));
            }
            e
        };
        for (n, repeat) in [(3, false), (4, true), (100, false), (100, true)] {
            let body = json!({"events": [{"action": "product.updated", "event_id": "e",
                "event_datetime": "2020-10-13T05:02:48Z",
                "data": {"resource": {"identifier": "k", "values": {"a": entries(n, repeat)}}}}]});
            let body = body.to_string();
            assert_eq!(parse(body.as_bytes()).is_some(), !repeat, "{n} {repeat}");
            assert_eq!(walk(body.as_bytes()).is_ok(), !repeat, "{n} {repeat}");
        }
    }
}
