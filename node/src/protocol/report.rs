//! What the state machine tells a person or a script: lines for the screen
//! ([`Line`]) and answers to commands ([`Reply`]), as data. `Display` gives
//! the prompt's text; serde gives the control socket's JSON, whose schema
//! `docs/CONTROL.md` documents (field names here are that schema: keep
//! them stable).

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use miner::JobStats;
use serde::{Deserialize, Serialize};

use super::io::{Dialect, Direction};
use crate::text::{count, printable};

/// The figures of a mining job: tries and time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Codes tried, all threads together.
    pub tries: u64,
    /// Wall time, in seconds in JSON.
    #[serde(rename = "elapsed_s", with = "secs")]
    pub elapsed: Duration,
}

impl Figures {
    /// Tries per second.
    pub fn hash_rate(&self) -> f64 {
        self.tries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl From<JobStats> for Figures {
    fn from(stats: JobStats) -> Self {
        Figures {
            tries: stats.tries,
            elapsed: stats.elapsed,
        }
    }
}

/// A line for the screen: what entered or left the history, and notices.
/// In JSON (`node hist --follow`), an object tagged `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    /// Chat `index` entered the history. `mined` holds the job's figures
    /// when this node has just mined it.
    Chat {
        /// Its index in the history.
        index: usize,
        /// Its text, as received.
        #[serde(flatten, with = "chat_text")]
        text: Vec<u8>,
        /// Set when mined here just now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mined: Option<Figures>,
    },
    /// Chats `from..=to` entered at once; they are not shown one by one
    /// (see `hist`), but the last few follow as `Chat` lines.
    Received {
        /// First index.
        from: usize,
        /// Last index not shown one by one.
        to: usize,
    },
    /// Our history was replaced from chat `from` on by a longer one, or by
    /// a rival of the same length that wins the tie-break (`archive.rs`):
    /// the `replaced` chats shown from there are gone (chats from `from` on
    /// follow as `Chat` lines), and `displaced` of ours are to be mined
    /// again.
    Switched {
        /// The first index that changed.
        from: usize,
        /// The new history is longer than the one it replaced (else it is
        /// as long and won the tie-break).
        #[serde(default = "longer_by_default")]
        longer: bool,
        /// Chats shown before that the switch took away.
        replaced: usize,
        /// Our chats no longer in the history, to be mined again.
        displaced: usize,
    },
    /// Anything else worth a line (a warning, a failure to save).
    Notice {
        /// The line.
        text: String,
    },
    /// Control socket only, the last event a follower gets: the node
    /// stopped cleanly, its history saved. A follower's connection that
    /// ends without it ended otherwise (the node was killed, or dropped the
    /// follower).
    Stopped,
}

/// A `switched` event from a node that did not say `longer` (older ones
/// switched to longer histories only).
fn longer_by_default() -> bool {
    true
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Chat {
                index,
                text,
                mined: None,
            } => write!(f, "#{index} {}", printable(text)),
            Line::Chat {
                index,
                text,
                mined: Some(figures),
            } => write!(f, "#{index} {} (mined: {figures})", printable(text)),
            Line::Received { from, to } => {
                write!(f, "received chats #{from} to #{to} (see 'hist'); then:")
            }
            Line::Switched {
                from,
                longer,
                replaced,
                displaced,
            } => {
                let s = if *replaced == 1 { "" } else { "s" };
                let by = if *longer {
                    "a longer history"
                } else {
                    "a rival history of the same length (it wins the tie-break)"
                };
                write!(f, "{replaced} chat{s} from #{from} on replaced by {by}")?;
                match displaced {
                    0 => Ok(()),
                    1 => write!(f, "; 1 of yours will be mined again"),
                    n => write!(f, "; {n} of yours will be mined again"),
                }
            }
            Line::Notice { text } => f.write_str(text),
            Line::Stopped => f.write_str("the node stopped"),
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tries in {:.1} ms, {:.1} MH/s",
            self.tries,
            self.elapsed.as_secs_f64() * 1e3,
            self.hash_rate() / 1e6
        )
    }
}

