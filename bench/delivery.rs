//! Delivery benchmark: the real `pimsync serve` binary (its own process, fresh database per
//! run) delivering to a fake `http` target that lives in this process.
//!
//! 1. Throughput: the fake holds every request at a gate; P products are ingested and
//!    acknowledged, then the gate opens and the time until the fake has received all P is
//!    measured (applies/s), and until the outbox is empty. After SIGTERM the database must
//!    hold an empty outbox and P `applied` rows.
//! 2. Latency: with the gate open, one webhook at a time at a modest rate, each for a new
//!    product; latency is from starting the POST to the fake receiving that product's PUT.
//! 3. Coalescing: 1,000 edits of one product within one second (spread over 8
//!    connections, versions rising); how many applies the target gets for it, with a target
//!    answering at once and one answering after 100 ms.
//!
//! See `bench/README.md`.

#[path = "delivery/coalescing.rs"]
pub mod coalescing;
#[path = "common/mod.rs"]
mod common;
#[path = "delivery/fake.rs"]
mod fake;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coalescing::{print_coalescing, run_coalescing};
use common::{
    BODY_SIZE, Machine, Server, VERSION, connect, count, cpu_seconds, daemon_config, finish,
    machine, post, webhook,
};
use fake::Fake;
use hdrhistogram::Histogram;
use pimsync::simulate;
use serde::Serialize;
use tokio::time::Instant;

pub const GOAL_APPLIES_PER_S: f64 = 10_000.0;
pub const GOAL_P50_MS: f64 = 10.0;
pub const GOAL_P99_MS: f64 = 50.0;
/// Applies of one product after 1,000 edits within a second.
pub const GOAL_COALESCED_APPLIES: u64 = 2;
const USAGE: &str = "usage: cargo bench --bench delivery -- [--products 20000] \
                     [--concurrency 16,32,64] [--connections 32] [--latency-rate 200] \
                     [--latency-seconds 10] [--coalesce-edits 1000] [--coalesce-delays-ms 0,100] \
                     [--no-coalescing] [--timeout 120] [--json PATH] [--dir DIR]";

