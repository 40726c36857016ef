//! Parts of a fuzz input that the `decoder` and `relay` targets (`decoder.rs`
//! and `relay.rs` beside this file) read the same way.

use wire::DEFAULT_MAX_MESSAGE;

/// The size limit for selector byte `byte`: limits of 0..=127 bytes (so
/// that a message crosses the limit inside its header, its count or its
/// first items), multiples of 64 up to 7,104, or the default.
pub fn limit(byte: u8) -> usize {
    match byte {
        0..=0x7f => usize::from(byte),
        0x80..=0xef => usize::from(byte - 0x7f) * 64,
        0xf0..=0xff => DEFAULT_MAX_MESSAGE,
    }
}

/// Splits the chunk sizes off the front of `rest`: `selector % 8` bytes,
/// each giving a chunk of 1..=256 bytes. Returns them and the stream after
/// them.
pub fn chunk_sizes(selector: u8, rest: &[u8]) -> (Vec<usize>, &[u8]) {
    let (sizes, stream) = rest.split_at(usize::from(selector % 8).min(rest.len()));
    let sizes = sizes.iter().map(|&size| usize::from(size) + 1).collect();
    (sizes, stream)
}
