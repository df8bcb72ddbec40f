//! An in-process fake Shopify Admin API, for the connector's tests and the pacing
//! benchmark (which includes this file by path, so it uses nothing from the crate).
//!
//! It dispatches on the operation name, keeps products, variants, inventory levels and
//! idempotency keys in memory, records every request, runs the cost bucket like Shopify
//! (cost charged up front, THROTTLED when the bucket cannot pay) and can be told to fail.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub operation: String,
    pub query: String,
    pub variables: Value,
    pub api_version: String,
    pub throttled: bool,
}

/// A failure the next request of an operation gets instead of being handled.
#[derive(Debug, Clone)]
pub enum Failure {
    Status(u16),
    /// Handled as usual (the effect happens), then answered with this HTTP status:
    /// the client cannot know whether its request took effect.
    StatusAfterEffect(u16),
    UserErrors(Value),
}

#[derive(Debug, Clone, Default)]
pub struct Product {
    pub id: String,
    pub key: String,
    pub input: Value,
    pub status: String,
    pub variants: Vec<(String, String, String)>, // (variant id, sku, inventory item id)
    pub publications: Vec<String>,
}

pub struct State {
    pub maximum: f64,
    pub available: f64,
    pub restore_rate: f64,
    at: Instant,
    /// Cost charged per operation name (default: 10 for mutations, 2 for queries).
    pub costs: HashMap<String, f64>,
    pub requests: Vec<Recorded>,
    pub throttled: u64,
    pub points_spent: f64,
    pub failures: HashMap<String, VecDeque<Failure>>,
    pub products: BTreeMap<String, Product>,
    pub definitions: Vec<(String, String, String)>,
    pub levels: BTreeMap<String, i64>,
    /// Inventory items not stocked at the location (set `stock_new_items` false to have
    /// productSet's new items land here, as in a shop whose default location is another).
    pub unstocked: std::collections::BTreeSet<String>,
    pub stock_new_items: bool,
    pub idempotency: HashMap<String, Value>,
    pub replays: u64,
    /// Tokens the API accepts. A static token is added by the test; grants add more.
    pub tokens: Vec<String>,
    pub grants: u64,
    pub token_lifetime: u64,
    pub client: (String, String),
    next_id: u64,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Starts on 127.0.0.1:0 with a full bucket.
    pub async fn start(maximum: f64, restore_rate: f64) -> Fake {
        let state = Arc::new(Mutex::new(State {
            maximum,
            available: maximum,
            restore_rate,
            at: Instant::now(),
            costs: HashMap::new(),
            requests: Vec::new(),
            throttled: 0,
            points_spent: 0.0,
            failures: HashMap::new(),
            products: BTreeMap::new(),
            definitions: Vec::new(),
            levels: BTreeMap::new(),
            unstocked: Default::default(),
            stock_new_items: true,
            idempotency: HashMap::new(),
            replays: 0,
            tokens: vec!["static-token".into()],
            grants: 0,
            token_lifetime: 3600,
            client: ("client-id".into(), "client-secret".into()),
            next_id: 1,
        }));
        let app = Router::new()
            .route("/admin/api/{version}/graphql.json", post(graphql))
            .route("/admin/oauth/access_token", post(grant))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the fake");
        let addr = listener.local_addr().expect("fake address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fail_next(&self, operation: &str, failure: Failure) {
        self.state()
            .failures
            .entry(operation.to_owned())
            .or_default()
            .push_back(failure);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn operations(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.operation).collect()
    }

    pub fn product(&self, key: &str) -> Option<Product> {
        self.state().products.get(key).cloned()
    }
}

fn refill(s: &mut State) {
    let now = Instant::now();
    let elapsed = now.duration_since(s.at).as_secs_f64();
    s.available = (s.available + elapsed * s.restore_rate).min(s.maximum);
    s.at = now;
}

fn cost_extension(s: &State, cost: f64) -> Value {
    json!({"cost": {
        "requestedQueryCost": cost,
        "actualQueryCost": cost,
        "throttleStatus": {
            "maximumAvailable": s.maximum,
            "currentlyAvailable": s.available,
            "restoreRate": s.restore_rate,
        }
    }})
}

async fn grant(AxState(state): AxState<Arc<Mutex<State>>>, body: String) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let form: HashMap<&str, &str> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let ok = form.get("grant_type") == Some(&"client_credentials")
        && form.get("client_id") == Some(&s.client.0.as_str())
        && form.get("client_secret") == Some(&s.client.1.as_str());
    if !ok {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_client"}"#).into_response();
    }
    s.grants += 1;
    let token = format!("granted-{}", s.grants);
    s.tokens.push(token.clone());
    let lifetime = s.token_lifetime;
    axum::Json(json!({"access_token": token, "scope": "write_products", "expires_in": lifetime}))
        .into_response()
}

