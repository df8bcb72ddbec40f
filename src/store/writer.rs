//! The single writer: one thread owns the write connection and commits everything that is
//! waiting in one transaction (group commit). One fsync then covers a whole batch, which is
//! what lets a durable ingest run at tens of thousands of requests per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Work for the writer. `run` executes inside the batch transaction; `finish` answers the
/// caller once the batch has committed (or failed). One failing job does not undo the
/// others (see `commit_batch`), which is why `run` may be called a second time.
pub(super) trait Job: Send {
    /// Returns false when the job's own work failed (its work is rolled back).
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
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.as_mut() else {
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

/// Commits a batch. Each job's savepoint costs a copy of every page it touches that the
/// batch has already dirtied (measured as a twelfth of the writer's time under load), and
/// jobs almost never fail; so the batch first runs without savepoints. If a job fails, that
/// attempt is rolled back and the batch runs again with a savepoint per job, so the others
/// still commit. Jobs are `FnMut` with no effects outside the transaction, which is what
/// makes running one twice safe.
fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    if run_batch(conn, batch, false)? {
        return Ok(());
    }
    run_batch(conn, batch, true).map(|_| ())
}

/// One attempt at a batch. Returns `Ok(false)` when, without savepoints, a job failed and
/// the attempt was rolled back.
fn run_batch(
    conn: &mut Connection,
    batch: &mut [Box<dyn Job>],
    savepoints: bool,
) -> Result<bool, StoreError> {
    let result = (|| -> Result<bool, StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for job in batch.iter_mut() {
            if savepoints {
                conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            }
            if job.run(conn) {
                if savepoints {
                    conn.prepare_cached("RELEASE job")?.execute([])?;
                }
            } else if conn.is_autocommit() {
                // Some errors (a full disk, I/O) make SQLite roll back the whole
                // transaction: nothing of this batch can commit.
                let why = job.failure().unwrap_or_else(|| "unknown error".into());
                return Err(StoreError::Unavailable(format!(
                    "the transaction was rolled back: {why}"
                )));
            } else if savepoints {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            } else {
                conn.execute_batch("ROLLBACK")?;
                return Ok(false);
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        sql: &'static str,
        fail: bool,
    ) -> (Message, oneshot::Receiver<Result<usize, StoreError>>) {
        let (reply, response) = oneshot::channel();
        let work = move |conn: &Connection| -> Result<usize, StoreError> {
            let n = conn.execute(sql, [])?;
            if fail {
                return Err(StoreError::Unavailable("this job fails".into()));
            }
            Ok(n)
        };
        (Message::Job(Box::new(Call::new(work, reply))), response)
    }

    fn values(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Runs `jobs` as one batch on a fresh database; returns each job's answer and the table.
    fn one_batch(jobs: Vec<(&'static str, bool)>) -> (Vec<Result<usize, StoreError>>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        let (sender, receiver) = mpsc::channel(16);
        let mut responses = Vec::new();
        for (sql, fail) in jobs {
            let (message, response) = job(sql, fail);
            assert!(sender.try_send(message).is_ok());
            responses.push(response);
        }
        assert!(sender.try_send(Message::Stop).is_ok());
        let stats = Arc::new(WriterStats::default());
        run(conn, receiver, 64, stats.clone());
        assert_eq!(
            stats.batches.load(Ordering::Relaxed),
            1,
            "the jobs formed one batch"
        );
        let answers = responses
            .into_iter()
            .map(|r| r.blocking_recv().unwrap())
            .collect();
        (answers, values(&Connection::open(&path).unwrap()))
    }

    #[test]
    fn a_batch_without_failures_commits_every_job() {
        let (answers, table) = one_batch(vec![
            ("INSERT INTO t VALUES (1)", false),
            ("INSERT INTO t VALUES (2)", false),
        ]);
        assert!(answers.iter().all(|a| matches!(a, Ok(1))));
        assert_eq!(table, vec![1, 2]);
    }

    #[test]
    fn a_failing_job_is_undone_alone_and_the_rest_of_its_batch_commits_once() {
        let (answers, table) = one_batch(vec![
            ("INSERT INTO t VALUES (1)", false),
            ("INSERT INTO t VALUES (2)", true),
            // Fails in SQL: a duplicate key, after job 1 wrote it.
            ("INSERT INTO t VALUES (1)", false),
            ("INSERT INTO t VALUES (3)", false),
        ]);
        assert!(matches!(answers[0], Ok(1)));
        assert!(matches!(answers[1], Err(StoreError::Unavailable(_))));
        assert!(answers[2].is_err(), "{:?}", answers[2]);
        assert!(matches!(answers[3], Ok(1)));
        // Ran twice (without, then with savepoints), yet each row is there once.
        assert_eq!(table, vec![1, 3]);
    }
}
