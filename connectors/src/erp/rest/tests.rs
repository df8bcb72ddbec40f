//! The REST connector against an in-process ERP that implements idempotency keys
//! (replay, 409 in flight, 422 on another body), ETags, and every auth mode.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;
use crate::mapping::FieldSource;
use crate::product::{AttributeValue, Snapshot};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Erp {
    seen: Vec<Seen>,
    /// Accepted credentials (`Authorization` or `Cookie` value).
    accept: HashSet<String>,
    /// Idempotency key → (request fingerprint, stored status, body and ETag).
    keys: BTreeMap<String, (String, u16, Value, Option<String>)>,
    in_flight: HashSet<String>,
    /// Record path → (body, version); the ETag is `W/"<version>"`.
    items: BTreeMap<String, (Value, u32)>,
    effects: u32,
    tokens_issued: u32,
    next_id: u32,
}

type Shared = Arc<Mutex<Erp>>;

async fn start() -> (String, Shared) {
    let state = Shared::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn etag(version: u32) -> String {
    format!("W/\"{version}\"")
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut erp = state.lock().unwrap();
    let path = uri.path().to_owned();
    let text = String::from_utf8_lossy(&body).to_string();
    let json_body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    erp.seen.push(Seen {
        method: method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: json_body.clone(),
    });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if path == "/oauth/token" {
        if !text.contains("client_id=app") || !text.contains("client_secret=s3cret") {
            return (StatusCode::UNAUTHORIZED, "{\"error\": \"invalid_client\"}").into_response();
        }
        erp.tokens_issued += 1;
        let token = format!("tok-{}", erp.tokens_issued);
        erp.accept.insert(format!("Bearer {token}"));
        let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        return axum::Json(body).into_response();
    }
    if path == "/login" {
        if json_body != json!({"user": "pim", "pass": "p\"w"}) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        erp.accept.insert("Token sess-1".into());
        erp.accept.insert("SID=abc".into());
        let mut response = axum::Json(json!({"data": {"token": "sess-1"}})).into_response();
        response
            .headers_mut()
            .append("set-cookie", "SID=abc; Path=/; HttpOnly".parse().unwrap());
        response
            .headers_mut()
            .append("set-cookie", "lang=en; Path=/".parse().unwrap());
        return response;
    }
    let credential = header("authorization")
        .or_else(|| header("x-session"))
        .or_else(|| header("cookie").map(|c| c.split("; ").next().unwrap_or("").to_owned()));
    if !credential.is_some_and(|c| erp.accept.contains(&c)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Idempotency, as in draft-ietf-httpapi-idempotency-key-header.
    let key = header("idempotency-key").or_else(|| header("x-netsuite-idempotency-key"));
    let fingerprint = format!("{method} {path} {text}");
    if let Some(key) = &key {
        if erp.in_flight.contains(key) {
            return (StatusCode::CONFLICT, "request in progress").into_response();
        }
        if let Some((stored, status, body, tag)) = erp.keys.get(key) {
            if *stored != fingerprint {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency-Key reused with a different request",
                )
                    .into_response();
            }
            let status = StatusCode::from_u16(*status).unwrap();
            return respond(status, body.clone(), tag.clone());
        }
    }
    let (status, body, tag) = execute(&mut erp, &method, &path, json_body, header("if-match"));
    if let (Some(key), true) = (key, status.is_success() || status.is_client_error()) {
        let stored = (fingerprint, status.as_u16(), body.clone(), tag.clone());
        erp.keys.insert(key, stored);
    }
    respond(status, body, tag)
}

fn respond(status: StatusCode, body: Value, tag: Option<String>) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert("etag", tag.parse().unwrap());
    }
    response
}

