//! Durable-ingest benchmark: signed webhooks per second that the real `pimsync serve`
//! binary (its own process, fresh database per level) commits to SQLite and answers 202,
//! at several numbers of keep-alive connections, with latency percentiles, both
//! processes' CPU use, and a check after each level that every 202 is on disk.
//! See `bench/README.md`.

#[path = "common/mod.rs"]
mod common;
// The delivery benchmark's fake target, for the level that ingests while delivering.
#[allow(dead_code)]
#[path = "delivery/fake.rs"]
mod fake;
#[path = "ingest/load.rs"]
mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use common::{BODY_SIZE, Machine, Server, VERSION, count, daemon_config, finish, machine};
use load::{Load, drive};
use serde::Serialize;

/// Distinct product keys across all connections of a level (the catalogue).
const KEYSPACE: u64 = 100_000;
/// The catalogue of the one-row-per-transaction baseline, whose import is several times slower.
const BASELINE_KEYSPACE: u64 = 10_000;
/// More non-202 answers than this fraction of all answers fails the run.
const MAX_NOT_ACCEPTED: f64 = 0.001;
const USAGE: &str = "usage: cargo bench --bench ingest -- [--connections 16,64,256] \
                     [--products 100000] [--seconds 10] [--warmup 2] [--json PATH] [--dir DIR] \
                     [--no-baseline] [--no-delivering]";
/// Connections of the level that ingests while delivering to one loopback target.
pub const DELIVERING_CONNECTIONS: usize = 64;
pub const GOAL_REQ_PER_S_64: f64 = 25_000.0;
pub const GOAL_P99_MS_64: f64 = 25.0;
pub const GOAL_DELIVERING_REQ_PER_S: f64 = 15_000.0;

pub struct Args {
    pub connections: Vec<usize>,
    /// Products per level: each is created once (the import), then edited.
    pub keyspace: u64,
    pub seconds: f64,
    pub warmup: f64,
    pub json: PathBuf,
    /// Where each level's database directory is created (fsync cost depends on the disk).
    pub dir: PathBuf,
    /// Also run 64 connections with one request per transaction (`store.max_batch = 1`),
    /// the design group commit replaces, as a baseline measured in the same run.
    pub baseline: bool,
    /// Also run 64 connections while the daemon delivers every change to one loopback
    /// `http` target (answering at once), instead of three throttled log targets.
    pub delivering: bool,
}

