//! The receiver through the real binary: every format, every status code.

use base64::Engine;
use hmac::{Hmac, Mac};
use pimsync::simulate::{self, Edit, Sender, SignedRequest};
use sha2::Sha256;

use crate::harness::*;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn edit(key: &str, updated_us: i64) -> Edit<'_> {
    Edit {
        key,
        family: "chairs",
        updated_us,
        price_cents: 1999,
        stock: 5,
        body_size: 1024,
    }
}

fn pimsync_payload(key: &str, version: i64) -> String {
    format!(
        r#"{{"changes":[{{"key":"{key}","op":"upsert","version":{version},"product":{{"family":"chairs","enabled":true,"values":{{"name":[{{"locale":"en_US","scope":null,"data":"Chair"}}]}}}}}}]}}"#
    )
}

fn standard_webhook(id: &str, timestamp: i64, body: &str) -> SignedRequest {
    let key = base64::engine::general_purpose::STANDARD
        .decode(WHSEC.trim_start_matches("whsec_"))
        .unwrap();
    let signature = hmac_sha256(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body.as_bytes(),
        ],
    );
    SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("webhook-id", id.into()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(signature)
                ),
            ),
        ],
        body: body.to_owned().into(),
    }
}

fn product_version(db_path: &std::path::Path, key: &str) -> Option<i64> {
    db(db_path)
        .query_row(
            "SELECT version FROM products WHERE product_key = ?1",
            [key],
            |row| row.get(0),
        )
        .ok()
}

