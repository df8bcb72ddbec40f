//! Torture tests through the real binary (issue 9): a SIGKILL crash loop under load,
//! faults at the target, a store on a full filesystem, and a corpus of bad requests.
//!
//! Short form (CI): 10 kills, a target down for 2 s. Long form:
//! `PIMSYNC_TORTURE_KILLS=100 PIMSYNC_TORTURE_DOWN_SECS=60 cargo test --test integration torture`.
//! `PIMSYNC_TORTURE_SEED` replays a run (every run prints its seed).

mod bad_input;
mod crash_loop;
mod faults;
mod full_disk;

pub(crate) use bad_input::{cloud_event, event_platform, hmac_request, payload, standard_webhook};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pimsync::simulate::{self, Edit, SignedRequest};

use crate::fake_target::FakeTarget;
use crate::harness::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    let seed = env_number("PIMSYNC_TORTURE_SEED", 0x5EED_0009);
    eprintln!("torture seed: {seed} (PIMSYNC_TORTURE_SEED={seed} replays this run)");
    seed
}

/// The price a PUT body carries, in cents: the test's edits use the version as the price.
fn price_cents(body: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let amount = value["product"]["values"]["price"][0]["data"][0]["amount"].as_str()?;
    let (units, cents) = amount.split_once('.')?;
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

const BASE_US: i64 = 1_760_000_000_000_000;

fn signed_edit(key: &str, version: i64) -> SignedRequest {
    sized_edit(key, version, 1024)
}

/// Edit `version` of `key` (its price and stock follow the version), `body_size` bytes.
fn sized_edit(key: &str, version: i64, body_size: usize) -> SignedRequest {
    simulate::akeneo_product_updated(
        AKENEO_SECRET.as_bytes(),
        simulate::unix_now(),
        &Edit {
            key,
            family: "chairs",
            updated_us: BASE_US + version,
            price_cents: version,
            stock: version % 50,
            body_size,
        },
    )
}

/// Several `http` targets, each on its own fake, with fast retries.
fn http_targets_config(dir: &std::path::Path, targets: &[String], delivery: &str) -> String {
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"

[store]
path = "{db}"

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "{AKENEO_SECRET}"
"#,
        db = dir.join("pimsync.db").display()
    );
    for (n, url) in targets.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[targets]]
name = "t{n}"
kind = "http"
[targets.http]
base_url = "{url}"
[targets.delivery]
{delivery}
"#
        ));
    }
    text
}

async fn start_daemon(dir: &std::path::Path, config: &str) -> Daemon {
    let (dir, config) = (dir.to_owned(), config.to_owned());
    // Retries, resets and refused connections are the point here: keep the log to errors.
    tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&dir, &config, &[("RUST_LOG", "error")])
    })
    .await
    .unwrap()
}

/// Waits until every fake holds, for every key, the body with the key's last version.
async fn converged(fakes: &[FakeTarget], expected: &BTreeMap<String, i64>, limit: Duration) {
    for (n, fake) in fakes.iter().enumerate() {
        fake.wait_for(limit, &format!("target t{n} converged"), |f| {
            let state = f.current_state();
            expected
                .iter()
                .all(|(key, v)| state.get(key).and_then(|b| price_cents(b)) == Some(*v))
        })
        .await;
    }
}

/// Waits until the outbox is empty: every row done, none dead.
async fn outbox_drains(db_path: &std::path::Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (rows, dead) = {
            let conn = db(db_path);
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
                .unwrap();
            let dead: i64 = conn
                .query_row(
                    "SELECT count(*) FROM outbox WHERE state = 'dead'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (rows, dead)
        };
        assert_eq!(dead, 0, "dead-lettered rows");
        if rows == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} outbox rows never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
