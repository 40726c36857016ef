//! Shared helpers for the end-to-end tests: real `node` processes on
//! loopback ([`Node`], in `node.rs`), a raw protocol client ([`Peer`], in
//! `peer.rs`), a client of the compact relay extension on a node's relay
//! port (`relay_peer.rs`), a simple foreign node that speaks the standard
//! protocol only (`foreign.rs`), observers of a node under test
//! (`observe.rs`), scripted misbehaving peers (`misbehave.rs`), a real
//! browser for the page (`browser.rs`), private network namespaces
//! (`namespace.rs`), and a scheme that gives every test its own addresses
//! and port ([`Net`]).
//!
//! Every wait here is bounded: a test that goes wrong fails with the
//! node's output and logs, it never hangs. Every process started here is
//! killed when its handle drops.
//!
//! Address plan: module F, test T, host H is `127.F.T.H` on port
//! `47100 + 50 * (F - 1) + T`. Ids: the test modules `node` 1,
//! `convergence` 2, `hostile` 3, `field` 4, `terminal` 5, `partition` 6,
//! `control` 7, `scale` 8, `cli` 9, `operate` 10, `disk` 11, `web` 12,
//! `relay` 13; the benches 17 (`verify` starts no node); give each new module the next free id (ports
//! 47100..=47999 leave room for 18 modules of 50 tests). Hosts 1..=99 are
//! nodes by convention, 100..=254 test peers. A node's relay port (the
//! compact relay extension, `docs/EXTENSION.md`) is its port + 1, the
//! default: the next test's port, on other addresses, so no two clash.
//!
//! Every test holds [`shared_cpu`] or [`own_cpu`] while it runs.
//!
//! This module is compiled once, in the e2e test binary, which declares it
//! private: a helper no test uses is reported as dead code. The network
//! bench (`benches/network.rs`) includes it by path too, declared `pub`
//! there because it uses only a part of it.

pub mod browser;
pub mod foreign;
pub mod misbehave;
pub mod namespace;
mod node;
pub mod observe;
mod peer;
pub mod per_ip;
pub mod pty;
pub mod relay_peer;

pub use node::{
    Node, chatchain_command, client_output, kill_child, node_command, read_lines, run_client,
    run_command, run_to_exit, run_with_input, spawn_piped,
};
pub use peer::{Peer, connect_from, plain};
pub use relay_peer::RelayPeer;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use wire::History;

/// The host of the short-lived client that gives a node its history
/// ([`Net::node_holding`]).
pub const PUSHER: u8 = 254;

/// Patience for things that normally take milliseconds (a node starting,
/// a command answering, a connection opening) on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(15);

/// The tests of this binary run in parallel, two at a time on a 2-core
/// machine. The two that bound answer times (`hostile`: slow peers,
/// peer-list poisoning) take the machine alone with [`own_cpu`], so that
/// what they measure is the node under attack and not another test's
/// 10,000 connections or mining nodes; every other test (each runs the
/// `node` binary) shares it with [`shared_cpu`].
static CPU: RwLock<()> = RwLock::new(());

/// Held for a test's duration: it runs alongside other sharing tests, never
/// alongside one that holds [`own_cpu`].
pub fn shared_cpu() -> RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held for a test's duration: no other test of this binary runs
/// meanwhile.
pub fn own_cpu() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(PoisonError::into_inner)
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The bytes of a file of `tests/fixtures`.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).unwrap_or_else(|e| panic!("reading tests/fixtures/{name}: {e}"))
}

/// The PROTOCOL.md test vector: the ArchiveResponse bytes and its history.
pub fn vector() -> (Vec<u8>, History) {
    let bytes = fixture_bytes("vector.bin");
    let history = wire::decode_archive(&bytes).expect("the vector decodes");
    (bytes, history)
}

/// The texts of the vector's chats, in order.
pub const VECTOR_TEXTS: [&str; 5] = [
    "cunha@dcc.ufmg.br root gg norev thx",
    "cunha@dcc.ufmg.br izi mid izi life 2",
    "gahoga",
    "cunha@dcc test hangout",
    "nova msg",
];

/// A history's chat texts as the control socket gives them (bytes that
/// are not UTF-8 replaced, see docs/CONTROL.md).
pub fn texts(history: &History) -> Vec<String> {
    history
        .iter()
        .map(|c| String::from_utf8_lossy(c.text()).into_owned())
        .collect()
}

