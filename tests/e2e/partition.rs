//! A node on the default bind, 0.0.0.0 (issue 10, "knowing oneself"), in
//! a private network namespace of its own.
//!
//! Dropping packets takes nftables rules, and binding 0.0.0.0 opens the
//! node to every address of the machine: neither may touch the machine's
//! own network. So each test here is two: an outer `#[test]` that checks
//! what it needs (root, `unshare`, `ip`, `ss`, `nft` on PATH; when something
//! lacks it prints `partition: skipped: ...` and passes) and runs this
//! test binary again under `unshare --net`, with only the inner test
//! selected; and that inner test, `#[ignore]`d, which refuses to run
//! unless the outer one started it ([`INNER`] set) and it is in a
//! network namespace other than that test's. Inside, only `lo` exists: it
//! is brought up and everything runs on 127.0.0.0/8.
//!
//! - The default bind: a client on another loopback address is dialed
//!   back once, which reaches the node itself; only that loop is closed,
//!   the client stays an ordinary peer, and the node idles.
//!
//! `cargo test -p node --test e2e partition:: -- --nocapture` prints the
//! figures (lines beginning `partition:`).
//!
//! Address plan (see `support`): module 6; inside a namespace of its own,
//! each test still keeps to its addresses and port.

use std::collections::BTreeSet;
use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wire::Message;

use crate::support::{Net, Node, Peer, WAIT, poll, shared_cpu};

/// This module's id in the address plan of `support`.
const FILE: u8 = 6;
/// Set by an outer test, to the name of the inner test it runs in a
/// network namespace.
const INNER: &str = "PARTITION_INNER";
/// Set by an outer test, to its own network namespace (the link
/// `/proc/self/ns/net`): the one the inner test must not be in.
const OUTER_NS: &str = "PARTITION_OUTER_NETNS";
/// The longest an inner test may run before it is killed.
const INNER_LIMIT: Duration = Duration::from_secs(300);

/// The bound on an idle node's CPU use: 1 % of a core.
const IDLE_CPU_SHARE: f64 = 0.01;

// ---------------------------------------------------------------------
// The outer tests and the namespace.

/// Why the namespace tests cannot run here, if they cannot: `euid` must
/// be 0, and `unshare`, `ip`, `ss` and `nft` must be on `path` (a PATH
/// value).
fn missing(euid: u32, path: &OsStr) -> Option<String> {
    if euid != 0 {
        return Some(format!(
            "not running as root (euid {euid}); a network namespace and nftables need it"
        ));
    }
    let tools = [
        ("unshare", "util-linux"),
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("nft", "nftables"),
    ];
    tools
        .iter()
        .find(|(tool, _)| !on_path(path, tool))
        .map(|(tool, package)| format!("{tool} not found (apt-get install {package})"))
}