/// A connection, as `peers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// Who dialed.
    pub direction: Direction,
    /// What it speaks: the standard protocol, or the compact relay
    /// extension too.
    pub dialect: Dialect,
    /// A second connection with the same address, served but not sent
    /// to, left to its dialer to close.
    pub duplicate: bool,
    /// How long ago it connected (seconds in JSON).
    #[serde(rename = "connected_for_s", with = "secs")]
    pub connected_for: Duration,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes queued for it.
    pub bytes_out: u64,
}

/// An address being dialed or waiting for its next try, as `peers` shows
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialRow {
    /// The address.
    pub addr: Ipv4Addr,
    /// Failed connections in a row (refused, or ended within seconds).
    pub failures: u32,
    /// `None` while a dial is in flight or queued; else the wait left
    /// before the next try (seconds in JSON, `null` for none).
    #[serde(rename = "retry_in_s", with = "opt_secs")]
    pub retry_in: Option<Duration>,
    /// Waiting for its turn: at most `--max-connecting` dials are in
    /// flight, within the connections the open-file limit leaves.
    #[serde(default)]
    pub queued: bool,
}

/// A `--peer` host name not resolved yet, as `peers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvingRow {
    /// The name, as given.
    pub name: String,
    /// The resolver's last answer, in words.
    pub reason: String,
    /// The wait left before the next try (seconds in JSON).
    #[serde(rename = "retry_in_s", with = "opt_secs")]
    pub retry_in: Option<Duration>,
}

/// A banned address, as `bans` shows it and the `bans` file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRow {
    /// The address.
    pub addr: Ipv4Addr,
    /// The time the ban has left (seconds in JSON); `None` (`null`):
    /// forever.
    #[serde(rename = "expires_in_s", with = "opt_secs")]
    pub expires_in: Option<Duration>,
}

/// Where a chat sent by a control client ended up: chat `index` of the
/// history, with its `digest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// Its index in the history.
    pub index: usize,
    /// Its digest, 32 lowercase hex digits.
    pub digest: String,
    /// Chats of ours not in the history.
    pub pending: usize,
}

/// Why an archive was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Chats mined here, sent to every peer.
    Mined,
    /// A history adopted from a peer, sent on.
    Relayed,
    /// The peer asked (ArchiveRequest).
    Asked,
    /// The peer showed an older or losing history, or stayed silent on our
    /// ArchiveRequest.
    CatchUp,
}

impl Why {
    /// Every why, in the order of [`Sent::bytes_by_why`].
    pub const ALL: [Why; 4] = [Why::Mined, Why::Relayed, Why::Asked, Why::CatchUp];

    /// Its name, as in `status`'s JSON and the metrics' `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Why::Mined => "mined",
            Why::Relayed => "relayed",
            Why::Asked => "asked",
            Why::CatchUp => "catch_up",
        }
    }
}

/// Histories sent since start: ArchiveResponses, and extension Chats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// ArchiveResponses and extension Chats messages.
    pub archives: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of the archives, those sending chats mined here.
    pub mined: u64,
    /// Those sending on a history adopted from a peer.
    pub relayed: u64,
    /// Those answering an ArchiveRequest.
    pub asked: u64,
    /// Those sent to a peer behind us, on a losing fork, or silent.
    pub catch_up: u64,
    /// Of the bytes, those of each why, in [`Why::ALL`]'s order (for the
    /// metrics; not in the JSON of `status`).
    #[serde(skip)]
    pub bytes_by_why: [u64; 4],
}

impl Sent {
    /// Counts an archive of `bytes` sent for `why`.
    pub fn count(&mut self, bytes: usize, why: Why) {
        self.archives += 1;
        self.bytes += bytes as u64;
        self.bytes_by_why[why as usize] += bytes as u64;
        *self.by_why(why) += 1;
    }

