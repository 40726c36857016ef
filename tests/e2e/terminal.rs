//! The node as a person sees it: the real `node` binary in a
//! pseudo-terminal (`support::pty`), with its line editor, checked on what
//! the terminal shows (rendered by a terminal emulator, scrollback
//! included) and on the terminal's mode before start and after exit. Each
//! test on its own `127.5.T.x` addresses and port (see `support`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use tempfile::TempDir;

use crate::support::pty::{PtyNode, Screen, keys, typed};
use crate::support::{Net, WAIT, fixture_bytes, poll, shared_cpu, spawn_piped, temp_dir, texts};
use wire::History;

/// This module's id in the address plan of `support`.
const FILE: u8 = 5;

/// The line of a clean stop.
fn stopped_line(dir: &TempDir) -> String {
    format!("stopped; the history is saved in {}", dir.path().display())
}

// ---------------------------------------------------------------------
// The terminal's mode.

/// Flags of a termios field, by name, for the messages.
const IFLAGS: [(libc::tcflag_t, &str); 11] = [
    (libc::BRKINT, "BRKINT"),
    (libc::ICRNL, "ICRNL"),
    (libc::IGNCR, "IGNCR"),
    (libc::INLCR, "INLCR"),
    (libc::INPCK, "INPCK"),
    (libc::ISTRIP, "ISTRIP"),
    (libc::IXON, "IXON"),
    (libc::IXOFF, "IXOFF"),
    (libc::IXANY, "IXANY"),
    (libc::IMAXBEL, "IMAXBEL"),
    (libc::IUTF8, "IUTF8"),
];
const OFLAGS: [(libc::tcflag_t, &str); 5] = [
    (libc::OPOST, "OPOST"),
    (libc::ONLCR, "ONLCR"),
    (libc::OCRNL, "OCRNL"),
    (libc::ONOCR, "ONOCR"),
    (libc::ONLRET, "ONLRET"),
];
const LFLAGS: [(libc::tcflag_t, &str); 11] = [
    (libc::ECHO, "ECHO"),
    (libc::ECHOE, "ECHOE"),
    (libc::ECHOK, "ECHOK"),
    (libc::ECHONL, "ECHONL"),
    (libc::ECHOCTL, "ECHOCTL"),
    (libc::ECHOKE, "ECHOKE"),
    (libc::ICANON, "ICANON"),
    (libc::ISIG, "ISIG"),
    (libc::IEXTEN, "IEXTEN"),
    (libc::NOFLSH, "NOFLSH"),
    (libc::TOSTOP, "TOSTOP"),
];

/// The whole of a mode that a program can change.
fn mode_fields(
    m: &libc::termios,
) -> (
    [libc::tcflag_t; 4],
    [libc::cc_t; libc::NCCS],
    libc::speed_t,
    libc::speed_t,
) {
    (
        [m.c_iflag, m.c_oflag, m.c_cflag, m.c_lflag],
        m.c_cc,
        m.c_ispeed,
        m.c_ospeed,
    )
}

/// What differs between two modes, in flag names.
fn mode_diff(before: &libc::termios, after: &libc::termios) -> String {
    let mut out = Vec::new();
    for (field, a, b, names) in [
        ("iflag", before.c_iflag, after.c_iflag, &IFLAGS[..]),
        ("oflag", before.c_oflag, after.c_oflag, &OFLAGS[..]),
        ("lflag", before.c_lflag, after.c_lflag, &LFLAGS[..]),
        ("cflag", before.c_cflag, after.c_cflag, &[][..]),
    ] {
        if a == b {
            continue;
        }
        let named = |bits: libc::tcflag_t| -> Vec<&str> {
            names
                .iter()
                .filter(|(flag, _)| bits & flag != 0)
                .map(|(_, name)| *name)
                .collect()
        };
        out.push(format!(
            "{field} {a:#o} -> {b:#o} (lost {:?}, gained {:?})",
            named(a & !b),
            named(b & !a)
        ));
    }
    if before.c_cc != after.c_cc {
        out.push(format!("c_cc {:?} -> {:?}", before.c_cc, after.c_cc));
    }
    if (before.c_ispeed, before.c_ospeed) != (after.c_ispeed, after.c_ospeed) {
        out.push("speeds differ".to_string());
    }
    out.join("; ")
}

/// Whether the line editor holds the terminal (raw: no echo, no line
/// discipline).
fn is_raw(mode: &libc::termios) -> bool {
    mode.c_lflag & (libc::ECHO | libc::ICANON) == 0
}

/// Waits until the line editor reads keys (the terminal in raw mode).
fn wait_editing(node: &PtyNode) {
    let raw = poll(WAIT, || is_raw(&node.mode()).then_some(()));
    assert!(
        raw.is_some(),
        "node {}: the terminal never went to raw mode; the screen:\n{}",
        node.addr,
        node.screen()
    );
}

