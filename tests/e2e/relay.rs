//! The compact relay extension (`docs/EXTENSION.md`) between real node
//! processes on loopback: two nodes of ours speak it on the relay port and
//! a chat then costs about its size; a line of ours, a foreign node and
//! ours again relays both ways; a node without it is spoken to in the
//! standard protocol; nothing but the standard protocol goes on the
//! network port; pushes that follow each other on one connection are
//! all taken; a relay port that does not lead to the extension (silent,
//! closing at once, speaking first without Hello) leaves one standard
//! connection; and hostile extension peers (`support::relay_peer`:
//! lengths that lie, a prefix digest that does not match, Chats that
//! never end, full archives on a relay connection, a first message other
//! than Hello) leave the node's history whole, its honest peers answered,
//! and what it spends bounded.
//!
//! Two of these found bugs of the node, since fixed:
//! `a_relay_port_that_never_says_hello_is_given_up_for_the_network_port`
//! (two standard connections opened at once after the Hello wait) and
//! `back_to_back_pushes_are_taken_without_asking_again` (a push judged
//! against the history before the pushes ahead of it were taken).
//!
//! Each test prints one row of the closing table:
//!
//! `cargo test --workspace --locked --test e2e relay:: -- --nocapture 2>/dev/null | grep '^|'`
//!
//! | test | measured |
//!
//! Address plan (see `support`): module 13, so test T runs on `127.13.T.x`
//! (network port `47100 + 600 + T`, relay port one more): nodes are hosts
//! 1..=3, scripted peers 100 and up.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;
use wire::{Chat, DIGEST_LEN, History, Message, RelayMessage};

use crate::support::foreign::Foreign;
use crate::support::misbehave::{End, Listener};
use crate::support::observe::Honest;
use crate::support::relay_peer::{
    Endless, Received, RelayPeer, SilentRelayPort, chat_bytes, digest_before, endless_chats,
    lie_about_lengths, tip_of,
};
use crate::support::{Net, Node, WAIT, fixture_bytes, mined_on, poll, shared_cpu, texts, vector};

/// This module's id in the address plan of `support`.
const FILE: u8 = 13;
/// The short-lived peer that checks a node's history.
const CHECKER: u8 = 253;
/// The honest peer that keeps asking for the archive.
const HONEST: u8 = 200;
/// The scripted peer of a test (a liar, a foreign node...).
const SCRIPTED: u8 = 100;
/// An honest extension peer that comes after a liar.
const AFTER: u8 = 101;
/// The `--max-message` of the tests of Chats that never end: small, so
/// that the bound is far below what the kernels buffer... and what the
/// liar offers.
const MAX_MESSAGE: usize = 64 * 1024;
/// [`MAX_MESSAGE`] as the flag takes it.
const MAX_MESSAGE_FLAG: &str = "64KiB";
/// What a liar of a Chats that never ends offers: the default
/// `--max-message`, so that a node that ignored the flag would take it
/// all.
const OFFERED: usize = 64 << 20;
/// Bytes a client counts as taken by the node that the node never read:
/// what the kernels buffer between them on loopback (our send buffer of
/// 64 KiB, doubled by the kernel; the node's receive window, which grows
/// while it reads at full speed), with room to spare on a loaded machine.
const KERNEL_SLACK: usize = 4 << 20;
/// The longest chat on the wire.
const MAX_CHAT: usize = 288;
/// How long a node waits for the Hello of a relay port it dialed
/// (EXTENSION.md: 5 s in the reference node), times 10: a bound that only
/// catches a node that never gives up.
const HELLO_GIVE_UP: Duration = Duration::from_secs(50);
/// Patience for chats to cross a line of nodes (mined, then relayed
/// hop by hop) on a loaded machine.
const CROSS: Duration = Duration::from_secs(60);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A duration for a row, in seconds, or `never`.
fn seconds(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", secs(d)))
}

/// One row of the closing table.
fn row(test: &str, measured: &str) {
    println!("| `relay::{test}` | {measured} |");
}

/// The 1k fixture: its ArchiveResponse bytes and its history.
fn fixture_1k() -> (Vec<u8>, History) {
    let archive = fixture_bytes("history-1k.bin");
    let history = wire::decode_archive(&archive).expect("the fixture decodes");
    (archive, history)
}

/// A connection as `peers` shows it: address, direction, dialect.
type Link = (Ipv4Addr, String, String);

/// `node`'s connections, sorted.
fn links(node: &mut Node) -> Vec<Link> {
    let field = |row: &Value, name: &str| row[name].as_str().unwrap_or("?").to_string();
    let mut links: Vec<Link> = node
        .peer_rows()
        .iter()
        .map(|row| {
            let addr = field(row, "addr").parse().expect("an address");
            (addr, field(row, "direction"), field(row, "dialect"))
        })
        .collect();
    links.sort();
    links
}

