//! Bad input: malformed, oversized, wrongly signed, replayed and stale requests for every
//! source format get the right 4xx and store nothing.

use pimsync::simulate::{self, Edit, Sender, SignedRequest};

use super::BASE_US;
use crate::harness::*;

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(pimsync::receiver::signature::hmac_sha256(key, parts))
}

pub(crate) fn standard_webhook(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> SignedRequest {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let ts = timestamp.to_string();
    let tag = pimsync::receiver::signature::hmac_sha256(
        &key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts),
            ("webhook-signature", format!("v1,{}", b64.encode(tag))),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn event_platform(secret: &str, body: &[u8]) -> SignedRequest {
    SignedRequest {
        headers: vec![
            ("content-type", "application/cloudevents+json".into()),
            (
                "x-akeneo-signature-primary",
                hmac_hex(secret.as_bytes(), &[body]),
            ),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn hmac_request(secret: &str, delivery: &str, body: &[u8]) -> SignedRequest {
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-github-delivery", delivery.into()),
            (
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(secret.as_bytes(), &[body])),
            ),
        ],
        body: body.to_vec().into(),
    }
}

pub(crate) fn payload(key: &str, version: i64) -> Vec<u8> {
    format!(
        r#"{{"changes":[{{"key":"{key}","op":"upsert","version":{version},"product":{{"family":"chairs","enabled":true,"values":{{}}}}}}]}}"#
    )
    .into_bytes()
}

pub(crate) fn cloud_event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"pim","type":"com.akeneo.pim.v1.product.updated","time":"2026-12-04T10:00:00Z","datacontenttype":"application/json","data":{{"product":{{"uuid":"0b8b9c39-7a44-4ab0-8a5c-3bd6a4e0d4b1"}}}}}}"#
    )
    .into_bytes()
}

fn with_header(mut r: SignedRequest, name: &'static str, value: &str) -> SignedRequest {
    r.headers.retain(|(n, _)| *n != name);
    r.headers.push((name, value.to_owned()));
    r
}

fn without_header(mut r: SignedRequest, name: &str) -> SignedRequest {
    r.headers.retain(|(n, _)| *n != name);
    r
}

fn with_body(mut r: SignedRequest, body: &[u8]) -> SignedRequest {
    r.body = body.to_vec().into();
    r
}

/// What requests can change in the store. Delivery to the log targets runs meanwhile and
/// moves rows from `outbox` to `applied`, so those two count as one set of routed pairs.
fn store_counts(db_path: &std::path::Path) -> [i64; 5] {
    [
        "SELECT count(*) FROM inbox",
        "SELECT count(*) FROM products",
        "SELECT coalesce(sum(version), 0) FROM products",
        "SELECT count(*) FROM (SELECT product_key, target FROM outbox
                               UNION SELECT product_key, target FROM applied)",
        "SELECT count(*) FROM fetch_queue",
    ]
    .map(|sql| count(db_path, sql))
}

