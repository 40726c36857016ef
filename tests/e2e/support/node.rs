//! [`Node`], a running `node` process under test, and [`run_to_exit`] for
//! the commands that end.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{WAIT, poll};

/// The `node` binary under test.
fn node_bin() -> &'static str {
    env!("CARGO_BIN_EXE_node")
}

/// A command running the `node` binary that dies with the test process,
/// even when the test is killed before its handles drop.
pub fn node_command() -> Command {
    program_command(node_bin())
}

/// The same program under its other name, `chatchain`, as
/// [`node_command`].
pub fn chatchain_command() -> Command {
    program_command(env!("CARGO_BIN_EXE_chatchain"))
}

fn program_command(bin: &str) -> Command {
    let mut command = Command::new(bin);
    // SAFETY: prctl(2) only; async-signal-safe in the forked child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// Runs `node ARGS` with stdin closed and waits (at most `timeout`, then
/// kills it and panics) for it to exit on its own: for commands that end,
/// such as bad flags or `verify`.
pub fn run_to_exit<I, S>(args: I, timeout: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_input(args, b"", timeout)
}

/// Starts `node ARGS` with stdin, stdout and stderr piped, and the log at
/// its default level.
pub fn spawn_piped<I, S>(args: I) -> Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    node_command()
        .args(args)
        .env_remove("NODE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node")
}

/// [`run_to_exit`] with `input` piped to stdin (then closed), as a script
/// would feed the node its commands.
pub fn run_with_input<I, S>(args: I, input: &[u8], timeout: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = node_command();
    command.args(args);
    run_command(command, input, timeout)
}

/// Runs `command` with `input` piped to stdin (then closed), stdout and
/// stderr piped and the log at its default level, and waits (at most
/// `timeout`, then kills it and panics) for it to exit.
pub fn run_command(mut command: Command, input: &[u8], timeout: Duration) -> Output {
    let mut child = command
        .env_remove("NODE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the program");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let input = input.to_vec();
    // On a thread: a node that stops reading must not block the test.
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
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

/// Runs `command` (a client subcommand) with stdin closed to its end,
/// within `timeout` (else kills it and panics): exit code, stdout,
/// stderr.
pub fn client_output(command: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a node client");
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = poll(timeout, || {
        child.try_wait().expect("waiting for the client")
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not exit within {timeout:?}");
    };
    let text = |pipe: JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&pipe.join().unwrap_or_default()).into_owned()
    };
    (status.code(), text(out), text(err))
}

/// Reads `pipe` to its end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// `node ARGS --data-dir DIR` to its end, within `timeout`: exit code,
/// stdout, stderr.
pub fn run_client(dir: &Path, args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    client_output(
        node_command().args(args).arg("--data-dir").arg(dir),
        timeout,
    )
}

/// A running `node` process: `--bind ADDR --port PORT --data-dir DIR
/// --threads 1` plus extra arguments (and `--no-http` unless they have
/// `--http`), stdin a pipe, stdout read line by
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
    /// The open-file limit (soft and hard) it runs under, if one is set.
    open_files: Option<u64>,
}

impl Node {
    /// Starts a node with a fresh, empty data directory and waits for its
    /// `listening on` line (panics, with its stderr, if it does not come).
    pub fn start(addr: Ipv4Addr, port: u16, args: &[&str]) -> Node {
        Node::start_with(addr, port, args, None)
    }

    /// [`Node::start`], under an open-file limit of `open_files` (soft and
    /// hard, as `ulimit -n` in a shell that then runs it).
    pub fn start_with_open_files(
        addr: Ipv4Addr,
        port: u16,
        args: &[&str],
        open_files: u64,
    ) -> Node {
        Node::start_with(addr, port, args, Some(open_files))
    }

