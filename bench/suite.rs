//! The whole benchmark suite in one command, one table:
//!
//! ```sh
//! cargo bench --bench suite              # about 6 minutes (1,000,000 products for scale)
//! cargo bench --bench suite -- --quick   # about 1 minute (shorter windows, 100,000 products)
//! ```
//!
//! Durable ingest at 16, 64 and 256 connections; ingest while delivering to one loopback
//! target; delivery throughput; end-to-end latency; coalescing of 1,000 edits of one SKU;
//! and scale (1,000,000 products pending across 3 targets). Each figure is printed with
//! its goal and whether it was met, and the table is written as JSON to
//! `bench/results/suite.json` (or `--json PATH`). The measurements are the individual
//! benchmarks' own code (`ingest.rs`, `delivery.rs`, `scale.rs`, included as modules), so
//! `bench/README.md` describes how each is made. Missing a goal is reported, not a
//! failure; a failed check (a 202 not on disk, a product not delivered, a daemon not
//! exiting cleanly) makes the run exit 1.

// Each benchmark included below is also its own binary with its own copy of the shared
// modules (`common`, the delivery fake), so here they are loaded more than once.
#![allow(clippy::duplicate_mod)]

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "delivery.rs"]
mod delivery;
#[allow(dead_code)]
#[path = "ingest.rs"]
mod ingest;
#[allow(dead_code)]
#[path = "scale.rs"]
mod scale;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{VERSION, finish, machine};
use serde::Serialize;

const USAGE: &str = "usage: cargo bench --bench suite -- [--quick] [--no-scale] \
                     [--scale-products N] [--dir DIR] [--json PATH]";

struct Args {
    quick: bool,
    scale: bool,
    scale_products: Option<u64>,
    dir: PathBuf,
    json: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        scale: true,
        scale_products: None,
        dir: std::env::temp_dir(),
        json: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/suite.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--bench" => {} // `cargo bench` passes it to every bench binary.
            "--quick" => args.quick = true,
            "--no-scale" => args.scale = false,
            "--scale-products" => {
                let v = value()?.replace('_', "");
                let n = v.parse().map_err(|e| format!("--scale-products: {e}"))?;
                args.scale_products = Some(n);
            }
            "--dir" => args.dir = PathBuf::from(value()?),
            "--json" => args.json = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    // The daemon resolves a relative store path against its config file's directory.
    args.dir = std::path::absolute(&args.dir).map_err(|e| format!("--dir: {e}"))?;
    Ok(args)
}

#[derive(Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Met,
    Missed,
    /// The issue sets no goal for this figure.
    NoGoal,
    /// A check failed (not on disk, not delivered, unclean exit) or the run errored.
    Failed,
}

impl Verdict {
    fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NoGoal => "",
            Verdict::Failed => "FAILED",
        }
    }
}

/// One line of the table.
#[derive(Serialize)]
struct Row {
    measure: String,
    result: String,
    goal: String,
    verdict: Verdict,
}

fn row(measure: impl Into<String>, result: String, goal: &str, verdict: Verdict) -> Row {
    Row {
        measure: measure.into(),
        result,
        goal: goal.to_owned(),
        verdict,
    }
}

/// 12345.6 → "12,346".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let machine = machine(&args.dir);
    println!(
        "pimsync {VERSION} benchmark suite{}",
        if args.quick { " (--quick)" } else { "" }
    );
    machine.print();
    println!();
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cannot start the benchmark's runtime");
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();

    ingest_rows(&runtime, &args, &mut rows, &mut details);
    delivery_rows(&runtime, &args, &mut rows, &mut details);
    if args.scale {
        scale_rows(&args, &mut rows, &mut details);
    }

    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "\npimsync {VERSION} benchmark suite: {} CPU(s), {}; databases on {} ({:.1} min)\n",
        machine.nproc, machine.cpu_model, machine.db_filesystem, minutes
    );
    println!("| measurement | result | goal | |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.measure,
            r.result,
            r.goal,
            r.verdict.label()
        );
    }
    let failed = rows.iter().any(|r| r.verdict == Verdict::Failed);
    let report = serde_json::json!({
        "benchmark": "suite",
        "pimsync_version": VERSION,
        "machine": machine,
        "quick": args.quick,
        "minutes": minutes,
        "rows": rows,
        "details": details,
    });
    finish(&args.json, &report, failed)
}

