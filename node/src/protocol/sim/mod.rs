//! A simulated network of state machines in virtual time, with the faults
//! of real networks; real MD5 (mining and validation are computed, then
//! delivered after a virtual delay).
//!
//! - `net.rs`: the network model. Each pair of nodes has a latency drawn
//!   between 1 and 300 ms, each message adds jitter; a lost message is
//!   delayed by TCP's retransmission timeout (200 ms, doubling), and holds
//!   up everything behind it on its connection; links are cut (both ends
//!   `Failed`), at random or by a partition, which also makes dials across
//!   it time out until it heals.
//! - this file: the harness. Nodes in slots, an event queue in virtual
//!   time, the node's actions carried out; churn: a node leaves (its
//!   connections break), comes back with the history and own chats it had
//!   (as from its data directory), or a new one joins with nothing.
//! - `tests.rs`: convergence and relay cost on calm networks;
//!   `properties.rs`: properties under faults, each over many seeds.
//!
//! Every run is bounded: a test waits a bounded virtual time, and a
//! simulation that handles more than [`Sim::max_steps`] events fails,
//! naming its seed, instead of hanging.
//!
//! Seeds: the property tests run a few seeds each (1, 2, ...); set
//! `SIM_SEEDS=200` to run 200, or `SIM_SEED=17` to run seed 17 alone. With
//! `-- --nocapture` they print each seed's convergence time and a summary:
//!
//! ```text
//! SIM_SEEDS=200 cargo test -p node --bin node protocol::sim -- --nocapture
//! ```
//!
//! A seed fixes the network (latencies, losses, cuts), the nodes' own
//! random choices and the test's plan (who types what when, who leaves),
//! but a run does not replay exactly: the miner draws its codes from the
//! operating system, so chats get other digests from run to run, and
//! with them tie-breaks between forks and the timing of everything after;
//! the node's address book also dials in the order of a `HashMap`. A
//! failure shows up again on its seed only now and then: its message
//! prints every node's history, to be read rather than replayed.

#[cfg(test)]
mod compact;
mod net;
mod properties;
mod scale;
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use miner::{JobStats, Miner};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::{History, Message, RelayMessage};

use super::tests::config;
use super::*;
use crate::command::Command;
pub use net::Faults;
use net::{CONNECT_TIMEOUT, Net};

const TICK: Duration = Duration::from_millis(100);
/// Events a simulation may handle, all its runs together, unless a test
/// sets [`Sim::max_steps`]: far above what any test here needs (the
/// largest, 50 nodes with churn for two virtual minutes, handles about
/// 300,000), so reaching it means a livelock.
const MAX_STEPS: u64 = 5_000_000;

/// What the simulator delivers to a node.
enum Delivery {
    /// Something of the node's own: a tick, a mining result, a failed dial,
    /// its own close, a connection that broke under it.
    Local(Event),
    /// The connection `conn` completed at this end. If its link was cut
    /// before, a dial fails instead, and an accept never happened.
    Connected { conn: ConnId, event: Event },
    /// A message that arrived on `conn`.
    Message {
        conn: ConnId,
        message: Message,
        wire_len: usize,
    },
    /// An archive (`from` is `None`), or an extension Chats message
    /// carrying chats `from..` of `history`, that arrived on `conn`, judged
    /// against the receiver's history when it arrives.
    Archive {
        conn: ConnId,
        history: History,
        from: Option<usize>,
        wire_len: usize,
    },
    /// An extension message other than Chats.
    Relayed { conn: ConnId, message: RelayMessage },
    /// The peer closed `conn`; it arrives after everything sent before it.
    Fin { conn: ConnId },
    /// The link under `conn` reached the end of its life (`Faults::link_life`).
    Cut { conn: ConnId },
}

