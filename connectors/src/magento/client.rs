//! The REST transport: URLs per store code, authentication, and one classified result per
//! call. Tokens and signatures go into headers only and are never logged.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::errors::classify;
use super::oauth;
use super::settings::MagentoAuth;
use crate::connector::ApplyError;
use crate::http::classify_transport;

/// The store code that addresses global (default scope) values.
pub const ALL_STORES: &str = "all";

pub struct Client {
    http: reqwest::Client,
    base_url: String,
    auth: MagentoAuth,
}

/// A successful (or, for the callers that ask, a 404) response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(pub String);

impl Client {
    pub fn new(base_url: &str, auth: MagentoAuth, timeout: Duration) -> Result<Client, BuildError> {
        let http = crate::http::client(timeout).map_err(|e| BuildError(e.to_string()))?;
        Ok(Client {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth,
        })
    }

    /// `{base_url}/rest/{store}/V1/{path}`; `path` segments must already be encoded.
    pub fn url(&self, store: &str, path: &str) -> String {
        format!(
            "{}/rest/{}/V1/{path}",
            self.base_url,
            encode_path_segment(store)
        )
    }

    /// Sends one request. A success (and a 404 when `allow_not_found`) is a `Reply`; any
    /// other status is classified by Magento's error body.
    pub async fn send(
        &self,
        method: Method,
        store: &str,
        path: &str,
        body: Option<&Value>,
        allow_not_found: bool,
    ) -> Result<Reply, ApplyError> {
        let url = self.url(store, path);
        let mut builder = self.http.request(method.clone(), &url);
        builder = match &self.auth {
            MagentoAuth::Bearer { access_token } => builder.bearer_auth(access_token),
            MagentoAuth::OAuth1(credentials) => builder.header(
                reqwest::header::AUTHORIZATION,
                oauth::authorization_now(credentials, method.as_str(), &url),
            ),
        };
        if let Some(body) = body {
            builder = builder.json(body);
        }
        tracing::debug!(%method, store, path, "magento request");
        let response = builder.send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| classify_transport(&e))?;
        if status.is_success() || (allow_not_found && status == StatusCode::NOT_FOUND) {
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok(Reply { status, body });
        }
        Err(classify(status, &headers, &text))
    }
}

pub use crate::http::encode_component as encode_path_segment;
