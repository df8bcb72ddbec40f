//! The cargo-fuzz targets' inputs replayed on stable, in `cargo test`: CI has no nightly
//! toolchain, so this is where fuzzing findings keep being checked.
//!
//! For every target in `fuzz/fuzz_targets/` this runs the same function the target runs
//! (`fuzz/src/lib.rs`, included here by path) on every file of
//! - `fuzz/seeds/<target>/`: the committed seed corpus (each target must have one), and
//! - `fuzz/regressions/<target>/`: committed crashes, one file per fixed finding,
//! - `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`, when present locally (cargo
//!   fuzz writes there; both are gitignored),
//!
//! and fails on any panic, naming the file. Seeds named `valid-*` must also be accepted by
//! the parser or verifier (so the fuzzer starts deep inside it, not at the signature
//! check). `PIMSYNC_WRITE_FUZZ_SEEDS=1 cargo test --test integration write_fuzz_seeds --
//! --ignored` rewrites the generated seeds.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pimsync::receiver::formats::{self, Inbound};

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_lib;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// What a target runs, read from its source: `pimsync_fuzz::parse(0, data)` and the like.
#[derive(Debug, Clone, Copy)]
enum Run {
    Parse(usize),
    Verify(usize),
    Config,
}

impl Run {
    fn call(self, data: &[u8]) {
        match self {
            Run::Parse(format) => fuzz_lib::parse(format, data),
            Run::Verify(format) => fuzz_lib::verify(format, data),
            Run::Config => fuzz_lib::config(data),
        }
    }

    /// Whether a valid input is accepted (`Ok`).
    fn accepts(self, data: &[u8]) -> Result<(), String> {
        match self {
            Run::Parse(format) => {
                let (headers, body) = fuzz_lib::request(format, data);
                let source = &fuzz_lib::sources()[format];
                formats::parse_only(&source.format, &headers, body)
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            }
            Run::Verify(format) => {
                let (headers, body) = fuzz_lib::request(format, data);
                let inbound = Inbound {
                    headers: &headers,
                    body,
                    now_unix: fuzz_lib::NOW_UNIX,
                };
                let source = &fuzz_lib::sources()[format];
                formats::verify_and_parse(&source.format, &inbound)
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            }
            Run::Config => {
                let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
                pimsync::config::Config::from_toml_str(
                    text,
                    Path::new("/etc/pimsync"),
                    &fuzz_lib::FixedEnv,
                )
                .map(drop)
                .map_err(|e| e.to_string())
            }
        }
    }
}

/// Every fuzz target with what it runs.
fn targets() -> Vec<(String, Run)> {
    let mut targets = Vec::new();
    let dir = fuzz_dir().join("fuzz_targets");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let call = source
            .split_once("pimsync_fuzz::")
            .map(|(_, rest)| rest.split(')').next().unwrap_or(""))
            .unwrap_or_else(|| panic!("{name}: no pimsync_fuzz:: call"));
        let index = || -> usize {
            let (_, args) = call.split_once('(').unwrap();
            args.split(',').next().unwrap().trim().parse().unwrap()
        };
        let run = if call.starts_with("parse(") {
            Run::Parse(index())
        } else if call.starts_with("verify(") {
            Run::Verify(index())
        } else if call.starts_with("config(") {
            Run::Config
        } else {
            panic!("{name}: unknown fuzz call pimsync_fuzz::{call})")
        };
        targets.push((name, run));
    }
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    targets
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_seeds_regressions_and_local_corpora_replay_without_panics() {
    let targets = targets();
    assert!(targets.len() >= 9, "fuzz targets found: {targets:?}");
    let mut failures = Vec::new();
    let mut replayed = 0;
    // Panics are expected to be caught here; keep their messages out of the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, run) in &targets {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        if seeds.is_empty() {
            failures.push(format!("{name}: no seed corpus in fuzz/seeds/{name}/"));
        }
        let mut inputs = seeds;
        for dir in ["regressions", "corpus", "artifacts"] {
            inputs.extend(files(&fuzz_dir().join(dir).join(name)));
        }
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            replayed += 1;
            if catch_unwind(AssertUnwindSafe(|| run.call(&data))).is_err() {
                failures.push(format!("{name}: {} panics", path.display()));
                continue;
            }
            let valid = path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("valid-"));
            if valid && let Err(error) = run.accepts(&data) {
                failures.push(format!(
                    "{name}: {} is named valid- but is refused: {error}",
                    path.display()
                ));
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz replay: {replayed} inputs over {} targets",
        targets.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------
// Generating the seeds

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(pimsync::receiver::signature::hmac_sha256(key, parts))
}

