//! The canonical product model: what every webhook format is turned into, what the store
//! keeps as desired state, and what every connector reads.
//!
//! It follows Akeneo's shape (attribute values with locale and scope) because that is the
//! richest model PIMs share; simpler PIMs fill only `values` with null locale and scope.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Whether a change asks for the product to exist (with this content) or to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Upsert,
    Delete,
}

/// A simple product or a product model (the parent of variants in Akeneo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    #[default]
    Product,
    ProductModel,
}

/// How much of the product a change carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "snapshot")]
pub enum ChangeBody {
    /// The whole product: it replaces what is stored.
    Full(Snapshot),
    /// Only some attribute values: merged into what is stored, value by value
    /// (attribute, locale, scope).
    Partial(Snapshot),
    /// A thin event (only a uuid): the product must be fetched from the PIM first.
    NeedsFetch,
    /// Deletions carry no content.
    None,
}

/// One product change, whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductChange {
    /// The product key (Akeneo identifier / SKU). `None` only for thin events that carry a
    /// uuid alone; the store resolves those through its uuid → key mapping.
    pub key: Option<String>,
    /// The PIM's stable uuid, when the format carries one.
    pub uuid: Option<String>,
    pub kind: ProductKind,
    pub op: ChangeOp,
    /// Orders changes of one product: an event older than the stored version is dropped.
    /// Microseconds since the Unix epoch for timestamp versions, or a sender's sequence.
    pub version: i64,
    pub body: ChangeBody,
    /// The sender's id for this event, for audit.
    pub event_id: Option<String>,
}

/// One attribute value, scoped like Akeneo's: `locale` and `scope` (channel) are `None` for
/// attributes that are not localizable or not scopable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeValue {
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    pub data: serde_json::Value,
}

/// The content of a product: what targets are converged to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The product model this product is a variant of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub values: BTreeMap<String, Vec<AttributeValue>>,
}

impl Snapshot {
    /// Puts values in one order so that equal content always serializes (and hashes) the
    /// same, whatever order the PIM sent it in.
    pub fn normalize(&mut self) {
        self.categories.sort();
        self.categories.dedup();
        for values in self.values.values_mut() {
            values.sort_by(|a, b| (&a.locale, &a.scope).cmp(&(&b.locale, &b.scope)));
            values.dedup_by(|a, b| a.locale == b.locale && a.scope == b.scope);
        }
    }

    /// Merges a partial snapshot into this one: each (attribute, locale, scope) value of
    /// `delta` replaces or adds to the stored one; other fields replace when present.
    pub fn merge(&mut self, delta: Snapshot) {
        if delta.family.is_some() {
            self.family = delta.family;
        }
        if !delta.categories.is_empty() {
            self.categories = delta.categories;
        }
        if delta.enabled.is_some() {
            self.enabled = delta.enabled;
        }
        if delta.parent.is_some() {
            self.parent = delta.parent;
        }
        for (attribute, new_values) in delta.values {
            let stored = self.values.entry(attribute).or_default();
            for value in new_values {
                match stored
                    .iter_mut()
                    .find(|v| v.locale == value.locale && v.scope == value.scope)
                {
                    Some(existing) => existing.data = value.data,
                    None => stored.push(value),
                }
            }
        }
        self.normalize();
    }

    /// The canonical JSON of the snapshot (keys sorted, values normalized).
    pub fn to_canonical_json(&self) -> String {
        // BTreeMap keys and struct field order make serde_json's output deterministic.
        // Most snapshots arrive in order already: those are written without a copy (the
        // receiver hashes every webhook's snapshot on the request's thread).
        if self.is_normalized() {
            return serde_json::to_string(self).unwrap_or_default();
        }
        let mut normalized = self.clone();
        normalized.normalize();
        serde_json::to_string(&normalized).unwrap_or_default()
    }

    /// Whether `normalize` would leave this snapshot as it is.
    fn is_normalized(&self) -> bool {
        let strictly_ascending = |values: &[AttributeValue]| {
            values
                .windows(2)
                .all(|w| (&w[0].locale, &w[0].scope) < (&w[1].locale, &w[1].scope))
        };
        self.categories.windows(2).all(|w| w[0] < w[1])
            && self
                .values
                .values()
                .all(|values| strictly_ascending(values))
    }
}

