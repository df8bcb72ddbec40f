//! Dead-lettered outbox rows: list, retry, discard. The one implementation behind
//! `pimsync dead` and the admin API's `/dead` routes.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{ReadOnly, RowKey};
use crate::store::outbox::desired_hash_sql;
use crate::store::{Store, StoreError, now_ms};

/// A dead-lettered outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadRow {
    #[serde(flatten)]
    pub key: RowKey,
    pub desired_hash: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When it died (Unix ms).
    pub updated_at: i64,
}

/// Which dead rows a listing returns, in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadOrder {
    /// All of them, by target then time of death.
    ByTarget,
    /// The `n` most recent, newest first.
    Newest(usize),
}

/// Which dead rows a retry or discard touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadSelection {
    /// These rows.
    Rows(Vec<RowKey>),
    /// Every dead row of these targets.
    Targets(Vec<String>),
}

impl Store {
    /// Dead rows, optionally of one target.
    pub async fn dead_list(
        &self,
        target: Option<String>,
        order: DeadOrder,
    ) -> Result<Vec<DeadRow>, StoreError> {
        self.read(move |conn| dead_rows(conn, target.as_deref(), order))
            .await
    }

    /// Puts dead rows back to pending (attempts 0, due now). Returns the rows retried;
    /// named rows that are not dead are left alone.
    pub async fn dead_retry(&self, selection: DeadSelection) -> Result<Vec<RowKey>, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            for_dead(
                conn,
                &selection,
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, updated_at = ?3
                 WHERE product_key = ?2 AND target = ?1 AND state = 'dead'",
                Some(now),
            )
        })
        .await
    }

    /// Deletes dead rows. The product stays as it is; a later change re-creates the row.
    /// For a target that gets every change, what is discarded is the change that failed
    /// (the oldest kept); later changes stay queued and are delivered. Returns the rows
    /// discarded.
    pub async fn dead_discard(&self, selection: DeadSelection) -> Result<Vec<RowKey>, StoreError> {
        self.write(move |conn| {
            let discarded = for_dead(
                conn,
                &selection,
                "DELETE FROM outbox WHERE product_key = ?2 AND target = ?1 AND state = 'dead'",
                None,
            )?;
            let now = now_ms();
            for row in &discarded {
                crate::store::history::discard_oldest(conn, &row.target, &row.product_key, now)?;
            }
            Ok(discarded)
        })
        .await
    }
}

/// Runs `sql` (parameters: target, product key and, when given, now) on each selected row
/// and returns the rows it changed.
fn for_dead(
    conn: &Connection,
    selection: &DeadSelection,
    sql: &str,
    now: Option<i64>,
) -> Result<Vec<RowKey>, StoreError> {
    let rows = match selection {
        DeadSelection::Rows(rows) => rows.clone(),
        DeadSelection::Targets(targets) => {
            let mut rows = Vec::new();
            for target in targets {
                let dead = dead_rows(conn, Some(target), DeadOrder::ByTarget)?;
                rows.extend(dead.into_iter().map(|row| row.key));
            }
            rows
        }
    };
    let mut statement = conn.prepare_cached(sql)?;
    let mut done = Vec::new();
    for row in rows {
        let changed = match now {
            Some(now) => statement.execute(params![row.target, row.product_key, now])?,
            None => statement.execute(params![row.target, row.product_key])?,
        };
        if changed > 0 {
            done.push(row);
        }
    }
    Ok(done)
}

fn dead_rows(
    conn: &Connection,
    target: Option<&str>,
    order: DeadOrder,
) -> rusqlite::Result<Vec<DeadRow>> {
    let (order, limit) = match order {
        DeadOrder::ByTarget => ("target, updated_at, product_key", -1),
        DeadOrder::Newest(n) => ("updated_at DESC, target, product_key", n as i64),
    };
    let mut statement = conn.prepare_cached(&format!(
        "SELECT target, product_key, attempts, last_error, updated_at, {desired} FROM outbox
         WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)
         ORDER BY {order} LIMIT ?2",
        desired = desired_hash_sql!()
    ))?;
    statement
        .query_map(params![target, limit], |row| {
            Ok(DeadRow {
                key: RowKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
                attempts: row.get(2)?,
                last_error: row.get(3)?,
                updated_at: row.get(4)?,
                desired_hash: row.get(5)?,
            })
        })?
        .collect()
}

impl ReadOnly {
    /// Dead rows, by target then time of death.
    pub fn dead_list(&self, target: Option<&str>) -> Result<Vec<DeadRow>, StoreError> {
        Ok(dead_rows(&self.conn, target, DeadOrder::ByTarget)?)
    }
}
