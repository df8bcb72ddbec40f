//! The admin HTTP API: a separate listener (loopback by default) for operators and
//! monitoring.
//!
//! | route | auth | what |
//! | --- | --- | --- |
//! | `GET /healthz` | none | the process is up |
//! | `GET /readyz` | none | the store answers and the dispatcher runs (503 otherwise) |
//! | `GET /metrics` | none, or the token with `admin.metrics_auth = true` | Prometheus text |
//! | `GET /status` | token | per target: pending, leased, dead, applied in the last hour, last error; schedules |
//! | `POST /resync` | token | `{target or all_targets, skus or since or all, force}` |
//! | `GET /dead` | token | dead letters (`?target=NAME&limit=N`) |
//! | `POST /dead/retry` | token | `{target or all_targets, skus}`: pending again |
//! | `POST /dead/discard` | token | `{target or all_targets, skus}`: dropped |
//! | `POST /targets/enable` | token | `{target}`: a disabled target (410 Gone) is called again |
//! | `POST /targets/disable` | token | `{target, reason}`: stop calling it; changes accumulate |
//!
//! The token is compared in constant time; a missing or wrong one gets 401.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{ScheduleAction, ScheduleConfig, Secret};
use crate::dispatch::{DeliveryStats, Wake};
use crate::route::Router;
use crate::schedule::RunLocks;
use crate::store::ops::{DeadOrder, DeadSelection, Resync, ResyncScope, RowKey, TargetStatus};
use crate::store::{Store, now_ms};

/// Whether the daemon is ready: set once the dispatcher runs and the receiver serves,
/// cleared when shutdown starts.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub token: Arc<Secret>,
    pub metrics_auth: bool,
    /// Configured target names, in config order.
    pub targets: Arc<Vec<String>>,
    pub schedules: Arc<Vec<ScheduleConfig>>,
    pub router: Arc<Router>,
    pub wake: Wake,
    pub delivery: Arc<BTreeMap<String, Arc<DeliveryStats>>>,
    pub health: Arc<Health>,
    pub locks: RunLocks,
}

pub fn router(state: AdminState) -> axum::Router {
    let mut protected = axum::Router::new()
        .route("/status", get(status))
        .route("/resync", post(resync))
        .route("/dead", get(dead_list))
        .route("/dead/retry", post(dead_retry))
        .route("/dead/discard", post(dead_discard))
        .route("/targets/enable", post(target_enable))
        .route("/targets/disable", post(target_disable));
    let mut public = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if state.metrics_auth {
        protected = protected.route("/metrics", get(metrics));
    } else {
        public = public.route("/metrics", get(metrics));
    }
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    public.merge(protected).with_state(state)
}

/// Serves the admin API until `shutdown` resolves; a client gets `header_timeout` to send
/// a request's headers (see `connections`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::connections::serve(listener, router(state), header_timeout, shutdown).await
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if authorized(request.headers(), &state.token) {
        next.run(request).await
    } else {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pimsync-admin\""),
        );
        response
    }
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = value[7..].trim_ascii();
    bool::from(given.ct_eq(token.expose()))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "admin: store error");
    error_response_503(error.to_string())
}

fn error_response_503(message: String) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if !state.health.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n",
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(5), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: store: {error}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store did not answer\n",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let text = crate::metrics::render(crate::metrics::Scrape {
        store: &state.store,
        targets: &state.targets,
        delivery: &state.delivery,
    })
    .await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn status(State(state): State<AdminState>) -> Response {
    let now = now_ms();
    let targets: Vec<serde_json::Value> =
        match state.store.target_status(state.targets.to_vec(), now).await {
            Ok(targets) => targets.iter().map(|t| target_json(t, now)).collect(),
            Err(e) => return store_error(e),
        };
    let runs = match state.store.schedule_runs().await {
        Ok(runs) => runs,
        Err(e) => return store_error(e),
    };
    let upcoming = crate::schedule::upcoming(&state.schedules, chrono::Utc::now(), 3);
    let schedules: Vec<serde_json::Value> = state
        .schedules
        .iter()
        .map(|s| {
            let action = match &s.action {
                ScheduleAction::Resync {
                    targets,
                    since,
                    force,
                } => json!({
                    "action": "resync",
                    "targets": if targets.is_empty() { state.targets.to_vec() } else { targets.clone() },
                    "since": since.map(|d| humantime::format_duration(d).to_string()),
                    "force": force,
                }),
                ScheduleAction::Reconcile { source } => {
                    json!({ "action": "reconcile", "source": source })
                }
            };
            json!({
                "name": s.name,
                "cron": s.cron_text,
                "timezone": s.timezone.name(),
                "action": action,
                "running": state.locks.is_running(&s.name),
                "next_runs": upcoming.get(&s.name),
                "last_run": runs.iter().find(|r| r.name == s.name),
            })
        })
        .collect();
    let size = |suffix: &str| {
        let mut path = state.store.path().as_os_str().to_owned();
        path.push(suffix);
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    };
    axum::Json(json!({
        "targets": targets,
        "schedules": schedules,
        "store": {
            "path": state.store.path(),
            "size_bytes": size("") + size("-wal"),
        },
        "ready": state.health.is_ready(),
    }))
    .into_response()
}

