//! One TCP connection: its intake, its write queue, and its clocks.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use wire::{ChunkPool, History, Message};

use crate::intake::{Arrival, Intake, IntakeError};
use crate::protocol::{ConnId, Dialect, Direction, Payload, Why};

/// Small messages (not archives) a peer may leave unread before it is cut
/// off. Archives are bounded by count instead: at most one being written
/// and one waiting, their chunks shared with our history.
const MAX_QUEUED_MESSAGES: usize = 1 << 20;
/// Archives asked for (one per ArchiveRequest) that may wait for a peer:
/// they cost no memory (our history's chunks, shared), but a peer that
/// asks and asks without reading is cut.
const MAX_QUEUED_ANSWERS: usize = 64;
/// Messages decoded from one connection before the loop serves the others.
/// The byte budget alone does not bound the work: a message may be one
/// byte, and a peer sending ArchiveRequests as fast as it can (reading
/// nothing) made a round of a million messages, gigabytes of queued
/// actions, and an honest peer wait for seconds.
const MESSAGE_BUDGET: usize = 256;
/// Bytes read from one connection in a round before the loop serves the
/// others.
const READ_BUDGET: usize = 1 << 20;
/// A message in progress must finish within the read timeout plus its size
/// at this rate: a slow but steady transfer of a large history finishes,
/// a peer dribbling bytes does not hold a connection open.
const MIN_RATE: u64 = 64 << 10;
/// Slices handed to one `writev` (Linux's IOV_MAX).
const MAX_IOVECS: usize = 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A dial in progress; it fails at `deadline`.
    Connecting {
        /// When the dial gives up.
        deadline: Instant,
    },
    /// Established.
    Open,
    /// The state machine is done with it (it closed it, or the peer's
    /// stream ended): what is queued is written, then the socket closes,
    /// at `deadline` at the latest.
    Closing {
        /// When it closes whatever is left.
        deadline: Instant,
    },
}

/// A payload being written, and how far.
#[derive(Debug)]
struct Outgoing {
    payload: Payload,
    sent: usize,
}

/// One connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Its name for the state machine.
    pub id: ConnId,
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// What it speaks (the port it was opened on).
    pub dialect: Dialect,
    /// Our side's address and port.
    pub local: Option<SocketAddrV4>,
    /// Who dialed.
    pub direction: Direction,
    /// Where it is in its life.
    pub state: State,
    /// When it was opened.
    pub opened: Instant,
    /// The state machine was told it connected (a dial that reached this
    /// node itself never is).
    pub reported: bool,
    /// It is one end of a connection from this node to itself.
    pub to_self: bool,
    /// The state machine was told a message from it began
    /// ([`Event::Streaming`](crate::protocol::Event::Streaming)).
    pub told_streaming: bool,
    intake: Intake,
    /// Bytes read but not yet taken by the intake (the message budget ran
    /// out, or it waits for checks); taken first in the next round.
    unread: Vec<u8>,
    queue: VecDeque<Outgoing>,
    queued_messages: usize,
    /// A Notification saying why we close: written after everything queued
    /// before or after it (the replies owed for the messages that came
    /// before what made us close), so that it is the last message.
    farewell: Option<Vec<u8>>,
    /// Our side of the stream is shut down: all we owed is written.
    fin_sent: bool,
    /// A write failed (the peer hung up without reading): nothing more is
    /// written, but what the peer sent before its end is still read and
    /// taken, as after a FIN.
    writing_ended: bool,
    /// When the message being received started, and at which stream
    /// offset.
    message_started: Option<(Instant, u64)>,
    /// A whole message has come from the peer.
    pub spoke: bool,
    /// When the write queue last moved (or became non-empty).
    last_write_progress: Instant,
    /// WRITABLE interest is registered (only while the queue is non-empty
    /// or a dial is in progress).
    pub wants_write: bool,
    /// Readable data may remain (the last round stopped at a budget, or
    /// the socket signalled).
    pub read_ready: bool,
    /// The socket signalled writable since the last flush.
    pub write_ready: bool,
}

/// How a read round ended the connection.
pub enum End {
    /// The peer's stream ended: no more requests, but what we owe it is
    /// still written.
    Finished,
    /// The connection broke.
    Failed(String),
    /// The peer sent something undecodable, or the rest of an invalid
    /// archive without end: tell it, then close.
    Garbage(IntakeError),
}

