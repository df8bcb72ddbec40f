//! `pimsync resync`: marks products pending for targets, then follows the daemon applying
//! them.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pimsync::route::Router;
use pimsync::store::now_ms;
use pimsync::store::ops::{Resync, ResyncScope, RowKey, RowProgress};

use super::ConfigArg;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("targets").required(true).args(["target", "all_targets"])))]
#[command(group(clap::ArgGroup::new("products").required(true).args(["sku", "since", "all"])))]
pub struct ResyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// A target to resync (repeatable).
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    /// Every configured target.
    #[arg(long)]
    pub all_targets: bool,
    /// Product keys to resync (repeatable, or several after one flag).
    #[arg(long, value_name = "KEY", num_args = 1..)]
    pub sku: Vec<String>,
    /// Products stored since TIME: RFC 3339 (`2026-12-04T10:00:00Z`) or an age (`2h`, `30m`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Every product (deleted ones resync as deletions).
    #[arg(long)]
    pub all: bool,
    /// Call the target even where it should already hold this content (ignores what is
    /// recorded as applied; remote ids are kept).
    #[arg(long)]
    pub force: bool,
    /// Mark the rows and exit, without waiting for the daemon to apply them.
    #[arg(long)]
    pub no_wait: bool,
}

/// How often the database is polled while waiting.
const POLL: Duration = Duration::from_millis(200);
/// After this long without progress, say that the daemon may not be running.
const STALL_HINT: Duration = Duration::from_secs(15);

pub fn run(args: ResyncArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config.config)?;
    let configured: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let targets = if args.all_targets {
        configured.clone()
    } else {
        for name in &args.target {
            if !configured.contains(name) {
                anyhow::bail!(
                    "unknown target {name:?} (configured: {})",
                    configured.join(", ")
                );
            }
        }
        args.target.clone()
    };
    let scope = match (&args.since, args.all) {
        (Some(since), _) => ResyncScope::Since(parse_since(since, now_ms())?),
        (None, true) => ResyncScope::All,
        (None, false) => ResyncScope::Keys(args.sku.clone()),
    };
    let request = Resync {
        targets,
        scope,
        force: args.force,
        list_rows: true,
    };
    let router = Arc::new(Router::new(&config.targets));
    let marked = super::with_store(&config, async |store| {
        store
            .resync(request, router)
            .await
            .context("marking products pending")
    })?;
    for key in &marked.unknown {
        eprintln!("warning: no product {key:?} in the store");
    }
    let products: std::collections::BTreeSet<&str> =
        marked.rows.iter().map(|r| r.product_key.as_str()).collect();
    println!(
        "marked {} row(s) pending for {} product(s){}{}{}",
        marked.rows.len(),
        products.len(),
        if marked.deletions > 0 {
            format!(", {} as deletions", marked.deletions)
        } else {
            String::new()
        },
        if args.force {
            format!(", forced ({} applied hash(es) cleared)", marked.forced)
        } else {
            String::new()
        },
        if marked.filtered_out > 0 {
            format!(
                "; {} product(s) not for these targets (filters)",
                marked.filtered_out
            )
        } else {
            String::new()
        },
    );
    if args.no_wait || marked.rows.is_empty() {
        return Ok(if marked.unknown.is_empty() || !marked.rows.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    wait(&config, marked.rows)
}

/// Follows the marked rows until each is applied (gone from the outbox) or dead.
fn wait(config: &pimsync::config::Config, rows: Vec<RowKey>) -> anyhow::Result<ExitCode> {
    let read = super::open_read(config)?;
    let bar = ProgressBar::with_draw_target(Some(rows.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} settled {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut remaining = rows;
    let mut dead: Vec<(RowKey, Option<String>)> = Vec::new();
    let mut applied = 0u64;
    let mut last_progress = Instant::now();
    let mut hinted = false;
    loop {
        let states = read.progress(&remaining).context("reading the outbox")?;
        let before = remaining.len();
        let mut still = Vec::with_capacity(remaining.len());
        for (row, state) in remaining.into_iter().zip(states) {
            match state {
                RowProgress::Waiting => still.push(row),
                RowProgress::Applied => applied += 1,
                RowProgress::Dead(error) => dead.push((row, error)),
            }
        }
        remaining = still;
        if remaining.len() < before {
            last_progress = Instant::now();
        }
        bar.set_position(applied + dead.len() as u64);
        bar.set_message(if dead.is_empty() {
            String::new()
        } else {
            format!("({} dead)", dead.len())
        });
        if remaining.is_empty() {
            break;
        }
        if !hinted && last_progress.elapsed() > STALL_HINT {
            hinted = true;
            bar.suspend(|| {
                eprintln!(
                    "no progress for {}s: is `pimsync serve` running? (Ctrl-C leaves the rows pending)",
                    STALL_HINT.as_secs()
                )
            });
        }
        std::thread::sleep(POLL);
    }
    bar.finish_and_clear();
    println!("{applied} applied, {} dead", dead.len());
    if dead.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (row, error) in &dead {
        println!(
            "dead: {row}: {}",
            error.as_deref().unwrap_or("(no error recorded)")
        );
    }
    println!("inspect with `pimsync dead show TARGET KEY`, retry with `pimsync dead retry`");
    Ok(ExitCode::FAILURE)
}

/// `--since`: RFC 3339, or an age before `now` (`2h`, `1d 12h`). Unix ms.
pub fn parse_since(value: &str, now: i64) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let age = humantime::parse_duration(value).map_err(|_| {
        anyhow::anyhow!(
            "--since {value:?}: expected RFC 3339 (2026-12-04T10:00:00Z) or an age (2h, 30m)"
        )
    })?;
    Ok(now - age.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_or_an_age() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert_eq!(
            parse_since("2026-12-04T11:00:00+01:00", 0).unwrap(),
            parse_since("2026-12-04T10:00:00Z", 0).unwrap()
        );
        assert_eq!(
            parse_since("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert!(parse_since("yesterday", 0).is_err());
    }
}
