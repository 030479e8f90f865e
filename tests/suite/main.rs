//! The end-to-end and orchestration tests, in one test binary.
//!
//! One binary rather than one per file: the test files share one link of the SDK clients (a
//! link each was most of the tests' build), and libtest runs the tests of every file side by
//! side, so a journey that mostly waits on AWS (the Terraform takeover's provider waiters, a
//! daemon's intervals) overlaps the others instead of adding its whole length. Run one file's
//! tests with its module name as the filter: `cargo test --test suite -- faults::`
//! (several filters may follow the `--`).
//!
//! - On the in-memory fake of AWS (`crates/presta-testkit`, milliseconds, paused time):
//!   `orchestration`, `daemon_loop`, `fake_faults`, `fleet`.
//! - Against the emulator (moto on loopback, started by each test through `common::Env`):
//!   every other module.

mod common;
mod fake;

mod bootstrap;
mod budget;
mod cli;
mod daemon;
mod daemon_loop;
mod delete;
mod deploy;
mod docs;
mod domain;
mod drift;
mod emulator;
mod events;
mod exec;
mod fake_faults;
mod faults;
mod fleet;
mod health;
mod import_terraform;
mod lease;
mod lifecycle;
mod orchestration;
mod prometheus;
mod promotion;
mod reconcile;
mod rotate;
mod status_page;
