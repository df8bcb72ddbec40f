//! An in-process fake of a target speaking pimsync's `http` contract. It records every
//! request, can be told to fail, to answer slowly, or to hold requests until released,
//! and tracks how many requests per product are in flight at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use tokio::sync::{Notify, watch};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub key: String,
    pub idempotency_key: String,
    pub body: String,
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
    /// Arrival order (0, 1, …): a target applies a request when it arrives, even if its
    /// answer comes late or never reaches the client.
    pub seq: u64,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub body: &'static str,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// (key, idempotency key) of every request as it arrives, answered or not (a request
    /// held at the gate whose client died is never answered).
    arrivals: Vec<(String, String)>,
    /// Answers to give, in order, before falling back to 200.
    script: VecDeque<Reply>,
    /// Per-key scripted answers, used before `script`.
    per_key: HashMap<String, VecDeque<Reply>>,
    active: HashMap<String, usize>,
    max_active_per_key: usize,
    delay: Duration,
    /// Idempotency checks, as a real target's dedup store would do them: the body first
    /// seen with each (key, Idempotency-Key), and the key first seen with each (key, body).
    body_of_idempotency_key: HashMap<(String, String), String>,
    idempotency_key_of_body: HashMap<(String, String), String>,
    /// A reused Idempotency-Key with another body, or one body under two keys.
    violations: Vec<String>,
}

#[derive(Clone)]
pub struct FakeTarget {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    /// While false, requests wait before answering.
    gate: watch::Sender<bool>,
    pub addr: SocketAddr,
}

impl FakeTarget {
    pub async fn start() -> FakeTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, _) = watch::channel(true);
        let fake = FakeTarget {
            inner: Arc::default(),
            changed: Arc::new(Notify::new()),
            gate,
            addr,
        };
        let app = Router::new()
            .route("/products/{key}", put(handle).delete(handle))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn script_key(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .lock()
            .unwrap()
            .per_key
            .entry(key.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Holds every request until `open_gate`.
    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Every request that arrived, including those never answered.
    pub fn arrivals(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().arrivals.clone()
    }

    /// Idempotency contract breaches seen so far (must stay empty): an Idempotency-Key reused
    /// with a different body, or the same desired state sent under two keys (a target would
    /// apply it twice).
    pub fn idempotency_violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Per product key, the body of the last PUT answered 2xx, in arrival order: what the
    /// target holds now (a DELETE answered 2xx removes it).
    pub fn current_state(&self) -> HashMap<String, String> {
        let mut received = self.received();
        received.sort_by_key(|r| r.seq);
        let mut state = HashMap::new();
        for r in received
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
        {
            if r.method == "PUT" {
                state.insert(r.key, r.body);
            } else {
                state.remove(&r.key);
            }
        }
        state
    }

    /// Distinct (key, body) pairs answered 2xx: the side effects the target carried out.
    pub fn distinct_applied(&self) -> usize {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| (r.key, r.body))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    pub fn max_active_per_key(&self) -> usize {
        self.inner.lock().unwrap().max_active_per_key
    }

    /// Waits until `done` holds for the fake's state, or fails the test after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&FakeTarget) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                assert!(
                    done(self),
                    "timed out waiting for: {what}; received {:#?}",
                    self.received().len()
                );
                return;
            }
        }
    }
}

async fn handle(
    State(fake): State<FakeTarget>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let (delay, seq) = {
        let mut inner = fake.inner.lock().unwrap();
        let seq = inner.arrivals.len() as u64;
        inner.arrivals.push((key.clone(), idempotency_key.clone()));
        check_idempotency(&mut inner, &method, &key, &idempotency_key, &body_text);
        let active = inner.active.entry(key.clone()).or_insert(0);
        *active += 1;
        let now_active = *active;
        inner.max_active_per_key = inner.max_active_per_key.max(now_active);
        (inner.delay, seq)
    };
    fake.changed.notify_waiters();
    let mut gate = fake.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reply = {
        let mut inner = fake.inner.lock().unwrap();
        let scripted = inner
            .per_key
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .or_else(|| inner.script.pop_front());
        let reply = scripted.unwrap_or(Reply {
            status: 200,
            retry_after: None,
            body: "{}",
        });
        if let Some(active) = inner.active.get_mut(&key) {
            *active -= 1;
        }
        inner.received.push(Received {
            method: method.to_string(),
            key: key.clone(),
            idempotency_key,
            body: body_text,
            at: Instant::now(),
            status: reply.status,
            seq,
        });
        reply
    };
    fake.changed.notify_waiters();
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body,
    )
        .into_response();
    if let Some(retry_after) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().unwrap());
    }
    response
}

fn check_idempotency(inner: &mut Inner, method: &Method, key: &str, idem: &str, body: &str) {
    let body = format!("{method} {body}");
    let first_body = inner
        .body_of_idempotency_key
        .entry((key.to_owned(), idem.to_owned()))
        .or_insert_with(|| body.clone())
        .clone();
    if first_body != body {
        inner.violations.push(format!(
            "{key}: Idempotency-Key {idem} reused with another body"
        ));
    }
    let first_idem = inner
        .idempotency_key_of_body
        .entry((key.to_owned(), body))
        .or_insert_with(|| idem.to_owned())
        .clone();
    if first_idem != idem {
        inner.violations.push(format!(
            "{key}: the same desired state sent under {first_idem} and {idem}"
        ));
    }
}
