//! pimsync's one integration-test binary: each module starts the real `pimsync` binary on a
//! temp dir and talks to it over loopback.

mod fake_target;
mod harness;

mod admin;
mod cli;
mod delivery;
mod durability;
mod fuzz_corpus;
mod mutation;
mod ops;
mod pull;
mod receiver;
mod systemd;
mod torture;
mod webhook;
