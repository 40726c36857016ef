//! The digest of one chat's window, hashed with the md-5 crate, and the
//! difficulty test on a digest. Validation of many chats hashes their
//! windows side by side instead (`batch_digest.rs`).

use md5::{Digest, Md5};
use wire::{DIGEST_LEN, History};

/// Leading zero bits the network asks of every chat's digest: 16, the
/// "two zero bytes (0x00 0x00)" of the validity rule (docs/PROTOCOL.md,
/// "Validity of a history"). Mining at this difficulty takes 2^16 = 65,536
/// tries on average.
pub const NETWORK_DIFFICULTY: u32 = 16;

/// The MD5 digest (16 bytes) of chat `k`'s window: chats
/// `max(0, k-19) ..= k` serialised back to back, without chat `k`'s own
/// 16-byte digest field ([`History::window`]; the S of docs/PROTOCOL.md,
/// "Validity of a history"). A valid chat `k` carries exactly this digest.
///
/// One window, up to 20 chats of at most 288 bytes each, hashed in place
/// with the md-5 crate on the calling thread: nothing is copied.
///
/// # Panics
/// If `k >= history.len()`.
pub fn window_digest(history: &History, k: usize) -> [u8; DIGEST_LEN] {
    Md5::digest(history.window(k)).into()
}

/// Whether `digest` begins with at least `bits` zero bits, reading it as
/// the protocol does: byte 0 first, each byte from its most significant
/// bit (a big-endian 128-bit number). 16 bits ([`NETWORK_DIFFICULTY`]) are
/// the first two bytes; 0 bits are always there; more than 128 never are.
pub fn has_leading_zero_bits(digest: &[u8; DIGEST_LEN], bits: u32) -> bool {
    u128::from_be_bytes(*digest).leading_zeros() >= bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits() {
        let mut d = [0u8; 16];
        assert!(has_leading_zero_bits(&d, 128));
        d[2] = 0x80;
        assert!(has_leading_zero_bits(&d, 16));
        assert!(!has_leading_zero_bits(&d, 17));
        d[1] = 0x01;
        assert!(has_leading_zero_bits(&d, 15));
        assert!(!has_leading_zero_bits(&d, 16));
    }
}
