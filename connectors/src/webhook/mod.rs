//! The `webhook` target: every change a target is routed is POSTed as a JSON event to one
//! URL, signed per Standard Webhooks, for systems that want to *hear* about product
//! changes (a translation agency, a mailer, a search indexer) rather than hold a copy.
//!
//! - `webhook-id` is the apply's idempotency key: the same on every retry of one event,
//!   so receivers can deduplicate; `webhook-timestamp` is the time of the attempt;
//!   `webhook-signature` has one `v1,` entry per configured secret (rotation).
//! - The event lists the fields that changed since the last event this receiver got
//!   (remembered in the applied row's remote ids), and an attribute filter can settle a
//!   change without a call when nothing it watches changed.
//! - `410 Gone` is the receiver saying "stop": [`ApplyError::Gone`] disables the target.
//!   Everything else is the shared HTTP classification.

pub mod event;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::http::{classify_status, classify_transport, shorten};
use crate::mapping::{FieldSource, Mapping};
use crate::standard_webhooks::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header};

/// Headers the connector sets itself; extra headers may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    ID_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    "content-type",
];

/// A webhook target's settings, secrets resolved. `Debug` shows neither the keys nor the
/// extra headers' values (they may carry credentials).
#[derive(Clone, PartialEq)]
pub struct WebhookSettings {
    pub url: String,
    /// Decoded signing keys (`whsec_` stripped, base64 decoded), newest last.
    pub keys: Vec<Vec<u8>>,
    /// Extra headers sent with every event, in config order.
    pub headers: Vec<(String, String)>,
    /// One HTTP request may take at most this long.
    pub timeout: Duration,
    /// Deliver only when one of these changed since the last event (empty: always).
    pub watch: Vec<FieldSource>,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("watch", &self.watch)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("header {0}: invalid name or value")]
    Header(String),
    #[error("at least one signing secret is required")]
    NoKeys,
}

pub struct WebhookConnector {
    client: reqwest::Client,
    settings: WebhookSettings,
    mapping: Mapping,
    headers: HeaderMap,
}

pub fn connector(
    settings: WebhookSettings,
    mapping: Mapping,
) -> Result<WebhookConnector, BuildError> {
    if settings.keys.is_empty() {
        return Err(BuildError::NoKeys);
    }
    let client =
        crate::http::client(settings.timeout).map_err(|e| BuildError::Client(e.to_string()))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let header = || BuildError::Header(name.clone());
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| header())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| header())?;
        // Kept out of any debug output of the request.
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(WebhookConnector {
        client,
        settings,
        mapping,
        headers,
    })
}

impl WebhookConnector {
    /// Sends one signed event; the body is exactly the bytes signed.
    async fn send(&self, request: &ApplyRequest<'_>, body: Vec<u8>) -> Result<(), ApplyError> {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = request.idempotency_key;
        let keys: Vec<&[u8]> = self.settings.keys.iter().map(Vec::as_slice).collect();
        let signature = signature_header(&keys, id, timestamp, &body);
        let response = self
            .client
            .post(&self.settings.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ID_HEADER, id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::GONE {
            return Err(ApplyError::Gone {
                message: format!("HTTP 410 Gone: {}", shorten(&text, 500)),
            });
        }
        Err(classify_status(status, &headers, &text))
    }
}

fn encode(value: &serde_json::Value) -> Result<Vec<u8>, ApplyError> {
    serde_json::to_vec(value).map_err(|e| ApplyError::permanent(format!("encoding the event: {e}")))
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let change = request.change;
        match request.desired {
            Desired::Upsert {
                kind,
                snapshot,
                variants,
            } => {
                let watched = event::watched(&self.settings.watch, snapshot);
                let before_watched = event::remembered(request.remote_ids, event::WATCHED_KEY);
                if !self.settings.watch.is_empty()
                    && !change.forced
                    && !event::watched_changed(&watched, before_watched.as_ref())
                {
                    tracing::debug!(
                        target = request.target,
                        product_key = request.product_key,
                        idempotency_key = request.idempotency_key,
                        "no watched attribute changed; no event sent"
                    );
                    return Ok(Applied::skipped(request.remote_ids.clone()));
                }
                let fields = event::fields(&self.mapping, snapshot, variants);
                let prints = event::fingerprints(&fields);
                let before = event::remembered(request.remote_ids, event::FIELDS_KEY);
                let changed = event::changed(&prints, before.as_ref());
                // Nothing the receiver is sent differs from what it last got (a change to
                // an attribute the mapping does not send): no event.
                if changed.is_empty() && !change.forced {
                    return Ok(Applied::skipped(request.remote_ids.clone()));
                }
                let mapped = !self.mapping.fields.is_empty();
                let body = encode(&event::upserted(&event::Upsert {
                    target: request.target,
                    product_key: request.product_key,
                    kind,
                    version: change.version,
                    accepted_at_ms: change.accepted_at_ms,
                    changed: &changed,
                    fields: mapped.then_some(&fields),
                    snapshot,
                    variants,
                }))?;
                self.send(&request, body).await?;
                let json = |prints: &event::Fingerprints| {
                    serde_json::to_string(prints).unwrap_or_else(|_| "{}".into())
                };
                let mut remote_ids = RemoteIds::new();
                remote_ids.insert(event::FIELDS_KEY.into(), json(&prints));
                remote_ids.insert(event::WATCHED_KEY.into(), json(&watched));
                Ok(Applied::new(remote_ids))
            }
            Desired::Delete => {
                // A receiver that never got an event for this product (filtered out every
                // time) has nothing to forget.
                if !request.remote_ids.contains_key(event::FIELDS_KEY) && !change.forced {
                    return Ok(Applied::skipped(RemoteIds::new()));
                }
                let body = encode(&event::deleted(
                    request.target,
                    request.product_key,
                    change.version,
                    change.accepted_at_ms,
                ))?;
                self.send(&request, body).await?;
                // Forgotten: if the product comes back, every field is new to the receiver.
                Ok(Applied::new(RemoteIds::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
