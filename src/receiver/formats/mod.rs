//! SKELETON (replaced by the formats branch): the interface the server codes against.
use axum::http::HeaderMap;
use pimsync_connectors::ProductChange;

use crate::config::SourceFormat;

pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub now_unix: i64,
}

pub struct Parsed {
    pub delivery_id: Option<String>,
    pub changes: Vec<ProductChange>,
    pub kept_headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Malformed(String),
}

pub fn verify_and_parse(_format: &SourceFormat, _inbound: &Inbound) -> Result<Parsed, Rejection> {
    Err(Rejection::Malformed("not implemented".into()))
}
