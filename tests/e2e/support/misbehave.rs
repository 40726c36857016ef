//! A family of scripted misbehaving peers, for the field tests (issue 10)
//! and the hostile ones: each is a small type or function that plays one
//! fault seen among the other implementations, on loopback only.
//!
//! - [`Listener`]: a peer that listens on the network port and misbehaves
//!   with whoever connects ([`Script`]): accepts and closes at once, or
//!   closes as soon as a message of some type begins. It counts the
//!   connections it accepted, with timestamps ([`Accepted`]), so that a
//!   test can assert how often a node dialed it in a time window.
//! - [`half_close`]: a client that sends requests, shuts down its write
//!   side (`shutdown(SHUT_WR)`, as netcat does) and reads what comes.
//! - [`half_close_and_hold`]: a client that sends a request, shuts down
//!   its write side, and then neither reads nor closes.
//! - [`garbage_after`]: a client that sends requests, then a byte that
//!   begins no message, and goes on sending junk while it reads.
//! - [`ask_and_reset`]: a client that sends requests and resets at once.
//! - [`endless_invalid_archive`]: a client that claims an archive of
//!   millions of chats and sends invalid ones without end.
//! - [`push_and_hang_up`]: a client that opens with requests, pushes an
//!   archive in the same write and closes without reading (many public
//!   peers open every connection with a request).
//! - [`NonReaders`]: clients that send requests and never read.
//! - [`ReconnectLoop`]: a client that connects, sends a few bytes or none,
//!   and closes, in a loop as fast as it can.
//! - [`SelfAlias`]: a node told its own address (as a bootstrap peer, or
//!   in the PeerLists of a peer that answers every PeerRequest so).
//! - [`race`]: several payloads sent at once on connections of their own
//!   (competing histories).
//! - [`PerIpPeer`](super::per_ip::PerIpPeer) (in `per_ip.rs`): a peer
//!   that keeps one entry per IP address, dropped when any connection with
//!   that address ends; it may redial a second after losing its
//!   connection.
//! - The extension's liars (in `relay_peer.rs`, on the relay port, see
//!   `docs/EXTENSION.md`, "Lies"): [`lie_about_lengths`](super::relay_peer::lie_about_lengths)
//!   (a Tip claiming u32::MAX chats, then a Chats whose count claims more
//!   chats than it sends), [`endless_chats`](super::relay_peer::endless_chats)
//!   (a Chats claiming u32::MAX chats that never ends: invalid chats, or
//!   chats past a prefix the node does not hold),
//!   [`SilentRelayPort`](super::relay_peer::SilentRelayPort) (a relay port
//!   that accepts and never says Hello); a prefix digest that does not
//!   match, full archives on a relay connection and a first message other
//!   than Hello are single sends of a
//!   [`RelayPeer`](super::relay_peer::RelayPeer).
//!
//! Every one that runs a thread stops when told (a [`Stop`] flag) and is
//! joined when dropped, also when a test fails early; every wait and loop
//! is bounded. A fault found in the field becomes one of these, not a
//! one-off in a test.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wire::{Decoder, Frame, FrameDecoder, Message, MessageType, RelayType};

use super::observe::Stop;
use super::{Net, Node, WAIT, connect_from};

/// How often a thread of this module looks at its [`Stop`] flag while it
/// waits for something.
pub(super) const POLL: Duration = Duration::from_millis(10);

