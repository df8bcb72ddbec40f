//! GraphQL over HTTP to one shop: authentication (static token or client-credentials
//! grant, refreshed before expiry) and the local mirror of Shopify's cost bucket.
//!
//! Shopify charges each query its requested cost up front from a leaky bucket
//! (`maximumAvailable` points, refilled at `restoreRate` per second) and answers THROTTLED
//! when the bucket cannot pay. Waiting after a THROTTLED costs a round trip and a retry;
//! instead every request first reserves its cost here, against the state the last
//! response reported plus what has been restored since, minus what requests in flight
//! have reserved. Under sustained load that runs the bucket near empty without
//! overdrawing it: close to the whole restore rate, no THROTTLED.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{debug, warn};

use super::documents::Document;
use super::errors::{self, Cost};
use super::settings::{ShopifyAuth, ShopifySettings};
use crate::connector::ApplyError;
use crate::http::{classify_status, classify_transport, shorten};

/// A token is refreshed when less than this remains (or a tenth of its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

pub struct Client {
    http: reqwest::Client,
    graphql_url: String,
    token_url: String,
    auth: ShopifyAuth,
    token: tokio::sync::Mutex<Option<Token>>,
    bucket: Mutex<Bucket>,
}

struct Token {
    value: String,
    /// `None` for a static token.
    refresh_at: Option<Instant>,
}

impl Client {
    pub fn new(settings: &ShopifySettings, timeout: Duration) -> Result<Client, reqwest::Error> {
        let http = crate::http::client(timeout)?;
        let base = settings.base_url();
        Ok(Client {
            http,
            graphql_url: format!("{base}/admin/api/{}/graphql.json", settings.api_version),
            token_url: format!("{base}/admin/oauth/access_token"),
            auth: settings.auth.clone(),
            token: tokio::sync::Mutex::new(None),
            bucket: Mutex::new(Bucket::default()),
        })
    }

