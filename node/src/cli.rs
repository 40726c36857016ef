//! The command line: the node's flags and the subcommands, parsed by clap
//! with value parsers that refuse what cannot work (exit status 2).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::resolver;

/// The network-wide port (PROTOCOL.md).
pub const DEFAULT_PORT: u16 = 51511;
/// Mining threads allowed per core: more only adds contention.
const THREADS_PER_CORE: usize = 8;
/// The longest read timeout: a day.
const MAX_READ_TIMEOUT: f64 = 86_400.0;
/// The smallest size limit: room for a few chats and a small PeerList.
const MIN_SIZE_LIMIT: usize = 1024;

/// A peer of the blockchain chat network: mines chats into the shared MD5
/// proof-of-work history and replicates it with its peers.
///
/// With no subcommand, runs the node: it connects to the given peers and
/// reads commands at its prompt (type `help`).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// A subcommand, or none to run the node.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The node's flags.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a history: a data directory (its history.bin), an
    /// ArchiveResponse as it travels on the wire, or a bare history (a u32
    /// count, then the chats); `-` reads stdin. Streams: memory stays flat
    /// whatever the size. Exit status: 0 valid, 1 invalid, 2 unreadable or
    /// undecodable.
    Verify {
        /// The file, data directory, or `-` for stdin.
        file: PathBuf,
    },
    /// Write the history of a data directory (--data-dir, or the default
    /// one of --bind) as an ArchiveResponse, to share or check it.
    #[command(arg = client_bind())]
    Export {
        /// Where to write it; `-` (the default) for stdout, unless stdout
        /// is a terminal.
        #[arg(short, long, value_name = "FILE", default_value = "-")]
        output: PathBuf,
    },
    /// Ask the running node of a data directory (--data-dir, or the default
    /// one of --bind) for its status; with no node running, read the data
    /// directory and say so.
    #[command(arg = client_bind())]
    Status {
        /// One JSON document (docs/CONTROL.md).
        #[arg(long)]
        json: bool,
    },
    /// Ask the running node for its connections and the addresses it is
    /// still trying.
    #[command(arg = client_bind())]
    Peers {
        /// One JSON document (docs/CONTROL.md).
        #[arg(long)]
        json: bool,
    },
    /// The last N chats of the history (20 by default, at most 100000); with
    /// --follow, then every chat entering it, until the node stops (exit
    /// status 0) or goes away (1). With no node running, read the data
    /// directory and say so.
    #[command(arg = client_bind())]
    Hist {
        /// How many chats.
        #[arg(value_name = "N", default_value_t = crate::command::DEFAULT_HIST)]
        n: usize,
        /// Go on printing the history's changes as they happen.
        #[arg(short, long)]
        follow: bool,
        /// JSON documents, one a line (docs/CONTROL.md).
        #[arg(long)]
        json: bool,
    },
    /// Print the URL of the running node's page, with its token, as
    /// printed at its start: open it in a browser on this machine.
    #[command(arg = client_bind())]
    Url,
    /// Send a chat through the running node: mined and sent to every peer.
    /// Returns once the node has saved it (it survives a crash).
    #[command(arg = client_bind())]
    Chat {
        /// The text (the words are joined with spaces): 1 to 255 bytes of
        /// printable ASCII.
        #[arg(required = true, num_args = 1.., value_name = "TEXT")]
        text: Vec<String>,
        /// One JSON document (docs/CONTROL.md).
        #[arg(long)]
        json: bool,
    },
}

/// `--bind` as the subcommands that work on a data directory take it: the
/// value goes to [`NodeArgs::bind`] as from before the subcommand (clap
/// hands a global argument's value between the levels), only the help
/// differs.
fn client_bind() -> clap::Arg {
    clap::Arg::new("bind")
        .long("bind")
        .value_name("IP")
        .value_parser(clap::value_parser!(Ipv4Addr))
        .help(
            "Selects the data directory when --data-dir is not given: the default one of \
             the node bound to IP [default: 0.0.0.0]. Nothing listens on it or connects \
             from it here",
        )
}

