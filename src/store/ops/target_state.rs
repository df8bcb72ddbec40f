//! Targets disabled by their receiver: a webhook endpoint answering `410 Gone` says "stop
//! calling me". The dispatcher records that here (in the transaction that puts the row
//! back to pending), stops calling the target, and keeps accepting its changes; an
//! operator re-enables it with `pimsync target enable` or the admin API, and delivery
//! resumes where it stopped. Kept in the store rather than in memory so that a restart
//! does not start calling a receiver that asked us to stop.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::ReadOnly;
use crate::store::{Store, StoreError, now_ms};

/// Why and since when a target is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disabled {
    /// Unix ms.
    pub at: i64,
    pub reason: String,
}

/// Marks `target` disabled (keeping the first reason and time if it already is).
pub(in crate::store) fn disable_target(
    conn: &Connection,
    target: &str,
    reason: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO target_state (target, disabled_at, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (target) DO NOTHING",
        )?
        .execute(params![target, now, reason])?;
    Ok(inserted > 0)
}

pub(super) fn disabled(conn: &Connection, target: &str) -> rusqlite::Result<Option<Disabled>> {
    conn.prepare_cached("SELECT disabled_at, reason FROM target_state WHERE target = ?1")?
        .query_row([target], |row| {
            Ok(Disabled {
                at: row.get(0)?,
                reason: row.get(1)?,
            })
        })
        .optional()
}

impl Store {
    /// Re-enables a disabled target; returns what it was disabled for (None: it was not).
    /// Its rows are due at once, so delivery resumes as soon as the worker looks.
    pub async fn enable_target(&self, target: String) -> Result<Option<Disabled>, StoreError> {
        self.write(move |conn| {
            let was = disabled(conn, &target)?;
            if was.is_some() {
                conn.prepare_cached("DELETE FROM target_state WHERE target = ?1")?
                    .execute([&target])?;
                conn.prepare_cached(
                    "UPDATE outbox SET next_attempt_at = ?2 WHERE target = ?1 AND state = 'pending'",
                )?
                .execute(params![target, now_ms()])?;
            }
            Ok(was)
        })
        .await
    }

    /// Disables a target by hand (the same state a 410 leaves); false if it already was.
    pub async fn disable_target(&self, target: String, reason: String) -> Result<bool, StoreError> {
        self.write(move |conn| disable_target(conn, &target, &reason, now_ms()))
            .await
    }

    /// Whether the dispatcher may call `target`.
    pub async fn target_disabled(&self, target: &str) -> Result<Option<Disabled>, StoreError> {
        let target = target.to_owned();
        self.read(move |conn| disabled(conn, &target)).await
    }
}

impl ReadOnly {
    pub fn target_disabled(&self, target: &str) -> Result<Option<Disabled>, StoreError> {
        Ok(disabled(&self.conn, target)?)
    }
}
