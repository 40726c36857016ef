//! `node`: a peer of the chat network (see README.md).

mod cli;
mod command;
mod inbox;
mod intake;
mod log_limit;
mod prompt;
mod protocol;
mod reactor;
mod store;
mod text;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use mio::Poll;
use wire::ChunkPool;

use cli::{Cli, NodeArgs};
use protocol::{Config, Node, OwnChats};
use reactor::{Endpoint, Limits, MiningThread, Reactor, ValidationThread, Workers};
use store::{DataDir, StoreThread};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(cli::Command::Verify { file }) => verify::run(&file),
        None => match run(cli.node) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("node: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn default_data_dir(bind: std::net::Ipv4Addr) -> Result<PathBuf, String> {
    let base = dirs::data_local_dir()
        .ok_or("no per-user data directory is known here; give --data-dir")?;
    Ok(base.join("chatchain").join(bind.to_string()))
}

fn run(args: NodeArgs) -> Result<(), String> {
    env_logger::Builder::new()
        .filter_level(args.log)
        .format_timestamp_millis()
        .init();
    if !(args.read_timeout > 0.0 && args.read_timeout.is_finite()) {
        return Err(format!(
            "--read-timeout must be a positive number of seconds, not {}",
            args.read_timeout
        ));
    }
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir(args.bind)?,
    };
    let (dir, recovered) = DataDir::open(&data_dir)?;
    let endpoint = Endpoint {
        bind: args.bind,
        port: args.port,
    };
    let listener = reactor::listen(endpoint)
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.bind, args.port))?;

    for note in &recovered.notes {
        println!("{note}");
    }
    let now = Instant::now();
    let mut history = recovered.history;
    // Incoming archives share their chunks with ours through the pool.
    let mut pool = ChunkPool::new();
    history.share_chunks(&mut pool);
    let own = OwnChats::restore(recovered.own, &history);
    println!(
        "listening on {}:{}; {} chats in the history, {} pending; data in {}",
        args.bind,
        args.port,
        history.len(),
        own.pending(),
        data_dir.display()
    );
    let config = Config {
        bind: args.bind,
        port: args.port,
        bootstrap: args.peers,
        max_connecting: args.max_connecting,
        threads,
        data_dir: data_dir.display().to_string(),
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let node = Node::new(config, history, own, seed, now);

    let poll = Poll::new().map_err(|e| format!("cannot start the event loop: {e}"))?;
    let waker = reactor::waker(&poll).map_err(|e| format!("cannot start the event loop: {e}"))?;
    let (mailer, inbox) = inbox::channel(waker);
    let workers = Workers {
        mining: MiningThread::spawn(
            miner::Miner::new(threads),
            miner::NETWORK_DIFFICULTY,
            mailer.clone(),
        ),
        validation: ValidationThread::spawn(mailer.clone()),
        store: StoreThread::spawn(dir, mailer.clone()),
        printer: prompt::spawn(mailer),
    };
    let limits = Limits {
        read_timeout: Duration::from_secs_f64(args.read_timeout),
        max_message: args.max_message,
        max_inbound: args.max_inbound,
        max_buffered: args.max_buffered,
    };
    let reactor = Reactor::new(poll, listener, inbox, node, workers, endpoint, limits, pool)
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    println!("stopped; the history is saved in {}", data_dir.display());
    Ok(())
}
