//! What the operator CLI needs from the store: resync marking, dead-letter operations,
//! status figures and the inbox's stored webhooks.
//!
//! Writes go through the writer like every other write (the CLI opens a short-lived
//! [`Store`] of its own; SQLite's locking and the busy timeout let it share the database
//! with a running daemon). Reads go through [`ReadOnly`], a read-only connection that
//! never creates or migrates anything, so `status` cannot disturb a daemon.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pimsync_connectors::{ContentHash, Snapshot, idempotency_key};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use super::query::InboxRow;
use super::{Store, StoreError, now_ms, schema};
use crate::route::Router;

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

/// Which products a resync covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncScope {
    Keys(Vec<String>),
    /// Products stored or changed at or after this time (Unix ms).
    Since(i64),
    All,
}

#[derive(Debug, Clone)]
pub struct Resync {
    /// The targets to resync; each product still goes only where its target's filter admits it.
    pub targets: Vec<String>,
    pub scope: ResyncScope,
    /// Ignore what is recorded as applied: the dispatcher calls the target even when the
    /// target should already hold this content.
    pub force: bool,
}

/// What a resync marked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncMarked {
    /// The outbox rows now pending (or left in flight, when a dispatcher holds them).
    pub rows: Vec<RowKey>,
    /// Of those, rows for deleted products (they resync as deletions).
    pub deletions: usize,
    /// Keys named with `Keys` that are not in the store.
    pub unknown: Vec<String>,
    /// Products whose filter admits none of the selected targets.
    pub filtered_out: usize,
    /// `applied` rows whose hash was cleared by `force`.
    pub forced: usize,
}

impl Store {
    /// Marks products pending in the outbox for the given targets, in one transaction.
    pub async fn resync(
        &self,
        request: Resync,
        router: Arc<Router>,
    ) -> Result<ResyncMarked, StoreError> {
        self.write(move |conn| resync(conn, &request, &router, now_ms()))
            .await
    }

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

fn resync(
    conn: &Connection,
    request: &Resync,
    router: &Router,
    now: i64,
) -> Result<ResyncMarked, StoreError> {
    let selected: BTreeSet<&str> = request
        .targets
        .iter()
        .map(String::as_str)
        .filter(|t| router.all().any(|c| c == *t))
        .collect();
    let mut marked = ResyncMarked::default();
    let products: Vec<(String, bool, Option<String>, String)> = {
        let map = |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        };
        const COLUMNS: &str = "SELECT product_key, deleted, snapshot, content_hash FROM products";
        match &request.scope {
            ResyncScope::Keys(keys) => {
                let mut one = conn.prepare(&format!("{COLUMNS} WHERE product_key = ?1"))?;
                let mut found = Vec::new();
                for key in keys {
                    match one.query_row([key], map).optional()? {
                        Some(product) => found.push(product),
                        None => marked.unknown.push(key.clone()),
                    }
                }
                found
            }
            ResyncScope::Since(since) => conn
                .prepare(&format!(
                    "{COLUMNS} WHERE updated_at >= ?1 ORDER BY product_key"
                ))?
                .query_map([since], map)?
                .collect::<rusqlite::Result<_>>()?,
            ResyncScope::All => conn
                .prepare(&format!("{COLUMNS} ORDER BY product_key"))?
                .query_map([], map)?
                .collect::<rusqlite::Result<_>>()?,
        }
    };
    let mut holders = conn.prepare_cached(
        "SELECT target FROM applied WHERE product_key = ?1
         UNION SELECT target FROM outbox WHERE product_key = ?1",
    )?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state, attempts,
                             next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)
         ON CONFLICT (product_key, target) DO UPDATE SET
             desired_hash = excluded.desired_hash,
             idempotency_key = excluded.idempotency_key,
             state = CASE WHEN outbox.state = 'leased' THEN 'leased' ELSE 'pending' END,
             attempts = 0,
             next_attempt_at = excluded.next_attempt_at,
             updated_at = excluded.updated_at",
    )?;
    let mut force = conn.prepare_cached(
        "UPDATE applied SET hash = '' WHERE product_key = ?2 AND target = ?1 AND hash <> ''",
    )?;
    for (key, deleted, snapshot, hash) in products {
        let snapshot: Option<Snapshot> = snapshot
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        let mut targets: Vec<String> = match &snapshot {
            Some(snapshot) => router.matching(snapshot).map(str::to_owned).collect(),
            // A tombstone without content: every target may hold it.
            None if deleted => router.all().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        if deleted {
            // A deletion also goes to any target that holds the product, as in ingest.
            for target in holders.query_map([&key], |row| row.get::<_, String>(0))? {
                let target = target?;
                if router.all().any(|t| t == target) && !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }
        targets.retain(|t| selected.contains(t.as_str()));
        if targets.is_empty() {
            marked.filtered_out += 1;
            continue;
        }
        let hash = ContentHash(hash);
        for target in targets {
            let idempotency = if request.force {
                // A forced apply is a new request on purpose: a target that remembers
                // idempotency keys must not answer it from its cache.
                idempotency_key(
                    &target,
                    &key,
                    &ContentHash(format!("{}+force@{now}", hash.as_str())),
                )
            } else {
                idempotency_key(&target, &key, &hash)
            };
            upsert.execute(params![target, key, hash.as_str(), idempotency, now])?;
            if request.force {
                marked.forced += force.execute(params![target, key])?;
            }
            if deleted {
                marked.deletions += 1;
            }
            marked.rows.push(RowKey::new(target, key.clone()));
        }
    }
    Ok(marked)
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

/// One target's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    pub name: String,
    /// False for a target that has rows in the store but is not in the config.
    pub configured: bool,
    pub pending: i64,
    pub in_flight: i64,
    pub dead: i64,
    pub applied_last_hour: i64,
    pub last_error: Option<LastError>,
    /// When the oldest pending row became pending (Unix ms).
    pub oldest_pending_since: Option<i64>,
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
        let mut states =
            tx.prepare("SELECT state, count(*) FROM outbox WHERE target = ?1 GROUP BY state")?;
        let mut applied = tx.prepare(
            "SELECT count(*) FROM applied WHERE target = ?1 AND applied_at >= ?2 AND hash <> ''",
        )?;
        let mut last_error = tx.prepare(
            "SELECT product_key, last_error, updated_at FROM outbox
             WHERE target = ?1 AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
        )?;
        let mut oldest = tx.prepare(
            "SELECT min(created_at) FROM outbox WHERE target = ?1 AND state IN ('pending', 'leased')",
        )?;
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
            targets.push(status);
        }
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

    /// Dead rows, by target then time of death.
    pub fn dead_list(&self, target: Option<&str>) -> Result<Vec<DeadRow>, StoreError> {
        Ok(dead_rows(&self.conn, target)?)
    }

    /// One outbox row with its product and what its target last applied.
    pub fn row_detail(&self, key: &RowKey) -> Result<Option<RowDetail>, StoreError> {
        let conn = &self.conn;
        let tx = conn.unchecked_transaction()?;
        let Some(mut detail) = tx
            .query_row(
                "SELECT state, attempts, last_error, desired_hash, idempotency_key, created_at,
                        updated_at, next_attempt_at
                 FROM outbox WHERE product_key = ?2 AND target = ?1",
                params![key.target, key.product_key],
                |row| {
                    Ok(RowDetail {
                        key: key.clone(),
                        state: row.get(0)?,
                        attempts: row.get(1)?,
                        last_error: row.get(2)?,
                        desired_hash: row.get(3)?,
                        idempotency_key: row.get(4)?,
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
#[path = "ops_tests.rs"]
mod tests;
