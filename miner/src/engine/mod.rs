//! The mining engine: a Rayon pool of workers that each try codes on their
//! own random prefixes until one makes the chat valid or the job is
//! cancelled.

mod layout;
mod scan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::{CODE_LEN, Chat};

pub use layout::{HotBlock, Job};

use crate::Kernel;

/// Counters a worker tries between two looks at the stop flags: about a
/// tenth of a millisecond with a vector kernel, well under the 10 ms a
/// cancellation may take with any kernel.
const TRIES_BETWEEN_STOP_CHECKS: u64 = 1 << 14;

/// Mines chats on a pool of worker threads.
pub struct Miner {
    pool: rayon::ThreadPool,
    kernel: Kernel,
}

/// A flag that stops a mining job; clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a job did: counters tried by all workers, and wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobStats {
    pub tries: u64,
    pub elapsed: Duration,
}

impl JobStats {
    /// Tries per second.
    pub fn hash_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.tries as f64 / secs
        } else {
            0.0
        }
    }
}

/// A chat mined: it is valid when pushed onto the history it was mined on.
#[derive(Clone, Debug)]
pub struct Mined {
    pub chat: Chat,
    pub stats: JobStats,
}

/// A job stopped by its [`CancelToken`] before finding a code.
#[derive(Clone, Copy, Debug)]
pub struct Cancelled {
    pub stats: JobStats,
}

impl Miner {
    /// A miner of `threads` workers with the fastest kernel of this CPU.
    ///
    /// # Panics
    /// If `threads` is 0 or the thread pool cannot be built.
    pub fn new(threads: usize) -> Miner {
        Miner::with_kernel(threads, Kernel::best())
    }

    /// A miner of `threads` workers running `kernel`.
    ///
    /// # Panics
    /// If `threads` is 0, the CPU does not support `kernel`, or the thread
    /// pool cannot be built.
    pub fn with_kernel(threads: usize, kernel: Kernel) -> Miner {
        assert!(threads >= 1, "a miner needs at least one thread");
        assert!(
            kernel.is_supported(),
            "{kernel:?} is not supported by this CPU"
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("miner-{i}"))
            .build()
            .expect("mining thread pool");
        Miner { pool, kernel }
    }

    /// Mines `text` as the next chat of `history` at the network's
    /// difficulty ([`NETWORK_DIFFICULTY`](crate::NETWORK_DIFFICULTY)), with
    /// no way to cancel: for tests, benches and tools that build valid
    /// histories. The chat is valid when pushed onto `history`.
    ///
    /// # Panics
    /// If `text` is longer than 255 bytes.
    pub fn mine_next(&self, history: &wire::History, text: &[u8]) -> Chat {
        self.mine(
            history.tail_for_append(),
            text,
            crate::NETWORK_DIFFICULTY,
            &CancelToken::new(),
        )
        .expect("a job without a cancel token is never cancelled")
        .chat
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The kernel the workers run.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Mines `text` as the chat after `prev` (`History::tail_for_append()`
    /// of the history it goes on) with `difficulty_bits` leading zero bits
    /// (16 on the network). Blocks until a code is found or `cancel` is set;
    /// every worker stops within a few milliseconds of either.
    ///
    /// Jobs on one miner run one after another.
    ///
    /// # Panics
    /// If `text` is longer than 255 bytes or `difficulty_bits` exceeds 128.
    pub fn mine(
        &self,
        prev: &[u8],
        text: &[u8],
        difficulty_bits: u32,
        cancel: &CancelToken,
    ) -> Result<Mined, Cancelled> {
        let started = Instant::now();
        let job = Job::new(prev, text, difficulty_bits);
        let found = OnceLock::new();
        let tries = self
            .pool
            .broadcast(|_| Worker::new().run(&job, self.kernel, cancel, &found));
        let stats = JobStats {
            tries: tries.into_iter().sum(),
            elapsed: started.elapsed(),
        };
        match found.into_inner() {
            Some(chat) => Ok(Mined { chat, stats }),
            None => Err(Cancelled { stats }),
        }
    }
}

/// One worker's share of a job: fresh random fixed code bytes for every
/// hot block, so that no two workers (nor two hot blocks of one worker)
/// try the same code, short of a 96-bit collision.
struct Worker {
    rng: Xoshiro256PlusPlus,
}

impl Worker {
    fn new() -> Worker {
        let rng = Xoshiro256PlusPlus::try_from_rng(&mut SysRng).expect("randomness from the OS");
        Worker { rng }
    }

    fn fixed_code(&mut self) -> [u8; CODE_LEN] {
        let mut code = [0; CODE_LEN];
        code[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        code[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        code
    }

    /// Tries codes until a valid chat is in `found` or `cancel` is set;
    /// returns the number of tries.
    fn run(
        mut self,
        job: &Job,
        kernel: Kernel,
        cancel: &CancelToken,
        found: &OnceLock<Chat>,
    ) -> u64 {
        let mut tries = 0;
        loop {
            let fixed = self.fixed_code();
            let hot = job.hot_block(&fixed);
            let mut next = 0;
            while next < job.counters() {
                if cancel.is_cancelled() || found.get().is_some() {
                    return tries;
                }
                let count = TRIES_BETWEEN_STOP_CHECKS.min(job.counters() - next);
                let hit = kernel.scan(&hot, next as u32, count as u32);
                let scanned = hit.map_or(count, |c| u64::from(c) + 1 - next);
                tries += scanned;
                next += scanned;
                if let Some(chat) = hit.and_then(|c| job.verify(&fixed, c)) {
                    // A worker that finds a second chat at the same time loses.
                    let _ = found.set(chat);
                    return tries;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
