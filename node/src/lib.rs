//! `chatchain` (also installed as `node`): a peer of the chat network (see
//! README.md). Both binaries call [`main`].

mod cli;
mod command;
mod config;
mod control;
mod inbox;
mod intake;
mod log_limit;
mod metrics;
mod offline;
mod open_files;
mod prompt;
mod protocol;
mod reactor;
mod resolver;
mod screen;
mod store;
mod terminal;
#[cfg(test)]
mod test_support;
mod text;
mod web;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use env_logger::Target;
use log::{LevelFilter, warn};
use mio::Poll;
use wire::ChunkPool;

use cli::{NodeArgs, PeerArg};
use control::Request;
use control::server::ControlServer;
use protocol::{Config, Node, OwnChats, ResolvingRow, StatusBar};
use reactor::{Endpoint, Limits, Listeners, MiningThread, Reactor, ValidationThread, Workers};
use screen::{LogSink, Screen};
use store::{DataDir, StoreThread};
use terminal::TerminalGuard;

/// The command history's file in the data directory.
const PROMPT_HISTORY: &str = "prompt-history";

/// The program: the node, or one of its subcommands.
pub fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) must fail the write that crosses it
    // (EFBIG: reported, and the node goes on) instead of killing the
    // process, as SIGXFSZ does by default.
    // SAFETY: signal(2) setting a disposition, before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = cli::parse(std::env::args_os());
    let node = cli.node;
    match cli.command {
        Some(cli::Command::Verify { file }) => offline::verify(&file),
        Some(cli::Command::Completions { shell }) => {
            cli::completions(shell);
            ExitCode::SUCCESS
        }
        Some(cli::Command::Manpage) => match cli::manpage() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("cannot write the manual page: {e}")),
        },
        Some(cli::Command::Export { output }) => match data_dir_of(&node) {
            Ok(dir) => offline::export(&dir, &output),
            Err(why) => fail(&why),
        },
        Some(cli::Command::Url { client }) => match data_dir_of(&node) {
            Ok(dir) => web::print_url(&dir, client.json),
            Err(why) => fail(&why),
        },
        Some(cli::Command::Config { json }) => {
            config::print(&cli.settings, json);
            ExitCode::SUCCESS
        }
        Some(client) => {
            let (request, client, timeout) = client_request(client);
            let options = control::client::Options {
                json: client.json,
                wait_start: client.wait_start,
                timeout,
            };
            match data_dir_of(&node) {
                Ok(dir) => control::client::run(&dir, &request, options),
                Err(why) => control::client::Failed {
                    why,
                    status: control::client::USAGE,
                    kind: "usage",
                }
                .exit(client.json),
            }
        }
        None => match run(node, TerminalGuard::save()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => fail(&why),
        },
    }
}

/// The request of a client subcommand, its flags, and the bound of `chat
/// --wait`.
fn client_request(command: cli::Command) -> (Request, cli::ClientArgs, Duration) {
    let plain = |request, client| (request, client, control::client::SAVE_WAIT);
    match command {
        cli::Command::Status { client } => plain(Request::Status, client),
        cli::Command::Peers { client } => plain(Request::Peers, client),
        cli::Command::Hist { n, follow, client } => plain(
            Request::Hist {
                n,
                follow,
                before: None,
            },
            client,
        ),
        cli::Command::Chat {
            text,
            wait,
            timeout,
            client,
        } => (
            Request::Chat {
                text: text.join(" "),
                wait,
            },
            client,
            timeout,
        ),
        cli::Command::Stop { client } => plain(Request::Stop, client),
        cli::Command::Connect { host, client } => plain(Request::Connect { addr: host }, client),
        cli::Command::Disconnect { addr, client } => plain(Request::Disconnect { addr }, client),
        cli::Command::Ban {
            addr,
            duration,
            client,
        } => plain(Request::Ban { addr, duration }, client),
        cli::Command::Unban { addr, client } => plain(Request::Unban { addr }, client),
        cli::Command::Bans { client } => plain(Request::Bans, client),
        cli::Command::Log { level, client } => plain(
            Request::Log {
                level: level.as_str().to_lowercase(),
            },
            client,
        ),
        cli::Command::Metrics { client } => plain(Request::Metrics, client),
        cli::Command::Verify { .. }
        | cli::Command::Export { .. }
        | cli::Command::Config { .. }
        | cli::Command::Completions { .. }
        | cli::Command::Manpage
        | cli::Command::Url { .. } => unreachable!("not a client subcommand"),
    }
}

