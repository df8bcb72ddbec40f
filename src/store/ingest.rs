//! Ingest: one webhook becomes an inbox row, product snapshots and outbox rows, all in the
//! caller's transaction. This is where the outbox is level-triggered: a product's row per
//! target asks for the content the target must reach (usually by following the product's
//! own, see `outbox`), and a newer change just moves it.

use std::borrow::Cow;

use pimsync_connectors::{
    ChangeBody, ChangeOp, ContentHash, ProductChange, ProductKind, Snapshot, idempotency_key,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::outbox::{Arm, Desired};
use crate::route::Router;

/// A parsed webhook, ready to commit.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub source: String,
    /// The sender's delivery id; a second delivery with the same id is not processed again.
    pub delivery_id: Option<String>,
    /// The kept headers as a JSON object.
    pub headers_json: String,
    pub body: Vec<u8>,
    pub changes: Vec<PreparedChange>,
    /// The target whose own webhooks this source carries back (see `SourceConfig::echo_of`).
    pub echo_of: Option<String>,
}

/// A change whose canonical JSON and hash were computed before it reached the writer,
/// keeping that work off the single writer thread.
#[derive(Debug, Clone)]
pub struct PreparedChange {
    pub change: ProductChange,
    canonical: Option<(String, ContentHash)>,
}

impl PreparedChange {
    pub fn new(change: ProductChange) -> PreparedChange {
        let canonical = match &change.body {
            ChangeBody::Full(snapshot) if change.op == ChangeOp::Upsert => {
                let json = snapshot.to_canonical_json();
                let hash = ContentHash::of_json(&json);
                Some((json, hash))
            }
            _ => None,
        };
        PreparedChange { change, canonical }
    }
}

/// What became of a webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The delivery id was seen before: nothing was processed.
    pub duplicate: bool,
    /// Changes that moved a product to new content.
    pub changed: usize,
    /// Changes whose content equals what is stored (version moved, no outbox work).
    pub unchanged: usize,
    /// Changes older than the stored version, dropped.
    pub stale: usize,
    /// Thin events queued for a fetch from the PIM.
    pub fetch_queued: usize,
    /// Outbox rows created or moved to a new desired hash (a row that follows its product
    /// moves with it, written or not).
    pub outbox_rows: usize,
    /// Of those, the rows written: created, or changed so that their delivery is due anew.
    /// A row that follows its product and simply waits keeps its schedule untouched, so only
    /// a write is news to the delivery workers (waking them per webhook polled every
    /// worker's loop on the request's thread).
    pub outbox_written: usize,
    /// Echoes of pimsync's own writes, ignored.
    pub echoes: usize,
}

struct Existing {
    version: i64,
    deleted: bool,
    snapshot: Option<String>,
    hash: String,
    uuid: Option<String>,
    parent: Option<String>,
}

pub(super) fn ingest(
    conn: &Connection,
    request: &Ingest,
    router: &Router,
    now: i64,
) -> Result<IngestOutcome, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inbox (source, delivery_id, received_at, headers, body, changes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (source, delivery_id) DO NOTHING",
        )?
        .execute(params![
            request.source,
            request.delivery_id,
            now,
            request.headers_json,
            request.body,
            request.changes.len() as i64
        ])?;
    let mut outcome = IngestOutcome::default();
    if inserted == 0 {
        outcome.duplicate = true;
        return Ok(outcome);
    }
    for prepared in &request.changes {
        apply_change(conn, request, prepared, router, now, &mut outcome)?;
    }
    Ok(outcome)
}

