//! What the node does with a history a peer sends: validate, adopt, relay.
//!
//! # Which history wins
//!
//! A valid history replaces ours when it is longer, and only then
//! (PROTOCOL.md): one as long as ours is ignored. But two histories of the
//! same length that differ (two nodes mined on the same history at once)
//! are a fork that, left alone, can keep the network split for good, each
//! side holding its own chat. So forks of equal length are ranked by a
//! tie-break every node of ours computes the same way: at the first chat
//! where the two differ, the lower digest wins (digests are uniformly
//! random, so the rule favours no one). A winning fork is kept aside as our
//! *rival*, and relayed like a history we adopt. If it lacks chats of ours,
//! we mine them again on top of it: the result is longer than both sides,
//! so we, every node of ours and every foreign peer adopt it, and the
//! network is one again. A node only ever ranks a fork above its rival when
//! it wins against it too, so nothing flips back and forth.
//!
//! # Whom to relay to
//!
//! Foreign peers may never relay, so after adopting a history we send it on,
//! but a full mesh must not cost n² archives per chat. We skip a peer when
//! we know it has the history, or that someone else delivers it:
//! - it sent us this history, or we sent it (`Peer::knows`);
//! - it was connected to the peer the history came from (that peer's last
//!   PeerList, at most 15 s old, names it), and that peer delivers to its
//!   own peers: it pushed the history unasked (it is a broadcaster, not
//!   answering our request) and it listens on the network port (we once
//!   dialed it), so it is not a client that pushed once and left.
//!
//! Everyone else gets it. A history that came in answer to our request, or
//! from a client, reaches everybody through us. The same test decides
//! whether a peer that shows us an older or losing history is sent ours: it
//! is not when it was sent ours already or our source delivers to it, so
//! histories crossing in flight do not echo back and forth.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use log::{debug, info};
use wire::{History, Message};

use super::peers::Tip;
use super::{ConnId, Node, PEER_LIST_FRESH, Payload, Store, Validated, ValidationJob};
use crate::verify::printable;

/// New chats printed when a history is adopted; more are summed up.
const PRINT_AT_MOST: usize = 20;

/// Whether `candidate`, valid, should replace `current`: longer, or as long
/// and winning the tie-break at the first chat where they differ.
fn better(candidate: &History, current: &History) -> bool {
    match candidate.len().cmp(&current.len()) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => {
            let fork = current.common_prefix_len(candidate);
            if fork == current.len() {
                return false;
            }
            let (a, b) = (
                candidate.chat(fork).expect("fork < len"),
                current.chat(fork).expect("fork < len"),
            );
            (a.digest(), a.as_bytes()) < (b.digest(), b.as_bytes())
        }
    }
}

impl<S: Store> Node<S> {
    pub(super) fn on_archive(&mut self, now: Instant, conn: ConnId, candidate: History) {
        let peer = self.peers.get_mut(&conn).expect("caller checked");
        let pushed = peer.archive_asked_at.take().is_none();
        peer.has = Some(Tip::of(&candidate));
        let ours = Tip::of(&self.history);
        if candidate.len() < ours.len {
            // The peer is behind: let it catch up, unless it has been sent
            // ours (once per history of ours, in case it cannot take it and
            // pushes its own again) or our source delivers to it.
            if self.needs_history(conn) {
                self.send_archive_to(conn);
            }
            return;
        }
        if Tip::of(&candidate) == ours
            || self
                .rival
                .as_ref()
                .is_some_and(|r| Tip::of(r) == Tip::of(&candidate))
        {
            return;
        }
        let trusted = self.history.common_prefix_len(&candidate);
        let job = ValidationJob {
            conn,
            candidate,
            trusted,
            pushed,
        };
        if job.candidate.len() - trusted <= self.config.inline_validation {
            let result = miner::validate_from(&job.candidate, trusted);
            self.on_validated(now, Validated { job, result });
        } else if self.validating {
            // One large validation at a time; keep the longest waiting.
            if self
                .waiting_validation
                .as_ref()
                .is_none_or(|w| w.candidate.len() < job.candidate.len())
            {
                self.waiting_validation = Some(job);
            }
        } else {
            self.validating = true;
            debug!(
                "validating {} chats off the event loop",
                job.candidate.len() - trusted
            );
            self.outbox.push_back(super::Action::Validate(job));
        }
    }

    pub(super) fn on_validated(&mut self, now: Instant, validated: Validated) {
        let Validated { job, result } = validated;
        let ValidationJob {
            conn,
            candidate,
            pushed,
            ..
        } = job;
        if let Err(invalid) = result {
            self.reject(conn, &invalid.to_string());
        } else if candidate.len() > self.history.len() {
            self.adopt(now, conn, candidate, pushed);
        } else if better(&candidate, &self.history)
            && self
                .rival
                .as_ref()
                .is_none_or(|rival| better(&candidate, rival))
        {
            self.take_rival(now, conn, candidate, pushed);
        } else if self.needs_history(conn) {
            // Ours is longer by now, or wins the tie: the peer may switch.
            self.send_archive_to(conn);
        }
    }

    pub(super) fn start_waiting_validation(&mut self, now: Instant) {
        if self.validating {
            return;
        }
        let Some(mut job) = self.waiting_validation.take() else {
            return;
        };
        if job.candidate.len() < self.history.len() {
            return;
        }
        job.trusted = self.history.common_prefix_len(&job.candidate);
        if job.candidate.len() - job.trusted <= self.config.inline_validation {
            let result = miner::validate_from(&job.candidate, job.trusted);
            self.on_validated(now, Validated { job, result });
        } else {
            self.validating = true;
            self.outbox.push_back(super::Action::Validate(job));
        }
    }

