//! Read-side queries for the CLI, the demo and tests. They run on read-only connections,
//! beside the writer, thanks to WAL.

use rusqlite::{OptionalExtension, params};

use super::outbox::{desired_hash_sql, resolved_key};
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub key: String,
    pub uuid: Option<String>,
    pub kind: String,
    pub version: i64,
    pub deleted: bool,
    pub snapshot: Option<String>,
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub target: String,
    pub product_key: String,
    pub desired_hash: String,
    pub idempotency_key: String,
    pub state: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub id: i64,
    pub source: String,
    pub delivery_id: Option<String>,
    pub received_at: i64,
    pub changes: i64,
}

/// Row counts, for `status`-like summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub products: i64,
    pub tombstones: i64,
    pub inbox: i64,
    pub fetch_queue: i64,
    /// (target, state, rows)
    pub outbox: Vec<(String, String, i64)>,
}

impl Store {
    pub async fn product(&self, key: &str) -> Result<Option<ProductRow>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT product_key, uuid, kind, version, deleted, snapshot, content_hash
                 FROM products WHERE product_key = ?1",
                [key],
                |row| {
                    Ok(ProductRow {
                        key: row.get(0)?,
                        uuid: row.get(1)?,
                        kind: row.get(2)?,
                        version: row.get(3)?,
                        deleted: row.get(4)?,
                        snapshot: row.get(5)?,
                        content_hash: row.get(6)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Outbox rows, by target then product key, at most `limit`.
    pub async fn outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare(concat!(
                "SELECT target, product_key, ",
                desired_hash_sql!(),
                ", idempotency_key, state, attempts
                 FROM outbox ORDER BY target, product_key LIMIT ?1"
            ))?;
            let rows = statement.query_map(params![limit as i64], |row| {
                let (target, product_key, desired_hash): (String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                let idempotency_key =
                    resolved_key(&target, &product_key, row.get(3)?, &desired_hash);
                Ok(OutboxRow {
                    target,
                    product_key,
                    desired_hash,
                    idempotency_key,
                    state: row.get(4)?,
                    attempts: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.read(|conn| {
            let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0));
            let mut statement = conn.prepare(
                "SELECT target, state, count(*) FROM outbox GROUP BY target, state ORDER BY target, state",
            )?;
            let outbox = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Counts {
                products: count("SELECT count(*) FROM products WHERE deleted = 0")?,
                tombstones: count("SELECT count(*) FROM products WHERE deleted = 1")?,
                inbox: count("SELECT count(*) FROM inbox")?,
                fetch_queue: count("SELECT count(*) FROM fetch_queue")?,
                outbox,
            })
        })
        .await
    }
}
