//! HTTP side of the receiver: status codes are the contract with the PIM.
//!
//! | status | meaning |
//! | --- | --- |
//! | 202 | committed to disk; it will reach every routed target |
//! | 200 | duplicate delivery id (nothing reprocessed), or a signed test request with no changes |
//! | 400 | malformed body (short reason), nothing stored |
//! | 401 | missing, invalid or stale signature, nothing stored |
//! | 408 | the body did not arrive within `server.request_timeout`, nothing stored |
//! | 413 | body over `server.body_limit`, nothing stored |
//! | 503 | the store cannot commit now (`Retry-After`), nothing acknowledged |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
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
    /// A body that takes longer than this to arrive is answered 408; a commit that takes
    /// longer is answered 503 (the sender retries; if the commit did land, the retry is a
    /// duplicate and gets 200).
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
                move |State(state): State<ReceiverState>, headers: HeaderMap, body: Body| {
                    let source = source.clone();
                    async move {
                        let deadline = state.request_timeout;
                        match read_body(&headers, body, body_limit, deadline).await {
                            Ok(body) => receive(state, &source, headers, body).await,
                            Err(response) => response,
                        }
                    }
                },
            )
            // Counted outside the handler so that 413s (body limit) are counted too.
            .layer(axum::middleware::map_response(move |response: Response| {
                crate::metrics::global().webhook(&name, response.status().as_u16());
                std::future::ready(response)
            })),
        );
    }
    app.with_state(state)
}

/// The whole body, within `limit` bytes and `deadline`: a body announced too large is
/// refused before any of it is read, and a sender that stalls loses its slot (408).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!("body larger than server.body_limit ({limit} bytes)") }),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(deadline, http_body_util::BodyExt::collect(limited)).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err(reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("cannot read the body: {error}") }),
        )),
        Err(_) => {
            tracing::warn!(
                timeout_secs = deadline.as_secs_f64(),
                "webhook rejected: the body did not arrive in time"
            );
            Err(reply(
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": "the body did not arrive within server.request_timeout" }),
            ))
        }
    }
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
    // An object of the kept headers (the last of a repeated name), keys in order.
    let kept: BTreeMap<&str, &str> = parsed
        .kept_headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let headers_json = serde_json::to_string(&kept).unwrap_or_default();
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
            if outcome.outbox_written > 0 {
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
                Accepted {
                    changed: outcome.changed,
                    echoes: outcome.echoes,
                    fetch_queued: outcome.fetch_queued,
                    stale: outcome.stale,
                    status: "accepted",
                    unchanged: outcome.unchanged,
                },
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

fn reply(status: StatusCode, body: impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The body of a 202: a struct rather than `json!`, which builds a map per answer. Fields
/// in alphabetical order, as `json!` wrote them.
#[derive(Serialize)]
struct Accepted {
    changed: usize,
    echoes: usize,
    fetch_queued: usize,
    stale: usize,
    status: &'static str,
    unchanged: usize,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
