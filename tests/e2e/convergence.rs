//! Convergence under load and faults, with real node processes on
//! loopback: N nodes in a chain of bootstrap peers are each sent M chats
//! at random moments, so that mining collides, while nodes are killed with
//! SIGKILL and restarted on their data directories and one node joins
//! late. Then every node must hold the same valid history with every
//! accepted chat exactly once.
//!
//! Size by environment: CONVERGENCE_NODES (default 8), CONVERGENCE_CHATS
//! (per node, default 10), CONVERGENCE_SPREAD_MS (how long chats keep
//! coming, default 6000), CONVERGENCE_SEED. By hand, larger:
//! `CONVERGENCE_NODES=30 CONVERGENCE_CHATS=50 cargo test --release -p node
//! --test e2e convergence:: -- --nocapture`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use wire::History;

use crate::support::{self, Net, Node, WAIT, fixture_bytes, shared_cpu};

const NET: Net = Net::new(2, 0);

fn param(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Something that happens at a moment of the run.
enum Step {
    Chat { node: usize, text: String },
    Kill { node: usize },
    Restart { node: usize },
    Join,
}

/// What nodes sent, from their `status`: archives by why, and bytes.
#[derive(Default)]
struct Sent {
    bytes: u64,
    mined: u64,
    relayed: u64,
    asked: u64,
    catch_up: u64,
}

impl Sent {
    /// Adds what `node` sent since it started.
    fn add(&mut self, node: &mut Node) {
        let status = node.status();
        let field = |name: &str| {
            status["sent"][name]
                .as_u64()
                .unwrap_or_else(|| panic!("no sent {name} in {status}"))
        };
        self.bytes += field("bytes");
        self.mined += field("mined");
        self.relayed += field("relayed");
        self.asked += field("asked");
        self.catch_up += field("catch_up");
    }
}

#[test]
fn every_accepted_chat_lands_once_and_all_nodes_agree() {
    let _cpu = shared_cpu();
    let n = param("CONVERGENCE_NODES", 8) as usize;
    let m = param("CONVERGENCE_CHATS", 10) as usize;
    let spread = Duration::from_millis(param("CONVERGENCE_SPREAD_MS", 6000));
    let seed = param("CONVERGENCE_SEED", 0x5eed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    assert!((2..=90).contains(&n), "CONVERGENCE_NODES must be 2..=90");

    // Hosts 1..=n, each bootstrapping from the one before; host n+1 joins late.
    let peer_args = |host: usize| -> Vec<String> {
        if host == 1 {
            vec![]
        } else {
            vec!["--peer".into(), NET.addr(host as u8 - 1).to_string()]
        }
    };
    let start = |host: usize| {
        let args = peer_args(host);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        NET.node(host as u8, &args)
    };
    let mut nodes: Vec<Node> = (1..=n).map(start).collect();
    // Let the chain become a mesh (PeerLists every 5 s), bounded: relaying
    // costs more while nodes do not yet know who is connected to whom.
    let settle = Instant::now() + Duration::from_secs(param("CONVERGENCE_SETTLE_S", 20));
    while Instant::now() < settle
        && !nodes
            .iter_mut()
            .all(|node| node.peer_addrs().len() >= n - 1)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let meshed = nodes
        .iter_mut()
        .map(|node| node.peer_addrs().len())
        .min()
        .unwrap_or(0);

    // The plan: chats at random moments, two kills with restarts, a late joiner.
    let mut plan: Vec<(Duration, Step)> = Vec::new();
    for node in 0..n {
        for k in 0..m {
            let at = spread.mul_f64(rng.random_range(0.0..1.0));
            plan.push((
                at,
                Step::Chat {
                    node,
                    text: format!("chat {k} typed at node {}", node + 1),
                },
            ));
        }
    }
    let mut victims: Vec<usize> = (1..n).collect();
    victims.shuffle(&mut rng);
    for &node in victims.iter().take(2.min(n - 1)) {
        let at = spread.mul_f64(rng.random_range(0.1..0.7));
        plan.push((at, Step::Kill { node }));
        plan.push((
            at + Duration::from_millis(rng.random_range(300..1500)),
            Step::Restart { node },
        ));
    }
    plan.push((spread / 2, Step::Join));
    plan.sort_by_key(|(at, _)| *at);

    let mut accepted: Vec<String> = Vec::new();
    let mut postponed: HashMap<usize, Vec<String>> = HashMap::new();
    let mut sent = Sent::default();
    let began = Instant::now();
    for (at, step) in plan {
        std::thread::sleep(at.saturating_sub(began.elapsed()));
        match step {
            Step::Chat { node, text } => {
                if let Some(waiting) = postponed.get_mut(&node) {
                    waiting.push(text);
                    continue;
                }
                nodes[node].chat(&text);
                accepted.push(text);
            }
            Step::Kill { node } => {
                sent.add(&mut nodes[node]);
                nodes[node].sigkill();
                postponed.insert(node, Vec::new());
            }
            Step::Restart { node } => {
                nodes[node].restart();
                // Chats due while it was down are typed now.
                for text in postponed.remove(&node).unwrap_or_default() {
                    nodes[node].chat(&text);
                    accepted.push(text);
                }
            }
            Step::Join => {
                let args = ["--peer".to_string(), NET.addr(n as u8).to_string()];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                nodes.push(NET.node(n as u8 + 1, &args));
            }
        }
    }
    let last_chat = Instant::now();

    // Quiescence: every node's history, asked over the wire, is the same and
    // holds every accepted chat.
    let budget = Duration::from_secs(param("CONVERGENCE_WAIT_S", 120));
    let complete = |h: &History| {
        let texts: Vec<&[u8]> = h.iter().map(|c| c.text()).collect();
        accepted.iter().all(|t| texts.contains(&t.as_bytes()))
    };
    let mut histories: Vec<History>;
    loop {
        histories = (0..nodes.len())
            .map(|i| NET.archive(150 + (i % 100) as u8, i as u8 + 1))
            .collect();
        if histories.windows(2).all(|w| w[0] == w[1]) && complete(&histories[0]) {
            break;
        }
        if last_chat.elapsed() > budget {
            let lens: Vec<usize> = histories.iter().map(History::len).collect();
            panic!("no convergence {budget:?} after the last chat: history lengths {lens:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let converged_after = last_chat.elapsed();

    let history = &histories[0];
    miner::validate(history).expect("the shared history is valid");
    for text in &accepted {
        let times = history
            .iter()
            .filter(|c| c.text() == text.as_bytes())
            .count();
        assert_eq!(times, 1, "{text:?} is in the history {times} times");
    }
    assert_eq!(
        history.len(),
        accepted.len(),
        "the history holds chats nobody typed"
    );

    for node in &mut nodes {
        sent.add(node);
    }
    let per_chat = |count: u64| count as f64 / accepted.len() as f64;
    println!(
        "convergence: {} nodes (+1 late; each saw at least {meshed} peers before the first chat), {m} chats each, 2 killed and restarted: {} chats accepted, {} in the \
         final history; converged {:.2} s after the last chat; {:.0} archive bytes sent per chat ({:.1} x the \
         final archive of {} bytes; archives per chat: {:.1} mined, {:.1} relayed, {:.1} asked, {:.1} to catch up)",
        n,
        accepted.len(),
        history.len(),
        converged_after.as_secs_f64(),
        per_chat(sent.bytes),
        per_chat(sent.bytes) / history.archive_len() as f64,
        history.archive_len(),
        per_chat(sent.mined),
        per_chat(sent.relayed),
        per_chat(sent.asked),
        per_chat(sent.catch_up),
    );
}

/// The 100,000-chat fixture pushed to a node that holds its first 1,000,
/// killed at moments while it receives, validates and writes it: after a
/// restart the node holds a valid prefix of it (never less than it had),
/// and takes the whole of it when pushed again.
#[test]
fn a_kill_while_taking_a_large_archive_leaves_a_valid_history() {
    let _cpu = shared_cpu();
    let net = Net::new(2, 1);
    let small = fixture_bytes("history-1k.bin");
    let large = fixture_bytes("history-100k.bin");
    let mut node = net.node(1, &[]);
    let mut peer = net.peer(100, 1);
    peer.send_raw(&small);
    node.expect_line(|l| l.starts_with("#999 "), WAIT, "taking the 1k history");
    // The store thread writes it off the event loop: wait until it is on
    // disk, which is what a restart keeps.
    let on_disk = support::poll(WAIT, || (node.status()["stored"] == 1000).then_some(()));
    assert!(on_disk.is_some(), "the 1k history never reached the disk");
    for (round, delay_ms) in [0u64, 40, 150, 400].into_iter().enumerate() {
        let mut peer = net.peer(101 + round as u8, 1);
        peer.send_raw(&large[..large.len() / 2]);
        if delay_ms == 0 {
            node.sigkill();
        } else {
            peer.send_raw(&large[large.len() / 2..]);
            std::thread::sleep(Duration::from_millis(delay_ms));
            node.sigkill();
        }
        node.restart();
        let history = net.archive(120 + round as u8, 1);
        assert!(
            history.len() >= 1000,
            "round {round}: {} chats after the restart",
            history.len()
        );
        miner::validate(&history).expect("a valid history after the restart");
        assert_eq!(
            history.segments().collect::<Vec<_>>().concat(),
            &large[5..5 + history.wire_len()],
            "a prefix of the fixture"
        );
    }
    // Pushed again (some rounds may have taken it whole already).
    let mut peer = net.peer(130, 1);
    peer.send_raw(&large);
    let whole = support::poll(Duration::from_secs(60), || {
        (net.archive(131, 1).len() == 100_000).then_some(())
    });
    assert!(whole.is_some(), "the node did not take the 100k history");
}

/// Three nodes, six rounds of chats sent at the same moment on all three:
/// collisions, forks, chats mined again. Every node's feed (what its
/// screen shows, `hist --follow` over the control socket) shows every chat
/// of the final history exactly once, in order, a switch to another
/// history taking back what it replaced.
#[test]
fn every_node_s_feed_shows_every_chat_of_the_final_history_once_in_order() {
    let _cpu = shared_cpu();
    let net = Net::new(2, 2);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|host| {
            let peers: Vec<String> = (1..host).map(|h| net.addr(h).to_string()).collect();
            let mut args = Vec::new();
            for peer in &peers {
                args.extend(["--peer", peer.as_str()]);
            }
            net.node(host, &args)
        })
        .collect();
    let meshed = support::poll(WAIT, || {
        nodes
            .iter_mut()
            .all(|n| n.peer_addrs().len() == 2)
            .then_some(())
    });
    assert!(meshed.is_some(), "the three nodes did not mesh");
    let followers: Vec<_> = nodes.iter().map(Node::follow).collect();
    let mut texts = Vec::new();
    for round in 0..6 {
        let sent: Vec<String> = (0..3)
            .map(|n| format!("round {round} from node {n}"))
            .collect();
        // At the same moment: the requests go out back to back.
        std::thread::scope(|scope| {
            for (node, text) in nodes.iter_mut().zip(&sent) {
                scope.spawn(move || node.chat(text));
            }
        });
        texts.extend(sent);
        std::thread::sleep(Duration::from_millis(300));
    }
    let want = texts.len();
    let settled = support::poll(Duration::from_secs(60), || {
        let hists: Vec<Vec<String>> = nodes.iter_mut().map(Node::hist).collect();
        (hists[0].len() == want && hists.iter().all(|h| *h == hists[0])).then(|| hists[0].clone())
    });
    let history = settled.unwrap_or_else(|| {
        panic!(
            "no agreement: {:?}",
            nodes.iter_mut().map(Node::hist).collect::<Vec<_>>()
        )
    });
    for text in &texts {
        assert_eq!(history.iter().filter(|t| *t == text).count(), 1, "{text}");
    }
    let expected: Vec<Option<String>> = history.into_iter().map(Some).collect();
    for (k, follower) in followers.iter().enumerate() {
        let shown = support::poll(WAIT, || {
            let shown = follower.shown();
            (shown == expected).then_some(shown)
        });
        assert!(
            shown.is_some(),
            "node {k}'s feed: {:?}\nfinal history: {expected:?}",
            follower.shown()
        );
    }
}
