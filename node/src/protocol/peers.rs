//! The connections this node has, and what it knows of each peer.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::io::{ConnId, Dialect, Direction, Tip};
use super::report::PeerRow;

/// One connection and what we know of the peer on it.
#[derive(Debug)]
pub struct Peer {
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// Who dialed.
    pub direction: Direction,
    /// What it speaks.
    pub dialect: Dialect,
    /// When it connected.
    pub since: Instant,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes queued for it.
    pub bytes_out: u64,
    /// The one connection used with this address. A second connection to
    /// the same address (two nodes dialing each other at once, a peer that
    /// pushes an archive on a connection of its own, or dials us again) is
    /// served but not sent to, and left to its dialer to close (see
    /// `network.rs`, `second_connection`).
    pub primary: bool,
    /// The last history the peer sent us.
    pub has: Option<Tip>,
    /// The last history we sent the peer (for an extension peer, maybe
    /// only its tip).
    pub sent: Option<Tip>,
    /// The last history we sent an extension peer the chats of.
    pub pushed: Option<Tip>,
    /// Our last request for an extension peer's chats found no common
    /// prefix and was asked again from earlier (`relay.rs`).
    pub retried: bool,
    /// The peer's last PeerList and when it came.
    pub peer_list: Option<(Instant, Vec<Ipv4Addr>)>,
    /// When we asked for its archive, until it answers.
    pub archive_asked_at: Option<Instant>,
    /// It sent a Notification, so it can take one (PROTOCOL.md).
    pub notifies: bool,
    /// We asked it for its archive and peers; from then on it is sent
    /// what we send every peer unasked.
    pub greeted: bool,
    /// A message from it is arriving (it dialed us and is not greeted
    /// yet): not silent.
    pub streaming: bool,
}

impl Peer {
    /// A peer that has just connected.
    pub fn new(
        addr: Ipv4Addr,
        (direction, dialect): (Direction, Dialect),
        since: Instant,
        primary: bool,
    ) -> Self {
        Peer {
            addr,
            direction,
            dialect,
            since,
            bytes_in: 0,
            bytes_out: 0,
            primary,
            has: None,
            sent: None,
            pushed: None,
            retried: false,
            peer_list: None,
            archive_asked_at: None,
            notifies: false,
            greeted: false,
            streaming: false,
        }
    }

    /// Whether the peer holds or was sent the history named by `tip`.
    pub fn knows(&self, tip: Tip) -> bool {
        self.has == Some(tip) || self.sent == Some(tip)
    }
}

/// Which of two connections between the same pair of addresses survives:
/// the one dialed by the lower address. Both ends compute the same answer,
/// so when two nodes dial each other at once they keep the same one.
pub fn survives(dialer: Ipv4Addr, other_end: Ipv4Addr) -> bool {
    dialer < other_end
}

/// The connections, by id.
#[derive(Debug, Default)]
pub struct Peers {
    map: BTreeMap<ConnId, Peer>,
}

impl Peers {
    /// The peer on `conn`.
    pub fn get(&self, conn: ConnId) -> Option<&Peer> {
        self.map.get(&conn)
    }

    /// The peer on `conn`, to change.
    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Peer> {
        self.map.get_mut(&conn)
    }

    /// Adds a connection.
    pub fn insert(&mut self, conn: ConnId, peer: Peer) {
        self.map.insert(conn, peer);
    }

    /// Removes a connection.
    pub fn remove(&mut self, conn: ConnId) -> Option<Peer> {
        self.map.remove(&conn)
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Peer)> {
        self.map.iter().map(|(&c, p)| (c, p))
    }

    /// The primary connections we send to unasked: one per peer address,
    /// greeted. One that dialed us is not sent anything unasked before it
    /// is greeted (see [`Event::Streaming`](super::Event::Streaming)).
    pub fn primaries(&self) -> Vec<ConnId> {
        self.iter()
            .filter(|(_, p)| p.primary && p.greeted)
            .map(|(c, _)| c)
            .collect()
    }

    /// Our peers: one per address.
    pub fn count(&self) -> usize {
        self.map.values().filter(|p| p.primary).count()
    }

    /// The oldest connection we dialed that has sent no whole message in
    /// the `quiet` since it connected, as of `now`.
    pub fn oldest_silent_outbound(&self, now: Instant, quiet: Duration) -> Option<ConnId> {
        self.iter()
            .filter(|(_, p)| {
                p.direction == Direction::Outbound
                    && p.bytes_in == 0
                    && now.saturating_duration_since(p.since) >= quiet
            })
            .min_by_key(|(_, p)| p.since)
            .map(|(c, _)| c)
    }

    /// Connections we dialed, duplicates included (each holds a socket).
    pub fn outbound(&self) -> usize {
        self.map
            .values()
            .filter(|p| p.direction == Direction::Outbound)
            .count()
    }

    /// The primary connection with `addr`, if any.
    pub fn primary_for(&self, addr: Ipv4Addr) -> Option<ConnId> {
        self.iter()
            .find(|(_, p)| p.primary && p.addr == addr)
            .map(|(c, _)| c)
    }

    /// The primary connection with `addr` ended while others remain: the
    /// newest of them becomes the primary.
    pub fn promote_newest(&mut self, addr: Ipv4Addr) {
        if let Some(peer) = self
            .map
            .values_mut()
            .filter(|p| p.addr == addr)
            .max_by_key(|p| p.since)
        {
            peer.primary = true;
        }
    }

    /// Whether any connection with `addr` exists.
    pub fn is_connected(&self, addr: Ipv4Addr) -> bool {
        self.map.values().any(|p| p.addr == addr)
    }

    /// Our peers' addresses (one per primary connection) but `except`:
    /// what our PeerList to `except` holds.
    pub fn addrs_except(&self, except: Ipv4Addr) -> Vec<Ipv4Addr> {
        self.map
            .values()
            .filter(|p| p.primary && p.addr != except)
            .map(|p| p.addr)
            .collect()
    }

    /// Whether the peer on `conn` may lack the history named by `tip`: it
    /// neither sent it to us nor was sent it, and is not among the
    /// addresses `delivered` (those someone else delivers it to).
    pub fn needs(&self, conn: ConnId, tip: Tip, delivered: &HashSet<Ipv4Addr>) -> bool {
        self.get(conn)
            .is_some_and(|p| !p.knows(tip) && !delivered.contains(&p.addr))
    }

    /// The primary connections to send the history named by `tip` to (the
    /// relay rule in `archive.rs`).
    pub fn relay_targets(&self, tip: Tip, delivered: &HashSet<Ipv4Addr>) -> Vec<ConnId> {
        self.primaries()
            .into_iter()
            .filter(|&c| self.needs(c, tip, delivered))
            .collect()
    }

    /// What `peers` shows of each connection.
    pub fn rows(&self, now: Instant) -> Vec<PeerRow> {
        self.map
            .values()
            .map(|p| PeerRow {
                addr: p.addr,
                direction: p.direction,
                dialect: p.dialect,
                duplicate: !p.primary,
                connected_for: now.saturating_duration_since(p.since),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
            })
            .collect()
    }
}
