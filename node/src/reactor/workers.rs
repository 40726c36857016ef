//! Threads that do slow work off the event loop (mining, validating large
//! archives, reading the prompt) and hand results back over a channel,
//! waking the loop through its `mio::Waker`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::warn;
use miner::{CancelToken, Miner};
use mio::Waker;

use crate::command::{BadCommand, Command};
use crate::protocol::{Event, Validated, ValidationJob};

/// What comes back to the event loop.
pub enum Report {
    Event(Event),
    BadLine(BadCommand),
    /// stdin ended: no more commands.
    InputClosed,
}

/// The sending half every worker holds.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Report>,
    waker: Arc<Waker>,
}

impl Outbox {
    pub fn new(waker: Arc<Waker>) -> (Outbox, Receiver<Report>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Outbox { tx, waker }, rx)
    }

    /// False once the event loop is gone.
    pub fn report(&self, report: Report) -> bool {
        if self.tx.send(report).is_err() {
            return false;
        }
        if let Err(e) = self.waker.wake() {
            warn!("waking the event loop failed: {e}");
        }
        true
    }

    pub fn command(&self, line: &[u8]) -> bool {
        match crate::command::parse(line) {
            Ok(Some(command)) => self.report(Report::Event(Event::Command(command))),
            Ok(None) => true,
            Err(bad) => self.report(Report::BadLine(bad)),
        }
    }

    pub fn quit(&self) -> bool {
        self.report(Report::Event(Event::Command(Command::Quit)))
    }
}

struct MiningRequest {
    job: u64,
    prev: Vec<u8>,
    text: Vec<u8>,
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

/// The mining thread: one job at a time on the miner's own thread pool.
pub struct Mining {
    jobs: Sender<MiningRequest>,
    running: Option<(u64, CancelToken)>,
}

impl Mining {
    pub fn spawn(miner: Miner, difficulty: u32, outbox: Outbox) -> Mining {
        let (jobs, rx) = crossbeam_channel::unbounded::<MiningRequest>();
        thread::Builder::new()
            .name("mining".into())
            .spawn(move || {
                for request in rx {
                    let (chat, tries, elapsed) =
                        if wait_cancellable(request.not_before, &request.cancel) {
                            (None, 0, Duration::ZERO)
                        } else {
                            match miner.mine(
                                &request.prev,
                                &request.text,
                                difficulty,
                                &request.cancel,
                            ) {
                                Ok(mined) => {
                                    (Some(mined.chat), mined.stats.tries, mined.stats.elapsed)
                                }
                                Err(cancelled) => {
                                    (None, cancelled.stats.tries, cancelled.stats.elapsed)
                                }
                            }
                        };
                    let event = Event::Mined {
                        job: request.job,
                        chat,
                        tries,
                        elapsed,
                    };
                    if !outbox.report(Report::Event(event)) {
                        break;
                    }
                }
            })
            .expect("spawning the mining thread");
        Mining {
            jobs,
            running: None,
        }
    }

    pub fn start(&mut self, job: u64, prev: Vec<u8>, text: Vec<u8>, delay: Duration) {
        let cancel = CancelToken::new();
        self.running = Some((job, cancel.clone()));
        let not_before = Instant::now() + delay;
        // The thread lives as long as `jobs`; a send cannot fail before.
        let _ = self.jobs.send(MiningRequest {
            job,
            prev,
            text,
            not_before,
            cancel,
        });
    }

    pub fn cancel(&mut self, job: u64) {
        if let Some((running, cancel)) = &self.running
            && *running == job
        {
            cancel.cancel();
            self.running = None;
        }
    }
}

/// The validation thread: large archives, one at a time, on Rayon's global
/// pool.
pub struct Validation {
    jobs: Sender<ValidationJob>,
}

impl Validation {
    pub fn spawn(outbox: Outbox) -> Validation {
        let (jobs, rx) = crossbeam_channel::unbounded::<ValidationJob>();
        thread::Builder::new()
            .name("validation".into())
            .spawn(move || {
                for job in rx {
                    let result = miner::validate_from(&job.candidate, job.trusted);
                    if !outbox.report(Report::Event(Event::Validated(Validated { job, result }))) {
                        break;
                    }
                }
            })
            .expect("spawning the validation thread");
        Validation { jobs }
    }

    pub fn start(&self, job: ValidationJob) {
        let _ = self.jobs.send(job);
    }
}
