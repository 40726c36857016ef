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

use crate::support::pty::{PtyNode, Screen, keys};
use crate::support::{Net, WAIT, fixture_bytes, poll, shared_cpu, spawn_piped};
use wire::History;

/// This module's id in the address plan of `support`.
const FILE: u8 = 5;

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("node-pty-")
        .tempdir()
        .expect("creating a temporary directory")
}

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
// 1. Every chat that enters the history is printed exactly once, in
//    history order.

/// What a screen says the history is: one entry per chat, `None` for the
/// chats a `received chats #A to #B` line sums up.
type Model = Vec<Option<String>>;

/// What one line of the screen says about the history.
#[derive(Debug, PartialEq)]
enum Said {
    /// `#N TEXT`, with the `(mined: ...)` suffix dropped.
    Chat(usize, String),
    /// `R chats from #F on replaced by a longer history[; D of yours ...]`
    /// (or by [`SAME_LENGTH`]).
    Switched { from: usize, replaced: usize },
    /// `received chats #A to #B (see 'hist'); then:`.
    Received(usize, usize),
}

/// How a switch to a rival history of the same length is said.
const SAME_LENGTH: &str = "a rival history of the same length (it wins the tie-break)";

fn parse_said(line: &str) -> Option<Said> {
    if let Some(rest) = line.strip_prefix('#') {
        let (index, text) = rest.split_once(' ')?;
        let index = index.parse().ok()?;
        let text = match text.rfind(" (mined: ") {
            Some(at) if text.ends_with(" MH/s)") => &text[..at],
            _ => text,
        };
        return Some(Said::Chat(index, text.to_string()));
    }
    if let Some(rest) = line.strip_prefix("received chats #") {
        let (from, rest) = rest.split_once(" to #")?;
        let to = rest.strip_suffix(" (see 'hist'); then:")?;
        return Some(Said::Received(from.parse().ok()?, to.parse().ok()?));
    }
    let (count, rest) = line.split_once(" chat")?;
    let rest = rest.strip_prefix("s").unwrap_or(rest);
    let rest = rest.strip_prefix(" from #")?;
    let (from, rest) = rest.split_once(" on replaced by ")?;
    let rest = rest
        .strip_prefix("a longer history")
        .or_else(|| rest.strip_prefix(SAME_LENGTH))?;
    if !(rest.is_empty() || rest.starts_with("; ") && rest.ends_with(" mined again")) {
        return None;
    }
    Some(Said::Switched {
        from: from.parse().ok()?,
        replaced: count.parse().ok()?,
    })
}

/// Replays a screen into the history it shows; `Err` names the first line
/// that breaks the rules: a chat line must have the next index, a switch
/// must take back exactly the chats shown from its index on, a summed-up
/// catch-up must start at the next index.
fn replay(lines: &[String]) -> Result<Model, String> {
    let mut model: Model = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        match parse_said(line) {
            None => {}
            Some(Said::Chat(index, text)) => {
                if index != model.len() {
                    return Err(format!(
                        "line {at} {line:?}: chat #{index}, but the next index is #{}",
                        model.len()
                    ));
                }
                model.push(Some(text));
            }
            Some(Said::Switched { from, replaced }) => {
                if from + replaced != model.len() {
                    return Err(format!(
                        "line {at} {line:?}: {replaced} replaced from #{from}, but {} chats \
                         are shown",
                        model.len()
                    ));
                }
                model.truncate(from);
            }
            Some(Said::Received(from, to)) => {
                if from != model.len() || to < from {
                    return Err(format!(
                        "line {at} {line:?}: the next index is #{}",
                        model.len()
                    ));
                }
                model.resize(to + 1, None);
            }
        }
    }
    Ok(model)
}

/// Whether `model` shows `history`, chat for chat (as a terminal can:
/// without a text's trailing blanks).
fn shows(model: &Model, history: &[String]) -> bool {
    difference(model, history).is_none()
}

