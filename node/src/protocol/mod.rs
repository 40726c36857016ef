//! The node's behaviour as a state machine with no sockets, threads or
//! clocks in it: [`Node::handle`] takes an [`Event`] and the current time,
//! and queues [`Action`]s for the reactor to carry out. Tests drive it with
//! a fake clock and no network (`tests.rs`), and many of them as a
//! simulated network in virtual time (`sim.rs`).
//!
//! Its parts, each owning its state:
//! - `peers.rs`: the connections and what we know of each peer;
//! - `addrbook.rs`: which addresses to dial, when, and how often;
//! - `mining.rs`: the job in flight, backoff after lost races, figures;
//! - `archive.rs`: which history wins, and whom to relay it to;
//! - `network.rs`: peers coming and going, the small messages, timers;
//! - `commands.rs`: what the prompt's and the control socket's commands do;
//! - `bans.rs`: banned addresses; `watch.rs`: chats awaited at a stage;
//! - `counts.rs`: the figures the metrics read;
//! - `own.rs`: the chats typed here, until they are in the history;
//! - `feed.rs`: the exact account of the history's changes, for scripts;
//! - `room.rs`: what a person at the terminal is shown;
//! - `report.rs`, `io.rs`: what goes out, and the doors in and out.

mod addrbook;
mod archive;
mod bans;
mod commands;
mod counts;
mod feed;
mod io;
mod mining;
mod network;
mod own;
mod peers;
mod relay;
mod report;
mod room;
mod watch;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::{History, Message};

use crate::command::Stage;
use crate::log_limit::LogLimit;
use addrbook::AddressBook;
pub use counts::{Counts, Scrape, Timed};
use feed::Feed;
pub use io::{
    Action, Archive, ConnId, Dialect, Direction, Ending, Event, Mined, Origin, Payload, Save,
    Saved, Tip,
};
use mining::Mining;
use network::Timers;
pub use own::{Digest, OwnChats};
use peers::Peers;
pub use report::{BanRow, HistChat, Line, Offline, Reply, ResolvingRow, Sent, Why};
use room::Room;
pub use room::{ScreenLine, StatusBar};

/// A failure to save is said on the screen at most this often.
const SAVE_WARNING_EVERY: Duration = Duration::from_secs(60);

/// A save of ours awaiting the store's word.
#[derive(Debug, Clone, Copy)]
enum Unacked {
    /// Our chat `id` typed at `Origin`, which is told once it is on disk
    /// (or, for a later [`Stage`], watched from then on).
    Chat(Origin, own::OwnId, Stage),
    /// The first `copies` copies of our chat `id`, which may leave the node
    /// once on disk.
    Copy { id: usize, copies: usize },
}

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address we listen on (0.0.0.0: any).
    pub bind: Ipv4Addr,
    /// The network port, shown by `status`.
    pub port: u16,
    /// Peers to dial at start (`--peer`).
    pub bootstrap: Vec<Ipv4Addr>,
    /// `--peer` host names the resolver could not resolve at start, with
    /// its answer and the wait before the next try: bootstrap peers once
    /// they resolve ([`Event::Resolved`]).
    pub unresolved: Vec<ResolvingRow>,
    /// Most outgoing connection attempts in flight at once.
    pub max_connecting: usize,
    /// Most outbound connections, established and in flight, at once (what
    /// the open-file limit leaves).
    pub max_outbound: usize,
    /// Mining threads, shown by `status`.
    pub threads: usize,
    /// The data directory, shown by `status`.
    pub data_dir: String,
    /// The process id, shown by `status`.
    pub pid: u32,
    /// The bans read from the data directory, their spans from start.
    pub bans: Vec<BanRow>,
    /// The screen is a person's terminal: it shows the room (`room.rs`),
    /// not the feed's exact lines.
    pub room: bool,
    /// The compact relay extension's port, when it is offered and used
    /// (`docs/EXTENSION.md`); `None` when it is off.
    pub relay_port: Option<u16>,
}

