//! An in-process Akeneo REST API, enough for the pull: the OAuth2 password and refresh
//! grants (tokens that expire), products by uuid and product models by code, lists with
//! `search_after` pagination, `uuid IN` and `updated >` filters and `with_count`, 404 for
//! unknown resources, scripted 429s, and a gate that holds list pages past a number.
//!
//! It depends only on axum, tokio, serde_json and base64, so the daemon's tests include
//! this same file (`#[path]`) rather than keeping a second fake.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::watch;

pub const CLIENT_ID: &str = "client-id";
pub const SECRET: &str = "client-secret";
pub const USERNAME: &str = "pull-user";
pub const PASSWORD: &str = "pull-password";

#[derive(Default)]
pub struct FakeState {
    /// Products by uuid, as the REST API returns them.
    pub products: BTreeMap<String, Value>,
    /// Product models by code.
    pub models: BTreeMap<String, Value>,
    /// `expires_in` of issued tokens, in seconds.
    pub token_ttl: u64,
    /// Access token → when it expires.
    access: BTreeMap<String, Instant>,
    refresh: Vec<String>,
    issued: u64,
    pub logins: usize,
    pub refreshes: usize,
    /// Refresh grants are refused (the client must log in again).
    pub refuse_refresh: bool,
    /// Answer this many API requests with 429 and `Retry-After: 0` (or `retry_after`).
    pub throttle: usize,
    pub retry_after: &'static str,
    pub throttled: usize,
    /// Every API request (path and query, decoded), in order.
    pub requests: Vec<String>,
    /// List requests answered so far.
    pub pages_served: usize,
    /// List requests after this many wait at the gate until it opens.
    pub hold_pages_after: Option<usize>,
}

#[derive(Clone)]
pub struct FakeAkeneo {
    state: Arc<Mutex<FakeState>>,
    gate: watch::Sender<bool>,
    pub addr: SocketAddr,
}

impl FakeAkeneo {
    pub async fn start() -> FakeAkeneo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, _) = watch::channel(true);
        let fake = FakeAkeneo {
            state: Arc::new(Mutex::new(FakeState {
                token_ttl: 3600,
                retry_after: "0",
                ..FakeState::default()
            })),
            gate,
            addr,
        };
        let app = Router::new()
            .route("/api/oauth/v1/token", post(token))
            .route("/api/rest/v1/products-uuid", get(list_products))
            .route("/api/rest/v1/products-uuid/{uuid}", get(one_product))
            .route("/api/rest/v1/product-models", get(list_models))
            .route("/api/rest/v1/product-models/{code}", get(one_model))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Adds or replaces a product.
    pub fn put_product(&self, resource: Value) {
        let uuid = resource["uuid"].as_str().unwrap().to_owned();
        self.state().products.insert(uuid, resource);
    }

    pub fn remove_product(&self, uuid: &str) {
        self.state().products.remove(uuid);
    }

    pub fn put_model(&self, resource: Value) {
        let code = resource["code"].as_str().unwrap().to_owned();
        self.state().models.insert(code, resource);
    }

    /// Makes every issued access token expired.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for expiry in self.state().access.values_mut() {
            *expiry = now;
        }
    }

    pub fn hold_pages_after(&self, pages: usize) {
        self.state().hold_pages_after = Some(pages);
        self.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.state().hold_pages_after = None;
        self.gate.send_replace(true);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

/// A product resource the way Akeneo 7 returns it.
pub fn product(uuid: &str, identifier: &str, updated: &str, name: &str) -> Value {
    json!({
        "uuid": uuid,
        "identifier": identifier,
        "enabled": true,
        "family": "chairs",
        "categories": ["seating"],
        "groups": [],
        "parent": null,
        "values": {
            "name": [{"locale": "en_US", "scope": null, "data": name}],
            "sku": [{"locale": null, "scope": null, "data": identifier}]
        },
        "created": "2026-01-01T00:00:00+00:00",
        "updated": updated,
        "associations": {},
        "quantified_associations": {},
        "metadata": {"workflow_status": "working_copy"}
    })
}

pub fn product_model(code: &str, updated: &str, name: &str) -> Value {
    json!({
        "code": code,
        "family": "chairs",
        "family_variant": "chairs_by_color",
        "parent": null,
        "categories": ["seating"],
        "values": {"name": [{"locale": "en_US", "scope": null, "data": name}]},
        "created": "2026-01-01T00:00:00+00:00",
        "updated": updated,
        "associations": {},
        "quantified_associations": {}
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message})),
    )
        .into_response()
}

async fn token(State(fake): State<FakeAkeneo>, headers: HeaderMap, body: String) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Invalid client credentials");
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid json message received");
    };
    let mut state = fake.state();
    match body["grant_type"].as_str() {
        Some("password") => {
            if body["username"] != USERNAME || body["password"] != PASSWORD {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "No user found for the given username and password",
                );
            }
            state.logins += 1;
        }
        Some("refresh_token") => {
            let given = body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state.refuse_refresh || !state.refresh.contains(&given) {
                return error(StatusCode::BAD_REQUEST, "Invalid refresh token");
            }
            state.refresh.retain(|r| *r != given);
            state.refreshes += 1;
        }
        _ => return error(StatusCode::BAD_REQUEST, "Invalid grant_type parameter"),
    }
    state.issued += 1;
    let access = format!("access-{}", state.issued);
    let refresh = format!("refresh-{}", state.issued);
    let ttl = state.token_ttl;
    state
        .access
        .insert(access.clone(), Instant::now() + Duration::from_secs(ttl));
    state.refresh.push(refresh.clone());
    Json(
        json!({"access_token": access, "expires_in": ttl, "token_type": "bearer",
                "scope": null, "refresh_token": refresh}),
    )
    .into_response()
}

