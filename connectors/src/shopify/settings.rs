//! What one Shopify target is configured with. The daemon's config loader fills this
//! (secrets already resolved to plain strings); the connector never reads files or the
//! environment itself.

use crate::mapping::FieldSource;

/// The Admin API version used when the config names none.
pub const DEFAULT_API_VERSION: &str = "2026-04";

/// Shopify's own limits on one product (productSet rejects more, with a less helpful
/// message than ours).
pub const MAX_OPTIONS: usize = 3;
pub const MAX_VARIANTS: usize = 2048;
pub const MAX_LIST_ITEMS: usize = 250;

/// The platform fields a Shopify target's `[targets.mapping]` may fill.
pub const MAPPING_FIELDS: &[&str] = &[
    "title",
    "descriptionHtml",
    "handle",
    "vendor",
    "productType",
    "tags",
    "status",
    "price",
    "compareAtPrice",
    "sku",
    "barcode",
    "weight",
    "stock",
    "images",
];

#[derive(Debug, Clone, PartialEq)]
pub struct ShopifySettings {
    /// The permanent `name.myshopify.com` domain.
    pub shop: String,
    /// `YYYY-MM`.
    pub api_version: String,
    pub auth: ShopifyAuth,
    /// The location whose `available` quantity the `stock` field sets (a
    /// `gid://shopify/Location/…` or a bare numeric id). Required when `stock` is mapped.
    pub location_id: Option<String>,
    pub deletion: DeletionPolicy,
    /// Publication GIDs (or bare ids) every synced product is published to.
    pub publications: Vec<String>,
    /// The `id`-type product metafield holding the PIM key, used as productSet's
    /// `identifier.customId`: handles collide and SKUs are not unique in Shopify.
    pub identifier_namespace: String,
    pub identifier_key: String,
    /// Product metafields filled from PIM attributes.
    pub metafields: Vec<MetafieldSpec>,
    /// Variant axes of product models, in option order (at most 3).
    pub options: Vec<OptionAxis>,
    /// Testing knob: send every request to this base URL (e.g. `http://127.0.0.1:PORT`)
    /// instead of `https://{shop}`. Not a config key: production always talks to the shop.
    pub endpoint_override: Option<String>,
}

impl ShopifySettings {
    /// Settings with every default, for a shop and a static token.
    pub fn new(shop: &str, access_token: &str) -> ShopifySettings {
        ShopifySettings {
            shop: shop.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            auth: ShopifyAuth::AccessToken(access_token.to_owned()),
            location_id: None,
            deletion: DeletionPolicy::default(),
            publications: Vec::new(),
            identifier_namespace: "pim".to_owned(),
            identifier_key: "key".to_owned(),
            metafields: Vec::new(),
            options: Vec::new(),
            endpoint_override: None,
        }
    }

    /// Scheme and host every request goes to.
    pub(crate) fn base_url(&self) -> String {
        match &self.endpoint_override {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.shop),
        }
    }
}

/// How the connector authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum ShopifyAuth {
    /// A custom app's Admin API access token (`shpat_…`), valid until revoked.
    AccessToken(String),
    /// The client-credentials grant: client id and secret are exchanged for a token that
    /// expires; the connector refreshes it before it does.
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
}

impl std::fmt::Debug for ShopifyAuth {
    /// Never prints a secret, so settings can be logged whole.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShopifyAuth::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            ShopifyAuth::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

/// What a deletion in the PIM does to the Shopify product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// `productDelete`: gone, with its order history links.
    Delete,
    /// Status ARCHIVED: hidden everywhere, kept for reports (the safe default).
    #[default]
    Archive,
    /// Status DRAFT: hidden, ready to be re-enabled.
    Draft,
}

impl DeletionPolicy {
    pub const NAMES: &'static [&'static str] = &["delete", "archive", "draft"];

    pub fn parse(name: &str) -> Option<DeletionPolicy> {
        match name {
            "delete" => Some(DeletionPolicy::Delete),
            "archive" => Some(DeletionPolicy::Archive),
            "draft" => Some(DeletionPolicy::Draft),
            _ => None,
        }
    }
}

/// One product metafield filled from a PIM attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct MetafieldSpec {
    pub namespace: String,
    pub key: String,
    /// A Shopify metafield type, e.g. `single_line_text_field`, `number_decimal`,
    /// `list.single_line_text_field`. `list.*` types are sent as a JSON array.
    pub kind: String,
    pub source: FieldSource,
}

/// One variant axis: the Shopify option `name` and the PIM attribute whose value on each
/// variant product is the option value.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionAxis {
    pub name: String,
    pub source: FieldSource,
}
