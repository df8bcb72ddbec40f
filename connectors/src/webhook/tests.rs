//! The webhook connector against an in-process receiver that verifies every request with
//! the Standard Webhooks algorithm (the same `signature_matches` the daemon's receiver
//! uses) and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;
use crate::connector::ChangeInfo;
use crate::product::{AttributeValue, ProductKind, Snapshot};
use crate::standard_webhooks::{decode_secret, signature_matches};

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_cGltc3luYy13ZWJob29rLXRlc3Qtc2VjcmV0LTAx";

#[derive(Debug, Clone)]
struct Seen {
    id: String,
    signature: String,
    extra: Option<String>,
    /// Verified with the old key, with the new key.
    verified: (bool, bool),
    body: Value,
}

#[derive(Default)]
struct Receiver {
    seen: Vec<Seen>,
    script: VecDeque<(u16, Option<&'static str>)>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn start() -> (String, Shared) {
    let state = Shared::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), state)
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, ts, signature) = (
        text("webhook-id"),
        text("webhook-timestamp"),
        text("webhook-signature"),
    );
    let old = decode_secret(OLD_SECRET.as_bytes()).unwrap();
    let new = decode_secret(NEW_SECRET.as_bytes()).unwrap();
    let verified = (
        signature_matches(&[&old], &id, &ts, &body, &signature),
        signature_matches(&[&new], &id, &ts, &body, &signature),
    );
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        id,
        signature,
        extra: headers
            .get("x-account")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        verified,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, retry_after) = state.script.pop_front().unwrap_or((204, None));
    let mut response = (StatusCode::from_u16(status).unwrap(), "no").into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

fn settings(url: &str, watch: Vec<FieldSource>) -> WebhookSettings {
    WebhookSettings {
        url: url.to_owned(),
        keys: [OLD_SECRET, NEW_SECRET]
            .iter()
            .map(|s| decode_secret(s.as_bytes()).unwrap())
            .collect(),
        headers: vec![("X-Account".into(), "acme".into())],
        timeout: Duration::from_secs(5),
        watch,
    }
}

fn product(description: &str, price: i64) -> Snapshot {
    let mut s = Snapshot {
        family: Some("chairs".into()),
        ..Default::default()
    };
    s.values.insert(
        "description".into(),
        vec![AttributeValue {
            locale: Some("en_US".into()),
            scope: None,
            data: json!(description),
        }],
    );
    s.values.insert(
        "price".into(),
        vec![AttributeValue {
            locale: None,
            scope: None,
            data: json!(price),
        }],
    );
    s
}

async fn upsert(
    c: &WebhookConnector,
    snapshot: &Snapshot,
    ids: &RemoteIds,
    key: &str,
) -> Result<Applied, ApplyError> {
    c.apply(ApplyRequest {
        target: "agency",
        product_key: "SKU-1",
        desired: Desired::Upsert {
            kind: ProductKind::Product,
            snapshot,
            variants: &[],
        },
        remote_ids: ids,
        idempotency_key: key,
        attempt: 1,
        change: ChangeInfo {
            version: 42,
            accepted_at_ms: 1_000,
            forced: false,
        },
    })
    .await
}

#[tokio::test]
async fn events_are_signed_with_every_key_and_retries_keep_their_id() {
    let (url, state) = start().await;
    state.lock().unwrap().script.push_back((503, Some("7")));
    let c = connector(settings(&url, vec![]), Mapping::default()).unwrap();
    let p = product("Chair", 5);
    let none = RemoteIds::new();
    let error = upsert(&c, &p, &none, "pimsync-aaaa").await.unwrap_err();
    assert_eq!(
        error,
        ApplyError::Retryable {
            message: "HTTP 503: no".into(),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let applied = upsert(&c, &p, &none, "pimsync-aaaa").await.unwrap();
    assert!(!applied.skipped);
    let seen = state.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.id, "pimsync-aaaa", "the same webhook-id on the retry");
        assert_eq!(s.verified, (true, true), "{}", s.signature);
        assert_eq!(s.signature.split(' ').count(), 2);
        assert_eq!(s.extra.as_deref(), Some("acme"));
    }
    assert_eq!(seen[0].body, seen[1].body, "a retry sends the same event");
    let body = &seen[1].body;
    assert_eq!(body["type"], "product.upserted");
    assert_eq!(body["data"]["version"], 42);
    assert_eq!(
        body["data"]["changed"],
        json!(["@family", "description:en_US", "price"])
    );
    assert_eq!(body["data"]["product"]["family"], "chairs");

    // The next event lists only what changed since this one.
    upsert(
        &c,
        &product("Chair", 6),
        &applied.remote_ids,
        "pimsync-bbbb",
    )
    .await
    .unwrap();
    let last = state.lock().unwrap().seen.last().cloned().unwrap();
    assert_eq!(last.body["data"]["changed"], json!(["price"]));
}

