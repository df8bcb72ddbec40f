//! Writing outbox rows, and reading back what a row asks for.
//!
//! A row *follows* its product when its `desired_hash` and `idempotency_key` are empty
//! (`FOLLOWS`): the state its target must reach is then the product's current
//! `content_hash`, and its key the usual one for that hash. Ingest writes rows that way,
//! and leaves a row that follows and is simply waiting untouched when its product changes
//! again. An edit of a product whose targets are still catching up (a bulk edit against a
//! rate-limited shop) then writes the product's page and not also the outbox's: the
//! writer's CPU per such edit fell by a quarter (README, *Performance*). A row whose state is not the product's content (a
//! product model re-armed for a variant), or whose key is not the usual one (a target that
//! gets every change), names both.

use pimsync_connectors::{ContentHash, idempotency_key};
use rusqlite::{Connection, params};

use super::StoreError;

/// The `desired_hash` and `idempotency_key` of a row that follows its product.
pub(super) const FOLLOWS: &str = "";

/// SQL for the state an `outbox` row asks for, resolved for a row that follows its
/// product. A macro, so that statements can `concat!` it and stay literals.
macro_rules! desired_hash_sql {
    () => {
        "(CASE outbox.desired_hash WHEN '' THEN coalesce((SELECT content_hash FROM products
             WHERE products.product_key = outbox.product_key), '') ELSE outbox.desired_hash END)"
    };
}
pub(super) use desired_hash_sql;

/// The idempotency key of a row read with its resolved `desired` hash: the row's own, or
/// the usual one for `desired` while the row follows its product.
pub(super) fn resolved_key(
    target: &str,
    product_key: &str,
    stored: String,
    desired: &str,
) -> String {
    if stored == FOLLOWS {
        idempotency_key(target, product_key, &ContentHash(desired.to_owned()))
    } else {
        stored
    }
}

/// What a row should ask for: its product's content, or a state of its own.
#[derive(Clone, Copy)]
pub(super) enum Desired<'a> {
    /// The product's content as this change has just written it, with the usual key.
    Product,
    /// A hash and key of the row's own.
    Own {
        hash: &'a ContentHash,
        idempotency: &'a str,
    },
}

/// Points outbox rows at new hashes, creating a row due now where there is none. A row
/// that stays pending (or leased) only needs its new hash: leaving `state` and
/// `next_attempt_at` unassigned keeps its `outbox_due` entry where it is, instead of
/// rewriting a random index page per target on every webhook. Its time stays too when it
/// is a wait that is not a failure's backoff (`min_interval`, a platform's throttle);
/// after failures, and for a dead row, the new content is tried at once. A row that
/// follows its product and waits with nothing to reset is not written at all. Its
/// statements are looked up once per change, not once per target: this runs on the writer
/// thread.
pub(super) struct Arm<'c> {
    rows_of: rusqlite::CachedStatement<'c>,
    move_hash: rusqlite::CachedStatement<'c>,
    upsert: rusqlite::CachedStatement<'c>,
    /// The rows of the product last asked about, read in one statement rather than one per
    /// target: each target's name, and whether its row follows and simply waits.
    rows: Option<(String, Rows)>,
}

impl<'c> Arm<'c> {
    pub(super) fn new(conn: &'c Connection) -> Result<Arm<'c>, StoreError> {
        Ok(Arm {
            rows_of: conn.prepare_cached(
                "SELECT target,
                        desired_hash = '' AND state = 'pending' AND attempts = 0 AND last_error IS NULL
                 FROM outbox WHERE product_key = ?1",
            )?,
            move_hash: conn.prepare_cached(
                "UPDATE outbox SET desired_hash = ?3, idempotency_key = ?4, attempts = 0,
                                   last_error = NULL, updated_at = ?5
                 WHERE product_key = ?2 AND target = ?1
                   AND (state = 'leased' OR (state = 'pending' AND (attempts = 0 OR next_attempt_at <= ?5)))",
            )?,
            upsert: conn.prepare_cached(
                "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state, attempts,
                                     next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)
                 ON CONFLICT (product_key, target) DO UPDATE SET
                     desired_hash = excluded.desired_hash,
                     idempotency_key = excluded.idempotency_key,
                     state = CASE WHEN outbox.state = 'leased' THEN 'leased' ELSE 'pending' END,
                     attempts = 0,
                     next_attempt_at = excluded.next_attempt_at,
                     last_error = NULL,
                     updated_at = excluded.updated_at",
            )?,
            rows: None,
        })
    }

