//! Snapshot → `ProductSetInput`.
//!
//! productSet replaces list fields wholesale (variants, options, files, the metafields we
//! send), so every input is built complete from the desired state, never as a delta.
//! Limits Shopify enforces are checked here first, so an operator reads which product
//! broke which limit instead of a generic userError.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::settings::{MAX_LIST_ITEMS, MAX_OPTIONS, MAX_VARIANTS, ShopifySettings};
use crate::connector::{ApplyError, Variant};
use crate::mapping::Mapping;
use crate::product::{ProductKind, Snapshot};

/// The option Shopify gives a product without variants.
const DEFAULT_OPTION: &str = "Title";
const DEFAULT_VALUE: &str = "Default Title";

/// What one upsert sends: the productSet input and the stock levels to set afterwards,
/// keyed by variant SKU (how the response's variants are matched back).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub input: Value,
    pub stock: Vec<(String, i64)>,
}

/// One variant's source: its SKU default (the PIM key) and content.
struct Source<'a> {
    key: &'a str,
    snapshot: &'a Snapshot,
}

pub fn plan(
    settings: &ShopifySettings,
    mapping: &Mapping,
    product_key: &str,
    kind: ProductKind,
    snapshot: &Snapshot,
    variants: &[Variant],
) -> Result<Plan, ApplyError> {
    let fail = |why: String| ApplyError::permanent(format!("product {product_key}: {why}"));
    let mut input = Map::new();
    let text = |field: &str| mapping.text(field, snapshot);
    for field in [
        "title",
        "descriptionHtml",
        "handle",
        "vendor",
        "productType",
    ] {
        if let Some(value) = text(field) {
            input.insert(field.to_owned(), Value::String(value));
        }
    }
    // Without a mapped title Shopify refuses to create the product: the key is a title.
    input
        .entry("title")
        .or_insert_with(|| Value::String(product_key.to_owned()));
    if mapping.get("tags").is_some() {
        let tags = mapping.list("tags", snapshot);
        check_len(&tags, "tags").map_err(&fail)?;
        input.insert("tags".into(), json!(tags));
    }
    input.insert("status".into(), json!(status(mapping, snapshot)));

    if mapping.get("images").is_some() {
        let images = mapping.list("images", snapshot);
        check_len(&images, "images").map_err(&fail)?;
        let files: Vec<Value> = images
            .iter()
            .map(|url| json!({"originalSource": url, "contentType": "IMAGE"}))
            .collect();
        input.insert("files".into(), Value::Array(files));
    }

    let mut metafields = vec![json!({
        "namespace": settings.identifier_namespace,
        "key": settings.identifier_key,
        "type": "id",
        "value": product_key,
    })];
    for spec in &settings.metafields {
        let value = if spec.kind.starts_with("list.") {
            let items = spec.source.list(snapshot);
            (!items.is_empty())
                .then(|| Value::Array(items.into_iter().map(Value::String).collect()).to_string())
        } else {
            spec.source.text(snapshot)
        };
        if let Some(value) = value {
            metafields.push(json!({
                "namespace": spec.namespace, "key": spec.key, "type": spec.kind, "value": value,
            }));
        }
    }
    check_len(&metafields, "metafields").map_err(&fail)?;
    input.insert("metafields".into(), Value::Array(metafields));

    let sources: Vec<Source<'_>> = match (kind, variants) {
        (ProductKind::ProductModel, [_, ..]) => variants
            .iter()
            .map(|v| Source {
                key: &v.key,
                snapshot: &v.snapshot,
            })
            .collect(),
        _ => vec![Source {
            key: product_key,
            snapshot,
        }],
    };
    let with_axes = kind == ProductKind::ProductModel && !variants.is_empty();
    if sources.len() > MAX_VARIANTS {
        return Err(fail(format!(
            "{} variants, more than Shopify's limit of {MAX_VARIANTS} per product",
            sources.len()
        )));
    }
    let axes: Vec<(&str, Vec<String>)> = if with_axes {
        if settings.options.is_empty() {
            return Err(fail(format!(
                "a product model with {} variants needs option axes ([[targets.shopify.options]])",
                sources.len()
            )));
        }
        if settings.options.len() > MAX_OPTIONS {
            return Err(fail(format!("more than {MAX_OPTIONS} option axes")));
        }
        let mut axes = Vec::new();
        for axis in &settings.options {
            let mut values = Vec::new();
            for source in &sources {
                let Some(value) = axis.source.text(source.snapshot) else {
                    return Err(fail(format!(
                        "variant {} has no value for option \"{}\" (attribute {})",
                        source.key, axis.name, axis.source.attribute
                    )));
                };
                values.push(value);
            }
            axes.push((axis.name.as_str(), values));
        }
        axes
    } else {
        vec![(DEFAULT_OPTION, vec![DEFAULT_VALUE.to_owned()])]
    };

    let mut options = Vec::new();
    for (name, values) in &axes {
        let mut seen = BTreeSet::new();
        let distinct: Vec<Value> = values
            .iter()
            .filter(|v| seen.insert(v.as_str()))
            .map(|v| json!({"name": v}))
            .collect();
        if distinct.len() > MAX_LIST_ITEMS {
            return Err(fail(format!(
                "option \"{name}\" has {} values, more than Shopify's {MAX_LIST_ITEMS}",
                distinct.len()
            )));
        }
        options.push(json!({"name": name, "values": distinct}));
    }
    input.insert("productOptions".into(), Value::Array(options));

    let mut combinations = BTreeSet::new();
    let mut skus = BTreeSet::new();
    let mut stock = Vec::new();
    let mut out = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let combination: Vec<&str> = axes.iter().map(|(_, values)| values[i].as_str()).collect();
        if !combinations.insert(combination.clone()) {
            return Err(fail(format!(
                "variant {} repeats the option values {combination:?} of another variant",
                source.key
            )));
        }
        let option_values: Vec<Value> = axes
            .iter()
            .zip(&combination)
            .map(|((name, _), value)| json!({"optionName": name, "name": value}))
            .collect();
        let (variant, sku, quantity) = variant_input(mapping, source, snapshot, option_values);
        if !skus.insert(sku.clone()) {
            return Err(fail(format!("two variants share the SKU {sku}")));
        }
        if let Some(quantity) = quantity {
            stock.push((sku, quantity));
        }
        out.push(variant);
    }
    input.insert("variants".into(), Value::Array(out));
    Ok(Plan {
        input: Value::Object(input),
        stock,
    })
}

