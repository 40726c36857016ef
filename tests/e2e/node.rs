//! End-to-end tests of the `node` binary: real processes on loopback, each
//! test on its own `127.1.T.x` addresses and port (see `support`).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use wire::Message;

use crate::support::{
    self, Net, Peer, VECTOR_TEXTS, WAIT, fixture_bytes, run_to_exit, run_with_input, shared_cpu,
    texts, vector,
};

/// This module's id in the address plan of `support`.
const FILE: u8 = 1;

/// Long enough for a few chats to be mined on one thread and travel a
/// short chain on a loaded machine.
const SPREAD: Duration = Duration::from_secs(30);

fn set(addrs: &[std::net::Ipv4Addr]) -> BTreeSet<std::net::Ipv4Addr> {
    addrs.iter().copied().collect()
}

/// Text `i` of a batch: different lengths (1 to 255 bytes), so windows of 20
/// chats hold chats of many sizes.
fn batch_text(i: usize) -> String {
    let len = [1, 255, 17, 90, 3, 200, 44, 128, 9, 254][i % 10];
    let mut text = String::from(char::from(b'A' + (i % 26) as u8));
    while text.len() < len {
        text.push(char::from(b'a' + (text.len() % 26) as u8));
    }
    text
}

#[test]
fn a_chain_of_three_meshes_spreads_a_chat_and_a_latecomer_gets_everything() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let (a_ip, b_ip, c_ip, d_ip) = (net.addr(1), net.addr(2), net.addr(3), net.addr(4));
    let mut a = net.node(1, &[]);
    let mut b = net.node(2, &["--peer", &a_ip.to_string()]);
    let mut c = net.node(3, &["--peer", &b_ip.to_string()]);
    assert!(
        a.banner.contains("0 chats in the history, 0 pending"),
        "{}",
        a.banner
    );

    // C knows only B, A knows nobody: they must find each other by PeerList.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (node, others) in [
        (&mut a, set(&[b_ip, c_ip])),
        (&mut b, set(&[a_ip, c_ip])),
        (&mut c, set(&[a_ip, b_ip])),
    ] {
        let left = deadline.saturating_duration_since(Instant::now());
        let found = support::poll(left, || {
            let peers = node.peer_addrs();
            others.is_subset(&peers).then_some(peers)
        });
        if found.is_none() {
            let (me, peers) = (node.addr, node.peers());
            panic!("{me} is not connected to {others:?} within 10 s: {peers:?}");
        }
    }
    // No node lists itself.
    for node in [&mut a, &mut b, &mut c] {
        let me = node.addr;
        assert!(!node.peer_addrs().contains(&me), "{me} lists itself");
    }

    // A chat sent at the end of the chain reaches every node.
    c.chat("hello from C");
    c.expect_line(
        |l| l.starts_with("#0 hello from C (mined: "),
        SPREAD,
        "mining the chat",
    );
    let want = vec!["hello from C".to_string()];
    for node in [&mut a, &mut b, &mut c] {
        let hist = node.wait_hist(SPREAD, |h| h == want.as_slice());
        assert_eq!(hist, want, "history of {}", node.addr);
    }
    // Received chats are printed as they come (the screen may print a
    // moment after the history has it).
    for node in [&mut a, &mut b] {
        node.expect_line(|l| l == "#0 hello from C", WAIT, "printing the chat");
    }

    // More chats, past one window of 20, of mixed lengths, mined at A.
    let mut want = want;
    for i in 0..21 {
        let text = batch_text(i);
        a.chat(&text);
        want.push(text);
    }
    for node in [&mut a, &mut b, &mut c] {
        let hist = node.wait_hist(SPREAD, |h| h.len() >= want.len());
        assert_eq!(hist, want, "history of {}", node.addr);
    }
    // What the prompt shows is what the node sends.
    assert_eq!(texts(&net.archive(100, 1)), want);

    // A latecomer with an empty data directory, knowing only A.
    let mut d = net.node(4, &["--peer", &a_ip.to_string()]);
    assert!(d.banner.contains("0 chats in the history"), "{}", d.banner);
    let hist = d.wait_hist(SPREAD, |h| h.len() >= want.len());
    assert_eq!(hist, want, "history of the latecomer");
    assert_eq!(
        net.archive(101, 4),
        net.archive(102, 1),
        "the latecomer's history is A's, byte for byte"
    );
    let found = support::poll(Duration::from_secs(15), || {
        let peers = d.peer_addrs();
        set(&[a_ip, b_ip, c_ip]).is_subset(&peers).then_some(())
    });
    assert!(
        found.is_some(),
        "the latecomer meets the others: {:?}",
        d.peers()
    );
    let found = support::poll(Duration::from_secs(15), || {
        b.peer_addrs().contains(&d_ip).then_some(())
    });
    assert!(found.is_some(), "B meets the latecomer: {:?}", b.peers());
}

