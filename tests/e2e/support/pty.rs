//! [`PtyNode`], a `node` process in a pseudo-terminal, as a person runs it
//! in a terminal window: keys go in as bytes, and what the node writes is
//! rendered by a terminal emulator ([`Screen`]), scrollback included.
//!
//! The pty comes from `rexpect` (open, fork, `setsid`, the slave as the
//! controlling terminal and as stdin, stdout and stderr). Before the node
//! is executed, the child turns echo back on (rexpect turns it off, a
//! terminal window has it on), gives the terminal a size, sends its PID and
//! waits: the parent reads the terminal's mode then, exactly the mode the
//! node finds at start ([`PtyNode::mode_at_start`]), and lets it go on.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rexpect::process::{PtyProcess, WaitStatus};

use super::{WAIT, poll};

/// The terminal's size, told to the node (TIOCSWINSZ) and used by the
/// emulator: wide enough that no line the tests look at wraps.
const ROWS: u16 = 40;
const COLS: u16 = 200;
/// Lines kept above the visible screen.
const SCROLLBACK: usize = 100_000;

/// The keys a person presses, as the terminal sends them.
pub mod keys {
    pub const ENTER: &[u8] = b"\r";
    pub const CTRL_C: &[u8] = b"\x03";
    pub const CTRL_D: &[u8] = b"\x04";
    pub const UP: &[u8] = b"\x1b[A";
    pub const LEFT: &[u8] = b"\x1b[D";
    pub const TAB: &[u8] = b"\t";
    pub const CTRL_Z: &[u8] = b"\x1a";
}

/// A running `node` in a pseudo-terminal: `--bind ADDR --port PORT
/// --data-dir DIR --threads 1` plus extra arguments. Killed (SIGKILL, by
/// PID) on drop; on a failing test its screen is printed.
pub struct PtyNode {
    pub addr: Ipv4Addr,
    /// The node's process id.
    pub pid: libc::pid_t,
    /// The terminal's mode when the node was executed.
    pub mode_at_start: libc::termios,
    process: PtyProcess,
    /// The pty's master side, for the keys and the terminal's mode.
    master: File,
    /// Every byte the node wrote to the terminal.
    output: Arc<Mutex<Vec<u8>>>,
    /// The node's side of the terminal is closed and every byte is in
    /// `output`.
    output_done: Arc<AtomicBool>,
    exit: Option<WaitStatus>,
}

/// A pipe whose ends are closed on exec (other tests spawn processes
/// meanwhile): (read, write).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors or fails.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both are fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The node's arguments: `--bind ADDR --port PORT --data-dir DIR
/// --threads 1`, then `args`.
fn node_args(addr: Ipv4Addr, port: u16, data_dir: &Path, args: &[&str]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec![
        "--bind".into(),
        addr.to_string().into(),
        "--port".into(),
        port.to_string().into(),
        "--data-dir".into(),
        data_dir.into(),
        "--threads".into(),
        "1".into(),
    ];
    // The page's tests are in web.rs; here the screen is the prompt's.
    // Before `args`: they may start with a subcommand.
    if !args.contains(&"--http") {
        all.push("--no-http".into());
    }
    all.extend(args.iter().map(OsString::from));
    all
}

/// Reads exactly `buf.len()` bytes from `fd`, waiting at most `timeout`.
fn read_exact_within(fd: RawFd, buf: &mut [u8], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pollfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: reads into the unfilled part of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    true
}