    /// Points the row of (`target`, `key`) at `desired`. Returns whether it wrote the row
    /// (false: the row follows its product and simply waits).
    pub(super) fn row(
        &mut self,
        target: &str,
        key: &str,
        desired: Desired<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (hash, idempotency, exists) = match desired {
            Desired::Product => match self.waiting(target, key)? {
                Some(true) => return Ok(false),
                Some(false) => (FOLLOWS, FOLLOWS, true),
                None => (FOLLOWS, FOLLOWS, false),
            },
            Desired::Own { hash, idempotency } => (hash.as_str(), idempotency, true),
        };
        // This row is about to change: what was read of it no longer holds (the others'
        // still does).
        if let Some((rows_key, rows)) = &mut self.rows {
            if rows_key == key {
                match rows.iter_mut().find(|(t, _)| t == target) {
                    Some((_, waiting)) => *waiting = None,
                    None => rows.push((target.to_owned(), None)),
                }
            }
        }
        let args = params![target, key, hash, idempotency, now];
        if !exists || self.move_hash.execute(args)? == 0 {
            self.upsert.execute(args)?;
        }
        Ok(true)
    }

    /// Whether the row of (`target`, `key`) follows its product and simply waits; `None`
    /// when there is no row.
    fn waiting(&mut self, target: &str, key: &str) -> Result<Option<bool>, StoreError> {
        // Read again when the rows read are another product's, or this row was written since.
        let stale = match &self.rows {
            Some((rows_key, rows)) if rows_key == key => rows
                .iter()
                .any(|(t, waiting)| t == target && waiting.is_none()),
            _ => true,
        };
        if stale {
            let rows = self
                .rows_of
                .query_map([key], |row| Ok((row.get(0)?, Some(row.get(1)?))))?
                .collect::<Result<Rows, _>>()?;
            self.rows = Some((key.to_owned(), rows));
        }
        let rows = self.rows.as_ref().map_or(&[][..], |(_, rows)| rows);
        Ok(rows
            .iter()
            .find(|(t, _)| t == target)
            .and_then(|(_, waiting)| *waiting))
    }
}

