//! The client subcommands: `node status`, `node peers`, `node hist [N]
//! [--follow]`, `node chat TEXT`, and those that manage the node (`stop`,
//! `connect`, `disconnect`, `ban`, `unban`, `bans`, `log`, `metrics`),
//! each with `--json`. They talk to the node that owns the data directory,
//! through its control socket; with no node running, `status` and `hist`
//! read the data directory itself and say so. Each way of failing has its
//! own exit status ([`NOT_RUNNING`], [`NOT_OURS`], [`NO_ANSWER`],
//! [`NOT_REACHED`]), so that a script can tell a node that is down from
//! one it may not talk to or one that is stuck. A chat that cannot be
//! sent is refused before the node is asked ([`USAGE`]). With `--json`,
//! every outcome is one JSON document on stdout, a failure an `error`
//! reply with a `kind` ([`Failed::exit`]).

use std::ffi::CStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{Request, SOCKET_FILE};
use crate::command::Stage;
use crate::protocol::{Line, Reply};
use crate::store;
use crate::text::chat_text;

/// How long a request waits for its answer, connecting and sending
/// included, before the client gives up ([`NO_ANSWER`]); for a followed
/// `hist`, the wait for its first answer (what follows may take any time).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// [`ANSWER_WAIT`] for `chat` (answered once the chat is on disk: a sync,
/// which a busy disk can make slow) and `stop` (once everything is), and
/// the default bound of `chat --wait`.
pub const SAVE_WAIT: Duration = Duration::from_secs(60);
/// The pause between two tries to connect to a node that accepts no
/// connection yet (its queue of them is full, or it is starting).
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// The pause between two looks for the socket of a node that is starting
/// (`--wait-start`).
const START_RETRY: Duration = Duration::from_millis(100);

/// Exit status: the node refused the request (an `error` or `not_saved`
/// reply), or went away while answering.
pub const REFUSED: u8 = 1;
/// Exit status of a usage error: a bad flag or argument, or a chat that
/// cannot be sent.
pub const USAGE: u8 = 2;
/// Exit status: no node runs with this data directory (no socket, or one
/// left by a node that is gone). `status` still says what the directory
/// holds (as LSB's "program is not running").
pub const NOT_RUNNING: u8 = 3;
/// Exit status: a node runs, but its control socket is another user's
/// (permission denied): the message names the user.
pub const NOT_OURS: u8 = 4;
/// Exit status: the node did not answer in time (stopped, or stuck).
pub const NO_ANSWER: u8 = 5;
/// Exit status: `chat --wait mined|sent` passed its bound before the chat
/// reached the stage.
pub const NOT_REACHED: u8 = 6;

/// How a client subcommand is run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// One JSON document per answer.
    pub json: bool,
    /// Wait up to this long for a node that is starting (its socket not
    /// there yet, or not accepting): `--wait-start`.
    pub wait_start: Option<Duration>,
    /// The bound of `chat --wait` ([`SAVE_WAIT`] by default).
    pub timeout: Duration,
}

/// Why a client subcommand failed: in words, with its exit status and, in
/// JSON, its `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// What happened, in words.
    pub why: String,
    /// The exit status.
    pub status: u8,
    /// The `kind` of the JSON error: `refused`, `usage`, `not_running`,
    /// `not_ours`, `no_answer`, `not_reached`.
    pub kind: &'static str,
}

impl Failed {
    /// The node refused, or cannot do it (exit status [`REFUSED`]).
    pub fn refused(why: String) -> Failed {
        Failed::new(why, REFUSED)
    }

    fn new(why: String, status: u8) -> Failed {
        let kind = match status {
            USAGE => "usage",
            NOT_RUNNING => "not_running",
            NOT_OURS => "not_ours",
            NO_ANSWER => "no_answer",
            NOT_REACHED => "not_reached",
            _ => "refused",
        };
        Failed { why, status, kind }
    }

    /// Says why and returns the exit status: with `json`, as an `error`
    /// reply with a `kind` field on stdout (one JSON document, as every
    /// answer); otherwise as `node: WHY` on stderr.
    pub fn exit(&self, json: bool) -> ExitCode {
        if json {
            /// An `error` reply with the failure's kind.
            #[derive(serde::Serialize)]
            struct Error<'a> {
                reply: &'a str,
                error: &'a str,
                kind: &'a str,
            }
            let error = Error {
                reply: "error",
                error: &self.why,
                kind: self.kind,
            };
            let text = serde_json::to_string(&error).expect("errors serialize");
            let _ = writeln!(io::stdout().lock(), "{text}");
        } else {
            let _ = writeln!(io::stderr(), "{}: {}", crate::program_name(), self.why);
        }
        ExitCode::from(self.status)
    }
}

