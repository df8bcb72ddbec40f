//! The webhook receiver: one POST route per configured source. A request is verified
//! against its raw bytes, parsed into canonical changes, committed, and only then
//! acknowledged (see the store's durability contract).

pub mod formats;
mod server;
pub mod signature;

pub use server::{ReceiverState, router};

use pimsync_connectors::ProductChange;

use crate::config::SourceConfig;
use crate::store::{Ingest, PreparedChange};

/// What the store commits for one webhook from `source`, whether it just arrived or is
/// replayed from the inbox.
pub fn ingest_request(
    source: &SourceConfig,
    delivery_id: Option<String>,
    headers_json: String,
    body: Vec<u8>,
    changes: Vec<ProductChange>,
) -> Ingest {
    Ingest {
        source: source.name.clone(),
        delivery_id,
        headers_json,
        body,
        changes: changes.into_iter().map(PreparedChange::new).collect(),
        echo_of: source.echo_of.clone(),
    }
}
