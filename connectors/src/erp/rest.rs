//! The `rest` connector: a generic REST ERP declared in config. Per operation (upsert,
//! optional create, optional delete) a method, a URL template, a JSON body template and
//! the success codes; authentication by bearer token, basic, OAuth2 client credentials or
//! a session login.
//!
//! Exactly-once rests on the target: every request carries the apply's idempotency key in
//! an `Idempotency-Key` header (IETF draft `httpapi-idempotency-key-header`, an sf-string,
//! so quoted; the header name is configurable, e.g. `X-NetSuite-Idempotency-Key`). 409
//! means the first request with the key is still in flight (retry later); 422 means the
//! key was used with another body (permanent). With `if_match`, the ETag of the last
//! response is sent as `If-Match`, Business Central style; a 412 (changed in the ERP
//! since) fetches the current ETag and sends once more, since the PIM is the source of
//! truth.
//!
//! Covers NetSuite-style upserts by external id (`PUT …/inventoryItem/eid:{key}`),
//! Business Central-style `PATCH …/items({id})` with a `create` (POST) when no id is
//! known yet or the upsert answers 404, and home-grown ERPs.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ETAG, HeaderMap, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::http::{classify_status, classify_transport, shorten};
use crate::mapping::Mapping;
use crate::product::ProductKind;

use super::BuildError;

mod auth;
pub mod template;
#[cfg(test)]
mod tests;

pub use auth::{ClientAuth, OAuth2Settings, RestAuth, SessionSettings};
use template::{BodyTemplate, Context, PathTemplate};

/// `remote_ids` keys: the record id read with `id_pointer`, and the last ETag.
pub const REMOTE_ID: &str = "id";
pub const REMOTE_ETAG: &str = "etag";
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// `[targets.rest]`, with secrets resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RestSettings {
    pub base_url: String,
    pub auth: RestAuth,
    /// `None`: send no idempotency key (the target has no support for one).
    pub idempotency_header: Option<String>,
    /// JSON pointer of the record id in responses (e.g. `/id`), remembered for `{id}`.
    pub id_pointer: Option<String>,
    pub upsert: RestOperation,
    /// Creates the record when the upsert URL needs an `{id}` not known yet, or the upsert
    /// answers 404.
    pub create: Option<RestOperation>,
    /// Without it deletions in the PIM leave the ERP record alone.
    pub delete: Option<RestOperation>,
}

/// One kind of request.
#[derive(Debug, Clone, PartialEq)]
pub struct RestOperation {
    pub method: String,
    /// URL template relative to the base URL, e.g. `/items/{key}`.
    pub path: String,
    /// JSON body template; `None` sends no body.
    pub body: Option<String>,
    /// Statuses that mean done; empty means any 2xx.
    pub success: Vec<u16>,
    /// Send `If-Match` with the remembered ETag.
    pub if_match: bool,
}

impl RestOperation {
    pub fn new(method: &str, path: &str) -> RestOperation {
        RestOperation {
            method: method.to_owned(),
            path: path.to_owned(),
            body: None,
            success: Vec::new(),
            if_match: false,
        }
    }

    /// Checks the method and templates; `fields` are the target's mapping fields. Returns
    /// the offending key (`method`, `path`, `body`) and the problem.
    pub fn check(&self, fields: &[&str]) -> Result<(), (&'static str, String)> {
        self.compile(fields).map(drop)
    }

    fn compile(&self, fields: &[&str]) -> Result<Operation, (&'static str, String)> {
        let method = Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ("method", format!("invalid HTTP method \"{}\"", self.method)))?;
        let path = PathTemplate::parse(&self.path).map_err(|e| ("path", e))?;
        let body = match &self.body {
            Some(text) => Some(BodyTemplate::parse(text).map_err(|e| ("body", e))?),
            None => None,
        };
        let known = |name: &str| template::BUILTINS.contains(&name) || fields.contains(&name);
        let path_names = path.names().into_iter().map(str::to_owned);
        let body_names = body.iter().flat_map(BodyTemplate::names);
        for (key, name) in path_names
            .map(|n| ("path", n))
            .chain(body_names.map(|n| ("body", n)))
        {
            if !known(&name) {
                return Err((
                    key,
                    format!(
                        "unknown placeholder \"{name}\" (expected a mapping field or one of: {})",
                        template::BUILTINS.join(", ")
                    ),
                ));
            }
        }
        if let Some(code) = self.success.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(("success", format!("{code} is not an HTTP status")));
        }
        Ok(Operation {
            method,
            path,
            body,
            success: self.success.clone(),
            if_match: self.if_match,
        })
    }
}

