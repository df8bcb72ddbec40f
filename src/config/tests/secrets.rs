use super::{TestEnv, errors_with, load_with};
use crate::config::{Config, SourceFormat};

/// An akeneo source whose secret is written as `secret`.
fn source(secret: &str) -> String {
    format!("[[sources]]\nname = \"a\"\npath = \"/a\"\nformat = \"akeneo\"\nsecret = {secret}\n")
}

fn secret_of(config: &Config) -> &[u8] {
    match &config.sources[0].format {
        SourceFormat::Akeneo { secret, .. } => secret.expose(),
        other => panic!("unexpected format {}", other.name()),
    }
}

#[test]
fn inline_secret() {
    let config = load_with(&source("\"inline\""), &TestEnv::default());
    assert_eq!(secret_of(&config), b"inline");
}

#[test]
fn env_secret_is_taken_verbatim() {
    let env = TestEnv::default().var("AKENEO_SECRET", "from-env\n");
    let config = load_with(&source(r#"{ env = "AKENEO_SECRET" }"#), &env);
    assert_eq!(secret_of(&config), b"from-env\n");
}

#[test]
fn file_secret_is_relative_to_the_config_dir_and_loses_one_newline() {
    let env = TestEnv::default()
        .file("/etc/pimsync/secrets/akeneo", "from-file\n\n")
        .file("/run/secret", "crlf\r\n");
    let config = load_with(&source(r#"{ file = "secrets/akeneo" }"#), &env);
    assert_eq!(secret_of(&config), b"from-file\n");
    let config = load_with(&source(r#"{ file = "/run/secret" }"#), &env);
    assert_eq!(secret_of(&config), b"crlf");
}

#[test]
fn credential_secret_is_read_from_the_credentials_directory() {
    let env = TestEnv::default()
        .var("CREDENTIALS_DIRECTORY", "/run/credentials/pimsync.service")
        .file(
            "/run/credentials/pimsync.service/akeneo",
            "from-credential\n",
        );
    let config = load_with(&source(r#"{ credential = "akeneo" }"#), &env);
    assert_eq!(secret_of(&config), b"from-credential");
}

#[test]
fn missing_secrets_name_what_is_missing() {
    let creds = TestEnv::default().var("CREDENTIALS_DIRECTORY", "/run/credentials/p");
    let cases: [(&str, &TestEnv, &str); 4] = [
        (
            r#"{ env = "AKENEO_SECRET" }"#,
            &TestEnv::default(),
            "environment variable AKENEO_SECRET is not set",
        ),
        (
            r#"{ file = "akeneo.secret" }"#,
            &TestEnv::default(),
            "cannot read secret file /etc/pimsync/akeneo.secret: entity not found",
        ),
        (
            r#"{ credential = "akeneo" }"#,
            &creds,
            "cannot read credential akeneo (/run/credentials/p/akeneo): entity not found",
        ),
        (
            r#"{ credential = "akeneo" }"#,
            &TestEnv::default(),
            "credential akeneo requested but $CREDENTIALS_DIRECTORY is not set \
             (run under systemd with LoadCredential=akeneo:… or use env/file)",
        ),
    ];
    for (written, env, message) in cases {
        assert_eq!(
            errors_with(&source(written), env),
            [format!("sources[0].secret: {message}")],
            "{written}"
        );
    }
}

#[test]
fn empty_secrets_are_errors() {
    let env = TestEnv::default()
        .var("EMPTY", "")
        .file("/etc/pimsync/empty", "\n")
        .var("CREDENTIALS_DIRECTORY", "/run/c")
        .file("/run/c/empty", "");
    let cases = [
        ("\"\"", "secret must not be empty"),
        (
            r#"{ env = "EMPTY" }"#,
            "environment variable EMPTY is empty",
        ),
        (
            r#"{ file = "empty" }"#,
            "secret file /etc/pimsync/empty is empty",
        ),
        (r#"{ credential = "empty" }"#, "credential empty is empty"),
    ];
    for (written, message) in cases {
        assert_eq!(
            errors_with(&source(written), &env),
            [format!("sources[0].secret: {message}")],
            "{written}"
        );
    }
}

#[test]
fn malformed_secret_tables() {
    let env = TestEnv::default().var("A", "a");
    let cases = [
        (
            r#"{ env = "A", file = "b" }"#,
            "sources[0].secret: set exactly one of env, file or credential",
        ),
        (
            "{}",
            "sources[0].secret: set exactly one of env, file or credential",
        ),
        (
            "42",
            r#"sources[0].secret: expected a string or a table like { env = "NAME" }, found an integer"#,
        ),
        (
            r#"{ credential = "../etc/shadow" }"#,
            "sources[0].secret: invalid credential name (a file name in $CREDENTIALS_DIRECTORY)",
        ),
        (
            r#"{ env = 1 }"#,
            "sources[0].secret.env: expected a string, found an integer",
        ),
    ];
    for (written, message) in cases {
        let errors = errors_with(&source(written), &env);
        assert_eq!(
            errors.last().map(String::as_str),
            Some(message),
            "{written}: {errors:?}"
        );
    }
    assert_eq!(
        errors_with(&source(r#"{ env = "A", vault = "x" }"#), &env),
        ["sources[0].secret.vault: unknown key (expected one of: env, file, credential)"]
    );
}

#[test]
fn errors_never_contain_secret_values() {
    let env = TestEnv::default()
        .var("SW", "whsec_hunter2-is-not-base64")
        .var("TOKEN", "shpat_hunter2");
    let text = r#"
[[sources]]
name = "sw"
path = "/sw"
format = "standard-webhooks"
secrets = [{ env = "SW" }, "whsec_hunter2!"]

[[targets]]
name = "shop"
kind = "shopify"
shopify = { shop = "hunter2.example.com", access_token = { env = "TOKEN" } }
"#;
    let errors = errors_with(text, &env);
    assert_eq!(errors.len(), 3, "{errors:?}");
    let shown: Vec<_> = errors.iter().filter(|e| e.contains("hunter2")).collect();
    assert!(shown.is_empty(), "{shown:?}");
}