/// A content hash names a desired state: equal content, equal hash. Deletions hash to a
/// fixed value so that "gone" is a state like any other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentHash(pub String);

impl ContentHash {
    pub fn of_json(canonical_json: &str) -> ContentHash {
        let digest = Sha256::digest(canonical_json.as_bytes());
        ContentHash(hex::encode(&digest[..16]))
    }

    pub fn deleted() -> ContentHash {
        ContentHash("deleted".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The idempotency key of an apply: a pure function of (target, product key, desired hash),
/// so the same desired state carries the same key across retries and restarts.
pub fn idempotency_key(target: &str, product_key: &str, desired: &ContentHash) -> String {
    let mut hasher = Sha256::new();
    for part in [target, product_key, desired.as_str()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("pimsync-{}", hex::encode(&hasher.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(locale: Option<&str>, data: serde_json::Value) -> AttributeValue {
        AttributeValue {
            locale: locale.map(str::to_owned),
            scope: None,
            data,
        }
    }

    #[test]
    fn equal_content_in_any_order_hashes_equal() {
        let mut a = Snapshot {
            categories: vec!["b".into(), "a".into()],
            ..Default::default()
        };
        a.values.insert(
            "name".into(),
            vec![
                value(Some("fr_FR"), json!("Chaise")),
                value(Some("en_US"), json!("Chair")),
            ],
        );
        let mut b = a.clone();
        b.categories.reverse();
        if let Some(names) = b.values.get_mut("name") {
            names.reverse();
        }
        assert_eq!(
            ContentHash::of_json(&a.to_canonical_json()),
            ContentHash::of_json(&b.to_canonical_json())
        );
        b.enabled = Some(true);
        assert_ne!(
            ContentHash::of_json(&a.to_canonical_json()),
            ContentHash::of_json(&b.to_canonical_json())
        );
    }

    /// Written without a copy or with one, the canonical JSON is that of the normalized
    /// snapshot: in order, out of order, with repeats.
    #[test]
    fn canonical_json_is_that_of_the_normalized_snapshot() {
        let cases = [
            (vec!["a", "b"], vec![Some("de"), Some("en")]),
            (vec!["b", "a"], vec![Some("de"), Some("en")]),
            (vec!["a", "a"], vec![None, Some("en")]),
            (vec!["a"], vec![Some("en"), Some("de")]),
            (vec![], vec![Some("en"), Some("en")]),
        ];
        for (categories, locales) in cases {
            let mut snapshot = Snapshot {
                categories: categories.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            };
            let names = locales.iter().map(|l| value(*l, json!(l))).collect();
            snapshot.values.insert("name".into(), names);
            let mut normalized = snapshot.clone();
            normalized.normalize();
            assert_eq!(
                snapshot.to_canonical_json(),
                serde_json::to_string(&normalized).unwrap(),
                "{categories:?} {locales:?}"
            );
            assert_eq!(snapshot == normalized, snapshot.is_normalized());
        }
    }

    #[test]
    fn merge_replaces_matching_values_and_keeps_others() {
        let mut stored = Snapshot::default();
        stored.values.insert(
            "name".into(),
            vec![
                value(Some("en_US"), json!("Chair")),
                value(Some("fr_FR"), json!("Chaise")),
            ],
        );
        stored
            .values
            .insert("price".into(), vec![value(None, json!(10))]);
        let mut delta = Snapshot::default();
        delta
            .values
            .insert("name".into(), vec![value(Some("en_US"), json!("Armchair"))]);
        stored.merge(delta);
        assert_eq!(stored.values["name"][0].data, json!("Armchair"));
        assert_eq!(stored.values["name"][1].data, json!("Chaise"));
        assert_eq!(stored.values["price"][0].data, json!(10));
    }

    #[test]
    fn idempotency_key_is_stable_and_separates_its_parts() {
        let h = ContentHash("abc".into());
        assert_eq!(
            idempotency_key("shop", "SKU-1", &h),
            idempotency_key("shop", "SKU-1", &h)
        );
        assert_ne!(
            idempotency_key("shop", "SKU-1", &h),
            idempotency_key("shop", "SKU-2", &h)
        );
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            idempotency_key("ab", "c", &h),
            idempotency_key("a", "bc", &h)
        );
    }
}