#[tokio::test]
async fn bad_input_corpus_gets_the_right_4xx_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_env(
        dir.path(),
        &config_text(dir.path(), "body_limit = 4096", ""),
        &[("RUST_LOG", "error")],
    );
    let sender = Sender::default();
    let now = simulate::unix_now();
    let ak =
        |ts: i64, body: &[u8]| simulate::akeneo_signed(AKENEO_SECRET.as_bytes(), ts, body.to_vec());
    let ak_edit = |ts: i64| {
        simulate::akeneo_product_updated(
            AKENEO_SECRET.as_bytes(),
            ts,
            &Edit {
                key: "BAD-1",
                family: "chairs",
                updated_us: BASE_US,
                price_cents: 100,
                stock: 1,
                body_size: 1024,
            },
        )
    };
    let big = vec![b' '; 8192];
    let mut oversized_payload = payload("BAD-2", 1);
    oversized_payload.truncate(oversized_payload.len() - 1);
    oversized_payload.extend(std::iter::repeat_n(b' ', 8192));
    oversized_payload.push(b'}');

    // Requests first accepted, then replayed below: their replays must change nothing.
    let good_ak = ak_edit(now);
    let good_sw = standard_webhook(WHSEC, "msg_replay", now, &payload("BAD-3", 1));
    let good_ep = event_platform(EP_PRIMARY, &cloud_event("ev-replay"));
    let good_hmac = hmac_request(HMAC_SECRET, "delivery-replay", &payload("BAD-4", 1));
    for (path, request) in [
        ("/webhooks/akeneo", &good_ak),
        ("/webhooks/standard", &good_sw),
        ("/webhooks/akeneo-ep", &good_ep),
        ("/webhooks/hmac", &good_hmac),
    ] {
        let (status, body) = sender.post(&daemon.url(path), request).await.unwrap();
        assert_eq!(status, 202, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let baseline = store_counts(&daemon.db);

    let not_utf8: &[u8] = b"{\"events\":[\xff\xfe]}";
    #[rustfmt::skip]
    let corpus: Vec<(&str, &str, SignedRequest, u16)> = vec![
        // Akeneo Events API
        ("akeneo", "not JSON", ak(now, b"{not json"), 400),
        ("akeneo", "not UTF-8", ak(now, not_utf8), 400),
        ("akeneo", "events not a list", ak(now, br#"{"events":"x"}"#), 400),
        ("akeneo", "event without data", ak(now, br#"{"events":[{"action":"product.updated","event_id":"e"}]}"#), 400),
        ("akeneo", "JSON array", ak(now, b"[]"), 400),
        ("akeneo", "oversized", ak(now, &big), 413),
        ("akeneo", "wrong secret", simulate::akeneo_signed(b"wrong", now, good_ak.body.to_vec()), 401),
        ("akeneo", "no signature", without_header(good_ak.clone(), "x-akeneo-request-signature"), 401),
        ("akeneo", "no timestamp", without_header(good_ak.clone(), "x-akeneo-request-timestamp"), 401),
        ("akeneo", "signature not hex", with_header(good_ak.clone(), "x-akeneo-request-signature", "zz-not-hex"), 401),
        ("akeneo", "timestamp not a number", with_header(good_ak.clone(), "x-akeneo-request-timestamp", "yesterday"), 401),
        ("akeneo", "body tampered", with_body(good_ak.clone(), &good_ak.body.iter().copied().map(|b| if b == b'1' { b'2' } else { b }).collect::<Vec<_>>()), 401),
        ("akeneo", "signature of another timestamp", with_header(good_ak.clone(), "x-akeneo-request-timestamp", &(now + 1).to_string()), 401),
        ("akeneo", "replayed 10 min later (stale timestamp)", ak_edit(now - 600), 401),
        ("akeneo", "timestamp 10 min ahead", ak_edit(now + 600), 401),
        // Standard Webhooks
        ("standard", "not JSON", standard_webhook(WHSEC, "m1", now, b"{not json"), 400),
        ("standard", "no changes field", standard_webhook(WHSEC, "m2", now, b"{}"), 400),
        ("standard", "change without version", standard_webhook(WHSEC, "m3", now, br#"{"changes":[{"key":"K","op":"upsert","product":{}}]}"#), 400),
        ("standard", "unknown op", standard_webhook(WHSEC, "m4", now, br#"{"changes":[{"key":"K","op":"explode","version":1}]}"#), 400),
        ("standard", "empty key", standard_webhook(WHSEC, "m5", now, br#"{"changes":[{"key":"","op":"upsert","version":1,"product":{}}]}"#), 400),
        ("standard", "oversized", standard_webhook(WHSEC, "m6", now, &oversized_payload), 413),
        ("standard", "wrong secret", standard_webhook("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "m7", now, &payload("BAD-5", 1)), 401),
        ("standard", "no signature", without_header(standard_webhook(WHSEC, "m8", now, &payload("BAD-5", 1)), "webhook-signature"), 401),
        ("standard", "no id", without_header(standard_webhook(WHSEC, "m9", now, &payload("BAD-5", 1)), "webhook-id"), 401),
        ("standard", "signed for another id", with_header(standard_webhook(WHSEC, "m10", now, &payload("BAD-5", 1)), "webhook-id", "m11"), 401),
        ("standard", "only v1a entries", with_header(standard_webhook(WHSEC, "m12", now, &payload("BAD-5", 1)), "webhook-signature", "v1a,AAAA"), 401),
        ("standard", "replayed 10 min later (stale timestamp)", standard_webhook(WHSEC, "msg_replay", now - 600, &payload("BAD-3", 1)), 401),
        ("standard", "timestamp 10 min ahead", standard_webhook(WHSEC, "m13", now + 600, &payload("BAD-5", 1)), 401),
        // Akeneo Event Platform (no timestamp: replays are caught by the CloudEvent id)
        ("akeneo-ep", "not JSON", event_platform(EP_PRIMARY, b"{not json"), 400),
        ("akeneo-ep", "not a CloudEvent", event_platform(EP_PRIMARY, br#"{"hello":"world"}"#), 400),
        ("akeneo-ep", "oversized", event_platform(EP_PRIMARY, &big), 413),
        ("akeneo-ep", "wrong secret", event_platform("wrong", &cloud_event("ev-2")), 401),
        ("akeneo-ep", "no signature", without_header(event_platform(EP_PRIMARY, &cloud_event("ev-3")), "x-akeneo-signature-primary"), 401),
        ("akeneo-ep", "signature not hex", with_header(event_platform(EP_PRIMARY, &cloud_event("ev-4")), "x-akeneo-signature-primary", "not hex"), 401),
        ("akeneo-ep", "replayed (same id)", good_ep.clone(), 200),
        // Generic HMAC (no timestamp: replays are caught by the delivery id)
        ("hmac", "not JSON", hmac_request(HMAC_SECRET, "d1", b"{not json"), 400),
        ("hmac", "version not a number", hmac_request(HMAC_SECRET, "d2", br#"{"changes":[{"key":"K","op":"upsert","version":"one","product":{}}]}"#), 400),
        ("hmac", "oversized", hmac_request(HMAC_SECRET, "d3", &oversized_payload), 413),
        ("hmac", "wrong secret", hmac_request("wrong", "d4", &payload("BAD-6", 1)), 401),
        ("hmac", "no signature", without_header(hmac_request(HMAC_SECRET, "d5", &payload("BAD-6", 1)), "x-hub-signature-256"), 401),
        ("hmac", "sha1= prefix", with_header(hmac_request(HMAC_SECRET, "d6", &payload("BAD-6", 1)), "x-hub-signature-256", &format!("sha1={}", hmac_hex(HMAC_SECRET.as_bytes(), &[&payload("BAD-6", 1)]))), 401),
        ("hmac", "no prefix", with_header(hmac_request(HMAC_SECRET, "d7", &payload("BAD-6", 1)), "x-hub-signature-256", &hmac_hex(HMAC_SECRET.as_bytes(), &[&payload("BAD-6", 1)])), 401),
        ("hmac", "replayed (same delivery id)", good_hmac.clone(), 200),
    ];
    let mut wrong = Vec::new();
    for (source, case, request, expected) in &corpus {
        let path = match *source {
            "akeneo" => "/webhooks/akeneo",
            "standard" => "/webhooks/standard",
            "akeneo-ep" => "/webhooks/akeneo-ep",
            _ => "/webhooks/hmac",
        };
        let (status, body) = sender.post(&daemon.url(path), request).await.unwrap();
        if status != *expected {
            wrong.push(format!(
                "{source} / {case}: {status} (expected {expected}) {}",
                String::from_utf8_lossy(&body)
            ));
        }
        if (400..500).contains(&status) && status != 413 {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert!(
                body["error"].is_string(),
                "{source} / {case}: no error reason"
            );
        }
        assert_eq!(
            store_counts(&daemon.db),
            baseline,
            "{source} / {case} stored something"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
