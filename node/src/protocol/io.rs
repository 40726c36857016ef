//! What goes into the protocol state machine ([`Event`]) and what comes out
//! of it ([`Action`]): its only doors.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use miner::{InvalidChat, JobStats};
use wire::{Chat, DIGEST_LEN, History, Message, RelayMessage};

use super::report::{BanRow, Line, Reply, Why};
use super::room::{ScreenLine, StatusBar};
use crate::command::Command;

/// A connection, named by the reactor. Never reused within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// What a connection speaks: which port it was opened on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The standard protocol, on the network port (`docs/PROTOCOL.md`).
    Standard,
    /// The compact relay extension, on the relay port
    /// (`docs/EXTENSION.md`): the standard messages and the extension's.
    Relay,
}

/// Where a command came from, and so where its reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The node's own prompt.
    Prompt,
    /// A client of the control socket, by the reactor's number for it.
    Control(u64),
}

/// Names a history compactly: its length and its last chat's digest. The
/// digest hashes the last chat's window, which holds the digest of the chat
/// before, and so on: two histories with the same tip are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Chats.
    pub len: usize,
    /// The last chat's digest (zeros for the empty history).
    pub digest: [u8; DIGEST_LEN],
}

impl Tip {
    /// The tip of `history`.
    pub fn of(history: &History) -> Tip {
        Tip {
            len: history.len(),
            digest: history.last().map_or([0; DIGEST_LEN], |c| *c.digest()),
        }
    }
}

/// An ArchiveResponse as the reactor's intake judged it, chat by chat while
/// it arrived (see `intake.rs`, beside this module).
#[derive(Debug)]
pub enum Archive {
    /// Every chat is valid (those equal to our history were compared, the
    /// others hashed): a candidate history.
    Valid(History),
    /// Shorter than our history when it began, so it cannot win: neither
    /// kept nor checked. Its tip says what the peer holds.
    Shorter(Tip),
    /// A chat is invalid; nothing after it was kept.
    Invalid(InvalidChat),
    /// An extension Chats message extending a prefix we do not hold (its
    /// `prev` is not the digest of our chat `from - 1`): skipped.
    Unrooted,
}

#[cfg(test)]
impl Archive {
    /// Judges a whole history held in memory the way the intake judges one
    /// that streams in, against our history `ours`.
    pub fn judge(ours: &History, candidate: History) -> Archive {
        if candidate.len() < ours.len() {
            return Archive::Shorter(Tip::of(&candidate));
        }
        match miner::validate_extension(ours, &candidate) {
            Ok(_) => Archive::Valid(candidate),
            Err(invalid) => Archive::Invalid(invalid),
        }
    }