async fn graphql(
    AxState(state): AxState<Arc<Mutex<State>>>,
    axum::extract::Path(version): axum::extract::Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let token = headers
        .get("X-Shopify-Access-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !s.tokens.iter().any(|t| t == token) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":"Invalid API key or access token"}"#,
        )
            .into_response();
    }
    let operation = body["operationName"].as_str().unwrap_or("").to_owned();
    let query = body["query"].as_str().unwrap_or("").to_owned();
    let variables = body["variables"].clone();
    let cost =
        s.costs
            .get(&operation)
            .copied()
            .unwrap_or(if query.trim_start().starts_with("mutation") {
                10.0
            } else {
                2.0
            });
    refill(&mut s);
    let throttled = s.available < cost;
    s.requests.push(Recorded {
        operation: operation.clone(),
        query,
        variables: variables.clone(),
        api_version: version,
        throttled,
    });
    if throttled {
        s.throttled += 1;
        let body = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": cost_extension(&s, cost),
        });
        return axum::Json(body).into_response();
    }
    s.available -= cost;
    s.points_spent += cost;
    let failure = s.failures.get_mut(&operation).and_then(VecDeque::pop_front);
    let after_effect = match failure {
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "fake failure").into_response();
        }
        Some(Failure::UserErrors(errors)) => {
            let field = root_field(&operation);
            let body = json!({"data": {field: {"userErrors": errors}}, "extensions": cost_extension(&s, cost)});
            return axum::Json(body).into_response();
        }
        Some(Failure::StatusAfterEffect(code)) => Some(code),
        None => None,
    };
    let data = handle(&mut s, &operation, &variables, &body);
    if let Some(code) = after_effect {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "fake failure after effect").into_response();
    }
    let mut out = json!({"data": data, "extensions": cost_extension(&s, cost)});
    if data.is_null() {
        out["errors"] = json!([{"message": format!("unknown operation {operation}")}]);
    }
    axum::Json(out).into_response()
}

fn root_field(operation: &str) -> &'static str {
    match operation {
        "PimsyncMetafieldDefinitionCreate" => "metafieldDefinitionCreate",
        "PimsyncProductSet" | "PimsyncProductSetWithVariants" => "productSet",
        "PimsyncInventorySetQuantities" => "inventorySetQuantities",
        "PimsyncInventoryActivate" => "inventoryActivate",
        "PimsyncProductDelete" => "productDelete",
        "PimsyncProductUpdateStatus" => "productUpdate",
        "PimsyncPublishablePublish" => "publishablePublish",
        _ => "unknown",
    }
}

