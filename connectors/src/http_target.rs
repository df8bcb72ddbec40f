//! The `http` connector: pimsync's own minimal HTTP contract, for home-grown services and
//! for tests. `PUT {base_url}/products/{key}` with the canonical product as JSON, and
//! `DELETE {base_url}/products/{key}`, each with an `Idempotency-Key` header (an IETF
//! structured-field string) that is the same on every retry of the same desired state.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired};
use crate::http::{classify_status, classify_transport, encode_component};

pub struct HttpTarget {
    client: reqwest::Client,
    base_url: String,
    bearer_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

impl HttpTarget {
    pub fn new(
        base_url: &str,
        bearer_token: Option<String>,
        timeout: Duration,
    ) -> Result<HttpTarget, BuildError> {
        let client = crate::http::client(timeout).map_err(|e| BuildError(e.to_string()))?;
        Ok(HttpTarget {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            bearer_token,
        })
    }

    fn url(&self, key: &str) -> String {
        format!("{}/products/{}", self.base_url, encode_component(key))
    }
}

#[async_trait]
impl Connector for HttpTarget {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let url = self.url(request.product_key);
        let builder = match request.desired {
            Desired::Upsert {
                kind,
                snapshot,
                variants,
            } => self.client.put(&url).json(&json!({
                "key": request.product_key,
                "kind": kind,
                "product": snapshot,
                "variants": variants.iter().map(|v| json!({"key": v.key, "product": v.snapshot})).collect::<Vec<_>>(),
            })),
            Desired::Delete => self.client.delete(&url),
        };
        let mut builder = builder.header(
            "Idempotency-Key",
            format!("\"{}\"", request.idempotency_key),
        );
        if let Some(token) = &self.bearer_token {
            builder = builder.bearer_auth(token);
        }
        let response = builder.send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let deleting = matches!(request.desired, Desired::Delete);
        if status.is_success() || (deleting && status == reqwest::StatusCode::NOT_FOUND) {
            let mut remote_ids = request.remote_ids.clone();
            remote_ids.insert("url".into(), url);
            return Ok(Applied::new(remote_ids));
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(classify_status(status, &headers, &body))
    }
}