/// Says why the node cannot go on, once; exit status 1.
fn fail(why: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{}: {why}", program_name());
    ExitCode::FAILURE
}

/// The name the program was run by (`chatchain` or `node`).
pub fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "chatchain".into())
}

/// A line on stdout; a closed stdout (`node | head -1`) is no reason to
/// stop.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// `--data-dir`, or the default one of `--bind`.
fn data_dir_of(args: &NodeArgs) -> Result<PathBuf, String> {
    match &args.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => default_data_dir(args.bind),
    }
}

fn default_data_dir(bind: Ipv4Addr) -> Result<PathBuf, String> {
    let base = dirs::data_local_dir()
        .ok_or("no per-user data directory is known here; give --data-dir")?;
    Ok(base.join("chatchain").join(bind.to_string()))
}

/// The relay port's listener and port, unless the extension is off: a
/// port given that cannot be listened on ends the start; the default one
/// (the network port + 1) in use is said, and the node goes on without the
/// extension.
fn listen_relay(args: &NodeArgs) -> Result<(Option<mio::net::TcpListener>, Option<u16>), String> {
    if args.no_relay {
        return Ok((None, None));
    }
    let Some(port) = args.relay_port.or(args.port.checked_add(1)) else {
        warn!("no relay port above the network port 65535: the relay extension is off");
        return Ok((None, None));
    };
    if port == args.port {
        return Err(format!(
            "--relay-port {port} is the network port (--port): the relay extension needs a \
             port of its own, the same on every node (default: the network port + 1)"
        ));
    }
    match reactor::listen(args.bind, port) {
        Ok(listener) => Ok((Some(listener), Some(port))),
        Err(e) if args.relay_port.is_some() => Err(format!(
            "the relay port (--relay-port): {}",
            cannot_listen(args.bind, port, &e)
        )),
        Err(e) => {
            warn!(
                "cannot listen on the relay port {}:{port} ({e}): the relay extension is off \
                 (--relay-port PORT to choose another, the same for every node)",
                args.bind
            );
            Ok((None, None))
        }
    }
}

/// Why the node cannot listen on `bind:port`, and what to do.
fn cannot_listen(bind: Ipv4Addr, port: u16, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {bind}:{port}: the address is in use: another program holds that \
             port (another node?). \
             To run several nodes on one machine, give each its own address: --bind \
             127.0.0.2, --bind 127.0.0.3, ... (each gets its own data directory)"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {bind}:{port}: {bind} is not an address of this machine \
             (--bind takes one of its addresses, 127.0.0.X, or 0.0.0.0 for all)"
        ),
        _ => format!("cannot listen on {bind}:{port}: {e}"),
    }
}

/// The log: the node's own modules at `--log`, other crates' warnings
/// only (the line editor logs keystrokes at debug). The level is the
/// process's maximum, so that `node log LEVEL` can change it later
/// ([`protocol::Action::SetLog`]): the filters let everything of ours through.
fn start_log(args: &NodeArgs) -> Result<LogSink, String> {
    let sink = LogSink::new(args.log_file.as_deref()).map_err(|e| {
        let path = args
            .log_file
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display();
        format!("cannot write the log file {path}: {e}")
    })?;
    env_logger::Builder::new()
        .filter_level(LevelFilter::Warn)
        .filter_module(env!("CARGO_CRATE_NAME"), LevelFilter::Trace)
        .format_timestamp_millis()
        .target(Target::Pipe(Box::new(sink.clone())))
        .init();
    log::set_max_level(args.log);
    Ok(sink)
}

/// The `--peer` addresses, and the host names to resolve later (each
/// said at the default log level, with when it is tried again); a peer
/// that is `bind` itself is said and left out.
fn split_peers(peers: Vec<PeerArg>, bind: Ipv4Addr) -> (Vec<Ipv4Addr>, Vec<ResolvingRow>) {
    let (mut bootstrap, mut unresolved) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for peer in peers {
        if !seen.insert(peer.clone()) {
            continue;
        }
        match peer {
            PeerArg::Addr(addr) if addr == bind => {
                warn!("--peer {addr} is this node's own address (--bind): not dialed");
            }
            PeerArg::Addr(addr) => bootstrap.push(addr),
            PeerArg::Later { name, reason } => {
                warn!(
                    "cannot resolve host name '{name}' now ({reason}): trying again in {} s, \
                     then at most every {} s",
                    resolver::FIRST_RETRY.as_secs(),
                    resolver::MAX_RETRY.as_secs()
                );
                unresolved.push(ResolvingRow {
                    name,
                    reason,
                    retry_in: Some(resolver::FIRST_RETRY),
                });
            }
        }
    }
    (bootstrap, unresolved)
}

