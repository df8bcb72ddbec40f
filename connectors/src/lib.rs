//! pimsync's connectors crate: the canonical product model that every webhook format is
//! turned into, the `Connector` interface the delivery engine drives, shared HTTP failure
//! classification and field mapping, and the connectors themselves. It knows nothing of
//! pimsync's store or receiver.

pub mod akeneo;
pub mod connector;
pub mod erp;
pub mod http;
pub mod http_target;
pub mod log;
pub mod magento;
pub mod mapping;
pub mod product;
pub mod shopify;
pub mod standard_webhooks;
pub mod webhook;

pub use connector::{
    Applied, ApplyError, ApplyRequest, ChangeInfo, Connector, Desired, RemoteIds, Variant,
};
pub use product::{
    AttributeValue, ChangeBody, ChangeOp, ContentHash, ProductChange, ProductKind, Snapshot,
    idempotency_key,
};
