//! The `action = "reconcile"` of `[[schedules]]`: an incremental reconcile of one source
//! since its last completed run (the whole catalog the first time).

use std::sync::Arc;

use crate::config::SourceConfig;
use crate::route::Router;
use crate::schedule::{ReconcileFuture, Reconciler};
use crate::store::Store;

use super::{Since, reconcile};

pub struct ScheduledReconcile {
    store: Store,
    router: Arc<Router>,
    sources: Vec<SourceConfig>,
}

impl ScheduledReconcile {
    pub fn new(store: Store, router: Arc<Router>, sources: Vec<SourceConfig>) -> Self {
        ScheduledReconcile {
            store,
            router,
            sources,
        }
    }
}

impl Reconciler for ScheduledReconcile {
    fn reconcile<'a>(&'a self, source: &'a str) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let config = self
                .sources
                .iter()
                .find(|s| s.name == source)
                .ok_or_else(|| format!("no source named {source}"))?;
            let report = reconcile(
                &self.store,
                self.router.clone(),
                config,
                Since::LastRun,
                |_| {},
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(report.to_string())
        })
    }
}
