//! The delivery side of the store: leasing due outbox rows and recording outcomes.
//!
//! A lease marks a row `leased` by one dispatcher until `lease_until`; the hash it leased
//! is kept in `leased_hash`, because the desired hash may move while the apply is in
//! flight (a newer edit arrived). The outcome then settles what was leased, and a row whose
//! desired hash moved goes back to `pending` for the new state.

use pimsync_connectors::RemoteIds;
use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::{desired_hash_sql, resolved_key};
use super::{Store, StoreError, now_ms};

/// One leased row with everything the dispatcher needs to apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub target: String,
    pub product_key: String,
    pub desired_hash: String,
    pub idempotency_key: String,
    /// Failed attempts so far for this desired state.
    pub attempts: u32,
    pub kind: String,
    pub deleted: bool,
    /// Canonical JSON of the product (None only for products never seen with content).
    pub snapshot: Option<String>,
    /// The hash last applied to this target, if any.
    pub applied_hash: Option<String>,
    pub remote_ids: RemoteIds,
    /// For product models: the variants' keys and canonical JSON, by key.
    pub variants: Vec<(String, String)>,
    /// The PIM version of the state to apply, and when pimsync accepted it (Unix ms).
    pub version: i64,
    pub accepted_at: i64,
    /// For a target that gets every change: the history entry this lease delivers (its
    /// content, hash and idempotency key are the entry's). None: the latest state.
    pub change_id: Option<i64>,
}

/// How one leased row ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The target reached the leased hash (or already had it: `called` false).
    Applied { remote_ids: RemoteIds, called: bool },
    /// Try again at `retry_at` (Unix ms); counts as a failed attempt. Dead once
    /// `max_attempts` failures are reached.
    Failed {
        error: String,
        retry_at: i64,
        max_attempts: u32,
    },
    /// The platform asked us to slow down: retry at `retry_at`, not a failed attempt.
    Throttled { error: String, retry_at: i64 },
    /// Retrying cannot help: dead-letter with the error.
    Permanent { error: String },
    /// Not attempted (shutdown): back to pending, as it was.
    Released,
    /// The receiver asked never to be called again (410 Gone): the target is disabled
    /// (persisted, with `error` as the reason) and the row goes back to pending untouched,
    /// so that nothing is lost until an operator re-enables the target.
    Gone { error: String },
}

/// A leased row's settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Settle {
    pub target: String,
    pub product_key: String,
    pub leased_hash: String,
    pub owner: String,
    /// The history entry the lease delivered ([`Lease::change_id`]).
    pub change_id: Option<i64>,
    pub outcome: Outcome,
}

/// What a settlement did to the row, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Applied, but a newer desired state arrived meanwhile: pending again.
    Superseded,
    Retrying,
    Dead,
    Released,
    /// The lease was lost (expired and taken by another dispatcher): nothing changed.
    LeaseLost,
    /// The target is disabled now ([`Outcome::Gone`]).
    Disabled,
}

impl Store {
    /// Leases up to `limit` due rows of `target`: pending rows whose time has come, and
    /// leased rows whose lease expired (their dispatcher died). With `history` (a target
    /// that gets every change), each lease carries the product's oldest undelivered change
    /// when there is one.
    ///
    /// A row due sooner than `spacing_ms` after its product's last apply to this target is
    /// not leased but moved to that time (`delivery.min_interval`): the edits until then
    /// coalesce into one apply.
    #[allow(clippy::too_many_arguments)]
    pub async fn lease(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        lease_ms: i64,
        spacing_ms: i64,
        history: bool,
    ) -> Result<Vec<Lease>, StoreError> {
        let (target, owner) = (target.to_owned(), owner.to_owned());
        self.write(move |conn| {
            let timing = LeaseTiming {
                now: now_ms(),
                lease_ms,
                spacing_ms,
            };
            let mut leases = lease(conn, &target, &owner, limit, timing)?;
            if history {
                for lease in &mut leases {
                    take_history(conn, lease)?;
                }
            }
            Ok(leases)
        })
        .await
    }

    /// Records how a leased row ended.
    pub async fn settle(&self, settle: Settle) -> Result<Settled, StoreError> {
        self.write(move |conn| settle_row(conn, &settle, now_ms()))
            .await
    }