    /// Takes back an archive counted for `why` that did not go whole, and
    /// its `bytes` that were not written.
    pub fn uncount(&mut self, bytes: usize, why: Why) {
        self.archives = self.archives.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes as u64);
        let bytes_of_why = &mut self.bytes_by_why[why as usize];
        *bytes_of_why = bytes_of_why.saturating_sub(bytes as u64);
        let of_why = self.by_why(why);
        *of_why = of_why.saturating_sub(1);
    }

    /// Archives sent for `why`.
    pub fn of(&self, why: Why) -> u64 {
        let mut copy = *self;
        *copy.by_why(why)
    }

    fn by_why(&mut self, why: Why) -> &mut u64 {
        match why {
            Why::Mined => &mut self.mined,
            Why::Relayed => &mut self.relayed,
            Why::Asked => &mut self.asked,
            Why::CatchUp => &mut self.catch_up,
        }
    }
}

/// What the miner is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mining {
    /// The text of the first chat of the job.
    #[serde(flatten, with = "chat_text")]
    pub text: Vec<u8>,
    /// Chats in the job.
    pub chats: usize,
    /// Since the job was started (seconds in JSON).
    #[serde(rename = "running_for_s", with = "secs")]
    pub running_for: Duration,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The address the node listens on.
    pub bind: Ipv4Addr,
    /// The network port.
    pub port: u16,
    /// The compact relay extension's port; `None` when it is off.
    #[serde(default)]
    pub relay_port: Option<u16>,
    /// Connected peers (one per address).
    pub peers: usize,
    /// Chats in the history.
    pub history: usize,
    /// Chats of the history on disk.
    pub stored: usize,
    /// The last chat's text.
    #[serde(flatten, with = "last_chat_text")]
    pub last: Option<Vec<u8>>,
    /// Chats of ours not in the history.
    pub pending: usize,
    /// The job running, if any.
    pub mining: Option<Mining>,
    /// Mining threads.
    pub threads: usize,
    /// The figures of the last job that found its chats.
    pub last_job: Option<Figures>,
    /// Archives sent since start.
    pub sent: Sent,
    /// Connections ended since start, by kind of ending.
    pub endings: BTreeMap<String, u64>,
    /// The data directory.
    pub data_dir: String,
    /// The node's process id (0 from a node that did not say).
    #[serde(default)]
    pub pid: u32,
    /// The node's version (its `node --version`).
    #[serde(default)]
    pub version: String,
    /// Since the node started (seconds in JSON).
    #[serde(default, rename = "uptime_s", with = "secs")]
    pub uptime: Duration,
}

/// A chat of `hist`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistChat {
    /// Its index in the history.
    pub index: usize,
    /// Its text.
    #[serde(flatten, with = "chat_text")]
    pub text: Vec<u8>,
}

/// What `status` says of a data directory whose node is not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offline {
    /// The data directory.
    pub data_dir: String,
    /// Chats in its history.
    pub history: usize,
    /// The last chat's text.
    #[serde(flatten, with = "last_chat_text")]
    pub last: Option<Vec<u8>>,
    /// Chats typed there and not in its history.
    pub pending: usize,
}