/// Polls `node`'s connections until `done` holds (at most `timeout`);
/// panics, saying it waited for `what`, with the last seen.
fn wait_links(
    node: &mut Node,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Link]) -> bool,
) -> Vec<Link> {
    let mut last = Vec::new();
    let found = poll(timeout, || {
        last = links(node);
        done(&last).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!(
            "node {}: not {what} within {timeout:?}: {last:?}",
            node.addr
        )
    })
}

/// `(addr, direction, dialect)` as a [`Link`].
fn link(addr: Ipv4Addr, direction: &str, dialect: &str) -> Link {
    (addr, direction.to_string(), dialect.to_string())
}

/// The `bytes_in` of `node`'s connection with `addr`.
fn bytes_in(node: &mut Node, addr: Ipv4Addr) -> u64 {
    let rows = node.peer_rows();
    let row = rows
        .iter()
        .find(|row| row["addr"] == addr.to_string())
        .unwrap_or_else(|| panic!("node {}: no connection with {addr}: {rows:?}", node.addr));
    row["bytes_in"].as_u64().expect("a byte count")
}

/// `node`'s bytes of whole messages received, by message type (its
/// `chatchain_received_bytes_total` metric, docs/CONTROL.md).
fn received_by_type(node: &Node) -> BTreeMap<String, u64> {
    let reply = node.ask(&serde_json::json!({"command": "metrics"}));
    let text = reply["text"].as_str().expect("the metrics' text");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("chatchain_received_bytes_total{type=\"")?;
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Waits (at most `timeout`) until `node`'s history holds every one of
/// `texts`; panics with the history seen.
fn wait_holds(node: &mut Node, timeout: Duration, texts: &[&str]) -> Vec<String> {
    let hist = node.wait_hist(timeout, |h| texts.iter().all(|t| h.iter().any(|c| c == t)));
    assert!(
        texts.iter().all(|t| hist.iter().any(|c| c == t)),
        "node {}: {texts:?} not all in its history within {timeout:?}: {hist:?}",
        node.addr
    );
    hist
}

/// Waits (at most `timeout`) until `nodes` hold the same history; panics
/// with the histories seen. Returns it.
fn wait_same(nodes: &mut [&mut Node], timeout: Duration) -> Vec<String> {
    let mut hists = Vec::new();
    let same = poll(timeout, || {
        hists = nodes.iter_mut().map(|n| n.hist()).collect::<Vec<_>>();
        hists
            .iter()
            .all(|h| *h == hists[0])
            .then(|| hists[0].clone())
    });
    same.unwrap_or_else(|| panic!("histories still differ after {timeout:?}: {hists:?}"))
}

/// A chat whose text, code and digest are `seed`'s random bytes: the
/// longest form, and invalid (its digest does not begin with two zero
/// bytes).
fn random_invalid_chat(seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let text: Vec<u8> = (0..255).map(|_| rng.random()).collect();
    let mut digest: [u8; DIGEST_LEN] = rng.random();
    digest[0] = 0xff;
    let mut bytes = Vec::new();
    Chat::new(text, rng.random(), digest)
        .expect("255 bytes")
        .encode(&mut bytes);
    assert_eq!(bytes.len(), MAX_CHAT);
    bytes
}

/// A chat that looks valid (its digest begins with two zero bytes) but
/// was mined on no history.
fn valid_looking_chat(text: &str) -> Vec<u8> {
    let mut digest = [0x5a; DIGEST_LEN];
    digest[..2].copy_from_slice(&[0, 0]);
    let mut bytes = Vec::new();
    Chat::new(text.as_bytes(), [0x11; 16], digest)
        .expect("a short text")
        .encode(&mut bytes);
    bytes
}

/// Two nodes of ours (B dialed A) speak the extension, and nothing else:
/// one relay connection each way shown, none on the network port. A
/// chat typed at A reaches B, and while A holds the 1,000-chat fixture
/// (78 KB as an archive), each costs B under 1 KB, not the history.
#[test]
fn two_nodes_of_ours_speak_the_extension_and_a_chat_costs_about_its_size() {
    const CHATS: usize = 10;
    const PER_CHAT: u64 = 1000;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let (archive, _) = fixture_1k();
    let mut a = net.node_holding(1, &[], &archive, 1000);
    wait_links(&mut a, WAIT, "rid of its pusher", <[Link]>::is_empty);
    let mut b = net.node(2, &["--peer", &net.addr(1).to_string()]);
    assert!(
        b.wait_history_len(1000),
        "B did not get A's history: {:?}",
        b.status()
    );
    let only_b = [link(net.addr(2), "inbound", "relay")];
    let only_a = [link(net.addr(1), "outbound", "relay")];
    wait_links(&mut a, WAIT, "connected to B alone, by relay", |l| {
        l == only_b
    });
    wait_links(&mut b, WAIT, "connected to A alone, by relay", |l| {
        l == only_a
    });

    let before = bytes_in(&mut b, net.addr(1));
    let types_before = received_by_type(&b);
    let texts: Vec<String> = (0..CHATS)
        .map(|i| format!("relay chat {i:02} of ten"))
        .collect();
    for text in &texts {
        a.chat(text);
    }
    let hist = b.wait_hist(WAIT, |h| h.len() == 1000 + CHATS);
    assert_eq!(
        hist.len(),
        1000 + CHATS,
        "B's history: {:?}",
        &hist[1000.min(hist.len())..]
    );
    assert_eq!(hist[1000..], texts[..], "B's last chats");
    let received = bytes_in(&mut b, net.addr(1)) - before;
    let by_type: Vec<String> = received_by_type(&b)
        .into_iter()
        .map(|(kind, n)| {
            (
                kind.clone(),
                n - types_before.get(&kind).copied().unwrap_or(0),
            )
        })
        .filter(|&(_, n)| n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();

    // Still one connection each: nobody dialed A's network port.
    assert_eq!(links(&mut a), only_b, "A's connections");
    assert_eq!(links(&mut b), only_a, "B's connections");
    let per_chat = received / CHATS as u64;
    row(
        "two_nodes_of_ours_speak_the_extension_and_a_chat_costs_about_its_size",
        &format!(
            "B received {received} bytes for {CHATS} chats of {} characters ({}): {per_chat} bytes a chat, the history is {} bytes",
            texts[0].len(),
            by_type.join(", "),
            archive.len()
        ),
    );
    assert!(
        per_chat < PER_CHAT,
        "B received {received} bytes for {CHATS} chats ({per_chat} a chat)"
    );
}

/// A line ours – foreign – ours: A and C know only F, a foreign node
/// that speaks the standard protocol alone (its relay port refuses) and
/// names nobody in its PeerLists. A chat at A reaches C and one at C
/// reaches A, through F, whole archives on both links.
#[test]
fn a_foreign_node_in_the_middle_relays_both_ways() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    let foreign = Foreign::start(net.at(SCRIPTED), History::new());
    let f = net.addr(SCRIPTED).to_string();
    let mut a = net.node(1, &["--peer", &f]);
    let mut c = net.node(3, &["--peer", &f]);
    let only_f = [link(net.addr(SCRIPTED), "outbound", "standard")];
    for node in [&mut a, &mut c] {
        wait_links(node, WAIT, "connected to F alone, standard", |l| {
            l == only_f
        });
    }

    let started = Instant::now();
    a.chat("from A across a foreign node");
    wait_holds(&mut c, CROSS, &["from A across a foreign node"]);
    let a_to_c = started.elapsed();
    let started = Instant::now();
    c.chat("from C across a foreign node");
    wait_holds(&mut a, CROSS, &["from C across a foreign node"]);
    let c_to_a = started.elapsed();

    let both = [
        "from A across a foreign node",
        "from C across a foreign node",
    ];
    let (hist_a, hist_c) = (a.hist(), c.hist());
    assert_eq!(hist_a, both, "A's history");
    assert_eq!(hist_c, both, "C's history");
    assert_eq!(foreign.history().len(), 2, "F's history");
    // Neither learnt of the other: F is all they know.
    assert_eq!(links(&mut a), only_f, "A's connections");
    assert_eq!(links(&mut c), only_f, "C's connections");
    row(
        "a_foreign_node_in_the_middle_relays_both_ways",
        &format!(
            "A to C in {:.2} s, C to A in {:.2} s; F took {} histories",
            secs(a_to_c),
            secs(c_to_a),
            foreign.adopted()
        ),
    );
}

/// A node started with `--no-relay` (N) and one with the extension (R):
/// R dials N (its relay port refuses, so R falls back to the network
/// port), M (`--no-relay` too) dials R's network port; every connection
/// is standard, and chats flow both ways.
#[test]
fn a_node_without_the_extension_is_spoken_to_in_the_standard_protocol() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let mut n = net.node(1, &["--no-relay"]);
    let mut r = net.node(2, &["--peer", &net.addr(1).to_string()]);
    let mut m = net.node(3, &["--no-relay", "--peer", &net.addr(2).to_string()]);
    let (na, ra, ma) = (net.addr(1), net.addr(2), net.addr(3));
    wait_links(&mut r, WAIT, "connected to N and M, standard", |l| {
        l.contains(&link(na, "outbound", "standard"))
            && l.contains(&link(ma, "inbound", "standard"))
    });

    n.chat("from N without the extension");
    m.chat("from M without the extension");
    let both = [
        "from N without the extension",
        "from M without the extension",
    ];
    for node in [&mut n, &mut r, &mut m] {
        wait_holds(node, CROSS, &both);
    }
    let hist = wait_same(&mut [&mut n, &mut r, &mut m], CROSS);
    assert_eq!(hist.len(), 2, "the history: {hist:?}");
    let mut shown = Vec::new();
    for node in [&mut n, &mut r, &mut m] {
        let seen = links(node);
        assert!(
            seen.iter().all(|(_, _, dialect)| dialect == "standard"),
            "node {}: a connection that is not standard: {seen:?}",
            node.addr
        );
        shown.push(format!("{}: {}", node.addr, seen.len()));
    }
    assert!(
        links(&mut n).iter().any(|(addr, ..)| *addr == ra),
        "N is not connected to R"
    );
    row(
        "a_node_without_the_extension_is_spoken_to_in_the_standard_protocol",
        &format!(
            "standard connections ({}); both chats everywhere",
            shown.join(", ")
        ),
    );
}

