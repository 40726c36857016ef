//! Field hardening (issue 10): the four kinds of fault seen with other
//! implementations in the field, each against real node processes on
//! loopback, played by the scripted peers of `support::misbehave`.
//!
//! 1. Connections that end as soon as they start: a peer that accepts and
//!    closes, or closes on a message type, is dialed only as the backoff
//!    allows; a client reconnecting in a loop leaves the node responsive.
//! 2. Knowing oneself: a node told its own address does not keep dialing
//!    it, idles, and serves other clients on local addresses as peers.
//! 3. Half-close: a peer that sends requests and shuts down its write side
//!    gets its answers, then our close.
//! 4. A valid history is never lost behind invalid ones arriving with it.
//! 5. A peer that opens with a request, pushes its archive and hangs up
//!    without reading (issue 18): the archive is taken every time.
//! 7. The rest of an invalid archive is bounded (issue 18): at most
//!    `--max-message` of it is skipped, then the connection is closed with
//!    a Notification saying why.
//! 6. One connection per peer (issue 18): a peer that keeps one entry per
//!    IP address is never dialed while it is connected, nor has a
//!    connection closed on it, so its chats keep coming at once, and one
//!    that redials when it loses its connection is not made to.
//!
//! Each test asserts what must hold and prints rows of the closing table:
//!
//! `cargo test --workspace --locked --test e2e field:: -- --nocapture 2>/dev/null | grep '^|'`
//!
//! | kind | test | measured |
//!
//! Address plan (see `support`): module 4, so test T runs on `127.4.T.x`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wire::{History, Message, MessageType};

use crate::support::misbehave::{
    Accepted, Alias, End, HalfClosed, Listener, ReconnectLoop, SelfAlias, ask_and_reset,
    dials_logged, endless_invalid_archive, garbage_after, half_close, half_close_and_hold,
    push_and_hang_up, race,
};
use crate::support::observe::{Honest, MaxSampler};
use crate::support::per_ip::PerIpPeer;
use crate::support::{Net, Node, Peer, WAIT, fixture_bytes, own_cpu, poll, shared_cpu};

/// This module's id in the address plan of `support`.
const FILE: u8 = 4;
/// The short-lived peer that gives a node its history.
const PUSHER: u8 = 254;
/// The short-lived peer that checks a node's history.
const CHECKER: u8 = 253;
/// The honest peer that keeps asking for the archive.
const HONEST: u8 = 200;
/// Newcomers that connect and ask for the archive, one after the other.
const NEWCOMER: u8 = 201;
/// The window for counting dials.
const WINDOW: Duration = Duration::from_secs(30);
/// The bound on connections to a peer that ends them at once, in
/// [`WINDOW`] (the backoff allows 5: at 0, 1, 3, 7 and 15 s at the
/// earliest).
const MOST_IN_WINDOW: usize = 8;
/// The bound on an idle node's CPU use: 1 % of a core.
const IDLE_CPU_SHARE: f64 = 0.01;

fn at(net: &Net, host: u8) -> SocketAddrV4 {
    SocketAddrV4::new(net.addr(host), net.port())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One row of the closing table.
fn row(kind: &str, test: &str, measured: &str) {
    println!("| {kind} | `field::{test}` | {measured} |");
}

fn archive_of(history: &History) -> Vec<u8> {
    let mut bytes = Vec::new();
    history.encode_archive(&mut bytes);
    bytes
}

/// The CPU time `node` uses over `span` from now, as a share of one core.
fn cpu_share(node: &Node, span: Duration) -> (Duration, f64) {
    let (before, started) = (node.cpu_time(), Instant::now());
    thread::sleep(span);
    let used = node.cpu_time().saturating_sub(before);
    (used, secs(used) / secs(started.elapsed()))
}

/// Rows of `peers` that are connections (not dials) with `addr`.
fn connections_with(node: &mut Node, addr: Ipv4Addr) -> Vec<String> {
    node.peers()
        .into_iter()
        .filter(|(a, dir)| {
            *a == addr && (dir.starts_with("inbound") || dir.starts_with("outbound"))
        })
        .map(|(a, dir)| format!("{a} {dir}"))
        .collect()
}

/// Seconds from `start` of each connection, for messages.
fn times(accepted: &[Accepted], start: Instant) -> String {
    let at: Vec<String> = accepted
        .iter()
        .map(|a| format!("{:.1}", secs(a.at.saturating_duration_since(start))))
        .collect();
    at.join(", ")
}

/// The connections to a peer that ends them at once are spaced as the
/// backoff says: the k-th gap (from 0) is at least 2^k s, and at most
/// 1.5 x 2^k s plus two seconds of slack (a tick, a loaded machine).
fn assert_backoff_spacing(what: &str, accepted: &[Accepted]) {
    for (k, pair) in accepted.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let base = Duration::from_secs(1 << k);
        assert!(
            gap + Duration::from_millis(50) >= base,
            "{what}: connection {} came {gap:?} after the one before; the backoff is {base:?} at least",
            k + 2
        );
        assert!(
            gap <= base.mul_f64(1.5) + pair[0].lived + Duration::from_secs(2),
            "{what}: connection {} came {gap:?} after the one before; the backoff is below {:?}",
            k + 2,
            base.mul_f64(1.5)
        );
    }
}

/// A peer that ends every connection at once, and the node told to dial
/// it.
struct EndsAtOnce {
    what: &'static str,
    /// The type it closes on; `None`: it accepts and closes.
    closes_on: Option<u8>,
    listener: Listener,
    node: Node,
}

/// A node at `host` of `net` with `--peer PEER --log debug`.
fn dialing(net: &Net, host: u8, peer: Ipv4Addr) -> Node {
    net.node(host, &["--peer", &peer.to_string(), "--log", "debug"])
}

