//! Durable-ingest benchmark: signed webhooks per second that the real `pimsync serve`
//! binary (its own process, fresh database per level) commits to SQLite and answers 202,
//! at several numbers of keep-alive connections, with latency percentiles, both
//! processes' CPU use, and a check after each level that every 202 is on disk.
//! See `bench/README.md`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pimsync::simulate::{self, Edit, SignedRequest};
use serde::Serialize;
use tokio::time::Instant;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SECRET: &[u8] = b"bench-secret";
const WEBHOOK_PATH: &str = "/webhooks/akeneo";
const BODY_SIZE: usize = 1024;
/// Distinct product keys across all connections of a level.
const KEYSPACE: u64 = 100_000;
/// More non-202 answers than this fraction of all answers fails the run.
const MAX_NOT_ACCEPTED: f64 = 0.001;
const USAGE: &str = "usage: cargo bench --bench ingest -- [--connections 16,64,256] \
                     [--seconds 10] [--warmup 2] [--json PATH] [--dir DIR] [--no-baseline]";

struct Args {
    connections: Vec<usize>,
    seconds: f64,
    warmup: f64,
    json: PathBuf,
    /// Where each level's database directory is created (fsync cost depends on the disk).
    dir: PathBuf,
    /// Also run 64 connections with one request per transaction (`store.max_batch = 1`),
    /// the design group commit replaces, as a baseline measured in the same run.
    baseline: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        connections: vec![16, 64, 256],
        seconds: 10.0,
        warmup: 2.0,
        json: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/ingest.json"),
        dir: std::env::temp_dir(),
        baseline: true,
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
            "--seconds" => args.seconds = seconds(value()?)?,
            "--warmup" => args.warmup = seconds(value()?)?,
            "--json" => args.json = PathBuf::from(value()?),
            "--dir" => args.dir = PathBuf::from(value()?),
            "--no-baseline" => args.baseline = false,
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
struct Machine {
    nproc: usize,
    cpu_model: String,
    db_dir: PathBuf,
    db_filesystem: String,
}

#[derive(Serialize)]
struct Level {
    connections: usize,
    /// The daemon's `store.max_batch`: 1 is the one-row-per-transaction baseline.
    max_batch: usize,
    /// Answers completed inside the measured window (after warmup).
    requests: u64,
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Answers other than 202 over the whole level (warmup included), by status or error.
    non_202: u64,
    non_202_by_status: BTreeMap<String, u64>,
    /// 202s over the whole level (warmup included): each must be a row in the inbox.
    accepted_total: u64,
    inbox_rows: u64,
    inbox_verified: bool,
    /// CPU time over the measured window, in % of one core.
    server_cpu_pct: f64,
    loadgen_cpu_pct: f64,
    daemon_exit_ok: bool,
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
    println!("pimsync {VERSION} durable-ingest benchmark");
    let Machine {
        nproc,
        cpu_model,
        db_dir,
        db_filesystem: fs,
    } = &machine;
    println!(
        "machine: {nproc} CPU(s), {cpu_model}; databases in {} ({fs})",
        db_dir.display()
    );
    if fs == "tmpfs" {
        println!("WARNING: fsync is free on tmpfs; use --dir on a real disk for durable numbers");
    }
    println!(
        "load: signed {BODY_SIZE}-byte Akeneo product.updated webhooks, one closed loop per \
         keep-alive connection, {KEYSPACE} products; {}s warmup + {}s measured per level\n",
        args.warmup, args.seconds
    );
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cannot start the load generator's runtime");
        return ExitCode::FAILURE;
    };