/// Lengths that lie: a Tip claiming u32::MAX chats costs one
/// ChatsRequest (from the node's tip); the Chats that answers it claims
/// 1,000,000 chats but sends 3 (valid ones) and closes. The node keeps its
/// history, and an honest extension peer then gets the same 3 chats
/// taken.
#[test]
fn a_tip_and_a_count_that_lie_cost_a_request_and_nothing_more() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 4);
    let (archive, history) = fixture_1k();
    let mut node = net.node_holding(1, &[], &archive, 1000);
    let longer = mined_on(history.clone(), &[b"one", b"two", b"three"]);
    let lied = lie_about_lengths(net.addr(SCRIPTED), net.relay_at(1), 1_000_000, |from, _| {
        chat_bytes(&longer, from as usize)
    });
    assert_eq!(
        lied.asked,
        Some((1000, digest_before(&history, 1000))),
        "the node's request after a Tip of u32::MAX chats"
    );
    assert_ne!(
        lied.end,
        End::Open,
        "the node kept a connection whose stream ended inside a message"
    );
    net.assert_serves(CHECKER, 1, &archive);

    // It goes on: an honest extension peer's chats are taken.
    let mut honest = net.relay_peer(AFTER, 1);
    honest.send(&tip_of(&longer));
    let asked = honest.recv_chats_request(WAIT);
    assert_eq!(asked, Some((1000, digest_before(&history, 1000))));
    honest.send_chats_of(&longer, 1000);
    assert!(
        node.wait_history_len(1003),
        "the node did not take 3 honest chats after the liar: {:?}",
        node.status()
    );
    row(
        "a_tip_and_a_count_that_lie_cost_a_request_and_nothing_more",
        &format!(
            "asked from {}; {} bytes of chats under a count of 1,000,000: history kept, connection ended ({:?})",
            lied.asked.map_or(0, |(from, _)| from),
            lied.sent,
            lied.end
        ),
    );
}

