//! Running counts for the metrics (`node metrics`), kept by the state
//! machine where the things counted happen; [`Scrape`] is what a scrape
//! reads, the counts with the gauges of the moment. Times come in as data
//! (measured by the threads that did the work), never from a clock here.

use std::collections::BTreeMap;
use std::time::Duration;

use wire::Message;

use super::io::Direction;
use super::report::Sent;

/// Counts since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Chats mined here.
    pub chats_mined: u64,
    /// Chats that entered the history from peers.
    pub chats_received: u64,
    /// Bytes of whole messages received, by message type.
    pub bytes_in: BTreeMap<&'static str, u64>,
    /// Connections established, by direction.
    pub opened: BTreeMap<&'static str, u64>,
    /// Connections with peers ended, by direction and kind of ending.
    pub ended: BTreeMap<(&'static str, &'static str), u64>,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Mining jobs that found their chats, their tries and wall time.
    pub mining: Timed,
    /// Tries of those jobs, all threads together.
    pub mining_tries: u64,
    /// Batches of an archive's chats validated, and their time.
    pub validation: Timed,
    /// Commits of the store (writes and syncs), and their time.
    pub store: Timed,
}

/// How many of a thing, and their time in all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timed {
    /// How many.
    pub count: u64,
    /// Their time together.
    pub total: Duration,
}

impl Timed {
    /// One more, that took `elapsed`.
    pub fn add(&mut self, elapsed: Duration) {
        self.count += 1;
        self.total += elapsed;
    }
}

/// A message type's name in the metrics' `type` label.
pub fn message_type(message: &Message) -> &'static str {
    match message {
        Message::PeerRequest => "peer_request",
        Message::PeerList(_) => "peer_list",
        Message::ArchiveRequest => "archive_request",
        Message::ArchiveResponse(_) => "archive_response",
        Message::Notification(_) => "notification",
    }
}

/// An extension message's name in the metrics' `type` label.
pub fn relay_type(kind: wire::RelayType) -> &'static str {
    match kind {
        wire::RelayType::Hello => "hello",
        wire::RelayType::Tip => "tip",
        wire::RelayType::ChatsRequest => "chats_request",
        wire::RelayType::Chats => "chats",
        wire::RelayType::NoCommonPrefix => "no_common_prefix",
    }
}

/// A direction's name in the metrics' `direction` label.
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// What one scrape reads: the counts, the archives sent, and the gauges of
/// the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// The counts since start.
    pub counts: Counts,
    /// Archives sent, by why, and their bytes.
    pub sent: Sent,
    /// Chats in the history.
    pub history: usize,
    /// Chats typed here and not in the history.
    pub pending: usize,
    /// Peers connected (one per address).
    pub peers: usize,
    /// Addresses waiting out a backoff before their next dial.
    pub backing_off: usize,
    /// Addresses banned.
    pub banned: usize,
    /// The last job's rate, tries per second (0 before the first).
    pub hash_rate: f64,
    /// Since start.
    pub uptime: Duration,
}
