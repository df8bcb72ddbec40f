//! Reconcile: page through the PIM's catalog (products, then product models), or the part
//! updated since a time, and commit every page through the ordinary ingest. Only newer
//! versions change a product and only changed content sets outbox rows pending, so a lost
//! webhook is repaired without pushing unchanged products to any target.
//!
//! Each page is committed together with the link to the next one (`pull_state`), so a
//! reconcile that is killed resumes from the last committed page when it is started again
//! with the same mode. A full run also remembers the keys it saw (`pull_seen`) and, at the
//! end, reports the products known locally that the PIM no longer has; it deletes them
//! only with `delete_missing = true`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pimsync_connectors::akeneo::{ListQuery, Resource, updated_after};
use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{PullError, headers_json, resource_change};
use crate::config::SourceConfig;
use crate::route::Router;
use crate::store::{Ingest, PageCommit, PreparedChange, PullRun, Store};

/// Which part of the catalog to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The whole catalog; reports (and with `delete_missing`, deletes) what the PIM lacks.
    Full,
    /// Resources updated after this time.
    Time(OffsetDateTime),
    /// Resources updated since the last completed reconcile started (a full pull if none
    /// completed yet).
    LastRun,
}

impl Since {
    /// `full`, `last`, an RFC 3339 time, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC), or a
    /// duration before `now` such as `24h` or `7d`.
    pub fn parse(text: &str, now: OffsetDateTime) -> Result<Since, String> {
        let text = text.trim();
        match text {
            "full" | "all" => return Ok(Since::Full),
            "last" => return Ok(Since::LastRun),
            _ => {}
        }
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Ok(Since::Time(at));
        }
        if let Ok(at) = PrimitiveDateTime::parse(
            text,
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        ) {
            return Ok(Since::Time(at.assume_utc()));
        }
        if let Ok(day) = time::Date::parse(text, format_description!("[year]-[month]-[day]")) {
            return Ok(Since::Time(day.midnight().assume_utc()));
        }
        if let Ok(ago) = humantime::parse_duration(text) {
            return Ok(Since::Time(now - ago));
        }
        Err(format!(
            "{text:?}: expected \"full\", \"last\", a time (2026-12-04T10:00:00Z, \"2026-12-04 10:00:00\", 2026-12-04) or a duration ago (24h)"
        ))
    }
}

/// Akeneo's `updated` filter format, in UTC.
fn akeneo_time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
pub(super) fn akeneo_time_for_tests(at: OffsetDateTime) -> String {
    akeneo_time(at)
}

/// How far a reconcile is.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub source: String,
    /// `products` or `product_models`.
    pub phase: String,
    /// Items fetched by the run (including pages committed before a restart).
    pub fetched: u64,
    /// The run's total, when the PIM reported `items_count`.
    pub total: Option<u64>,
    /// Items per second in this process.
    pub rate: f64,
    pub elapsed: Duration,
    pub eta: Option<Duration>,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} fetched",
            self.source, self.phase, self.fetched
        )?;
        if let Some(total) = self.total {
            let percent = if total == 0 {
                100.0
            } else {
                self.fetched as f64 * 100.0 / total as f64
            };
            write!(f, " of {total} ({percent:.1}%)")?;
        }
        write!(f, ", {:.0}/s", self.rate)?;
        if let Some(eta) = self.eta {
            let eta = Duration::from_secs(eta.as_secs());
            write!(f, ", ETA {}", humantime::format_duration(eta))?;
        }
        Ok(())
    }
}

