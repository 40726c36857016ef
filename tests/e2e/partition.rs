//! Real nodes through a network split and lossy links (issue 13, part 2),
//! and a node on the default bind, 0.0.0.0 (issue 10, "knowing oneself"),
//! each in a private network namespace of its own.
//!
//! Dropping packets takes nftables rules, and binding 0.0.0.0 opens the
//! node to every address of the machine: neither may touch the machine's
//! own network. So each test here is two: an outer `#[test]` that checks
//! what it needs (root, `unshare`, `ip`, `ss`, `nft` on PATH; when something
//! lacks it prints `partition: skipped: ...` and passes) and runs this
//! test binary again under `unshare --net`, with only the inner test
//! selected; and that inner test, `#[ignore]`d, which refuses to run
//! unless the outer one started it and it is in a network namespace other
//! than that test's (`support/namespace.rs`, shared with the relay bench).
//! Inside, only `lo` exists: it is brought up and everything runs on
//! 127.0.0.0/8.
//!
//! 1. Split and heal, then 5 % loss: 8 nodes in a mesh, cut into two
//!    groups of four by rules that drop their packets on the input hook
//!    (connections stall, dials time out, as in a real split), chats on
//!    both sides for 15 s, the rules removed: every node must hold the
//!    other side's chats within 10 s. Then 15 s of chats with 5 % of TCP
//!    packets dropped at random, and every acknowledged chat must end up
//!    once in one history on every node.
//! 2. The default bind: a client on another loopback address is dialed
//!    back once, which reaches the node itself; only that loop is closed,
//!    the client stays an ordinary peer, and the node idles.
//! 3. A `--peer` host name that cannot be resolved yet: the namespace
//!    has no route to a DNS server, so the resolver says "try again", as
//!    for a service started before the network. The node starts, says so
//!    and lists the name in `peers`; once the name resolves (the test
//!    writes it into `/etc/hosts`, which it replaced with a file of its
//!    own in the namespace's private mount namespace: `unshare --mount`),
//!    the node dials it and takes its history.
//!
//! `cargo test --workspace --locked --test e2e partition:: -- --nocapture` prints the
//! figures (lines beginning `partition:`). By environment, for the inner
//! tests: PARTITION_SEED (the moments of the chats), PARTITION_SPLIT_S
//! (how long test 1's split lasts, 15 s by default), PARTITION_NODE_ARGS
//! (extra flags for the 8 nodes of test 1, e.g. `--read-timeout 5` or
//! `--log debug`), PARTITION_RTO_MAX_MS (caps the kernel's retransmission
//! backoff in test 1's namespace, `net.ipv4.tcp_rto_max_ms`, Linux 6.15
//! and later: shows what the heal waits on).
//!
//! Address plan (see `support`): module 6; inside a namespace of its own,
//! each test still keeps to its addresses and port.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Value, json};
use wire::Message;

use crate::support::namespace::{self, missing, nft, run};
use crate::support::{Net, Node, Peer, WAIT, poll, shared_cpu};

/// This module's id in the address plan of `support`.
const FILE: u8 = 6;
/// The longest an inner test may run before it is killed.
const INNER_LIMIT: Duration = Duration::from_secs(300);

/// Nodes of test 1, hosts 1..=NODES; hosts 1..=NODES/2 are group A.
const NODES: u8 = 8;
/// How long each phase of chats lasts.
const PHASE: Duration = Duration::from_secs(15);
/// Chats typed at each node in a phase.
const CHATS_PER_NODE: std::ops::RangeInclusive<usize> = 3..=5;
/// The bound: after the heal, every node holds the other side's
/// chats within this.
const HEAL_BOUND: Duration = Duration::from_secs(10);
/// How long to keep watching past [`HEAL_BOUND`], to measure how late a
/// late convergence is (a failing run only).
const HEAL_PATIENCE: Duration = Duration::from_secs(50);
/// After the loss phase, one identical history with every chat within
/// this.
const SETTLE_BOUND: Duration = Duration::from_secs(30);
/// The node asks one random peer for its archive this often (its first
/// request comes this long after it starts).
const REPAIR_EVERY: Duration = Duration::from_secs(60);
/// Percentage of TCP packets dropped in the loss phase.
const LOSS_PERCENT: u32 = 5;

