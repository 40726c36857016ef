//! The end-to-end tests of the `node` binary, in one test binary: real
//! node processes on loopback, a module per theme, and the `support` they
//! share.
//!
//! `cargo test -p node --test e2e` runs them all; a module's name as the
//! filter runs that module alone, e.g.
//! `cargo test -p node --test e2e hostile::`.

mod support;

mod control;
mod convergence;
mod field;
mod hostile;
mod node;
mod partition;
mod scale;
mod terminal;
mod verify;
mod web;
