//! `kind = "webhook"` through the real binary: product changes signed into the standard
//! webhooks source, out through webhook targets to an in-process receiver that checks
//! every event with pimsync's own *inbound* verifier (the spec's algorithm), under each
//! configured secret on its own.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pimsync::receiver::formats::standard_webhooks::verify;
use pimsync::simulate::Sender;
use pimsync_connectors::standard_webhooks::{decode_secret, signature_header};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::admin::{TOKEN, admin_section, call, free_port};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);
/// Two signing secrets, as during a rotation.
const OLD: &str = "whsec_cGltc3luYy1pbnRlZ3JhdGlvbi1vbGQtc2VjcmV0";
const NEW: &str = "whsec_cGltc3luYy1pbnRlZ3JhdGlvbi1uZXctc2VjcmV0IQ==";

/// One event the receiver got.
#[derive(Debug, Clone)]
struct Event {
    path: String,
    id: String,
    /// Verified by the inbound verifier with the old key alone, and with the new alone.
    verified: (bool, bool),
    body: Value,
    status: u16,
}

impl Event {
    fn version(&self) -> i64 {
        self.body["data"]["version"].as_i64().unwrap_or(-1)
    }
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    /// Per path: statuses to answer, in order, before 204.
    script: HashMap<String, VecDeque<u16>>,
}

#[derive(Clone)]
struct Receiver {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    gate: watch::Sender<bool>,
    arrived: Arc<Mutex<usize>>,
    addr: SocketAddr,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (gate, _) = watch::channel(true);
        let receiver = Receiver {
            inner: Arc::default(),
            changed: Arc::new(Notify::new()),
            gate,
            arrived: Arc::default(),
            addr: listener.local_addr().unwrap(),
        };
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(handle))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn script(&self, path: &str, statuses: &[u16]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .entry(path.to_owned())
            .or_default()
            .extend(statuses);
    }

    fn events(&self, path: &str) -> Vec<Event> {
        let inner = self.inner.lock().unwrap();
        inner
            .events
            .iter()
            .filter(|e| e.path == path)
            .cloned()
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let events: Vec<(String, i64, u16, String)> = self
                    .inner
                    .lock()
                    .unwrap()
                    .events
                    .iter()
                    .map(|e| (e.path.clone(), e.version(), e.status, e.id.clone()))
                    .collect();
                assert!(done(self), "timed out waiting for {what}; got {events:?}");
                return;
            }
        }
    }
}

async fn handle(
    State(receiver): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *receiver.arrived.lock().unwrap() += 1;
    receiver.changed.notify_waiters();
    let _ = receiver.gate.subscribe().wait_for(|open| *open).await;
    let now = simulate_now();
    let check = |secret: &str| {
        let key = decode_secret(secret.as_bytes()).unwrap();
        verify(&[&key], &headers, &body, now, Duration::from_secs(300)).is_ok()
    };
    let verified = (check(OLD), check(NEW));
    let status = {
        let mut inner = receiver.inner.lock().unwrap();
        let status = inner
            .script
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or(204);
        inner.events.push(Event {
            path,
            id: headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            verified,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status,
        });
        status
    };
    receiver.changed.notify_waiters();
    (StatusCode::from_u16(status).unwrap(), "").into_response()
}

fn simulate_now() -> i64 {
    pimsync::simulate::unix_now()
}

/// A standard-webhooks source and the given `[[targets]]`.
fn config(dir: &std::path::Path, targets: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[store]
path = "{db}"

[[sources]]
name = "pim"
path = "/webhooks/pim"
format = "standard-webhooks"
secrets = ["{WHSEC}"]
{targets}
"#,
        db = dir.join("pimsync.db").display()
    )
}

fn webhook_target(name: &str, url: &str, extra: &str, tables: &str) -> String {
    format!(
        r#"
[[targets]]
name = "{name}"
kind = "webhook"
{tables}
[targets.webhook]
url = "{url}"
secrets = ["{OLD}", "{NEW}"]
{extra}
[targets.delivery]
concurrency = 4
retry_base = "50ms"
retry_cap = "200ms"
request_timeout = "5s"
lease_timeout = "30s"
"#
    )
}

