//! An in-process fake Magento: enough of the admin REST API for the connector's calls, with
//! Magento's behaviours that matter here (values per store code, url_key unique per store,
//! `{message, parameters}` errors, Bearer or OAuth 1.0a authentication). Every request is
//! recorded so tests can check what was sent, and validate each body against the Swagger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::oauth::{self, OAuthCredentials};
use super::schema;

/// How the fake checks callers.
#[derive(Clone)]
pub enum FakeAuth {
    Bearer(String),
    OAuth(OAuthCredentials),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub store: String,
    /// Below `/V1/`, still percent-encoded.
    pub path: String,
    pub body: Option<Value>,
}

#[derive(Default)]
pub struct Data {
    pub requests: Vec<Recorded>,
    /// store code → sku → product as stored at that scope.
    pub products: BTreeMap<String, BTreeMap<String, Value>>,
    /// (store code, url_key) → sku.
    pub url_keys: BTreeMap<(String, String), String>,
    /// (sku, source code) → quantity.
    pub source_items: BTreeMap<(String, String), f64>,
    ids: BTreeMap<String, i64>,
    /// Answers given instead of the normal ones, first come first served.
    pub failures: VecDeque<(u16, String)>,
}

struct Inner {
    auth: FakeAuth,
    data: Mutex<Data>,
}

pub struct Fake {
    pub url: String,
    inner: Arc<Inner>,
}

