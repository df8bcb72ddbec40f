//! Prometheus metrics, in the text exposition format, written by hand.
//!
//! Counters that code paths bump (webhooks, applies, apply latency, schedule runs) live in
//! one process-wide registry (`global()`); the rest is read at scrape time: outbox depth
//! from the store, delivery counters from the dispatcher, and the writer's statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::dispatch::DeliveryStats;
use crate::store::{Store, WriterStats};

/// Bucket upper bounds of a histogram kind.
pub trait Buckets {
    const BOUNDS: &'static [f64];
}

/// Durations in seconds, from half a millisecond to a minute.
#[derive(Debug)]
pub struct Seconds;
impl Buckets for Seconds {
    const BOUNDS: &'static [f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ];
}

/// Counts (batch sizes), in powers of four.
#[derive(Debug)]
pub struct Sizes;
impl Buckets for Sizes {
    const BOUNDS: &'static [f64] = &[
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
    ];
}

/// A lock-free histogram with fixed buckets.
pub struct Histogram<B: Buckets> {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, as f64 bits.
    sum: AtomicU64,
    kind: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            buckets: (0..=B::BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
            kind: PhantomData,
        }
    }
}

impl<B: Buckets> std::fmt::Debug for Histogram<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("sum", &self.sum())
            .finish()
    }
}