/// Sends one change of `key` through the standard-webhooks source, signed with pimsync's
/// own signer, and expects 202.
async fn send(daemon: &Daemon, key: &str, version: i64, description: &str, price: i64) {
    let body = json!({"changes": [{
        "key": key,
        "op": "upsert",
        "version": version,
        "product": {
            "family": "chairs",
            "enabled": true,
            "values": {
                "description": [{"locale": "en_US", "data": description}],
                "price": [{"data": price}],
            },
        },
    }]})
    .to_string();
    let id = format!("in-{key}-{version}");
    let now = simulate_now();
    let key = decode_secret(WHSEC.as_bytes()).unwrap();
    let request = pimsync::simulate::SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("webhook-id", id.clone()),
            ("webhook-timestamp", now.to_string()),
            (
                "webhook-signature",
                signature_header(&[&key], &id, now, body.as_bytes()),
            ),
        ],
        body: body.into_bytes().into(),
    };
    let (status, reply) = Sender::default()
        .post(&daemon.url("/webhooks/pim"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&reply));
}

async fn settled(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + WAIT;
    while count(&daemon.db, "SELECT count(*) FROM outbox") > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM history"), 0);
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(dir.join("pimsync.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn coalescing_sends_the_latest_state_and_history_every_change_in_order() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let targets = webhook_target("latest", &receiver.url("latest"), "", "")
        + &webhook_target("history", &receiver.url("history"), "coalesce = false", "");
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &targets));

    // The first event of each target is held at the receiver while two more changes come.
    receiver.gate.send_replace(false);
    send(&daemon, "SKU-1", 1, "Chair", 100).await;
    receiver
        .wait_for("both first events held", |r| {
            *r.arrived.lock().unwrap() == 2
        })
        .await;
    send(&daemon, "SKU-1", 2, "Chair", 200).await;
    send(&daemon, "SKU-1", 3, "Armchair", 300).await;
    // The history target's first answer is a 503: its retry must carry the same id.
    receiver.script("history", &[503]);
    receiver.gate.send_replace(true);
    receiver
        .wait_for("every event", |r| {
            let done = |path: &str| {
                r.events(path)
                    .iter()
                    .any(|e| (e.version(), e.status) == (3, 204))
            };
            done("latest") && done("history")
        })
        .await;
    settled(&daemon).await;

    let latest = receiver.events("latest");
    let versions: Vec<i64> = latest.iter().map(Event::version).collect();
    assert_eq!(versions, [1, 3], "coalesced: the middle state is skipped");
    assert_eq!(
        latest[1].body["data"]["changed"],
        json!(["description:en_US", "price"])
    );

    let history = receiver.events("history");
    let shown: Vec<(i64, u16)> = history.iter().map(|e| (e.version(), e.status)).collect();
    assert_eq!(shown, [(1, 503), (1, 204), (2, 204), (3, 204)]);
    assert_eq!(history[0].id, history[1].id, "a retry keeps its webhook-id");
    assert_eq!(history[0].body, history[1].body, "and its body");
    let mut ids: Vec<&str> = history.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one webhook-id per change");
    assert_eq!(history[2].body["data"]["changed"], json!(["price"]));
    assert_eq!(
        history[3].body["data"]["changed"],
        json!(["description:en_US", "price"])
    );
    for event in latest.iter().chain(&history) {
        assert_eq!(event.body["type"], "product.upserted");
        assert_eq!(event.body["data"]["product_key"], "SKU-1");
        assert_eq!(
            event.verified,
            (true, true),
            "verified with each secret alone: {event:?}"
        );
    }
}

#[tokio::test]
async fn the_attribute_filter_sends_only_when_a_watched_attribute_changed() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tables = r#"
[targets.filter]
enabled_only = true
changed = [{ attribute = "description", locale = "en_US" }]
[targets.mapping]
text = { attribute = "description", locale = "en_US" }
price = "price"
"#;
    let targets = webhook_target("agency", &receiver.url("agency"), "", tables);
    let daemon = Daemon::start(dir.path(), &config(dir.path(), &targets));

    send(&daemon, "SKU-1", 1, "Chair", 100).await;
    receiver
        .wait_for("the first event", |r| r.events("agency").len() == 1)
        .await;
    settled(&daemon).await;
    // A price change alone: settled without a call.
    send(&daemon, "SKU-1", 2, "Chair", 200).await;
    settled(&daemon).await;
    assert_eq!(
        count(
            &daemon.db,
            "SELECT count(*) FROM applied WHERE product_key = 'SKU-1'"
        ),
        1
    );
    // The description changes: one event listing what changed since the last one.
    send(&daemon, "SKU-1", 3, "Armchair", 300).await;
    receiver
        .wait_for("the second event", |r| r.events("agency").len() == 2)
        .await;
    settled(&daemon).await;
    let events = receiver.events("agency");
    assert_eq!(events.len(), 2, "the price-only change made no call");
    assert_eq!(
        events[1].body["data"]["fields"],
        json!({"text": "Armchair", "price": 300})
    );
    assert_eq!(events[1].body["data"]["changed"], json!(["price", "text"]));
    assert_eq!(events[1].version(), 3);
}

