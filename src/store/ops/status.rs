//! Per-target figures and the store's size: the one implementation behind
//! `pimsync status` and the admin API's `GET /status`.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::ReadOnly;
use crate::store::{Store, StoreError};

/// One target's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    pub name: String,
    /// False for a target that has rows in the store but is not in the config.
    pub configured: bool,
    pub pending: i64,
    pub in_flight: i64,
    pub dead: i64,
    /// Products applied within the last hour (not counting applied states cleared by a
    /// forced resync and not applied again yet).
    pub applied_last_hour: i64,
    /// The most recent error recorded on one of the target's outbox rows.
    pub last_error: Option<LastError>,
    /// When the oldest row still waiting (pending or in flight) became pending (Unix ms).
    pub oldest_pending_since: Option<i64>,
    /// Changes kept for delivery one by one (a webhook target with `coalesce = false`).
    pub queued_changes: i64,
    /// Set while the target is disabled (its receiver answered 410 Gone): nothing is sent
    /// until an operator re-enables it; changes keep accumulating meanwhile.
    pub disabled: Option<super::Disabled>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub product_key: String,
    pub error: String,
    pub at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    pub path: PathBuf,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub products: i64,
    pub tombstones: i64,
    pub inbox: i64,
    pub fetch_queue: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// When these figures were read (Unix ms).
    pub at: i64,
    pub targets: Vec<TargetStatus>,
    pub store: StoreStatus,
}

impl ReadOnly {
    /// Per target figures (configured targets first, in config order, then any other
    /// target found in the store), the store's size and row counts.
    pub fn status(&self, configured: &[String], now: i64) -> Result<Status, StoreError> {
        let conn = &self.conn;
        let tx = conn.unchecked_transaction()?; // one snapshot for every figure
        let mut names: Vec<(String, bool)> = configured.iter().map(|n| (n.clone(), true)).collect();
        let mut stored = tx.prepare("SELECT DISTINCT target FROM outbox ORDER BY target")?;
        for name in stored.query_map([], |row| row.get::<_, String>(0))? {
            let name = name?;
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, false));
            }
        }
        drop(stored);
        let targets = target_figures(&tx, names, now)?;
        let count = |sql: &str| tx.query_row(sql, [], |row| row.get::<_, i64>(0));
        let size = |path: PathBuf| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let store = StoreStatus {
            path: self.path.clone(),
            db_bytes: size(self.path.clone()),
            wal_bytes: size(PathBuf::from(wal)),
            products: count("SELECT count(*) FROM products WHERE deleted = 0")?,
            tombstones: count("SELECT count(*) FROM products WHERE deleted = 1")?,
            inbox: count("SELECT count(*) FROM inbox")?,
            fetch_queue: count("SELECT count(*) FROM fetch_queue")?,
        };
        Ok(Status {
            at: now,
            targets,
            store,
        })
    }
}

impl Store {
    /// The figures of each of `configured`, in the order given (the admin API's
    /// `GET /status`; `pimsync status` reads the same figures through [`ReadOnly::status`]).
    pub async fn target_status(
        &self,
        configured: Vec<String>,
        now: i64,
    ) -> Result<Vec<TargetStatus>, StoreError> {
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?; // one snapshot for every figure
            target_figures(
                &tx,
                configured.into_iter().map(|n| (n, true)).collect(),
                now,
            )
        })
        .await
    }
}

/// Each named target's figures, as of `now`; `(name, configured)`.
fn target_figures(
    conn: &Connection,
    names: Vec<(String, bool)>,
    now: i64,
) -> rusqlite::Result<Vec<TargetStatus>> {
    let mut states =
        conn.prepare_cached("SELECT state, count(*) FROM outbox WHERE target = ?1 GROUP BY state")?;
    let mut applied = conn.prepare_cached(
        "SELECT count(*) FROM applied WHERE target = ?1 AND applied_at >= ?2 AND hash <> ''",
    )?;
    let mut last_error = conn.prepare_cached(
        "SELECT product_key, last_error, updated_at FROM outbox
         WHERE target = ?1 AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
    )?;
    let mut oldest = conn.prepare_cached(
        "SELECT min(created_at) FROM outbox WHERE target = ?1 AND state IN ('pending', 'leased')",
    )?;
    let mut history = conn.prepare_cached("SELECT count(*) FROM history WHERE target = ?1")?;
    let mut targets = Vec::new();
    for (name, configured) in names {
        let mut status = TargetStatus {
            name: name.clone(),
            configured,
            ..Default::default()
        };
        for row in states.query_map([&name], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })? {
            let (state, count) = row?;
            match state.as_str() {
                "pending" => status.pending = count,
                "leased" => status.in_flight = count,
                "dead" => status.dead = count,
                _ => {}
            }
        }
        status.applied_last_hour =
            applied.query_row(params![name, now - 3_600_000], |row| row.get(0))?;
        status.last_error = last_error
            .query_row([&name], |row| {
                Ok(LastError {
                    product_key: row.get(0)?,
                    error: row.get(1)?,
                    at: row.get(2)?,
                })
            })
            .optional()?;
        status.oldest_pending_since = oldest.query_row([&name], |row| row.get(0))?;
        status.queued_changes = history.query_row([&name], |row| row.get(0))?;
        status.disabled = super::target_state::disabled(conn, &name)?;
        targets.push(status);
    }
    Ok(targets)
}
