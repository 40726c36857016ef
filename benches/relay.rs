//! Five hops on shaped links, with the compact relay extension
//! (`docs/EXTENSION.md`) and without: real node processes in a line
//! A-B-C-D-E-F, each holding the 100,000-chat fixture
//! (`tests/fixtures/history-100k.bin`), on links of 100 Mbit/s and a
//! 20 ms round trip. A chat is typed at A; the figure is the time from
//! its being mined at A to its being in F's history (a `hist --follow`
//! event of each), median of 5 chats, once with the extension on every
//! node (the default) and once with `--no-relay` on every node, printed
//! side by side with the bytes the six nodes received per chat and link
//! (`bytes_in` of `peers`).
//!
//! The links: everything runs in a private network namespace (this bench
//! runs itself again under `unshare --net --mount`, see
//! `tests/e2e/support/namespace.rs`), whose loopback gets
//! `tc qdisc add dev lo root netem delay 10ms rate 100mbit`: every packet
//! is delayed 10 ms, both ways, so a round trip takes 20 ms; the rate is
//! that of `lo`, which all links share (in a line only one of them is busy
//! at a time). The line: each node is given the one before it as `--peer`,
//! but nodes learn each other's addresses from PeerLists and would form a
//! mesh, so nftables rules in the namespace reject (TCP reset) every
//! packet between nodes that are not neighbours, on every port. The
//! fixture is pushed to each node by a client before the links are
//! shaped.
//!
//! Needs root, `unshare` (util-linux), `ip` and `tc` (iproute2), `nft`
//! (nftables), and a kernel with `sch_netem` (`modprobe sch_netem` is
//! tried first). Without one of these the bench says so and exits 0.
//! `RELAY_SHAPE=rate` runs it on a kernel without netem, the links shaped
//! to 100 Mbit/s by `htb` but not delayed, and `RELAY_SHAPE=none` on
//! plain loopback; their rows say so.
//!
//! `cargo bench -p node --bench relay`

#[path = "../tests/e2e/support/mod.rs"]
pub mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::namespace::{self, nft, run, try_run};
use support::{Net, Node, fixture_bytes, poll};

/// The name of the part of this bench that runs in the namespace.
const INSIDE: &str = "relay_inside";
/// What the bench needs on PATH (with the package that has it), besides
/// root.
const TOOLS: [(&str, &str); 4] = [
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("nft", "nftables"),
];
/// The longest the part in the namespace may run.
const LIMIT: Duration = Duration::from_secs(1200);
/// Nodes in the line, hosts 1..=NODES.
const NODES: u8 = 6;
/// Chats timed in each configuration.
const CHATS: usize = 5;
/// Patience for one chat to cross the line, or a history to be adopted.
const PATIENCE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    if namespace::inner().is_some() {
        inside();
        return ExitCode::SUCCESS;
    }
    if let Some(why) = namespace::missing_here(&TOOLS) {
        println!("relay: skipped: {why}");
        return ExitCode::SUCCESS;
    }
    // netem may be a module; without modprobe (or modules) the inner part
    // finds out.
    let _ = Command::new("modprobe")
        .arg("sch_netem")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let mut child = namespace::command(&[], INSIDE)
        .spawn()
        .expect("starting unshare");
    let status = poll(LIMIT, || child.try_wait().expect("waiting for unshare"));
    match status {
        Some(status) if status.success() => ExitCode::SUCCESS,
        Some(status) => {
            eprintln!("relay: the bench in its network namespace failed ({status})");
            ExitCode::FAILURE
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "relay: the bench in its network namespace still ran after {LIMIT:?}: killed"
            );
            ExitCode::FAILURE
        }
    }
}

/// How the links are shaped.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// netem: 10 ms each way, 100 Mbit/s.
    Netem,
    /// htb: 100 Mbit/s, no delay.
    Rate,
    /// Plain loopback.
    None,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::Netem => "100 Mbit/s, 20 ms round trip (netem)",
            Shape::Rate => "100 Mbit/s, NOT delayed (htb; RELAY_SHAPE=rate)",
            Shape::None => "NOT shaped (plain loopback; RELAY_SHAPE=none)",
        }
    }

    /// Shapes `lo`, or says why it cannot.
    fn apply(self) -> Result<(), String> {
        let tc = |args: &str| -> Result<(), String> {
            let args: Vec<&str> = args.split_whitespace().collect();
            try_run("tc", &args, "").map(drop)
        };
        match self {
            Shape::Netem => tc("qdisc add dev lo root netem delay 10ms rate 100mbit"),
            Shape::Rate => {
                tc("qdisc add dev lo root handle 1: htb default 10 r2q 1000")?;
                tc("class add dev lo parent 1: classid 1:10 htb rate 100mbit ceil 100mbit")
            }
            Shape::None => Ok(()),
        }
    }

    /// Back to plain loopback.
    fn remove(self) {
        if self != Shape::None {
            run("tc", &["qdisc", "del", "dev", "lo", "root"]);
        }
    }
}

