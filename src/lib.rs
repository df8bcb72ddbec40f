//! pimsync: keeps e-commerce targets in step with a PIM.
pub mod config;
pub mod receiver;
pub mod route;
pub mod store;
