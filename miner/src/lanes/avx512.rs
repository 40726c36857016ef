//! The AVX-512 kernel: 512-bit vectors, two side by side (32 lanes). A
//! rotate is one instruction and each of F, G, H, I one three-input logic
//! instruction, so a step is five vector operations instead of about nine.

use std::arch::x86_64::*;

use super::{LaneTask, Lanes};

/// Vectors interleaved to hide each step's latency.
const VECTORS: usize = 2;

/// Only AVX-512 F instructions are used.
pub(super) fn is_supported() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Runs `task` on [`Avx512`] lanes.
#[target_feature(enable = "avx512f")]
pub(super) fn run<T: LaneTask>(task: T) -> T::Output {
    task.run::<Avx512>()
}

/// Private to this module, so its methods only ever run inlined into
/// [`run`], which the caller may only call once AVX-512 F has been
/// detected: that is the SAFETY argument of every `unsafe` block below.
#[derive(Clone, Copy)]
struct Avx512([__m512i; VECTORS]);

impl Avx512 {
    /// Applies the three-input boolean function whose truth table is `T`
    /// (bit `4b + 2c + d` is the result for inputs `b, c, d`).
    #[inline(always)]
    fn logic<const T: i32>(b: Self, c: Self, d: Self) -> Self {
        // SAFETY: see `Avx512`.
        per_vector!(Avx512, j => unsafe { _mm512_ternarylogic_epi32::<T>(b.0[j], c.0[j], d.0[j]) })
    }
}

impl Lanes for Avx512 {
    const WIDTH: usize = 16 * VECTORS;

    #[inline(always)]
    fn splat(x: u32) -> Self {
        // SAFETY: see `Avx512`.
        Avx512([unsafe { _mm512_set1_epi32(x as i32) }; VECTORS])
    }

    #[inline(always)]
    fn lane_ids() -> Self {
        // SAFETY: see `Avx512`.
        let ids =
            unsafe { _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) };
        // SAFETY: see `Avx512`.
        per_vector!(Avx512, j => unsafe { _mm512_add_epi32(ids, _mm512_set1_epi32(16 * j as i32)) })
    }

    #[inline(always)]
    fn load(words: &[u32]) -> Self {
        assert_eq!(words.len(), Self::WIDTH);
        // SAFETY: see `Avx512`; the assert keeps the unaligned loads in bounds.
        per_vector!(Avx512, j => unsafe { _mm512_loadu_si512(words.as_ptr().add(16 * j).cast()) })
    }

    #[inline(always)]
    fn store(self, out: &mut [u32]) {
        assert_eq!(out.len(), Self::WIDTH);
        for (j, v) in self.0.into_iter().enumerate() {
            // SAFETY: see `Avx512`; the assert keeps the unaligned stores in bounds.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(16 * j).cast(), v) }
        }
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: see `Avx512`.
        per_vector!(Avx512, j => unsafe { _mm512_add_epi32(self.0[j], other.0[j]) })
    }

    #[inline(always)]
    fn f(b: Self, c: Self, d: Self) -> Self {
        Self::logic::<0xca>(b, c, d)
    }

    #[inline(always)]
    fn g(b: Self, c: Self, d: Self) -> Self {
        Self::logic::<0xe4>(b, c, d)
    }

    #[inline(always)]
    fn h(b: Self, c: Self, d: Self) -> Self {
        Self::logic::<0x96>(b, c, d)
    }

    #[inline(always)]
    fn i(b: Self, c: Self, d: Self) -> Self {
        Self::logic::<0x39>(b, c, d)
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        const { assert!(L + R == 32) };
        // SAFETY: see `Avx512`.
        per_vector!(Avx512, j => unsafe { _mm512_rol_epi32::<L>(self.0[j]) })
    }

    #[inline(always)]
    fn matches(self, mask: u32, target: u32) -> u64 {
        self.0.iter().enumerate().fold(0, |bits, (j, &x)| {
            // SAFETY: see `Avx512`.
            let lanes = unsafe {
                let masked = _mm512_and_si512(x, _mm512_set1_epi32(mask as i32));
                _mm512_cmpeq_epi32_mask(masked, _mm512_set1_epi32(target as i32))
            };
            bits | u64::from(lanes) << (16 * j)
        })
    }
}
