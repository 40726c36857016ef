//! The control socket's server side, inside the event loop: non-blocking,
//! bounded per client. A request line longer than [`MAX_REQUEST`] gets an
//! error and the connection closes once what the client sends is drained
//! (to its end of stream, [`MAX_DRAIN`] bytes, or the read timeout), so
//! that the close does not reset the connection and lose the error; a
//! line that is no request gets an error and the next line is read; a
//! client that reads nothing is closed when its answers have not moved for
//! the read timeout, or when it follows the history and [`MAX_BACKLOG`]
//! bytes wait for it; an idle client (that awaits no answer, follows
//! nothing and has nothing waiting for it, though it may have sent part of
//! a line) is closed after the read timeout too. Answers to one client
//! come in the order of its requests: the next request is read once the
//! previous one is answered, however many the client sent at once. A
//! client that shuts down its side has its requests answered, and a
//! follower keeps following until it hangs up. At most [`MAX_CLIENTS`] are
//! served at once: a newcomer past them gets an error and is closed; of
//! them, at most [`MAX_FOLLOWERS`] follow the history, so that requests
//! find room. The memory held by answers is bounded for all clients
//! together: a `hist` request waits (and its client's reading with it)
//! while another `hist` is awaited from the node or [`MAX_QUEUED`] bytes
//! of answers wait for clients. When the node stops, followers get a last
//! event saying so ([`ControlServer::stop`]).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use serde::Serialize;

use super::Request;
use crate::protocol::{Event, Line, Origin, Reply};

/// The longest request line, without its newline.
pub const MAX_REQUEST: usize = 64 << 10;
/// Bytes read and dropped at most from a client being closed (its
/// oversized line goes on) before it is closed all the same: until then
/// it is closed once it ends its stream, or at the read timeout.
pub const MAX_DRAIN: usize = 16 << 20;
/// Bytes of followed history that may wait for a client before it is
/// dropped.
pub const MAX_BACKLOG: usize = 8 << 20;
/// Bytes of answers waiting for a client past which its next requests
/// wait too (a client that asks and never reads holds little).
const MAX_UNREAD_ANSWERS: usize = 1 << 20;
/// Bytes of answers waiting for all clients together past which no `hist`
/// request is taken: it waits until they are read (or their clients
/// dropped).
pub const MAX_QUEUED: usize = 32 << 20;
/// The capacity an emptied output buffer may keep; a larger one (left by a
/// long answer) is freed.
const KEEP_CAPACITY: usize = 64 << 10;
/// Clients served at once: each may hold an answer of up to
/// [`crate::command::MAX_HIST`] chats, or [`MAX_BACKLOG`] bytes of followed history.
pub const MAX_CLIENTS: usize = 32;
/// Places of [`MAX_CLIENTS`] that followers cannot take: kept for requests.
pub const KEPT_FOR_REQUESTS: usize = 4;
/// Clients following the history at once; one more gets an error.
pub const MAX_FOLLOWERS: usize = MAX_CLIENTS - KEPT_FOR_REQUESTS;
/// How long a stopping node tries to hand its followers what waits for
/// them and the last event.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What the clients share, as it stands when one of them takes requests.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// One more client may follow the history ([`MAX_FOLLOWERS`]).
    follow: bool,
    /// A `hist` request may go to the node: none is awaited from it, and
    /// less than [`MAX_QUEUED`] bytes wait for clients.
    hist: bool,
}

/// The listening socket and its clients.
pub struct ControlServer {
    listener: UnixListener,
    /// The socket's file, until it is removed.
    path: Option<PathBuf>,
    clients: HashMap<Token, Client>,
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: VecDeque<u8>,
    /// A request was handed to the node and its answer is awaited.
    waiting: bool,
    /// The awaited answer is a `hist`'s.
    asked_hist: bool,
    /// A `hist` request waits for [`Room::hist`]: it is the next line of
    /// `input`.
    paused: bool,
    /// After the awaited answer, send the history's changes.
    follow_next: bool,
    /// The awaited answer is `stop`'s: given by [`ControlServer::stop`].
    asked_stop: bool,
    following: bool,
    /// Close once the output is written and the client's input is
    /// drained (to its end of stream, or [`MAX_DRAIN`] bytes).
    closing: bool,
    /// Bytes read and dropped since `closing`.
    drained: usize,
    /// The client sent all it will (it closed or shut down its side): its
    /// requests are still answered, then it is closed (a follower, once it
    /// hangs up).
    eof: bool,
    /// The client closed its side for reading too: nothing more reaches it.
    hung_up: bool,
    last_progress: Instant,
    wants_write: bool,
}