/// Where `model` first differs from what `history` would show.
fn difference(model: &Model, history: &[String]) -> Option<String> {
    for (index, chat) in history.iter().enumerate() {
        match model.get(index) {
            None => return Some(format!("#{index} {chat:?} not shown")),
            Some(Some(shown)) if shown != chat.trim_end() => {
                return Some(format!("#{index} shown as {shown:?}, is {chat:?}"));
            }
            Some(_) => {}
        }
    }
    (model.len() > history.len()).then(|| {
        format!(
            "{} chats shown, the history has {}",
            model.len(),
            history.len()
        )
    })
}

/// A history's chat texts as the screen shows them: bytes outside
/// printable ASCII escaped as Rust escapes them, the backslash doubled,
/// the rest (quotes included) as they are.
fn shown_texts(history: &History) -> Vec<String> {
    history
        .iter()
        .map(|c| {
            c.text()
                .iter()
                .map(|&b| match b {
                    b'\\' => "\\\\".to_string(),
                    b' '..=b'~' => char::from(b).to_string(),
                    _ => b.escape_ascii().to_string(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn parsing_a_screen_follows_switches_and_catch_ups() {
    let lines: Vec<String> = [
        "> chat a",
        "saved (1 pending)",
        "#0 a (mined: 65536 tries in 0.3 ms, 210.0 MH/s)",
        "#1 b",
        "2 chats from #0 on replaced by a longer history; 1 of yours will be mined again",
        "#0 x",
        "received chats #1 to #3 (see 'hist'); then:",
        "#4 y",
        "1 chat from #4 on replaced by a rival history of the same length (it wins the tie-break)",
        "#4 z",
        "#5 a (mined: 70000 tries in 0.3 ms, 210.0 MH/s)",
    ]
    .map(String::from)
    .to_vec();
    let model = replay(&lines).expect("a valid screen");
    let history: Vec<String> = ["x", "1", "2", "3", "z", "a"].map(String::from).to_vec();
    assert!(shows(&model, &history), "{model:?}");
    let twice = [&lines[..], &["#5 a".to_string()]].concat();
    assert!(replay(&twice).unwrap_err().contains("the next index is #6"));
}

/// The `peers:` count of a fresh `status` typed at the prompt.
fn peer_count(node: &mut PtyNode) -> usize {
    let count = |screen: &Screen| {
        screen
            .lines
            .iter()
            .filter(|l| l.starts_with("peers:"))
            .count()
    };
    let before = count(&node.screen());
    node.type_line("status");
    node.wait_screen(WAIT, "the answer to 'status'", |screen| {
        if count(screen) <= before {
            return None;
        }
        let line = screen.lines.iter().rfind(|l| l.starts_with("peers:"))?;
        line["peers:".len()..].trim().parse().ok()
    })
}

/// The `saved (...)` answers a screen shows.
fn acks(screen: &Screen) -> usize {
    screen
        .lines
        .iter()
        .filter(|l| l.starts_with("saved ("))
        .count()
}

#[test]
fn every_chat_is_printed_once_in_history_order_on_every_screen() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let port = net.port();
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
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

    // Every node's history over the wire once all three agree and hold
    // every chat typed, each once.
    let agreed = |typed: &[String]| -> Option<Vec<String>> {
        let histories: Vec<Vec<String>> =
            (1..=3).map(|h| shown_texts(&net.archive(100, h))).collect();
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
                    (1..=3).map(|h| shown_texts(&net.archive(100, h))).collect();
                panic!("no agreement on {typed:?} within 60 s: {histories:#?}")
            }
        }
    };

    // Six rounds, each a chat typed on the three terminals back to back:
    // the three mine on the same history at once. The first three rounds
    // wait for the network to agree, the last three follow each other.
    let mut typed = Vec::new();
    for round in 1..=6 {
        for node in &nodes {
            wait_editing(node);
        }
        for (at, node) in nodes.iter_mut().enumerate() {
            let text = format!("round {round} from node {}", at + 1);
            node.type_line(&format!("chat {text}"));
            typed.push(text);
        }
        for node in &nodes {
            node.wait_screen(WAIT, "the chat's acknowledgement", |s| {
                (acks(s) >= round).then_some(())
            });
        }
        if round <= 3 {
            settle(&typed);
        }
    }
    let history = settle(&typed);

    for node in &nodes {
        let shown = poll(WAIT, || {
            replay(&node.screen().lines)
                .ok()
                .filter(|model| shows(model, &history))
        });
        let screen = node.screen();
        if shown.is_none() {
            let model = replay(&screen.lines).map(|m| difference(&m, &history));
            panic!(
                "node {}: the screen does not show the history once, in order: {model:?}\n\
                 history: {history:#?}\nscreen:\n{screen}",
                node.addr
            );
        }
        let count = |what: &dyn Fn(&str) -> bool| screen.lines.iter().filter(|l| what(l)).count();
        eprintln!(
            "node {}: {} chats shown once each, in order; {} switch lines ({} with chats of \
             ours to mine again), {} chats mined here, {} catch-up lines",
            node.addr,
            history.len(),
            count(&|l| matches!(parse_said(l), Some(Said::Switched { .. }))),
            count(&|l| l.ends_with(" mined again")),
            count(&|l| l.starts_with('#') && l.ends_with(" MH/s)")),
            count(&|l| matches!(parse_said(l), Some(Said::Received(..)))),
        );
    }
    for node in &mut nodes {
        node.type_line("quit");
        let status = node.expect_exit("quit");
        assert_exited(status, 0, node, "quit");
    }
}

#[test]
fn a_big_catch_up_is_summed_up_and_the_last_20_shown() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 18);
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    // Five chats, then a longer history pushed over them.
    let mut peer = net.peer(100, 1);
    peer.send_raw(&fixture_bytes("vector.bin"));
    node.wait_line("the vector's last chat", |l| l == "#4 nova msg");
    let big = fixture_bytes("history-1k.bin");
    peer.send_raw(&big);
    let mut history = shown_texts(&wire::decode_archive(&big).expect("the fixture decodes"));
    // And one of ours on top.
    wait_editing(&node);
    node.type_line("chat mined on top of a thousand");
    history.push("mined on top of a thousand".to_string());
    let shown = poll(WAIT, || {
        replay(&node.screen().lines)
            .ok()
            .filter(|model| shows(model, &history))
    });
    let screen = node.screen();
    assert!(
        shown.is_some(),
        "the screen does not show the history once, in order: {:?}\n{screen}",
        replay(&screen.lines).map(|m| difference(&m, &history))
    );
    let summed: Vec<&String> = screen
        .lines
        .iter()
        .filter(|l| matches!(parse_said(l), Some(Said::Received(..))))
        .collect();
    assert_eq!(summed.len(), 1, "{screen}");
    let at = screen.position(|l| l == summed[0]).expect("the line");
    let shown_one_by_one: Vec<usize> = screen.lines[at + 1..]
        .iter()
        .filter_map(|l| match parse_said(l) {
            Some(Said::Chat(index, _)) => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown_one_by_one,
        (980..=1000).collect::<Vec<_>>(),
        "after {:?}: not the last 20, then ours\n{screen}",
        summed[0]
    );
    assert!(
        screen
            .lines
            .iter()
            .any(|l| l.starts_with("#1000 mined on top of a thousand (mined: ")),
        "{screen}"
    );
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
    let dir = temp_dir();
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
                (s.cursor_line() == "> chat never sent").then_some(())
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
    if screen.lines.iter().any(|l| l.starts_with("saved (")) {
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
    let dir = temp_dir();
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
    let dir = temp_dir();
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
    let dir = temp_dir();
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
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.send(b"chat abc");
    node.wait_screen(WAIT, "the typed line", |s| {
        (s.cursor_line() == "> chat abc").then_some(())
    });
    node.send(keys::CTRL_C);
    node.wait_screen(WAIT, "an empty prompt after Ctrl-C", |s| {
        (s.cursor_line() == ">" && s.cursor.1 == 2).then_some(())
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
        !screen.lines.iter().any(|l| l.starts_with("saved (")
            || l.contains("unknown command")
            || l.contains("abcstatus")),
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
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    let firsts =
        |l: &str| l.starts_with("address:") || l == "commands:" || l == "no peers connected";
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
                && answers[1..] == ["commands:", "no peers connected"],
            "paste {paste}: the answers to status, help, peers came as {answers:?}\n{screen}"
        );
        // Each line was shown as typed, in order.
        let echoes = lines_after(&screen, from, |l| l.starts_with("> ") && l.len() > 2);
        assert_eq!(
            echoes,
            ["> status", "> help", "> peers"],
            "paste {paste}:\n{screen}"
        );
    }
}

#[test]
fn command_history_survives_a_restart() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 13);
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.type_line("help chat");
    node.wait_line("the answer to 'help chat'", |l| {
        l.starts_with("chat TEXT: ")
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
        (s.cursor_line() == "> quit").then_some(())
    });
    node.send(keys::UP);
    node.wait_screen(WAIT, "the command before it after Up again", |s| {
        (s.cursor_line() == "> help chat").then_some(())
    });
    // It runs as it was typed.
    let from = node.screen().lines.len();
    node.send(keys::ENTER);
    node.wait_screen(WAIT, "the answer to 'help chat' again", |s| {
        (!lines_after(s, from, |l| l.starts_with("chat TEXT: ")).is_empty()).then_some(())
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
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &[]);
    wait_editing(&node);
    node.type_line("help");
    let at = node.wait_line("the answer to 'help'", |l| l == "commands:");
    let list = node.wait_screen(WAIT, "the whole list", |s| {
        let end = s.lines[at..]
            .iter()
            .position(|l| l.starts_with("type 'help COMMAND'"))?;
        Some(s.lines[at + 1..at + end].to_vec())
    });
    let usages: Vec<&str> = list
        .iter()
        .map(|l| l.trim_start().split("  ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        usages,
        [
            "chat TEXT",
            "hist [N]",
            "peers",
            "status",
            "help [COMMAND]",
            "quit, exit"
        ],
        "{list:#?}"
    );
    for line in &list {
        assert!(
            line.trim_start().len() > 20,
            "a command without a summary: {line:?}"
        );
    }
    wait_editing(&node);
    node.type_line("help chat");
    let at = node.wait_line("the answer to 'help chat'", |l| {
        l == "chat TEXT: mine TEXT into the history and send it to every peer"
    });
    let screen = node.screen();
    assert!(
        screen
            .lines
            .get(at + 1)
            .is_some_and(|l| l.starts_with("TEXT is everything after 'chat '")),
        "{screen}"
    );
    wait_editing(&node);
    node.type_line("help exit");
    node.wait_line("the answer to 'help exit'", |l| {
        l.starts_with("quit, exit: stop the node")
    });
}

// ---------------------------------------------------------------------
// 4. Logs do not garble the prompt.

#[test]
fn log_lines_go_above_the_line_being_typed() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 15);
    let dir = temp_dir();
    let mut node = PtyNode::start(net.addr(1), net.port(), dir.path(), &["--log", "info"]);
    wait_editing(&node);
    let typed = "> chat typed while a peer comes and goes";
    node.send(b"chat typed while a peer comes and goes");
    node.wait_screen(WAIT, "the typed line", |s| {
        (s.cursor_line() == typed).then_some(())
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
        screen.cursor_line(),
        typed,
        "the line being typed:\n{screen}"
    );
    assert_eq!(screen.cursor.1, typed.len(), "the cursor:\n{screen}");
    for line in screen.lines.iter().filter(|l| l.contains(visitor.as_str())) {
        assert!(
            line.starts_with('[') && line.contains(" INFO ") && !line.contains("> chat"),
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
        l.starts_with("#0 typed while a peer comes and goes (mined: ")
    });
}

#[test]
fn the_debug_log_shows_the_node_and_never_the_line_editor() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 16);
    let dir = temp_dir();
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
    let dir = temp_dir();
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
        (shown_texts(&net.archive(100, 1)) == ["written to a closed pipe"]).then_some(())
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
