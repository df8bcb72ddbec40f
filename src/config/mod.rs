//! The validated configuration. The TOML file is read into these types in one pass that
//! collects every problem (with its key path) before reporting, so an operator fixes a
//! config in one round trip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use pimsync_connectors::mapping::{FieldSource, Mapping};

mod secret;
pub use secret::Secret;

// Parsing lives in `load.rs` (entry points, server, store), `sources.rs` and `targets.rs`,
// on top of the key-path collecting reader in `reader.rs`; see `Config::from_toml_str`.
mod load;
mod pull;
mod reader;
// `[admin]` and `[[schedules]]` (operations).
mod schedules;
mod sources;
mod summary;
mod targets;
pub use load::{ConfigError, ConfigErrors, Environment, SystemEnvironment};
pub use pull::PullConfig;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub sources: Vec<SourceConfig>,
    pub targets: Vec<TargetConfig>,
    /// `[[schedules]]`: cron-driven resyncs and reconciles.
    pub schedules: Vec<ScheduleConfig>,
    /// `[admin]`: the admin HTTP API and metrics listener; None = disabled.
    pub admin: Option<AdminConfig>,
}

/// `[admin]`: a separate, bearer-token protected listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Secret,
    /// Whether `/metrics` needs the token too (`/healthz` and `/readyz` never do).
    pub metrics_auth: bool,
}

/// One `[[schedules]]` entry.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub name: String,
    /// The expression as written (for display).
    pub cron_text: String,
    pub cron: crate::schedule::CronSchedule,
    pub timezone: chrono_tz::Tz,
    pub action: ScheduleAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleAction {
    /// Mark products pending again for `targets` (empty = every target); only products
    /// stored within `since` when set; `force` ignores what is recorded as applied.
    Resync {
        targets: Vec<String>,
        since: Option<Duration>,
        force: bool,
    },
    /// Compare a PIM source's catalog with the store (the PIM pull provides it).
    Reconcile { source: String },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the webhook receiver listens; port 0 picks a free port (tests, the demo).
    pub listen: SocketAddr,
    /// Larger bodies get 413 before they are read whole.
    pub body_limit: usize,
    /// A client's time to send the headers, and again the body (408); a commit's time
    /// (503); and how long an idle keep-alive connection stays open.
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Threads of the async runtime (requests, deliveries); None: the default of
    /// `daemon::worker_threads`.
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Raw webhooks older than this are pruned from the inbox.
    pub inbox_retention: Duration,
    /// The inbox keeps at most this many rows (oldest pruned first); 0 = no row limit.
    pub inbox_max_rows: u64,
    /// Most write requests the writer puts in one transaction.
    pub max_batch: usize,
    /// Write requests waiting for the writer beyond which ingest answers 503.
    pub queue_capacity: usize,
    /// Largest the database may grow, in bytes (0 = no limit). Past it commits fail and
    /// ingest answers 503 instead of filling the disk that other services share.
    pub max_size: u64,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// URL path the source posts to, e.g. `/webhooks/akeneo`.
    pub path: String,
    pub format: SourceFormat,
    /// A target whose own webhooks come back through this source (Shopify
    /// `products/update` after pimsync's write): a change whose content equals what
    /// pimsync last applied to that target is acknowledged and ignored.
    pub echo_of: Option<String>,
    /// `[sources.api]`: the PIM's REST API, for fetching thin events and reconciling.
    pub api: Option<PullConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone)]
pub enum SourceFormat {
    /// Akeneo PIM Events API (legacy, batched, signed over "<timestamp>.<body>").
    Akeneo { secret: Secret, tolerance: Duration },
    /// Akeneo Event Platform (CloudEvents, one event per request).
    AkeneoEventPlatform {
        primary: Secret,
        secondary: Option<Secret>,
    },
    /// Standard Webhooks; each secret is the decoded key (the `whsec_` prefix stripped and
    /// base64 decoded). Several secrets allow rotation.
    StandardWebhooks {
        secrets: Vec<Secret>,
        tolerance: Duration,
    },
    /// Generic HMAC-SHA256 of the raw body in one header.
    Hmac {
        header: String,
        prefix: Option<String>,
        encoding: SignatureEncoding,
        secret: Secret,
        /// Header carrying a unique delivery id (e.g. `X-GitHub-Delivery`), for dedup.
        delivery_id_header: Option<String>,
    },
}