    fn start_with(addr: Ipv4Addr, port: u16, args: &[&str], open_files: Option<u64>) -> Node {
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
            open_files,
        };
        node.spawn();
        node
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The sockets the running node holds open (entries of `/proc/PID/fd`
    /// that link to `socket:[…]`): listeners, connections, and connections
    /// kept to finish a reply.
    pub fn sockets(&self) -> usize {
        let pid = self.pid().expect("the node is running");
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}"))
            .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// The CPU time the running node has used so far, user and system, all
    /// its threads: `utime` + `stime` of `/proc/PID/stat` (fields 14 and
    /// 15, in clock ticks of `sysconf(_SC_CLK_TCK)`, usually 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let pid = self.pid().expect("the node is running");
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
        // Field 2, the command, is in parentheses and may hold spaces: the
        // fields after its closing parenthesis start with field 3.
        let after = &stat[stat.rfind(')').expect("a command field") + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |field: usize| -> u64 {
            fields[field - 3]
                .parse()
                .unwrap_or_else(|e| panic!("field {field} of {stat:?}: {e}"))
        };
        // SAFETY: sysconf(3) reads a constant; no memory involved.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert!(per_second > 0, "sysconf(_SC_CLK_TCK) = {per_second}");
        Duration::from_secs_f64((ticks(14) + ticks(15)) as f64 / per_second as f64)
    }

    /// `--no-http` unless the arguments say where to serve the page: the
    /// tests of other doors than the page run without it.
    fn page_flag(&self) -> Option<&'static str> {
        (!self.args.iter().any(|a| a == "--http")).then_some("--no-http")
    }

    /// The page's URL with its token, from the `the page: URL` line of the
    /// current run, printed once its port listens (waits for it; panics if
    /// it does not come).
    pub fn page_url(&self) -> String {
        let url = poll(WAIT, || {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .rev()
                .find_map(|(_, line)| line.strip_prefix("the page: "))
                .map(str::to_string)
        });
        url.unwrap_or_else(|| panic!("node {} printed no page URL", self.addr))
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
        let mut command = node_command();
        if let Some(open_files) = self.open_files {
            let limit = libc::rlimit {
                rlim_cur: open_files,
                rlim_max: open_files,
            };
            // SAFETY: setrlimit(2) only, with a valid rlimit;
            // async-signal-safe in the forked child.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
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
            .args(self.page_flag())
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
        read_lines(stdout, done, move |text| {
            seen.lock().unwrap().push((Instant::now(), text.clone()));
            // The receiver is gone after a restart; keep reading.
            let _ = tx.send(text);
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

    /// Sends `chat TEXT` through the control socket; returns once the node
    /// has saved the chat on disk.
    pub fn chat(&mut self, text: &str) {
        let reply = self.ask(&serde_json::json!({"command": "chat", "text": text}));
        assert_eq!(
            reply["reply"], "saved",
            "node {}: chat {text:?}: {reply}",
            self.addr
        );
    }

    /// One request to the node's control socket (docs/CONTROL.md), and its
    /// answer; panics, with the node's output, if none comes within
    /// [`WAIT`].
    pub fn ask(&self, request: &Value) -> Value {
        let socket = self.data_dir().join("control.sock");
        let answer = (|| -> std::io::Result<String> {
            let mut stream = UnixStream::connect(&socket)?;
            stream.set_read_timeout(Some(WAIT))?;
            stream.set_write_timeout(Some(WAIT))?;
            stream.write_all(format!("{request}\n").as_bytes())?;
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line)?;
            Ok(line)
        })();
        let parsed = answer
            .as_ref()
            .ok()
            .and_then(|line| serde_json::from_str::<Value>(line).ok());
        parsed.unwrap_or_else(|| {
            panic!(
                "node {}: no answer to {request} on {}: {answer:?}\nstdout:\n{}\nstderr:\n{}",
                self.addr,
                socket.display(),
                self.stdout().join("\n"),
                self.stderr()
            )
        })
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

    /// Follows the node's history over the control socket (`hist
    /// --follow`): every change, timestamped as it arrives.
    pub fn follow(&self) -> Follower {
        let socket = self.data_dir().join("control.sock");
        let mut stream = UnixStream::connect(&socket)
            .unwrap_or_else(|e| panic!("node {}: {}: {e}", self.addr, socket.display()));
        stream
            .write_all(b"{\"command\":\"hist\",\"n\":0,\"follow\":true}\n")
            .expect("asking to follow");
        let events: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let reader = stream.try_clone().expect("cloning a socket");
        let seen = Arc::clone(&events);
        let thread = thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                let at = Instant::now();
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    seen.lock().unwrap().push((at, event));
                }
            }
        });
        Follower {
            events,
            stream,
            thread: Some(thread),
        }
    }