    /// Ignores an invalid history; tells the peer why only if it can take a
    /// Notification (PROTOCOL.md), and keeps the connection either way.
    fn reject(&mut self, conn: ConnId, why: &str) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        info!("ignoring an invalid history from {}: {why}", peer.addr);
        if peer.notifies {
            self.send_message(
                conn,
                &Message::Notification(format!("history ignored: {why}").into_bytes()),
            );
        }
    }

    fn adopt(&mut self, now: Instant, from: ConnId, candidate: History, pushed: bool) {
        let fork = self.history.common_prefix_len(&candidate);
        let replaced = self.history.len() - fork;
        self.history = candidate;
        self.rival = None;
        self.archive = None;
        self.save_history(fork);
        let displaced = self.own.reconcile(&self.history, fork);
        self.contention = if displaced > 0 {
            (self.contention + 1).min(super::MAX_CONTENTION)
        } else if self.own.pending() == 0 {
            0
        } else {
            self.contention.saturating_sub(1)
        };
        if replaced > 0 {
            self.print(format!(
                "history switched to a fork from chat #{fork} ({replaced} chats replaced, {displaced} of ours to mine again)"
            ));
        }
        // A catch-up of thousands of chats is summed up, not scrolled by.
        let first_shown = fork.max(self.history.len().saturating_sub(PRINT_AT_MOST));
        if first_shown > fork {
            self.print(format!(
                "received chats #{fork} to #{}; the last {PRINT_AT_MOST}:",
                self.history.len() - 1
            ));
        }
        for index in first_shown..self.history.len() {
            let text = printable(self.history.chat(index).expect("in range").text());
            self.print(format!("#{index} {text}"));
        }
        self.restart_mining(now);
        self.relay(now, from, pushed);
    }

    /// Sends the current history on, by the rule in this module's comment.
    fn relay(&mut self, now: Instant, from: ConnId, pushed: bool) {
        self.delivered_by_source = self.delivered_by(now, from, pushed);
        let targets: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.primary)
            .map(|(&c, _)| c)
            .filter(|&c| self.needs_history(c))
            .collect();
        debug!(
            "relaying {} chats to {} peers",
            self.history.len(),
            targets.len()
        );
        for conn in targets {
            self.send_archive_to(conn);
        }
    }

    /// The addresses a history from `from` reaches without us: the source
    /// itself, and its peers when it delivers to them (this module's
    /// comment).
    fn delivered_by(&self, now: Instant, from: ConnId, pushed: bool) -> HashSet<Ipv4Addr> {
        let mut delivered = HashSet::new();
        if let Some(source) = self.peers.get(&from) {
            delivered.insert(source.addr);
            if let Some((at, list)) = &source.peer_list
                && pushed
                && self.book.is_listening(source.addr)
                && now < *at + PEER_LIST_FRESH
            {
                delivered.extend(list.iter().copied());
            }
        }
        delivered
    }

    /// Keeps a fork as long as ours that wins the tie-break (this module's
    /// comment): relays it, and mines our chats it lacks on top of it.
    fn take_rival(&mut self, now: Instant, from: ConnId, rival: History, pushed: bool) {
        let tip = Tip::of(&rival);
        let delivered = self.delivered_by(now, from, pushed);
        let archive = super::encode_archive(&rival);
        let targets: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.primary && !p.knows(tip) && !delivered.contains(&p.addr))
            .map(|(&c, _)| c)
            .collect();
        for conn in targets {
            self.send(conn, Payload::Archive(archive.clone()));
            self.peers.get_mut(&conn).expect("listed").sent = Some(tip);
        }
        let fork = self.history.common_prefix_len(&rival);
        let contested = self.own.first_missing(&rival, fork).is_some();
        info!(
            "a fork as long as ours, from chat #{fork}, wins the tie-break{}",
            if contested {
                "; mining our chats it lacks on it"
            } else {
                ""
            }
        );
        self.rival = Some(rival);
        if contested {
            self.restart_mining(now);
        }
    }

    /// Whether nobody is known to deliver our current history to the peer:
    /// it neither sent it to us nor was sent it, and the peer our history
    /// came from does not deliver to it.
    pub(super) fn needs_history(&self, conn: ConnId) -> bool {
        self.peers.get(&conn).is_some_and(|p| {
            !p.knows(Tip::of(&self.history)) && !self.delivered_by_source.contains(&p.addr)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Chat;

    fn history(tags: &[u8]) -> History {
        tags.iter()
            .map(|&t| Chat::new(vec![t], [t; 16], [t; 16]).unwrap())
            .collect()
    }

    #[test]
    fn longer_wins_and_equal_length_forks_break_ties_by_digest() {
        assert!(better(&history(&[1, 2, 3]), &history(&[1, 2])));
        assert!(!better(&history(&[1, 2]), &history(&[1, 2, 3])));
        assert!(!better(&history(&[1, 2]), &history(&[1, 2])));
        assert!(better(&history(&[1, 2]), &history(&[1, 3])));
        assert!(!better(&history(&[1, 3]), &history(&[1, 2])));
        assert!(better(&history(&[0, 9]), &history(&[1, 2])));
    }
}