#[test]
fn the_history_survives_sigterm_and_sigkill() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    let mut a = net.node(1, &[]);
    for text in ["one", "two", "three"] {
        a.chat(text);
    }
    a.expect_line(|l| l.starts_with("#2 three (mined: "), SPREAD, "mining");
    let mut want = a.hist();
    assert_eq!(want, ["one", "two", "three"]);
    // Served once on disk (a moment after the "mined" line).
    net.wait_serves(99, 1, 3);
    let before = net.archive(100, 1);

    // A clean stop.
    let status = a.sigterm();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let data = a.data_dir().display().to_string();
    assert!(
        a.stdout()
            .contains(&format!("stopped; the history is saved in {data}")),
        "{:?}",
        a.stdout()
    );
    a.restart_with(&[]);
    assert_eq!(
        a.banner,
        format!(
            "listening on {}:{}; 3 chats in the history, 0 pending; data in {data}",
            net.addr(1),
            net.port()
        )
    );
    // Before anyone connects (nobody knows this node, it knows nobody).
    let status = a.status();
    assert_eq!(status["peers"], 0, "{status}");
    assert_eq!(a.hist(), want);
    assert_eq!(net.archive(101, 1), before, "the same history as before");

    // A crash: kill -9 after a chat was mined and written (the store
    // thread writes the history off the event loop, shortly after).
    a.chat("four");
    a.expect_line(|l| l.starts_with("#3 four (mined: "), SPREAD, "mining");
    want.push("four".into());
    let written = support::poll(WAIT, || (a.status()["stored"] == 4).then_some(()));
    assert!(written.is_some(), "{}", a.status());
    let status = a.sigkill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    a.restart();
    assert!(
        a.banner.contains("; 4 chats in the history, 0 pending;"),
        "{}",
        a.banner
    );
    let status = a.status();
    assert_eq!(status["peers"], 0, "{status}");
    assert_eq!(a.hist(), want);

    // kill -9 right after a chat is acknowledged: it is pending or mined,
    // never lost and never doubled, after the restart.
    a.chat("five");
    a.sigkill();
    a.restart();
    want.push("five".into());
    let hist = a.wait_hist(SPREAD, |h| h.len() >= want.len());
    assert_eq!(hist, want, "banner: {}", a.banner);
    // Nothing more is mined later.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(a.hist(), want);
    let status = a.status();
    assert_eq!(status["pending"], 0, "{status}");
}

#[test]
fn the_protocol_vector_is_adopted_and_served_back_byte_for_byte() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let (bytes, _) = vector();
    let mut a = net.node(1, &[]);
    let mut peer = net.peer(100, 1);
    peer.send_raw(&bytes);
    a.expect_line(|l| l == "#4 nova msg", SPREAD, "adopting the vector");
    assert_eq!(a.hist(), VECTOR_TEXTS);
    let status = a.status();
    assert_eq!(
        (&status["history"], &status["last"]),
        (&5.into(), &"nova msg".into()),
        "{status}"
    );

    // The same connection asks for it back.
    peer.drain(Duration::from_millis(300));
    assert!(!peer.is_closed(), "the node closed the connection");
    peer.send(&Message::ArchiveRequest);
    let (history, raw) = peer
        .recv_archive(WAIT)
        .expect("an answer to ArchiveRequest");
    assert_eq!(raw, bytes, "the answer is the vector, byte for byte");
    assert_eq!(texts(&history), VECTOR_TEXTS);

    // And a new client gets it too.
    let mut other = net.peer(101, 1);
    other.send(&Message::ArchiveRequest);
    let (_, raw) = other.recv_archive(WAIT).expect("an answer");
    assert_eq!(raw, bytes);
}

