//! Marking products pending again for chosen targets.

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
