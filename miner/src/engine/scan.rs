//! The hot loop: try a range of counters on one [`HotBlock`], as many side
//! by side as the kernel has lanes, and report the first that passes the
//! kernel's filter on the digest's first word.

use super::layout::{Constant, FIRST_SPILLING_WORD, HotBlock};
use crate::Kernel;
use crate::lanes::{LaneTask, Lanes, Terms, feed_forward, steps};

impl Kernel {
    /// The first counter in `start..start + count` whose try passes the
    /// digest filter of `hot`'s job (exact up to 32 bits of difficulty; a
    /// candidate must still be verified with [`Job::verify`](super::Job::verify)).
    ///
    /// # Panics
    /// If the CPU does not support this kernel.
    pub fn scan(self, hot: &HotBlock, start: u32, count: u32) -> Option<u32> {
        // One instantiation per counter word, so that which step adds the
        // counter and where the precomputed steps end are constants.
        macro_rules! by_word {
            ($($w:literal)*) => {
                match hot.word {
                    $($w => self.run(Scan::<$w> { hot, start, count }),)*
                    _ => unreachable!("a block has 16 words"),
                }
            };
        }
        by_word!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    }
}

struct Scan<'a, const W: usize> {
    hot: &'a HotBlock,
    start: u32,
    count: u32,
}

/// The hot block's message terms: constant, plus the counter in word `W`.
struct Counted<'a, V, const W: usize> {
    km: &'a [u32; 64],
    counter: V,
}

impl<V: Lanes, const W: usize> Terms<V> for Counted<'_, V, W> {
    #[inline(always)]
    fn term(&self, step: usize, word: usize) -> V {
        let constant = V::splat(self.km[step]);
        if word == W {
            constant.add(self.counter)
        } else {
            constant
        }
    }
}

impl<const W: usize> LaneTask for Scan<'_, W> {
    type Output = Option<u32>;

    #[inline(always)]
    fn run<V: Lanes>(self) -> Option<u32> {
        let hot = self.hot;
        let chain = hot.chain.map(V::splat);
        let pre = hot.pre.map(V::splat);
        let end = u64::from(self.start) + u64::from(self.count);
        let mut first = u64::from(self.start);
        while first < end {
            let counter = V::lane_ids().add(V::splat(first as u32));
            let terms = Counted::<V, W> {
                km: &hot.km,
                counter,
            };
            let mut s = pre;
            // Steps 61..63 only change B, C and D: the first word of the
            // digest is known after step 60.
            let a = if W >= FIRST_SPILLING_WORD {
                steps(&mut s, W, 64, &terms);
                let mid = feed_forward(&chain, &s);
                let mut t = mid;
                steps(&mut t, 0, 61, &Constant(&hot.spill_km));
                mid[0].add(t[0])
            } else {
                steps(&mut s, W, 61, &terms);
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
