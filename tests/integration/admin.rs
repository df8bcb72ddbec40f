//! Operations through the real binary: the admin API (with and without its token),
//! `/metrics`, schedules in `check-config`, and a schedule firing a resync.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pimsync::simulate::{self, Edit, Sender};

use crate::fake_target::FakeTarget;
use crate::harness::*;

pub(crate) const TOKEN: &str = "admin-token-for-tests-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// A loopback port that was free a moment ago (the harness reads only the receiver's
/// address from the daemon, so the admin listener gets a port chosen here).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn admin_section(port: u16, extra: &str) -> String {
    format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n{extra}\n")
}

/// One request to the admin API: (status, body).
pub(crate) async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("Content-Type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn send_edit(sender: &Sender, daemon: &Daemon, key: &str, updated_us: i64) {
    let edit = Edit {
        key,
        family: "chairs",
        updated_us,
        price_cents: 1234,
        stock: 1,
        body_size: 0,
    };
    let request =
        simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), simulate::unix_now(), &edit);
    let (status, body) = sender
        .post(&daemon.url("/webhooks/akeneo"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

/// Polls `check` every 50 ms until it returns true, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admin_api_needs_the_token_and_metrics_show_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_text(dir.path(), "", "") + &admin_section(port, "");
    let daemon = Daemon::start(dir.path(), &config);
    let admin = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // Health and readiness need no token.
    let (status, body) = call("GET", &admin("/healthz"), None, None).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    eventually(WAIT, "readyz", async || {
        call("GET", &admin("/readyz"), None, None).await.0 == 200
    })
    .await;

    // Everything else does; a wrong one is refused the same way.
    for (method, path, body) in [
        ("GET", "/status", None),
        ("GET", "/dead", None),
        (
            "POST",
            "/resync",
            Some(r#"{"all_targets": true, "all": true}"#),
        ),
        ("POST", "/dead/retry", Some(r#"{"all_targets": true}"#)),
        ("POST", "/dead/discard", Some(r#"{"all_targets": true}"#)),
    ] {
        for token in [None, Some("wrong-token"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let (status, text) = call(method, &admin(path), token, body).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
        }
    }

    // Some webhooks, then the metrics and the status reflect them.
    let sender = Sender::default();
    for n in 0..3 {
        send_edit(&sender, &daemon, &format!("SKU-{n}"), 1_000 + n).await;
    }
    let bad = simulate::akeneo_product_updated(
        b"not-the-secret",
        simulate::unix_now(),
        &Edit {
            key: "SKU-X",
            family: "chairs",
            updated_us: 1,
            price_cents: 1,
            stock: 1,
            body_size: 0,
        },
    );
    let (status, _) = sender
        .post(&daemon.url("/webhooks/akeneo"), &bad)
        .await
        .unwrap();
    assert_eq!(status, 401);

    // The log targets apply everything; wait until nothing is pending.
    eventually(WAIT, "the outbox to drain", async || {
        count(&daemon.db, "SELECT count(*) FROM outbox") == 0
    })
    .await;

    let (status, metrics) = call("GET", &admin("/metrics"), None, None).await;
    assert_eq!(status, 200, "{metrics}");
    for expected in [
        "pimsync_webhooks_received_total{source=\"akeneo\",status=\"202\"} 3\n",
        "pimsync_webhooks_received_total{source=\"akeneo\",status=\"401\"} 1\n",
        "pimsync_outbox_rows{target=\"shop\",state=\"pending\"} 0\n",
        "pimsync_outbox_rows{target=\"erp\",state=\"dead\"} 0\n",
        "pimsync_applies_total{target=\"shop\",outcome=\"applied\"} 3\n",
        "pimsync_applies_total{target=\"chairs-store\",outcome=\"applied\"} 3\n",
        "pimsync_apply_duration_seconds_count{target=\"erp\"} 3\n",
        "pimsync_dead_letters_total{target=\"erp\"} 0\n",
        "pimsync_retries_total{target=\"shop\"} 0\n",
        "# TYPE pimsync_store_commit_batch_size histogram\n",
        "pimsync_store_commit_duration_seconds_bucket{le=\"+Inf\"} ",
        "pimsync_store_up 1\n",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }

    let (status, text) = call("GET", &admin("/status"), Some(TOKEN), None).await;
    assert_eq!(status, 200, "{text}");
    let status_json = json(&text);
    let targets = status_json["targets"].as_array().unwrap();
    let names: Vec<_> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop", "chairs-store", "erp"]);
    assert_eq!(targets[0]["applied_last_hour"], 3);
    assert_eq!(targets[0]["pending"], 0);
    assert_eq!(targets[0]["dead"], 0);
    assert!(status_json["store"]["size_bytes"].as_u64().unwrap() > 0);

    // A forced resync of two SKUs on one target marks exactly those.
    let (status, text) = call(
        "POST",
        &admin("/resync"),
        Some(TOKEN),
        Some(r#"{"target": "shop", "skus": ["SKU-0", "SKU-1", "NOPE"], "force": true}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["marked"], 2);
    // Not forced: the targets have every product already, so nothing to do.
    let (status, text) = call(
        "POST",
        &admin("/resync"),
        Some(TOKEN),
        Some(r#"{"all_targets": true, "since": "1h"}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    eventually(WAIT, "the forced resync to apply", async || {
        count(&daemon.db, "SELECT count(*) FROM outbox") == 0
    })
    .await;
    let (_, metrics) = call("GET", &admin("/metrics"), None, None).await;
    assert!(
        metrics.contains("pimsync_applies_total{target=\"shop\",outcome=\"applied\"} 5\n"),
        "{metrics}"
    );

    // Bad requests say what is wrong.
    for body in [
        r#"{"target": "nope", "all": true}"#,
        r#"{"target": "shop"}"#,
        r#"{"target": "shop", "all": true, "since": "1h"}"#,
        r#"{"all_targets": true, "all": true, "colour": "red"}"#,
        r#"{"all_targets": true, "since": "last tuesday"}"#,
        "not json",
    ] {
        let (status, text) = call("POST", &admin("/resync"), Some(TOKEN), Some(body)).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(json(&text)["error"].is_string(), "{text}");
    }

    // Dead letters: none yet; make one by hand, list, retry, dead again, discard.
    let (status, text) = call("GET", &admin("/dead"), Some(TOKEN), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["dead"], serde_json::json!([]));
    db(&daemon.db)
        .execute(
            "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state,
                                 attempts, next_attempt_at, last_error, created_at, updated_at)
             VALUES ('erp', 'GHOST', 'h', 'k', 'dead', 20, 0, 'HTTP 422: bad', 0, 0),
                    ('shop', 'GHOST-2', 'h', 'k2', 'dead', 20, 0, 'HTTP 400', 0, 0)",
            [],
        )
        .unwrap();
    let (_, text) = call("GET", &admin("/dead?target=erp"), Some(TOKEN), None).await;
    let dead = json(&text);
    assert_eq!(dead["dead"][0]["product_key"], "GHOST");
    assert_eq!(dead["dead"][0]["last_error"], "HTTP 422: bad");
    let (_, text) = call("GET", &admin("/status"), Some(TOKEN), None).await;
    assert_eq!(json(&text)["targets"][2]["dead"], 1);
    let (_, metrics) = call("GET", &admin("/metrics"), None, None).await;
    assert!(
        metrics.contains("pimsync_outbox_rows{target=\"erp\",state=\"dead\"} 1\n"),
        "{metrics}"
    );
    let (status, text) = call(
        "POST",
        &admin("/dead/retry"),
        Some(TOKEN),
        Some(r#"{"target": "erp", "skus": ["GHOST"]}"#),
    )
    .await;
    assert_eq!((status, json(&text)["retried"].clone()), (200, 1.into()));
    // GHOST was never stored nor applied: the worker settles it without a call.
    eventually(WAIT, "GHOST settled", async || {
        count(
            &daemon.db,
            "SELECT count(*) FROM outbox WHERE product_key = 'GHOST'",
        ) == 0
    })
    .await;
    let (status, text) = call(
        "POST",
        &admin("/dead/discard"),
        Some(TOKEN),
        Some(r#"{"all_targets": true}"#),
    )
    .await;
    assert_eq!((status, json(&text)["discarded"].clone()), (200, 1.into()));
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM outbox"), 0);

    assert!(daemon.terminate().success());
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_text(dir.path(), "", "") + &admin_section(port, "metrics_auth = true");
    let _daemon = Daemon::start(dir.path(), &config);
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(call("GET", &url, None, None).await.0, 401);
    let (status, text) = call("GET", &url, Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert!(text.contains("pimsync_store_up 1"), "{text}");
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(call("GET", &healthz, None, None).await.0, 200);
}

#[tokio::test]
async fn a_schedule_firing_every_second_resyncs_and_records_its_run() {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = delivery_config_text(dir.path(), &fake.base_url(), "")
        + &admin_section(port, "")
        + r#"
[[schedules]]
name = "every-second"
cron = "* * * * * *"
timezone = "Europe/Berlin"
action = "resync"
targets = ["erp"]
force = true
"#;
    let daemon = Daemon::start(dir.path(), &config);
    let sender = Sender::default();
    send_edit(&sender, &daemon, "SKU-S", 1_000).await;
    // Applied once for the webhook, then again by each forced resync.
    fake.wait_for(WAIT, "three applies of SKU-S", |f| {
        f.received().iter().filter(|r| r.key == "SKU-S").count() >= 3
    })
    .await;
    let received = fake.received();
    assert!(received.iter().all(|r| r.method == "PUT"));
    // A forced resync is a new request on purpose: each forced re-send carries a fresh
    // idempotency key (the CLI's, the admin API's and the scheduler's resyncs alike), so a
    // target that remembers keys cannot answer it from its cache.
    let keys: std::collections::BTreeSet<_> =
        received.iter().map(|r| r.idempotency_key.clone()).collect();
    assert!(keys.len() >= 3, "{keys:?}");

    let outcome: String = db(&daemon.db)
        .query_row(
            "SELECT outcome FROM schedule_runs WHERE name = 'every-second' AND finished_at IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .unwrap_or_else(|_| "ok".into());
    assert!(["ok", "running"].contains(&outcome.as_str()), "{outcome}");
    let (status, text) = call(
        "GET",
        &format!("http://127.0.0.1:{port}/status"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let schedule = &json(&text)["schedules"][0];
    assert_eq!(schedule["name"], "every-second");
    assert_eq!(schedule["timezone"], "Europe/Berlin");
    assert_eq!(schedule["next_runs"].as_array().unwrap().len(), 3);
    assert!(
        schedule["last_run"]["started_at"].as_i64().unwrap() > 0,
        "{schedule}"
    );
    let (_, metrics) = call(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
        None,
    )
    .await;
    assert!(
        metrics.contains("pimsync_schedule_runs_total{schedule=\"every-second\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn check_config_prints_each_schedule_next_fire_times_and_rejects_numeric_weekdays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pimsync.toml");
    let good = config_text(dir.path(), "", "")
        + r#"
[[schedules]]
name = "nightly"
cron = "0 0 3 * * MON-FRI"
timezone = "Asia/Tokyo"
action = "resync"
targets = ["shop", "erp"]
since = "24h"

[[schedules]]
name = "reconcile"
cron = "@hourly"
action = "reconcile"
source = "akeneo"
"#;
    std::fs::write(&path, &good).unwrap();
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("nightly  \"0 0 3 * * MON-FRI\" (Asia/Tokyo): resync shop, erp"),
        "{stdout}"
    );
    let nightly: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("nightly"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("next: "))
        .collect();
    assert_eq!(nightly.len(), 3, "{stdout}");
    for line in &nightly {
        assert!(line.ends_with("03:00:00 JST (+09:00)"), "{line}");
    }
    assert_eq!(stdout.matches("      next: ").count(), 6, "{stdout}");
    assert!(stdout.contains("reconcile source akeneo"), "{stdout}");

    let bad = good.replace("MON-FRI", "1-5");
    std::fs::write(&path, bad).unwrap();
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("schedules[0].cron"), "{stderr}");
    assert!(stderr.contains("MON-FRI"), "{stderr}");
}
