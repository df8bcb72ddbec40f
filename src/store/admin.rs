//! Queries and commands of the admin API: per-target status and dead letters.

use rusqlite::{Connection, params};

use super::{Store, StoreError, now_ms};

/// One target's outbox at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub pending: i64,
    pub leased: i64,
    pub dead: i64,
    /// Products whose state was recorded as applied within the last hour.
    pub applied_last_hour: i64,
    /// The most recent error recorded on one of the target's outbox rows.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Age in ms of the oldest pending row.
    pub oldest_pending_ms: Option<i64>,
}

/// A dead-lettered outbox row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub target: String,
    pub product_key: String,
    pub desired_hash: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When it was dead-lettered (Unix ms).
    pub updated_at: i64,
}

/// Which dead letters a retry or discard touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadSelection {
    /// Every dead letter of these targets.
    Targets(Vec<String>),
    /// These products of one target.
    Keys { target: String, keys: Vec<String> },
}

impl Store {
    /// Status of each of `targets`, in the order given.
    pub async fn target_status(
        &self,
        targets: Vec<String>,
    ) -> Result<Vec<TargetStatus>, StoreError> {
        self.read(move |conn| {
            let now = now_ms();
            targets
                .into_iter()
                .map(|target| target_status(conn, target, now))
                .collect()
        })
        .await
    }

    /// Dead letters, newest first, optionally of one target.
    pub async fn dead_letters(
        &self,
        target: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare(
                "SELECT target, product_key, desired_hash, attempts, last_error, updated_at
                 FROM outbox WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)
                 ORDER BY updated_at DESC, target, product_key LIMIT ?2",
            )?;
            let rows = statement.query_map(params![target, limit as i64], |row| {
                Ok(DeadLetter {
                    target: row.get(0)?,
                    product_key: row.get(1)?,
                    desired_hash: row.get(2)?,
                    attempts: row.get(3)?,
                    last_error: row.get(4)?,
                    updated_at: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Makes dead letters pending again, with a fresh attempt count. Returns how many.
    pub async fn retry_dead(&self, selection: DeadSelection) -> Result<usize, StoreError> {
        self.write(move |conn| {
            for_dead(
                conn,
                &selection,
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, updated_at = ?3
                 WHERE target = ?1 AND state = 'dead' AND (?2 IS NULL OR product_key = ?2)",
            )
        })
        .await
    }

    /// Drops dead letters: the target is not sent that state (a later change is). Returns
    /// how many.
    pub async fn discard_dead(&self, selection: DeadSelection) -> Result<usize, StoreError> {
        self.write(move |conn| {
            for_dead(
                conn,
                &selection,
                "DELETE FROM outbox WHERE target = ?1 AND state = 'dead' AND (?2 IS NULL OR product_key = ?2)
                 AND ?3 IS NOT NULL",
            )
        })
        .await
    }
}

fn target_status(conn: &Connection, target: String, now: i64) -> rusqlite::Result<TargetStatus> {
    let mut status = TargetStatus::default();
    let mut counts = conn.prepare_cached(
        "SELECT state, count(*), min(CASE WHEN state = 'pending' THEN created_at END)
         FROM outbox WHERE target = ?1 GROUP BY state",
    )?;
    let rows = counts.query_map([&target], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Option<i64>>(2)?,
        ))
    })?;
    for row in rows {
        let (state, n, oldest) = row?;
        match state.as_str() {
            "pending" => {
                status.pending = n;
                status.oldest_pending_ms = oldest.map(|t| (now - t).max(0));
            }
            "leased" => status.leased = n,
            "dead" => status.dead = n,
            _ => {}
        }
    }
    status.applied_last_hour = conn
        .prepare_cached("SELECT count(*) FROM applied WHERE target = ?1 AND applied_at >= ?2")?
        .query_row(params![target, now - 3_600_000], |row| row.get(0))?;
    let last: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT last_error, updated_at FROM outbox WHERE target = ?1 AND last_error IS NOT NULL
             ORDER BY updated_at DESC LIMIT 1",
        )?
        .query_map([&target], |row| Ok((row.get(0)?, row.get(1)?)))?
        .next()
        .transpose()?;
    if let Some((error, at)) = last {
        status.last_error = Some(error);
        status.last_error_at = Some(at);
    }
    status.target = target;
    Ok(status)
}

fn for_dead(conn: &Connection, selection: &DeadSelection, sql: &str) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut statement = conn.prepare_cached(sql)?;
    let mut n = 0;
    match selection {
        DeadSelection::Targets(targets) => {
            for target in targets {
                n += statement.execute(params![target, None::<String>, now])?;
            }
        }
        DeadSelection::Keys { target, keys } => {
            for key in keys {
                n += statement.execute(params![target, key, now])?;
            }
        }
    }
    Ok(n)
}
