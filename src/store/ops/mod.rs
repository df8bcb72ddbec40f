//! Operations on the store: resync marking, dead-letter operations, status figures and
//! the inbox's stored webhooks. Each has one implementation here, used by the operator CLI,
//! the admin API and the scheduler alike.
//!
//! Writes go through the writer like every other write (the CLI opens a short-lived
//! [`Store`](crate::store::Store) of its own; SQLite's locking and the busy timeout let it share the database
//! with a running daemon). Reads go through [`ReadOnly`], a read-only connection that
//! never creates or migrates anything, so `status` cannot disturb a daemon.

mod dead;
mod resync;
mod status;
mod target_state;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use super::outbox::{desired_hash_sql, resolved_key};
use super::query::InboxRow;
use super::{StoreError, schema};

pub use dead::{DeadOrder, DeadRow, DeadSelection};
pub use resync::{Resync, ResyncMarked, ResyncScope};
pub use status::{LastError, Status, StoreStatus, TargetStatus};
pub use target_state::Disabled;
pub(in crate::store) use target_state::disable_target;

/// One outbox row's identity: the outbox has no numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RowKey {
    pub target: String,
    pub product_key: String,
}

impl RowKey {
    pub fn new(target: impl Into<String>, product_key: impl Into<String>) -> RowKey {
        RowKey {
            target: target.into(),
            product_key: product_key.into(),
        }
    }
}

impl std::fmt::Display for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.target, self.product_key)
    }
}

/// Everything known about one outbox row, for `dead show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDetail {
    #[serde(flatten)]
    pub key: RowKey,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub desired_hash: String,
    pub idempotency_key: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub next_attempt_at: i64,
    /// The product as stored: (version, deleted, canonical JSON).
    pub product: Option<(i64, bool, Option<String>)>,
    /// What the target last applied: (hash, remote ids JSON, applied at).
    pub applied: Option<(String, String, i64)>,
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub row: InboxRow,
    /// The kept headers, as stored (a JSON object).
    pub headers_json: String,
    pub body: Vec<u8>,
}

impl InboxEntry {
    /// The kept headers as (name, value) pairs.
    pub fn headers(&self) -> Vec<(String, String)> {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.headers_json)
            .map(|map| {
                map.into_iter()
                    .map(|(name, value)| match value {
                        serde_json::Value::String(s) => (name, s),
                        other => (name, other.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Where one row of a resync stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProgress {
    /// Pending or in flight.
    Waiting,
    /// Gone from the outbox: applied.
    Applied,
    Dead(Option<String>),
}

/// A read-only view of the database for the CLI. Opening it never creates, migrates or
/// locks anything.
pub struct ReadOnly {
    conn: Connection,
    path: PathBuf,
}

impl ReadOnly {
    pub fn open(path: &Path) -> Result<ReadOnly, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        if !path.exists() {
            return Err(open_error(
                "no database there (has `pimsync serve` run with this config?)".into(),
            ));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(e.to_string()))?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > schema::VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: schema::VERSION,
            });
        }
        if version == 0 {
            return Err(open_error("not a pimsync database (no schema)".into()));
        }
        Ok(ReadOnly {
            conn,
            path: path.to_owned(),
        })
    }
    /// One outbox row with its product and what its target last applied.
    pub fn row_detail(&self, key: &RowKey) -> Result<Option<RowDetail>, StoreError> {
        let conn = &self.conn;
        let tx = conn.unchecked_transaction()?;
        let Some(mut detail) = tx
            .query_row(
                concat!(
                    "SELECT state, attempts, last_error, ",
                    desired_hash_sql!(),
                    ", idempotency_key, created_at, updated_at, next_attempt_at
                     FROM outbox WHERE product_key = ?2 AND target = ?1"
                ),
                params![key.target, key.product_key],
                |row| {
                    let desired_hash: String = row.get(3)?;
                    let idempotency_key =
                        resolved_key(&key.target, &key.product_key, row.get(4)?, &desired_hash);
                    Ok(RowDetail {
                        key: key.clone(),
                        state: row.get(0)?,
                        attempts: row.get(1)?,
                        last_error: row.get(2)?,
                        desired_hash,
                        idempotency_key,
                        created_at: row.get(5)?,
                        updated_at: row.get(6)?,
                        next_attempt_at: row.get(7)?,
                        product: None,
                        applied: None,
                    })
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        detail.product = tx
            .query_row(
                "SELECT version, deleted, snapshot FROM products WHERE product_key = ?1",
                [&key.product_key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        detail.applied = tx
            .query_row(
                "SELECT hash, remote_ids, applied_at FROM applied WHERE product_key = ?2 AND target = ?1",
                params![key.target, key.product_key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        Ok(Some(detail))
    }

    /// The newest stored webhooks first, at most `limit`.
    pub fn inbox_list(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT id, source, delivery_id, received_at, changes FROM inbox
             WHERE (?1 IS NULL OR source = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![source, limit as i64], inbox_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn inbox_show(&self, id: i64) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, source, delivery_id, received_at, changes, headers, body
                 FROM inbox WHERE id = ?1",
                [id],
                |row| {
                    Ok(InboxEntry {
                        row: inbox_row(row)?,
                        headers_json: row.get(5)?,
                        body: row.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Where each of `rows` stands. Few rows are looked up one by one; many are read per
    /// target in one scan.
    pub fn progress(&self, rows: &[RowKey]) -> Result<Vec<RowProgress>, StoreError> {
        let conn = &self.conn;
        let tx = conn.unchecked_transaction()?;
        let state = |found: Option<(String, Option<String>)>| match found {
            None => RowProgress::Applied,
            Some((state, error)) if state == "dead" => RowProgress::Dead(error),
            Some(_) => RowProgress::Waiting,
        };
        if rows.len() <= 512 {
            let mut one = tx.prepare_cached(
                "SELECT state, last_error FROM outbox WHERE product_key = ?2 AND target = ?1",
            )?;
            return rows
                .iter()
                .map(|row| {
                    let found = one
                        .query_row(params![row.target, row.product_key], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    Ok(state(found))
                })
                .collect();
        }
        let targets: BTreeSet<&str> = rows.iter().map(|r| r.target.as_str()).collect();
        let mut present: HashMap<(String, String), (String, Option<String>)> = HashMap::new();
        let mut scan = tx.prepare_cached(
            "SELECT product_key, state, last_error FROM outbox WHERE target = ?1",
        )?;
        for target in targets {
            for row in scan.query_map([target], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
            })? {
                let (key, state, error) = row?;
                present.insert((target.to_owned(), key), (state, error));
            }
        }
        Ok(rows
            .iter()
            .map(|row| state(present.remove(&(row.target.clone(), row.product_key.clone()))))
            .collect())
    }
}

fn inbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InboxRow> {
    Ok(InboxRow {
        id: row.get(0)?,
        source: row.get(1)?,
        delivery_id: row.get(2)?,
        received_at: row.get(3)?,
        changes: row.get(4)?,
    })
}

#[cfg(test)]
mod tests;