/// The extension message `bytes` hold, if they hold one (the simulator
/// decodes what nodes send, as a peer would).
fn decode_relay(bytes: &[u8]) -> Option<RelayMessage> {
    let mut decoder = wire::FrameDecoder::relay(usize::MAX, usize::MAX);
    let mut input = bytes;
    match decoder.next(&mut input) {
        Ok(Some(wire::Frame::Relay(message))) => Some(message),
        _ => None,
    }
}

/// What a node keeps in its data directory: its history, and its own
/// chats as `OwnChats::records` gives them.
pub type Kept = (History, Vec<(Vec<u8>, Vec<Digest>)>);

/// A place for one node: the node while it runs, what it keeps on disk
/// while it is down.
struct Slot {
    addr: Ipv4Addr,
    node: Option<Node>,
    /// Counts the node's starts: what was scheduled for an earlier one
    /// (ticks, mining results) is dropped.
    incarnation: u32,
    /// What a node that left keeps for its restart: its history and its
    /// own chats, as its data directory holds them.
    kept: Option<Kept>,
}

/// A simulated network.
pub struct Sim {
    slots: Vec<Slot>,
    by_addr: HashMap<Ipv4Addr, usize>,
    /// Which pairs may connect (a topology): other dials are refused. All
    /// pairs when `None`.
    allowed: Option<Box<dyn Fn(usize, usize) -> bool>>,
    net: Net,
    /// (when, sequence number): the sequence number orders what is due at
    /// the same moment, and names the delivery in `events`.
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    /// Each queued delivery, with the slot and incarnation it goes to.
    events: HashMap<u64, (usize, u32, Delivery)>,
    seq: u64,
    /// Virtual time since the start.
    pub elapsed: Duration,
    start: Instant,
    seed: u64,
    rng: Xoshiro256PlusPlus,
    miner: Miner,
    /// Events handled so far.
    pub steps: u64,
    /// Events it may handle before it fails as a livelock.
    pub max_steps: u64,
    /// Links cut (at random, by a partition, or under a node that left).
    pub cuts: u64,
    /// Archives and extension Chats sent, and their bytes.
    pub archive_bytes: u64,
    pub archives: u64,
    /// Bytes of the other extension messages (Hello, Tip, ChatsRequest,
    /// NoCommonPrefix) sent.
    pub relay_bytes: u64,
    /// Which nodes offer the compact relay extension.
    relay: Box<dyn Fn(usize) -> bool>,
}

impl Sim {
    /// `n` nodes at 127.50.0.1.., each given `bootstrap(i)` as its peers,
    /// on a network with `faults`.
    pub fn with_faults(
        n: usize,
        bootstrap: impl Fn(usize) -> Vec<usize>,
        seed: u64,
        faults: Faults,
    ) -> Sim {
        Sim::with_data(n, bootstrap, seed, faults, |_| (History::new(), Vec::new()))
    }

    /// `n` nodes as with [`with_faults`](Self::with_faults), node `i`
    /// starting from `data(i)`: the history and own chats in its data
    /// directory.
    pub fn with_data(
        n: usize,
        bootstrap: impl Fn(usize) -> Vec<usize>,
        seed: u64,
        faults: Faults,
        data: impl Fn(usize) -> Kept,
    ) -> Sim {
        Sim::with_relay(n, bootstrap, seed, faults, data, |_| false)
    }

    /// `n` nodes as with [`with_data`](Self::with_data), those for which
    /// `relay(i)` holds offering the compact relay extension.
    pub fn with_relay(
        n: usize,
        bootstrap: impl Fn(usize) -> Vec<usize>,
        seed: u64,
        faults: Faults,
        data: impl Fn(usize) -> Kept,
        relay: impl Fn(usize) -> bool + 'static,
    ) -> Sim {
        let mut sim = Sim {
            slots: Vec::new(),
            by_addr: HashMap::new(),
            allowed: None,
            net: Net::new(faults, seed ^ 0x6e65_7477),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            elapsed: Duration::ZERO,
            start: Instant::now(),
            seed,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            miner: Miner::seeded(1, seed),
            steps: 0,
            max_steps: MAX_STEPS,
            cuts: 0,
            archive_bytes: 0,
            archives: 0,
            relay_bytes: 0,
            relay: Box::new(relay),
        };
        for i in 0..n {
            sim.add_slot();
            let (history, records) = data(i);
            let own = OwnChats::restore(records, &history);
            sim.boot(i, bootstrap(i), history, own);
        }
        sim
    }

