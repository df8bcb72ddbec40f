//! What the fuzz targets run: each webhook parser (`formats::parse_only`), each signature
//! verifier (`formats::verify_and_parse`, headers and body from the input) and the config
//! loader must return `Ok` or an error for any input, never panic, hang or overflow.
//!
//! Input layout for the webhook targets: header values separated by `\n`, in the order of
//! the format's [`HEADERS`] entry, then the body (everything after the last separator).

use std::path::Path;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use pimsync::config::{Config, Environment, SourceConfig};
use pimsync::receiver::formats::{self, Inbound};

/// One source of each format, in the order the targets index them.
pub const CONFIG: &str = r#"
[store]
path = "/nonexistent/pimsync.db"

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "akeneo-test-secret"

[[sources]]
name = "event-platform"
path = "/webhooks/akeneo-ep"
format = "akeneo-event-platform"
primary_secret = "ep-primary-secret"
secondary_secret = "ep-secondary-secret"

[[sources]]
name = "wisepim"
path = "/webhooks/standard"
format = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[sources]]
name = "middleware"
path = "/webhooks/hmac"
format = "hmac"
header = "X-Hub-Signature-256"
prefix = "sha256="
encoding = "hex"
secret = "github-style-secret"
delivery_id_header = "X-GitHub-Delivery"

[[targets]]
name = "shop"
kind = "log"
log = { path = "/nonexistent/shop.jsonl" }
"#;

/// The headers each format reads, per source index.
pub const HEADERS: [&[&str]; 4] = [
    &[
        "x-akeneo-request-timestamp",
        "x-akeneo-request-signature",
        "content-type",
    ],
    &[
        "x-akeneo-signature-primary",
        "x-akeneo-signature-secondary",
        "content-type",
    ],
    &["webhook-id", "webhook-timestamp", "webhook-signature"],
    &["x-hub-signature-256", "x-github-delivery", "content-type"],
];

/// The receiver's clock in the verify targets.
pub const NOW_UNIX: i64 = 1_780_000_000;

/// Secrets referenced as `{ env = … }` or `{ file = … }` resolve to fixed values.
pub struct FixedEnv;

impl Environment for FixedEnv {
    fn var(&self, name: &str) -> Option<String> {
        (name.len() < 64).then(|| format!("value-of-{name}"))
    }
    fn read_file(&self, _path: &Path) -> std::io::Result<Vec<u8>> {
        Ok(b"file-secret".to_vec())
    }
}

pub fn sources() -> &'static [SourceConfig] {
    static SOURCES: OnceLock<Vec<SourceConfig>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        Config::from_toml_str(CONFIG, Path::new("/"), &FixedEnv)
            .expect("the fuzz config is valid")
            .sources
    })
}

/// Splits `data` into the format's header values and the body.
pub fn request(format: usize, data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut rest = data;
    for name in HEADERS[format] {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        if let Ok(value) = HeaderValue::from_bytes(&rest[..end]) {
            headers.append(HeaderName::from_static(name), value);
        }
        rest = &rest[end + 1..];
    }
    (headers, rest)
}

pub fn parse(format: usize, data: &[u8]) {
    let (headers, body) = request(format, data);
    let _ = formats::parse_only(&sources()[format].format, &headers, body);
}

pub fn verify(format: usize, data: &[u8]) {
    let (headers, body) = request(format, data);
    let inbound = Inbound {
        headers: &headers,
        body,
        now_unix: NOW_UNIX,
    };
    let _ = formats::verify_and_parse(&sources()[format].format, &inbound);
}

pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml_str(text, Path::new("/etc/pimsync"), &FixedEnv);
    }
}
