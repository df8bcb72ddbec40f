//! Queries of the admin API: per-target status.

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