/// The answer to a command. In JSON, an object tagged `"reply"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// `chat`: the chat is on disk (it survives a crash) and queued for
    /// mining, or already mined; `pending` chats of ours wait.
    Saved {
        /// Chats of ours not in the history.
        pending: usize,
    },
    /// `chat` waiting for `mined`: the chat is in the history.
    Mined(Placed),
    /// `chat` waiting for `sent`: an archive holding the chat is queued
    /// whole for at least one peer.
    Sent(Placed),
    /// `chat`: queued, but saving it failed: it is kept in memory only.
    NotSaved {
        /// Why, in words.
        reason: String,
    },
    /// `hist`: the chats asked for, with their index.
    Hist {
        /// The chats, oldest first.
        chats: Vec<HistChat>,
        /// Chats in the whole history (0 from a node that did not say).
        #[serde(default)]
        history: usize,
        /// False when read from the data directory of a stopped node.
        running: bool,
    },
    /// `peers`.
    Peers {
        /// One row per connection.
        peers: Vec<PeerRow>,
        /// Addresses being dialed or waiting to be.
        dialing: Vec<DialRow>,
        /// `--peer` host names not resolved yet.
        #[serde(default)]
        resolving: Vec<ResolvingRow>,
    },
    /// `status` of a running node (boxed: the largest answer by far).
    Status(Box<Status>),
    /// `status` of a data directory whose node is not running.
    Offline(Offline),
    /// `help`.
    Help {
        /// The text.
        text: String,
    },
    /// `stop` (control socket only): the node stopped, what it holds
    /// saved.
    Stopped,
    /// `connect`, `disconnect`, `ban`, `unban`, `log`: done, in words.
    Done {
        /// What was done.
        text: String,
    },
    /// `bans`: the banned addresses.
    Bans {
        /// One row per address.
        bans: Vec<BanRow>,
    },
    /// `metrics`: the node's figures in the OpenMetrics text format.
    Metrics {
        /// The exposition, ending with `# EOF`.
        text: String,
    },
    /// A request that could not be carried out (control socket only).
    Error {
        /// What is wrong, in words.
        error: String,
    },
}

impl Reply {
    /// The answer to `hist`: the last `n` chats of `history`, or with
    /// `before` the `n` chats before that index.
    pub fn hist(history: &wire::History, n: usize, before: Option<usize>, running: bool) -> Reply {
        let end = before.map_or(history.len(), |before| before.min(history.len()));
        let first = end.saturating_sub(n);
        let chats = (first..end)
            .map(|index| HistChat {
                index,
                text: history.chat(index).expect("in range").text().to_vec(),
            })
            .collect();
        Reply::Hist {
            chats,
            history: history.len(),
            running,
        }
    }
}

/// A duration in whole seconds, minutes or hours, rounded down: `5s`,
/// `2m05s`, `1h07m`.
pub(super) fn span(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Saved { pending } => write!(f, "saved ({pending} pending)"),
            Reply::NotSaved { reason } => write!(
                f,
                "not saved: {reason}; the chat is mined all the same, but kept in memory only"
            ),
            Reply::Hist { chats, history, .. } if chats.is_empty() => match history {
                0 => f.write_str("the history is empty"),
                n => write!(f, "0 chats asked (the history holds {n})"),
            },
            Reply::Hist { chats, .. } => {
                let mut out = String::new();
                for chat in chats {
                    let _ = writeln!(out, "#{} {}", chat.index, printable(&chat.text));
                }
                f.write_str(out.trim_end())
            }
            Reply::Peers {
                peers,
                dialing,
                resolving,
            } => write_peers(f, peers, dialing, resolving),
            Reply::Status(status) => write_status(f, status),
            Reply::Offline(offline) => write!(
                f,
                "the node is not running (data in {})\nhistory:   {}, last {}\npending:   {}",
                offline.data_dir,
                count(offline.history, "chat"),
                quoted(&offline.last),
                count(offline.pending, "chat")
            ),
            Reply::Mined(placed) => write!(
                f,
                "mined as #{} (digest {}); {} pending",
                placed.index, placed.digest, placed.pending
            ),
            Reply::Sent(placed) => write!(
                f,
                "sent to a peer as #{} (digest {}); {} pending",
                placed.index, placed.digest, placed.pending
            ),
            Reply::Stopped => f.write_str("stopped; the history is saved"),
            Reply::Bans { bans } if bans.is_empty() => f.write_str("no address is banned"),
            Reply::Bans { bans } => {
                let mut out = String::new();
                for ban in bans {
                    let left = ban
                        .expires_in
                        .map_or("forever".to_string(), |left| format!("{} left", span(left)));
                    let _ = writeln!(out, "{:<16} {left}", ban.addr.to_string());
                }
                f.write_str(out.trim_end())
            }
            Reply::Help { text } | Reply::Done { text } | Reply::Metrics { text } => {
                f.write_str(text.trim_end())
            }
            Reply::Error { error } => f.write_str(error),
        }
    }
}

