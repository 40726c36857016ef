//! One TCP connection: its decoder, its write queue, and its clocks.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use wire::{DecodeError, Decoder, Message};

use crate::protocol::{Direction, Payload};

/// Small messages (not archives) a peer may leave unread before it is cut
/// off. Archives are bounded by count instead: at most one being written
/// and one waiting, shared with every other peer.
const MAX_QUEUED_MESSAGES: usize = 1 << 20;
/// Messages decoded from one connection before the loop serves the others.
/// The byte budget alone does not bound the work: a message may be one
/// byte, and a peer sending ArchiveRequests as fast as it can (reading
/// nothing) made a round of a million messages, gigabytes of queued
/// actions, and an honest peer wait for seconds.
const MESSAGE_BUDGET: usize = 256;

pub enum State {
    Connecting { deadline: Instant },
    Open,
}

pub struct Conn {
    pub stream: TcpStream,
    pub addr: Ipv4Addr,
    pub direction: Direction,
    pub state: State,
    pub opened: Instant,
    decoder: Decoder,
    /// Bytes read but not decoded when the message budget ran out; taken
    /// first in the next round (at most one read's worth).
    unread: Vec<u8>,
    queue: VecDeque<(Payload, usize)>,
    queued_messages: usize,
    /// When the message being received started, if one is.
    message_started: Option<Instant>,
    /// A whole message has come from the peer.
    pub spoke: bool,
    /// When the write queue last moved (or became non-empty).
    last_write_progress: Instant,
    /// Close once no partial message is held, but not before this.
    pub close_when_idle: Option<Instant>,
    /// WRITABLE interest is registered (only while the queue is non-empty).
    pub wants_write: bool,
    /// Readable data may remain (the last read stopped at its budget).
    pub read_ready: bool,
}

/// What one round of reading brought.
pub struct ReadOutcome {
    pub messages: Vec<(Message, usize)>,
    /// The connection is finished: closed by the peer or broken.
    pub end: Option<End>,
}

pub enum End {
    Closed(String),
    /// The peer sent something undecodable: tell it, then close.
    Garbage(DecodeError),
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        addr: Ipv4Addr,
        direction: Direction,
        state: State,
        now: Instant,
        max_message: usize,
    ) -> Self {
        Conn {
            stream,
            addr,
            direction,
            state,
            opened: now,
            decoder: Decoder::new(max_message),
            unread: Vec::new(),
            queue: VecDeque::new(),
            queued_messages: 0,
            message_started: None,
            spoke: false,
            last_write_progress: now,
            close_when_idle: None,
            wants_write: false,
            read_ready: false,
        }
    }

    /// Reads until the socket has nothing more, `budget` bytes were read or
    /// [`MESSAGE_BUDGET`] messages decoded, decoding as it goes.
    pub fn read(&mut self, buf: &mut [u8], budget: usize, now: Instant) -> ReadOutcome {
        let mut out = ReadOutcome {
            messages: Vec::new(),
            end: None,
        };
        self.read_ready = false;
        let unread = std::mem::take(&mut self.unread);
        if !unread.is_empty() && !self.decode(&unread, &mut out, now) {
            return out;
        }
        let mut read = 0;
        while read < budget {
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    out.end = Some(End::Closed("closed by peer".into()));
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.end = Some(End::Closed(e.to_string()));
                    break;
                }
            };
            read += n;
            if !self.decode(&buf[..n], &mut out, now) {
                return out;
            }
            if read >= budget {
                self.read_ready = true;
            }
        }
        out
    }

    /// Decodes `input` into `out`; false when the round must stop: the
    /// peer sent garbage (`out.end` says so), or the message budget is
    /// spent and the rest of `input` is kept for the next round.
    fn decode(&mut self, mut input: &[u8], out: &mut ReadOutcome, now: Instant) -> bool {
        while !input.is_empty() {
            if out.messages.len() >= MESSAGE_BUDGET {
                self.unread.extend_from_slice(input);
                self.read_ready = true;
                return false;
            }
            match self.decoder.push(&mut input) {
                Ok(Some(message)) => {
                    // Encoding is canonical: this is its size on the wire.
                    let len = message.encoded_len();
                    out.messages.push((message, len));
                    self.message_started = None;
                    self.spoke = true;
                }
                Ok(None) => {}
                Err(e) => {
                    out.end = Some(End::Garbage(e));
                    return false;
                }
            }
        }
        if !self.decoder.is_idle() {
            self.message_started.get_or_insert(now);
        }
        true
    }

    /// A partial message has been arriving since `started`.
    pub fn receiving_since(&self) -> Option<Instant> {
        self.message_started
    }

    pub fn idle(&self) -> bool {
        self.decoder.is_idle() && self.unread.is_empty()
    }

    /// Memory held by a partial message and bytes not yet decoded.
    pub fn held_bytes(&self) -> usize {
        self.decoder.held_bytes() + self.unread.capacity()
    }

    /// Queues bytes to send. A newer archive replaces one not yet started,
    /// so a slow peer holds at most two.
    pub fn enqueue(&mut self, payload: Payload, now: Instant) -> Result<(), String> {
        if self.queue.is_empty() {
            self.last_write_progress = now;
        }
        if let Payload::Archive(new) = &payload {
            let waiting = self
                .queue
                .iter_mut()
                .find(|(p, sent)| *sent == 0 && matches!(p, Payload::Archive(_)));
            if let Some((Payload::Archive(old), _)) = waiting {
                if !Arc::ptr_eq(old, new) {
                    *old = new.clone();
                }
                return Ok(());
            }
        } else {
            self.queued_messages += payload.len();
            if self.queued_messages > MAX_QUEUED_MESSAGES {
                return Err(format!(
                    "peer leaves more than {MAX_QUEUED_MESSAGES} bytes of replies unread"
                ));
            }
        }
        self.queue.push_back((payload, 0));
        Ok(())
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Since when the queue has not moved, if it holds anything.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.has_queued().then_some(self.last_write_progress)
    }

    /// Writes until the queue is empty or the socket is full.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        while let Some((payload, sent)) = self.queue.front_mut() {
            match self.stream.write(&payload.bytes()[*sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *sent += n;
                    self.last_write_progress = now;
                    if *sent == payload.len()
                        && let (Payload::Message(bytes), _) =
                            self.queue.pop_front().expect("front exists")
                    {
                        self.queued_messages -= bytes.len();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Best effort, right before closing: a Notification saying why.
    pub fn notify(&mut self, text: &str) {
        let bytes = Message::Notification(text.as_bytes().to_vec()).to_bytes();
        let _ = self.stream.write(&bytes);
    }
}
