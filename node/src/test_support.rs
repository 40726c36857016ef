//! Histories the unit tests share.

use wire::{Chat, History};

/// The fixture history `tests/fixtures/NAME` (`history-1k.bin`,
/// `history-100k.bin`).
///
/// # Panics
/// If it cannot be read or decoded.
pub fn fixture(name: &str) -> History {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    wire::decode_archive(&bytes).expect("an archive")
}

/// A history of one-byte chats, chat `k` with text, code and digest all
/// made of `tags[k]` (not valid: for the rules that read digests only).
pub fn tagged(tags: &[u8]) -> History {
    tags.iter()
        .map(|&t| Chat::new(vec![t], [t; 16], [t; 16]).expect("a one-byte text"))
        .collect()
}