fn write_peers(
    f: &mut fmt::Formatter<'_>,
    peers: &[PeerRow],
    dialing: &[DialRow],
    resolving: &[ResolvingRow],
) -> fmt::Result {
    let mut out = String::new();
    if peers.is_empty() {
        out.push_str("no peers connected\n");
    } else {
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<8} {:>10} {:>12} {:>12}",
            "address", "direction", "speaks", "since", "bytes in", "bytes out"
        );
        for peer in peers {
            let direction = format!(
                "{:?}{}",
                peer.direction,
                if peer.duplicate { "*" } else { "" }
            )
            .to_lowercase();
            let speaks = match peer.dialect {
                Dialect::Standard => "standard",
                Dialect::Relay => "relay",
            };
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:<8} {:>10} {:>12} {:>12}",
                peer.addr.to_string(),
                direction,
                speaks,
                format!("{} ago", span(peer.connected_for)),
                peer.bytes_in,
                peer.bytes_out
            );
        }
        if peers.iter().any(|p| p.duplicate) {
            out.push_str("(* a second connection with the same address: served, not sent to, left to its dialer to close)\n");
        }
    }
    if !dialing.is_empty() {
        out.push_str("still trying:\n");
        for dial in dialing {
            let _ = writeln!(
                out,
                "{:<16} {} ({} failed in a row)",
                dial.addr.to_string(),
                next_try(
                    dial.retry_in,
                    if dial.queued {
                        "queued"
                    } else {
                        "connecting now"
                    }
                ),
                dial.failures
            );
        }
    }
    if !resolving.is_empty() {
        out.push_str("host names not resolved yet:\n");
        for name in resolving {
            let _ = writeln!(
                out,
                "{:<16} {} ({})",
                name.name,
                next_try(name.retry_in, "resolving now"),
                name.reason
            );
        }
    }
    f.write_str(out.trim_end())
}

/// When the next try comes, rounded up (a wait of 0.9 s is not "0s");
/// `now` when none is waited for.
fn next_try(retry_in: Option<Duration>, now: &str) -> String {
    match retry_in {
        None => now.to_string(),
        Some(wait) => {
            let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            format!("next try in {}", span(Duration::from_secs(whole)))
        }
    }
}

/// A chat text in quotes, or `(none)`.
fn quoted(text: &Option<Vec<u8>>) -> String {
    text.as_ref()
        .map_or("(none)".to_string(), |t| format!("\"{}\"", printable(t)))
}

fn write_status(f: &mut fmt::Formatter<'_>, s: &Status) -> fmt::Result {
    let last = quoted(&s.last);
    let mining = match &s.mining {
        Some(job) => format!(
            "mining \"{}\"{} for {:.1} s on {} threads",
            printable(&job.text),
            match job.chats {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            },
            job.running_for.as_secs_f64(),
            s.threads
        ),
        None => format!("idle ({} threads)", s.threads),
    };
    let last_job = s.last_job.map_or("none yet".to_string(), |j| j.to_string());
    let endings = if s.endings.is_empty() {
        "none yet".to_string()
    } else {
        s.endings
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    write!(
        f,
        "address:   {}:{} ({})\npeers:     {}\nhistory:   {}, last {last}\non disk:   {}\npending:   {}\nmining:    {mining}\nlast job:  {last_job}\nsent:      {} histories ({} mined, {} relayed, {} asked, {} to catch up), {} bytes\nclosed:    {endings}\ndata dir:  {}\nnode:      version {}, pid {}, up {}",
        s.bind,
        s.port,
        s.relay_port
            .map_or("relay extension off".to_string(), |port| {
                format!("relay extension on port {port}")
            }),
        s.peers,
        count(s.history, "chat"),
        count(s.stored, "chat"),
        count(s.pending, "chat"),
        s.sent.archives,
        s.sent.mined,
        s.sent.relayed,
        s.sent.asked,
        s.sent.catch_up,
        s.sent.bytes,
        s.data_dir,
        s.version,
        s.pid,
        span(s.uptime)
    )
}

/// A chat's text in JSON, as two fields: `text`, a string in which bytes
/// that are not UTF-8 (other peers may send any) become U+FFFD; and, only
/// when there are such bytes, `text_hex`, the exact bytes in lowercase hex.
/// Read back, `text_hex` wins, so a client gets the exact bytes.
mod chat_text {
    use serde::de::Error;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut fields = s.serialize_map(None)?;
        super::text_fields(&mut fields, ("text", "text_hex"), text)?;
        fields.end()
    }

    #[derive(Deserialize)]
    struct Fields {
        text: String,
        #[serde(default)]
        text_hex: Option<String>,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let Fields { text, text_hex } = Fields::deserialize(d)?;
        super::exact_text(text, text_hex).map_err(D::Error::custom)
    }
}