#[tokio::test]
async fn answers_are_classified_and_410_means_gone() {
    let (url, state) = start().await;
    state
        .lock()
        .unwrap()
        .script
        .extend([(429, Some("3")), (400, None), (410, None), (408, None)]);
    let c = connector(settings(&url, vec![]), Mapping::default()).unwrap();
    let (p, none) = (product("Chair", 5), RemoteIds::new());
    let results = [
        upsert(&c, &p, &none, "k").await,
        upsert(&c, &p, &none, "k").await,
        upsert(&c, &p, &none, "k").await,
        upsert(&c, &p, &none, "k").await,
    ];
    assert!(
        matches!(&results[0], Err(ApplyError::Throttled { retry_after, .. }) if *retry_after == Duration::from_secs(3))
    );
    assert!(matches!(&results[1], Err(ApplyError::Permanent { .. })));
    assert_eq!(
        results[2],
        Err(ApplyError::Gone {
            message: "HTTP 410 Gone: no".into()
        })
    );
    assert!(matches!(&results[3], Err(ApplyError::Retryable { .. })));
}

#[tokio::test]
async fn the_attribute_filter_settles_unwatched_changes_without_a_call() {
    let (url, state) = start().await;
    let watch = vec![FieldSource {
        locale: Some("en_US".into()),
        ..FieldSource::attribute("description")
    }];
    let mut mapping = Mapping::default();
    mapping.fields.insert(
        "text".into(),
        FieldSource {
            locale: Some("en_US".into()),
            ..FieldSource::attribute("description")
        },
    );
    mapping
        .fields
        .insert("price".into(), FieldSource::attribute("price"));
    let c = connector(settings(&url, watch), mapping).unwrap();
    let first = upsert(&c, &product("Chair", 5), &RemoteIds::new(), "k1")
        .await
        .unwrap();
    // A price change alone: settled, nothing sent, what was delivered is still remembered.
    let skipped = upsert(&c, &product("Chair", 6), &first.remote_ids, "k2")
        .await
        .unwrap();
    assert!(skipped.skipped);
    assert_eq!(skipped.remote_ids, first.remote_ids);
    // The description changes: sent, and the price change since the last event is listed.
    upsert(&c, &product("Armchair", 7), &skipped.remote_ids, "k3")
        .await
        .unwrap();
    let seen = state.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].id, "k3");
    assert_eq!(
        seen[1].body["data"]["fields"],
        json!({"price": 7, "text": "Armchair"})
    );
    assert_eq!(seen[1].body["data"]["changed"], json!(["price", "text"]));
    assert!(seen[1].body["data"].get("product").is_none());
}

#[tokio::test]
async fn deletions_reach_only_receivers_that_heard_of_the_product() {
    let (url, state) = start().await;
    let c = connector(settings(&url, vec![]), Mapping::default()).unwrap();
    let delete = |ids: RemoteIds| {
        let c = &c;
        async move {
            c.apply(ApplyRequest {
                target: "agency",
                product_key: "SKU-1",
                desired: Desired::Delete,
                remote_ids: &ids,
                idempotency_key: "del",
                attempt: 1,
                change: ChangeInfo {
                    version: 9,
                    ..Default::default()
                },
            })
            .await
        }
    };
    assert!(delete(RemoteIds::new()).await.unwrap().skipped);
    let applied = upsert(&c, &product("Chair", 5), &RemoteIds::new(), "k1")
        .await
        .unwrap();
    let gone = delete(applied.remote_ids).await.unwrap();
    assert!(!gone.skipped && gone.remote_ids.is_empty());
    let seen = state.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["type"], "product.deleted");
    assert_eq!(seen[1].body["data"]["version"], 9);
}

#[test]
fn debug_output_hides_keys_and_header_values() {
    let text = format!("{:?}", settings("http://x", vec![]));
    assert!(text.contains("<2 redacted>") && text.contains("X-Account"));
    assert!(!text.contains("acme"));
}