impl ControlServer {
    /// Listens on `path` (a stale socket file from an earlier run is
    /// replaced: the caller holds the data directory's lock), readable and
    /// writable by its owner only.
    ///
    /// # Errors
    /// Binding, or setting the file's mode.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: Some(path.to_path_buf()),
            clients: HashMap::new(),
        })
    }

    /// Registers the listening socket under `token`.
    ///
    /// # Errors
    /// mio's.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)
    }

    /// Whether `token` is one of this server's clients.
    pub fn has(&self, token: Token) -> bool {
        self.clients.contains_key(&token)
    }

    /// Accepts the waiting clients, naming each with `next_token`.
    pub fn accept(&mut self, registry: &Registry, next_token: &mut usize, now: Instant) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("accepting a control client failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                refuse(&mut stream);
                continue;
            }
            let token = Token(*next_token);
            *next_token += 1;
            if registry
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.clients.insert(
                token,
                Client {
                    stream,
                    input: Vec::new(),
                    output: VecDeque::new(),
                    waiting: false,
                    asked_stop: false,
                    asked_hist: false,
                    paused: false,
                    follow_next: false,
                    following: false,
                    closing: false,
                    drained: 0,
                    eof: false,
                    hung_up: false,
                    last_progress: now,
                    wants_write: false,
                },
            );
        }
    }

    /// The client `token` is readable or writable (or `hung_up`: it closed
    /// its side for reading too): reads its requests (commands for the node
    /// go to `events`) and writes its answers.
    pub fn serve(
        &mut self,
        registry: &Registry,
        token: Token,
        hung_up: bool,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        if let Some(client) = self.clients.get_mut(&token) {
            client.hung_up |= hung_up;
        }
        self.round(registry, token, now, events);
        self.resume_paused(registry, now, events);
    }

    /// Reads and writes what client `token` can now, then settles it.
    fn round(&mut self, registry: &Registry, token: Token, now: Instant, events: &mut Vec<Event>) {
        let mut broken = false;
        // Twice: what is written may make room for more requests.
        for _ in 0..2 {
            let room = self.room();
            let Some(client) = self.clients.get_mut(&token) else {
                return;
            };
            broken |= client.pump(token, room, events).is_err();
            broken |= client.flush(now).is_err();
        }
        self.settle(registry, token, broken);
    }

    /// Clients whose `hist` request waits for room take it, as far as
    /// room allows, oldest first: their sockets will not signal again for
    /// what they sent already (mio is edge-triggered).
    fn resume_paused(&mut self, registry: &Registry, now: Instant, events: &mut Vec<Event>) {
        let mut paused: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(&t, _)| t)
            .collect();
        paused.sort_unstable();
        for token in paused {
            if !self.room().hist {
                return;
            }
            self.round(registry, token, now, events);
        }
    }

    /// The node's answer to client `id`'s request; more of its requests
    /// may follow into `events`.
    pub fn reply(
        &mut self,
        registry: &Registry,
        id: u64,
        reply: &Reply,
        now: Instant,
        events: &mut Vec<Event>,
    ) {
        let token = Token(id as usize);
        if let Some(client) = self.clients.get_mut(&token) {
            client.send(reply);
            client.waiting = false;
            client.asked_hist = false;
            if std::mem::take(&mut client.follow_next) {
                client.following = true;
            }
            self.round(registry, token, now, events);
        }
        // A `hist` answer came (its client gone or not): room for another.
        self.resume_paused(registry, now, events);
    }

    /// A change of the history, for the clients following it.
    pub fn show(&mut self, registry: &Registry, line: &Line, now: Instant) {
        let followers: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.following && !c.closing)
            .map(|(&t, _)| t)
            .collect();
        for token in followers {
            let client = self.clients.get_mut(&token).expect("listed");
            client.send(line);
            if client.output.len() > MAX_BACKLOG {
                debug!("control client follows too slowly: dropped");
                self.drop_client(registry, token);
                continue;
            }
            let broken = client.flush(now).is_err();
            self.settle(registry, token, broken);
        }
    }

    /// Drops clients whose answers have not moved for `timeout`, and idle
    /// ones (see [`Client::stalled`]); then lets the `hist` requests that
    /// wait take the room made (their commands go to `events`).
    pub fn check_clocks(
        &mut self,
        registry: &Registry,
        now: Instant,
        timeout: Duration,
        events: &mut Vec<Event>,
    ) {
        let stalled: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.stalled(now, timeout))
            .map(|(&t, _)| t)
            .collect();
        for token in stalled {
            debug!("control client idle, or reads nothing: dropped");
            self.drop_client(registry, token);
        }
        self.resume_paused(registry, now, events);
    }

    /// The room the clients leave each other now.
    fn room(&self) -> Room {
        let clients = self.clients.values();
        let followers = clients
            .clone()
            .filter(|c| c.following || c.follow_next)
            .count();
        let queued: usize = clients.clone().map(|c| c.output.len()).sum();
        let hist_awaited = clients.clone().any(|c| c.asked_hist);
        Room {
            follow: followers < MAX_FOLLOWERS,
            hist: !hist_awaited && queued < MAX_QUEUED,
        }
    }

    /// The node is stopping: removes the socket's file, so that no new
    /// client reaches a node that will not answer (and, the data
    /// directory's lock once released, no later node's file is removed).
    pub fn unlink(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }

    /// The node has stopped (its history saved): each follower gets what
    /// waits for it and a last event, [`Line::Stopped`], and each client
    /// that asked for the stop its answer, [`Reply::Stopped`], as far as
    /// its socket takes them within [`STOP_GRACE`]; then every client is
    /// closed, and the server with them.
    pub fn stop(mut self) {
        self.unlink();
        let deadline = Instant::now() + STOP_GRACE;
        self.clients.retain(|_, c| {
            (c.following || (c.waiting && c.asked_stop)) && !c.closing && !c.hung_up
        });
        for client in self.clients.values_mut() {
            if client.following {
                client.send(&Line::Stopped);
            } else {
                client.send(&Reply::Stopped);
            }
        }
        loop {
            let now = Instant::now();
            self.clients
                .retain(|_, c| c.flush(now).is_ok() && !c.output.is_empty());
            if self.clients.is_empty() || now >= deadline {
                return;
            }
            // Out of the event loop now: a short nap instead of a wait for
            // WRITABLE.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After a round with a client: close it when it is done, and ask for
    /// WRITABLE only while output waits.
    fn settle(&mut self, registry: &Registry, token: Token, broken: bool) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let sent_all = !client.waiting && !client.paused && client.output.is_empty();
        let done = client.hung_up
            || (client.closing && sent_all && client.drained_all())
            || (client.eof && !client.following && sent_all);
        if broken || done {
            return self.drop_client(registry, token);
        }
        let want = !client.output.is_empty();
        if want != client.wants_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut client.stream, token, interest)
                .is_ok()
            {
                client.wants_write = want;
            }
        }
    }

    fn drop_client(&mut self, registry: &Registry, token: Token) {
        if let Some(mut client) = self.clients.remove(&token) {
            let _ = registry.deregister(&mut client.stream);
        }
    }
}