struct Operation {
    method: Method,
    path: PathTemplate,
    body: Option<BodyTemplate>,
    success: Vec<u16>,
    if_match: bool,
}

impl Operation {
    fn succeeded(&self, status: StatusCode) -> bool {
        if self.success.is_empty() {
            status.is_success()
        } else {
            self.success.contains(&status.as_u16())
        }
    }
}

pub struct RestConnector {
    client: reqwest::Client,
    base_url: String,
    auth: auth::Auth,
    idempotency_header: Option<reqwest::header::HeaderName>,
    id_pointer: Option<String>,
    mapping: Mapping,
    upsert: Operation,
    create: Option<Operation>,
    delete: Option<Operation>,
}

/// Builds the REST connector of a target. `timeout` bounds each request.
pub fn connector(
    settings: RestSettings,
    mapping: Mapping,
    timeout: Duration,
) -> Result<RestConnector, BuildError> {
    let fields: Vec<&str> = mapping.fields.keys().map(String::as_str).collect();
    let compile = |name: &str, op: &RestOperation| {
        op.compile(&fields)
            .map_err(|(key, e)| BuildError(format!("{name}.{key}: {e}")))
    };
    let upsert = compile("upsert", &settings.upsert)?;
    let create = settings
        .create
        .as_ref()
        .map(|op| compile("create", op))
        .transpose()?;
    let delete = settings
        .delete
        .as_ref()
        .map(|op| compile("delete", op))
        .transpose()?;
    let idempotency_header = settings
        .idempotency_header
        .as_deref()
        .map(|h| {
            reqwest::header::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| BuildError(format!("invalid header name \"{h}\"")))
        })
        .transpose()?;
    let base_url = settings.base_url.trim_end_matches('/').to_owned();
    Ok(RestConnector {
        client: super::client(timeout)?,
        auth: auth::Auth::new(settings.auth, &base_url),
        base_url,
        idempotency_header,
        id_pointer: settings.id_pointer,
        mapping,
        upsert,
        create,
        delete,
    })
}

/// How one request ended, when not in error.
enum Outcome {
    Done(RemoteIds),
    NotFound { headers: HeaderMap, body: String },
}

#[async_trait]
impl Connector for RestConnector {
    fn kind(&self) -> &'static str {
        "rest"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let (kind, snapshot, variants) = match request.desired {
            Desired::Upsert {
                kind,
                snapshot,
                variants,
            } => (kind, Some(snapshot), variants),
            Desired::Delete => (ProductKind::Product, None, &[][..]),
        };
        let ctx = Context {
            key: request.product_key,
            id: request.remote_ids.get(REMOTE_ID).map(String::as_str),
            kind,
            idempotency_key: request.idempotency_key,
            snapshot,
            variants,
            mapping: &self.mapping,
        };
        let ids = request.remote_ids;
        let key = request.idempotency_key;
        if snapshot.is_none() {
            let Some(delete) = &self.delete else {
                return Ok(Applied::default());
            };
            if delete.path.uses("id") && ctx.id.is_none() {
                // Never created through pimsync: nothing to delete.
                return Ok(Applied::default());
            }
            return match self.send(delete, &ctx, ids, key).await? {
                Outcome::Done(_) | Outcome::NotFound { .. } => Ok(Applied::default()),
            };
        }
        // Separate requests get separate keys: reusing one with another body is a 422.
        let create_key = format!("{key}-create");
        if self.upsert.path.uses("id") && ctx.id.is_none() {
            let Some(create) = &self.create else {
                return Err(ApplyError::permanent(
                    "the upsert URL needs {id}, no id is known yet and no create operation is configured",
                ));
            };
            return self.finish(create, self.send(create, &ctx, ids, &create_key).await?);
        }
        match (self.send(&self.upsert, &ctx, ids, key).await?, &self.create) {
            (Outcome::NotFound { .. }, Some(create)) => {
                self.finish(create, self.send(create, &ctx, ids, &create_key).await?)
            }
            (outcome, _) => self.finish(&self.upsert, outcome),
        }
    }
}

impl RestConnector {
    fn finish(&self, op: &Operation, outcome: Outcome) -> Result<Applied, ApplyError> {
        match outcome {
            Outcome::Done(remote_ids) => Ok(Applied::new(remote_ids)),
            Outcome::NotFound { headers, body } if !op.succeeded(StatusCode::NOT_FOUND) => {
                Err(classify_status(StatusCode::NOT_FOUND, &headers, &body))
            }
            Outcome::NotFound { .. } => Ok(Applied::default()),
        }
    }

