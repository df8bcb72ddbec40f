//! The scheduler: each `[[schedules]]` entry fires on its cron expression, in its time
//! zone, and runs its action (a resync, or a reconcile of a PIM source).
//!
//! - A run never overlaps itself: a fire that finds the previous run still going is
//!   skipped (and logged), not queued.
//! - Fires missed while the daemon was down are not replayed: at start each schedule waits
//!   for its next fire time after now.
//! - Every run is recorded in the store (`schedule_runs`: start, end, outcome, detail).

mod cron;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

pub use self::cron::{CronSchedule, next_fires, parse as parse_cron, parse_timezone};
use crate::config::{ScheduleAction, ScheduleConfig};
use crate::dispatch::Wake;
use crate::route::Router;
use crate::store::ops::{Resync, ResyncScope};
use crate::store::{Store, now_ms};

/// What a reconcile returns: a short summary for the run record, or an error.
pub type ReconcileFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// The hook for `action = "reconcile"`: compares a PIM source's catalog with the store.
/// The PIM pull provides it (`pull::ScheduledReconcile`).
pub trait Reconciler: Send + Sync {
    fn reconcile<'a>(&'a self, source: &'a str) -> ReconcileFuture<'a>;
}

/// Per-schedule run locks: at most one run of a schedule at a time.
#[derive(Clone, Default)]
pub struct RunLocks {
    running: Arc<Mutex<HashSet<String>>>,
}

/// Held while a run is in progress; dropping it releases the schedule.
pub struct RunGuard {
    locks: RunLocks,
    name: String,
}

impl RunLocks {
    /// None if a run of `name` is in progress.
    pub fn try_acquire(&self, name: &str) -> Option<RunGuard> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(name.to_owned()).then(|| RunGuard {
            locks: self.clone(),
            name: name.to_owned(),
        })
    }

    pub fn is_running(&self, name: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.contains(name)
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut running = self.locks.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&self.name);
    }
}

/// What a run needs.
#[derive(Clone)]
pub struct RunContext {
    pub store: Store,
    pub router: Arc<Router>,
    /// Every configured target, for `targets` left out.
    pub all_targets: Vec<String>,
    pub wake: Wake,
    pub reconciler: Arc<dyn Reconciler>,
    pub locks: RunLocks,
}

/// The running scheduler: one timer task per schedule.
pub struct Scheduler {
    timers: Vec<JoinHandle<()>>,
}

impl Scheduler {
    pub fn start(schedules: &[ScheduleConfig], ctx: RunContext) -> Scheduler {
        let timers = schedules
            .iter()
            .map(|schedule| tokio::spawn(timer(schedule.clone(), ctx.clone())))
            .collect();
        Scheduler { timers }
    }

    /// Stops the timers; a run in progress is abandoned where it is (each of its store
    /// writes is its own transaction, and a resync is safe to repeat).
    pub fn stop(self) {
        for timer in self.timers {
            timer.abort();
        }
    }
}

/// Longest single sleep, so that a jump of the wall clock is noticed within a minute.
const MAX_SLEEP: Duration = Duration::from_secs(60);

async fn timer(schedule: ScheduleConfig, ctx: RunContext) {
    let name = schedule.name.clone();
    loop {
        let Some(next) = next_fires(&schedule.cron, schedule.timezone, Utc::now(), 1).pop() else {
            tracing::info!(schedule = %name, "schedule has no future fire time; stopping it");
            return;
        };
        tracing::debug!(schedule = %name, next = %next, "next run");
        let next = next.with_timezone(&Utc);
        while let Ok(remaining) = (next - Utc::now()).to_std() {
            if remaining.is_zero() {
                break;
            }
            tokio::time::sleep(remaining.min(MAX_SLEEP)).await;
        }
        match ctx.locks.try_acquire(&name) {
            None => {
                tracing::warn!(schedule = %name, "previous run still in progress; this run is skipped")
            }
            Some(guard) => {
                let (schedule, ctx) = (schedule.clone(), ctx.clone());
                tokio::spawn(async move {
                    run(&schedule, &ctx).await;
                    drop(guard);
                });
            }
        }
    }
}

