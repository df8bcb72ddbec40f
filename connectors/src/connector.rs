//! The interface between the delivery engine and a target platform.
//!
//! The dispatcher hands a connector the desired state of one product (or its deletion),
//! the remote identifiers recorded by the last successful apply, and an idempotency key
//! that is the same on every retry of the same desired state. The connector brings the
//! target to that state through the platform's API and classifies any failure, so the
//! dispatcher can decide between retrying later and dead-lettering.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::product::{ProductKind, Snapshot};

/// Platform identifiers of an applied product (Shopify GIDs, Magento SKU, ERP ids), kept
/// by the store between applies so updates and deletions address the same remote record.
pub type RemoteIds = BTreeMap<String, String>;

/// What the target must become.
#[derive(Debug, Clone, Copy)]
pub enum Desired<'a> {
    Upsert {
        kind: ProductKind,
        snapshot: &'a Snapshot,
        /// For a product model: its variant products (key and content), in key order.
        variants: &'a [Variant],
    },
    Delete,
}

/// A variant product of a product model.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub key: String,
    pub snapshot: Snapshot,
}

/// One apply: bring `target` to `desired` for `product_key`.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    pub target: &'a str,
    pub product_key: &'a str,
    pub desired: Desired<'a>,
    /// Identifiers returned by the last successful apply to this target (empty if none).
    pub remote_ids: &'a RemoteIds,
    /// Stable per (target, product key, desired hash): send it wherever the platform
    /// accepts one, derive per-call keys from it where several calls are needed.
    pub idempotency_key: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Facts about the change behind this apply, for targets that report events rather
    /// than converge to state (the `webhook` target); state connectors ignore them.
    pub change: ChangeInfo,
}

/// What an event-style target says about a change besides its content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The PIM version of the desired state (0 when unknown).
    pub version: i64,
    /// When pimsync accepted this state (Unix ms): the event's time, the same on every
    /// retry so that a redelivered event carries the same body.
    pub accepted_at_ms: i64,
    /// An operator asked for this apply (a forced resync): a connector that may settle an
    /// apply without a call because nothing it watches changed must call anyway.
    pub forced: bool,
}

/// A successful apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The remote identifiers to remember (replaces what was stored).
    pub remote_ids: RemoteIds,
    /// The connector decided no call was needed (a webhook target's filter found nothing
    /// it watches changed): the state counts as applied, but nothing was sent.
    pub skipped: bool,
}

impl Applied {
    pub fn new(remote_ids: RemoteIds) -> Applied {
        Applied {
            remote_ids,
            skipped: false,
        }
    }

    /// Settled without a call; `remote_ids` are kept as they were.
    pub fn skipped(remote_ids: RemoteIds) -> Applied {
        Applied {
            remote_ids,
            skipped: true,
        }
    }
}

/// A failed apply, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Try again later (connection error, timeout, 408, 5xx, a transient platform error).
    #[error("retryable: {message}")]
    Retryable {
        message: String,
        /// The platform's own wish (`Retry-After`), if it said one.
        retry_after: Option<Duration>,
    },
    /// The platform's rate limit: retry after `retry_after`; not counted as a failure of
    /// the product itself.
    #[error("throttled: {message}")]
    Throttled {
        message: String,
        retry_after: Duration,
    },
    /// Retrying cannot help (validation error, 4xx, GraphQL userErrors): dead-letter with
    /// the platform's message so an operator can fix the cause.
    #[error("permanent: {message}")]
    Permanent { message: String },
    /// The receiver asked never to be called again (a webhook endpoint answering
    /// `410 Gone`): the whole target is disabled until an operator re-enables it; the
    /// change itself stays pending, so nothing is lost meanwhile.
    #[error("target gone: {message}")]
    Gone { message: String },
}

impl ApplyError {
    pub fn retryable(message: impl Into<String>) -> ApplyError {
        ApplyError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> ApplyError {
        ApplyError::Permanent {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApplyError::Retryable { message, .. }
            | ApplyError::Throttled { message, .. }
            | ApplyError::Permanent { message }
            | ApplyError::Gone { message } => message,
        }
    }
}

/// A target platform.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The config `kind` this connector serves, for logs.
    fn kind(&self) -> &'static str;

    /// Waits until the platform can take another request. Connectors that see the
    /// platform's own budget (Shopify's cost bucket) pace here, tightening the dispatcher's
    /// configured rate limit; the default does not wait.
    async fn ready(&self) {}

    /// Brings the target to the desired state. Must be safe to repeat with the same
    /// idempotency key: delivery is at-least-once.
    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError>;
}