    let mut levels = Vec::new();
    let mut failed = false;
    let mut runs: Vec<(usize, usize)> = args.connections.iter().map(|&c| (c, 1024)).collect();
    if args.baseline {
        runs.push((64, 1));
    }
    for (connections, max_batch) in runs {
        match run_level(&runtime, &args, connections, max_batch) {
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
        "keyspace": KEYSPACE,
        "levels": levels,
    });
    let json = args.json.display();
    match write_json(&args.json, &report) {
        Ok(()) => println!("\nwrote {json}"),
        Err(error) => {
            eprintln!("!!! cannot write {json}: {error}");
            failed = true;
        }
    }
    if failed {
        eprintln!("\nFAILED: see the messages above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Reports a level's problems loudly; true if the level fails the run.
fn check(level: &Level) -> bool {
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

fn run_level(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    connections: usize,
    max_batch: usize,
) -> Result<Level, String> {
    let dir = tempfile::Builder::new()
        .prefix("pimsync-bench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("creating a directory in {}: {e}", args.dir.display()))?;
    let db = dir.path().join("bench.db");
    let mut server = Server::start(dir.path(), &db, max_batch)?;
    let (pid, addr) = (server.child.id(), server.addr);
    println!("{connections} connections, max_batch {max_batch}: daemon pid {pid} on {addr}");

    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.seconds);
    let (tally, server_cpu, loadgen_cpu) =
        runtime.block_on(drive(addr, pid, connections, warmup, measure));
    let exit = server.stop()?;
    if !exit.success() {
        eprintln!("daemon {exit}; its stderr ends:\n{}", server.stderr_tail());
    }
    let inbox_rows = count_inbox(&db)?;

    let hist = &tally.histogram;
    let ms = |us: u64| us as f64 / 1000.0;
    let seconds = measure.as_secs_f64();
    let level = Level {
        connections,
        max_batch,
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
        server_cpu_pct: server_cpu * 100.0 / seconds,
        loadgen_cpu_pct: loadgen_cpu * 100.0 / seconds,
        daemon_exit_ok: exit.success(),
    };
    let (requests, rate, acked) = (level.requests, level.req_per_s, level.accepted_total);
    println!("  {requests} measured ({rate:.0}/s), {acked} got 202, {inbox_rows} in the inbox");
    Ok(level)
}

/// The daemon under test: the real binary in its own process.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr_path: PathBuf,
}

impl Server {
    fn start(dir: &Path, db: &Path, max_batch: usize) -> Result<Server, String> {
        let config_path = dir.join("pimsync.toml");
        std::fs::write(&config_path, config_toml(db, max_batch))
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let stderr_path = dir.join("pimsync.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(env!("CARGO_BIN_EXE_pimsync"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", env!("CARGO_BIN_EXE_pimsync")))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_path,
        };
        let stdout = server.child.stdout.take().ok_or("no stdout pipe")?;
        let mut stdout = BufReader::new(stdout);
        let listening = (&mut stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let addr = line.trim().strip_prefix("pimsync listening on ")?.parse();
                addr.ok()
            });
        let Some(addr) = listening else {
            let _ = server.child.wait();
            let stderr = server.stderr_tail();
            return Err(format!("the daemon exited without listening:\n{stderr}"));
        };
        server.addr = addr;
        // Keep reading stdout (log targets print there) so the daemon never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(server)
    }

    /// SIGTERM, then wait for the graceful shutdown (up to a minute).
    fn stop(&mut self) -> Result<ExitStatus, String> {
        // SAFETY: kill(2) on the pid of our child, which has not been reaped yet.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
            let error = std::io::Error::last_os_error();
            return Err(format!("SIGTERM failed: {error}"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for the daemon: {e}")),
            }
        }
        Err("the daemon did not stop within 60 s of SIGTERM".into())
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a daemon behind, e.g. when a level fails half-way.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Three targets, as in production, whose delivery is throttled to a trickle so that this
/// measures ingest alone (outbox rows are written, hardly any are applied).
fn config_toml(db: &Path, max_batch: usize) -> String {
    // Displays as a quoted, escaped TOML string.
    let db = toml::Value::String(db.display().to_string());
    let targets = ["shopify-sim", "magento-sim", "erp-sim"]
        .map(|name| {
            format!(
                "\n[[targets]]\nname = \"{name}\"\nkind = \"log\"\nlog = {{ path = \"/dev/null\" }}\n\
                 [targets.delivery]\nconcurrency = 1\nrate_limit = 1\nburst = 1\n"
            )
        })
        .concat();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[store]
path = {db}
max_batch = {max_batch}
[[sources]]
name = "akeneo"
path = "{WEBHOOK_PATH}"
format = "akeneo"
secret = "bench-secret"
{targets}"#
    )
}

fn count_inbox(db: &Path) -> Result<u64, String> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    conn.query_row("SELECT count(*) FROM inbox", [], |row| row.get(0))
        .map_err(|e| format!("counting the inbox of {}: {e}", db.display()))
}

/// Answers counted by one connection or a whole level: latencies (µs) of the answers
/// completed inside the measured window; counts over the whole level, warmup included.
struct Tally {
    histogram: Histogram<u64>,
    accepted: u64,
    not_accepted: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        // 1 µs to 10 min, 3 significant digits; slower answers are clamped.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3);
        let histogram = histogram.unwrap_or_else(|_| unreachable!("valid bounds"));
        Tally {
            histogram,
            accepted: 0,
            not_accepted: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.accepted += other.accepted;
        for (what, n) in other.not_accepted {
            *self.not_accepted.entry(what).or_default() += n;
        }
    }
}

/// Runs `connections` closed loops through warmup and the measured window; returns their
/// tally and the daemon's and this process's CPU seconds over the window.
async fn drive(
    addr: SocketAddr,
    server_pid: u32,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> (Tally, f64, f64) {
    let start = Instant::now();
    let window = (start + warmup, start + warmup + measure);
    let keys = (KEYSPACE / connections as u64).max(1);
    let base_us = simulate::unix_now() * 1_000_000;
    let tasks: Vec<_> = (0..connections)
        .map(|conn| tokio::spawn(connection_loop(addr, conn, keys, base_us, window)))
        .collect();
    let cpu = || (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    tokio::time::sleep_until(window.0).await;
    let before = cpu();
    tokio::time::sleep_until(window.1).await;
    let after = cpu();
    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(error) => {
                let what = format!("load task failed: {error}");
                *total.not_accepted.entry(what).or_default() += 1;
            }
        }
    }
    (total, after.0 - before.0, after.1 - before.1)
}

