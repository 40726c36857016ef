//! Where the verification code lands in the window, and everything about
//! a try that can be computed before the tries: the midstate over the
//! blocks before the code, the message words of the block that varies,
//! and the steps of that block that come before the varying word
//! (docs/PROTOCOL.md, "Validity of a history": only the code changes
//! between tries, so the MD5 state over every block before it is computed
//! once).

use md5::block_api::compress;
use md5::{Digest, Md5};
use wire::{CODE_LEN, Chat, DIGEST_LEN, MAX_TEXT};

use crate::has_leading_zero_bits;
use crate::lanes::{INIT, K, Lanes, Scalar, Terms, steps, word_of};

/// Bytes of an MD5 message block.
const BLOCK_LEN: usize = 64;

/// With the varying word at index 13 or later of its block, the code ends
/// at byte 56 or later, so the padding (0x80 and the 8-byte length) spills
/// into a block of its own: a try costs two compressions. (Word 13 covers
/// bytes 52..56; the code, whose last whole word it is, then ends at 56
/// or later, leaving at most 8 bytes, fewer than the padding's 9.)
pub(crate) const FIRST_SPILLING_WORD: usize = 13;

/// One chat to mine: the window it goes into, how the code lies in it,
/// and the digest condition. [`Miner::mine`](crate::Miner::mine) lays out
/// one per call; it is public so that benches can time
/// [`Kernel::scan`](crate::Kernel::scan) alone (benches/mining.rs).
///
/// The code is the last 16 bytes of the hashed window S (docs/PROTOCOL.md,
/// "Validity of a history": S is the window without the chat's own MD5
/// field, so it ends with the chat's verification code). One 32-bit
/// message word of the last block holding code bytes (the *hot* block)
/// is the counter that tries vary; the other code bytes are fixed per
/// [`HotBlock`]. The counter is the last whole code word of the hot block,
/// so that as many steps as possible come before its first use. When only
/// 1 to 3 code bytes reach the hot block (window length mod 64 is 1..=3),
/// the counter is just those bytes, and the code bytes of the block before
/// change with each hot block instead (every 256 to 16M tries).
#[derive(Clone, Debug)]
pub struct Job {
    /// S up to the code: the previous chats, the length byte, the text.
    head: Vec<u8>,
    /// The chat's text, 0..=255 bytes.
    text: Vec<u8>,
    /// S with the code zeroed, padded to whole blocks.
    padded: Vec<u8>,
    /// MD5 state after the blocks that end before the code starts.
    midstate: [u32; 4],
    /// `K[i] + M[word_of(i)]` of the padding block for each step `i`, when
    /// the padding spills; zeros when it does not.
    spill_step_terms: [u32; 64],
    /// Index in S (in blocks) of the first block holding code bytes.
    first_code_block: usize,
    /// Index in S (in blocks) of the hot block: the last holding code
    /// bytes, `first_code_block` or the one after.
    hot_block_index: usize,
    /// Index (0..16) within the hot block of the counter word.
    counter_word: usize,
    /// Bytes of the counter (4, or 1..=3 at the start of the hot block).
    counter_bytes: usize,
    /// Leading zero bits asked of the digest, 0..=128.
    difficulty: u32,
    /// Filter on the digest's first little-endian word that kernels apply:
    /// a try passes when `first_word & mask == target`.
    mask: u32,
    /// See `mask`; 0 but in tests.
    target: u32,
}

/// The per-try constants of one choice of the fixed code bytes: what a
/// kernel needs to try counters `0..Job::counters()`. Made by
/// [`Job::hot_block`], read by [`Kernel::scan`](crate::Kernel::scan).
/// Two arrays of 64 terms and a few words (about 560 bytes); its fields
/// are the crate's own.
#[derive(Clone, Debug)]
pub struct HotBlock {
    /// MD5 state (A, B, C, D) entering the hot block.
    pub(crate) chain: [u32; 4],
    /// State after the steps before the counter word's first use (steps
    /// `0..counter_word`, the same for every counter).
    pub(crate) before_counter: [u32; 4],
    /// `K[i] + M[word_of(i)]` of the hot block for each step `i`, the
    /// counter word's bytes zero: a try adds its counter to the term of
    /// the steps that read the counter word.
    pub(crate) step_terms: [u32; 64],
    /// `K[i] + M[word_of(i)]` of the padding block for each step `i`, when
    /// the padding spills; zeros when it does not.
    pub(crate) spill_step_terms: [u32; 64],
    /// Index (0..16) within the hot block of the counter word.
    pub(crate) counter_word: usize,
    /// The job's filter on the digest's first word, see `Job::mask`.
    pub(crate) mask: u32,
    /// See `mask`.
    pub(crate) target: u32,
}

