//! The end-to-end tests of the `node` binary, in one test binary: real
//! node processes on loopback, a module per theme, and the `support` they
//! share.
//!
//! `cargo test --workspace --locked --test e2e` runs them all; a module's name as the
//! filter runs that module alone, e.g.
//! `cargo test --workspace --locked --test e2e hostile::`. (`-p node`
//! would resolve the dependencies' features for `node` alone and rebuild
//! what the README's `cargo test --workspace` built: minutes.)
//!
//! A failing test ends with its reason and, for each node it ran, the last
//! 50 lines of its output; the whole output is kept under
//! `target/e2e-logs/`, in a file each message names.

mod support;

mod cli;
mod control;
mod convergence;
mod disk;
mod field;
mod hostile;
mod node;
mod operate;
mod partition;
mod relay;
mod scale;
mod terminal;
mod verify;
mod web;