    /// A new slot with the next address (127.50.0.1, 127.50.0.2, ...).
    fn add_slot(&mut self) -> usize {
        let i = self.slots.len();
        let addr = Ipv4Addr::new(127, 50, (i / 250) as u8, (i % 250 + 1) as u8);
        self.slots.push(Slot {
            addr,
            node: None,
            incarnation: 0,
            kept: None,
        });
        self.by_addr.insert(addr, i);
        i
    }

    /// Starts a node in slot `i` with `history` and `own`, dialing
    /// `bootstrap` first.
    fn boot(&mut self, i: usize, bootstrap: Vec<usize>, history: History, own: OwnChats) {
        let peers = bootstrap.iter().map(|&j| self.slots[j].addr).collect();
        let mut config = config(self.slots[i].addr, peers);
        config.relay_port = (self.relay)(i).then_some(51512);
        // The CLI's default.
        config.max_connecting = 16;
        let seed = self.rng.random();
        let node = Node::new(config, history, own, seed, self.now());
        let slot = &mut self.slots[i];
        slot.node = Some(node);
        slot.incarnation += 1;
        self.schedule(TICK, i, Event::Tick);
        self.perform(i);
    }

    /// Only pairs that `allowed` admits may connect; other dials are
    /// refused (a firewall that rejects).
    pub fn restrict(&mut self, allowed: impl Fn(usize, usize) -> bool + 'static) {
        self.allowed = Some(Box::new(allowed));
    }

    fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// The node in slot `i`; panics if it is down.
    pub fn node(&self, i: usize) -> &Node {
        self.slots[i].node.as_ref().expect("the node is up")
    }