/// A helper thread: told to stop through a [`Stop`] flag, joined when
/// finished or dropped (so that none outlives its test).
pub(super) struct Task<T> {
    stop: Option<Stop>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Runs `run` on a thread of its own, with the flag that tells it to
    /// stop.
    pub(super) fn spawn(run: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> Task<T> {
        let stop = Stop::default();
        let flag = stop.flag();
        Task {
            stop: Some(stop),
            thread: Some(thread::spawn(move || run(flag))),
        }
    }

    /// Stops the thread and returns what it returned (its panic is the
    /// caller's).
    fn finish(mut self) -> T {
        drop(self.stop.take());
        self.join()
    }

    /// Waits for the thread to end by itself (it must be bounded) and
    /// returns what it returned (its panic is the caller's).
    fn join(mut self) -> T {
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The type byte a frame of the message stream begins with.
fn frame_type(frame: &Frame<'_>) -> Option<u8> {
    match frame {
        Frame::Message(message) => Some(message.message_type() as u8),
        Frame::ArchiveStart { .. } => Some(MessageType::ArchiveResponse as u8),
        Frame::Relay(message) => Some(message.relay_type() as u8),
        Frame::ChatsStart { .. } => Some(RelayType::Chats as u8),
        Frame::Chat(_) | Frame::ArchiveEnd => None,
    }
}

/// What a [`Listener`] does with each connection it accepts.
#[derive(Debug, Clone)]
pub enum Script {
    /// Closes it at once, reading nothing.
    AcceptClose,
    /// Sends `greet` (whole messages, or nothing), then reads the stream,
    /// framing it with [`FrameDecoder`], and closes as soon as a message
    /// whose type byte is in `types` begins (an ArchiveResponse at its
    /// header). Also closes when the other side does, on bytes that do
    /// not decode, or after `hold`.
    CloseOn {
        types: Vec<u8>,
        greet: Vec<u8>,
        hold: Duration,
    },
}

/// One connection a [`Listener`] accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// When it was accepted.
    pub at: Instant,
    /// Who connected.
    pub from: SocketAddrV4,
    /// How long the listener kept it.
    pub lived: Duration,
    /// The type bytes of the messages that began on it, in order.
    pub got: Vec<u8>,
    /// The type byte the listener closed it on ([`Script::CloseOn`]).
    pub closed_on: Option<u8>,
}

/// A misbehaving peer listening on `addr` (a loopback address and the
/// network port, where a node dials it): one connection at a time, each
/// handled by its [`Script`] and logged.
pub struct Listener {
    addr: SocketAddrV4,
    log: Arc<Mutex<Vec<Accepted>>>,
    task: Task<()>,
}

impl Listener {
    /// Listens on `addr` (panics unless it is a loopback address that can
    /// be bound) and plays `script` with every connection.
    pub fn start(addr: SocketAddrV4, script: Script) -> Listener {
        assert!(
            addr.ip().is_loopback(),
            "scripted peers listen on loopback only, not on {addr}"
        );
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding a listener on {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let log = Arc::clone(&log);
            Task::spawn(move |stop| {
                while !stop.load(Ordering::Relaxed) {
                    let (stream, from) = match listener.accept() {
                        Ok((stream, SocketAddr::V4(from))) => (stream, from),
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(POLL);
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => panic!("accepting on {addr}: {e}"),
                    };
                    let at = Instant::now();
                    let (got, closed_on) = match &script {
                        Script::AcceptClose => (Vec::new(), None),
                        Script::CloseOn { types, greet, hold } => {
                            play_close_on(stream, types, greet, at + *hold, &stop)
                        }
                    };
                    log.lock().unwrap().push(Accepted {
                        at,
                        from,
                        lived: at.elapsed(),
                        got,
                        closed_on,
                    });
                }
            })
        };
        Listener { addr, log, task }
    }

    /// Accepts every connection and closes it at once.
    pub fn accept_close(addr: SocketAddrV4) -> Listener {
        Listener::start(addr, Script::AcceptClose)
    }

    /// Sends `greet`, then closes each connection as soon as a message
    /// whose type byte is in `types` begins (after 15 s at the latest).
    pub fn close_on(addr: SocketAddrV4, types: &[u8], greet: &[u8]) -> Listener {
        Listener::start(
            addr,
            Script::CloseOn {
                types: types.to_vec(),
                greet: greet.to_vec(),
                hold: WAIT,
            },
        )
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Every connection accepted so far, in order (one still being
    /// handled is not listed yet).
    pub fn accepted(&self) -> Vec<Accepted> {
        self.log.lock().unwrap().clone()
    }

    /// Connections accepted within `window` from `start`.
    pub fn count_within(&self, start: Instant, window: Duration) -> usize {
        self.accepted()
            .iter()
            .filter(|a| a.at >= start && a.at < start + window)
            .count()
    }

    /// Stops listening (the socket closes: dials to it are refused from
    /// now on) and returns every connection accepted.
    pub fn finish(self) -> Vec<Accepted> {
        let Listener { log, task, .. } = self;
        task.finish();
        log.lock().unwrap().clone()
    }
}

/// [`Script::CloseOn`] on one connection: the types that began on it, and
/// the one it was closed on.
fn play_close_on(
    mut stream: TcpStream,
    types: &[u8],
    greet: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> (Vec<u8>, Option<u8>) {
    let mut got = Vec::new();
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(POLL)).expect("a read timeout");
    stream
        .set_write_timeout(Some(WAIT))
        .expect("a write timeout");
    if stream.write_all(greet).is_err() {
        return (got, None);
    }
    let mut frames = FrameDecoder::with_limits(wire::DEFAULT_MAX_MESSAGE, usize::MAX);
    let mut buf = vec![0; 64 * 1024];
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let n = match read_once(&mut stream, &mut buf) {
            Got::Bytes(n) => n,
            Got::Again => continue,
            Got::Eof | Got::Broken(_) => break,
        };
        let mut input = &buf[..n];
        loop {
            match frames.next(&mut input) {
                Ok(Some(frame)) => {
                    if let Some(kind) = frame_type(&frame) {
                        got.push(kind);
                        if types.contains(&kind) {
                            // Dropping the stream closes it (with a reset if
                            // bytes are left unread).
                            return (got, Some(kind));
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return (got, None),
            }
        }
    }
    (got, None)
}

/// What one read of a socket with a read timeout gave.
pub(super) enum Got {
    Bytes(usize),
    /// The other side closed: end of stream.
    Eof,
    /// Nothing yet (the timeout, or a signal): read again.
    Again,
    Broken(io::Error),
}

pub(super) fn read_once(stream: &mut TcpStream, buf: &mut [u8]) -> Got {
    match stream.read(buf) {
        Ok(0) => Got::Eof,
        Ok(n) => Got::Bytes(n),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
            ) =>
        {
            Got::Again
        }
        Err(e) => Got::Broken(e),
    }
}

/// How a connection ended, seen from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The other side closed: end of stream.
    Eof,
    /// The connection broke (a reset): the error.
    Broken(String),
    /// Still open when the client stopped reading.
    Open,
}

/// What a [`half_close`] or [`garbage_after`] client got.
#[derive(Debug)]
pub struct HalfClosed {
    /// Every message received, with its exact bytes, in order.
    pub messages: Vec<(Message, Vec<u8>)>,
    /// How the connection ended.
    pub end: End,
    /// When, after the shutdown (or how long it read, if it did not end).
    pub after: Duration,
}

impl HalfClosed {
    /// The bytes of every message of type `kind` received.
    pub fn of_type(&self, kind: MessageType) -> Vec<&[u8]> {
        self.messages
            .iter()
            .filter(|(m, _)| m.message_type() == kind)
            .map(|(_, bytes)| &bytes[..])
            .collect()
    }

    /// The type bytes of the messages received, in order.
    pub fn types(&self) -> Vec<u8> {
        self.messages
            .iter()
            .map(|(m, _)| m.message_type() as u8)
            .collect()
    }
}

/// A plain client connection from `from` to `to`, its writes bounded by
/// [`WAIT`]. Panics if it cannot connect.
fn client(from: Ipv4Addr, to: SocketAddrV4) -> TcpStream {
    let stream = connect_from(from, to, super::plain)
        .unwrap_or_else(|e| panic!("connecting {from} -> {to}: {e}"));
    stream
        .set_write_timeout(Some(WAIT))
        .expect("a write timeout");
    stream
}

/// A netcat-style client: connects from `from` to `to`, sends `bytes`
/// (requests, a pushed archive), waits `pause`, shuts down its write side,
/// and reads for at most `read_for`, until the other side closes. Without
/// a pause, the bytes and the end of the stream leave together (the
/// socket is corked until the shutdown), so that the node reads them in
/// one go, as it may from netcat. Panics if it cannot connect or the node
/// sends bytes that do not decode.
pub fn half_close(
    from: Ipv4Addr,
    to: SocketAddrV4,
    bytes: &[u8],
    pause: Duration,
    read_for: Duration,
) -> HalfClosed {
    let mut stream = client(from, to);
    let together = pause.is_zero();
    if together {
        set_option(&stream, libc::IPPROTO_TCP, libc::TCP_CORK, 1).expect("TCP_CORK");
    }
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("{from} -> {to}: write failed: {e}"));
    thread::sleep(pause);
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|e| panic!("{from} -> {to}: shutdown failed: {e}"));
    if together {
        set_option(&stream, libc::IPPROTO_TCP, libc::TCP_CORK, 0).expect("TCP_CORK");
    }
    let shut = Instant::now();
    let (messages, end) = read_to_end(&mut stream, from, to, shut + read_for);
    HalfClosed {
        messages,
        end,
        after: shut.elapsed(),
    }
}

/// A client that sends `bytes` (requests, then a byte that begins no
/// message) and keeps sending `junk` bytes of filler after them, as a peer
/// speaking another protocol or a broken encoder would, while it reads
/// what comes for at most `read_for`, until the other side closes. Panics
/// if it cannot connect or the node sends bytes that do not decode.
pub fn garbage_after(
    from: Ipv4Addr,
    to: SocketAddrV4,
    bytes: &[u8],
    junk: usize,
    read_for: Duration,
) -> HalfClosed {
    let mut stream = client(from, to);
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("{from} -> {to}: write failed: {e}"));
    let sent = Instant::now();
    let mut writer = stream.try_clone().expect("a second handle");
    let filler = thread::spawn(move || {
        let chunk = [0xa5u8; 16 * 1024];
        let mut left = junk;
        while left > 0 {
            let n = left.min(chunk.len());
            // The node closes at some point: the rest cannot go.
            if writer.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
    });
    let (messages, end) = read_to_end(&mut stream, from, to, sent + read_for);
    let _ = stream.shutdown(Shutdown::Both);
    filler.join().expect("the filler thread");
    HalfClosed {
        messages,
        end,
        after: sent.elapsed(),
    }
}

/// Reads and decodes what `to` sends `from` until the end of its stream,
/// a reset, or `deadline`.
fn read_to_end(
    stream: &mut TcpStream,
    from: Ipv4Addr,
    to: SocketAddrV4,
    deadline: Instant,
) -> (Vec<(Message, Vec<u8>)>, End) {
    let mut decoder = Decoder::default();
    let (mut received, mut start) = (Vec::new(), 0usize);
    let mut messages = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break End::Open;
        }
        stream.set_read_timeout(Some(left)).expect("a read timeout");
        let n = match read_once(stream, &mut buf) {
            Got::Bytes(n) => n,
            Got::Again => continue,
            Got::Eof => break End::Eof,
            Got::Broken(e) => break End::Broken(e.to_string()),
        };
        received.extend_from_slice(&buf[..n]);
        let mut input = &buf[..n];
        loop {
            match decoder.push(&mut input) {
                Ok(Some(message)) => {
                    let at = decoder.position() as usize;
                    messages.push((message, received[start..at].to_vec()));
                    start = at;
                }
                Ok(None) => break,
                Err(e) => panic!("{to} sent {from} undecodable bytes: {e}"),
            }
        }
    };
    (messages, end)
}

