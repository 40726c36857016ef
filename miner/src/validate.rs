//! Validation of histories against the protocol's validity rule
//! (docs/PROTOCOL.md, "Validity of a history"): one chat, a whole history,
//! or only the chats past a prefix already known to be valid.

use std::fmt;
use std::ops::Range;

use rayon::prelude::*;
use wire::{DIGEST_LEN, History};

use crate::batch_digest::window_digests_in_lanes;
use crate::{Kernel, NETWORK_DIFFICULTY, has_leading_zero_bits, window_digest};

/// Why a chat breaks the validity rule (docs/PROTOCOL.md, "Validity of a
/// history"). The two tests run in this order, so a chat that fails both
/// is [`NotMined`](Invalidity::NotMined).
///
/// Displays as the end of a sentence about the chat, e.g. `its MD5
/// 0123...ef does not start with two zero bytes` (digests in lowercase hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidity {
    /// The chat's MD5 field does not begin with two zero bytes
    /// ([`NETWORK_DIFFICULTY`] bits). Its window was not hashed.
    NotMined {
        /// The chat's 16-byte MD5 field, as it is in the history.
        digest: [u8; DIGEST_LEN],
    },
    /// The chat's MD5 field begins with two zero bytes but is not the MD5
    /// of the chat's window.
    WrongDigest {
        /// The chat's 16-byte MD5 field, as it is in the history.
        claimed: [u8; DIGEST_LEN],
        /// The MD5 of the chat's window ([`window_digest`]).
        computed: [u8; DIGEST_LEN],
    },
}

/// The first chat of a history that breaks the validity rule: the error of
/// [`validate`], [`validate_from`] and [`validate_extension`].
///
/// Displays as `chat <index> is invalid: <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidChat {
    /// Index (from 0) of the chat in the history that was validated. Every
    /// chat checked before it passed, so the history truncated to `index`
    /// chats is valid (given the chats that were trusted, if any).
    pub index: usize,
    /// The test the chat fails.
    pub reason: Invalidity,
}

impl fmt::Display for Invalidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalidity::NotMined { digest } => {
                write!(
                    f,
                    "its MD5 {} does not start with two zero bytes",
                    hex(digest)
                )
            }
            Invalidity::WrongDigest { claimed, computed } => write!(
                f,
                "its MD5 field is {} but the MD5 of its window is {}",
                hex(claimed),
                hex(computed)
            ),
        }
    }
}

impl fmt::Display for InvalidChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chat {} is invalid: {}", self.index, self.reason)
    }
}

impl std::error::Error for InvalidChat {}

/// `bytes` in lowercase hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks chat `k` of `history` against the validity rule: its MD5 field
/// begins with [`NETWORK_DIFFICULTY`] zero bits (tested first, without
/// hashing) and equals [`window_digest`]`(history, k)`. The chats before
/// `k` are hashed as part of its window, not checked: the rule of each
/// chat depends on nothing else (docs/PROTOCOL.md). One window, hashed with
/// md-5 on the calling thread.
///
/// # Errors
/// The [`Invalidity`] of chat `k`.
///
/// # Panics
/// If `k >= history.len()`.
pub fn check_chat(history: &History, k: usize) -> Result<(), Invalidity> {
    check_chat_with(history, k, || window_digest(history, k))
}

/// [`check_chat`] for chat `k` whose window hashes to `computed()`, which
/// is called only if chat `k`'s MD5 field passes the cheap test.
///
/// # Panics
/// If `k >= history.len()`.
fn check_chat_with(
    history: &History,
    k: usize,
    computed: impl FnOnce() -> [u8; DIGEST_LEN],
) -> Result<(), Invalidity> {
    let claimed = *history.chat(k).expect("index in range").digest();
    // The cheap test first: a forged chat usually fails it without hashing.
    if !has_leading_zero_bits(&claimed, NETWORK_DIFFICULTY) {
        return Err(Invalidity::NotMined { digest: claimed });
    }
    let computed = computed();
    if computed != claimed {
        return Err(Invalidity::WrongDigest { claimed, computed });
    }
    Ok(())
}

/// Up to this many chats to check (the common case: one new chat), hashing
/// one window at a time with md-5 beats a pass over all the lanes, which
/// hashes as many windows as the kernel has lanes whatever their number.
const MAX_CHATS_ONE_BY_ONE: usize = 2;

