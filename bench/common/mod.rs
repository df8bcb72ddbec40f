//! What the benchmarks share: the daemon under test (the real `pimsync serve` binary in
//! its own process), signed webhook POSTs over keep-alive HTTP/1 connections, CPU use from
//! /proc, the machine description and the JSON report. Each bench file includes it with
//! `#[path = "common/mod.rs"] mod common;`.

// Each benchmark uses only part of this module.
#![allow(dead_code)]

pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pimsync::simulate::{self, Edit, SignedRequest};
use serde::Serialize;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const SECRET_TEXT: &str = "bench-secret";
pub const SECRET: &[u8] = SECRET_TEXT.as_bytes();
pub const WEBHOOK_PATH: &str = "/webhooks/akeneo";
/// The admin API's token in every benchmark config (`/metrics` does not need it).
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// The size of every benchmark webhook's body, in bytes.
pub const BODY_SIZE: usize = 1024;

/// Edit `seq` of product `key`: a signed Akeneo `product.updated` webhook saved at
/// `updated_us` (its version and its event time), whose price and stock change with `seq`.
pub fn webhook(key: &str, seq: u64, updated_us: i64) -> SignedRequest {
    let edit = Edit {
        key,
        family: if seq % 2 == 0 { "chairs" } else { "tables" },
        updated_us,
        price_cents: webhook_price(seq),
        stock: (seq % 100) as i64,
        body_size: BODY_SIZE,
    };
    simulate::akeneo_product_updated(SECRET, simulate::unix_now(), &edit)
}

/// The price `webhook` gives edit `seq`, in cents.
pub fn webhook_price(seq: u64) -> i64 {
    1000 + (seq % 9000) as i64
}

/// The daemon under test: the real binary in its own process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, for `/metrics` (None for a build that printed no admin line).
    pub admin: Option<SocketAddr>,
    stderr_path: PathBuf,
}

/// The daemon under test: this build's, or `PIMSYNC_BENCH_BIN` (another build, to compare
/// two versions on the same machine in the same hour).
pub fn daemon_binary() -> String {
    std::env::var("PIMSYNC_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pimsync").to_owned())
}

impl Server {
    /// Writes `config` to `dir/pimsync.toml`, starts `pimsync serve` on it and waits for
    /// its `pimsync listening on ADDR` line.
    pub fn start(dir: &Path, config: &str) -> Result<Server, String> {
        let config_path = dir.join("pimsync.toml");
        std::fs::write(&config_path, config)
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let stderr_path = dir.join("pimsync.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let binary = daemon_binary();
        let child = Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {binary}: {e}"))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            stderr_path,
        };
        let stdout = server.child.stdout.take().ok_or("no stdout pipe")?;
        let mut stdout = BufReader::new(stdout);
        // The admin listener is announced first, then the webhook listener.
        let mut admin = None;
        let listening = (&mut stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let line = line.trim();
                if let Some(addr) = line.strip_prefix("pimsync admin listening on ") {
                    admin = addr.parse().ok();
                    return None;
                }
                line.strip_prefix("pimsync listening on ")?.parse().ok()
            });
        server.admin = admin;
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the graceful shutdown (up to a minute).
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
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

    pub fn stderr_tail(&self) -> String {
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

/// A daemon config on loopback with the database at `db` (plus `store`, more `[store]`
/// lines) and the benchmarks' one Akeneo source, followed by `targets`.
pub fn daemon_config(db: &Path, store: &str, targets: &str) -> String {
    let db = toml_path(db);
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[store]
path = {db}
{store}
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"
[[sources]]
name = "akeneo"
path = "{WEBHOOK_PATH}"
format = "akeneo"
secret = "{SECRET_TEXT}"
{targets}"#
    )
}

/// The store writer's commit counters, read from the daemon's `/metrics`: how many
/// transactions, the jobs they carried, and the seconds they took (each since start).
#[derive(Debug, Clone, Copy, Default)]
pub struct Commits {
    pub transactions: f64,
    pub jobs: f64,
    pub seconds: f64,
}

impl std::ops::Sub for Commits {
    type Output = Commits;
    fn sub(self, earlier: Commits) -> Commits {
        Commits {
            transactions: self.transactions - earlier.transactions,
            jobs: self.jobs - earlier.jobs,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

/// One `GET /metrics` on the admin listener, over a plain blocking socket (it is called
/// twice per level, at the edges of the measured window).
pub fn commits(admin: SocketAddr) -> Result<Commits, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .map_err(|e| format!("metrics: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("metrics: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("metrics: {e}"))?;
    let value = |name: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .ok_or_else(|| format!("metrics: no {name}"))
    };
    Ok(Commits {
        transactions: value("pimsync_store_commit_batch_size_count")?,
        jobs: value("pimsync_store_commit_batch_size_sum")?,
        seconds: value("pimsync_store_commit_duration_seconds_sum")?,
    })
}

/// A path as a quoted, escaped TOML string.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// One `SELECT count(*) …` on a read-only connection to the database.
pub fn count(db: &Path, sql: &str) -> Result<u64, String> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    conn.query_row(sql, [], |row| row.get(0))
        .map_err(|e| format!("{sql} on {}: {e}", db.display()))
}

pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await;
    let stream = stream.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let handshake = http1::handshake(TokioIo::new(stream)).await;
    let (send, connection) = handshake.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(send)
}

/// POSTs one webhook on the connection and reads the whole answer; returns the status.
pub async fn post(
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
pub fn cpu_seconds(pid: u32) -> f64 {
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

/// CPU seconds the threads of `pid` named `name` (their `comm`) have used so far, summed,
/// from /proc/PID/task/TID/schedstat; 0 when there is no such thread.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut seconds = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let nanos: f64 = stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            seconds += nanos / 1e9;
        }
    }
    seconds
}

#[derive(Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub db_dir: PathBuf,
    pub db_filesystem: String,
}

pub fn machine(db_dir: &Path) -> Machine {
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

impl Machine {
    /// The report's header lines about the machine.
    pub fn print(&self) {
        let Machine {
            nproc,
            cpu_model,
            db_dir,
            db_filesystem: fs,
        } = self;
        println!(
            "machine: {nproc} CPU(s), {cpu_model}; databases in {} ({fs})",
            db_dir.display()
        );
        if fs == "tmpfs" {
            println!(
                "WARNING: fsync is free on tmpfs; use --dir on a real disk for durable numbers"
            );
        }
    }
}

/// Writes the report, says where, and turns the run's outcome into the exit code: a
/// report that cannot be written fails the run too.
pub fn finish(path: &Path, report: &serde_json::Value, failed: bool) -> std::process::ExitCode {
    let mut failed = failed;
    match write_json(path, report) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(error) => {
            eprintln!("!!! cannot write {}: {error}", path.display());
            failed = true;
        }
    }
    if failed {
        eprintln!("\nFAILED: see the messages above");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

pub fn write_json(path: &Path, report: &serde_json::Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
