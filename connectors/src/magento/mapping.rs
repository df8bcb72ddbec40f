//! Canonical snapshot → Magento request bodies: one global product body (store code `all`),
//! one body per store view holding only that locale's values, and the MSI source items.
//!
//! Magento keeps a value per scope. A value written through a store view becomes an
//! override that later default changes no longer reach, and a global-scope attribute
//! written through a store view changes the default for every store. So the store-view
//! bodies carry only the store-view-scoped text fields (and custom attributes the operator
//! mapped with a locale), and only when the PIM has a value for exactly that locale.

use serde_json::{Map, Number, Value, json};

use super::settings::MagentoSettings;
use crate::mapping::{FieldSource, Mapping};
use crate::product::Snapshot;

/// The platform fields a Magento target's `[targets.mapping]` may fill.
pub const MAPPING_FIELDS: &[&str] = &[
    "name",
    "description",
    "short_description",
    "meta_title",
    "meta_keyword",
    "meta_description",
    "price",
    "special_price",
    "cost",
    "weight",
    "status",
    "qty",
];

/// Store-view-scoped text fields, written per store view from that view's locale. All but
/// `name` (kept first) are custom attributes in Magento's API.
const LOCALIZED: &[&str] = &[
    "name",
    "description",
    "short_description",
    "meta_title",
    "meta_keyword",
    "meta_description",
];

/// Global decimal fields sent as custom attributes.
const DECIMAL_ATTRIBUTES: &[&str] = &["special_price", "cost"];

/// Magento's status codes.
pub const STATUS_ENABLED: i64 = 1;
pub const STATUS_DISABLED: i64 = 2;

/// Magento's SKU column is 64 characters.
const MAX_SKU_CHARS: usize = 64;

/// Everything one upsert sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductBodies {
    /// `PUT /rest/all/V1/products/{sku}`.
    pub global: Value,
    /// `PUT /rest/{store}/V1/products/{sku}`, by store code.
    pub store_views: Vec<(String, Value)>,
    /// `POST /rest/all/V1/inventory/source-items` (MSI only, when a quantity is mapped).
    pub source_items: Option<Value>,
}

/// What the target settings contribute to the bodies, besides the mapping.
pub struct BodyContext<'a> {
    pub settings: &'a MagentoSettings,
    pub mapping: &'a Mapping,
}

