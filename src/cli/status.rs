//! `pimsync status`: what every target has to do, what went wrong last, and the store.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pimsync::store::now_ms;
use pimsync::store::ops::Status;

use super::{ConfigArg, age, size, timestamp};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config.config)?;
    let read = super::open_read(&config)?;
    let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let status = read.status(&names, now_ms()).context("reading the store")?;
    if args.json {
        // SCHEDULES (sched branch): add the schedules with their next run here, as a
        // "schedules" field beside "targets" and "store".
        let json = serde_json::to_string_pretty(&status).context("encoding JSON")?;
        super::emit(&format!("{json}\n"))?;
    } else {
        super::emit(&render(&status))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable form.
pub fn render(status: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let header = [
        "TARGET",
        "PENDING",
        "IN FLIGHT",
        "DEAD",
        "APPLIED 1H",
        "OLDEST PENDING",
    ];
    let rows: Vec<[String; 6]> = status
        .targets
        .iter()
        .map(|t| {
            [
                match (t.configured, &t.disabled) {
                    (true, None) => t.name.clone(),
                    (true, Some(_)) => format!("{} (disabled)", t.name),
                    (false, _) => format!("{} (not configured)", t.name),
                },
                if t.queued_changes > 0 {
                    format!("{} ({} changes)", t.pending, t.queued_changes)
                } else {
                    t.pending.to_string()
                },
                t.in_flight.to_string(),
                t.dead.to_string(),
                t.applied_last_hour.to_string(),
                t.oldest_pending_since
                    .map(|since| age(status.at - since))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[i]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[i]);
            }
        }
        line.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }
    let disabled: Vec<_> = status
        .targets
        .iter()
        .filter_map(|t| t.disabled.as_ref().map(|d| (&t.name, d)))
        .collect();
    if !disabled.is_empty() {
        let _ = writeln!(
            out,
            "\ndisabled targets (nothing is sent; changes accumulate):"
        );
        for (target, d) in disabled {
            let _ = writeln!(
                out,
                "  {target} ({} ago): {}\n    re-enable: pimsync target enable --config FILE {target}",
                age(status.at - d.at),
                d.reason
            );
        }
    }
    let errors: Vec<_> = status
        .targets
        .iter()
        .filter_map(|t| t.last_error.as_ref().map(|e| (&t.name, e)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nlast errors:");
        for (target, error) in errors {
            let _ = writeln!(
                out,
                "  {target}/{} ({} ago): {}",
                error.product_key,
                age(status.at - error.at),
                error.error
            );
        }
    }
    let s = &status.store;
    let _ = writeln!(
        out,
        "\nstore: {} — {} ({} database + {} WAL)",
        s.path.display(),
        size(s.db_bytes + s.wal_bytes),
        size(s.db_bytes),
        size(s.wal_bytes)
    );
    let _ = writeln!(
        out,
        "  {} products, {} tombstones, {} inbox webhooks, {} awaiting a fetch",
        s.products, s.tombstones, s.inbox, s.fetch_queue
    );
    // SCHEDULES (sched branch): print "schedules:" with each schedule's next run here.
    let _ = writeln!(out, "as of {}", timestamp(status.at));
    out
}
