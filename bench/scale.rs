//! Scale: 1,000,000 products pending across 3 targets. Measures the daemon's time from
//! process start to ready, its memory (RSS) while it drains, and the time to drain
//! against a fast in-bench fake target (every PUT answered 200 at once).
//!
//! `cargo bench --bench scale` (release), `-- --products 100000` to scale down. See
//! bench/README.md.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use pimsync::simulate::{self, Edit, Sender};
use pimsync_connectors::{ContentHash, idempotency_key};
use serde::Serialize;

const USAGE: &str = "usage: cargo bench --bench scale -- [--products N] [--concurrency N] \
[--drain-limit SECONDS] [--dir DIR] [--json PATH]";
const TARGETS: [&str; 3] = ["shop", "marketplace", "erp"];
pub const RSS_GOAL_MIB: f64 = 64.0;
pub const READY_GOAL_S: f64 = 1.0;

pub struct Args {
    pub products: u64,
    pub concurrency: usize,
    pub drain_limit: f64,
    pub dir: PathBuf,
    pub json: PathBuf,
}

impl Args {
    /// The defaults: 1,000,000 products, concurrency 64 per target.
    pub fn defaults() -> Args {
        Args {
            products: 1_000_000,
            concurrency: 64,
            drain_limit: 1800.0,
            dir: std::env::temp_dir(),
            json: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/scale.json"),
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::defaults();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--bench" => {}
            "--products" => {
                args.products = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--products: {e}"))?
            }
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--drain-limit" => {
                args.drain_limit = value()?
                    .parse()
                    .map_err(|e| format!("--drain-limit: {e}"))?
            }
            "--dir" => args.dir = PathBuf::from(value()?),
            "--json" => args.json = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.products == 0 {
        return Err("--products must be at least 1".into());
    }
    args.dir = std::path::absolute(&args.dir).map_err(|e| format!("--dir: {e}"))?;
    Ok(args)
}

#[derive(Serialize)]
pub struct Results {
    pub products: u64,
    pub targets: usize,
    pub outbox_rows: u64,
    pub concurrency_per_target: usize,
    pub db_bytes: u64,
    pub build_db_s: f64,
    pub start_to_ready_s: f64,
    pub ready_goal_s: f64,
    /// Peak resident memory of the daemon over the run (VmHWM).
    pub peak_rss_mib: f64,
    pub rss_goal_mib: f64,
    /// RSS samples while draining: min / median / last.
    pub rss_samples_mib: Vec<f64>,
    pub drained: bool,
    pub applies: u64,
    pub drain_s: f64,
    pub applies_per_s: f64,
    pub nproc: usize,
    pub cpu_model: String,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run_blocking(args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark on its own runtime (the fake target gets one worker thread).
pub fn run_blocking(args: Args) -> Result<Results, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(run(args))
}

/// The fast fake target: counts PUTs and answers 200 at once.
async fn start_fake() -> (SocketAddr, Arc<AtomicU64>) {
    let applies = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/{target}/products/{key}",
            put(|State(n): State<Arc<AtomicU64>>| async move {
                n.fetch_add(1, Ordering::Relaxed);
                (StatusCode::OK, "{}")
            }),
        )
        .with_state(applies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, applies)
}

fn config(dir: &Path, fake: SocketAddr, concurrency: usize) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"{}\"\n\n\
         [[sources]]\nname = \"akeneo\"\npath = \"/webhooks/akeneo\"\nformat = \"akeneo\"\nsecret = \"scale-secret\"\n",
        dir.join("pimsync.db").display()
    );
    for target in TARGETS {
        text.push_str(&format!(
            "\n[[targets]]\nname = \"{target}\"\nkind = \"http\"\n[targets.http]\nbase_url = \"http://{fake}/{target}\"\n\
             [targets.delivery]\nconcurrency = {concurrency}\nretry_base = \"100ms\"\nretry_cap = \"1s\"\n"
        ));
    }
    text
}

struct Running {
    child: Child,
    addr: SocketAddr,
    ready_after: Duration,
}

