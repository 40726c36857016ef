//! What the node does with a history a peer sends: adopt it, or ignore it;
//! and whom to relay it to.
//!
//! # Which history wins
//!
//! A valid history replaces ours when it is longer (PROTOCOL.md). But two
//! histories of the same length that differ (two nodes mined on the same
//! history at once) are a fork that, left alone, can keep the network
//! split for good, each side holding its own chats, or the same chats in
//! another order. So forks of equal length are ranked by a tie-break every
//! node of ours computes the same way: at the first chat where the two
//! differ, the lower digest wins (digests are uniformly random, so the rule
//! favours no one). A winning fork of equal length is adopted and relayed
//! like a longer one. This order is total and every node only ever moves to
//! a better history, so nothing flips back and forth and our nodes end on
//! the same one. Chats of ours the switch displaced are mined again on top
//! of the winner: the result is longer than both sides, so foreign peers,
//! which never take an equal-length fork, adopt it too.
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
//! from a client, reaches everybody through us. When the source pushed it
//! but its PeerList is unknown or stale (it has just connected, or
//! restarted), we ask for the list and relay once it comes (or after
//! [`RELAY_WAIT`]): otherwise every peer of a restarted node would relay
//! its first chats to the whole network. The same test decides
//! whether a peer that shows us an older or losing history is sent ours: it
//! is not when it was sent ours already or our source delivers to it, so
//! histories crossing in flight do not echo back and forth.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use log::{debug, info};
use miner::{InvalidChat, JobStats};
use wire::{History, Message};

use super::Node;
use super::feed::Change;
use super::io::{Archive, ConnId, Dialect, Payload, Save, Tip};
use super::report::{Line, Why};
use super::room::ScreenLine;

/// A peer's PeerList is trusted to say who it is connected to this long.
const PEER_LIST_FRESH: Duration = Duration::from_secs(15);
/// A relay waits at most this long for its source's PeerList.
const RELAY_WAIT: Duration = Duration::from_millis(300);

/// A relay waiting for the PeerList of the peer the history came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRelay {
    /// The source.
    from: ConnId,
    /// What we serve of the history to relay.
    tip: Tip,
    /// When to relay with what we know.
    until: Instant,
}

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

impl Node {
    /// An ArchiveResponse from `conn`, as the intake judged it.
    pub(super) fn on_archive(&mut self, now: Instant, conn: ConnId, archive: Archive) {
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        let pushed = peer.archive_asked_at.take().is_none();
        let candidate = match archive {
            Archive::Invalid(invalid) => return self.reject(now, conn, &invalid),
            // Pushed chats past a prefix we do not hold: we ask for what
            // the peer has past ours, with the digest of our last chat.
            Archive::Unrooted => return self.ask_archive(now, conn),
            Archive::Shorter(tip) => {
                peer.has = Some(tip);
                return self.catch_up(conn);
            }
            Archive::Valid(candidate) => candidate,
        };
        let tip = Tip::of(&candidate);
        peer.has = Some(tip);
        if candidate.len() < self.history.len() {
            return self.catch_up(conn);
        }
        if tip == Tip::of(&self.history) {
            return;
        }
        if better(&candidate, &self.history) {
            self.adopt(now, conn, candidate, pushed);
        } else {
            // Ours wins the tie: the peer may switch.
            self.catch_up(conn);
        }
    }

    /// The peer on `conn` is behind us or on a losing fork: let it catch
    /// up, unless it was sent ours (once per history of ours, in case it
    /// cannot take it and pushes its own again) or our source delivers to
    /// it.
    pub(super) fn catch_up(&mut self, conn: ConnId) {
        if self.needs_history(conn) {
            self.send_archive_to(conn, Why::CatchUp);
        }
    }

