//! Mining: the job in flight, the backoff after lost races, and the last
//! job's figures ([`Mining`]); and when the node mines what
//! (`Node::schedule_mining`, `Node::on_mined`).
//!
//! A job mines every pending chat of ours (up to [`MAX_BATCH`]) one after
//! the other, each on the one before, so that chats typed together reach
//! the network in one archive instead of one archive (and one race) each.

use std::time::{Duration, Instant};

use log::debug;
use miner::JobStats;
use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::io::{Action, Mined, Tip};
use super::own::OwnId;
use super::report;
use super::{Node, OwnChats, Unacked};
use crate::protocol::Save;

/// Chats mined in one job at most.
pub const MAX_BATCH: usize = 32;
/// Unit of the random wait before mining after lost races: up to
/// `BACKOFF_UNIT << contention`, binary exponential backoff as on a shared
/// Ethernet.
const BACKOFF_UNIT: Duration = Duration::from_millis(4);
/// Contention never grows past this (a wait of at most 512 ms).
const MAX_CONTENTION: u32 = 7;

/// A job handed to the miner.
#[derive(Debug, Clone)]
pub struct Job {
    /// Names it in `Event::Mined`.
    pub id: u64,
    /// The own chats it mines, in order.
    pub own: Vec<OwnId>,
    /// When it was started.
    pub started: Instant,
    /// The tip of the history it mines on.
    pub base: Tip,
}

/// The mining manager.
#[derive(Debug, Default)]
pub struct Mining {
    job: Option<Job>,
    next_id: u64,
    /// Races lately lost by our chats.
    contention: u32,
    /// The figures of the last job that found its chats.
    last: Option<JobStats>,
}

impl Mining {
    /// Whether a job is running.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Starts a job mining `texts` (own chats `own`) after `prev`, waiting
    /// first when our chats lost races lately; returns the action.
    pub fn start(
        &mut self,
        now: Instant,
        own: Vec<OwnId>,
        texts: Vec<Vec<u8>>,
        prev: Vec<u8>,
        base: Tip,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        self.job = Some(Job {
            id,
            own,
            started: now,
            base,
        });
        // When many nodes have chats queued, they would otherwise all mine on
        // each new history at once and broadcast chats of which one stays.
        let delay = match self.contention {
            0 => Duration::ZERO,
            k => BACKOFF_UNIT.mul_f64(rng.random_range(0.0..f64::from(1u32 << k))),
        };
        Action::StartMining {
            job: id,
            prev,
            texts,
            delay,
        }
    }

    /// Cancels the running job, if any (its base changed).
    pub fn cancel(&mut self) -> Option<Action> {
        self.job
            .take()
            .map(|job| Action::CancelMining { job: job.id })
    }

    /// Job `id` ended: the job, if it is the one running (a cancelled one
    /// may still report).
    pub fn finish(&mut self, id: u64) -> Option<Job> {
        if self.job.as_ref().is_some_and(|j| j.id == id) {
            self.job.take()
        } else {
            None
        }
    }

    /// Records the figures of a job that found its chats.
    pub fn record(&mut self, stats: JobStats) {
        self.last = Some(stats);
    }

    /// A history from elsewhere was adopted: `displaced` of our chats lost
    /// their race to it, `pending` remain to be mined.
    pub fn adopted(&mut self, displaced: usize, pending: usize) {
        self.contention = if displaced > 0 {
            (self.contention + 1).min(MAX_CONTENTION)
        } else if pending == 0 {
            0
        } else {
            self.contention.saturating_sub(1)
        };
    }

    /// The figures of the last job that found its chats.
    pub fn last(&self) -> Option<JobStats> {
        self.last
    }

    /// What `status` shows of the running job.
    pub fn report(&self, now: Instant, own: &OwnChats) -> Option<report::Mining> {
        self.job.as_ref().map(|job| report::Mining {
            text: own.all()[job.own[0]].text.clone(),
            chats: job.own.len(),
            running_for: now.saturating_duration_since(job.started),
        })
    }
}

impl Node {
    /// Starts mining our pending chats (up to [`MAX_BATCH`]) on our
    /// history, unless a job is running.
    pub(super) fn schedule_mining(&mut self, now: Instant) {
        if self.mining.is_running() {
            return;
        }
        let ids: Vec<_> = self.own.pending_ids().take(MAX_BATCH).collect();
        if ids.is_empty() {
            return;
        }
        let prev = self.history.tail_for_append().to_vec();
        let base = Tip::of(&self.history);
        let texts = ids
            .iter()
            .map(|&id| self.own.all()[id].text.clone())
            .collect();
        let action = self
            .mining
            .start(now, ids, texts, prev, base, &mut self.rng);
        self.outbox.push_back(action);
    }

    /// The history changed: a running job mines on a stale base.
    pub(super) fn restart_mining(&mut self, now: Instant) {
        if let Some(action) = self.mining.cancel() {
            self.outbox.push_back(action);
        }
        self.schedule_mining(now);
    }

    /// A job ended: its chats extend our history (the job was cancelled if
    /// the history changed under it). The origin of chats sends them to
    /// every peer.
    pub(super) fn on_mined(&mut self, now: Instant, id: u64, outcome: Mined, stats: JobStats) {
        let Some(job) = self.mining.finish(id) else {
            return;
        };
        let Mined::Found(chats) = outcome else {
            self.schedule_mining(now);
            return;
        };
        if job.base != Tip::of(&self.history) {
            self.schedule_mining(now);
            return;
        }
        let mut history = self.history.clone();
        self.mining.record(stats);
        self.counts.chats_mined += chats.len() as u64;
        self.counts.mining.add(stats.elapsed);
        self.counts.mining_tries += stats.tries;
        let first = history.len();
        for (&id, chat) in job.own.iter().zip(&chats) {
            let digest = *chat.digest();
            let copies = self.own.mined(id, digest, history.len());
            history.push(chat);
            // Recorded before the chat is written or sent: after a crash, a
            // copy in the file is known and not mined a second time, and
            // one not in it was never sent (see `Node::served`).
            self.save_tracked(Unacked::Copy { id, copies }, |ticket| Save::Copy {
                id,
                digest,
                ticket,
            });
        }
        debug!(
            "job {id}: {} chats in {:?} from start",
            chats.len(),
            now - job.started
        );
        self.set_history(now, history, Some((first, stats)));
        // Sent to every peer once their copies are on disk (`on_saved`).
        self.delivered_by_source.clear();
        self.schedule_mining(now);
    }
}