/// Message terms that are the same in every lane: `K[i] + M[word_of(i)]`
/// for each step `i` of one block.
pub(crate) struct ConstantTerms<'a>(pub(crate) &'a [u32; 64]);

impl<V: Lanes> Terms<V> for ConstantTerms<'_> {
    #[inline(always)]
    fn term(&self, step: usize, _word: usize) -> V {
        V::splat(self.0[step])
    }
}

impl Job {
    /// Lays out the mining of `text` on top of `prev`, for a digest with
    /// `difficulty` leading zero bits ([`has_leading_zero_bits`]). `prev`
    /// is the bytes of the up to 19 chats before the new one
    /// (`History::tail_for_append()`; at most 19 x 288 = 5,472 bytes on the
    /// network, though any bytes are accepted). Hashes the whole blocks of
    /// `prev` and the text that end before the code: one MD5 compression
    /// per 64 bytes.
    ///
    /// # Panics
    /// If `text` is longer than 255 bytes ([`MAX_TEXT`]) or `difficulty`
    /// exceeds 128.
    pub fn new(prev: &[u8], text: &[u8], difficulty: u32) -> Job {
        assert!(text.len() <= MAX_TEXT, "chat text of {} bytes", text.len());
        assert!(difficulty <= 128, "difficulty of {difficulty} bits");
        let mut head = Vec::with_capacity(prev.len() + 1 + text.len());
        head.extend_from_slice(prev);
        head.push(text.len() as u8);
        head.extend_from_slice(text);

        let len = head.len() + CODE_LEN;
        let mut padded = head.clone();
        padded.resize(len, 0);
        padded.push(0x80);
        padded.resize((len + 9).next_multiple_of(BLOCK_LEN) - 8, 0);
        padded.extend_from_slice(&(len as u64 * 8).to_le_bytes());

        let first_code_block = head.len() / BLOCK_LEN;
        let hot_block_index = (len - 1) / BLOCK_LEN;
        // Code bytes end here in the hot block.
        let code_end_in_hot = len - hot_block_index * BLOCK_LEN;
        let (counter_word, counter_bytes) = if code_end_in_hot >= 4 {
            (code_end_in_hot / 4 - 1, 4)
        } else {
            (0, code_end_in_hot)
        };
        debug_assert_eq!(
            padded.len() / BLOCK_LEN - hot_block_index == 2,
            counter_word >= FIRST_SPILLING_WORD,
            "padding spills exactly when the counter is late in its block"
        );

        let mut midstate = INIT;
        compress(
            &mut midstate,
            as_blocks(&padded[..first_code_block * BLOCK_LEN]),
        );
        let spill_step_terms = match &padded[(hot_block_index + 1) * BLOCK_LEN..] {
            [] => [0; 64],
            spill => step_terms_of(spill),
        };

        Job {
            head,
            text: text.to_vec(),
            padded,
            midstate,
            spill_step_terms,
            first_code_block,
            hot_block_index,
            counter_word,
            counter_bytes,
            difficulty,
            mask: first_word_mask(difficulty),
            target: 0,
        }
    }

    /// Number of counter values a hot block offers, so the tries one
    /// [`HotBlock`] serves: counters are `0..counters()`. 2^32 when the
    /// counter is a whole 4-byte word; 2^8, 2^16 or 2^24 when only 1 to 3
    /// code bytes reach the hot block (window length mod 64 is 1..=3).
    pub fn counters(&self) -> u64 {
        1 << (8 * self.counter_bytes)
    }

    /// MD5 compressions (of one 64-byte block each) per try: 1, or 2 when
    /// the padding spills into a block of its own (window length mod 64 is
    /// 0 or 56..=63).
    pub fn compressions_per_try(&self) -> usize {
        if self.counter_word >= FIRST_SPILLING_WORD {
            2
        } else {
            1
        }
    }

    /// Offset within the code (0..16) of the counter's first byte.
    fn counter_offset(&self) -> usize {
        self.hot_block_index * BLOCK_LEN + 4 * self.counter_word - self.head.len()
    }

