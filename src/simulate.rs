//! A simulated PIM: builds and signs Akeneo Events API webhooks. The demo, the ingest
//! benchmark and the integration tests all send what this produces, so they exercise the
//! same bytes a real Akeneo would send.

pub mod target;

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

/// A signed request, ready to POST.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// One product edit, as the simulated PIM describes it.
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    pub key: &'a str,
    pub family: &'a str,
    /// The product's `updated` time in µs since the epoch: its version.
    pub updated_us: i64,
    pub price_cents: i64,
    pub stock: i64,
    /// Pads the description so the whole body is about this many bytes (0: no padding).
    pub body_size: usize,
}

/// Hex HMAC-SHA256 over "<timestamp>.<body>", as Akeneo signs.
pub fn akeneo_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC-SHA256 takes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Signs a raw Akeneo body with the given request timestamp.
pub fn akeneo_signed(secret: &[u8], timestamp: i64, body: Vec<u8>) -> SignedRequest {
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("x-akeneo-request-timestamp", timestamp.to_string()),
            (
                "x-akeneo-request-signature",
                akeneo_signature(secret, timestamp, &body),
            ),
        ],
        body: Bytes::from(body),
    }
}

/// An Akeneo `product.updated` event for one edit, signed at `now_unix`. Written from a
/// template rather than a `serde_json::Value`: the benchmarks' load generator calls this for
/// every request, on the cores it measures.
pub fn akeneo_product_updated(secret: &[u8], now_unix: i64, edit: &Edit<'_>) -> SignedRequest {
    let body = akeneo_product_updated_body(edit);
    akeneo_signed(secret, now_unix, body.into_bytes())
}

fn akeneo_product_updated_body(edit: &Edit<'_>) -> String {
    let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let updated = rfc3339_us(edit.updated_us);
    let event_id = text(&format!("{}-{}", edit.key, edit.updated_us));
    let uuid = text(&uuid_for(edit.key));
    let (key, family) = (text(edit.key), text(edit.family));
    let name = text(&format!("Product {}", edit.key));
    let amount = format!("{}.{:02}", edit.price_cents / 100, edit.price_cents % 100);
    let stock = edit.stock;
    // Keys in serde_json's (sorted) order, so the bytes are what `json!` would write. The
    // description's text, in the middle, pads the body to `body_size`.
    let head = format!(
        r#"{{"events":[{{"action":"product.updated","author":"demo","author_type":"ui","data":{{"resource":{{"categories":["catalog"],"created":"2026-01-01T00:00:00+00:00","enabled":true,"family":{family},"identifier":{key},"parent":null,"updated":"{updated}","uuid":{uuid},"values":{{"description":[{{"data":""#
    );
    let tail = format!(
        r#"","locale":"en_US","scope":"ecommerce"}}],"name":[{{"data":{name},"locale":"en_US","scope":null}}],"price":[{{"data":[{{"amount":"{amount}","currency":"EUR"}}],"locale":null,"scope":null}}],"stock":[{{"data":{stock},"locale":null,"scope":null}}]}}}}}},"event_datetime":"{updated}","event_id":{event_id},"pim_source":"https://pim.example.com"}}]}}"#
    );
    let padding = edit.body_size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(head.len() + padding + tail.len());
    body.push_str(&head);
    body.extend(std::iter::repeat_n('x', padding));
    body.push_str(&tail);
    body
}

/// A stable uuid-shaped id per product key, like the PIM's own.
pub fn uuid_for(key: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 with microseconds and an explicit offset, as Akeneo writes timestamps.
pub fn rfc3339_us(us: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    time.format(&format).unwrap_or_default()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A keep-alive HTTP/1 client for posting webhooks to a local pimsync.
#[derive(Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Sender {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Sender { client }
    }
}

impl Sender {
    /// POSTs and returns the status and the response body.
    pub async fn post(&self, url: &str, request: &SignedRequest) -> Result<(u16, Bytes), String> {
        let mut builder = hyper::Request::post(url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let http_request = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(http_request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_padded_to_the_asked_size_and_signed() {
        let edit = Edit {
            key: "SKU-1",
            family: "chairs",
            updated_us: 1_700_000_000_123_456,
            price_cents: 1999,
            stock: 3,
            body_size: 1024,
        };
        let request = akeneo_product_updated(b"secret", 1_700_000_000, &edit);
        assert_eq!(request.body.len(), 1024);
        let signature = &request.headers[2].1;
        assert_eq!(
            signature,
            &akeneo_signature(b"secret", 1_700_000_000, &request.body)
        );
        assert!(
            std::str::from_utf8(&request.body)
                .unwrap()
                .contains("2023-11-14T22:13:20.123456+00:00")
        );
    }

    /// The template writes exactly what `serde_json` writes for the same event.
    #[test]
    fn the_template_is_the_json_of_the_event() {
        for (key, body_size) in [("SKU-1", 1024), ("B-\"quoted\"-é", 0), ("x", 10)] {
            let edit = Edit {
                key,
                family: "chairs",
                updated_us: 1_700_000_000_123_456,
                price_cents: 1905,
                stock: 7,
                body_size,
            };
            let updated = rfc3339_us(edit.updated_us);
            let mut event = json!({
                "events": [{
                    "action": "product.updated",
                    "event_id": format!("{}-{}", edit.key, edit.updated_us),
                    "event_datetime": updated,
                    "author": "demo",
                    "author_type": "ui",
                    "pim_source": "https://pim.example.com",
                    "data": {"resource": {
                        "uuid": uuid_for(edit.key),
                        "identifier": edit.key,
                        "family": edit.family,
                        "parent": null,
                        "categories": ["catalog"],
                        "enabled": true,
                        "values": {
                            "name": [{"locale": "en_US", "scope": null, "data": format!("Product {}", edit.key)}],
                            "price": [{"locale": null, "scope": null, "data": [{"amount": "19.05", "currency": "EUR"}]}],
                            "stock": [{"locale": null, "scope": null, "data": edit.stock}],
                            "description": [{"locale": "en_US", "scope": "ecommerce", "data": ""}]
                        },
                        "created": "2026-01-01T00:00:00+00:00",
                        "updated": updated
                    }}
                }]
            });
            let base = event.to_string().len();
            if body_size > base {
                event["events"][0]["data"]["resource"]["values"]["description"][0]["data"] =
                    json!("x".repeat(body_size - base));
            }
            assert_eq!(
                akeneo_product_updated_body(&edit),
                event.to_string(),
                "{key}"
            );
        }
    }
}
