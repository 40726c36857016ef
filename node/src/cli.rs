use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The network-wide port (PROTOCOL.md).
pub const DEFAULT_PORT: u16 = 51511;

/// A peer of the blockchain chat network: mines chats into the shared MD5
/// proof-of-work history and replicates it with its peers.
///
/// With no subcommand, runs the node: it connects to the given peers and
/// reads commands at its prompt (type `help`).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a history file: one ArchiveResponse message as it travels on
    /// the wire. Exit status: 0 valid, 1 invalid, 2 unreadable or
    /// undecodable.
    Verify {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A peer to connect to at start (repeatable). None: start a new
    /// network alone.
    #[arg(long = "peer", value_name = "IP")]
    pub peers: Vec<Ipv4Addr>,

    /// The IPv4 address to listen on and to connect from.
    #[arg(long, value_name = "IP", default_value_t = Ipv4Addr::UNSPECIFIED)]
    pub bind: Ipv4Addr,

    /// The network-wide port: every node of a network listens on it.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Mining threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Where the history and pending chats live between runs [default:
    /// DATA/chatchain/BIND (the --bind address), DATA being $XDG_DATA_HOME or
    /// ~/.local/share on Linux].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Seconds a peer has to finish a message it started (and an inbound
    /// peer to send its first one), and a peer that reads nothing has to
    /// take what we queued, before the connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub read_timeout: f64,

    /// Largest message accepted, in bytes; a peer that sends more is cut
    /// off when it crosses the limit. The default, 64 MiB, holds about
    /// 870,000 chats.
    #[arg(long, value_name = "BYTES", default_value_t = wire::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,

    /// Most bytes of partial messages held across all connections; past it
    /// the connection holding the most is dropped. Default: 256 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    pub max_buffered: usize,

    /// Most inbound connections at once. When full, a newcomer replaces the
    /// oldest inbound connection that has not sent a message yet, or is
    /// turned away.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_inbound: usize,

    /// Most outgoing connection attempts in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_connecting: usize,

    /// Log level of connection and protocol events, on stderr: error, warn,
    /// info, debug or trace.
    #[arg(long, value_name = "LEVEL", env = "NODE_LOG", default_value = "warn")]
    pub log: log::LevelFilter,
}
