//! Dead-lettered outbox rows: list, retry, discard.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{ReadOnly, RowKey};
use crate::store::{Store, StoreError, now_ms};

impl Store {
    /// Puts dead rows back to pending (attempts 0, due now). Returns the rows retried;
    /// rows that are not dead are left alone.
    pub async fn dead_retry(&self, rows: Vec<RowKey>) -> Result<Vec<RowKey>, StoreError> {
        self.write(move |conn| dead_retry(conn, &rows, now_ms()))
            .await
    }

    /// Puts every dead row of `target` back to pending.
    pub async fn dead_retry_target(&self, target: String) -> Result<Vec<RowKey>, StoreError> {
        self.write(move |conn| {
            let rows = dead_rows(conn, Some(&target))?
                .into_iter()
                .map(|row| row.key)
                .collect::<Vec<_>>();
            dead_retry(conn, &rows, now_ms())
        })
        .await
    }

    /// Deletes dead rows. The product stays as it is; a later change re-creates the row.
    pub async fn dead_discard(&self, rows: Vec<RowKey>) -> Result<Vec<RowKey>, StoreError> {
        self.write(move |conn| {
            let mut delete = conn.prepare_cached(
                "DELETE FROM outbox WHERE product_key = ?2 AND target = ?1 AND state = 'dead'",
            )?;
            let mut done = Vec::new();
            for row in rows {
                if delete.execute(params![row.target, row.product_key])? > 0 {
                    done.push(row);
                }
            }
            Ok(done)
        })
        .await
    }
}

fn dead_retry(conn: &Connection, rows: &[RowKey], now: i64) -> Result<Vec<RowKey>, StoreError> {
    let mut retry = conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, updated_at = ?3
         WHERE product_key = ?2 AND target = ?1 AND state = 'dead'",
    )?;
    let mut done = Vec::new();
    for row in rows {
        if retry.execute(params![row.target, row.product_key, now])? > 0 {
            done.push(row.clone());
        }
    }
    Ok(done)
}

/// A dead-lettered outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadRow {
    #[serde(flatten)]
    pub key: RowKey,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When it died (Unix ms).
    pub updated_at: i64,
    pub desired_hash: String,
}

fn dead_rows(conn: &Connection, target: Option<&str>) -> rusqlite::Result<Vec<DeadRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT target, product_key, attempts, last_error, updated_at, desired_hash FROM outbox
         WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)
         ORDER BY target, updated_at, product_key",
    )?;
    statement
        .query_map([target], |row| {
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
        Ok(dead_rows(&self.conn, target)?)
    }
}