/// The `dialing` row of `peers` about `addr` (the addresses still tried).
fn still_trying(node: &mut Node, addr: Ipv4Addr) -> Option<serde_json::Value> {
    let peers = node.ask(&serde_json::json!({"command": "peers"}));
    peers["dialing"]
        .as_array()?
        .iter()
        .find(|row| row["addr"] == addr.to_string())
        .cloned()
}

#[test]
fn a_peer_that_ends_connections_at_once_is_redialed_only_as_the_backoff_allows() {
    const TEST: &str =
        "a_peer_that_ends_connections_at_once_is_redialed_only_as_the_backoff_allows";
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let start = Instant::now();
    let cases: Vec<EndsAtOnce> = [
        ("accept-and-close", None, &[][..]),
        (
            "close on ArchiveRequest 0x03 (the greeting)",
            Some(0x03),
            &[],
        ),
        ("close on PeerRequest 0x01 (the greeting)", Some(0x01), &[]),
        (
            "close on PeerList 0x02 (asked with 0x01)",
            Some(0x02),
            &[0x01],
        ),
        (
            "close on ArchiveResponse 0x04 (asked with 0x03)",
            Some(0x04),
            &[0x03],
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (what, closes_on, greet))| {
        let listener = at(&net, 12 + i as u8);
        EndsAtOnce {
            what,
            closes_on,
            listener: match closes_on {
                None => Listener::accept_close(listener),
                Some(kind) => Listener::close_on(listener, &[kind], greet),
            },
            node: dialing(&net, 77 + i as u8, *listener.ip()),
        }
    })
    .collect();
    // And an address where nothing listens: every dial is refused.
    let refused_at = net.addr(18);
    let refused_node = dialing(&net, 82, refused_at);
    thread::sleep((start + WINDOW).saturating_duration_since(Instant::now()));
    let counts: Vec<(usize, usize)> = cases
        .iter()
        .map(|c| {
            let n = c.listener.count_within(start, WINDOW);
            (n, dials_logged(&c.node, *c.listener.addr().ip()))
        })
        .collect();
    let refused = dials_logged(&refused_node, refused_at);

    for (case, (n, dialed)) in cases.into_iter().zip(counts) {
        let EndsAtOnce {
            what,
            closes_on,
            listener,
            mut node,
        } = case;
        let listener_addr = *listener.addr().ip();
        let accepted: Vec<Accepted> = listener.accepted().into_iter().take(n).collect();
        let all = listener.finish();
        println!(
            "{what}: {n} connections in {WINDOW:?}, at {} s; {dialed} dials logged",
            times(&accepted, start)
        );
        assert!(
            n <= MOST_IN_WINDOW,
            "{what}: {n} connections in {WINDOW:?} (at most {MOST_IN_WINDOW}), at {} s",
            times(&accepted, start)
        );
        // Not given up either: a bootstrap peer is dialed again whenever
        // the backoff allows (4 at the latest: 0, 1.5, 4.5, 10.5 s).
        assert!(
            n >= 4,
            "{what}: only {n} connections in {WINDOW:?}, at {} s",
            times(&accepted, start)
        );
        for a in &accepted {
            assert_eq!(*a.from.ip(), node.addr, "{what}: {a:?}");
            assert_eq!(
                a.closed_on, closes_on,
                "{what}: the listener did not close on what it waits for: {a:?}"
            );
            // What it read: the greeting (up to the type it closed on),
            // then the type it closed on.
            let greeting: &[u8] = match closes_on {
                None => &[],
                Some(0x03) => &[0x03],
                Some(_) => &[0x03, 0x01],
            };
            assert!(
                a.got.starts_with(greeting) && a.got.last() == closes_on.as_ref(),
                "{what}: the listener read {:02x?}",
                a.got
            );
        }
        assert_backoff_spacing(what, &accepted);
        // The node's own count of its dials agrees (one may be in flight
        // at the end of the window).
        assert!(
            dialed >= n && dialed <= all.len() + 1,
            "{what}: {dialed} dials logged, {n} connections accepted in the window ({} in all)",
            all.len()
        );
        // The node says that it keeps trying, and how often it failed.
        let trying = still_trying(&mut node, listener_addr);
        assert!(
            trying
                .as_ref()
                .is_some_and(|row| row["failures"].as_u64() > Some(0)),
            "{what}: peers: {}",
            node.ask(&serde_json::json!({"command": "peers"}))
        );
        row(
            "1 connections that end at once",
            TEST,
            &format!(
                "{what}: {n} connections in 30 s (at {} s)",
                times(&accepted, start)
            ),
        );
    }
    println!("refused: {refused} dials in {WINDOW:?}");
    assert!(
        (4..=MOST_IN_WINDOW).contains(&refused),
        "refused dials: {refused} in {WINDOW:?} (4 to {MOST_IN_WINDOW}); log:\n{}",
        refused_node.log_tail()
    );
    row(
        "1 connections that end at once",
        TEST,
        &format!("refused (nothing listens): {refused} dials in 30 s"),
    );
}