    /// Makes every leased row of these targets pending again. A single daemon owns its
    /// SQLite outbox, so at start-up every lease belongs to a dispatcher that no longer
    /// exists. (Per target, so the state index is used: a million-row outbox must not
    /// delay start-up with a full scan.)
    pub async fn release_leases(&self, targets: Vec<String>) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let mut release = conn.prepare_cached(
                "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until = NULL, leased_hash = NULL
                 WHERE target = ?1 AND state = 'leased'",
            )?;
            let mut released = 0;
            for target in &targets {
                released += release.execute([target])?;
            }
            Ok(released)
        })
        .await
    }

    /// When `target` next has work: the earliest pending `next_attempt_at` or lease expiry
    /// (Unix ms), or None when it has nothing to do.
    pub async fn next_due(&self, target: &str) -> Result<Option<i64>, StoreError> {
        let target = target.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT min(t) FROM (
                     SELECT min(next_attempt_at) AS t FROM outbox WHERE target = ?1 AND state = 'pending'
                     UNION ALL
                     SELECT min(lease_until) FROM outbox WHERE target = ?1 AND state = 'leased')",
                [target],
                |row| row.get::<_, Option<i64>>(0),
            )
        })
        .await
    }
}

#[derive(Debug, Clone, Copy)]
struct LeaseTiming {
    now: i64,
    lease_ms: i64,
    /// Least time between two applies of a product (0: none).
    spacing_ms: i64,
}