/// A prefix digest that does not match: a Chats from the node's length
/// whose `prev` is not its last digest, with one valid-looking chat, is
/// not adopted; the node asks for the chats past its own tip (with its
/// own last digest) and keeps the connection and its history.
#[test]
fn chats_on_a_prefix_the_node_does_not_hold_are_not_adopted() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let (archive, history) = fixture_1k();
    let node = net.node_holding(1, &[], &archive, 1000);
    let mut liar = net.relay_peer(SCRIPTED, 1);
    liar.send_chats(
        1000,
        &[0xab; DIGEST_LEN],
        1,
        &valid_looking_chat("on a prefix you do not hold"),
    );
    let asked = liar.recv_chats_request(WAIT);
    assert_eq!(
        asked,
        Some((1000, digest_before(&history, 1000))),
        "the node's answer to chats on a prefix it does not hold (closed: {})",
        liar.is_closed()
    );
    net.assert_serves(CHECKER, 1, &archive);
    assert!(!liar.is_closed(), "the node closed the connection");
    assert_eq!(
        node.ask(&serde_json::json!({"command": "status"}))["history"],
        1000
    );
    row(
        "chats_on_a_prefix_the_node_does_not_hold_are_not_adopted",
        "not adopted; asked again from its tip (1000); connection kept",
    );
}

