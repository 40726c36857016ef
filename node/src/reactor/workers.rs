//! Threads that do slow work off the event loop, mining and checking
//! archives, and post their results to its [`Inbox`](crate::inbox::Inbox).

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use miner::{CancelToken, JobStats, Miner};
use wire::History;

use crate::inbox::{Mail, Mailer};
use crate::intake::VerifyJob;
use crate::protocol::{Event, Mined};

struct MiningRequest {
    job: u64,
    prev: Vec<u8>,
    texts: Vec<Vec<u8>>,
    not_before: Instant,
    cancel: CancelToken,
}

/// Waits until `deadline`, or less if `cancel` is set; true if cancelled.
fn wait_cancellable(deadline: Instant, cancel: &CancelToken) -> bool {
    while Instant::now() < deadline {
        if cancel.is_cancelled() {
            return true;
        }
        thread::sleep(Duration::from_millis(1).min(deadline - Instant::now()));
    }
    cancel.is_cancelled()
}

/// Mines `texts` one after the other, each on the chats before it.
fn mine_all(miner: &Miner, difficulty: u32, request: &MiningRequest) -> (Mined, JobStats) {
    let mut stats = JobStats {
        tries: 0,
        elapsed: Duration::ZERO,
    };
    if wait_cancellable(request.not_before, &request.cancel) {
        return (Mined::Cancelled, stats);
    }
    // The base's last chats, then each chat mined: every window is in it.
    let mut tail = History::new();
    tail.extend_from_wire(&request.prev);
    let mut chats = Vec::with_capacity(request.texts.len());
    for text in &request.texts {
        match miner.mine(tail.tail_for_append(), text, difficulty, &request.cancel) {
            Ok(mined) => {
                stats.tries += mined.stats.tries;
                stats.elapsed += mined.stats.elapsed;
                tail.push(&mined.chat);
                chats.push(mined.chat);
            }
            Err(cancelled) => {
                stats.tries += cancelled.stats.tries;
                stats.elapsed += cancelled.stats.elapsed;
                return (Mined::Cancelled, stats);
            }
        }
    }
    (Mined::Found(chats), stats)
}

/// The mining thread: one job at a time on the miner's own thread pool.
pub struct MiningThread {
    jobs: Sender<MiningRequest>,
    running: Option<(u64, CancelToken)>,
}

impl MiningThread {
    /// Starts the thread; results go to `mailer`.
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn spawn(miner: Miner, difficulty: u32, mailer: Mailer) -> MiningThread {
        let (jobs, rx) = crossbeam_channel::unbounded::<MiningRequest>();
        thread::Builder::new()
            .name("mining".into())
            .spawn(move || {
                for request in rx {
                    let (outcome, stats) = mine_all(&miner, difficulty, &request);
                    let event = Event::Mined {
                        job: request.job,
                        outcome,
                        stats,
                    };
                    if !mailer.post(Mail::Event(event)) {
                        break;
                    }
                }
            })
            .expect("spawning the mining thread");
        MiningThread {
            jobs,
            running: None,
        }
    }

    /// Queues a job (see `Action::StartMining`).
    pub fn start(&mut self, job: u64, prev: Vec<u8>, texts: Vec<Vec<u8>>, delay: Duration) {
        let cancel = CancelToken::new();
        if let Some((_, previous)) = self.running.replace((job, cancel.clone())) {
            previous.cancel();
        }
        // The thread lives as long as `jobs`; a send cannot fail before.
        let _ = self.jobs.send(MiningRequest {
            job,
            prev,
            texts,
            not_before: Instant::now() + delay,
            cancel,
        });
    }

    /// Cancels job `job` if it is the one running.
    pub fn cancel(&mut self, job: u64) {
        if let Some((running, cancel)) = &self.running
            && *running == job
        {
            cancel.cancel();
            self.running = None;
        }
    }
}

/// The validation thread: batches of incoming archives' new chats, in the
/// order they come, on Rayon's global pool.
pub struct ValidationThread {
    jobs: Sender<VerifyJob>,
}

impl ValidationThread {
    /// Starts the thread; results go to `mailer`.
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn spawn(mailer: Mailer) -> ValidationThread {
        let (jobs, rx) = crossbeam_channel::unbounded::<VerifyJob>();
        thread::Builder::new()
            .name("validation".into())
            .spawn(move || {
                for job in rx {
                    let started = Instant::now();
                    let verified = job.run();
                    let elapsed = started.elapsed();
                    if !mailer.post(Mail::Event(Event::Validated { elapsed }))
                        || !mailer.post(Mail::Verified(verified))
                    {
                        break;
                    }
                }
            })
            .expect("spawning the validation thread");
        ValidationThread { jobs }
    }

    /// Queues a batch.
    pub fn start(&self, job: VerifyJob) {
        let _ = self.jobs.send(job);
    }
}
