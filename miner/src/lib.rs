//! Everything MD5 for the chat network: the digest of a chat's window,
//! validation of whole histories (parallel, or incremental from an
//! already-validated prefix), and the mining engine.

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
