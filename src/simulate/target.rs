//! A simulated target for the demo: speaks pimsync's `http` target contract, remembers the
//! last state it received per product, and can be put into an outage (503 with
//! `Retry-After`) to show retries converging.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;

#[derive(Default)]
struct Shared {
    /// product key → (idempotency key, body) of the last successful request.
    products: Mutex<HashMap<String, (String, String)>>,
    calls: AtomicU64,
    refused: AtomicU64,
    down: AtomicBool,
}

/// A running simulated target.
#[derive(Clone)]
pub struct SimulatedTarget {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

impl SimulatedTarget {
    pub async fn start() -> std::io::Result<SimulatedTarget> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/products/{key}", put(receive).delete(receive))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(SimulatedTarget { shared, addr })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While down, every request gets 503 with `Retry-After: 1`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered successfully.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Requests refused during an outage.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Products currently held (deleted ones are removed).
    pub fn products(&self) -> usize {
        self.shared.products.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The body last applied for `key`.
    pub fn body_of(&self, key: &str) -> Option<String> {
        let products = self.shared.products.lock().ok()?;
        products.get(key).map(|(_, body)| body.clone())
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "maintenance",
        )
            .into_response();
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut products) = shared.products.lock() {
        if method == Method::DELETE {
            products.remove(&key);
        } else {
            products.insert(
                key,
                (idempotency_key, String::from_utf8_lossy(&body).into_owned()),
            );
        }
    }
    shared.calls.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK.into_response()
}