/// Builds the bodies of one upsert. Errors are permanent: the product's data (or the
/// mapping) must change before it can be sent.
pub fn product_bodies(
    ctx: &BodyContext<'_>,
    sku: &str,
    snapshot: &Snapshot,
) -> Result<ProductBodies, String> {
    check_sku(sku)?;
    let settings = ctx.settings;
    let name = ctx
        .mapping
        .text("name", snapshot)
        .filter(|n| !n.trim().is_empty());
    let Some(name) = name else {
        let source = ctx
            .mapping
            .get("name")
            .map_or("no mapping for field name".to_owned(), |s| {
                format!("mapping field name reads attribute {}", s.attribute)
            });
        return Err(format!(
            "product has no name, which Magento requires ({source})"
        ));
    };

    let mut product = Map::new();
    product.insert("sku".into(), json!(sku));
    product.insert("name".into(), json!(name));
    product.insert("attribute_set_id".into(), json!(settings.attribute_set_id));
    product.insert("type_id".into(), json!("simple"));
    product.insert("status".into(), json!(status(ctx.mapping, snapshot)));
    product.insert("visibility".into(), json!(settings.visibility));
    for field in ["price", "weight"] {
        if let Some(number) = decimal(ctx.mapping, field, snapshot)? {
            product.insert(field.into(), Value::Number(number));
        }
    }

    let mut custom = Vec::new();
    custom.push(attribute("url_key", &url_key(&name, sku)));
    for &field in &LOCALIZED[1..] {
        if let Some(text) = ctx.mapping.text(field, snapshot) {
            custom.push(attribute(field, &text));
        }
    }
    for &field in DECIMAL_ATTRIBUTES {
        if let Some(number) = decimal(ctx.mapping, field, snapshot)? {
            custom.push(attribute(field, &number.to_string()));
        }
    }
    for (code, source) in &ctx.settings.custom_attributes {
        if let Some(text) = attribute_text(source, snapshot) {
            custom.push(attribute(code, &text));
        }
    }
    product.insert("custom_attributes".into(), Value::Array(custom));

    let qty = ctx.mapping.integer("qty", snapshot);
    let mut extension = Map::new();
    if !settings.website_ids.is_empty() {
        extension.insert("website_ids".into(), json!(settings.website_ids));
    }
    if !settings.categories.is_empty() {
        let links: Vec<Value> = snapshot
            .categories
            .iter()
            .filter_map(|code| settings.categories.get(code))
            .map(|id| json!({"category_id": id.to_string(), "position": 0}))
            .collect();
        extension.insert("category_links".into(), Value::Array(links));
    }
    if let (Some(qty), false) = (qty, settings.msi) {
        extension.insert(
            "stock_item".into(),
            json!({"qty": qty, "is_in_stock": qty > 0}),
        );
    }
    if !extension.is_empty() {
        product.insert("extension_attributes".into(), Value::Object(extension));
    }

    let source_items = qty.filter(|_| settings.msi).map(|qty| {
        json!({"sourceItems": [{
            "sku": sku,
            "source_code": settings.source_code,
            "quantity": qty,
            "status": i64::from(qty > 0),
        }]})
    });

    let mut store_views = Vec::new();
    for (locale, store) in &settings.store_views {
        if let Some(body) = store_view_body(ctx, sku, snapshot, locale) {
            store_views.push((store.clone(), body));
        }
    }
    store_views.sort_by(|a, b| a.0.cmp(&b.0));

    Ok(ProductBodies {
        global: json!({ "product": product }),
        store_views,
        source_items,
    })
}

/// The body of a store view: its locale's localized values only; `None` when the PIM has
/// none for that locale (the store view then shows the defaults).
fn store_view_body(
    ctx: &BodyContext<'_>,
    sku: &str,
    snapshot: &Snapshot,
    locale: &str,
) -> Option<Value> {
    let read = |source: &FieldSource| -> Option<String> {
        let has_locale = snapshot
            .values
            .get(&source.attribute)
            .is_some_and(|values| values.iter().any(|v| v.locale.as_deref() == Some(locale)));
        if !has_locale {
            return None;
        }
        let localized = FieldSource {
            locale: Some(locale.to_owned()),
            ..source.clone()
        };
        attribute_text(&localized, snapshot)
    };
    let mut product = Map::new();
    let mut custom = Vec::new();
    let name = ctx
        .mapping
        .get("name")
        .and_then(read)
        .filter(|n| !n.trim().is_empty());
    if let Some(name) = &name {
        product.insert("name".into(), json!(name));
        custom.push(attribute("url_key", &url_key(name, sku)));
    }
    for &field in &LOCALIZED[1..] {
        if let Some(text) = ctx.mapping.get(field).and_then(read) {
            custom.push(attribute(field, &text));
        }
    }
    for (code, source) in &ctx.settings.custom_attributes {
        if source.locale.is_some()
            && let Some(text) = read(source)
        {
            custom.push(attribute(code, &text));
        }
    }
    if product.is_empty() && custom.is_empty() {
        return None;
    }
    product.insert("sku".into(), json!(sku));
    product.insert("custom_attributes".into(), Value::Array(custom));
    Some(json!({ "product": product }))
}

/// The body that disables a product (deletion policy `disable`).
pub fn disable_body(sku: &str) -> Value {
    json!({"product": {"sku": sku, "status": STATUS_DISABLED}})
}