#[test]
fn reconnect_loops_leave_the_node_responsive_and_are_dialed_back_within_the_backoff() {
    const TEST: &str =
        "reconnect_loops_leave_the_node_responsive_and_are_dialed_back_within_the_backoff";
    const LOOP: Duration = Duration::from_secs(10);
    const AFTER: Duration = Duration::from_secs(5);
    let _cpu = own_cpu();
    let net = Net::new(FILE, 2);
    let archive = Arc::new(fixture_bytes("history-1k.bin"));
    let node = net.node_holding(1, &["--log", "debug"], &archive, 1000);
    let node_at = at(&net, 1);
    // The loops' addresses listen too (accepting and closing): every dial
    // the node makes to them is counted.
    let (silent_host, asking_host) = (120, 121);
    let silent_listener = Listener::accept_close(at(&net, silent_host));
    let asking_listener = Listener::accept_close(at(&net, asking_host));
    let honest = Honest::start(net.peer(HONEST, 1), &archive);
    // A newcomer too, every 250 ms: connects, asks for the archive, and
    // times the answer from the connect on.
    let newcomer = {
        let (from, to, port) = (net.addr(NEWCOMER), net.addr(1), net.port());
        MaxSampler::start(Duration::from_millis(250), move || {
            let asked = Instant::now();
            let history = Peer::archive(from, to, port);
            assert_eq!(history.len(), 1000, "a newcomer was sent another history");
            asked.elapsed()
        })
    };

    let sockets_before = node.sockets();
    let (cpu_before, started) = (node.cpu_time(), Instant::now());
    let silent = ReconnectLoop::start(net.addr(silent_host), node_at, &[], LOOP);
    let asking = ReconnectLoop::start(net.addr(asking_host), node_at, &[0x01], LOOP);
    let silent = silent.join();
    let asking = asking.join();
    let looped = started.elapsed();
    let cpu_loop = node.cpu_time().saturating_sub(cpu_before);
    let answers = honest.finish();
    let (newcomer_worst, newcomers) = newcomer.finish();
    // Afterwards: the node settles.
    let (cpu_after, share_after) = cpu_share(&node, AFTER);
    let window = started.elapsed();
    let sockets_after = node.sockets();
    let silent_dials = silent_listener.finish();
    let asking_dials = asking_listener.finish();

    let connections = silent.connected + asking.connected;
    let share_loop = secs(cpu_loop) / secs(looped);
    let per_connection = cpu_loop / u32::try_from(connections.max(1)).unwrap_or(u32::MAX);
    println!(
        "loops: {silent:?} silent, {asking:?} asking, in {looped:?}; node CPU {cpu_loop:?} ({:.0} % of a core, {:.1} µs a connection), {cpu_after:?} in the {AFTER:?} after; sockets held {sockets_before} before, {sockets_after} after; dials back: {} and {} in {window:?}; honest: {} answers, worst {:.1} ms, median {:.1} ms; newcomers: {newcomers}, worst {:.1} ms",
        share_loop * 100.0,
        per_connection.as_secs_f64() * 1e6,
        silent_dials.len(),
        asking_dials.len(),
        answers.count(),
        ms(answers.worst()),
        ms(answers.median()),
        ms(newcomer_worst)
    );
    // The loops did loop: hundreds of connections where the backoff
    // allows a handful of dials (how fast depends on the node: a connect
    // that finds its accept queue full waits a second).
    assert!(
        silent.connected >= 200 && asking.connected >= 200,
        "the loops made {silent:?} and {asking:?} connections in {looped:?}"
    );
    // The node answered the honest peer throughout (median well under a
    // millisecond; the bound, 10x the 500 ms, only catches a hang).
    assert!(
        answers.worst() < Duration::from_secs(5),
        "an honest peer waited {:?} (median {:?}) for its archive",
        answers.worst(),
        answers.median()
    );
    assert!(answers.count() >= 20, "{} answers", answers.count());
    // Bounded CPU: under a core, and little per connection.
    assert!(
        share_loop < 1.0 && per_connection < Duration::from_millis(2),
        "the node used {cpu_loop:?} of CPU in {looped:?} for {connections} connections"
    );
    // And idle once the loops stop (no dials or work left spinning), with
    // no connection of theirs kept: one the node keeps open to finish a
    // reply goes when the reply cannot be written (the loop hung up).
    assert!(
        share_after < IDLE_CPU_SHARE,
        "the node used {cpu_after:?} of CPU in the {AFTER:?} after the loops"
    );
    assert!(
        sockets_after <= sockets_before,
        "the node held {sockets_before} sockets before the loops, {sockets_after} {AFTER:?} after"
    );
    // Dialed back at most as the backoff allows: at 0, 1, 3 and 7 s at
    // the earliest in the window, so 4 at most.
    for (what, dials) in [("silent", &silent_dials), ("asking", &asking_dials)] {
        assert!(
            dials.len() <= 4,
            "the {what} loop's address was dialed {} times in {window:?}, at {} s",
            dials.len(),
            times(dials, started)
        );
        assert_backoff_spacing(what, dials);
    }
    assert_eq!(
        dials_logged(&node, net.addr(silent_host)),
        silent_dials.len(),
        "{}",
        node.log_tail()
    );
    net.assert_serves(CHECKER, 1, &archive);
    row(
        "1 connections that end at once: reconnect loop",
        TEST,
        &format!(
            "{} connections in {:.1} s (silent) and {} (one PeerRequest each), {} of their connects waited 1 s (accept queue full); honest peer answered {} times, worst {:.1} ms, median {:.1} ms; {newcomers} newcomers answered, worst {:.1} ms; node CPU {:.2} s ({:.0} % of a core, {:.1} µs a connection), then {:.2} s in {:.0} s idle; the loops' addresses dialed {} and {} times in {:.0} s",
            silent.connected,
            secs(looped),
            asking.connected,
            silent.retried + asking.retried,
            answers.count(),
            ms(answers.worst()),
            ms(answers.median()),
            ms(newcomer_worst),
            secs(cpu_loop),
            share_loop * 100.0,
            per_connection.as_secs_f64() * 1e6,
            secs(cpu_after),
            secs(AFTER),
            silent_dials.len(),
            asking_dials.len(),
            secs(window)
        ),
    );
}

