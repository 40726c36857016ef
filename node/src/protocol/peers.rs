//! The connections this node has, and what it knows of each peer.

use std::net::Ipv4Addr;
use std::time::Instant;

use wire::{DIGEST_LEN, History};

use super::{ConnId, Direction};

/// Names a history compactly: its length and its last chat's digest (which
/// hashes the last 20 chats, so two histories that share it share their
/// ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    pub len: usize,
    pub digest: [u8; DIGEST_LEN],
}

impl Tip {
    pub fn of(history: &History) -> Tip {
        Tip {
            len: history.len(),
            digest: history.last().map_or([0; DIGEST_LEN], |c| *c.digest()),
        }
    }
}

#[derive(Debug)]
pub struct Peer {
    pub addr: Ipv4Addr,
    pub direction: Direction,
    pub since: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The one connection used with this address. A second connection to
    /// the same address (two nodes dialing each other at once, a peer that
    /// pushes an archive on a connection of its own) is served but not sent
    /// to, and closed once idle.
    pub primary: bool,
    /// The last history the peer sent us.
    pub has: Option<Tip>,
    /// The last history we sent the peer.
    pub sent: Option<Tip>,
    /// The peer's last PeerList and when it came.
    pub peer_list: Option<(Instant, Vec<Ipv4Addr>)>,
    /// When we asked for its archive, until it answers.
    pub archive_asked_at: Option<Instant>,
    /// It sent a Notification, so it can take one (PROTOCOL.md).
    pub notifies: bool,
    /// We asked it for its archive and peers (see `Node::on_connected`).
    pub greeted: bool,
}

impl Peer {
    /// Whether the peer holds or was sent the history named by `tip`.
    pub fn knows(&self, tip: Tip) -> bool {
        self.has == Some(tip) || self.sent == Some(tip)
    }

    pub fn new(addr: Ipv4Addr, direction: Direction, since: Instant, primary: bool) -> Self {
        Peer {
            addr,
            direction,
            since,
            bytes_in: 0,
            bytes_out: 0,
            primary,
            has: None,
            sent: None,
            peer_list: None,
            archive_asked_at: None,
            notifies: false,
            greeted: false,
        }
    }
}

/// Which of two connections between the same pair of addresses survives:
/// the one dialed by the lower address. Both ends compute the same answer,
/// so when two nodes dial each other at once they keep the same one.
pub fn survives(dialer: Ipv4Addr, other_end: Ipv4Addr) -> bool {
    dialer < other_end
}

/// The connections, by id.
pub type Peers = std::collections::BTreeMap<ConnId, Peer>;

pub fn primary_for(peers: &Peers, addr: Ipv4Addr) -> Option<ConnId> {
    peers
        .iter()
        .find(|(_, p)| p.primary && p.addr == addr)
        .map(|(&c, _)| c)
}