fn ingest_rows(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    rows: &mut Vec<Row>,
    details: &mut serde_json::Map<String, serde_json::Value>,
) {
    let (seconds, warmup) = if args.quick { (3.0, 1.0) } else { (10.0, 2.0) };
    let ingest_args = ingest::Args {
        connections: vec![16, 64, 256],
        keyspace: if args.quick { 20_000 } else { 100_000 },
        seconds,
        warmup,
        json: args.json.clone(),
        dir: args.dir.clone(),
        baseline: false,
        delivering: true,
    };
    let ms = |x: f64| format!("{x:.2}");
    let mut levels = Vec::new();
    let mut runs: Vec<(usize, ingest::Targets)> = (ingest_args.connections.iter())
        .map(|&c| (c, ingest::Targets::ThreeThrottledLogs))
        .collect();
    runs.push((
        ingest::DELIVERING_CONNECTIONS,
        ingest::Targets::OneLoopbackHttp,
    ));
    for (connections, targets) in runs {
        let delivering = targets == ingest::Targets::OneLoopbackHttp;
        let measure = if delivering {
            format!(
                "ingest while delivering to one loopback target, {connections} connections \
                 ({seconds} s)"
            )
        } else {
            format!("durable ingest, {connections} connections ({seconds} s)")
        };
        let level = match ingest::run_level(runtime, &ingest_args, connections, 1024, targets) {
            Ok(level) => level,
            Err(error) => {
                eprintln!("!!! {measure}: {error}");
                rows.push(row(measure, error, "", Verdict::Failed));
                continue;
            }
        };
        let broken = ingest::check(&level);
        let mut result = format!(
            "edits {} req/s; p50 {} / p99 {} / max {} ms; import of {} products {} req/s, p99 {} ms",
            thousands(level.req_per_s),
            ms(level.p50_ms),
            ms(level.p99_ms),
            ms(level.max_ms),
            thousands(level.products as f64),
            thousands(level.import_req_per_s),
            ms(level.import_p99_ms),
        );
        let (goal, verdict) = if delivering {
            if let Some(rate) = level.applies_per_s {
                result.push_str(&format!("; {} applies/s alongside", thousands(rate)));
            }
            let goal = ingest::GOAL_DELIVERING_REQ_PER_S;
            let goal_text = format!("≥ {}/s", thousands(goal));
            (goal_text, Verdict::of(level.req_per_s >= goal))
        } else if connections == 64 {
            let (rate, p99) = (ingest::GOAL_REQ_PER_S_64, ingest::GOAL_P99_MS_64);
            let goal_text = format!("≥ {}/s, p99 < {p99} ms", thousands(rate));
            let met = level.req_per_s >= rate && level.p99_ms < p99;
            (goal_text, Verdict::of(met))
        } else {
            (String::new(), Verdict::NoGoal)
        };
        let verdict = if broken { Verdict::Failed } else { verdict };
        rows.push(row(measure, result, &goal, verdict));
        levels.push(level);
    }
    ingest::print_table(&levels);
    details.insert("ingest".into(), serde_json::json!(levels));
}

