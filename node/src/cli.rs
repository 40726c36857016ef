//! The command line: the node's flags and the subcommands, parsed by clap
//! with value parsers that refuse what cannot work (exit status 2).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::command::Stage;
use crate::resolver;

/// The network-wide port (PROTOCOL.md).
pub const DEFAULT_PORT: u16 = 51511;
/// Mining threads allowed per core: more only adds contention.
const THREADS_PER_CORE: usize = 8;
/// The longest read timeout: a day.
const MAX_READ_TIMEOUT: f64 = 86_400.0;
/// The smallest size limit: room for a few chats and a small PeerList.
const MIN_SIZE_LIMIT: usize = 1024;

/// Examples under `-h`: the three most common uses.
const EXAMPLES: &str = "Examples:
  chatchain --peer 192.168.1.10          join a network (type a line to chat, /help at the prompt)
  chatchain                              start a new network of one
  chatchain status                       ask the running node how it is";

/// Examples under `--help`.
const LONG_EXAMPLES: &str = "Examples:
  chatchain --peer 192.168.1.10          join a network (type a line to chat, /help at the prompt)
  chatchain --threads 8 --peer chat.example.org
  chatchain                              start a new network of one
  chatchain --bind 127.0.0.2 --peer 127.0.0.1   a second node on the same machine
  chatchain status                       ask the running node how it is
  chatchain chat hello there             send a chat through the running node
  chatchain hist -f                      follow the history, like tail -f
  chatchain verify history.bin           check a history file

The same program is installed as `node` too. Completions: `chatchain completions bash`;
the manual page: `chatchain manpage` (README.md says where to put them).";

/// The version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHATCHAIN_COMMIT"),
    ")"
);

/// A peer of the blockchain chat network.
///
/// Mines chats into the shared MD5 proof-of-work history and replicates it
/// with its peers. With no subcommand, runs the node: it connects to the
/// given peers and reads lines at its prompt (a line is a chat; /help lists
/// the commands). The subcommands ask a running node, or read a history.
#[derive(Debug, Parser)]
#[command(
    name = "chatchain",
    version = VERSION,
    after_help = EXAMPLES,
    after_long_help = LONG_EXAMPLES
)]
pub struct Cli {
    /// A subcommand, or none to run the node.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The node's flags.
    #[command(flatten)]
    pub node: NodeArgs,

