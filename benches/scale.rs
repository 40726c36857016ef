//! Figures of a node as histories grow: real processes on loopback, a
//! bench binary that prints rows (these time whole processes, not
//! functions).
//!
//! - chat latency: from `chat` sent to the node (control socket) to the
//!   chat in its history, and in a peer's history one loopback hop away
//!   (medians of 31 chats, small history);
//! - for each history size: the time to adopt it pushed by a peer, the
//!   time for a node to join (be in sync with) a node that holds it, the
//!   time a new chat takes to cross one hop, the time to restart with it,
//!   and resident memory: steady (after it settled) and peak (while
//!   adopting and serving), against the targets of 1.15 x the wire size
//!   plus 10 MB and 1.5 x plus 20 MB. The hop (A mines 11 chats, each
//!   timed from mined at A to in B's history, median) is measured twice,
//!   side by side: over the compact relay extension (`docs/EXTENSION.md`,
//!   on by default), then with both nodes restarted with `--no-relay` (the
//!   standard protocol: the whole history on every hop); each with the
//!   bytes B received per chat (`bytes_in` of `peers`, before and after
//!   the 11 chats; PeerLists and the like included).
//!
//! Sizes: the 100,000-chat fixture, and a 1,000,000-chat history the bench
//! mines itself (once; 6 minutes on two busy cores here) and caches under
//! `target/bench-cache/`. `SCALE_SIZES=100000,1000000,10000000` picks
//! others (10 M took 40 minutes to mine here, once).
//!
//! `cargo bench -p node --bench scale`

#[path = "../tests/e2e/support/mod.rs"]
pub mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use support::observe::proc_kb;
use support::{Net, Node, fixture_bytes, poll};
use wire::History;

/// Patience for one large transfer or load.
const LONG: Duration = Duration::from_secs(300);