fn check_sku(sku: &str) -> Result<(), String> {
    if sku.trim().is_empty() {
        return Err("empty SKU".to_owned());
    }
    if sku.chars().count() > MAX_SKU_CHARS {
        return Err(format!(
            "SKU \"{sku}\" is longer than Magento's {MAX_SKU_CHARS} characters"
        ));
    }
    Ok(())
}

fn attribute(code: &str, value: &str) -> Value {
    json!({"attribute_code": code, "value": value})
}

/// A mapped `status` (true/1/enabled) wins; otherwise the PIM's own enabled flag; a product
/// without either is enabled.
fn status(mapping: &Mapping, snapshot: &Snapshot) -> i64 {
    let enabled = match mapping.text("status", snapshot) {
        Some(text) => matches!(
            text.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "enabled" | "on"
        ),
        None => snapshot.enabled.unwrap_or(true),
    };
    if enabled {
        STATUS_ENABLED
    } else {
        STATUS_DISABLED
    }
}

fn decimal(mapping: &Mapping, field: &str, snapshot: &Snapshot) -> Result<Option<Number>, String> {
    let Some(text) = mapping.decimal(field, snapshot) else {
        return Ok(None);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Some)
        .ok_or_else(|| format!("{field}: \"{text}\" is not a number"))
}

/// Custom attribute values are strings in Magento's API: multi-selects are sent as a comma
/// separated list, booleans as 1/0.
fn attribute_text(source: &FieldSource, snapshot: &Snapshot) -> Option<String> {
    match source.value(snapshot)? {
        Value::Array(_) => Some(source.list(snapshot).join(",")),
        Value::Bool(b) => Some(if b { "1" } else { "0" }.to_owned()),
        _ => source.text(snapshot),
    }
}

/// `url_key` must be unique per store; the SKU suffix keeps two products of the same name
/// apart, and an explicit key stops Magento from deriving a colliding one from the name.
pub fn url_key(name: &str, sku: &str) -> String {
    let name = slug(name);
    let sku = slug(sku);
    if name.is_empty() || name == sku || name.ends_with(&format!("-{sku}")) {
        if name.is_empty() { sku } else { name }
    } else {
        format!("{name}-{sku}")
    }
}

/// Lower-case ASCII letters and digits joined by single hyphens, transliterating the
/// common Latin letters the way Magento's own URL filter does.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let push = |s: &str, out: &mut String| {
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
    };
    for c in text.chars() {
        let mapped = match c {
            'ä' | 'Ä' => "ae",
            'ö' | 'Ö' => "oe",
            'ü' | 'Ü' => "ue",
            'ß' => "ss",
            'à' | 'á' | 'â' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Å' => "a",
            'æ' | 'Æ' => "ae",
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ø' => "o",
            'ù' | 'ú' | 'û' | 'Ù' | 'Ú' | 'Û' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            '&' => "-and-",
            _ => "",
        };
        if mapped.is_empty() {
            let mut buf = [0u8; 4];
            push(c.encode_utf8(&mut buf), &mut out);
        } else {
            push(mapped, &mut out);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_url_keys() {
        assert_eq!(slug("Größe & Stuhl — Oak!"), "groesse-and-stuhl-oak");
        assert_eq!(slug("  Chaise élégante "), "chaise-elegante");
        assert_eq!(url_key("Oak Chair", "CH-001"), "oak-chair-ch-001");
        assert_eq!(url_key("Oak Chair", "CH 002"), "oak-chair-ch-002");
        assert_eq!(url_key("!!!", "SKU/1"), "sku-1");
        assert_eq!(url_key("Chair CH-001", "CH-001"), "chair-ch-001");
    }

    #[test]
    fn long_skus_are_refused() {
        assert!(check_sku(&"x".repeat(64)).is_ok());
        assert!(check_sku(&"x".repeat(65)).is_err());
        assert!(check_sku(" ").is_err());
    }
}