/// Runs a schedule's action once and records it. The caller holds the schedule's lock.
pub async fn run(schedule: &ScheduleConfig, ctx: &RunContext) -> RunOutcome {
    let name = &schedule.name;
    let started = now_ms();
    if let Err(error) = ctx.store.record_schedule_start(name, started).await {
        tracing::warn!(schedule = %name, %error, "cannot record the start of a run");
    }
    tracing::info!(schedule = %name, "schedule run started");
    let outcome = execute(&schedule.action, ctx).await;
    let (label, detail) = match &outcome {
        RunOutcome::Ok(detail) => ("ok", detail.as_str()),
        RunOutcome::Failed(detail) => ("failed", detail.as_str()),
    };
    crate::metrics::global().schedule_run(name, label);
    match &outcome {
        RunOutcome::Failed(_) => {
            tracing::warn!(schedule = %name, outcome = label, detail, "schedule run failed")
        }
        _ => tracing::info!(schedule = %name, outcome = label, detail, "schedule run finished"),
    }
    if let Err(error) = ctx
        .store
        .record_schedule_end(name, now_ms(), label, detail)
        .await
    {
        tracing::warn!(schedule = %name, %error, "cannot record the end of a run");
    }
    outcome
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Ok(String),
    Failed(String),
}

async fn execute(action: &ScheduleAction, ctx: &RunContext) -> RunOutcome {
    match action {
        ScheduleAction::Resync {
            targets,
            since,
            force,
        } => {
            let targets = if targets.is_empty() {
                ctx.all_targets.clone()
            } else {
                targets.clone()
            };
            let request = Resync {
                targets,
                scope: match since {
                    Some(since) => ResyncScope::Since(now_ms() - since.as_millis() as i64),
                    None => ResyncScope::All,
                },
                force: *force,
                list_rows: false,
            };
            match ctx.store.resync(request, ctx.router.clone()).await {
                Ok(marked) => {
                    if marked.marked > 0 {
                        ctx.wake.all();
                    }
                    RunOutcome::Ok(format!("{} outbox row(s) marked pending", marked.marked))
                }
                Err(error) => RunOutcome::Failed(error.to_string()),
            }
        }
        ScheduleAction::Reconcile { source } => match ctx.reconciler.reconcile(source).await {
            Ok(summary) => RunOutcome::Ok(summary),
            Err(error) => RunOutcome::Failed(error),
        },
    }
}

/// Each schedule's next `n` fire times after `now`, formatted in its time zone, by name.
pub fn upcoming(
    schedules: &[ScheduleConfig],
    now: chrono::DateTime<Utc>,
    n: usize,
) -> BTreeMap<String, Vec<String>> {
    schedules
        .iter()
        .map(|s| {
            let times = next_fires(&s.cron, s.timezone, now, n)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string())
                .collect();
            (s.name.clone(), times)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_run_never_overlaps_itself() {
        let locks = RunLocks::default();
        let first = locks.try_acquire("nightly").expect("free");
        assert!(locks.is_running("nightly"));
        assert!(locks.try_acquire("nightly").is_none(), "second run refused");
        // Another schedule is independent.
        let other = locks.try_acquire("hourly").expect("other schedule free");
        drop(first);
        assert!(!locks.is_running("nightly"));
        assert!(
            locks.try_acquire("nightly").is_some(),
            "free again after the run"
        );
        drop(other);
    }

    #[test]
    fn upcoming_formats_in_the_schedule_time_zone() {
        let text = "0 30 2 * * *";
        let schedule = ScheduleConfig {
            name: "tokyo".into(),
            cron_text: text.into(),
            cron: parse_cron(text).unwrap(),
            timezone: parse_timezone("Asia/Tokyo").unwrap(),
            action: ScheduleAction::Reconcile {
                source: "akeneo".into(),
            },
        };
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 5, 1, 0, 0, 0).unwrap();
        let upcoming = upcoming(&[schedule], now, 3);
        assert_eq!(
            upcoming["tokyo"],
            [
                "2026-05-02 02:30:00 JST (+09:00)",
                "2026-05-03 02:30:00 JST (+09:00)",
                "2026-05-04 02:30:00 JST (+09:00)",
            ]
        );
    }
}
