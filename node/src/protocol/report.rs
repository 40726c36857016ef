//! What the state machine tells a person or a script: lines for the screen
//! ([`Line`]) and answers to commands ([`Reply`]), as data. `Display` gives
//! the prompt's text.

use std::fmt::{self, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use miner::JobStats;

use super::io::Direction;
use crate::text::printable;

/// A line for the screen: what entered or left the history, and notices.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Chat `index` entered the history. `mined` holds the job's figures
    /// when this node has just mined it.
    Chat {
        /// Its index in the history.
        index: usize,
        /// Its text, as received.
        text: Vec<u8>,
        /// Set when mined here just now.
        mined: Option<JobStats>,
    },
    /// Chats `from..=to` entered at once; they are not shown one by one
    /// (see `hist`), but the last few follow as `Chat` lines.
    Received {
        /// First index.
        from: usize,
        /// Last index not shown one by one.
        to: usize,
    },
    /// Our history was replaced from chat `from` on by a longer one: the
    /// `replaced` chats shown from there are gone (chats from `from` on
    /// follow as `Chat` lines), and `displaced` of ours are to be mined
    /// again.
    Switched {
        /// The first index that changed.
        from: usize,
        /// Chats shown before that the switch took away.
        replaced: usize,
        /// Our chats no longer in the history, to be mined again.
        displaced: usize,
    },
    /// Anything else worth a line (a warning, a failure to save).
    Notice(String),
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
                mined: Some(stats),
            } => write!(
                f,
                "#{index} {} (mined: {} tries in {:.1} ms, {:.1} MH/s)",
                printable(text),
                stats.tries,
                stats.elapsed.as_secs_f64() * 1e3,
                stats.hash_rate() / 1e6
            ),
            Line::Received { from, to } => {
                write!(f, "received chats #{from} to #{to} (see 'hist'); then:")
            }
            Line::Switched {
                from,
                replaced,
                displaced,
            } => {
                let s = if *replaced == 1 { "" } else { "s" };
                write!(
                    f,
                    "{replaced} chat{s} from #{from} on replaced by a longer history"
                )?;
                match displaced {
                    0 => Ok(()),
                    1 => write!(f, "; 1 of yours will be mined again"),
                    n => write!(f, "; {n} of yours will be mined again"),
                }
            }
            Line::Notice(text) => f.write_str(text),
        }
    }
}

/// A connection, as `peers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// Who dialed.
    pub direction: Direction,
    /// A second connection with the same address, closed once idle.
    pub duplicate: bool,
    /// How long ago it connected.
    pub connected_for: Duration,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes queued for it.
    pub bytes_out: u64,
}

/// An address being dialed or waiting for its next try, as `peers` shows
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct DialRow {
    /// The address.
    pub addr: Ipv4Addr,
    /// Failed connections in a row (refused, or ended within seconds).
    pub failures: u32,
    /// `None` while a dial is in flight or queued; else the wait left
    /// before the next try.
    pub retry_in: Option<Duration>,
}

/// Archives sent since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// ArchiveResponses.
    pub archives: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What the miner is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct Mining {
    /// The text of the first chat of the job.
    pub text: Vec<u8>,
    /// Chats in the job.
    pub chats: usize,
    /// Since the job was started.
    pub running_for: Duration,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The address the node listens on.
    pub bind: Ipv4Addr,
    /// The network port.
    pub port: u16,
    /// Connected peers (one per address).
    pub peers: usize,
    /// Chats in the history.
    pub history: usize,
    /// Chats of the history on disk.
    pub stored: usize,
    /// The last chat's text.
    pub last: Option<Vec<u8>>,
    /// Chats of ours not in the history.
    pub pending: usize,
    /// The job running, if any.
    pub mining: Option<Mining>,
    /// Mining threads.
    pub threads: usize,
    /// The figures of the last job that found its chats.
    pub last_job: Option<JobStats>,
    /// Archives sent since start.
    pub sent: Sent,
    /// Connections ended since start, by kind of ending.
    pub endings: Vec<(&'static str, u64)>,
    /// The data directory.
    pub data_dir: String,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `chat`: the chat is on disk (it survives a crash) and queued for
    /// mining, or already mined; `pending` chats of ours wait.
    Saved {
        /// Chats of ours not in the history.
        pending: usize,
    },
    /// `chat`: queued, but saving it failed: it is kept in memory only.
    NotSaved {
        /// Why, in words.
        reason: String,
    },
    /// `hist`: the chats asked for, with their index.
    Hist(Vec<(usize, Vec<u8>)>),
    /// `peers`.
    Peers {
        /// One row per connection.
        peers: Vec<PeerRow>,
        /// Addresses being dialed or waiting to be.
        dialing: Vec<DialRow>,
    },
    /// `status`.
    Status(Status),
    /// `help`.
    Help(String),
}

fn ago(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
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
            Reply::Hist(chats) if chats.is_empty() => f.write_str("the history is empty"),
            Reply::Hist(chats) => {
                let mut out = String::new();
                for (index, text) in chats {
                    let _ = writeln!(out, "#{index} {}", printable(text));
                }
                f.write_str(out.trim_end())
            }
            Reply::Peers { peers, dialing } => write_peers(f, peers, dialing),
            Reply::Status(status) => write_status(f, status),
            Reply::Help(text) => f.write_str(text),
        }
    }
}

fn write_peers(f: &mut fmt::Formatter<'_>, peers: &[PeerRow], dialing: &[DialRow]) -> fmt::Result {
    let mut out = String::new();
    if peers.is_empty() {
        out.push_str("no peers connected\n");
    } else {
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:>10} {:>12} {:>12}",
            "address", "direction", "since", "bytes in", "bytes out"
        );
        for peer in peers {
            let direction = format!(
                "{:?}{}",
                peer.direction,
                if peer.duplicate { "*" } else { "" }
            )
            .to_lowercase();
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:>10} {:>12} {:>12}",
                peer.addr.to_string(),
                direction,
                format!("{} ago", ago(peer.connected_for)),
                peer.bytes_in,
                peer.bytes_out
            );
        }
        if peers.iter().any(|p| p.duplicate) {
            out.push_str("(* a second connection with the same address, closed once idle)\n");
        }
    }
    if !dialing.is_empty() {
        out.push_str("still trying:\n");
        for dial in dialing {
            let when = match dial.retry_in {
                None => "connecting now".to_string(),
                Some(wait) => format!("next try in {}", ago(wait)),
            };
            let _ = writeln!(
                out,
                "{:<16} {when} ({} failed in a row)",
                dial.addr.to_string(),
                dial.failures
            );
        }
    }
    f.write_str(out.trim_end())
}

fn write_status(f: &mut fmt::Formatter<'_>, s: &Status) -> fmt::Result {
    let last = s.last.as_ref().map_or("(none)".to_string(), |text| {
        format!("\"{}\"", printable(text))
    });
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
    let last_job = s.last_job.map_or("none yet".to_string(), |j| {
        format!(
            "{} tries in {:.1} ms, {:.1} MH/s",
            j.tries,
            j.elapsed.as_secs_f64() * 1e3,
            j.hash_rate() / 1e6
        )
    });
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
        "address:   {}:{}\npeers:     {}\nhistory:   {} chats, last {last}\non disk:   {} chats\npending:   {} chats\nmining:    {mining}\nlast job:  {last_job}\nsent:      {} archives, {} bytes\nclosed:    {endings}\ndata dir:  {}",
        s.bind,
        s.port,
        s.peers,
        s.history,
        s.stored,
        s.pending,
        s.sent.archives,
        s.sent.bytes,
        s.data_dir
    )
}