fn delivery_rows(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    rows: &mut Vec<Row>,
    details: &mut serde_json::Map<String, serde_json::Value>,
) {
    let delivery_args = delivery::Args {
        products: if args.quick { 5_000 } else { 20_000 },
        concurrency: vec![64],
        connections: 32,
        latency_rate: 200.0,
        latency_seconds: if args.quick { 3.0 } else { 10.0 },
        timeout: Duration::from_secs(120),
        json: args.json.clone(),
        dir: args.dir.clone(),
        coalesce_edits: 1000,
        coalesce_delays_ms: vec![0, 100],
    };
    let concurrency = 64;

    let measure = format!(
        "delivery throughput to a loopback target ({} products, concurrency {concurrency})",
        thousands(delivery_args.products as f64)
    );
    let goal = format!("≥ {} applies/s", thousands(delivery::GOAL_APPLIES_PER_S));
    match delivery::run_throughput(runtime, &delivery_args, concurrency) {
        Ok(t) => {
            let result = format!(
                "{} applies/s (all outcomes committed: {}/s)",
                thousands(t.applies_per_s),
                thousands(t.settled_per_s)
            );
            let verdict = if t.verified && t.daemon_exit_ok {
                Verdict::of(t.applies_per_s >= delivery::GOAL_APPLIES_PER_S)
            } else {
                Verdict::Failed
            };
            rows.push(row(measure, result, &goal, verdict));
            details.insert("delivery_throughput".into(), serde_json::json!(t));
        }
        Err(error) => rows.push(row(measure, error, &goal, Verdict::Failed)),
    }

    let samples = delivery_args.latency_rate * delivery_args.latency_seconds;
    let measure = format!(
        "end-to-end latency webhook → applied, idle target ({} webhooks at {}/s)",
        thousands(samples),
        delivery_args.latency_rate
    );
    let (p50, p99) = (delivery::GOAL_P50_MS, delivery::GOAL_P99_MS);
    let goal = format!("p50 < {p50} ms, p99 < {p99} ms");
    match delivery::run_latency(runtime, &delivery_args, concurrency) {
        Ok(l) => {
            let result = format!(
                "p50 {:.2} ms, p99 {:.2} ms (max {:.2})",
                l.p50_ms, l.p99_ms, l.max_ms
            );
            let verdict = if l.verified && l.daemon_exit_ok {
                Verdict::of(l.p50_ms < p50 && l.p99_ms < p99)
            } else {
                Verdict::Failed
            };
            rows.push(row(measure, result, &goal, verdict));
            details.insert("latency".into(), serde_json::json!(l));
        }
        Err(error) => rows.push(row(measure, error, &goal, Verdict::Failed)),
    }

    let mut runs = Vec::new();
    for &delay in &delivery_args.coalesce_delays_ms {
        let target = match delay {
            0 => "a target answering at once".to_owned(),
            ms => format!("a target answering after {ms} ms"),
        };
        let measure = format!(
            "coalescing: {} edits of one SKU within 1 s, {target}",
            thousands(delivery_args.coalesce_edits as f64)
        );
        let goal = format!("≤ {} applies", delivery::GOAL_COALESCED_APPLIES);
        match delivery::coalescing::run_coalescing(runtime, &delivery_args, delay) {
            Ok(c) => {
                let result = format!(
                    "{} applies (edits sent in {:.2} s)",
                    thousands(c.applies as f64),
                    c.send_seconds
                );
                let verdict = if c.last_state_applied && c.daemon_exit_ok {
                    Verdict::of(c.applies <= delivery::GOAL_COALESCED_APPLIES)
                } else {
                    Verdict::Failed
                };
                rows.push(row(measure, result, &goal, verdict));
                runs.push(c);
            }
            Err(error) => rows.push(row(measure, error, &goal, Verdict::Failed)),
        }
    }
    details.insert("coalescing".into(), serde_json::json!(runs));
}

fn scale_rows(
    args: &Args,
    rows: &mut Vec<Row>,
    details: &mut serde_json::Map<String, serde_json::Value>,
) {
    let mut scale_args = scale::Args::defaults();
    scale_args.products =
        (args.scale_products).unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    scale_args.dir = args.dir.clone();
    scale_args.drain_limit = 900.0;
    scale_args.json = args.json.with_file_name("suite-scale.json");
    let products = scale_args.products;
    let what = format!(
        "scale, {} products pending × 3 targets",
        thousands(products as f64)
    );
    println!("\n{what}");
    match scale::run_blocking(scale_args) {
        Ok(r) => {
            rows.push(row(
                format!("{what}: peak RSS while draining"),
                format!("{:.1} MiB", r.peak_rss_mib),
                &format!("< {} MiB", scale::RSS_GOAL_MIB),
                Verdict::of(r.peak_rss_mib < scale::RSS_GOAL_MIB),
            ));
            rows.push(row(
                format!("{what}: process start to ready"),
                format!("{:.3} s", r.start_to_ready_s),
                &format!("< {} s", scale::READY_GOAL_S),
                Verdict::of(r.start_to_ready_s < scale::READY_GOAL_S),
            ));
            let drain = format!(
                "{:.1} s ({} applies/s)",
                r.drain_s,
                thousands(r.applies_per_s)
            );
            let verdict = if r.drained {
                Verdict::NoGoal
            } else {
                Verdict::Failed
            };
            rows.push(row(
                format!(
                    "{what}: time to drain {} applies against a fast fake",
                    thousands(r.outbox_rows as f64)
                ),
                drain,
                "",
                verdict,
            ));
            details.insert("scale".into(), serde_json::json!(r));
        }
        Err(error) => rows.push(row(what, error, "", Verdict::Failed)),
    }
}