pub struct Args {
    pub products: u64,
    /// `delivery.concurrency` of the target, one throughput run each; the latency run
    /// uses the last.
    pub concurrency: Vec<usize>,
    /// Keep-alive connections that ingest the products of a throughput run.
    pub connections: usize,
    pub latency_rate: f64,
    pub latency_seconds: f64,
    /// How long a run may wait for every product to reach the fake.
    pub timeout: Duration,
    pub json: PathBuf,
    pub dir: PathBuf,
    /// Edits of one product sent within one second (0 = no coalescing run).
    pub coalesce_edits: u64,
    /// One coalescing run per target answer delay, in milliseconds.
    pub coalesce_delays_ms: Vec<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        products: 20_000,
        concurrency: vec![16, 32, 64],
        connections: 32,
        latency_rate: 200.0,
        latency_seconds: 10.0,
        timeout: Duration::from_secs(120),
        json: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/delivery.json"),
        dir: std::env::temp_dir(),
        coalesce_edits: 1000,
        coalesce_delays_ms: vec![0, 100],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let positive = |v: String| match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(format!("{flag}: not a positive number: {v}")),
        };
        match flag.as_str() {
            "--bench" => {} // `cargo bench` passes it to every bench binary.
            "--products" => args.products = positive(value()?)? as u64,
            "--concurrency" => {
                args.concurrency = (value()?.split(','))
                    .map(|n| positive(n.to_owned()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?;
            }
            "--connections" => args.connections = positive(value()?)? as usize,
            "--latency-rate" => args.latency_rate = positive(value()?)?,
            "--latency-seconds" => args.latency_seconds = positive(value()?)?,
            "--coalesce-edits" => args.coalesce_edits = positive(value()?)? as u64,
            "--coalesce-delays-ms" => {
                args.coalesce_delays_ms = (value()?.split(','))
                    .map(|n| n.trim().parse::<u64>().map_err(|e| format!("{flag}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--no-coalescing" => args.coalesce_edits = 0,
            "--timeout" => args.timeout = Duration::from_secs_f64(positive(value()?)?),
            "--json" => args.json = PathBuf::from(value()?),
            "--dir" => args.dir = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.products == 0 || args.connections == 0 || args.concurrency.contains(&0) {
        return Err(format!("counts must be at least 1\n{USAGE}"));
    }
    // The daemon resolves a relative store path against its config file's directory.
    args.dir = std::path::absolute(&args.dir).map_err(|e| format!("--dir: {e}"))?;
    Ok(args)
}

#[derive(Serialize)]
pub struct Throughput {
    pub concurrency: usize,
    pub products: u64,
    pub ingest_per_s: f64,
    /// Answers other than 202 while ingesting (each was retried until 202).
    pub ingest_retries: u64,
    /// Requests waiting at the gate when it opened.
    pub held_at_gate: u64,
    /// From opening the gate to the last product's first request reaching the fake.
    pub deliver_seconds: f64,
    pub applies_per_s: f64,
    /// From opening the gate until the outbox is empty (every outcome committed).
    pub settle_seconds: f64,
    pub settled_per_s: f64,
    /// Requests the fake received: more than `products` means some were sent twice.
    pub requests: u64,
    /// CPU time from opening the gate until the outbox was empty, in % of one core.
    pub daemon_cpu_pct: f64,
    /// This process: the fake target (and the outbox polling).
    pub bench_cpu_pct: f64,
    pub outbox_rows_after: u64,
    pub applied_rows_after: u64,
    pub verified: bool,
    pub daemon_exit_ok: bool,
}

#[derive(Serialize)]
pub struct Latency {
    pub concurrency: usize,
    pub samples: u64,
    pub rate_per_s: f64,
    /// Starting the POST to the fake receiving the product's PUT.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Starting the POST to its 202 (the durable commit), for comparison.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub daemon_cpu_pct: f64,
    pub outbox_rows_after: u64,
    pub applied_rows_after: u64,
    pub verified: bool,
    pub daemon_exit_ok: bool,
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
    println!("pimsync {VERSION} delivery benchmark");
    machine.print();
    println!(
        "target: a fake `http` target in this process answering 200 at once; signed \
         {BODY_SIZE}-byte Akeneo webhooks\n"
    );
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cannot start the benchmark's runtime");
        return ExitCode::FAILURE;
    };

    let mut failed = false;
    let mut throughput = Vec::new();
    for &concurrency in &args.concurrency {
        match run_throughput(&runtime, &args, concurrency) {
            Ok(level) => {
                failed |= !level.verified || !level.daemon_exit_ok;
                throughput.push(level);
            }
            Err(error) => {
                eprintln!("!!! throughput, concurrency {concurrency}: FAILED: {error}");
                failed = true;
            }
        }
    }
    let concurrency = args.concurrency.last().copied().unwrap_or(32);
    let latency = match run_latency(&runtime, &args, concurrency) {
        Ok(latency) => {
            failed |= !latency.verified || !latency.daemon_exit_ok;
            Some(latency)
        }
        Err(error) => {
            eprintln!("!!! latency: FAILED: {error}");
            failed = true;
            None
        }
    };

    let mut coalescing = Vec::new();
    if args.coalesce_edits > 0 {
        for &delay in &args.coalesce_delays_ms {
            match run_coalescing(&runtime, &args, delay) {
                Ok(run) => {
                    failed |= !run.last_state_applied || !run.daemon_exit_ok;
                    coalescing.push(run);
                }
                Err(error) => {
                    eprintln!("!!! coalescing, target delay {delay} ms: FAILED: {error}");
                    failed = true;
                }
            }
        }
    }

    print_tables(&throughput, latency.as_ref());
    print_coalescing(&coalescing);
    let report = serde_json::json!({
        "benchmark": "delivery",
        "pimsync_version": VERSION,
        "machine": machine,
        "body_size": BODY_SIZE,
        "goals": {
            "applies_per_s": GOAL_APPLIES_PER_S,
            "latency_p50_ms": GOAL_P50_MS,
            "latency_p99_ms": GOAL_P99_MS,
            "coalesced_applies": GOAL_COALESCED_APPLIES,
        },
        "throughput": throughput,
        "latency": latency,
        "coalescing": coalescing,
    });
    finish(&args.json, &report, failed)
}

/// One `akeneo` source and the fake as the only target.
fn config_toml(db: &Path, fake: SocketAddr, concurrency: usize) -> String {
    // request_timeout: requests wait at the closed gate while the products are ingested.
    let targets = format!(
        r#"[[targets]]
name = "fake"
kind = "http"
[targets.http]
base_url = "http://{fake}"
[targets.delivery]
concurrency = {concurrency}
request_timeout = "120s"
"#
    );
    daemon_config(db, "", &targets)
}

pub fn run_throughput(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    concurrency: usize,
) -> Result<Throughput, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-delivbench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("creating a directory in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("bench.db");
    let fake = runtime.block_on(Fake::start(false))?;
    let mut server = Server::start(dir.path(), &config_toml(&db, fake.addr, concurrency))?;
    let (pid, addr) = (server.pid(), server.addr);
    let products = args.products;
    println!(
        "throughput, concurrency {concurrency}: daemon pid {pid} on {addr}, fake on {}",
        fake.addr
    );

    let measured = runtime.block_on(async {
        let started = Instant::now();
        let retries = ingest_all(addr, products, args.connections, args.timeout).await?;
        let ingest_s = started.elapsed().as_secs_f64();
        println!(
            "  {products} products acknowledged in {ingest_s:.2} s ({retries} retried non-202)"
        );
        // Let the dispatcher fill the gate, so it opens on a full pipeline.
        let held = (concurrency as u64).min(products) as usize;
        fake.wait_for(held, Duration::from_secs(10)).await;
        let held = fake.received() as u64;

        let cpu_before = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        let opened = Instant::now();
        fake.gate.send_replace(true);
        if !fake.wait_for(products as usize, args.timeout).await {
            let got = fake.received();
            return Err(format!(
                "only {got} of {products} products reached the fake within {:?}",
                args.timeout
            ));
        }
        let last = fake
            .state
            .arrivals()
            .values()
            .max()
            .copied()
            .unwrap_or(opened);
        let deliver_s = last.saturating_duration_since(opened).as_secs_f64();
        // Then every outcome committed: the outbox drains.
        let deadline = Instant::now() + args.timeout;
        while count(&db, "SELECT count(*) FROM outbox")? > 0 {
            if Instant::now() >= deadline {
                return Err("the outbox did not drain".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let settle_s = opened.elapsed().as_secs_f64();
        let cpu_after = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        let cpu = |before: f64, after: f64| (after - before) * 100.0 / settle_s;
        Ok((
            products as f64 / ingest_s,
            retries,
            held,
            deliver_s,
            settle_s,
            cpu(cpu_before.0, cpu_after.0),
            cpu(cpu_before.1, cpu_after.1),
        ))
    });
    let exit = server.stop()?;
    if !exit.success() {
        eprintln!("daemon {exit}; its stderr ends:\n{}", server.stderr_tail());
    }
    let (ingest_per_s, ingest_retries, held_at_gate, deliver_s, settle_s, daemon_cpu, bench_cpu) =
        measured?;
    let outbox = count(&db, "SELECT count(*) FROM outbox")?;
    let applied = count(&db, "SELECT count(*) FROM applied")?;
    let level = Throughput {
        concurrency,
        products,
        ingest_per_s,
        ingest_retries,
        held_at_gate,
        deliver_seconds: deliver_s,
        applies_per_s: products as f64 / deliver_s,
        settle_seconds: settle_s,
        settled_per_s: products as f64 / settle_s,
        requests: fake.state.requests.load(Ordering::Relaxed),
        daemon_cpu_pct: daemon_cpu,
        bench_cpu_pct: bench_cpu,
        outbox_rows_after: outbox,
        applied_rows_after: applied,
        verified: outbox == 0 && applied == products,
        daemon_exit_ok: exit.success(),
    };
    if !level.verified {
        eprintln!(
            "!!! after SIGTERM: {outbox} outbox rows (want 0), {applied} applied (want {products})"
        );
    }
    println!(
        "  delivered in {deliver_s:.3} s ({:.0} applies/s), outbox empty after {settle_s:.3} s; \
         {} requests; outbox {outbox}, applied {applied}",
        level.applies_per_s, level.requests
    );
    Ok(level)
}

/// Ingests products `P-0 … P-{n-1}` over `connections` keep-alive connections, retrying
/// each until it is acknowledged; returns how many answers were not 202.
async fn ingest_all(
    addr: SocketAddr,
    products: u64,
    connections: usize,
    timeout: Duration,
) -> Result<u64, String> {
    let base_us = simulate::unix_now() * 1_000_000;
    let deadline = Instant::now() + timeout;
    let tasks: Vec<_> = (0..connections as u64)
        .map(|conn| {
            tokio::spawn(async move {
                let host = addr.to_string();
                let mut sender = None;
                let mut retries = 0;
                for seq in (conn..products).step_by(connections) {
                    let request = webhook(&format!("P-{seq}"), seq, base_us + seq as i64);
                    loop {
                        if Instant::now() >= deadline {
                            return Err(format!("ingest did not finish within {timeout:?}"));
                        }
                        let send = match &mut sender {
                            Some(send) => send,
                            None => sender.insert(connect(addr).await?),
                        };
                        match post(send, &host, &request).await {
                            Ok(202) => break,
                            Ok(_) => retries += 1,
                            Err(_) => {
                                retries += 1;
                                sender = None;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Ok::<u64, String>(retries)
            })
        })
        .collect();
    let mut retries = 0;
    for task in tasks {
        retries += task.await.map_err(|e| format!("ingest task: {e}"))??;
    }
    Ok(retries)
}

pub fn run_latency(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    concurrency: usize,
) -> Result<Latency, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-delivbench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("creating a directory in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("bench.db");
    let fake = runtime.block_on(Fake::start(true))?;
    let mut server = Server::start(dir.path(), &config_toml(&db, fake.addr, concurrency))?;
    let (pid, addr) = (server.pid(), server.addr);
    let samples = (args.latency_rate * args.latency_seconds).round().max(1.0) as u64;
    let rate = args.latency_rate;
    println!(
        "latency, concurrency {concurrency}: daemon pid {pid} on {addr}; {samples} webhooks at {rate}/s"
    );

    let measured = runtime.block_on(async {
        let host = addr.to_string();
        let mut send = connect(addr).await?;
        let base_us = simulate::unix_now() * 1_000_000;
        let mut ack = histogram();
        let mut sent = Vec::with_capacity(samples as usize);
        let cpu_before = cpu_seconds(pid);
        let start = Instant::now();
        for seq in 0..samples {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate)).await;
            let key = format!("L-{seq}");
            let request = webhook(&key, seq, base_us + seq as i64);
            let posted = Instant::now();
            match post(&mut send, &host, &request).await {
                Ok(202) => {}
                other => return Err(format!("webhook {key}: answered {other:?}, not 202")),
            }
            ack.saturating_record((posted.elapsed().as_micros() as u64).max(1));
            sent.push((key, posted));
        }
        if !fake.wait_for(samples as usize, args.timeout).await {
            let got = fake.received();
            return Err(format!(
                "only {got} of {samples} products reached the fake within {:?}",
                args.timeout
            ));
        }
        let daemon_cpu = (cpu_seconds(pid) - cpu_before) * 100.0 / start.elapsed().as_secs_f64();
        let arrivals = fake.state.arrivals();
        let mut e2e = histogram();
        for (key, posted) in &sent {
            let arrived = arrivals.get(key).copied().unwrap_or(*posted);
            let micros = arrived.saturating_duration_since(*posted).as_micros() as u64;
            e2e.saturating_record(micros.max(1));
        }
        Ok((e2e, ack, daemon_cpu))
    });
    let exit = server.stop()?;
    if !exit.success() {
        eprintln!("daemon {exit}; its stderr ends:\n{}", server.stderr_tail());
    }
    let (e2e, ack, daemon_cpu_pct) = measured?;
    let outbox = count(&db, "SELECT count(*) FROM outbox")?;
    let applied = count(&db, "SELECT count(*) FROM applied")?;
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = Latency {
        concurrency,
        samples,
        rate_per_s: rate,
        p50_ms: ms(e2e.value_at_quantile(0.50)),
        p90_ms: ms(e2e.value_at_quantile(0.90)),
        p99_ms: ms(e2e.value_at_quantile(0.99)),
        max_ms: ms(e2e.max()),
        ack_p50_ms: ms(ack.value_at_quantile(0.50)),
        ack_p99_ms: ms(ack.value_at_quantile(0.99)),
        daemon_cpu_pct,
        outbox_rows_after: outbox,
        applied_rows_after: applied,
        verified: outbox == 0 && applied == samples,
        daemon_exit_ok: exit.success(),
    };
    if !latency.verified {
        eprintln!(
            "!!! after SIGTERM: {outbox} outbox rows (want 0), {applied} applied (want {samples})"
        );
    }
    Ok(latency)
}

/// 1 µs to 10 min, 3 significant digits; slower values are clamped.
fn histogram() -> Histogram<u64> {
    let histogram = Histogram::new_with_bounds(1, 600_000_000, 3);
    histogram.unwrap_or_else(|_| unreachable!("valid bounds"))
}

fn print_tables(throughput: &[Throughput], latency: Option<&Latency>) {
    let row = |cells: &[String], widths: &[usize]| {
        let cells = cells.iter().zip(widths).map(|(c, w)| format!("{c:>w$}"));
        println!("{}", cells.collect::<Vec<_>>().join(" "));
    };
    let split = |header: &str| header.split('|').map(str::to_owned).collect::<Vec<_>>();
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };

    let widths = [11, 8, 9, 8, 10, 11, 9, 11, 8, 10, 10, 15];
    println!("\nthroughput (goal ≥ {GOAL_APPLIES_PER_S:.0} applies/s)");
    let header = "concurrency|products|ingest/s|at gate|deliver s|applies/s|settle s|settled/s|requests|daemon CPU|bench CPU|outbox/applied";
    row(&split(header), &widths);
    for t in throughput {
        row(
            &[
                t.concurrency.to_string(),
                t.products.to_string(),
                format!("{:.0}", t.ingest_per_s),
                t.held_at_gate.to_string(),
                format!("{:.3}", t.deliver_seconds),
                format!(
                    "{:.0} {}",
                    t.applies_per_s,
                    mark(t.applies_per_s >= GOAL_APPLIES_PER_S)
                ),
                format!("{:.3}", t.settle_seconds),
                format!("{:.0}", t.settled_per_s),
                t.requests.to_string(),
                format!("{:.0}%", t.daemon_cpu_pct),
                format!("{:.0}%", t.bench_cpu_pct),
                format!("{}/{}", t.outbox_rows_after, t.applied_rows_after),
            ],
            &widths,
        );
    }
    let Some(l) = latency else { return };
    let widths = [11, 8, 6, 10, 10, 10, 9, 10, 10, 10, 15];
    println!(
        "\nend-to-end latency, idle target (goal p50 < {GOAL_P50_MS} ms, p99 < {GOAL_P99_MS} ms)"
    );
    let header = "concurrency|samples|rate/s|p50 ms|p90 ms|p99 ms|max ms|ack p50 ms|ack p99 ms|daemon CPU|outbox/applied";
    row(&split(header), &widths);
    row(
        &[
            l.concurrency.to_string(),
            l.samples.to_string(),
            format!("{:.0}", l.rate_per_s),
            format!("{:.2} {}", l.p50_ms, mark(l.p50_ms < GOAL_P50_MS)),
            format!("{:.2}", l.p90_ms),
            format!("{:.2} {}", l.p99_ms, mark(l.p99_ms < GOAL_P99_MS)),
            format!("{:.2}", l.max_ms),
            format!("{:.2}", l.ack_p50_ms),
            format!("{:.2}", l.ack_p99_ms),
            format!("{:.0}%", l.daemon_cpu_pct),
            format!("{}/{}", l.outbox_rows_after, l.applied_rows_after),
        ],
        &widths,
    );
}