/// Checks the bearer token, records the request and applies scripted throttling.
fn admit(fake: &FakeAkeneo, headers: &HeaderMap, uri: &Uri) -> Result<(), Box<Response>> {
    let mut state = fake.state();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match state.access.get(bearer) {
        Some(expiry) if Instant::now() < *expiry => {}
        _ => {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "The access token provided is invalid.",
            )));
        }
    }
    state.requests.push(decode(&uri.to_string()));
    if state.throttle > 0 {
        state.throttle -= 1;
        state.throttled += 1;
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        response
            .headers_mut()
            .insert("retry-after", state.retry_after.parse().unwrap());
        return Err(Box::new(response));
    }
    Ok(())
}

async fn one_product(
    State(fake): State<FakeAkeneo>,
    headers: HeaderMap,
    uri: Uri,
    Path(uuid): Path<String>,
) -> Response {
    if let Err(response) = admit(&fake, &headers, &uri) {
        return *response;
    }
    match fake.state().products.get(&uuid) {
        Some(product) => Json(product.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!(
                "Product \"{uuid}\" does not exist or you do not have permission to access it."
            ),
        ),
    }
}

async fn one_model(
    State(fake): State<FakeAkeneo>,
    headers: HeaderMap,
    uri: Uri,
    Path(code): Path<String>,
) -> Response {
    if let Err(response) = admit(&fake, &headers, &uri) {
        return *response;
    }
    match fake.state().models.get(&code) {
        Some(model) => Json(model.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Product model \"{code}\" does not exist."),
        ),
    }
}

async fn list_products(State(fake): State<FakeAkeneo>, headers: HeaderMap, uri: Uri) -> Response {
    list(fake, headers, uri, "uuid", "/api/rest/v1/products-uuid").await
}

async fn list_models(State(fake): State<FakeAkeneo>, headers: HeaderMap, uri: Uri) -> Response {
    list(fake, headers, uri, "code", "/api/rest/v1/product-models").await
}

async fn list(
    fake: FakeAkeneo,
    headers: HeaderMap,
    uri: Uri,
    id_field: &str,
    path: &str,
) -> Response {
    if let Err(response) = admit(&fake, &headers, &uri) {
        return *response;
    }
    let hold = {
        let mut state = fake.state();
        state.pages_served += 1;
        state
            .hold_pages_after
            .is_some_and(|after| state.pages_served > after)
    };
    if hold {
        let mut gate = fake.gate.subscribe();
        while !*gate.borrow_and_update() {
            if gate.changed().await.is_err() {
                break;
            }
        }
    }
    let query = query_pairs(uri.query().unwrap_or_default());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if param("pagination_type").as_deref() != Some("search_after") {
        return error(StatusCode::BAD_REQUEST, "expected search_after pagination");
    }
    let limit: usize = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let search: Value = match param("search") {
        Some(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Search query parameter should be valid JSON.",
                );
            }
        },
        None => json!({}),
    };
    let after = param("search_after");
    let state = fake.state();
    let all = if id_field == "uuid" {
        &state.products
    } else {
        &state.models
    };
    let matching: Vec<&Value> = all.values().filter(|item| matches(item, &search)).collect();
    let items: Vec<Value> = matching
        .iter()
        .filter(|item| {
            after
                .as_deref()
                .is_none_or(|after| item[id_field].as_str().unwrap_or_default() > after)
        })
        .take(limit)
        .map(|item| {
            let mut item = (*item).clone();
            item["_links"] = json!({"self": {"href": format!("http://pim.invalid{path}/{}", item[id_field].as_str().unwrap_or_default())}});
            item
        })
        .collect();
    let remaining_after_page = matching
        .iter()
        .filter(|item| {
            let id = item[id_field].as_str().unwrap_or_default();
            items
                .last()
                .is_some_and(|last| id > last[id_field].as_str().unwrap_or_default())
        })
        .count();
    // Links name another host, as a PIM behind a proxy does: the client must keep its own.
    let mut links = json!({"self": {"href": format!("http://pim.invalid{uri}")}});
    if remaining_after_page > 0 {
        let last = items.last().unwrap()[id_field].as_str().unwrap().to_owned();
        let mut next = format!(
            "http://pim.invalid{path}?pagination_type=search_after&limit={limit}&search_after={}",
            encode(&last)
        );
        if let Some(search) = param("search") {
            next.push_str(&format!("&search={}", encode(&search)));
        }
        links["next"] = json!({"href": next});
    }
    let mut body = json!({"_links": links, "_embedded": {"items": items}});
    if param("with_count").as_deref() == Some("true") {
        body["items_count"] = json!(matching.len());
    }
    Json(body).into_response()
}

fn matches(item: &Value, search: &Value) -> bool {
    let Some(filters) = search.as_object() else {
        return true;
    };
    filters.iter().all(|(field, conditions)| {
        conditions
            .as_array()
            .into_iter()
            .flatten()
            .all(|condition| {
                let value = &condition["value"];
                match (field.as_str(), condition["operator"].as_str()) {
                    ("uuid", Some("IN")) => value
                        .as_array()
                        .is_some_and(|list| list.contains(&item["uuid"])),
                    ("updated", Some(">")) => {
                        // "2026-01-01T10:00:00+00:00" vs "2026-01-01 10:00:00" (UTC fixtures).
                        let updated = item["updated"]
                            .as_str()
                            .unwrap_or_default()
                            .replace('T', " ");
                        let updated = updated.get(..19).unwrap_or_default();
                        updated > value.as_str().unwrap_or_default()
                    }
                    _ => false,
                }
            })
    })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
