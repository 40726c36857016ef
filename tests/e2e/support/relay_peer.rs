//! [`RelayPeer`], a scripted client of the compact relay extension
//! (`docs/EXTENSION.md`) on a node's relay port, and the extension's
//! hostile peers built on it, one function or type per fault (listed in
//! the family of `misbehave.rs` too):
//!
//! - [`lie_about_lengths`]: a Tip that claims u32::MAX chats, then, asked
//!   for them, a Chats whose count claims more chats than it sends before
//!   it closes.
//! - [`endless_chats`]: a Chats that claims u32::MAX chats and never ends
//!   (chats that are invalid, or that extend a prefix the node does not
//!   hold).
//! - [`SilentRelayPort`]: a relay port that accepts and never says Hello.
//!
//! A prefix digest that does not match, full archives on a relay
//! connection and a first message other than Hello are single sends of a
//! [`RelayPeer`]. Every wait is bounded; every thread stops and is joined
//! when its owner drops.

use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wire::{DIGEST_LEN, Frame, FrameDecoder, History, Message, RelayMessage};

use super::misbehave::{End, Got, POLL, Task, read_once};
use super::{WAIT, connect_from};

/// The send buffer of an [`endless_chats`] client: small, so that what it
/// counts as taken is close to what reached the node.
const ENDLESS_SEND_BUFFER: usize = 64 * 1024;

/// The digest of chat `from - 1` of `history` (16 zeros for 0): what a
/// ChatsRequest or a Chats for chats `from..` carries.
pub fn digest_before(history: &History, from: usize) -> [u8; DIGEST_LEN] {
    match from.checked_sub(1) {
        None => [0; DIGEST_LEN],
        Some(last) => *history
            .chat(last)
            .unwrap_or_else(|| panic!("no chat {last} in a history of {}", history.len()))
            .digest(),
    }
}

/// The Tip of `history`: its length and last digest.
pub fn tip_of(history: &History) -> RelayMessage {
    RelayMessage::Tip {
        len: history.len() as u32,
        digest: digest_before(history, history.len()),
    }
}

/// The wire bytes of chats `from..` of `history`, back to back.
pub fn chat_bytes(history: &History, from: usize) -> Vec<u8> {
    history.segments_from(from).flatten().copied().collect()
}

/// One whole message a [`RelayPeer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An extension message other than Chats.
    Relay(RelayMessage),
    /// An extension Chats message: its header's `from` and `prev`, and
    /// its chats.
    Chats {
        /// Index of its first chat.
        from: u32,
        /// The digest of the sender's chat `from - 1`.
        prev: [u8; DIGEST_LEN],
        /// The chats it carried.
        chats: History,
    },
    /// A standard message (an ArchiveResponse with its history).
    Standard(Message),
}

impl Received {
    /// A short description, for failure messages (no chat is printed).
    pub fn summary(&self) -> String {
        match self {
            Received::Relay(message) => format!("{message:?}"),
            Received::Chats { from, chats, .. } => {
                format!("Chats from {from} ({} chats)", chats.len())
            }
            Received::Standard(Message::ArchiveResponse(history)) => {
                format!("ArchiveResponse ({} chats)", history.len())
            }
            Received::Standard(message) => format!("{message:?}"),
        }
    }
}

/// What a whole [`Received`] is assembled from.
#[derive(Debug)]
enum Partial {
    Archive(History),
    Chats {
        from: u32,
        prev: [u8; DIGEST_LEN],
        chats: History,
    },
}

/// A raw client of a node's relay port, from a chosen loopback address:
/// it reads the node's stream with [`FrameDecoder::relay`] (the extension's
/// messages and the standard ones, whole) and sends whatever it is told,
/// honest or not.
#[derive(Debug)]
pub struct RelayPeer {
    stream: TcpStream,
    /// Its own address.
    pub local: SocketAddrV4,
    /// The node's relay port.
    pub remote: SocketAddrV4,
    frames: FrameDecoder,
    /// Bytes read but not yet decoded.
    unread: Vec<u8>,
    /// An archive or Chats being received.
    partial: Option<Partial>,
    /// How the node ended the connection, once a read saw it.
    ended: Option<End>,
}

impl RelayPeer {
    /// Connects from `from` (any free port) to `to` (a relay port) and
    /// sends nothing: see [`hello`](Self::hello). Panics if it cannot
    /// connect within 5 s.
    pub fn connect_bare(from: Ipv4Addr, to: SocketAddrV4) -> RelayPeer {
        RelayPeer::connect_tuned(from, to, super::plain)
    }