/// The mode of the terminal whose side `fd` is.
fn mode_of(fd: RawFd) -> libc::termios {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut mode: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `mode` is valid for writes.
    let rc = unsafe { libc::tcgetattr(fd, &mut mode) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    mode
}

impl PtyNode {
    /// Starts `node` in a new pty and waits until it shows its prompt
    /// after the `listening on` line (panics, with the screen, if not).
    pub fn start(addr: Ipv4Addr, port: u16, data_dir: &Path, args: &[&str]) -> PtyNode {
        let node = PtyNode::spawn(addr, port, data_dir, args);
        node.wait_prompt();
        node
    }

    /// Waits for the node's prompt after its `listening on` line.
    fn wait_prompt(&self) {
        self.wait_screen(WAIT, "the prompt after 'listening on'", |screen| {
            let at = screen.position(|l| l.starts_with("listening on "))?;
            screen.lines[at + 1..]
                .iter()
                .any(|l| typed(l).is_some())
                .then_some(())
        });
    }

    /// Starts `node` in a new pty and returns at once (it may fail to
    /// start: see [`PtyNode::wait_exit`]).
    pub fn spawn(addr: Ipv4Addr, port: u16, data_dir: &Path, args: &[&str]) -> PtyNode {
        let mut command = Command::new(env!("CARGO_BIN_EXE_node"));
        command.args(node_args(addr, port, data_dir, args));
        PtyNode::spawn_command(addr, command)
    }

    /// Starts an interactive bash (job control on) in a new pty, runs the
    /// node from its prompt as a person does, and waits for the node's
    /// prompt; [`PtyNode::pid`] is the shell's. For Ctrl-Z and `fg`: a
    /// process that is not a shell's job cannot be stopped by SIGTSTP (its
    /// process group is orphaned).
    pub fn start_in_shell(addr: Ipv4Addr, port: u16, data_dir: &Path) -> PtyNode {
        let mut command = Command::new("bash");
        command
            .args(["--norc", "--noprofile", "-i"])
            .env("PS1", "$ ")
            .env("HISTFILE", "/dev/null");
        let mut shell = PtyNode::spawn_command(addr, command);
        let line: Vec<String> = [env!("CARGO_BIN_EXE_node").into()]
            .into_iter()
            .chain(
                node_args(addr, port, data_dir, &[])
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned()),
            )
            .collect();
        shell.wait_line("the shell's prompt", |l| l.starts_with('$'));
        shell.type_line(&line.join(" "));
        shell.wait_prompt();
        shell
    }

    fn spawn_command(addr: Ipv4Addr, mut command: Command) -> PtyNode {
        let (ready_r, ready_w) = pipe();
        let (go_r, go_w) = pipe();
        let (ready_fd, go_fd) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
        command.env_remove("NODE_LOG").env("TERM", "xterm");
        // Runs in the child, on the pty, right before exec.
        // SAFETY: system calls only, on the child's own descriptors.
        unsafe {
            command.pre_exec(move || {
                // The node dies with the test, even a killed one.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut mode: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut mode) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                mode.c_lflag |= libc::ECHO;
                if libc::tcsetattr(0, libc::TCSANOW, &mode) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let size = libc::winsize {
                    ws_row: ROWS,
                    ws_col: COLS,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                libc::ioctl(0, libc::TIOCSWINSZ, &size);
                let pid = libc::getpid().to_ne_bytes();
                libc::write(ready_fd, pid.as_ptr().cast(), pid.len());
                let mut go = 0u8;
                loop {
                    match libc::read(go_fd, (&raw mut go).cast(), 1) {
                        1 => return Ok(()),
                        -1 if *libc::__errno_location() == libc::EINTR => {}
                        _ => return Err(std::io::Error::other("the test is gone")),
                    }
                }
            });
        }
        let parent = std::process::id();
        let process = match PtyProcess::new(command) {
            Ok(process) => process,
            // rexpect returns in the child too when exec fails: that copy of
            // the test must not go on.
            Err(e) if std::process::id() != parent => {
                let _ = writeln!(std::io::stderr(), "exec node: {e}");
                // SAFETY: ends the forked child at once.
                unsafe { libc::_exit(127) }
            }
            Err(e) => panic!("starting node in a pty: {e}"),
        };
        drop((ready_w, go_r));
        let mut pid = [0; 4];
        assert!(
            read_exact_within(ready_r.as_raw_fd(), &mut pid, WAIT),
            "the node's child process did not get ready in its pty"
        );
        let pid = libc::pid_t::from_ne_bytes(pid);
        let master = process.get_file_handle().expect("the pty's master side");
        let reader = process.get_file_handle().expect("the pty's master side");
        for file in [&master, &reader] {
            // SAFETY: sets close-on-exec on our own descriptor.
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let mode_at_start = mode_of(master.as_raw_fd());
        File::from(go_w)
            .write_all(b"g")
            .expect("letting the node's child go on");

        let output = Arc::new(Mutex::new(Vec::new()));
        let output_done = Arc::new(AtomicBool::new(false));
        {
            let (output, done) = (Arc::clone(&output), Arc::clone(&output_done));
            let mut reader = reader;
            thread::spawn(move || {
                let mut buf = [0; 16 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => output
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        // EIO: every descriptor of the node's side is closed.
                        Err(_) => break,
                    }
                }
                done.store(true, Ordering::SeqCst);
            });
        }
        PtyNode {
            addr,
            pid,
            mode_at_start,
            process,
            master,
            output,
            output_done,
            exit: None,
        }
    }

    /// Writes `keys` to the terminal in one write, as a terminal sends
    /// what is typed or pasted.
    pub fn send(&mut self, keys: &[u8]) {
        let written = self.master.write(keys);
        match written {
            Ok(n) if n == keys.len() => {}
            other => panic!("writing {keys:?} to node {}'s pty: {other:?}", self.addr),
        }
    }

    /// Types `line` and presses Enter, in one write.
    pub fn type_line(&mut self, line: &str) {
        self.send(&[line.as_bytes(), keys::ENTER].concat());
    }

    /// The terminal's mode now.
    pub fn mode(&self) -> libc::termios {
        mode_of(self.master.as_raw_fd())
    }

    /// Every byte the node wrote to the terminal so far.
    pub fn raw(&self) -> Vec<u8> {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The DEC private modes (`ESC [ ? N h` sets mode N, `ESC [ ? N l`
    /// resets it) that the node's output leaves other than a terminal
    /// starts with (autowrap 7 and a visible cursor 25 set, the others,
    /// such as bracketed paste 2004 and synchronized output 2026, reset):
    /// `"?2004h"` for bracketed paste left on.
    pub fn private_modes_left(&self) -> Vec<String> {
        let raw = self.raw();
        let mut set = std::collections::BTreeMap::new();
        let mut rest = &raw[..];
        while let Some(at) = rest.windows(3).position(|w| w == b"\x1b[?") {
            rest = &rest[at + 3..];
            let end = rest
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b';'))
                .unwrap_or(rest.len());
            let on = match rest.get(end) {
                Some(b'h') => true,
                Some(b'l') => false,
                _ => continue,
            };
            for mode in rest[..end].split(|b| *b == b';') {
                if let Ok(mode) = String::from_utf8_lossy(mode).parse::<u32>() {
                    set.insert(mode, on);
                }
            }
        }
        set.into_iter()
            .filter(|&(mode, on)| on != matches!(mode, 7 | 25))
            .map(|(mode, on)| format!("?{mode}{}", if on { 'h' } else { 'l' }))
            .collect()
    }

    /// What the terminal shows now, scrollback included.
    pub fn screen(&self) -> Screen {
        Screen::render(&self.raw())
    }

    /// Polls the screen every 50 ms until `check` returns `Some`; panics
    /// with the screen after `timeout`: `what` says what was awaited.
    pub fn wait_screen<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Screen) -> Option<T>,
    ) -> T {
        match poll(timeout, || check(&self.screen())) {
            Some(found) => found,
            None => panic!(
                "node {}: no {what} on its screen within {timeout:?}; the screen:\n{}",
                self.addr,
                self.screen()
            ),
        }
    }

    /// Waits for a screen line for which `matches` holds; its index.
    pub fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> usize {
        self.wait_screen(WAIT, what, |screen| screen.position(&matches))
    }

    /// Sends `signal` to the node's PID.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid, signal);
        }
    }

    /// Waits at most `timeout` for the node to exit, then until everything
    /// it wrote is read; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<WaitStatus> {
        if self.exit.is_none() {
            let process = &self.process;
            self.exit = poll(timeout, || {
                process
                    .status()
                    .filter(|s| !matches!(s, WaitStatus::StillAlive))
            });
            self.exit?;
            let drained = poll(WAIT, || {
                self.output_done.load(Ordering::SeqCst).then_some(())
            });
            assert!(
                drained.is_some(),
                "node {}: its side of the pty is still open after it exited",
                self.addr
            );
        }
        self.exit
    }

    /// Like [`PtyNode::wait_exit`] with [`WAIT`], panicking (with the
    /// screen) if the node does not exit: `after` says what should have
    /// stopped it.
    pub fn expect_exit(&mut self, after: &str) -> WaitStatus {
        match self.wait_exit(WAIT) {
            Some(status) => status,
            None => panic!(
                "node {} still runs {WAIT:?} after {after}; the screen:\n{}",
                self.addr,
                self.screen()
            ),
        }
    }
}