    /// Whether the node in slot `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    /// Slots, up or down.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The running nodes, with their slots.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Node)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n)))
    }

    fn schedule(&mut self, after: Duration, node: usize, event: Event) {
        self.deliver_at(self.elapsed + after, node, Delivery::Local(event));
    }

    fn deliver_at(&mut self, at: Duration, node: usize, delivery: Delivery) {
        self.seq += 1;
        let incarnation = self.slots[node].incarnation;
        self.events.insert(self.seq, (node, incarnation, delivery));
        self.queue.push(Reverse((at, self.seq)));
    }

    /// `chat TEXT` typed at the prompt of node `node`.
    pub fn command(&mut self, node: usize, text: &str) {
        let now = self.now();
        self.slots[node]
            .node
            .as_mut()
            .expect("the node is up")
            .handle(
                now,
                Event::Command {
                    from: Origin::Prompt,
                    command: Command::Chat(text.as_bytes().to_vec()),
                },
            );
        self.perform(node);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.elapsed + span;
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.steps += 1;
            if self.steps > self.max_steps {
                panic!(
                    "seed {}: {} events handled by virtual time {:.3} s and still going: a \
                     livelock? (rerun it alone with SIM_SEED={})",
                    self.seed,
                    self.max_steps,
                    at.as_secs_f64(),
                    self.seed
                );
            }
            self.queue.pop();
            self.elapsed = at;
            let (node, incarnation, delivery) = self.events.remove(&seq).expect("scheduled");
            if self.slots[node].incarnation != incarnation || self.slots[node].node.is_none() {
                // For a node that has left since.
                continue;
            }
            let Some(event) = self.arrive(node, delivery) else {
                continue;
            };
            let now = self.now();
            self.slots[node]
                .node
                .as_mut()
                .expect("checked")
                .handle(now, event);
            self.perform(node);
        }
        self.elapsed = until;
    }

    /// What a delivery to `node` becomes as it arrives, if anything: what
    /// arrives on a connection that broke meanwhile is lost.
    fn arrive(&mut self, node: usize, delivery: Delivery) -> Option<Event> {
        match delivery {
            Delivery::Local(event) => {
                if matches!(event, Event::Tick) {
                    self.schedule(TICK, node, Event::Tick);
                }
                Some(event)
            }
            Delivery::Connected { conn, event } => {
                let Some(end) = self.net.end_mut(conn) else {
                    return match event {
                        Event::Connected {
                            addr,
                            direction: Direction::Outbound,
                            dialect,
                            ..
                        } => Some(Event::ConnectFailed {
                            addr,
                            reason: "connection reset".into(),
                            unanswered: false,
                            dialect,
                        }),
                        _ => None,
                    };
                };
                end.told = true;
                let dialer = matches!(
                    event,
                    Event::Connected {
                        direction: Direction::Outbound,
                        ..
                    }
                );
                if dialer && let Some(life) = self.net.draw_life() {
                    self.deliver_at(self.elapsed + life, node, Delivery::Cut { conn });
                }
                Some(event)
            }
            Delivery::Message {
                conn,
                message,
                wire_len,
            } => self.net.end(conn).is_some().then_some(Event::Received {
                conn,
                message,
                wire_len,
            }),
            Delivery::Archive {
                conn,
                history,
                from,
                wire_len,
            } => {
                self.net.end(conn)?;
                let ours = self.slots[node].node.as_ref().expect("up").history();
                let archive = match from {
                    None => Archive::judge(ours, history),
                    Some(from) => Archive::judge_chats(ours, history, from),
                };
                Some(Event::Archive {
                    conn,
                    archive,
                    wire_len,
                })
            }
            Delivery::Relayed { conn, message } => self
                .net
                .end(conn)
                .is_some()
                .then_some(Event::Relayed { conn, message }),
            Delivery::Fin { conn } => self.net.remove(conn).map(|_| Event::Disconnected {
                conn,
                ending: Ending::ClosedByPeer,
            }),
            Delivery::Cut { conn } => {
                if self.net.cutting {
                    self.cut(conn, "connection reset by peer");
                }
                None
            }
        }
    }

    /// Cuts the link under `conn`: each end that knew of the connection is
    /// told it failed, once the news reaches it.
    fn cut(&mut self, conn: ConnId, reason: &str) {
        if self.net.end(conn).is_some() {
            self.cuts += 1;
        }
        for (node, conn, after) in self.net.cut(conn) {
            let ending = Ending::Failed(reason.into());
            self.schedule(after, node, Event::Disconnected { conn, ending });
        }
    }

    /// Carries out what node `i` asked for.
    fn perform(&mut self, i: usize) {
        while let Some(action) = self.slots[i].node.as_mut().and_then(Node::poll_action) {
            match action {
                Action::Send { conn, payload } => self.send(conn, payload),
                Action::Connect { addr, dialect } => self.dial(i, addr, dialect),
                Action::Close { conn, .. } => {
                    // The close goes after what was sent before it; the
                    // other end keeps its side until the close arrives.
                    if let Some((at, j, remote)) = self.net.transmit(self.elapsed, conn) {
                        self.deliver_at(at, j, Delivery::Fin { conn: remote });
                        self.net.remove(conn);
                        self.schedule(
                            Duration::ZERO,
                            i,
                            Event::Disconnected {
                                conn,
                                ending: Ending::ClosedByUs,
                            },
                        );
                    }
                }
                Action::StartMining {
                    job,
                    prev,
                    texts,
                    delay,
                } => {
                    // Mined at once, told after a virtual while; a job
                    // cancelled meanwhile reports a stale number, dropped.
                    let mut base = History::new();
                    base.extend_from_wire(&prev);
                    let chats = texts
                        .iter()
                        .map(|text| {
                            let chat = self.miner.mine_next(&base, text);
                            base.push(&chat);
                            chat
                        })
                        .collect();
                    let after = delay + Duration::from_millis(self.rng.random_range(5..80));
                    self.schedule(
                        after,
                        i,
                        Event::Mined {
                            job,
                            outcome: Mined::Found(chats),
                            stats: JobStats {
                                tries: 65536,
                                elapsed: after,
                            },
                        },
                    );
                }
                // A disk that syncs in 3 ms.
                Action::Save(Save::Chat { ticket, .. } | Save::Copy { ticket, .. }) => {
                    self.schedule(
                        Duration::from_millis(3),
                        i,
                        Event::Saved(Saved {
                            tickets: vec![ticket],
                            stored: None,
                            outcome: Ok(()),
                            elapsed: Duration::ZERO,
                        }),
                    );
                }
                Action::CancelMining { .. }
                | Action::Save(Save::History { .. } | Save::Bans(_))
                | Action::SetLog(_)
                | Action::Show(_)
                | Action::Print(_)
                | Action::Status(_)
                | Action::Reply { .. }
                | Action::Shutdown => {}
            }
        }
    }

    /// Sends `payload` on `conn`; lost if the connection is gone.
    fn send(&mut self, conn: ConnId, payload: Payload) {
        let Some((at, j, remote)) = self.net.transmit(self.elapsed, conn) else {
            return;
        };
        let wire_len = payload.len();
        let from = match &payload {
            Payload::Chats { from, .. } => Some(*from),
            _ => None,
        };
        let delivery = match payload {
            Payload::Archive { history, .. } | Payload::Chats { history, .. } => {
                self.archives += 1;
                self.archive_bytes += wire_len as u64;
                Delivery::Archive {
                    conn: remote,
                    history,
                    from,
                    wire_len,
                }
            }
            Payload::Message(bytes) => match decode_relay(&bytes) {
                Some(message) => {
                    self.relay_bytes += wire_len as u64;
                    Delivery::Relayed {
                        conn: remote,
                        message,
                    }
                }
                None => Delivery::Message {
                    conn: remote,
                    message: wire::decode(&bytes).expect("nodes send valid bytes"),
                    wire_len,
                },
            },
        };
        self.deliver_at(at, j, delivery);
    }

    /// Node `i` dials `addr`: refused after a round trip if nobody runs
    /// there or the topology forbids it; timed out across a partition;
    /// else a connection.
    fn dial(&mut self, i: usize, addr: Ipv4Addr, dialect: Dialect) {
        let me = self.slots[i].addr;
        let target = self.by_addr.get(&addr).copied();
        let rtt = 2 * self.net.base(me, addr);
        let failed = |reason: &str, unanswered| Event::ConnectFailed {
            addr,
            reason: reason.into(),
            unanswered,
            dialect,
        };
        let Some(j) = target.filter(|&j| {
            self.is_up(j)
                && self.allowed.as_ref().is_none_or(|allowed| allowed(i, j))
                && (dialect == Dialect::Standard || (self.relay)(j))
        }) else {
            return self.schedule(rtt, i, failed("connection refused", false));
        };
        if self.net.separated(i, j) {
            return self.schedule(CONNECT_TIMEOUT, i, failed("connection timed out", true));
        }
        let (out, out_at, inb, in_at) = self.net.open(self.elapsed, (i, me), (j, addr));
        let connected = |conn, addr, local, direction| Delivery::Connected {
            conn,
            event: Event::Connected {
                conn,
                addr,
                local,
                direction,
                dialect,
            },
        };
        self.deliver_at(out_at, i, connected(out, addr, me, Direction::Outbound));
        self.deliver_at(in_at, j, connected(inb, me, addr, Direction::Inbound));
    }

    /// Splits the network: the nodes of `side` on one side, all others on
    /// the other. The links between them break at once, what is in flight
    /// on them is lost, and dials across time out until [`heal`](Self::heal).
    pub fn partition(&mut self, side: impl IntoIterator<Item = usize>) {
        let crossing = self.net.split(side.into_iter().collect::<BTreeSet<_>>());
        for conn in crossing {
            self.cut(conn, "connection timed out");
        }
    }

    /// Ends the partition: dials across succeed again (the nodes redial on
    /// their own).
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Stops (or resumes) cutting links at random: the faults stop so that
    /// the network can settle.
    pub fn set_cutting(&mut self, on: bool) {
        self.net.cutting = on;
    }

    /// Node `i` leaves, as a process that is killed: its connections break
    /// (its peers see them fail), what is in flight to it is lost. With
    /// `keep`, it keeps its history and own chats for a restart, as its
    /// data directory would (every save taken as durable at once).
    pub fn leave(&mut self, i: usize, keep: bool) {
        let node = self.slots[i].node.take().expect("the node is up");
        self.slots[i].kept = keep.then(|| (node.history().clone(), node.own().durable_records()));
        for conn in self.net.ends_of(i) {
            self.cut(conn, "connection reset by peer");
        }
    }

    /// Whether the node in slot `i` is down with its data kept.
    pub fn can_restart(&self, i: usize) -> bool {
        self.slots[i].node.is_none() && self.slots[i].kept.is_some()
    }

    /// Node `i`, which left keeping its data, starts again from it,
    /// dialing `bootstrap` (its `--peer` flags).
    pub fn restart(&mut self, i: usize, bootstrap: Vec<usize>) {
        let (history, records) = self.slots[i].kept.take().expect("left with its data");
        let own = OwnChats::restore(records, &history);
        self.boot(i, bootstrap, history, own);
    }

    /// A new node joins with an empty history, dialing `bootstrap`; returns
    /// its slot.
    pub fn join(&mut self, bootstrap: Vec<usize>) -> usize {
        let i = self.add_slot();
        self.boot(i, bootstrap, History::new(), OwnChats::default());
        i
    }

    /// Whether every running node holds the same history.
    pub fn converged(&self) -> bool {
        let mut live = self.live().map(|(_, n)| n.history());
        let first = live.next();
        live.all(|h| Some(h) == first)
    }

    /// The running nodes hold one identical history, and none has a chat
    /// of its own to mine.
    pub fn settled(&self) -> bool {
        self.converged() && self.live().all(|(_, n)| n.own().pending() == 0)
    }

    /// Runs until [`settled`](Self::settled), looking every 100 ms of
    /// virtual time, for at most `limit`: how long it took, or `None`.
    pub fn run_until_settled(&mut self, limit: Duration) -> Option<Duration> {
        let began = self.elapsed;
        loop {
            if self.settled() {
                return Some(self.elapsed - began);
            }
            if self.elapsed - began >= limit {
                return None;
            }
            self.run_for(TICK);
        }
    }

    /// What a failing test prints: one line per running node (its slot,
    /// address, connections, history length and last chat, pending
    /// chats), then every distinct history held, chat by chat (text and
    /// the digest's first bytes).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut histories: Vec<(&History, Vec<usize>)> = Vec::new();
        for (i, n) in self.live() {
            let h = n.history();
            out += &format!(
                "  node {i} ({}): {} connections, {} chats, last {:?}, {} pending\n",
                self.slots[i].addr,
                self.net.ends_of(i).len(),
                h.len(),
                h.last()
                    .map(|c| String::from_utf8_lossy(c.text()).into_owned()),
                n.own().pending()
            );
            match histories.iter_mut().find(|(held, _)| *held == h) {
                Some((_, nodes)) => nodes.push(i),
                None => histories.push((h, vec![i])),
            }
        }
        if histories.len() > 1 {
            for (h, nodes) in histories {
                out += &format!("  the history of nodes {nodes:?}:\n");
                for (k, c) in h.iter().enumerate() {
                    out += &format!(
                        "    #{k} {:02x?} {:?}\n",
                        &c.digest()[..4],
                        String::from_utf8_lossy(c.text())
                    );
                }
            }
        }
        out
    }
}
