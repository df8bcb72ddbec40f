//! Reads the TOML text into `Config`, collecting every error with its key path.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

use super::reader::{Ctx, Section};
use super::{Config, ServerConfig, StoreConfig};

/// One problem in the config file, e.g. `targets[1].shopify.shop: must end in .myshopify.com`.
/// `path` is empty for problems with the file as a whole (unreadable, TOML syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn whole_file(message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message,
        }])
    }
}

/// Where `{ env = … }`, `{ file = … }` and `{ credential = … }` secrets are read from;
/// tests supply their own.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// The real process environment and file system. systemd credentials are read from
/// `$CREDENTIALS_DIRECTORY/<name>` through these two calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    /// A variable that is not valid UTF-8 counts as unset.
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).and_then(|v| v.into_string().ok())
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(super) const DEFAULT_BODY_LIMIT: u64 = 1 << 20;
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_STORE_PATH: &str = "pimsync.db";
pub(super) const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub(super) const DEFAULT_INBOX_MAX_ROWS: u64 = 1_000_000;
pub(super) const DEFAULT_MAX_BATCH: u64 = 1024;
pub(super) const MAX_MAX_BATCH: u64 = 65536;
pub(super) const DEFAULT_QUEUE_CAPACITY: u64 = 8192;
pub(super) const MAX_WORKER_THREADS: u64 = 1024;

impl Config {
    /// Reads the config file; relative paths in it resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::whole_file(format!("cannot read config file {}: {e}", path.display()))
        })?;
        // Absolute, so paths stay right if the daemon later changes directory.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = absolute.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, base_dir, &SystemEnvironment)
    }

    /// Parses and validates a config, reporting every problem at once. Relative paths
    /// resolve against `base_dir`; secrets are resolved through `env`.
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> Result<Config, ConfigErrors> {
        let root = DeTable::parse(text).map_err(|e| syntax_error(text, &e))?;
        let ctx = Ctx::new(env, base_dir);
        // Errors about missing top-level keys sort after everything in the file.
        let mut root = Section::new(&ctx, String::new(), root.get_ref(), text.len());
        let empty = DeTable::new();

        let server = match root.subsection("server") {
            Some(section) => read_server(section),
            None => read_server(Section::new(&ctx, "server".into(), &empty, text.len())),
        };
        let store = match root.subsection("store") {
            Some(section) => read_store(section),
            None => read_store(Section::new(&ctx, "store".into(), &empty, text.len())),
        };
        let sources = read_sources(&mut root);
        let targets = super::targets::read_targets(&mut root);
        let schedules = super::schedules::read_schedules(&mut root, &sources, &targets);
        let admin = super::schedules::read_admin(&mut root);
        root.finish();
        if let (Some(sources), Some(targets)) = (&sources, &targets) {
            for (i, source) in sources.iter().enumerate() {
                let Some(echo_of) = &source.echo_of else {
                    continue;
                };
                if !targets.iter().any(|t| &t.name == echo_of) {
                    let msg = format!("no target is named \"{echo_of}\"");
                    ctx.error(text.len(), format!("sources[{i}].echo_of"), msg);
                }
            }
        }

        if let (false, Some(server), Some(store), Some(sources), Some(targets), Some(schedules)) =
            (ctx.has_errors(), server, store, sources, targets, schedules)
        {
            return Ok(Config {
                server,
                store,
                sources,
                targets,
                schedules,
                admin,
            });
        }
        if !ctx.has_errors() {
            // A reader returned nothing without saying why; never accept that.
            ctx.error(text.len(), "", "internal error: incomplete configuration");
        }
        Err(ConfigErrors(ctx.into_errors()))
    }
}

/// One error with the line and column, rather than toml's multi-line rendering.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigErrors {
    let at = error.span().map_or(0, |span| span.start);
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ConfigErrors::whole_file(format!(
        "TOML syntax error at line {line}, column {column}: {}",
        error.message()
    ))
}

