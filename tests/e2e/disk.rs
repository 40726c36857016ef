//! A full disk (issue 18): a write that fails midway must never leave a
//! partial record that a later append joins. Each test runs a real node
//! on a 1 MiB tmpfs in a private mount namespace, fills that file system
//! to the last byte while the node runs, lets an append fail with ENOSPC,
//! frees the space, goes on, and restarts the node on the same data
//! directory with no peer:
//!
//! 1. `own.log` (the field's case): sixteen chats bring `own.log` to
//!    between 60 and 200 bytes before the end of a 4096-byte page; the
//!    file system is filled; `chat TORN-` + 240 `t` must be answered "not
//!    saved … No space left on device" and leave not one byte of itself in
//!    `own.log`; the filler is deleted, `chat after-space-came-back` is
//!    typed and mined, SIGTERM. Then `own.log` must be whole (its header,
//!    and every record framed by a valid CRC-32), and the restarted node
//!    must say nothing is damaged, mine nothing, and hold every
//!    acknowledged chat once; the only chat with `TORN` in it anywhere
//!    (either run's output, the history) is the one typed, whole: it was
//!    not saved, but is mined all the same by design ("kept in memory
//!    only"), so it is in the history once.
//! 2. `history.bin`: chats arriving from a peer (a second node, outside
//!    the namespace) bring `history.bin` to 60..200 bytes before a page
//!    end; the file system is filled; the next arriving chat's history
//!    append fails (the node warns), and must leave `history.bin` a whole
//!    number of chats; space is freed, another chat arrives, the node is
//!    stopped (the peer too) and restarted alone: no note of dropped bytes
//!    or damage, and its history is every chat once, in order.
//!
//! Mounting a tmpfs in a mount namespace of its own takes root: a holder
//! process (`unshare --mount --propagation private`, which mounts the
//! tmpfs on an empty temporary directory and then sleeps) keeps the
//! namespace; each node run enters it (`setns(2)` before its exec), so that
//! both runs see the same tmpfs, and dies with the test
//! (`PR_SET_PDEATHSIG`), as does the holder. The test reaches the files
//! through `/proc/HOLDER/root/DIR/...`. Without root, `unshare` or
//! `mount` on PATH, or when the namespace or the mount is refused (a
//! container without CAP_SYS_ADMIN), a test prints `disk: skipped: WHY`
//! and passes.
//!
//! Address plan (see `support`): module 11.

use std::env;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Net, WAIT, kill_child, node_command, poll, read_lines, shared_cpu};

/// This module's id in the address plan of `support`.
const FILE: u8 = 11;
/// The page size of the tmpfs (x86-64, aarch64 with 4 KiB pages): its
/// space is counted in pages.
const PAGE: u64 = 4096;
/// The field's window: the file ends this many bytes before a page
/// boundary, so that the next record fits partly.
const ROOM: std::ops::RangeInclusive<u64> = 60..=200;
/// Where the test aims in [`ROOM`].
const ROOM_AIM: u64 = 130;
/// How long the holder of the namespace lives at most.
const HOLDER_SECONDS: u32 = 600;
/// The header line of `own.log` (version 2, with CRC-32s).
const OWN_HEADER: &str = "chatchain own.log 2";
/// Bytes of a chat on the wire beyond its text: length byte, code, digest.
const CHAT_OVERHEAD: u64 = wire::CHAT_OVERHEAD as u64;

// ---------------------------------------------------------------------
// Whether the tests can run.

/// Why these tests cannot run here, if they cannot: `euid` must be 0, and
/// `unshare` and `mount` on `path` (a PATH value).
fn missing(euid: u32, path: &OsStr) -> Option<String> {
    if euid != 0 {
        return Some(format!(
            "not running as root (euid {euid}); mounting a tmpfs in a mount namespace needs it"
        ));
    }
    ["unshare", "mount"]
        .iter()
        .find(|tool| !on_path(path, tool))
        .map(|tool| format!("{tool} not found on PATH (apt-get install util-linux)"))
}