    /// Judges an extension Chats message carrying chats `from..` of
    /// `theirs` as the intake does: it extends our first `from` chats when
    /// our chat `from - 1` has the digest of theirs (the digests chain
    /// every chat before, so the prefixes are then equal).
    pub fn judge_chats(ours: &History, theirs: History, from: usize) -> Archive {
        let digest_at = |h: &History, i: usize| h.chat(i).map(|c| *c.digest());
        let rooted = match from.checked_sub(1) {
            None => true,
            Some(last) => {
                digest_at(ours, last).is_some() && digest_at(ours, last) == digest_at(&theirs, last)
            }
        };
        if rooted {
            Archive::judge(ours, theirs)
        } else {
            Archive::Unrooted
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The peer's stream ended (what we owed it was written first).
    ClosedByPeer,
    /// The state machine closed it.
    ClosedByUs,
    /// The socket failed (a reset, a refused write).
    Failed(String),
    /// A dial got no answer: it timed out, or the host or network is
    /// unreachable.
    Unanswered(String),
    /// The peer sent bytes that are no message; the decoder's words.
    Undecodable(String),
    /// A message did not finish in time.
    ReadTimeout,
    /// The peer read nothing of what we queued in time.
    WriteTimeout,
    /// The peer left too many replies unread.
    RepliesUnread,
    /// An inbound peer sent nothing in time.
    Silent,
    /// Evicted to make room for a newcomer (inbound connections full).
    Evicted,
    /// Receive buffers over their total limit; it held the most.
    BuffersFull,
}

impl Ending {
    /// A short name, for counting endings by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Ending::ClosedByPeer => "closed by peer",
            Ending::ClosedByUs => "closed by us",
            Ending::Failed(_) => "failed",
            Ending::Unanswered(_) => "unanswered",
            Ending::Undecodable(_) => "undecodable",
            Ending::ReadTimeout => "read timeout",
            Ending::WriteTimeout => "write timeout",
            Ending::RepliesUnread => "replies unread",
            Ending::Silent => "silent",
            Ending::Evicted => "evicted",
            Ending::BuffersFull => "buffers full",
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Failed(reason) | Ending::Unanswered(reason) | Ending::Undecodable(reason) => {
                f.write_str(reason)
            }
            Ending::ReadTimeout => f.write_str("read timeout: a message did not finish in time"),
            Ending::WriteTimeout => f.write_str("write timeout: the peer reads nothing"),
            Ending::RepliesUnread => f.write_str("the peer leaves its replies unread"),
            Ending::Silent => f.write_str("silent: no message since it connected"),
            Ending::Evicted => {
                f.write_str("evicted: inbound connections full and it had sent nothing")
            }
            Ending::BuffersFull => {
                f.write_str("receive buffers full: dropping the largest partial message")
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// How a mining job ended.
#[derive(Debug, Clone)]
pub enum Mined {
    /// The chats of the job, in order, each mined on the one before: valid
    /// when pushed, in order, onto the history the job was given.
    Found(Vec<Chat>),
    /// Cancelled before every chat was found.
    Cancelled,
}

/// A write the store thread made durable (see [`Action::Save`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The tickets of the saves this commit covered.
    pub tickets: Vec<u64>,
    /// Chats of the history now on disk, if the commit wrote the history.
    pub stored: Option<usize>,
    /// `Err` with the reason when the writes or syncs failed.
    pub outcome: Result<(), String>,
    /// How long the writes and syncs took (for the metrics).
    pub elapsed: Duration,
}

/// Something that happened, told to the state machine.
#[derive(Debug)]
pub enum Event {
    /// A connection is established.
    Connected {
        /// The reactor's name for it.
        conn: ConnId,
        /// The peer's address.
        addr: Ipv4Addr,
        /// Our side's address (the bind address, or the one the kernel
        /// chose).
        local: Ipv4Addr,
        /// Who dialed.
        direction: Direction,
        /// The port it was opened on.
        dialect: Dialect,
    },
    /// Our dial of `addr` reached this node itself: the inbound connection
    /// `inbound` is the other end of our outbound `outbound` (its remote
    /// address and port are our socket's local ones). Neither was reported
    /// as `Connected`.
    SelfDialed {
        /// Our dialing side.
        outbound: ConnId,
        /// The side our listener accepted.
        inbound: ConnId,
        /// The address dialed: an alias of this node.
        addr: Ipv4Addr,
    },
    /// A `Connect` did not succeed (refused, unreachable, timed out).
    ConnectFailed {
        /// The address dialed.
        addr: Ipv4Addr,
        /// In words.
        reason: String,
        /// No answer came (timed out, host or network unreachable): the
        /// path is down, not the peer refusing.
        unanswered: bool,
        /// The port dialed.
        dialect: Dialect,
    },
    /// An inbound peer we have not heard from has begun sending a message
    /// (told once per connection): it is not silent, and is greeted once
    /// the message is whole, not before (a client that pushes an archive
    /// and hangs up without reading would lose it to a reset).
    Streaming {
        /// The connection.
        conn: ConnId,
    },
    /// A whole message other than an ArchiveResponse arrived.
    Received {
        /// From whom.
        conn: ConnId,
        /// The message.
        message: Message,
        /// Its size on the wire, in bytes.
        wire_len: usize,
    },
    /// A whole extension message other than Chats arrived (on a
    /// [`Dialect::Relay`] connection).
    Relayed {
        /// From whom.
        conn: ConnId,
        /// The message.
        message: RelayMessage,
    },
    /// A whole ArchiveResponse, or an extension Chats message, arrived and
    /// was judged.
    Archive {
        /// From whom.
        conn: ConnId,
        /// The verdict.
        archive: Archive,
        /// Its size on the wire, in bytes.
        wire_len: usize,
    },
    /// The connection is gone (closed by either side, or failed). Messages
    /// that came before the end were told first.
    Disconnected {
        /// Which.
        conn: ConnId,
        /// Why.
        ending: Ending,
    },
    /// Time passed: the reactor sends this a few times a second.
    Tick,
    /// A mining job ended.
    Mined {
        /// The job's number (see [`Action::StartMining`]).
        job: u64,
        /// Its chats, or a cancellation.
        outcome: Mined,
        /// Tries and time, all its chats together.
        stats: JobStats,
    },
    /// The store thread made writes durable (or failed to).
    Saved(Saved),
    /// A `--peer` host name that could not be resolved at start now
    /// resolves: a bootstrap peer from now on.
    Resolved {
        /// The name, as given.
        name: String,
        /// Its address.
        addr: Ipv4Addr,
    },
    /// A `--peer` host name did not resolve again (`peers` shows why).
    Unresolved {
        /// The name, as given.
        name: String,
        /// The resolver's answer, in words.
        reason: String,
        /// The wait before the next try.
        retry_in: Duration,
    },
    /// An archive sent on `conn` did not go whole: superseded by a newer
    /// one before its first byte went, or still queued when the connection
    /// closed. It is not counted as sent, nor its `bytes` not written.
    Unsent {
        /// The connection.
        conn: ConnId,
        /// Why it had been sent.
        why: Why,
        /// Its bytes not written.
        bytes: usize,
    },
    /// The validation thread checked a batch of an archive's chats in
    /// `elapsed` (for the metrics).
    Validated {
        /// Its time.
        elapsed: Duration,
    },
    /// A command from the prompt or a control client.
    Command {
        /// Where the reply goes.
        from: Origin,
        /// What to do.
        command: Command,
    },
}

/// Bytes to send. An archive is our history itself (its chunks shared, not
/// copied): the reactor writes its header and then its segments.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An ArchiveResponse carrying this history, and why it is sent: an
    /// answer to an ArchiveRequest ([`Why::Asked`]) is written whatever
    /// follows it; any other waiting archive not yet begun is superseded
    /// by a newer one (see [`Event::Unsent`]).
    Archive {
        /// The history.
        history: History,
        /// Why it is sent.
        why: Why,
    },
    /// An extension Chats message carrying chats `from..` of this
    /// history, written from its chunks as an archive is.
    Chats {
        /// The history.
        history: History,
        /// Its first chat sent.
        from: usize,
        /// Why it is sent ([`Why::Asked`]: an answer to a ChatsRequest,
        /// bounded as archives asked for are).
        why: Why,
    },
    /// Any other message, encoded.
    Message(Vec<u8>),
}

impl Payload {
    /// Why a history is sent, and its bytes; `None` for a message.
    pub fn unsent(&self) -> Option<(Why, usize)> {
        match self {
            Payload::Archive { why, .. } | Payload::Chats { why, .. } => Some((*why, self.len())),
            Payload::Message(_) => None,
        }
    }

    /// The header of a Chats message carrying chats `from..` of `history`.
    ///
    /// # Panics
    /// If `from > history.len()`.
    pub fn chats_header(history: &History, from: usize) -> [u8; wire::CHATS_HEADER_LEN] {
        let prev = from
            .checked_sub(1)
            .and_then(|last| history.chat(last))
            .map_or([0; DIGEST_LEN], |c| *c.digest());
        assert!(from <= history.len(), "chat {from} of {}", history.len());
        wire::chats_header(from as u32, &prev, (history.len() - from) as u32)
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        match self {
            Payload::Archive { history, .. } => history.archive_len(),
            Payload::Chats { history, from, .. } => {
                wire::CHATS_HEADER_LEN + history.wire_len() - history.wire_offset(*from)
            }
            Payload::Message(bytes) => bytes.len(),
        }
    }
}

/// What the store thread is asked to keep.
#[derive(Debug, Clone)]
pub enum Save {
    /// The history changed from chat `from` on: keep `from` chats of the
    /// file and append the rest.
    History {
        /// The history now.
        history: History,
        /// The first chat that changed.
        from: usize,
    },
    /// A chat typed here, our `id`th; `ticket` comes back in [`Saved`]
    /// once it is durable.
    Chat {
        /// Its number among our chats.
        id: usize,
        /// Its text.
        text: Vec<u8>,
        /// Names this save in the acknowledgement.
        ticket: u64,
    },
    /// The bans as they stand now: the `bans` file is replaced whole.
    Bans(Vec<BanRow>),
    /// A mined copy of our chat `id`; `ticket` comes back in [`Saved`]
    /// once it is durable.
    Copy {
        /// Its number among our chats.
        id: usize,
        /// The copy's digest.
        digest: super::Digest,
        /// Names this save in the acknowledgement.
        ticket: u64,
    },
}

/// What the state machine asks the reactor to do.
#[derive(Debug)]
pub enum Action {
    /// Queue bytes for a connection.
    Send {
        /// To whom.
        conn: ConnId,
        /// What.
        payload: Payload,
    },
    /// Dial `addr` on the port of `dialect`.
    Connect {
        /// Whom.
        addr: Ipv4Addr,
        /// The network port, or the relay port.
        dialect: Dialect,
    },
    /// Close after what is queued is written, with a Notification of this
    /// text first if given.
    Close {
        /// Which.
        conn: ConnId,
        /// The Notification's text.
        notify: Option<String>,
    },
    /// Mine `texts` one after the other after `prev` (the last up to 19
    /// chats of the history they go on), once `delay` has passed.
    StartMining {
        /// Names the job in [`Event::Mined`].
        job: u64,
        /// `History::tail_for_append()` of the base.
        prev: Vec<u8>,
        /// The texts, in order.
        texts: Vec<Vec<u8>>,
        /// Wait before starting (backoff after lost races).
        delay: Duration,
    },
    /// Stop job `job` if it is still running.
    CancelMining {
        /// Which.
        job: u64,
    },
    /// Keep something on disk (off the event loop).
    Save(Save),
    /// A line for control clients following the history (`node hist
    /// --follow`).
    Show(Line),
    /// A line for the screen: the feed's lines as they are when the screen
    /// is not a person's terminal, else the room's (`room.rs`).
    Print(ScreenLine),
    /// What the prompt shows of the node changed.
    Status(StatusBar),
    /// The answer to a command.
    Reply {
        /// Where the command came from.
        to: Origin,
        /// The answer.
        reply: Reply,
    },
    /// Set the log level of the whole process (`node log LEVEL`).
    SetLog(log::LevelFilter),
    /// Stop the node.
    Shutdown,
}