fn main() {
    chat_latency();
    let sizes = std::env::var("SCALE_SIZES").unwrap_or_else(|_| "100000,1000000".into());
    for (k, size) in sizes.split(',').enumerate() {
        let size: usize = size.trim().parse().expect("SCALE_SIZES: chat counts");
        history_row(k as u8 + 1, size);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Resident and peak resident memory, in bytes.
fn memory(node: &Node) -> (u64, u64) {
    let pid = node.pid().expect("running");
    let field = |name| proc_kb(pid, name).expect("a /proc status field") * 1024;
    (field("VmRSS"), field("VmHWM"))
}

/// Lets the peak-memory figure start again from now.
fn reset_peak(node: &Node) {
    let pid = node.pid().expect("running");
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn chat_latency() {
    let net = Net::new(17, 10);
    let mut a = net.node(1, &[]);
    let mut b = net.node(2, &["--peer", &net.addr(1).to_string()]);
    let connected = poll(Duration::from_secs(15), || {
        (!b.peers().is_empty()).then_some(())
    });
    assert!(connected.is_some(), "B never connected to A");
    std::thread::sleep(Duration::from_secs(2));
    let (own, hop) = (a.follow(), b.follow());
    let (mut to_own, mut to_peer) = (Vec::new(), Vec::new());
    for k in 0..31 {
        let text = format!("latency probe {k}");
        let sent = Instant::now();
        a.chat(&text);
        let mined = own.chat_at(&text, LONG).expect("in A's history");
        let crossed = hop.chat_at(&text, LONG).expect("in B's history");
        to_own.push(mined - sent);
        to_peer.push(crossed - sent);
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "chat latency, 31 chats: to our history median {:.2} ms (target < 2 ms); to a peer's history one loopback hop away median {:.2} ms (target < 5 ms)",
        ms(median(to_own)),
        ms(median(to_peer))
    );
}

/// The ArchiveResponse of a history of `size` chats: the fixture for
/// 100,000, else mined once and cached.
fn archive_of(size: usize) -> Vec<u8> {
    if size == 100_000 {
        return fixture_bytes("history-100k.bin");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache");
    let path = dir.join(format!("history-{size}.bin"));
    if let Ok(bytes) = fs::read(&path) {
        return bytes;
    }
    println!(
        "mining a history of {size} chats for the cache ({})...",
        path.display()
    );
    let started = Instant::now();
    let miner = miner::Miner::new(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(size as u64);
    let words = [
        "hello", "node", "chat", "history", "mined", "peer", "longer", "wins", "coffee",
        "tomorrow", "see", "you", "at", "the", "meeting", "ok", "thanks", "proof", "work",
    ];
    let mut history = History::new();
    for i in 0..size {
        let n = rng.random_range(2..12);
        let mut text: String = (0..n)
            .map(|_| words[rng.random_range(0..words.len())])
            .collect::<Vec<_>>()
            .join(" ");
        text.push_str(&format!(" {i}"));
        let chat = miner.mine_next(&history, text.as_bytes());
        history.push(&chat);
    }
    let mut bytes = Vec::with_capacity(history.archive_len());
    history.encode_archive(&mut bytes);
    fs::create_dir_all(&dir).expect("creating the cache directory");
    fs::write(&path, &bytes).expect("writing the cache");
    println!("mined in {:.0} s", started.elapsed().as_secs_f64());
    bytes
}

fn history_row(test: u8, size: usize) {
    let archive = archive_of(size);
    let wire = archive.len() as u64;
    let steady_target = 1.15 * wire as f64 + 10e6;
    let peak_target = 1.5 * wire as f64 + 20e6;
    let net = Net::new(17, 10 + test);

    // Adopting: A starts empty and a peer pushes the history.
    let mut a = net.node(1, &[]);
    let follower = a.follow();
    reset_peak(&a);
    let pushed = Instant::now();
    net.peer(100, 1).send_raw(&archive);
    let adopted = follower.len_at(size, LONG).expect("A adopts the history") - pushed;
    std::thread::sleep(Duration::from_secs(1));
    let (a_steady, a_peak) = memory(&a);

    // Serving and joining: B starts empty, knowing A.
    reset_peak(&a);
    let started = Instant::now();
    let mut b = net.node(2, &["--peer", &net.addr(1).to_string()]);
    let b_follower = b.follow();
    let joined = b_follower.len_at(size, LONG).expect("B joins") - started;
    std::thread::sleep(Duration::from_secs(1));
    let (_, a_serving_peak) = memory(&a);
    let (b_steady, b_peak) = memory(&b);

    // One hop: chats typed at A, in B's history, over the compact relay
    // extension (both nodes offer it by default).
    let relay = hop_row(&mut a, &b, "relay", "hop probe");
    let (b_after_hops, _) = memory(&b);

    // A restart loads it from disk.
    drop(follower);
    drop(b_follower);
    a.sigterm();
    let started = Instant::now();
    a.restart();
    let restarted = started.elapsed();
    let (a_loaded, a_loaded_peak) = memory(&a);

    // One hop again, both nodes restarted with --no-relay: the standard
    // protocol, the whole history on every hop.
    a.sigterm();
    a.restart_with(&["--no-relay"]);
    b.sigterm();
    b.restart_with(&["--peer", &net.addr(1).to_string(), "--no-relay"]);
    let standard = hop_row(&mut a, &b, "standard", "standard hop probe");

    println!(
        "history of {size} chats ({:.1} MB on the wire):\n\
         \x20 adopt (pushed by a peer): {:.0} ms; steady RSS {:.1} MB, peak {:.1} MB\n\
         \x20 join (a new node in sync with A): {:.0} ms; B steady RSS {:.1} MB, peak {:.1} MB; A's peak while serving {:.1} MB\n\
         \x20 one hop (mined at A, in B's history), median of 11: with the extension {:.1} ms, {:.0} bytes received by B per chat; \
         --no-relay {:.1} ms, {:.0} bytes per chat (targets with the extension at 1M: < 5 ms, < 1,000 bytes); B's RSS after {:.1} MB\n\
         \x20 restart (load and check it from disk): {:.0} ms; RSS {:.1} MB, peak {:.1} MB\n\
         \x20 targets: steady <= {:.1} MB, peak <= {:.1} MB",
        mb(wire),
        ms(adopted),
        mb(a_steady),
        mb(a_peak),
        ms(joined),
        mb(b_steady),
        mb(b_peak),
        mb(a_serving_peak),
        ms(relay.median),
        relay.bytes_per_chat,
        ms(standard.median),
        standard.bytes_per_chat,
        mb(b_after_hops),
        ms(restarted),
        mb(a_loaded),
        mb(a_loaded_peak),
        steady_target / 1e6,
        peak_target / 1e6,
    );
}

/// What one hop costs.
struct Hop {
    /// Median of [`HOPS`] chats, from mined at A to in B's history.
    median: Duration,
    /// The bytes B received on its connections, per chat.
    bytes_per_chat: f64,
}

/// Chats timed across one hop.
const HOPS: usize = 11;

/// The bytes a node received on its open connections (`peers`), and the
/// dialects of those connections.
fn received(node: &Node) -> (u64, Vec<String>) {
    let reply = node.ask(&serde_json::json!({"command": "peers"}));
    let rows = reply["peers"].as_array().cloned().unwrap_or_default();
    let bytes = rows
        .iter()
        .map(|row| row["bytes_in"].as_u64().expect("bytes_in"))
        .sum();
    let dialects = rows
        .iter()
        .map(|row| row["dialect"].as_str().unwrap_or("?").to_string())
        .collect();
    (bytes, dialects)
}

/// [`HOPS`] chats typed at A (texts `PROBE k`), each timed from mined at A
/// to in B's history (events of `hist --follow` on each), once B's
/// connections are all of `dialect`; and the bytes B received meanwhile.
fn hop_row(a: &mut Node, b: &Node, dialect: &str, probe: &str) -> Hop {
    let (a_follower, b_follower) = (a.follow(), b.follow());
    let connected = poll(LONG, || {
        let (_, dialects) = received(b);
        (!dialects.is_empty() && dialects.iter().all(|d| d == dialect)).then_some(())
    });
    assert!(
        connected.is_some(),
        "B never had only {dialect} connections: {:?}",
        received(b).1
    );
    // Let the greetings (tips, PeerLists) go by.
    std::thread::sleep(Duration::from_secs(2));
    let (before, _) = received(b);
    let mut hops = Vec::new();
    for k in 0..HOPS {
        let text = format!("{probe} {k}");
        a.chat(&text);
        let mined = a_follower.chat_at(&text, LONG).expect("mined at A");
        let crossed = b_follower.chat_at(&text, LONG).expect("crossed to B");
        hops.push(crossed - mined);
    }
    let (after, dialects) = received(b);
    assert!(
        dialects.iter().all(|d| d == dialect),
        "B's connections changed dialect: {dialects:?}"
    );
    Hop {
        median: median(hops),
        bytes_per_chat: after.saturating_sub(before) as f64 / HOPS as f64,
    }
}