#[test]
fn an_archive_pushed_on_a_short_lived_connection_is_adopted() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 4);
    let (bytes, _) = vector();
    let mut a = net.node(1, &[]);
    {
        let mut peer = net.peer(100, 1);
        peer.send_raw(&bytes);
        // Dropped: closed right after the message.
    }
    a.expect_line(|l| l == "#4 nova msg", SPREAD, "adopting the vector");
    assert_eq!(a.hist(), VECTOR_TEXTS);
    assert_eq!(net.archive(101, 1), vector().1);

    // The same with 7.6 MB, which arrives over many reads: the client never
    // reads what the node says, and its close must not cost the archive.
    let large = fixture_bytes("history-100k.bin");
    {
        let mut peer = net.peer(102, 1);
        peer.send_raw(&large);
    }
    a.expect_line(
        |l| l.starts_with("#99999 "),
        SPREAD,
        "adopting the 100k history",
    );
    assert_eq!(net.archive(103, 1).len(), 100_000);
}

#[test]
fn a_history_that_is_not_longer_or_not_valid_is_ignored_and_the_connection_kept() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let (bytes, history) = vector();
    let mut a = net.node(1, &[]);
    a.chat("mine 1");
    a.chat("mine 2");
    a.expect_line(|l| l.starts_with("#1 mine 2 (mined: "), SPREAD, "mining");
    net.wait_serves(99, 1, 2);

    // A corrupted copy of the vector: longer, but its chat 4 is invalid.
    let mut bad = bytes.clone();
    let at = bad.windows(8).position(|w| w == b"nova msg").unwrap();
    bad[at] = b'N';
    let mut peer = net.peer(100, 1);
    peer.send_raw(&bad);
    // A valid but shorter one: the first chat of the vector.
    let mut short = history.clone();
    short.truncate(1);
    peer.send(&Message::ArchiveResponse(short));
    peer.send(&Message::ArchiveRequest);
    let (got, _) = peer.recv_archive(WAIT).expect("the node still answers");
    assert_eq!(texts(&got), ["mine 1", "mine 2"]);
    assert_eq!(a.hist(), ["mine 1", "mine 2"]);
    assert!(!peer.is_closed());

    // The valid vector, longer, still replaces it on the same connection,
    // and the displaced own chats are mined again on top.
    peer.send_raw(&bytes);
    a.expect_line(
        |l| l.starts_with("#6 mine 2 (mined: "),
        SPREAD,
        "mining the displaced chats again",
    );
    let mut want: Vec<String> = VECTOR_TEXTS.iter().map(|s| s.to_string()).collect();
    want.extend(["mine 1".to_string(), "mine 2".to_string()]);
    assert_eq!(a.hist(), want);
    assert!(
        a.stdout().iter().any(|l| l
            == "2 chats from #0 on replaced by a longer history; 2 of yours will be mined again"),
        "{:?}",
        a.stdout()
    );
}

