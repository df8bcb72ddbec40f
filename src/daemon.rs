//! The daemon's testable entry point: open the store, then serve on a listener the caller
//! bound (port 0 in tests), until the shutdown future resolves.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::dispatch::{DeliveryStats, DispatchError, Dispatcher};
use crate::receiver::{self, ReceiverState};
use crate::route::Router;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// A started daemon: its store is open and migrated and its delivery workers run; no
/// webhook is accepted until `serve`.
pub struct Daemon {
    config: Config,
    store: Store,
    dispatcher: Dispatcher,
}

impl Daemon {
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        let store = Store::open(&config.store)?;
        let dispatcher =
            match Dispatcher::start(store.clone(), &config.targets, config.server.shutdown_grace)
                .await
            {
                Ok(dispatcher) => dispatcher,
                Err(error) => {
                    store.close().await;
                    return Err(error.into());
                }
            };
        Ok(Daemon {
            config,
            store,
            dispatcher,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Per-target delivery counters.
    pub fn delivery_stats(&self) -> BTreeMap<String, Arc<DeliveryStats>> {
        self.dispatcher.stats().clone()
    }

    /// Serves webhooks until `shutdown` resolves, then lets requests in flight finish (up
    /// to `server.shutdown_grace`), commits what is queued and closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let Daemon {
            config,
            store,
            dispatcher,
        } = self;
        let router = Arc::new(Router::new(&config.targets));
        // Thin events queued by the receiver are fetched from the PIM in the background.
        let fetcher = crate::pull::Fetcher::start(
            store.clone(),
            router.clone(),
            &config.sources,
            dispatcher.wake(),
        );
        let state = ReceiverState {
            store: store.clone(),
            router,
            request_timeout: config.server.request_timeout,
            wake: dispatcher.wake(),
        };
        let app = receiver::router(state, &config.sources, config.server.body_limit);
        let pruner = tokio::spawn(prune_inbox_forever(store.clone(), config.clone()));

        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let grace = config.server.shutdown_grace;
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new webhooks accepted");
            let _ = stopped_tx.send(());
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
        let server = tokio::spawn(async move { server.await });
        // Once shutdown starts, give requests in flight `grace` to finish.
        let result = tokio::select! {
            result = server => result.map_err(|e| std::io::Error::other(e.to_string())).and_then(|r| r),
            _ = async {
                let _ = stopped_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs_f64(), "requests still open after the grace period; closing");
                Ok(())
            }
        };
        pruner.abort();
        if let Some(fetcher) = fetcher {
            fetcher.shutdown().await;
        }
        dispatcher.shutdown().await;
        store.close().await;
        result.map_err(DaemonError::Serve)
    }
}

/// Binds the configured listen address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn prune_inbox_forever(store: Store, config: Config) {
    let retention_ms = config.store.inbox_retention.as_millis() as i64;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let cutoff = crate::store::now_ms() - retention_ms;
        match store.prune_inbox(cutoff, config.store.inbox_max_rows).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned inbox"),
            Err(error) => tracing::warn!(%error, "inbox pruning failed; will retry"),
        }
    }
}
