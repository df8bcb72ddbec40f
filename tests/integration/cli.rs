//! The command line as an operator uses it.

use std::process::Command;

use crate::harness::*;

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "not an address"
lisen = "typo"

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = { env = "PIMSYNC_TEST_UNSET_SECRET" }

[[targets]]
name = "shop"
kind = "shopify"
[targets.shopify]
shop = "example.com"
access_token = "t"
"#,
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("PIMSYNC_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "server.listen",
        "server.lisen",
        "sources[0].secret",
        "PIMSYNC_TEST_UNSET_SECRET",
        "targets[0].shopify.shop: must end in .myshopify.com",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_accepts_a_good_config_and_prints_a_summary_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pimsync.toml");
    std::fs::write(&path, config_text(dir.path(), "", "")).unwrap();
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("/webhooks/akeneo"), "{stdout}");
    assert!(stdout.contains("chairs-store"), "{stdout}");
    for secret in [AKENEO_SECRET, EP_PRIMARY, HMAC_SECRET] {
        assert!(!stdout.contains(secret), "secret printed:\n{stdout}");
    }
}

#[test]
fn serve_refuses_an_invalid_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pimsync.toml");
    std::fs::write(&path, "[store]\nmax_batch = 0\n").unwrap();
    let output = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("store.max_batch"), "{stderr}");
}

#[test]
fn the_demo_runs_on_embedded_defaults() {
    let output = Command::new(binary())
        .args(["demo", "--edits", "300"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("300× 202"), "{stdout}");
    assert!(
        stdout.contains("forged signature          → 401"),
        "{stdout}"
    );
    assert!(stdout.contains("→ 200 (duplicate"), "{stdout}");
}