/// An `Arm`'s reading of one product's rows: each target's name and whether its row
/// follows and simply waits, `None` once it was written through the `Arm`.
type Rows = Vec<(String, Option<bool>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{config, request, router, snapshot, upsert};
    use crate::store::{Outcome, Settle, Settled, Store};

    /// The raw row of `target` for product "P": (desired_hash, idempotency_key, updated_at).
    fn raw(conn: &Connection, target: &str) -> (String, String, i64) {
        conn.query_row(
            "SELECT desired_hash, idempotency_key, updated_at FROM outbox
             WHERE product_key = 'P' AND target = ?1",
            [target],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_edit_leaves_a_waiting_row_that_follows_unwritten_and_asks_for_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).unwrap();
        let router = router(&[("waiting", &[]), ("throttled", &[])]);
        let first = request(None, vec![upsert("P", 1, snapshot("f", 1))]);
        store.ingest(first, router.clone()).await.unwrap();
        let side = Connection::open(store.path()).unwrap();
        side.pragma_update(None, "busy_timeout", 5000).unwrap();
        // A marker time that only a write of the row changes; the throttled row waits
        // with the platform's message, which the new content must clear.
        side.execute_batch(
            "UPDATE outbox SET updated_at = 1;
             UPDATE outbox SET last_error = 'HTTP 429' WHERE target = 'throttled';",
        )
        .unwrap();
        assert_eq!(raw(&side, "waiting"), (FOLLOWS.into(), FOLLOWS.into(), 1));

        let second = request(None, vec![upsert("P", 2, snapshot("f", 2))]);
        let outcome = store.ingest(second, router).await.unwrap();
        assert_eq!(outcome.outbox_rows, 2);
        assert_eq!(
            outcome.outbox_written, 1,
            "only the throttled row is news to delivery"
        );
        assert_eq!(raw(&side, "waiting"), (FOLLOWS.into(), FOLLOWS.into(), 1));
        let (_, _, written) = raw(&side, "throttled");
        assert_ne!(written, 1, "the throttled row is written");

        let hash = store.product("P").await.unwrap().unwrap().content_hash;
        let rows = store.outbox(10).await.unwrap();
        assert_eq!(rows.len(), 2);
        for row in rows {
            assert_eq!(row.desired_hash, hash, "{}", row.target);
            let key = idempotency_key(&row.target, "P", &ContentHash(hash.clone()));
            assert_eq!(row.idempotency_key, key, "{}", row.target);
        }
        let error: Option<String> = side
            .query_row(
                "SELECT last_error FROM outbox WHERE target = 'throttled'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(error, None);
        store.close().await;
    }

    /// One read serves every target of a product; a row written through the `Arm` is read
    /// again if it is asked about again, and the other rows are not.
    #[test]
    fn arm_reads_a_products_rows_once_and_forgets_a_row_it_writes() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO outbox (target, product_key, desired_hash, idempotency_key, state,
                                 attempts, next_attempt_at, created_at, updated_at, last_error)
             VALUES ('waits', 'P', '', '', 'pending', 0, 0, 0, 1, NULL),
                    ('failed', 'P', '', '', 'pending', 2, 0, 0, 1, 'HTTP 500'),
                    ('waits', 'Q', '', '', 'pending', 0, 0, 0, 1, NULL);",
        )
        .unwrap();
        let updated = |target: &str, key: &str| -> Option<i64> {
            conn.query_row(
                "SELECT updated_at FROM outbox WHERE target = ?1 AND product_key = ?2",
                [target, key],
                |row| row.get(0),
            )
            .ok()
        };
        let mut arm = Arm::new(&conn).unwrap();
        let written: Vec<bool> = ["waits", "failed", "new"]
            .iter()
            .map(|target| arm.row(target, "P", Desired::Product, 7).unwrap())
            .collect();
        assert_eq!(written, [false, true, true]);
        assert_eq!(
            updated("waits", "P"),
            Some(1),
            "a waiting row is not written"
        );
        assert_eq!(updated("failed", "P"), Some(7));
        assert_eq!(updated("new", "P"), Some(7));
        assert_eq!(arm.rows.as_ref().map(|(_, rows)| rows.len()), Some(3));

        // Asked again, a written row is read again: it now waits, so it is left alone.
        conn.execute("UPDATE outbox SET updated_at = 1", [])
            .unwrap();
        assert!(!arm.row("failed", "P", Desired::Product, 8).unwrap());
        assert_eq!(updated("failed", "P"), Some(1));
        // Another product is read for itself.
        arm.row("waits", "Q", Desired::Product, 8).unwrap();
        assert_eq!(updated("waits", "Q"), Some(1));
        arm.row("other", "Q", Desired::Product, 8).unwrap();
        assert_eq!(updated("other", "Q"), Some(8));
    }

    #[tokio::test]
    async fn a_row_that_follows_is_leased_and_settled_at_the_products_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).unwrap();
        let router = router(&[("t", &[])]);
        let first = request(None, vec![upsert("P", 1, snapshot("f", 1))]);
        store.ingest(first, router.clone()).await.unwrap();
        let v1 = store.product("P").await.unwrap().unwrap().content_hash;
        let leases = store.lease("t", "w", 10, 60_000, 0, false).await.unwrap();
        assert_eq!(leases.len(), 1);
        let lease = &leases[0];
        assert_eq!(lease.desired_hash, v1);
        let key = idempotency_key("t", "P", &ContentHash(v1.clone()));
        assert_eq!(lease.idempotency_key, key);

        // A newer edit while the first state is in flight: applying it is not the end.
        let second = request(None, vec![upsert("P", 2, snapshot("f", 2))]);
        store.ingest(second, router).await.unwrap();
        let settle = |hash: &str| Settle {
            target: "t".into(),
            product_key: "P".into(),
            leased_hash: hash.to_owned(),
            owner: "w".into(),
            change_id: None,
            outcome: Outcome::Applied {
                remote_ids: Default::default(),
                called: true,
            },
        };
        assert_eq!(
            store.settle(settle(&v1)).await.unwrap(),
            Settled::Superseded
        );
        let v2 = store.product("P").await.unwrap().unwrap().content_hash;
        assert_ne!(v1, v2);
        let again = store.lease("t", "w", 10, 60_000, 0, false).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].desired_hash, v2);
        assert_eq!(
            again[0].idempotency_key,
            idempotency_key("t", "P", &ContentHash(v2.clone()))
        );
        assert_eq!(store.settle(settle(&v2)).await.unwrap(), Settled::Done);
        assert!(store.outbox(10).await.unwrap().is_empty());
        store.close().await;
    }

    #[test]
    fn a_row_that_follows_gets_the_usual_key_for_the_resolved_hash() {
        let hash = ContentHash("abc".into());
        assert_eq!(
            resolved_key("shop", "SKU-1", FOLLOWS.to_owned(), "abc"),
            idempotency_key("shop", "SKU-1", &hash)
        );
        assert_eq!(resolved_key("shop", "SKU-1", "own".into(), "abc"), "own");
    }
}