fn handle(s: &mut State, operation: &str, v: &Value, body: &Value) -> Value {
    match operation {
        "PimsyncMetafieldDefinitionCreate" => {
            let d = &v["definition"];
            let def = (
                d["namespace"].as_str().unwrap_or("").to_owned(),
                d["key"].as_str().unwrap_or("").to_owned(),
                d["type"].as_str().unwrap_or("").to_owned(),
            );
            if s.definitions.iter().any(|x| x.0 == def.0 && x.1 == def.1) {
                return json!({"metafieldDefinitionCreate": {"createdDefinition": null, "userErrors": [
                    {"code": "TAKEN", "field": ["definition", "key"], "message": "Key is in use for Product metafields on the 'pim' namespace."}]}});
            }
            let new_id = next_id(s, "MetafieldDefinition");
            s.definitions.push(def);
            json!({"metafieldDefinitionCreate": {"createdDefinition": {"id": new_id}, "userErrors": []}})
        }
        "PimsyncProductSet" | "PimsyncProductSetWithVariants" => {
            let key = v["identifier"]["customId"]["value"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let input = v["input"].clone();
            let existing = s.products.get(&key).cloned();
            let mut product = existing.unwrap_or_else(|| Product {
                id: next_id(s, "Product"),
                key: key.clone(),
                ..Default::default()
            });
            let mut variants = Vec::new();
            for variant in input["variants"].as_array().cloned().unwrap_or_default() {
                let sku = variant["sku"].as_str().unwrap_or("").to_owned();
                match product.variants.iter().find(|x| x.1 == sku) {
                    Some(x) => variants.push(x.clone()),
                    None => {
                        let item = next_id(s, "InventoryItem");
                        if !s.stock_new_items {
                            s.unstocked.insert(item.clone());
                        }
                        variants.push((next_id(s, "ProductVariant"), sku, item))
                    }
                }
            }
            product.variants = variants;
            product.status = input["status"].as_str().unwrap_or("ACTIVE").to_owned();
            product.input = input;
            let nodes = variant_page(&product, 0);
            let pid = product.id.clone();
            s.products.insert(key, product);
            json!({"productSet": {"product": {"id": pid, "variants": nodes}, "userErrors": []}})
        }
        "PimsyncProductVariants" => {
            let pid = v["id"].as_str().unwrap_or("");
            let after: usize = v["after"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            match s.products.values().find(|p| p.id == pid) {
                Some(p) => json!({"product": {"variants": variant_page(p, after)}}),
                None => json!({"product": null}),
            }
        }
        "PimsyncInventorySetQuantities" => {
            let query = body["query"].as_str().unwrap_or("");
            let Some(key) = v["idempotencyKey"]
                .as_str()
                .filter(|_| query.contains("@idempotent"))
            else {
                return json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": [
                    {"code": "INVALID_INPUT", "field": null, "message": "An idempotency key is required"}]}});
            };
            if let Some(previous) = s.idempotency.get(key) {
                s.replays += 1;
                return previous.clone();
            }
            let quantities = v["input"]["quantities"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if quantities
                .iter()
                .any(|q| q.get("changeFromQuantity").is_none())
            {
                return json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": [
                    {"code": "CHANGE_FROM_QUANTITY_REQUIRED", "field": ["input", "quantities"], "message": "changeFromQuantity is required"}]}});
            }
            let unstocked: Vec<Value> = quantities
                .iter()
                .enumerate()
                .filter(|(_, q)| {
                    s.unstocked
                        .contains(q["inventoryItemId"].as_str().unwrap_or(""))
                })
                .map(|(i, _)| {
                    json!({"code": "ITEM_NOT_STOCKED_AT_LOCATION",
                    "field": ["input", "quantities", i.to_string(), "locationId"],
                    "message": "The inventory item is not stocked at the location."})
                })
                .collect();
            if !unstocked.is_empty() {
                let answer = json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": unstocked}});
                s.idempotency.insert(key.to_owned(), answer.clone());
                return answer;
            }
            for q in &quantities {
                let item = q["inventoryItemId"].as_str().unwrap_or("").to_owned();
                s.levels.insert(item, q["quantity"].as_i64().unwrap_or(0));
            }
            let group = next_id(s, "InventoryAdjustmentGroup");
            let answer = json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": group}, "userErrors": []}});
            s.idempotency.insert(key.to_owned(), answer.clone());
            answer
        }
        "PimsyncInventoryActivate" => {
            let query = body["query"].as_str().unwrap_or("");
            if v["idempotencyKey"].as_str().is_none() || !query.contains("@idempotent") {
                return json!({"inventoryActivate": {"inventoryLevel": null, "userErrors": [
                    {"field": null, "message": "An idempotency key is required"}]}});
            }
            let item = v["inventoryItemId"].as_str().unwrap_or("").to_owned();
            s.unstocked.remove(&item);
            let level = next_id(s, "InventoryLevel");
            json!({"inventoryActivate": {"inventoryLevel": {"id": level}, "userErrors": []}})
        }
        "PimsyncProductByIdentifier" => {
            let key = v["identifier"]["customId"]["value"].as_str().unwrap_or("");
            let found = s.products.get(key).map(|p| json!({"id": p.id}));
            json!({"productByIdentifier": found})
        }
        "PimsyncProductDelete" => {
            let pid = v["input"]["id"].as_str().unwrap_or("").to_owned();
            let key = s
                .products
                .iter()
                .find(|(_, p)| p.id == pid)
                .map(|(k, _)| k.clone());
            match key {
                Some(key) => {
                    s.products.remove(&key);
                    json!({"productDelete": {"deletedProductId": pid, "userErrors": []}})
                }
                None => json!({"productDelete": {"deletedProductId": null, "userErrors": [
                    {"field": ["id"], "message": "Product does not exist"}]}}),
            }
        }
        "PimsyncProductUpdateStatus" => {
            let pid = v["product"]["id"].as_str().unwrap_or("");
            let status = v["product"]["status"].as_str().unwrap_or("").to_owned();
            match s.products.values_mut().find(|p| p.id == pid) {
                Some(p) => {
                    p.status = status.clone();
                    json!({"productUpdate": {"product": {"id": pid, "status": status}, "userErrors": []}})
                }
                None => json!({"productUpdate": {"product": null, "userErrors": [
                    {"field": ["id"], "message": "Product does not exist"}]}}),
            }
        }
        "PimsyncPublishablePublish" => {
            let pid = v["id"].as_str().unwrap_or("");
            let publications: Vec<String> = v["input"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["publicationId"].as_str().map(str::to_owned))
                .collect();
            if let Some(p) = s.products.values_mut().find(|p| p.id == pid) {
                p.publications = publications;
            }
            json!({"publishablePublish": {"userErrors": []}})
        }
        _ => Value::Null,
    }
}

fn next_id(s: &mut State, kind: &str) -> String {
    s.next_id += 1;
    format!("gid://shopify/{kind}/{}", s.next_id)
}

/// 250 variants from `after`, with Shopify's pageInfo (the cursor is the offset).
fn variant_page(product: &Product, after: usize) -> Value {
    let page: Vec<Value> = product
        .variants
        .iter()
        .skip(after)
        .take(250)
        .map(|(id, sku, item)| json!({"id": id, "sku": sku, "inventoryItem": {"id": item}}))
        .collect();
    let end = after + page.len();
    json!({"nodes": page, "pageInfo": {"hasNextPage": end < product.variants.len(), "endCursor": end.to_string()}})
}