#[tokio::test]
async fn every_format_is_verified_parsed_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config_text(dir.path(), "", ""));
    let sender = Sender::default();
    let now = simulate::unix_now();

    // 1. Akeneo Events API.
    let akeneo = simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        now,
        &edit("AK-1", 1_700_000_000_000_000),
    );
    let (status, body) = sender
        .post(&daemon.url("/webhooks/akeneo"), &akeneo)
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        product_version(&daemon.db, "AK-1"),
        Some(1_700_000_000_000_000)
    );

    // 2. Akeneo Event Platform: a thin event (uuid only) is queued for a fetch; the
    //    secondary secret is accepted too (rotation).
    let event = r#"{"specversion":"1.0","id":"ev-1","source":"pim","type":"com.akeneo.pim.v1.product.updated","time":"2026-12-04T10:00:00Z","datacontenttype":"application/json","data":{"product":{"uuid":"0b8b9c39-7a44-4ab0-8a5c-3bd6a4e0d4b1"}}}"#;
    for (header, secret) in [
        ("x-akeneo-signature-primary", EP_PRIMARY),
        ("x-akeneo-signature-secondary", EP_SECONDARY),
    ] {
        let request = SignedRequest {
            headers: vec![
                ("content-type", "application/cloudevents+json".into()),
                (
                    header,
                    hex::encode(hmac_sha256(secret.as_bytes(), &[event.as_bytes()])),
                ),
            ],
            body: event.into(),
        };
        let (status, _) = sender
            .post(&daemon.url("/webhooks/akeneo-ep"), &request)
            .await
            .unwrap();
        // The second is the same CloudEvent id: a duplicate.
        let expected = if header.ends_with("primary") {
            202
        } else {
            200
        };
        assert_eq!(status, expected, "{header}");
    }
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM fetch_queue"), 1);
    // An event type pimsync does not act on is acknowledged (refused, the Event Platform
    // would retry it and in the end suspend the subscription) and nothing is stored.
    let inbox_before = count(&daemon.db, "SELECT count(*) FROM inbox");
    let category = r#"{"specversion":"1.0","id":"ev-9","source":"pim","type":"com.akeneo.pim.v1.category.updated","time":"2026-12-04T10:00:00Z","data":{"category":{"code":"chairs"}}}"#;
    let request = SignedRequest {
        headers: vec![(
            "x-akeneo-signature-primary",
            hex::encode(hmac_sha256(EP_PRIMARY.as_bytes(), &[category.as_bytes()])),
        )],
        body: category.into(),
    };
    let (status, _) = sender
        .post(&daemon.url("/webhooks/akeneo-ep"), &request)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        count(&daemon.db, "SELECT count(*) FROM inbox"),
        inbox_before
    );

    // 3. Standard Webhooks with pimsync's payload.
    let request = standard_webhook("msg_1", now, &pimsync_payload("SW-1", 7));
    let (status, _) = sender
        .post(&daemon.url("/webhooks/standard"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202);
    assert_eq!(product_version(&daemon.db, "SW-1"), Some(7));

    // 4. Generic HMAC, GitHub-style.
    let body = pimsync_payload("GH-1", 3);
    let request = SignedRequest {
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-github-delivery", "delivery-1".into()),
            (
                "x-hub-signature-256",
                format!(
                    "sha256={}",
                    hex::encode(hmac_sha256(HMAC_SECRET.as_bytes(), &[body.as_bytes()]))
                ),
            ),
        ],
        body: body.into(),
    };
    let (status, _) = sender
        .post(&daemon.url("/webhooks/hmac"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202);
    let (status, _) = sender
        .post(&daemon.url("/webhooks/hmac"), &request)
        .await
        .unwrap();
    assert_eq!(status, 200, "same X-GitHub-Delivery: duplicate");
    assert_eq!(product_version(&daemon.db, "GH-1"), Some(3));

    // Routing: chairs reach all three targets.
    assert_eq!(routed_targets(&daemon.db, "GH-1"), 3);
    // The inbox keeps the raw body and the chosen headers, never the signature.
    let headers: String = db(&daemon.db)
        .query_row(
            "SELECT headers FROM inbox WHERE source = 'middleware'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(headers.contains("delivery-1"), "{headers}");
    assert!(!headers.to_lowercase().contains("sha256="), "{headers}");
}

#[tokio::test]
async fn rejected_requests_get_the_right_status_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config_text(dir.path(), "body_limit = 4096", ""),
    );
    let sender = Sender::default();
    let url = daemon.url("/webhooks/akeneo");
    let now = simulate::unix_now();
    let good = simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), now, &edit("R-1", 1));

    // Wrong secret.
    let forged = simulate::akeneo_product_updated(b"not-the-secret", now, &edit("R-1", 1));
    assert_eq!(sender.post(&url, &forged).await.unwrap().0, 401);
    // Missing signature.
    let mut unsigned = good.clone();
    unsigned
        .headers
        .retain(|(name, _)| *name != "x-akeneo-request-signature");
    assert_eq!(sender.post(&url, &unsigned).await.unwrap().0, 401);
    // Body changed after signing.
    let mut tampered = good.clone();
    tampered.body = String::from_utf8_lossy(&good.body)
        .replace("19.99", "0.01")
        .into();
    assert_eq!(sender.post(&url, &tampered).await.unwrap().0, 401);
    // Stale: signed ten minutes ago (a replay).
    let stale =
        simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), now - 600, &edit("R-1", 1));
    assert_eq!(sender.post(&url, &stale).await.unwrap().0, 401);
    // Correctly signed, but not JSON.
    let garbage = simulate::akeneo_signed(AKENEO_SECRET.as_bytes(), now, b"{not json".to_vec());
    let (status, body) = sender.post(&url, &garbage).await.unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("error"));
    // Over the body limit.
    let big = simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        now,
        &Edit {
            body_size: 8192,
            ..edit("R-1", 1)
        },
    );
    assert_eq!(sender.post(&url, &big).await.unwrap().0, 413);
    // Akeneo's empty test request when a connection is saved.
    let ping = simulate::akeneo_signed(AKENEO_SECRET.as_bytes(), now, Vec::new());
    assert_eq!(sender.post(&url, &ping).await.unwrap().0, 200);
    // Standard Webhooks: a valid signature on a different id fails.
    let mut wrong_id = standard_webhook("msg_a", now, &pimsync_payload("R-2", 1));
    wrong_id.headers[1].1 = "msg_b".into();
    assert_eq!(
        sender
            .post(&daemon.url("/webhooks/standard"), &wrong_id)
            .await
            .unwrap()
            .0,
        401
    );

    assert_eq!(count(&daemon.db, "SELECT count(*) FROM inbox"), 0);
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM products"), 0);
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM outbox"), 0);

    // A configured path never answers 404 (nor redirects): GET is 405.
    let client = raw_get_status(&daemon.addr, "/webhooks/akeneo").await;
    assert_eq!(client, 405);
    // And the good request still goes through.
    assert_eq!(sender.post(&url, &good).await.unwrap().0, 202);
}