/// A client that keeps asking: every `every`, a PeerRequest and an
/// ArchiveRequest, each to be answered (a PeerList, an ArchiveResponse)
/// within `patience`; stops at the first that is not, or after `run_for`.
/// The rounds answered and the slowest.
fn keep_asking(
    peer: &mut Peer,
    run_for: Duration,
    every: Duration,
    patience: Duration,
) -> (usize, Duration) {
    let end = Instant::now() + run_for;
    let (mut rounds, mut slowest) = (0, Duration::ZERO);
    while Instant::now() < end {
        let asked = Instant::now();
        peer.send(&Message::PeerRequest);
        if peer
            .recv_until(patience, |m| matches!(m, Message::PeerList(_)))
            .is_none()
        {
            break;
        }
        peer.send(&Message::ArchiveRequest);
        if peer.recv_archive(patience).is_none() {
            break;
        }
        rounds += 1;
        slowest = slowest.max(asked.elapsed());
        thread::sleep(every);
    }
    (rounds, slowest)
}

#[test]
fn a_node_told_its_own_address_dials_it_at_most_once_and_keeps_other_local_clients() {
    const TEST: &str =
        "a_node_told_its_own_address_dials_it_at_most_once_and_keeps_other_local_clients";
    /// Idleness measured over the window's last 10 s.
    const IDLE: Duration = Duration::from_secs(10);
    /// The clients ask for this long, then stay connected in silence.
    const ASKING: Duration = Duration::from_secs(12);
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let start = Instant::now();
    // `node --bind 127.4.3.20 --peer 127.4.3.20`.
    let mut by_flag = SelfAlias::start(&net, 20, Alias::Bootstrap);
    // A node at 127.4.3.21 whose peer names it in every PeerList.
    let mut by_list = SelfAlias::start(&net, 21, Alias::PeerList { teller: 150 });
    // Clients of the first on other local addresses: 127.4.3.66, and the
    // node's own address with another port.
    let clients: Vec<_> = [66, 20]
        .into_iter()
        .map(|from| {
            let mut peer = net.peer(from, 20);
            thread::spawn(move || {
                let (rounds, slowest) = keep_asking(
                    &mut peer,
                    ASKING,
                    Duration::from_secs(1),
                    Duration::from_secs(2),
                );
                (peer, rounds, slowest)
            })
        })
        .collect();
    let mut clients: Vec<(Peer, usize, Duration)> = clients
        .into_iter()
        .map(|c| {
            c.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .collect();
    thread::sleep((start + WINDOW - IDLE).saturating_duration_since(Instant::now()));
    let cpu_before = [by_flag.node.cpu_time(), by_list.node.cpu_time()];
    let idle_from = Instant::now();
    thread::sleep((start + WINDOW).saturating_duration_since(Instant::now()));
    let idle = idle_from.elapsed();
    let cpu_used = [
        by_flag.node.cpu_time().saturating_sub(cpu_before[0]),
        by_list.node.cpu_time().saturating_sub(cpu_before[1]),
    ];

    let lists_told = by_list.finish_teller();
    // The rows of `peers` with the node's own address: none, but for the
    // first node the client that connected from that address (inbound).
    for (what, alias, used, clients_from_own) in [
        ("--peer its own address", &mut by_flag, cpu_used[0], 1),
        (
            "its own address in every PeerList",
            &mut by_list,
            cpu_used[1],
            0,
        ),
    ] {
        let own = alias.addr();
        let dials = alias.dials_to_self();
        let share = secs(used) / secs(idle);
        println!(
            "{what}: {dials} dials of itself in {WINDOW:?}; CPU {used:?} in {idle:?} idle ({:.2} % of a core)",
            share * 100.0
        );
        assert!(
            dials <= 1,
            "{what}: the node dialed itself {dials} times in {WINDOW:?}; log:\n{}",
            alias.node.log_tail()
        );
        let with_own = connections_with(&mut alias.node, own);
        assert!(
            with_own.len() == clients_from_own && with_own.iter().all(|r| r.ends_with(" inbound")),
            "{what}: peers lists connections with itself: {with_own:?}"
        );
        let trying = still_trying(&mut alias.node, own);
        assert!(
            trying.is_none(),
            "{what}: the node still tries to reach itself: {trying:?}"
        );
        assert!(
            share < IDLE_CPU_SHARE,
            "{what}: the idle node used {used:?} of CPU in {idle:?}"
        );
        row(
            "2 knowing oneself",
            TEST,
            &format!(
                "{what}: {dials} dials of itself in 30 s; {:.2} CPU seconds in {:.0} s idle ({:.2} % of a core)",
                secs(used),
                secs(idle),
                share * 100.0
            ),
        );
    }
    assert!(
        lists_told >= 5,
        "the teller sent {lists_told} PeerLists in {WINDOW:?} (the node asks every 5 s)"
    );
    // The clients on other local addresses are ordinary peers: answered
    // every second while they asked, still connected 30 s on (not closed
    // after 2 s), listed as inbound peers, and answered again now.
    let rows = by_flag.node.peers();
    for (peer, rounds, slowest) in &mut clients {
        let from = *peer.local.ip();
        println!("client {from}: {rounds} rounds answered, slowest {slowest:?}");
        assert!(
            *rounds >= 10,
            "client {from}: only {rounds} rounds answered in {ASKING:?} (closed: {})",
            peer.is_closed()
        );
        assert!(
            rows.iter().any(|(a, dir)| *a == from && dir == "inbound"),
            "client {from} is not an inbound peer after {WINDOW:?}: {rows:?}"
        );
        peer.send(&Message::PeerRequest);
        assert!(
            peer.recv_until(WAIT, |m| matches!(m, Message::PeerList(_)))
                .is_some(),
            "client {from}: no answer after {WINDOW:?} (closed: {})",
            peer.is_closed()
        );
        row(
            "2 knowing oneself: a client on another local address",
            TEST,
            &format!(
                "client {from} -> {}: {rounds} rounds of PeerRequest + ArchiveRequest answered in {:.0} s (slowest {:.1} ms), still connected and answered after 30 s",
                net.addr(20),
                secs(ASKING),
                ms(*slowest)
            ),
        );
    }
    let recognised = |node: &Node| {
        node.log_tail()
            .lines()
            .filter(|l| l.contains("leads back to this node"))
            .count()
    };
    assert!(recognised(&by_flag.node) <= 1 && recognised(&by_list.node) <= 1);
}

/// A half-close try answered as it must be: every expected message
/// (`kinds`), archives byte-identical to `archive`, then the end of the
/// stream.
fn answered(got: &HalfClosed, kinds: &[MessageType], archive: &[u8]) -> bool {
    got.end == End::Eof
        && kinds.iter().all(|&k| !got.of_type(k).is_empty())
        && got
            .of_type(MessageType::ArchiveResponse)
            .iter()
            .all(|a| *a == archive)
}

/// Short form of a try, for messages.
fn describe(got: &HalfClosed) -> String {
    format!(
        "types {:02x?}, end {:?} after {:.1} ms",
        got.types(),
        got.end,
        ms(got.after)
    )
}

#[test]
fn half_closed_peers_get_their_answers_then_our_close() {
    const TEST: &str = "half_closed_peers_get_their_answers_then_our_close";
    const TRIES: usize = 10;
    const READ_FOR: Duration = Duration::from_secs(2);
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let archive = fixture_bytes("history-1k.bin");
    let mut node = net.node_holding(1, &[], &archive, 1000);
    let node_at = at(&net, 1);

    // One request, then shutdown: 10 tries of each; as netcat may do it
    // (the request and the end of the stream in one segment: the node
    // reads them together), and with a pause of 100 ms between them.
    let mut tries = Vec::new();
    for (pause, first_host) in [(Duration::ZERO, 100u8), (Duration::from_millis(100), 140)] {
        for (request, kind, hosts) in [
            (0x01u8, MessageType::PeerList, first_host),
            (0x03, MessageType::ArchiveResponse, first_host + 10),
        ] {
            let what = if pause.is_zero() {
                format!("{request:02x} then shutdown")
            } else {
                format!("{request:02x}, {pause:?}, shutdown")
            };
            let mut ok = 0;
            let mut seen = Vec::new();
            for i in 0..TRIES {
                let got = half_close(
                    net.addr(hosts + i as u8),
                    node_at,
                    &[request],
                    pause,
                    READ_FOR,
                );
                if answered(&got, &[kind], &archive) {
                    ok += 1;
                }
                seen.push(describe(&got));
            }
            println!("{what}: {ok}/{TRIES} answered: {seen:#?}");
            tries.push((what, ok, seen));
        }
    }
    // Several requests, then shutdown (together): every request answered,
    // each ArchiveRequest with an archive of its own.
    let several = [0x01, 0x03, 0x01, 0x03, 0x03];
    let mut several_ok = 0;
    let mut several_seen = Vec::new();
    for i in 0..3u8 {
        let got = half_close(
            net.addr(120 + i),
            node_at,
            &several,
            Duration::ZERO,
            READ_FOR,
        );
        let lists = got.of_type(MessageType::PeerList).len();
        let archives = got.of_type(MessageType::ArchiveResponse).len();
        if answered(
            &got,
            &[MessageType::PeerList, MessageType::ArchiveResponse],
            &archive,
        ) && lists == 2
            && archives == 3
        {
            several_ok += 1;
        }
        several_seen.push(describe(&got));
    }
    println!("01 03 01 03 03 then shutdown: {several_ok}/3 answered: {several_seen:#?}");
    // Fifty ArchiveRequests at once, then shutdown: fifty archives (a newer
    // archive never takes the place of an answer), and `status` counts
    // what was sent, no more.
    let sent = |node: &mut Node| {
        let sent = &node.status()["sent"];
        (
            sent["asked"].as_u64().unwrap(),
            sent["bytes"].as_u64().unwrap(),
        )
    };
    let before = sent(&mut node);
    let fifty = half_close(
        net.addr(130),
        node_at,
        &[0x03; 50],
        Duration::ZERO,
        READ_FOR,
    );
    let after = sent(&mut node);
    let answers = fifty.of_type(MessageType::ArchiveResponse).len();
    println!("50 x 03 then shutdown: {answers} archives; status: {before:?} -> {after:?}");
    // A pushed archive (1,000 chats more: checked on the validation
    // thread), then shutdown (with its last segment): adopted, and our
    // close.
    let full = wire::decode_archive(&fixture_bytes("history-100k.bin")).expect("the fixture");
    let longer = archive_of(&full.prefix(2000));
    let pushed = half_close(net.addr(130), node_at, &longer, Duration::ZERO, WAIT);
    let adopted = node.wait_history_len(2000);
    println!(
        "a 2000-chat archive pushed, then shutdown: adopted {adopted}, {}",
        describe(&pushed)
    );

    for (what, ok, seen) in &tries {
        assert_eq!(
            *ok,
            TRIES,
            "{what}: {ok} of {TRIES} answered, then closed: {seen:#?}\nlog:\n{}",
            node.log_tail()
        );
    }
    assert_eq!(
        several_ok, 3,
        "01 03 01 03 03 then shutdown: {several_seen:#?}"
    );
    assert!(
        answered(&fifty, &[MessageType::ArchiveResponse], &archive) && answers == 50,
        "50 x 03 then shutdown: {answers} archives: {}",
        describe(&fifty)
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (50, 50 * archive.len() as u64),
        "status counts other than the fifty archives sent"
    );
    assert!(
        adopted,
        "a pushed archive followed by shutdown was not adopted: {:?}",
        node.status()
    );
    assert_eq!(pushed.end, End::Eof, "{}", describe(&pushed));
    net.assert_serves(CHECKER, 1, &longer);
    for (what, ok, _) in &tries {
        row(
            "3 half-close",
            TEST,
            &format!("{what}: {ok}/{TRIES} answered, then EOF"),
        );
    }
    row(
        "3 half-close",
        TEST,
        &format!(
            "01 03 01 03 03 then shutdown: {several_ok}/3 answered, then EOF; a pushed 2,000-chat archive then shutdown: adopted, then EOF after {:.1} ms",
            ms(pushed.after)
        ),
    );
}

/// Requests, then a byte that begins no message, then junk that keeps
/// coming (another protocol, a broken encoder): the replies owed for the
/// requests come first, then the Notification saying why we close, last,
/// then a clean end of stream. Also when the reply is the 100k history
/// (7.7 MB) and 1 MB of junk follows: closing with junk unread would reset
/// the connection and cut the reply short.
#[test]
fn requests_before_garbage_are_answered_then_told_why_and_closed_cleanly() {
    const TEST: &str = "requests_before_garbage_are_answered_then_told_why_and_closed_cleanly";
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 4);
    let archive = fixture_bytes("history-100k.bin");
    let _node = net.node_holding(1, &[], &archive, 100_000);
    let cases = [
        (&[0x01, 0x06][..], MessageType::PeerList, 0),
        (&[0x01, 0x06], MessageType::PeerList, 1 << 20),
        (&[0x03, 0xff], MessageType::ArchiveResponse, 0),
        (&[0x03, 0xff], MessageType::ArchiveResponse, 1 << 20),
    ];
    let mut seen = Vec::new();
    for (i, (bytes, kind, junk)) in cases.into_iter().enumerate() {
        let from = net.addr(100 + i as u8);
        let got = garbage_after(from, at(&net, 1), bytes, junk, WAIT);
        let what = format!("{bytes:02x?} and {junk} bytes of junk: {}", describe(&got));
        assert!(answered(&got, &[kind], &archive), "{what}");
        assert_eq!(
            got.types().last(),
            Some(&(MessageType::Notification as u8)),
            "{what}: the Notification is not the last message"
        );
        seen.push(what);
    }
    row("3 replies before garbage", TEST, &seen.join("; "));
}

/// A peer that asks for the 100k history 30 times and never reads: the
/// node gives up on it at the read timeout, and `status` counts as sent
/// only what went: no whole archive, and the bytes the sockets took. Then
/// 20 peers that ask 5 times each and reset at once: nothing more.
#[test]
fn archives_a_peer_never_reads_are_not_counted_as_sent() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 8);
    let archive = fixture_bytes("history-100k.bin");
    let mut node = net.node_holding(1, &["--read-timeout", "2"], &archive, 100_000);
    let sent = |node: &mut Node| {
        let sent = &node.status()["sent"];
        (
            sent["archives"].as_u64().unwrap(),
            sent["bytes"].as_u64().unwrap(),
        )
    };
    let before = sent(&mut node);
    let holder = half_close_and_hold(net.addr(100), at(&net, 1), &[0x03; 30]);
    // Counted as they are queued; taken back once the connection is gone.
    let settled = poll(WAIT, || {
        let now = sent(&mut node);
        (now.0 == before.0).then_some(now)
    });
    drop(holder);
    let after = settled.unwrap_or_else(|| sent(&mut node));
    let (archives, bytes) = (after.0 - before.0, after.1 - before.1);
    println!("30 x 03, never read: status: {archives} archives, {bytes} bytes sent");
    assert!(
        settled.is_some() && bytes < archive.len() as u64,
        "{archives} archives and {bytes} bytes counted as sent, {WAIT:?} after a peer that read nothing asked"
    );

    for i in 0..20 {
        ask_and_reset(net.addr(110 + i), at(&net, 1), &[0x03; 5]);
    }
    let reset = poll(WAIT, || {
        let now = sent(&mut node);
        (node.closed("failed") + node.closed("closed by peer") >= 20 && now.0 == after.0)
            .then_some(now)
    });
    let now = sent(&mut node);
    println!(
        "20 x (03 x 5, then a reset): status: {} archives, {} bytes more",
        now.0 - after.0,
        now.1 - after.1
    );
    assert!(
        reset.is_some(),
        "{} archives counted as sent to 20 peers that reset at once",
        now.0 - after.0
    );
}

