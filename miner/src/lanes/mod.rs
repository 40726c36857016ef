//! MD5 compression on several inputs at once: one step function written
//! once, generic over a [`Lanes`] vector type (portable scalar, AVX2,
//! AVX-512), and the [`Kernel`] that picks the best type at run time.

/// Builds the vector wrapper `$wrap([...; VECTORS])` from one expression
/// per vector, in a loop rather than a closure: a closure is a function of
/// its own, compiled without the kernel's target features, into which the
/// intrinsics would not be inlined. `VECTORS` is the calling module's.
#[cfg(target_arch = "x86_64")]
macro_rules! per_vector {
    ($wrap:ident, $j:ident => $e:expr) => {{
        let mut out = [{
            let $j = 0;
            $e
        }; VECTORS];
        for $j in 1..VECTORS {
            out[$j] = $e;
        }
        $wrap(out)
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

pub(crate) use scalar::Scalar;

/// The MD5 initial state (A, B, C, D), from RFC 1321.
pub(crate) const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The MD5 additive constants, one per step (0..64): RFC 1321's `T[i + 1]`,
/// `floor(2^32 * abs(sin(i + 1)))` with `i + 1` in radians.
#[rustfmt::skip]
pub(crate) const K: [u32; 64] = [
    0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee, 0xf57c_0faf, 0x4787_c62a,
    0xa830_4613, 0xfd46_9501, 0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be,
    0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821, 0xf61e_2562, 0xc040_b340,
    0x265e_5a51, 0xe9b6_c7aa, 0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
    0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed, 0xa9e3_e905, 0xfcef_a3f8,
    0x676f_02d9, 0x8d2a_4c8a, 0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c,
    0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70, 0x289b_7ec6, 0xeaa1_27fa,
    0xd4ef_3085, 0x0488_1d05, 0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
    0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039, 0x655b_59c3, 0x8f0c_cc92,
    0xffef_f47d, 0x8584_5dd1, 0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1,
    0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
];

/// Index (0..16) of the message word that step `i` (0..64) adds: RFC 1321's
/// order, `i`, then `5i + 1`, `3i + 5` and `7i` mod 16 in rounds 2 to 4.
pub(crate) const fn word_of(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

/// A vector of `WIDTH` independent 32-bit lanes with the operations MD5
/// needs. Implementations are `Copy` wrappers around registers whose
/// methods are all `#[inline(always)]`, so that generic code instantiated
/// inside a `#[target_feature]` function compiles to straight vector code.
pub(crate) trait Lanes: Copy {
    /// Number of lanes: 2 scalar, 24 AVX2, 32 AVX-512.
    const WIDTH: usize;
    /// Every lane holds `x`.
    fn splat(x: u32) -> Self;
    /// Lane `i` holds `i`.
    fn lane_ids() -> Self;
    /// Lane `i` holds `words[i]`; `words.len() == WIDTH`.
    fn load(words: &[u32]) -> Self;
    /// Writes lane `i` to `out[i]`; `out.len() == WIDTH`.
    fn store(self, out: &mut [u32]);
    /// Lane-wise wrapping addition (mod 2^32).
    fn add(self, other: Self) -> Self;
    /// `(b & c) | (!b & d)`
    fn f(b: Self, c: Self, d: Self) -> Self;
    /// `(b & d) | (c & !d)`
    fn g(b: Self, c: Self, d: Self) -> Self;
    /// `b ^ c ^ d`
    fn h(b: Self, c: Self, d: Self) -> Self;
    /// `c ^ (b | !d)`
    fn i(b: Self, c: Self, d: Self) -> Self;
    /// Rotate left by `L`; `R` is `32 - L` (shift counts must be literals).
    fn rotl<const L: i32, const R: i32>(self) -> Self;
    /// Bit `i` is set where lane `i` equals `target` on the bits of `mask`.
    fn matches(self, mask: u32, target: u32) -> u64;
}

/// What a step adds besides the rotated sum: `K[step] + M[word]`, for
/// whatever the message lanes hold.
pub(crate) trait Terms<V> {
    /// The term of step `step` (0..64), which reads message word `word`
    /// (`word_of(step)`, passed so that implementations need not recompute
    /// it).
    fn term(&self, step: usize, word: usize) -> V;
}

/// Runs MD5 steps `from..to` (of 0..64) on the state `s = [a, b, c, d]`.
/// `from` and `to` are constants after inlining, so skipped steps vanish.
#[inline(always)]
pub(crate) fn steps<V: Lanes>(s: &mut [V; 4], from: usize, to: usize, terms: &impl Terms<V>) {
    // One step: a = b + rotl(a + fun(b, c, d) + K[i] + M[word_of(i)], L).
    macro_rules! step {
        ($fun:ident, $i:expr, $a:literal $b:literal $c:literal $d:literal, $l:literal $r:literal) => {
            if from <= $i && $i < to {
                let sum = s[$a]
                    .add(V::$fun(s[$b], s[$c], s[$d]))
                    .add(terms.term($i, word_of($i)));
                s[$a] = s[$b].add(sum.rotl::<$l, $r>());
            }
        };
    }
    // Four steps: the registers turn every step, the rotations repeat.
    macro_rules! quad {
        ($fun:ident, $i:expr, $l0:literal $r0:literal, $l1:literal $r1:literal, $l2:literal $r2:literal, $l3:literal $r3:literal) => {
            step!($fun, $i, 0 1 2 3, $l0 $r0);
            step!($fun, $i + 1, 3 0 1 2, $l1 $r1);
            step!($fun, $i + 2, 2 3 0 1, $l2 $r2);
            step!($fun, $i + 3, 1 2 3 0, $l3 $r3);
        };
    }
    // Sixteen steps with one function, written out so that every step
    // index is a constant.
    macro_rules! round {
        ($fun:ident, $first:expr, $($rot:tt)*) => {
            quad!($fun, $first, $($rot)*);
            quad!($fun, $first + 4, $($rot)*);
            quad!($fun, $first + 8, $($rot)*);
            quad!($fun, $first + 12, $($rot)*);
        };
    }
    round!(f, 0, 7 25, 12 20, 17 15, 22 10);
    round!(g, 16, 5 27, 9 23, 14 18, 20 12);
    round!(h, 32, 4 28, 11 21, 16 16, 23 9);
    round!(i, 48, 6 26, 10 22, 15 17, 21 11);
}

/// Adds the chaining value to a state: the end of a compression.
#[inline(always)]
pub(crate) fn feed_forward<V: Lanes>(chain: &[V; 4], s: &[V; 4]) -> [V; 4] {
    [
        chain[0].add(s[0]),
        chain[1].add(s[1]),
        chain[2].add(s[2]),
        chain[3].add(s[3]),
    ]
}

/// Work generic over the lane type, run by [`Kernel::run`] with the lane
/// type of the kernel (the "with SIMD" pattern: the whole body is inlined
/// into one `#[target_feature]` function per kernel).
pub(crate) trait LaneTask {
    /// What the task returns.
    type Output;
    /// Does the work with lane type `V`.
    fn run<V: Lanes>(self) -> Self::Output;
}

/// An implementation of MD5 compression over several inputs at once (its
/// lanes): the portable scalar one, or a vector one for x86-64 CPUs with
/// AVX2 or AVX-512 F. Which ones this CPU runs is detected at run time
/// ([`supported`](Self::supported)); asking an unsupported kernel to work
/// panics. Relative speeds: README, "Performance" (`kernel-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain `u32` arithmetic, a few independent lanes for instruction-level
    /// parallelism; runs anywhere.
    Scalar,
    /// x86-64 AVX2: 256-bit vectors, three interleaved (24 lanes).
    Avx2,
    /// x86-64 AVX-512 F: 512-bit vectors, two interleaved (32 lanes), with
    /// native rotate and three-input logic.
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU supports: AVX-512, else AVX2, else
    /// scalar. What [`Miner::new`](crate::Miner::new) and validation use.
    pub fn best() -> Kernel {
        *Kernel::supported()
            .last()
            .expect("scalar is always supported")
    }

    /// Every kernel this CPU supports, slowest first: `Scalar` always,
    /// then `Avx2` and `Avx512` if the CPU has them.
    pub fn supported() -> Vec<Kernel> {
        [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// Whether this CPU runs this kernel, detected at run time:
    /// [`Scalar`](Self::Scalar) always; [`Avx2`](Self::Avx2) with AVX2;
    /// [`Avx512`](Self::Avx512) with AVX-512 F; the vector kernels never on
    /// other architectures than x86-64.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::is_supported(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::is_supported(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
        }
    }

    /// The kernel's name, as in bench ids (`kernel-avx2/1`): `scalar`,
    /// `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Lanes of this kernel: inputs one call of [`run`](Self::run) hashes
    /// side by side.
    #[cfg(test)]
    pub(crate) fn width(self) -> usize {
        struct Width;
        impl LaneTask for Width {
            type Output = usize;
            fn run<V: Lanes>(self) -> usize {
                V::WIDTH
            }
        }
        self.run(Width)
    }

    /// Runs `task` with this kernel's lane type.
    ///
    /// # Panics
    /// If the CPU does not support this kernel.
    pub(crate) fn run<T: LaneTask>(self, task: T) -> T::Output {
        assert!(self.is_supported(), "{self:?} is not supported by this CPU");
        match self {
            Kernel::Scalar => task.run::<scalar::Scalar>(),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the assert above checked that the CPU has AVX2.
            Kernel::Avx2 => unsafe { avx2::run(task) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the assert above checked that the CPU has AVX-512 F.
            Kernel::Avx512 => unsafe { avx512::run(task) },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => unreachable!("not supported"),
        }
    }
}