    /// Ignores an invalid history; tells the peer why only if it can take a
    /// Notification (PROTOCOL.md), and keeps the connection either way.
    fn reject(&mut self, now: Instant, conn: ConnId, invalid: &InvalidChat) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        if let Some(suppressed) = self.log_limit.allow(now) {
            info!(
                "ignoring an invalid history from {}: {invalid}{suppressed}",
                peer.addr
            );
        }
        if peer.notifies {
            let text = format!("history ignored: {invalid}");
            self.send_message(conn, &Message::Notification(text.into_bytes()));
        }
    }

    /// Replaces our history with `history` (which `mined` says this node
    /// just extended, if it did): keeps it on disk, finds our chats again,
    /// shows what changed. The one place our history changes. Returns the
    /// first index that changed and how many of our chats it displaced.
    pub(super) fn set_history(
        &mut self,
        now: Instant,
        history: History,
        mined: Option<(usize, JobStats)>,
    ) -> (usize, usize) {
        let fork = self.history.common_prefix_len(&history);
        self.history = history;
        self.save(Save::History {
            history: self.history.clone(),
            from: fork,
        });
        let displaced = self.own.reconcile(&self.history, fork);
        let change = Change {
            fork,
            displaced,
            mined,
        };
        for line in self.feed.update(&self.history, change) {
            self.show(line);
        }
        if let Some(room) = &mut self.room {
            for line in room.changed(now, &self.history, change) {
                self.print(line);
            }
        }
        (fork, displaced)
    }

    fn adopt(&mut self, now: Instant, from: ConnId, candidate: History, pushed: bool) {
        if let Some(peer) = self.peers.get(from)
            && let Some(suppressed) = self.log_limit.allow(now)
        {
            info!(
                "took a history of {} chats from {}{suppressed}",
                candidate.len(),
                peer.addr
            );
        }
        let len = candidate.len();
        let (fork, displaced) = self.set_history(now, candidate, None);
        self.counts.chats_received += (len - fork) as u64;
        self.mining.adopted(displaced, self.own.pending());
        self.restart_mining(now);
        self.delivered_by_source = self.delivered_by(now, from, pushed);
        self.pending_relay = None;
        // A broadcaster whose PeerList we lack: worth asking before relaying.
        let ask_first = pushed
            && self.peers.get(from).is_some_and(|source| {
                self.book.is_listening(source.addr)
                    && source
                        .peer_list
                        .as_ref()
                        .is_none_or(|(at, _)| now >= *at + PEER_LIST_FRESH)
            });
        if ask_first {
            self.send_message(from, &Message::PeerRequest);
            self.pending_relay = Some(PendingRelay {
                from,
                tip: self.served_tip(),
                until: now + RELAY_WAIT,
            });
            return;
        }
        self.relay();
    }

    /// Sends our history to every peer that may lack it, by the rule in
    /// this module's comment.
    fn relay(&mut self) {
        let targets = self
            .peers
            .relay_targets(self.served_tip(), &self.delivered_by_source);
        debug!(
            "relaying {} chats to {} peers",
            self.history.len(),
            targets.len()
        );
        for conn in targets {
            self.send_archive_to(conn, Why::Relayed);
        }
    }

    /// The relay waiting for `from`'s PeerList goes out: the list came
    /// (`from` is its source), the source is gone, or the wait is over.
    /// Dropped if our history changed meanwhile (the newer one was sent on
    /// in its turn).
    pub(super) fn release_relay(&mut self, now: Instant, from: Option<ConnId>) {
        let Some(pending) = self.pending_relay else {
            return;
        };
        let source_gone = self.peers.get(pending.from).is_none();
        if from != Some(pending.from) && !source_gone && now < pending.until {
            return;
        }
        self.pending_relay = None;
        if pending.tip != self.served_tip() {
            return;
        }
        self.delivered_by_source = self.delivered_by(now, pending.from, true);
        self.relay();
    }

    /// The addresses a history from `from` reaches without us: the source
    /// itself, and its peers when it delivers to them (this module's
    /// comment).
    fn delivered_by(&self, now: Instant, from: ConnId, pushed: bool) -> HashSet<Ipv4Addr> {
        let mut delivered = HashSet::new();
        if let Some(source) = self.peers.get(from) {
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

    /// Whether nobody is known to deliver our current history to the peer
    /// on `conn`.
    pub(super) fn needs_history(&self, conn: ConnId) -> bool {
        self.peers
            .needs(conn, self.served_tip(), &self.delivered_by_source)
    }

    /// What we send of our history: all of it, but for chats of ours whose
    /// copy is not on disk yet (and what follows them).
    pub(super) fn served(&self) -> History {
        match self.own.first_undurable(&self.history) {
            Some(len) => self.history.prefix(len),
            None => self.history.clone(),
        }
    }

    /// The tip of [`served`](Self::served), without building it.
    pub(super) fn served_tip(&self) -> Tip {
        match self.own.first_undurable(&self.history) {
            Some(len) => Tip {
                len,
                digest: len
                    .checked_sub(1)
                    .and_then(|last| self.history.chat(last))
                    .map_or([0; wire::DIGEST_LEN], |c| *c.digest()),
            },
            None => Tip::of(&self.history),
        }
    }

    /// Sends our history to `conn`, for `why`: a full archive, but for an
    /// extension peer not asked for one (`relay.rs`).
    pub(super) fn send_archive_to(&mut self, conn: ConnId, why: Why) {
        if why != Why::Asked
            && self
                .peers
                .get(conn)
                .is_some_and(|p| p.dialect == Dialect::Relay)
        {
            return self.send_compact(conn, why);
        }
        let served = self.served();
        let tip = Tip::of(&served);
        if self.peers.get(conn).is_some() {
            self.sent.count(served.archive_len(), why);
            self.watched_sent(served.len());
        }
        self.send(
            conn,
            Payload::Archive {
                history: served,
                why,
            },
        );
        if let Some(peer) = self.peers.get_mut(conn) {
            peer.sent = Some(tip);
        }
    }

    /// An archive sent to `conn` did not go whole (superseded, or left
    /// when the connection closed): it was not sent, nor `bytes` of it.
    pub(super) fn on_unsent(&mut self, conn: ConnId, why: Why, bytes: usize) {
        self.sent.uncount(bytes, why);
        if let Some(peer) = self.peers.get_mut(conn) {
            peer.bytes_out = peer.bytes_out.saturating_sub(bytes as u64);
        }
    }

    /// The origin of chats sends them to every peer that lacks them (what
    /// is on disk of them: see `served`).
    pub(super) fn broadcast(&mut self) {
        let tip = self.served_tip();
        for conn in self.peers.primaries() {
            if self.peers.get(conn).is_some_and(|p| !p.knows(tip)) {
                self.send_archive_to(conn, Why::Mined);
            }
        }
    }

    /// A line of the feed: for control clients following the history,
    /// and for the screen when it is not a person's terminal.
    pub(super) fn show(&mut self, line: Line) {
        if self.room.is_none() || matches!(line, Line::Notice { .. }) {
            self.print(ScreenLine::plain(line.to_string()));
        }
        self.outbox.push_back(super::Action::Show(line));
    }

    /// A line for the screen only.
    pub(super) fn print(&mut self, line: ScreenLine) {
        self.outbox.push_back(super::Action::Print(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tagged as history;

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