/// Half-closed peers that never read keep the node writing its reply
/// until the read timeout; in a flood, at most `--max-inbound` of them keep
/// a socket of the node's, the oldest giving way.
#[test]
fn half_closed_peers_that_never_read_hold_at_most_max_inbound_sockets() {
    const TEST: &str = "half_closed_peers_that_never_read_hold_at_most_max_inbound_sockets";
    const MAX_INBOUND: usize = 8;
    const HOLDERS: u8 = 30;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 7);
    let archive = fixture_bytes("history-100k.bin");
    let node = net.node_holding(
        1,
        &["--max-inbound", &MAX_INBOUND.to_string()],
        &archive,
        100_000,
    );
    let sockets_before = node.sockets();
    let held: Vec<_> = (0..HOLDERS)
        .map(|i| half_close_and_hold(net.addr(100 + i), at(&net, 1), &[0x03]))
        .collect();
    // Each asked for 7.6 MB and reads none of it: the node keeps each
    // connection to finish the reply (for --read-timeout, 30 s), but not
    // all of them.
    thread::sleep(Duration::from_secs(1));
    let sockets = node.sockets();
    println!(
        "{HOLDERS} half-closed peers that never read, --max-inbound {MAX_INBOUND}: the node holds {sockets} sockets ({sockets_before} before)"
    );
    assert!(
        sockets <= sockets_before + MAX_INBOUND,
        "{HOLDERS} half-closed peers that never read: the node holds {sockets} sockets ({sockets_before} before, --max-inbound {MAX_INBOUND})"
    );
    net.assert_serves(CHECKER, 1, &archive);
    drop(held);
    row(
        "3 half-close",
        TEST,
        &format!(
            "{HOLDERS} half-closed peers that never read, --max-inbound {MAX_INBOUND}: {sockets} sockets held ({sockets_before} before)"
        ),
    );
}