fn run(args: NodeArgs, terminal: TerminalGuard) -> Result<(), String> {
    let log_sink = start_log(&args)?;
    let budget = open_files::fit(args.max_inbound);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let data_dir = data_dir_of(&args)?;
    // Before the data directory is made: a start that fails here leaves
    // nothing behind.
    let listener = reactor::listen(args.bind, args.port)
        .map_err(|e| cannot_listen(args.bind, args.port, &e))?;
    let (relay_listener, relay_port) = listen_relay(&args)?;
    let endpoint = Endpoint {
        bind: args.bind,
        port: args.port,
        relay_port,
    };
    control::check_path(&data_dir)?;
    let (dir, recovered) = DataDir::open(&data_dir)?;
    let control = ControlServer::bind(&data_dir.join(control::SOCKET_FILE)).map_err(|e| {
        format!(
            "cannot open the control socket in {}: {e}",
            data_dir.display()
        )
    })?;

    for note in &recovered.notes {
        say(note);
    }
    let now = Instant::now();
    let mut history = recovered.history;
    // Incoming archives share their chunks with ours through the pool.
    let mut pool = ChunkPool::new();
    history.share_chunks(&mut pool);
    let own = OwnChats::restore(recovered.own, &history);
    let (bootstrap, unresolved) = split_peers(args.peers, args.bind);
    say(&format!(
        "listening on {}:{}; {} in the history, {} pending; data in {}",
        args.bind,
        args.port,
        text::count(history.len(), "chat"),
        own.pending(),
        data_dir.display()
    ));
    let serve = match (args.no_http, args.http) {
        (true, _) => web::Serve::Off,
        (false, Some(addr)) => web::Serve::At(addr),
        (false, None) => web::Serve::Default,
    };
    if let Some(url) = web::start(serve, args.bind, &data_dir, args.read_timeout)? {
        say(&format!("the page: {url}"));
    }

    let poll = Poll::new().map_err(|e| format!("cannot start the event loop: {e}"))?;
    let waker = reactor::waker(&poll).map_err(|e| format!("cannot start the event loop: {e}"))?;
    let (mailer, inbox) = inbox::channel(waker);
    let screen = Screen::plain();
    let status = StatusBar {
        peers: 0,
        history: history.len(),
        pending: own.pending(),
    };
    prompt::spawn(
        mailer.clone(),
        &screen,
        data_dir.join(PROMPT_HISTORY),
        status,
    );
    for name in &unresolved {
        resolver::retry(name.name.clone(), mailer.clone());
    }
    log_sink.follow_screen(&screen);
    let config = Config {
        bind: args.bind,
        port: args.port,
        bootstrap,
        unresolved,
        max_connecting: args.max_connecting,
        max_outbound: budget.max_outbound,
        threads,
        data_dir: data_dir.display().to_string(),
        pid: std::process::id(),
        bans: recovered.bans,
        room: screen.is_editor(),
        relay_port: endpoint.relay_port,
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let node = Node::new(config, history, own, seed, now);
    let workers = Workers {
        mining: MiningThread::spawn(
            miner::Miner::new(threads),
            miner::NETWORK_DIFFICULTY,
            mailer.clone(),
        ),
        validation: ValidationThread::spawn(mailer.clone()),
        store: StoreThread::spawn(dir, mailer),
        screen: screen.clone(),
        control,
        log: log_sink,
    };
    let limits = Limits {
        read_timeout: args.read_timeout,
        max_message: args.max_message,
        max_inbound: budget.max_inbound,
        max_buffered: args.max_buffered,
    };
    let listeners = Listeners::new(listener, relay_listener);
    let reactor = Reactor::new(
        poll, listeners, inbox, node, workers, endpoint, limits, pool,
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let ran = reactor.run();
    // The editor lets go of the screen, the terminal is put back, then the
    // last lines are printed plainly.
    let print_rest = screen.stop();
    drop(terminal);
    print_rest();
    let pending = ran.map_err(|e| format!("event loop failed: {e}"))?;
    let kept = match pending {
        0 => String::new(),
        1 => "; 1 chat of yours is not mined yet: it is kept there and mined at the next start"
            .to_string(),
        n => format!(
            "; {n} chats of yours are not mined yet: they are kept there and mined at the next start"
        ),
    };
    say(&format!(
        "stopped; the history is saved in {}{kept}",
        data_dir.display()
    ));
    Ok(())
}
