//! The node's behaviour as a state machine with no sockets, threads or
//! clocks in it: [`Node::handle`] takes an [`Event`] and the current time,
//! and queues [`Action`]s for the reactor to carry out. Tests drive it with
//! a fake clock and no network.

mod addrbook;
mod archive;
mod io;
mod own;
mod peers;
mod report;

use std::collections::{HashSet, VecDeque};
use std::io as stdio;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::{History, Message};

use crate::command::{Command, HELP};
pub use addrbook::AddressBook;
pub use io::{Action, ConnId, Direction, Event, Payload, Validated, ValidationJob};
#[cfg(test)]
pub use own::Place;
pub use own::{Digest, OwnChat, OwnChats};
use peers::{Peer, Peers, Tip, primary_for, survives};

/// Unit of the random wait before mining after lost races; the wait is up
/// to `BACKOFF_UNIT << contention`.
const BACKOFF_UNIT: Duration = Duration::from_millis(4);
const MAX_CONTENTION: u32 = 7;
/// A peer that dialed us and has said nothing is greeted after this.
const GREET_SILENT_AFTER: Duration = Duration::from_secs(1);
/// Our PeerList goes to every peer at most this often when it changes.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Every peer is asked for its PeerList this often (PROTOCOL.md).
const PEER_REQUEST_EVERY: Duration = Duration::from_secs(5);
/// One random peer is asked for its archive this often, to heal a missed
/// broadcast.
const REPAIR_EVERY: Duration = Duration::from_secs(60);
/// A peer that has not answered our ArchiveRequest by then may be one that
/// stays silent while its history is empty: it gets ours unasked.
const ARCHIVE_REPLY_WAIT: Duration = Duration::from_secs(3);
/// A peer's PeerList is trusted to say who it is connected to this long.
const PEER_LIST_FRESH: Duration = Duration::from_secs(15);

/// Where the state machine keeps what must survive a restart. Called
/// synchronously; a failure is reported at the prompt and the node goes on
/// with its history in memory.
pub trait Store {
    /// The history changed from chat `from` on (chats before it are as
    /// stored): keep `from` chats and append the rest.
    fn save_history(&mut self, history: &History, from: usize) -> stdio::Result<()>;
    fn save_own(&mut self, own: &[OwnChat]) -> stdio::Result<()>;
}

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address we listen on (0.0.0.0: any).
    pub bind: Ipv4Addr,
    pub port: u16,
    pub bootstrap: Vec<Ipv4Addr>,
    /// Most outgoing connection attempts in flight at once.
    pub max_connecting: usize,
    /// An archive with at most this many chats past the common prefix is
    /// validated on the event loop; larger ones go to a worker thread.
    pub inline_validation: usize,
    /// Shown by `status`.
    pub threads: usize,
    pub data_dir: String,
}

#[derive(Debug, Clone, Copy)]
struct MiningJob {
    id: u64,
    own: own::OwnId,
    started: Instant,
    /// The job mines on the rival fork with this tip, not on our history.
    on_rival: Option<Tip>,
}

/// Figures of the last mining job that found a chat.
#[derive(Debug, Clone, Copy)]
struct JobReport {
    tries: u64,
    elapsed: Duration,
}

pub struct Node<S: Store> {
    config: Config,
    store: S,
    history: History,
    /// The current history encoded as an ArchiveResponse, built on first
    /// use and shared by every send until the history changes.
    archive: Option<Arc<[u8]>>,
    /// A valid fork as long as our history that wins the tie-break against
    /// it: not adopted, but mined on (see `archive.rs`).
    rival: Option<History>,
    own: OwnChats,
    peers: Peers,
    book: AddressBook,
    mining: Option<MiningJob>,
    next_job: u64,
    last_job: Option<JobReport>,
    /// Races lately lost by our chats (see `schedule_mining`).
    contention: u32,
    /// A large validation running on a worker, and the best one waiting.
    validating: bool,
    waiting_validation: Option<ValidationJob>,
    rng: Xoshiro256PlusPlus,
    /// Addresses the peer our current history came from delivers it to
    /// (see the relay rule in `archive.rs`); empty for a history mined here.
    delivered_by_source: HashSet<Ipv4Addr>,
    /// Our primary peers changed since we last sent PeerLists, and when we did.
    peers_changed: bool,
    last_announce: Instant,
    /// Archives sent since start, and their bytes: what relaying costs.
    archives_sent: (u64, u64),
    next_peer_request: Instant,
    next_repair: Instant,
    outbox: VecDeque<Action>,
}