#[test]
fn valid_history_is_adopted_when_invalid_ones_arrive_with_it() {
    const TEST: &str = "valid_history_is_adopted_when_invalid_ones_arrive_with_it";
    const VALID: usize = 900;
    let _cpu = own_cpu();
    let net = Net::new(FILE, 6);
    let full = fixture_bytes("history-100k.bin");
    let history = wire::decode_archive(&full).expect("the fixture");
    // One text byte of chat `k` changed, in the first `len` chats.
    let broken = |len: usize, k: usize| {
        let mut bytes = archive_of(&history.prefix(len));
        let range = history.chat_range(k);
        assert!(range.len() > 33, "chat {k} has text");
        bytes[5 + range.start + 1] ^= 0x01;
        Arc::new(bytes)
    };
    let v = Arc::new(archive_of(&history.prefix(VALID)));
    let candidates = [
        ("V", Arc::clone(&v)),
        ("J", broken(history.len(), history.len() - 1)),
        ("I", broken(1000, 10)),
        ("J2", broken(history.len(), 50_000)),
        ("I2", broken(1000, 999)),
    ];
    let named = |name: &str| {
        let (_, bytes) = candidates.iter().find(|(n, _)| *n == name).expect("a name");
        Arc::clone(bytes)
    };
    let orders: [&[&str]; 6] = [
        &["J", "I", "V"],
        &["V", "J", "I"],
        &["J", "V", "I"],
        &["I", "J", "V"],
        &["J", "I", "J2", "I2", "V"],
        &["V", "J2", "I2", "J", "I"],
    ];
    let mut results = Vec::new();
    for (round, order) in orders.iter().enumerate() {
        let from: Vec<Ipv4Addr> = (0..order.len())
            .map(|k| net.addr(100 + 10 * round as u8 + k as u8))
            .collect();
        let payloads: Vec<_> = order.iter().map(|name| named(name)).collect();
        // A fresh node each round, and again if the sends did not start
        // within 10 ms (threads that a loaded machine woke late).
        let mut attempts = 0;
        let (mut node, host, sent) = loop {
            let host = 1 + (3 * round + attempts) as u8;
            let node = net.node(host, &[]);
            let sent = race(&from, at(&net, host), &payloads);
            attempts += 1;
            if sent.spread() < Duration::from_millis(10) || attempts == 3 {
                break (node, host, sent);
            }
            sent.close();
        };
        let start = sent.start();
        let spread = sent.spread();
        // Adopted when the node prints the last chat of V.
        let last = format!("#{} ", VALID - 1);
        let shown = poll(Duration::from_secs(5), || {
            node.timed_stdout()
                .into_iter()
                .find(|(_, line)| line.starts_with(&last))
                .map(|(at, _)| at)
        });
        // Every invalid candidate judged (validation of 100,000 chats takes
        // some tens of milliseconds).
        let invalid = order.len() - 1;
        let rejected = |node: &Node| {
            node.log_tail()
                .lines()
                .filter(|l| l.contains("ignoring an invalid history from"))
                .count()
        };
        let judged = poll(WAIT, || (rejected(&node) >= invalid).then_some(()));
        let took = shown.map(|at| at.saturating_duration_since(start));
        println!(
            "{}: sends started within {:.2} ms and ended after {:.1} ms, V adopted after {:?} ms, {} of {invalid} rejections logged",
            order.join(" "),
            ms(spread),
            ms(sent.took()),
            took.map(ms),
            rejected(&node)
        );
        assert!(
            spread < Duration::from_millis(100),
            "{order:?}: the sends spread over {spread:?}"
        );
        let Some(took) = took else {
            panic!(
                "{order:?}: V was not adopted within 5 s: {:?}\nlog:\n{}",
                node.status(),
                node.log_tail()
            );
        };
        assert!(
            took < Duration::from_secs(5),
            "{order:?}: V adopted after {took:?}"
        );
        assert!(
            judged.is_some(),
            "{order:?}: {} rejections of {invalid} invalid candidates logged:\n{}",
            rejected(&node),
            node.log_tail()
        );
        // Only V: 900 chats, byte for byte; nothing longer ever shown.
        assert!(node.wait_history_len(VALID), "{:?}", node.status());
        net.assert_serves(CHECKER, host, &v);
        let stdout = node.stdout();
        assert!(
            !stdout
                .iter()
                .any(|l| l.starts_with(&format!("#{VALID} ")) || l.contains("replaced")),
            "{order:?}: {stdout:?}"
        );
        sent.close();
        results.push((order.join(" "), took));
    }
    let figures: Vec<String> = results
        .iter()
        .map(|(order, took)| format!("{order}: {:.0} ms", ms(*took)))
        .collect();
    let worst = results.iter().map(|(_, t)| *t).max().expect("rounds");
    row(
        "4 a valid history behind invalid ones",
        TEST,
        &format!(
            "V (900 chats) adopted, J and I (and J2, I2) not, sent within 10 ms in the orders {}; worst {:.0} ms",
            figures.join(", "),
            ms(worst)
        ),
    );
}

