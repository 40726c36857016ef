//! Peers coming and going, the small messages (PeerRequest, PeerList,
//! ArchiveRequest, Notification), dialing and the periodic timers.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use rand::RngExt;
use wire::Message;

use super::Node;
use super::counts;
use super::io::{Action, ConnId, Dialect, Direction, Ending};
use super::peers::{Peer, survives};
use super::report::Why;

/// Two connections with one address, opened in opposite directions within
/// this, are taken for a simultaneous dial (see `second_connection`).
const DIAL_RACE: Duration = Duration::from_secs(5);
/// Connections a peer opened to us, beside the one we use, kept at most.
const MAX_DUPLICATES: usize = 4;
/// A peer that dialed us and has said nothing is greeted after this.
const GREET_SILENT_AFTER: Duration = Duration::from_secs(1);
/// A peer we dialed that has sent no whole message for this long gives way
/// to a queued dial when no outbound connection is left to open: a
/// listener that accepts and says nothing must not hold one for good.
const SILENT_OUTBOUND_AFTER: Duration = Duration::from_secs(30);
/// Our PeerList goes to every peer at most this often when it changes:
/// peers decide whom to relay to from it, and while it lacks a new peer of
/// ours, each of them relays every history to that peer too.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);
/// Every peer is asked for its PeerList this often (PROTOCOL.md).
pub(super) const PEER_REQUEST_EVERY: Duration = Duration::from_secs(5);
/// One random peer is asked for its archive this often, to heal a missed
/// broadcast.
pub(super) const REPAIR_EVERY: Duration = Duration::from_secs(60);
/// A peer that has not answered our ArchiveRequest by then may be one that
/// stays silent while its history is empty: it gets ours unasked.
const ARCHIVE_REPLY_WAIT: Duration = Duration::from_secs(3);

/// The periodic duties and their clocks.
#[derive(Debug)]
pub(super) struct Timers {
    /// Our primary peers changed since we last sent PeerLists.
    pub peers_changed: bool,
    pub last_announce: Instant,
    pub next_peer_request: Instant,
    pub next_repair: Instant,
}

impl Timers {
    pub fn new(now: Instant) -> Timers {
        Timers {
            peers_changed: false,
            last_announce: now,
            next_peer_request: now + PEER_REQUEST_EVERY,
            next_repair: now + REPAIR_EVERY,
        }
    }
}

impl Node {
    /// Dials what the address book says to, within its caps.
    pub(super) fn dial(&mut self, now: Instant) {
        let room = self
            .config
            .max_outbound
            .saturating_sub(self.peers.outbound());
        if room == 0
            && self.book.has_queued()
            && let Some(conn) = self
                .peers
                .oldest_silent_outbound(now, SILENT_OUTBOUND_AFTER)
        {
            debug!("no outbound connection left: closing a peer that said nothing for 30 s");
            self.outbox.push_back(Action::Close { conn, notify: None });
        }
        let (peers, relay) = (&self.peers, &self.relay);
        for addr in self.book.next_dials(now, room, |addr| {
            peers.is_connected(addr) || relay.is_dialing(addr)
        }) {
            // One line per dial, whichever port it tries first (a refused
            // relay port is followed by the network port, `relay.rs`).
            let dialect = self.relay.dialect_for(addr, now);
            debug!("connecting to {addr}");
            self.counts.dials += 1;
            self.outbox.push_back(Action::Connect { addr, dialect });
        }
    }

