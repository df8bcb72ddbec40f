//! An Akeneo PIM REST API client, for pulling from the PIM: fetching the products that thin
//! events name, and paging through the catalog to reconcile lost webhooks.
//!
//! - Authentication: OAuth2 password grant (`POST /api/oauth/v1/token`, HTTP basic auth with
//!   the connection's client id and secret, JSON `{grant_type: password, username,
//!   password}`). The access token is refreshed with its refresh token shortly before it
//!   expires; when the refresh fails, the client logs in again. A 401 on an API call drops
//!   the token and retries once with a fresh one.
//! - Rate limits: a 429 is waited out (its `Retry-After`, capped) and retried a bounded
//!   number of times; connection errors and 5xx are retried a few times with backoff.
//!   What is still failing is returned classified ([`AkeneoError::is_retryable`]).
//! - Pagination: lists use `pagination_type=search_after` and follow `_links.next.href`,
//!   always against the configured host (the bearer token never leaves it).
//!
//! Resources are returned as JSON values: turning them into canonical snapshots is the
//! caller's business (pimsync shares one conversion with its webhook parser).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::connector::ApplyError;
use crate::http::{classify_status, classify_transport, shorten};

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

/// Connection settings of one Akeneo instance.
#[derive(Clone)]
pub struct AkeneoSettings {
    /// e.g. `https://pim.example.com` (no trailing `/api`).
    pub base_url: String,
    pub client_id: String,
    pub secret: String,
    pub username: String,
    pub password: String,
    /// One HTTP request may take at most this long.
    pub request_timeout: Duration,
    /// How often a 429 is waited out before giving up with [`AkeneoError::Throttled`].
    pub max_throttle_retries: u32,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
    /// How often a connection error or 5xx is retried (with backoff) before giving up.
    pub max_transient_retries: u32,
}

impl AkeneoSettings {
    pub fn new(
        base_url: &str,
        client_id: &str,
        secret: &str,
        username: &str,
        password: &str,
    ) -> AkeneoSettings {
        AkeneoSettings {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            request_timeout: Duration::from_secs(30),
            max_throttle_retries: 5,
            max_retry_after: Duration::from_secs(120),
            max_transient_retries: 3,
        }
    }
}

/// Never prints the secret or the password.
impl std::fmt::Debug for AkeneoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkeneoSettings")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A failed call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AkeneoError {
    /// The PIM refused the credentials (wrong client id, secret, username or password).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Still throttled after the bounded retries.
    #[error("throttled: {message}")]
    Throttled {
        message: String,
        retry_after: Duration,
    },
    /// Connection error, timeout, 5xx: worth trying again later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// A 4xx other than 401/404/429, or an answer that is not what the API documents.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl AkeneoError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AkeneoError::Throttled { .. } | AkeneoError::Retryable(_)
        )
    }

    fn from_apply(error: ApplyError) -> AkeneoError {
        match error {
            ApplyError::Retryable { message, .. } => AkeneoError::Retryable(message),
            ApplyError::Throttled {
                message,
                retry_after,
            } => AkeneoError::Throttled {
                message,
                retry_after,
            },
            ApplyError::Permanent { message } | ApplyError::Gone { message } => {
                AkeneoError::Permanent(message)
            }
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// `_links.next.href`: the next page, or `None` on the last page.
    pub next: Option<String>,
    /// The total when the request asked `with_count=true`.
    pub items_count: Option<u64>,
}

/// Which resources a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `/api/rest/v1/products-uuid`
    Products,
    /// `/api/rest/v1/product-models`
    ProductModels,
}

impl Resource {
    fn path(self) -> &'static str {
        match self {
            Resource::Products => "/api/rest/v1/products-uuid",
            Resource::ProductModels => "/api/rest/v1/product-models",
        }
    }
}

/// The first request of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub resource: Resource,
    /// Akeneo's `search` filter, e.g. `{"updated":[{"operator":">","value":"2026-01-01 00:00:00"}]}`.
    pub search: Option<Value>,
    /// Items per page (Akeneo allows 1 to 100).
    pub limit: u32,
    /// Ask for `items_count` (costs the PIM a count query).
    pub with_count: bool,
}

impl ListQuery {
    pub fn new(resource: Resource) -> ListQuery {
        ListQuery {
            resource,
            search: None,
            limit: 100,
            with_count: false,
        }
    }
}

/// The search filter for products whose uuid is in `uuids`.
pub fn uuid_in(uuids: &[String]) -> Value {
    json!({"uuid": [{"operator": "IN", "value": uuids}]})
}