/// The node's flags.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A peer to connect to at start (repeatable): an IPv4 address or a host
    /// name (resolved to its IPv4 address; while the resolver says to try
    /// again, as with no network yet, it is tried again every minute at
    /// most). None: start a new network alone.
    #[arg(long = "peer", value_name = "HOST", value_parser = parse_peer)]
    pub peers: Vec<PeerArg>,

    /// The IPv4 address to listen on and to connect from.
    #[arg(long, value_name = "IP", default_value_t = Ipv4Addr::UNSPECIFIED, global = true)]
    pub bind: Ipv4Addr,

    /// The network-wide port: every node of a network listens on it.
    #[arg(long, default_value_t = DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Mining threads, at most 8 per core [default: all cores].
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Where the history and pending chats live between runs [default:
    /// DATA/chatchain/BIND (the --bind address), DATA being $XDG_DATA_HOME
    /// or ~/.local/share on Linux].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Seconds (above 0, at most a day) a peer has to finish a message it
    /// started (plus one second per 64 KiB of it), an inbound peer to send
    /// its first one, and a peer that reads nothing to take what we queued,
    /// before the connection is closed.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_read_timeout)]
    pub read_timeout: Duration,

    /// Largest message but an ArchiveResponse, and most bytes of an
    /// archive's new chats held unchecked per connection (the connection is
    /// not read until they are checked): a size in bytes, with an optional
    /// suffix (KiB, MiB, GiB, kB, MB, GB), at least 1KiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Most bytes held unchecked across all connections; past it the
    /// connection holding the most is dropped. A size, as --max-message.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_buffered: usize,

    /// Most inbound connections at once. When full, a newcomer replaces the
    /// oldest inbound connection that has not sent a message yet, or is
    /// turned away. Also the most connections kept open after their end to
    /// finish a reply (the oldest is closed first).
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_inbound: usize,

    /// Most outgoing connection attempts in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connecting: usize,

    /// Level of the node's log (connection and protocol events): error,
    /// warn, info, debug, trace, or off for none. On stderr (above the
    /// prompt on a terminal), or in --log-file.
    #[arg(long, value_name = "LEVEL", env = "NODE_LOG", default_value = "warn", value_parser = parse_log_level)]
    pub log: log::LevelFilter,

    /// Serve the page (the chat in a browser) at IP:PORT instead of the
    /// default: the --bind address when it is a loopback one, else
    /// 127.0.0.1, port 51580. A non-loopback IP makes the page reachable
    /// from the network (said at start); the node does not start when the
    /// page cannot be served there.
    #[arg(long, value_name = "IP:PORT", conflicts_with = "no_http")]
    pub http: Option<SocketAddrV4>,

    /// Serve no page.
    #[arg(long)]
    pub no_http: bool,

    /// Append the log to this file instead of stderr (same levels).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Parses the command line; on an error (exit status 2) it says what is
/// wrong, with a hint for an IP address given without `--peer` (the
/// original Python program took it so).
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Cli {
    match Cli::try_parse_from(args) {
        Ok(cli) if cli.node.max_buffered < cli.node.max_message => Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--max-buffered ({} bytes) is below --max-message ({} bytes): one \
                     message in progress could never be held",
                    cli.node.max_buffered, cli.node.max_message
                ),
            )
            .exit(),
        Ok(cli) => cli,
        Err(mut e) => {
            if matches!(
                e.kind(),
                ErrorKind::InvalidSubcommand | ErrorKind::UnknownArgument
            ) && let Some(ContextValue::String(arg)) = e
                .get(ContextKind::InvalidSubcommand)
                .or_else(|| e.get(ContextKind::InvalidArg))
                .cloned()
                && arg.parse::<Ipv4Addr>().is_ok()
            {
                e.insert(
                    ContextKind::Suggested,
                    ContextValue::StyledStrs(vec![format!("did you mean --peer {arg}?").into()]),
                );
            }
            e.exit()
        }
    }
}

/// A `--peer` as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerArg {
    /// An address, given or resolved.
    Addr(Ipv4Addr),
    /// A host name the resolver could not resolve yet ("try again"): the
    /// node resolves it again once running (`resolver.rs`).
    Later {
        /// The name.
        name: String,
        /// The resolver's answer, in words.
        reason: String,
    },
}

fn parse_peer(text: &str) -> Result<PeerArg, String> {
    if let Ok(addr) = text.parse() {
        return Ok(PeerArg::Addr(addr));
    }
    // The resolver takes "1.2.3" for 1.2.0.3 and "127.1" for 127.0.0.1: a
    // name without a letter is a mistyped address, not a host name.
    if !text.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "'{text}' is not an IPv4 address (four numbers 0-255 with dots) nor a host name"
        ));
    }
    match resolver::resolve(text) {
        Ok(addr) => Ok(PeerArg::Addr(addr)),
        Err(e) if e.temporary => Ok(PeerArg::Later {
            name: text.to_string(),
            reason: e.reason,
        }),
        Err(e) => Err(format!("cannot resolve host name '{text}': {}", e.reason)),
    }
}