fn execute(
    erp: &mut Erp,
    method: &Method,
    path: &str,
    body: Value,
    if_match: Option<String>,
) -> (StatusCode, Value, Option<String>) {
    if *method == Method::POST && path == "/items" {
        erp.next_id += 1;
        erp.effects += 1;
        let id = erp.next_id;
        let mut record = body;
        record["id"] = json!(id.to_string());
        erp.items
            .insert(format!("/items({id})"), (record.clone(), 1));
        return (StatusCode::CREATED, record, Some(etag(1)));
    }
    let existing = erp.items.get(path).cloned();
    match (method.as_str(), existing) {
        ("GET", Some((record, v))) => (StatusCode::OK, record, Some(etag(v))),
        ("PUT", existing) => {
            erp.effects += 1;
            let v = existing.map_or(1, |(_, v)| v + 1);
            erp.items.insert(path.into(), (body.clone(), v));
            (StatusCode::OK, body, Some(etag(v)))
        }
        ("PATCH", Some((mut record, v))) => {
            if if_match.is_some_and(|m| m != etag(v) && m != "*") {
                return (
                    StatusCode::PRECONDITION_FAILED,
                    json!({"error": "etag"}),
                    None,
                );
            }
            erp.effects += 1;
            if let (Some(r), Some(b)) = (record.as_object_mut(), body.as_object()) {
                r.extend(b.clone());
            }
            erp.items.insert(path.into(), (record.clone(), v + 1));
            (StatusCode::OK, record, Some(etag(v + 1)))
        }
        ("DELETE", Some(_)) => {
            erp.effects += 1;
            erp.items.remove(path);
            (StatusCode::NO_CONTENT, Value::Null, None)
        }
        _ => (StatusCode::NOT_FOUND, json!({"error": "not found"}), None),
    }
}

fn snapshot(name: &str) -> Snapshot {
    let mut s = Snapshot::default();
    let v = |data: Value| {
        vec![AttributeValue {
            locale: None,
            scope: None,
            data,
        }]
    };
    s.values.insert("title".into(), v(json!(name)));
    s.values.insert(
        "price".into(),
        v(json!([{"amount": "9.90", "currency": "EUR"}])),
    );
    s
}

fn mapping() -> Mapping {
    let mut m = Mapping::default();
    m.fields
        .insert("name".into(), FieldSource::attribute("title"));
    m.fields
        .insert("price".into(), FieldSource::attribute("price"));
    m
}

async fn upsert(
    c: &RestConnector,
    s: &Snapshot,
    ids: &RemoteIds,
    key: &str,
) -> Result<Applied, ApplyError> {
    c.apply(ApplyRequest {
        target: "erp",
        product_key: "SKU 1",
        desired: Desired::Upsert {
            kind: ProductKind::Product,
            snapshot: s,
            variants: &[],
        },
        remote_ids: ids,
        idempotency_key: key,
        attempt: 1,
        change: Default::default(),
    })
    .await
}

async fn delete(c: &RestConnector, ids: &RemoteIds) -> Result<Applied, ApplyError> {
    c.apply(ApplyRequest {
        target: "erp",
        product_key: "SKU 1",
        desired: Desired::Delete,
        remote_ids: ids,
        idempotency_key: "pimsync-del",
        attempt: 1,
        change: Default::default(),
    })
    .await
}

fn netsuite(url: &str, auth: RestAuth) -> RestSettings {
    let mut upsert = RestOperation::new("PUT", "/record/v1/inventoryItem/eid:{key}");
    upsert.body = Some(
        r#"{"externalId": "{{key}}", "displayName": "{{name}}", "basePrice": "{{price|number}}"}"#
            .into(),
    );
    RestSettings {
        base_url: format!("{url}/"),
        auth,
        idempotency_header: Some("X-NetSuite-Idempotency-Key".into()),
        id_pointer: None,
        upsert,
        create: None,
        delete: Some(RestOperation::new(
            "DELETE",
            "/record/v1/inventoryItem/eid:{key}",
        )),
    }
}

#[tokio::test]
async fn netsuite_style_put_by_external_id_replays_with_the_same_key() {
    let (url, erp) = start().await;
    erp.lock().unwrap().accept.insert("Bearer static".into());
    let auth = RestAuth::Bearer {
        token: "static".into(),
    };
    let c = connector(netsuite(&url, auth), mapping(), Duration::from_secs(5)).unwrap();
    let none = RemoteIds::new();
    let first = upsert(&c, &snapshot("Chair"), &none, "pimsync-1")
        .await
        .unwrap();
    // A retry after a lost response: the ERP replays, the item is written once.
    let again = upsert(&c, &snapshot("Chair"), &none, "pimsync-1")
        .await
        .unwrap();
    assert_eq!(first, again);
    {
        let e = erp.lock().unwrap();
        assert_eq!(e.effects, 1);
        let seen = &e.seen[0];
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("PUT", "/record/v1/inventoryItem/eid:SKU%201")
        );
        assert_eq!(seen.headers["x-netsuite-idempotency-key"], "\"pimsync-1\"");
        assert!(seen.headers.get("idempotency-key").is_none());
        assert_eq!(
            seen.body,
            json!({"externalId": "SKU 1", "displayName": "Chair", "basePrice": 9.9})
        );
        assert_eq!(first.remote_ids[REMOTE_ETAG], "W/\"1\"");
    }

    // Deleting, then deleting again (already gone) both succeed and forget the ids.
    assert_eq!(
        delete(&c, &first.remote_ids).await.unwrap(),
        Applied::default()
    );
    assert_eq!(
        delete(&c, &first.remote_ids).await.unwrap(),
        Applied::default()
    );
}