impl<B: Buckets> Histogram<B> {
    pub fn observe(&self, value: f64) {
        let index = B::BOUNDS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(B::BOUNDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// Writes the `_bucket`, `_sum` and `_count` series; `labels` is `key="value",…` or empty.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = B::BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum());
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// The counters code paths bump.
#[derive(Default)]
pub struct Metrics {
    /// (source, HTTP status) → webhooks answered.
    webhooks: Mutex<BTreeMap<(String, u16), u64>>,
    /// (target, outcome) → settled applies.
    applies: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// target → latency of connector calls.
    apply_latency: Mutex<BTreeMap<String, Arc<Histogram<Seconds>>>>,
    /// (schedule, outcome) → runs.
    schedule_runs: Mutex<BTreeMap<(String, String), u64>>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// A webhook answered with `status`.
    pub fn webhook(&self, source: &str, status: u16) {
        *lock(&self.webhooks)
            .entry((source.to_owned(), status))
            .or_default() += 1;
    }

    /// A settled apply: `applied`, `skipped` (no call needed), `failed` (will retry),
    /// `throttled` or `permanent`.
    pub fn apply(&self, target: &str, outcome: &'static str) {
        *lock(&self.applies)
            .entry((target.to_owned(), outcome))
            .or_default() += 1;
    }

    /// How long one connector call took, whatever its result.
    pub fn apply_latency(&self, target: &str, elapsed: Duration) {
        let histogram = lock(&self.apply_latency)
            .entry(target.to_owned())
            .or_default()
            .clone();
        histogram.observe_duration(elapsed);
    }

    pub fn schedule_run(&self, schedule: &str, outcome: &str) {
        *lock(&self.schedule_runs)
            .entry((schedule.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// What a scrape reads besides the registry.
pub struct Scrape<'a> {
    pub store: &'a Store,
    pub targets: &'a [String],
    pub delivery: &'a BTreeMap<String, Arc<DeliveryStats>>,
}

const OUTBOX_STATES: &[&str] = &["pending", "leased", "dead"];

/// The whole exposition.
pub async fn render(scrape: Scrape<'_>) -> String {
    let metrics = global();
    let mut out = String::new();

    header(
        &mut out,
        "pimsync_webhooks_received_total",
        "counter",
        "Webhooks answered, by source and HTTP status.",
    );
    for ((source, status), n) in lock(&metrics.webhooks).iter() {
        let _ = writeln!(
            out,
            "pimsync_webhooks_received_total{{source=\"{}\",status=\"{status}\"}} {n}",
            label(source)
        );
    }

    header(
        &mut out,
        "pimsync_outbox_rows",
        "gauge",
        "Outbox rows by target and state, read from the store at scrape time.",
    );
    let mut depth: BTreeMap<(String, String), i64> = BTreeMap::new();
    for target in scrape.targets {
        for state in OUTBOX_STATES {
            depth.insert((target.clone(), (*state).to_owned()), 0);
        }
    }
    let store_up = match scrape.store.counts().await {
        Ok(counts) => {
            for (target, state, n) in counts.outbox {
                depth.insert((target, state), n);
            }
            1
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read the outbox");
            0
        }
    };
    for ((target, state), n) in &depth {
        let _ = writeln!(
            out,
            "pimsync_outbox_rows{{target=\"{}\",state=\"{state}\"}} {n}",
            label(target)
        );
    }
    header(
        &mut out,
        "pimsync_store_up",
        "gauge",
        "1 if the store could be read at scrape time.",
    );
    let _ = writeln!(out, "pimsync_store_up {store_up}");

    header(
        &mut out,
        "pimsync_target_disabled",
        "gauge",
        "1 while a target is disabled (its receiver answered 410 Gone, or an operator): nothing is sent to it.",
    );
    for target in scrape.targets {
        if let Ok(disabled) = scrape.store.target_disabled(target).await {
            let _ = writeln!(
                out,
                "pimsync_target_disabled{{target=\"{}\"}} {}",
                label(target),
                u8::from(disabled.is_some())
            );
        }
    }

    header(
        &mut out,
        "pimsync_applies_total",
        "counter",
        "Settled applies by target and outcome (applied, skipped, failed, throttled, permanent, gone).",
    );
    for ((target, outcome), n) in lock(&metrics.applies).iter() {
        let _ = writeln!(
            out,
            "pimsync_applies_total{{target=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(target)
        );
    }

    header(
        &mut out,
        "pimsync_apply_duration_seconds",
        "histogram",
        "Duration of connector calls, by target.",
    );
    let latencies: Vec<(String, Arc<Histogram<Seconds>>)> = lock(&metrics.apply_latency)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (target, histogram) in latencies {
        histogram.write(
            &mut out,
            "pimsync_apply_duration_seconds",
            &format!("target=\"{}\"", label(&target)),
        );
    }

    header(
        &mut out,
        "pimsync_retries_total",
        "counter",
        "Failed attempts scheduled for a retry (including throttling), by target.",
    );
    for (target, stats) in scrape.delivery {
        let n = DeliveryStats::get(&stats.retried) + DeliveryStats::get(&stats.throttled);
        let _ = writeln!(
            out,
            "pimsync_retries_total{{target=\"{}\"}} {n}",
            label(target)
        );
    }
    header(
        &mut out,
        "pimsync_dead_letters_total",
        "counter",
        "Rows dead-lettered since start, by target.",
    );
    for (target, stats) in scrape.delivery {
        let _ = writeln!(
            out,
            "pimsync_dead_letters_total{{target=\"{}\"}} {}",
            label(target),
            DeliveryStats::get(&stats.dead)
        );
    }

    write_writer(&mut out, scrape.store.stats());

    header(
        &mut out,
        "pimsync_schedule_runs_total",
        "counter",
        "Schedule runs by schedule and outcome (ok, skipped, failed).",
    );
    for ((schedule, outcome), n) in lock(&metrics.schedule_runs).iter() {
        let _ = writeln!(
            out,
            "pimsync_schedule_runs_total{{schedule=\"{}\",outcome=\"{}\"}} {n}",
            label(schedule),
            label(outcome)
        );
    }
    out
}

fn write_writer(out: &mut String, stats: &WriterStats) {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    header(
        out,
        "pimsync_store_commits_total",
        "counter",
        "Transactions committed (or attempted) by the store's writer.",
    );
    let _ = writeln!(out, "pimsync_store_commits_total {}", get(&stats.batches));
    header(
        out,
        "pimsync_store_failed_commits_total",
        "counter",
        "Transactions that failed to commit.",
    );
    let _ = writeln!(
        out,
        "pimsync_store_failed_commits_total {}",
        get(&stats.failed_commits)
    );
    header(
        out,
        "pimsync_store_writes_total",
        "counter",
        "Write requests handled by the writer.",
    );
    let _ = writeln!(out, "pimsync_store_writes_total {}", get(&stats.jobs));
    header(
        out,
        "pimsync_store_commit_batch_size",
        "histogram",
        "Write requests per committed transaction (group commit).",
    );
    stats
        .batch_size
        .write(out, "pimsync_store_commit_batch_size", "");
    header(
        out,
        "pimsync_store_commit_duration_seconds",
        "histogram",
        "Duration of one transaction, including its fsync.",
    );
    stats
        .commit_seconds
        .write(out, "pimsync_store_commit_duration_seconds", "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h: Histogram<Sizes> = Histogram::default();
        for v in [1.0, 3.0, 4.0, 100.0, 1e9] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"4\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"256\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 5\n"), "{out}");
        let mut out = String::new();
        h.write(&mut out, "y", "");
        assert!(out.contains("y_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("y_count 5\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
