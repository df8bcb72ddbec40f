//! The durable store: SQLite behind a narrow interface (commit a batch of changes, the
//! queries the CLI and tests need; leases and outcomes come with the delivery engine).
//! SQL stays inside this module, and nothing here knows about any target platform.
//!
//! Durability contract (the one place it is written down): a call that returns `Ok` has
//! been committed in a WAL transaction with `synchronous=FULL`, i.e. fsynced. The receiver
//! answers 2xx only after such a call returns, so an acknowledged change survives SIGKILL
//! and power loss. When the store cannot take more (queue full, disk full, I/O error) the
//! call fails and the receiver answers 503 with `Retry-After`; nothing is acknowledged.

mod checkpoint;
mod delivery;
mod history;
mod ingest;
pub mod ops;
mod outbox;
mod pull;
mod query;
mod schedule;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use delivery::{Lease, Outcome, Settle, Settled};
pub use ingest::{Ingest, IngestOutcome, PreparedChange};
pub use pull::{FetchRow, MissingProduct, PageCommit, PullRun};
pub use query::{Counts, InboxRow, OutboxRow, ProductRow};
pub use schedule::ScheduleRun;
pub use writer::WriterStats;

use crate::config::StoreConfig;
use crate::route::Router;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The writer's queue is full: answer 503 and let the sender retry.
    #[error("store is busy")]
    Busy,
    /// The store is shutting down or has shut down.
    #[error("store is closed")]
    Closed,
    /// The commit failed (disk full, I/O error); nothing in the batch was committed.
    #[error("store cannot commit: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("database schema version {found} is newer than this pimsync supports ({supported})")]
    TooNew { found: usize, supported: usize },
    #[error("cannot open database {path}: {message}")]
    Open { path: PathBuf, message: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(error.to_string())
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    sender: mpsc::Sender<writer::Message>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    stats: Arc<WriterStats>,
}

impl Store {
    /// Opens (creating and migrating when needed) the database and starts the writer thread.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: config.path.clone(),
            message,
        };
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_error(e.to_string()))?;
        }
        let mut conn = Connection::open(&config.path).map_err(|e| open_error(e.to_string()))?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        // After migrating: the schema itself must never be refused by the cap.
        if config.max_size > 0 {
            let page_size: u64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
            conn.pragma_update(None, "max_page_count", (config.max_size / page_size).max(1))?;
        }
        schema::configure_writer(&conn)?;
        let checkpointer =
            checkpoint::Checkpointer::start(&config.path).map_err(|e| open_error(e.to_string()))?;

        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let max_batch = config.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("pimsync-writer".into())
            .spawn(move || writer::run(conn, receiver, max_batch, thread_stats))
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                sender,
                path: config.path.clone(),
                readers: Mutex::new(Vec::new()),
                writer_thread: Mutex::new(Some(writer_thread)),
                checkpointer: Mutex::new(Some(checkpointer)),
                stats,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Stores a parsed webhook: inbox row, product snapshots and outbox rows, in one
    /// transaction. Returns once committed (see the durability contract above).
    pub async fn ingest(
        &self,
        request: Ingest,
        router: Arc<Router>,
    ) -> Result<IngestOutcome, StoreError> {
        self.write(move |conn| ingest::ingest(conn, &request, &router, now_ms()))
            .await
    }

    /// Deletes inbox rows past the retention age or beyond the row limit.
    pub async fn prune_inbox(
        &self,
        older_than_ms: i64,
        max_rows: u64,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| ingest::prune_inbox(conn, older_than_ms, max_rows))
            .await
    }

    /// Round-trips an empty job through the writer: the store is alive and committing.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    /// Runs `work` in the writer's next batch and waits for the commit. Fails fast with
    /// `Busy` when the queue is full rather than queueing without bound.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, response) = oneshot::channel();
        let job = Box::new(writer::Call::new(work, reply));
        self.inner
            .sender
            .try_send(writer::Message::Job(job))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        response.await.map_err(|_| StoreError::Closed)?
    }

    /// Like `write`, but waits and tries again (for a few seconds) while the writer's
    /// queue is full: background work yields to ingest rather than failing.
    async fn write_retrying<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let work = Arc::new(work);
        let mut tries = 0;
        loop {
            let job = work.clone();
            match self.write(move |conn| job(conn)).await {
                Err(StoreError::Busy) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a read on a pooled read-only connection, off the async runtime.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.pragma_update(None, "busy_timeout", 5000)?;
                    conn
                }
            };
            let result = work(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            Ok(result?)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Commits what is queued, stops the writer and waits for it. Later writes fail with
    /// `Closed`.
    pub async fn close(&self) {
        // A full queue is still drained by the writer before it sees Stop.
        let _ = self.inner.sender.send(writer::Message::Stop).await;
        let handle = self
            .inner
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(checkpointer) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod delivery_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod variant_tests;
