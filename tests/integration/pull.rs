//! The PIM pull through the real binary: a thin Event Platform event is fetched from an
//! in-process fake Akeneo and delivered to a fake target; `pimsync reconcile` killed in
//! the middle of a pull resumes from its committed cursor.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use pimsync::simulate::{Sender, SignedRequest};
use sha2::Sha256;

use crate::fake_target::FakeTarget;
use crate::harness::*;

#[path = "../../connectors/src/akeneo/fake.rs"]
mod fake_akeneo;
use fake_akeneo::FakeAkeneo;

const WAIT: Duration = Duration::from_secs(20);

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn config(dir: &Path, pim_url: &str, target_url: &str) -> String {
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
format = "akeneo-event-platform"
primary_secret = "{EP_PRIMARY}"
[sources.api]
base_url = "{pim_url}"
client_id = "{client_id}"
secret = "{secret}"
username = "{username}"
password = "{password}"
request_timeout = "5s"

[[targets]]
name = "erp"
kind = "http"
[targets.http]
base_url = "{target_url}"
[targets.delivery]
retry_base = "50ms"
retry_cap = "200ms"
request_timeout = "5s"
"#,
        db = dir.join("pimsync.db").display(),
        client_id = fake_akeneo::CLIENT_ID,
        secret = fake_akeneo::SECRET,
        username = fake_akeneo::USERNAME,
        password = fake_akeneo::PASSWORD,
    )
}

fn thin_event(id: &str, time: &str, uuid: &str) -> SignedRequest {
    let body = format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"pim","type":"com.akeneo.pim.v1.product.updated","time":"{time}","data":{{"product":{{"uuid":"{uuid}"}}}}}}"#
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(EP_PRIMARY.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    SignedRequest {
        headers: vec![
            ("content-type", "application/cloudevents+json".into()),
            (
                "x-akeneo-signature-primary",
                hex::encode(mac.finalize().into_bytes()),
            ),
        ],
        body: body.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_event_is_fetched_from_the_pim_and_delivered() {
    let pim = FakeAkeneo::start().await;
    pim.put_product(fake_akeneo::product(
        &uuid(1),
        "CHAIR-1",
        "2026-12-04T09:59:00+00:00",
        "Fetched chair",
    ));
    let target = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &pim.base_url(), &target.base_url());
    let daemon = Daemon::start(dir.path(), &config);
    let sender = Sender::default();
    let (status, body) = sender
        .post(
            &daemon.url("/webhooks/pim"),
            &thin_event("ev-1", "2026-12-04T10:00:00Z", &uuid(1)),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    target
        .wait_for(WAIT, "the fetched product delivered", |t| {
            t.received().iter().any(|r| r.key == "CHAIR-1")
        })
        .await;
    let put = target
        .received()
        .into_iter()
        .find(|r| r.key == "CHAIR-1")
        .unwrap();
    assert_eq!(put.method, "PUT");
    assert!(put.body.contains("Fetched chair"), "{}", put.body);
    assert_eq!(count(&daemon.db, "SELECT count(*) FROM fetch_queue"), 0);
    assert_eq!(
        db(&daemon.db)
            .query_row(
                "SELECT uuid FROM products WHERE product_key = 'CHAIR-1'",
                [],
                |row| row.get::<_, String>(0)
            )
            .unwrap(),
        uuid(1)
    );

    // The PIM deletes it; its next thin event finds nothing: a deletion is delivered.
    pim.remove_product(&uuid(1));
    let event = thin_event("ev-2", "2026-12-04T10:05:00Z", &uuid(1));
    let (status, _) = sender
        .post(&daemon.url("/webhooks/pim"), &event)
        .await
        .unwrap();
    assert_eq!(status, 202);
    target
        .wait_for(WAIT, "the deletion delivered", |t| {
            t.received()
                .iter()
                .any(|r| r.key == "CHAIR-1" && r.method == "DELETE")
        })
        .await;
    assert!(daemon.terminate().success());
}

fn reconcile_command(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["reconcile", "--config"])
        .arg(dir.join("pimsync.toml"))
        .args(["--source", "pim"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_reconcile_resumes_from_its_last_committed_page() {
    let pim = FakeAkeneo::start().await;
    for n in 0..250 {
        pim.put_product(fake_akeneo::product(
            &uuid(n),
            &format!("SKU-{n:04}"),
            "2026-12-01T00:00:00+00:00",
            &format!("Chair {n}"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pimsync.toml"),
        config(dir.path(), &pim.base_url(), "http://127.0.0.1:9"),
    )
    .unwrap();

    // Two pages are committed; the third hangs; the process is killed.
    pim.hold_pages_after(2);
    let mut child = reconcile_command(dir.path()).spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while pim.state().pages_served < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "third page never asked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second page was committed before the third was asked for.
    child.kill().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let db_path = dir.path().join("pimsync.db");
    assert_eq!(count(&db_path, "SELECT count(*) FROM products"), 200);
    pim.release();
    let requests_before = pim.requests().len();

    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || reconcile_command(&dir).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(full, resumed): complete"), "{stdout}");
    assert!(stdout.contains("50 items on 2 pages"), "{stdout}");
    assert!(
        stderr.contains("of 250"),
        "progress with the total: {stderr}"
    );
    let resumed_with = &pim.requests()[requests_before];
    assert!(
        resumed_with.contains(&format!("search_after={}", uuid(199))),
        "{resumed_with}"
    );
    assert_eq!(count(&db_path, "SELECT count(*) FROM products"), 250);
    assert_eq!(count(&db_path, "SELECT count(*) FROM outbox"), 250);

    // Nothing changed in the PIM: a second full reconcile pushes nothing.
    db(&db_path).execute_batch("DELETE FROM outbox").unwrap();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || reconcile_command(&dir).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("0 changed, 250 unchanged"), "{stdout}");
    assert_eq!(count(&db_path, "SELECT count(*) FROM outbox"), 0);
}
