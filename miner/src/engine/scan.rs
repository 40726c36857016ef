//! The hot loop: try a range of counters on one [`HotBlock`], as many side
//! by side as the kernel has lanes, and report the first that passes the
//! kernel's filter on the digest's first word.

use super::layout::{ConstantTerms, FIRST_SPILLING_WORD, HotBlock};
use crate::Kernel;
use crate::lanes::{LaneTask, Lanes, Terms, feed_forward, steps};

impl Kernel {
    /// Tries counters `start..start + count` of `hot`, as many side by side
    /// as this kernel has lanes (2 scalar, 24 AVX2, 32 AVX-512), and
    /// returns the lowest whose digest passes the filter of `hot`'s job, or
    /// `None`. The filter looks at the digest's first 32 bits only, so it
    /// is exact up to 32 bits of difficulty; above that a hit is only a
    /// candidate, to be checked with [`Job::verify`](super::Job::verify)
    /// (as [`Miner::mine`](crate::Miner::mine) checks every hit). A try is
    /// one MD5 compression, two when the padding spills
    /// ([`Job::compressions_per_try`](super::Job::compressions_per_try)).
    ///
    /// `start + count` must not exceed the job's
    /// [`counters()`](super::Job::counters) (2^32 at most): counters past it
    /// are not codes of the job, and what is reported for them means
    /// nothing. A `count` of 0 tries nothing and returns `None`.
    ///
    /// # Panics
    /// If the CPU does not support this kernel.
    pub fn scan(self, hot: &HotBlock, start: u32, count: u32) -> Option<u32> {
        // One instantiation per counter word, so that which step adds the
        // counter and where the precomputed steps end are constants.
        macro_rules! by_word {
            ($($w:literal)*) => {
                match hot.counter_word {
                    $($w => self.run(Scan::<$w> { hot, start, count }),)*
                    _ => unreachable!("a block has 16 words"),
                }
            };
        }
        by_word!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    }
}

/// The arguments of [`Kernel::scan`], as the [`LaneTask`] the kernel runs
/// with its lane type, for a hot block whose counter is word
/// `COUNTER_WORD` (0..16).
struct Scan<'a, const COUNTER_WORD: usize> {
    hot: &'a HotBlock,
    start: u32,
    count: u32,
}

/// The hot block's message terms: constant, plus the counter in word
/// `COUNTER_WORD`.
struct CounterTerms<'a, V, const COUNTER_WORD: usize> {
    step_terms: &'a [u32; 64],
    counter: V,
}

impl<V: Lanes, const COUNTER_WORD: usize> Terms<V> for CounterTerms<'_, V, COUNTER_WORD> {
    #[inline(always)]
    fn term(&self, step: usize, word: usize) -> V {
        let constant = V::splat(self.step_terms[step]);
        if word == COUNTER_WORD {
            constant.add(self.counter)
        } else {
            constant
        }
    }
}

impl<const COUNTER_WORD: usize> LaneTask for Scan<'_, COUNTER_WORD> {
    type Output = Option<u32>;

    #[inline(always)]
    fn run<V: Lanes>(self) -> Option<u32> {
        let hot = self.hot;
        let chain = hot.chain.map(V::splat);
        let before_counter = hot.before_counter.map(V::splat);
        let end = u64::from(self.start) + u64::from(self.count);
        let mut first = u64::from(self.start);
        while first < end {
            let counter = V::lane_ids().add(V::splat(first as u32));
            let terms = CounterTerms::<V, COUNTER_WORD> {
                step_terms: &hot.step_terms,
                counter,
            };
            let mut s = before_counter;
            // Steps 61..63 only change B, C and D: the first word of the
            // digest is known after step 60.
            let a = if COUNTER_WORD >= FIRST_SPILLING_WORD {
                steps(&mut s, COUNTER_WORD, 64, &terms);
                let mid = feed_forward(&chain, &s);
                let mut t = mid;
                steps(&mut t, 0, 61, &ConstantTerms(&hot.spill_step_terms));
                mid[0].add(t[0])
            } else {
                steps(&mut s, COUNTER_WORD, 61, &terms);
                chain[0].add(s[0])
            };
            let hits = a.matches(hot.mask, hot.target);
            if hits != 0 {
                let found = first + u64::from(hits.trailing_zeros());
                return (found < end).then_some(found as u32);
            }
            first += V::WIDTH as u64;
        }
        None
    }
}
