//! A simulated network of state machines: virtual time, seeded latencies,
//! real MD5 (mining and validation are computed, then delivered after a
//! virtual delay). Tests of convergence and of relay cost run here, with a
//! bound on steps so a livelock fails instead of hanging.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use miner::{JobStats, Miner};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::History;

use super::tests::config;
use super::*;
use crate::command::Command;

/// What the simulator delivers to a node.
enum Delivery {
    Event(Event),
    /// An archive, judged against the receiver's history when it arrives.
    Archive {
        conn: ConnId,
        history: History,
        wire_len: usize,
    },
}

const TICK: Duration = Duration::from_millis(100);

pub struct Sim {
    pub nodes: Vec<Node>,
    addrs: Vec<Ipv4Addr>,
    /// Which pairs may connect (a topology); all pairs when `None`.
    allowed: Option<Box<dyn Fn(usize, usize) -> bool>>,
    /// conn -> (owner node, the other end's conn)
    links: HashMap<ConnId, (usize, ConnId)>,
    next_conn: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: HashMap<u64, Delivery>,
    seq: u64,
    pub elapsed: Duration,
    start: Instant,
    rng: Xoshiro256PlusPlus,
    miner: Miner,
    pub archive_bytes: u64,
    pub archives: u64,
}

impl Sim {
    /// `n` nodes at 127.50.0.1.., each given `bootstrap(i)` as its peers.
    pub fn new(n: usize, bootstrap: impl Fn(usize) -> Vec<usize>, seed: u64) -> Sim {
        let start = Instant::now();
        let addrs: Vec<Ipv4Addr> = (0..n)
            .map(|i| Ipv4Addr::new(127, 50, (i / 250) as u8, (i % 250 + 1) as u8))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let peers = bootstrap(i).into_iter().map(|j| addrs[j]).collect();
                let mut config = config(addrs[i], peers);
                config.max_connecting = 64;
                Node::new(
                    config,
                    History::new(),
                    OwnChats::default(),
                    seed + i as u64,
                    start,
                )
            })
            .collect();
        let mut sim = Sim {
            nodes,
            addrs,
            allowed: None,
            links: HashMap::new(),
            next_conn: 1,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            elapsed: Duration::ZERO,
            start,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            miner: Miner::new(1),
            archive_bytes: 0,
            archives: 0,
        };
        for i in 0..n {
            sim.schedule(TICK, i, Event::Tick);
            sim.perform(i);
        }
        sim
    }

    pub fn restrict(&mut self, allowed: impl Fn(usize, usize) -> bool + 'static) {
        self.allowed = Some(Box::new(allowed));
    }

    fn schedule(&mut self, after: Duration, node: usize, event: Event) {
        self.deliver(after, node, Delivery::Event(event));
    }

    fn deliver(&mut self, after: Duration, node: usize, delivery: Delivery) {
        self.seq += 1;
        self.events.insert(self.seq, delivery);
        self.queue
            .push(Reverse((self.elapsed + after, self.seq, node)));
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(self.rng.random_range(200..3000))
    }

    pub fn command(&mut self, node: usize, text: &str) {
        let now = self.start + self.elapsed;
        self.nodes[node].handle(
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
        let mut steps = 0u64;
        while let Some(Reverse((at, seq, node))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            steps += 1;
            assert!(steps < 10_000_000, "simulation does not settle");
            self.queue.pop();
            self.elapsed = at;
            let event = match self.events.remove(&seq).expect("scheduled") {
                Delivery::Event(event) => event,
                Delivery::Archive {
                    conn,
                    history,
                    wire_len,
                } => Event::Archive {
                    conn,
                    archive: Archive::judge(self.nodes[node].history(), history),
                    wire_len,
                },
            };
            if matches!(event, Event::Tick) {
                self.schedule(TICK, node, Event::Tick);
            }
            let now = self.start + self.elapsed;
            self.nodes[node].handle(now, event);
            self.perform(node);
        }
        self.elapsed = until;
    }

    fn perform(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            match action {
                Action::Send { conn, payload } => {
                    let Some(&(_, remote)) = self.links.get(&conn) else {
                        continue;
                    };
                    let Some(&(j, _)) = self.links.get(&remote) else {
                        continue;
                    };
                    let latency = self.latency();
                    let wire_len = payload.len();
                    let delivery = match payload {
                        Payload::Archive(history) => {
                            self.archives += 1;
                            self.archive_bytes += wire_len as u64;
                            Delivery::Archive {
                                conn: remote,
                                history,
                                wire_len,
                            }
                        }
                        Payload::Message(bytes) => Delivery::Event(Event::Received {
                            conn: remote,
                            message: wire::decode(&bytes).expect("nodes send valid bytes"),
                            wire_len,
                        }),
                    };
                    self.deliver(latency, j, delivery);
                }
                Action::Connect { addr } => {
                    let target = self.addrs.iter().position(|&a| a == addr);
                    let allowed =
                        target.is_some_and(|j| self.allowed.as_ref().is_none_or(|f| f(i, j)));
                    let latency = self.latency();
                    match target {
                        Some(j) if allowed => {
                            let (a, b) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
                            self.next_conn += 2;
                            self.links.insert(a, (i, b));
                            self.links.insert(b, (j, a));
                            let (ai, aj) = (self.addrs[i], self.addrs[j]);
                            self.schedule(
                                latency,
                                i,
                                Event::Connected {
                                    conn: a,
                                    addr: aj,
                                    local: ai,
                                    direction: Direction::Outbound,
                                },
                            );
                            self.schedule(
                                latency,
                                j,
                                Event::Connected {
                                    conn: b,
                                    addr: ai,
                                    local: aj,
                                    direction: Direction::Inbound,
                                },
                            );
                        }
                        _ => self.schedule(
                            latency,
                            i,
                            Event::ConnectFailed {
                                addr,
                                reason: "unreachable".into(),
                            },
                        ),
                    }
                }
                Action::Close { conn, .. } | Action::CloseWhenIdle { conn } => {
                    if let Some((_, remote)) = self.links.remove(&conn) {
                        let latency = self.latency();
                        if let Some((j, _)) = self.links.remove(&remote) {
                            self.schedule(
                                latency,
                                j,
                                Event::Disconnected {
                                    conn: remote,
                                    ending: Ending::ClosedByPeer,
                                },
                            );
                        }
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
                        }),
                    );
                }
                Action::CancelMining { .. }
                | Action::Save(Save::History { .. })
                | Action::Show(_)
                | Action::Reply { .. }
                | Action::Shutdown => {}
            }
        }
    }

    /// Whether every node holds the same history.
    pub fn converged(&self) -> bool {
        self.nodes
            .windows(2)
            .all(|w| w[0].history() == w[1].history())
    }
}