/// Whether a node runs on data directory `dir` and this user may talk to
/// it, by connecting to its control socket.
///
/// # Errors
/// Not running (exit status [`NOT_RUNNING`]), or another user's (exit
/// status [`NOT_OURS`]), in words saying whose and what to do.
pub fn reach(dir: &Path) -> Result<(), Failed> {
    let path = dir.join(SOCKET_FILE);
    match UnixStream::connect(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(Failed::new(not_ours(&path, &e), NOT_OURS))
        }
        Err(e) => Err(Failed::new(
            format!(
                "no node is running with data directory {} ({SOCKET_FILE}: {e})",
                dir.display()
            ),
            NOT_RUNNING,
        )),
    }
}

/// Runs `request` against the node of data directory `dir`, printing the
/// answer as text, or as the JSON document itself with `json`. A chat
/// whose text cannot be sent is refused first, in the node's words (exit
/// status [`USAGE`]).
pub fn run(dir: &Path, request: &Request, options: Options) -> ExitCode {
    let json = options.json;
    if let Request::Chat { text, .. } = request
        && let Err(why) = chat_text(text.as_bytes())
    {
        return Failed::new(why.to_string(), USAGE).exit(json);
    }
    if let Err(why) = super::check_path(dir) {
        return Failed::new(why, USAGE).exit(json);
    }
    let mut out = io::stdout().lock();
    let wait = match request {
        Request::Chat {
            wait: Stage::Saved, ..
        }
        | Request::Stop => SAVE_WAIT,
        Request::Chat { .. } => options.timeout,
        _ => ANSWER_WAIT,
    };
    let path = dir.join(SOCKET_FILE);
    let connected = started(&path, options.wait_start)
        .map(|()| Instant::now() + wait)
        .and_then(|deadline| Ok((connect(&path, deadline)?, deadline)));
    let answer = match connected {
        Ok((stream, deadline)) => {
            ask(&stream, request, json, &mut out, deadline).map_err(|e| match e {
                Failure::Late => late(dir, request, wait, true),
                Failure::Broken(why) => Failed::new(why, REFUSED),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(late(dir, request, wait, false)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(Failed::new(not_ours(&path, &e), NOT_OURS))
        }
        Err(e) => offline(dir, request, &e),
    };
    match answer {
        Ok(Some(reply)) => {
            let status = match reply {
                Reply::Error { .. } | Reply::NotSaved { .. } => REFUSED,
                Reply::Offline(_) => NOT_RUNNING,
                _ => 0,
            };
            print_reply(&mut out, &reply, json);
            ExitCode::from(status)
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(failed) => {
            drop(out);
            failed.exit(json)
        }
    }
}

/// Waits up to `wait` (none: not at all) for the socket at `path` to
/// accept: a node that is starting has not made it yet, or one left by
/// the node before refuses connections until it is replaced.
///
/// # Errors
/// The last connection's error once `wait` has passed (`NotFound` or
/// `ConnectionRefused`), or any other at once.
fn started(path: &Path, wait: Option<Duration>) -> io::Result<()> {
    let Some(wait) = wait else {
        return Ok(());
    };
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(path) {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                thread::sleep(START_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Who owns the node's control socket at `path`, and what to do, after
/// connecting failed with `e` (permission denied): the socket's owner, or,
/// when the socket cannot even be looked at, the owner of the deepest
/// directory above it that can (the one that shuts this user out).
fn not_ours(path: &Path, e: &io::Error) -> String {
    let owner = path
        .ancestors()
        .find_map(|p| fs::metadata(p).ok())
        .map(|m| m.uid());
    match owner {
        Some(uid) => {
            let name = user_name(uid);
            let who = name
                .as_deref()
                .map_or(format!("uid {uid}"), |n| format!("user {n} (uid {uid})"));
            let run_as = name.unwrap_or_else(|| format!("#{uid}"));
            format!(
                "the control socket {} belongs to {who}, and only its owner may use it ({e}): \
                 the node there runs as that user; run this command as that user, e.g. \
                 sudo -u {run_as} chatchain ...",
                path.display()
            )
        }
        None => format!(
            "cannot reach the control socket {} ({e}): it belongs to another user; run this \
             command as the user who runs the node",
            path.display()
        ),
    }
}

/// The name of user `uid`, if the user database knows it.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwuid_r writes into `pwd` and `buf` (whose length is
    // passed) and sets `found` to `pwd` or null; the name is read only
    // while `buf` lives.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

/// Prints `reply` as text, or as its JSON document with `json` (a closed
/// stdout is no reason to fail).
fn print_reply(out: &mut dyn Write, reply: &Reply, json: bool) {
    let _ = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(reply).expect("replies serialize")
        )
    } else {
        writeln!(out, "{reply}")
    };
}

/// Why a client gives up on a node that did not answer `request` within
/// `wait`. When it was `sent` (the node may have it, and carry it out once
/// it goes on), a chat may still be sent: the user is told to look before
/// sending it again. A chat awaited at a later stage than `saved` has
/// passed its bound ([`NOT_REACHED`]).
fn late(dir: &Path, request: &Request, wait: Duration, sent: bool) -> Failed {
    let secs = wait.as_secs_f64();
    match request {
        Request::Chat { wait: stage, .. } if sent && *stage != Stage::Saved => Failed::new(
            format!(
                "the chat was not {} within {secs} s; the node may still save, mine and send \
                 it: check 'chatchain hist' before sending it again",
                match stage {
                    Stage::Sent => "sent to a peer",
                    _ => "mined",
                }
            ),
            NOT_REACHED,
        ),
        _ => {
            let why = format!(
                "the node at {} did not answer within {secs} s",
                dir.display()
            );
            Failed::new(
                match request {
                    Request::Chat { .. } if sent => format!(
                        "{why}; the chat may still be saved and sent once the node goes on: \
                         check 'chatchain hist' before sending it again"
                    ),
                    _ => why,
                },
                NO_ANSWER,
            )
        }
    }
}

/// Connects to the control socket at `path` by `deadline`. A blocking
/// connect to a node that accepts nothing (stopped, or its queue of
/// connections full) would wait forever: this one does not block, and is
/// tried again until `deadline` (then `WouldBlock`).
///
/// # Errors
/// The socket's: `NotFound` or `ConnectionRefused` when no node runs.
fn connect(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    let address = SockAddr::unix(path)?;
    loop {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&address) {
            Ok(()) => {
                socket.set_nonblocking(false)?;
                return Ok(socket.into());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(CONNECT_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why a request got no answer.
enum Failure {
    /// None came by the deadline.
    Late,
    /// The connection broke, or the answer is not understood; in words.
    Broken(String),
}

/// The node's side of a connection, read by a deadline (none: wait as long
/// as it takes).
struct Timed<'a> {
    stream: &'a UnixStream,
    deadline: Option<Instant>,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(io::ErrorKind::TimedOut.into()),
            },
        };
        self.stream.set_read_timeout(timeout)?;
        self.stream.read(buf)
    }
}

/// A read that failed: by the deadline (a read timeout shows as
/// `WouldBlock`), or otherwise.
fn is_late(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends `request` and reads the answer by `deadline`; for a followed
/// `hist`, prints the answer and then every change as it comes, until the
/// node says it stopped (`None`).
fn ask(
    stream: &UnixStream,
    request: &Request,
    json: bool,
    out: &mut dyn Write,
    deadline: Instant,
) -> Result<Option<Reply>, Failure> {
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    let left = deadline.saturating_duration_since(Instant::now());
    let mut writer = stream;
    let sent = stream
        .set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| writer.write_all(&line));
    // A node that refuses this client (too many) may have answered and
    // closed before the request went: its answer is read all the same.
    let sent = match sent {
        Err(e) if is_late(&e) => return Err(Failure::Late),
        sent => sent,
    };
    let mut reader = BufReader::new(Timed {
        stream,
        deadline: Some(deadline),
    });
    let mut first = Vec::new();
    match reader.read_until(b'\n', &mut first) {
        Err(e) if is_late(&e) => return Err(Failure::Late),
        Err(e) => {
            return Err(Failure::Broken(format!("reading the node's answer: {e}")));
        }
        Ok(0) => {
            return Err(Failure::Broken(match sent {
                Err(e) => format!("sending to the node: {e}"),
                Ok(()) => "the node closed the control connection without an answer".into(),
            }));
        }
        Ok(_) => {}
    }
    let reply: Reply = serde_json::from_slice(&first).map_err(|e| {
        Failure::Broken(format!(
            "the node's answer is not understood ({e}): {}",
            String::from_utf8_lossy(&first).trim_end()
        ))
    })?;
    if !matches!(request, Request::Hist { follow: true, .. })
        || matches!(reply, Reply::Error { .. })
    {
        return Ok(Some(reply));
    }
    let _ = if json {
        out.write_all(&first)
    } else {
        writeln!(out, "{reply}")
    };
    reader.get_mut().deadline = None;
    follow(&mut reader, json, out)
}

/// Prints the history's changes as the node sends them, until it says it
/// stopped (`None`) or stdout closes (`None` too: nobody reads).
///
/// # Errors
/// The connection ended without the node's last event: it was killed, or
/// it dropped this client.
fn follow(
    reader: &mut impl BufRead,
    json: bool,
    out: &mut dyn Write,
) -> Result<Option<Reply>, Failure> {
    let went_away = |how: String| {
        Failure::Broken(format!(
            "the node went away: {how} without its last event (it was killed or crashed, \
             or it dropped this client for reading too slowly)"
        ))
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(_) if !line.ends_with(b"\n") => {
                return Err(went_away("the connection ended".into()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(went_away(format!("the connection broke ({e})"))),
        }
        let event = serde_json::from_slice::<Line>(&line).ok();
        let shown = match &event {
            Some(event) if !json => writeln!(out, "{event}"),
            _ => out.write_all(&line),
        };
        if shown.and_then(|()| out.flush()).is_err() || event == Some(Line::Stopped) {
            return Ok(None);
        }
    }
}

/// With no node running: `status` and `hist` from the data directory,
/// refused in the node's words when the node would refuse them; any other
/// request fails ([`NOT_RUNNING`]).
fn offline(dir: &Path, request: &Request, why: &io::Error) -> Result<Option<Reply>, Failed> {
    if let Err(error) = request.command() {
        return Ok(Some(Reply::Error { error }));
    }
    let not_running = |more: String| {
        Failed::new(
            format!(
                "no node is running with data directory {} ({}: {why}){more}",
                dir.display(),
                SOCKET_FILE
            ),
            NOT_RUNNING,
        )
    };
    match request {
        Request::Status => {
            let (history, pending) = read_dir(dir).map_err(|e| not_running(format!("; {e}")))?;
            Ok(Some(Reply::Offline(crate::protocol::Offline {
                data_dir: dir.display().to_string(),
                history: history.len(),
                last: history.last().map(|c| c.text().to_vec()),
                pending,
            })))
        }
        Request::Hist { n, before, .. } => {
            let (history, _) = read_dir(dir).map_err(|e| not_running(format!("; {e}")))?;
            let _ = writeln!(
                io::stderr(),
                "the node is not running; the history of {}:",
                dir.display()
            );
            Ok(Some(Reply::hist(&history, *n, *before, false)))
        }
        _ => Err(not_running(String::new())),
    }
}

/// The valid history of a data directory and its pending chats, read
/// without changing anything.
fn read_dir(dir: &Path) -> Result<(wire::History, usize), String> {
    let path = dir.join(store::HISTORY_FILE);
    let mut file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut history, _) =
        store::read_chats(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(invalid) = miner::validate(&history) {
        history.truncate(invalid.index);
    }
    let own = store::read_own_records(dir).map_err(|e| e.to_string())?;
    let pending = crate::protocol::OwnChats::restore(own, &history).pending();
    Ok((history, pending))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A socket at `path` that listens with a queue of `backlog` (0: one
    /// connection) and never accepts, as a stopped node.
    fn deaf(path: &Path, backlog: i32) -> Socket {
        let listener = Socket::new(Domain::UNIX, Type::STREAM, None).expect("a socket");
        listener
            .bind(&SockAddr::unix(path).expect("an address"))
            .expect("binding");
        listener.listen(backlog).expect("listening");
        listener
    }

    #[test]
    fn a_node_that_accepts_nothing_is_given_up_at_the_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(SOCKET_FILE);
        let _listener = deaf(&path, 0);
        // Fill its queue of connections.
        let address = SockAddr::unix(&path).expect("an address");
        let mut queued = Vec::new();
        while queued.len() < 1000 {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).expect("a socket");
            socket.set_nonblocking(true).expect("non-blocking");
            if socket.connect(&address).is_err() {
                break;
            }
            queued.push(socket);
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let connected = connect(&path, Instant::now() + Duration::from_millis(200));
            let _ = tx.send(connected.map(drop).map_err(|e| e.kind()));
        });
        let given_up = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(given_up, Ok(Err(io::ErrorKind::WouldBlock)));
    }

    #[test]
    fn a_node_that_does_not_answer_is_given_up_at_the_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(SOCKET_FILE);
        let _listener = deaf(&path, 8);
        let stream = connect(&path, Instant::now() + ANSWER_WAIT).expect("queued");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(200);
            let answer = ask(&stream, &Request::Status, false, &mut Vec::new(), deadline);
            let _ = tx.send(matches!(answer, Err(Failure::Late)));
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    }
}