/// One keep-alive connection sending webhooks back to back until the window closes.
async fn connection_loop(
    addr: SocketAddr,
    conn: usize,
    keys: u64,
    base_us: i64,
    (measure_from, measure_until): (Instant, Instant),
) -> Tally {
    let mut tally = Tally::new();
    let host = addr.to_string();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut seq: u64 = 0;
    while Instant::now() < measure_until {
        let send = match &mut sender {
            Some(send) => send,
            None => match connect(addr).await {
                Ok(send) => sender.insert(send),
                Err(error) => {
                    *tally.not_accepted.entry(error).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // This connection's own products, each getting ever newer versions as keys wrap.
        let key = format!("B-{conn}-{}", seq % keys);
        let edit = Edit {
            key: &key,
            family: if seq % 2 == 0 { "chairs" } else { "tables" },
            updated_us: base_us + seq as i64,
            price_cents: 1000 + (seq % 9000) as i64,
            stock: (seq % 100) as i64,
            body_size: BODY_SIZE,
        };
        let request = simulate::akeneo_product_updated(SECRET, simulate::unix_now(), &edit);
        seq += 1;
        let sent = Instant::now();
        let outcome = post(send, &host, &request).await;
        let done = Instant::now();
        match outcome {
            Ok(202) => tally.accepted += 1,
            Ok(status) => *tally.not_accepted.entry(status.to_string()).or_default() += 1,
            Err(error) => {
                *tally.not_accepted.entry(error).or_default() += 1;
                sender = None;
            }
        }
        if done >= measure_from && done < measure_until {
            let micros = done.duration_since(sent).as_micros() as u64;
            tally.histogram.saturating_record(micros.max(1));
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await;
    let stream = stream.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let handshake = http1::handshake(TokioIo::new(stream)).await;
    let (send, connection) = handshake.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(send)
}

/// POSTs one webhook on the connection and reads the whole answer; returns the status.
async fn post(
    send: &mut SendRequest<Full<Bytes>>,
    host: &str,
    request: &SignedRequest,
) -> Result<u16, String> {
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut builder = hyper::Request::post(WEBHOOK_PATH).header("host", host);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let body = Full::new(request.body.clone());
    let http_request = builder.body(body).map_err(|e| format!("request: {e}"))?;
    let response = send.send_request(http_request).await;
    let (head, body) = response.map_err(|e| format!("send: {e}"))?.into_parts();
    body.collect().await.map_err(|e| format!("body: {e}"))?;
    Ok(head.status.as_u16())
}

/// User + system CPU seconds a process has used so far, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields 3 (state) onwards follow the parenthesised command name; utime and stime
    // are fields 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = (rest.split_whitespace().skip(11).take(2))
        .map(|f| f.parse::<f64>().unwrap_or(f64::NAN))
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn machine(db_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = (cpuinfo.lines())
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim())
        .to_owned();
    // The filesystem of the longest mount point holding the databases.
    let db_dir = db_dir.canonicalize().unwrap_or_else(|_| db_dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let db_filesystem = (mounts.lines())
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (mount, fs) = (fields.next()?, fields.next()?);
            db_dir
                .starts_with(mount)
                .then(|| (mount.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or("unknown".to_owned(), |(_, fs)| fs);
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        db_dir,
        db_filesystem,
    }
}

fn print_table(levels: &[Level]) {
    let row = |cells: &[String]| {
        let widths = [11, 9, 9, 9, 8, 8, 8, 8, 24, 8, 8];
        let cells = cells.iter().zip(widths).map(|(c, w)| format!("{c:>w$}"));
        println!("{}", cells.collect::<Vec<_>>().join(" "));
    };
    let header = "connections|max_batch|requests|req/s|p50 ms|p99 ms|max ms|non-202|inbox rows ≥ 202s|srv CPU|gen CPU";
    println!();
    row(&header.split('|').map(str::to_owned).collect::<Vec<_>>());
    for l in levels {
        let verdict = if l.inbox_verified { "ok" } else { "MISSING" };
        row(&[
            l.connections.to_string(),
            l.max_batch.to_string(),
            l.requests.to_string(),
            format!("{:.0}", l.req_per_s),
            format!("{:.2}", l.p50_ms),
            format!("{:.2}", l.p99_ms),
            format!("{:.2}", l.max_ms),
            l.non_202.to_string(),
            format!("{} ≥ {} {verdict}", l.inbox_rows, l.accepted_total),
            format!("{:.0}%", l.server_cpu_pct),
            format!("{:.0}%", l.loadgen_cpu_pct),
        ]);
    }
}

fn write_json(path: &Path, report: &serde_json::Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
