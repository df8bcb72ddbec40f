//! The fetcher: a background task that takes the thin events the receiver queued
//! (`fetch_queue`), fetches their products from the PIM in batches (one `uuid IN` search
//! per batch; product models one by one), and commits them as full snapshots. A product
//! the PIM no longer has (404, or absent from the search) is a deletion at the event's
//! version. Queue rows are removed in the transaction that commits the result, so a crash
//! only means fetching again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pimsync_connectors::akeneo::AkeneoClient;
use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{PullError, headers_json, resource_change};
use crate::config::SourceConfig;
use crate::dispatch::Wake;
use crate::route::Router;
use crate::store::{FetchRow, Ingest, IngestOutcome, PreparedChange, Store};

/// How often the queue is looked at when it was empty.
pub const POLL: Duration = Duration::from_secs(1);
/// Longest wait after failures (the PIM down, credentials refused).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRound {
    /// Queue rows taken.
    pub rows: usize,
    /// Products fetched and committed as upserts.
    pub fetched: usize,
    /// Products the PIM no longer has, committed as deletions.
    pub deleted: usize,
    /// Resources that could not be turned into a product (logged, dropped).
    pub invalid: usize,
    pub outcome: IngestOutcome,
}

/// The running fetcher.
pub struct Fetcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Fetcher {
    /// Starts fetching for every source with `[sources.api]`; `None` when there is none.
    pub fn start(
        store: Store,
        router: Arc<Router>,
        sources: &[SourceConfig],
        wake: Wake,
    ) -> Option<Fetcher> {
        let mut pulls = Vec::new();
        for source in sources {
            match (&source.api, super::client(source)) {
                (Some(api), Ok(client)) => {
                    pulls.push((source.name.clone(), Arc::new(client), api.fetch_batch));
                }
                (Some(_), Err(error)) => {
                    tracing::error!(source = %source.name, %error, "cannot build the PIM API client; thin events of this source stay queued");
                }
                (None, _) => {
                    if matches!(
                        source.format,
                        crate::config::SourceFormat::AkeneoEventPlatform { .. }
                    ) {
                        tracing::warn!(source = %source.name, "no [sources.api]: thin events of this source are queued but never fetched");
                    }
                }
            }
        }
        if pulls.is_empty() {
            return None;
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, router, pulls, wake, stopped));
        Some(Fetcher { stop, task })
    }

    /// Stops after the round in flight (its commit, if any, completes).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

async fn run(
    store: Store,
    router: Arc<Router>,
    pulls: Vec<(String, Arc<AkeneoClient>, usize)>,
    wake: Wake,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff: HashMap<String, (Duration, tokio::time::Instant)> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut more = false;
        for (source, client, batch) in &pulls {
            if backoff
                .get(source)
                .is_some_and(|(_, until)| tokio::time::Instant::now() < *until)
            {
                continue;
            }
            let round = tokio::select! {
                round = fetch_once(&store, &router, source, client, *batch) => round,
                _ = stop.changed() => return,
            };
            match round {
                Ok(round) => {
                    backoff.remove(source);
                    if round.outcome.outbox_written > 0 {
                        wake.all();
                    }
                    if round.rows > 0 {
                        tracing::debug!(%source, rows = round.rows, fetched = round.fetched, deleted = round.deleted, "fetched thin events");
                    }
                    more |= round.rows >= *batch;
                }
                Err(error) => {
                    let wait = backoff
                        .get(source)
                        .map_or(POLL, |(wait, _)| (*wait * 2).min(MAX_BACKOFF));
                    tracing::warn!(%source, %error, retry_in_secs = wait.as_secs(), "fetching thin events failed");
                    backoff.insert(source.clone(), (wait, tokio::time::Instant::now() + wait));
                }
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Fetches and commits up to `batch` queued thin events of `source`.
pub async fn fetch_once(
    store: &Store,
    router: &Arc<Router>,
    source: &str,
    client: &AkeneoClient,
    batch: usize,
) -> Result<FetchRound, PullError> {
    let rows = store.fetch_queue_batch(source, batch).await?;
    let mut round = FetchRound {
        rows: rows.len(),
        ..FetchRound::default()
    };
    if rows.is_empty() {
        return Ok(round);
    }
    let uuids: Vec<String> = rows
        .iter()
        .filter(|row| row.kind == ProductKind::Product)
        .map(|row| row.uuid.clone())
        .collect();
    let mut found: HashMap<String, serde_json::Value> = HashMap::new();
    if !uuids.is_empty() {
        for resource in client.products_by_uuid(&uuids).await? {
            if let Some(uuid) = resource.get("uuid").and_then(|u| u.as_str()) {
                found.insert(uuid.to_owned(), resource);
            }
        }
    }
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        let resource = match row.kind {
            ProductKind::Product => found.remove(&row.uuid),
            ProductKind::ProductModel => client.product_model(&row.uuid).await?,
        };
        match resource {
            Some(resource) => match resource_change(&resource, row.kind) {
                Ok(change) => {
                    round.fetched += 1;
                    changes.push(PreparedChange::new(change));
                }
                Err(error) => {
                    round.invalid += 1;
                    tracing::warn!(%source, uuid = %row.uuid, %error, "fetched resource is not a product; dropping its thin event");
                }
            },
            None => {
                round.deleted += 1;
                changes.push(PreparedChange::new(deletion(row)));
            }
        }
    }
    round.outcome = store
        .ingest_fetched(
            Ingest {
                source: source.to_owned(),
                delivery_id: None,
                headers_json: headers_json("fetch"),
                body: Vec::new(),
                changes,
                echo_of: None,
            },
            router.clone(),
            rows,
        )
        .await?;
    Ok(round)
}

/// The PIM no longer has the product: it is gone, at the thin event's version.
fn deletion(row: &FetchRow) -> ProductChange {
    let (key, uuid) = match row.kind {
        ProductKind::Product => (row.product_key.clone(), Some(row.uuid.clone())),
        ProductKind::ProductModel => (Some(row.uuid.clone()), None),
    };
    ProductChange {
        key,
        uuid,
        kind: row.kind,
        op: ChangeOp::Delete,
        version: row.version,
        body: ChangeBody::None,
        event_id: None,
    }
}
