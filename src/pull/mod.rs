//! Pulling from the PIM (Akeneo's REST API): the [`fetch`]er turns thin events queued by
//! the receiver into full products, and [`reconcile`] pages through the catalog so that a
//! lost webhook is repaired. Both turn REST resources into canonical changes with the same
//! conversion as the Akeneo webhook parser and commit them through the store's ordinary,
//! level-triggered ingest: only newer versions change a product, and only changed content
//! sets outbox rows pending.

pub mod cli;
pub mod fetch;
mod reconcile;
mod scheduled;

use pimsync_connectors::akeneo::{AkeneoClient, AkeneoError};
use pimsync_connectors::{ProductChange, ProductKind};
use serde_json::Value;

use crate::config::SourceConfig;
use crate::store::StoreError;

pub use fetch::{FetchRound, Fetcher, fetch_once};
pub use reconcile::{Progress, ReconcileReport, Since, reconcile};
pub use scheduled::ScheduledReconcile;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("source {0} has no [sources.api] settings: nothing to pull from")]
    NoApi(String),
    #[error("PIM API: {0}")]
    Api(#[from] AkeneoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl PullError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PullError::Api(error) => error.is_retryable(),
            PullError::Store(_) => true,
            PullError::NoApi(_) | PullError::Invalid(_) => false,
        }
    }
}

/// The REST client of a source, if it has `[sources.api]`.
pub fn client(source: &SourceConfig) -> Result<AkeneoClient, PullError> {
    let api = source
        .api
        .as_ref()
        .ok_or_else(|| PullError::NoApi(source.name.clone()))?;
    Ok(AkeneoClient::new(api.settings.clone())?)
}

/// A REST resource as a full upsert (version: its `updated`).
fn resource_change(resource: &Value, kind: ProductKind) -> Result<ProductChange, String> {
    crate::receiver::formats::akeneo::resource_upsert(resource, "resource", kind)
        .map_err(|rejection| rejection.to_string())
}

/// The inbox row of a pull: no body (pages can be large), a marker header for audit.
fn headers_json(what: &str) -> String {
    serde_json::json!({ "x-pimsync-pull": what }).to_string()
}

#[cfg(test)]
mod tests;
