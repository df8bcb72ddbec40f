//! `kind = "webhook"`: the endpoint, its signing secrets, extra headers, timeout,
//! `coalesce` and the `changed` filter.

use std::time::Duration;

use super::{SOURCE, TestEnv, errors_with, load_with};
use crate::config::TargetKind;

const KEY_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env() -> TestEnv {
    TestEnv::default()
        .var("AGENCY_OLD", &format!("whsec_{KEY_B64}"))
        .var("AGENCY_TOKEN", "token-123")
}

fn target(webhook: &str, filter: &str) -> String {
    format!(
        r#"{SOURCE}
[[targets]]
name = "agency"
kind = "webhook"
[targets.filter]
{filter}
[targets.webhook]
{webhook}
"#
    )
}

#[test]
fn a_full_webhook_target() {
    let text = target(
        &format!(
            r#"url = "https://agency.example.com/hooks?account=7"
secrets = [{{ env = "AGENCY_OLD" }}, "whsec_{KEY_B64}"]
headers = {{ "X-Account" = "acme", Authorization = {{ env = "AGENCY_TOKEN" }} }}
timeout = "5s"
coalesce = false"#
        ),
        r#"families = ["chairs"]
changed = ["name", { attribute = "description", locale = "en_US" }]"#,
    );
    let config = load_with(&text, &env());
    let agency = &config.targets[0];
    assert!(agency.keeps_history());
    let TargetKind::Webhook(webhook) = &agency.kind else {
        panic!("webhook")
    };
    let s = &webhook.settings;
    assert_eq!(s.url, "https://agency.example.com/hooks?account=7");
    assert_eq!(s.keys.len(), 2);
    assert_eq!(s.keys[0].len(), 24);
    assert_eq!(
        s.headers,
        [
            ("Authorization".to_owned(), "token-123".to_owned()),
            ("X-Account".to_owned(), "acme".to_owned())
        ]
    );
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.watch.len(), 2);
    assert_eq!(s.watch[1].locale.as_deref(), Some("en_US"));
    assert_eq!(agency.filter.changed, s.watch);
    let summary = config.summary();
    assert!(summary.contains("agency.example.com (every change, in order, 2 signing secret(s))"));
    assert!(summary.contains("when changed: name, description:en_US"));
    assert!(!summary.contains("token-123") && !summary.contains(KEY_B64));
}

#[test]
fn defaults_coalesce_and_a_ten_second_timeout() {
    let text = target(
        &format!(
            r#"url = "http://127.0.0.1:9/x"
secrets = ["{KEY_B64}"]"#
        ),
        "",
    );
    let config = load_with(&text, &env());
    let TargetKind::Webhook(webhook) = &config.targets[0].kind else {
        panic!("webhook")
    };
    assert!(webhook.coalesce && !config.targets[0].keeps_history());
    assert_eq!(webhook.settings.timeout, Duration::from_secs(10));
    assert!(webhook.settings.headers.is_empty() && webhook.settings.watch.is_empty());
}

#[test]
fn mistakes_name_their_key_and_never_a_secret() {
    let text = target(
        r#"url = "ftp://agency.example.com"
secrets = ["whsec_c2hvcnQ=", { env = "MISSING" }]
headers = { "Bad Name" = "x", "webhook-id" = "mine", "X-Ok" = { env = "MULTILINE" } }
timeout = "0s"
color = "blue""#,
        r#"changed = ["", { locale = "en_US" }]"#,
    );
    let env = env().var("MULTILINE", "line1\nline2");
    let errors = errors_with(&text, &env);
    assert_eq!(
        errors,
        [
            r#"targets[0].filter.changed[0]: expected an attribute name or { attribute = "…", locale = "…", scope = "…" }"#,
            "targets[0].filter.changed[1].attribute: missing required key",
            "targets[0].webhook.url: must start with http:// or https://",
            "targets[0].webhook.secrets[0]: decodes to 5 bytes; Standard Webhooks keys must be at least 24",
            "targets[0].webhook.secrets[1]: environment variable MISSING is not set",
            r#"targets[0].webhook.headers."Bad Name": "Bad Name" is not a valid HTTP header name"#,
            "targets[0].webhook.headers.webhook-id: set by pimsync for every event; it cannot be replaced",
            "targets[0].webhook.headers.X-Ok: value must be printable ASCII (no line breaks)",
            "targets[0].webhook.timeout: must be greater than 0",
            "targets[0].webhook.color: unknown key (expected one of: url, secrets, headers, timeout, coalesce)",
        ]
    );
    assert!(errors.iter().all(|e| !e.contains("line1")));
}

#[test]
fn the_changed_filter_is_for_webhooks_only_and_timeouts_fit_the_apply() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "shop"
kind = "log"
[targets.filter]
changed = ["name"]

[[targets]]
name = "agency"
kind = "webhook"
[targets.webhook]
url = "https://agency.example.com"
secrets = ["whsec_{KEY_B64}"]
timeout = "1m"
[targets.delivery]
request_timeout = "30s"
"#
    );
    assert_eq!(
        errors_with(&text, &env()),
        [
            r#"targets[0].filter.changed: only for kind = "webhook" (a log target converges to the latest state)"#,
            "targets[1].webhook.timeout: must not exceed delivery.request_timeout, which bounds every apply",
        ]
    );
}

#[test]
fn a_webhook_target_requires_its_table_url_and_secrets() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "agency"
kind = "webhook"

[[targets]]
name = "other"
kind = "webhook"
[targets.webhook]
"#
    );
    assert_eq!(
        errors_with(&text, &env()),
        [
            r#"targets[0].webhook: missing [targets.webhook] table (required for kind = "webhook")"#,
            "targets[1].webhook.url: missing required key",
            "targets[1].webhook.secrets: missing required key",
        ]
    );
}