/// The checks of a Chats that never ends (`endless`): the node closed the
/// connection after at most `--max-message` bytes past where it stopped
/// taking chats (plus what the kernels buffer), said why in the ending
/// it counts, answered `honest` throughout, and kept its history.
fn assert_cut(test: &str, net: &Net, node: &mut Node, endless: &Endless, honest: Honest) {
    let answers = honest.finish();
    let (archive, _) = fixture_1k();
    net.assert_serves(CHECKER, 1, &archive);
    let told = endless.notifications();
    row(
        test,
        &format!(
            "{:.2} MB taken of {:.0} MB offered under --max-message {MAX_MESSAGE_FLAG}, ended {:?} after {:.1} ms; told {told:?}; honest peer: {} answers, worst {:.0} ms",
            endless.taken as f64 / 1e6,
            OFFERED as f64 / 1e6,
            endless.end,
            secs(endless.took) * 1e3,
            answers.count(),
            answers.worst().as_secs_f64() * 1e3
        ),
    );
    assert_ne!(
        endless.end,
        End::Open,
        "the node kept taking the chats: {} bytes",
        endless.taken
    );
    assert!(
        endless.taken <= MAX_MESSAGE + MAX_CHAT + KERNEL_SLACK,
        "the node took {} bytes (--max-message {MAX_MESSAGE})",
        endless.taken
    );
    assert!(
        node.closed("undecodable") >= 1,
        "the node did not count the connection as ended for its bytes: {}",
        node.status()["endings"]
    );
}

/// A suffix that never ends: a Chats from the node's tip (the right
/// digest) claiming u32::MAX chats, whose chats are random bytes in chat
/// form, sent without end, is cut after at most `--max-message` bytes
/// past its first invalid chat, while an honest client is answered.
#[test]
fn a_suffix_of_invalid_chats_that_never_ends_is_cut_after_max_message() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 6);
    let (archive, history) = fixture_1k();
    let mut node = net.node_holding(1, &["--max-message", MAX_MESSAGE_FLAG], &archive, 1000);
    let honest = Honest::start(net.peer(HONEST, 1), &Arc::new(archive));
    let endless = endless_chats(
        net.addr(SCRIPTED),
        net.relay_at(1),
        (1000, digest_before(&history, 1000)),
        &random_invalid_chat(6),
        OFFERED,
    );
    assert_cut(
        "a_suffix_of_invalid_chats_that_never_ends_is_cut_after_max_message",
        &net,
        &mut node,
        &endless,
        honest,
    );
}

/// A Chats on a prefix the node does not hold (a wrong digest before
/// its tip), claiming u32::MAX valid-looking chats sent without end, is
/// skipped, and cut after at most `--max-message` bytes.
#[test]
fn unrooted_chats_that_never_end_are_cut_after_max_message() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 7);
    let (archive, _) = fixture_1k();
    let mut node = net.node_holding(1, &["--max-message", MAX_MESSAGE_FLAG], &archive, 1000);
    let honest = Honest::start(net.peer(HONEST, 1), &Arc::new(archive));
    let endless = endless_chats(
        net.addr(SCRIPTED),
        net.relay_at(1),
        (1000, [0xab; DIGEST_LEN]),
        &valid_looking_chat("rooted nowhere"),
        OFFERED,
    );
    assert_cut(
        "unrooted_chats_that_never_end_are_cut_after_max_message",
        &net,
        &mut node,
        &endless,
        honest,
    );
}

/// An extension peer that also sends full archives: a valid longer
/// ArchiveResponse on the relay connection is adopted; an invalid one is
/// ignored, and the connection kept (a ChatsRequest from the node's tip is
/// answered, with no chat).
#[test]
fn full_archives_on_a_relay_connection_are_judged_as_on_a_standard_one() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 8);
    let (archive, history) = fixture_1k();
    let half = Message::ArchiveResponse(history.prefix(500)).to_bytes();
    let mut node = net.node_holding(1, &[], &half, 500);
    let mut peer = net.relay_peer(SCRIPTED, 1);
    peer.send_message(&Message::ArchiveResponse(history.clone()));
    assert!(
        node.wait_history_len(1000),
        "the node did not adopt a valid longer archive sent on a relay connection: {:?}",
        node.status()
    );
    net.assert_serves(CHECKER, 1, &archive);

    let mut forged = history.clone();
    let mut digest = [0x5a; DIGEST_LEN];
    digest[..2].copy_from_slice(&[0, 0]);
    forged.push(&Chat::new(&b"forged"[..], [0x22; 16], digest).expect("a short text"));
    peer.send_message(&Message::ArchiveResponse(forged));
    peer.send(&RelayMessage::ChatsRequest {
        from: 1000,
        prev: digest_before(&history, 1000),
    });
    let answer = peer.recv_until(WAIT, |m| matches!(m, Received::Chats { .. }));
    match &answer {
        Some(Received::Chats { from, prev, chats }) => {
            assert_eq!(
                (*from, *prev, chats.len()),
                (1000, digest_before(&history, 1000), 0),
                "the node's answer to a ChatsRequest from its tip"
            );
        }
        _ => panic!(
            "no Chats after an invalid archive (closed: {})",
            peer.is_closed()
        ),
    }
    assert!(!peer.is_closed(), "the node closed the connection");
    net.assert_serves(CHECKER, 1, &archive);
    row(
        "full_archives_on_a_relay_connection_are_judged_as_on_a_standard_one",
        "a valid longer archive adopted (500 -> 1000 chats); an invalid one ignored, connection kept",
    );
}