/// What a reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub source: String,
    /// `full` or `since:<time>`.
    pub mode: String,
    /// It continued a run that had been interrupted.
    pub resumed: bool,
    /// It went through every page (false only when stopped early).
    pub complete: bool,
    /// Pages fetched by this invocation.
    pub pages: u64,
    /// Items fetched by this invocation.
    pub fetched: u64,
    /// Products whose content changed (outbox rows set pending).
    pub changed: u64,
    /// Products whose content equals what is stored (no outbox work).
    pub unchanged: u64,
    /// Older than what is stored (a webhook was newer): left alone.
    pub stale: u64,
    pub outbox_rows: u64,
    /// Resources that could not be read as products (logged, skipped).
    pub invalid: u64,
    /// Products known locally but absent from the full pull (keys, sorted).
    pub missing: Vec<String>,
    /// How many of `missing` were deleted (`delete_missing = true`).
    pub deleted: u64,
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "reconcile of {} ({}{}): {}",
            self.source,
            self.mode,
            if self.resumed { ", resumed" } else { "" },
            if self.complete {
                "complete"
            } else {
                "stopped early"
            }
        )?;
        writeln!(
            f,
            "  {} items on {} pages: {} changed, {} unchanged, {} older than stored, {} invalid; {} outbox rows pending",
            self.fetched,
            self.pages,
            self.changed,
            self.unchanged,
            self.stale,
            self.invalid,
            self.outbox_rows
        )?;
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(20).map(String::as_str).collect();
            let more = self.missing.len().saturating_sub(shown.len());
            write!(
                f,
                "  {} known locally but not in the PIM{}: {}",
                self.missing.len(),
                if self.deleted > 0 {
                    format!(" ({} deleted)", self.deleted)
                } else {
                    " (not deleted: delete_missing = false)".to_owned()
                },
                shown.join(", ")
            )?;
            if more > 0 {
                write!(f, " and {more} more")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

const PHASES: [(&str, Resource, ProductKind); 2] = [
    ("products", Resource::Products, ProductKind::Product),
    (
        "product_models",
        Resource::ProductModels,
        ProductKind::ProductModel,
    ),
];

/// Reconciles one source with its PIM; see the module docs. `router` routes changed
/// products to targets (built from the config's targets, as the receiver's is);
/// `progress` is called after every committed page. Safe to run while the daemon serves.
pub async fn reconcile(
    store: &Store,
    router: Arc<Router>,
    source: &SourceConfig,
    since: Since,
    progress: impl FnMut(&Progress) + Send,
) -> Result<ReconcileReport, PullError> {
    run(store, router, source, since, progress, None).await
}

/// `reconcile`, stopping after `max_pages` pages (as a kill would, minus the kill).
pub(crate) async fn run(
    store: &Store,
    router: Arc<Router>,
    source: &SourceConfig,
    since: Since,
    mut progress: impl FnMut(&Progress) + Send,
    max_pages: Option<u64>,
) -> Result<ReconcileReport, PullError> {
    let api = source
        .api
        .as_ref()
        .ok_or_else(|| PullError::NoApi(source.name.clone()))?;
    let client = super::client(source)?;
    let previous = store.pull_run(&source.name).await?;
    let mode = match since {
        Since::Full => "full".to_owned(),
        Since::Time(at) => format!("since:{}", akeneo_time(at)),
        Since::LastRun => match previous.as_ref().and_then(|run| run.last_completed) {
            // A minute of overlap covers clocks and saves in flight when it started.
            Some(ms) => {
                let at =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms - 60_000) * 1_000_000)
                        .map_err(|e| PullError::Invalid(e.to_string()))?;
                format!("since:{}", akeneo_time(at))
            }
            None => "full".to_owned(),
        },
    };
    let search = mode.strip_prefix("since:").map(updated_after);
    let mut report = ReconcileReport {
        source: source.name.clone(),
        mode: mode.clone(),
        ..ReconcileReport::default()
    };
    let run: PullRun = match previous {
        Some(run) if run.phase.is_some() && run.mode == mode => {
            report.resumed = true;
            tracing::info!(source = %source.name, %mode, fetched = run.fetched, "resuming an interrupted reconcile");
            run
        }
        _ => store.start_pull_run(&source.name, &mode).await?,
    };
    let full = mode == "full";
    let started = Instant::now();
    let mut fetched_total = run.fetched.max(0) as u64;
    let mut total = run.total.map(|t| t.max(0) as u64);
    let mut cursor = run.cursor.clone();
    let start_phase = PHASES
        .iter()
        .position(|(name, _, _)| Some(*name) == run.phase.as_deref())
        .unwrap_or(0);

    for (index, (phase, resource, kind)) in PHASES.iter().enumerate().skip(start_phase) {
        loop {
            if max_pages.is_some_and(|max| report.pages >= max) {
                return Ok(report);
            }
            let page = match cursor.take() {
                Some(link) => client.next_page(&link).await?,
                None => {
                    let mut query = ListQuery::new(*resource);
                    query.search = search.clone();
                    query.with_count = true;
                    let page = client.first_page(&query).await?;
                    if let Some(count) = page.items_count {
                        total = Some(fetched_total + count);
                    }
                    page
                }
            };
            report.pages += 1;
            report.fetched += page.items.len() as u64;
            fetched_total += page.items.len() as u64;
            let mut changes = Vec::with_capacity(page.items.len());
            let mut seen = Vec::new();
            for item in &page.items {
                match resource_change(item, *kind) {
                    Ok(change) => {
                        if full {
                            if let Some(key) = change.key.clone().or_else(|| change.uuid.clone()) {
                                seen.push(key);
                            }
                        }
                        changes.push(PreparedChange::new(change));
                    }
                    Err(error) => {
                        report.invalid += 1;
                        tracing::warn!(source = %source.name, %error, "skipping a resource that is not a product");
                    }
                }
            }
            let (next_phase, next_cursor) = match &page.next {
                Some(link) => (Some(*phase), Some(link.clone())),
                None => (PHASES.get(index + 1).map(|(name, _, _)| *name), None),
            };
            let outcome = store
                .ingest_pull_page(
                    Ingest {
                        source: source.name.clone(),
                        delivery_id: None,
                        headers_json: headers_json("reconcile"),
                        body: Vec::new(),
                        changes,
                        echo_of: None,
                    },
                    router.clone(),
                    PageCommit {
                        source: source.name.clone(),
                        phase: next_phase.map(str::to_owned),
                        cursor: next_cursor.clone(),
                        fetched: fetched_total as i64,
                        total: total.map(|t| t as i64),
                        seen,
                    },
                )
                .await?;
            report.changed += outcome.changed as u64;
            report.unchanged += outcome.unchanged as u64;
            report.stale += outcome.stale as u64;
            report.outbox_rows += outcome.outbox_rows as u64;

            let elapsed = started.elapsed();
            let rate = report.fetched as f64 / elapsed.as_secs_f64().max(0.001);
            let eta = total
                .filter(|_| rate > 0.0)
                .map(|t| Duration::from_secs_f64(t.saturating_sub(fetched_total) as f64 / rate));
            progress(&Progress {
                source: source.name.clone(),
                phase: (*phase).to_owned(),
                fetched: fetched_total,
                total,
                rate,
                elapsed,
                eta,
            });
            match next_cursor {
                Some(link) => cursor = Some(link),
                None => break,
            }
        }
    }

    if full {
        let missing = store.missing_products(&source.name, run.started_at).await?;
        report.missing = missing.iter().map(|m| m.key.clone()).collect();
        if api.delete_missing && !missing.is_empty() {
            // At least the run's start: an edit in the PIM after that resurrects it.
            let floor = run.started_at.saturating_mul(1000);
            for chunk in missing.chunks(500) {
                let changes = chunk
                    .iter()
                    .map(|m| {
                        PreparedChange::new(ProductChange {
                            key: Some(m.key.clone()),
                            uuid: m.uuid.clone(),
                            kind: m.kind,
                            op: ChangeOp::Delete,
                            version: m.version.max(floor),
                            body: ChangeBody::None,
                            event_id: None,
                        })
                    })
                    .collect();
                let outcome = store
                    .ingest(
                        Ingest {
                            source: source.name.clone(),
                            delivery_id: None,
                            headers_json: headers_json("reconcile-delete-missing"),
                            body: Vec::new(),
                            changes,
                            echo_of: None,
                        },
                        router.clone(),
                    )
                    .await?;
                report.deleted += outcome.changed as u64;
                report.outbox_rows += outcome.outbox_rows as u64;
            }
        } else if !missing.is_empty() {
            tracing::warn!(source = %source.name, missing = missing.len(), "products known locally are not in the PIM (delete_missing = false: kept)");
        }
    }
    store.finish_pull_run(&source.name).await?;
    report.complete = true;
    Ok(report)
}
