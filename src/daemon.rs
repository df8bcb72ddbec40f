//! The daemon's testable entry point: open the store, then serve on a listener the caller
//! bound (port 0 in tests), until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::{self, AdminState, Health};
use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher};
use crate::receiver::{self, ReceiverState};
use crate::route::Router;
use crate::schedule::{self, Reconciler, RunLocks, Scheduler};
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
    /// The admin API's listener, when `[admin]` is configured (bound by the caller).
    admin: Option<TcpListener>,
    /// What `action = "reconcile"` schedules call: the PIM pull's reconcile.
    reconciler: Arc<dyn Reconciler>,
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
        let reconciler: Arc<dyn Reconciler> = Arc::new(crate::pull::ScheduledReconcile::new(
            store.clone(),
            Arc::new(Router::new(&config.targets)),
            config.sources.clone(),
        ));
        Ok(Daemon {
            config,
            store,
            dispatcher,
            admin: None,
            reconciler,
        })
    }

    /// Serves the admin API (`[admin]`) on `listener` as well.
    pub fn with_admin_listener(mut self, listener: TcpListener) -> Daemon {
        self.admin = Some(listener);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the daemon can do its job: every delivery worker running and the store's
    /// writer committing. The systemd watchdog is pinged only while this holds.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            store: self.store.clone(),
            workers: Arc::new(self.dispatcher.healthy()),
        }
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
            admin: admin_listener,
            reconciler,
        } = self;
        let router = Arc::new(Router::new(&config.targets));
        let target_names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
        let locks = RunLocks::default();
        let scheduler = Scheduler::start(
            &config.schedules,
            schedule::RunContext {
                store: store.clone(),
                router: router.clone(),
                all_targets: target_names.clone(),
                wake: dispatcher.wake(),
                reconciler,
                locks: locks.clone(),
            },
        );
        let health = Arc::new(Health::default());
        let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
        let admin_server = match (admin_listener, &config.admin) {
            (Some(listener), Some(admin_config)) => {
                let state = AdminState {
                    store: store.clone(),
                    token: Arc::new(admin_config.token.clone()),
                    metrics_auth: admin_config.metrics_auth,
                    targets: Arc::new(target_names.clone()),
                    schedules: Arc::new(config.schedules.clone()),
                    router: router.clone(),
                    wake: dispatcher.wake(),
                    delivery: Arc::new(dispatcher.stats().clone()),
                    health: health.clone(),
                    locks: locks.clone(),
                };
                let mut stopped = admin_stopped;
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let header_timeout = config.server.request_timeout;
                Some(tokio::spawn(admin::serve(
                    listener,
                    state,
                    header_timeout,
                    shutdown,
                )))
            }
            _ => None,
        };
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
        let ready = health.clone();
        let graceful = async move {
            shutdown.await;
            ready.set_ready(false);
            tracing::info!("shutting down: no new webhooks accepted");
            let _ = stopped_tx.send(());
        };
        let server =
            crate::connections::serve(listener, app, config.server.request_timeout, graceful);
        let server = tokio::spawn(server);
        health.set_ready(true);
        // Once shutdown starts, give requests in flight `grace` to finish.
        let result = tokio::select! {
            result = server => result.map_err(std::io::Error::other).and_then(|r| r),
            _ = async {
                let _ = stopped_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs_f64(), "requests still open after the grace period; closing");
                Ok(())
            }
        };
        pruner.abort();
        scheduler.stop();
        let _ = admin_stop.send(true);
        if let Some(admin_server) = admin_server {
            // The admin API answers until here (readyz says not ready); give it a moment.
            match tokio::time::timeout(Duration::from_secs(2), admin_server).await {
                Ok(Ok(Err(error))) => tracing::warn!(%error, "admin API failed"),
                Err(_) => tracing::warn!("admin API requests still open; closing"),
                _ => {}
            }
        }
        if let Some(fetcher) = fetcher {
            fetcher.shutdown().await;
        }
        dispatcher.shutdown().await;
        store.close().await;
        result.map_err(DaemonError::Serve)
    }
}

/// The async runtime's threads when `[server] worker_threads` is not set: one fewer than
/// the CPUs this process may use, and at least one. The store's single writer thread is
/// on the path of every acknowledgement and needs a CPU of its own; with as many runtime
/// threads as CPUs, request parsing preempts it. On 2 CPUs one runtime thread ingested
/// about 5 % more than two, and delivered as fast (README, performance).
pub fn worker_threads(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |cpus| cpus.get().saturating_sub(1).max(1))
    })
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

/// A cloneable liveness probe for the watchdog (see `Daemon::liveness`).
#[derive(Clone)]
pub struct Liveness {
    store: Store,
    workers: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Liveness {
    pub async fn check(&self) -> bool {
        (self.workers)() && self.store.ping().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_leaves_a_cpu_to_the_writer_unless_told_otherwise() {
        assert_eq!(super::worker_threads(Some(4)), 4);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let automatic = super::worker_threads(None);
        assert!(automatic >= 1);
        assert!(
            cpus == 1 || automatic == cpus - 1,
            "{automatic} of {cpus} CPUs"
        );
    }
}
