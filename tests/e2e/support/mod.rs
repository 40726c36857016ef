//! Shared helpers for the end-to-end tests: real `node` processes on
//! loopback ([`Node`]), a raw protocol client ([`Peer`]), and a scheme that
//! gives every test its own addresses and port ([`Net`]).
//!
//! Every wait here is bounded: a test that goes wrong fails with the
//! node's output and logs, it never hangs. Every process started here is
//! killed when its handle drops.
//!
//! Address plan: module F, test T, host H is `127.F.T.H` on port
//! `47100 + 50 * (F - 1) + T`. Ids: the test modules `node` 1,
//! `convergence` 2 and `hostile` 3, `benches/network.rs` 17 (`verify`
//! starts no node); give each new module the next free id (ports
//! 47100..=47999 leave room for 18 modules of 50 tests). Hosts 1..=99 are
//! nodes by convention, 100..=254 test peers.

// Each test module uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use wire::{Decoder, History, Message};

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

/// The `node` binary under test.
pub fn node_bin() -> &'static str {
    env!("CARGO_BIN_EXE_node")
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The PROTOCOL.md test vector: the ArchiveResponse bytes and its history.
pub fn vector() -> (Vec<u8>, History) {
    let bytes = fs::read(fixture("vector.bin")).expect("reading tests/fixtures/vector.bin");
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

/// A history's chat texts as `hist` prints them (non-printable bytes
/// escaped).
pub fn texts(history: &History) -> Vec<String> {
    history
        .iter()
        .map(|c| c.text().escape_ascii().to_string())
        .collect()
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

    /// Starts a node on `addr(host)` (see [`Node::start`]).
    pub fn node(&self, host: u8, args: &[&str]) -> Node {
        Node::start(self.addr(host), self.port(), args)
    }

    /// A raw client from `addr(from)` to the node at `addr(to)`.
    pub fn peer(&self, from: u8, to: u8) -> Peer {
        Peer::connect(self.addr(from), self.addr(to), self.port())
    }

    /// The history of the node at `addr(to)`, asked over the wire by a
    /// short-lived client at `addr(from)`.
    pub fn archive(&self, from: u8, to: u8) -> History {
        Peer::archive(self.addr(from), self.addr(to), self.port())
    }
}

/// Runs `node ARGS` with stdin closed and waits (at most `timeout`, then
/// kills it and panics) for it to exit on its own: for commands that end,
/// such as bad flags or `verify`.
pub fn run_to_exit<I, S>(args: I, timeout: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(node_bin())
        .args(args)
        .env_remove("NODE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = poll(timeout, || child.try_wait().expect("waiting for node"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = err.join().unwrap_or_default();
        panic!(
            "node did not exit within {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A running `node` process: `--bind ADDR --port PORT --data-dir DIR
/// --threads 1` plus extra arguments, stdin a pipe, stdout read line by
/// line on a thread, stderr (logs at `info` unless the arguments say
/// otherwise) in a file of its temporary directory. Killed on drop; on a
/// failing test its output and logs are printed.
pub struct Node {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// The line `listening on ...` of the current run.
    pub banner: String,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line of every run, in order.
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The current run's stdout has ended and every line is in `seen`.
    stdout_done: Arc<AtomicBool>,
    runs: usize,
    marks: u64,
}

impl Node {
    /// Starts a node with a fresh, empty data directory and waits for its
    /// `listening on` line (panics, with its stderr, if it does not come).
    pub fn start(addr: Ipv4Addr, port: u16, args: &[&str]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("node-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let (_, lines) = mpsc::channel();
        let mut node = Node {
            addr,
            port,
            banner: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            stdin: None,
            lines,
            seen: Arc::default(),
            stdout_done: Arc::default(),
            runs: 0,
            marks: 0,
        };
        node.spawn();
        node
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The extra arguments of the current run.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn stderr_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("stderr-{run}.log"))
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "node {} is already running",
            self.addr
        );
        self.runs += 1;
        let stderr = fs::File::create(self.stderr_path(self.runs)).expect("creating stderr log");
        let mut command = Command::new(node_bin());
        // The node dies with the test process, even when the test is killed
        // before its handles drop.
        // SAFETY: prctl(2) only; async-signal-safe in the forked child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .arg("--bind")
            .arg(self.addr.to_string())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--threads")
            .arg("1")
            .args(&self.args)
            .env("NODE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting node");
        let stdout = child.stdout.take().expect("piped stdout");
        self.stdin = child.stdin.take();
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        self.lines = rx;
        let seen = Arc::clone(&self.seen);
        let done = Arc::new(AtomicBool::new(false));
        self.stdout_done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => {
                        done.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        seen.lock().unwrap().push((Instant::now(), text.clone()));
                        // The receiver is gone after a restart; keep reading.
                        let _ = tx.send(text);
                    }
                }
            }
        });
        let banner = self.wait_line(|l| l.starts_with("listening on "), WAIT);
        self.banner = banner.unwrap_or_else(|| {
            panic!(
                "node {} did not start listening; stderr:\n{}",
                self.addr,
                self.stderr()
            )
        });
    }

    /// Sends one line to the prompt.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    /// Sends raw bytes and a newline to the prompt (for non-UTF-8 input).
    pub fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("the node's stdin is open");
        let written = stdin
            .write_all(line)
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush());
        if let Err(e) = written {
            panic!(
                "writing to node {}'s stdin: {e}; stderr:\n{}",
                self.addr,
                self.stderr()
            );
        }
    }

    /// Types `chat TEXT` at the prompt and waits until the node has queued
    /// it (and saved it on disk).
    pub fn chat(&mut self, text: &str) {
        self.send(&format!("chat {text}"));
        self.expect_line(
            |l| l.starts_with("queued for mining ("),
            WAIT,
            "acknowledging the chat",
        );
    }

    /// Closes the node's stdin (it keeps running without a prompt).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line matching `matches`, consuming the lines before
    /// it; `None` after `timeout` or once the node's stdout has ended.
    pub fn wait_line(
        &mut self,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Like [`Node::wait_line`], but panics (with the node's output) when
    /// no such line comes: `what` says what was awaited.
    pub fn expect_line(
        &mut self,
        matches: impl FnMut(&str) -> bool,
        timeout: Duration,
        what: &str,
    ) -> String {
        match self.wait_line(matches, timeout) {
            Some(line) => line,
            None => panic!(
                "node {}: no line {what} within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.addr,
                self.stdout().join("\n"),
                self.stderr()
            ),
        }
    }

    /// Drops the lines received so far from the wait queue.
    pub fn skip_lines(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// The output of `commands`, run one after the other: every stdout line
    /// printed between them and the end of the last, found by sending an
    /// unknown command before and after them (its error line marks the
    /// spot: the prompt answers in order). Lines printed meanwhile for
    /// other reasons (chats arriving) are included.
    pub fn query(&mut self, commands: &[&str]) -> Vec<String> {
        self.marks += 1;
        let open = format!("zzopen{}", self.marks);
        let close = format!("zzclose{}", self.marks);
        self.send(&open);
        for command in commands {
            self.send(command);
        }
        self.send(&close);
        let quoted = |mark: &str| format!("'{mark}'");
        let (open_q, close_q) = (quoted(&open), quoted(&close));
        self.expect_line(|l| l.contains(&open_q), WAIT, &format!("answering {open}"));
        let mut out = Vec::new();
        self.expect_line(
            |l| {
                if l.contains(&close_q) {
                    return true;
                }
                out.push(l.to_string());
                false
            },
            WAIT,
            &format!("answering {commands:?}"),
        );
        out
    }

    /// The node's whole history, as `hist` prints it: the chat texts in
    /// order (index `i` at position `i`).
    ///
    /// `hist` and `status` are asked together; the `#i` lines of `hist` are
    /// the run from its `#0` line (chats that arrive meanwhile are printed
    /// in the same form, before `hist`'s lines or after), and the answer
    /// counts only if `status` reports that many chats.
    pub fn hist(&mut self) -> Vec<String> {
        let mut last = Vec::new();
        for _ in 0..10 {
            let lines = self.query(&["hist 1000000", "status"]);
            let status_at = lines
                .iter()
                .rposition(|l| l.starts_with("address:"))
                .unwrap_or_else(|| panic!("no status in {lines:?}"));
            let count = status_field(&lines[status_at..], "history")
                .and_then(|h| h.split(' ').next()?.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no history count in {lines:?}"));
            let before = &lines[..status_at];
            let start = before
                .iter()
                .rposition(|l| l.starts_with("#0 ") || l == "the history is empty");
            let Some(start) = start else {
                panic!("no hist output in {lines:?}")
            };
            let mut chats = Vec::new();
            for line in &before[start..] {
                let Some(text) = line.strip_prefix(&format!("#{} ", chats.len())) else {
                    break;
                };
                // A chat mined here after `hist` answered.
                let text = match text.rfind(" (mined: ") {
                    Some(at) if text.ends_with(" MH/s)") => &text[..at],
                    _ => text,
                };
                chats.push(text.to_string());
            }
            if chats.len() == count {
                return chats;
            }
            last = lines;
            thread::sleep(Duration::from_millis(100));
        }
        panic!("node {}: hist never matched status: {last:?}", self.addr)
    }

    /// Polls [`Node::hist`] until `done` holds; returns the first history
    /// for which it does, or the last one seen after `timeout`.
    pub fn wait_hist(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hist = self.hist();
            if done(&hist) || Instant::now() >= deadline {
                return hist;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `status` until the history holds `chats` chats; false after
    /// [`WAIT`].
    pub fn wait_history_len(&mut self, chats: usize) -> bool {
        let prefix = format!("{chats} chats");
        poll(WAIT, || {
            let status = self.status();
            status_field(&status, "history")
                .is_some_and(|h| h.starts_with(&prefix))
                .then_some(())
        })
        .is_some()
    }

    /// The lines of `status`.
    pub fn status(&mut self) -> Vec<String> {
        let lines = self.query(&["status"]);
        let at = lines
            .iter()
            .rposition(|l| l.starts_with("address:"))
            .unwrap_or_else(|| panic!("no status in {lines:?}"));
        lines[at..].to_vec()
    }

    /// The rows of `peers`: address and direction (`inbound`, `outbound`,
    /// with `*` for a second connection with the same address).
    pub fn peers(&mut self) -> Vec<(Ipv4Addr, String)> {
        self.query(&["peers"])
            .iter()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let addr = words.next()?.parse().ok()?;
                Some((addr, words.next()?.to_string()))
            })
            .collect()
    }

    /// The addresses `peers` lists.
    pub fn peer_addrs(&mut self) -> BTreeSet<Ipv4Addr> {
        self.peers().into_iter().map(|(addr, _)| addr).collect()
    }

    /// Every stdout line seen so far, of every run.
    pub fn stdout(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Every stdout line seen so far, with the moment it was read.
    pub fn timed_stdout(&self) -> Vec<(Instant, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Everything the node wrote to stderr, every run.
    pub fn stderr(&self) -> String {
        (1..=self.runs)
            .map(|run| {
                let text = fs::read_to_string(self.stderr_path(run)).unwrap_or_default();
                format!("--- run {run} ---\n{text}")
            })
            .collect()
    }

    /// Sends `signal` to the node (if it is running).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Waits at most `timeout` for the node to exit; `None` if it is still
    /// running then. Once it has exited, its last stdout lines are in
    /// [`Node::stdout`] and the wait queue.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = poll(timeout, || child.try_wait().expect("waiting for node"))?;
        self.child = None;
        self.stdin = None;
        let drained = poll(WAIT, || {
            self.stdout_done.load(Ordering::SeqCst).then_some(())
        });
        assert!(
            drained.is_some(),
            "node {}: stdout still open after exit",
            self.addr
        );
        Some(status)
    }

    /// SIGTERM, then waits for the exit (panics if it does not come).
    pub fn sigterm(&mut self) -> ExitStatus {
        self.stop(libc::SIGTERM)
    }

    /// SIGKILL, then waits for the exit.
    pub fn sigkill(&mut self) -> ExitStatus {
        self.stop(libc::SIGKILL)
    }

    fn stop(&mut self, signal: i32) -> ExitStatus {
        self.signal(signal);
        match self.wait_exit(WAIT) {
            Some(status) => status,
            None => panic!(
                "node {} did not stop on signal {signal}; stderr:\n{}",
                self.addr,
                self.stderr()
            ),
        }
    }

    /// Starts the node again, same address, data directory and arguments.
    /// It must have stopped.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Starts the node again with other extra arguments.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "=== node {} (data in {}) stdout:\n{}\n=== stderr:\n{}",
                self.addr,
                self.data_dir().display(),
                self.stdout().join("\n"),
                self.stderr()
            );
        }
    }
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix(" kB")?
            .parse()
            .ok()
    })
}

