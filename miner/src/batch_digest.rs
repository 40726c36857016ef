//! The digests of a batch of chats' windows at once, one window per lane
//! of a [`Kernel`] (validation uses [`Kernel::best`]): the same digests as
//! [`window_digest`](crate::window_digest), about nine times as many per
//! second on one AVX-512 core (README, "Performance": `validate/1` against
//! `validate-single-window/1`).
//! Consecutive chats have windows of about the same number of blocks, so
//! lanes seldom idle: each lane's digest is taken after its own last block,
//! and the lane's later blocks are ignored.

use std::ops::Range;

use wire::{DIGEST_LEN, History};

use crate::Kernel;
use crate::lanes::{INIT, K, LaneTask, Lanes, Terms, feed_forward, steps};

/// Bytes of an MD5 message block.
const BLOCK_LEN: usize = 64;
/// More lanes than any kernel has (AVX-512: 32): the size of the
/// transposition buffers.
const MAX_LANES: usize = 64;

/// Writes the 16-byte digest of the window of chat `k` (the
/// [`window_digest`](crate::window_digest) of `k`) to
/// `out[k - chats.start]` for every `k` in `chats`, as many windows at a
/// time as the kernel has lanes, on the calling thread. Entries of `out`
/// past `chats.len()` are left as they are.
///
/// # Panics
/// If `chats` reaches past the history, `out` is shorter than `chats`, or
/// the CPU does not support `kernel`.
pub(crate) fn window_digests_in_lanes(
    kernel: Kernel,
    history: &History,
    chats: Range<usize>,
    out: &mut [[u8; DIGEST_LEN]],
) {
    kernel.run(WindowDigestsTask {
        history,
        chats,
        out,
    })
}

/// The arguments of [`window_digests_in_lanes`], as the [`LaneTask`] that
/// the kernel runs with its lane type.
struct WindowDigestsTask<'a> {
    history: &'a History,
    chats: Range<usize>,
    out: &'a mut [[u8; DIGEST_LEN]],
}

/// The 16 message words of one block, word `w` of lane `i`'s block in lane
/// `i` of vector `w`: a step's term is `K[step] + M[word]`, lane by lane.
struct MessageTerms<V>([V; 16]);

impl<V: Lanes> Terms<V> for MessageTerms<V> {
    #[inline(always)]
    fn term(&self, step: usize, word: usize) -> V {
        self.0[word].add(V::splat(K[step]))
    }
}

/// One window as a lane sees it: its whole blocks in place, then its last
/// bytes and the MD5 padding (0x80, zeros, the bit length as a
/// little-endian u64) copied into one or two blocks.
struct LaneWindow<'a> {
    /// The window's whole 64-byte blocks, in the history's buffer.
    whole_blocks: &'a [u8],
    /// The window's last `len % 64` bytes and the padding: one block, or
    /// two when those bytes leave fewer than 9 bytes for the padding.
    tail_blocks: [u8; 2 * BLOCK_LEN],
    /// Blocks of the padded window: whole blocks plus 1 or 2.
    block_count: usize,
}

impl<'a> LaneWindow<'a> {
    fn new(window: &'a [u8]) -> Self {
        let split = window.len() / BLOCK_LEN * BLOCK_LEN;
        let rest = &window[split..];
        let mut tail = [0; 2 * BLOCK_LEN];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_len = if rest.len() < BLOCK_LEN - 8 {
            BLOCK_LEN
        } else {
            2 * BLOCK_LEN
        };
        tail[tail_len - 8..tail_len].copy_from_slice(&(window.len() as u64 * 8).to_le_bytes());
        LaneWindow {
            whole_blocks: &window[..split],
            tail_blocks: tail,
            block_count: split / BLOCK_LEN + tail_len / BLOCK_LEN,
        }
    }

    /// Block `b` of the padded window (64 bytes). Past `block_count`, some
    /// block of the window: the lane goes on hashing it, and its digest,
    /// taken after block `block_count - 1`, ignores that.
    fn block(&self, b: usize) -> &[u8] {
        let whole = self.whole_blocks.len() / BLOCK_LEN;
        let tail_block = (b - whole.min(b)).min(1);
        if b < whole {
            &self.whole_blocks[b * BLOCK_LEN..(b + 1) * BLOCK_LEN]
        } else {
            &self.tail_blocks[tail_block * BLOCK_LEN..(tail_block + 1) * BLOCK_LEN]
        }
    }
}

impl LaneTask for WindowDigestsTask<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: Lanes>(self) {
        assert!(V::WIDTH <= MAX_LANES);
        let mut chats = self.chats.clone();
        let mut done = 0;
        while !chats.is_empty() {
            let group: Vec<LaneWindow> = chats
                .by_ref()
                .take(V::WIDTH)
                .map(|k| LaneWindow::new(self.history.window(k)))
                .collect();
            let blocks = group.iter().map(|lane| lane.block_count).max().unwrap_or(0);
            let mut chain = INIT.map(V::splat);
            let mut columns = [[0u32; MAX_LANES]; 16];
            let mut state = [[0u32; MAX_LANES]; 4];
            let mut digests = [[0u8; DIGEST_LEN]; MAX_LANES];
            for b in 0..blocks {
                // Transpose: word w of every lane's block into vector w.
                for (i, lane) in group.iter().enumerate() {
                    let (words, _) = lane.block(b).as_chunks::<4>();
                    for (column, word) in columns.iter_mut().zip(words) {
                        column[i] = u32::from_le_bytes(*word);
                    }
                }
                let words = MessageTerms(std::array::from_fn(|w| V::load(&columns[w][..V::WIDTH])));
                let mut s = chain;
                steps(&mut s, 0, 64, &words);
                chain = feed_forward(&chain, &s);
                if group.iter().any(|lane| lane.block_count == b + 1) {
                    for (column, v) in state.iter_mut().zip(chain) {
                        v.store(&mut column[..V::WIDTH]);
                    }
                    for (i, lane) in group.iter().enumerate() {
                        if lane.block_count == b + 1 {
                            for (w, column) in state.iter().enumerate() {
                                digests[i][4 * w..4 * w + 4]
                                    .copy_from_slice(&column[i].to_le_bytes());
                            }
                        }
                    }
                }
            }
            self.out[done..done + group.len()].copy_from_slice(&digests[..group.len()]);
            done += group.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;
    use wire::Chat;

    use super::*;
    use crate::window_digest;

    /// Windows of every length mix in the lanes: each kernel's digests are
    /// md-5's, whatever the range and however it splits into lane groups.
    #[test]
    fn every_kernel_digests_windows_as_md5_does() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let history: History = (0..300)
            .map(|_| {
                let len = rng.random_range(0..=255);
                let text: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                Chat::new(text, rng.random(), rng.random()).expect("short")
            })
            .collect();
        let expected: Vec<_> = (0..history.len())
            .map(|k| window_digest(&history, k))
            .collect();
        for kernel in Kernel::supported() {
            for chats in [0..300, 7..8, 0..kernel.width() + 1, 150..300] {
                let mut out = vec![[0; DIGEST_LEN]; chats.len()];
                window_digests_in_lanes(kernel, &history, chats.clone(), &mut out);
                assert_eq!(out, expected[chats.clone()], "{kernel:?}, chats {chats:?}");
            }
        }
    }
}