impl Fake {
    pub async fn start(auth: FakeAuth) -> Fake {
        let inner = Arc::new(Inner {
            auth,
            data: Mutex::new(Data::default()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { url, inner }
    }

    pub fn data(&self) -> MutexGuard<'_, Data> {
        self.inner.data.lock().expect("fake lock")
    }

    /// The next request is answered `status` with `body` (after auth passed).
    pub fn fail_next(&self, status: u16, body: &str) {
        self.data().failures.push_back((status, body.to_owned()));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.data().requests.clone()
    }

    pub fn product(&self, store: &str, sku: &str) -> Option<Value> {
        self.data().products.get(store)?.get(sku).cloned()
    }

    /// Every body sent so far, validated against the admin REST Swagger.
    pub fn assert_contract(&self) {
        let requests = self.requests();
        assert!(!requests.is_empty());
        for request in requests {
            let Some(body) = &request.body else { continue };
            let operation = schema::operation_path(&request.path);
            let errors = schema::validate(&request.method, operation, body);
            assert!(
                errors.is_empty(),
                "{} {operation}: {errors:#?}\n{body:#}",
                request.method
            );
        }
    }
}

fn magento_error(status: StatusCode, message: &str, parameters: Value) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "parameters": parameters})),
    )
        .into_response()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&inner.auth, &method, &uri, &headers) {
        return magento_error(
            StatusCode::UNAUTHORIZED,
            "The consumer isn't authorized to access %resources.",
            json!({"resources": "Magento_Catalog::products"}),
        );
    }
    let Some((store, path)) = uri
        .path()
        .strip_prefix("/rest/")
        .and_then(|rest| rest.split_once("/V1/"))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => return magento_error(StatusCode::BAD_REQUEST, "Decoding error.", json!([])),
        }
    };
    let mut data = inner.data.lock().expect("fake lock");
    data.requests.push(Recorded {
        method: method.to_string(),
        store: store.to_owned(),
        path: path.to_owned(),
        body: body.clone(),
    });
    if let Some((status, text)) = data.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, text).into_response();
    }
    let body = body.unwrap_or(Value::Null);
    if path == "inventory/source-items" && method == Method::POST {
        for item in body["sourceItems"].as_array().into_iter().flatten() {
            let key = (
                item["sku"].as_str().unwrap_or_default().to_owned(),
                item["source_code"].as_str().unwrap_or_default().to_owned(),
            );
            data.source_items
                .insert(key, item["quantity"].as_f64().unwrap_or(-1.0));
        }
        return axum::Json(json!([])).into_response();
    }
    let Some(encoded_sku) = path.strip_prefix("products/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let sku = oauth::query_pairs(&format!("s={encoded_sku}"))[0].1.clone();
    match method {
        Method::GET => match data.products.get("all").and_then(|p| p.get(&sku)) {
            Some(product) => axum::Json(product.clone()).into_response(),
            None => not_found(),
        },
        Method::DELETE => {
            if data
                .products
                .get("all")
                .is_none_or(|p| !p.contains_key(&sku))
            {
                return not_found();
            }
            for products in data.products.values_mut() {
                products.remove(&sku);
            }
            data.url_keys.retain(|_, owner| *owner != sku);
            axum::Json(json!(true)).into_response()
        }
        Method::PUT => put_product(&mut data, store, &sku, &body["product"]),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn not_found() -> Response {
    magento_error(
        StatusCode::NOT_FOUND,
        "The product that was requested doesn't exist. Verify the product and try again.",
        json!([]),
    )
}

fn put_product(data: &mut Data, store: &str, sku: &str, product: &Value) -> Response {
    let exists = data
        .products
        .get("all")
        .is_some_and(|p| p.contains_key(sku));
    if !exists && store == "all" && product.get("name").is_none() {
        return magento_error(
            StatusCode::BAD_REQUEST,
            "The \"%1\" attribute value is empty. Set the attribute and try again.",
            json!(["name"]),
        );
    }
    let url_key = product["custom_attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["attribute_code"] == "url_key")
        .and_then(|a| a["value"].as_str());
    if let Some(url_key) = url_key {
        let key = (store.to_owned(), url_key.to_owned());
        match data.url_keys.get(&key) {
            Some(owner) if owner != sku => {
                return magento_error(
                    StatusCode::BAD_REQUEST,
                    "URL key for specified store already exists.",
                    json!([]),
                );
            }
            _ => {
                data.url_keys
                    .retain(|(s, _), owner| !(s == store && owner == sku));
                data.url_keys.insert(key, sku.to_owned());
            }
        }
    }
    let next = data.ids.len() as i64 + 1;
    let id = *data.ids.entry(sku.to_owned()).or_insert(next);
    let stored = data
        .products
        .entry(store.to_owned())
        .or_default()
        .entry(sku.to_owned())
        .or_insert_with(|| json!({}));
    merge(stored, product);
    stored["id"] = json!(id);
    axum::Json(stored.clone()).into_response()
}

/// Top-level fields replace; custom attributes merge by code, as Magento saves them.
fn merge(stored: &mut Value, update: &Value) {
    let Some(update) = update.as_object() else {
        return;
    };
    for (key, value) in update {
        if key == "custom_attributes" {
            let mut merged: BTreeMap<String, Value> = stored[key]
                .as_array()
                .into_iter()
                .flatten()
                .chain(value.as_array().into_iter().flatten())
                .filter_map(|a| Some((a["attribute_code"].as_str()?.to_owned(), a.clone())))
                .collect();
            stored[key] = Value::Array(std::mem::take(&mut merged).into_values().collect());
        } else {
            stored[key] = value.clone();
        }
    }
}

fn authorized(auth: &FakeAuth, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    let Some(header) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match auth {
        FakeAuth::Bearer(token) => header == format!("Bearer {token}"),
        FakeAuth::OAuth(credentials) => {
            let Some(fields) = header.strip_prefix("OAuth ") else {
                return false;
            };
            let mut params: Vec<(String, String)> = fields
                .split(", ")
                .filter_map(|field| {
                    let (k, v) = field.split_once('=')?;
                    let v = v.strip_prefix('"')?.strip_suffix('"')?;
                    Some(oauth::query_pairs(&format!("{k}={v}")).remove(0))
                })
                .collect();
            let Some(at) = params.iter().position(|(k, _)| k == "oauth_signature") else {
                return false;
            };
            let (_, signature) = params.remove(at);
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            if get("oauth_consumer_key") != Some(&credentials.consumer_key)
                || get("oauth_token") != Some(&credentials.access_token)
                || get("oauth_signature_method") != Some("HMAC-SHA256")
                || get("oauth_nonce").is_none_or(str::is_empty)
                || get("oauth_timestamp").is_none()
            {
                return false;
            }
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let url = format!("http://{host}{path}");
            let base = oauth::base_string(method.as_str(), &url, &params);
            let expected = oauth::sign(
                &base,
                &credentials.consumer_secret,
                &credentials.access_token_secret,
            );
            expected == signature
        }
    }
}
