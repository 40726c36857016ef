//! The node as a person sees it: the real `node` binary in a
//! pseudo-terminal (`support::pty`), with its line editor, checked on what
//! the terminal shows (rendered by a terminal emulator, scrollback
//! included) and on the terminal's mode before start and after exit. Each
//! test on its own `127.5.T.x` addresses and port (see `support`).

use std::net::TcpListener;

use rexpect::process::WaitStatus;
use tempfile::TempDir;

use crate::support::pty::{PtyNode, Screen, keys};
use crate::support::{Net, WAIT, poll, shared_cpu};

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
    assert_exited(status, 0, &node, &after);
    assert_mode_restored(&node, &after);
    assert_private_modes_reset(&node, &after);
    let screen = node.screen();
    assert!(
        screen.has_line(&stopped_line(&dir)),
        "node {}: no line {:?} after {after}; the screen:\n{screen}",
        node.addr,
        stopped_line(&dir)
    );
    assert!(
        !screen.lines.iter().any(|l| l.starts_with("saved (")),
        "a half-typed line was sent: {screen}"
    );
    assert!(
        screen.cursor_line().is_empty() && screen.cursor.1 == 0,
        "after {after} the cursor is not at the start of a clean line; the screen:\n{screen}"
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