impl Drop for PtyNode {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.process.wait();
        }
        if thread::panicking() {
            let raw = self.raw();
            let tail = &raw[raw.len().saturating_sub(600)..];
            eprintln!(
                "=== node {} (pid {}) screen:\n{}\n=== its last bytes:\n{}",
                self.addr,
                self.pid,
                self.screen(),
                tail.escape_ascii()
            );
        }
    }
}

/// What a terminal shows: every line from the top of the scrollback to
/// the cursor's line (rows that wrapped joined into one line, trailing
/// blanks dropped: the empty prompt is `>`), and where the cursor is.
#[derive(Debug, Clone)]
pub struct Screen {
    pub lines: Vec<String>,
    /// The cursor: line index and column.
    pub cursor: (usize, usize),
}

impl Screen {
    /// Renders `bytes` as a terminal of the size the node is told.
    pub fn render(bytes: &[u8]) -> Screen {
        let size = |n| std::num::NonZeroU16::new(n).expect("a size above 0");
        let mut parser = vt100::Parser::new(size(ROWS), size(COLS), SCROLLBACK);
        parser.process(bytes);
        let screen = parser.screen_mut();
        screen.set_scrollback(usize::MAX);
        let back = screen.scrollback();
        // (text, wrapped into the next row) of every row, top to bottom.
        let mut rows: Vec<(String, bool)> = Vec::new();
        let mut top = 0;
        while top < back {
            screen.set_scrollback(back - top);
            let take = usize::from(ROWS).min(back - top);
            for (row, text) in screen.rows(0, COLS).take(take).enumerate() {
                rows.push((text, screen.row_wrapped(row as u16)));
            }
            top += take;
        }
        screen.set_scrollback(0);
        for (row, text) in screen.rows(0, COLS).enumerate() {
            rows.push((text, screen.row_wrapped(row as u16)));
        }
        let (cursor_row, cursor_col) = screen.cursor_position();
        let cursor_row = back + usize::from(cursor_row);

        let mut lines = Vec::new();
        let mut cursor = (0, usize::from(cursor_col));
        let mut continued = false;
        for (at, (text, wrapped)) in rows.into_iter().enumerate() {
            if continued {
                let line = lines.len() - 1;
                let last: &mut String = lines.last_mut().expect("a line to continue");
                if at == cursor_row {
                    cursor = (line, last.len() + usize::from(cursor_col));
                }
                last.push_str(&text);
            } else {
                if at == cursor_row {
                    cursor.0 = lines.len();
                }
                lines.push(text);
            }
            continued = wrapped;
        }
        for line in &mut lines {
            line.truncate(line.trim_end().len());
        }
        while lines.len() > cursor.0 + 1 && lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        Screen { lines, cursor }
    }