#[tokio::test]
async fn a_410_disables_the_target_until_an_operator_enables_it_and_nothing_is_lost() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let targets = webhook_target("history", &receiver.url("history"), "coalesce = false", "");
    let port = free_port();
    let text = config(dir.path(), &targets) + &admin_section(port, "");
    let daemon = Daemon::start(dir.path(), &text);
    receiver.script("history", &[410]);

    send(&daemon, "SKU-1", 1, "Chair", 100).await;
    receiver
        .wait_for("the 410", |r| r.events("history").len() == 1)
        .await;
    wait_disabled(&daemon).await;
    // Changes keep being accepted and kept while the target is disabled.
    send(&daemon, "SKU-1", 2, "Chair", 200).await;
    send(&daemon, "SKU-2", 1, "Table", 50).await;
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM history"), 3);

    let (ok, text) = cli(dir.path(), &["status", "--json"]);
    assert!(ok, "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    let target = &status["targets"][0];
    assert_eq!(target["queued_changes"], 3);
    assert!(
        target["disabled"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 410 Gone"),
        "{target}"
    );
    let (_, table) = cli(dir.path(), &["status"]);
    assert!(table.contains("history (disabled)"), "{table}");
    assert!(table.contains("pimsync target enable"), "{table}");

    // Nothing is sent while disabled. (No event to await here: give a wrongly running
    // worker a moment to show itself; it re-checks the store every second.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.events("history").len(), 1);

    let (ok, text) = cli(dir.path(), &["target", "enable", "history"]);
    assert!(ok && text.starts_with("enabled history"), "{text}");
    receiver
        .wait_for("the held changes", |r| r.events("history").len() == 4)
        .await;
    settled(&daemon).await;
    let events = receiver.events("history");
    let sku1: Vec<&Event> = events
        .iter()
        .filter(|e| e.body["data"]["product_key"] == "SKU-1")
        .collect();
    let versions: Vec<i64> = sku1.iter().map(|e| e.version()).collect();
    assert_eq!(
        versions,
        [1, 1, 2],
        "the refused change is sent again, first"
    );
    assert_eq!(sku1[0].id, sku1[1].id);
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM target_state"), 0);
    let (_, text) = cli(dir.path(), &["target", "enable", "history"]);
    assert!(text.contains("was not disabled"), "{text}");

    // Once more, re-enabled through the admin API this time.
    receiver.script("history", &[410]);
    send(&daemon, "SKU-1", 3, "Stool", 300).await;
    wait_disabled(&daemon).await;
    let admin = format!("http://127.0.0.1:{port}");
    let (code, body) = call("GET", &format!("{admin}/status"), Some(TOKEN), None).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, &status["targets"][0]["state"]),
        (200, &json!("disabled"))
    );
    let (_, metrics) = call("GET", &format!("{admin}/metrics"), None, None).await;
    assert!(
        metrics.contains("pimsync_target_disabled{target=\"history\"} 1"),
        "{metrics}"
    );
    let enable = format!("{admin}/targets/enable");
    let (code, body) = call("POST", &enable, Some(TOKEN), Some(r#"{"target": "nope"}"#)).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = call(
        "POST",
        &enable,
        Some(TOKEN),
        Some(r#"{"target": "history"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert!(
        reply["was_disabled"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 410")
    );
    receiver
        .wait_for("the change refused second", |r| {
            r.events("history").last().map(|e| (e.version(), e.status)) == Some((3, 204))
        })
        .await;
    settled(&daemon).await;
}

async fn wait_disabled(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + WAIT;
    while count(&daemon.db, "SELECT count(*) FROM target_state") == 0 {
        assert!(std::time::Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
