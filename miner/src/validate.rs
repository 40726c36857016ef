use std::fmt;
use std::ops::Range;

use rayon::prelude::*;
use wire::{DIGEST_LEN, History};

use crate::batch_digest::window_digests_in_lanes;
use crate::{Kernel, NETWORK_DIFFICULTY, has_leading_zero_bits, window_digest};

/// Why a chat breaks the validity rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidity {
    /// The chat's MD5 field does not begin with two zero bytes.
    NotMined { digest: [u8; DIGEST_LEN] },
    /// The MD5 of the chat's window is not the chat's MD5 field.
    WrongDigest {
        claimed: [u8; DIGEST_LEN],
        computed: [u8; DIGEST_LEN],
    },
}

/// The first chat of a history that breaks the validity rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidChat {
    pub index: usize,
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks chat `k` of `history` against the validity rule (the chats
/// before it are not looked at, only hashed as part of its window).
///
/// # Panics
/// If `k >= history.len()`.
pub fn check_chat(history: &History, k: usize) -> Result<(), Invalidity> {
    check_chat_with(history, k, || window_digest(history, k))
}

/// The rule for chat `k` whose window hashes to `computed()`.
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

/// Up to this many chats (the common case: one new chat), hashing one
/// window at a time with md-5 beats a pass over all the lanes.
const MAX_CHATS_ONE_BY_ONE: usize = 2;

/// Chats whose windows one task hashes, side by side in the lanes of the
/// best kernel: enough to fill the lanes several times over and to make
/// a task worth handing to another thread.
const CHATS_PER_TASK: usize = 256;

/// The first invalid chat among `chats`, hashing their windows side by side.
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

/// Validates a whole history, in parallel over chats on the current Rayon
/// pool; reports the first invalid chat. The empty history is valid.
pub fn validate(history: &History) -> Result<(), InvalidChat> {
    validate_from(history, 0)
}

/// Validates chats `trusted..` of `history`, taking chats before `trusted`
/// as already validated: only the later chats are hashed.
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

/// Validates `candidate` against `current`, a history already known to be
/// valid: the chats the two share are compared byte for byte, not hashed,
/// and only the chats past the common prefix are checked. Returns the
/// length of the common prefix.
pub fn validate_extension(current: &History, candidate: &History) -> Result<usize, InvalidChat> {
    let common = current.common_prefix_len(candidate);
    validate_from(candidate, common)?;
    Ok(common)
}
