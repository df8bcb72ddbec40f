use std::time::Duration;

use super::{TestEnv, errors, errors_with, load, load_with};
use crate::config::{SignatureEncoding, SourceFormat};

#[test]
fn each_format_with_its_defaults() {
    let text = r#"
[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "a"

[[sources]]
name = "aep"
path = "/webhooks/aep"
format = "akeneo-event-platform"
primary_secret = "p"

[[sources]]
name = "sw"
path = "/webhooks/sw"
format = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[sources]]
name = "gh"
path = "/webhooks/gh"
format = "hmac"
secret = "h"
header = "X-Hub-Signature-256"
"#;
    let config = load(text);
    let formats: Vec<_> = config.sources.iter().map(|s| s.format.name()).collect();
    assert_eq!(
        formats,
        [
            "akeneo",
            "akeneo-event-platform",
            "standard-webhooks",
            "hmac"
        ]
    );
    let SourceFormat::Akeneo { tolerance, .. } = &config.sources[0].format else {
        panic!("akeneo")
    };
    assert_eq!(*tolerance, Duration::from_secs(300));
    let SourceFormat::AkeneoEventPlatform { primary, secondary } = &config.sources[1].format else {
        panic!("akeneo-event-platform")
    };
    assert_eq!(primary.expose(), b"p");
    assert!(secondary.is_none());
    let SourceFormat::StandardWebhooks { tolerance, .. } = &config.sources[2].format else {
        panic!("standard-webhooks")
    };
    assert_eq!(*tolerance, Duration::from_secs(300));
    let SourceFormat::Hmac {
        header,
        prefix,
        encoding,
        secret,
        delivery_id_header,
    } = &config.sources[3].format
    else {
        panic!("hmac")
    };
    assert_eq!(header, "X-Hub-Signature-256");
    assert_eq!(*prefix, None);
    assert_eq!(*encoding, SignatureEncoding::Hex);
    assert_eq!(secret.expose(), b"h");
    assert_eq!(*delivery_id_header, None);
}

#[test]
fn hmac_with_every_key() {
    let text = r#"
[[sources]]
name = "gh"
path = "/webhooks/gh"
format = "hmac"
secret = "h"
header = "X-Hub-Signature-256"
prefix = "sha256="
encoding = "base64"
delivery_id_header = "X-GitHub-Delivery"
"#;
    let config = load(text);
    let SourceFormat::Hmac {
        prefix,
        encoding,
        delivery_id_header,
        ..
    } = &config.sources[0].format
    else {
        panic!("hmac")
    };
    assert_eq!(prefix.as_deref(), Some("sha256="));
    assert_eq!(*encoding, SignatureEncoding::Base64);
    assert_eq!(delivery_id_header.as_deref(), Some("X-GitHub-Delivery"));
}

#[test]
fn missing_required_keys() {
    let text = "[[sources]]\nformat = \"hmac\"\n";
    assert_eq!(
        errors(text),
        [
            "sources[0].name: missing required key",
            "sources[0].path: missing required key",
            "sources[0].secret: missing required key",
            "sources[0].header: missing required key",
        ]
    );
    assert_eq!(
        errors("[[sources]]\nname = \"a\"\npath = \"/a\"\n"),
        ["sources[0].format: missing required key"]
    );
}

#[test]
fn unknown_format_lists_the_supported_ones_and_ignores_format_keys() {
    let text = r#"
[[sources]]
name = "a"
path = "/a"
format = "github"
secret = "x"
colour = "blue"
"#;
    assert_eq!(
        errors(text),
        [
            r#"sources[0].format: unknown format "github" (expected one of: akeneo, akeneo-event-platform, standard-webhooks, hmac)"#,
            "sources[0].colour: unknown key (expected one of: name, path, format, echo_of)",
        ]
    );
}

