//! HTTP side of the receiver: status codes are the contract with the PIM.
//!
//! | status | meaning |
//! | --- | --- |
//! | 202 | committed to disk; it will reach every routed target |
//! | 200 | duplicate delivery id (nothing reprocessed), or a signed test request with no changes |
//! | 400 | malformed body (short reason), nothing stored |
//! | 401 | missing, invalid or stale signature, nothing stored |
//! | 413 | body over `server.body_limit`, nothing stored |
//! | 503 | the store cannot commit now (`Retry-After`), nothing acknowledged |

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::formats::{self, Inbound, Rejection};
use crate::config::SourceConfig;
use crate::dispatch::Wake;
use crate::route::Router;
use crate::store::{Store, StoreError};

/// What every request handler shares.
#[derive(Clone)]
pub struct ReceiverState {
    pub store: Store,
    pub router: Arc<Router>,
    /// A commit that takes longer than this is answered 503 (the sender retries; if the
    /// commit did land, the retry is a duplicate and gets 200).
    pub request_timeout: Duration,
    /// Wakes the delivery workers once new outbox work is committed.
    pub wake: Wake,
}

/// The receiver's routes: one POST per source.
pub fn router(state: ReceiverState, sources: &[SourceConfig], body_limit: usize) -> axum::Router {
    let mut app = axum::Router::new();
    for source in sources {
        let source = Arc::new(source.clone());
        let name = source.name.clone();
        app = app.route(
            &source.path.clone(),
            post(
                move |State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes| {
                    let source = source.clone();
                    async move { receive(state, &source, headers, body).await }
                },
            )
            // Counted outside the handler so that 413s (body limit) are counted too.
            .layer(axum::middleware::map_response(move |response: Response| {
                crate::metrics::global().webhook(&name, response.status().as_u16());
                std::future::ready(response)
            })),
        );
    }
    app.layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn receive(
    state: ReceiverState,
    source: &SourceConfig,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inbound = Inbound {
        headers: &headers,
        body: &body,
        now_unix: unix_now(),
    };
    let parsed = match formats::verify_and_parse(&source.format, &inbound) {
        Ok(parsed) => parsed,
        Err(Rejection::Unauthorized(reason)) => {
            tracing::warn!(source = %source.name, %reason, "webhook rejected: signature");
            return reply(StatusCode::UNAUTHORIZED, json!({ "error": reason }));
        }
        Err(Rejection::Malformed(reason)) => {
            tracing::warn!(source = %source.name, %reason, "webhook rejected: malformed");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": reason }));
        }
    };
    if parsed.changes.is_empty() && parsed.delivery_id.is_none() {
        // Akeneo's signed test request when a connection is saved: nothing to store.
        return reply(StatusCode::OK, json!({ "status": "ok", "changes": 0 }));
    }
    let headers_json = serde_json::Value::Object(
        parsed
            .kept_headers
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect(),
    )
    .to_string();
    let request = super::ingest_request(
        source,
        parsed.delivery_id,
        headers_json,
        body.to_vec(),
        parsed.changes,
    );
    let ingest = state.store.ingest(request, state.router.clone());
    match tokio::time::timeout(state.request_timeout, ingest).await {
        Ok(Ok(outcome)) if outcome.duplicate => {
            tracing::debug!(source = %source.name, "duplicate delivery acknowledged");
            reply(StatusCode::OK, json!({ "status": "duplicate" }))
        }
        Ok(Ok(outcome)) => {
            if outcome.outbox_rows > 0 {
                state.wake.all();
            }
            tracing::debug!(
                source = %source.name,
                changed = outcome.changed,
                stale = outcome.stale,
                outbox_rows = outcome.outbox_rows,
                "webhook committed"
            );
            reply(
                StatusCode::ACCEPTED,
                json!({
                    "status": "accepted",
                    "changed": outcome.changed,
                    "unchanged": outcome.unchanged,
                    "stale": outcome.stale,
                    "fetch_queued": outcome.fetch_queued,
                    "echoes": outcome.echoes,
                }),
            )
        }
        Ok(Err(error)) => unavailable(source, &error),
        Err(_) => unavailable(source, &StoreError::Unavailable("commit timed out".into())),
    }
}

fn unavailable(source: &SourceConfig, error: &StoreError) -> Response {
    let retry_after = match error {
        StoreError::Busy => "1",
        _ => "5",
    };
    tracing::warn!(source = %source.name, %error, "webhook not acknowledged: store unavailable");
    let mut response = reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": "store unavailable, retry later" }),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    response
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