#[test]
fn a_refused_chat_prints_why_and_the_node_goes_on() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 6);
    let mut a = net.node(1, &[]);
    let cases: [(&[u8], &str); 5] = [
        (b"chat", "chat refused: the text is empty"),
        (b"chat    ", "chat refused: the text is empty"),
        (
            "chat caf\u{e9}".as_bytes(),
            "chat refused: character 4, '\u{e9}' (U+00E9), is not ASCII",
        ),
        (
            b"chat a\x07b",
            "chat refused: character 2 is a control character (0x07)",
        ),
        (
            b"chat \xff",
            "chat refused: byte 1 (0xff) is not text (not UTF-8)",
        ),
    ];
    for (line, why) in cases {
        a.send_bytes(line);
        let got = a.expect_line(|_| true, WAIT, "answering a refused chat");
        assert!(got.starts_with(why), "{line:?}: {got}");
    }
    let long = format!("chat {}", "a".repeat(256));
    a.send(&long);
    let got = a.expect_line(|_| true, WAIT, "answering a 256-byte chat");
    assert!(
        got.starts_with("chat refused: the text is 256 bytes, the most is 255"),
        "{got}"
    );
    let status = a.status();
    assert_eq!(
        (&status["history"], &status["last"], &status["pending"]),
        (&0.into(), &serde_json::Value::Null, &0.into()),
        "{status}"
    );

    // The node goes on: 255 bytes is fine, and is mined.
    let max = "z".repeat(255);
    a.chat(&max);
    let hist = a.wait_hist(SPREAD, |h| !h.is_empty());
    assert_eq!(hist, [max]);
    assert!(a.wait_exit(Duration::ZERO).is_none(), "the node is running");
}

#[test]
fn bad_flags_exit_2_with_clap_s_message() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 7);
    let port = net.port().to_string();
    let bind = net.addr(1).to_string();
    // Every case names a loopback address and this test's port, so that a
    // node that wrongly starts stays inside this test's range.
    let cases: [(&[&str], &str); 13] = [
        (
            &["--bind", &bind, "--port", &port, "--max-buffered", "1KiB"],
            "--max-buffered (1024 bytes) is below --max-message (67108864 bytes)",
        ),
        (
            &["--bind", &bind, "--port", "65536"],
            "invalid value '65536' for '--port <PORT>'",
        ),
        (
            &["--port", &port, "--bind", "1.2.3"],
            "invalid value '1.2.3' for '--bind <IP>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--peer", "1.2.3"],
            "invalid value '1.2.3' for '--peer <HOST>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--threads", "0"],
            "invalid value '0' for '--threads <N>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--no-such-flag"],
            "unexpected argument '--no-such-flag'",
        ),
        (
            &["--bind", &bind, "--port", "0"],
            "invalid value '0' for '--port <PORT>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--read-timeout", "1e30"],
            "invalid value '1e30' for '--read-timeout <SECS>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--read-timeout", "0"],
            "invalid value '0' for '--read-timeout <SECS>'",
        ),
        (
            &["--bind", &bind, "--port", &port, "--max-message", "0"],
            "invalid value '0' for '--max-message <SIZE>'",
        ),
        (
            &[
                "--bind",
                &bind,
                "--port",
                &port,
                "--max-message",
                "64 parsecs",
            ],
            "not a unit of size",
        ),
        (
            &["--bind", &bind, "--port", &port, "--threads", "100000"],
            "invalid value '100000' for '--threads <N>'",
        ),
        // The original Python program took the peer as an argument.
        (
            &["--bind", &bind, "--port", &port, "127.1.7.2"],
            "did you mean --peer 127.1.7.2?",
        ),
    ];
    for (args, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").display().to_string();
        let args: Vec<&str> = args.iter().copied().chain(["--data-dir", &data]).collect();
        let out = run_to_exit(&args, WAIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(err.contains("try '--help'"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            !dir.path().join("data").exists(),
            "{args:?} made a data dir"
        );
    }
}

#[test]
fn a_port_in_use_exits_1_with_one_clear_line() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 8);
    let addr = net.addr(1);
    let _taken = TcpListener::bind((addr, net.port())).expect("binding the port first");
    let dir = tempfile::tempdir().unwrap();
    let err = fails_to_start(addr, net.port(), dir.path());
    assert!(
        err.contains(&format!("cannot listen on {addr}:{}", net.port())) && err.contains("in use"),
        "{err}"
    );
}