    /// A connection is established: a peer, or for the relay port, one
    /// once its Hello comes (`relay.rs`).
    pub(super) fn on_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        (addr, local): (Ipv4Addr, Ipv4Addr),
        (direction, dialect): (Direction, Dialect),
    ) {
        if direction == Direction::Outbound {
            self.relay.dial_succeeded(addr, dialect);
            self.book.dial_succeeded(addr);
        }
        if dialect == Dialect::Relay {
            return self.await_hello(now, conn, (addr, local), direction);
        }
        self.admit(now, conn, (addr, local), (direction, dialect));
    }

    /// A connection becomes a peer's (on the relay port, once its Hello
    /// came).
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        (addr, local): (Ipv4Addr, Ipv4Addr),
        (direction, dialect): (Direction, Dialect),
    ) {
        if self.book.is_banned(addr) {
            debug!("{addr} is banned: closing its connection");
            self.outbox.push_back(Action::Close { conn, notify: None });
            return;
        }
        *self
            .counts
            .opened
            .entry(counts::direction_name(direction))
            .or_default() += 1;
        self.book.forget_queued(addr);
        let primary = match self.peers.primary_for(addr) {
            None => true,
            Some(existing) => {
                let race = self.dial_race(now, existing, direction);
                let other_dialect = self
                    .peers
                    .get(existing)
                    .is_some_and(|p| p.dialect != dialect);
                let second = if other_dialect {
                    relay_wins(direction, dialect)
                } else {
                    self.second_connection(race, direction, local, addr)
                };
                let Some(keep_new) = second else {
                    debug!("{addr}: dropping our second connection");
                    self.outbox.push_back(Action::Close { conn, notify: None });
                    self.dial(now);
                    return;
                };
                if keep_new {
                    self.demote(existing, race || other_dialect);
                }
                keep_new
            }
        };
        if let Some(suppressed) = self.log_limit.allow(now) {
            info!(
                "connected to {addr} ({direction:?}{}{}){suppressed}",
                if dialect == Dialect::Relay {
                    ", relay"
                } else {
                    ""
                },
                if primary { "" } else { ", duplicate" }
            );
        }
        let joined = !self.peers.is_connected(addr);
        self.peers
            .insert(conn, Peer::new(addr, (direction, dialect), now, primary));
        self.close_extra_duplicates(addr);
        if primary {
            self.timers.peers_changed = true;
        }
        if joined {
            self.say_peer(now, addr, true);
        }
        // A peer we dialed listens and is greeted at once. One that dialed
        // us may be a client that pushes one archive and hangs up without
        // reading: anything we sent first would turn its close into a reset
        // that can discard the archive in our receive buffer. It is greeted
        // after its first message, or after a second of silence.
        if primary && (direction == Direction::Outbound || dialect == Dialect::Relay) {
            self.greet(now, conn);
        }
        self.dial(now);
    }

    /// Whether a connection in `direction` that comes while `existing`
    /// is the primary one with the same address is one of a simultaneous
    /// dial: opposite directions, less than [`DIAL_RACE`] apart.
    fn dial_race(&self, now: Instant, existing: ConnId, direction: Direction) -> bool {
        self.peers
            .get(existing)
            .is_some_and(|old| old.direction != direction && now < old.since + DIAL_RACE)
    }

    /// A second connection with an address we have a primary connection
    /// with: `Some(true)` when the new one becomes the primary,
    /// `Some(false)` when it is kept beside it unused, `None` when it is
    /// ours to close.
    ///
    /// We never dial an address we have a connection with, and close no
    /// connection a peer may be using: some peers keep one entry per
    /// address, replaced by the latest connection and dropped when any
    /// connection with that address ends, so a duplicate we close leaves
    /// them with none, or makes them redial in a loop. A simultaneous dial
    /// (`race`) is the one exception: the connection dialed by the lower
    /// address survives, a rule both ends compute alike, and each end
    /// closes its own dial if that one loses (the other's, if it loses,
    /// is left to its dialer), so both keep the same single connection.
    /// Any other second connection is the peer dialing us again (the one
    /// it opened last is the one we use) or a dial of ours that was in
    /// flight for long (kept unused); nothing is closed.
    fn second_connection(
        &self,
        race: bool,
        direction: Direction,
        local: Ipv4Addr,
        addr: Ipv4Addr,
    ) -> Option<bool> {
        let (dialer, other_end) = match direction {
            Direction::Outbound => (local, addr),
            Direction::Inbound => (addr, local),
        };
        match (race, direction) {
            (false, Direction::Inbound) => Some(true),
            (false, Direction::Outbound) => Some(false),
            (true, _) if survives(dialer, other_end) => Some(true),
            (true, Direction::Inbound) => Some(false),
            (true, Direction::Outbound) => None,
        }
    }

    /// Connections a peer opened to us and left beside the one we use are
    /// served, never closed by us, but at most [`MAX_DUPLICATES`] per
    /// address: past that, the oldest goes (a peer that reconnects in a
    /// loop without closing holds a bounded number of sockets). Those are
    /// forgotten at once, so that each is closed once.
    fn close_extra_duplicates(&mut self, addr: Ipv4Addr) {
        let mut duplicates: Vec<(Instant, ConnId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr == addr && !p.primary)
            .map(|(c, p)| (p.since, c))
            .collect();
        if duplicates.len() <= MAX_DUPLICATES {
            return;
        }
        duplicates.sort();
        for &(_, conn) in &duplicates[..duplicates.len() - MAX_DUPLICATES] {
            self.peers.remove(conn);
            self.outbox.push_back(Action::Close { conn, notify: None });
        }
    }

    /// Our dial of `addr` reached this node itself (the reactor matched the
    /// socket pair): both ends are closed and `addr` is never dialed again.
    pub(super) fn on_self_dialed(
        &mut self,
        now: Instant,
        outbound: ConnId,
        inbound: ConnId,
        addr: Ipv4Addr,
    ) {
        info!("{addr} leads back to this node; not dialing it again");
        self.book.mark_own(addr);
        for conn in [outbound, inbound] {
            self.outbox.push_back(Action::Close { conn, notify: None });
        }
        self.dial(now);
    }

    pub(super) fn on_connect_failed(
        &mut self,
        now: Instant,
        addr: Ipv4Addr,
        reason: &str,
        (unanswered, dialect): (bool, Dialect),
    ) {
        debug!("connecting to {addr} ({dialect:?}) failed: {reason}");
        if dialect == Dialect::Relay {
            return self.relay_refused(now, addr);
        }
        self.relay.standard_dial_failed(addr);
        self.counts.dials_failed += 1;
        if let Some(backoff) = self.book.dial_failed(addr, now, unanswered)
            && backoff.bootstrap
            && backoff.failures == 1
        {
            warn!(
                "cannot reach bootstrap peer {addr}: {reason}; trying again in {:.1} s, and on \
                 until it answers (see 'peers')",
                backoff.wait.as_secs_f64()
            );
        }
        self.dial(now);
    }

    /// A `--peer` host name resolved: dialed as a bootstrap peer.
    pub(super) fn on_resolved(&mut self, now: Instant, name: &str, addr: Ipv4Addr) {
        self.book.name_resolved(name, addr);
        self.dial(now);
    }

    /// A connection loses to a second one with the same address: it is
    /// kept unused, or closed if it is ours and lost a simultaneous dial
    /// or to a relay connection (`close_ours`; see
    /// [`second_connection`](Self::second_connection)).
    fn demote(&mut self, conn: ConnId, close_ours: bool) {
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        peer.primary = false;
        debug!("{}: using the other connection", peer.addr);
        if close_ours && peer.direction == Direction::Outbound {
            self.outbox.push_back(Action::Close { conn, notify: None });
        }
    }

    pub(super) fn on_disconnected(&mut self, now: Instant, conn: ConnId, ending: Ending) {
        *self.endings.entry(ending.kind()).or_default() += 1;
        if self.hello_never_came(now, conn) {
            return;
        }
        let Some(peer) = self.peers.remove(conn) else {
            return;
        };
        *self
            .counts
            .ended
            .entry((counts::direction_name(peer.direction), ending.kind()))
            .or_default() += 1;
        let lived = now.saturating_duration_since(peer.since);
        if let Some(suppressed) = self.log_limit.allow(now) {
            info!(
                "disconnected from {} after {:.1} s ({ending}){suppressed}",
                peer.addr,
                lived.as_secs_f64()
            );
        }
        if peer.primary {
            self.timers.peers_changed = true;
        }
        if !self.peers.is_connected(peer.addr) {
            self.say_peer(now, peer.addr, false);
        }
        self.release_relay(now, None);
        // A duplicate that goes while another connection carries the peer
        // says nothing of whether the peer can be reached.
        if self.peers.is_connected(peer.addr) {
            debug!("{}: one of two connections ended", peer.addr);
            if peer.primary {
                self.peers.promote_newest(peer.addr);
            }
        } else {
            if let Some(backoff) = self.book.ended(peer.addr, lived, peer.primary, now) {
                debug!(
                    "{}: connection ended after {lived:?}, failure {} in a row; next try in {:?}",
                    peer.addr, backoff.failures, backoff.wait
                );
            }
            // Whether a peer that dialed us listens is learnt by dialing it
            // once, never while a connection with it exists.
            if peer.direction == Direction::Inbound {
                self.book.probe(peer.addr, now);
            }
        }
        let (peers, relay) = (&self.peers, &self.relay);
        self.book.redial_wanted(now, |addr| {
            peers.is_connected(addr) || relay.is_dialing(addr)
        });
        self.dial(now);
    }

    pub(super) fn on_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        match message {
            Message::PeerRequest => {
                // A peer that dialed us and asks for peers runs the
                // protocol, and nodes listen on the network-wide port: the
                // relay rule may trust it without dialing it, which we never
                // do while a connection with it exists.
                if let Some(peer) = self.peers.get(conn)
                    && peer.direction == Direction::Inbound
                {
                    self.book.heard_node(peer.addr);
                }
                self.send_peer_list(conn);
            }
            Message::PeerList(addrs) => {
                for &addr in &addrs {
                    let connected = self.peers.is_connected(addr);
                    self.book.offer(addr, connected, now);
                }
                if let Some(peer) = self.peers.get_mut(conn) {
                    peer.peer_list = Some((now, addrs));
                }
                self.release_relay(now, Some(conn));
                self.dial(now);
            }
            Message::ArchiveRequest => self.send_archive_to(conn, Why::Asked),
            Message::ArchiveResponse(_) => {
                unreachable!("archives come judged, as Event::Archive")
            }
            Message::Notification(text) => {
                if let Some(peer) = self.peers.get_mut(conn) {
                    peer.notifies = true;
                    if let Some(suppressed) = self.log_limit.allow(now) {
                        info!(
                            "notification from {}: {}{suppressed}",
                            peer.addr,
                            text.escape_ascii()
                        );
                    }
                }
            }
        }
    }

    /// Asks a new peer for its archive and its peers.
    /// An extension peer is sent our tip instead, and sends its own.
    pub(super) fn greet(&mut self, now: Instant, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        peer.greeted = true;
        match peer.dialect {
            Dialect::Standard => self.ask_archive(now, conn),
            Dialect::Relay => self.send_tip(conn),
        }
        self.send_message(conn, &Message::PeerRequest);
    }

    /// Asks the peer on `conn` for its history: the full archive, or for an
    /// extension peer the chats past our tip.
    pub(super) fn ask_archive(&mut self, now: Instant, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(conn) else {
            return;
        };
        peer.archive_asked_at = Some(now);
        match peer.dialect {
            Dialect::Standard => self.send_message(conn, &Message::ArchiveRequest),
            Dialect::Relay => self.ask_chats(conn, self.history.len()),
        }
    }

    /// Our peers (the primary connections), except the one it goes to.
    fn send_peer_list(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get(conn) else {
            return;
        };
        let list = self.peers.addrs_except(peer.addr);
        self.send_message(conn, &Message::PeerList(list));
    }

    /// A peer joined or left: a line in the room (rate-limited).
    fn say_peer(&mut self, now: Instant, addr: Ipv4Addr, joined: bool) {
        let peers = self.peers.count();
        if let Some(line) = self
            .room
            .as_mut()
            .and_then(|room| room.peer(now, addr, joined, peers))
        {
            self.print(line);
        }
    }

    pub(super) fn on_tick(&mut self, now: Instant) {
        self.check_hellos(now);
        if self.book.expire_bans(now) {
            self.save_bans(now);
        }
        if let Some(room) = &mut self.room {
            for line in room.tick(now, &self.history) {
                self.print(line);
            }
        }
        let silent_newcomers: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.primary && !p.greeted && !p.streaming && now >= p.since + GREET_SILENT_AFTER
            })
            .map(|(c, _)| c)
            .collect();
        for conn in silent_newcomers {
            self.greet(now, conn);
        }
        // Peers decide whom to relay to from our PeerList: when our peers
        // change, they get the new list unasked (at most once a second)
        // rather than at their next PeerRequest.
        if self.timers.peers_changed && now >= self.timers.last_announce + ANNOUNCE_EVERY {
            self.timers.peers_changed = false;
            self.timers.last_announce = now;
            for conn in self.peers.primaries() {
                self.send_peer_list(conn);
            }
        }
        if now >= self.timers.next_peer_request {
            self.timers.next_peer_request = now + PEER_REQUEST_EVERY;
            for conn in self.peers.primaries() {
                self.send_message(conn, &Message::PeerRequest);
            }
        }
        if now >= self.timers.next_repair {
            self.timers.next_repair = now + REPAIR_EVERY;
            let primaries = self.peers.primaries();
            if !primaries.is_empty() {
                let conn = primaries[self.rng.random_range(0..primaries.len())];
                self.ask_archive(now, conn);
            }
        }
        // Peers silent on our ArchiveRequest get our history, if they lack it.
        let silent: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.archive_asked_at
                    .is_some_and(|at| now >= at + ARCHIVE_REPLY_WAIT)
            })
            .map(|(c, _)| c)
            .collect();
        for conn in silent {
            if let Some(peer) = self.peers.get_mut(conn) {
                peer.archive_asked_at = None;
            }
            if !self.history.is_empty() && self.needs_history(conn) {
                self.send_archive_to(conn, Why::CatchUp);
            }
        }
        self.release_relay(now, None);
        let (peers, relay) = (&self.peers, &self.relay);
        self.book.redial_wanted(now, |addr| {
            peers.is_connected(addr) || relay.is_dialing(addr)
        });
        self.dial(now);
    }
}

/// A second connection, of `dialect`, with an address whose primary one
/// speaks the other dialect: the relay connection is the one used; a
/// standard one we dialed is closed (`None`), one the peer dialed is kept
/// unused (`Some(false)`), as in `second_connection`.
fn relay_wins(direction: Direction, dialect: Dialect) -> Option<bool> {
    match (dialect, direction) {
        (Dialect::Relay, _) => Some(true),
        (Dialect::Standard, Direction::Inbound) => Some(false),
        (Dialect::Standard, Direction::Outbound) => None,
    }
}
