//! The dispatcher: one worker per target turns due outbox rows into applied changes.
//!
//! A worker leases a bounded batch of due rows, applies each through the target's
//! connector (up to `delivery.concurrency` at once, paced by the target's rate limit and
//! by the connector itself), and settles every outcome through the store's single writer.
//! A lease holds a row for one worker, so a product key is never in flight twice.

mod connectors;
mod rate;
pub mod retry;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::TargetConfig;
use crate::store::Store;

pub use rate::RateLimiter;

/// Wakes the workers when new work was committed, so it is picked up at once rather than
/// at the next poll.
#[derive(Clone, Default)]
pub struct Wake {
    workers: Arc<Vec<Arc<Notify>>>,
}

impl Wake {
    pub fn all(&self) {
        for worker in self.workers.iter() {
            worker.notify_one();
        }
    }
}

/// Per-target counters, for the demo, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Applies that called the target and succeeded.
    pub applied: AtomicU64,
    /// Rows settled without a call (the target already had that state).
    pub skipped: AtomicU64,
    /// Failed attempts that will be retried.
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    pub dead: AtomicU64,
}

impl DeliveryStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Dispatcher {
    stop: watch::Sender<bool>,
    /// Workers still running; fewer than started means one died (the watchdog notices).
    alive: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
    wake: Wake,
    stats: BTreeMap<String, Arc<DeliveryStats>>,
}

/// Counts a worker as running for as long as it lives, however it ends.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(alive: Arc<AtomicUsize>) -> Running {
        alive.fetch_add(1, Ordering::SeqCst);
        Running(alive)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("target {target}: {message}")]
pub struct DispatchError {
    pub target: String,
    pub message: String,
}

impl Dispatcher {
    /// Builds every target's connector (failing on the first that cannot be built) and
    /// starts one worker per target. Leases left by a previous run are released first, so
    /// their rows are applied again with the same idempotency keys.
    pub async fn start(
        store: Store,
        targets: &[TargetConfig],
        grace: Duration,
    ) -> Result<Dispatcher, DispatchError> {
        let mut built = Vec::new();
        for target in targets {
            let connector = connectors::build(target).map_err(|message| DispatchError {
                target: target.name.clone(),
                message,
            })?;
            built.push((target.clone(), connector));
        }
        let names = targets.iter().map(|t| t.name.clone()).collect();
        let released = store
            .release_leases(names)
            .await
            .map_err(|e| DispatchError {
                target: "*".into(),
                message: e.to_string(),
            })?;
        if released > 0 {
            tracing::info!(released, "released leases left by a previous run");
        }
        let coalescing: Vec<String> = targets
            .iter()
            .filter(|t| !t.keeps_history())
            .map(|t| t.name.clone())
            .collect();
        match store.drop_history(coalescing).await {
            Ok(dropped) => {
                for (target, changes) in dropped {
                    tracing::warn!(target = %target, changes, "the target coalesces now: its queued changes were dropped; it gets the latest state");
                }
            }
            Err(error) => {
                return Err(DispatchError {
                    target: "*".into(),
                    message: error.to_string(),
                });
            }
        }
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let (stop, stopped) = watch::channel(false);
        let mut notifies = Vec::new();
        let mut workers = Vec::new();
        let mut stats = BTreeMap::new();
        let alive = Arc::new(AtomicUsize::new(0));
        for (target, connector) in built {
            let notify = Arc::new(Notify::new());
            let target_stats = Arc::new(DeliveryStats::default());
            stats.insert(target.name.clone(), target_stats.clone());
            let worker = worker::Worker::new(
                store.clone(),
                target,
                connector,
                owner.clone(),
                notify.clone(),
                stopped.clone(),
                grace,
                target_stats,
            );
            notifies.push(notify);
            let running = Running::new(alive.clone());
            workers.push(tokio::spawn(async move {
                let _running = running;
                worker.run().await;
            }));
        }
        Ok(Dispatcher {
            stop,
            alive,
            workers,
            wake: Wake {
                workers: Arc::new(notifies),
            },
            stats,
        })
    }

    /// True while every worker is running.
    pub fn healthy(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let alive = self.alive.clone();
        let started = self.workers.len();
        move || alive.load(Ordering::SeqCst) == started
    }

    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    pub fn stats(&self) -> &BTreeMap<String, Arc<DeliveryStats>> {
        &self.stats
    }

    /// Stops leasing, lets applies in flight finish within the grace period, releases
    /// the leases of the rest, and waits for every worker.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a delivery worker ended abnormally");
            }
        }
    }
}