/// The terminal's mode now is the one the node found at start.
fn assert_mode_restored(node: &PtyNode, after: &str) {
    let now = node.mode();
    assert!(
        mode_fields(&now) == mode_fields(&node.mode_at_start),
        "node {}: the terminal is not as it was found after {after}: {}",
        node.addr,
        mode_diff(&node.mode_at_start, &now)
    );
}

/// The node's output leaves no terminal mode on that it turned on
/// (bracketed paste, a synchronized update begun and not ended, a hidden
/// cursor).
fn assert_private_modes_reset(node: &PtyNode, after: &str) {
    let left = node.private_modes_left();
    assert!(
        left.is_empty(),
        "node {}: after {after} the terminal is left with modes {left:?}; its last bytes: {}",
        node.addr,
        tail(&node.raw())
    );
}

/// The last bytes of a terminal's output, escaped.
fn tail(raw: &[u8]) -> String {
    raw[raw.len().saturating_sub(300)..]
        .escape_ascii()
        .to_string()
}

fn assert_exited(status: WaitStatus, code: i32, node: &PtyNode, after: &str) {
    assert!(
        matches!(status, WaitStatus::Exited(_, c) if c == code),
        "node {}: {status:?} after {after}, not exit status {code}; the screen:\n{}",
        node.addr,
        node.screen()
    );
}

// ---------------------------------------------------------------------
// 1. The room: each chat once, in the order it ended up in; who is here;
//    the backlog; text as people write it.