    /// Every setting, its value and where it came from (`node config`).
    #[arg(skip)]
    pub settings: Vec<crate::config::Setting>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a history file.
    ///
    /// A data directory (its history.bin), an
    /// ArchiveResponse as it travels on the wire, or a bare history (a u32
    /// count, then the chats); `-` reads stdin. Streams: memory stays flat
    /// whatever the size. Exit status: 0 valid, 1 invalid, 2 unreadable or
    /// undecodable.
    Verify {
        /// The file, data directory, or `-` for stdin.
        file: PathBuf,
    },
    /// Write a data directory's history as an ArchiveResponse.
    ///
    /// The data directory is --data-dir, or the default one of --bind; the
    /// archive is to share or check it.
    #[command(arg = client_bind())]
    Export {
        /// Where to write it; `-` (the default) for stdout, unless stdout
        /// is a terminal.
        #[arg(short, long, value_name = "FILE", default_value = "-")]
        output: PathBuf,
    },
    /// Ask the running node how it is.
    ///
    /// The node of a data directory (--data-dir, or the default one of
    /// --bind): its state, process id, uptime and version. With no node
    /// running, read the data directory and say so (exit status 3).
    #[command(arg = client_bind())]
    Status {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask the running node for its connections.
    ///
    /// Then the addresses it is still trying.
    #[command(arg = client_bind())]
    Peers {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the last N chats of the history.
    ///
    /// 20 by default, at most 100000; with --follow, then every chat entering it, until the node stops (exit
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
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the URL of the running node's page, with its token.
    ///
    /// As printed at its start: open it in a browser on this machine.
    #[command(arg = client_bind())]
    Url {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a chat through the running node.
    ///
    /// It is mined and sent to every peer. Returns once the node has saved
    /// it (it survives a crash), or once it reached the stage of --wait. A
    /// text that begins with '-' follows '--': `chat -- -hello`.
    #[command(arg = client_bind(), disable_help_flag = true, arg = long_help_flag())]
    Chat {
        /// The text (the words are joined with spaces): 1 to 255 bytes of
        /// printable ASCII.
        #[arg(required = true, num_args = 1.., value_name = "TEXT")]
        text: Vec<String>,
        /// Answer once the chat is saved, mined (its index and digest), or
        /// sent to at least one peer.
        #[arg(long, value_enum, value_name = "STAGE", default_value_t = Stage::Saved)]
        wait: Stage,
        /// The bound of --wait mined|sent, in seconds: past it, exit status
        /// 6.
        #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_read_timeout)]
        timeout: Duration,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop the running node cleanly (as SIGTERM); returns once it has
    /// saved what it holds.
    #[command(arg = client_bind())]
    Stop {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Have the running node dial HOST now, and again whenever it is lost
    /// (as a --peer).
    #[command(arg = client_bind())]
    Connect {
        /// An IPv4 address, or a host name (resolved here).
        #[arg(value_name = "HOST", value_parser = parse_host)]
        host: Ipv4Addr,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Close the running node's connections with ADDR; it is no longer
    /// dialed again when lost.
    #[command(arg = client_bind())]
    Disconnect {
        /// The peer's IPv4 address.
        #[arg(value_name = "ADDR")]
        addr: Ipv4Addr,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ban ADDR: its connections close, and it is neither dialed nor
    /// accepted nor passed on in PeerLists until the ban ends. Bans are
    /// kept in the data directory across restarts.
    #[command(arg = client_bind())]
    Ban {
        /// The IPv4 address.
        #[arg(value_name = "ADDR")]
        addr: Ipv4Addr,
        /// How long: seconds, or with a unit (30m, 2h, 7d), or forever.
        #[arg(value_name = "DURATION", default_value = crate::command::DEFAULT_BAN, value_parser = parse_ban)]
        duration: String,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lift the ban of ADDR.
    #[command(arg = client_bind())]
    Unban {
        /// The IPv4 address.
        #[arg(value_name = "ADDR")]
        addr: Ipv4Addr,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The banned addresses, with the time each ban has left.
    #[command(arg = client_bind())]
    Bans {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set the log level of the running node (as --log): error, warn,
    /// info, debug, trace or off.
    #[command(arg = client_bind())]
    Log {
        /// The level.
        #[arg(value_name = "LEVEL", value_parser = parse_log_level)]
        level: log::LevelFilter,
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Each setting (flag) in effect: its value, and where it came from:
    /// flag, env (CHATCHAIN_...), file (PATH:LINE), or default.
    #[command(arg = client_bind())]
    Config {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The running node's figures in the Prometheus text format
    /// (OpenMetrics), for scrapers.
    #[command(arg = client_bind())]
    Metrics {
        /// How to reach the node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the shell completion script for SHELL.
    ///
    /// README.md says where to put it.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page.
    ///
    /// In roff: `chatchain manpage | man -l -` shows it.
    Manpage,
}

/// Writes the shell completion script for `shell`, for the program named
/// as it was run (`chatchain` or `node`), to stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(
        shell,
        &mut command,
        crate::program_name(),
        &mut std::io::stdout(),
    );
}

/// Writes the manual page (roff) to stdout.
///
/// # Errors
/// Writing to stdout failed.
pub fn manpage() -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())
}

/// `--help` alone, for `chat`: `-h` would be taken from a chat such as
/// `-hello`, printing the help instead of saying what to do.
fn long_help_flag() -> clap::Arg {
    clap::Arg::new("help")
        .long("help")
        .action(clap::ArgAction::Help)
        .help("Print help")
}

/// The flags of every subcommand that talks to a running node.
#[derive(Debug, Clone, Copy, Args)]
pub struct ClientArgs {
    /// One JSON document per answer, failures included (docs/CONTROL.md).
    #[arg(long)]
    pub json: bool,
    /// Wait for a node that is starting, up to SECS seconds (30 without a
    /// value), before saying it is not running.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "30",
        value_parser = parse_read_timeout
    )]
    pub wait_start: Option<Duration>,
}

/// `--bind` as the subcommands that work on a data directory take it: the
/// value goes to [`NodeArgs::bind`] as from before the subcommand (clap
/// hands a global argument's value between the levels), only the help
/// differs.
fn client_bind() -> clap::Arg {
    clap::Arg::new("bind")
        .long("bind")
        .env("CHATCHAIN_BIND")
        .value_name("IP")
        .value_parser(parse_bind)
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
    /// name.
    ///
    /// A host name is resolved to its IPv4 address; while the resolver says
    /// to try again, as with no network yet, it is tried again every minute
    /// at most. An address may name the network's port (`IP:51511`). None:
    /// start a new network alone.
    #[arg(long = "peer", value_name = "HOST", env = "CHATCHAIN_PEER", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<PeerArg>,

    /// The IPv4 address (or host name) to listen on and to connect from.
    ///
    /// Several nodes on one machine each take their own: 127.0.0.1,
    /// 127.0.0.2, ...
    #[arg(long, value_name = "IP", env = "CHATCHAIN_BIND", default_value_t = Ipv4Addr::UNSPECIFIED, global = true, value_parser = parse_bind)]
    pub bind: Ipv4Addr,

    /// The network-wide port.
    ///
    /// Every node of a network listens on it.
    #[arg(long, env = "CHATCHAIN_PORT", default_value_t = DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// The compact relay extension's port (docs/EXTENSION.md), the same on
    /// every node of a network [default: the network port + 1].
    ///
    /// Nodes of this implementation that both offer it send each other a
    /// new chat and not the whole history; other peers see the standard
    /// protocol only. A node is found to speak it by dialing this port.
    #[arg(long, hide_short_help = true, value_name = "PORT", env = "CHATCHAIN_RELAY_PORT", conflicts_with = "no_relay", value_parser = clap::value_parser!(u16).range(1..))]
    pub relay_port: Option<u16>,

    /// Offer and use no relay extension: the standard protocol only.
    #[arg(long, hide_short_help = true, env = "CHATCHAIN_NO_RELAY")]
    pub no_relay: bool,

    /// Mining threads, at most 8 per core [default: all cores].
    #[arg(long, value_name = "N", env = "CHATCHAIN_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Where the history and pending chats live between runs.
    ///
    /// [default:
    /// DATA/chatchain/BIND (the --bind address), DATA being $XDG_DATA_HOME
    /// or ~/.local/share on Linux].
    #[arg(long, value_name = "DIR", env = "CHATCHAIN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Seconds (above 0, at most a day) a peer has to finish a message it
    /// started (plus one second per 64 KiB of it), an inbound peer to send
    /// its first one, and a peer that reads nothing to take what we queued,
    /// before the connection is closed.
    #[arg(long, hide_short_help = true, value_name = "SECS", env = "CHATCHAIN_READ_TIMEOUT", default_value = "30", value_parser = parse_read_timeout)]
    pub read_timeout: Duration,

    /// Largest message but an ArchiveResponse, and most bytes of an
    /// archive's new chats held unchecked per connection (the connection is
    /// not read until they are checked): a size in bytes, with an optional
    /// suffix (KiB, MiB, GiB, kB, MB, GB), at least 1KiB.
    #[arg(long, hide_short_help = true, value_name = "SIZE", env = "CHATCHAIN_MAX_MESSAGE", default_value = "64MiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Most bytes held unchecked across all connections; past it the
    /// connection holding the most is dropped. A size, as --max-message.
    #[arg(long, hide_short_help = true, value_name = "SIZE", env = "CHATCHAIN_MAX_BUFFERED", default_value = "256MiB", value_parser = parse_size)]
    pub max_buffered: usize,

    /// Most inbound connections at once. When full, a newcomer replaces the
    /// oldest inbound connection that has not sent a message yet, or is
    /// turned away. Also the most connections kept open after their end to
    /// finish a reply (the oldest is closed first).
    #[arg(long, hide_short_help = true, value_name = "N", env = "CHATCHAIN_MAX_INBOUND", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_inbound: usize,

    /// Most outgoing connection attempts in flight at once.
    #[arg(long, hide_short_help = true, value_name = "N", env = "CHATCHAIN_MAX_CONNECTING", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connecting: usize,

    /// Level of the node's log: error, warn, info, debug, trace, or off.
    ///
    /// The log says connection and protocol events. On stderr (above the
    /// prompt on a terminal), or in --log-file.
    #[arg(long, value_name = "LEVEL", env = "CHATCHAIN_LOG", default_value = "warn", value_parser = parse_log_level)]
    pub log: log::LevelFilter,

    /// Serve the page (the chat in a browser) at IP:PORT.
    ///
    /// The default is the --bind address when it is a loopback one, else
    /// 127.0.0.1, port 51580. A non-loopback IP makes the page reachable
    /// from the network (said at start); the node does not start when the
    /// page cannot be served there.
    #[arg(
        long,
        value_name = "IP:PORT",
        env = "CHATCHAIN_HTTP",
        conflicts_with = "no_http"
    )]
    pub http: Option<SocketAddrV4>,

    /// Serve no page.
    #[arg(long, env = "CHATCHAIN_NO_HTTP")]
    pub no_http: bool,

    /// Append the log to this file instead of stderr (same levels). SIGHUP
    /// makes the node open it again by its path (for logrotate).
    #[arg(
        long,
        hide_short_help = true,
        value_name = "FILE",
        env = "CHATCHAIN_LOG_FILE"
    )]
    pub log_file: Option<PathBuf>,

    /// A TOML file of settings, keyed by the flags' long names [default:
    /// chatchain.toml in the data directory, if there]. A flag beats the
    /// environment (CHATCHAIN_ and the flag's name, as CHATCHAIN_DATA_DIR),
    /// which beats the file, which beats the default.
    #[arg(long, value_name = "FILE", env = "CHATCHAIN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Parses the command line, the environment and the configuration file
/// (`config.rs`); on an error (exit status 2) it says what is wrong, with
/// a hint for an IP address given without `--peer` (the original Python
/// program took it so). `NODE_LOG`, the older name of `CHATCHAIN_LOG`, is
/// read when that is not set.
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Cli {
    try_parse(args).unwrap_or_else(|e| e.exit())
}

/// [`parse`], returning the error instead of exiting.
fn try_parse(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Cli, clap::Error> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if std::env::var_os("CHATCHAIN_LOG").is_none() {
        command = command.mut_arg("log", |arg| arg.env("NODE_LOG"));
    }
    let first = command
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| hint(e, &args))?;
    let (layered, mut settings) = crate::config::layer(&first, &args)
        .map_err(|why| Cli::command().error(ErrorKind::InvalidValue, why))?;
    let matches = command
        .try_get_matches_from(&layered)
        .map_err(|e| hint(e, &args))?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| hint(e, &args))?;
    crate::config::fill_values(&mut settings, &matches);
    cli.settings = settings;
    if cli.node.max_buffered < cli.node.max_message {
        return Err(Cli::command().error(
            ErrorKind::ArgumentConflict,
            format!(
                "--max-buffered ({} bytes) is below --max-message ({} bytes): one \
                 message in progress could never be held",
                cli.node.max_buffered, cli.node.max_message
            ),
        ));
    }
    Ok(cli)
}

/// clap's error `e` with a hint: `--peer` for an IP address given alone,
/// `--` for a chat text that begins with '-' (`chat -hello`: clap names
/// only '-h').
fn hint(mut e: clap::Error, args: &[OsString]) -> clap::Error {
    let invalid = match e.kind() {
        ErrorKind::InvalidSubcommand | ErrorKind::UnknownArgument => e
            .get(ContextKind::InvalidSubcommand)
            .or_else(|| e.get(ContextKind::InvalidArg))
            .cloned(),
        _ => None,
    };
    if let Some(ContextValue::String(arg)) = invalid {
        if arg.parse::<Ipv4Addr>().is_ok() {
            e.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![format!("did you mean --peer {arg}?").into()]),
            );
        } else if let Some(word) = args
            .iter()
            .filter_map(|a| a.to_str())
            .find(|a| a.starts_with(&arg) && a.len() > arg.len())
        {
            e.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![
                    format!("a text that begins with '-' follows '--': chat -- {word}").into(),
                ]),
            );
        }
    }
    e
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