fn start_daemon(config_path: &Path) -> Result<Running, String> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pimsync"))
        .args(["serve", "--config"])
        .arg(config_path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting pimsync: {e}"))?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("pimsync listening on ") {
                let _ = tx.send((Instant::now(), addr.parse::<SocketAddr>()));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok((at, Ok(addr))) => Ok(Running {
            child,
            addr,
            ready_after: at - started,
        }),
        _ => {
            let _ = child.kill();
            Err("pimsync did not report its address".into())
        }
    }
}

fn stop(mut child: Child) -> Result<(), String> {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("pimsync exited with {status}"))
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Creates the schema with the real binary and takes one real canonical snapshot as the
/// template: the products the benchmark writes are what ingest would have stored.
async fn bootstrap(dir: &Path, config_path: &Path) -> Result<(String, String), String> {
    let running = start_daemon(config_path)?;
    let request = simulate::akeneo_product_updated(
        b"scale-secret",
        simulate::unix_now(),
        &Edit {
            key: "TEMPLATE-SKU",
            family: "chairs",
            updated_us: 1_700_000_000_000_000,
            price_cents: 4999,
            stock: 12,
            body_size: 1400,
        },
    );
    let url = format!("http://{}/webhooks/akeneo", running.addr);
    let (status, body) = Sender::default().post(&url, &request).await?;
    if status != 202 {
        return Err(format!(
            "bootstrap webhook: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    stop(running.child)?;
    let conn = rusqlite::Connection::open(dir.join("pimsync.db")).map_err(|e| e.to_string())?;
    conn.query_row(
        "SELECT snapshot, uuid FROM products WHERE product_key = 'TEMPLATE-SKU'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .map_err(|e| e.to_string())
}

/// Writes `n` products and one pending outbox row per product and target, in one
/// transaction (the same rows ingest writes, without the inbox).
fn fill(db: &Path, n: u64, template: &str, template_uuid: &str) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let tx = conn.transaction()?;
    tx.execute_batch(
        "DELETE FROM outbox; DELETE FROM applied; DELETE FROM products; DELETE FROM inbox;",
    )?;
    let now = pimsync::store::now_ms();
    {
        let mut product = tx.prepare(
            "INSERT INTO products (product_key, uuid, kind, version, deleted, snapshot, parent,
                                   content_hash, source, updated_at)
             VALUES (?1, ?2, 'product', ?3, 0, ?4, NULL, ?5, 'akeneo', ?6)",
        )?;
        let mut outbox = tx.prepare(
            "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state, attempts,
                                 next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)",
        )?;
        for i in 0..n {
            let key = format!("SKU-{i:07}");
            let uuid = simulate::uuid_for(&key);
            let snapshot = template
                .replace("TEMPLATE-SKU", &key)
                .replace(template_uuid, &uuid);
            let hash = ContentHash::of_json(&snapshot);
            product.execute(rusqlite::params![
                key,
                uuid,
                1_700_000_000_000_000i64 + i as i64,
                snapshot,
                hash.as_str(),
                now
            ])?;
            for target in TARGETS {
                let idem = idempotency_key(target, &key, &hash);
                outbox.execute(rusqlite::params![target, key, hash.as_str(), idem, now])?;
            }
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    Ok(())
}

fn outbox_rows(db: &Path) -> u64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .unwrap_or(u64::MAX)
}

async fn run(args: Args) -> Result<Results, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-scale-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("temp dir in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("pimsync.db");
    let (fake, applies) = start_fake().await;
    let config_path = dir.path().join("pimsync.toml");
    std::fs::write(&config_path, config(dir.path(), fake, args.concurrency))
        .map_err(|e| e.to_string())?;

    eprintln!("bootstrapping the schema and a template snapshot…");
    let (template, template_uuid) = bootstrap(dir.path(), &config_path).await?;
    eprintln!(
        "writing {} products ({} B snapshots) and {} outbox rows…",
        args.products,
        template.len(),
        args.products * TARGETS.len() as u64
    );
    let build = Instant::now();
    let n = args.products;
    let db_path = db.clone();
    tokio::task::spawn_blocking(move || fill(&db_path, n, &template, &template_uuid))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("filling the database: {e}"))?;
    let build_db_s = build.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    // Drop the database from the page cache? Not possible without root; a warm cache is
    // what a restarted daemon on a busy host sees too.
    applies.store(0, Ordering::SeqCst);

    eprintln!(
        "starting the daemon on {:.0} MiB of database…",
        mib(db_bytes / 1024)
    );
    let running = start_daemon(&config_path)?;
    let pid = running.child.id();
    let start_to_ready_s = running.ready_after.as_secs_f64();
    let expected = args.products * TARGETS.len() as u64;
    let drain_started = Instant::now();
    let mut samples = Vec::new();
    let mut last_report = Instant::now();
    let drained = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(rss) = proc_status_kib(pid, "VmRSS:") {
            samples.push(mib(rss));
        }
        let done = applies.load(Ordering::Relaxed);
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {done}/{expected} applied, {:.0}/s, RSS {:.1} MiB",
                done as f64 / drain_started.elapsed().as_secs_f64(),
                samples.last().copied().unwrap_or(0.0)
            );
        }
        if done >= expected {
            // Applied at the target; wait for the outcomes to be committed.
            let settle = Instant::now();
            while outbox_rows(&db) > 0 && settle.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break outbox_rows(&db) == 0;
        }
        if drain_started.elapsed().as_secs_f64() > args.drain_limit {
            break false;
        }
    };
    let drain_s = drain_started.elapsed().as_secs_f64();
    let done = applies.load(Ordering::Relaxed);
    let peak_rss_mib = proc_status_kib(pid, "VmHWM:").map(mib).unwrap_or(f64::NAN);
    stop(running.child)?;

    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let rss_samples_mib = if sorted.is_empty() {
        Vec::new()
    } else {
        vec![
            sorted[0],
            sorted[sorted.len() / 2],
            *samples.last().unwrap(),
        ]
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let results = Results {
        products: args.products,
        targets: TARGETS.len(),
        outbox_rows: expected,
        concurrency_per_target: args.concurrency,
        db_bytes,
        build_db_s,
        start_to_ready_s,
        ready_goal_s: READY_GOAL_S,
        peak_rss_mib,
        rss_goal_mib: RSS_GOAL_MIB,
        rss_samples_mib,
        drained,
        applies: done,
        drain_s,
        applies_per_s: done as f64 / drain_s,
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
    };
    print_table(&results);
    if let Some(parent) = args.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &args.json,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .map_err(|e| format!("{}: {e}", args.json.display()))?;
    println!("written to {}", args.json.display());
    Ok(results)
}

