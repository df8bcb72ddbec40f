//! What an operator configures for a Magento target (`[targets.magento]`). The daemon's
//! config loader fills this in, secrets already resolved.

use std::collections::BTreeMap;

use crate::mapping::FieldSource;

pub use super::oauth::OAuthCredentials;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum MagentoAuth {
    /// An integration's access token as `Authorization: Bearer`. Magento ≥ 2.4.4 accepts it
    /// only when `oauth/consumer/enable_integration_as_bearer` is on.
    Bearer { access_token: String },
    /// OAuth 1.0a signing (HMAC-SHA256) with the integration's four credentials.
    OAuth1(OAuthCredentials),
}

impl std::fmt::Debug for MagentoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MagentoAuth::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
            MagentoAuth::OAuth1(credentials) => credentials.fmt(f),
        }
    }
}

/// What a PIM deletion does to the Magento product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Set status 2 (disabled): orders, reviews and URL history keep their product. The
    /// default, because a deletion in Magento cannot be undone.
    #[default]
    Disable,
    /// `DELETE /V1/products/{sku}`.
    Delete,
}

impl DeletionPolicy {
    pub fn name(self) -> &'static str {
        match self {
            DeletionPolicy::Disable => "disable",
            DeletionPolicy::Delete => "delete",
        }
    }
}

/// Magento's product visibility codes.
pub const VISIBILITY_NOT_VISIBLE: i64 = 1;
pub const VISIBILITY_CATALOG_SEARCH: i64 = 4;
/// The "Default" attribute set of every Magento install.
pub const DEFAULT_ATTRIBUTE_SET_ID: i64 = 4;
/// MSI's source on a fresh install.
pub const DEFAULT_SOURCE_CODE: &str = "default";

#[derive(Debug, Clone, PartialEq)]
pub struct MagentoSettings {
    /// Store root, e.g. `https://shop.example.com` (requests go to `{base_url}/rest/…`).
    pub base_url: String,
    pub auth: MagentoAuth,
    /// Attribute set of created products.
    pub attribute_set_id: i64,
    /// Websites the product is assigned to (`extension_attributes.website_ids`); empty
    /// leaves Magento's assignment alone.
    pub website_ids: Vec<i64>,
    /// PIM locale → store view code, for localized values (`de_DE` → `de`).
    pub store_views: BTreeMap<String, String>,
    /// Multi-Source Inventory: stock through `/V1/inventory/source-items` into
    /// `source_code`; when off, through the legacy `extension_attributes.stock_item`.
    pub msi: bool,
    pub source_code: String,
    pub deletion: DeletionPolicy,
    /// Visibility of products (1 not visible … 4 catalog and search).
    pub visibility: i64,
    /// PIM category code → Magento category id. Categories not listed are not sent; with
    /// an empty table category assignments in Magento are left alone.
    pub categories: BTreeMap<String, i64>,
    /// Magento attribute code → PIM attribute, sent as `custom_attributes`. A source with
    /// a locale is treated as localizable: each store view gets its own locale's value.
    pub custom_attributes: BTreeMap<String, FieldSource>,
}

impl MagentoSettings {
    /// Settings with every default, for a store and credentials.
    pub fn new(base_url: impl Into<String>, auth: MagentoAuth) -> MagentoSettings {
        MagentoSettings {
            base_url: base_url.into(),
            auth,
            attribute_set_id: DEFAULT_ATTRIBUTE_SET_ID,
            website_ids: vec![1],
            store_views: BTreeMap::new(),
            msi: true,
            source_code: DEFAULT_SOURCE_CODE.to_owned(),
            deletion: DeletionPolicy::default(),
            visibility: VISIBILITY_CATALOG_SEARCH,
            categories: BTreeMap::new(),
            custom_attributes: BTreeMap::new(),
        }
    }
}