/// A client that asks and resets at once: connects from `from` to `to`,
/// sends `request`, and closes with `SO_LINGER` 0, so that its close is a
/// reset that may reach the node before the requests are answered. Panics
/// if it cannot connect or write.
pub fn ask_and_reset(from: Ipv4Addr, to: SocketAddrV4, request: &[u8]) {
    let mut stream = client(from, to);
    stream
        .write_all(request)
        .unwrap_or_else(|e| panic!("{from} -> {to}: write failed: {e}"));
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// A client that claims an ArchiveResponse of 3 M chats and sends
/// invalid chats (288 bytes each, their digests not beginning with two
/// zero bytes) until the node stops taking them or `most` bytes have gone.
/// Returns the bytes the node took (written without error) and the
/// messages it sent back, read once writing stopped. Panics if it cannot
/// connect.
pub fn endless_invalid_archive(
    from: Ipv4Addr,
    to: SocketAddrV4,
    most: usize,
) -> (usize, Vec<Message>) {
    let mut stream = client(from, to);
    let mut chat = vec![0xff_u8; 288];
    chat[0] = 255;
    let block: Vec<u8> = chat.iter().copied().cycle().take(288 * 228).collect();
    let mut sent = 0;
    let header = [0x04, 0x00, 0x30, 0x00, 0x00];
    if stream.write_all(&header).is_ok() {
        sent = header.len();
        while sent < most {
            match stream.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
    }
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut decoder = Decoder::new(wire::DEFAULT_MAX_MESSAGE);
    let mut input = &bytes[..];
    let mut messages = Vec::new();
    while let Ok(Some(message)) = decoder.push(&mut input) {
        messages.push(message);
    }
    (sent, messages)
}

/// A client that opens with a request and hangs up: connects from `from`
/// to `to`, sends `bytes` (requests, then an archive) in one write, and
/// closes without reading, so that the node's replies meet a closed
/// socket (EPIPE, then a reset). Panics if it cannot connect or write.
pub fn push_and_hang_up(from: Ipv4Addr, to: SocketAddrV4, bytes: &[u8]) {
    let mut stream = client(from, to);
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("{from} -> {to}: write failed: {e}"));
}

/// A client that asks and then holds the connection: connects from `from`
/// to `to` with a 4 KB receive buffer (so that a reply of more stalls in
/// the node), sends `request`, shuts down its write side, and returns the
/// socket, never read, for the caller to keep open as long as it likes.
/// Panics if it cannot connect or write.
pub fn half_close_and_hold(from: Ipv4Addr, to: SocketAddrV4, request: &[u8]) -> TcpStream {
    let mut stream = connect_from(from, to, |s| s.set_recv_buffer_size(4096))
        .unwrap_or_else(|e| panic!("connecting {from} -> {to}: {e}"));
    stream
        .write_all(request)
        .unwrap_or_else(|e| panic!("{from} -> {to}: write failed: {e}"));
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|e| panic!("{from} -> {to}: shutdown failed: {e}"));
    stream
}