/// The longest a `quit` waits for our chats to be mined and saved.
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// The state machine.
pub struct Node {
    config: Config,
    history: History,
    own: OwnChats,
    peers: Peers,
    book: AddressBook,
    mining: Mining,
    feed: Feed,
    /// What the terminal shows, when it is a person's.
    room: Option<Room>,
    /// A `quit` waits for our chats to be mined and saved until then.
    quitting: Option<Instant>,
    /// Addresses the peer our current history came from delivers it to
    /// (see the relay rule in `archive.rs`); empty for a history mined here.
    delivered_by_source: HashSet<Ipv4Addr>,
    /// A relay waiting for its source's PeerList (see `archive.rs`).
    pending_relay: Option<archive::PendingRelay>,
    timers: Timers,
    /// Archives sent since start: what relaying costs.
    sent: Sent,
    /// Saves of our chats and copies not yet durable, by ticket.
    unacked: Vec<(u64, Unacked)>,
    next_ticket: u64,
    last_save_warning: Option<Instant>,
    /// Chats of the history on disk, as the store last said.
    stored: usize,
    /// Connections ended since start, by kind of ending.
    endings: BTreeMap<&'static str, u64>,
    log_limit: LogLimit,
    rng: Xoshiro256PlusPlus,
    outbox: VecDeque<Action>,
    /// When the node started, for `status`'s uptime.
    started: Instant,
    /// Figures for the metrics.
    counts: Counts,
    /// Chats awaited at a stage by control clients.
    watches: Vec<watch::Watch>,
    /// The compact relay extension's dialing state.
    relay: relay::RelayDials,
}