/// Every chat typed anywhere, in the final history exactly once.
fn assert_all_chats_once(sim: &Sim, texts: &[String]) {
    let history = sim.nodes[0].history();
    for text in texts {
        let count = history
            .iter()
            .filter(|c| c.text() == text.as_bytes())
            .count();
        assert_eq!(count, 1, "chat {text:?} is in the history {count} times");
    }
    assert_eq!(history.len(), texts.len());
    miner::validate(history).expect("valid");
}

#[test]
fn colliding_chats_all_land_once_and_every_node_agrees() {
    for seed in [1, 2, 3] {
        let n = 8;
        let mut sim = Sim::new(n, |i| if i == 0 { vec![] } else { vec![i - 1] }, seed);
        sim.run_for(Duration::from_secs(8));
        let mut texts = Vec::new();
        for round in 0..10 {
            for node in 0..n {
                let text = format!("chat {round} from node {node}");
                sim.command(node, &text);
                texts.push(text);
            }
            sim.run_for(Duration::from_millis(30));
        }
        let mut waited = Duration::ZERO;
        while !(sim.converged() && sim.nodes.iter().all(|n| n.own().pending() == 0)) {
            assert!(
                waited < Duration::from_secs(600),
                "seed {seed}: no convergence"
            );
            sim.run_for(Duration::from_secs(1));
            waited += Duration::from_secs(1);
        }
        assert_all_chats_once(&sim, &texts);
    }
}

/// Archives sent per chat when chats are mined one at a time.
fn relay_cost(n: usize, chain: bool) -> (f64, f64) {
    let mut sim = Sim::new(
        n,
        |i| {
            if i == 0 {
                vec![]
            } else if chain {
                vec![i - 1]
            } else {
                (0..i).collect()
            }
        },
        9,
    );
    if chain {
        sim.restrict(|i, j| i.abs_diff(j) == 1);
    }
    sim.run_for(Duration::from_secs(10));
    assert!(sim.converged());
    let chats = 20;
    // Warm-up chats fill the history; then measure chats spaced apart.
    let (archives, bytes) = (sim.archives, sim.archive_bytes);
    let mut total_len = 0;
    for k in 0..chats {
        let node = (k * 7) % n;
        sim.command(node, &format!("chat number {k}, from node {node}"));
        sim.run_for(Duration::from_secs(2));
        assert!(sim.converged());
        total_len += sim.nodes[0].history().archive_len();
    }
    let per_chat = (sim.archives - archives) as f64 / chats as f64;
    let history_share = (sim.archive_bytes - bytes) as f64 / total_len as f64;
    (per_chat, history_share)
}

#[test]
fn relaying_costs_about_one_archive_per_link_not_per_pair() {
    let n = 10;
    let (mesh, mesh_bytes) = relay_cost(n, false);
    let (chain, chain_bytes) = relay_cost(n, true);
    println!(
        "relay, {n} nodes: full mesh {mesh:.1} archives per chat ({mesh_bytes:.1} x the archive's size), \
         chain {chain:.1} ({chain_bytes:.1} x); naive relay in the mesh: {}",
        (n - 1) * (n - 1)
    );
    // The origin sends to its n-1 peers and those skip each other: n-1
    // archives, where relaying to all but the source costs (n-1)^2.
    assert!(
        mesh <= (n - 1) as f64 + 0.5,
        "full mesh: {mesh} archives per chat"
    );
    // A chain cannot do better than one archive per link.
    assert!(
        chain <= (n - 1) as f64 + 0.5,
        "chain: {chain} archives per chat"
    );
    assert!(
        chain >= (n - 1) as f64 - 0.5,
        "chain: {chain}: some node was skipped"
    );
}