/// The text of a room line (`HH:MM TEXT`): the local time it was shown,
/// then the text; `None` for other lines.
fn stamped(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let time = b.len() > 6
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[3..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' ';
    time.then(|| &line[6..])
}

/// A chat of the room without what it says of this node's mining
/// (` (mined here: ...)`, ` (mined here)`).
fn chat_text(text: &str) -> &str {
    text.find(" (mined here").map_or(text, |at| &text[..at])
}

/// The texts of `typed` that a screen shows as chats, in screen order
/// (each as often as it is shown).
fn chats_shown(screen: &Screen, typed: &[String]) -> Vec<String> {
    screen
        .lines
        .iter()
        .filter_map(|l| stamped(l))
        .map(chat_text)
        .filter(|t| typed.iter().any(|x| x == t))
        .map(String::from)
        .collect()
}

#[test]
fn reading_a_room_line_drops_the_time_and_the_mining_figures() {
    assert_eq!(stamped("12:05 hello there"), Some("hello there"));
    assert_eq!(stamped("> hello"), None);
    assert_eq!(stamped("-- the last 3"), None);
    assert_eq!(
        chat_text("hi (mined here: 65536 tries in 0.3 ms, 210.0 MH/s)"),
        "hi"
    );
    assert_eq!(chat_text("hi (mined here)"), "hi");
}

/// The `peers:` count of a fresh `/status` typed at the prompt.
fn peer_count(node: &mut PtyNode) -> usize {
    let count = |screen: &Screen| {
        screen
            .lines
            .iter()
            .filter(|l| l.starts_with("peers:"))
            .count()
    };
    let before = count(&node.screen());
    node.type_line("/status");
    node.wait_screen(WAIT, "the answer to '/status'", |screen| {
        if count(screen) <= before {
            return None;
        }
        let line = screen.lines.iter().rfind(|l| l.starts_with("peers:"))?;
        line["peers:".len()..].trim().parse().ok()
    })
}

/// Three nodes, lines typed on the three terminals at the same moment (in
/// rounds, then a burst of five lines pasted on each): the lines are sent
/// as chats (no `chat` word), the three mine on the same history at once,
/// and every screen shows every chat once, in the order of the final
/// history. Each screen also said its peers joining, and its prompt says
/// the peers and the history's length.
#[test]
fn three_nodes_chatting_at_once_show_each_chat_once_in_final_order() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let port = net.port();
    let dirs = [
        temp_dir("node-pty-"),
        temp_dir("node-pty-"),
        temp_dir("node-pty-"),
    ];
    // A chain: 3 knows 2, 2 knows 1; they mesh through their PeerLists.
    let a = PtyNode::start(net.addr(1), port, dirs[0].path(), &[]);
    let b_peer = net.addr(1).to_string();
    let b = PtyNode::start(net.addr(2), port, dirs[1].path(), &["--peer", &b_peer]);
    let c_peer = net.addr(2).to_string();
    let c = PtyNode::start(net.addr(3), port, dirs[2].path(), &["--peer", &c_peer]);
    let mut nodes = [a, b, c];
    for node in &mut nodes {
        let meshed = poll(Duration::from_secs(20), || {
            let n = peer_count(node);
            if n == 2 {
                return Some(());
            }
            thread::sleep(Duration::from_millis(200));
            None
        });
        assert!(meshed.is_some(), "node {} never had 2 peers", node.addr);
    }
    for (at, node) in nodes.iter().enumerate() {
        let screen = node.screen();
        for other in (1..=3).filter(|&h| h != at as u8 + 1) {
            let joined = format!("{} joined (", net.addr(other));
            assert!(
                screen
                    .lines
                    .iter()
                    .any(|l| stamped(l).is_some_and(|t| t.starts_with(&joined))),
                "node {}: no line saying {} joined\n{screen}",
                node.addr,
                net.addr(other)
            );
        }
    }

    // Every node's history over the wire once all three agree and hold
    // every chat typed, each once.
    let agreed = |typed: &[String]| -> Option<Vec<String>> {
        let histories: Vec<Vec<String>> = (1..=3).map(|h| texts(&net.archive(100, h))).collect();
        let mut sorted = histories[0].clone();
        sorted.sort();
        let mut want = typed.to_vec();
        want.sort();
        (histories.iter().all(|h| *h == histories[0]) && sorted == want)
            .then(|| histories[0].clone())
    };
    let settle = |typed: &[String]| -> Vec<String> {
        match poll(Duration::from_secs(60), || agreed(typed)) {
            Some(history) => history,
            None => {
                let histories: Vec<Vec<String>> =
                    (1..=3).map(|h| texts(&net.archive(100, h))).collect();
                panic!("no agreement on {typed:?} within 60 s: {histories:#?}")
            }
        }
    };

    // Four rounds, each a line typed on the three terminals back to back;
    // the first two wait for the network to agree, the last two follow
    // each other. Then a burst: five lines pasted on each terminal at once.
    let mut typed = Vec::new();
    for round in 1..=4 {
        for node in &nodes {
            wait_editing(node);
        }
        for (at, node) in nodes.iter_mut().enumerate() {
            let text = format!("round {round} from node {}", at + 1);
            node.type_line(&text);
            typed.push(text);
        }
        if round <= 2 {
            settle(&typed);
        }
    }
    for node in &nodes {
        wait_editing(node);
    }
    for (at, node) in nodes.iter_mut().enumerate() {
        let burst: Vec<String> = (1..=5)
            .map(|n| format!("burst {n} from node {}", at + 1))
            .collect();
        node.send(format!("{}\r", burst.join("\r")).as_bytes());
        typed.extend(burst);
    }
    let history = settle(&typed);

    for node in &mut nodes {
        let shown = poll(WAIT, || {
            (chats_shown(&node.screen(), &typed) == history).then_some(())
        });
        let screen = node.screen();
        assert!(
            shown.is_some(),
            "node {}: the screen does not show each chat once, in the final order\n\
             shown:   {:?}\nhistory: {history:?}\nscreen:\n{screen}",
            node.addr,
            chats_shown(&screen, &typed),
        );
        let own = screen
            .lines
            .iter()
            .filter(|l| l.contains(" (mined here"))
            .count();
        assert!(
            own <= 9,
            "node {}: {own} lines of its own chats, 9 typed\n{screen}",
            node.addr
        );
        // The prompt, drawn again after a line, says the peers and chats.
        assert_eq!(peer_count(node), 2);
        let prompt = format!("[peers 2, chats {}, pending 0]", history.len());
        node.wait_screen(WAIT, "the status on the prompt", |s| {
            s.cursor_line().starts_with(&prompt).then_some(())
        });
        assert!(
            !screen.lines.iter().any(|l| l.contains("unknown command")
                || l.starts_with("saved (")
                || l.contains("replaced by")),
            "node {}:\n{screen}",
            node.addr
        );
        eprintln!(
            "=== the screen of node {} after the burst:\n{screen}",
            node.addr
        );
    }
    // One leaves: the others say so.
    nodes[2].type_line("/quit");
    let status = nodes[2].expect_exit("/quit");
    assert_exited(status, 0, &nodes[2], "/quit");
    let left = format!("{} left (1 peer connected)", net.addr(3));
    for node in &nodes[..2] {
        // The test's own archive requests use up the rate of join and
        // leave lines: the line may end with how many were left out.
        node.wait_line("the line saying node 3 left", |l| {
            stamped(l).is_some_and(|t| t.starts_with(&left))
        });
    }
    for node in &mut nodes[..2] {
        node.type_line("quit");
        let status = node.expect_exit("quit");
        assert_exited(status, 0, node, "quit");
    }
}

/// Texts as a terminal shows them: a backslash doubled (the fixtures are
/// printable ASCII), trailing blanks gone.
fn shown(texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .map(|t| t.replace('\\', "\\\\").trim_end().to_string())
        .collect()
}