/// The part that runs in the namespace.
fn inside() {
    namespace::enter(INSIDE, "the relay bench");
    let shape = match std::env::var("RELAY_SHAPE").as_deref() {
        Ok("rate") => Shape::Rate,
        Ok("none") => Shape::None,
        _ => Shape::Netem,
    };
    // A try on the empty namespace: a kernel without netem says so here.
    if let Err(why) = shape.apply() {
        println!(
            "relay: skipped: tc cannot shape lo here: {why}\n\
             relay: (RELAY_SHAPE=rate runs it with the rate alone, RELAY_SHAPE=none unshaped)"
        );
        return;
    }
    shape.remove();
    let archive = fixture_bytes("history-100k.bin");
    let with = five_hops(Net::new(17, 20), &[], shape, &archive);
    let without = five_hops(Net::new(17, 22), &["--no-relay"], shape, &archive);
    println!(
        "relay: five hops A-B-C-D-E-F, links {}, each node holding the 100,000-chat fixture, \
         {CHATS} chats typed at A, mined at A to in F's history:\n\
         \x20 extension on every node:  median {:.1} ms (of {}), {:.0} bytes received per chat per link\n\
         \x20 --no-relay on every node: median {:.1} ms (of {}), {:.0} bytes received per chat per link\n\
         \x20 target with the extension: < 300 ms",
        shape.describe(),
        ms(with.median),
        list(&with.samples),
        with.bytes_per_link,
        ms(without.median),
        list(&without.samples),
        without.bytes_per_link,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn list(samples: &[Duration]) -> String {
    let ms: Vec<String> = samples.iter().map(|d| format!("{:.1}", ms(*d))).collect();
    format!("{} ms", ms.join(", "))
}

/// What one configuration measured.
struct Hops {
    median: Duration,
    samples: Vec<Duration>,
    bytes_per_link: f64,
}

/// A node's `peers` rows.
fn peer_rows(node: &Node) -> Vec<Value> {
    let reply = node.ask(&json!({"command": "peers"}));
    reply["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("node {}: not a peers reply: {reply}", node.addr))
        .clone()
}

/// The bytes a node received on its connections open now.
fn bytes_in(node: &Node) -> u64 {
    peer_rows(node)
        .iter()
        .map(|row| row["bytes_in"].as_u64().expect("bytes_in"))
        .sum()
}

/// nftables rules that reject every TCP packet between two hosts of `net`
/// among 1..=NODES that are not neighbours.
fn line_rules(net: &Net, table: &str) -> String {
    let mut rules = String::new();
    for i in 1..=NODES {
        for j in 1..=NODES {
            if i.abs_diff(j) > 1 {
                rules += &format!(
                    "    ip saddr {} ip daddr {} meta l4proto tcp reject with tcp reset\n",
                    net.addr(i),
                    net.addr(j)
                );
            }
        }
    }
    format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n"
    )
}

/// Six nodes in a line with `args`, each holding `archive`; links shaped
/// with `shape`; the time a chat typed at A takes from mined at A to in
/// F's history, [`CHATS`] times.
fn five_hops(net: Net, args: &[&str], shape: Shape, archive: &[u8]) -> Hops {
    let table = format!("line{}", net.port());
    nft(&line_rules(&net, &table));
    let dialect = if args.contains(&"--no-relay") {
        "standard"
    } else {
        "relay"
    };
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|host| {
            let prev = net.addr(host.max(2) - 1).to_string();
            let mut node_args: Vec<&str> = args.to_vec();
            if host > 1 {
                node_args.extend(["--peer", &prev]);
            }
            net.node(host, &node_args)
        })
        .collect();
    // The fixture, pushed to each node by a client, on plain loopback.
    let followers: Vec<_> = nodes.iter().map(Node::follow).collect();
    for host in 1..=NODES {
        net.peer(100, host).send_raw(archive);
    }
    for (k, follower) in followers.iter().enumerate() {
        follower
            .len_at(100_000, PATIENCE)
            .unwrap_or_else(|| panic!("node {} did not adopt the fixture", k + 1));
    }
    // Each node connected to its neighbours only, in the dialect asked for.
    let lined = poll(Duration::from_secs(60), || {
        nodes
            .iter_mut()
            .enumerate()
            .all(|(k, node)| {
                let host = k as u8 + 1;
                let want: BTreeSet<Ipv4Addr> = [host - 1, host + 1]
                    .into_iter()
                    .filter(|h| (1..=NODES).contains(h))
                    .map(|h| net.addr(h))
                    .collect();
                let rows = peer_rows(node);
                let dialects_ok = rows
                    .iter()
                    .filter(|row| row["duplicate"] != true)
                    .all(|row| row["dialect"] == dialect);
                node.peer_addrs() == want && dialects_ok
            })
            .then_some(())
    });
    if lined.is_none() {
        let seen: Vec<String> = nodes
            .iter()
            .map(|node| format!("{}: {:?}", node.addr, peer_rows(node)))
            .collect();
        panic!(
            "the nodes did not form a line of {dialect} connections:\n{}",
            seen.join("\n")
        );
    }
    if let Err(why) = shape.apply() {
        panic!("shaping lo: {why}");
    }
    // Let the PeerLists and tips go round on the shaped links.
    std::thread::sleep(Duration::from_secs(6));
    let before: u64 = nodes.iter().map(bytes_in).sum();
    let (first, last) = (&followers[0], &followers[NODES as usize - 1]);
    let mut samples = Vec::new();
    for k in 0..CHATS {
        let text = format!("five hops probe {k}");
        nodes[0].chat(&text);
        let mined = first.chat_at(&text, PATIENCE).expect("mined at A");
        let arrived = last
            .chat_at(&text, PATIENCE)
            .unwrap_or_else(|| panic!("chat {k} did not reach F in {PATIENCE:?}"));
        samples.push(arrived - mined);
        // Let the line go quiet.
        std::thread::sleep(Duration::from_secs(1));
    }
    let after: u64 = nodes.iter().map(bytes_in).sum();
    shape.remove();
    drop(followers);
    drop(nodes);
    run("nft", &["delete", "table", "inet", &table]);
    let mut sorted = samples.clone();
    sorted.sort();
    Hops {
        median: sorted[sorted.len() / 2],
        samples,
        bytes_per_link: after.saturating_sub(before) as f64 / CHATS as f64 / f64::from(NODES - 1),
    }
}
