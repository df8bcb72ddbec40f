//! The SQLite schema and its migrations, applied in order and recorded in `user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a released
/// entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the four tables of DESIGN.md, plus the queue of thin events awaiting a fetch.
    "
    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        delivery_id TEXT,
        received_at INTEGER NOT NULL,   -- Unix ms
        headers     TEXT NOT NULL,      -- JSON object of the kept headers
        body        BLOB NOT NULL,
        changes     INTEGER NOT NULL,   -- product changes parsed from it
        UNIQUE (source, delivery_id)
    );
    CREATE INDEX inbox_received ON inbox (received_at);

    CREATE TABLE products (
        product_key  TEXT PRIMARY KEY,
        uuid         TEXT,
        kind         TEXT NOT NULL,     -- product | product_model
        version      INTEGER NOT NULL,
        deleted      INTEGER NOT NULL DEFAULT 0,
        snapshot     TEXT,              -- canonical JSON; kept on deletion for routing
        parent       TEXT,              -- the product model a variant belongs to
        content_hash TEXT NOT NULL,     -- 'deleted' for tombstones
        source       TEXT NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX products_uuid ON products (uuid) WHERE uuid IS NOT NULL;
    CREATE INDEX products_parent ON products (parent) WHERE parent IS NOT NULL;

    CREATE TABLE outbox (
        target          TEXT NOT NULL,
        product_key     TEXT NOT NULL,
        desired_hash    TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,   -- Unix ms
        lease_owner     TEXT,
        lease_until     INTEGER,
        leased_hash     TEXT,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (product_key, target)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_due ON outbox (target, state, next_attempt_at);

    CREATE TABLE applied (
        target      TEXT NOT NULL,
        product_key TEXT NOT NULL,
        hash        TEXT NOT NULL,
        remote_ids  TEXT NOT NULL DEFAULT '{}',
        applied_at  INTEGER NOT NULL,
        PRIMARY KEY (product_key, target)
    ) WITHOUT ROWID;

    CREATE TABLE fetch_queue (
        source      TEXT NOT NULL,
        uuid        TEXT NOT NULL,
        product_key TEXT,
        kind        TEXT NOT NULL,
        version     INTEGER NOT NULL,
        event_id    TEXT,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (source, uuid)
    ) WITHOUT ROWID;
    CREATE INDEX fetch_queue_uuid ON fetch_queue (uuid);
    ",
    // 2: the last run of each `[[schedules]]` entry.
    "
    CREATE TABLE schedule_runs (
        name        TEXT PRIMARY KEY,
        started_at  INTEGER NOT NULL,   -- Unix ms
        finished_at INTEGER,            -- NULL while running (or if the daemon stopped)
        outcome     TEXT NOT NULL,      -- running | ok | failed
        detail      TEXT
    ) WITHOUT ROWID;
    ",
    // 3: the PIM pull. One row per source for its reconcile: the run in progress (its
    // mode, phase and the next page to fetch, committed with each page so a restart
    // resumes there) and when the last one completed; and the keys a full run has seen, to
    // find the products the PIM no longer has.
    "
    CREATE TABLE pull_state (
        source          TEXT PRIMARY KEY,
        mode            TEXT NOT NULL,      -- 'full' or 'since:<YYYY-MM-DD HH:MM:SS>'
        phase           TEXT,               -- 'products' | 'product_models'; NULL when done
        cursor          TEXT,               -- the next page's link; NULL: the phase's first
        started_at      INTEGER NOT NULL,   -- Unix ms
        fetched         INTEGER NOT NULL DEFAULT 0,
        total           INTEGER,            -- items_count, when the PIM gave it
        updated_at      INTEGER NOT NULL,
        last_completed  INTEGER             -- started_at of the last completed run
    ) WITHOUT ROWID;

    CREATE TABLE pull_seen (
        source      TEXT NOT NULL,
        product_key TEXT NOT NULL,
        PRIMARY KEY (source, product_key)
    ) WITHOUT ROWID;
    ",
    // 4: webhook targets. `history`: every accepted change of a product for each target
    // with `coalesce = false`, written in the ingest transaction and deleted in the one
    // that records its delivery; AUTOINCREMENT so that an id (the change's webhook-id) is
    // never reused. `target_state`: targets disabled by their receiver (410 Gone) until an
    // operator re-enables them.
    "
    CREATE TABLE history (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        target       TEXT NOT NULL,
        product_key  TEXT NOT NULL,
        version      INTEGER NOT NULL,
        deleted      INTEGER NOT NULL,
        snapshot     TEXT,              -- canonical JSON; NULL for a deletion
        content_hash TEXT NOT NULL,
        accepted_at  INTEGER NOT NULL   -- Unix ms
    );
    CREATE INDEX history_next ON history (target, product_key, id);

    CREATE TABLE target_state (
        target      TEXT PRIMARY KEY,
        disabled_at INTEGER NOT NULL,   -- Unix ms
        reason      TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 5: an outbox row may follow its product (see `outbox`): an empty `desired_hash` and
    // `idempotency_key` ask for the product's current content. No table changes; the
    // version keeps an older pimsync, which would read the empty hash literally, out.
    "-- outbox rows that follow their product",
];

/// The schema version this build writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Settings every connection needs. WAL lets readers run beside the writer;
/// `synchronous=FULL` makes a commit durable before it returns, which is what a 2xx promises.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Under sustained writes a passive checkpoint never catches up with the writer, and the
/// WAL would grow without bound (measured: 2.7 GB in 8 s). So the writer checkpoints
/// itself once the WAL holds this many pages (32 MiB), which lets the WAL start over; the
/// checkpointer thread has usually copied most of it already.
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// Settings of the writer's own connection: a 16 MiB page cache for the hot B-tree pages,
/// and the checkpoint bound above.
pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    // Keep the WAL file's blocks once allocated (it stays near the checkpoint bound):
    // re-growing a truncated WAL makes the filesystem zero every new block, which measured
    // as a fifth of the writer's time.
    conn.pragma_update(None, "journal_size_limit", 128 * 1024 * 1024)?;
    Ok(())
}

/// Brings the database to `VERSION`. Refuses a database written by a newer pimsync rather
/// than guess at its meaning.
pub fn migrate(conn: &mut Connection) -> Result<(), super::StoreError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > VERSION {
        return Err(super::StoreError::TooNew {
            found: current,
            supported: VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The SQLite build options of `.cargo/config.toml` are in effect: page caches without
    /// a shared lock, allocations not counted.
    #[test]
    fn sqlite_is_built_with_the_projects_options() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