/// Clients that never read: one connection from each address, each
/// offered `batch` copies of a request byte every 10 ms on a non-blocking
/// socket with a 4 KB receive buffer (so that the node's replies stall at
/// once), as many as its socket takes; a connection the node closes is
/// opened again.
pub struct NonReaders {
    requests: Arc<AtomicU64>,
    task: Task<Vec<Duration>>,
}

impl NonReaders {
    pub fn start(from: Vec<Ipv4Addr>, to: SocketAddrV4, request: u8, batch: usize) -> NonReaders {
        let requests = Arc::new(AtomicU64::new(0));
        let task = {
            let requests = Arc::clone(&requests);
            Task::spawn(move |stop| {
                let open = |from: Ipv4Addr| {
                    let stream = connect_from(from, to, |s| s.set_recv_buffer_size(4096))
                        .unwrap_or_else(|e| panic!("connecting a non-reader from {from}: {e}"));
                    stream.set_nonblocking(true).expect("non-blocking");
                    (stream, Instant::now())
                };
                let mut conns: Vec<_> = from.iter().map(|&from| open(from)).collect();
                let mut lifetimes = Vec::new();
                let bytes = vec![request; batch];
                while !stop.load(Ordering::Relaxed) {
                    for (i, (stream, opened)) in conns.iter_mut().enumerate() {
                        match stream.write(&bytes) {
                            Ok(n) => {
                                requests.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => {
                                lifetimes.push(opened.elapsed());
                                (*stream, *opened) = open(from[i]);
                            }
                        }
                    }
                    thread::sleep(POLL);
                }
                lifetimes
            })
        };
        NonReaders { requests, task }
    }

    /// Requests the kernels have taken so far (one byte each).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Stops; how long each connection the node closed had lived.
    pub fn finish(self) -> Vec<Duration> {
        self.task.finish()
    }
}

/// What a [`ReconnectLoop`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopStats {
    /// Connections made (and closed).
    pub connected: u64,
    /// Connects that failed.
    pub failed: u64,
    /// The slowest connect.
    pub slowest: Duration,
    /// Connects that took a second or more: a SYN was dropped and sent
    /// again (the node's accept queue was full).
    pub retried: u64,
}

