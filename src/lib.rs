//! pimsync: keeps e-commerce targets in step with a PIM. See DESIGN.md in the shared docs
//! and the README for the data flow; `daemon::Daemon` is the entry point.
pub mod admin;
pub mod config;
pub mod connections;
pub mod daemon;
pub mod demo;
pub mod dispatch;
pub mod metrics;
pub mod pull;
pub mod receiver;
pub mod route;
pub mod schedule;
pub mod simulate;
pub mod store;
pub mod systemd;
