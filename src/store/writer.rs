//! The single writer: one thread owns the write connection and commits everything that is
//! waiting in one transaction (group commit). One fsync then covers a whole batch, which is
//! what lets a durable ingest run at tens of thousands of requests per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Work for the writer. `run` executes inside the batch transaction, in a savepoint of its
/// own so that one failing job does not undo the others; `finish` answers the caller once
/// the batch has committed (or failed).
pub(super) trait Job: Send {
    /// Returns false when the job's own work failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Why `run` failed, for the batch's error when SQLite abandoned the whole transaction.
    fn failure(&self) -> Option<String>;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A closure job whose result is sent back over a oneshot channel.
pub(super) struct Call<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Call<T, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Call {
            work: Some(work),
            result: None,
            reply,
        }
    }
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn failure(&self) -> Option<String> {
        match &self.result {
            Some(Err(error)) => Some(error.to_string()),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let outcome = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Unavailable("job did not run".into()))),
            Err(error) => Err(error),
        };
        // The caller may have gone away (request timeout); the work is committed anyway.
        let _ = self.reply.send(outcome);
    }
}

pub(super) enum Message {
    Job(Box<dyn Job>),
    /// Finish what is queued before this message, then exit.
    Stop,
}

/// Counters for the benchmark, `status` and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub jobs: AtomicU64,
    pub failed_commits: AtomicU64,
    pub largest_batch: AtomicU64,
    pub commit_micros_total: AtomicU64,
    /// Jobs per transaction, and the time each transaction took (for metrics).
    pub batch_size: crate::metrics::Histogram<crate::metrics::Sizes>,
    pub commit_seconds: crate::metrics::Histogram<crate::metrics::Seconds>,
}

pub(super) fn run(
    mut conn: Connection,
    mut inbox: mpsc::Receiver<Message>,
    max_batch: usize,
    stats: Arc<WriterStats>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    while !stopping {
        match inbox.blocking_recv() {
            Some(Message::Job(job)) => batch.push(job),
            Some(Message::Stop) | None => break,
        }
        while batch.len() < max_batch {
            match inbox.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let committed = commit_batch(&mut conn, &mut batch);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats
            .largest_batch
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        let elapsed = started.elapsed();
        stats
            .commit_micros_total
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        stats.batch_size.observe(batch.len() as f64);
        stats.commit_seconds.observe_duration(elapsed);
        if let Err(error) = &committed {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, jobs = batch.len(), "store commit failed; nothing in this batch was acknowledged");
        }
        for job in batch.drain(..) {
            job.finish(committed.clone());
        }
    }
    // Close the channel, then answer whatever raced in after Stop: it was not committed.
    inbox.close();
    while let Ok(message) = inbox.try_recv() {
        if let Message::Job(job) = message {
            job.finish(Err(StoreError::Closed));
        }
    }
}

fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let result = (|| -> Result<(), StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            if job.run(conn) {
                conn.prepare_cached("RELEASE job")?.execute([])?;
            } else if conn.is_autocommit() {
                // Some errors (a full disk, I/O) make SQLite roll back the whole
                // transaction: nothing of this batch can commit.
                let why = job.failure().unwrap_or_else(|| "unknown error".into());
                return Err(StoreError::Unavailable(format!(
                    "the transaction was rolled back: {why}"
                )));
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        if let Err(error) = conn.execute_batch("ROLLBACK") {
            tracing::error!(%error, "rollback after a failed batch failed");
        }
    }
    result.map_err(|error| match error {
        StoreError::Sqlite(e) => StoreError::Unavailable(e.to_string()),
        other => other,
    })
}