/// What a level's daemon delivers to while it ingests.
#[derive(Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Three `log` targets throttled to a trickle: ingest alone.
    ThreeThrottledLogs,
    /// One `http` target on a loopback fake answering at once, delivering at full speed.
    OneLoopbackHttp,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        connections: vec![16, 64, 256],
        keyspace: KEYSPACE,
        seconds: 10.0,
        warmup: 2.0,
        json: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/ingest.json"),
        dir: std::env::temp_dir(),
        baseline: true,
        delivering: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let seconds = |v: String| match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
            _ => Err(format!("{flag}: not a number of seconds: {v}")),
        };
        match flag.as_str() {
            "--bench" => {} // `cargo bench` passes it to every bench binary.
            "--connections" => {
                args.connections = (value()?.split(','))
                    .map(|n| match n.trim().parse::<usize>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("--connections: not a positive number: {n}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--products" => {
                let v = value()?;
                args.keyspace = match v.parse::<u64>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--products: not a positive number: {v}")),
                };
            }
            "--seconds" => args.seconds = seconds(value()?)?,
            "--warmup" => args.warmup = seconds(value()?)?,
            "--json" => args.json = PathBuf::from(value()?),
            "--dir" => args.dir = PathBuf::from(value()?),
            "--no-baseline" => args.baseline = false,
            "--no-delivering" => args.delivering = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.seconds <= 0.0 {
        return Err("--seconds must be greater than 0".to_owned());
    }
    // The daemon resolves a relative store path against its config file's directory.
    args.dir = std::path::absolute(&args.dir).map_err(|e| format!("--dir: {e}"))?;
    Ok(args)
}

#[derive(Serialize)]
pub struct Level {
    pub connections: usize,
    pub targets: Targets,
    /// The daemon's `store.max_batch`: 1 is the one-row-per-transaction baseline.
    pub max_batch: usize,
    /// Products in the catalogue; the import creates each once, the edits follow.
    pub products: u64,
    /// The import: one webhook per product not yet stored, from the start until every
    /// connection has created its products.
    pub import_requests: u64,
    pub import_seconds: f64,
    pub import_req_per_s: f64,
    pub import_p99_ms: f64,
    /// Edits of stored products, answers completed inside the measured window (which
    /// starts `warmup` seconds after the import).
    pub requests: u64,
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers other than 202 over the whole level (warmup included), by status or error.
    pub non_202: u64,
    pub non_202_by_status: BTreeMap<String, u64>,
    /// 202s over the whole level (warmup included): each must be a row in the inbox.
    pub accepted_total: u64,
    pub inbox_rows: u64,
    pub inbox_verified: bool,
    /// CPU time over the measured window, in % of one core.
    pub server_cpu_pct: f64,
    /// The store writer thread's CPU per edit measured, in µs.
    pub writer_us_per_edit: f64,
    /// The async runtime threads' CPU per edit measured (HTTP, signature, parsing), in µs.
    pub runtime_us_per_edit: f64,
    /// Jobs per writer transaction over the measured window (group commit's batch size).
    pub writer_jobs_per_commit: Option<f64>,
    /// Share of the measured window the writer spent in transactions, commit included, in %:
    /// near 100 % the writer is the bottleneck, well below it the rest of the loop is.
    pub writer_busy_pct: Option<f64>,
    pub loadgen_cpu_pct: f64,
    pub daemon_exit_ok: bool,
    /// Applies the loopback target received in the measured window (delivering levels).
    pub applies: Option<u64>,
    pub applies_per_s: Option<f64>,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let machine: Machine = machine(&args.dir);
    println!("pimsync {VERSION} durable-ingest benchmark");
    machine.print();
    println!(
        "load: signed {BODY_SIZE}-byte Akeneo product.updated webhooks, one closed loop per \
         keep-alive connection; per level, an import creating {} products, then edits of \
         them: {}s warmup + {}s measured\n",
        args.keyspace, args.warmup, args.seconds
    );
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cannot start the load generator's runtime");
        return ExitCode::FAILURE;
    };

    let mut levels = Vec::new();
    let mut failed = false;
    let throttled = Targets::ThreeThrottledLogs;
    let mut runs: Vec<(usize, usize, Targets)> = (args.connections.iter())
        .map(|&c| (c, 1024, throttled))
        .collect();
    if args.baseline {
        runs.push((64, 1, throttled));
    }
    if args.delivering {
        runs.push((DELIVERING_CONNECTIONS, 1024, Targets::OneLoopbackHttp));
    }
    for (connections, max_batch, targets) in runs {
        match run_level(&runtime, &args, connections, max_batch, targets) {
            Ok(level) => {
                failed |= check(&level);
                levels.push(level);
            }
            Err(error) => {
                eprintln!("!!! {connections} connections: FAILED: {error}");
                failed = true;
            }
        }
    }

    print_table(&levels);
    let report = serde_json::json!({
        "benchmark": "ingest",
        "pimsync_version": VERSION,
        "machine": machine,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "body_size": BODY_SIZE,
        "products": args.keyspace,
        "baseline_products": BASELINE_KEYSPACE.min(args.keyspace),
        "goals": {
            "req_per_s_at_64": GOAL_REQ_PER_S_64,
            "p99_ms_at_64": GOAL_P99_MS_64,
            "req_per_s_while_delivering": GOAL_DELIVERING_REQ_PER_S,
        },
        "levels": levels,
    });
    finish(&args.json, &report, failed)
}

/// Reports a level's problems loudly; true if the level fails the run.
pub fn check(level: &Level) -> bool {
    let n = level.connections;
    let mut failed = false;
    if level.non_202 > 0 {
        let answers = level.accepted_total + level.non_202;
        let share = level.non_202 as f64 / answers as f64;
        eprintln!(
            "!!! {n} connections: {} of {answers} answers were NOT 202 ({:.3} %): {:?}",
            level.non_202,
            share * 100.0,
            level.non_202_by_status
        );
        failed |= share > MAX_NOT_ACCEPTED;
    }
    if !level.inbox_verified {
        eprintln!(
            "!!! {n} connections: {} webhooks were acknowledged 202 but the inbox holds {} rows",
            level.accepted_total, level.inbox_rows
        );
        failed = true;
    }
    if !level.daemon_exit_ok {
        eprintln!("!!! {n} connections: the daemon did not exit cleanly");
        failed = true;
    }
    failed
}

pub fn run_level(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    connections: usize,
    max_batch: usize,
    targets: Targets,
) -> Result<Level, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-bench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("creating a directory in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("bench.db");
    let fake = match targets {
        Targets::ThreeThrottledLogs => None,
        Targets::OneLoopbackHttp => Some(runtime.block_on(fake::Fake::start(true))?),
    };
    let config = match &fake {
        None => config_toml(&db, max_batch),
        Some(fake) => config_delivering(&db, max_batch, fake.addr),
    };
    let mut server = Server::start(dir.path(), &config)?;
    let (pid, addr) = (server.pid(), server.addr);
    let what = match targets {
        Targets::ThreeThrottledLogs => "",
        Targets::OneLoopbackHttp => ", delivering to one loopback http target",
    };
    println!("{connections} connections, max_batch {max_batch}{what}: daemon pid {pid} on {addr}");

    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.seconds);
    let applied = fake.as_ref().map(|f| &f.state.requests);
    let products = if max_batch == 1 {
        BASELINE_KEYSPACE.min(args.keyspace)
    } else {
        args.keyspace
    };
    let load = Load {
        addr,
        connections,
        keys: (products / connections as u64).max(1),
        warmup,
        measure,
        admin: server.admin,
    };
    let (tally, import, cpu, applies) = runtime.block_on(drive(&load, pid, applied));
    let exit = server.stop()?;
    if !exit.success() {
        eprintln!("daemon {exit}; its stderr ends:\n{}", server.stderr_tail());
    }
    let inbox_rows = count(&db, "SELECT count(*) FROM inbox")?;

    let hist = &tally.histogram;
    let ms = |us: u64| us as f64 / 1000.0;
    let seconds = measure.as_secs_f64();
    let import_seconds = import.seconds;
    let level = Level {
        connections,
        targets,
        max_batch,
        products: load.keys * connections as u64,
        import_requests: import.histogram.len(),
        import_seconds,
        import_req_per_s: import.histogram.len() as f64 / import_seconds.max(1e-9),
        import_p99_ms: ms(import.histogram.value_at_quantile(0.99)),
        requests: hist.len(),
        req_per_s: hist.len() as f64 / seconds,
        p50_ms: ms(hist.value_at_quantile(0.50)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
        non_202: tally.not_accepted.values().sum(),
        non_202_by_status: tally.not_accepted,
        accepted_total: tally.accepted,
        inbox_rows,
        inbox_verified: inbox_rows >= tally.accepted,
        server_cpu_pct: cpu.server * 100.0 / seconds,
        writer_us_per_edit: cpu.writer * 1e6 / hist.len().max(1) as f64,
        runtime_us_per_edit: cpu.runtime * 1e6 / hist.len().max(1) as f64,
        writer_jobs_per_commit: cpu.commits.map(|c| c.jobs / c.transactions.max(1.0)),
        writer_busy_pct: cpu.commits.map(|c| c.seconds * 100.0 / seconds),
        loadgen_cpu_pct: cpu.loadgen * 100.0 / seconds,
        daemon_exit_ok: exit.success(),
        applies,
        applies_per_s: applies.map(|n| n as f64 / seconds),
    };
    let (requests, rate, acked) = (level.requests, level.req_per_s, level.accepted_total);
    println!(
        "  import: {} products in {:.1} s ({:.0}/s, p99 {:.2} ms)",
        level.import_requests, level.import_seconds, level.import_req_per_s, level.import_p99_ms
    );
    println!(
        "  edits: {requests} measured ({rate:.0}/s), {acked} got 202, {inbox_rows} in the inbox"
    );
    if let Some(applies) = applies {
        println!("  {applies} applies at the target in the measured window");
    }
    Ok(level)
}

/// Three targets, as in production, whose delivery is throttled to a trickle so that this
/// measures ingest alone (outbox rows are written, hardly any are applied).
fn config_toml(db: &Path, max_batch: usize) -> String {
    let targets = ["shopify-sim", "magento-sim", "erp-sim"]
        .map(|name| {
            format!(
                "\n[[targets]]\nname = \"{name}\"\nkind = \"log\"\nlog = {{ path = \"/dev/null\" }}\n\
                 [targets.delivery]\nconcurrency = 1\nrate_limit = 1\nburst = 1\n"
            )
        })
        .concat();
    daemon_config(db, &format!("max_batch = {max_batch}"), &targets)
}

/// One `http` target on the loopback fake, delivering at full speed (no rate limit).
fn config_delivering(db: &Path, max_batch: usize, fake: SocketAddr) -> String {
    let targets = format!(
        r#"[[targets]]
name = "fake"
kind = "http"
[targets.http]
base_url = "http://{fake}"
[targets.delivery]
concurrency = 64
"#
    );
    daemon_config(db, &format!("max_batch = {max_batch}"), &targets)
}

pub fn print_table(levels: &[Level]) {
    let row = |cells: &[String]| {
        let widths = [11, 9, 16, 9, 9, 8, 8, 8, 8, 24, 8, 8, 8, 8, 8, 8, 22];
        let cells = cells.iter().zip(widths).map(|(c, w)| format!("{c:>w$}"));
        println!("{}", cells.collect::<Vec<_>>().join(" "));
    };
    let header = "connections|max_batch|import/s (p99)|edits|edits/s|p50 ms|p99 ms|max ms|non-202|inbox rows ≥ 202s|srv CPU|writer µs/edit|recv µs/edit|jobs/tx|busy|gen CPU|delivering (applies/s)";
    println!();
    row(&header.split('|').map(str::to_owned).collect::<Vec<_>>());
    for l in levels {
        let verdict = if l.inbox_verified { "ok" } else { "MISSING" };
        row(&[
            l.connections.to_string(),
            l.max_batch.to_string(),
            format!("{:.0} ({:.1})", l.import_req_per_s, l.import_p99_ms),
            l.requests.to_string(),
            format!("{:.0}", l.req_per_s),
            format!("{:.2}", l.p50_ms),
            format!("{:.2}", l.p99_ms),
            format!("{:.2}", l.max_ms),
            l.non_202.to_string(),
            format!("{} ≥ {} {verdict}", l.inbox_rows, l.accepted_total),
            format!("{:.0}%", l.server_cpu_pct),
            format!("{:.1}", l.writer_us_per_edit),
            format!("{:.1}", l.runtime_us_per_edit),
            l.writer_jobs_per_commit
                .map_or("-".to_owned(), |n| format!("{n:.1}")),
            l.writer_busy_pct
                .map_or("-".to_owned(), |p| format!("{p:.0}%")),
            format!("{:.0}%", l.loadgen_cpu_pct),
            l.applies_per_s
                .map_or("no (throttled logs)".to_owned(), |r| format!("{r:.0}")),
        ]);
    }
}
