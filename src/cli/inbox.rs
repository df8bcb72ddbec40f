//! `pimsync inbox`: the stored webhooks (kept headers and raw body), and replaying them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::Subcommand;
use pimsync::receiver::formats::parse_only;
use pimsync::receiver::ingest_request;
use pimsync::route::Router;

use super::{ConfigArg, timestamp};

#[derive(Subcommand, Debug)]
pub enum InboxCommand {
    /// List stored webhooks, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a stored webhook: its kept headers, a blank line, the body.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
    /// Parse stored webhooks again and ingest them as new deliveries (no signature check:
    /// they were verified when they arrived). Stale changes are dropped as usual.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

pub fn run(command: InboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        InboxCommand::List {
            config,
            source,
            limit,
        } => {
            let config = super::load_config(&config.config)?;
            let rows = super::open_read(&config)?
                .inbox_list(source.as_deref(), limit)
                .context("reading the inbox")?;
            if rows.is_empty() {
                println!("the inbox is empty");
            }
            let mut out = String::new();
            for row in rows {
                out += &format!(
                    "{:>8}  {}  {:<16}  {} change(s)  delivery {}\n",
                    row.id,
                    timestamp(row.received_at),
                    row.source,
                    row.changes,
                    row.delivery_id.as_deref().unwrap_or("-")
                );
            }
            super::emit(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Show { config, id } => {
            let config = super::load_config(&config.config)?;
            let Some(entry) = super::open_read(&config)?
                .inbox_show(id)
                .context("reading the inbox")?
            else {
                anyhow::bail!("no inbox row {id}");
            };
            let row = &entry.row;
            let mut out = format!(
                "# inbox {}\n# source: {}\n# received: {}\n# delivery id: {}\n# changes: {}\n",
                row.id,
                row.source,
                timestamp(row.received_at),
                row.delivery_id.as_deref().unwrap_or("-"),
                row.changes
            );
            for (name, value) in entry.headers() {
                out += &format!("{name}: {value}\n");
            }
            out += &format!("\n{}\n", String::from_utf8_lossy(&entry.body));
            super::emit(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Replay { config, ids } => {
            let config = super::load_config(&config.config)?;
            let read = super::open_read(&config)?;
            let mut requests = Vec::new();
            for id in ids {
                let entry = read
                    .inbox_show(id)
                    .context("reading the inbox")?
                    .with_context(|| format!("no inbox row {id}"))?;
                let source = config
                    .sources
                    .iter()
                    .find(|s| s.name == entry.row.source)
                    .with_context(|| {
                        format!(
                            "inbox row {id}: source {:?} is not in the config",
                            entry.row.source
                        )
                    })?;
                let mut headers = HeaderMap::new();
                for (name, value) in entry.headers() {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        headers.append(name, value);
                    }
                }
                let parsed = parse_only(&source.format, &headers, &entry.body)
                    .map_err(|rejection| anyhow::anyhow!("inbox row {id}: {rejection}"))?;
                requests.push((
                    id,
                    // A new delivery: the original's id would make it a duplicate.
                    ingest_request(
                        source,
                        None,
                        entry.headers_json.clone(),
                        entry.body.clone(),
                        parsed.changes,
                    ),
                ));
            }
            drop(read);
            let router = Arc::new(Router::new(&config.targets));
            let outcomes = super::with_store(&config, async |store| {
                let mut outcomes = Vec::new();
                for (id, request) in requests {
                    let outcome = store
                        .ingest(request, router.clone())
                        .await
                        .with_context(|| format!("ingesting inbox row {id}"))?;
                    outcomes.push((id, outcome));
                }
                Ok(outcomes)
            })?;
            for (id, o) in outcomes {
                println!(
                    "replayed {id}: {} changed, {} unchanged, {} stale, {} queued for a fetch, {} outbox row(s)",
                    o.changed, o.unchanged, o.stale, o.fetch_queued, o.outbox_rows
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
