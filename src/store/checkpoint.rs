//! The checkpointer: copies committed WAL frames into the database file on its own thread
//! and connection, beside the writer. A passive checkpoint never blocks the writer or
//! readers, so most of the copying (and the database fsync) happens off the commit path;
//! the writer's own, rarer checkpoint (see `schema::configure_writer`) then has little left
//! to copy before the WAL can start over.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed under load.
const INTERVAL: Duration = Duration::from_millis(200);

pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> std::io::Result<Checkpointer> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        super::schema::configure(&conn).map_err(std::io::Error::other)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pimsync-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    checkpoint(&conn, "PASSIVE");
                }
                // On the way out, fold the whole WAL into the database.
                checkpoint(&conn, "TRUNCATE");
            })?;
        Ok(Checkpointer { stop, thread })
    }

    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn checkpoint(conn: &Connection, mode: &str) {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    if let Err(error) = conn.query_row(&sql, [], |_| Ok(())) {
        tracing::warn!(%error, mode, "WAL checkpoint failed; will retry");
    }
}
