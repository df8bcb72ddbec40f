//! One target's delivery loop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pimsync_connectors::{
    ApplyError, ApplyRequest, ChangeInfo, Connector, Desired, ProductKind, Snapshot, Variant,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::DeliveryStats;
use super::rate::RateLimiter;
use super::retry::{jitter_unit, next_attempt_delay};
use crate::config::TargetConfig;
use crate::store::{Lease, Outcome, Settle, Settled, Store, StoreError, now_ms};

/// How often an idle worker looks for rows written by another process (the CLI).
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    ctx: Arc<Ctx>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    grace: Duration,
    permits: Arc<Semaphore>,
}

/// What every apply task of this target shares.
struct Ctx {
    store: Store,
    target: TargetConfig,
    connector: Arc<dyn Connector>,
    owner: String,
    limiter: RateLimiter,
    stats: Arc<DeliveryStats>,
    /// Rows leased here and not yet settled, queued or being applied: a lease that expired
    /// under a slow apply and came back is not started a second time, and shutdown
    /// releases exactly these.
    in_flight: std::sync::Mutex<HashMap<String, Held>>,
    /// The receiver said 410 Gone (or an operator disabled the target): no apply starts
    /// until the store says the target is enabled again.
    disabled: AtomicBool,
}

/// A row held here: the hash it was leased at, and whether the row was leased again (and
/// refused) while it was held.
struct Held {
    hash: String,
    leased_again: bool,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        store: Store,
        target: TargetConfig,
        connector: Arc<dyn Connector>,
        owner: String,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
        grace: Duration,
        stats: Arc<DeliveryStats>,
    ) -> Worker {
        let permits = Arc::new(Semaphore::new(target.delivery.concurrency));
        let limiter = RateLimiter::new(target.delivery.rate_limit, target.delivery.burst);
        Worker {
            ctx: Arc::new(Ctx {
                store,
                target,
                connector,
                owner,
                limiter,
                stats,
                in_flight: std::sync::Mutex::new(HashMap::new()),
                disabled: AtomicBool::new(false),
            }),
            wake,
            stop,
            grace,
            permits,
        }
    }

    pub(super) async fn run(mut self) {
        let name = self.ctx.target.name.clone();
        let delivery = self.ctx.target.delivery.clone();
        let lease_ms = delivery.lease_timeout.as_millis() as i64;
        // Rows leased ahead of free slots: a round trip to the store fetches many rows, and
        // their outcomes reach the writer together, so one commit carries many of them.
        // Two rounds of work at most, so queued rows never wait long on their lease.
        let ahead = (2 * delivery.concurrency).clamp(1, delivery.batch.max(1));
        let mut queue: VecDeque<Lease> = VecDeque::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut try_lease = true;
        let history = self.ctx.target.keeps_history();
        // A target that gets every change gets each as soon as it can.
        let spacing_ms = if history {
            0
        } else {
            delivery.min_interval.as_millis() as i64
        };
        tracing::info!(target = %name, kind = self.ctx.connector.kind(), "delivery worker started");
        self.check_disabled(true).await;
        let mut checked = std::time::Instant::now();
        loop {
            if *self.stop.borrow() {
                break;
            }
            // Whether the target is disabled is read again on every wake-up while it is,
            // and at least every second otherwise, so that `pimsync target enable` or
            // `disable` from another process takes effect within a second.
            if (self.ctx.disabled.load(Ordering::SeqCst) || checked.elapsed() >= IDLE_CHECK)
                && self.check_disabled(false).await
            {
                try_lease = true;
            }
            if checked.elapsed() >= IDLE_CHECK {
                checked = std::time::Instant::now();
            }
            while tasks.try_join_next().is_some() {}
            while let Some(lease) = queue.pop_front() {
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(apply_one(self.ctx.clone(), lease, permit));
                    }
                    Err(_) => {
                        queue.push_front(lease);
                        break;
                    }
                }
            }
            let mut due_in: Option<i64> = None;
            let room = if self.ctx.disabled.load(Ordering::SeqCst) {
                0
            } else {
                ahead.saturating_sub(queue.len())
            };
            if room > 0 && !try_lease && queue.is_empty() {
                match self.ctx.store.next_due(&name).await {
                    Ok(Some(due)) => {
                        let wait = due - now_ms();
                        if wait <= 0 {
                            try_lease = true;
                        } else {
                            due_in = Some(wait);
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(target = %name, %error, "cannot read the outbox"),
                }
            }
            if room > 0 && try_lease {
                match self
                    .ctx
                    .store
                    .lease(&name, &self.ctx.owner, room, lease_ms, spacing_ms, history)
                    .await
                {
                    Ok(leases) => {
                        let got = leases.len();
                        for lease in leases {
                            // A row whose lease expired under an apply still running here
                            // comes back: that apply settles it; never start it twice (see
                            // `Ctx::finish` for a row that comes back after its settle).
                            if self.ctx.start(&lease) {
                                queue.push_back(lease);
                            }
                        }
                        try_lease = got == room;
                        if got > 0 {
                            continue;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(target = %name, %error, "cannot lease outbox rows; retrying");
                        try_lease = false;
                        due_in = Some(IDLE_CHECK.as_millis() as i64);
                    }
                }
            }
            let idle = IDLE_CHECK.as_millis() as i64;
            let sleep_ms = due_in.unwrap_or(idle).clamp(1, idle) as u64;
            tokio::select! {
                _ = self.wake.notified() => try_lease = true,
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = self.stop.changed() => {}
            }
        }

        // Shutdown: no new leases or applies; finish what is in flight within the grace
        // period, then hand every row still held (queued or cut short) back as it was.
        let drained = tokio::time::timeout(self.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        let held = self.ctx.held();
        if !held.is_empty() {
            tracing::info!(target = %name, rows = held.len(), "releasing leases not applied before shutdown");
        }
        for (key, hash) in held {
            if let Err(error) = self.ctx.release(&key, &hash).await {
                tracing::warn!(target = %name, product_key = %key, %error, "cannot release a lease; it expires by itself");
            }
        }
        tracing::info!(target = %name, "delivery worker stopped");
    }
}

impl Worker {
    /// Reads whether the target is disabled and updates the flag; true when it has just
    /// been re-enabled. A store that cannot be read leaves the flag as it is.
    async fn check_disabled(&self, starting: bool) -> bool {
        let name = &self.ctx.target.name;
        match self.ctx.store.target_disabled(name).await {
            Ok(Some(disabled)) => {
                let was = self.ctx.disabled.swap(true, Ordering::SeqCst);
                if starting || !was {
                    tracing::warn!(target = %name, reason = %disabled.reason, "target is disabled; nothing is sent until `pimsync target enable` re-enables it");
                }
                false
            }
            Ok(None) => {
                let was = self.ctx.disabled.swap(false, Ordering::SeqCst);
                if was {
                    tracing::info!(target = %name, "target re-enabled; delivery resumes");
                }
                was
            }
            Err(error) => {
                tracing::warn!(target = %name, %error, "cannot read whether the target is disabled");
                false
            }
        }
    }
}

impl Ctx {
    /// Marks a leased row as held here; false if it already is.
    fn start(&self, lease: &Lease) -> bool {
        self.in_flight
            .lock()
            .map(|mut held| match held.get_mut(&lease.product_key) {
                Some(already) => {
                    already.leased_again = true;
                    false
                }
                None => {
                    let entry = Held {
                        hash: lease.desired_hash.clone(),
                        leased_again: false,
                    };
                    held.insert(lease.product_key.clone(), entry);
                    true
                }
            })
            .unwrap_or(false)
    }

    /// Lets go of a settled row. True if it was leased again (and refused) meanwhile: the
    /// settle may have put it back to pending just before that lease, which then belongs
    /// to no apply and would sit out its whole lease timeout; the caller hands it back.
    fn finish(&self, product_key: &str) -> bool {
        match self.in_flight.lock() {
            Ok(mut held) => held.remove(product_key).is_some_and(|h| h.leased_again),
            Err(_) => false,
        }
    }

    /// Hands a row leased here back to pending, as it was; a no-op unless this worker
    /// still holds its lease.
    async fn release(&self, product_key: &str, leased_hash: &str) -> Result<(), StoreError> {
        let settle = Settle {
            target: self.target.name.clone(),
            product_key: product_key.to_owned(),
            leased_hash: leased_hash.to_owned(),
            owner: self.owner.clone(),
            change_id: None,
            outcome: Outcome::Released,
        };
        self.store.settle(settle).await.map(|_| ())
    }

    /// Rows leased here and not settled yet: (product key, leased hash).
    fn held(&self) -> Vec<(String, String)> {
        self.in_flight
            .lock()
            .map(|held| {
                held.iter()
                    .map(|(k, h)| (k.clone(), h.hash.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Applies one leased row and settles it.
async fn apply_one(ctx: Arc<Ctx>, lease: Lease, permit: OwnedSemaphorePermit) {
    let delivery = &ctx.target.delivery;
    let outcome = match desired_state(&lease) {
        // Leased before the target was disabled: handed back untouched.
        _ if ctx.disabled.load(Ordering::SeqCst) => Outcome::Released,
        Err(message) => Outcome::Permanent { error: message },
        Ok(_) if lease.applied_hash.as_deref() == Some(&lease.desired_hash) => Outcome::Applied {
            remote_ids: lease.remote_ids.clone(),
            called: false,
        },
        // Deleting what was never applied here: the target has nothing to delete.
        Ok(_) if lease.deleted && lease.applied_hash.is_none() => Outcome::Applied {
            remote_ids: lease.remote_ids.clone(),
            called: false,
        },
        Ok((kind, snapshot, variants)) => {
            let desired = match &snapshot {
                Some(snapshot) => Desired::Upsert {
                    kind,
                    snapshot,
                    variants: &variants,
                },
                None => Desired::Delete,
            };
            let request = ApplyRequest {
                target: &lease.target,
                product_key: &lease.product_key,
                desired,
                remote_ids: &lease.remote_ids,
                idempotency_key: &lease.idempotency_key,
                attempt: lease.attempts + 1,
                change: ChangeInfo {
                    version: lease.version,
                    accepted_at_ms: lease.accepted_at,
                    // A forced resync clears the applied hash to '' (see ops::resync).
                    forced: lease.applied_hash.as_deref() == Some(""),
                },
            };
            ctx.limiter.acquire().await;
            ctx.connector.ready().await;
            let started = std::time::Instant::now();
            let result =
                tokio::time::timeout(delivery.request_timeout, ctx.connector.apply(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApplyError::retryable(format!(
                            "timed out after {:?}",
                            delivery.request_timeout
                        )))
                    });
            crate::metrics::global().apply_latency(&lease.target, started.elapsed());
            let now = now_ms();
            match result {
                Ok(applied) => Outcome::Applied {
                    called: !applied.skipped,
                    remote_ids: applied.remote_ids,
                },
                Err(ApplyError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let delay = next_attempt_delay(
                        lease.attempts + 1,
                        delivery.retry_base,
                        delivery.retry_cap,
                        retry_after,
                        delivery.max_retry_after,
                        jitter_unit(),
                    );
                    Outcome::Failed {
                        error: message,
                        retry_at: now + delay.as_millis() as i64,
                        max_attempts: delivery.max_attempts,
                    }
                }
                Err(ApplyError::Throttled {
                    message,
                    retry_after,
                }) => Outcome::Throttled {
                    error: message,
                    retry_at: now + retry_after.min(delivery.max_retry_after).as_millis() as i64,
                },
                Err(ApplyError::Permanent { message }) => Outcome::Permanent { error: message },
                Err(ApplyError::Gone { message }) => Outcome::Gone { error: message },
            }
        }
    };
    // The target is done with this row: its slot may start the next apply while the
    // outcome waits for the writer (the row stays held until settled).
    drop(permit);
    log_outcome(&ctx, &lease, &outcome);
    let gone = match &outcome {
        Outcome::Gone { error } => error.clone(),
        _ => String::new(),
    };
    let settle = Settle {
        target: lease.target.clone(),
        product_key: lease.product_key.clone(),
        leased_hash: lease.desired_hash.clone(),
        owner: ctx.owner.clone(),
        change_id: lease.change_id,
        outcome,
    };
    match ctx.store.settle(settle).await {
        Ok(Settled::Dead) => {
            ctx.stats.dead.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %lease.target, product_key = %lease.product_key, idempotency_key = %lease.idempotency_key, "dead-lettered");
        }
        Ok(Settled::Disabled) => {
            ctx.disabled.store(true, Ordering::SeqCst);
            tracing::error!(target = %lease.target, product_key = %lease.product_key, idempotency_key = %lease.idempotency_key, error = %gone, "the receiver answered 410 Gone: target disabled; changes keep accumulating until `pimsync target enable` re-enables it");
        }
        Ok(Settled::LeaseLost) => {
            tracing::warn!(target = %lease.target, product_key = %lease.product_key, idempotency_key = %lease.idempotency_key, "lease lost before settling; the row is retried")
        }
        Ok(_) => {}
        // The row stays leased and is taken again when the lease expires, with the same key.
        Err(error) => {
            tracing::warn!(target = %lease.target, product_key = %lease.product_key, idempotency_key = %lease.idempotency_key, %error, "cannot record the outcome; retried after the lease expires")
        }
    }
    if ctx.finish(&lease.product_key) {
        // Releasing is a no-op unless the row is still leased by this worker; if it is,
        // it becomes pending and the loop leases it again as soon as this task ends.
        if let Err(error) = ctx.release(&lease.product_key, &lease.desired_hash).await {
            tracing::warn!(target = %lease.target, product_key = %lease.product_key, %error, "cannot hand back a lease taken twice; it expires by itself");
        }
    }
}

fn log_outcome(ctx: &Ctx, lease: &Lease, outcome: &Outcome) {
    let stats = &ctx.stats;
    let (target, key, idem) = (&lease.target, &lease.product_key, &lease.idempotency_key);
    let label = match outcome {
        Outcome::Applied { called: true, .. } => "applied",
        Outcome::Applied { called: false, .. } => "skipped",
        Outcome::Failed { .. } => "failed",
        Outcome::Throttled { .. } => "throttled",
        Outcome::Permanent { .. } => "permanent",
        Outcome::Released => "released",
        Outcome::Gone { .. } => "gone",
    };
    crate::metrics::global().apply(target, label);
    match outcome {
        Outcome::Applied { called: true, .. } => {
            stats.applied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %target, product_key = %key, idempotency_key = %idem, "applied");
        }
        Outcome::Applied { called: false, .. } => {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %target, product_key = %key, idempotency_key = %idem, "already applied; no call");
        }
        Outcome::Failed { error, .. } => {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %target, product_key = %key, idempotency_key = %idem, attempt = lease.attempts + 1, %error, "apply failed; will retry");
        }
        Outcome::Throttled { error, .. } => {
            stats.throttled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target = %target, product_key = %key, idempotency_key = %idem, %error, "throttled by the target");
        }
        Outcome::Permanent { error } => {
            tracing::warn!(target = %target, product_key = %key, idempotency_key = %idem, %error, "apply failed permanently");
        }
        Outcome::Released | Outcome::Gone { .. } => {}
    }
}

type DesiredParts = (ProductKind, Option<Snapshot>, Vec<Variant>);

/// Decodes the leased product. A snapshot that does not decode was written by a broken
/// build: retrying cannot help, so it is permanent.
fn desired_state(lease: &Lease) -> Result<DesiredParts, String> {
    let kind = match lease.kind.as_str() {
        "product_model" => ProductKind::ProductModel,
        _ => ProductKind::Product,
    };
    if lease.deleted {
        return Ok((kind, None, Vec::new()));
    }
    let Some(json) = &lease.snapshot else {
        return Err("the product has no stored content".into());
    };
    let snapshot: Snapshot =
        serde_json::from_str(json).map_err(|e| format!("stored product does not decode: {e}"))?;
    let variants = lease
        .variants
        .iter()
        .map(|(key, json)| {
            serde_json::from_str(json)
                .map(|snapshot| Variant {
                    key: key.clone(),
                    snapshot,
                })
                .map_err(|e| format!("stored variant {key} does not decode: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok((kind, Some(snapshot), variants))
}