/// Tells a newcomer past [`MAX_CLIENTS`] why it is closed. The socket is
/// fresh: its buffer takes the line at once.
fn refuse(stream: &mut UnixStream) {
    debug!("control client refused: {MAX_CLIENTS} served already");
    let error = Reply::Error {
        error: format!(
            "too many control clients: {MAX_CLIENTS} are served at once; try again later"
        ),
    };
    let mut line = serde_json::to_vec(&error).expect("replies serialize");
    line.push(b'\n');
    let _ = stream.write(&line);
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.unlink();
    }
}

impl Client {
    /// Whether the client is to be closed at `now`: nothing moved for
    /// `timeout` while answers wait for it (it reads nothing), or while it
    /// is idle: it awaits no answer (from the node, or room for its
    /// `hist`) and follows nothing (a part of a line, or the rest of an
    /// oversized one, is no request: it does not count).
    fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        let idle = !self.waiting && !self.paused && !self.following;
        (idle || !self.output.is_empty()) && now >= self.last_progress + timeout
    }

    /// A client being closed sent all it will, or as much as it may.
    fn drained_all(&self) -> bool {
        self.eof || self.drained >= MAX_DRAIN
    }

    /// Reads and takes requests until no more can be taken now: reading
    /// stops while a request's length waits, and goes on as requests are
    /// taken (the socket says nothing more about bytes it already
    /// signalled). An error when the socket broke.
    fn pump(&mut self, token: Token, room: Room, events: &mut Vec<Event>) -> io::Result<()> {
        loop {
            self.fill()?;
            if self.closing {
                // What the client sent is drained: nothing more to take.
                return Ok(());
            }
            let before = self.input.len();
            self.take_requests(token, room, events);
            if self.input.len() == before || self.eof {
                return Ok(());
            }
        }
    }

    /// Reads what the client sent (at most a request's length beyond what
    /// waits); from a client being closed, reads and drops all there is, up
    /// to [`MAX_DRAIN`] in all. An error when the socket broke.
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0; 16 << 10];
        while !self.eof && self.input.len() <= MAX_REQUEST && self.drained < MAX_DRAIN {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) if self.closing => self.drained += n,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Parses whole request lines while no answer is awaited and the
    /// client reads its answers; a followed `hist` is refused without
    /// [`Room::follow`], and a `hist` waits for [`Room::hist`] (`paused`).
    fn take_requests(&mut self, token: Token, room: Room, events: &mut Vec<Event>) {
        while !self.waiting
            && !self.closing
            && !self.following
            && self.output.len() < MAX_UNREAD_ANSWERS
        {
            // At the end of its stream, a last line needs no newline.
            let within = &self.input[..self.input.len().min(MAX_REQUEST + 1)];
            let end = match within.iter().position(|&b| b == b'\n') {
                None if self.eof && !self.input.is_empty() && self.input.len() <= MAX_REQUEST => {
                    Some(self.input.len() - 1)
                }
                end => end,
            };
            let Some(end) = end else {
                if self.input.len() > MAX_REQUEST {
                    self.input.clear();
                    self.send(&Reply::Error {
                        error: format!("request longer than {MAX_REQUEST} bytes; closing"),
                    });
                    self.closing = true;
                }
                return;
            };
            let request = Request::parse(&self.input[..=end]);
            let hist = matches!(request, Ok(Request::Hist { .. }));
            let stop = matches!(request, Ok(Request::Stop));
            let follow = matches!(request, Ok(Request::Hist { follow: true, .. }));
            let command = request.and_then(|request| match request {
                _ if follow && !room.follow => Err(format!(
                    "too many followers: {MAX_FOLLOWERS} clients follow the history at once \
                     ({KEPT_FOR_REQUESTS} of the {MAX_CLIENTS} places are kept for requests); \
                     try again later"
                )),
                request => request.command(),
            });
            self.paused = hist && command.is_ok() && !room.hist;
            if self.paused {
                return;
            }
            self.input.drain(..=end);
            match command {
                Ok(command) => {
                    self.waiting = true;
                    self.asked_stop = stop;
                    self.asked_hist = hist;
                    self.follow_next = follow;
                    events.push(Event::Command {
                        from: Origin::Control(token.0 as u64),
                        command,
                    });
                }
                Err(error) => self.send(&Reply::Error { error }),
            }
        }
    }

    /// Queues one JSON document and its newline.
    fn send(&mut self, document: &impl Serialize) {
        let mut bytes = serde_json::to_vec(document).expect("replies serialize");
        bytes.push(b'\n');
        if self.output.is_empty() {
            self.last_progress = Instant::now();
        }
        self.output.extend(bytes);
    }

    /// Writes what waits until the socket is full.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while !self.output.is_empty() {
            let (front, _) = self.output.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                    self.last_progress = now;
                    if self.output.is_empty() && self.output.capacity() > KEEP_CAPACITY {
                        self.output = VecDeque::new();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