    /// The 16-byte code of the try `(fixed, counter)`: `fixed` with the
    /// counter written over the code bytes that are the counter's, little
    /// endian. Only the counter's low bytes that the layout uses (4, or
    /// 1..=3, see [`counters`](Self::counters)) are written; higher bytes of
    /// `counter` are ignored.
    pub fn code(&self, fixed: &[u8; CODE_LEN], counter: u32) -> [u8; CODE_LEN] {
        let mut code = *fixed;
        let at = self.counter_offset();
        code[at..at + self.counter_bytes]
            .copy_from_slice(&counter.to_le_bytes()[..self.counter_bytes]);
        code
    }

    /// Prepares the tries of counters `0..counters()` with the other code
    /// bytes taken from `fixed` (its counter bytes are ignored). Costs at
    /// most one MD5 compression (when the code straddles two blocks) and
    /// the hot block's steps before the counter word: little next to the
    /// 2^8..2^32 tries it serves.
    pub fn hot_block(&self, fixed: &[u8; CODE_LEN]) -> HotBlock {
        let mut bytes = self.padded
            [self.first_code_block * BLOCK_LEN..(self.hot_block_index + 1) * BLOCK_LEN]
            .to_vec();
        let code = self.code(fixed, 0);
        let at = self.head.len() - self.first_code_block * BLOCK_LEN;
        bytes[at..at + CODE_LEN].copy_from_slice(&code);

        let mut chain = self.midstate;
        let hot_at = (self.hot_block_index - self.first_code_block) * BLOCK_LEN;
        compress(&mut chain, as_blocks(&bytes[..hot_at]));
        let step_terms = step_terms_of(&bytes[hot_at..]);

        let mut state = chain.map(Scalar::splat);
        steps(
            &mut state,
            0,
            self.counter_word,
            &ConstantTerms(&step_terms),
        );
        HotBlock {
            chain,
            before_counter: state.map(Scalar::first),
            step_terms,
            spill_step_terms: self.spill_step_terms,
            counter_word: self.counter_word,
            mask: self.mask,
            target: self.target,
        }
    }

    /// The finished chat (the job's text, the code of the try
    /// `(fixed, counter)`, and the window's digest with it) if that digest
    /// has at least the job's `difficulty` leading zero bits, else `None`.
    /// Hashes the whole window with the md-5 crate, not a kernel: for a
    /// difficulty above 32 bits a hit of [`Kernel::scan`](crate::Kernel::scan)
    /// is only a candidate and this is the test; up to 32 it confirms it.
    pub fn verify(&self, fixed: &[u8; CODE_LEN], counter: u32) -> Option<Chat> {
        let code = self.code(fixed, counter);
        let digest: [u8; DIGEST_LEN] = Md5::new()
            .chain_update(&self.head)
            .chain_update(code)
            .finalize()
            .into();
        has_leading_zero_bits(&digest, self.difficulty)
            .then(|| Chat::new(self.text.clone(), code, digest).expect("text length checked"))
    }
}

#[cfg(test)]
impl Job {
    /// Makes kernels look for a first word equal to `target` on `mask`.
    pub(crate) fn set_filter(&mut self, mask: u32, target: u32) {
        self.mask = mask;
        self.target = target;
    }
}

/// The bits of the digest's first little-endian word that must be zero for
/// `difficulty` leading zero bits (all 32 of them beyond 32: the md-5
/// check of every candidate does the rest). Byte 0 of the digest is the
/// word's low byte, so the mask covers whole low bytes, then the high bits
/// of the next: 17 bits are `0x0080_ffff`.
pub(crate) fn first_word_mask(difficulty: u32) -> u32 {
    u32::MAX
        .checked_shl(32 - difficulty.min(32))
        .unwrap_or(0)
        .swap_bytes()
}

/// `K[i] + M[word_of(i)]` for each step `i` (0..64) over one message
/// block, its 16 words read little-endian.
///
/// # Panics
/// If `block` is shorter than 64 bytes.
fn step_terms_of(block: &[u8]) -> [u32; 64] {
    let m: [u32; 16] =
        std::array::from_fn(|w| u32::from_le_bytes(block[4 * w..4 * w + 4].try_into().expect("4")));
    std::array::from_fn(|i| K[i].wrapping_add(m[word_of(i)]))
}

/// `bytes` as whole 64-byte blocks; its length is a multiple of 64 (checked
/// in debug builds; a partial last block would be dropped).
fn as_blocks(bytes: &[u8]) -> &[[u8; BLOCK_LEN]] {
    let (blocks, rest) = bytes.as_chunks();
    debug_assert!(rest.is_empty());
    blocks
}