    /// Sends one operation, renewing the login once on 401 and the ETag once on 412.
    async fn send(
        &self,
        op: &Operation,
        ctx: &Context<'_>,
        remote_ids: &RemoteIds,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        let url = format!("{}{}", self.base_url, op.path.render(ctx)?);
        let body = op.body.as_ref().map(|b| b.render(ctx)).transpose()?;
        let mut etag = remote_ids.get(REMOTE_ETAG).cloned();
        let mut key = idempotency_key.to_owned();
        let (mut renewed_login, mut renewed_etag) = (false, false);
        loop {
            let mut request = self.client.request(op.method.clone(), &url);
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Some(header) = &self.idempotency_header {
                request = request.header(header, sf_string(&key));
            }
            if let (true, Some(etag)) = (op.if_match, &etag) {
                request = request.header(IF_MATCH, etag);
            }
            let credential = self.auth.header(&self.client).await?;
            if let Some((name, value)) = &credential {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|e| classify_transport(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = super::body_text(response).await;
            if op.succeeded(status) {
                return Ok(Outcome::Done(self.remember(remote_ids, &headers, &text)));
            }
            match status {
                StatusCode::UNAUTHORIZED if self.auth.renewable() && !renewed_login => {
                    if let Some((_, used)) = &credential {
                        self.auth.reject(used).await;
                    }
                    renewed_login = true;
                }
                StatusCode::PRECONDITION_FAILED if op.if_match && !renewed_etag => {
                    etag = Some(self.current_etag(&url).await?);
                    // The 412 may be stored under the first key; this is another request.
                    key = format!("{idempotency_key}-etag");
                    renewed_etag = true;
                }
                StatusCode::NOT_FOUND | StatusCode::GONE => {
                    return Ok(Outcome::NotFound {
                        headers,
                        body: text,
                    });
                }
                StatusCode::CONFLICT if self.idempotency_header.is_some() => {
                    return Err(ApplyError::Retryable {
                        message: format!(
                            "HTTP 409: a request with this idempotency key is still being processed by the target; retrying later ({})",
                            shorten(&text, 300)
                        ),
                        retry_after: crate::http::retry_after(
                            &headers,
                            std::time::SystemTime::now(),
                        ),
                    });
                }
                StatusCode::UNPROCESSABLE_ENTITY if self.idempotency_header.is_some() => {
                    return Err(ApplyError::permanent(format!(
                        "HTTP 422: {} (the target rejected the request; if it says the idempotency key was already used with a different body, the body template is not deterministic or the target's key store is shared with another client)",
                        shorten(&text, 500)
                    )));
                }
                _ => return Err(classify_status(status, &headers, &text)),
            }
        }
    }

    /// The record's current ETag, for a write that lost the race with an edit in the ERP.
    async fn current_etag(&self, url: &str) -> Result<String, ApplyError> {
        let mut request = self.client.get(url);
        if let Some((name, value)) = self.auth.header(&self.client).await? {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = super::body_text(response).await;
        if !status.is_success() {
            return Err(classify_status(status, &headers, &text));
        }
        etag_of(&headers, &text).ok_or_else(|| {
            ApplyError::permanent("HTTP 412 and the record has no ETag to retry with")
        })
    }

    fn remember(&self, previous: &RemoteIds, headers: &HeaderMap, body: &str) -> RemoteIds {
        let mut ids = previous.clone();
        if let Some(etag) = etag_of(headers, body) {
            ids.insert(REMOTE_ETAG.into(), etag);
        }
        let json: Option<Value> = serde_json::from_str(body).ok();
        let id = self
            .id_pointer
            .as_deref()
            .and_then(|p| json.as_ref()?.pointer(p).cloned());
        match id {
            Some(Value::String(id)) => {
                ids.insert(REMOTE_ID.into(), id);
            }
            Some(Value::Number(id)) => {
                ids.insert(REMOTE_ID.into(), id.to_string());
            }
            _ => {}
        }
        ids
    }
}

/// The ETag header, or OData's `@odata.etag` in the body (Business Central sends both).
fn etag_of(headers: &HeaderMap, body: &str) -> Option<String> {
    if let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
        return Some(etag.to_owned());
    }
    let json: Value = serde_json::from_str(body).ok()?;
    json.get("@odata.etag")?.as_str().map(str::to_owned)
}

/// An RFC 8941 sf-string: quoted, with `\` and `"` escaped.
fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