/// A client that connects from `from` to `to`, sends `bytes` (or
/// nothing), and closes, again and again as fast as it can, for
/// `run_for`. Its sockets pick their port when they connect
/// (`IP_BIND_ADDRESS_NO_PORT`), not when bound to `from`: a port is then
/// taken again as soon as the kernel allows (a closed connection's port
/// stays in TIME_WAIT, and a bind with port 0 would run out of ports or
/// crawl through them).
pub struct ReconnectLoop {
    task: Task<LoopStats>,
}

impl ReconnectLoop {
    pub fn start(from: Ipv4Addr, to: SocketAddrV4, bytes: &[u8], run_for: Duration) -> Self {
        let bytes = bytes.to_vec();
        let task = Task::spawn(move |stop| {
            let end = Instant::now() + run_for;
            let mut stats = LoopStats::default();
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let connecting = Instant::now();
                let connected = connect_from(from, to, bind_address_no_port);
                let took = connecting.elapsed();
                stats.slowest = stats.slowest.max(took);
                stats.retried += u64::from(took >= Duration::from_secs(1));
                match connected {
                    Ok(mut stream) => {
                        stats.connected += 1;
                        let _ = stream.write_all(&bytes);
                    }
                    Err(_) => {
                        stats.failed += 1;
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            stats
        });
        ReconnectLoop { task }
    }

    /// Waits for the loop to end (after its `run_for`) and returns what
    /// it did.
    pub fn join(self) -> LoopStats {
        self.task.join()
    }
}

/// Sets an integer socket option (setsockopt(2)).
fn set_option(socket: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: setsockopt(2) on an open socket, reading one c_int.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on `socket`, for [`connect_from`].
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    set_option(socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// Log lines (stderr) of `node` that end with `connecting to ADDR`: its
/// dials of `addr` (one line a dial, whichever port it tries first: a
/// refused relay port is followed by the network port within the same
/// dial). The node must run with `--log debug`.
pub fn dials_logged(node: &Node, addr: Ipv4Addr) -> usize {
    let dial = format!("connecting to {addr}");
    node.stderr()
        .lines()
        .filter(|line| line.ends_with(&dial))
        .count()
}

/// How a [`SelfAlias`] node learns its own address.
#[derive(Debug, Clone, Copy)]
pub enum Alias {
    /// `--peer` its own address: it is told to dial itself at start.
    Bootstrap,
    /// A peer from host `teller` pushes a PeerList naming the node (twice)
    /// at once, and answers every PeerRequest with that list, as some
    /// implementations do (they list the requester too).
    PeerList { teller: u8 },
}

/// A node that is told its own address, the loopback variant of "an alias
/// that leads back to the node" (binding 0.0.0.0 is for private network
/// namespaces only): started on `net`'s host with `--log debug`, so that
/// its dials are logged ([`SelfAlias::dials_to_self`]).
pub struct SelfAlias {
    pub node: Node,
    /// The PeerLists the teller sent, when there is one.
    teller: Option<Task<usize>>,
}

impl SelfAlias {
    pub fn start(net: &Net, host: u8, via: Alias) -> SelfAlias {
        let own = net.addr(host).to_string();
        match via {
            Alias::Bootstrap => SelfAlias {
                node: net.node(host, &["--peer", &own, "--log", "debug"]),
                teller: None,
            },
            Alias::PeerList { teller } => {
                let node = net.node(host, &["--log", "debug"]);
                let mut peer = net.peer(teller, host);
                let list = Message::PeerList(vec![net.addr(host), net.addr(host)]);
                // Pushed, then a PeerRequest whose answer shows that the
                // node has read the list.
                peer.send(&list);
                peer.send(&Message::PeerRequest);
                peer.recv_until(WAIT, |m| matches!(m, Message::PeerList(_)))
                    .expect("the node answers a PeerRequest");
                let teller = Task::spawn(move |stop| {
                    let mut told = 1;
                    while !stop.load(Ordering::Relaxed) && !peer.is_closed() {
                        if let Some(Message::PeerRequest) = peer.recv(Duration::from_millis(100)) {
                            peer.send(&list);
                            told += 1;
                        }
                    }
                    told
                });
                SelfAlias {
                    node,
                    teller: Some(teller),
                }
            }
        }
    }

    /// The node's own address.
    pub fn addr(&self) -> Ipv4Addr {
        self.node.addr
    }

    /// The node's dials of its own address so far.
    pub fn dials_to_self(&self) -> usize {
        dials_logged(&self.node, self.node.addr)
    }

    /// Stops the teller (if any); the PeerLists naming the node it sent.
    pub fn finish_teller(&mut self) -> usize {
        self.teller.take().map_or(0, Task::finish)
    }
}

/// What a [`race`] did: each payload's first and last write. Its
/// connections stay open until it is closed or dropped.
#[derive(Debug)]
pub struct Race {
    pub started: Vec<Instant>,
    pub finished: Vec<Instant>,
    conns: Vec<TcpStream>,
}

impl Race {
    /// The first payload's start.
    pub fn start(&self) -> Instant {
        *self.started.iter().min().expect("at least one payload")
    }

    /// From the first start to the last.
    pub fn spread(&self) -> Duration {
        *self.started.iter().max().expect("at least one payload") - self.start()
    }

    /// From the first start to the last write's end.
    pub fn took(&self) -> Duration {
        *self.finished.iter().max().expect("at least one payload") - self.start()
    }

    /// Closes the connections (their sends are over).
    pub fn close(self) {
        for conn in self.conns {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// Sends `payloads[i]` from `from[i]` to `to`, all at once: the
/// connections are opened first, then one thread each writes its payload
/// when a barrier releases them all. Panics if a connect or a write fails
/// (a write may take [`WAIT`] at most).
pub fn race(from: &[Ipv4Addr], to: SocketAddrV4, payloads: &[Arc<Vec<u8>>]) -> Race {
    assert_eq!(from.len(), payloads.len());
    let conns: Vec<TcpStream> = from.iter().map(|&from| client(from, to)).collect();
    let barrier = Arc::new(Barrier::new(conns.len()));
    let writers: Vec<_> = conns
        .iter()
        .zip(payloads)
        .zip(from)
        .map(|((stream, payload), &from)| {
            let mut stream = stream.try_clone().expect("cloning a stream");
            let (payload, barrier) = (Arc::clone(payload), Arc::clone(&barrier));
            thread::spawn(move || -> io::Result<(Instant, Instant)> {
                barrier.wait();
                let started = Instant::now();
                stream
                    .write_all(&payload)
                    .map_err(|e| io::Error::new(e.kind(), format!("{from}: {e}")))?;
                Ok((started, Instant::now()))
            })
        })
        .collect();
    let (mut started, mut finished) = (Vec::new(), Vec::new());
    for writer in writers {
        let (start, end) = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .unwrap_or_else(|e| panic!("sending a payload to {to}: {e}"));
        started.push(start);
        finished.push(end);
    }
    Race {
        started,
        finished,
        conns,
    }
}