/// A history arriving all at once: the room sums it up in one line and
/// shows the last 40; a line typed with no peer says that it waits for
/// one; at the next start, the last 10 chats are the backlog, said as such.
#[test]
fn a_big_catch_up_is_summed_up_and_the_backlog_shown_at_the_next_start() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 18);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    let big = fixture_bytes("history-1k.bin");
    let history = texts(&wire::decode_archive(&big).expect("the fixture decodes"));
    {
        let mut peer = net.peer(100, 1);
        peer.send_raw(&big);
        let last = history.last().expect("a chat").clone();
        let last = shown(&[last]).remove(0);
        node.wait_line("the fixture's last chat", |l| stamped(l) == Some(&last));
    }
    let screen = node.screen();
    let summed = screen
        .position(|l| {
            stamped(l).is_some_and(|t| t == "received chats #0 to #959 (see 'hist'); then:")
        })
        .unwrap_or_else(|| panic!("no summing-up line:\n{screen}"));
    let one_by_one: Vec<&str> = screen.lines[summed + 1..]
        .iter()
        .filter_map(|l| stamped(l))
        .filter(|t| !t.contains(" joined (") && !t.contains(" left ("))
        .collect();
    assert_eq!(one_by_one, shown(&history[960..]), "{screen}");
    // The visitor left; a chat now waits for a peer, and says so.
    node.wait_line("the visitor leaving", |l| {
        stamped(l).is_some_and(|t| t.contains(" left (0 peers connected)"))
    });
    wait_editing(&node);
    node.type_line("mined on top of a thousand");
    node.wait_line("the notice that no peer is connected", |l| {
        l.starts_with("no peer is connected: the chat is mined here and waits for one")
    });
    node.wait_line("our chat, mined", |l| {
        stamped(l).is_some_and(|t| t.starts_with("mined on top of a thousand (mined here: "))
    });
    wait_editing(&node);
    node.type_line("/quit");
    let status = node.expect_exit("/quit");
    assert_exited(status, 0, &node, "/quit");
    drop(node);

    let node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    let screen = node.screen();
    let at = screen
        .position(|l| {
            l.starts_with("-- the last 10 of 1001 chats in the history ('hist N' shows more")
        })
        .unwrap_or_else(|| panic!("no backlog line:\n{screen}"));
    let mut want: Vec<String> = shown(&history[991..])
        .iter()
        .map(|t| format!("      {t}").trim_end().to_string())
        .collect();
    want.push("      mined on top of a thousand".into());
    assert_eq!(screen.lines[at + 1..at + 11], want, "{screen}");
    assert!(
        screen
            .cursor_line()
            .starts_with("[peers 0, chats 1001, pending 0]"),
        "{screen}"
    );
}

/// Chats are shown as people wrote them: valid UTF-8 as such, at the
/// prompt and in `hist`; invisible and control characters escaped. A chat
/// typed with 'é' is refused, naming the character.
#[test]
fn utf8_chats_are_shown_as_written_and_a_typed_one_is_refused_by_its_character() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 20);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    let miner = miner::Miner::new(1);
    let mut history = History::new();
    for text in ["caf\u{e9} \u{2615}", "zero\u{200b}width", "bell\u{7}"] {
        let chat = miner.mine_next(&history, text.as_bytes());
        history.push(&chat);
    }
    let mut peer = net.peer(100, 1);
    peer.send(&wire::Message::ArchiveResponse(history));
    let shown = ["caf\u{e9} \u{2615}", r"zero\xe2\x80\x8bwidth", r"bell\x07"];
    node.wait_line("the last chat", |l| stamped(l) == Some(shown[2]));
    // The status on the prompt follows, with nothing typed.
    node.wait_screen(WAIT, "the prompt's status of now", |s| {
        s.cursor_line()
            .starts_with("[peers 1, chats 3, pending 0]")
            .then_some(())
    });
    let screen = node.screen();
    for text in shown {
        assert!(
            screen.lines.iter().any(|l| stamped(l) == Some(text)),
            "{text:?} not shown:\n{screen}"
        );
    }
    wait_editing(&node);
    node.type_line("/hist");
    node.wait_line("'hist' showing UTF-8", |l| l == "#0 caf\u{e9} \u{2615}");
    wait_editing(&node);
    node.type_line("caf\u{e9}");
    node.wait_line("the refusal naming the character", |l| {
        l == "chat refused: character 4, '\u{e9}' (U+00E9), is not ASCII; the network's \
              chats are printable ASCII only"
    });
}

// ---------------------------------------------------------------------
// 2. The terminal is left as it was found, on every way out.