fn lease(
    conn: &Connection,
    target: &str,
    owner: &str,
    limit: usize,
    timing: LeaseTiming,
) -> Result<Vec<Lease>, StoreError> {
    let LeaseTiming {
        now,
        lease_ms,
        spacing_ms,
    } = timing;
    let mut due = conn.prepare_cached(concat!(
        "SELECT product_key, ",
        desired_hash_sql!(),
        ", idempotency_key, attempts FROM outbox
         WHERE target = ?1 AND state = 'pending' AND next_attempt_at <= ?2
         UNION ALL
         SELECT product_key, ",
        desired_hash_sql!(),
        ", idempotency_key, attempts FROM outbox
         WHERE target = ?1 AND state = 'leased' AND lease_until <= ?2
         LIMIT ?3"
    ))?;
    let rows: Vec<(String, String, String, u32)> = due
        .query_map(params![target, now, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut mark = conn.prepare_cached(
        "UPDATE outbox SET state = 'leased', lease_owner = ?3, lease_until = ?4, leased_hash = ?5
         WHERE target = ?1 AND product_key = ?2",
    )?;
    let mut product = conn.prepare_cached(
        "SELECT kind, deleted, snapshot, version, updated_at FROM products WHERE product_key = ?1",
    )?;
    let mut applied = conn.prepare_cached(
        "SELECT hash, remote_ids, applied_at FROM applied WHERE target = ?1 AND product_key = ?2",
    )?;
    let mut postpone = conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', next_attempt_at = ?3, lease_owner = NULL,
                           lease_until = NULL, leased_hash = NULL
         WHERE target = ?1 AND product_key = ?2",
    )?;
    let mut variants = conn.prepare_cached(
        "SELECT product_key, snapshot FROM products
         WHERE parent = ?1 AND deleted = 0 AND snapshot IS NOT NULL ORDER BY product_key",
    )?;
    let mut leases = Vec::with_capacity(rows.len());
    for (key, desired_hash, idempotency_key, attempts) in rows {
        let last = applied
            .query_row(params![target, key], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .optional()?;
        if let Some((_, _, applied_at)) = &last {
            let not_before = applied_at.saturating_add(spacing_ms);
            if spacing_ms > 0 && not_before > now {
                postpone.execute(params![target, key, not_before])?;
                continue;
            }
        }
        mark.execute(params![target, key, owner, now + lease_ms, desired_hash])?;
        let idempotency_key = resolved_key(target, &key, idempotency_key, &desired_hash);
        let (kind, deleted, snapshot, version, accepted_at) = product
            .query_row([&key], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .optional()?
            .unwrap_or_else(|| ("product".to_owned(), true, None, 0, 0));
        let (applied_hash, remote_ids) = last
            .map(|(hash, ids, _)| (Some(hash), serde_json::from_str(&ids).unwrap_or_default()))
            .unwrap_or_default();
        let variants = if kind == "product_model" && !deleted {
            variants
                .query_map([&key], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        } else {
            Vec::new()
        };
        leases.push(Lease {
            target: target.to_owned(),
            product_key: key,
            desired_hash,
            idempotency_key,
            attempts,
            kind,
            deleted,
            snapshot,
            applied_hash,
            remote_ids,
            variants,
            version,
            accepted_at,
            change_id: None,
        });
    }
    Ok(leases)
}

/// Points a lease at the product's oldest undelivered change, if it has one; without one
/// (a resync, or history written before the target stopped coalescing) the latest state
/// is applied as for any target.
fn take_history(conn: &Connection, lease: &mut Lease) -> Result<(), StoreError> {
    let Some(entry) = super::history::oldest(conn, &lease.target, &lease.product_key)? else {
        return Ok(());
    };
    lease.idempotency_key = entry.idempotency_key(&lease.target, &lease.product_key);
    lease.change_id = Some(entry.id);
    lease.desired_hash = entry.hash;
    lease.deleted = entry.deleted;
    if !entry.deleted {
        lease.snapshot = entry.snapshot;
    }
    lease.version = entry.version;
    lease.accepted_at = entry.accepted_at;
    Ok(())
}

fn settle_row(conn: &Connection, s: &Settle, now: i64) -> Result<Settled, StoreError> {
    // Only the lease holder settles; a lease that expired and was taken again is not ours.
    let current: Option<String> = conn
        .prepare_cached(concat!(
            "SELECT ",
            desired_hash_sql!(),
            " FROM outbox
             WHERE target = ?1 AND product_key = ?2 AND state = 'leased' AND lease_owner = ?3"
        ))?
        .query_row(params![s.target, s.product_key, s.owner], |row| row.get(0))
        .optional()?;
    let Some(desired_hash) = current else {
        return Ok(Settled::LeaseLost);
    };
    // A history entry is not made moot by a newer change: that change waits behind it.
    let moved = s.change_id.is_none() && desired_hash != s.leased_hash;
    let back_to_pending = |conn: &Connection,
                           at: i64,
                           error: Option<&str>|
     -> rusqlite::Result<usize> {
        conn.prepare_cached(
            "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until = NULL, leased_hash = NULL,
                    next_attempt_at = ?3, last_error = coalesce(?4, last_error), updated_at = ?5
             WHERE target = ?1 AND product_key = ?2",
        )?
        .execute(params![s.target, s.product_key, at, error, now])
    };
    match &s.outcome {
        Outcome::Applied { remote_ids, .. } => {
            let ids = serde_json::to_string(remote_ids).unwrap_or_else(|_| "{}".into());
            conn.prepare_cached(
                "INSERT INTO applied (target, product_key, hash, remote_ids, applied_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (product_key, target) DO UPDATE SET
                     hash = excluded.hash, remote_ids = excluded.remote_ids, applied_at = excluded.applied_at",
            )?
            .execute(params![s.target, s.product_key, s.leased_hash, ids, now])?;
            let more = match s.change_id {
                Some(id) => super::history::delivered(conn, id, &s.target, &s.product_key)?,
                None => false,
            };
            if more || desired_hash != s.leased_hash {
                back_to_pending(conn, now, None)?;
                Ok(Settled::Superseded)
            } else {
                conn.prepare_cached("DELETE FROM outbox WHERE target = ?1 AND product_key = ?2")?
                    .execute(params![s.target, s.product_key])?;
                Ok(Settled::Done)
            }
        }
        // A newer desired state makes this failure moot: try the new state now.
        Outcome::Failed { error, .. }
        | Outcome::Permanent { error }
        | Outcome::Throttled { error, .. }
            if moved =>
        {
            back_to_pending(conn, now, Some(error))?;
            Ok(Settled::Superseded)
        }
        Outcome::Failed {
            error,
            retry_at,
            max_attempts,
        } => {
            let dead: bool = conn
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1,
                            state = CASE WHEN attempts + 1 >= ?3 THEN 'dead' ELSE 'pending' END,
                            lease_owner = NULL, lease_until = NULL, leased_hash = NULL,
                            next_attempt_at = ?4, last_error = ?5, updated_at = ?6
                     WHERE target = ?1 AND product_key = ?2
                     RETURNING state = 'dead'",
                )?
                .query_row(
                    params![s.target, s.product_key, max_attempts, retry_at, error, now],
                    |row| row.get(0),
                )?;
            Ok(if dead {
                Settled::Dead
            } else {
                Settled::Retrying
            })
        }
        Outcome::Throttled { error, retry_at } => {
            back_to_pending(conn, *retry_at, Some(error))?;
            Ok(Settled::Retrying)
        }
        Outcome::Permanent { error } => {
            conn.prepare_cached(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, lease_owner = NULL,
                        lease_until = NULL, leased_hash = NULL, last_error = ?3, updated_at = ?4
                 WHERE target = ?1 AND product_key = ?2",
            )?
            .execute(params![s.target, s.product_key, error, now])?;
            Ok(Settled::Dead)
        }
        Outcome::Released => {
            conn.prepare_cached(
                "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until = NULL, leased_hash = NULL
                 WHERE target = ?1 AND product_key = ?2",
            )?
            .execute(params![s.target, s.product_key])?;
            Ok(Settled::Released)
        }
        Outcome::Gone { error } => {
            back_to_pending(conn, now, Some(error))?;
            super::ops::disable_target(conn, &s.target, error, now)?;
            Ok(Settled::Disabled)
        }
    }
}
