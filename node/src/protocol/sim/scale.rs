//! The compact relay extension at scale, in the simulator: what a chat
//! costs the whole network when every node holds a large history, with the
//! extension on every node, on none, and on every other one.
//!
//! The network: [`NODES`] nodes, each starting from the 100,000-chat
//! fixture (`tests/fixtures/history-100k.bin`; clones of one history share
//! its chunks), on a random sparse topology: node `i` is given 3 or 4
//! random earlier nodes as its peers (nodes 1..=3 all the earlier ones),
//! and only those links may connect ([`Sim::restrict`]: nodes learn other
//! addresses from PeerLists and would otherwise dial them all). Links have
//! the latencies of [`Faults::wan`] (nodes spread over the world: one-way
//! 1 to 300 ms, median 38 ms), nothing lost or cut; the simulator has no
//! bandwidth, so a full archive takes as long as a Tip. After 10 s of
//! virtual time to connect, [`CHATS`] chats are typed at random nodes at
//! random moments over [`SPAN`], then the network runs until every node
//! holds one history with every chat once. The figure: the bytes of every
//! message sent network-wide from the first chat on (archives, extension
//! Chats, and the other extension messages: `archive_bytes +
//! relay_bytes`), per chat.
//!
//! Ignored (minutes, gigabytes of nothing: the histories are shared):
//!
//! ```text
//! cargo test -p node --release --lib sim::scale -- --ignored --nocapture
//! ```
//!
//! `SIM_SCALE_NODES` sets another number of nodes, `SIM_SEED` another
//! seed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::History;

use super::{Faults, Kept, Sim};

/// Nodes in the network, unless `SIM_SCALE_NODES` says otherwise.
const NODES: usize = 1_000;
/// Chats typed in each run.
const CHATS: usize = 100;
/// The chats are typed over this much virtual time.
const SPAN: Duration = Duration::from_secs(60);
/// Virtual time for the network to connect before the first chat.
const WARM_UP: Duration = Duration::from_secs(10);
/// The longest a run may take to settle after the last chat.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

fn param(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 100,000-chat fixture.
fn fixture() -> History {
    crate::test_support::fixture("history-100k.bin")
}

/// Each node's peers: node `i` gets 3 or 4 random earlier nodes (all of
/// them when fewer).
fn topology(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let mut earlier: Vec<usize> = (0..i).collect();
            earlier.shuffle(rng);
            earlier.truncate(rng.random_range(3..=4));
            earlier
        })
        .collect()
}

/// What one run measured.
struct Row {
    /// Bytes of everything sent from the first chat on.
    bytes: u64,
    /// Archives and extension Chats messages sent from the first chat on.
    archives: u64,
    /// The part of `bytes` that is extension messages other than Chats.
    relay_bytes: u64,
    /// Virtual time from the end of [`SPAN`] to a settled network.
    settled: Duration,
    /// Real time the run took.
    wall: Duration,
}