#[tokio::test]
async fn in_flight_is_retryable_and_a_reused_key_is_permanent() {
    let (url, erp) = start().await;
    erp.lock()
        .unwrap()
        .accept
        .insert("Basic dXNlcjpwYXNz".into());
    let auth = RestAuth::Basic {
        username: "user".into(),
        password: "pass".into(),
    };
    let mut settings = netsuite(&url, auth);
    settings.idempotency_header = Some(DEFAULT_IDEMPOTENCY_HEADER.into());
    let c = connector(settings, mapping(), Duration::from_secs(5)).unwrap();
    let none = RemoteIds::new();
    erp.lock().unwrap().in_flight.insert("\"k1\"".into());
    let err = upsert(&c, &snapshot("Chair"), &none, "k1")
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Retryable { .. }), "{err:?}");
    assert!(err.message().contains("still being processed"), "{err:?}");

    upsert(&c, &snapshot("Chair"), &none, "k2").await.unwrap();
    let err = upsert(&c, &snapshot("Table"), &none, "k2")
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Permanent { .. }), "{err:?}");
    assert!(
        err.message().contains("idempotency key was already used"),
        "{err:?}"
    );
}

fn business_central(url: &str) -> RestSettings {
    let mut upsert = RestOperation::new("PATCH", "/items({id})");
    upsert.body = Some(r#"{"displayName": "{{name}}", "unitPrice": "{{price|number}}"}"#.into());
    upsert.if_match = true;
    let mut create = RestOperation::new("POST", "/items");
    create.body = Some(r#"{"number": "{{key}}", "displayName": "{{name}}"}"#.into());
    create.success = vec![201];
    RestSettings {
        base_url: url.into(),
        auth: RestAuth::OAuth2(OAuth2Settings {
            token_url: format!("{url}/oauth/token"),
            client_id: "app".into(),
            client_secret: "s3cret".into(),
            scope: Some("https://api.businesscentral.dynamics.com/.default".into()),
            audience: None,
            client_auth: ClientAuth::Body,
        }),
        idempotency_header: Some(DEFAULT_IDEMPOTENCY_HEADER.into()),
        id_pointer: Some("/id".into()),
        upsert,
        create: Some(create),
        delete: Some(RestOperation::new("DELETE", "/items({id})")),
    }
}

#[tokio::test]
async fn business_central_style_create_then_etag_patch() {
    let (url, erp) = start().await;
    let c = connector(business_central(&url), mapping(), Duration::from_secs(5)).unwrap();
    let created = upsert(&c, &snapshot("Chair"), &RemoteIds::new(), "k1")
        .await
        .unwrap();
    assert_eq!(created.remote_ids[REMOTE_ID], "1");
    assert_eq!(created.remote_ids[REMOTE_ETAG], "W/\"1\"");
    {
        let e = erp.lock().unwrap();
        let post = e.seen.iter().find(|s| s.path == "/items").unwrap();
        assert_eq!(post.headers["idempotency-key"], "\"k1-create\"");
        assert_eq!(post.headers["authorization"], "Bearer tok-1");
    }

    let updated = upsert(&c, &snapshot("Chair v2"), &created.remote_ids, "k2")
        .await
        .unwrap();
    assert_eq!(updated.remote_ids[REMOTE_ETAG], "W/\"2\"");
    {
        let e = erp.lock().unwrap();
        let patch = e.seen.last().unwrap();
        assert_eq!(patch.headers["if-match"], "W/\"1\"");
        assert_eq!(
            patch.body,
            json!({"displayName": "Chair v2", "unitPrice": 9.9})
        );
    }

    // Edited in the ERP since: 412, fetch the current ETag, write again.
    erp.lock().unwrap().items.get_mut("/items(1)").unwrap().1 = 7;
    let again = upsert(&c, &snapshot("Chair v3"), &updated.remote_ids, "k3")
        .await
        .unwrap();
    assert_eq!(again.remote_ids[REMOTE_ETAG], "W/\"8\"");
    {
        let e = erp.lock().unwrap();
        let methods: Vec<_> = e
            .seen
            .iter()
            .rev()
            .take(3)
            .map(|s| s.method.clone())
            .collect();
        assert_eq!(methods, ["PATCH", "GET", "PATCH"]);
        assert_eq!(
            e.seen.last().unwrap().headers["idempotency-key"],
            "\"k3-etag\""
        );
        assert_eq!(e.tokens_issued, 1, "the token is reused");
    }

    // A revoked token: one 401, a new token, success.
    erp.lock().unwrap().accept.clear();
    upsert(&c, &snapshot("Chair v4"), &again.remote_ids, "k4")
        .await
        .unwrap();
    assert_eq!(erp.lock().unwrap().tokens_issued, 2);

    assert_eq!(
        delete(&c, &again.remote_ids).await.unwrap(),
        Applied::default()
    );
    assert!(erp.lock().unwrap().items.is_empty());
}

#[tokio::test]
async fn oauth2_rejected_client_is_permanent() {
    let (url, _erp) = start().await;
    let mut settings = business_central(&url);
    if let RestAuth::OAuth2(o) = &mut settings.auth {
        o.client_secret = "wrong".into();
    }
    let c = connector(settings, mapping(), Duration::from_secs(5)).unwrap();
    let err = upsert(&c, &snapshot("Chair"), &RemoteIds::new(), "k")
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Permanent { .. }), "{err:?}");
    assert!(
        err.message().starts_with("OAuth2 token request: HTTP 401"),
        "{err:?}"
    );
    assert!(!err.message().contains("wrong"));
}