/// How a node is stopped.
#[derive(Debug, Clone, Copy)]
enum WayOut {
    /// A line typed at the prompt (`quit`, `exit`).
    Typed(&'static str),
    /// Keys pressed on an empty line (Ctrl-C, Ctrl-D).
    Keys(&'static [u8]),
    /// A signal sent to the node's PID while a line is half typed.
    Signal(libc::c_int),
}

/// Starts a node, stops it `way`, and checks the exit status (0), the
/// stop line, and the terminal: raw while the editor read, as found once
/// the node is gone, the cursor at the start of a clean line.
fn leaves_the_terminal_as_found(test: u8, way: WayOut) {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, test);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    let found = node.mode_at_start;
    assert!(
        found.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG)
            == libc::ECHO | libc::ICANON | libc::ISIG,
        "the pty does not start as a terminal window does: {found:?}"
    );
    // The editor changes the mode: this test would see it left behind.
    wait_editing(&node);
    match way {
        WayOut::Typed(line) => node.type_line(line),
        WayOut::Keys(keys) => node.send(keys),
        WayOut::Signal(signal) => {
            node.send(b"chat never sent");
            node.wait_screen(WAIT, "the half-typed line", |s| {
                (s.editing() == Some("chat never sent")).then_some(())
            });
            node.signal(signal);
        }
    }
    let after = format!("{way:?}");
    let status = node.expect_exit(&after);
    // Every way in which the terminal is not left as found, at once.
    let mut wrong = Vec::new();
    if !matches!(status, WaitStatus::Exited(_, 0)) {
        wrong.push(format!("{status:?}, not exit status 0"));
    }
    let now = node.mode();
    if mode_fields(&now) != mode_fields(&node.mode_at_start) {
        wrong.push(format!(
            "termios not as found: {}",
            mode_diff(&node.mode_at_start, &now)
        ));
    }
    let left = node.private_modes_left();
    if !left.is_empty() {
        wrong.push(format!("terminal modes left on: {left:?}"));
    }
    let screen = node.screen();
    if !screen.has_line(&stopped_line(&dir)) {
        wrong.push(format!("no line {:?}", stopped_line(&dir)));
    }
    if screen
        .lines
        .iter()
        .any(|l| l.contains("never sent") && typed(l).is_none())
    {
        wrong.push("the half-typed line was sent".to_string());
    }
    if !screen.cursor_line().is_empty() || screen.cursor.1 != 0 {
        wrong.push(format!(
            "the cursor is left on {:?} at column {}, not at the start of a clean line",
            screen.cursor_line(),
            screen.cursor.1
        ));
    }
    assert!(
        wrong.is_empty(),
        "node {} after {after}: {}\nthe screen:\n{screen}\nits last bytes: {}",
        node.addr,
        wrong.join("; "),
        tail(&node.raw())
    );
}

#[test]
fn quit_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(2, WayOut::Typed("quit"));
}

#[test]
fn exit_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(3, WayOut::Typed("exit"));
}

#[test]
fn ctrl_c_on_an_empty_line_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(4, WayOut::Keys(keys::CTRL_C));
}

#[test]
fn ctrl_d_on_an_empty_line_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(5, WayOut::Keys(keys::CTRL_D));
}

#[test]
fn sigterm_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(6, WayOut::Signal(libc::SIGTERM));
}

#[test]
fn sigint_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(7, WayOut::Signal(libc::SIGINT));
}

#[test]
fn sighup_leaves_the_terminal_as_found() {
    leaves_the_terminal_as_found(8, WayOut::Signal(libc::SIGHUP));
}

/// A node that cannot start exits 1, says why, and leaves the terminal as
/// it found it.
fn fails_and_leaves_the_terminal_as_found(node: &mut PtyNode, why: &str) {
    let status = node.expect_exit(why);
    assert_exited(status, 1, node, why);
    assert_mode_restored(node, why);
    assert_private_modes_reset(node, why);
    let screen = node.screen();
    assert!(
        screen
            .lines
            .iter()
            .any(|l| l.starts_with("node: ") && l.contains(why)),
        "node {}: no 'node: ...{why}...' line; the screen:\n{screen}",
        node.addr
    );
}

#[test]
fn a_locked_data_directory_leaves_the_terminal_as_found() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let dir = temp_dir("node-pty-");
    let mut holder = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    let mut second = PtyNode::spawn(net.addr(2), net.port(), dir.path(), &[]);
    fails_and_leaves_the_terminal_as_found(&mut second, "is in use by another node");
    holder.type_line("quit");
    let status = holder.expect_exit("quit");
    assert_exited(status, 0, &holder, "quit");
}

#[test]
fn a_port_in_use_leaves_the_terminal_as_found() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 10);
    let dir = temp_dir("node-pty-");
    let _taken = TcpListener::bind((net.addr(1), net.port())).expect("taking the port");
    let mut node = PtyNode::spawn(net.addr(1), net.port(), dir.path(), &[]);
    fails_and_leaves_the_terminal_as_found(&mut node, "cannot listen on");
}

// ---------------------------------------------------------------------
// 3. Readline habits.

/// The lines after `from` (a line index) that `matches`, in order.
fn lines_after(screen: &Screen, from: usize, matches: impl Fn(&str) -> bool) -> Vec<&str> {
    screen.lines[from.min(screen.lines.len())..]
        .iter()
        .map(String::as_str)
        .filter(|l| matches(l))
        .collect()
}

/// A byte that is not UTF-8 (a Latin-1 terminal's 'é') drops the line
/// with a message; the node and its prompt go on.
#[test]
fn bytes_that_are_not_utf8_drop_the_line_and_the_prompt_goes_on() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 19);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.send(b"chat caf\xe9\r");
    node.wait_line("the refusal", |l| {
        l.starts_with("the terminal sent bytes that are not UTF-8")
    });
    wait_editing(&node);
    node.type_line("status");
    node.wait_line("the answer to 'status'", |l| l.starts_with("address:"));
    assert!(
        node.wait_exit(Duration::from_millis(200)).is_none(),
        "still running"
    );
    wait_editing(&node);
    node.type_line("quit");
    let status = node.expect_exit("quit");
    assert_exited(status, 0, &node, "quit");
    assert_mode_restored(&node, "quit");
}

