//! Per-change history for targets that want every change (`coalesce = false`), not only
//! the latest state.
//!
//! The outbox stays level-triggered and is still the unit of leasing: its one row per
//! (target, product) holds the product for one worker, so a product's changes are never in
//! flight twice. Behind that row, `history` keeps every accepted change, appended in the
//! ingest transaction. A lease of such a target takes the oldest entry; the settlement that
//! records its delivery deletes it in the same transaction and leaves the row pending while
//! entries remain. So entries go out oldest first, each under its own id (the webhook-id,
//! derived from the entry's never-reused AUTOINCREMENT id, the same on every retry), and a
//! crash between delivery and settlement repeats the same entry with the same id rather
//! than losing or renumbering it.

use pimsync_connectors::{ContentHash, idempotency_key};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError};

/// One accepted change, as the ingest records it.
pub(super) struct Change<'a> {
    pub target: &'a str,
    pub product_key: &'a str,
    pub version: i64,
    pub deleted: bool,
    pub snapshot: Option<&'a str>,
    pub hash: &'a str,
    pub accepted_at: i64,
}

pub(super) fn append(conn: &Connection, change: &Change<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO history (target, product_key, version, deleted, snapshot, content_hash, accepted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        change.target,
        change.product_key,
        change.version,
        change.deleted,
        change.snapshot,
        change.hash,
        change.accepted_at
    ])?;
    Ok(())
}

/// The oldest undelivered change of a product for a target.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub id: i64,
    pub version: i64,
    pub deleted: bool,
    pub snapshot: Option<String>,
    pub hash: String,
    pub accepted_at: i64,
}

impl Entry {
    /// The entry's idempotency key (its webhook-id): stable per entry, distinct from every
    /// other entry's even when two changes have equal content.
    pub fn idempotency_key(&self, target: &str, product_key: &str) -> String {
        idempotency_key(
            target,
            product_key,
            &ContentHash(format!("history:{}", self.id)),
        )
    }
}

pub(super) fn oldest(
    conn: &Connection,
    target: &str,
    product_key: &str,
) -> Result<Option<Entry>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, version, deleted, snapshot, content_hash, accepted_at FROM history
             WHERE target = ?1 AND product_key = ?2 ORDER BY id LIMIT 1",
        )?
        .query_row(params![target, product_key], |row| {
            Ok(Entry {
                id: row.get(0)?,
                version: row.get(1)?,
                deleted: row.get(2)?,
                snapshot: row.get(3)?,
                hash: row.get(4)?,
                accepted_at: row.get(5)?,
            })
        })
        .optional()?)
}

/// Removes a delivered entry; returns whether later entries of the product remain.
pub(super) fn delivered(
    conn: &Connection,
    id: i64,
    target: &str,
    product_key: &str,
) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM history WHERE id = ?1")?
        .execute([id])?;
    let more: Option<i64> = conn
        .prepare_cached("SELECT id FROM history WHERE target = ?1 AND product_key = ?2 LIMIT 1")?
        .query_row(params![target, product_key], |row| row.get(0))
        .optional()?;
    Ok(more.is_some())
}

/// Drops the oldest kept change of a product for a target (the one a dead row failed on,
/// discarded by an operator). If later changes remain, the product gets an outbox row
/// again, pending now, so they are delivered.
pub(super) fn discard_oldest(
    conn: &Connection,
    target: &str,
    product_key: &str,
    now: i64,
) -> Result<(), StoreError> {
    let Some(entry) = oldest(conn, target, product_key)? else {
        return Ok(());
    };
    if !delivered(conn, entry.id, target, product_key)? {
        return Ok(());
    }
    let hash: Option<String> = conn
        .prepare_cached("SELECT content_hash FROM products WHERE product_key = ?1")?
        .query_row([product_key], |row| row.get(0))
        .optional()?;
    let Some(hash) = hash else {
        return Ok(());
    };
    let key = idempotency_key(target, product_key, &ContentHash(hash.clone()));
    conn.prepare_cached(
        "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state, attempts,
                             next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)
         ON CONFLICT (product_key, target) DO NOTHING",
    )?
    .execute(params![target, product_key, hash, key, now])?;
    Ok(())
}

impl Store {
    /// Drops the queued changes of these targets (they coalesce now: a config changed from
    /// `coalesce = false`), so their history neither lingers nor is sent later. Returns the
    /// targets that had any, with how many.
    pub async fn drop_history(
        &self,
        targets: Vec<String>,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        self.write(move |conn| {
            let mut drop = conn.prepare_cached("DELETE FROM history WHERE target = ?1")?;
            let mut dropped = Vec::new();
            for target in &targets {
                let n = drop.execute([target])?;
                if n > 0 {
                    dropped.push((target.clone(), n));
                }
            }
            Ok(dropped)
        })
        .await
    }
}
