//! The PIM pull's tables: the thin events waiting for a fetch (`fetch_queue`, filled by
//! ingest), each source's reconcile cursor (`pull_state`) and the keys a full reconcile
//! has seen (`pull_seen`). Fetched products are committed in the same transaction that
//! removes their queue rows, and a reconcile page in the same transaction as its cursor,
//! so a crash never loses a thin event nor skips a page.

use std::sync::Arc;

use pimsync_connectors::ProductKind;
use rusqlite::{Connection, OptionalExtension, params};

use super::ingest::{self, Ingest, IngestOutcome};
use super::{Store, StoreError, now_ms};
use crate::route::Router;

/// A thin event waiting for its product to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRow {
    pub source: String,
    /// The product's uuid; a product model's code.
    pub uuid: String,
    pub product_key: Option<String>,
    pub kind: ProductKind,
    /// The event's version: a deletion found by the fetch gets it.
    pub version: i64,
}

/// A source's reconcile: the one in progress (`phase` set) or the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRun {
    pub source: String,
    /// `full`, or `since:<YYYY-MM-DD HH:MM:SS>`.
    pub mode: String,
    /// `products` or `product_models` while running; `None` once completed.
    pub phase: Option<String>,
    /// The next page's link; `None` for the first page of the phase.
    pub cursor: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    pub fetched: i64,
    pub total: Option<i64>,
    /// `started_at` of the last completed run (Unix ms).
    pub last_completed: Option<i64>,
}

/// What a reconcile commits with a page.
#[derive(Debug, Clone)]
pub struct PageCommit {
    pub source: String,
    /// The phase and link to continue from; `None` phase: nothing left.
    pub phase: Option<String>,
    pub cursor: Option<String>,
    pub fetched: i64,
    pub total: Option<i64>,
    /// Product keys on this page, remembered for the missing-products check (full runs).
    pub seen: Vec<String>,
}

/// A product known locally that a full reconcile did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingProduct {
    pub key: String,
    pub uuid: Option<String>,
    pub kind: ProductKind,
    pub version: i64,
}

fn kind_of(text: &str) -> ProductKind {
    if text == "product_model" {
        ProductKind::ProductModel
    } else {
        ProductKind::Product
    }
}

