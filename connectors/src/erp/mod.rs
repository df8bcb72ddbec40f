//! ERP connectors: Odoo through its JSON-2 API, and a generic REST connector declared in
//! config for the ERPs that have no dedicated connector (NetSuite, Business Central,
//! home-grown ones).
//!
//! ERPs rarely offer a natural upsert: Odoo has no idempotency key and no unique product
//! code, so the Odoo connector upserts by an external id; the REST connector relies on
//! the target's `Idempotency-Key` support and on URL templates that address a record by
//! the product key (`eid:{key}`) or by the id remembered from the last apply.

use std::time::Duration;

pub mod odoo;
pub mod rest;

/// A connector could not be built from its settings (a bad template, an invalid method,
/// a TLS backend that failed to initialize).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// One HTTP client per target: connection pooling across applies, and the dispatcher's
/// per-apply timeout on every request.
fn client(timeout: Duration) -> Result<reqwest::Client, BuildError> {
    crate::http::client(timeout)
        .map_err(|e| BuildError(format!("cannot build the HTTP client: {e}")))
}

pub(crate) use crate::http::encode_component as encode_path_segment;

/// Reads a body for an error message without failing the classification: a body that
/// cannot be read is reported as empty.
async fn body_text(response: reqwest::Response) -> String {
    response.text().await.unwrap_or_default()
}