impl<S: Store> Node<S> {
    /// A node with the history and own chats recovered from its store.
    pub fn new(
        config: Config,
        store: S,
        history: History,
        own: OwnChats,
        seed: u64,
        now: Instant,
    ) -> Self {
        let book = AddressBook::new(config.bind, &config.bootstrap, config.max_connecting);
        let mut node = Node {
            config,
            store,
            history,
            archive: None,
            rival: None,
            own,
            peers: Peers::new(),
            book,
            mining: None,
            next_job: 0,
            last_job: None,
            contention: 0,
            validating: false,
            waiting_validation: None,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            delivered_by_source: HashSet::new(),
            peers_changed: false,
            last_announce: now,
            archives_sent: (0, 0),
            next_peer_request: now + PEER_REQUEST_EVERY,
            next_repair: now + REPAIR_EVERY,
            outbox: VecDeque::new(),
        };
        node.dial();
        node.schedule_mining(now);
        node
    }

    #[cfg(test)]
    pub fn history(&self) -> &History {
        &self.history
    }

    #[cfg(test)]
    pub fn own(&self) -> &OwnChats {
        &self.own
    }

    /// The next action for the reactor, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected {
                conn,
                addr,
                local,
                direction,
            } => self.on_connected(now, conn, addr, local, direction),
            Event::ConnectFailed { addr, reason } => {
                debug!("connecting to {addr} failed: {reason}");
                self.book.dial_failed(addr, now);
                self.dial();
            }
            Event::Received {
                conn,
                message,
                wire_len,
            } => {
                let Some(peer) = self.peers.get_mut(&conn) else {
                    return;
                };
                peer.bytes_in += wire_len as u64;
                self.on_message(now, conn, message);
                if self
                    .peers
                    .get(&conn)
                    .is_some_and(|p| p.primary && !p.greeted)
                {
                    self.greet(now, conn);
                }
            }
            Event::Disconnected { conn, reason } => self.on_disconnected(now, conn, &reason),
            Event::Tick => self.on_tick(now),
            Event::Mined {
                job,
                chat,
                tries,
                elapsed,
            } => self.on_mined(now, job, chat, tries, elapsed),
            Event::Validated(validated) => {
                self.validating = false;
                self.on_validated(now, validated);
                self.start_waiting_validation(now);
            }
            Event::Command(command) => self.on_command(now, command),
        }
    }

    fn print(&mut self, line: impl Into<String>) {
        self.outbox.push_back(Action::Print(line.into()));
    }

    fn send(&mut self, conn: ConnId, payload: Payload) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.bytes_out += payload.len() as u64;
            if let Payload::Archive(bytes) = &payload {
                self.archives_sent.0 += 1;
                self.archives_sent.1 += bytes.len() as u64;
            }
            self.outbox.push_back(Action::Send { conn, payload });
        }
    }

    fn send_message(&mut self, conn: ConnId, message: &Message) {
        self.send(conn, Payload::Message(message.to_bytes()));
    }

    fn ask_archive(&mut self, now: Instant, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.archive_asked_at = Some(now);
        }
        self.send_message(conn, &Message::ArchiveRequest);
    }

    fn primaries(&self) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.primary)
            .map(|(&c, _)| c)
            .collect()
    }

    fn dial(&mut self) {
        for addr in self.book.next_dials() {
            debug!("connecting to {addr}");
            self.outbox.push_back(Action::Connect { addr });
        }
    }

    fn on_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: Ipv4Addr,
        local: Ipv4Addr,
        direction: Direction,
    ) {
        if direction == Direction::Outbound {
            self.book.dial_succeeded(addr);
        }
        if addr == local || self.book.is_own(addr) {
            info!("{addr} is this node's own address; not connecting to it");
            self.book.mark_own(addr);
            self.outbox.push_back(Action::Close { conn, notify: None });
            self.dial();
            return;
        }
        self.book.forget_queued(addr);
        let primary = match primary_for(&self.peers, addr) {
            None => true,
            Some(existing) => {
                let existing_dir = self.peers[&existing].direction;
                let dialer = |dir| {
                    if dir == Direction::Outbound {
                        local
                    } else {
                        addr
                    }
                };
                let other_end = |dir| {
                    if dir == Direction::Outbound {
                        addr
                    } else {
                        local
                    }
                };
                let new_wins =
                    existing_dir != direction && survives(dialer(direction), other_end(direction));
                if new_wins {
                    self.demote(existing);
                } else if direction == Direction::Outbound {
                    debug!("{addr}: dropping our second connection");
                    self.outbox.push_back(Action::Close { conn, notify: None });
                    self.dial();
                    return;
                } else {
                    self.outbox.push_back(Action::CloseWhenIdle { conn });
                }
                new_wins
            }
        };
        info!(
            "connected to {addr} ({direction:?}{})",
            if primary { "" } else { ", duplicate" }
        );
        self.peers
            .insert(conn, Peer::new(addr, direction, now, primary));
        // A peer we dialed listens and is greeted at once. One that dialed
        // us may be a client that pushes one archive and hangs up without
        // reading: anything we sent first would turn its close into a reset
        // that can discard the archive in our receive buffer. It is greeted
        // after its first message, or after a second of silence.
        if primary && direction == Direction::Outbound {
            self.greet(now, conn);
        }
        if direction == Direction::Inbound {
            self.book.probe(addr);
        }
        self.dial();
    }

    /// A connection loses to a second one with the same address: ours are
    /// closed at once, theirs once idle (the peer closes it too).
    fn demote(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.primary = false;
        debug!("{}: keeping the other connection", peer.addr);
        let action = match peer.direction {
            Direction::Outbound => Action::Close { conn, notify: None },
            Direction::Inbound => Action::CloseWhenIdle { conn },
        };
        self.outbox.push_back(action);
    }

    fn on_disconnected(&mut self, now: Instant, conn: ConnId, reason: &str) {
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        info!("disconnected from {} ({reason})", peer.addr);
        if peer.primary {
            self.peers_changed = true;
            // A node that went away may come back (a restart): dial it
            // again, with backoff while it does not answer.
            self.book.lost(peer.addr, now);
        }
        self.dial();
    }

    fn on_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        match message {
            Message::PeerRequest => self.send_peer_list(conn),
            Message::PeerList(addrs) => {
                for &addr in &addrs {
                    let connected = self.peers.values().any(|p| p.addr == addr);
                    self.book.offer(addr, connected, now);
                }
                self.peers.get_mut(&conn).expect("checked").peer_list = Some((now, addrs));
                self.dial();
            }
            Message::ArchiveRequest => self.send_archive_to(conn),
            Message::ArchiveResponse(history) => self.on_archive(now, conn, history),
            Message::Notification(text) => {
                let peer = self.peers.get_mut(&conn).expect("checked");
                peer.notifies = true;
                info!("notification from {}: {}", peer.addr, text.escape_ascii());
            }
        }
    }

    /// Asks a new peer for its archive and its peers.
    fn greet(&mut self, now: Instant, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.greeted = true;
        }
        self.ask_archive(now, conn);
        self.send_message(conn, &Message::PeerRequest);
    }

    /// Our peers (the primary connections), except the one it goes to.
    fn send_peer_list(&mut self, conn: ConnId) {
        let addr = self.peers[&conn].addr;
        let list: Vec<Ipv4Addr> = self
            .peers
            .values()
            .filter(|p| p.primary && p.addr != addr)
            .map(|p| p.addr)
            .collect();
        self.send_message(conn, &Message::PeerList(list));
    }

    fn on_tick(&mut self, now: Instant) {
        let silent_newcomers: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.primary && !p.greeted && now >= p.since + GREET_SILENT_AFTER)
            .map(|(&c, _)| c)
            .collect();
        for conn in silent_newcomers {
            self.greet(now, conn);
        }
        // Peers decide whom to relay to from our PeerList: when our peers
        // change, they get the new list unasked (at most once a second)
        // rather than at their next PeerRequest.
        if self.peers_changed && now >= self.last_announce + ANNOUNCE_EVERY {
            self.peers_changed = false;
            self.last_announce = now;
            for conn in self.primaries() {
                self.send_peer_list(conn);
            }
        }
        if now >= self.next_peer_request {
            self.next_peer_request = now + PEER_REQUEST_EVERY;
            for conn in self.primaries() {
                self.send_message(conn, &Message::PeerRequest);
            }
        }
        if now >= self.next_repair {
            self.next_repair = now + REPAIR_EVERY;
            let primaries = self.primaries();
            if !primaries.is_empty() {
                let conn = primaries[self.rng.random_range(0..primaries.len())];
                self.ask_archive(now, conn);
            }
        }
        // Peers silent on our ArchiveRequest get our history, if they lack it.
        let silent: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.archive_asked_at
                    .is_some_and(|at| now >= at + ARCHIVE_REPLY_WAIT)
            })
            .map(|(&c, _)| c)
            .collect();
        for conn in silent {
            self.peers.get_mut(&conn).expect("listed").archive_asked_at = None;
            if !self.history.is_empty() && self.needs_history(conn) {
                self.send_archive_to(conn);
            }
        }
        if !self.peers.values().any(|p| p.primary) && self.book.connecting() == 0 {
            self.book.retry_bootstrap(now);
        }
        self.dial();
    }

    /// The current history as an encoded ArchiveResponse, shared.
    fn archive(&mut self) -> Arc<[u8]> {
        self.archive
            .get_or_insert_with(|| encode_archive(&self.history))
            .clone()
    }

    fn send_archive_to(&mut self, conn: ConnId) {
        let archive = self.archive();
        self.send(conn, Payload::Archive(archive));
        let tip = Tip::of(&self.history);
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.sent = Some(tip);
        }
    }

    /// Starts mining, unless a job is running: first an own chat that a
    /// winning rival fork lacks, on that fork (see `archive.rs`); else the
    /// oldest pending chat, on our history.
    fn schedule_mining(&mut self, now: Instant) {
        if self.mining.is_some() {
            return;
        }
        let contested = self.rival.as_ref().and_then(|rival| {
            let fork = self.history.common_prefix_len(rival);
            let (own, text) = self.own.first_missing(rival, fork)?;
            Some((
                own,
                text.to_vec(),
                rival.tail_for_append().to_vec(),
                Tip::of(rival),
            ))
        });
        let (own, text, prev, on_rival) = match contested {
            Some((own, text, prev, tip)) => (own, text, prev, Some(tip)),
            None => {
                let Some((own, text)) = self.own.next_pending() else {
                    return;
                };
                (
                    own,
                    text.to_vec(),
                    self.history.tail_for_append().to_vec(),
                    None,
                )
            }
        };
        let id = self.next_job;
        self.next_job += 1;
        self.mining = Some(MiningJob {
            id,
            own,
            started: now,
            on_rival,
        });
        // After losing races, wait a random while first (binary exponential
        // backoff, as on a shared Ethernet): when many nodes have chats
        // queued, they would otherwise all mine on each new history at once
        // and broadcast chats of which only one can stay.
        let delay = match self.contention {
            0 => Duration::ZERO,
            k => BACKOFF_UNIT.mul_f64(self.rng.random_range(0.0..f64::from(1u32 << k))),
        };
        self.outbox.push_back(Action::StartMining {
            job: id,
            prev,
            text,
            delay,
        });
    }

    /// The history changed: a running job mines on a stale base.
    fn restart_mining(&mut self, now: Instant) {
        if let Some(job) = self.mining.take() {
            self.outbox.push_back(Action::CancelMining { job: job.id });
        }
        self.schedule_mining(now);
    }

    fn on_mined(
        &mut self,
        now: Instant,
        job: u64,
        chat: Option<wire::Chat>,
        tries: u64,
        elapsed: Duration,
    ) {
        let Some(running) = self.mining.filter(|j| j.id == job) else {
            return;
        };
        let Some(chat) = chat else { return };
        self.mining = None;
        self.last_job = Some(JobReport { tries, elapsed });
        // The chat extends our history, or the rival it was mined on, which
        // with it is longer than ours and replaces it.
        let fork = match running.on_rival {
            None => self.history.len(),
            Some(tip) => {
                let Some(rival) = self.rival.take().filter(|r| Tip::of(r) == tip) else {
                    return;
                };
                let fork = self.history.common_prefix_len(&rival);
                self.history = rival;
                fork
            }
        };
        let index = self.history.len();
        self.history.push(&chat);
        self.rival = None;
        self.archive = None;
        self.delivered_by_source.clear();
        self.own.mined(running.own, *chat.digest(), index);
        // The copy is recorded before the chat is written: after a crash in
        // between, the copy is known and is not mined a second time if it
        // is in the file, and is mined again if it is not.
        self.save_own();
        self.save_history(fork);
        if fork < index {
            self.own.reconcile(&self.history, fork);
        }
        self.print(format!(
            "#{index} {} (mined: {tries} tries in {:.1} ms, {:.1} MH/s)",
            crate::verify::printable(chat.text()),
            elapsed.as_secs_f64() * 1e3,
            tries as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6,
        ));
        debug!("job {job} took {:?} from start", now - running.started);
        // The origin of a chat sends it to everyone.
        for conn in self.primaries() {
            self.send_archive_to(conn);
        }
        self.schedule_mining(now);
    }

    /// Writes the history from chat `from` on.
    fn save_history(&mut self, from: usize) {
        if let Err(e) = self.store.save_history(&self.history, from) {
            warn!("saving the history failed: {e}");
            self.print(format!("warning: saving the history failed: {e}"));
        }
    }

    fn save_own(&mut self) {
        if let Err(e) = self.store.save_own(self.own.all()) {
            warn!("saving own chats failed: {e}");
            self.outbox.push_back(Action::Print(format!(
                "warning: saving pending chats failed: {e}"
            )));
        }
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Chat(text) => {
                self.own.queue(text);
                self.save_own();
                let pending = self.own.pending();
                self.print(format!("queued for mining ({pending} pending)"));
                self.schedule_mining(now);
            }
            Command::Hist(n) => {
                let text = report::hist(&self.history, n);
                self.print(text);
            }
            Command::Peers => {
                let text = report::peers(&self.peers, now);
                self.print(text);
            }
            Command::Status => {
                let text = self.status(now);
                self.print(text);
            }
            Command::Help => self.print(HELP),
            Command::Quit => self.outbox.push_back(Action::Shutdown),
        }
    }

    fn status(&self, now: Instant) -> String {
        let mining = match self.mining {
            Some(job) => format!(
                "mining \"{}\" for {:.1} s on {} threads",
                crate::verify::printable(&self.own.all()[job.own].text),
                (now - job.started).as_secs_f64(),
                self.config.threads
            ),
            None => format!("idle ({} threads)", self.config.threads),
        };
        let last_job = self.last_job.map_or("none yet".to_string(), |j| {
            format!(
                "{} tries in {:.1} ms, {:.1} MH/s",
                j.tries,
                j.elapsed.as_secs_f64() * 1e3,
                j.tries as f64 / j.elapsed.as_secs_f64().max(1e-9) / 1e6
            )
        });
        report::status(&report::Status {
            bind: self.config.bind,
            port: self.config.port,
            peers: &self.peers,
            history: &self.history,
            pending: self.own.pending(),
            mining,
            last_job,
            archives_sent: self.archives_sent,
            data_dir: &self.config.data_dir,
        })
    }
}

/// A history as an ArchiveResponse, to be shared by every send.
fn encode_archive(history: &History) -> Arc<[u8]> {
    let mut bytes = Vec::with_capacity(history.archive_len());
    history.encode_archive(&mut bytes);
    bytes.into()
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