/// The last chat's text in JSON: `last` and `last_hex`, as `text` and
/// `text_hex` of [`chat_text`]; `last` is `null` for none.
mod last_chat_text {
    use serde::de::Error;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let mut fields = s.serialize_map(None)?;
        match text {
            Some(text) => super::text_fields(&mut fields, ("last", "last_hex"), text)?,
            None => fields.serialize_entry("last", &())?,
        }
        fields.end()
    }

    #[derive(Deserialize)]
    struct Fields {
        last: Option<String>,
        #[serde(default)]
        last_hex: Option<String>,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Fields { last, last_hex } = Fields::deserialize(d)?;
        last.map(|text| super::exact_text(text, last_hex))
            .transpose()
            .map_err(D::Error::custom)
    }
}

/// Writes `text` as the string field `keys.0`, and as hex in `keys.1` when
/// it is not UTF-8.
fn text_fields<M: serde::ser::SerializeMap>(
    fields: &mut M,
    keys: (&str, &str),
    text: &[u8],
) -> Result<(), M::Error> {
    match std::str::from_utf8(text) {
        Ok(text) => fields.serialize_entry(keys.0, text),
        Err(_) => {
            fields.serialize_entry(keys.0, &String::from_utf8_lossy(text))?;
            let hex: String = text.iter().map(|b| format!("{b:02x}")).collect();
            fields.serialize_entry(keys.1, &hex)
        }
    }
}

/// A chat's exact bytes from its JSON fields: those of `hex` when given,
/// else those of `text`.
///
/// # Errors
/// `hex` is not pairs of hex digits.
fn exact_text(text: String, hex: Option<String>) -> Result<Vec<u8>, String> {
    let Some(hex) = hex else {
        return Ok(text.into_bytes());
    };
    let digit = |c: u8| char::from(c).to_digit(16);
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(format!("{hex:?} is not hex: odd length"));
    }
    bytes
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("{hex:?} is not hex"))
}