/// The bound on an idle node's CPU use: 1 % of a core.
const IDLE_CPU_SHARE: f64 = 0.01;

// ---------------------------------------------------------------------
// The outer tests and the namespace.

/// What the namespace tests need on PATH (with the package that has it),
/// besides root.
const TOOLS: [(&str, &str); 4] = [
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nft", "nftables"),
];

/// Runs the inner test `inner` of this module in a new network namespace
/// and a private mount namespace (this test binary again, under `unshare
/// --net --mount`: [`namespace::command`]), or says why it cannot
/// and returns. Prints the inner test's output; fails, with it, when the
/// inner test fails or does not run.
fn in_namespace(inner: &str) {
    let _cpu = shared_cpu();
    if let Some(why) = namespace::missing_here(&TOOLS) {
        println!("partition: skipped: {why}");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("partition-")
        .tempdir()
        .expect("a temporary directory");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let test = format!("partition::{inner}");
    let mut command = namespace::command(
        &[
            "--exact",
            &test,
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        inner,
    );
    command
        .stdout(fs::File::create(&out_path).expect("a file for stdout"))
        .stderr(fs::File::create(&err_path).expect("a file for stderr"));
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
/// in a network namespace of its own (else panics: its rules and its
/// 0.0.0.0 listener are for a private namespace only), then brings up the
/// namespace's loopback.
fn inside_namespace(test: &str) {
    namespace::enter(
        test,
        &format!(
            "the outer test partition::{}",
            test.trim_end_matches("_inside")
        ),
    );
}

/// The packets dropped so far by the rules of `inet split`, in order.
fn nft_drops() -> Vec<u64> {
    let listing = run("nft", &["list", "chain", "inet", "split", "input"]);
    listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn split_heal_and_loss() {
    in_namespace("split_heal_and_loss_inside");
}

#[test]
fn default_bind() {
    in_namespace("default_bind_inside");
}

#[test]
fn peer_name_resolved_later() {
    in_namespace("peer_name_resolved_later_inside");
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
    let said = |euid: u32| missing(euid, &path, &TOOLS);
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
    assert!(missing(0, OsStr::new(""), &TOOLS).is_some());
}

// ---------------------------------------------------------------------
// Test 1: split and heal, then 5 % loss.

fn param(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A set of addresses in nftables syntax.
fn nft_set(net: &Net, hosts: impl Iterator<Item = u8>) -> String {
    let addrs: Vec<String> = hosts.map(|h| net.addr(h).to_string()).collect();
    format!("{{ {} }}", addrs.join(", "))
}

/// Types 3 to 5 chats at each node at random moments over [`PHASE`],
/// through the control socket; returns the texts acknowledged (each
/// saved by its node). `label` names the phase in the texts.
fn type_chats(
    nodes: &mut [Node],
    rng: &mut Xoshiro256PlusPlus,
    label: &str,
) -> Vec<(usize, String)> {
    let mut plan: Vec<(Duration, usize, String)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let count = rng.random_range(CHATS_PER_NODE);
        for k in 0..count {
            let at = PHASE.mul_f64(rng.random_range(0.0..1.0));
            let text = format!("{label} chat {k} typed at {}", node.addr);
            plan.push((at, i, text));
        }
    }
    plan.sort_by_key(|(at, _, _)| *at);
    let began = Instant::now();
    let mut acked = Vec::new();
    for (at, i, text) in plan {
        thread::sleep((began + at).saturating_duration_since(Instant::now()));
        nodes[i].chat(&text);
        acked.push((i, text));
    }
    thread::sleep((began + PHASE).saturating_duration_since(Instant::now()));
    acked
}

/// When each node first satisfied `done` (its whole history as the
/// control socket gives it), polled every 200 ms until all have or
/// `patience` passes.
fn watch_nodes(
    nodes: &mut [Node],
    patience: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<Option<Instant>> {
    let mut reached: Vec<Option<Instant>> = vec![None; nodes.len()];
    let deadline = Instant::now() + patience;
    loop {
        for (node, reached) in nodes.iter_mut().zip(&mut reached) {
            if reached.is_none() && done(&node.hist()) {
                *reached = Some(Instant::now());
            }
        }
        if reached.iter().all(Option::is_some) || Instant::now() >= deadline {
            return reached;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Connections the nodes have seen end since they started, by kind
/// (`read timeout`, `failed`, ...), all nodes together.
fn connections_ended(nodes: &mut [Node]) -> BTreeMap<String, u64> {
    let mut ended = BTreeMap::new();
    for node in nodes {
        let status = node.status();
        for (kind, count) in status["endings"].as_object().into_iter().flatten() {
            *ended.entry(kind.clone()).or_default() += count.as_u64().unwrap_or(0);
        }
    }
    ended
}

/// A node's state in one line, for reports: history, peers, the
/// connections and the addresses it still tries, connections ended.
fn describe(node: &mut Node) -> String {
    let status = node.status();
    let peers = node.ask(&json!({"command": "peers"}));
    let rows: Vec<String> = peers["peers"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    format!(
                        "{} {}{} {:.1}s in {} out {}",
                        r["addr"].as_str().unwrap_or("?"),
                        r["direction"].as_str().unwrap_or("?"),
                        if r["duplicate"] == true { "*" } else { "" },
                        r["connected_for_s"].as_f64().unwrap_or(0.0),
                        r["bytes_in"],
                        r["bytes_out"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{}: history {}, pending {}, peers [{}], dialing {}, endings {}",
        node.addr,
        status["history"],
        status["pending"],
        rows.join("; "),
        peers["dialing"],
        status["endings"]
    )
}

/// The TCP connections between the two groups, from `ss`: for each
/// direction, how many connection ends hold data not yet acknowledged,
/// and in how long the kernel retransmits it next (its exponential
/// backoff), e.g. "A->B: 16 of 16 ends wait, next in [0.4 .. 12.0] s,
/// up to 6 retransmissions so far".
fn retransmit_timers(net: &Net, group_a: &BTreeSet<Ipv4Addr>) -> String {
    let listing = run("ss", &["-tnoH", "state", "established"]);
    // (ends, due times, most retransmissions), from A and from B.
    let mut sides = [(0, Vec::new(), 0u64), (0, Vec::new(), 0u64)];
    for line in listing.lines() {
        let addr = |field: &str| -> Option<Ipv4Addr> { field.rsplit_once(':')?.0.parse().ok() };
        let ends: Vec<Ipv4Addr> = line.split_whitespace().filter_map(addr).collect();
        let [local, remote] = ends[..] else { continue };
        let ours = |a: Ipv4Addr| a.octets()[..3] == net.addr(1).octets()[..3];
        if !(ours(local) && ours(remote)) || group_a.contains(&local) == group_a.contains(&remote) {
            continue;
        }
        let side = &mut sides[usize::from(!group_a.contains(&local))];
        side.0 += 1;
        // timer:(on,12sec,6): retransmission timer, due in 12 s, 6 so far.
        let Some(timer) = line.split("timer:(on,").nth(1) else {
            continue;
        };
        let mut parts = timer.split(')').next().unwrap_or("").split(',');
        let left = parts.next().and_then(parse_ss_time);
        let count = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        if let Some(left) = left {
            side.1.push(left);
            side.2 = side.2.max(count);
        }
    }
    let [from_a, from_b] = sides.map(|(ends, mut due, most)| {
        due.sort_by(f64::total_cmp);
        let due: Vec<String> = due.iter().map(|d| format!("{d:.1}")).collect();
        format!(
            "{} of {ends} ends wait, next in [{}] s, up to {most} retransmissions so far",
            due.len(),
            due.join(" ")
        )
    });
    format!("TCP data A->B: {from_a}; B->A: {from_b}")
}

/// A time as `ss` (iproute2) shows a timer: `[Nmin][S(sec|.)][MMM(ms|sec)]`,
/// e.g. `200ms`, `4.212ms` (4.212 s), `9.501sec`, `11sec`, `1min3sec`,
/// and nothing for 0.
fn parse_ss_time(text: &str) -> Option<f64> {
    let (minutes, rest) = match text.split_once("min") {
        Some((minutes, rest)) => (minutes.parse::<f64>().ok()?, rest),
        None => (0.0, text),
    };
    let seconds = if rest.is_empty() {
        0.0
    } else if let Some((whole, millis)) = rest.split_once('.') {
        let millis = millis
            .strip_suffix("ms")
            .or_else(|| millis.strip_suffix("sec"))?;
        whole.parse::<f64>().ok()? + millis.parse::<f64>().ok()? / 1e3
    } else if let Some(whole) = rest.strip_suffix("sec") {
        whole.parse().ok()?
    } else {
        rest.strip_suffix("ms")?.parse::<f64>().ok()? / 1e3
    };
    Some(minutes * 60.0 + seconds)
}

#[test]
fn ss_timers_parse() {
    for (text, seconds) in [
        ("200ms", Some(0.2)),
        ("4.212ms", Some(4.212)),
        ("9.501sec", Some(9.501)),
        ("11sec", Some(11.0)),
        ("2min", Some(120.0)),
        ("1min3sec", Some(63.0)),
        ("", Some(0.0)),
        ("soon", None),
    ] {
        assert_eq!(parse_ss_time(text), seconds, "{text:?}");
    }
}

#[test]
#[ignore = "runs inside a network namespace, started by partition::split_heal_and_loss"]
fn split_heal_and_loss_inside() {
    inside_namespace("split_heal_and_loss_inside");
    // A diagnostic: the kernel's cap on its retransmission backoff, in
    // this namespace only (Linux 6.15 and later).
    if let Ok(cap) = env::var("PARTITION_RTO_MAX_MS") {
        let knob = "/proc/sys/net/ipv4/tcp_rto_max_ms";
        fs::write(knob, &cap).unwrap_or_else(|e| panic!("writing {cap} to {knob}: {e}"));
        println!("partition: {knob} = {cap} in this namespace");
    }
    let net = Net::new(FILE, 0);
    let seed = param("PARTITION_SEED", 0x5b117);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let extra: Vec<String> = env::var("PARTITION_NODE_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    println!(
        "partition: 8 nodes on {}..={} port {}, seed {seed:#x}, extra flags {extra:?}",
        net.addr(1),
        net.addr(NODES),
        net.port()
    );

    // A mesh at once: each node bootstraps from every node before it.
    let began = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    let mut first_repair: Vec<Instant> = Vec::new();
    for host in 1..=NODES {
        let mut args: Vec<String> = (1..host)
            .flat_map(|before| ["--peer".to_string(), net.addr(before).to_string()])
            .collect();
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let spawned = Instant::now();
        nodes.push(net.node(host, &args));
        first_repair.push(spawned + REPAIR_EVERY);
    }
    let all = usize::from(NODES) - 1;
    let meshed = poll(Duration::from_secs(20), || {
        nodes
            .iter_mut()
            .all(|n| n.peer_addrs().len() == all)
            .then_some(())
    });
    if meshed.is_none() {
        let states: Vec<String> = nodes.iter_mut().map(describe).collect();
        panic!("the 8 nodes did not form a mesh:\n{}", states.join("\n"));
    }
    // A first chat that every node holds: the common history the split
    // begins from.
    let first = "before the split".to_string();
    nodes[0].chat(&first);
    let reached = watch_nodes(&mut nodes, WAIT, |h| h.contains(&first));
    assert!(
        reached.iter().all(Option::is_some),
        "the first chat did not reach every node: {reached:?}"
    );
    println!(
        "partition: mesh of 8 and a first chat everywhere after {:.1} s",
        secs(began.elapsed())
    );

    // The split: packets between the groups vanish on the input hook.
    let group_a: BTreeSet<Ipv4Addr> = (1..=NODES / 2).map(|h| net.addr(h)).collect();
    let (a, b) = (
        nft_set(&net, 1..=NODES / 2),
        nft_set(&net, NODES / 2 + 1..=NODES),
    );
    nft(&format!(
        "table inet split {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {a} ip daddr {b} counter drop\n    ip saddr {b} ip daddr {a} counter drop\n  }}\n}}\n"
    ));
    let split_at = Instant::now();
    let ended_before = connections_ended(&mut nodes);
    let split_chats = type_chats(&mut nodes, &mut rng, "split");
    // A longer split, by hand: the chats come in its first PHASE.
    let split_for = Duration::from_secs(param("PARTITION_SPLIT_S", PHASE.as_secs()));
    thread::sleep((split_at + split_for).saturating_duration_since(Instant::now()));
    let dropped = nft_drops();
    let timers = retransmit_timers(&net, &group_a);
    let states: Vec<String> = nodes.iter_mut().map(describe).collect();
    nft("flush chain inet split input\n");
    let healed = Instant::now();
    let per_side = |in_a: bool| {
        split_chats
            .iter()
            .filter(|(i, _)| group_a.contains(&nodes[*i].addr) == in_a)
            .count()
    };
    println!(
        "partition: split {:.1} s: {} chats in group A, {} in group B; packets dropped A->B, B->A: {dropped:?}",
        secs(healed - split_at),
        per_side(true),
        per_side(false)
    );
    println!("partition: at the heal, {timers}");

    // Within 10 s of the heal, every node holds every chat of the split.
    let texts: Vec<String> = split_chats.iter().map(|(_, t)| t.clone()).collect();
    let holds_all = |h: &[String]| texts.iter().all(|t| h.contains(t));
    let mut reached = watch_nodes(&mut nodes, HEAL_BOUND, holds_all);
    let late: Vec<usize> = (0..nodes.len()).filter(|&i| reached[i].is_none()).collect();
    let mut late_states = Vec::new();
    if !late.is_empty() {
        late_states = late.iter().map(|&i| describe(&mut nodes[i])).collect();
        late_states.push(format!(
            "{:.1} s after the heal, {}",
            secs(healed.elapsed()),
            retransmit_timers(&net, &group_a)
        ));
        // How late: watch on.
        let mut later = watch_nodes(&mut nodes, HEAL_PATIENCE, holds_all);
        for (i, r) in reached.iter_mut().enumerate() {
            if r.is_none() {
                *r = later[i].take();
            }
        }
    }
    let after_heal: Vec<String> = reached
        .iter()
        .zip(&nodes)
        .map(|(r, n)| match r {
            Some(at) => format!("{} {:.1} s", n.addr, secs(*at - healed)),
            None => format!("{} not within {:?}", n.addr, HEAL_BOUND + HEAL_PATIENCE),
        })
        .collect();
    let mut ended = connections_ended(&mut nodes);
    for (kind, count) in &mut ended {
        *count -= ended_before.get(kind).copied().unwrap_or(0);
    }
    ended.retain(|_, count| *count > 0);
    println!(
        "partition: connections the nodes ended from the split until every node held every chat: {ended:?}"
    );
    let slowest_heal = reached.iter().flatten().max().map(|&at| at - healed);
    let heal_repair = reached
        .iter()
        .zip(&first_repair)
        .any(|(r, repair)| r.is_none_or(|at| at >= *repair));
    println!(
        "partition: after the heal, every node held the other side's chats in {}: {}",
        slowest_heal.map_or("(never)".to_string(), |d| format!("{:.1} s", secs(d))),
        after_heal.join(", ")
    );
    // A late heal fails the test at its end, after the loss phase has
    // been measured too.
    let mut failures = Vec::new();
    if !late.is_empty() {
        failures.push(format!(
            "not every node held the other side's chats within {HEAL_BOUND:?} of the heal: {}\n\
             at the heal ({timers}):\n{}\nat the bound:\n{}",
            after_heal.join(", "),
            states.join("\n"),
            late_states.join("\n")
        ));
    }

    // 15 s of chats with 5 % of TCP packets lost, then one history.
    nft(&format!(
        "add rule inet split input meta l4proto tcp numgen random mod 100 < {LOSS_PERCENT} counter drop\n"
    ));
    let loss_chats = type_chats(&mut nodes, &mut rng, "lossy");
    let lost = nft_drops();
    nft("flush chain inet split input\n");
    let clean = Instant::now();
    let mut acked: Vec<String> = vec![first];
    acked.extend(split_chats.into_iter().map(|(_, t)| t));
    acked.extend(loss_chats.iter().map(|(_, t)| t.clone()));
    let want: BTreeSet<&String> = acked.iter().collect();
    let complete =
        |h: &[String]| h.len() == acked.len() && h.iter().collect::<BTreeSet<_>>() == want;
    let reached = watch_nodes(&mut nodes, SETTLE_BOUND, complete);
    let settled = reached.iter().flatten().max().map(|&at| at - clean);
    let histories: Vec<Vec<String>> = nodes.iter_mut().map(Node::hist).collect();
    let loss_repair = reached
        .iter()
        .zip(&first_repair)
        .any(|(r, repair)| r.is_none_or(|at| at >= *repair));
    println!(
        "partition: loss phase {:.1} s: {} chats, {} TCP packets dropped; one history of {} chats on every node {:.1} s after",
        secs(PHASE),
        loss_chats.len(),
        lost.first().copied().unwrap_or(0),
        acked.len(),
        settled.map_or(f64::NAN, secs)
    );
    println!(
        "partition: chats in all: {} ({} before, {} split, {} lossy); the 60 s repair request (first due {:.1}..{:.1} s after start) {} for the heal, {} for the loss phase",
        acked.len(),
        1,
        texts.len(),
        loss_chats.len(),
        secs(first_repair[0] - began),
        secs(first_repair[first_repair.len() - 1] - began),
        if heal_repair {
            "may have been needed"
        } else {
            "was not needed"
        },
        if loss_repair {
            "may have been needed"
        } else {
            "was not needed"
        },
    );
    if reached.iter().any(Option::is_none) {
        let mut report = Vec::new();
        for (node, history) in nodes.iter_mut().zip(&histories) {
            let mut counts: HashMap<&String, usize> = HashMap::new();
            for text in history {
                *counts.entry(text).or_default() += 1;
            }
            let missing: Vec<&&String> =
                want.iter().filter(|t| !counts.contains_key(**t)).collect();
            let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
            report.push(format!(
                "{}\n  missing {missing:?}, more than once {twice:?}",
                describe(node)
            ));
        }
        failures.push(format!(
            "no single history with every acknowledged chat once on every node within {SETTLE_BOUND:?} of the loss phase's end:\n{}",
            report.join("\n")
        ));
    } else if let Some(other) = histories.iter().find(|h| **h != histories[0]) {
        failures.push(format!(
            "the nodes hold different histories: {:#?}\nand {other:#?}",
            histories[0]
        ));
    }
    for node in &mut nodes {
        if node.status()["pending"] != 0 {
            failures.push(format!("chats still pending: {}", describe(node)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------
// Test 2: the default bind.

/// The client on another loopback address.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
/// The aliases a PeerList names: 127.99.0.1 and on.
const ALIASES: Ipv4Addr = Ipv4Addr::new(127, 99, 0, 0);
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
    // Two inbound slots, both filled by clients. A node dials no address it
    // has a connection with, so a client is dialed back only once gone;
    // with the node on 0.0.0.0 that dial reaches the node itself, and
    // must be told from a peer (taken for the client, it once closed the
    // client's own connection as a duplicate).
    let node = Node::start(any, port, &["--max-inbound", "2"]);
    println!("partition: {}", node.banner);

    let mut clients = Vec::new();
    for from in [CLIENT, local] {
        let mut client = Peer::connect(from, local, port);
        assert!(
            answered(&mut client),
            "client {from}: no answer to its first PeerRequest"
        );
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
        node.log_tail()
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
            0,
            "{from} was dialed while connected; stderr:\n{}",
            node.log_tail()
        );
    }

    // A PeerList naming 2,000 loopback addresses, every one of them this
    // node on its 0.0.0.0 bind: dialed at the discovery rate (a burst of
    // 64, then 8 a second), not at once, and each only once.
    let aliases: Vec<Ipv4Addr> = (1..=2000u32)
        .map(|i| Ipv4Addr::from(u32::from(ALIASES) + i))
        .collect();
    clients[0].send(&Message::PeerList(aliases));
    let flooded = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let loops = node
        .stderr()
        .lines()
        .filter(|l| l.contains("leads back to this node") && l.contains("127.99."))
        .count();
    let bound = 64 + 8 * secs(flooded.elapsed()).ceil() as usize;
    println!(
        "partition: a PeerList of 2,000 aliases: {loops} dialed in {:.1} s (bound {bound})",
        secs(flooded.elapsed())
    );
    assert!(
        loops > 0 && loops <= bound,
        "{loops} aliases dialed in {:?}, not 1 to {bound}",
        flooded.elapsed()
    );

    // Idle, while the aliases are still dialed at 8 a second: under 1 % of
    // a core over 10 s, clients still connected.
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
        node.log_tail()
    );
    for client in &mut clients {
        assert!(
            answered(client),
            "client {}: no answer after the idle time",
            client.local.ip()
        );
    }

    // The clients go: each, having asked for peers, is taken for a node and
    // dialed back once; the dial reaches the node itself, is told as a
    // loop, and that address is never dialed again.
    drop(clients);
    for from in [CLIENT, local] {
        let told = poll(WAIT, || (loops_logged(&node, from) > 0).then_some(()));
        assert!(
            told.is_some(),
            "the node did not tell that its dial of {from} came back to itself; stderr:\n{}",
            node.log_tail()
        );
        println!("partition: client {from} gone: the dial back reached the node and was closed");
    }
    thread::sleep(Duration::from_secs(3));
    for from in [CLIENT, local] {
        assert_eq!(
            loops_logged(&node, from),
            1,
            "the loop through {from} was not told exactly once; stderr:\n{}",
            node.log_tail()
        );
    }
}

/// The name test 3 gives with `--peer`.
const LATE_NAME: &str = "late-peer.test";

#[test]
#[ignore = "runs inside a network namespace, started by partition::peer_name_resolved_later"]
fn peer_name_resolved_later_inside() {
    inside_namespace("peer_name_resolved_later_inside");
    // This namespace's own /etc/hosts, without the name for now.
    let hosts = tempfile::NamedTempFile::new().expect("a hosts file");
    fs::write(hosts.path(), "127.0.0.1 localhost\n").expect("writing the hosts file");
    bind_mount(hosts.path(), Path::new("/etc/hosts"));

    let net = Net::new(FILE, 3);
    let mut peer = Node::start(net.addr(2), net.port(), &[]);
    peer.chat("from the named peer");
    assert!(
        peer.wait_history_len(1),
        "the named peer did not mine its chat"
    );
    let mut node = Node::start(net.addr(1), net.port(), &["--peer", LATE_NAME]);
    let warned = format!("cannot resolve host name '{LATE_NAME}' now");
    let said = poll(WAIT, || node.stderr().contains(&warned).then_some(()));
    assert!(
        said.is_some(),
        "no warning naming the host name at the default level; stderr:\n{}",
        node.log_tail()
    );
    let listed = node.ask(&json!({"command": "peers"}));
    println!("partition: before the name resolves: {listed}");
    assert_eq!(listed["resolving"][0]["name"], LATE_NAME, "{listed}");
    assert!(
        listed["resolving"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{listed}"
    );

    // The name resolves: the node dials it and takes its history.
    let resolvable = Instant::now();
    fs::write(
        hosts.path(),
        format!("127.0.0.1 localhost\n{} {LATE_NAME}\n", net.addr(2)),
    )
    .expect("writing the hosts file");
    // Tries at 2, 6, 14 s ...: at most 8 s after the name resolves.
    let adopted = poll(Duration::from_secs(20), || {
        (node.ask(&json!({"command": "status"}))["history"] == 1).then_some(())
    });
    assert!(
        adopted.is_some(),
        "the node did not take the named peer's history within 20 s; peers: {}; stderr:\n{}",
        node.ask(&json!({"command": "peers"})),
        node.log_tail()
    );
    println!(
        "partition: the name resolved; the node held its peer's history {:.1} s later",
        secs(resolvable.elapsed())
    );
    let listed = node.ask(&json!({"command": "peers"}));
    assert_eq!(listed["resolving"], json!([]), "{listed}");
    assert!(
        node.peer_addrs().contains(&net.addr(2)),
        "the named peer is not connected: {listed}"
    );
}

/// Mounts `source` over `target` (this test's private mount namespace
/// only: the machine's file is untouched).
fn bind_mount(source: &Path, target: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("a path without NUL");
    let (source, target) = (c(source), c(target));
    // SAFETY: mount(2) with valid NUL-terminated paths and no data.
    let done = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(
        done,
        0,
        "bind-mounting {source:?} on {target:?}: {}",
        std::io::Error::last_os_error()
    );
}
