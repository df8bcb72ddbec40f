//! The webhook receiver: one POST route per configured source. A request is verified
//! against its raw bytes, parsed into canonical changes, committed, and only then
//! acknowledged (see the store's durability contract).

pub mod formats;
mod server;
pub mod signature;

pub use server::{ReceiverState, router};
