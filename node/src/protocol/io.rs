//! What goes into the protocol state machine and what comes out of it.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use wire::{Chat, History, Message};

use crate::command::Command;

/// A connection, named by the reactor. Never reused within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Something that happened, told to the state machine.
#[derive(Debug)]
pub enum Event {
    /// A connection is established. `local` is our side's address, `addr`
    /// the peer's.
    Connected {
        conn: ConnId,
        addr: Ipv4Addr,
        local: Ipv4Addr,
        direction: Direction,
    },
    /// A `Connect` did not succeed (refused, unreachable, timed out).
    ConnectFailed { addr: Ipv4Addr, reason: String },
    /// A whole message arrived; `wire_len` is its size on the wire.
    Received {
        conn: ConnId,
        message: Message,
        wire_len: usize,
    },
    /// The connection is gone (closed by either side, or failed).
    Disconnected { conn: ConnId, reason: String },
    /// Time passed: the reactor sends this a few times a second.
    Tick,
    /// A mining job ended: with a chat, or without one when cancelled.
    Mined {
        job: u64,
        chat: Option<Chat>,
        tries: u64,
        elapsed: Duration,
    },
    /// A validation handed to a worker is done.
    Validated(Validated),
    /// A line from the prompt.
    Command(Command),
}

/// The result of a [`ValidationJob`], with the history it checked.
#[derive(Debug)]
pub struct Validated {
    pub job: ValidationJob,
    /// `Ok` when every chat from `job.trusted` on is valid; else the first
    /// invalid chat, in words.
    pub result: Result<(), miner::InvalidChat>,
}

/// A history to validate off the event loop: chats before `trusted` are
/// byte-identical to a valid history and need no hashing.
#[derive(Debug)]
pub struct ValidationJob {
    pub conn: ConnId,
    pub candidate: History,
    pub trusted: usize,
    /// The peer sent it unasked (see the relay rule in `archive.rs`).
    pub pushed: bool,
}

/// Bytes to send. Archives are encoded once and shared among peers; a
/// newer archive replaces an older one still queued for the same peer.
#[derive(Debug, Clone)]
pub enum Payload {
    Archive(Arc<[u8]>),
    Message(Vec<u8>),
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Archive(bytes) => bytes.len(),
            Payload::Message(bytes) => bytes.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Archive(bytes) => bytes,
            Payload::Message(bytes) => bytes,
        }
    }
}

/// What the state machine asks the reactor to do.
#[derive(Debug)]
pub enum Action {
    Send {
        conn: ConnId,
        payload: Payload,
    },
    Connect {
        addr: Ipv4Addr,
    },
    /// Close now, after sending a Notification with this text if given.
    Close {
        conn: ConnId,
        notify: Option<String>,
    },
    /// Close once no partial message is being received, letting a peer
    /// that pushes one archive and hangs up finish first.
    CloseWhenIdle {
        conn: ConnId,
    },
    /// Mine `text` after `prev` (the last chats of the history), once
    /// `delay` has passed.
    StartMining {
        job: u64,
        prev: Vec<u8>,
        text: Vec<u8>,
        delay: Duration,
    },
    CancelMining {
        job: u64,
    },
    Validate(ValidationJob),
    /// A line for the user, on stdout.
    Print(String),
    Shutdown,
}
