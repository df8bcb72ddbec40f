//! pimsync's one integration-test binary: each module starts the real `pimsync` binary on a
//! temp dir and talks to it over loopback.

mod fake_target;
mod harness;

mod cli;
mod delivery;
mod durability;
mod mutation;
mod receiver;
mod systemd;
mod torture;