fn apply_change(
    conn: &Connection,
    request: &Ingest,
    prepared: &PreparedChange,
    router: &Router,
    now: i64,
    outcome: &mut IngestOutcome,
) -> Result<(), StoreError> {
    let source = request.source.as_str();
    let change = &prepared.change;
    let key = match (&change.key, &change.uuid) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(uuid)) => {
            let known = conn
                .prepare_cached("SELECT product_key FROM products WHERE uuid = ?1 LIMIT 1")?
                .query_row([uuid], |row| row.get::<_, String>(0))
                .optional()?;
            // A product without an identifier (Akeneo 7 allows them) is keyed by its uuid.
            let has_content = matches!(change.body, ChangeBody::Full(_) | ChangeBody::Partial(_));
            known.or_else(|| has_content.then(|| uuid.clone()))
        }
        (None, None) => None,
    };
    // The stored snapshot only matters to a partial change, which merges into it, and to a
    // deletion, routed by it: for a full state it would be a copy of a whole product read
    // for nothing.
    let needs_snapshot =
        change.op == ChangeOp::Delete || matches!(change.body, ChangeBody::Partial(_));
    let existing_sql = if needs_snapshot {
        "SELECT version, deleted, snapshot, content_hash, uuid, parent FROM products WHERE product_key = ?1"
    } else {
        "SELECT version, deleted, NULL, content_hash, uuid, parent FROM products WHERE product_key = ?1"
    };
    let existing = match &key {
        Some(key) => conn
            .prepare_cached(existing_sql)?
            .query_row([key], |row| {
                Ok(Existing {
                    version: row.get(0)?,
                    deleted: row.get(1)?,
                    snapshot: row.get(2)?,
                    hash: row.get(3)?,
                    uuid: row.get(4)?,
                    parent: row.get(5)?,
                })
            })
            .optional()?,
        None => None,
    };

    if matches!(change.body, ChangeBody::NeedsFetch) {
        if existing
            .as_ref()
            .is_some_and(|e| change.version <= e.version)
        {
            outcome.stale += 1;
        } else {
            queue_fetch(conn, source, change, key.as_deref(), now)?;
            outcome.fetch_queued += 1;
        }
        return Ok(());
    }
    let Some(key) = key else {
        // A deletion by uuid of a product never stored here: nothing to converge.
        outcome.stale += 1;
        return Ok(());
    };
    if let Some(e) = &existing {
        let older = change.version < e.version;
        // At an equal version a deletion wins: a late upsert cannot resurrect it.
        let resurrects = change.version == e.version && e.deleted && change.op == ChangeOp::Upsert;
        if older || resurrects {
            outcome.stale += 1;
            return Ok(());
        }
    }

    // The new desired state, borrowed from the prepared change where it can be: this runs
    // on the single writer thread, where a copy of every snapshot is measurable.
    let (snapshot_json, hash, snapshot_for_routing): (
        Option<Cow<'_, str>>,
        ContentHash,
        Option<Cow<'_, Snapshot>>,
    ) = match (&change.op, &change.body) {
        (ChangeOp::Delete, _) => (None, ContentHash::deleted(), None),
        (ChangeOp::Upsert, ChangeBody::Full(snapshot)) => {
            let (json, hash) = match &prepared.canonical {
                Some((json, hash)) => (Cow::Borrowed(json.as_str()), hash.clone()),
                None => {
                    let json = snapshot.to_canonical_json();
                    let hash = ContentHash::of_json(&json);
                    (Cow::Owned(json), hash)
                }
            };
            (Some(json), hash, Some(Cow::Borrowed(snapshot)))
        }
        (ChangeOp::Upsert, ChangeBody::Partial(delta)) => {
            let mut merged = existing
                .as_ref()
                .filter(|e| !e.deleted)
                .and_then(|e| e.snapshot.as_deref())
                .and_then(|json| serde_json::from_str::<Snapshot>(json).ok())
                .unwrap_or_default();
            merged.merge(delta.clone());
            let json = merged.to_canonical_json();
            let hash = ContentHash::of_json(&json);
            (Some(Cow::Owned(json)), hash, Some(Cow::Owned(merged)))
        }
        (ChangeOp::Upsert, ChangeBody::None | ChangeBody::NeedsFetch) => {
            // Formats never produce this; treat as nothing to do rather than guess.
            outcome.stale += 1;
            return Ok(());
        }
    };

    if let Some(target) = &request.echo_of {
        let last_applied: Option<String> = conn
            .prepare_cached("SELECT hash FROM applied WHERE product_key = ?1 AND target = ?2")?
            .query_row(params![key, target], |row| row.get(0))
            .optional()?;
        if last_applied.as_deref() == Some(hash.as_str()) {
            // The target telling us about our own write: nothing new.
            outcome.echoes += 1;
            return Ok(());
        }
    }
    let deleted = change.op == ChangeOp::Delete;
    let unchanged = existing
        .as_ref()
        .is_some_and(|e| e.deleted == deleted && e.hash == hash.as_str());
    conn.prepare_cached(
        "INSERT INTO products (product_key, uuid, kind, version, deleted, snapshot, content_hash, source, updated_at, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (product_key) DO UPDATE SET
             kind = excluded.kind,
             version = excluded.version,
             deleted = excluded.deleted,
             snapshot = coalesce(excluded.snapshot, products.snapshot),
             content_hash = excluded.content_hash,
             source = excluded.source,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        key,
        change.uuid,
        kind_name(change.kind),
        change.version,
        deleted,
        snapshot_json,
        hash.as_str(),
        source,
        now,
        snapshot_for_routing.as_ref().and_then(|s| s.parent.as_deref())
    ])?;
    // The indexed uuid and parent are set apart, and only when they change: an upsert that
    // assigns an indexed column rewrites its index entry, a random page for every webhook.
    if let Some(e) = &existing {
        if change.uuid.is_some() && change.uuid != e.uuid {
            conn.prepare_cached("UPDATE products SET uuid = ?2 WHERE product_key = ?1")?
                .execute(params![key, change.uuid])?;
        }
        if let Some(snapshot) = &snapshot_for_routing {
            if snapshot.parent != e.parent {
                conn.prepare_cached("UPDATE products SET parent = ?2 WHERE product_key = ?1")?
                    .execute(params![key, snapshot.parent])?;
            }
        }
    }
    if let Some(uuid) = &change.uuid {
        // A full state at least as new as a queued thin event makes the fetch pointless.
        conn.prepare_cached("DELETE FROM fetch_queue WHERE uuid = ?1 AND version <= ?2")?
            .execute(params![uuid, change.version])?;
    }
    if unchanged {
        outcome.unchanged += 1;
        return Ok(());
    }
    outcome.changed += 1;

    // The product models this product is (or was, until this change) a variant of.
    let old_parent = existing.as_ref().and_then(|e| e.parent.as_deref());
    let new_parent = match &snapshot_for_routing {
        Some(snapshot) => snapshot.parent.as_deref(),
        None => old_parent,
    };
    let moved_from = old_parent.filter(|old| new_parent != Some(*old));
    let models: Vec<&str> = new_parent.into_iter().chain(moved_from).collect();
    let targets: Vec<String> = match &snapshot_for_routing {
        Some(snapshot) => router.matching(snapshot).map(str::to_owned).collect(),
        None => deletion_targets(conn, router, &key, existing.as_ref())?,
    };
    let mut arm = Arm::new(conn)?;
    for target in targets {
        if router.folds_variants(&target) && !models.is_empty() {
            // This target holds the product as a variant of its model (a Shopify product
            // with variants): the model's row carries the change, the variant has none.
            for model in &models {
                let variant = Variant {
                    key: &key,
                    hash: &hash,
                };
                if rearm_model(conn, &mut arm, &target, model, variant, now)? {
                    outcome.outbox_rows += 1;
                    outcome.outbox_written += 1;
                }
            }
            if new_parent.is_some() {
                continue;
            }
        }
        if router.is_event_target(&target) {
            // Each change has a key of its own: the row names it.
            let change_state = ContentHash(format!("{hash}@{}@{now}", change.version));
            let idempotency = idempotency_key(&target, &key, &change_state);
            let own = Desired::Own {
                hash: &hash,
                idempotency: &idempotency,
            };
            arm.row(&target, &key, own, now)?;
            outcome.outbox_written += 1;
        } else if arm.row(&target, &key, Desired::Product, now)? {
            outcome.outbox_written += 1;
        }
        outcome.outbox_rows += 1;
        if router.keeps_history(&target) {
            // The same transaction as the product: an acknowledged change is never
            // missing from the history of a target that wants every change.
            super::history::append(
                conn,
                &super::history::Change {
                    target: &target,
                    product_key: &key,
                    version: change.version,
                    deleted,
                    snapshot: snapshot_json.as_deref(),
                    hash: hash.as_str(),
                    accepted_at: now,
                },
            )?;
        }
    }
    Ok(())
}