/// Starts a node that must not start: it exits 1 with one line on stderr
/// (returned) and never says it is listening.
fn fails_to_start(addr: std::net::Ipv4Addr, port: u16, data_dir: &std::path::Path) -> String {
    let out = run_to_exit(
        [
            "--bind",
            &addr.to_string(),
            "--port",
            &port.to_string(),
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        WAIT,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening on"), "{stdout:?}");
    err
}

#[test]
fn a_data_directory_in_use_exits_1() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let a = net.node(1, &[]);
    let err = fails_to_start(net.addr(2), net.port(), &a.data_dir());
    assert!(err.contains("is in use by another node"), "{err}");
    // The peer on the wire is unaffected.
    assert_eq!(net.archive(100, 1).len(), 0);
    let _ = Peer::try_connect(net.addr(101), net.addr(2), net.port())
        .expect_err("nothing listens on the second address");
}

/// Commands piped in, as a script feeds them: answered in order, a line
/// too long to be a command skipped, and nothing read after `quit` (the end
/// of the input is not announced).
#[test]
fn piped_commands_are_answered_in_order_and_quit_ends_the_input() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 13);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = run_with_input(
        [
            "--bind",
            &net.addr(1).to_string(),
            "--port",
            &net.port().to_string(),
            "--data-dir",
            &dir.path().display().to_string(),
            "--threads",
            "1",
        ],
        &[
            &b"help hist\n/bogus\n"[..],
            // A line that goes on and on: skipped, not held.
            &vec![b'x'; 1 << 20],
            b"\nquit\nchat after quit\n",
        ]
        .concat(),
        WAIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}: {stdout}"))
    };
    assert!(at("/hist [N]") < at("unknown command"), "{stdout}");
    assert!(
        at("unknown command") < at("a line longer than 4096 bytes; skipped"),
        "{stdout}"
    );
    assert!(
        at("unknown command") < at("stopped; the history is saved"),
        "{stdout}"
    );
    assert!(!stdout.contains("input closed"), "{stdout}");
    // The chat after quit was never read: nothing pending, nothing mined.
    let status = run_to_exit(
        ["status", "--data-dir", &dir.path().display().to_string()],
        WAIT,
    );
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("pending:   0 chats"), "{status}");
}

/// Under a file-size limit (`ulimit -f`, set here on the running node), the
/// write that crosses it fails: the chat is answered `not_saved` (mined all
/// the same) and the node goes on; it is not killed by SIGXFSZ.
#[test]
fn a_file_size_limit_fails_a_save_and_the_node_goes_on() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 14);
    let mut node = net.node(1, &[]);
    node.chat("before the limit");
    let limit = libc::rlimit {
        rlim_cur: 2048,
        rlim_max: 2048,
    };
    let pid = node.pid().expect("running") as libc::pid_t;
    // SAFETY: prlimit(2) on our own child, with a valid rlimit.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut replies = Vec::new();
    for i in 0..100 {
        let reply = node.ask(&serde_json::json!({"command": "chat", "text": format!("chat {i}")}));
        let saved = reply["reply"] == "saved";
        replies.push(reply);
        if !saved {
            break;
        }
    }
    let last = replies.last().expect("a reply");
    assert_eq!(last["reply"], "not_saved", "{replies:?}");
    assert!(
        node.wait_exit(Duration::from_millis(300)).is_none(),
        "the node stopped"
    );
    assert_eq!(node.status()["reply"], "status");
}

#[test]
fn without_stdin_the_node_runs_until_sigint_and_quit_stops_it() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 10);
    let (bytes, history) = vector();
    let mut a = net.node(1, &[]);
    a.close_stdin();
    a.expect_line(
        |l| l.starts_with("input closed: the node keeps running"),
        WAIT,
        "noticing the end of input",
    );
    // Still a peer: it adopts and serves histories.
    net.peer(100, 1).send_raw(&bytes);
    a.expect_line(|l| l == "#4 nova msg", SPREAD, "adopting the vector");
    assert_eq!(net.archive(101, 1), history);
    assert!(
        a.wait_exit(Duration::from_millis(300)).is_none(),
        "still running"
    );

    a.signal(libc::SIGINT);
    let status = a.wait_exit(WAIT).expect("SIGINT stops the node");
    assert!(status.success(), "{status:?}");
    a.expect_line(
        |l| l.starts_with("stopped; the history is saved in "),
        WAIT,
        "saying where the history is",
    );
    a.restart();
    assert!(
        a.banner.contains("; 5 chats in the history, 0 pending;"),
        "{}",
        a.banner
    );

    // `quit` at the prompt.
    a.send("quit");
    let status = a.wait_exit(WAIT).expect("quit stops the node");
    assert!(status.success(), "{status:?}");
    assert!(
        a.stdout()
            .last()
            .is_some_and(|l| l.starts_with("stopped; ")),
        "{:?}",
        a.stdout()
    );
}