/// Chats whose windows one task hashes, side by side in the lanes of the
/// best kernel: enough to fill the lanes several times over and to make
/// a task worth handing to another thread.
const CHATS_PER_TASK: usize = 256;

/// The invalid chat of lowest index among `chats`, hashing their windows
/// side by side in the lanes of [`Kernel::best`], on the calling thread.
///
/// # Panics
/// If `chats` holds more than [`CHATS_PER_TASK`] chats or reaches past the
/// history.
fn first_invalid_in_lanes(history: &History, chats: Range<usize>) -> Option<InvalidChat> {
    let mut digests = [[0; DIGEST_LEN]; CHATS_PER_TASK];
    let digests = &mut digests[..chats.len()];
    window_digests_in_lanes(Kernel::best(), history, chats.clone(), digests);
    chats.zip(digests.iter()).find_map(|(k, digest)| {
        check_chat_with(history, k, || *digest)
            .err()
            .map(|reason| InvalidChat { index: k, reason })
    })
}

/// Validates a whole history: [`validate_from`]`(history, 0)`, so with more
/// than 256 chats in parallel on the current Rayon pool. The empty history
/// is valid.
///
/// # Errors
/// [`InvalidChat`] for the invalid chat of lowest index.
pub fn validate(history: &History) -> Result<(), InvalidChat> {
    validate_from(history, 0)
}

/// Validates chats `trusted..` of `history`, taking chats `0..trusted` as
/// already validated: they are hashed only as part of the later chats'
/// windows, never checked themselves. A `trusted` past the end is taken as
/// `history.len()`: nothing to check. As each chat's rule depends on nothing
/// but its own window (docs/PROTOCOL.md), checking only the chats appended
/// to a valid history is enough.
///
/// How the windows are hashed depends on the number of chats to check, not
/// the result: up to 2 (`MAX_CHATS_ONE_BY_ONE`), one at a time with md-5;
/// up to 256 (`CHATS_PER_TASK`), side by side in the lanes of
/// [`Kernel::best`] on the calling thread; more, in tasks of 256 chats on
/// the current Rayon pool (the global one unless called inside
/// `ThreadPool::install`).
///
/// # Errors
/// [`InvalidChat`] for the invalid chat of lowest index in `trusted..`,
/// even when tasks run in parallel.
pub fn validate_from(history: &History, trusted: usize) -> Result<(), InvalidChat> {
    let chats = trusted.min(history.len())..history.len();
    let first = if chats.len() <= MAX_CHATS_ONE_BY_ONE {
        chats.clone().find_map(|k| {
            check_chat(history, k)
                .err()
                .map(|reason| InvalidChat { index: k, reason })
        })
    } else if chats.len() <= CHATS_PER_TASK {
        // One task is not worth waking the pool for.
        first_invalid_in_lanes(history, chats)
    } else {
        let task = |t: usize| {
            let start = chats.start + t * CHATS_PER_TASK;
            first_invalid_in_lanes(history, start..(start + CHATS_PER_TASK).min(chats.end))
        };
        (0..chats.len().div_ceil(CHATS_PER_TASK))
            .into_par_iter()
            .find_map_first(task)
    };
    first.map_or(Ok(()), Err)
}

/// Validates `candidate` (say, a history received from a peer) against
/// `current`, a history already known to be valid: the leading chats the
/// two share are compared byte for byte, not hashed
/// ([`History::common_prefix_len`]), and only the chats of `candidate` past
/// them are checked ([`validate_from`]). Whether `candidate` is longer, or
/// should replace `current`, is left to the caller.
///
/// If `current` is not in fact valid, the chats `candidate` shares with it
/// are trusted all the same.
///
/// Returns the number of leading chats the two share:
/// `0..=min(current.len(), candidate.len())`.
///
/// # Errors
/// [`InvalidChat`] for the first invalid chat of `candidate` past the
/// shared chats, its `index` counted in `candidate`.
pub fn validate_extension(current: &History, candidate: &History) -> Result<usize, InvalidChat> {
    let common = current.common_prefix_len(candidate);
    validate_from(candidate, common)?;
    Ok(common)
}