fn read_server(mut s: Section<'_, '_>) -> Option<ServerConfig> {
    let listen = s.optional_str("listen");
    let listen = listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let msg = format!(
                "invalid socket address \"{listen}\" (expected e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")"
            );
            s.invalid("listen", msg);
            None
        }
    };
    let body_limit = s.size("body_limit", DEFAULT_BODY_LIMIT);
    if body_limit == 0 {
        s.invalid("body_limit", "must be greater than 0");
    }
    let body_limit = usize::try_from(body_limit).ok().or_else(|| {
        s.invalid("body_limit", "too large for this platform");
        None
    });
    let request_timeout = s.duration("request_timeout", DEFAULT_REQUEST_TIMEOUT);
    if request_timeout.is_zero() {
        s.invalid("request_timeout", "must be greater than 0");
    }
    let shutdown_grace = s.duration("shutdown_grace", DEFAULT_SHUTDOWN_GRACE);
    let worker_threads = s.optional_integer("worker_threads");
    if worker_threads.is_some_and(|n| !(1..=MAX_WORKER_THREADS).contains(&n)) {
        s.invalid(
            "worker_threads",
            format!("must be between 1 and {MAX_WORKER_THREADS}"),
        );
    }
    s.finish();
    Some(ServerConfig {
        listen: listen?,
        body_limit: body_limit?,
        request_timeout,
        shutdown_grace,
        // Checked above to be at most MAX_WORKER_THREADS.
        worker_threads: worker_threads.map(|n| usize::try_from(n).unwrap_or(1)),
    })
}

fn read_store(mut s: Section<'_, '_>) -> Option<StoreConfig> {
    let path = s.optional_str("path");
    if path.as_deref() == Some("") {
        s.invalid("path", "must not be empty");
    }
    let path = s
        .ctx()
        .resolve_path(path.as_deref().unwrap_or(DEFAULT_STORE_PATH));
    let inbox_retention = s.duration("inbox_retention", DEFAULT_INBOX_RETENTION);
    if inbox_retention.is_zero() {
        s.invalid("inbox_retention", "must be greater than 0");
    }
    let inbox_max_rows = s.integer("inbox_max_rows", DEFAULT_INBOX_MAX_ROWS);
    let max_batch = s.integer("max_batch", DEFAULT_MAX_BATCH);
    if !(1..=MAX_MAX_BATCH).contains(&max_batch) {
        s.invalid(
            "max_batch",
            format!("must be between 1 and {MAX_MAX_BATCH}"),
        );
    }
    let queue_capacity = s.integer("queue_capacity", DEFAULT_QUEUE_CAPACITY);
    if queue_capacity == 0 {
        s.invalid("queue_capacity", "must be at least 1");
    }
    let queue_capacity = usize::try_from(queue_capacity).ok().or_else(|| {
        s.invalid("queue_capacity", "too large for this platform");
        None
    });
    // 0 = no limit; a limit smaller than an empty database could never be met.
    let max_size = s.size("max_size", 0);
    if max_size != 0 && max_size < 1024 * 1024 {
        s.invalid("max_size", "must be 0 (no limit) or at least 1MiB");
    }
    s.finish();
    Some(StoreConfig {
        path,
        inbox_retention,
        inbox_max_rows,
        // Checked above to be at most 65536.
        max_batch: usize::try_from(max_batch).unwrap_or(usize::MAX),
        queue_capacity: queue_capacity?,
        max_size,
    })
}

fn read_sources(root: &mut Section<'_, '_>) -> Option<Vec<super::SourceConfig>> {
    match root.array_len("sources") {
        None if !root.has("sources") => {
            root.invalid("sources", "at least one [[sources]] entry is required");
        }
        Some(0) => root.invalid("sources", "at least one source is required"),
        _ => {}
    }
    let sections = root.tables("sources");
    let mut names = Unique::default();
    let mut paths = Unique::default();
    let mut out = Some(Vec::new());
    for section in sections {
        let source = super::sources::read_source(section, &mut names, &mut paths);
        match (source, out.as_mut()) {
            (Some(source), Some(list)) => list.push(source),
            _ => out = None,
        }
    }
    out
}

/// Detects a name or path used twice and names the entry that used it first.
#[derive(Default)]
pub(super) struct Unique {
    seen: HashMap<String, String>,
}

impl Unique {
    /// Returns false (after reporting) if `value` was already used by another entry.
    pub fn check(&mut self, s: &Section<'_, '_>, key: &str, what: &str, value: &str) -> bool {
        match self.seen.get(value) {
            Some(first) => {
                s.invalid(
                    key,
                    format!("duplicate {what} \"{value}\" (also used by {first})"),
                );
                false
            }
            None => {
                self.seen.insert(value.to_string(), s.path().to_string());
                true
            }
        }
    }
}

/// Names end up in URLs, metrics labels and the store; keep them to a safe alphabet.
pub(super) fn check_name(s: &Section<'_, '_>, name: &str) -> bool {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        s.invalid(
            "name",
            "must be non-empty and contain only a-z, 0-9, '_' and '-'",
        );
    }
    ok
}