/// Header values in the target's order, then the body (the layout of `fuzz/src/lib.rs`).
fn layout(headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for header in headers {
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(body);
    out
}

const AKENEO_BODY: &str = r#"{"events":[{"action":"product.updated","event_id":"e1","event_datetime":"2026-12-04T10:00:00+00:00","author":"julia","author_type":"ui","pim_source":"https://pim.example.com","data":{"resource":{"uuid":"fc24e6c3-933c-4a93-8a81-e5c703d134d5","identifier":"SKU-1","family":"chairs","parent":null,"categories":["seating"],"enabled":true,"values":{"name":[{"locale":"en_US","scope":null,"data":"Chair"}],"price":[{"locale":null,"scope":null,"data":[{"amount":"49.90","currency":"EUR"}]}]},"updated":"2026-12-04T10:00:00+00:00"}}},{"action":"product.removed","event_id":"e2","event_datetime":"2026-12-04T10:00:01+00:00","author":"julia","author_type":"ui","pim_source":"https://pim.example.com","data":{"resource":{"uuid":"0b8b9c39-7a44-4ab0-8a5c-3bd6a4e0d4b1","identifier":"SKU-2"}}}]}"#;
const AKENEO_MODEL_BODY: &str = r#"{"events":[{"action":"product_model.updated","event_id":"m1","event_datetime":"2026-12-04T10:00:00+00:00","author":"julia","author_type":"ui","pim_source":"https://pim.example.com","data":{"resource":{"code":"MODEL-1","family":"shirts","family_variant":"shirts_size","parent":null,"categories":["tops"],"values":{"name":[{"locale":"en_US","scope":null,"data":"Shirt"}]},"updated":"2026-12-04T10:00:00+00:00"}}}]}"#;
const CLOUD_EVENT: &str = r#"{"specversion":"1.0","id":"ev-1","source":"pim","type":"com.akeneo.pim.v1.product.updated","time":"2026-12-04T10:00:00Z","datacontenttype":"application/json","data":{"product":{"uuid":"fc24e6c3-933c-4a93-8a81-e5c703d134d5"}}}"#;
const CLOUD_EVENT_DELETED: &str = r#"{"specversion":"1.0","id":"ev-2","source":"pim","type":"com.akeneo.pim.v1.product.deleted","time":"2026-12-04T10:00:00Z","data":{"product":{"uuid":"fc24e6c3-933c-4a93-8a81-e5c703d134d5","identifier":"SKU-1"}}}"#;
const PAYLOAD: &str = r#"{"changes":[{"key":"SKU-1","op":"upsert","version":17,"product":{"family":"chairs","categories":["seating"],"enabled":true,"values":{"name":[{"locale":"en_US","scope":null,"data":"Chair"}],"price":[{"locale":null,"scope":null,"data":[{"amount":"49.90","currency":"EUR"}]}]}}},{"key":"SKU-2","op":"delete","updated":"2026-12-04T10:00:00Z"}]}"#;
const PAYLOAD_PARTIAL: &str = r#"{"changes":[{"key":"SKU-3","op":"upsert","partial":true,"kind":"product_model","uuid":"fc24e6c3-933c-4a93-8a81-e5c703d134d5","event_id":"x1","updated":"2026-12-04T10:00:00Z","product":{"values":{"stock":[{"locale":null,"scope":null,"data":4}]}}}]}"#;

/// The seeds: (target, file name, contents).
fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ts = fuzz_lib::NOW_UNIX.to_string();
    let mut seeds = Vec::new();
    let mut both = |name: &str, file: &str, data: Vec<u8>| {
        seeds.push((
            match name {
                "akeneo" => ["parse_akeneo", "verify_akeneo"],
                "event_platform" => ["parse_event_platform", "verify_event_platform"],
                "standard_webhooks" => ["parse_standard_webhooks", "verify_standard_webhooks"],
                _ => ["parse_hmac", "verify_hmac"],
            },
            file.to_owned(),
            data,
        ));
    };
    // Akeneo: timestamp, signature of "<ts>.<body>", content type.
    let secret = b"akeneo-test-secret";
    for (file, body) in [
        ("valid-updated-removed", AKENEO_BODY),
        ("valid-product-model", AKENEO_MODEL_BODY),
        ("valid-empty-body-check-request", ""),
        ("empty-events", r#"{"events":[]}"#),
    ] {
        let sig = hmac_hex(secret, &[ts.as_bytes(), b".", body.as_bytes()]);
        both(
            "akeneo",
            file,
            layout(&[&ts, &sig, "application/json"], body.as_bytes()),
        );
    }
    both(
        "akeneo",
        "unsigned",
        layout(&[&ts, "00", "application/json"], AKENEO_BODY.as_bytes()),
    );
    // Event Platform: primary signature, secondary signature, content type.
    for (file, body) in [
        ("valid-updated", CLOUD_EVENT),
        ("valid-deleted", CLOUD_EVENT_DELETED),
    ] {
        let primary = hmac_hex(b"ep-primary-secret", &[body.as_bytes()]);
        let secondary = hmac_hex(b"ep-secondary-secret", &[body.as_bytes()]);
        both(
            "event_platform",
            &format!("{file}-primary"),
            layout(
                &[&primary, "", "application/cloudevents+json"],
                body.as_bytes(),
            ),
        );
        both(
            "event_platform",
            &format!("{file}-secondary"),
            layout(&["", &secondary, "application/json"], body.as_bytes()),
        );
    }
    // Standard Webhooks: id, timestamp, "v1,<base64 of HMAC(key, id.ts.body)>".
    let key = b64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    for (file, id, body) in [
        ("valid-upsert-delete", "msg_1", PAYLOAD),
        ("valid-partial", "msg_2", PAYLOAD_PARTIAL),
    ] {
        let tag = pimsync::receiver::signature::hmac_sha256(
            &key,
            &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()],
        );
        let signature = format!("v1a,AAAA v1,{}", b64.encode(tag));
        both(
            "standard_webhooks",
            file,
            layout(&[id, &ts, &signature], body.as_bytes()),
        );
    }
    // Generic HMAC: "sha256=<hex>", delivery id, content type.
    for (file, body) in [
        ("valid-upsert-delete", PAYLOAD),
        ("valid-partial", PAYLOAD_PARTIAL),
    ] {
        let signature = format!(
            "sha256={}",
            hmac_hex(b"github-style-secret", &[body.as_bytes()])
        );
        both(
            "hmac",
            file,
            layout(
                &[&signature, "delivery-1", "application/json"],
                body.as_bytes(),
            ),
        );
    }
    let mut out: Vec<(&'static str, String, Vec<u8>)> = seeds
        .into_iter()
        .flat_map(|(targets, file, data)| targets.map(|t| (t, file.clone(), data.clone())))
        .collect();
    // The config loader: the fuzz config and the documented example.
    out.push((
        "config_loader",
        "valid-fuzz-config.toml".into(),
        fuzz_lib::CONFIG.as_bytes().to_vec(),
    ));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    out.push((
        "config_loader",
        "config-example.toml".into(),
        std::fs::read(example).unwrap(),
    ));
    out.push(("config_loader", "empty.toml".into(), Vec::new()));
    out
}

/// The committed generated seeds are what the generator makes now.
#[test]
fn generated_fuzz_seeds_are_up_to_date() {
    let mut stale = Vec::new();
    for (target, file, data) in generated_seeds() {
        // A copy of config.toml.example, which changes with most features; a stale copy
        // is still a fine seed, and the example itself is checked by the config tests.
        if file == "config-example.toml" {
            continue;
        }
        let path = fuzz_dir().join("seeds").join(target).join(&file);
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (PIMSYNC_WRITE_FUZZ_SEEDS=1 cargo test --test integration \
         write_fuzz_seeds -- --ignored): {stale:#?}"
    );
}

#[test]
#[ignore = "writes fuzz/seeds/; run with PIMSYNC_WRITE_FUZZ_SEEDS=1"]
fn write_fuzz_seeds() {
    if std::env::var_os("PIMSYNC_WRITE_FUZZ_SEEDS").is_none() {
        eprintln!("set PIMSYNC_WRITE_FUZZ_SEEDS=1 to write fuzz/seeds/");
        return;
    }
    for (target, file, data) in generated_seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), data).unwrap();
    }
}
