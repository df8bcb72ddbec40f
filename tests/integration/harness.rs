//! Starting and stopping the real binary, and reading its database.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const AKENEO_SECRET: &str = "akeneo-test-secret";
/// `whsec_` + base64 of 32 bytes.
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const EP_PRIMARY: &str = "ep-primary-secret";
pub const EP_SECONDARY: &str = "ep-secondary-secret";
pub const HMAC_SECRET: &str = "github-style-secret";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pimsync")
}

/// A config with one source of each format and three targets. `extra_store` lands in
/// `[store]`, `extra_server` in `[server]`.
pub fn config_text(dir: &Path, extra_server: &str, extra_store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra_server}

[store]
path = "{db}"
{extra_store}

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "{AKENEO_SECRET}"

[[sources]]
name = "event-platform"
path = "/webhooks/akeneo-ep"
format = "akeneo-event-platform"
primary_secret = "{EP_PRIMARY}"
secondary_secret = "{EP_SECONDARY}"

[[sources]]
name = "wisepim"
path = "/webhooks/standard"
format = "standard-webhooks"
secrets = ["{WHSEC}"]

[[sources]]
name = "middleware"
path = "/webhooks/hmac"
format = "hmac"
header = "X-Hub-Signature-256"
prefix = "sha256="
encoding = "hex"
secret = "{HMAC_SECRET}"
delivery_id_header = "X-GitHub-Delivery"

[[targets]]
name = "shop"
kind = "log"
log = {{ path = "{logs}/shop.jsonl" }}

[[targets]]
name = "chairs-store"
kind = "log"
log = {{ path = "{logs}/chairs-store.jsonl" }}
[targets.filter]
families = ["chairs"]

[[targets]]
name = "erp"
kind = "log"
log = {{ path = "{logs}/erp.jsonl" }}
"#,
        db = dir.join("pimsync.db").display(),
        logs = dir.display()
    )
}

/// The real binary, serving on a port it chose.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let config_path = dir.join("pimsync.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            // The caller's variables win (RUST_LOG included).
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("pimsync listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("pimsync did not report its address: {:?}", child.wait());
            }
        };
        Daemon {
            child,
            addr,
            db: dir.join("pimsync.db"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the database the way an operator's sqlite3 would.
pub fn db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

pub fn count(path: &Path, sql: &str) -> i64 {
    db(path).query_row(sql, [], |row| row.get(0)).unwrap()
}

/// The first column of every row, as text.
pub fn rows(path: &Path, sql: &str) -> Vec<String> {
    let conn = db(path);
    let mut statement = conn.prepare(sql).unwrap();
    let rows = statement.query_map([], |row| row.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// The targets a product was routed to: those still to apply it and those that have.
pub fn routed_targets(path: &Path, key: &str) -> i64 {
    db(path)
        .query_row(
            "SELECT count(*) FROM (SELECT target FROM outbox WHERE product_key = ?1
                                   UNION SELECT target FROM applied WHERE product_key = ?1)",
            [key],
            |row| row.get(0),
        )
        .unwrap()
}

/// One Akeneo source and one `http` target pointing at a fake, with fast retries.
pub fn delivery_config_text(dir: &Path, target_url: &str, extra_delivery: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "2s"

[store]
path = "{db}"

[[sources]]
name = "akeneo"
path = "/webhooks/akeneo"
format = "akeneo"
secret = "{AKENEO_SECRET}"

[[targets]]
name = "erp"
kind = "http"
[targets.http]
base_url = "{target_url}"
[targets.delivery]
concurrency = 4
retry_base = "50ms"
retry_cap = "200ms"
request_timeout = "5s"
lease_timeout = "30s"
{extra_delivery}
"#,
        db = dir.join("pimsync.db").display()
    )
}