    /// The node's whole history: the chat texts in order (index `i` at
    /// position `i`), asked over the control socket (which sends at most
    /// 100,000 chats: the indexes tell a longer history).
    pub fn hist(&mut self) -> Vec<String> {
        let reply = self.ask(&serde_json::json!({"command": "hist", "n": 100_000}));
        let chats = reply["chats"]
            .as_array()
            .unwrap_or_else(|| panic!("node {}: not a hist reply: {reply}", self.addr));
        chats
            .iter()
            .enumerate()
            .map(|(i, chat)| {
                assert_eq!(chat["index"], i, "node {}: {reply}", self.addr);
                chat["text"].as_str().expect("a text").to_string()
            })
            .collect()
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
        poll(WAIT, || (self.status()["history"] == chats).then_some(())).is_some()
    }

    /// The node's `status` reply (docs/CONTROL.md): `history`, `stored`,
    /// `peers`, `pending`, `sent`, `endings`...
    pub fn status(&mut self) -> Value {
        let reply = self.ask(&serde_json::json!({"command": "status"}));
        assert_eq!(reply["reply"], "status", "node {}: {reply}", self.addr);
        reply
    }

    /// Connections the node closed since start for endings of `kind`
    /// (`undecodable`, `read timeout`, ...).
    pub fn closed(&mut self, kind: &str) -> u64 {
        self.status()["endings"][kind].as_u64().unwrap_or(0)
    }

    /// The node's connections: address and direction (`inbound`,
    /// `outbound`, with `*` for a second connection with the same address).
    pub fn peers(&mut self) -> Vec<(Ipv4Addr, String)> {
        self.peer_rows()
            .iter()
            .map(|row| {
                let addr = row["addr"].as_str().and_then(|a| a.parse().ok());
                let mut direction = row["direction"].as_str().unwrap_or("?").to_string();
                if row["duplicate"] == true {
                    direction.push('*');
                }
                (addr.expect("an address"), direction)
            })
            .collect()
    }

    /// The node's connections, each the JSON row of its `peers` reply
    /// (docs/CONTROL.md): `addr`, `direction`, `dialect` (`relay` or
    /// `standard`), `duplicate`, `bytes_in`, `bytes_out`...
    pub fn peer_rows(&mut self) -> Vec<Value> {
        let reply = self.ask(&serde_json::json!({"command": "peers"}));
        match reply["peers"].as_array() {
            Some(rows) => rows.clone(),
            None => panic!("node {}: not a peers reply: {reply}", self.addr),
        }
    }

    /// The addresses `peers` lists.
    pub fn peer_addrs(&mut self) -> BTreeSet<Ipv4Addr> {
        self.peers().into_iter().map(|(addr, _)| addr).collect()
    }

    /// Every stdout line seen so far, of every run.
    pub fn stdout(&self) -> Vec<String> {
        self.timed_stdout()
            .into_iter()
            .map(|(_, line)| line)
            .collect()
    }

    /// Every stdout line seen so far, with the moment it was read.
    pub fn timed_stdout(&self) -> Vec<(Instant, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// The last [`TAIL_LINES`] lines of the node's stdout and log, for a
    /// failure message, after the path of a file that keeps all of them
    /// (under [`kept_logs`]).
    pub fn log_tail(&self) -> String {
        let (stdout, stderr) = (self.stdout().join("\n"), self.stderr());
        let dir = kept_logs();
        let file = dir.join(format!("node-{}-{}.log", self.addr, std::process::id()));
        let kept = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&file, format!("=== stdout\n{stdout}\n=== stderr\n{stderr}")));
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        };
        format!(
            "full output {}\n--- last {TAIL_LINES} lines of stdout:\n{}\n--- last {TAIL_LINES} lines of stderr:\n{}",
            match kept {
                Ok(()) => format!("in {}", file.display()),
                Err(e) => format!("not kept ({e})"),
            },
            tail(&stdout),
            tail(&stderr)
        )
    }

    /// Everything the node wrote on stderr, every run of it.
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