impl Node {
    /// A node with the history and own chats recovered from its data
    /// directory; `seed` drives every random choice.
    pub fn new(config: Config, history: History, own: OwnChats, seed: u64, now: Instant) -> Self {
        let mut book = AddressBook::new(
            config.bind,
            &config.bootstrap,
            config.max_connecting,
            seed ^ 0x5eed,
        );
        book.await_names(&config.unresolved, now);
        book.restore_bans(&config.bans, now);
        let (room, backlog) = if config.room {
            let (room, backlog) = Room::new(&history);
            (Some(room), backlog)
        } else {
            (None, Vec::new())
        };
        let relay = relay::RelayDials::new(config.relay_port.is_some());
        let mut node = Node {
            config,
            room,
            quitting: None,
            feed: Feed::new(history.len()),
            stored: history.len(),
            history,
            own,
            peers: Peers::default(),
            book,
            mining: Mining::default(),
            delivered_by_source: HashSet::new(),
            pending_relay: None,
            timers: Timers::new(now),
            sent: Sent::default(),
            unacked: Vec::new(),
            next_ticket: 0,
            last_save_warning: None,
            endings: BTreeMap::new(),
            log_limit: LogLimit::default(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            outbox: VecDeque::new(),
            started: now,
            counts: Counts::default(),
            watches: Vec::new(),
            relay,
        };
        for line in backlog {
            node.print(line);
        }
        node.dial(now);
        node.schedule_mining(now);
        node.update_status();
        node
    }

    /// Our current history (the reactor's intake compares incoming archives
    /// with it).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Our own chats.
    pub fn own(&self) -> &OwnChats {
        &self.own
    }

    /// The archives sent since start, and why.
    #[cfg(test)]
    pub fn sent(&self) -> Sent {
        self.sent
    }

    /// The next action for the reactor, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    /// Takes one event; the actions it causes wait in [`poll_action`](Self::poll_action).
    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected {
                conn,
                addr,
                local,
                direction,
                dialect,
            } => self.on_connected(now, conn, (addr, local), (direction, dialect)),
            Event::SelfDialed {
                outbound,
                inbound,
                addr,
            } => self.on_self_dialed(now, outbound, inbound, addr),
            Event::ConnectFailed {
                addr,
                reason,
                unanswered,
                dialect,
            } => self.on_connect_failed(now, addr, &reason, (unanswered, dialect)),
            Event::Streaming { conn } => {
                if let Some(peer) = self.peers.get_mut(conn) {
                    peer.streaming = true;
                }
            }
            Event::Received { conn, .. } | Event::Archive { conn, .. }
                if self.relay.awaits_hello(conn) =>
            {
                self.not_relay(now, conn);
            }
            Event::Relayed { conn, message } => {
                if self.count_in(conn, message.encoded_len()) {
                    *self
                        .counts
                        .bytes_in
                        .entry(counts::relay_type(message.relay_type()))
                        .or_default() += message.encoded_len() as u64;
                }
                self.on_relayed(now, conn, message);
            }
            Event::Received {
                conn,
                message,
                wire_len,
            } => {
                if self.count_in(conn, wire_len) {
                    *self
                        .counts
                        .bytes_in
                        .entry(counts::message_type(&message))
                        .or_default() += wire_len as u64;
                    self.on_message(now, conn, message);
                    self.greet_if_new(now, conn);
                }
            }
            Event::Archive {
                conn,
                archive,
                wire_len,
            } => {
                if self.count_in(conn, wire_len) {
                    *self.counts.bytes_in.entry("archive_response").or_default() += wire_len as u64;
                    self.on_archive(now, conn, archive);
                    self.greet_if_new(now, conn);
                }
            }
            Event::Disconnected { conn, ending } => self.on_disconnected(now, conn, ending),
            Event::Tick => self.on_tick(now),
            Event::Unsent { conn, why, bytes } => self.on_unsent(conn, why, bytes),
            Event::Resolved { name, addr } => self.on_resolved(now, &name, addr),
            Event::Unresolved {
                name,
                reason,
                retry_in,
            } => self.book.name_unresolved(&name, reason, now + retry_in),
            Event::Mined {
                job,
                outcome,
                stats,
            } => self.on_mined(now, job, outcome, stats),
            Event::Saved(saved) => self.on_saved(now, saved),
            Event::Validated { elapsed } => self.counts.validation.add(elapsed),
            Event::Command { from, command } => self.on_command(now, from, command),
        }
        self.check_watches();
        self.update_status();
        self.check_quit(now);
    }

    /// Counts `wire_len` bytes from `conn`; false if it is not a peer.
    fn count_in(&mut self, conn: ConnId, wire_len: usize) -> bool {
        match self.peers.get_mut(conn) {
            Some(peer) => {
                peer.bytes_in += wire_len as u64;
                true
            }
            None => false,
        }
    }

    /// A peer that dialed us is greeted after its first message.
    fn greet_if_new(&mut self, now: Instant, conn: ConnId) {
        if self
            .peers
            .get(conn)
            .is_some_and(|p| p.primary && !p.greeted)
        {
            self.greet(now, conn);
        }
    }

    fn send(&mut self, conn: ConnId, payload: Payload) {
        if let Some(peer) = self.peers.get_mut(conn) {
            peer.bytes_out += payload.len() as u64;
            self.outbox.push_back(Action::Send { conn, payload });
        }
    }

    fn send_message(&mut self, conn: ConnId, message: &Message) {
        self.send(conn, Payload::Message(message.to_bytes()));
    }

    fn reply(&mut self, to: Origin, reply: Reply) {
        self.outbox.push_back(Action::Reply { to, reply });
    }

    fn save(&mut self, save: Save) {
        self.outbox.push_back(Action::Save(save));
    }

    /// Keeps `save` on disk; `unacked` says what to do once it is.
    fn save_tracked(&mut self, unacked: Unacked, save: impl FnOnce(u64) -> Save) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.unacked.push((ticket, unacked));
        self.save(save(ticket));
    }

    fn on_saved(&mut self, now: Instant, saved: Saved) {
        if let Some(stored) = saved.stored {
            self.stored = stored;
        }
        self.counts.store.add(saved.elapsed);
        let mut copies_durable = false;
        for ticket in &saved.tickets {
            let Some(at) = self.unacked.iter().position(|(t, _)| t == ticket) else {
                continue;
            };
            match self.unacked.remove(at).1 {
                // A person's prompt is not told that a chat is saved
                // (`status` says what is pending): only when it could not
                // be. Piped lines (a script) still get the word.
                Unacked::Chat(Origin::Prompt, _, Stage::Saved)
                    if saved.outcome.is_ok() && self.room.is_some() => {}
                Unacked::Chat(origin, id, stage) => match &saved.outcome {
                    Ok(()) if stage != Stage::Saved => self.watch(id, origin, stage),
                    Ok(()) => self.reply(
                        origin,
                        Reply::Saved {
                            pending: self.own.pending(),
                        },
                    ),
                    Err(reason) => self.reply(
                        origin,
                        Reply::NotSaved {
                            reason: reason.clone(),
                        },
                    ),
                },
                // Even when the disk failed: holding our chats back forever
                // would be worse than the doubling a crash could then cause.
                Unacked::Copy { id, copies } => {
                    self.own.copies_durable(id, copies);
                    copies_durable = true;
                }
            }
        }
        if copies_durable {
            self.broadcast();
        }
        if let Err(reason) = saved.outcome
            && self
                .last_save_warning
                .is_none_or(|at| now >= at + SAVE_WARNING_EVERY)
        {
            self.last_save_warning = Some(now);
            log::warn!("saving to the data directory failed: {reason}");
            self.show(Line::Notice {
                text: format!(
                    "warning: saving to {} failed: {reason}; the node goes on with its history in memory",
                    self.config.data_dir
                ),
            });
        }
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