#[test]
fn ctrl_c_clears_the_line_being_typed_and_stops_on_an_empty_one() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 11);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.send(b"chat abc");
    node.wait_screen(WAIT, "the typed line", |s| {
        (s.editing() == Some("chat abc")).then_some(())
    });
    node.send(keys::CTRL_C);
    node.wait_screen(WAIT, "an empty prompt after Ctrl-C", |s| {
        (s.editing() == Some("") && s.cursor.1 == s.cursor_line().len() + 1).then_some(())
    });
    node.type_line("status");
    let at = node.wait_line("the answer to 'status'", |l| l.starts_with("address:"));
    let screen = node.screen();
    assert!(
        screen.lines[at..]
            .iter()
            .any(|l| l == "history:   0 chats, last (none)"),
        "{screen}"
    );
    assert!(
        !screen
            .lines
            .iter()
            .any(|l| stamped(l).is_some() || l.contains("not sent") || l.contains("abcstatus")),
        "Ctrl-C did not clear the line: {screen}"
    );
    // Ctrl-C on the empty line stops the node.
    wait_editing(&node);
    node.send(keys::CTRL_C);
    let status = node.expect_exit("Ctrl-C on an empty line");
    assert_exited(status, 0, &node, "Ctrl-C on an empty line");
    assert_mode_restored(&node, "Ctrl-C on an empty line");
    assert!(
        node.screen().has_line(&stopped_line(&dir)),
        "{}",
        node.screen()
    );
}

#[test]
fn lines_arriving_in_one_read_are_all_carried_out_in_order() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 12);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    let firsts = |l: &str| {
        l.starts_with("address:") || l.starts_with("Type a line") || l == "no peers connected"
    };
    // Five times: the order of the answers must not depend on luck.
    for paste in 1..=5 {
        wait_editing(&node);
        let from = node.screen().cursor.0;
        node.send(b"status\nhelp\npeers\n");
        let answers = node.wait_screen(WAIT, "the answers to status, help and peers", |s| {
            let found = lines_after(s, from, firsts);
            (found.len() >= 3).then(|| found.iter().map(|l| l.to_string()).collect::<Vec<_>>())
        });
        let screen = node.screen();
        assert!(
            answers.len() == 3
                && answers[0].starts_with("address:")
                && answers[1].starts_with("Type a line")
                && answers[2] == "no peers connected",
            "paste {paste}: the answers to status, help, peers came as {answers:?}\n{screen}"
        );
        // Each line was shown as typed, in order.
        let echoes: Vec<&str> =
            lines_after(&screen, from, |l| typed(l).is_some_and(|t| !t.is_empty()))
                .into_iter()
                .filter_map(typed)
                .collect();
        assert_eq!(
            echoes,
            ["status", "help", "peers"],
            "paste {paste}:\n{screen}"
        );
    }
}

#[test]
fn command_history_survives_a_restart() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 13);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.type_line("help chat");
    node.wait_line("the answer to 'help chat'", |l| {
        l.starts_with("/chat TEXT: ")
    });
    wait_editing(&node);
    node.type_line("quit");
    let status = node.expect_exit("quit");
    assert_exited(status, 0, &node, "quit");
    let saved = std::fs::read_to_string(dir.path().join("prompt-history"))
        .expect("the command history in the data directory");
    assert!(saved.contains("help chat"), "{saved:?}");
    drop(node);

    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.send(keys::UP);
    node.wait_screen(WAIT, "the last command after Up", |s| {
        (s.editing() == Some("quit")).then_some(())
    });
    node.send(keys::UP);
    node.wait_screen(WAIT, "the command before it after Up again", |s| {
        (s.editing() == Some("help chat")).then_some(())
    });
    // It runs as it was typed.
    let from = node.screen().lines.len();
    node.send(keys::ENTER);
    node.wait_screen(WAIT, "the answer to 'help chat' again", |s| {
        (!lines_after(s, from, |l| l.starts_with("/chat TEXT: ")).is_empty()).then_some(())
    });
    wait_editing(&node);
    node.send(keys::CTRL_D);
    let status = node.expect_exit("Ctrl-D");
    assert_exited(status, 0, &node, "Ctrl-D");
}