    /// The line the cursor is on (where the prompt and what is typed are).
    pub fn cursor_line(&self) -> &str {
        self.lines.get(self.cursor.0).map_or("", String::as_str)
    }

    /// What is typed at the prompt on the cursor's line (see [`typed`]).
    pub fn editing(&self) -> Option<&str> {
        typed(self.cursor_line())
    }

    /// The first line for which `matches` holds.
    pub fn position(&self, matches: impl Fn(&str) -> bool) -> Option<usize> {
        self.lines.iter().position(|l| matches(l))
    }

    /// Whether a line is exactly `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

/// What a prompt line shows typed (`[peers 1, chats 3, pending 0] >
/// TEXT`); `None` for other lines.
pub fn typed(line: &str) -> Option<&str> {
    let status = line.strip_prefix("[peers ")?;
    let end = status.find(']')?;
    let rest = status[end + 1..].trim_start();
    if rest == ">" {
        return Some("");
    }
    rest.strip_prefix("> ")
}

impl std::fmt::Display for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (at, line) in self.lines.iter().enumerate() {
            let mark = if at == self.cursor.0 { '*' } else { '|' };
            writeln!(f, "{mark} {line}")?;
        }
        write!(
            f,
            "(cursor at line {}, column {})",
            self.cursor.0, self.cursor.1
        )
    }
}