fn parse_threads(text: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = THREADS_PER_CORE * cores;
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "{n} is not between 1 and {max} ({THREADS_PER_CORE} per core, {cores} cores here)"
        )),
        Err(e) => Err(format!("'{text}': {e}")),
    }
}

/// A log level by name, any case; the error lists the names.
fn parse_log_level(text: &str) -> Result<log::LevelFilter, String> {
    text.parse().map_err(|_| {
        "a level (of --log, or NODE_LOG) is error, warn, info, debug, trace or off".to_string()
    })
}

fn parse_read_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|e| format!("'{text}' is not a number of seconds: {e}"))?;
    if secs > 0.0 && secs <= MAX_READ_TIMEOUT {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{text} is not a number of seconds above 0 and at most {MAX_READ_TIMEOUT} (a day)"
        ))
    }
}

/// A size in bytes with an optional unit: `65536`, `64KiB`, `64MiB`,
/// `1GiB`, `100kB`, `10MB`, `1GB` (`K`, `M`, `G` alone are binary).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let digits = text
        .trim()
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.trim().len());
    let (number, unit) = text.trim().split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        format!("'{text}' is not a size (a number, then an optional unit such as MiB)")
    })?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "'{other}' is not a unit of size: use B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    let bytes = number
        .checked_mul(unit)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if bytes < MIN_SIZE_LIMIT {
        return Err(format!("{text} is below the smallest limit, 1KiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn sizes_take_units_and_refuse_what_cannot_work() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("100000"), Ok(100_000));
        assert_eq!(parse_size("100 kB"), Ok(100_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").unwrap_err().contains("below"));
        assert!(parse_size("64 parsecs").unwrap_err().contains("not a unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn log_levels_are_named_in_the_error() {
        assert_eq!(parse_log_level("DEBUG"), Ok(log::LevelFilter::Debug));
        assert!(
            parse_log_level("bogus")
                .unwrap_err()
                .contains("error, warn, info")
        );
    }

    #[test]
    fn read_timeouts_are_above_zero_and_at_most_a_day() {
        assert_eq!(parse_read_timeout("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-1", "1e30", "inf", "NaN", "soon"] {
            assert!(parse_read_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_subcommands_take_bind_anywhere_and_say_what_it_does_for_them() {
        Cli::command().debug_assert();
        for args in [
            &["node", "--bind", "127.0.0.9", "status"][..],
            &["node", "status", "--bind", "127.0.0.9"],
            &["node", "hist", "5", "--bind", "127.0.0.9", "--follow"],
        ] {
            let cli = parse(args);
            assert_eq!(cli.node.bind, Ipv4Addr::new(127, 0, 0, 9), "{args:?}");
        }
        assert_eq!(parse(["node", "peers"]).node.bind, Ipv4Addr::UNSPECIFIED);
        let help = |command: &mut clap::Command| command.render_help().to_string();
        let mut cli = Cli::command();
        assert!(help(&mut cli).contains("to listen on and to connect from"));
        for name in ["status", "peers", "hist", "chat", "export", "url"] {
            let text = help(cli.find_subcommand_mut(name).expect("a subcommand"));
            assert!(
                text.contains("Selects the data directory"),
                "{name}: {text}"
            );
            assert!(!text.contains("to listen on"), "{name}: {text}");
        }
    }

    #[test]
    fn peers_are_addresses_or_host_names() {
        let addr = |a, b, c, d| Ok(PeerArg::Addr(Ipv4Addr::new(a, b, c, d)));
        assert_eq!(parse_peer("127.0.0.5"), addr(127, 0, 0, 5));
        assert_eq!(parse_peer("localhost"), addr(127, 0, 0, 1));
        // A name that does not exist is refused; with no DNS server to
        // ask (no network), the resolver says "try again" instead.
        match parse_peer("no-such-host.invalid") {
            Err(e) => assert!(
                e.contains("cannot resolve host name 'no-such-host.invalid'"),
                "{e}"
            ),
            Ok(PeerArg::Later { name, .. }) => assert_eq!(name, "no-such-host.invalid"),
            Ok(other) => panic!("no-such-host.invalid parsed as {other:?}"),
        }
        assert!(
            parse_peer("1.2.3")
                .unwrap_err()
                .contains("not an IPv4 address")
        );
    }
}