impl Store {
    /// The oldest thin events of `source`, at most `limit`.
    pub async fn fetch_queue_batch(
        &self,
        source: &str,
        limit: usize,
    ) -> Result<Vec<FetchRow>, StoreError> {
        let source = source.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT source, uuid, product_key, kind, version FROM fetch_queue
                 WHERE source = ?1 ORDER BY received_at, uuid LIMIT ?2",
            )?;
            let rows = statement.query_map(params![source, limit as i64], |row| {
                Ok(FetchRow {
                    source: row.get(0)?,
                    uuid: row.get(1)?,
                    product_key: row.get(2)?,
                    kind: kind_of(&row.get::<_, String>(3)?),
                    version: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Commits fetched products and removes the queue rows they answer, in one
    /// transaction. A row is removed only if no newer thin event replaced it meanwhile.
    pub async fn ingest_fetched(
        &self,
        request: Ingest,
        router: Arc<Router>,
        done: Vec<FetchRow>,
    ) -> Result<IngestOutcome, StoreError> {
        self.write(move |conn| {
            let outcome = ingest::ingest(conn, &request, &router, now_ms())?;
            let mut delete = conn.prepare_cached(
                "DELETE FROM fetch_queue WHERE source = ?1 AND uuid = ?2 AND version <= ?3",
            )?;
            for row in &done {
                delete.execute(params![row.source, row.uuid, row.version])?;
            }
            Ok(outcome)
        })
        .await
    }

    /// The source's reconcile state, if it ever ran.
    pub async fn pull_run(&self, source: &str) -> Result<Option<PullRun>, StoreError> {
        let source = source.to_owned();
        self.read(move |conn| read_run(conn, &source)).await
    }

    /// Starts a new run (forgetting an unfinished one).
    pub async fn start_pull_run(&self, source: &str, mode: &str) -> Result<PullRun, StoreError> {
        let (source, mode) = (source.to_owned(), mode.to_owned());
        self.write(move |conn| {
            let now = now_ms();
            conn.prepare_cached(
                "INSERT INTO pull_state (source, mode, phase, cursor, started_at, fetched, total, updated_at)
                 VALUES (?1, ?2, 'products', NULL, ?3, 0, NULL, ?3)
                 ON CONFLICT (source) DO UPDATE SET
                     mode = excluded.mode, phase = excluded.phase, cursor = NULL,
                     started_at = excluded.started_at, fetched = 0, total = NULL,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![source, mode, now])?;
            conn.prepare_cached("DELETE FROM pull_seen WHERE source = ?1")?
                .execute([&source])?;
            read_run(conn, &source)?
                .ok_or_else(|| StoreError::Sqlite("pull_state row vanished".into()))
        })
        .await
    }

    /// Commits one reconcile page: its products, the keys seen and where to continue, in
    /// one transaction.
    pub async fn ingest_pull_page(
        &self,
        request: Ingest,
        router: Arc<Router>,
        page: PageCommit,
    ) -> Result<IngestOutcome, StoreError> {
        self.write(move |conn| {
            let outcome = ingest::ingest(conn, &request, &router, now_ms())?;
            let mut seen = conn.prepare_cached(
                "INSERT INTO pull_seen (source, product_key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            for key in &page.seen {
                seen.execute(params![page.source, key])?;
            }
            conn.prepare_cached(
                "UPDATE pull_state SET phase = ?2, cursor = ?3, fetched = ?4, total = ?5, updated_at = ?6
                 WHERE source = ?1",
            )?
            .execute(params![
                page.source,
                page.phase,
                page.cursor,
                page.fetched,
                page.total,
                now_ms()
            ])?;
            Ok(outcome)
        })
        .await
    }

    /// Products of `source` not deleted, not seen by the current full run, and not
    /// written since it started (a product created meanwhile may have been passed).
    pub async fn missing_products(
        &self,
        source: &str,
        started_at: i64,
    ) -> Result<Vec<MissingProduct>, StoreError> {
        let source = source.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare(
                "SELECT product_key, uuid, kind, version FROM products
                 WHERE source = ?1 AND deleted = 0 AND updated_at < ?2
                   AND product_key NOT IN (SELECT product_key FROM pull_seen WHERE source = ?1)
                 ORDER BY product_key",
            )?;
            let rows = statement.query_map(params![source, started_at], |row| {
                Ok(MissingProduct {
                    key: row.get(0)?,
                    uuid: row.get(1)?,
                    kind: kind_of(&row.get::<_, String>(2)?),
                    version: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Marks the run completed: the next `--since last` starts from its start time.
    pub async fn finish_pull_run(&self, source: &str) -> Result<(), StoreError> {
        let source = source.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE pull_state SET phase = NULL, cursor = NULL, last_completed = started_at,
                        updated_at = ?2 WHERE source = ?1",
            )?
            .execute(params![source, now_ms()])?;
            conn.prepare_cached("DELETE FROM pull_seen WHERE source = ?1")?
                .execute([&source])?;
            Ok(())
        })
        .await
    }
}

fn read_run(conn: &Connection, source: &str) -> rusqlite::Result<Option<PullRun>> {
    conn.prepare_cached(
        "SELECT source, mode, phase, cursor, started_at, fetched, total, last_completed
         FROM pull_state WHERE source = ?1",
    )?
    .query_row([source], |row| {
        Ok(PullRun {
            source: row.get(0)?,
            mode: row.get(1)?,
            phase: row.get(2)?,
            cursor: row.get(3)?,
            started_at: row.get(4)?,
            fetched: row.get(5)?,
            total: row.get(6)?,
            last_completed: row.get(7)?,
        })
    })
    .optional()
}
