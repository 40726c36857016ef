//! The compact relay extension (`docs/EXTENSION.md`): between two nodes
//! that both offer it, a new chat costs its own size, not the whole
//! history.
//!
//! It is spoken on a connection of its own, dialed on the relay port: a
//! peer is found to speak it by trying (a refusal costs one failed
//! connect, and the peer's network port is dialed at once). Both ends send
//! a Hello first; only then is the connection a peer's. Peers tell each
//! other their tip, push the chats past the tip they know the other holds,
//! and ask for the chats past an index with the digest of the chat before
//! it, so that the prefix they extend is proved. Which history wins, and
//! whom it is relayed to, is decided as for the standard protocol
//! (`archive.rs`): only what travels differs, peer by peer.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use log::debug;
use wire::{DIGEST_LEN, History, Message, RelayMessage};

use super::Node;
use super::io::{Action, ConnId, Dialect, Direction, Payload, Tip};
use super::report::Why;

/// A peer that refused the extension is dialed on its network port only,
/// this long: one failed connect per address per this at most.
const REFUSAL_KEPT: Duration = Duration::from_secs(600);
/// A relay connection whose Hello has not come by then is not the
/// extension.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// Most chats pushed unasked: a peer whose last known tip is further
/// behind (its tip known from long ago, the history since having reached
/// it through others) is sent our tip and asks for what it lacks.
const MOST_PUSHED: usize = 64;
/// After a NoCommonPrefix, chats are asked again from this many earlier,
/// once, before the full archive is asked for: forks of two chats mined
/// at once cost a few chats, not the history.
const RETRY_BACK: usize = 64;

/// Which addresses speak the extension, as far as dialing has shown.
#[derive(Debug)]
pub(super) struct RelayDials {
    /// Offered and used (`--no-relay` turns it off).
    enabled: bool,
    /// Addresses found not to speak it, until when that holds.
    refused: HashMap<Ipv4Addr, Instant>,
    /// Addresses dialed on their network port after a refusal: if that
    /// fails too the host was down, and the refusal is forgotten.
    falling_back: HashSet<Ipv4Addr>,
    /// Relay connections waiting for the other end's Hello.
    awaiting: HashMap<ConnId, Awaiting>,
}

/// A relay connection before its Hello.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    addr: Ipv4Addr,
    local: Ipv4Addr,
    direction: Direction,
    since: Instant,
}

impl RelayDials {
    /// `enabled`: the node offers and uses the extension.
    pub fn new(enabled: bool) -> Self {
        RelayDials {
            enabled,
            refused: HashMap::new(),
            falling_back: HashSet::new(),
            awaiting: HashMap::new(),
        }
    }

    /// The port to dial `addr` on.
    pub fn dialect_for(&self, addr: Ipv4Addr, now: Instant) -> Dialect {
        let refused = self.refused.get(&addr).is_some_and(|&until| now < until);
        if self.enabled && !refused {
            Dialect::Relay
        } else {
            Dialect::Standard
        }
    }

    /// A dial of `addr` on the port of `dialect` connected.
    pub fn dial_succeeded(&mut self, addr: Ipv4Addr, dialect: Dialect) {
        if dialect == Dialect::Standard {
            self.falling_back.remove(&addr);
        }
    }

    /// A dial of `addr` on its network port failed: if it followed a
    /// refusal of the relay port, the host is down, not without the
    /// extension.
    pub fn standard_dial_failed(&mut self, addr: Ipv4Addr) {
        if self.falling_back.remove(&addr) {
            self.refused.remove(&addr);
        }
    }

    /// Whether `conn` is a relay connection still waiting for its Hello.
    pub fn awaits_hello(&self, conn: ConnId) -> bool {
        self.awaiting.contains_key(&conn)
    }

    /// Whether a relay connection with `addr` waits for its Hello, or the
    /// dial of its network port that follows a refusal is in flight: it
    /// is not dialed again meanwhile.
    pub fn is_dialing(&self, addr: Ipv4Addr) -> bool {
        self.falling_back.contains(&addr) || self.awaiting.values().any(|a| a.addr == addr)
    }

    /// `addr` does not speak the extension, as of `now`.
    fn refuse(&mut self, addr: Ipv4Addr, now: Instant) {
        self.refused.retain(|_, until| now < *until);
        self.refused.insert(addr, now + REFUSAL_KEPT);
        self.falling_back.insert(addr);
    }
}

/// The digest of chat `from - 1` of `history` (zeros for 0, or past its
/// end): what a ChatsRequest or Chats for chats `from..` carries.
fn digest_before(history: &History, from: usize) -> [u8; DIGEST_LEN] {
    from.checked_sub(1)
        .and_then(|last| history.chat(last))
        .map_or([0; DIGEST_LEN], |c| *c.digest())
}

/// Whether `tip` names a prefix of `history`.
fn is_prefix(tip: Tip, history: &History) -> bool {
    tip.len <= history.len() && (tip.len == 0 || digest_before(history, tip.len) == tip.digest)
}