/// The search filter for resources updated after `since` (`YYYY-MM-DD HH:MM:SS`, the
/// PIM's time zone, normally UTC).
pub fn updated_after(since: &str) -> Value {
    json!({"updated": [{"operator": ">", "value": since}]})
}

#[derive(Debug, Clone)]
struct Token {
    access: String,
    refresh: Option<String>,
    /// When the client should stop using it: a margin before the PIM's expiry.
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens are renewed this long before the PIM says they expire, so a request started
/// just before expiry does not fail with 401.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// The client. Cheap to share behind an `Arc`; concurrent calls share one token.
pub struct AkeneoClient {
    http: reqwest::Client,
    settings: AkeneoSettings,
    base: Url,
    token: Mutex<Option<Token>>,
}

impl AkeneoClient {
    pub fn new(settings: AkeneoSettings) -> Result<AkeneoClient, AkeneoError> {
        let base = Url::parse(&settings.base_url)
            .map_err(|e| AkeneoError::Permanent(format!("base_url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .user_agent(concat!("pimsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AkeneoError::Permanent(format!("building the HTTP client: {e}")))?;
        Ok(AkeneoClient {
            http,
            settings,
            base,
            token: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &AkeneoSettings {
        &self.settings
    }

    /// `GET /api/rest/v1/products-uuid/{uuid}`; `None` when the PIM has no such product.
    pub async fn product(&self, uuid: &str) -> Result<Option<Value>, AkeneoError> {
        let url = self.url(&format!(
            "/api/rest/v1/products-uuid/{}",
            encode_segment(uuid)
        ));
        self.get_optional(url).await
    }

    /// `GET /api/rest/v1/product-models/{code}`; `None` when the PIM has no such model.
    pub async fn product_model(&self, code: &str) -> Result<Option<Value>, AkeneoError> {
        let url = self.url(&format!(
            "/api/rest/v1/product-models/{}",
            encode_segment(code)
        ));
        self.get_optional(url).await
    }

    /// The first page of a list.
    pub async fn first_page(&self, query: &ListQuery) -> Result<Page, AkeneoError> {
        let mut url = self.url(query.resource.path());
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("pagination_type", "search_after");
            pairs.append_pair("limit", &query.limit.clamp(1, 100).to_string());
            if let Some(search) = &query.search {
                pairs.append_pair("search", &search.to_string());
            }
            if query.with_count {
                pairs.append_pair("with_count", "true");
            }
        }
        self.page(url).await
    }

    /// The page a previous page's `next` link names. The link's path and query are used
    /// against the configured host, whatever host the PIM wrote into it.
    pub async fn next_page(&self, next: &str) -> Result<Page, AkeneoError> {
        let url = self.same_host(next)?;
        self.page(url).await
    }

    /// Every product whose uuid is in `uuids` (any number; asked 100 at a time).
    pub async fn products_by_uuid(&self, uuids: &[String]) -> Result<Vec<Value>, AkeneoError> {
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(100) {
            let mut query = ListQuery::new(Resource::Products);
            query.search = Some(uuid_in(chunk));
            let mut page = self.first_page(&query).await?;
            loop {
                out.append(&mut page.items);
                match page.next.take() {
                    Some(next) => page = self.next_page(&next).await?,
                    None => break,
                }
            }
        }
        Ok(out)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    fn same_host(&self, link: &str) -> Result<Url, AkeneoError> {
        let parsed = Url::parse(link)
            .or_else(|_| self.base.join(link))
            .map_err(|e| AkeneoError::Permanent(format!("invalid next link: {e}")))?;
        let mut url = self.base.clone();
        url.set_path(parsed.path());
        url.set_query(parsed.query());
        Ok(url)
    }

    async fn page(&self, url: Url) -> Result<Page, AkeneoError> {
        let body = self
            .get_optional(url)
            .await?
            .ok_or_else(|| AkeneoError::Permanent("list answered 404".into()))?;
        parse_page(&body)
    }

    async fn get_optional(&self, url: Url) -> Result<Option<Value>, AkeneoError> {
        let mut throttled = 0;
        let mut transient = 0;
        let mut reauthenticated = false;
        loop {
            let token = self.access_token().await?;
            let sent = self
                .http
                .request(Method::GET, url.clone())
                .bearer_auth(&token)
                .header("accept", "application/json")
                .send()
                .await;
            let error = match sent {
                Err(error) => classify_transport(&error),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        let text = response.text().await.map_err(|e| {
                            AkeneoError::Retryable(format!("reading the body: {e}"))
                        })?;
                        return serde_json::from_str(&text).map(Some).map_err(|e| {
                            AkeneoError::Permanent(format!("invalid JSON from {}: {e}", url.path()))
                        });
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Ok(None);
                    }
                    let headers = response.headers().clone();
                    let body = response.text().await.unwrap_or_default();
                    if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                        // Revoked or expired early: drop the token and log in again once.
                        reauthenticated = true;
                        self.forget_token(&token).await;
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(AkeneoError::Auth(format!(
                            "HTTP 401: {}",
                            shorten(&body, 300)
                        )));
                    }
                    classify_status(status, &headers, &body)
                }
            };
            match error {
                ApplyError::Throttled { retry_after, .. }
                    if throttled < self.settings.max_throttle_retries =>
                {
                    throttled += 1;
                    let wait = retry_after.min(self.settings.max_retry_after);
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "akeneo throttled; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
                ApplyError::Retryable { retry_after, .. }
                    if transient < self.settings.max_transient_retries =>
                {
                    transient += 1;
                    let backoff = Duration::from_millis(250 << transient.min(6));
                    let wait = retry_after
                        .unwrap_or(backoff)
                        .min(self.settings.max_retry_after);
                    tokio::time::sleep(wait).await;
                }
                other => return Err(AkeneoError::from_apply(other)),
            }
        }
    }

    /// A valid access token: the current one, a refreshed one, or a new login.
    async fn access_token(&self) -> Result<String, AkeneoError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if Instant::now() < token.renew_at {
                return Ok(token.access.clone());
            }
        }
        let refresh = slot.as_ref().and_then(|t| t.refresh.clone());
        let mut fresh = None;
        if let Some(refresh) = refresh {
            match self
                .token_request(json!({"grant_type": "refresh_token", "refresh_token": refresh}))
                .await
            {
                Ok(token) => fresh = Some(token),
                Err(error) if error.is_retryable() => return Err(error),
                Err(error) => {
                    tracing::info!(%error, "akeneo token refresh refused; logging in again");
                }
            }
        }
        let token = match fresh {
            Some(token) => token,
            None => {
                self.token_request(json!({
                    "grant_type": "password",
                    "username": self.settings.username,
                    "password": self.settings.password,
                }))
                .await?
            }
        };
        let access = token.access.clone();
        *slot = Some(token);
        Ok(access)
    }

    async fn forget_token(&self, access: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.access == access) {
            // Keep the refresh token: it may still be good.
            if let Some(token) = slot.as_mut() {
                token.renew_at = Instant::now();
            }
        }
    }

