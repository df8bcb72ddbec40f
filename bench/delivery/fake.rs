//! The delivery benchmark's fake `http` target, in the benchmark's own process: it
//! answers pimsync's `http` target contract (`PUT` and `DELETE /products/{key}`) with 200,
//! once its gate is open (and after an optional delay), counting requests per key and
//! recording when each key first arrived and the last body each key got.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::put;
use tokio::sync::watch;
use tokio::time::Instant;

/// The fake `http` target: `PUT`/`DELETE /products/{key}`, 200 once the gate is open.
pub struct Fake {
    pub addr: SocketAddr,
    pub gate: watch::Sender<bool>,
    pub state: Arc<FakeState>,
}

pub struct FakeState {
    gate: watch::Receiver<bool>,
    pub requests: AtomicU64,
    /// When each product key first reached the fake.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Per product key: requests received and the last body.
    per_key: Mutex<HashMap<String, (u64, Bytes)>>,
    /// How long each answer takes, in microseconds (a slow target); 0 = at once.
    pub delay_us: AtomicU64,
}

impl FakeState {
    pub fn arrivals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn per_key(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Bytes)>> {
        self.per_key.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn arrive(state: Arc<FakeState>, key: String, body: Bytes) -> StatusCode {
    let now = Instant::now();
    state.requests.fetch_add(1, Ordering::Relaxed);
    {
        let mut per_key = state.per_key();
        let entry = per_key.entry(key.clone()).or_insert((0, Bytes::new()));
        entry.0 += 1;
        entry.1 = body;
    }
    state.arrivals().entry(key).or_insert(now);
    let mut gate = state.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    let delay = state.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    StatusCode::OK
}

async fn on_put(
    State(state): State<Arc<FakeState>>,
    UrlPath(key): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    arrive(state, key, body).await
}

async fn on_delete(
    State(state): State<Arc<FakeState>>,
    UrlPath(key): UrlPath<String>,
) -> StatusCode {
    arrive(state, key, Bytes::new()).await
}

impl Fake {
    pub async fn start(open: bool) -> Result<Fake, String> {
        let (gate, gate_rx) = watch::channel(open);
        let state = Arc::new(FakeState {
            gate: gate_rx,
            requests: AtomicU64::new(0),
            arrivals: Mutex::new(HashMap::new()),
            per_key: Mutex::new(HashMap::new()),
            delay_us: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/products/{key}", put(on_put).delete(on_delete))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.map_err(|e| format!("fake target: bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Fake { addr, gate, state })
    }

    pub fn received(&self) -> usize {
        self.state.arrivals().len()
    }

    /// Waits until `n` distinct products have arrived; false on timeout.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.received() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}