/// A variant's new state, for its model's row.
#[derive(Clone, Copy)]
struct Variant<'a> {
    key: &'a str,
    hash: &'a ContentHash,
}

/// Moves the row of `model` for `target` to a state that includes the variant's change, so
/// the model is applied again with its variants as they now are. Nothing happens for a
/// model that is unknown, deleted, or not routed to `target` (its first apply will carry
/// the variant). Returns whether a row was written.
fn rearm_model(
    conn: &Connection,
    arm: &mut Arm<'_>,
    target: &str,
    model: &str,
    variant: Variant<'_>,
    now: i64,
) -> Result<bool, StoreError> {
    let model_hash: Option<String> = conn
        .prepare_cached("SELECT content_hash FROM products WHERE product_key = ?1 AND deleted = 0")?
        .query_row([model], |row| row.get(0))
        .optional()?;
    let Some(model_hash) = model_hash else {
        return Ok(false);
    };
    let routed: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM applied WHERE product_key = ?1 AND target = ?2)
                 OR EXISTS (SELECT 1 FROM outbox WHERE product_key = ?1 AND target = ?2)",
        )?
        .query_row([model, target], |row| row.get(0))?;
    if !routed {
        return Ok(false);
    }
    // Differs from every state applied before (the model's own hashes included), and is
    // the same for the same variant state: a redelivered change keeps its key.
    let desired = ContentHash::of_json(&format!(
        "{model_hash}|variant {}={}",
        variant.key,
        variant.hash.as_str()
    ));
    let idempotency = idempotency_key(target, model, &desired);
    let own = Desired::Own {
        hash: &desired,
        idempotency: &idempotency,
    };
    arm.row(target, model, own, now)?;
    Ok(true)
}

