//! pimsync's one integration-test binary: each module starts the real `pimsync` binary on a
//! temp dir and talks to it over loopback.

mod harness;

mod cli;
mod durability;
mod receiver;