#[test]
fn help_lists_every_command_and_explains_one() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 14);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    // '/help', 'help', 'HELP' and '?' all list the commands.
    for (at, asked) in ["/help", "help", "HELP", "?"].into_iter().enumerate() {
        wait_editing(&node);
        node.type_line(asked);
        node.wait_screen(WAIT, "the list of commands", |s| {
            (s.lines
                .iter()
                .filter(|l| l.starts_with("Type a line and press Enter: it is sent as a chat"))
                .count()
                > at)
                .then_some(())
        });
    }
    let screen = node.screen();
    let at = screen
        .position(|l| l.starts_with("Type a line"))
        .expect("the list");
    let usages: Vec<&str> = screen.lines[at + 1..at + 7]
        .iter()
        .map(|l| l.trim_start().split("  ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        usages,
        [
            "/chat TEXT",
            "/hist [N]",
            "/peers",
            "/status",
            "/help [COMMAND]",
            "/quit, /exit"
        ],
        "{screen}"
    );
    // The rule for a line that begins with a command's word, and the times.
    let text = screen.lines[at..].join(" ");
    assert!(
        text.contains("'status report ready') is not sent") && text.contains("(HH:MM)"),
        "{screen}"
    );
    wait_editing(&node);
    node.type_line("/help chat");
    let at = node.wait_line("the answer to '/help chat'", |l| {
        l.starts_with("/chat TEXT: send TEXT as a chat")
    });
    let screen = node.screen();
    assert!(
        screen
            .lines
            .get(at + 1)
            .is_some_and(|l| l.starts_with("TEXT is everything after '/chat '")),
        "{screen}"
    );
    wait_editing(&node);
    node.type_line("help exit");
    node.wait_line("the answer to 'help exit'", |l| {
        l.starts_with("/quit, /exit: stop the node")
    });
}

/// A line is a chat; a command begins with '/'; a line that begins with a
/// command's word but does not fit it is refused, saying how to send it;
/// the words the user first asked for still work; Tab completes names.
#[test]
fn typed_lines_are_chats_and_slash_commands_run() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 21);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.type_line("hello");
    node.wait_line("'hello' sent as a chat", |l| {
        stamped(l).is_some_and(|t| t.starts_with("hello (mined here: "))
    });
    wait_editing(&node);
    node.type_line("status report ready");
    node.wait_line("the refusal of 'status report ready'", |l| {
        l == "not sent: 'status report ready' begins with the command 'status' ('status' \
              takes no argument); to send it as a chat, type /chat status report ready"
    });
    wait_editing(&node);
    node.type_line("/chat status report ready");
    node.wait_line("'/chat status report ready' sent", |l| {
        stamped(l).is_some_and(|t| t.starts_with("status report ready (mined here"))
    });
    wait_editing(&node);
    node.type_line("chat the old way");
    node.wait_line("'chat TEXT' sent", |l| {
        stamped(l).is_some_and(|t| t.starts_with("the old way (mined here"))
    });
    wait_editing(&node);
    node.type_line("//me waves");
    node.wait_line("'//me waves' sent as '/me waves'", |l| {
        stamped(l).is_some_and(|t| t.starts_with("/me waves (mined here"))
    });
    wait_editing(&node);
    node.type_line("/nick bob");
    node.wait_line("the refusal of an unknown command", |l| {
        l.starts_with("unknown command '/nick'; type /help")
    });
    // Tab completes '/hi' to '/hist ', and the command runs.
    wait_editing(&node);
    node.send(b"/hi");
    node.send(keys::TAB);
    node.wait_screen(WAIT, "'/hist ' completed", |s| {
        (s.editing() == Some("/hist")).then_some(())
    });
    node.send(b"2");
    node.send(keys::ENTER);
    node.wait_line("the answer to '/hist 2'", |l| l == "#3 /me waves");
    let screen = node.screen();
    assert!(screen.has_line("#2 the old way"), "{screen}");
    assert!(
        screen
            .cursor_line()
            .starts_with("[peers 0, chats 4, pending 0]"),
        "{screen}"
    );
    wait_editing(&node);
    node.type_line("/quit");
    let status = node.expect_exit("/quit");
    assert_exited(status, 0, &node, "/quit");
}

/// Ctrl-Z suspends the node as a shell job (the line editor's escapes
/// reset); `fg` brings back the editor's mode and draws the prompt
/// and the half-typed line again, and the arrow keys edit it.
#[test]
fn ctrl_z_then_fg_restores_the_terminal_and_redraws_the_line() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 22);
    let dir = temp_dir("node-pty-");
    let mut shell = PtyNode::start_in_shell(net.addr(1), net.port(), dir.path());
    wait_editing(&shell);
    shell.send(b"half typed");
    shell.wait_screen(WAIT, "the half-typed line", |s| {
        (s.editing() == Some("half typed")).then_some(())
    });
    // Keys at a person's pace (the stop is then complete before 'fg').
    thread::sleep(Duration::from_millis(300));
    let before = shell.raw().len();
    shell.send(keys::CTRL_Z);
    shell.wait_screen(WAIT, "the shell saying the job stopped", |s| {
        s.lines.iter().any(|l| l.contains("Stopped")).then_some(())
    });
    // (The shell puts its own mode back while it has the terminal: what
    // the node left is seen after 'fg'.)
    thread::sleep(Duration::from_millis(500));
    let resumed_from = shell.raw().len();
    assert!(resumed_from > before);
    shell.type_line("fg");
    // The prompt and the line drawn again, after the shell's 'fg' echo.
    let redrawn = poll(WAIT, || {
        let raw = shell.raw();
        let after = Screen::render(&raw[resumed_from..]);
        (is_raw(&shell.mode()) && after.lines.iter().any(|l| typed(l) == Some("half typed")))
            .then_some(())
    });
    assert!(
        redrawn.is_some(),
        "after fg: raw {}, screen:\n{}",
        is_raw(&shell.mode()),
        shell.screen()
    );
    shell.send(keys::LEFT);
    shell.send(b"X");
    shell.send(keys::ENTER);
    shell.wait_line("the edited line sent", |l| {
        stamped(l).is_some_and(|t| t.starts_with("half typeXd (mined here"))
    });
    assert!(
        !shell.screen().lines.iter().any(|l| l.contains("^[[D")),
        "{}",
        shell.screen()
    );
    wait_editing(&shell);
    shell.type_line("/quit");
    shell.wait_line("the node stopped", |l| {
        l.starts_with("stopped; the history is saved in ")
    });
    shell.type_line("exit");
    shell.expect_exit("exit from the shell");
}