/// One `ProductVariantSetInput`; a variant's own value wins, the model's is the fallback
/// (Akeneo variants inherit the model's attributes).
fn variant_input(
    mapping: &Mapping,
    source: &Source<'_>,
    model: &Snapshot,
    option_values: Vec<Value>,
) -> (Value, String, Option<i64>) {
    let pick = |field: &str| {
        mapping
            .decimal(field, source.snapshot)
            .or_else(|| mapping.decimal(field, model))
    };
    let sku = mapping
        .text("sku", source.snapshot)
        .unwrap_or_else(|| source.key.to_owned());
    let mut variant = Map::new();
    variant.insert("optionValues".into(), Value::Array(option_values));
    variant.insert("sku".into(), json!(sku));
    for field in ["price", "compareAtPrice"] {
        if let Some(value) = pick(field) {
            variant.insert(field.into(), json!(value));
        }
    }
    if let Some(barcode) = mapping.text("barcode", source.snapshot) {
        variant.insert("barcode".into(), json!(barcode));
    }
    let quantity = mapping
        .integer("stock", source.snapshot)
        .or_else(|| mapping.integer("stock", model));
    let mut item = Map::new();
    item.insert("sku".into(), json!(sku));
    if mapping.get("stock").is_some() {
        item.insert("tracked".into(), json!(true));
    }
    if let Some(weight) = weight(mapping, source.snapshot).or_else(|| weight(mapping, model)) {
        item.insert("measurement".into(), json!({"weight": weight}));
    }
    variant.insert("inventoryItem".into(), Value::Object(item));
    (Value::Object(variant), sku, quantity)
}

/// `WeightInput` from a metric (`{"amount": "2.5", "unit": "KILOGRAM"}`) or a number in
/// kilograms.
fn weight(mapping: &Mapping, snapshot: &Snapshot) -> Option<Value> {
    let source = mapping.get("weight")?;
    let value: f64 = source.decimal(snapshot)?.parse().ok()?;
    let unit = match source.value(snapshot) {
        Some(Value::Object(metric)) => match metric.get("unit").and_then(Value::as_str) {
            Some("GRAM") => "GRAMS",
            Some("POUND") => "POUNDS",
            Some("OUNCE") => "OUNCES",
            _ => "KILOGRAMS",
        },
        _ => "KILOGRAMS",
    };
    Some(json!({"value": value, "unit": unit}))
}

/// ACTIVE or DRAFT (or ARCHIVED) from the mapped `status` field, else from `@enabled`.
fn status(mapping: &Mapping, snapshot: &Snapshot) -> &'static str {
    let text = match mapping.get("status") {
        Some(source) => source.text(snapshot),
        None => snapshot.enabled.map(|e| e.to_string()),
    };
    match text.map(|t| t.to_ascii_lowercase()).as_deref() {
        Some("false" | "0" | "draft" | "disabled") => "DRAFT",
        Some("archived") => "ARCHIVED",
        _ => "ACTIVE",
    }
}

fn check_len<T>(items: &[T], what: &str) -> Result<(), String> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(format!(
            "{} {what}, more than Shopify's {MAX_LIST_ITEMS} per input list",
            items.len()
        ));
    }
    Ok(())
}