/// A fresh temporary directory whose name begins with `prefix`, removed
/// when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a temporary directory")
}

/// The history made of chats with these texts, mined.
pub fn mined(texts: &[&[u8]]) -> History {
    mined_on(History::new(), texts)
}

/// `history` followed by chats with these texts, mined on top of it.
pub fn mined_on(mut history: History, texts: &[&[u8]]) -> History {
    let miner = miner::Miner::new(1);
    for text in texts {
        let chat = miner.mine_next(&history, text);
        history.push(&chat);
    }
    history
}

/// Polls `check` every 50 ms until it returns `Some`, or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The addresses and port of one test.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    file: u8,
    test: u8,
}

impl Net {
    /// `file` 1..=18 (one per test module or bench), `test` 0..50 (one per
    /// test).
    pub const fn new(file: u8, test: u8) -> Net {
        assert!(file >= 1 && file <= 18 && test < 50);
        Net { file, test }
    }

    /// `127.file.test.host`; `host` 1..=254.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        assert!(host >= 1 && host != 255);
        Ipv4Addr::new(127, self.file, self.test, host)
    }

    /// This test's network-wide port.
    pub fn port(&self) -> u16 {
        47100 + 50 * (u16::from(self.file) - 1) + u16::from(self.test)
    }

    /// This test's relay port (the compact relay extension's): the
    /// network port + 1, the nodes' default.
    pub fn relay_port(&self) -> u16 {
        self.port() + 1
    }

    /// `addr(host)` on the network port.
    pub fn at(&self, host: u8) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr(host), self.port())
    }

    /// `addr(host)` on the relay port.
    pub fn relay_at(&self, host: u8) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr(host), self.relay_port())
    }

    /// A client of the relay extension from `addr(from)` to the relay port
    /// of the node at `addr(to)`, Hellos exchanged (see
    /// [`RelayPeer::connect`]).
    pub fn relay_peer(&self, from: u8, to: u8) -> RelayPeer {
        RelayPeer::connect(self.addr(from), self.relay_at(to))
    }

    /// Starts a node on `addr(host)` (see [`Node::start`]).
    pub fn node(&self, host: u8, args: &[&str]) -> Node {
        Node::start(self.addr(host), self.port(), args)
    }

    /// Starts a node on `addr(host)` with `args` and gives it `archive`
    /// (an ArchiveResponse of `chats` chats), pushed by a short-lived
    /// client at host [`PUSHER`]; returns once the node holds them
    /// (panics if it does not within [`WAIT`]).
    pub fn node_holding(&self, host: u8, args: &[&str], archive: &[u8], chats: usize) -> Node {
        let mut node = self.node(host, args);
        let mut pusher = self.peer(PUSHER, host);
        pusher.send_raw(archive);
        assert!(
            node.wait_history_len(chats),
            "the node did not adopt the {chats}-chat history: {:?}",
            node.status()
        );
        drop(pusher);
        node
    }

    /// A raw client from `addr(from)` to the node at `addr(to)`.
    pub fn peer(&self, from: u8, to: u8) -> Peer {
        Peer::connect(self.addr(from), self.addr(to), self.port())
    }

    /// Asks the node at `addr(host)`, from `addr(from)`, for its archive:
    /// it must be `archive`, byte for byte.
    pub fn assert_serves(&self, from: u8, host: u8, archive: &[u8]) {
        let mut peer = self.peer(from, host);
        peer.send(&wire::Message::ArchiveRequest);
        let (history, raw) = peer
            .recv_archive(WAIT)
            .expect("the node answers ArchiveRequest");
        assert!(
            raw == archive,
            "the history of {}: {} chats in {} bytes; {} bytes expected",
            self.addr(host),
            history.len(),
            raw.len(),
            archive.len()
        );
    }

    /// The history of the node at `addr(to)`, asked over the wire by a
    /// short-lived client at `addr(from)`.
    pub fn archive(&self, from: u8, to: u8) -> History {
        Peer::archive(self.addr(from), self.addr(to), self.port())
    }

    /// Waits (at most [`WAIT`]) until the node at `addr(to)` serves `len`
    /// chats: a chat of ours is shown when mined but served only once it is
    /// on disk.
    pub fn wait_serves(&self, from: u8, to: u8, len: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let served = self.archive(from, to).len();
            if served == len {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} serves {served} chats, not {len}",
                self.addr(to)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}