fn session(token_pointer: Option<&str>) -> RestAuth {
    RestAuth::Session(SessionSettings {
        login_path: "/login".into(),
        body: r#"{"user": "{{username}}", "pass": "{{password}}"}"#.into(),
        username: "pim".into(),
        password: "p\"w".into(),
        token_pointer: token_pointer.map(str::to_owned),
        header: "X-Session".into(),
        prefix: "Token ".into(),
        cookie: Some("SID".into()),
        lifetime: None,
    })
}

#[tokio::test]
async fn session_login_token_and_cookie() {
    for (pointer, header, expected) in [
        (Some("/data/token"), "x-session", "Token sess-1"),
        (None, "cookie", "SID=abc"),
    ] {
        let (url, erp) = start().await;
        let c = connector(
            netsuite(&url, session(pointer)),
            mapping(),
            Duration::from_secs(5),
        )
        .unwrap();
        upsert(&c, &snapshot("A"), &RemoteIds::new(), "k1")
            .await
            .unwrap();
        upsert(&c, &snapshot("B"), &RemoteIds::new(), "k2")
            .await
            .unwrap();
        let e = erp.lock().unwrap();
        let logins = e.seen.iter().filter(|s| s.path == "/login").count();
        assert_eq!(logins, 1, "the session is reused");
        assert_eq!(e.seen.last().unwrap().headers[header], expected);
    }
}

#[test]
fn templates_are_checked_against_the_mapping() {
    let mut op = RestOperation::new("PUT", "/items/{key}");
    op.body = Some(r#"{"n": "{{name}}", "x": "{{colour}}"}"#.into());
    let err = op.check(&["name"]).unwrap_err();
    assert_eq!(err.0, "body");
    assert!(
        err.1.contains("unknown placeholder \"colour\""),
        "{}",
        err.1
    );
    assert!(op.check(&["name", "colour"]).is_ok());
    assert_eq!(
        RestOperation::new("GE T", "/x").check(&[]).unwrap_err().0,
        "method"
    );
    let mut op = RestOperation::new("PUT", "/x");
    op.success = vec![1000];
    assert_eq!(op.check(&[]).unwrap_err().0, "success");
}

#[test]
fn debug_output_hides_credentials() {
    let auth = RestAuth::Basic {
        username: "u".into(),
        password: "hunter2".into(),
    };
    let shown = format!("{:?}", netsuite("http://erp", auth));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(sf_string("a\"b\\c"), r#""a\"b\\c""#);
}
