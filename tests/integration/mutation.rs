//! Property tests on stable (the cargo-fuzz targets in fuzz/ need nightly): a seeded byte
//! mutator over valid examples drives every webhook parser, every signature verifier and
//! the config loader, which must answer `Ok` or a clean error and never panic. A body
//! changed after signing must always be refused as unauthorized.
//!
//! `PIMSYNC_MUTATION_CASES` (default 2000 per parser) scales the run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use pimsync::config::{Config, Environment, SourceFormat};
use pimsync::receiver::formats::{self, Inbound, Rejection};
use pimsync::simulate::{self, Edit, SignedRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::*;
use crate::torture::{cloud_event, event_platform, hmac_request, payload, standard_webhook};

fn cases() -> usize {
    std::env::var("PIMSYNC_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

struct FixedEnv;

impl Environment for FixedEnv {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("value-of-{name}"))
    }
    fn read_file(&self, _path: &Path) -> std::io::Result<Vec<u8>> {
        Ok(b"file-secret".to_vec())
    }
}

/// The four source formats of `config_text`, in its order.
fn formats() -> Vec<SourceFormat> {
    let text = config_text(Path::new("/tmp/pimsync-mutation"), "", "");
    Config::from_toml_str(&text, Path::new("/"), &FixedEnv)
        .unwrap()
        .sources
        .into_iter()
        .map(|s| s.format)
        .collect()
}

const TOKENS: &[&[u8]] = &[
    b"null",
    b"[]",
    b"{}",
    b"\"\"",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"-1",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"true",
    b"[[[[[[[[",
    b"}}}}",
    b"\xff\xfe",
    b"\"events\"",
    b"\"changes\"",
    b"\"op\":\"delete\"",
    b"\"version\":",
    b"=",
    b"[[x]]",
    b"\n[",
    b"\"\"\"",
];

/// One to four random edits: bit flips, byte changes, inserts, deletions, duplications,
/// truncation and splices of JSON/TOML tokens.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..7) {
            0 if len > 0 => out[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => {
                const BYTES: &[u8] = b"\"{}[],:0-\\e\x00\xff \n=";
                out[at] = BYTES[rng.random_range(0..BYTES.len())];
            }
            2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            5 => out.truncate(at),
            _ => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                let end = (at + token.len()).min(len);
                out.splice(at..end, token.iter().copied());
            }
        }
    }
    out
}

fn header_map(request: &SignedRequest) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &request.headers {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Valid signed requests per format (index as in `formats()`), signed at `now`.
fn examples(now: i64) -> Vec<Vec<SignedRequest>> {
    let akeneo_fixture = include_bytes!("../../src/receiver/formats/testdata/akeneo_events.json");
    let edit = Edit {
        key: "MUT-1",
        family: "chairs",
        updated_us: 1_760_000_000_000_000,
        price_cents: 1999,
        stock: 3,
        body_size: 1024,
    };
    let delete = br#"{"changes":[{"key":"MUT-2","op":"delete","version":9}]}"#;
    vec![
        vec![
            simulate::akeneo_product_updated(AKENEO_SECRET.as_bytes(), now, &edit),
            simulate::akeneo_signed(AKENEO_SECRET.as_bytes(), now, akeneo_fixture.to_vec()),
        ],
        vec![event_platform(EP_PRIMARY, &cloud_event("ev-mutation"))],
        vec![
            standard_webhook(WHSEC, "msg_m1", now, &payload("MUT-3", 4)),
            standard_webhook(WHSEC, "msg_m2", now, delete),
        ],
        vec![
            hmac_request(HMAC_SECRET, "d-m1", &payload("MUT-4", 5)),
            hmac_request(HMAC_SECRET, "d-m2", delete),
        ],
    ]
}

/// Runs `f`, turning a panic into a failure report naming the input.
fn no_panic<T>(what: &str, input: &[u8], failures: &mut Vec<String>, f: impl FnOnce() -> T) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        failures.push(format!("{what} panicked on {}", hex::encode(input)));
    }
}

#[test]
fn webhook_parsers_never_panic_on_mutated_bodies() {
    let mut rng = StdRng::seed_from_u64(0x9A25E);
    let formats = formats();
    let now = simulate::unix_now();
    let mut failures = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for (index, examples) in examples(now).iter().enumerate() {
        for n in 0..cases() {
            let example = &examples[n % examples.len()];
            let headers = header_map(example);
            let body = mutate(&mut rng, &example.body);
            no_panic(
                formats[index].name(),
                &body,
                &mut failures,
                || match formats::parse_only(&formats[index], &headers, &body) {
                    Ok(_) => ok += 1,
                    Err(Rejection::Malformed(reason)) => {
                        assert!(!reason.is_empty());
                        refused += 1;
                    }
                    Err(other) => panic!("parse_only cannot be unauthorized: {other:?}"),
                },
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("parsers: {ok} parsed, {refused} refused as malformed");
    assert!(
        ok > 0 && refused > 0,
        "the mutator should reach both outcomes"
    );
}

#[test]
fn signature_verifiers_refuse_every_changed_body_and_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x51C);
    let formats = formats();
    let now = simulate::unix_now();
    let mut failures = Vec::new();
    for (index, examples) in examples(now).iter().enumerate() {
        for n in 0..cases() / 2 {
            let example = &examples[n % examples.len()];
            // 1. The body changed after signing: always 401.
            let body = mutate(&mut rng, &example.body);
            if body != example.body {
                let headers = header_map(example);
                let inbound = Inbound {
                    headers: &headers,
                    body: &body,
                    now_unix: now,
                };
                no_panic(formats[index].name(), &body, &mut failures, || {
                    let result = formats::verify_and_parse(&formats[index], &inbound);
                    assert!(
                        matches!(result, Err(Rejection::Unauthorized(_))),
                        "changed body not refused: {result:?}"
                    );
                });
            }
            // 2. One header value mutated: Ok or a clean refusal.
            let mut headers = header_map(example);
            let (name, value) = &example.headers[rng.random_range(0..example.headers.len())];
            let mutated = mutate(&mut rng, value.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&mutated) {
                headers.insert(HeaderName::from_static(name), value);
                let inbound = Inbound {
                    headers: &headers,
                    body: &example.body,
                    now_unix: now,
                };
                no_panic(name, &mutated, &mut failures, || {
                    let _ = formats::verify_and_parse(&formats[index], &inbound);
                });
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn config_loader_never_panics_on_mutated_configs() {
    let mut rng = StdRng::seed_from_u64(0xC0F16);
    let seeds = [
        include_str!("../../config.toml.example").to_owned(),
        config_text(Path::new("/tmp/pimsync-mutation"), "body_limit = 4096", ""),
        delivery_config_text(Path::new("/tmp/pimsync-mutation"), "http://127.0.0.1:9", ""),
    ];
    let mut failures = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for n in 0..cases() {
        let seed = &seeds[n % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned();
        no_panic(
            "config loader",
            text.as_bytes(),
            &mut failures,
            || match Config::from_toml_str(&text, Path::new("/etc/pimsync"), &FixedEnv) {
                Ok(_) => ok += 1,
                Err(errors) => {
                    assert!(!errors.to_string().is_empty());
                    refused += 1;
                }
            },
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("config: {ok} loaded, {refused} refused");
}
