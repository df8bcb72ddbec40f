//! Marking products pending again for chosen targets: the one implementation behind
//! `pimsync resync`, the admin API's `POST /resync` and scheduled resyncs.

use std::collections::BTreeSet;
use std::sync::Arc;

use pimsync_connectors::{ContentHash, Snapshot, idempotency_key};
use rusqlite::{Connection, OptionalExtension, params};

use super::RowKey;
use crate::route::Router;
use crate::store::{Store, StoreError, now_ms};

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
    /// The targets to resync; each product still goes only where its target's filter admits
    /// it. Names that are not configured are ignored.
    pub targets: Vec<String>,
    pub scope: ResyncScope,
    /// Ignore what is recorded as applied: the dispatcher calls the target even when the
    /// target should already hold this content.
    pub force: bool,
    /// Return the marked rows in [`ResyncMarked::rows`] (the CLI follows them until they
    /// settle). Callers that only need the count leave it false: a large catalog's rows
    /// would make a large list.
    pub list_rows: bool,
}

/// What a resync marked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncMarked {
    /// How many outbox rows are now pending (or left in flight, when a dispatcher holds
    /// them).
    pub marked: usize,
    /// Those rows, when [`Resync::list_rows`] asked for them (empty otherwise).
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

impl ResyncMarked {
    fn add(&mut self, page: ResyncMarked) {
        self.marked += page.marked;
        self.rows.extend(page.rows);
        self.deletions += page.deletions;
        self.unknown.extend(page.unknown);
        self.filtered_out += page.filtered_out;
        self.forced += page.forced;
    }
}

/// Products per write transaction, so a resync of a large catalog does not hold the
/// writer (and ingest) for long.
const PAGE: usize = 500;

/// A product as a resync reads it: key, deleted, snapshot JSON, content hash.
type Product = (String, bool, Option<String>, String);

const PRODUCT_COLUMNS: &str = "SELECT product_key, deleted, snapshot, content_hash FROM products";

fn product(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

impl Store {
    /// Marks products pending in the outbox for the given targets. The one resync of the
    /// CLI, the admin API and the scheduler.
    ///
    /// Each product goes to the selected targets whose filter admits it. A deleted product
    /// resyncs as a deletion, also to every selected target that holds it (and a tombstone
    /// without content to every selected target). Without `force`, rows are marked even
    /// where the target is recorded as having the product's current state: the dispatcher
    /// then settles them without calling the target.
    ///
    /// With `force`, for every caller alike: what is recorded as applied is cleared
    /// (`applied.hash = ''`; the remote ids are kept, so the target updates its own record
    /// rather than creating another), and the row gets a fresh idempotency key, derived
    /// from the content hash plus `"+force@<now>"`, so that a target that remembers
    /// idempotency keys cannot answer the forced re-send from its cache.
    ///
    /// Runs in pages of 500 products, each its own write transaction (waiting while the
    /// writer's queue is full), so a resync of a large catalog never holds the writer and
    /// ingest for long. The pages are not one atomic whole; a product changed meanwhile is
    /// marked by its ingest anyway.
    pub async fn resync(
        &self,
        request: Resync,
        router: Arc<Router>,
    ) -> Result<ResyncMarked, StoreError> {
        let request = Arc::new(request);
        let now = now_ms();
        let mut marked = ResyncMarked::default();
        if let ResyncScope::Keys(keys) = &request.scope {
            for chunk in keys.chunks(PAGE) {
                let (chunk, request, router) = (chunk.to_vec(), request.clone(), router.clone());
                let page = self
                    .write_retrying(move |conn| {
                        let mut page = ResyncMarked::default();
                        let mut one = conn
                            .prepare_cached(&format!("{PRODUCT_COLUMNS} WHERE product_key = ?1"))?;
                        let mut products = Vec::new();
                        for key in &chunk {
                            match one.query_row([key], product).optional()? {
                                Some(product) => products.push(product),
                                None => page.unknown.push(key.clone()),
                            }
                        }
                        mark(conn, products, &request, &router, now, &mut page)?;
                        Ok(page)
                    })
                    .await?;
                marked.add(page);
            }
            return Ok(marked);
        }
        let since = match request.scope {
            ResyncScope::Since(since) => since,
            _ => i64::MIN,
        };
        let mut after: Option<String> = None;
        loop {
            let (request, router, from) = (request.clone(), router.clone(), after.clone());
            let (page, last) = self
                .write_retrying(move |conn| {
                    let products: Vec<Product> = conn
                        .prepare_cached(&format!(
                            "{PRODUCT_COLUMNS}
                             WHERE (?1 IS NULL OR product_key > ?1) AND updated_at >= ?2
                             ORDER BY product_key LIMIT ?3"
                        ))?
                        .query_map(params![from, since, PAGE as i64], product)?
                        .collect::<rusqlite::Result<_>>()?;
                    let last = match products.last() {
                        Some((key, ..)) if products.len() == PAGE => Some(key.clone()),
                        _ => None,
                    };
                    let mut page = ResyncMarked::default();
                    mark(conn, products, &request, &router, now, &mut page)?;
                    Ok((page, last))
                })
                .await?;
            marked.add(page);
            match last {
                Some(last) => after = Some(last),
                None => return Ok(marked),
            }
        }
    }
}

/// Marks `products` for the request's targets, adding to `marked`.
fn mark(
    conn: &Connection,
    products: Vec<Product>,
    request: &Resync,
    router: &Router,
    now: i64,
    marked: &mut ResyncMarked,
) -> Result<(), StoreError> {
    let selected: BTreeSet<&str> = request
        .targets
        .iter()
        .map(String::as_str)
        .filter(|t| router.all().any(|c| c == *t))
        .collect();
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
            marked.marked += 1;
            if request.list_rows {
                marked.rows.push(RowKey::new(target, key.clone()));
            }
        }
    }
    Ok(())
}