/// `--peer`: an address or a host name, with the network's port or none.
fn parse_peer(text: &str) -> Result<PeerArg, String> {
    if let Some((host, port)) = text.rsplit_once(':')
        && let Ok(port) = port.parse::<u16>()
    {
        if port == DEFAULT_PORT {
            return parse_peer(host);
        }
        return Err(format!(
            "'{text}' names port {port}, but a network's nodes all listen on one port \
             ({DEFAULT_PORT}, or the --port the whole network runs with): give --peer {host}, \
             and --port {port} if that network runs on it"
        ));
    }
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

/// `node connect HOST`: an address, or a name resolved now.
fn parse_host(text: &str) -> Result<Ipv4Addr, String> {
    match parse_peer(text)? {
        PeerArg::Addr(addr) => Ok(addr),
        PeerArg::Later { reason, .. } => {
            Err(format!("cannot resolve host name '{text}' now: {reason}"))
        }
    }
}

/// A ban's duration, checked as the node checks it.
fn parse_ban(text: &str) -> Result<String, String> {
    crate::command::ban_span(text).map(|_| text.to_string())
}

/// `--bind`: an IPv4 address, or a host name resolved to one.
fn parse_bind(text: &str) -> Result<Ipv4Addr, String> {
    match parse_peer(text)? {
        PeerArg::Addr(addr) => Ok(addr),
        PeerArg::Later { reason, .. } => Err(format!(
            "cannot resolve host name '{text}' now ({reason}): give an IPv4 address"
        )),
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
pub fn parse_log_level(text: &str) -> Result<log::LevelFilter, String> {
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
        for name in [
            "status",
            "peers",
            "hist",
            "chat",
            "export",
            "stop",
            "connect",
            "disconnect",
            "ban",
            "unban",
            "bans",
            "log",
            "metrics",
            "url",
        ] {
            let text = help(cli.find_subcommand_mut(name).expect("a subcommand"));
            assert!(
                text.contains("Selects the data directory"),
                "{name}: {text}"
            );
            assert!(!text.contains("to listen on"), "{name}: {text}");
        }
    }

    #[test]
    fn every_flag_of_the_node_has_its_environment_variable() {
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) else {
                continue;
            };
            let want = format!("CHATCHAIN_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
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
        assert_eq!(parse_peer("127.0.0.5:51511"), addr(127, 0, 0, 5));
        let other_port = parse_peer("127.0.0.5:4000").unwrap_err();
        assert!(
            other_port.contains("one port") && other_port.contains("--port 4000"),
            "{other_port}"
        );
        assert_eq!(parse_bind("localhost"), Ok(Ipv4Addr::LOCALHOST));
    }

    /// `chat -hello` is no `-h`: refused with clap's tip (`-- -hello`),
    /// and `chat -- -hello` sends it.
    #[test]
    fn a_chat_that_begins_with_a_hyphen_follows_two_dashes() {
        let refused = try_parse(["node", "chat", "-hello"]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::UnknownArgument);
        assert!(
            refused.to_string().contains("follows '--': chat -- -hello"),
            "{refused}"
        );
        match parse(["node", "chat", "--json", "--", "-hello", "there"]).command {
            Some(Command::Chat { text, client, .. }) => {
                assert_eq!((text[0].as_str(), client.json), ("-hello", true))
            }
            other => panic!("{other:?}"),
        }
    }
}