/// Whether an executable file named `tool` is in a directory of `path`.
fn on_path(path: &OsStr, tool: &str) -> bool {
    env::split_paths(path).any(|dir| {
        fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[test]
fn skips_without_root_or_tools() {
    let _cpu = shared_cpu();
    let bin = tempfile::tempdir().expect("a temporary directory");
    let path = bin.path().as_os_str();
    assert!(missing(1000, path).is_some_and(|why| why.contains("not running as root")));
    assert_eq!(
        missing(0, path).as_deref(),
        Some("unshare not found on PATH (apt-get install util-linux)")
    );
    let tool = |name: &str| {
        let file = bin.path().join(name);
        fs::write(&file, "#!/bin/sh\n").expect("writing a fake tool");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    tool("unshare");
    assert_eq!(
        missing(0, path).as_deref(),
        Some("mount not found on PATH (apt-get install util-linux)")
    );
    tool("mount");
    assert_eq!(missing(0, path), None);
}

// ---------------------------------------------------------------------
// The tmpfs and the nodes in its namespace.

/// A 1 MiB tmpfs mounted in a private mount namespace, kept by a holder
/// process; unmounted when the holder (and every node in it) is gone.
struct Tmpfs {
    holder: Child,
    /// The mount point: an empty directory in the test's own namespace.
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it, or prints `disk: skipped: WHY` (the caller returns).
    fn mount_or_skip() -> Option<Tmpfs> {
        Tmpfs::mount()
            .inspect_err(|why| println!("disk: skipped: {why}"))
            .ok()
    }

    /// Mounts it, or says why it cannot (the caller skips).
    fn mount() -> Result<Tmpfs, String> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        if let Some(why) = missing(euid, &env::var_os("PATH").unwrap_or_default()) {
            return Err(why);
        }
        let dir = tempfile::Builder::new()
            .prefix("disk-")
            .tempdir()
            .expect("a temporary directory");
        let script = format!(
            "mount -t tmpfs -o size=1m chatchain-disk \"$1\" && echo mounted && exec sleep {HOLDER_SECONDS}"
        );
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl(2) only; async-signal-safe in the forked child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut holder = command
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let stdout = holder.stdout.take().expect("a piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        if rx.recv_timeout(WAIT).is_ok_and(|line| line == "mounted\n") {
            return Ok(Tmpfs { holder, dir });
        }
        let _ = holder.kill();
        let status = holder.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = holder.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Err(format!(
            "no tmpfs in a private mount namespace ({status:?}): {}",
            stderr.trim()
        ))
    }

    fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// The mount point, as a path in the namespace.
    fn inside(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A file of the tmpfs, as a path the test can open from its own
    /// namespace.
    fn path(&self, rel: &str) -> PathBuf {
        let root = PathBuf::from(format!("/proc/{}/root", self.holder_pid()));
        let inside = self.inside(rel);
        root.join(inside.strip_prefix("/").expect("an absolute path"))
    }

    /// Fills the file system to its last byte with a file `filler`;
    /// returns its size. Panics unless the last write fails with ENOSPC.
    fn fill(&self) -> u64 {
        let path = self.path("filler");
        let mut file =
            File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut written = 0;
        for chunk in [64 * 1024, 4096, 1] {
            let block = vec![b'F'; chunk];
            loop {
                match file.write(&block) {
                    Ok(0) => panic!("writing {}: wrote nothing", path.display()),
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("writing {}: {e}", path.display()),
                }
                assert!(written <= 2 << 20, "the filler outgrew a 1 MiB tmpfs");
            }
        }
        written
    }

    /// Deletes the filler: the space comes back.
    fn unfill(&self) {
        let path = self.path("filler");
        fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// A file's size (0 when it does not exist).
    fn size(&self, rel: &str) -> u64 {
        fs::metadata(self.path(rel)).map_or(0, |m| m.len())
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_default()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A `node` running in a [`Tmpfs`]'s namespace with its data directory
/// `DIR/data` there, stdin and stdout piped (stdout read line by line on
/// a thread), stderr in a file; restartable. Killed on drop; on a failing
/// test its output is printed.
struct NsNode {
    net: Net,
    holder: u32,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Lines of this run received but not matched yet, in order: a chat
    /// may be mined before the answer that it was saved is printed.
    unmatched: Vec<String>,
    /// Every stdout line: the run (1, 2, ...) and the line.
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    stdout_done: Arc<AtomicBool>,
    runs: usize,
    logs: tempfile::TempDir,
}

impl NsNode {
    /// Starts `node --bind 127.11.T.1 --port P --data-dir DIR/data
    /// --threads 1 ARGS` in `tmpfs`'s namespace, and waits for its
    /// `listening on` line.
    fn start(tmpfs: &Tmpfs, net: Net, args: &[&str]) -> NsNode {
        let (_, lines) = mpsc::channel();
        let mut node = NsNode {
            net,
            holder: tmpfs.holder_pid(),
            data_dir: tmpfs.inside("data"),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            stdin: None,
            lines,
            unmatched: Vec::new(),
            seen: Arc::default(),
            stdout_done: Arc::default(),
            runs: 0,
            logs: tempfile::tempdir().expect("a temporary directory"),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the node is still running");
        self.runs += 1;
        let run = self.runs;
        // Entered by the child between fork and exec; closed (CLOEXEC) by
        // the exec.
        let ns_path = format!("/proc/{}/ns/mnt", self.holder);
        let ns = File::open(&ns_path).unwrap_or_else(|e| panic!("opening {ns_path}: {e}"));
        let fd = ns.as_raw_fd();
        let stderr = File::create(self.stderr_path(run)).expect("a file for stderr");
        let mut command = node_command();
        // SAFETY: setns(2) only, on a descriptor the parent keeps open
        // until spawn returns; the forked child is single-threaded, as
        // entering a mount namespace requires.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        let mut child = command
            .arg("--bind")
            .arg(self.net.addr(1).to_string())
            .arg("--port")
            .arg(self.net.port().to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--threads", "1"])
            .args(&self.args)
            .env_remove("NODE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting node in the namespace");
        drop(ns);
        self.stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("a piped stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        self.lines = rx;
        self.unmatched.clear();
        let seen = Arc::clone(&self.seen);
        let done = Arc::clone(&self.stdout_done);
        done.store(false, Ordering::SeqCst);
        read_lines(stdout, done, move |text| {
            seen.lock().unwrap().push((run, text.clone()));
            let _ = tx.send(text);
        });
        self.expect_line(|l| l.starts_with("listening on "), WAIT, "listening on");
    }

    fn stderr_path(&self, run: usize) -> PathBuf {
        self.logs.path().join(format!("stderr-{run}"))
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("the node is running");
        libc::pid_t::try_from(child.id()).expect("pid fits")
    }

    /// Sends one line to the prompt.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the node's stdin is open");
        let written = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush());
        if let Err(e) = written {
            panic!("writing to the node's stdin: {e}\n{}", self.output());
        }
    }

    /// The first stdout line of this run matching `matches` that no
    /// earlier call took (the others are kept for later calls); panics,
    /// with the node's output, if none comes within `timeout`.
    fn expect_line(
        &mut self,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
        what: &str,
    ) -> String {
        if let Some(at) = self.unmatched.iter().position(|l| matches(l)) {
            return self.unmatched.remove(at);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => self.unmatched.push(line),
                Err(_) => panic!(
                    "node {}: no line {what} within {timeout:?}\n{}",
                    self.net.addr(1),
                    self.output()
                ),
            }
        }
    }

    /// Types `chat TEXT`; returns the node's answer (`saved (…)` or `not
    /// saved: …`).
    fn chat(&mut self, text: &str) -> String {
        self.send(&format!("chat {text}"));
        self.expect_line(
            |l| l.starts_with("saved ") || l.starts_with("not saved"),
            WAIT,
            &format!("answering chat {text:?}"),
        )
    }

    /// Waits for the line saying this node mined `text` (`#N TEXT (mined
    /// …`).
    fn expect_mined(&mut self, text: &str) -> String {
        let tail = format!(" {text} (mined");
        self.expect_line(
            |l| l.starts_with('#') && l.contains(&tail),
            WAIT,
            &format!("mining {text:?}"),
        )
    }

    /// The history's texts, as `hist 100` prints them (`#INDEX TEXT`),
    /// and its length as `hist 0` says it (`0 chats asked (the history
    /// holds N)`, or `the history is empty`).
    fn hist(&mut self) -> (Vec<String>, usize) {
        // What was printed before is not the answer.
        self.unmatched.clear();
        self.send("hist 100");
        self.send("hist 0");
        let mut texts = Vec::new();
        loop {
            let line = self.expect_line(
                // A chat mined meanwhile is shown, not listed.
                |l| {
                    (l.starts_with('#') && !l.contains(" (mined: "))
                        || l.starts_with("0 chats asked")
                        || l == "the history is empty"
                },
                WAIT,
                "answering hist",
            );
            if line == "the history is empty" {
                return (texts, 0);
            }
            if let Some(n) = line.strip_prefix("0 chats asked (the history holds ") {
                let n = n.trim_end_matches(')').parse().expect("a history length");
                return (texts, n);
            }
            let (index, text) = line[1..].split_once(' ').expect("#INDEX TEXT");
            assert_eq!(
                index.parse::<usize>().ok(),
                Some(texts.len()),
                "hist out of order: {line}"
            );
            texts.push(text.to_string());
        }
    }

    /// SIGTERM to the node (by its pid), and waits for it to exit and its
    /// stdout to end.
    fn sigterm(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let child = self.child.as_mut().expect("the node is running");
        let status = poll(WAIT, || child.try_wait().expect("waiting for node"));
        if status.is_none() {
            panic!("the node did not stop on SIGTERM\n{}", self.output());
        }
        self.child = None;
        self.stdin = None;
        let drained = poll(WAIT, || {
            self.stdout_done.load(Ordering::SeqCst).then_some(())
        });
        assert!(drained.is_some(), "the node's stdout still open after exit");
    }

    /// Starts the node again, same data directory, no extra arguments (no
    /// peer).
    fn restart_alone(&mut self) {
        self.args.clear();
        self.spawn();
    }

    /// The stdout lines of run `run`.
    fn run_lines(&self, run: usize) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Everything the node printed, every run, for a failure's message.
    fn output(&self) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            out.push_str(&format!("=== run {run} stdout:\n"));
            for line in self.run_lines(run) {
                out.push_str(&line);
                out.push('\n');
            }
            let stderr = fs::read_to_string(self.stderr_path(run)).unwrap_or_default();
            out.push_str(&format!("=== run {run} stderr:\n{stderr}"));
        }
        out
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if thread::panicking() {
            eprintln!(
                "=== node {} in the namespace:\n{}",
                self.net.addr(1),
                self.output()
            );
        }
    }
}

// ---------------------------------------------------------------------
// The files.

/// `own.log`'s records after its header, or why it is not a whole log:
/// each line `CRC32HEX chat ID TEXT` or `CRC32HEX copy ID DIGESTHEX`, the
/// CRC-32 of the rest of the line, every line ended.
fn own_records(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8".to_string())?;
    if !text.is_empty() && !text.ends_with('\n') {
        let tail = &text[text.rfind('\n').map_or(0, |i| i + 1)..];
        return Err(format!("it ends in a partial line: {tail:?}"));
    }
    let mut lines = text.lines();
    match lines.next() {
        Some(OWN_HEADER) => {}
        first => return Err(format!("its first line is {first:?}, not {OWN_HEADER:?}")),
    }
    lines
        .enumerate()
        .map(|(n, line)| {
            let bad = || format!("line {}: {line:?}", n + 2);
            let (crc, record) = line.split_once(' ').ok_or_else(bad)?;
            let hex = crc.len() == 8 && crc.bytes().all(|b| b.is_ascii_hexdigit());
            let framed = hex
                && u32::from_str_radix(crc, 16)
                    .is_ok_and(|crc| crc32fast::hash(record.as_bytes()) == crc);
            let known = record.starts_with("chat ") || record.starts_with("copy ");
            (framed && known)
                .then(|| record.to_string())
                .ok_or_else(bad)
        })
        .collect()
}

/// The texts of the `chat ID TEXT` records, in order.
fn own_chats(records: &[String]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r.strip_prefix("chat "))
        .filter_map(|r| r.split_once(' ').map(|(_, text)| text.to_string()))
        .collect()
}

/// `history.bin`'s chats, or why it is not a whole history: the magic,
/// then whole chats.
fn history_texts(bytes: &[u8]) -> Result<Vec<String>, String> {
    let Some(rest) = bytes.strip_prefix(b"CHATLOG1") else {
        return Err(format!("{} bytes without the magic", bytes.len()));
    };
    let mut history = wire::History::new();
    let used = history.extend_from_wire(rest);
    if used != rest.len() {
        return Err(format!(
            "{} whole chats, then {} bytes that are not a chat",
            history.len(),
            rest.len() - used
        ));
    }
    Ok(history
        .iter()
        .map(|c| String::from_utf8_lossy(c.text()).into_owned())
        .collect())
}

/// Bytes from `size` to the next page boundary.
fn room(size: u64) -> u64 {
    PAGE - size % PAGE
}

/// A printable text of `len` bytes beginning with `tag`.
fn text_of(tag: &str, len: usize) -> String {
    assert!(tag.len() <= len && len <= 255);
    let fill: String = (0..len - tag.len())
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    format!("{tag}{fill}")
}

/// How many times each of `expected` is in `texts`, and the texts of
/// `texts` that are none of them, as problems.
fn once_each(texts: &[String], expected: &[String], what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for text in expected {
        let n = texts.iter().filter(|t| *t == text).count();
        if n != 1 {
            problems.push(format!("{what}: {text:?} is there {n} times, not once"));
        }
    }
    for text in texts.iter().filter(|t| !expected.contains(t)) {
        problems.push(format!("{what}: a chat nobody typed: {text:?}"));
    }
    problems
}

/// Fails with every problem found, `files` (what the data directory
/// held) and the node's output.
fn report(problems: &[String], files: &str, node: &NsNode) {
    assert!(
        problems.is_empty(),
        "{} problems:\n- {}\n{files}{}",
        problems.len(),
        problems.join("\n- "),
        node.output()
    );
}

// ---------------------------------------------------------------------
// The tests.

/// The field's case: a chat typed on a full disk, `own.log`'s append
/// failing midway through a page.
#[test]
fn full_disk_own_log() {
    let _cpu = shared_cpu();
    let Some(tmpfs) = Tmpfs::mount_or_skip() else {
        return;
    };
    let net = Net::new(FILE, 0);
    let mut node = NsNode::start(&tmpfs, net, &[]);
    let own = "data/own.log";

    // Sixteen chats, each mined and its copy recorded before the next;
    // their lengths chosen to end own.log ROOM_AIM bytes before a page
    // boundary (measured, not computed: a record's overhead is the
    // format's).
    const CHATS: usize = 16;
    let target = (tmpfs.size(own) / PAGE + 1) * PAGE - ROOM_AIM;
    let mut overhead = 66;
    let mut typed = Vec::new();
    for i in 0..CHATS {
        let before = tmpfs.size(own);
        let per_chat = target.saturating_sub(before) / (CHATS - i) as u64;
        let len = per_chat.saturating_sub(overhead).clamp(16, 255) as usize;
        let text = text_of(&format!("chat-{i:02}-"), len);
        let answer = node.chat(&text);
        assert!(answer.starts_with("saved "), "chat {i}: {answer}");
        node.expect_mined(&text);
        // The copy record follows the mining.
        let copy = format!("copy {i} ");
        let recorded = poll(WAIT, || {
            let bytes = tmpfs.read(own);
            let text = String::from_utf8_lossy(&bytes);
            (text.contains(&copy) && text.ends_with('\n')).then_some(bytes.len() as u64)
        });
        let after = recorded.unwrap_or_else(|| {
            panic!("own.log has no {copy:?} line\n{}", node.output());
        });
        overhead = after - before - len as u64;
        typed.push(text);
    }
    let size = tmpfs.size(own);
    assert!(
        ROOM.contains(&room(size)),
        "own.log is {size} bytes, {} before a page boundary, not {ROOM:?}: the arithmetic needs adjusting",
        room(size)
    );
    println!(
        "disk: own.log {size} bytes, {} before a page boundary; history.bin {} bytes",
        room(size),
        tmpfs.size("data/history.bin")
    );

    let filler = tmpfs.fill();
    println!("disk: the filler took {filler} bytes");
    let mut problems = Vec::new();

    let torn = format!("TORN-{}", "t".repeat(240));
    let answer = node.chat(&torn);
    if !(answer.starts_with("not saved") && answer.contains("No space left on device")) {
        problems.push(format!("chat TORN on a full disk answered {answer:?}"));
    }
    // The answer comes once the append has failed: not one byte of the
    // refused record may be left.
    let log = tmpfs.read(own);
    if let Err(why) = own_records(&log) {
        problems.push(format!("own.log after the failed append: {why}"));
    }
    if String::from_utf8_lossy(&log).contains("TORN") {
        problems.push(format!(
            "own.log holds bytes of the chat that was not saved: {} bytes, {} after the 16th chat",
            log.len(),
            log.len() as u64 - size
        ));
    }
    // It is mined all the same ("kept in memory only"): its copy record
    // and history append are tried (the store thread takes milliseconds)
    // while the disk is still full, as in the field.
    node.expect_mined(&torn);
    thread::sleep(Duration::from_millis(500));

    tmpfs.unfill();
    let after = "after-space-came-back".to_string();
    let answer = node.chat(&after);
    assert!(
        answer.starts_with("saved "),
        "chat after the space came back: {answer}\n{}",
        node.output()
    );
    node.expect_mined(&after);
    let copy = format!("copy {} ", CHATS + 1);
    let recorded = poll(WAIT, || {
        String::from_utf8_lossy(&tmpfs.read(own))
            .contains(&copy)
            .then_some(())
    });
    if recorded.is_none() {
        problems.push(format!("own.log never got its {copy:?} record"));
    }
    typed.push(after.clone());
    let (hist_1, len_1) = node.hist();
    node.sigterm();

    // Between the runs: both files whole.
    let between = tmpfs.read(own);
    match own_records(&between) {
        Ok(records) => {
            let chats = own_chats(&records);
            problems.extend(once_each(&chats, &typed, "own.log before the restart"));
        }
        Err(why) => problems.push(format!("own.log before the restart: {why}")),
    }
    let mut in_history = typed.clone();
    in_history.insert(CHATS, torn.clone());
    match history_texts(&tmpfs.read("data/history.bin")) {
        Ok(texts) => problems.extend(once_each(&texts, &in_history, "history.bin")),
        Err(why) => problems.push(format!("history.bin before the restart: {why}")),
    }

    node.restart_alone();
    let (hist_2, len_2) = node.hist();
    // Anything left to mine is mined within milliseconds: give it a
    // second, then look again.
    thread::sleep(Duration::from_secs(1));
    let (hist_3, len_3) = node.hist();
    let run_2 = node.run_lines(2);
    for line in &run_2 {
        if line.contains("damaged") || line.contains("dropped") || line.contains("keeping the") {
            problems.push(format!("the restart says: {line}"));
        }
        if line.contains("(mined") {
            problems.push(format!("the restarted node mined: {line}"));
        }
    }
    if hist_1 != in_history || len_1 != in_history.len() {
        problems.push(format!(
            "before the restart the history is {len_1} chats: {hist_1:?}"
        ));
    }
    problems.extend(once_each(
        &hist_3,
        &in_history,
        "the history after the restart",
    ));
    if hist_2 != hist_3 || len_2 != len_3 || len_3 != in_history.len() {
        problems.push(format!(
            "the history after the restart: {len_2} chats, then {len_3} a second later; {} expected",
            in_history.len()
        ));
    }
    // The only TORN anywhere is the chat typed, whole.
    for (run, line) in node.seen.lock().unwrap().iter() {
        let whole = |at: usize| {
            let rest = &line[at..];
            rest.strip_prefix(torn.as_str())
                .is_some_and(|tail| tail.is_empty() || tail.starts_with(" (mined"))
        };
        if line.match_indices("TORN").any(|(at, _)| !whole(at)) {
            problems.push(format!("run {run} printed a torn chat: {line}"));
        }
    }
    match own_records(&tmpfs.read(own)) {
        Ok(records) => {
            let chats = own_chats(&records);
            problems.extend(once_each(&chats, &typed, "own.log after the restart"));
        }
        Err(why) => problems.push(format!("own.log after the restart: {why}")),
    }
    node.sigterm();
    let files = format!(
        "=== own.log before the restart:\n{}",
        String::from_utf8_lossy(&between)
    );
    report(&problems, &files, &node);
    println!(
        "disk: own.log: {} chats acknowledged, the one refused on the full disk mined once, none damaged or mined at the restart",
        typed.len()
    );
}

/// ENOSPC on `history.bin`: a chat arriving from a peer while the disk is
/// full, its history append failing midway through a page.
#[test]
fn full_disk_history() {
    let _cpu = shared_cpu();
    let Some(tmpfs) = Tmpfs::mount_or_skip() else {
        return;
    };
    let net = Net::new(FILE, 1);
    let mut node = NsNode::start(&tmpfs, net, &[]);
    let addr = net.addr(1).to_string();
    let mut peer = net.node(2, &["--peer", &addr]);
    let history = "data/history.bin";

    // history.bin is the magic, then each chat: its text and
    // CHAT_OVERHEAD bytes. Fourteen chats from the peer end it ROOM_AIM
    // bytes before the end of its first page.
    const CHATS: u64 = 14;
    let magic = b"CHATLOG1".len() as u64;
    let texts = PAGE - ROOM_AIM - magic - CHATS * CHAT_OVERHEAD;
    let mut expected = Vec::new();
    let mut size = magic;
    let arrived = |node: &mut NsNode, text: &str| {
        let tail = format!(" {text}");
        node.expect_line(
            |l| l.starts_with('#') && l.ends_with(&tail),
            WAIT,
            &format!("showing the peer's chat {text:?}"),
        );
    };
    let stored = |size: u64| poll(WAIT, || (tmpfs.size(history) == size).then_some(()));
    for i in 0..CHATS {
        let len = texts / CHATS + u64::from(i < texts % CHATS);
        let text = text_of(&format!("peer-{i:02}-"), len as usize);
        peer.chat(&text);
        arrived(&mut node, &text);
        size += CHAT_OVERHEAD + len;
        if stored(size).is_none() {
            panic!(
                "history.bin is {} bytes, not {size}\n{}",
                tmpfs.size(history),
                node.output()
            );
        }
        expected.push(text);
    }
    assert!(
        ROOM.contains(&room(size)),
        "history.bin is {size} bytes, {} before a page boundary",
        room(size)
    );
    println!(
        "disk: history.bin {size} bytes, {} before a page boundary",
        room(size)
    );

    let filler = tmpfs.fill();
    println!("disk: the filler took {filler} bytes");
    let mut problems = Vec::new();
    let full = text_of("FULL-", 240);
    peer.chat(&full);
    arrived(&mut node, &full);
    let warning = node.expect_line(
        |l| l.starts_with("warning: saving to"),
        WAIT,
        "warning that saving failed",
    );
    if !warning.contains("No space left on device") {
        problems.push(format!("the warning: {warning}"));
    }
    match history_texts(&tmpfs.read(history)) {
        Ok(texts) if texts == expected => {}
        Ok(texts) => problems.push(format!(
            "history.bin after the failed append: {} chats, not the {} before it",
            texts.len(),
            expected.len()
        )),
        Err(why) => problems.push(format!("history.bin after the failed append: {why}")),
    }
    let on_full = tmpfs.size(history);
    if on_full != size {
        problems.push(format!(
            "history.bin after the failed append: {on_full} bytes, not the {size} before it"
        ));
    }

    tmpfs.unfill();
    let after = "after-history-space".to_string();
    peer.chat(&after);
    arrived(&mut node, &after);
    expected.push(full);
    expected.push(after);
    let whole = magic
        + expected
            .iter()
            .map(|t| CHAT_OVERHEAD + t.len() as u64)
            .sum::<u64>();
    if stored(whole).is_none() {
        problems.push(format!(
            "history.bin is {} bytes once the space came back, not {whole}",
            tmpfs.size(history)
        ));
    }
    node.sigterm();
    // Alone at the restart: the peer would send the history back.
    peer.sigterm();
    match history_texts(&tmpfs.read(history)) {
        Ok(texts) => problems.extend(once_each(&texts, &expected, "history.bin")),
        Err(why) => problems.push(format!("history.bin before the restart: {why}")),
    }

    node.restart_alone();
    let (hist, len) = node.hist();
    for line in node.run_lines(2) {
        if line.contains("damaged") || line.contains("dropped") || line.contains("keeping the") {
            problems.push(format!("the restart says: {line}"));
        }
        if line.contains("(mined") {
            problems.push(format!("the restarted node mined: {line}"));
        }
    }
    if hist != expected || len != expected.len() {
        problems.push(format!(
            "the history after the restart: {len} chats, {hist:?}; {} expected",
            expected.len()
        ));
    }
    node.sigterm();
    report(&problems, "", &node);
    println!(
        "disk: history.bin: {} chats from the peer, the append on the full disk cut back, all of them once after the restart",
        expected.len()
    );
}