// ---------------------------------------------------------------------
// 4. Logs do not garble the prompt.

#[test]
fn log_lines_go_above_the_line_being_typed() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 15);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &["--log", "info"]);
    wait_editing(&node);
    let typing = "chat typed while a peer comes and goes";
    node.send(typing.as_bytes());
    node.wait_screen(WAIT, "the typed line", |s| {
        (s.editing() == Some(typing)).then_some(())
    });

    let visitor = net.addr(100).to_string();
    let peer = net.peer(100, 1);
    node.wait_line("the connection's log line", |l| {
        l.contains(&format!("connected to {visitor}"))
    });
    drop(peer);
    node.wait_line("the disconnection's log line", |l| {
        l.contains(&format!("disconnected from {visitor}"))
    });
    let screen = node.screen();
    assert_eq!(
        screen.editing(),
        Some(typing),
        "the line being typed:\n{screen}"
    );
    assert_eq!(
        screen.cursor.1,
        screen.cursor_line().len(),
        "the cursor:\n{screen}"
    );
    let log_lines = screen
        .lines
        .iter()
        .filter(|l| l.contains(visitor.as_str()) && stamped(l).is_none());
    for line in log_lines {
        assert!(
            line.starts_with("[20") && line.contains(" INFO ") && !line.contains("> chat"),
            "a log line not on its own line: {line:?}\n{screen}"
        );
    }
    assert_eq!(
        screen
            .lines
            .iter()
            .filter(|l| l.contains("typed while"))
            .count(),
        1,
        "the typed line is shown more than once:\n{screen}"
    );
    // What the editor holds is what is shown: Enter sends it as typed.
    node.send(keys::ENTER);
    node.wait_line("the chat mined", |l| {
        stamped(l).is_some_and(|t| t.starts_with("typed while a peer comes and goes (mined here: "))
    });
}

#[test]
fn the_debug_log_shows_the_node_and_never_the_line_editor() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 16);
    let dir = temp_dir("node-pty-");
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &["--log", "debug"]);
    wait_editing(&node);
    // Keys of every kind: typing, Ctrl-C, history, Enter.
    node.send(b"chat some");
    node.send(keys::CTRL_C);
    node.type_line("status");
    node.wait_line("the answer to 'status'", |l| l.starts_with("address:"));
    wait_editing(&node);
    node.send(keys::UP);
    node.send(keys::CTRL_C);
    // A peer that comes and goes: the node dials it back, which fails.
    let visitor = net.addr(100).to_string();
    drop(net.peer(100, 1));
    node.wait_line("a debug line of the node's", |l| {
        l.contains(" DEBUG ") && l.contains("node::") && l.contains(&visitor)
    });
    let screen = node.screen();
    let editor: Vec<&String> = screen
        .lines
        .iter()
        .filter(|l| l.contains("rustyline"))
        .collect();
    assert!(
        editor.is_empty(),
        "the line editor's log is shown: {editor:#?}"
    );
}

// ---------------------------------------------------------------------
// 5. No panic with stdout closed.

#[test]
fn a_closed_stdout_is_no_reason_to_panic() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 17);
    let dir = temp_dir("node-pty-");
    let mut child = spawn_piped([
        "--bind".as_ref(),
        net.addr(1).to_string().as_ref(),
        "--port".as_ref(),
        net.port().to_string().as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]);
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // `node ... | head -1`: one line read, then the pipe closed.
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("reading the first line");
    assert!(first.starts_with("listening on "), "{first:?}");
    drop(stdout);
    // Output with nobody to read it: answers, a mined chat.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(b"status\nhelp\nchat written to a closed pipe\n")
        .expect("writing to the node");
    let mined = poll(WAIT, || {
        (texts(&net.archive(100, 1)) == ["written to a closed pipe"]).then_some(())
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stderr = stderr.join().unwrap_or_default();
    assert!(mined.is_some(), "the chat was not mined; stderr:\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("node did not stop on SIGINT; stderr:\n{stderr}"));
    assert_eq!(status.code(), Some(0), "exit {status}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    drop(stdin);
}