#[test]
fn keys_of_another_format_are_unknown() {
    let text = r#"
[[sources]]
name = "a"
path = "/a"
format = "akeneo"
secret = "x"
header = "X-Signature"

[[sources]]
name = "b"
path = "/b"
format = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;
    assert_eq!(
        errors(text),
        [
            "sources[0].header: unknown key (expected one of: name, path, format, secret, tolerance, echo_of)",
            "sources[1].secrets: missing required key",
            "sources[1].secret: unknown key (expected one of: name, path, format, secrets, tolerance, echo_of)",
        ]
    );
}

#[test]
fn names_and_paths() {
    let text = r#"
[[sources]]
name = "shop_1-a"
path = "/hooks?x=1"
format = "akeneo"
secret = "x"

[[sources]]
name = ""
path = "/hooks/a b"
format = "akeneo"
secret = "x"
"#;
    assert_eq!(
        errors(text),
        [
            "sources[0].path: must not contain '?' or '#'",
            "sources[1].name: must be non-empty and contain only a-z, 0-9, '_' and '-'",
            "sources[1].path: must not contain whitespace or control characters",
        ]
    );
}

#[test]
fn duplicate_names_and_paths() {
    let source = |name: &str, path: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\npath = \"{path}\"\nformat = \"akeneo\"\nsecret = \"x\"\n"
        )
    };
    let text = [
        source("a", "/a"),
        source("b", "/a"),
        source("a", "/c"),
        source("a", "/a"),
    ]
    .concat();
    assert_eq!(
        errors(&text),
        [
            r#"sources[1].path: duplicate source path "/a" (also used by sources[0])"#,
            r#"sources[2].name: duplicate source name "a" (also used by sources[0])"#,
            r#"sources[3].name: duplicate source name "a" (also used by sources[0])"#,
            r#"sources[3].path: duplicate source path "/a" (also used by sources[0])"#,
        ]
    );
}

#[test]
fn tolerance_must_be_positive() {
    let text = r#"
[[sources]]
name = "a"
path = "/a"
format = "akeneo"
secret = "x"
tolerance = "0s"
"#;
    assert_eq!(
        errors(text),
        ["sources[0].tolerance: must be greater than 0"]
    );
}

#[test]
fn empty_prefix_is_rejected() {
    let text = r#"
[[sources]]
name = "a"
path = "/a"
format = "hmac"
secret = "x"
header = "X-Sig"
prefix = ""
delivery_id_header = "X-Id:"
"#;
    assert_eq!(
        errors(text),
        [
            "sources[0].prefix: must not be empty (leave it out for no prefix)",
            r#"sources[0].delivery_id_header: "X-Id:" is not a valid HTTP header name"#,
        ]
    );
}

const KEY: &[u8; 24] = b"0123456789abcdefghijklmn";
/// base64 of `KEY`.
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u";

fn standard_webhooks(secrets: &str) -> String {
    format!(
        "[[sources]]\nname = \"sw\"\npath = \"/sw\"\nformat = \"standard-webhooks\"\nsecrets = {secrets}\n"
    )
}

#[test]
fn whsec_secrets_are_decoded() {
    let env = TestEnv::default()
        .var("SW_OLD", &format!("whsec_{KEY_B64}"))
        .var("SW_NEW", KEY_B64);
    let text = standard_webhooks(&format!(
        r#"["whsec_{KEY_B64}", {{ env = "SW_OLD" }}, {{ env = "SW_NEW" }}]"#
    ));
    let config = load_with(&text, &env);
    let SourceFormat::StandardWebhooks { secrets, .. } = &config.sources[0].format else {
        panic!("standard-webhooks")
    };
    assert_eq!(secrets.len(), 3);
    for secret in secrets {
        assert_eq!(secret.expose(), KEY);
    }
}

