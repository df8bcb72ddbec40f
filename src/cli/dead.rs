//! `pimsync dead`: dead-lettered outbox rows (permanent failures, or retries exhausted).
//! Rows are named by target and product key: `TARGET KEY…` or `TARGET/KEY…`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use pimsync::store::now_ms;
use pimsync::store::ops::{DeadSelection, RowKey};

use super::{ConfigArg, age, row_keys, timestamp};

#[derive(Subcommand, Debug)]
pub enum DeadCommand {
    /// List dead rows, by target then time of death.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Show one row: its error, the product as stored, what the target last applied.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// `TARGET KEY` or `TARGET/KEY`.
        #[arg(required = true, num_args = 1..=2, value_name = "TARGET KEY")]
        row: Vec<String>,
    },
    /// Put dead rows back to pending (attempts 0, due now): `TARGET KEY…` or `--target NAME`.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// Every dead row of this target.
        #[arg(long, value_name = "NAME", conflicts_with = "rows")]
        target: Option<String>,
        #[arg(required_unless_present = "target", value_name = "TARGET KEY…")]
        rows: Vec<String>,
    },
    /// Delete dead rows. The product stays stored; its next change creates a new row.
    Discard {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(required = true, value_name = "TARGET KEY…")]
        rows: Vec<String>,
    },
}

pub fn run(command: DeadCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadCommand::List { config, target } => {
            let config = super::load_config(&config.config)?;
            let rows = super::open_read(&config)?
                .dead_list(target.as_deref())
                .context("reading dead rows")?;
            if rows.is_empty() {
                println!("no dead rows");
                return Ok(ExitCode::SUCCESS);
            }
            let now = now_ms();
            let mut out = String::new();
            for row in &rows {
                out += &format!(
                    "{}  attempts={}  died {} ago  {}\n",
                    row.key,
                    row.attempts,
                    age(now - row.updated_at),
                    one_line(row.last_error.as_deref().unwrap_or("-"))
                );
            }
            out += &format!("{} dead row(s)\n", rows.len());
            super::emit(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Show { config, row } => {
            let config = super::load_config(&config.config)?;
            let key = single(&row_keys(&row)?)?;
            let read = super::open_read(&config)?;
            let Some(detail) = read.row_detail(&key).context("reading the row")? else {
                anyhow::bail!("no outbox row {key}");
            };
            println!("row:             {key}");
            println!("state:           {}", detail.state);
            println!("attempts:        {}", detail.attempts);
            println!(
                "error:           {}",
                detail.last_error.as_deref().unwrap_or("-")
            );
            println!("desired hash:    {}", detail.desired_hash);
            println!("idempotency key: {}", detail.idempotency_key);
            println!("pending since:   {}", timestamp(detail.created_at));
            println!("last change:     {}", timestamp(detail.updated_at));
            match &detail.applied {
                Some((hash, ids, at)) => println!(
                    "applied:         {} at {} remote ids {ids}",
                    if hash.is_empty() { "(forced)" } else { hash },
                    timestamp(*at)
                ),
                None => println!("applied:         never"),
            }
            match &detail.product {
                Some((version, true, _)) => {
                    println!("product:         deleted (version {version})")
                }
                Some((version, false, snapshot)) => {
                    println!("product:         version {version}");
                    if let Some(json) = snapshot {
                        let pretty = serde_json::from_str::<serde_json::Value>(json)
                            .and_then(|v| serde_json::to_string_pretty(&v))
                            .unwrap_or_else(|_| json.clone());
                        println!("{pretty}");
                    }
                }
                None => println!("product:         not stored"),
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Retry {
            config,
            target,
            rows,
        } => {
            let config = super::load_config(&config.config)?;
            let (asked, retried) = match target {
                Some(target) => {
                    let retried = super::with_store(&config, async |store| {
                        Ok(store
                            .dead_retry(DeadSelection::Targets(vec![target]))
                            .await?)
                    })?;
                    (None, retried)
                }
                None => {
                    let keys = row_keys(&rows)?;
                    let asked = keys.clone();
                    let retried = super::with_store(&config, async |store| {
                        Ok(store.dead_retry(DeadSelection::Rows(keys)).await?)
                    })?;
                    (Some(asked), retried)
                }
            };
            report("retried", &retried, asked.as_deref())
        }
        DeadCommand::Discard { config, rows } => {
            let config = super::load_config(&config.config)?;
            let keys = row_keys(&rows)?;
            let asked = keys.clone();
            let discarded = super::with_store(&config, async |store| {
                Ok(store.dead_discard(DeadSelection::Rows(keys)).await?)
            })?;
            report("discarded", &discarded, Some(&asked))
        }
    }
}

/// Prints what was done and which named rows were not dead; exit 1 when some were not.
fn report(what: &str, done: &[RowKey], asked: Option<&[RowKey]>) -> anyhow::Result<ExitCode> {
    for row in done {
        println!("{what} {row}");
    }
    println!("{} row(s) {what}", done.len());
    let missing: Vec<&RowKey> = asked
        .unwrap_or_default()
        .iter()
        .filter(|row| !done.contains(row))
        .collect();
    for row in &missing {
        eprintln!("not a dead row: {row}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn single(rows: &[RowKey]) -> anyhow::Result<RowKey> {
    match rows {
        [one] => Ok(one.clone()),
        _ => anyhow::bail!("name one row: `TARGET KEY` or `TARGET/KEY`"),
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(119).collect::<String>())
    } else {
        line.to_owned()
    }
}