/// A node (host 1, `--log debug`) told of host [`SCRIPTED`] alone,
/// whose relay port the caller plays and whose network port is a foreign
/// node holding the vector: the node, and how long after its start it
/// held the vector (`None` if not within `within`).
fn dial_past_relay_port(net: &Net, within: Duration) -> (Node, Foreign, Option<Duration>) {
    let (_, vector) = vector();
    let foreign = Foreign::start(net.at(SCRIPTED), vector.clone());
    let started = Instant::now();
    let mut node = net.node(
        1,
        &["--peer", &net.addr(SCRIPTED).to_string(), "--log", "debug"],
    );
    let got = poll(within, || {
        (node.status()["history"] == vector.len()).then(|| started.elapsed())
    });
    (node, foreign, got)
}

/// After a relay port that did not lead to the extension, `node` got the
/// history over the network port (`got`), dialed it once, and holds one
/// connection with the peer, standard (EXTENSION.md: one connection per
/// peer).
fn assert_fell_back_once(net: &Net, node: &mut Node, foreign: &Foreign, got: Option<Duration>) {
    let peer = net.addr(SCRIPTED);
    assert!(
        got.is_some(),
        "the node never got the history: {:?}",
        node.status()
    );
    // Whatever else is to happen has happened by now.
    thread::sleep(Duration::from_secs(3));
    let seen = links(node);
    let opened = format!("connected to {peer} (Outbound");
    let connections = node
        .stderr()
        .lines()
        .filter(|line| line.contains(&opened))
        .count();
    let endings = foreign.endings();
    assert!(
        seen == [link(peer, "outbound", "standard")] && connections == 1 && endings.is_empty(),
        "node {}: {connections} connections to {peer}'s network port opened (logged), \
         connections now {seen:?}, the peer's connections ended: {endings:?}; \
         one connection expected, kept; {}",
        node.addr,
        node.log_tail()
    );
}

/// A relay port that accepts and says nothing (no Hello), in front of a
/// normal standard peer on the network port of the same address: the node
/// gives up on the relay port (about 5 s) and gets the history over the
/// network port, on one connection.
#[test]
fn a_relay_port_that_never_says_hello_is_given_up_for_the_network_port() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let silent = SilentRelayPort::start(net.relay_at(SCRIPTED));
    let (mut node, foreign, got) = dial_past_relay_port(&net, HELLO_GIVE_UP + WAIT);
    let held = silent.accepted();
    let first = held.first().expect("the node dialed the relay port");
    assert_eq!(*first.from.ip(), net.addr(1), "who dialed the relay port");
    let gave_up = first.ended.map(|at| at - first.at);
    row(
        "a_relay_port_that_never_says_hello_is_given_up_for_the_network_port",
        &format!(
            "relay port held {} ({} bytes got), history after {}",
            seconds(gave_up),
            first.got,
            seconds(got)
        ),
    );
    let gave_up = gave_up.expect("the node never closed the silent relay connection");
    assert!(
        gave_up <= HELLO_GIVE_UP,
        "the node waited {gave_up:?} for a Hello"
    );
    assert_fell_back_once(&net, &mut node, &foreign, got);
}

/// A relay port that accepts and closes at once, before any Hello: the
/// node dials the network port at once, and holds one connection.
#[test]
fn a_relay_port_that_closes_at_once_is_given_up_for_the_network_port() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 12);
    let relay_port = Listener::accept_close(net.relay_at(SCRIPTED));
    let (mut node, foreign, got) = dial_past_relay_port(&net, WAIT);
    let accepted = relay_port.finish();
    row(
        "a_relay_port_that_closes_at_once_is_given_up_for_the_network_port",
        &format!(
            "relay port dialed {} times; history after {}",
            accepted.len(),
            seconds(got)
        ),
    );
    assert_eq!(accepted.len(), 1, "dials of the relay port");
    assert_fell_back_once(&net, &mut node, &foreign, got);
}

