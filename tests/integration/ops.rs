//! The operator commands (`resync`, `status`, `dead`, `inbox`, `completions`) run as a
//! second process beside the real daemon, against its database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pimsync::simulate::{self, Edit, Sender};

use crate::fake_target::{FakeTarget, Reply};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

fn edit(key: &str, updated_us: i64, price_cents: i64) -> Edit<'_> {
    Edit {
        key,
        family: "chairs",
        updated_us,
        price_cents,
        stock: 1,
        body_size: 0,
    }
}

async fn send(daemon: &Daemon, e: &Edit<'_>) {
    let request =
        simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), simulate::unix_now(), e);
    let (status, body) = Sender::default()
        .post(&daemon.url("/webhooks/akeneo"), &request)
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `pimsync ARGS --config DIR/pimsync.toml` off the async runtime (the fake target
/// must keep answering while the CLI waits).
async fn pimsync(dir: &Path, args: &[&str]) -> Run {
    let config: PathBuf = dir.join("pimsync.toml");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn outbox_drains(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + WAIT;
    while count(&daemon.db, "SELECT count(*) FROM outbox") > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state_becomes(daemon: &Daemon, key: &str, wanted: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state: Option<String> = db(&daemon.db)
            .query_row(
                "SELECT state FROM outbox WHERE product_key = ?1",
                [key],
                |r| r.get(0),
            )
            .ok();
        if state.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never became {wanted}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_with_one_applied_product() -> (FakeTarget, tempfile::TempDir, Daemon) {
    let fake = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    send(&daemon, &edit("P-1", 1, 100)).await;
    fake.wait_for(WAIT, "first apply", |f| f.received().len() == 1)
        .await;
    outbox_drains(&daemon).await;
    (fake, dir, daemon)
}

#[tokio::test]
async fn resync_settles_without_a_call_and_force_makes_the_target_called_again() {
    let (fake, dir, daemon) = start_with_one_applied_product().await;

    let run = pimsync(dir.path(), &["resync", "--target", "erp", "--sku", "P-1"])
        .await
        .ok();
    assert!(
        run.stdout
            .contains("marked 1 row(s) pending for 1 product(s)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 applied, 0 dead"), "{}", run.stdout);
    assert_eq!(fake.received().len(), 1, "same content, no call");

    let run = pimsync(dir.path(), &["resync", "--all-targets", "--all", "--force"])
        .await
        .ok();
    assert!(run.stdout.contains("1 applied, 0 dead"), "{}", run.stdout);
    let received = fake.received();
    assert_eq!(received.len(), 2, "forced: the target is called again");
    assert_eq!(received[1].method, "PUT");
    assert_eq!(received[1].body, received[0].body, "with the same content");
    assert_eq!(
        count(&daemon.db, "SELECT count(*) FROM applied WHERE hash <> ''"),
        1,
        "the applied hash is recorded again"
    );

    // --since: nothing stored in the future; and an unknown target is refused.
    let run = pimsync(
        dir.path(),
        &[
            "resync",
            "--target",
            "erp",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("marked 0 row(s)"), "{}", run.stdout);
    let run = pimsync(dir.path(), &["resync", "--target", "nope", "--all"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("unknown target \"nope\""),
        "{}",
        run.stderr
    );

    // Without the daemon: --no-wait marks and exits; the next start applies the row.
    daemon.terminate();
    let run = pimsync(
        dir.path(),
        &[
            "resync",
            "--target",
            "erp",
            "--since",
            "1h",
            "--force",
            "--no-wait",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("marked 1 row(s)"), "{}", run.stdout);
    let daemon = Daemon::start(
        dir.path(),
        &std::fs::read_to_string(dir.path().join("pimsync.toml")).unwrap(),
    );
    fake.wait_for(WAIT, "the third apply", |f| f.received().len() == 3)
        .await;
    outbox_drains(&daemon).await;
}

#[tokio::test]
async fn status_shows_each_target_and_the_store_with_or_without_the_daemon() {
    let (_fake, dir, daemon) = start_with_one_applied_product().await;
    let run = pimsync(dir.path(), &["status"]).await.ok();
    for expected in [
        "TARGET",
        "PENDING",
        "IN FLIGHT",
        "DEAD",
        "APPLIED 1H",
        "OLDEST PENDING",
        "store: ",
        "1 products, 0 tombstones, 1 inbox webhooks",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            run.stdout
        );
    }
    let erp_line = run.stdout.lines().find(|l| l.starts_with("erp")).unwrap();
    let cells: Vec<&str> = erp_line.split_whitespace().collect();
    assert_eq!(cells, ["erp", "0", "0", "0", "1", "-"], "{erp_line}");

    daemon.terminate();
    let run = pimsync(dir.path(), &["status", "--json"]).await.ok();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["targets"][0]["name"], "erp");
    assert_eq!(json["targets"][0]["applied_last_hour"], 1);
    assert_eq!(json["targets"][0]["pending"], 0);
    assert_eq!(json["store"]["products"], 1);
    assert!(json["store"]["db_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn dead_rows_are_listed_shown_retried_and_discarded() {
    let fake = FakeTarget::start().await;
    let reject = |body| Reply {
        status: 422,
        retry_after: None,
        body,
    };
    fake.script_key("BAD", [reject("price must be positive")]);
    fake.script_key("WORSE", [reject("no such family")]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &delivery_config_text(dir.path(), &fake.base_url(), ""),
    );
    send(&daemon, &edit("BAD", 1, -1)).await;
    send(&daemon, &edit("WORSE", 1, 5)).await;
    state_becomes(&daemon, "BAD", "dead").await;
    state_becomes(&daemon, "WORSE", "dead").await;

    let run = pimsync(dir.path(), &["dead", "list"]).await.ok();
    assert!(run.stdout.contains("erp/BAD  attempts=1"), "{}", run.stdout);
    assert!(
        run.stdout.contains("HTTP 422: price must be positive"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 dead row(s)"), "{}", run.stdout);
    let run = pimsync(dir.path(), &["dead", "list", "--target", "shop"])
        .await
        .ok();
    assert!(run.stdout.contains("no dead rows"), "{}", run.stdout);

    let run = pimsync(dir.path(), &["dead", "show", "erp", "BAD"])
        .await
        .ok();
    assert!(
        run.stdout.contains("state:           dead"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("applied:         never"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\"family\": \"chairs\""),
        "{}",
        run.stdout
    );

    let status = pimsync(dir.path(), &["status"]).await.ok();
    assert!(status.stdout.contains("HTTP 422"), "{}", status.stdout);

    // The fake now accepts BAD: a retry delivers it.
    let run = pimsync(dir.path(), &["dead", "retry", "erp/BAD"])
        .await
        .ok();
    assert!(run.stdout.contains("retried erp/BAD"), "{}", run.stdout);
    fake.wait_for(WAIT, "BAD delivered after the retry", |f| {
        f.received()
            .iter()
            .any(|r| r.key == "BAD" && r.status == 200)
    })
    .await;
    let run = pimsync(dir.path(), &["dead", "retry", "erp", "NOPE"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("not a dead row: erp/NOPE"),
        "{}",
        run.stderr
    );

    let run = pimsync(dir.path(), &["dead", "discard", "erp", "WORSE"])
        .await
        .ok();
    assert!(run.stdout.contains("discarded erp/WORSE"), "{}", run.stdout);
    outbox_drains(&daemon).await;
    assert_eq!(
        count(
            &daemon.db,
            "SELECT count(*) FROM products WHERE product_key = 'WORSE'"
        ),
        1,
        "the product stays"
    );
    assert_eq!(
        fake.received().iter().filter(|r| r.key == "WORSE").count(),
        1
    );
}

#[tokio::test]
async fn inbox_is_listed_shown_and_replayed_as_a_new_delivery() {
    let (fake, dir, daemon) = start_with_one_applied_product().await;
    let run = pimsync(dir.path(), &["inbox", "list", "--source", "akeneo"])
        .await
        .ok();
    assert!(run.stdout.contains("akeneo"), "{}", run.stdout);
    assert!(run.stdout.contains("1 change(s)"), "{}", run.stdout);
    let id: i64 = count(&daemon.db, "SELECT max(id) FROM inbox");
    let id = id.to_string();

    let run = pimsync(dir.path(), &["inbox", "show", &id]).await.ok();
    assert!(run.stdout.contains("# source: akeneo"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\"identifier\":\"P-1\""),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.to_ascii_lowercase().contains("signature"),
        "signatures are never kept:\n{}",
        run.stdout
    );

    let run = pimsync(dir.path(), &["inbox", "replay", &id]).await.ok();
    assert!(
        run.stdout
            .contains(&format!("replayed {id}: 0 changed, 1 unchanged")),
        "{}",
        run.stdout
    );
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM inbox"), 2);
    assert_eq!(
        fake.received().len(),
        1,
        "unchanged content is not sent again"
    );

    let run = pimsync(dir.path(), &["inbox", "show", "999999"]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no inbox row 999999"), "{}", run.stderr);
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains("resync"), "{shell}:\n{script}");
    }
}