#[test]
fn bad_whsec_secrets_name_the_index_and_not_the_value() {
    let short = "whsec_c2hvcnQ="; // "short"
    let text = standard_webhooks(&format!(
        r#"["whsec_{KEY_B64}", "whsec_not*base64!", "{short}", {{ env = "SW_MISSING" }}]"#
    ));
    let errors = errors(&text);
    assert_eq!(
        errors,
        [
            r#"sources[0].secrets[1]: not valid base64 (expected "whsec_" followed by base64)"#,
            "sources[0].secrets[2]: decodes to 5 bytes; Standard Webhooks keys must be at least 24",
            "sources[0].secrets[3]: environment variable SW_MISSING is not set",
        ]
    );
    assert!(!errors.concat().contains("not*base64"));
}

#[test]
fn standard_webhooks_needs_at_least_one_secret() {
    assert_eq!(
        errors(&standard_webhooks("[]")),
        ["sources[0].secrets: at least one secret is required"]
    );
    assert_eq!(
        errors(&standard_webhooks("\"whsec_abc\"")),
        ["sources[0].secrets: expected an array of secrets, found a string"]
    );
}

#[test]
fn secondary_secret_that_fails_is_reported() {
    let text = r#"
[[sources]]
name = "aep"
path = "/aep"
format = "akeneo-event-platform"
primary_secret = "p"
secondary_secret = { env = "AEP_SECONDARY" }
"#;
    assert_eq!(
        errors_with(text, &TestEnv::default()),
        ["sources[0].secondary_secret: environment variable AEP_SECONDARY is not set"]
    );
    let config = load_with(text, &TestEnv::default().var("AEP_SECONDARY", "s2"));
    let SourceFormat::AkeneoEventPlatform { secondary, .. } = &config.sources[0].format else {
        panic!("akeneo-event-platform")
    };
    assert_eq!(secondary.as_ref().map(|s| s.expose()), Some(&b"s2"[..]));
}

#[test]
fn echo_of_names_a_configured_target() {
    let text = r#"
[[sources]]
name = "shop-echo"
path = "/webhooks/shop"
format = "hmac"
header = "X-Shopify-Hmac-Sha256"
encoding = "base64"
secret = "s"
echo_of = "shop"

[[targets]]
name = "shop"
kind = "log"
"#;
    assert_eq!(load(text).sources[0].echo_of.as_deref(), Some("shop"));
    let text = text.replace("echo_of = \"shop\"", "echo_of = \"shpo\"");
    assert_eq!(
        errors(&text),
        [r#"sources[0].echo_of: no target is named "shpo""#]
    );
}

#[test]
fn api_settings_with_defaults_and_every_problem() {
    let text = r#"
[[sources]]
name = "aep"
path = "/webhooks/aep"
format = "akeneo-event-platform"
primary_secret = "p"
[sources.api]
base_url = "https://pim.example.com/"
client_id = "id"
secret = "s"
username = "u"
password = "pw"
"#;
    let config = load(text);
    let api = config.sources[0].api.as_ref().unwrap();
    assert_eq!(api.settings.base_url, "https://pim.example.com");
    assert_eq!((api.fetch_batch, api.delete_missing), (100, false));
    assert_eq!(api.settings.request_timeout, Duration::from_secs(30));
    assert!(!format!("{api:?}").contains("pw"));

    let text = r#"
[[sources]]
name = "gh"
path = "/webhooks/gh"
format = "hmac"
secret = "h"
header = "X-Sig"
[sources.api]
base_url = "pim.example.com"
secret = { env = "NOPE" }
username = "u"
password = "pw"
fetch_batch = 0
delete_missng = true
"#;
    let errors = errors(text);
    for expected in [
        "sources[0].api: only sources of format akeneo or akeneo-event-platform can be pulled from",
        "sources[0].api.base_url: must start with http:// or https://",
        "sources[0].api.client_id: missing required key",
        "sources[0].api.secret: environment variable NOPE is not set",
        "sources[0].api.fetch_batch: must be between 1 and 100",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "{expected}\nnot in {errors:#?}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sources[0].api.delete_missng: unknown key")),
        "{errors:#?}"
    );
}