/// One target in `GET /status`: the store's figures under the admin API's names.
fn target_json(status: &TargetStatus, now: i64) -> serde_json::Value {
    json!({
        "target": status.name,
        "pending": status.pending,
        "leased": status.in_flight,
        "dead": status.dead,
        "applied_last_hour": status.applied_last_hour,
        "last_error": status.last_error.as_ref().map(|e| &e.error),
        "last_error_at": status.last_error.as_ref().map(|e| e.at),
        "oldest_pending_ms": status.oldest_pending_since.map(|since| (now - since).max(0)),
        "queued_changes": status.queued_changes,
        "state": if status.disabled.is_some() { "disabled" } else { "enabled" },
        "disabled": status.disabled,
    })
}

/// A 400 with a message saying what is wrong with the request.
struct BadRequest(String);

impl BadRequest {
    fn new(message: impl Into<String>) -> BadRequest {
        BadRequest(message.into())
    }
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// Target selection shared by the POST bodies.
fn pick_targets(
    state: &AdminState,
    target: Option<String>,
    all_targets: bool,
) -> Result<Vec<String>, BadRequest> {
    match (target, all_targets) {
        (Some(_), true) => Err(BadRequest::new(
            "give either target or all_targets, not both",
        )),
        (None, false) => Err(BadRequest::new(
            "give target (a target name) or all_targets: true",
        )),
        (None, true) => Ok(state.targets.to_vec()),
        (Some(target), false) if state.targets.contains(&target) => Ok(vec![target]),
        (Some(target), false) => Err(BadRequest::new(format!(
            "unknown target \"{target}\" (configured: {})",
            state.targets.join(", ")
        ))),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, BadRequest> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| BadRequest::new(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResyncBody {
    target: Option<String>,
    #[serde(default)]
    all_targets: bool,
    skus: Option<Vec<String>>,
    /// A duration ("24h") back from now, or an RFC 3339 time.
    since: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    force: bool,
}

async fn resync(State(state): State<AdminState>, body: Bytes) -> Response {
    let body: ResyncBody = match parse_body(&body) {
        Ok(body) => body,
        Err(bad) => return bad.into_response(),
    };
    let targets = match pick_targets(&state, body.target, body.all_targets) {
        Ok(targets) => targets,
        Err(bad) => return bad.into_response(),
    };
    let chosen = [body.skus.is_some(), body.since.is_some(), body.all];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "give exactly one of skus (a list), since (\"24h\" or an RFC 3339 time) or all: true",
        );
    }
    if body.skus.as_ref().is_some_and(Vec::is_empty) {
        return error(StatusCode::BAD_REQUEST, "skus must not be empty");
    }
    let scope = match (body.skus, body.since.as_deref()) {
        (Some(keys), _) => ResyncScope::Keys(keys),
        (None, Some(since)) => match parse_since(since) {
            Ok(since) => ResyncScope::Since(since),
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        },
        (None, None) => ResyncScope::All,
    };
    let request = Resync {
        targets: targets.clone(),
        scope,
        force: body.force,
        list_rows: false,
    };
    tracing::info!(?request, "admin: resync requested");
    match state.store.resync(request, state.router.clone()).await {
        Ok(marked) => {
            if marked.marked > 0 {
                state.wake.all();
            }
            axum::Json(json!({ "marked": marked.marked, "targets": targets, "force": body.force }))
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

/// "24h" (back from now) or "2026-12-04T10:00:00Z", as Unix ms.
fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(duration) = humantime::parse_duration(text) {
        return Ok(now_ms() - duration.as_millis() as i64);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            format!("invalid since \"{text}\" (expected e.g. \"24h\" or \"2026-12-04T10:00:00Z\")")
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadQuery {
    target: Option<String>,
    limit: Option<usize>,
}

async fn dead_list(State(state): State<AdminState>, Query(query): Query<DeadQuery>) -> Response {
    if let Some(target) = &query.target {
        if !state.targets.contains(target) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown target \"{target}\""),
            );
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    match state
        .store
        .dead_list(query.target, DeadOrder::Newest(limit))
        .await
    {
        Ok(rows) => axum::Json(json!({ "dead": rows })).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadBody {
    target: Option<String>,
    #[serde(default)]
    all_targets: bool,
    skus: Option<Vec<String>>,
}

fn dead_selection(state: &AdminState, body: &Bytes) -> Result<DeadSelection, BadRequest> {
    let body: DeadBody = parse_body(body)?;
    let targets = pick_targets(state, body.target.clone(), body.all_targets)?;
    match body.skus {
        None => Ok(DeadSelection::Targets(targets)),
        Some(_) if body.all_targets => {
            Err(BadRequest::new("skus need one target, not all_targets"))
        }
        Some(keys) if keys.is_empty() => Err(BadRequest::new("skus must not be empty")),
        Some(keys) => {
            let target = targets.into_iter().next().unwrap_or_default();
            Ok(DeadSelection::Rows(
                keys.into_iter()
                    .map(|key| RowKey::new(target.clone(), key))
                    .collect(),
            ))
        }
    }
}

async fn dead_retry(State(state): State<AdminState>, body: Bytes) -> Response {
    let selection = match dead_selection(&state, &body) {
        Ok(selection) => selection,
        Err(bad) => return bad.into_response(),
    };
    tracing::info!(?selection, "admin: retrying dead letters");
    match state.store.dead_retry(selection).await {
        Ok(retried) => {
            let n = retried.len();
            if n > 0 {
                state.wake.all();
            }
            axum::Json(json!({ "retried": n })).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn dead_discard(State(state): State<AdminState>, body: Bytes) -> Response {
    let selection = match dead_selection(&state, &body) {
        Ok(selection) => selection,
        Err(bad) => return bad.into_response(),
    };
    tracing::info!(?selection, "admin: discarding dead letters");
    match state.store.dead_discard(selection).await {
        Ok(discarded) => axum::Json(json!({ "discarded": discarded.len() })).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    target: String,
    reason: Option<String>,
}

fn target_body(state: &AdminState, body: &Bytes) -> Result<TargetBody, BadRequest> {
    let body: TargetBody = parse_body(body)?;
    pick_targets(state, Some(body.target.clone()), false)?;
    Ok(body)
}

/// Re-enables a target disabled by its receiver (410 Gone) or an operator; the worker
/// is woken and delivers what accumulated meanwhile.
async fn target_enable(State(state): State<AdminState>, body: Bytes) -> Response {
    let body = match target_body(&state, &body) {
        Ok(body) => body,
        Err(bad) => return bad.into_response(),
    };
    if body.reason.is_some() {
        return error(StatusCode::BAD_REQUEST, "reason is for /targets/disable");
    }
    tracing::info!(target = %body.target, "admin: enabling target");
    match state.store.enable_target(body.target.clone()).await {
        Ok(was) => {
            state.wake.all();
            axum::Json(json!({ "target": body.target, "enabled": true, "was_disabled": was }))
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn target_disable(State(state): State<AdminState>, body: Bytes) -> Response {
    let body = match target_body(&state, &body) {
        Ok(body) => body,
        Err(bad) => return bad.into_response(),
    };
    let reason = body
        .reason
        .unwrap_or_else(|| "disabled by an operator".into());
    tracing::info!(target = %body.target, "admin: disabling target");
    match state
        .store
        .disable_target(body.target.clone(), reason)
        .await
    {
        Ok(newly) => {
            state.wake.all();
            axum::Json(json!({ "target": body.target, "disabled": true, "newly": newly }))
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let token = Secret::new("0123456789abcdef");
        assert!(authorized(&headers("Bearer 0123456789abcdef"), &token));
        assert!(authorized(&headers("bearer 0123456789abcdef"), &token));
        assert!(!authorized(&headers("Bearer 0123456789abcdeX"), &token));
        assert!(!authorized(&headers("Bearer 0123456789abcde"), &token));
        assert!(!authorized(&headers("Basic 0123456789abcdef"), &token));
        assert!(!authorized(&headers("Bearer"), &token));
        assert!(!authorized(&HeaderMap::new(), &token));
    }

    #[test]
    fn since_is_a_duration_or_a_time() {
        let now = now_ms();
        let day = parse_since("24h").unwrap();
        assert!((now - 86_400_000 - day).abs() < 5_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_since("yesterday").is_err());
    }
}
