//! The store side of the scheduler (and of the admin API's resync): marking products
//! pending again, and the record of each schedule's last run.

use std::sync::Arc;

use pimsync_connectors::{ContentHash, Snapshot, idempotency_key};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, now_ms};
use crate::route::Router;

/// Which outbox rows a resync makes pending again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncScope {
    /// The targets to resync (names not configured are ignored).
    pub targets: Vec<String>,
    /// Only these product keys; None = every product.
    pub keys: Option<Vec<String>>,
    /// Only products stored at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Apply even where the target is recorded as having this state already.
    pub force: bool,
}

/// A schedule's last run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleRun {
    pub name: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// running | ok | skipped | failed
    pub outcome: String,
    pub detail: Option<String>,
}

/// Products per write transaction, so a resync of a large catalog does not hold the
/// writer (and ingest) for long.
const PAGE: usize = 500;
/// The hash written over an applied state that a forced resync must send again.
const FORCED: &str = "forced-resync";

impl Store {
    /// Marks the products in `scope` pending for each of its targets the product is routed
    /// to (by the target's filter; tombstones to the targets that hold the product).
    /// Without `force`, a target recorded as having the product's current state is left
    /// alone. Returns the outbox rows marked. Runs in pages of a few hundred products,
    /// each its own transaction.
    pub async fn resync_for_schedule(
        &self,
        scope: ResyncScope,
        router: Arc<Router>,
    ) -> Result<usize, StoreError> {
        let scope = Arc::new(scope);
        let mut marked = 0;
        match scope.keys.clone() {
            Some(keys) => {
                for chunk in keys.chunks(PAGE) {
                    let (chunk, scope, router) = (chunk.to_vec(), scope.clone(), router.clone());
                    marked += self
                        .write_retrying(move |conn| {
                            let mut marked = 0;
                            for key in &chunk {
                                marked += resync_key(conn, key, &scope, &router, now_ms())?;
                            }
                            Ok(marked)
                        })
                        .await?;
                }
            }
            None => {
                let mut after = String::new();
                loop {
                    let (scope, router, from) = (scope.clone(), router.clone(), after.clone());
                    let (n, last) = self
                        .write_retrying(move |conn| resync_page(conn, &from, &scope, &router))
                        .await?;
                    marked += n;
                    match last {
                        Some(last) => after = last,
                        None => break,
                    }
                }
            }
        }
        Ok(marked)
    }

    /// Like `write`, but waits and tries again (for a few seconds) while the writer's
    /// queue is full: background work yields to ingest rather than failing.
    async fn write_retrying<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let work = Arc::new(work);
        let mut tries = 0;
        loop {
            let job = work.clone();
            match self.write(move |conn| job(conn)).await {
                Err(StoreError::Busy) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    pub async fn record_schedule_start(&self, name: &str, at: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO schedule_runs (name, started_at, finished_at, outcome, detail)
                 VALUES (?1, ?2, NULL, 'running', NULL)
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                     finished_at = NULL, outcome = 'running', detail = NULL",
                params![name, at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn record_schedule_end(
        &self,
        name: &str,
        at: i64,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (name, outcome, detail) = (name.to_owned(), outcome.to_owned(), detail.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE schedule_runs SET finished_at = ?2, outcome = ?3, detail = ?4 WHERE name = ?1",
                params![name, at, outcome, detail],
            )?;
            Ok(())
        })
        .await
    }

    /// The last run of every schedule that has run, by name.
    pub async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT name, started_at, finished_at, outcome, detail FROM schedule_runs ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(ScheduleRun {
                    name: row.get(0)?,
                    started_at: row.get(1)?,
                    finished_at: row.get(2)?,
                    outcome: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// One page of products after `after` (by key). Returns the rows marked and the last key
/// seen, or None when the page was the last.
fn resync_page(
    conn: &Connection,
    after: &str,
    scope: &ResyncScope,
    router: &Router,
) -> Result<(usize, Option<String>), StoreError> {
    let now = now_ms();
    let keys: Vec<String> = conn
        .prepare_cached(
            "SELECT product_key FROM products WHERE product_key > ?1 AND updated_at >= ?2
             ORDER BY product_key LIMIT ?3",
        )?
        .query_map(
            params![after, scope.since_ms.unwrap_or(i64::MIN), PAGE as i64],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut marked = 0;
    for key in &keys {
        marked += resync_key(conn, key, scope, router, now)?;
    }
    let last = (keys.len() == PAGE).then(|| keys.last().cloned()).flatten();
    Ok((marked, last))
}

fn resync_key(
    conn: &Connection,
    key: &str,
    scope: &ResyncScope,
    router: &Router,
    now: i64,
) -> Result<usize, StoreError> {
    let product: Option<(bool, Option<String>, String, i64)> = conn
        .prepare_cached(
            "SELECT deleted, snapshot, content_hash, updated_at FROM products WHERE product_key = ?1",
        )?
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .optional()?;
    let Some((deleted, snapshot, hash, updated_at)) = product else {
        return Ok(0);
    };
    if scope.since_ms.is_some_and(|since| updated_at < since) {
        return Ok(0);
    }
    let in_scope = |target: &str| scope.targets.iter().any(|t| t == target);
    let targets: Vec<String> = if deleted {
        // A deletion concerns the targets that hold the product.
        conn.prepare_cached(
            "SELECT target FROM applied WHERE product_key = ?1 AND hash <> 'deleted'",
        )?
        .query_map([key], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|t| in_scope(t) && router.all().any(|known| known == t))
        .collect()
    } else {
        let Some(snapshot) = snapshot
            .as_deref()
            .and_then(|json| serde_json::from_str::<Snapshot>(json).ok())
        else {
            return Ok(0);
        };
        router
            .matching(&snapshot)
            .filter(|t| in_scope(t))
            .map(str::to_owned)
            .collect()
    };
    let mut marked = 0;
    for target in targets {
        let applied: Option<String> = conn
            .prepare_cached("SELECT hash FROM applied WHERE target = ?1 AND product_key = ?2")?
            .query_row(params![target, key], |row| row.get(0))
            .optional()?;
        if applied.as_deref() == Some(hash.as_str()) {
            if !scope.force || deleted {
                continue;
            }
            // Keep the remote ids (the target's own identifiers), forget the state.
            conn.prepare_cached(
                "UPDATE applied SET hash = ?3 WHERE target = ?1 AND product_key = ?2",
            )?
            .execute(params![target, key, FORCED])?;
        }
        let idempotency = idempotency_key(&target, key, &ContentHash(hash.clone()));
        conn.prepare_cached(
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
        )?
        .execute(params![target, key, hash, idempotency, now])?;
        marked += 1;
    }
    Ok(marked)
}
