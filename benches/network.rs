//! Figures of the node as a whole, real processes on loopback (printed, not
//! criterion: these time whole networks, not functions):
//! - propagation: on a 10-node network, the time from a chat being mined at
//!   one node to its presence at all others (median and worst of 21 chats);
//! - memory: resident size of a node holding the 100,000-chat fixture,
//!   after adopting it from a peer and after loading it from disk.
//!
//! `cargo bench -p node --bench network`

// The end-to-end tests' support module, of which this bench uses a part.
// Public here, so that the rest is not reported as dead code in this
// build: the test binary, which uses all of it, declares it private and is
// where dead code in it is reported.
#[path = "../tests/e2e/support/mod.rs"]
pub mod support;

use std::time::{Duration, Instant};

use support::observe::proc_kb;
use support::{Net, Node, WAIT, fixture_bytes, poll};

fn main() {
    propagation();
    memory();
}

/// When `node` printed the chat `text` (as mined there or received).
fn printed_at(node: &Node, text: &str) -> Option<Instant> {
    let mined = format!(" {text} (mined: ");
    node.timed_stdout()
        .into_iter()
        .find(|(_, line)| {
            line.starts_with('#') && (line.ends_with(&format!(" {text}")) || line.contains(&mined))
        })
        .map(|(at, _)| at)
}

fn propagation() {
    let net = Net::new(17, 0);
    let n = 10;
    let mut nodes: Vec<Node> = (1..=n as u8)
        .map(|host| {
            let peer = net.addr(host.max(2) - 1).to_string();
            let args: &[&str] = if host == 1 { &[] } else { &["--peer", &peer] };
            net.node(host, args)
        })
        .collect();
    let meshed = poll(Duration::from_secs(30), || {
        nodes
            .iter_mut()
            .all(|node| node.peer_addrs().len() == n - 1)
            .then_some(())
    });
    assert!(
        meshed.is_some(),
        "the 10 nodes did not all connect to each other"
    );
    // Let every node's PeerList reach every other node.
    std::thread::sleep(Duration::from_secs(2));

    let mut samples = Vec::new();
    for k in 0..21 {
        let origin = k % n;
        let text = format!("propagation probe {k}");
        nodes[origin].send(&format!("chat {text}"));
        let times = poll(WAIT, || {
            nodes
                .iter()
                .map(|node| printed_at(node, &text))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_else(|| panic!("chat {k} did not reach every node"));
        let mined = times[origin];
        let last = times.iter().copied().max().expect("10 nodes");
        samples.push(last - mined);
        std::thread::sleep(Duration::from_millis(200));
    }
    samples.sort();
    println!(
        "propagation, 10 nodes on loopback, 21 chats: median {:.2} ms, worst {:.2} ms from mined at one node to printed at all (target < 100 ms)",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

/// Resident and peak resident memory of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let field = |name| proc_kb(pid, name).expect("a /proc status field") * 1024;
    (field("VmRSS"), field("VmHWM"))
}

fn memory() {
    let net = Net::new(17, 1);
    let archive = fixture_bytes("history-100k.bin");
    let wire = archive.len() as f64;
    let mb = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let mut node = net.node(1, &[]);
    let (baseline, _) = memory_of(node.pid().expect("running"));
    let started = Instant::now();
    net.peer(100, 1).send_raw(&archive);
    node.expect_line(
        |l| l.starts_with("#99999 "),
        Duration::from_secs(60),
        "adopting the 100k history",
    );
    let adopted_in = started.elapsed();
    // The node also answers a request: the encoded archive is built and kept.
    assert_eq!(net.archive(101, 1).len(), 100_000);
    let (adopted, adopted_peak) = memory_of(node.pid().expect("running"));
    node.sigterm();
    node.restart();
    let (loaded, loaded_peak) = memory_of(node.pid().expect("running"));
    let target = 2.0 * wire / (1 << 20) as f64 + 20.0;
    println!(
        "memory, 100,000-chat history ({:.2} MB on the wire): baseline {:.1} MB; after adopting it from a peer \
         (in {:.0} ms) and serving it once: RSS {:.1} MB, peak {:.1} MB; after loading it from disk: RSS {:.1} MB, \
         peak {:.1} MB (target < {target:.1} MB)",
        wire / (1 << 20) as f64,
        mb(baseline),
        adopted_in.as_secs_f64() * 1e3,
        mb(adopted),
        mb(adopted_peak),
        mb(loaded),
        mb(loaded_peak),
    );
}