    async fn token_request(&self, body: Value) -> Result<Token, AkeneoError> {
        let url = self.url("/api/oauth/v1/token");
        let mut throttled = 0;
        loop {
            let sent = self
                .http
                .post(url.clone())
                .basic_auth(&self.settings.client_id, Some(&self.settings.secret))
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => return Err(AkeneoError::from_apply(classify_transport(&error))),
            };
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let parsed: TokenResponse = serde_json::from_str(&text)
                    .map_err(|e| AkeneoError::Permanent(format!("invalid token response: {e}")))?;
                let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
                return Ok(Token {
                    access: parsed.access_token,
                    refresh: parsed.refresh_token,
                    renew_at: Instant::now() + lifetime.saturating_sub(RENEW_MARGIN),
                });
            }
            match classify_status(status, &headers, "") {
                ApplyError::Throttled { retry_after, .. }
                    if throttled < self.settings.max_throttle_retries =>
                {
                    throttled += 1;
                    tokio::time::sleep(retry_after.min(self.settings.max_retry_after)).await;
                }
                ApplyError::Permanent { .. } => {
                    // 400/401/403: the credentials or the refresh token were refused. The
                    // body is Akeneo's message ("Invalid credentials"), never a secret.
                    return Err(AkeneoError::Auth(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        shorten(&text, 300)
                    )));
                }
                other => return Err(AkeneoError::from_apply(other)),
            }
        }
    }
}

fn parse_page(body: &Value) -> Result<Page, AkeneoError> {
    let items = match body.pointer("/_embedded/items") {
        Some(Value::Array(items)) => items.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(AkeneoError::Permanent(
                "_embedded.items is not an array".into(),
            ));
        }
    };
    let next = body
        .pointer("/_links/next/href")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let items_count = body.get("items_count").and_then(Value::as_u64);
    Ok(Page {
        items,
        next,
        items_count,
    })
}

/// Percent-encodes one path segment (uuids and codes are plain, but codes may hold
/// anything Akeneo allows).
fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%2E", ".")
}