/// A duration in JSON: seconds, a number.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// An optional duration in JSON: seconds, or `null`.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(secs) => Duration::try_from_secs_f64(secs)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn a_text_that_is_not_utf8_carries_its_exact_bytes_in_hex() {
        let chat = HistChat {
            index: 3,
            text: b"caf\xc3\xa9 \xff\xfe".to_vec(),
        };
        let sent = json(&chat);
        assert_eq!(
            sent,
            r#"{"index":3,"text":"café \ufffd\ufffd","text_hex":"636166c3a920fffe"}"#
                .replace(r"\ufffd", "\u{fffd}")
        );
        assert_eq!(serde_json::from_str::<HistChat>(&sent).unwrap(), chat);
        // UTF-8 as it is: no hex.
        let plain = HistChat {
            index: 0,
            text: "café".into(),
        };
        assert_eq!(json(&plain), r#"{"index":0,"text":"café"}"#);
        assert_eq!(
            serde_json::from_str::<HistChat>(&json(&plain)).unwrap(),
            plain
        );
        for bad in ["fff", "zz", "+f"] {
            let text = format!(r#"{{"index":0,"text":"?","text_hex":"{bad}"}}"#);
            assert!(serde_json::from_str::<HistChat>(&text).is_err(), "{bad}");
        }

        // In an event, and as the last chat of a status.
        let event = Line::Chat {
            index: 1,
            text: b"\xff".to_vec(),
            mined: None,
        };
        let sent = json(&event);
        assert!(sent.contains(r#""text_hex":"ff""#), "{sent}");
        assert_eq!(serde_json::from_str::<Line>(&sent).unwrap(), event);
        assert_eq!(event.to_string(), r"#1 \xff");
        let offline = Reply::Offline(Offline {
            data_dir: "d".into(),
            history: 1,
            last: Some(b"\xfe!".to_vec()),
            pending: 0,
        });
        let sent = json(&offline);
        assert!(sent.contains(r#""last_hex":"fe21""#), "{sent}");
        assert_eq!(serde_json::from_str::<Reply>(&sent).unwrap(), offline);
        assert!(offline.to_string().contains(r#"last "\xfe!""#), "{offline}");
        let none = Reply::Offline(Offline {
            last: None,
            history: 0,
            ..match offline {
                Reply::Offline(o) => o,
                _ => unreachable!(),
            }
        });
        let sent = json(&none);
        assert!(sent.contains(r#""last":null,"#), "{sent}");
        assert!(!sent.contains("last_hex"), "{sent}");
        assert_eq!(serde_json::from_str::<Reply>(&sent).unwrap(), none);
    }

    #[test]
    fn hist_tells_no_chat_asked_from_an_empty_history() {
        let empty = |history| Reply::Hist {
            chats: Vec::new(),
            history,
            running: true,
        };
        assert_eq!(empty(0).to_string(), "the history is empty");
        assert_eq!(empty(5).to_string(), "0 chats asked (the history holds 5)");
    }

    #[test]
    fn the_wait_before_a_dial_is_rounded_up() {
        let row = |secs: f64| DialRow {
            addr: Ipv4Addr::LOCALHOST,
            failures: 2,
            retry_in: Some(Duration::from_secs_f64(secs)),
            queued: false,
        };
        let peers = |dialing: Vec<DialRow>, resolving| {
            Reply::Peers {
                peers: Vec::new(),
                dialing,
                resolving,
            }
            .to_string()
        };
        let shown = peers(vec![row(0.99), row(4.0), row(59.2)], Vec::new());
        assert!(shown.contains("next try in 1s (2 failed"), "{shown}");
        assert!(shown.contains("next try in 4s"), "{shown}");
        assert!(shown.contains("next try in 1m00s"), "{shown}");
        assert!(!shown.contains("host names"), "{shown}");
        let waiting = |queued| DialRow {
            addr: Ipv4Addr::LOCALHOST,
            failures: 0,
            retry_in: None,
            queued,
        };
        let shown = peers(vec![waiting(false), waiting(true)], Vec::new());
        assert!(
            shown.contains("127.0.0.1        connecting now (0 failed")
                && shown.contains("127.0.0.1        queued (0 failed"),
            "{shown}"
        );
        let name = ResolvingRow {
            name: "chat.example.org".into(),
            reason: "Temporary failure in name resolution".into(),
            retry_in: Some(Duration::from_secs_f64(7.5)),
        };
        let shown = peers(Vec::new(), vec![name]);
        assert!(
            shown.contains(
                "host names not resolved yet:\nchat.example.org next try in 8s \
                 (Temporary failure in name resolution)"
            ),
            "{shown}"
        );
    }

    #[test]
    fn the_last_event_of_a_stopping_node_is_stopped() {
        assert_eq!(json(&Line::Stopped), r#"{"event":"stopped"}"#);
        assert_eq!(Line::Stopped.to_string(), "the node stopped");
    }
}
