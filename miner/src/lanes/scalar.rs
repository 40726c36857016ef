//! The portable kernel: plain `u32` arithmetic on a few independent lanes,
//! which the CPU's several integer units run in parallel.

use super::Lanes;

/// Independent tries per call: enough to fill the integer units without
/// spilling the general-purpose registers.
const LANES: usize = 2;

#[derive(Clone, Copy)]
pub(crate) struct Scalar([u32; LANES]);

impl Scalar {
    /// The value of lane 0: the result when all lanes computed the same.
    pub(crate) fn first(self) -> u32 {
        self.0[0]
    }

    #[inline(always)]
    fn map(self, f: impl Fn(u32) -> u32) -> Self {
        Scalar(self.0.map(f))
    }

    #[inline(always)]
    fn zip3(b: Self, c: Self, d: Self, f: impl Fn(u32, u32, u32) -> u32) -> Self {
        Scalar(std::array::from_fn(|j| f(b.0[j], c.0[j], d.0[j])))
    }
}

impl Lanes for Scalar {
    const WIDTH: usize = LANES;

    #[inline(always)]
    fn splat(x: u32) -> Self {
        Scalar([x; LANES])
    }

    #[inline(always)]
    fn lane_ids() -> Self {
        Scalar(std::array::from_fn(|j| j as u32))
    }

    #[inline(always)]
    fn load(words: &[u32]) -> Self {
        Scalar(words.try_into().expect("one word per lane"))
    }

    #[inline(always)]
    fn store(self, out: &mut [u32]) {
        out.copy_from_slice(&self.0);
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        Scalar(std::array::from_fn(|j| self.0[j].wrapping_add(other.0[j])))
    }

    #[inline(always)]
    fn f(b: Self, c: Self, d: Self) -> Self {
        Self::zip3(b, c, d, |b, c, d| d ^ (b & (c ^ d)))
    }

    #[inline(always)]
    fn g(b: Self, c: Self, d: Self) -> Self {
        Self::zip3(b, c, d, |b, c, d| c ^ (d & (b ^ c)))
    }

    #[inline(always)]
    fn h(b: Self, c: Self, d: Self) -> Self {
        Self::zip3(b, c, d, |b, c, d| b ^ c ^ d)
    }

    #[inline(always)]
    fn i(b: Self, c: Self, d: Self) -> Self {
        Self::zip3(b, c, d, |b, c, d| c ^ (b | !d))
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        const { assert!(L + R == 32) };
        self.map(|x| x.rotate_left(L as u32))
    }

    #[inline(always)]
    fn matches(self, mask: u32, target: u32) -> u64 {
        (0..LANES).fold(0, |bits, j| {
            bits | u64::from(self.0[j] & mask == target) << j
        })
    }
}