/// Issue 18, kind 2: a client sends `03` (or `01`, or `01 03`) and a valid
/// 1,000-chat archive in one write, then closes without reading. The
/// node's reply meets the closed socket (EPIPE, then a reset); the field
/// saw the archive lost in 4 to 5 runs of 5. Each variant runs on a fresh
/// node, 4 times: every archive must be adopted.
#[test]
fn a_peer_that_opens_with_a_request_and_hangs_up_has_its_archive_taken() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let archive = fixture_bytes("history-1k.bin");
    let chats = wire::decode_archive(&archive).expect("the fixture").len();
    let variants: [&[u8]; 3] = [&[0x03], &[0x01], &[0x01, 0x03]];
    let mut lost = Vec::new();
    let mut runs = 0;
    for (v, requests) in variants.iter().enumerate() {
        for run in 0..4u8 {
            runs += 1;
            let mut node = net.node(1 + 4 * v as u8 + run, &["--log", "info"]);
            let bytes = [*requests, &archive].concat();
            push_and_hang_up(net.addr(PUSHER), at(&net, 1 + 4 * v as u8 + run), &bytes);
            if !node.wait_history_len(chats) {
                lost.push(format!(
                    "{requests:02x?} run {run}: history {:?}\n{}",
                    node.status()["history"],
                    node.log_tail()
                ));
            }
        }
    }
    row(
        "peer hangs up",
        "a_peer_that_opens_with_a_request_and_hangs_up_has_its_archive_taken",
        &format!("{} archives lost of {runs}", lost.len()),
    );
    assert!(lost.is_empty(), "archives lost:\n{}", lost.join("\n"));
}