impl Conn {
    /// A connection in `state`, its intake holding messages of at most
    /// `max_message` bytes and at most `max_unverified` unchecked bytes
    /// of an archive.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: TcpStream,
        id: ConnId,
        (addr, dialect): (Ipv4Addr, Dialect),
        local: Option<SocketAddrV4>,
        direction: Direction,
        state: State,
        now: Instant,
        max_message: usize,
        max_unverified: usize,
    ) -> Self {
        Conn {
            stream,
            id,
            addr,
            dialect,
            local,
            direction,
            state,
            opened: now,
            reported: false,
            to_self: false,
            told_streaming: false,
            intake: Intake::new(id, dialect, max_message, max_unverified),
            unread: Vec::new(),
            queue: VecDeque::new(),
            queued_messages: 0,
            farewell: None,
            fin_sent: false,
            writing_ended: false,
            message_started: None,
            spoke: false,
            last_write_progress: now,
            wants_write: false,
            read_ready: false,
            write_ready: false,
        }
    }

    /// The intake, for checked batches coming back.
    pub fn intake(&mut self) -> &mut Intake {
        &mut self.intake
    }

    /// Reads until the socket has nothing more, a budget is spent, or the
    /// intake waits for checks, decoding as it goes against `ours`; whole
    /// messages go to `out`. `Some` when the connection ended.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        ours: &History,
        pool: &mut ChunkPool,
        now: Instant,
        out: &mut Vec<Arrival>,
    ) -> Option<End> {
        self.read_ready = false;
        let unread = std::mem::take(&mut self.unread);
        if !unread.is_empty()
            && let Err(e) = self.take(&unread, ours, pool, now, out)
        {
            return Some(End::Garbage(e));
        }
        // Not a byte more, not even the end of the stream, until the checks
        // the intake waits for are back: what came before the end is told
        // before the end.
        if !self.unread.is_empty() || self.intake.is_blocked() {
            return None;
        }
        let mut read = 0;
        while read < READ_BUDGET {
            let n = match self.stream.read(buf) {
                Ok(0) => return Some(End::Finished),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(End::Failed(e.to_string())),
            };
            read += n;
            if let Err(e) = self.take(&buf[..n], ours, pool, now, out) {
                return Some(End::Garbage(e));
            }
            if !self.unread.is_empty() || self.intake.is_blocked() {
                return None;
            }
        }
        self.read_ready = true;
        None
    }

    /// Gives `input` to the intake; what it does not take now is kept, and
    /// the next round starts with it (at once, unless the intake waits for
    /// checks).
    fn take(
        &mut self,
        mut input: &[u8],
        ours: &History,
        pool: &mut ChunkPool,
        now: Instant,
        out: &mut Vec<Arrival>,
    ) -> Result<(), IntakeError> {
        let before = out.len();
        let pushed = self
            .intake
            .push(&mut input, ours, pool, MESSAGE_BUDGET, out);
        // Whole messages before garbage count: the peer spoke.
        if out.len() > before {
            self.spoke = true;
            self.message_started = None;
        }
        pushed?;
        if !self.intake.is_idle() {
            self.message_started
                .get_or_insert((now, self.intake.position()));
        }
        if !input.is_empty() {
            self.unread.extend_from_slice(input);
            self.read_ready = !self.intake.is_blocked();
        }
        Ok(())
    }

    /// The checks the intake waited for came back: read again.
    pub fn resume(&mut self) {
        if !self.intake.is_blocked() {
            self.read_ready = true;
        }
    }

    /// Whether the message in progress has had its time: the read timeout
    /// plus its size at [`MIN_RATE`].
    pub fn message_overdue(&self, now: Instant, timeout: Duration) -> bool {
        self.message_started.is_some_and(|(at, start)| {
            let received = self.intake.position() - start;
            now >= at + timeout + Duration::from_secs(received / MIN_RATE)
        })
    }

    /// Nothing has come from the peer: no whole message, none started (a
    /// peer pushing a large archive first is not silent while it streams).
    pub fn silent(&self) -> bool {
        !self.spoke && self.message_started.is_none()
    }

    /// Memory held unchecked: a partial message, unchecked new chats, and
    /// bytes not yet decoded.
    pub fn held_bytes(&self) -> usize {
        self.intake.unverified_bytes() + self.unread.capacity()
    }

    /// Queues bytes to send. An archive not yet begun is superseded by a
    /// newer one (a slow peer holds at most one waiting, its chunks shared
    /// with ours), except that each ArchiveRequest gets an answer of its
    /// own: an answer is superseded only by a newer archive that is not
    /// one, which answers in its place. Returns why the superseded archive
    /// had been sent, and its size, if one was.
    ///
    /// # Errors
    /// In words, when the peer leaves too many replies unread: more than
    /// [`MAX_QUEUED_MESSAGES`] bytes of messages, or [`MAX_QUEUED_ANSWERS`]
    /// archives asked for.
    pub fn enqueue(
        &mut self,
        payload: Payload,
        now: Instant,
    ) -> Result<Option<(Why, usize)>, String> {
        if self.writing_ended {
            return Ok(payload.unsent());
        }
        if self.queue.is_empty() {
            self.last_write_progress = now;
        }
        match &payload {
            Payload::Archive { why: new, .. } => {
                let answer = *new == Why::Asked;
                let waiting = self.queue.iter_mut().rev().find(|o| {
                    o.sent == 0
                        && matches!(o.payload, Payload::Archive { why, .. } if !answer || why != Why::Asked)
                });
                if let Some(waiting) = waiting {
                    let old = std::mem::replace(&mut waiting.payload, payload);
                    let Payload::Archive { why, history } = old else {
                        unreachable!("an archive was found");
                    };
                    return Ok(Some((why, history.archive_len())));
                }
                if answer {
                    self.check_answers()?;
                }
            }
            // Chats pushed are never superseded: each extends what the one
            // before gave, and they are small.
            Payload::Chats { why, .. } => {
                if *why == Why::Asked {
                    self.check_answers()?;
                }
            }
            Payload::Message(bytes) => {
                self.queued_messages += bytes.len();
                if self.queued_messages > MAX_QUEUED_MESSAGES {
                    return Err(format!(
                        "peer leaves more than {MAX_QUEUED_MESSAGES} bytes of replies unread"
                    ));
                }
            }
        }
        self.queue.push_back(Outgoing { payload, sent: 0 });
        Ok(None)
    }

    /// Refuses one more answer to a request for chats when
    /// [`MAX_QUEUED_ANSWERS`] wait unread.
    fn check_answers(&self) -> Result<(), String> {
        let answers = self
            .queue
            .iter()
            .filter(|o| o.payload.unsent().is_some_and(|(why, _)| why == Why::Asked))
            .count();
        if answers >= MAX_QUEUED_ANSWERS {
            return Err(format!(
                "peer leaves more than {MAX_QUEUED_ANSWERS} archives it asked for unread"
            ));
        }
        Ok(())
    }

    /// A write failed: drops what waits to be written (returning the
    /// archives among it, as [`unsent_archives`](Self::unsent_archives)
    /// does) and writes nothing more; reading goes on until the peer's
    /// stream ends.
    pub fn end_writing(&mut self) -> Vec<(Why, usize)> {
        let unsent = self.unsent_archives();
        self.writing_ended = true;
        self.queue.clear();
        self.queued_messages = 0;
        self.farewell = None;
        self.read_ready = true;
        unsent
    }

    /// A Notification saying why we close, written last (the first
    /// reason given is kept).
    pub fn notify(&mut self, text: &str, now: Instant) {
        if self.farewell.is_none() && !self.writing_ended {
            self.farewell = Some(Message::Notification(text.as_bytes().to_vec()).to_bytes());
            if self.queue.is_empty() {
                self.last_write_progress = now;
            }
        }
    }

    /// The archives not written whole: why each was sent, and its bytes
    /// not written.
    pub fn unsent_archives(&self) -> Vec<(Why, usize)> {
        self.queue
            .iter()
            .filter_map(|o| o.payload.unsent().map(|(why, len)| (why, len - o.sent)))
            .collect()
    }

    /// Whether anything waits to be written.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty() || self.farewell.is_some()
    }

    /// Everything owed is written: sends our FIN once, then reads and drops
    /// what the peer still sends (at most [`READ_BUDGET`] a call), so that
    /// closing with unread bytes does not reset the connection and discard
    /// what it has not received yet. True once the peer's stream has ended
    /// (or broke): the connection can close cleanly.
    pub fn finish(&mut self, buf: &mut [u8]) -> bool {
        if !self.fin_sent && !self.writing_ended {
            self.fin_sent = true;
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return true;
            }
        }
        self.read_ready = false;
        let mut dropped = 0;
        while dropped < READ_BUDGET {
            match self.stream.read(buf) {
                Ok(0) => return true,
                Ok(n) => dropped += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        self.read_ready = true;
        false
    }

    /// Since when the queue has not moved, if it holds anything.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.has_queued().then_some(self.last_write_progress)
    }

    /// Writes until the queue is empty or the socket is full; an archive is
    /// written from its chunks with vectored writes, never copied.
    ///
    /// # Errors
    /// The socket's.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        self.write_ready = false;
        loop {
            if self.queue.is_empty()
                && let Some(bytes) = self.farewell.take()
            {
                self.queued_messages += bytes.len();
                self.queue.push_back(Outgoing {
                    payload: Payload::Message(bytes),
                    sent: 0,
                });
            }
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let result = match &front.payload {
                Payload::Message(bytes) => self.stream.write(&bytes[front.sent..]),
                Payload::Archive { history, .. } => {
                    let header = history.archive_header();
                    let slices = archive_slices(&header, history.segments(), front.sent);
                    self.stream.write_vectored(&slices)
                }
                Payload::Chats { history, from, .. } => {
                    let header = Payload::chats_header(history, *from);
                    let slices = archive_slices(&header, history.segments_from(*from), front.sent);
                    self.stream.write_vectored(&slices)
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    front.sent += n;
                    self.last_write_progress = now;
                    if front.sent == front.payload.len() {
                        let done = self.queue.pop_front().expect("front exists");
                        if let Payload::Message(bytes) = done.payload {
                            self.queued_messages -= bytes.len();
                        }
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

/// The bytes of an ArchiveResponse or Chats message (`header`, then the
/// chats' `segments`) from offset `sent` on, as at most [`MAX_IOVECS`]
/// slices.
fn archive_slices<'a>(
    header: &'a [u8],
    segments: impl Iterator<Item = &'a [u8]>,
    sent: usize,
) -> Vec<IoSlice<'a>> {
    let mut slices = Vec::new();
    let mut skip = sent;
    for part in std::iter::once(header).chain(segments) {
        if slices.len() == MAX_IOVECS {
            break;
        }
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        slices.push(IoSlice::new(&part[skip..]));
        skip = 0;
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{CHUNK_CHATS, Chat};

    /// A connection over a loopback socket pair (the other end returned,
    /// never read).
    fn conn() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (theirs, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).unwrap();
        let conn = Conn::new(
            TcpStream::from_std(ours),
            ConnId(1),
            (Ipv4Addr::LOCALHOST, Dialect::Standard),
            None,
            Direction::Inbound,
            State::Open,
            Instant::now(),
            1 << 20,
            1 << 20,
        );
        (conn, theirs)
    }

    fn archive(chats: usize, why: Why) -> Payload {
        let history = (0..chats)
            .map(|i| Chat::new(vec![b'x'; 1 + i % 9], [1; 16], [2; 16]).unwrap())
            .collect();
        Payload::Archive { history, why }
    }

    fn archives(conn: &Conn) -> Vec<(Why, usize)> {
        conn.queue
            .iter()
            .filter_map(|o| match &o.payload {
                Payload::Archive { history, why } => Some((*why, history.len())),
                Payload::Chats { .. } | Payload::Message(_) => None,
            })
            .collect()
    }

    /// Pushed archives waiting to go are superseded by newer ones (and
    /// said so, to be counted as unsent); each ArchiveRequest gets an
    /// answer of its own, up to [`MAX_QUEUED_ANSWERS`] unread.
    #[test]
    fn each_request_gets_its_archive_and_a_waiting_push_is_superseded() {
        let (mut conn, _theirs) = conn();
        let now = Instant::now();
        let len = |chats| archive(chats, Why::Mined).len();
        assert_eq!(conn.enqueue(archive(1, Why::Mined), now), Ok(None));
        assert_eq!(
            conn.enqueue(archive(2, Why::Relayed), now),
            Ok(Some((Why::Mined, len(1))))
        );
        // An answer supersedes a waiting push: it carries the newest history.
        assert_eq!(
            conn.enqueue(archive(3, Why::Asked), now),
            Ok(Some((Why::Relayed, len(2))))
        );
        // Answers are never superseded by answers.
        assert_eq!(conn.enqueue(archive(3, Why::Asked), now), Ok(None));
        assert_eq!(archives(&conn), [(Why::Asked, 3), (Why::Asked, 3)]);
        // A newer push answers in place of the last answer waiting.
        assert_eq!(
            conn.enqueue(archive(4, Why::Mined), now),
            Ok(Some((Why::Asked, len(3))))
        );
        assert_eq!(archives(&conn), [(Why::Asked, 3), (Why::Mined, 4)]);
        assert_eq!(
            conn.enqueue(archive(4, Why::Asked), now),
            Ok(Some((Why::Mined, len(4))))
        );
        for _ in 0..MAX_QUEUED_ANSWERS - 2 {
            assert_eq!(conn.enqueue(archive(4, Why::Asked), now), Ok(None));
        }
        let unread = conn.enqueue(archive(4, Why::Asked), now).unwrap_err();
        assert!(unread.contains("archives it asked for unread"), "{unread}");
    }

    #[test]
    fn archive_slices_resume_at_any_offset() {
        let history: History = (0..2 * CHUNK_CHATS + 5)
            .map(|i| Chat::new(vec![b'x'; i % 9], [1; 16], [2; 16]).unwrap())
            .collect();
        let mut whole = Vec::new();
        history.encode_archive(&mut whole);
        let header = history.archive_header();
        for sent in [
            0,
            3,
            5,
            6,
            1000,
            history.wire_offset(CHUNK_CHATS) + 5,
            whole.len() - 1,
        ] {
            let bytes: Vec<u8> = archive_slices(&header, history.segments(), sent)
                .iter()
                .flat_map(|s| s.to_vec())
                .collect();
            assert_eq!(bytes, whole[sent..], "from {sent}");
        }
    }
}