fn print_table(r: &Results) {
    let goal = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "\nscale: {} products × {} targets = {} outbox rows, {:.0} MiB database (written in {:.1} s); {} CPUs ({})",
        r.products,
        r.targets,
        r.outbox_rows,
        r.db_bytes as f64 / (1 << 20) as f64,
        r.build_db_s,
        r.nproc,
        r.cpu_model
    );
    println!("| measure | value | goal |");
    println!("| --- | --- | --- |");
    println!(
        "| start to ready (`pimsync listening on`) | {:.3} s | < {} s: {} |",
        r.start_to_ready_s,
        r.ready_goal_s,
        goal(r.start_to_ready_s < r.ready_goal_s)
    );
    println!(
        "| peak RSS while draining (VmHWM) | {:.1} MiB | < {} MiB: {} |",
        r.peak_rss_mib,
        r.rss_goal_mib,
        goal(r.peak_rss_mib < r.rss_goal_mib)
    );
    println!(
        "| RSS samples min / median / last | {} MiB | |",
        r.rss_samples_mib
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| time to drain ({} per target) | {} {:.1} s | |",
        r.concurrency_per_target,
        if r.drained { "" } else { "NOT DRAINED after" },
        r.drain_s
    );
    println!(
        "| applies / s | {:.0} ({} of {}) | |",
        r.applies_per_s, r.applies, r.outbox_rows
    );
}
