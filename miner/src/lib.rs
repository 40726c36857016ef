//! Everything MD5 for the chat network: the digest of a chat's window,
//! validation of whole histories (parallel, or incremental from an
//! already-validated prefix), and the mining engine.
//!
//! # The rule
//!
//! From docs/PROTOCOL.md, "Validity of a history": the *window* of chat `k`
//! is chats `max(0, k-19) ..= k` serialised back to back, without chat
//! `k`'s own 16-byte MD5 field ([`wire::History::window`]). Chat `k` is
//! valid when the MD5 of its window is its MD5 field and that field begins
//! with two zero bytes ([`NETWORK_DIFFICULTY`], 16 bits). A history is
//! valid when every chat is; each chat's check depends on its window alone.
//!
//! # What is here
//!
//! - One window: [`window_digest`]; the difficulty test:
//!   [`has_leading_zero_bits`].
//! - Validation: [`check_chat`] (one chat), [`validate`](fn@validate) (a whole history),
//!   [`validate_from`] (the chats past a trusted prefix),
//!   [`validate_extension`] (a history against one known to be valid).
//!   Errors say which chat fails and why: [`InvalidChat`], [`Invalidity`].
//! - Mining: [`Miner`] finds a chat's code on its own threads, cancellable
//!   with a [`CancelToken`], and reports [`Mined`] or [`Cancelled`] with
//!   [`JobStats`]. Below it, public for the benches: [`Job`] (where the
//!   code lies in the window, and what can be hashed once), [`HotBlock`]
//!   and [`Kernel::scan`] (the hot loop).
//! - [`Kernel`]: the MD5 implementation that runs, scalar or SIMD (AVX2,
//!   AVX-512), picked at run time.
//!
//! # Units
//!
//! Digests and codes are 16-byte arrays ([`wire::DIGEST_LEN`],
//! [`wire::CODE_LEN`]). A difficulty is a number of leading zero bits of a
//! digest, byte 0 first, each byte from its most significant bit. A *try*
//! is the MD5 of a window with one candidate code. MD5 hashes 64-byte
//! blocks; a *lane* is one of the independent 32-bit slots of a kernel's
//! vectors, each hashing an input of its own.

#![warn(missing_docs)]

mod batch_digest;
mod digest;
mod engine;
mod lanes;
mod validate;

pub use digest::{NETWORK_DIFFICULTY, has_leading_zero_bits, window_digest};
pub use engine::{CancelToken, Cancelled, HotBlock, Job, JobStats, Mined, Miner};
pub use lanes::Kernel;
pub use validate::{
    InvalidChat, Invalidity, check_chat, validate, validate_extension, validate_from,
};
