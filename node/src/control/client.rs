//! The client subcommands: `node status`, `node peers`, `node hist [N]
//! [--follow]`, `node chat TEXT`, each with `--json`. They talk to the node
//! that owns the data directory, through its control socket; with no node
//! running, `status` and `hist` read the data directory itself and say so,
//! and `peers` and `chat` fail (exit status 1). A node that does not answer
//! in time (stopped, or stuck) fails them too: see [`ANSWER_WAIT`]. A chat
//! that cannot be sent is refused before the node is asked (exit status
//! 2). With `--json`, every outcome is one JSON document on stdout, a
//! failure an `error` reply ([`fail`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{Request, SOCKET_FILE};
use crate::protocol::{Line, Reply};
use crate::store;
use crate::text::chat_text;

/// How long a request waits for its answer, connecting and sending
/// included, before the client gives up (exit status 1); for a followed
/// `hist`, the wait for its first answer (what follows may take any time).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// [`ANSWER_WAIT`] for `chat`, answered once the chat is on disk: a sync,
/// which a busy disk can make slow.
pub const CHAT_WAIT: Duration = Duration::from_secs(60);
/// The pause between two tries to connect to a node that accepts no
/// connection yet (its queue of them is full).
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// Exit status of a usage error: a bad flag or argument, or a chat that
/// cannot be sent.
pub const USAGE: u8 = 2;

/// Runs `request` against the node of data directory `dir`, printing the
/// answer as text, or as the JSON document itself with `json`. A chat
/// whose text cannot be sent is refused first, in the node's words (exit
/// status [`USAGE`]).
pub fn run(dir: &Path, request: &Request, json: bool) -> ExitCode {
    if let Request::Chat { text } = request
        && let Err(why) = chat_text(text.as_bytes())
    {
        return fail(&why.to_string(), json, ExitCode::from(USAGE));
    }
    let mut out = io::stdout().lock();
    let wait = match request {
        Request::Chat { .. } => CHAT_WAIT,
        _ => ANSWER_WAIT,
    };
    let deadline = Instant::now() + wait;
    let answer = match connect(&dir.join(SOCKET_FILE), deadline) {
        Ok(stream) => ask(&stream, request, json, &mut out, deadline).map_err(|e| match e {
            Failure::Late => late(dir, request, wait, true),
            Failure::Broken(why) => why,
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(late(dir, request, wait, false)),
        Err(e) => offline(dir, request, &e),
    };
    match answer {
        Ok(Some(reply)) => {
            let failed = matches!(reply, Reply::Error { .. } | Reply::NotSaved { .. });
            print_reply(&mut out, &reply, json);
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(why) => {
            drop(out);
            fail(&why, json, ExitCode::FAILURE)
        }
    }
}

/// Says why a client subcommand failed and returns `status`: with `json`,
/// as an `error` reply on stdout (one JSON document, as every answer);
/// otherwise as `node: WHY` on stderr.
pub fn fail(why: &str, json: bool, status: ExitCode) -> ExitCode {
    if json {
        let error = Reply::Error {
            error: why.to_string(),
        };
        print_reply(&mut io::stdout().lock(), &error, true);
    } else {
        let _ = writeln!(io::stderr(), "node: {why}");
    }
    status
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
/// sending it again.
fn late(dir: &Path, request: &Request, wait: Duration, sent: bool) -> String {
    let why = format!(
        "the node at {} did not answer within {} s",
        dir.display(),
        wait.as_secs()
    );
    match request {
        Request::Chat { .. } if sent => format!(
            "{why}; the chat may still be saved and sent once the node goes on: \
             check 'node hist' before sending it again"
        ),
        _ => why,
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
/// refused in the node's words when the node would refuse them.
fn offline(dir: &Path, request: &Request, why: &io::Error) -> Result<Option<Reply>, String> {
    if let Err(error) = request.command() {
        return Ok(Some(Reply::Error { error }));
    }
    let not_running = || {
        format!(
            "no node is running with data directory {} ({}: {why})",
            dir.display(),
            SOCKET_FILE
        )
    };
    match request {
        Request::Status => {
            let (history, pending) =
                read_dir(dir).map_err(|e| format!("{}; {e}", not_running()))?;
            Ok(Some(Reply::Offline(crate::protocol::Offline {
                data_dir: dir.display().to_string(),
                history: history.len(),
                last: history.last().map(|c| c.text().to_vec()),
                pending,
            })))
        }
        Request::Hist { n, before, .. } => {
            let (history, _) = read_dir(dir).map_err(|e| format!("{}; {e}", not_running()))?;
            let _ = writeln!(
                io::stderr(),
                "the node is not running; the history of {}:",
                dir.display()
            );
            Ok(Some(Reply::hist(&history, *n, *before, false)))
        }
        Request::Peers | Request::Chat { .. } => Err(not_running()),
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