    /// [`connect_bare`](Self::connect_bare) with socket options set
    /// before the connect (`tune`).
    fn connect_tuned(
        from: Ipv4Addr,
        to: SocketAddrV4,
        tune: impl FnOnce(&socket2::Socket) -> io::Result<()>,
    ) -> RelayPeer {
        let stream = connect_from(from, to, tune)
            .unwrap_or_else(|e| panic!("connecting {from} -> {to} (relay port): {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_write_timeout(Some(WAIT))
            .expect("a write timeout");
        let SocketAddr::V4(local) = stream.local_addr().expect("a local address") else {
            unreachable!("an IPv4 socket")
        };
        RelayPeer {
            stream,
            local,
            remote: to,
            frames: FrameDecoder::relay(wire::DEFAULT_MAX_MESSAGE, wire::DEFAULT_MAX_MESSAGE),
            unread: Vec::new(),
            partial: None,
            ended: None,
        }
    }

    /// Connects from `from` to the relay port `to`, sends Hello and waits
    /// for the node's: panics if another message comes first, or none
    /// within [`WAIT`].
    pub fn connect(from: Ipv4Addr, to: SocketAddrV4) -> RelayPeer {
        let mut peer = RelayPeer::connect_bare(from, to);
        peer.hello();
        peer
    }

    /// Sends Hello (version 1) and waits for the node's Hello, its first
    /// message: panics if another comes first, or none within [`WAIT`].
    pub fn hello(&mut self) {
        self.send(&RelayMessage::Hello {
            version: wire::RELAY_VERSION,
        });
        match self.recv(WAIT) {
            Some(Received::Relay(RelayMessage::Hello { .. })) => {}
            other => panic!(
                "{}: the node's first message on its relay port is not a Hello: {:?} (ended: {:?})",
                self.remote,
                other.map(|m| m.summary()),
                self.ended
            ),
        }
    }

    /// Writes bytes as they are (a message, part of one, or garbage);
    /// panics if they cannot go within [`WAIT`].
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .unwrap_or_else(|e| panic!("{} -> {}: write failed: {e}", self.local, self.remote));
    }

    /// Writes bytes as they are; the error if they cannot go.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends an extension message other than Chats.
    pub fn send(&mut self, message: &RelayMessage) {
        self.send_raw(&message.to_bytes());
    }

    /// Sends a standard message.
    pub fn send_message(&mut self, message: &Message) {
        self.send_raw(&message.to_bytes());
    }

    /// Sends a Chats message whose header says `from`, `prev` and
    /// `count`, followed by `chats` (wire bytes, whatever they hold: the
    /// header may lie about them).
    pub fn send_chats(&mut self, from: u32, prev: &[u8; DIGEST_LEN], count: u32, chats: &[u8]) {
        let mut bytes = wire::chats_header(from, prev, count).to_vec();
        bytes.extend_from_slice(chats);
        self.send_raw(&bytes);
    }

    /// Sends the honest Chats of chats `from..` of `history`.
    pub fn send_chats_of(&mut self, history: &History, from: usize) {
        let count = (history.len() - from) as u32;
        let prev = digest_before(history, from);
        self.send_chats(from as u32, &prev, count, &chat_bytes(history, from));
    }

    /// The next whole message; `None` after `timeout` or once the node
    /// closed the connection (see [`is_closed`](Self::is_closed)). Panics
    /// on bytes that do not decode.
    pub fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0; 64 * 1024];
        loop {
            if let Some(received) = self.decode() {
                return Some(received);
            }
            if self.ended.is_some() {
                return None;
            }
            if !super::peer::read_until(&self.stream, deadline) {
                return None;
            }
            match read_once(&mut self.stream, &mut buf) {
                Got::Bytes(n) => self.unread.extend_from_slice(&buf[..n]),
                Got::Again => {}
                Got::Eof => self.ended = Some(End::Eof),
                Got::Broken(e) => self.ended = Some(End::Broken(e.to_string())),
            }
        }
    }

    /// The next message for which `wanted` holds, skipping others; `None`
    /// after `timeout` or on close.
    pub fn recv_until(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self.recv(left)?;
            if wanted(&received) {
                return Some(received);
            }
        }
    }

    /// The next ChatsRequest (others skipped): its `from` and `prev`;
    /// `None` after `timeout` or on close.
    pub fn recv_chats_request(&mut self, timeout: Duration) -> Option<(u32, [u8; DIGEST_LEN])> {
        match self.recv_until(timeout, |m| {
            matches!(m, Received::Relay(RelayMessage::ChatsRequest { .. }))
        })? {
            Received::Relay(RelayMessage::ChatsRequest { from, prev }) => Some((from, prev)),
            _ => unreachable!("filtered"),
        }
    }

    /// Reads what comes until the node closes the connection, for at
    /// most `timeout`: every message, and how the connection ended
    /// ([`End::Open`] if it did not).
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<Received>, End) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while let Some(received) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            got.push(received);
        }
        (got, self.end())
    }

    /// The node closed the connection (seen by a `recv`).
    pub fn is_closed(&self) -> bool {
        self.ended.is_some()
    }

    /// How the connection ended, as far as reads saw: [`End::Open`] while
    /// none saw an end.
    pub fn end(&self) -> End {
        self.ended.clone().unwrap_or(End::Open)
    }

    /// Ends its writing (`shutdown(SHUT_WR)`); reading goes on.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Decodes the bytes read so far up to the end of one whole message.
    fn decode(&mut self) -> Option<Received> {
        let mut input = &self.unread[..];
        let mut whole = None;
        while whole.is_none() {
            let frame = match self.frames.next(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => panic!("{} sent undecodable bytes: {e}", self.remote),
            };
            match frame {
                Frame::Message(message) => whole = Some(Received::Standard(message)),
                Frame::Relay(message) => whole = Some(Received::Relay(message)),
                Frame::ArchiveStart { .. } => self.partial = Some(Partial::Archive(History::new())),
                Frame::ChatsStart { from, prev, .. } => {
                    self.partial = Some(Partial::Chats {
                        from,
                        prev,
                        chats: History::new(),
                    });
                }
                Frame::Chat(chat) => {
                    let Some(Partial::Archive(chats) | Partial::Chats { chats, .. }) =
                        &mut self.partial
                    else {
                        unreachable!("a chat comes after its message's header")
                    };
                    chats
                        .push_wire(chat)
                        .expect("the decoder yields whole chats");
                }
                Frame::ArchiveEnd => {
                    whole = Some(match self.partial.take() {
                        Some(Partial::Archive(history)) => {
                            Received::Standard(Message::ArchiveResponse(history))
                        }
                        Some(Partial::Chats { from, prev, chats }) => {
                            Received::Chats { from, prev, chats }
                        }
                        None => unreachable!("ArchiveEnd comes after its message's header"),
                    });
                }
            }
        }
        let used = self.unread.len() - input.len();
        self.unread.drain(..used);
        whole
    }
}

