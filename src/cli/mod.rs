//! The operator commands: `resync`, `status`, `dead`, `inbox`, `target`, `completions`. Each works
//! against the configured database, whether the daemon runs or not: reads use read-only
//! connections, writes a short-lived store of their own (SQLite WAL lets the two processes
//! share the file).

pub mod dead;
pub mod inbox;
pub mod resync;
pub mod status;
pub mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pimsync::config::{Config, Environment, SystemEnvironment};
use pimsync::store::Store;
use pimsync::store::ops::{ReadOnly, RowKey};

/// `--config FILE`, shared by every operator command.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArg {
    /// The daemon's config file (its `[store] path` names the database).
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Loads the config. The operator commands need neither secrets nor connectors, so a
/// config whose secrets cannot be resolved here (systemd credentials, variables only the
/// service has) is still accepted, with placeholders that nothing uses.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(config) => Ok(config),
        Err(strict) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            let base_dir = absolute.parent().unwrap_or(Path::new("."));
            Config::from_toml_str(&text, base_dir, &WithoutSecrets)
                .map_err(|_| anyhow::anyhow!("{} is invalid:\n{strict}", path.display()))
        }
    }
}

/// The real environment, with a placeholder for every secret it cannot provide.
struct WithoutSecrets;

/// Valid as a `whsec_` secret and as a plain one.
const PLACEHOLDER: &str = "whsec_cGltc3luYy1jbGktcGxhY2Vob2xkZXItc2VjcmV0MDA=";

impl Environment for WithoutSecrets {
    fn var(&self, name: &str) -> Option<String> {
        SystemEnvironment.var(name).or_else(|| {
            Some(if name == "CREDENTIALS_DIRECTORY" {
                "/nonexistent/pimsync-cli".into()
            } else {
                PLACEHOLDER.into()
            })
        })
    }

    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        Ok(SystemEnvironment
            .read_file(path)
            .unwrap_or_else(|_| PLACEHOLDER.as_bytes().to_vec()))
    }
}

pub fn open_read(config: &Config) -> anyhow::Result<ReadOnly> {
    ReadOnly::open(&config.store.path)
        .with_context(|| format!("opening {}", config.store.path.display()))
}

/// Runs `work` with a short-lived store of the CLI's own, closed (and committed) after.
pub fn with_store<T>(
    config: &Config,
    work: impl AsyncFnOnce(&Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&config.store)
            .with_context(|| format!("opening {}", config.store.path.display()))?;
        let result = work(&store).await;
        store.close().await;
        result
    })
}

/// `TARGET KEY` or `TARGET/KEY` arguments as row keys. A lone `TARGET/KEY` is split at its
/// first slash (target names have none); otherwise the first argument is the target and
/// every further one a product key.
pub fn row_keys(args: &[String]) -> anyhow::Result<Vec<RowKey>> {
    if !args.is_empty() && args.iter().all(|a| a.contains('/')) {
        return Ok(args
            .iter()
            .map(|a| {
                let (target, key) = a.split_once('/').unwrap_or((a, ""));
                RowKey::new(target, key)
            })
            .collect());
    }
    match args {
        [target, keys @ ..] if !keys.is_empty() && !target.contains('/') => {
            Ok(keys.iter().map(|key| RowKey::new(target, key)).collect())
        }
        _ => anyhow::bail!("name rows as `TARGET KEY…` or `TARGET/KEY…`"),
    }
}

/// Unix ms as RFC 3339 UTC, to the second.
pub fn timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in ms, to the second (`1h 2m 3s`).
pub fn age(ms: i64) -> String {
    let secs = Duration::from_secs((ms.max(0) / 1000) as u64);
    if secs.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(secs).to_string()
    }
}

/// A size in bytes, in binary units.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly instead
/// of a panic.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// `pimsync completions SHELL`: prints a completion script.
pub fn completions(shell: clap_complete::Shell, command: &mut clap::Command) -> ExitCode {
    clap_complete::generate(shell, command, "pimsync", &mut std::io::stdout());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_accept_both_forms() {
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let shown = |rows: Vec<RowKey>| rows.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(row_keys(&strings(&["erp", "A", "B"])).unwrap()),
            ["erp/A", "erp/B"]
        );
        assert_eq!(
            shown(row_keys(&strings(&["erp/A", "shop/SKU/1"])).unwrap()),
            ["erp/A", "shop/SKU/1"]
        );
        assert!(row_keys(&strings(&["erp"])).is_err());
        assert!(row_keys(&[]).is_err());
    }

    #[test]
    fn formats_ages_sizes_and_times() {
        assert_eq!(age(3_723_400), "1h 2m 3s");
        assert_eq!(age(-5), "0s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }
}
