//! The webhook receiver.
pub mod formats;
pub mod signature;