impl Node {
    /// A relay connection opened: it is a peer's once the other end's
    /// Hello comes; ours goes first.
    pub(super) fn await_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        (addr, local): (Ipv4Addr, Ipv4Addr),
        direction: Direction,
    ) {
        if self.book.is_banned(addr) {
            debug!("{addr} is banned: closing its connection");
            self.outbox.push_back(Action::Close { conn, notify: None });
            return;
        }
        self.relay.awaiting.insert(
            conn,
            Awaiting {
                addr,
                local,
                direction,
                since: now,
            },
        );
        let hello = RelayMessage::Hello {
            version: wire::RELAY_VERSION,
        };
        self.outbox.push_back(Action::Send {
            conn,
            payload: Payload::Message(hello.to_bytes()),
        });
    }

    /// A relay connection's first message is not a Hello: it is not the
    /// extension.
    pub(super) fn not_relay(&mut self, now: Instant, conn: ConnId) {
        if let Some(awaiting) = self.relay.awaiting.remove(&conn) {
            self.outbox.push_back(Action::Close { conn, notify: None });
            self.no_hello(now, awaiting);
        }
    }

    /// A relay connection ended: true if before its Hello (then, if we
    /// dialed it, the peer's network port is dialed).
    pub(super) fn hello_never_came(&mut self, now: Instant, conn: ConnId) -> bool {
        match self.relay.awaiting.remove(&conn) {
            Some(awaiting) => {
                self.no_hello(now, awaiting);
                true
            }
            None => false,
        }
    }

    /// Relay connections whose Hello is overdue are closed.
    pub(super) fn check_hellos(&mut self, now: Instant) {
        let overdue: Vec<ConnId> = self
            .relay
            .awaiting
            .iter()
            .filter(|(_, a)| now >= a.since + HELLO_WAIT)
            .map(|(&c, _)| c)
            .collect();
        for conn in overdue {
            self.not_relay(now, conn);
        }
    }

    fn no_hello(&mut self, now: Instant, awaiting: Awaiting) {
        if awaiting.direction == Direction::Outbound {
            self.relay_refused(now, awaiting.addr);
        }
    }

    /// Our dial of `addr`'s relay port was refused, or did not lead to the
    /// extension: its network port is dialed at once.
    pub(super) fn relay_refused(&mut self, now: Instant, addr: Ipv4Addr) {
        debug!("{addr} does not speak the relay extension: dialing its network port");
        self.relay.refuse(addr, now);
        self.outbox.push_back(Action::Connect {
            addr,
            dialect: Dialect::Standard,
        });
    }

    /// An extension message from `conn`.
    pub(super) fn on_relayed(&mut self, now: Instant, conn: ConnId, message: RelayMessage) {
        if let Some(awaiting) = self.relay.awaiting.get(&conn).copied() {
            if let RelayMessage::Hello { .. } = message {
                self.relay.awaiting.remove(&conn);
                let Awaiting {
                    addr,
                    local,
                    direction,
                    ..
                } = awaiting;
                self.admit(now, conn, (addr, local), (direction, Dialect::Relay));
            } else {
                self.not_relay(now, conn);
            }
            return;
        }
        if self.peers.get(conn).is_none() {
            return;
        }
        match message {
            RelayMessage::Hello { .. } => {}
            RelayMessage::Tip { len, digest } => {
                let tip = Tip {
                    len: len as usize,
                    digest,
                };
                self.on_tip(now, conn, tip);
            }
            RelayMessage::ChatsRequest { from, prev } => self.answer_chats(conn, from, prev),
            RelayMessage::NoCommonPrefix { from, .. } => {
                self.on_no_common_prefix(now, conn, from as usize);
            }
        }
    }

    /// The peer on `conn` holds the history named by `tip`: one that may
    /// win over ours is asked for (from the chat where they may part: the
    /// end of ours, or for one as long, its last chat); ours is sent to a
    /// peer behind.
    fn on_tip(&mut self, now: Instant, conn: ConnId, tip: Tip) {
        let ours = Tip::of(&self.history);
        // A Tip of no chats with a digest describes no history.
        if tip.len == 0 && tip.digest != [0; DIGEST_LEN] {
            return;
        }
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        peer.has = Some(tip);
        let from = match tip.len.cmp(&ours.len) {
            Ordering::Less => return self.catch_up(conn),
            Ordering::Greater => ours.len,
            Ordering::Equal if tip == ours || ours.len == 0 => return,
            Ordering::Equal => ours.len - 1,
        };
        peer.archive_asked_at = Some(now);
        peer.retried = false;
        self.ask_chats(conn, from);
    }

    /// Asks the peer on `conn` for its chats from `from` on, with the
    /// digest of our chat before.
    pub(super) fn ask_chats(&mut self, conn: ConnId, from: usize) {
        let from = from.min(self.history.len());
        let request = RelayMessage::ChatsRequest {
            from: from as u32,
            prev: digest_before(&self.history, from),
        };
        self.send(conn, Payload::Message(request.to_bytes()));
    }

    /// A ChatsRequest: our chats from `from` on if we hold the prefix it
    /// names, else NoCommonPrefix.
    fn answer_chats(&mut self, conn: ConnId, from: u32, prev: [u8; DIGEST_LEN]) {
        let served = self.served();
        let start = from as usize;
        if is_prefix(
            Tip {
                len: start,
                digest: prev,
            },
            &served,
        ) {
            self.send_chats(conn, served, start, Why::Asked);
        } else {
            let answer = RelayMessage::NoCommonPrefix { from, prev };
            self.send(conn, Payload::Message(answer.to_bytes()));
        }
    }

    /// Our request from `from` found no common prefix: asked once more
    /// from [`RETRY_BACK`] chats earlier, then the full archive.
    fn on_no_common_prefix(&mut self, now: Instant, conn: ConnId, from: usize) {
        // One that answers no request of ours is ignored.
        let Some(peer) = self
            .peers
            .get_mut(conn)
            .filter(|p| p.archive_asked_at.is_some())
        else {
            return;
        };
        peer.archive_asked_at = Some(now);
        let from = from.min(self.history.len());
        if !peer.retried && from > RETRY_BACK {
            peer.retried = true;
            self.ask_chats(conn, from - RETRY_BACK);
        } else {
            peer.retried = false;
            self.send_message(conn, &Message::ArchiveRequest);
        }
    }

    /// Sends our history to the extension peer on `conn`, unasked: the
    /// chats past the longest tip of it we know it holds (its last word,
    /// or the chats we last pushed it), or, when we know none that our
    /// history extends, our tip (it asks for what it lacks).
    pub(super) fn send_compact(&mut self, conn: ConnId, why: Why) {
        let served = self.served();
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        let tip = Tip::of(&served);
        let base = [peer.has, peer.pushed]
            .into_iter()
            .flatten()
            .filter(|&t| is_prefix(t, &served))
            .max_by_key(|t| t.len);
        peer.sent = Some(tip);
        match base {
            Some(known) if known.len < served.len() && served.len() - known.len <= MOST_PUSHED => {
                self.send_chats(conn, served, known.len, why);
            }
            _ => self.send_tip(conn),
        }
    }

    /// Sends our tip (of what we serve): the peer knows what we hold, and
    /// asks for what it lacks (so it is not pushed the same chats too).
    pub(super) fn send_tip(&mut self, conn: ConnId) {
        let tip = self.served_tip();
        if let Some(peer) = self.peers.get_mut(conn) {
            peer.sent = Some(tip);
        }
        let message = RelayMessage::Tip {
            len: tip.len as u32,
            digest: tip.digest,
        };
        self.send(conn, Payload::Message(message.to_bytes()));
    }

    /// Sends chats `from..` of `served` to `conn`, for `why`.
    fn send_chats(&mut self, conn: ConnId, served: History, from: usize, why: Why) {
        let tip = Tip::of(&served);
        let payload = Payload::Chats {
            history: served,
            from,
            why,
        };
        self.sent.count(payload.len(), why);
        if from < tip.len {
            self.watched_sent(tip.len);
        }
        self.send(conn, payload);
        if let Some(peer) = self.peers.get_mut(conn) {
            peer.sent = Some(tip);
            peer.pushed = Some(tip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tagged as history;

    #[test]
    fn a_tip_is_a_prefix_when_its_last_digest_is_there() {
        let h = history(&[1, 2, 3]);
        assert!(is_prefix(
            Tip {
                len: 0,
                digest: [0; 16]
            },
            &h
        ));
        assert!(is_prefix(
            Tip {
                len: 2,
                digest: [2; 16]
            },
            &h
        ));
        assert!(is_prefix(
            Tip {
                len: 3,
                digest: [3; 16]
            },
            &h
        ));
        assert!(!is_prefix(
            Tip {
                len: 2,
                digest: [3; 16]
            },
            &h
        ));
        assert!(!is_prefix(
            Tip {
                len: 4,
                digest: [0; 16]
            },
            &h
        ));
        assert_eq!(digest_before(&h, 0), [0; 16]);
        assert_eq!(digest_before(&h, 9), [0; 16]);
    }

    #[test]
    fn a_refusal_holds_unless_the_network_port_fails_too() {
        let now = Instant::now();
        let addr = Ipv4Addr::new(127, 0, 0, 9);
        let mut dials = RelayDials::new(true);
        assert_eq!(dials.dialect_for(addr, now), Dialect::Relay);
        dials.refuse(addr, now);
        assert_eq!(dials.dialect_for(addr, now), Dialect::Standard);
        dials.dial_succeeded(addr, Dialect::Standard);
        dials.standard_dial_failed(addr);
        assert_eq!(dials.dialect_for(addr, now), Dialect::Standard);
        assert_eq!(dials.dialect_for(addr, now + REFUSAL_KEPT), Dialect::Relay);
        dials.refuse(addr, now);
        dials.standard_dial_failed(addr);
        assert_eq!(dials.dialect_for(addr, now), Dialect::Relay);
        assert_eq!(
            RelayDials::new(false).dialect_for(addr, now),
            Dialect::Standard
        );
    }
}
