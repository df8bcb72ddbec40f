use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod example;
mod magento;
mod secrets;
mod shopify;
mod sources;
mod targets;
mod webhook;

/// Variables and files for secrets, instead of the real process environment.
#[derive(Default)]
pub(super) struct TestEnv {
    vars: HashMap<String, String>,
    files: HashMap<PathBuf, Vec<u8>>,
}

impl TestEnv {
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.insert(PathBuf::from(path), contents.into());
        self
    }
}

impl Environment for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

pub(super) const BASE: &str = "/etc/pimsync";

/// The smallest valid config: one source, everything else defaulted.
pub(super) const SOURCE: &str = r#"
[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "s3cret"
"#;

pub(super) fn load_with(text: &str, env: &TestEnv) -> Config {
    match Config::from_toml_str(text, Path::new(BASE), env) {
        Ok(config) => config,
        Err(errors) => panic!("config should load, got:\n{errors}"),
    }
}

pub(super) fn load(text: &str) -> Config {
    load_with(text, &TestEnv::default())
}

/// Each error as `path: message`, in the order reported.
pub(super) fn errors_with(text: &str, env: &TestEnv) -> Vec<String> {
    match Config::from_toml_str(text, Path::new(BASE), env) {
        Ok(_) => panic!("config should not load"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn errors(text: &str) -> Vec<String> {
    errors_with(text, &TestEnv::default())
}

#[test]
fn defaults() {
    let config = load(SOURCE);
    let server = &config.server;
    assert_eq!(server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(server.body_limit, 1 << 20);
    assert_eq!(server.request_timeout, Duration::from_secs(30));
    assert_eq!(server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(server.worker_threads, None);
    let store = &config.store;
    assert_eq!(store.path, Path::new("/etc/pimsync/pimsync.db"));
    assert_eq!(store.inbox_retention, Duration::from_secs(7 * 86400));
    assert_eq!(store.inbox_max_rows, 1_000_000);
    assert_eq!(store.max_batch, 1024);
    assert_eq!(store.queue_capacity, 8192);
    assert_eq!(config.sources.len(), 1);
    assert!(config.targets.is_empty());
}

#[test]
fn explicit_server_and_store_values() {
    let text = format!(
        r#"
[server]
listen = "[::1]:0"
body_limit = 65536
request_timeout = "1m 30s"
shutdown_grace = "0s"
worker_threads = 3
[store]
path = "data/pim.db"
inbox_retention = "12h"
inbox_max_rows = 0
max_batch = 65536
queue_capacity = 1
{SOURCE}"#
    );
    let config = load(&text);
    assert_eq!(config.server.listen.to_string(), "[::1]:0");
    assert_eq!(config.server.body_limit, 65536);
    assert_eq!(config.server.request_timeout, Duration::from_secs(90));
    assert_eq!(config.server.shutdown_grace, Duration::ZERO);
    assert_eq!(config.server.worker_threads, Some(3));
    assert_eq!(config.store.path, Path::new("/etc/pimsync/data/pim.db"));
    assert_eq!(config.store.inbox_retention, Duration::from_secs(12 * 3600));
    assert_eq!(config.store.inbox_max_rows, 0);
    assert_eq!(config.store.max_batch, 65536);
    assert_eq!(config.store.queue_capacity, 1);
}

#[test]
fn absolute_store_path_is_kept() {
    let config = load(&format!(
        "[store]\npath = \"/var/lib/pimsync/db\"\n{SOURCE}"
    ));
    assert_eq!(config.store.path, Path::new("/var/lib/pimsync/db"));
}

#[test]
fn sizes() {
    for (written, bytes) in [
        ("1048576", 1 << 20),
        ("\"1MiB\"", 1 << 20),
        ("\"512KiB\"", 512 << 10),
        ("\"512 kib\"", 512 << 10),
        ("\"10MB\"", 10_000_000),
        ("\"2GiB\"", 2 << 30),
        ("\"4096B\"", 4096),
        ("\"4096\"", 4096),
        ("\"1m\"", 1 << 20),
    ] {
        let config = load(&format!("[server]\nbody_limit = {written}\n{SOURCE}"));
        assert_eq!(config.server.body_limit, bytes, "{written}");
    }
}

#[test]
fn store_max_size_is_optional_and_bounded() {
    assert_eq!(load(SOURCE).store.max_size, 0);
    let config = load(&format!("[store]\nmax_size = \"10GiB\"\n{SOURCE}"));
    assert_eq!(config.store.max_size, 10 << 30);
    assert_eq!(
        errors(&format!("[store]\nmax_size = 1024\n{SOURCE}")),
        ["store.max_size: must be 0 (no limit) or at least 1MiB"]
    );
}

#[test]
fn bad_sizes_and_durations() {
    let text = format!(
        r#"
[server]
body_limit = "1 parsec"
request_timeout = "soon"
shutdown_grace = 10
[store]
inbox_retention = "0s"
{SOURCE}"#
    );
    assert_eq!(
        errors(&text),
        [
            r#"server.body_limit: invalid size "1 parsec" (expected e.g. 1048576, "512KiB", "1MiB")"#,
            r#"server.request_timeout: invalid duration "soon" (expected e.g. "30s", "5m", "7d")"#,
            r#"server.shutdown_grace: expected a duration string like "30s", found an integer"#,
            "store.inbox_retention: must be greater than 0",
        ]
    );
}

#[test]
fn numeric_limits() {
    let text = format!(
        r#"
[server]
body_limit = 0
worker_threads = 0
[store]
inbox_max_rows = -1
max_batch = 65537
queue_capacity = 0
{SOURCE}"#
    );
    assert_eq!(
        errors(&text),
        [
            "server.body_limit: must be greater than 0",
            "server.worker_threads: must be between 1 and 1024",
            "store.inbox_max_rows: must not be negative",
            "store.max_batch: must be between 1 and 65536",
            "store.queue_capacity: must be at least 1",
        ]
    );
    let zero_batch = format!("[store]\nmax_batch = 0\n{SOURCE}");
    assert_eq!(
        errors(&zero_batch),
        ["store.max_batch: must be between 1 and 65536"]
    );
    let too_many_threads = format!("[server]\nworker_threads = 1025\n{SOURCE}");
    assert_eq!(
        errors(&too_many_threads),
        ["server.worker_threads: must be between 1 and 1024"]
    );
}

#[test]
fn wrong_types() {
    let text = format!(
        r#"
server = "everything"
[store]
path = 42
max_batch = "many"
{SOURCE}"#
    );
    assert_eq!(
        errors(&text),
        [
            "server: expected a table, found a string",
            "store.path: expected a string, found an integer",
            "store.max_batch: expected an integer, found a string",
        ]
    );
}

#[test]
fn invalid_listen_address() {
    let text = format!("[server]\nlisten = \"localhost\"\n{SOURCE}");
    assert_eq!(
        errors(&text),
        [
            r#"server.listen: invalid socket address "localhost" (expected e.g. "127.0.0.1:8080" or "[::1]:8080")"#
        ]
    );
}

#[test]
fn unknown_keys_at_top_level_server_and_store() {
    let text = format!(
        r#"
version = 2
[server]
listen = "127.0.0.1:9000"
port = 9000
[store]
retention = "7d"
{SOURCE}"#
    );
    assert_eq!(
        errors(&text),
        [
            "version: unknown key (expected one of: server, store, sources, targets, schedules, admin)",
            "server.port: unknown key (expected one of: listen, body_limit, request_timeout, shutdown_grace, worker_threads)",
            "store.retention: unknown key (expected one of: path, inbox_retention, inbox_max_rows, max_batch, queue_capacity, max_size)",
        ]
    );
}

#[test]
fn unusual_unknown_key_is_quoted_in_path() {
    let text = format!("[server]\n\"body limit\" = 1\n{SOURCE}");
    assert_eq!(
        errors(&text),
        [
            r#"server."body limit": unknown key (expected one of: listen, body_limit, request_timeout, shutdown_grace, worker_threads)"#
        ]
    );
}

#[test]
fn syntax_error_is_one_error_with_line_and_column() {
    let text = "[server]\nlisten = \"127.0.0.1:8080\"\nbody_limit = = 3\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("TOML syntax error at line 3, column 14: "),
        "{errors:?}"
    );
}

#[test]
fn duplicate_table_is_a_syntax_error() {
    let text = format!("[server]\n[server]\n{SOURCE}");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("TOML syntax error at line 2, column 2: "),
        "{errors:?}"
    );
}

#[test]
fn many_mistakes_are_all_reported_in_file_order() {
    let text = r#"
[server]
listen = "nowhere"
body_limit = "lots"

[store]
max_batch = 0
colour = "blue"

[[sources]]
name = "Akeneo"
path = "webhooks/akeneo"
format = "akeneo"
secret = { env = "AKENEO_SECRET" }

[[sources]]
name = "erp"
path = "/webhooks/erp"
format = "hmac"
secret = "x"
header = "X Signature"
encoding = "hexadecimal"

[[targets]]
name = "shop"
kind = "shopify"
[targets.shopify]
shop = "shop.example.com"
access_token = { env = "SHOPIFY_TOKEN" }

[[targets]]
name = "shop"
kind = "ftp"
"#;
    assert_eq!(
        errors(text),
        [
            r#"server.listen: invalid socket address "nowhere" (expected e.g. "127.0.0.1:8080" or "[::1]:8080")"#,
            r#"server.body_limit: invalid size "lots" (expected e.g. 1048576, "512KiB", "1MiB")"#,
            "store.max_batch: must be between 1 and 65536",
            "store.colour: unknown key (expected one of: path, inbox_retention, inbox_max_rows, max_batch, queue_capacity, max_size)",
            "sources[0].name: must be non-empty and contain only a-z, 0-9, '_' and '-'",
            "sources[0].path: must start with '/'",
            "sources[0].secret: environment variable AKENEO_SECRET is not set",
            r#"sources[1].header: "X Signature" is not a valid HTTP header name"#,
            r#"sources[1].encoding: unknown encoding "hexadecimal" (expected "hex" or "base64")"#,
            "targets[0].shopify.shop: must end in .myshopify.com",
            "targets[0].shopify.access_token: environment variable SHOPIFY_TOKEN is not set",
            r#"targets[1].name: duplicate target name "shop" (also used by targets[0])"#,
            r#"targets[1].kind: unknown kind "ftp" (expected one of: log, shopify, magento, http, odoo, rest, webhook)"#,
        ]
    );
}

#[test]
fn sources_are_required() {
    assert_eq!(
        errors(""),
        ["sources: at least one [[sources]] entry is required"]
    );
    assert_eq!(
        errors("sources = []"),
        ["sources: at least one source is required"]
    );
    assert_eq!(
        errors("sources = [1]"),
        ["sources[0]: expected a table, found an integer"]
    );
}

#[test]
fn summary_shows_the_shape_and_no_secret() {
    let env = TestEnv::default()
        .var("SHOPIFY_TOKEN", "shpat_topsecret")
        .var("MAGENTO_TOKEN", "magento-topsecret");
    let text = r#"
[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "akeneo-topsecret"

[[targets]]
name = "shop-eu"
kind = "shopify"
filter = { families = ["shoes"], enabled_only = true }
shopify = { shop = "eu.myshopify.com", access_token = { env = "SHOPIFY_TOKEN" } }

[[targets]]
name = "erp"
kind = "magento"
magento = { base_url = "https://magento.example.com/shop/", access_token = { env = "MAGENTO_TOKEN" } }
"#;
    let config = load_with(text, &env);
    let summary = config.summary();
    for expected in [
        "listen           127.0.0.1:8080",
        "body limit       1 MiB",
        "path             /etc/pimsync/pimsync.db",
        "inbox            kept 7days, at most 1000000 rows",
        "akeneo  POST /webhooks/akeneo  akeneo (tolerance 5m)",
        "shop-eu  shopify eu.myshopify.com (API 2026-04); families shoes; enabled only",
        "erp  magento magento.example.com (bearer auth, msi, deletion disable); all products",
        "targets (2):",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    for secret in ["topsecret", "SHOPIFY_TOKEN"] {
        assert!(
            !summary.contains(secret),
            "summary shows {secret}:\n{summary}"
        );
    }
    assert!(!format!("{config:?}").contains("topsecret"));
}

#[test]
fn load_reads_the_file_and_resolves_relative_paths_against_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pimsync.toml");
    std::fs::write(&file, format!("[store]\npath = \"state/db\"\n{SOURCE}")).expect("write");
    let config = Config::load(&file).expect("loads");
    assert_eq!(config.store.path, dir.path().join("state/db"));

    let missing = dir.path().join("missing.toml");
    let errors = Config::load(&missing).expect_err("missing file");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "");
    let prefix = format!("cannot read config file {}: ", missing.display());
    assert!(errors.0[0].message.starts_with(&prefix), "{errors}");
}