/// A bare GET over a TCP socket, to check the status of a non-POST request.
async fn raw_get_status(addr: &std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_full_store_answers_503_with_retry_after_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config_text(dir.path(), "body_limit = \"1MiB\"", "max_size = \"1MiB\""),
    );
    let sender = Sender::default();
    let url = daemon.url("/webhooks/akeneo");
    let now = simulate::unix_now();
    let mut saw_503 = false;
    let mut accepted = Vec::new();
    for n in 0..40 {
        let key = format!("F-{n}");
        let request = simulate::akeneo_product_updated(
            AKENEO_SECRET.as_bytes(),
            now,
            &Edit {
                body_size: 64 * 1024,
                ..edit(&key, 1)
            },
        );
        let (status, _) = sender.post(&url, &request).await.unwrap();
        match status {
            202 => accepted.push(key),
            503 => {
                saw_503 = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(saw_503, "the store never filled up");
    // Everything acknowledged is there; the refused one is not.
    let stored = count(&daemon.db, "SELECT count(*) FROM products");
    assert_eq!(stored as usize, accepted.len());
    // Small requests still work: pimsync recovers by itself when space allows.
    let small = simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        now,
        &Edit {
            body_size: 0,
            ..edit("small", 1)
        },
    );
    let (status, _) = sender.post(&url, &small).await.unwrap();
    assert!(status == 202 || status == 503, "{status}");
}

#[tokio::test]
async fn edits_coalesce_and_old_events_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config_text(dir.path(), "", ""));
    let sender = Sender::default();
    let url = daemon.url("/webhooks/akeneo");
    let now = simulate::unix_now();
    let base = 1_750_000_000_000_000;
    let mut tasks = Vec::new();
    for n in 0..100i64 {
        let sender = sender.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let request = simulate::akeneo_product_updated(
                AKENEO_SECRET.as_bytes(),
                now,
                &Edit {
                    price_cents: 1000 + n,
                    ..edit("HOT", base + n)
                },
            );
            sender.post(&url, &request).await.unwrap().0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    // 100 edits → one row per target (pending or already applied), at the last version.
    assert_eq!(routed_targets(&daemon.db, "HOT"), 3);
    assert_eq!(product_version(&daemon.db, "HOT"), Some(base + 99));
    let snapshot: String = db(&daemon.db)
        .query_row(
            "SELECT snapshot FROM products WHERE product_key = 'HOT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        snapshot.contains("10.99"),
        "the last edit's price wins: {snapshot}"
    );
    // A late, older event is acknowledged and dropped.
    let late = simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        now,
        &Edit {
            price_cents: 1,
            ..edit("HOT", base - 1)
        },
    );
    let (status, body) = sender.post(&url, &late).await.unwrap();
    assert_eq!(status, 202);
    assert!(
        String::from_utf8_lossy(&body).contains("\"stale\":1"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(product_version(&daemon.db, "HOT"), Some(base + 99));
}

/// A sender that stalls cannot hold a connection: headers not finished within
/// `server.request_timeout` close the connection; a body not finished gets 408. Nothing
/// is stored, and the receiver keeps serving others.
#[tokio::test]
async fn stalled_senders_are_cut_off_and_nothing_is_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config_text(dir.path(), "request_timeout = \"300ms\"", ""),
    );
    // Headers begun, never finished: the connection is closed without an answer.
    let mut headers_only = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    headers_only
        .write_all(b"POST /webhooks/akeneo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(LIMIT, headers_only.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {LIMIT:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 202 "),
        "{answer:?}"
    );
    // Headers sent, the body stalls a tenth of the way: 408.
    let mut stalled_body = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    stalled_body
        .write_all(
            b"POST /webhooks/akeneo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"events\":",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(LIMIT, stalled_body.read(&mut answer))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Others are served meanwhile and after.
    let sender = Sender::default();
    let now = simulate::unix_now();
    let ok = simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), now, &edit("S-1", 1));
    let url = daemon.url("/webhooks/akeneo");
    assert_eq!(sender.post(&url, &ok).await.unwrap().0, 202);
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM inbox"), 1);
}