/// One run on `peers`, the nodes with `relay(i)` offering the extension.
fn run(
    peers: &[Vec<usize>],
    history: &History,
    seed: u64,
    relay: impl Fn(usize) -> bool + 'static,
    name: &str,
) -> Row {
    let began = Instant::now();
    let n = peers.len();
    let links: BTreeSet<(usize, usize)> = peers
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().map(move |&j| (i.min(j), i.max(j))))
        .collect();
    let bootstrap = peers.to_vec();
    let history = history.clone();
    let mut sim = Sim::with_relay(
        n,
        move |i| bootstrap[i].clone(),
        seed,
        Faults::wan(),
        move |_| -> Kept { (history.clone(), Vec::new()) },
        relay,
    );
    sim.restrict(move |i, j| links.contains(&(i.min(j), i.max(j))));
    sim.max_steps = 200_000_000;
    sim.run_for(WARM_UP);

    // The plan: which node types which chat when.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xc4a7);
    let mut plan: Vec<(Duration, usize)> = (0..CHATS)
        .map(|_| {
            let at = Duration::from_micros(rng.random_range(0..SPAN.as_micros() as u64));
            (at, rng.random_range(0..n))
        })
        .collect();
    plan.sort();
    let (bytes0, archives0, relay0) = (
        sim.archive_bytes + sim.relay_bytes,
        sim.archives,
        sim.relay_bytes,
    );
    let mut texts = Vec::new();
    let mut now = Duration::ZERO;
    for (k, &(at, node)) in plan.iter().enumerate() {
        sim.run_for(at - now);
        now = at;
        let text = format!("scale chat {k} typed at node {node}");
        sim.command(node, &text);
        texts.push(text);
    }
    sim.run_for(SPAN - now);
    let settled = sim.run_until_settled(SETTLE_LIMIT);
    assert!(
        settled.is_some(),
        "{name}, seed {seed}: not settled {SETTLE_LIMIT:?} after the last chat:\n{}",
        sim.describe()
    );

    // Every chat once in the one history every node holds.
    assert!(sim.converged(), "{name}, seed {seed}");
    let held = sim.node(0).history();
    assert_eq!(
        held.len(),
        100_000 + CHATS,
        "{name}, seed {seed}: the history's length"
    );
    for text in &texts {
        let count = held
            .iter()
            .skip(100_000)
            .filter(|c| c.text() == text.as_bytes())
            .count();
        assert_eq!(count, 1, "{name}, seed {seed}: {text:?} {count} times");
    }
    miner::validate(held).expect("a valid history");
    for (i, node) in sim.live() {
        assert_eq!(node.history(), held, "{name}, seed {seed}: node {i}");
    }

    Row {
        bytes: sim.archive_bytes + sim.relay_bytes - bytes0,
        archives: sim.archives - archives0,
        relay_bytes: sim.relay_bytes - relay0,
        settled: settled.expect("checked"),
        wall: began.elapsed(),
    }
}

#[test]
#[ignore = "minutes: cargo test -p node --release --lib sim::scale -- --ignored --nocapture"]
fn bytes_per_chat_on_a_large_network_of_large_histories() {
    let n = param("SIM_SCALE_NODES", NODES as u64) as usize;
    let seed = param("SIM_SEED", 1);
    let history = fixture();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let peers = topology(n, &mut rng);
    let links: BTreeSet<(usize, usize)> = peers
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().map(move |&j| (i.min(j), i.max(j))))
        .collect();
    println!(
        "sim::scale: {n} nodes, each holding the 100,000-chat fixture ({:.1} MB as an archive), \
         {} links (node i given 3-4 random earlier nodes, no other link allowed), Faults::wan(), \
         {CHATS} chats typed at random nodes over {} s of virtual time, seed {seed}",
        history.archive_len() as f64 / 1e6,
        links.len(),
        SPAN.as_secs()
    );
    println!(
        "{:<34} {:>16} {:>14} {:>14} {:>12} {:>9}",
        "extension", "bytes per chat", "archives+Chats", "other ext.", "settled", "wall"
    );
    println!(
        "{:<34} {:>16} {:>14} {:>14} {:>12} {:>9}",
        "", "(network-wide)", "per chat", "bytes per chat", "after span", "time"
    );
    type Offers = fn(usize) -> bool;
    let runs: [(&str, Offers); 3] = [
        ("(a) on every node", |_| true),
        ("(b) off everywhere", |_| false),
        ("(c) on every other node (even i)", |i| i % 2 == 0),
    ];
    for (name, relay) in runs {
        let row = run(&peers, &history, seed, relay, name);
        let per_chat = |x: u64| x as f64 / CHATS as f64;
        println!(
            "{:<34} {:>16.0} {:>14.1} {:>14.0} {:>10.1} s {:>7.0} s",
            name,
            per_chat(row.bytes),
            per_chat(row.archives),
            per_chat(row.relay_bytes),
            row.settled.as_secs_f64(),
            row.wall.as_secs_f64()
        );
    }
}
