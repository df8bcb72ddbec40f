//! The `magento` connector: Magento Open Source / Adobe Commerce 2.4 through its admin REST
//! API.
//!
//! An upsert is `PUT /rest/all/V1/products/{sku}` with the global values (which creates the
//! product when it is missing), then one `PUT /rest/{store}/V1/products/{sku}` per store
//! view with that locale's values, then, with MSI, `POST /rest/all/V1/inventory/source-items`
//! with absolute quantities. Magento has no idempotency key, but every one of these calls
//! sets absolute state by SKU, so repeating them (at-least-once delivery, retries after a
//! timeout) converges to the same product. The connector sends no other POST: a
//! non-idempotent create would duplicate on a blind retry.
//!
//! A deletion either disables the product (status 2, the default) or deletes it; a product
//! that is already gone counts as done.
//!
//! Files: `settings.rs` (what the operator configures), `client.rs` (REST transport and
//! authentication), `oauth.rs` (OAuth 1.0a HMAC-SHA256 signing), `mapping.rs` (snapshot →
//! request bodies), `errors.rs` (Magento error bodies → classified errors).

mod client;
mod errors;
mod mapping;
mod oauth;
mod settings;

#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use client::BuildError;
pub use errors::AUTH_HINT;
pub use mapping::{MAPPING_FIELDS, slug, url_key};
pub use oauth::OAuthCredentials;
pub use settings::{
    DEFAULT_ATTRIBUTE_SET_ID, DEFAULT_SOURCE_CODE, DeletionPolicy, MagentoAuth, MagentoSettings,
    VISIBILITY_CATALOG_SEARCH, VISIBILITY_NOT_VISIBLE,
};

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::mapping::Mapping;
use crate::product::ProductKind;
use client::{ALL_STORES, Client, encode_path_segment};
use mapping::{BodyContext, disable_body, product_bodies};

/// Remote id keys remembered between applies.
pub const REMOTE_SKU: &str = "sku";
pub const REMOTE_PRODUCT_ID: &str = "product_id";

pub struct MagentoConnector {
    client: Client,
    settings: MagentoSettings,
    mapping: Mapping,
}

/// Builds the connector the dispatcher drives for one `kind = "magento"` target. `timeout`
/// bounds each HTTP request.
pub fn connector(
    settings: MagentoSettings,
    mapping: Mapping,
    timeout: Duration,
) -> Result<MagentoConnector, BuildError> {
    let client = Client::new(&settings.base_url, settings.auth.clone(), timeout)?;
    Ok(MagentoConnector {
        client,
        settings,
        mapping,
    })
}

impl MagentoConnector {
    fn product_path(sku: &str) -> String {
        format!("products/{}", encode_path_segment(sku))
    }

    async fn upsert(&self, sku: &str, snapshot: &crate::Snapshot) -> Result<Applied, ApplyError> {
        let ctx = BodyContext {
            settings: &self.settings,
            mapping: &self.mapping,
        };
        let bodies = product_bodies(&ctx, sku, snapshot).map_err(ApplyError::permanent)?;
        let path = Self::product_path(sku);
        let reply = self
            .client
            .send(Method::PUT, ALL_STORES, &path, Some(&bodies.global), false)
            .await?;
        let product_id = product_id(&reply.body);
        for (store, body) in &bodies.store_views {
            self.client
                .send(Method::PUT, store, &path, Some(body), false)
                .await
                .map_err(|e| in_store(e, store))?;
        }
        if let Some(items) = &bodies.source_items {
            // Absolute quantities per (sku, source): repeating this POST is harmless.
            self.client
                .send(
                    Method::POST,
                    ALL_STORES,
                    "inventory/source-items",
                    Some(items),
                    false,
                )
                .await?;
        }
        Ok(Applied::new(remote_ids(sku, product_id)))
    }

    async fn delete(&self, sku: &str, previous: &RemoteIds) -> Result<Applied, ApplyError> {
        let path = Self::product_path(sku);
        match self.settings.deletion {
            DeletionPolicy::Delete => {
                self.client
                    .send(Method::DELETE, ALL_STORES, &path, None, true)
                    .await?;
                Ok(Applied::default())
            }
            DeletionPolicy::Disable => {
                // A PUT creates missing products: look first, so disabling a product that
                // never reached Magento does not try to create an empty one.
                let found = self
                    .client
                    .send(Method::GET, ALL_STORES, &path, None, true)
                    .await?;
                if found.status == StatusCode::NOT_FOUND {
                    return Ok(Applied::default());
                }
                let body = disable_body(sku);
                let reply = self
                    .client
                    .send(Method::PUT, ALL_STORES, &path, Some(&body), false)
                    .await?;
                let id = product_id(&reply.body)
                    .or_else(|| product_id(&found.body))
                    .or_else(|| previous.get(REMOTE_PRODUCT_ID).cloned());
                Ok(Applied::new(remote_ids(sku, id)))
            }
        }
    }
}

#[async_trait]
impl Connector for MagentoConnector {
    fn kind(&self) -> &'static str {
        "magento"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        // Address the record the last apply wrote; the product key is the SKU otherwise.
        let sku = request
            .remote_ids
            .get(REMOTE_SKU)
            .map_or(request.product_key, String::as_str);
        match request.desired {
            Desired::Upsert {
                kind: ProductKind::ProductModel,
                ..
            } => Err(ApplyError::permanent(
                "product models (Magento configurable products) are not supported by the \
                 magento connector yet; filter them out of this target (variants that arrive \
                 as products of their own are sent as simple products)",
            )),
            Desired::Upsert { snapshot, .. } => self.upsert(sku, snapshot).await,
            Desired::Delete => self.delete(sku, request.remote_ids).await,
        }
    }
}

fn product_id(body: &Value) -> Option<String> {
    match body.get("id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn remote_ids(sku: &str, product_id: Option<String>) -> RemoteIds {
    let mut ids = RemoteIds::new();
    ids.insert(REMOTE_SKU.to_owned(), sku.to_owned());
    if let Some(id) = product_id {
        ids.insert(REMOTE_PRODUCT_ID.to_owned(), id);
    }
    ids
}

/// Says which store view failed: the global save before it succeeded.
fn in_store(error: ApplyError, store: &str) -> ApplyError {
    let prefix = |message: String| format!("store view {store}: {message}");
    match error {
        ApplyError::Retryable {
            message,
            retry_after,
        } => ApplyError::Retryable {
            message: prefix(message),
            retry_after,
        },
        ApplyError::Throttled {
            message,
            retry_after,
        } => ApplyError::Throttled {
            message: prefix(message),
            retry_after,
        },
        ApplyError::Permanent { message } => ApplyError::Permanent {
            message: prefix(message),
        },
        ApplyError::Gone { message } => ApplyError::Gone {
            message: prefix(message),
        },
    }
}
