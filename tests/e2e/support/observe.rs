//! Observers of a node under test, for tests that load it (attacks, many
//! connections) and measure what that costs: its memory ([`MemWatch`]),
//! the answers an honest peer gets meanwhile ([`Honest`]), any other count
//! sampled on a thread ([`MaxSampler`]). Each runs on a thread of its own
//! from `start` to `finish`, and stops when dropped, also when a test
//! fails early ([`Stop`]).

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wire::Message;

use super::{Node, Peer, WAIT};

/// How long the honest peer waits for an answer before the test fails: it
/// must be answered throughout (a liveness bound, not a speed target).
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How often the honest peer asks.
const ASK_EVERY: Duration = Duration::from_millis(25);

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix(" kB")?
            .parse()
            .ok()
    })
}

/// Set when dropped, also when a test fails early: a flag that tells the
/// helper threads of a test to stop, so that none outlives its test.
#[derive(Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// The flag, for a thread to poll.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Samples a value every `every` on a thread until finished; the largest
/// value seen.
pub struct MaxSampler<T> {
    stop: Stop,
    thread: JoinHandle<(T, usize)>,
}

impl<T: Ord + Default + Send + 'static> MaxSampler<T> {
    pub fn start(every: Duration, sample: impl Fn() -> T + Send + 'static) -> MaxSampler<T> {
        let stop = Stop::default();
        let thread = {
            let stop = stop.flag();
            thread::spawn(move || {
                let (mut max, mut samples) = (T::default(), 0);
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(sample());
                    samples += 1;
                    thread::sleep(every);
                }
                (max, samples)
            })
        };
        MaxSampler { stop, thread }
    }

    /// The largest value seen, and how many samples were taken.
    pub fn finish(self) -> (T, usize) {
        let MaxSampler { stop, thread } = self;
        drop(stop);
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The node's resident memory from now on: a sampler every 10 ms, and the
/// kernel's own high-water mark reset at the start (writing 5 to
/// `clear_refs` resets VmHWM to the current RSS), which catches peaks
/// between samples.
pub struct MemWatch {
    pid: u32,
    baseline_kb: u64,
    hwm_reset: bool,
    sampler: MaxSampler<u64>,
}

/// Resident memory before and during a [`MemWatch`].
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub baseline_kb: u64,
    pub peak_kb: u64,
}

impl Mem {
    pub fn growth_kb(&self) -> u64 {
        self.peak_kb.saturating_sub(self.baseline_kb)
    }
}

impl MemWatch {
    pub fn start(node: &Node) -> MemWatch {
        let pid = node.pid().expect("the node is running");
        let baseline_kb = proc_kb(pid, "VmRSS").expect("the node's VmRSS");
        let hwm_reset = fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let sampler = MaxSampler::start(Duration::from_millis(10), move || {
            proc_kb(pid, "VmRSS").unwrap_or(0)
        });
        MemWatch {
            pid,
            baseline_kb,
            hwm_reset,
            sampler,
        }
    }

    /// The node's resident memory now.
    pub fn rss_kb(&self) -> u64 {
        proc_kb(self.pid, "VmRSS").expect("the node's VmRSS")
    }

    pub fn finish(self) -> Mem {
        let MemWatch {
            pid,
            baseline_kb,
            hwm_reset,
            sampler,
        } = self;
        let (sampled, _) = sampler.finish();
        let hwm = if hwm_reset {
            proc_kb(pid, "VmHWM").expect("the node's VmHWM")
        } else {
            0
        };
        Mem {
            baseline_kb,
            peak_kb: sampled.max(hwm).max(baseline_kb),
        }
    }
}

/// The honest peer: connected (and having spoken) before the load it
/// watches, it sends ArchiveRequest every [`ASK_EVERY`] and times each
/// ArchiveResponse, which must be the node's history byte for byte and
/// come within [`ANSWER_WAIT`] (else the test fails).
pub struct Honest {
    stop: Stop,
    thread: JoinHandle<Vec<Duration>>,
}

/// The honest peer's answer times, sorted.
pub struct Answers(Vec<Duration>);

impl Answers {
    pub fn worst(&self) -> Duration {
        *self.0.last().expect("at least one answer")
    }

    pub fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    /// How many answers came.
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

impl Honest {
    /// Starts the honest peer on `peer`, a fresh connection to a node that
    /// holds `archive` (an ArchiveResponse).
    pub fn start(mut peer: Peer, archive: &Arc<Vec<u8>>) -> Honest {
        // Our own copy of the history, pushed: the node then knows we have
        // it, and sends no archive but the answers we ask for.
        peer.send_raw(archive);
        peer.send(&Message::ArchiveRequest);
        let (_, raw) = peer.recv_archive(WAIT).expect("a first answer");
        assert!(raw == **archive, "the first answer is not the history");
        let stop = Stop::default();
        let thread = {
            let stop = stop.flag();
            let archive = Arc::clone(archive);
            thread::spawn(move || {
                let mut times = Vec::new();
                // At least one answer, however short the load.
                loop {
                    let asked = Instant::now();
                    peer.send(&Message::ArchiveRequest);
                    let Some((_, raw)) = peer.recv_archive(ANSWER_WAIT) else {
                        panic!(
                            "the honest peer got no answer within {ANSWER_WAIT:?} (closed: {}) after {} answers",
                            peer.is_closed(),
                            times.len()
                        );
                    };
                    times.push(asked.elapsed());
                    assert!(
                        raw == *archive,
                        "the honest peer was sent another history ({} bytes)",
                        raw.len()
                    );
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(ASK_EVERY);
                }
                times
            })
        };
        Honest { stop, thread }
    }

    /// Stops asking; the answer times (a failure of the peer's thread is
    /// the test's).
    pub fn finish(self) -> Answers {
        let Honest { stop, thread } = self;
        drop(stop);
        let mut times = thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        times.sort();
        Answers(times)
    }
}
