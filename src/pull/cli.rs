//! `pimsync reconcile`: the command-line face of [`super::reconcile`].

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use time::OffsetDateTime;

use super::{Since, reconcile};
use crate::config::Config;
use crate::route::Router;
use crate::store::Store;

/// Runs one reconcile, printing progress to stderr (at most once a second) and the report
/// to stdout. Exit code 0 when complete.
pub async fn run(config: Config, source: &str, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let Some(source) = config.sources.iter().find(|s| s.name == source) else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no source named {source:?} (configured: {})",
            names.join(", ")
        );
    };
    let since = match since {
        None => Since::Full,
        Some(text) => Since::parse(text, OffsetDateTime::now_utc())
            .map_err(|e| anyhow::anyhow!("--since {e}"))?,
    };
    let store = Store::open(&config.store).context("opening the store")?;
    let router = Arc::new(Router::new(&config.targets));
    let mut last_print: Option<Instant> = None;
    let result = reconcile(&store, router, source, since, |progress| {
        if last_print.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            eprintln!("{progress}");
            last_print = Some(Instant::now());
        }
    })
    .await;
    store.close().await;
    let report = result.with_context(|| format!("reconciling {}", source.name))?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
