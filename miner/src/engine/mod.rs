//! The mining engine: a Rayon pool of workers that each try codes on their
//! own random prefixes until one makes the chat valid or the job is
//! cancelled.

mod layout;
mod scan;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::{CODE_LEN, Chat};

pub use layout::{HotBlock, Job};

use crate::Kernel;

/// Counters a worker tries between two looks at the stop flags (its
/// job's [`CancelToken`], and whether another worker found a code):
/// 2^14 = 16,384 tries. At the rates of the README ("Performance") that
/// is about 0.04 ms with AVX-512, 0.09 ms with AVX2 and 0.23 ms with the
/// scalar kernel, twice that when the padding spills: well under the 10 ms
/// a cancellation may take with any kernel (the engine's own budget, not a
/// protocol figure), and the flags are read once per 16,384 tries.
const TRIES_BETWEEN_STOP_CHECKS: u64 = 1 << 14;

/// Mines chats on a pool of worker threads of its own (a Rayon pool,
/// threads named `miner-0`, `miner-1`, ..., apart from Rayon's global
/// pool), every worker running the same [`Kernel`]. Dropping the miner
/// ends its threads.
pub struct Miner {
    pool: rayon::ThreadPool,
    kernel: Kernel,
    /// Where workers draw their code bytes from: the OS, or a seed (see
    /// [`Miner::seeded`]) with the number of the job.
    seed: Option<(u64, AtomicU64)>,
}

/// A flag that stops a mining job ([`Miner::mine`]); clones share the
/// flag, so one clone goes to the job and another to whoever cancels it.
/// Once set it stays set: a token serves one job.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled, sharing its flag with no other: the same
    /// as `CancelToken::default()`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag, for this token and all its clones, from any thread;
    /// never blocks. A job running with it stops within a few milliseconds
    /// and returns [`Cancelled`]; a job started with it later returns
    /// [`Cancelled`] at once, with 0 tries.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called on this token or any of
    /// its clones.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a job did: tries made by all workers, and wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobStats {
    /// Tries made by all workers together, a try being the MD5 of the
    /// window with one candidate code. A worker's last batch of tries
    /// counts in full, or up to and including its hit. About
    /// 2^`difficulty_bits` for a job that found a code (65,536 at 16 bits),
    /// on average.
    pub tries: u64,
    /// Wall time of the whole call to [`Miner::mine`]: laying out the job,
    /// the tries, and waiting for every worker to stop.
    pub elapsed: Duration,
}

impl JobStats {
    /// Tries per second over the job's wall time: `tries / elapsed`, or 0.0
    /// when `elapsed` is zero.
    pub fn hash_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.tries as f64 / secs
        } else {
            0.0
        }
    }
}

/// A chat mined: the success of [`Miner::mine`]. The chat is valid when
/// pushed onto the history it was mined on (the one whose
/// `tail_for_append()` was `prev`), if mined at [`NETWORK_DIFFICULTY`]
/// bits or more.
///
/// [`NETWORK_DIFFICULTY`]: crate::NETWORK_DIFFICULTY
#[derive(Clone, Debug)]
pub struct Mined {
    /// The text mined, the 16-byte code found, and the MD5 of the chat's
    /// window with that code, which begins with at least `difficulty_bits`
    /// zero bits.
    pub chat: Chat,
    /// What the job did.
    pub stats: JobStats,
}

/// A job stopped by its [`CancelToken`] before any worker found a code:
/// the error of [`Miner::mine`].
#[derive(Clone, Copy, Debug)]
pub struct Cancelled {
    /// What the job did before it stopped (0 tries if the token was set
    /// before the job started).
    pub stats: JobStats,
}

impl Miner {
    /// A miner of `threads` workers with the fastest kernel of this CPU
    /// ([`Kernel::best`]). Workers share nothing but the stop flags, so
    /// tries per second grow with the cores given them (2.03 times one
    /// thread's on 2 cores: README, "Performance", `engine/all`).
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
        Miner {
            pool,
            kernel,
            seed: None,
        }
    }

    /// A miner of `threads` workers whose code bytes come from `seed` (and
    /// the job's and the worker's number) instead of the OS. With one
    /// thread, the same jobs in the same order find the same chats: for
    /// simulations that replay a seed. With more, which worker finds first
    /// still depends on timing.
    ///
    /// # Panics
    /// As [`Miner::new`].
    pub fn seeded(threads: usize, seed: u64) -> Miner {
        Miner {
            seed: Some((seed, AtomicU64::new(0))),
            ..Miner::new(threads)
        }
    }

    /// Mines `text` as the next chat of `history` at the network's
    /// difficulty ([`NETWORK_DIFFICULTY`](crate::NETWORK_DIFFICULTY), 16
    /// bits), with no way to cancel: for tests, benches and tools that
    /// build valid histories. Blocks until a code is found, 65,536 tries on
    /// average. The chat is valid when pushed onto `history`.
    ///
    /// # Panics
    /// If `text` is longer than 255 bytes ([`wire::MAX_TEXT`]).
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

    /// Worker threads in the pool: the `threads` the miner was built with.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The kernel the workers run: [`Kernel::best`] for [`Miner::new`],
    /// the one given to [`Miner::with_kernel`].
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Mines `text` as the chat after `prev`: finds a 16-byte code that
    /// gives the chat's window a digest of at least `difficulty_bits`
    /// leading zero bits ([`has_leading_zero_bits`]; 16 on the network,
    /// [`NETWORK_DIFFICULTY`]). `prev` is the bytes of the up to 19 chats
    /// before the new one, as its window holds them: the
    /// `History::tail_for_append()` of the history the chat goes on (any
    /// bytes are accepted; the chat is valid only after those).
    ///
    /// Every worker tries codes of its own (random bytes and a counter, see
    /// [`Job`]), 2^`difficulty_bits` tries on average in all. Blocks the
    /// calling thread until a code is found or `cancel` is set; every
    /// worker stops within a few milliseconds of either. A code found
    /// before the workers see the cancellation is still returned.
    ///
    /// Jobs on one miner run one after another.
    ///
    /// # Errors
    /// [`Cancelled`] if `cancel` was set before a code was found (with 0
    /// tries if it was set before the call).
    ///
    /// # Panics
    /// If `text` is longer than 255 bytes ([`wire::MAX_TEXT`]) or
    /// `difficulty_bits` exceeds 128.
    ///
    /// [`has_leading_zero_bits`]: crate::has_leading_zero_bits
    /// [`NETWORK_DIFFICULTY`]: crate::NETWORK_DIFFICULTY
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
        let seed = self
            .seed
            .as_ref()
            .map(|(seed, jobs)| seed ^ jobs.fetch_add(1, Ordering::Relaxed).rotate_left(32));
        let tries = self.pool.broadcast(|ctx| {
            let worker = match seed {
                Some(seed) => Worker::seeded(seed ^ ctx.index() as u64),
                None => Worker::new(),
            };
            worker.run(&job, self.kernel, cancel, &found)
        });
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

    fn seeded(seed: u64) -> Worker {
        Worker {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// Fresh random code bytes for one hot block: 16 bytes, of which the
    /// job's counter bytes are overwritten by each try.
    fn fixed_code(&mut self) -> [u8; CODE_LEN] {
        let mut code = [0; CODE_LEN];
        code[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        code[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        code
    }

    /// Tries codes until a valid chat is in `found` (put there by this
    /// worker or another) or `cancel` is set; returns the number of tries
    /// this worker made.
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
