//! The AVX2 kernel: three 256-bit vectors side by side (24 lanes). AVX2
//! has no rotate, so a rotate is two shifts and an or (a byte shuffle for
//! 16); three vectors hide the latency of each step's dependency chain
//! without spilling the sixteen vector registers.

use std::arch::x86_64::*;

use super::{LaneTask, Lanes};

/// Vectors interleaved: two leave execution units idle, four spill.
const VECTORS: usize = 3;

pub(super) fn is_supported() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Runs `task` on [`Avx2`] lanes.
#[target_feature(enable = "avx2")]
pub(super) fn run<T: LaneTask>(task: T) -> T::Output {
    task.run::<Avx2>()
}

/// Private to this module, so its methods only ever run inlined into
/// [`run`], which the caller may only call once AVX2 has been detected:
/// that is the SAFETY argument of every `unsafe` block below.
#[derive(Clone, Copy)]
struct Avx2([__m256i; VECTORS]);

impl Lanes for Avx2 {
    const WIDTH: usize = 8 * VECTORS;

    #[inline(always)]
    fn splat(x: u32) -> Self {
        // SAFETY: see `Avx2`.
        Avx2([unsafe { _mm256_set1_epi32(x as i32) }; VECTORS])
    }

    #[inline(always)]
    fn lane_ids() -> Self {
        // SAFETY: see `Avx2`.
        let ids = unsafe { _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7) };
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe { _mm256_add_epi32(ids, _mm256_set1_epi32(8 * j as i32)) })
    }

    #[inline(always)]
    fn load(words: &[u32]) -> Self {
        assert_eq!(words.len(), Self::WIDTH);
        // SAFETY: see `Avx2`; the assert keeps the unaligned loads in bounds.
        per_vector!(Avx2, j => unsafe { _mm256_loadu_si256(words.as_ptr().add(8 * j).cast()) })
    }

    #[inline(always)]
    fn store(self, out: &mut [u32]) {
        assert_eq!(out.len(), Self::WIDTH);
        for (j, v) in self.0.into_iter().enumerate() {
            // SAFETY: see `Avx2`; the assert keeps the unaligned stores in bounds.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * j).cast(), v) }
        }
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe { _mm256_add_epi32(self.0[j], other.0[j]) })
    }

    #[inline(always)]
    fn f(b: Self, c: Self, d: Self) -> Self {
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe {
            let (b, c, d) = (b.0[j], c.0[j], d.0[j]);
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        })
    }

    #[inline(always)]
    fn g(b: Self, c: Self, d: Self) -> Self {
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe {
            let (b, c, d) = (b.0[j], c.0[j], d.0[j]);
            _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
        })
    }

    #[inline(always)]
    fn h(b: Self, c: Self, d: Self) -> Self {
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe {
            let (b, c, d) = (b.0[j], c.0[j], d.0[j]);
            _mm256_xor_si256(b, _mm256_xor_si256(c, d))
        })
    }

    #[inline(always)]
    fn i(b: Self, c: Self, d: Self) -> Self {
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe {
            let (b, c, d) = (b.0[j], c.0[j], d.0[j]);
            let not_d = _mm256_xor_si256(d, _mm256_set1_epi32(-1));
            _mm256_xor_si256(c, _mm256_or_si256(b, not_d))
        })
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        const { assert!(L + R == 32) };
        // SAFETY: see `Avx2`.
        per_vector!(Avx2, j => unsafe {
            let x = self.0[j];
            if L == 16 {
                // Swapping the halves of each lane is one shuffle, not three ops.
                let halves = _mm256_setr_epi8(
                    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5,
                    10, 11, 8, 9, 14, 15, 12, 13,
                );
                _mm256_shuffle_epi8(x, halves)
            } else {
                _mm256_or_si256(_mm256_slli_epi32::<L>(x), _mm256_srli_epi32::<R>(x))
            }
        })
    }

    #[inline(always)]
    fn matches(self, mask: u32, target: u32) -> u64 {
        self.0.iter().enumerate().fold(0, |bits, (j, &x)| {
            // SAFETY: see `Avx2`.
            let lanes = unsafe {
                let masked = _mm256_and_si256(x, _mm256_set1_epi32(mask as i32));
                let equal = _mm256_cmpeq_epi32(masked, _mm256_set1_epi32(target as i32));
                _mm256_movemask_ps(_mm256_castsi256_ps(equal)) as u8
            };
            bits | u64::from(lanes) << (8 * j)
        })
    }
}