/// What a [`lie_about_lengths`] client saw.
#[derive(Debug)]
pub struct LyingLengths {
    /// The node's ChatsRequest after the lying Tip (`from`, `prev`), if
    /// one came.
    pub asked: Option<(u32, [u8; DIGEST_LEN])>,
    /// Bytes of the chats it then sent, after a header claiming many
    /// more.
    pub sent: usize,
    /// How the connection ended after its write side was shut down:
    /// [`End::Open`] if the node kept it [`WAIT`] long.
    pub end: End,
}

/// A peer whose lengths lie: it connects from `from` to the relay port
/// `to`, says Hello, sends a Tip claiming u32::MAX chats (with a digest
/// of 0xee bytes), waits (at most [`WAIT`]) for the node's ChatsRequest,
/// answers it with a Chats whose count claims `claimed` chats but that
/// carries only the chats `chats` gives for the request's `from` and
/// `prev` (wire bytes), and shuts down its write side (the node meets the
/// end of the stream inside the message); then it reads until the node
/// closes, for at most [`WAIT`].
pub fn lie_about_lengths(
    from: Ipv4Addr,
    to: SocketAddrV4,
    claimed: u32,
    chats: impl FnOnce(u32, [u8; DIGEST_LEN]) -> Vec<u8>,
) -> LyingLengths {
    let mut peer = RelayPeer::connect(from, to);
    peer.send(&RelayMessage::Tip {
        len: u32::MAX,
        digest: [0xee; DIGEST_LEN],
    });
    let asked = peer.recv_chats_request(WAIT);
    let mut sent = 0;
    if let Some((start, prev)) = asked {
        let bytes = chats(start, prev);
        sent = bytes.len();
        peer.send_chats(start, &prev, claimed, &bytes);
    }
    peer.shutdown_write();
    let (_, end) = peer.read_to_close(WAIT);
    LyingLengths { asked, sent, end }
}

/// What an [`endless_chats`] client did.
#[derive(Debug)]
pub struct Endless {
    /// Bytes of chats the node's side took (written without error) after
    /// the header: at most what its kernel and ours buffer more than the
    /// node read.
    pub taken: usize,
    /// Every message the node sent meanwhile.
    pub received: Vec<Received>,
    /// How the connection ended.
    pub end: End,
    /// From the header to the end (or to the end of reading).
    pub took: Duration,
}

impl Endless {
    /// The text of the Notifications the node sent.
    pub fn notifications(&self) -> Vec<String> {
        self.received
            .iter()
            .filter_map(|m| match m {
                Received::Standard(Message::Notification(text)) => {
                    Some(String::from_utf8_lossy(text).into_owned())
                }
                _ => None,
            })
            .collect()
    }
}

