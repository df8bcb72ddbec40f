//! An in-process Odoo that speaks enough JSON-2 for the connector: `search_read` with
//! `=` domains, `create`, `write`, `unlink`, archived records hidden unless
//! `active_test` is false. It records every request and can fail or lose responses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub method: String,
    pub body: Value,
    pub authorization: Option<String>,
    pub database: Option<String>,
}

#[derive(Default)]
pub struct FakeState {
    pub records: BTreeMap<String, BTreeMap<i64, Map<String, Value>>>,
    next_id: i64,
    pub requests: Vec<Request>,
    /// (model, method): commit the call, then never answer (the client times out).
    pub lose_response: Vec<(String, String)>,
    /// (model, method, status, body): answer once with this error, changing nothing.
    pub fail: Vec<(String, String, u16, Value)>,
}

impl FakeState {
    pub fn records(&self, model: &str) -> Vec<(i64, Map<String, Value>)> {
        self.records
            .get(model)
            .map(|r| r.iter().map(|(id, rec)| (*id, rec.clone())).collect())
            .unwrap_or_default()
    }

    pub fn insert(&mut self, model: &str, vals: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut record = vals.as_object().cloned().unwrap_or_default();
        record.insert("id".into(), json!(id));
        self.records
            .entry(model.into())
            .or_default()
            .insert(id, record);
        id
    }

    pub fn calls(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|r| format!("{}.{}", r.model, r.method))
            .collect()
    }
}

pub type Shared = Arc<Mutex<FakeState>>;

/// Starts the fake on 127.0.0.1:0; returns its base URL and state.
pub async fn start() -> (String, Shared) {
    let state = Shared::default();
    let app = axum::Router::new()
        .route("/json/2/{model}/{method}", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

async fn handle(
    State(state): State<Shared>,
    Path((model, method)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (result, lose) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Request {
            model: model.clone(),
            method: method.clone(),
            body: body.clone(),
            authorization: header("authorization"),
            database: header("x-odoo-database"),
        });
        if let Some(i) = s
            .fail
            .iter()
            .position(|(m, f, _, _)| *m == model && *f == method)
        {
            let (_, _, status, body) = s.fail.remove(i);
            let status = StatusCode::from_u16(status).unwrap();
            return (status, Json(body)).into_response();
        }
        let lose = s
            .lose_response
            .iter()
            .position(|(m, f)| *m == model && *f == method)
            .map(|i| s.lose_response.remove(i))
            .is_some();
        (execute(&mut s, &model, &method, &body), lose)
    };
    if lose {
        // Committed; the answer never arrives before the client gives up.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    match result {
        Ok(value) => Json(value).into_response(),
        Err((status, body)) => (status, Json(body)).into_response(),
    }
}

fn execute(
    s: &mut FakeState,
    model: &str,
    method: &str,
    body: &Value,
) -> Result<Value, (StatusCode, Value)> {
    let ids: Vec<i64> = body["ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let missing = || {
        (
            StatusCode::NOT_FOUND,
            json!({"name": "odoo.exceptions.MissingError", "message": "Record does not exist or has been deleted."}),
        )
    };
    match method {
        "search_read" => {
            let active_test = body["context"]["active_test"].as_bool().unwrap_or(true);
            let domain = body["domain"].as_array().cloned().unwrap_or_default();
            let limit = body["limit"].as_u64().unwrap_or(u64::MAX) as usize;
            let rows: Vec<Value> = s
                .records(model)
                .into_iter()
                .filter(|(_, rec)| !active_test || rec.get("active") != Some(&json!(false)))
                .filter(|(_, rec)| {
                    domain
                        .iter()
                        .all(|cond| rec.get(cond[0].as_str().unwrap_or("")) == Some(&cond[2]))
                })
                .take(limit)
                .map(|(_, rec)| Value::Object(rec))
                .collect();
            Ok(Value::Array(rows))
        }
        "create" => {
            let list = body["vals_list"].as_array().cloned().unwrap_or_default();
            let ids: Vec<Value> = list
                .into_iter()
                .map(|v| json!(s.insert(model, v)))
                .collect();
            Ok(Value::Array(ids))
        }
        "write" => {
            let table = s.records.entry(model.into()).or_default();
            if ids.iter().any(|id| !table.contains_key(id)) {
                return Err(missing());
            }
            for id in ids {
                if let (Some(rec), Some(vals)) = (table.get_mut(&id), body["vals"].as_object()) {
                    rec.extend(vals.clone());
                }
            }
            Ok(json!(true))
        }
        "unlink" => {
            let table = s.records.entry(model.into()).or_default();
            if ids.iter().any(|id| !table.contains_key(id)) {
                return Err(missing());
            }
            for id in &ids {
                table.remove(id);
            }
            // Odoo drops the external ids of deleted records.
            if let Some(xmlids) = s.records.get_mut("ir.model.data") {
                xmlids.retain(|_, row| {
                    !(row["model"] == json!(model)
                        && row["res_id"].as_i64().is_some_and(|id| ids.contains(&id)))
                });
            }
            Ok(json!(true))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            json!({"name": "werkzeug.exceptions.NotFound", "message": "no such method"}),
        )),
    }
}