/// Kills and reaps the process in `child`, if any (what every node a test
/// started gets when it is dropped).
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Node {
    /// Kills the node. When the test is failing, keeps its output in
    /// [`kept_logs`] and prints where, with the last [`TAIL_LINES`] of it:
    /// a debug log runs to tens of thousands of lines, which would bury
    /// the test's reason.
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if thread::panicking() {
            eprintln!(
                "=== node {} (data in {}): {}",
                self.addr,
                self.data_dir().display(),
                self.log_tail()
            );
        }
    }
}

/// Reads `stdout` line by line on a thread of its own, handing each line
/// (without its end) to `line`, and sets `done` when it ends.
pub fn read_lines(
    stdout: impl Read + Send + 'static,
    done: Arc<AtomicBool>,
    mut line: impl FnMut(String) + Send + 'static,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => {
                    done.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(_) => line(
                    String::from_utf8_lossy(&bytes)
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
            }
        }
    });
}

/// Lines of a node's output a failing test prints.
pub const TAIL_LINES: usize = 50;

/// Where the full output of the nodes of a failing test is kept:
/// `target/e2e-logs/` beside the test binary.
pub fn kept_logs() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/e2e-HASH -> target/e2e-logs
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("e2e-logs")
}

/// A subscription to a node's history ([`Node::follow`]): the events of
/// docs/CONTROL.md, each with the moment it was read.
pub struct Follower {
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
    stream: UnixStream,
    thread: Option<thread::JoinHandle<()>>,
}

impl Follower {
    /// The first event for which `found` holds, and when it came; waits at
    /// most `timeout`.
    pub fn wait(&self, timeout: Duration, found: impl Fn(&Value) -> bool) -> Option<Instant> {
        poll(timeout, || {
            let events = self.events.lock().unwrap();
            events.iter().find(|(_, e)| found(e)).map(|&(at, _)| at)
        })
    }

    /// The history as the events so far show it, each chat once in order:
    /// a `chat` event must come with the next index, a `switched` one takes
    /// back the chats from its `from` on, a `received` one stands for chats
    /// not sent one by one (`None` here). Panics on an event out of order.
    pub fn shown(&self) -> Vec<Option<String>> {
        let mut shown: Vec<Option<String>> = Vec::new();
        for (_, event) in self.events.lock().unwrap().iter() {
            let at = |field: &str| event[field].as_u64().expect("an index") as usize;
            match event["event"].as_str() {
                Some("chat") => {
                    assert_eq!(at("index"), shown.len(), "out of order: {event}");
                    shown.push(event["text"].as_str().map(str::to_string));
                }
                Some("switched") => {
                    assert!(at("from") <= shown.len(), "switch past the end: {event}");
                    shown.truncate(at("from"));
                }
                Some("received") => {
                    assert_eq!(at("from"), shown.len(), "out of order: {event}");
                    shown.resize(at("to") + 1, None);
                }
                _ => {}
            }
        }
        shown
    }

    /// When chat `text` entered the history.
    pub fn chat_at(&self, text: &str, timeout: Duration) -> Option<Instant> {
        self.wait(timeout, |e| e["event"] == "chat" && e["text"] == text)
    }

    /// When the history first held at least `len` chats (a `chat` event
    /// for index `len - 1` or later, or a `received` one covering it).
    pub fn len_at(&self, len: usize, timeout: Duration) -> Option<Instant> {
        let last = len as u64 - 1;
        self.wait(timeout, |e| match e["event"].as_str() {
            Some("chat") => e["index"].as_u64().is_some_and(|i| i >= last),
            Some("received") => e["to"].as_u64().is_some_and(|to| to >= last),
            _ => false,
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
