//! pimsync's connectors crate: the canonical product model that every webhook format is
//! turned into, and (with the delivery engine) the connectors that apply it to targets.
//! It knows nothing of pimsync's store or receiver.

pub mod product;

pub use product::{
    AttributeValue, ChangeBody, ChangeOp, ContentHash, ProductChange, ProductKind, Snapshot,
    idempotency_key,
};
