//! The webhook receiver.
pub mod formats;