/// A relay port whose first message is a PeerRequest, not a Hello: the
/// node closes it, dials the network port, and holds one connection.
#[test]
fn a_relay_port_that_speaks_first_without_hello_is_given_up_for_the_network_port() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 13);
    let relay_port = Listener::close_on(
        net.relay_at(SCRIPTED),
        &[],
        &Message::PeerRequest.to_bytes(),
    );
    let (mut node, foreign, got) = dial_past_relay_port(&net, WAIT);
    let accepted = relay_port.finish();
    row(
        "a_relay_port_that_speaks_first_without_hello_is_given_up_for_the_network_port",
        &format!(
            "relay port dialed {} times, kept {:?}; history after {}",
            accepted.len(),
            accepted.iter().map(|a| a.lived).collect::<Vec<_>>(),
            seconds(got)
        ),
    );
    assert_eq!(accepted.len(), 1, "dials of the relay port");
    assert_fell_back_once(&net, &mut node, &foreign, got);
}

/// Something other than a Hello first on the relay connection (a
/// PeerRequest; a Hello without the magic): the node closes it, unanswered.
#[test]
fn a_first_message_other_than_hello_closes_the_relay_connection() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 10);
    let mut node = net.node(1, &[]);
    let firsts: [(&str, Vec<u8>); 2] = [
        ("a PeerRequest", Message::PeerRequest.to_bytes()),
        (
            "a Hello without the magic",
            vec![0x10, b'N', b'O', b'P', b'E', 1],
        ),
    ];
    let mut measured = Vec::new();
    for (i, (what, first)) in firsts.iter().enumerate() {
        let from = net.addr(SCRIPTED + i as u8);
        let mut peer = RelayPeer::connect_bare(from, net.relay_at(1));
        peer.send_raw(first);
        let started = Instant::now();
        let (got, end) = peer.read_to_close(WAIT);
        let summary: Vec<String> = got.iter().map(Received::summary).collect();
        assert_ne!(
            end,
            End::Open,
            "{what}: the node kept the connection: {summary:?}"
        );
        assert!(
            got.iter().all(|m| matches!(
                m,
                Received::Relay(RelayMessage::Hello { .. })
                    | Received::Standard(Message::Notification(_))
            )),
            "{what}: the node answered it as a peer's: {summary:?}"
        );
        assert!(
            links(&mut node).iter().all(|(addr, ..)| *addr != from),
            "{what}: the node lists it as a peer"
        );
        measured.push(format!(
            "{what}: closed after {:.0} ms",
            secs(started.elapsed()) * 1e3
        ));
    }
    assert_eq!(node.status()["history"], 0);
    row(
        "a_first_message_other_than_hello_closes_the_relay_connection",
        &measured.join("; "),
    );
}

/// Nothing but the standard protocol on the network port: standard
/// clients connected to the network ports of A and C, which speak the
/// extension with each other, decode everything they are sent with the
/// standard decoder (a byte of the extension would fail it), while chats
/// are mined at both and relayed over their relay link; each then gets
/// the final history.
#[test]
fn the_network_port_carries_only_the_standard_protocol() {
    const ROUNDS: usize = 3;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 11);
    let mut a = net.node(1, &[]);
    let mut c = net.node(2, &["--peer", &net.addr(1).to_string()]);
    wait_links(&mut a, WAIT, "connected to C by relay", |l| {
        l == [link(net.addr(2), "inbound", "relay")]
    });
    let mut watchers = [net.peer(HONEST, 1), net.peer(HONEST + 1, 2)];
    for (watcher, node) in watchers.iter_mut().zip([&mut a, &mut c]) {
        watcher.send(&Message::PeerRequest);
        watcher
            .recv_until(WAIT, |m| matches!(m, Message::PeerList(_)))
            .expect("a PeerList");
        let addr = *watcher.local.ip();
        wait_links(node, WAIT, "connected to its standard watcher", |l| {
            l.iter()
                .any(|(peer, _, dialect)| *peer == addr && dialect == "standard")
        });
    }
    let mut typed = Vec::new();
    for i in 0..ROUNDS {
        for (name, node) in [("A", &mut a), ("C", &mut c)] {
            let text = format!("round {i} from {name}");
            node.chat(&text);
            typed.push(text);
        }
    }
    let wanted: Vec<&str> = typed.iter().map(String::as_str).collect();
    wait_holds(&mut a, CROSS, &wanted);
    wait_holds(&mut c, CROSS, &wanted);
    let agreed = wait_same(&mut [&mut a, &mut c], CROSS);
    let mut counts = Vec::new();
    for watcher in &mut watchers {
        // Everything sent so far, then the history asked for: each decodes
        // as a standard message (`recv` panics on any other byte).
        let got = watcher.drain(Duration::from_millis(500));
        let pushed = got
            .iter()
            .filter(|m| matches!(m, Message::ArchiveResponse(_)))
            .count();
        assert!(
            pushed >= 1,
            "{}: no archive pushed to a standard peer while chats were mined: {got:?}",
            watcher.remote
        );
        watcher.send(&Message::ArchiveRequest);
        let (history, _) = watcher
            .recv_archive(WAIT)
            .expect("an answer to ArchiveRequest");
        assert!(!watcher.is_closed(), "the node closed a standard watcher");
        assert_eq!(texts(&history), agreed, "the history the watcher got");
        counts.push(format!("{} messages ({pushed} archives)", got.len() + 1));
    }
    row(
        "the_network_port_carries_only_the_standard_protocol",
        &format!(
            "{} chats mined at A and C; the standard watchers decoded {}, all standard",
            typed.len(),
            counts.join(" and ")
        ),
    );
}