    /// Waits until the bucket could pay for `cost` points, without reserving them.
    pub async fn ready(&self, cost: f64) {
        loop {
            let wait = self.with_bucket(|b| b.wait_for(cost, Instant::now()));
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs one operation and returns its `data`, after classifying top-level errors.
    /// A 401 with client credentials drops the cached token and tries once more.
    pub async fn run(&self, document: &Document, variables: Value) -> Result<Value, ApplyError> {
        let cost = self.with_bucket(|b| b.estimate(document));
        let seq = self.reserve(cost).await;
        let result = self.post(document, &variables, cost, seq).await;
        match result {
            Err(PostError::TokenRejected(_)) => {
                warn!(
                    operation = document.name,
                    "token rejected, fetching a new one"
                );
                *self.token.lock().await = None;
                let seq = self.reserve(cost).await;
                self.post(document, &variables, cost, seq)
                    .await
                    .map_err(PostError::into_inner)
            }
            other => other.map_err(PostError::into_inner),
        }
    }

    fn refreshable(&self) -> bool {
        matches!(self.auth, ShopifyAuth::ClientCredentials { .. })
    }

    /// Waits until the bucket can pay `cost`, reserves it and returns the request's
    /// sequence number.
    async fn reserve(&self, cost: f64) -> u64 {
        loop {
            let reserved = self.with_bucket(|b| {
                let wait = b.wait_for(cost, Instant::now());
                if wait.is_zero() {
                    b.reserved += cost;
                    b.sent += 1;
                    Ok(b.sent)
                } else {
                    Err(wait)
                }
            });
            match reserved {
                Ok(seq) => return seq,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    async fn post(
        &self,
        document: &Document,
        variables: &Value,
        reserved: f64,
        seq: u64,
    ) -> Result<Value, PostError> {
        let outcome = self.post_inner(document, variables).await;
        let (status, body) = match outcome {
            Ok(pair) => pair,
            Err(error) => {
                self.with_bucket(|b| b.release(reserved, None, document.name, seq));
                return Err(error);
            }
        };
        self.with_bucket(|b| b.release(reserved, errors::cost_of(&body), document.name, seq));
        debug!(operation = document.name, status, "shopify answered");
        if let Some(error) = errors::top_level(document.name, &body, reserved) {
            return Err(PostError::Final(error));
        }
        match body.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(PostError::Final(ApplyError::retryable(format!(
                "{}: response without data",
                document.name
            )))),
        }
    }

    /// The HTTP exchange. Errors other than 401-with-refresh are wrapped as final.
    async fn post_inner(
        &self,
        document: &Document,
        variables: &Value,
    ) -> Result<(u16, Value), PostError> {
        let token = self.token().await.map_err(PostError::Final)?;
        let response = self
            .http
            .post(&self.graphql_url)
            .header("X-Shopify-Access-Token", token)
            .json(&json!({
                "query": document.text,
                "operationName": document.name,
                "variables": variables,
            }))
            .send()
            .await
            .map_err(|e| PostError::Final(classify_transport(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| PostError::Final(classify_transport(&e)))?;
        if !status.is_success() {
            let error = classify_status(status, &headers, &text);
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                // A 429 drains the local bucket too: assume it is empty.
                self.with_bucket(|b| b.drain(Instant::now()));
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && self.refreshable() {
                let error = ApplyError::retryable(format!(
                    "{}: access token rejected (HTTP 401)",
                    document.name
                ));
                return Err(PostError::TokenRejected(error));
            }
            return Err(PostError::Final(error));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            PostError::Final(ApplyError::retryable(format!(
                "{}: unreadable response ({e}): {}",
                document.name,
                shorten(&text, 200)
            )))
        })?;
        Ok((status.as_u16(), body))
    }

    /// The access token, fetching or refreshing it when needed. The lock is held during
    /// the fetch so concurrent applies wait for one grant instead of each asking.
    async fn token(&self) -> Result<String, ApplyError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && token.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.value.clone());
        }
        let token = match &self.auth {
            ShopifyAuth::AccessToken(token) => Token {
                value: token.clone(),
                refresh_at: None,
            },
            ShopifyAuth::ClientCredentials {
                client_id,
                client_secret,
            } => self.grant(client_id, client_secret).await?,
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn grant(&self, client_id: &str, client_secret: &str) -> Result<Token, ApplyError> {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(client_id),
            form_encode(client_secret)
        );
        let response = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| classify_transport(&e))?;
        if !status.is_success() {
            let error = classify_status(status, &headers, &text);
            return Err(match error {
                ApplyError::Permanent { message } => ApplyError::permanent(format!(
                    "client-credentials grant refused (check client_id/client_secret): {message}"
                )),
                other => other,
            });
        }
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let Some(value) = parsed.get("access_token").and_then(Value::as_str) else {
            return Err(ApplyError::retryable(
                "client-credentials grant: no access_token in the answer",
            ));
        };
        let lifetime = parsed
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        let refresh_at = lifetime.map(|life| {
            let margin = REFRESH_MARGIN.min(life / 10);
            Instant::now() + life.saturating_sub(margin)
        });
        debug!(expires_in = ?lifetime, "obtained a Shopify access token");
        Ok(Token {
            value: value.to_owned(),
            refresh_at,
        })
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut bucket)
    }

    /// A snapshot of what the client believes, for tests and the benchmark.
    pub fn bucket_state(&self) -> (f64, f64, f64) {
        self.with_bucket(|b| {
            let now = Instant::now();
            (b.available_at(now), b.maximum, b.restore_rate)
        })
    }
}

/// A failed exchange: final, or a rejected client-credentials token worth one new grant.
enum PostError {
    Final(ApplyError),
    TokenRejected(ApplyError),
}

impl PostError {
    fn into_inner(self) -> ApplyError {
        match self {
            PostError::Final(e) | PostError::TokenRejected(e) => e,
        }
    }
}

/// The local mirror of the shop's bucket.
struct Bucket {
    maximum: f64,
    /// Points available at `at`, as last reported (then restored locally).
    available: f64,
    restore_rate: f64,
    at: Instant,
    /// Points reserved by requests in flight (not yet in any report).
    reserved: f64,
    /// Requests sent, and the sequence number of the one whose report is in use: with
    /// several requests in flight, answers arrive out of order, and an older answer
    /// reports more points than the shop has now.
    sent: u64,
    reported: u64,
    /// Last requested cost seen per operation.
    learned: HashMap<&'static str, f64>,
}

impl Default for Bucket {
    /// Until the first response: the smallest bucket Shopify plans have (1,000 points,
    /// 50 per second), full.
    fn default() -> Bucket {
        Bucket {
            maximum: 1000.0,
            available: 1000.0,
            restore_rate: 50.0,
            at: Instant::now(),
            reserved: 0.0,
            sent: 0,
            reported: 0,
            learned: HashMap::new(),
        }
    }
}

impl Bucket {
    fn available_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.available + elapsed * self.restore_rate).min(self.maximum)
    }

    fn estimate(&self, document: &Document) -> f64 {
        self.learned
            .get(document.name)
            .copied()
            .unwrap_or(document.cost)
            .max(1.0)
    }

    /// Points kept free: they absorb what the reports cannot show (requests charged by
    /// the shop whose answers are still on their way, other apps on the same shop). Under
    /// sustained load the bucket hovers at this level instead of zero, which costs no
    /// throughput: the rate is the restore rate either way.
    fn margin(&self) -> f64 {
        (self.maximum * 0.05).min(50.0)
    }

    fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        let free = self.available_at(now) - self.reserved - self.margin();
        let cost = cost.min(self.maximum - self.margin());
        if free >= cost {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((cost - free) / self.restore_rate).max(Duration::from_millis(5))
        }
    }

    fn release(&mut self, reserved: f64, report: Option<Cost>, operation: &'static str, seq: u64) {
        self.reserved = (self.reserved - reserved).max(0.0);
        if let Some(cost) = report {
            if let Some(requested) = cost.requested {
                self.learned.insert(operation, requested);
            }
            if seq < self.reported {
                return;
            }
            self.reported = seq;
            self.maximum = cost.maximum;
            self.available = cost.available;
            self.restore_rate = cost.restore_rate;
            self.at = Instant::now();
        }
    }

    fn drain(&mut self, now: Instant) {
        self.available = 0.0;
        self.at = now;
    }
}

/// `application/x-www-form-urlencoded` value encoding (`%20` for a space is valid there).
use crate::http::encode_component as form_encode;