#[test]
fn a_peer_list_with_our_own_address_and_duplicates_connects_once_to_each_other_node() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 11);
    let mut a = net.node(1, &["--peer", &net.addr(1).to_string()]);
    let mut b = net.node(2, &[]);
    let mut peer = net.peer(100, 1);
    let list = vec![
        net.addr(1),
        net.addr(2),
        net.addr(2),
        net.addr(100),
        net.addr(1),
    ];
    peer.send(&Message::PeerList(list));
    let found = support::poll(WAIT, || {
        let peers = a.peers();
        peers
            .iter()
            .any(|(addr, _)| *addr == net.addr(2))
            .then_some(peers)
    });
    let peers = found.unwrap_or_else(|| panic!("A never connects to B: {:?}", a.peers()));
    // Give a second dial the time to happen, then look again.
    thread::sleep(Duration::from_millis(500));
    let peers_later = a.peers();
    for peers in [&peers, &peers_later] {
        let to_b = peers
            .iter()
            .filter(|(addr, dir)| *addr == net.addr(2) && !dir.ends_with('*'));
        assert_eq!(to_b.count(), 1, "one connection with B: {peers:?}");
        assert!(
            !peers.iter().any(|(addr, _)| *addr == net.addr(1)),
            "A is connected to itself: {peers:?}"
        );
    }
    assert!(b.peer_addrs().contains(&net.addr(1)), "{:?}", b.peers());
    assert!(!peer.is_closed());
}

/// A bootstrap peer nobody answers at: said once at the default log level,
/// with when it is tried again; `peers` lists it among the addresses still
/// tried; a `--peer` that is the node's own address is said and not
/// dialed; a limit that refuses a message is said with the flag that
/// raises it.
#[test]
fn what_is_wrong_is_said_once_at_the_default_level() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 12);
    let absent = net.addr(50);
    let own = net.addr(1).to_string();
    let mut node = net.node(
        1,
        &[
            "--peer",
            &own,
            "--peer",
            &own,
            "--peer",
            &absent.to_string(),
            "--log",
            "warn",
            "--max-message",
            "4KiB",
        ],
    );
    let said = |node: &support::Node| {
        node.log_tail()
            .lines()
            .filter(|l| l.contains(&format!("cannot reach bootstrap peer {absent}")))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Tried at 0 s, then after 1-1.5 s, 2-3 s: three failures in 5 s.
    thread::sleep(Duration::from_secs(5));
    let lines = said(&node);
    assert_eq!(lines.len(), 1, "{}", node.log_tail());
    assert!(lines[0].contains("trying again in "), "{}", lines[0]);
    let peers = node.ask(&serde_json::json!({"command": "peers"}));
    let row = peers["dialing"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["addr"] == absent.to_string()))
        .unwrap_or_else(|| panic!("{absent} not among the addresses tried: {peers}"));
    assert!(row["failures"].as_u64() >= Some(2), "{row}");
    let itself = format!("--peer {own} is this node's own address (--bind): not dialed");
    // Given twice, said once.
    assert_eq!(
        node.stderr().matches(&itself).count(),
        1,
        "{}",
        node.log_tail()
    );
    assert_eq!(
        peers["dialing"].as_array().map(Vec::len),
        Some(1),
        "{peers}"
    );

    // A PeerList of 2,000 addresses (8,005 bytes) over --max-message 4KiB.
    let mut peer = net.peer(100, 1);
    peer.send(&Message::PeerList(vec![net.addr(60); 2000]));
    assert!(
        support::poll(WAIT, || node
            .stderr()
            .contains("raise --max-message to take larger ones")
            .then_some(()))
        .is_some(),
        "{}",
        node.log_tail()
    );
    assert_eq!(node.closed("undecodable"), 1);
}