/// Pushes that follow each other on one connection, each extending the
/// one before (what a node of ours sends a peer while chats are mined
/// faster than they cross): the receiver judges each against its history
/// as the ones before it left it, so it takes them all and asks for
/// nothing again. Three Chats of one chat each, in one write.
#[test]
fn back_to_back_pushes_are_taken_without_asking_again() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 14);
    let (archive, history) = fixture_1k();
    let mut node = net.node_holding(1, &[], &archive, 1000);
    let longer = mined_on(
        history.clone(),
        &[b"first push", b"second push", b"third push"],
    );
    let mut peer = net.relay_peer(SCRIPTED, 1);
    peer.send(&tip_of(&history));
    let mut pushes = Vec::new();
    for from in 1000..1003 {
        pushes.extend_from_slice(&wire::chats_header(
            from as u32,
            &digest_before(&longer, from),
            1,
        ));
        pushes.extend_from_slice(&chat_bytes(&longer.prefix(from + 1), from));
    }
    peer.send_raw(&pushes);
    // What the node sends meanwhile, until it holds the three chats (at
    // most WAIT), and for a second more.
    let mut asked = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut held = node.status()["history"].as_u64();
    while held != Some(1003) && Instant::now() < deadline && !peer.is_closed() {
        while let Some(message) = peer.recv(Duration::from_millis(100)) {
            if let Received::Relay(RelayMessage::ChatsRequest { from, .. }) = message {
                asked.push(from);
            }
        }
        held = node.status()["history"].as_u64();
    }
    while let Some(message) = peer.recv(Duration::from_secs(1)) {
        if let Received::Relay(RelayMessage::ChatsRequest { from, .. }) = message {
            asked.push(from);
        }
    }
    row(
        "back_to_back_pushes_are_taken_without_asking_again",
        &format!(
            "3 pushes of one chat in one write: history {held:?} (1003 expected); ChatsRequests from {asked:?}"
        ),
    );
    assert!(
        held == Some(1003) && asked.is_empty(),
        "the node holds {held:?} chats after three pushes taking it from 1000 to 1003, and \
         asked again for chats from {asked:?}: it judged a push against its history before \
         the pushes ahead of it were taken"
    );
}

/// Three nodes of ours, B and C each dialing A: a history that reaches B
/// and C through A leaves each not knowing what the other holds, and the
/// next chat typed at B still costs C little (a peer whose known tip is
/// far behind is sent our tip and asks for what it lacks; it was once
/// pushed every chat since the tip it told at connect).
#[test]
fn a_history_taken_through_another_peer_leaves_the_next_chat_small() {
    const PER_CHAT: u64 = 1000;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 16);
    let a = net.node(1, &[]);
    let mut b = net.node(2, &["--peer", &net.addr(1).to_string()]);
    let mut c = net.node(3, &["--peer", &net.addr(1).to_string()]);
    wait_links(&mut b, WAIT, "connected to A and C by relay", |l| {
        l.len() == 2 && l.iter().all(|(_, _, d)| d == "relay")
    });
    let (archive, _) = fixture_1k();
    net.peer(100, 1).send_raw(&archive);
    for node in [&mut b, &mut c] {
        let (got, addr) = (node.wait_history_len(1000), node.addr);
        assert!(got, "{addr} did not get the history: {:?}", node.status());
    }
    let before = bytes_in(&mut c, net.addr(2));
    b.chat("one short chat from B");
    assert!(
        c.wait_history_len(1001),
        "C did not get B's chat: {:?}",
        c.status()
    );
    thread::sleep(Duration::from_secs(1));
    let from_b = bytes_in(&mut c, net.addr(2)) - before;
    row(
        "a_history_taken_through_another_peer_leaves_the_next_chat_small",
        &format!(
            "C received {from_b} bytes from B for B's next chat (the history is {} bytes)",
            archive.len()
        ),
    );
    assert!(
        from_b < PER_CHAT,
        "C received {from_b} bytes from B for one chat; A held {:?}",
        a.addr
    );
}
