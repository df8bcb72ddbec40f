//! The Shopify connector: Admin GraphQL API, products upserted with `productSet` by a
//! custom id (an `id`-type metafield holding the PIM key), variants from a product
//! model's axes, stock with `inventorySetQuantities`, a per-target deletion policy, and
//! requests paced by Shopify's cost bucket so the shop never answers THROTTLED under
//! sustained load.
//!
//! The daemon builds one with [`connector`] from [`ShopifySettings`] and the target's
//! field mapping (fields: [`MAPPING_FIELDS`]).

mod apply;
mod client;
pub mod documents;
pub mod errors;
pub mod mapping;
mod settings;

#[cfg(test)]
mod tests;

pub use apply::{
    BuildError, INVENTORY_ITEM_PREFIX, PRODUCT_ID, PUBLISHED, ShopifyConnector, VARIANT_PREFIX,
    connector,
};
pub use settings::{
    DEFAULT_API_VERSION, DeletionPolicy, MAPPING_FIELDS, MAX_LIST_ITEMS, MAX_OPTIONS, MAX_VARIANTS,
    MetafieldSpec, OptionAxis, ShopifyAuth, ShopifySettings,
};