/// A Chats that never ends: connects from `from` to the relay port `to`
/// with a 64 KiB send buffer, says Hello, sends a Chats header
/// (`start`: its `from` and `prev`) claiming u32::MAX chats, then `chat`
/// (the wire bytes of one chat, valid-looking or not) again and again
/// until the node stops taking them or `most` bytes have gone, while it
/// reads what the node sends, until the node closes the connection or
/// [`WAIT`] after its writing stopped. Panics if it cannot connect or the
/// node sends bytes that do not decode.
pub fn endless_chats(
    from: Ipv4Addr,
    to: SocketAddrV4,
    start: (u32, [u8; DIGEST_LEN]),
    chat: &[u8],
    most: usize,
) -> Endless {
    let mut peer =
        RelayPeer::connect_tuned(from, to, |s| s.set_send_buffer_size(ENDLESS_SEND_BUFFER));
    peer.hello();
    let mut writer = peer.stream.try_clone().expect("a second handle");
    let header = wire::chats_header(start.0, &start.1, u32::MAX);
    let block: Vec<u8> = chat
        .iter()
        .copied()
        .cycle()
        .take(chat.len() * (16 * 1024 / chat.len()).max(1))
        .collect();
    let stopped = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let writing = {
        let stopped = Arc::clone(&stopped);
        thread::spawn(move || {
            let mut taken = 0;
            if writer.write_all(&header).is_ok() {
                while taken < most {
                    match writer.write(&block) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => taken += n,
                    }
                }
            }
            stopped.store(true, Ordering::SeqCst);
            taken
        })
    };
    let mut received = Vec::new();
    let mut stopped_at = None;
    loop {
        if let Some(message) = peer.recv(POLL * 10) {
            received.push(message);
            continue;
        }
        if peer.is_closed() {
            break;
        }
        if stopped.load(Ordering::SeqCst) {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= WAIT {
                break;
            }
        }
    }
    let end = peer.end();
    let took = began.elapsed();
    // The writer stops at once on a closed connection; on an open one,
    // it has stopped already (`most` went).
    let _ = peer.stream.shutdown(Shutdown::Both);
    let taken = writing.join().expect("the writer thread");
    Endless {
        taken,
        received,
        end,
        took,
    }
}

/// One connection a [`SilentRelayPort`] accepted.
#[derive(Debug, Clone)]
pub struct Held {
    /// When it was accepted.
    pub at: Instant,
    /// Who connected.
    pub from: SocketAddrV4,
    /// When the other side closed it (end of stream or reset), if it did.
    pub ended: Option<Instant>,
    /// Bytes it received.
    pub got: usize,
}

/// A relay port that accepts and says nothing: it listens on `addr` (a
/// loopback address and the relay port), accepts every connection, reads
/// and drops what comes, never sends a byte (no Hello), and holds each
/// connection until the other side closes it or the port is dropped.
pub struct SilentRelayPort {
    log: Arc<Mutex<Vec<Held>>>,
    _task: Task<()>,
}

impl SilentRelayPort {
    /// Listens on `addr`; panics unless it is a loopback address that
    /// can be bound.
    pub fn start(addr: SocketAddrV4) -> SilentRelayPort {
        assert!(addr.ip().is_loopback(), "loopback only, not {addr}");
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let log: Arc<Mutex<Vec<Held>>> = Arc::default();
        let task = {
            let log = Arc::clone(&log);
            Task::spawn(move |stop| {
                let mut open: Vec<(usize, TcpStream)> = Vec::new();
                let mut buf = vec![0; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, SocketAddr::V4(from))) => {
                            stream.set_nonblocking(true).expect("non-blocking");
                            let mut log = log.lock().unwrap();
                            log.push(Held {
                                at: Instant::now(),
                                from,
                                ended: None,
                                got: 0,
                            });
                            open.push((log.len() - 1, stream));
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => panic!("accepting on {addr}: {e}"),
                    }
                    open.retain_mut(|(i, stream)| {
                        let ended = loop {
                            match read_once(stream, &mut buf) {
                                Got::Bytes(n) => log.lock().unwrap()[*i].got += n,
                                Got::Again => break false,
                                Got::Eof | Got::Broken(_) => break true,
                            }
                        };
                        if ended {
                            log.lock().unwrap()[*i].ended = Some(Instant::now());
                        }
                        !ended
                    });
                    thread::sleep(POLL);
                }
            })
        };
        SilentRelayPort { log, _task: task }
    }

    /// Every connection accepted so far, in order.
    pub fn accepted(&self) -> Vec<Held> {
        self.log.lock().unwrap().clone()
    }
}