impl SourceFormat {
    pub fn name(&self) -> &'static str {
        match self {
            SourceFormat::Akeneo { .. } => "akeneo",
            SourceFormat::AkeneoEventPlatform { .. } => "akeneo-event-platform",
            SourceFormat::StandardWebhooks { .. } => "standard-webhooks",
            SourceFormat::Hmac { .. } => "hmac",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub filter: TargetFilter,
    /// Platform field → PIM attribute (with locale, scope, currency).
    pub mapping: Mapping,
    pub delivery: DeliveryConfig,
    pub kind: TargetKind,
}

/// How the dispatcher drives one target.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Applies in flight at once (each on a different product).
    pub concurrency: usize,
    /// Requests per second (0 = unlimited), with bursts up to `burst`.
    pub rate_limit: f64,
    pub burst: u32,
    /// After this many failed attempts a change is dead-lettered.
    pub max_attempts: u32,
    /// Exponential backoff with full jitter between `retry_base` and `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// A platform's `Retry-After` is honoured up to this.
    pub max_retry_after: Duration,
    /// A leased row not finished within this is taken again (after a crash).
    pub lease_timeout: Duration,
    /// Rows leased per round trip to the store.
    pub batch: usize,
    /// One apply (all its HTTP calls) may take at most this long.
    pub request_timeout: Duration,
    /// Least time between two applies of one product: edits in between coalesce into the
    /// next apply. A lone edit is applied at once; a burst costs the target two calls per
    /// interval at most. Zero applies every change as soon as the previous apply is done.
    pub min_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 8,
            rate_limit: 0.0,
            burst: 10,
            max_attempts: 20,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(3600),
            lease_timeout: Duration::from_secs(300),
            batch: 256,
            request_timeout: Duration::from_secs(30),
            min_interval: Duration::from_secs(1),
        }
    }
}

/// Which products a target receives. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default)]
pub struct TargetFilter {
    pub families: Vec<String>,
    /// A product matches if it is in any of these categories.
    pub categories: Vec<String>,
    /// Only products whose `enabled` is true.
    pub enabled_only: bool,
    /// `webhook` targets only: send an event only when one of these attribute values
    /// changed since the last event this target got (empty: any change).
    pub changed: Vec<FieldSource>,
}

#[derive(Debug, Clone)]
pub enum TargetKind {
    /// Writes what would be sent, one JSON line per apply (stdout when no path).
    Log { path: Option<PathBuf> },
    /// The Shopify connector's settings, secrets resolved (its `Debug` redacts them).
    /// Boxed: far larger than the other kinds.
    Shopify(Box<pimsync_connectors::shopify::ShopifySettings>),
    /// Magento Open Source / Adobe Commerce; the connector's settings, secrets resolved.
    Magento(Box<pimsync_connectors::magento::MagentoSettings>),
    /// pimsync's own HTTP contract: PUT/DELETE `{base_url}/products/{key}`.
    Http {
        base_url: String,
        bearer_token: Option<Secret>,
    },
    /// Odoo 19+ through JSON-2 (secrets resolved into the settings).
    Odoo(Box<pimsync_connectors::erp::odoo::OdooSettings>),
    /// A generic REST ERP declared by templates.
    Rest(Box<pimsync_connectors::erp::rest::RestSettings>),
    /// Signed Standard Webhooks events to one URL.
    Webhook(Box<WebhookTarget>),
}

/// A `webhook` target: the connector's settings and how the outbox feeds it.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub settings: pimsync_connectors::webhook::WebhookSettings,
    /// true: one event with the latest state, however many changes came in between (the
    /// outbox's own behaviour). false: one event per accepted change, oldest first, kept in
    /// the store's per-change history until delivered.
    pub coalesce: bool,
}

impl TargetConfig {
    /// Whether every accepted change must be kept and delivered in order (a webhook
    /// target with `coalesce = false`), not just the latest state.
    pub fn keeps_history(&self) -> bool {
        matches!(&self.kind, TargetKind::Webhook(webhook) if !webhook.coalesce)
    }
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Log { .. } => "log",
            TargetKind::Shopify(_) => "shopify",
            TargetKind::Magento(_) => "magento",
            TargetKind::Http { .. } => "http",
            TargetKind::Odoo(_) => "odoo",
            TargetKind::Rest(_) => "rest",
            TargetKind::Webhook(_) => "webhook",
        }
    }
}