/// A deletion goes to the targets the product was routed to (by its last content) and to
/// any target that holds it or is about to, even if filters changed since.
fn deletion_targets(
    conn: &Connection,
    router: &Router,
    key: &str,
    existing: Option<&Existing>,
) -> Result<Vec<String>, StoreError> {
    let last_content = existing
        .and_then(|e| e.snapshot.as_deref())
        .and_then(|json| serde_json::from_str::<Snapshot>(json).ok());
    let mut targets: Vec<String> = match &last_content {
        Some(snapshot) => router.matching(snapshot).map(str::to_owned).collect(),
        None => router.all().map(str::to_owned).collect(),
    };
    let mut holders = conn.prepare_cached(
        "SELECT target FROM applied WHERE product_key = ?1
         UNION SELECT target FROM outbox WHERE product_key = ?1",
    )?;
    let rows = holders.query_map([key], |row| row.get::<_, String>(0))?;
    for target in rows {
        let target = target?;
        if router.all().any(|t| t == target) && !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

fn queue_fetch(
    conn: &Connection,
    source: &str,
    change: &ProductChange,
    key: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let Some(uuid) = change.uuid.as_deref().or(key) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO fetch_queue (source, uuid, product_key, kind, version, event_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (source, uuid) DO UPDATE SET
             product_key = coalesce(excluded.product_key, fetch_queue.product_key),
             version = excluded.version,
             event_id = excluded.event_id,
             received_at = excluded.received_at
         WHERE excluded.version >= fetch_queue.version",
    )?
    .execute(params![
        source,
        uuid,
        key,
        kind_name(change.kind),
        change.version,
        change.event_id,
        now
    ])?;
    Ok(())
}

fn kind_name(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Product => "product",
        ProductKind::ProductModel => "product_model",
    }
}

pub(super) fn prune_inbox(
    conn: &Connection,
    older_than_ms: i64,
    max_rows: u64,
) -> Result<usize, StoreError> {
    let mut removed = conn
        .prepare_cached("DELETE FROM inbox WHERE received_at < ?1")?
        .execute([older_than_ms])?;
    if max_rows > 0 {
        removed += conn
            .prepare_cached("DELETE FROM inbox WHERE id <= (SELECT max(id) FROM inbox) - ?1")?
            .execute([max_rows as i64])?;
    }
    Ok(removed)
}