/// Whether an executable file named `tool` is in a directory of `path`.
fn on_path(path: &OsStr, tool: &str) -> bool {
    env::split_paths(path).any(|dir| {
        fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs the inner test `inner` of this module in a new network namespace
/// (this test binary again, under `unshare --net`), or says why it cannot
/// and returns. Prints the inner test's output; fails, with it, when the
/// inner test fails or does not run.
fn in_namespace(inner: &str) {
    let _cpu = shared_cpu();
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    let path = env::var_os("PATH").unwrap_or_default();
    if let Some(why) = missing(euid, &path) {
        println!("partition: skipped: {why}");
        return;
    }
    let exe = env::current_exe().expect("the test binary's path");
    let dir = tempfile::Builder::new()
        .prefix("partition-")
        .tempdir()
        .expect("a temporary directory");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = Command::new("unshare");
    command
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(["--exact", &format!("partition::{inner}")])
        .args(["--include-ignored", "--nocapture", "--test-threads", "1"])
        .env(INNER, inner)
        .env(OUTER_NS, network_namespace())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("a file for stdout"))
        .stderr(fs::File::create(&err_path).expect("a file for stderr"));
    // The inner test (unshare execs it) dies with this test process, and
    // its nodes with it.
    // SAFETY: prctl(2) only; async-signal-safe in the forked child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let began = Instant::now();
    let mut child = command.spawn().expect("starting unshare");
    let status = poll(INNER_LIMIT, || {
        child.try_wait().expect("waiting for unshare")
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let ran = stdout.contains("test result: ok. 1 passed");
    match status {
        Some(status) if status.success() && ran => {
            print!("{stdout}");
            println!(
                "partition: {inner} passed in a network namespace of its own in {:.1} s",
                began.elapsed().as_secs_f64()
            );
        }
        _ => panic!(
            "partition::{inner} in a network namespace: {}\n=== its stdout:\n{stdout}\n=== its stderr:\n{stderr}",
            match status {
                None => format!("still running after {INNER_LIMIT:?}, killed"),
                Some(status) if status.success() => "ran no test".to_string(),
                Some(status) => format!("failed ({status})"),
            }
        ),
    }
}

/// Checks that this process is an inner test started by [`in_namespace`]
/// (else panics: its rules and its 0.0.0.0 listener are for a private
/// namespace only), then brings up the namespace's loopback.
fn inside_namespace(test: &str) {
    let started_for = env::var(INNER).unwrap_or_default();
    assert_eq!(
        started_for,
        test,
        "partition::{test} runs only inside a network namespace of its own, started by the \
         outer test partition::{} (it sets {INNER}={test})",
        test.trim_end_matches("_inside")
    );
    let outer = env::var_os(OUTER_NS).unwrap_or_default();
    assert!(
        !outer.is_empty() && network_namespace() != outer,
        "partition::{test}: this process is in the network namespace of the test that started \
         it ({outer:?}), not in one of its own"
    );
    run("ip", &["link", "set", "lo", "up"]);
}

/// This process's network namespace, as `/proc/self/ns/net` names it
/// (`net:[4026531840]`).
fn network_namespace() -> OsString {
    fs::read_link("/proc/self/ns/net")
        .expect("reading /proc/self/ns/net")
        .into_os_string()
}

/// Runs a tool (bounded by [`WAIT`]) and returns its stdout; panics with
/// its stderr when it fails.
fn run(tool: &str, args: &[&str]) -> String {
    run_with_input(tool, args, "")
}

fn run_with_input(tool: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {tool}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("writing to {tool}: {e}"));
    drop(stdin);
    let waited = poll(WAIT, || child.try_wait().expect("waiting for a tool"));
    if waited.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("reading a tool's output");
    assert!(
        waited.is_some() && output.status.success(),
        "{tool} {args:?} ({}): {}\n{input}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn default_bind() {
    in_namespace("default_bind_inside");
}

/// The check that decides to skip, with and without what it needs.
#[test]
fn skips_without_root_or_tools() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("a bin directory");
    let tool = |name: &str, mode: u32| {
        let file = bin.join(name);
        fs::write(&file, "#!/bin/sh\n").expect("a fake tool");
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("its mode");
    };
    let path: OsString = env::join_paths([Path::new("/nonexistent"), &bin]).expect("a PATH");
    let said = |euid: u32| missing(euid, &path);
    assert_eq!(
        said(1000).as_deref(),
        Some("not running as root (euid 1000); a network namespace and nftables need it")
    );
    assert_eq!(
        said(0).as_deref(),
        Some("unshare not found (apt-get install util-linux)")
    );
    tool("unshare", 0o755);
    tool("ip", 0o755);
    assert_eq!(
        said(0).as_deref(),
        Some("ss not found (apt-get install iproute2)")
    );
    tool("ss", 0o755);
    assert_eq!(
        said(0).as_deref(),
        Some("nft not found (apt-get install nftables)")
    );
    // A file that cannot be executed is not the tool.
    tool("nft", 0o644);
    assert_eq!(
        said(0).as_deref(),
        Some("nft not found (apt-get install nftables)")
    );
    tool("nft", 0o755);
    assert_eq!(said(0), None);
    assert!(missing(0, OsStr::new("")).is_some());
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------------
// Test 2: the default bind.

/// The client on another loopback address.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
/// How long the clients keep asking, once a second.
const ASKING: Duration = Duration::from_secs(15);

/// Times `node` logged that a dial of `addr` came back to itself.
fn loops_logged(node: &Node, addr: Ipv4Addr) -> usize {
    let line = format!("{addr} leads back to this node");
    node.stderr().lines().filter(|l| l.contains(&line)).count()
}

/// Sends a PeerRequest and waits (2 s at most) for the PeerList.
fn answered(peer: &mut Peer) -> bool {
    peer.send(&Message::PeerRequest);
    peer.recv_until(Duration::from_secs(2), |m| {
        matches!(m, Message::PeerList(_))
    })
    .is_some()
}

#[test]
#[ignore = "runs inside a network namespace, started by partition::default_bind"]
fn default_bind_inside() {
    inside_namespace("default_bind_inside");
    let port = Net::new(FILE, 1).port();
    let any = Ipv4Addr::UNSPECIFIED;
    let local = Ipv4Addr::LOCALHOST;
    let node = Node::start(any, port, &[]);
    println!("partition: {}", node.banner);

    // A client from 127.0.0.66, then one from 127.0.0.1 itself; each is
    // dialed back once, which reaches the node: that loop, and only it,
    // is closed.
    let mut clients = Vec::new();
    for from in [CLIENT, local] {
        let mut client = Peer::connect(from, local, port);
        assert!(
            answered(&mut client),
            "client {from}: no answer to its first PeerRequest"
        );
        let recognised = poll(WAIT, || (loops_logged(&node, from) > 0).then_some(()));
        assert!(
            recognised.is_some(),
            "the node did not tell that its dial of {from} came back to itself; stderr:\n{}",
            node.stderr()
        );
        println!("partition: client {from}: the node's dial back reached itself and was closed");
        clients.push(client);
    }

    // Each client, asking once a second for 15 s, is answered every time.
    let mut rounds = [0usize; 2];
    let began = Instant::now();
    for second in 0..ASKING.as_secs() {
        for (client, rounds) in clients.iter_mut().zip(&mut rounds) {
            if answered(client) {
                *rounds += 1;
            }
        }
        thread::sleep(
            (began + Duration::from_secs(second + 1)).saturating_duration_since(Instant::now()),
        );
    }
    for (client, rounds) in clients.iter().zip(rounds) {
        println!(
            "partition: client {}: {rounds}/{} PeerRequests answered (closed: {})",
            client.local.ip(),
            ASKING.as_secs(),
            client.is_closed()
        );
    }
    assert!(
        rounds.iter().all(|&r| r == ASKING.as_secs() as usize),
        "not every PeerRequest was answered: {rounds:?}; stderr:\n{}",
        node.stderr()
    );

    // `peers`: the two clients, inbound, nothing else; nothing dialed.
    let peers = node.ask(&json!({"command": "peers"}));
    let rows: Vec<(String, String, bool)> = peers["peers"]
        .as_array()
        .expect("a peers reply")
        .iter()
        .map(|r| {
            (
                r["addr"].as_str().unwrap_or("?").to_string(),
                r["direction"].as_str().unwrap_or("?").to_string(),
                r["duplicate"] == true,
            )
        })
        .collect();
    println!("partition: peers {}", peers);
    let expected: Vec<(String, String, bool)> = [CLIENT, local]
        .iter()
        .map(|a| (a.to_string(), "inbound".to_string(), false))
        .collect();
    let listed: BTreeSet<_> = rows.iter().cloned().collect();
    assert!(
        rows.len() == 2 && listed == expected.iter().cloned().collect(),
        "peers lists {rows:?}, not the two clients as inbound peers"
    );
    assert_eq!(
        peers["dialing"],
        Value::Array(vec![]),
        "the node still dials: {peers}"
    );
    for from in [CLIENT, local] {
        assert_eq!(
            loops_logged(&node, from),
            1,
            "the loop through {from} was not told exactly once; stderr:\n{}",
            node.stderr()
        );
    }

    // Idle: under 1 % of a core over 10 s, clients still connected.
    let idle = Duration::from_secs(10);
    let before = node.cpu_time();
    let idle_began = Instant::now();
    thread::sleep(idle);
    let used = node.cpu_time() - before;
    let share = secs(used) / secs(idle_began.elapsed());
    println!(
        "partition: idle with two clients: {:.2} CPU seconds in {:.1} s ({:.2} % of a core)",
        secs(used),
        secs(idle_began.elapsed()),
        share * 100.0
    );
    assert!(
        share < IDLE_CPU_SHARE,
        "the idle node used {used:?} of CPU in {idle:?}; stderr:\n{}",
        node.stderr()
    );
    for client in &mut clients {
        assert!(
            answered(client),
            "client {}: no answer after the idle time",
            client.local.ip()
        );
    }
}