/// Issue 18, kind 3: a peer keeping one entry per IP address dials the
/// node and sends `03 01`; the field saw the node dial it back at once and
/// close one of the two connections, leaving the peer no entry, so that
/// its next chat took 52 to 54 s (the 60 s repair). Here its next chat
/// must come within [`WAIT`] (it takes milliseconds), no connection may
/// have been dialed to it or closed on it, and a peer that redials a
/// second after losing its connection (as othiagos did 40 times in 3
/// minutes) redials none in 20 s.
#[test]
fn a_peer_keeping_one_entry_per_ip_gets_its_chats_through_at_once() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 10);
    let full = wire::decode_archive(&fixture_bytes("history-1k.bin")).expect("the fixture");
    let mut node = net.node(1, &["--log", "debug"]);
    let peer = PerIpPeer::start(at(&net, 200), archive_of(&full.prefix(500)));
    peer.dial(at(&net, 1), &[0x03, 0x01], true);
    assert!(node.wait_history_len(500), "{:?}", node.status());
    // What the node did before: dial back, keep one, close the other.
    let settle = Instant::now();
    thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    let pushed_to = peer.push(archive_of(&full.prefix(501)));
    let arrived = poll(WAIT * 5, || {
        (node.status()["history"] == 501).then(Instant::now)
    });
    let took = arrived.map(|at| at - start);
    // The redialing peer, over 20 s with the node.
    thread::sleep(Duration::from_secs(20).saturating_sub(settle.elapsed()));
    row(
        "one connection per peer",
        "a_peer_keeping_one_entry_per_ip_gets_its_chats_through_at_once",
        &format!(
            "next chat in {}; dials to the peer {}; its connections ended {}; its redials in 20 s {}",
            took.map_or("never".to_string(), |d| format!("{:.3} s", secs(d))),
            peer.accepted(),
            peer.ended(),
            peer.dials() - 1
        ),
    );
    assert_eq!(pushed_to, 1, "the peer's table lost its entry for the node");
    assert!(
        took.is_some_and(|d| d < WAIT),
        "the peer's chat came late or never: {took:?}"
    );
    assert_eq!(
        peer.accepted(),
        0,
        "the node dialed a peer it was connected to"
    );
    assert_eq!(
        peer.ended(),
        0,
        "the node closed a connection with the peer"
    );
    assert_eq!(peer.dials(), 1, "the peer had to redial");
}

/// Issue 18, kind 4: `04 00 30 00 00` (3 M chats claimed), then chats whose
/// first is invalid, without end. The field saw the node read and discard
/// 100 MB, with nothing bounding it. With `--max-message 1MiB`, the node
/// must take at most that much after the invalid chat (plus what the
/// sockets' buffers hold, a few MB on loopback) of 64 MiB offered, then
/// close with a Notification saying why.
#[test]
fn the_rest_of_an_invalid_archive_is_bounded_and_the_peer_told_why() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 11);
    let mut node = net.node(1, &["--max-message", "1MiB"]);
    let offered = 64 << 20;
    let (taken, messages) = endless_invalid_archive(net.addr(PUSHER), at(&net, 1), offered);
    let told = messages.iter().find_map(|m| match m {
        Message::Notification(text) => Some(String::from_utf8_lossy(text).into_owned()),
        _ => None,
    });
    row(
        "invalid archive without end",
        "the_rest_of_an_invalid_archive_is_bounded_and_the_peer_told_why",
        &format!(
            "{:.1} MB taken of {:.1} MB offered; told: {told:?}",
            taken as f64 / 1e6,
            offered as f64 / 1e6
        ),
    );
    assert!(
        taken < 16 << 20,
        "the node took {taken} bytes of the invalid archive"
    );
    let told = told.expect("a Notification saying why");
    assert!(
        told.contains("is invalid") && told.contains("1048576 bytes"),
        "{told}"
    );
    // The node goes on serving others.
    assert_eq!(node.status()["history"], 0);
}