/// The value of a `status` line, e.g. `status_field(&lines, "history")`.
pub fn status_field<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// A raw protocol client over TCP from a chosen loopback address.
#[derive(Debug)]
pub struct Peer {
    stream: TcpStream,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    decoder: Decoder,
    /// Bytes read but not yet decoded.
    unread: Vec<u8>,
    /// Raw bytes of the message being decoded.
    current: Vec<u8>,
    closed: bool,
}

impl Peer {
    /// Connects from `from` (any free port) to `to:port`; panics after 5 s.
    pub fn connect(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> Peer {
        Peer::try_connect(from, to, port)
            .unwrap_or_else(|e| panic!("connecting {from} -> {to}:{port}: {e}"))
    }

    pub fn try_connect(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> io::Result<Peer> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
        let remote = SocketAddrV4::new(to, port);
        socket.connect_timeout(&SocketAddr::V4(remote).into(), Duration::from_secs(5))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        let SocketAddr::V4(local) = stream.local_addr()? else {
            unreachable!("an IPv4 socket")
        };
        Ok(Peer {
            stream,
            local,
            remote,
            decoder: Decoder::default(),
            unread: Vec::new(),
            current: Vec::new(),
            closed: false,
        })
    }

    /// The history of the node at `to:port`: connects from `from`, sends
    /// ArchiveRequest, reads the ArchiveResponse (panics if none comes
    /// within [`WAIT`]) and closes.
    pub fn archive(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> History {
        let mut peer = Peer::connect(from, to, port);
        peer.send(&Message::ArchiveRequest);
        match peer.recv_archive(WAIT) {
            Some((history, _)) => history,
            None => panic!("{to}:{port} sent no ArchiveResponse to {from}"),
        }
    }

    pub fn send(&mut self, message: &Message) {
        self.send_raw(&message.to_bytes());
    }

    /// Writes bytes as they are (a message, part of one, or garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .set_write_timeout(Some(WAIT))
            .expect("setting a write timeout");
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{} -> {}: write failed: {e}", self.local, self.remote));
    }

    /// The next message and its exact bytes; `None` after `timeout` or when
    /// the node closed the connection (see [`Peer::is_closed`]). Panics on
    /// bytes that do not decode.
    pub fn recv_raw(&mut self, timeout: Duration) -> Option<(Message, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0; 64 * 1024];
        loop {
            if !self.unread.is_empty() {
                let mut input = &self.unread[..];
                let result = self.decoder.push(&mut input);
                let used = self.unread.len() - input.len();
                self.current.extend_from_slice(&self.unread[..used]);
                self.unread.drain(..used);
                match result {
                    Ok(Some(message)) => return Some((message, std::mem::take(&mut self.current))),
                    Ok(None) => {}
                    Err(e) => panic!("{} sent undecodable bytes: {e}", self.remote),
                }
            }
            if self.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("setting a read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next message; `None` after `timeout` or on close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        self.recv_raw(timeout).map(|(message, _)| message)
    }

    /// The next message for which `wanted` holds, skipping others, with its
    /// bytes; `None` after `timeout` or on close.
    pub fn recv_until(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> Option<(Message, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (message, bytes) = self.recv_raw(left)?;
            if wanted(&message) {
                return Some((message, bytes));
            }
        }
    }

    /// The next ArchiveResponse (others skipped) and its bytes.
    pub fn recv_archive(&mut self, timeout: Duration) -> Option<(History, Vec<u8>)> {
        match self.recv_until(timeout, |m| matches!(m, Message::ArchiveResponse(_)))? {
            (Message::ArchiveResponse(history), bytes) => Some((history, bytes)),
            _ => unreachable!("filtered"),
        }
    }

    /// Reads and drops whatever arrives for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Message> {
        let mut got = Vec::new();
        while let Some(message) = self.recv(quiet) {
            got.push(message);
        }
        got
    }

    /// The node closed the connection (seen by a `recv`).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
