use md5::{Digest, Md5};
use wire::{DIGEST_LEN, History};

/// Leading zero bits the network asks of every chat's digest: two zero bytes.
pub const NETWORK_DIFFICULTY: u32 = 16;

/// MD5 of chat `k`'s window: chats `max(0, k-19) ..= k` without chat `k`'s
/// own digest. Hashes the history's bytes in place.
///
/// # Panics
/// If `k >= history.len()`.
pub fn window_digest(history: &History, k: usize) -> [u8; DIGEST_LEN] {
    Md5::digest(history.window(k)).into()
}

/// Whether `digest` begins with at least `bits` zero bits.
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
