use std::net::Ipv4Addr;

use crate::{CHAT_OVERHEAD, DecodeError, History, Message, MessageType};

/// Default largest message accepted by a [`Decoder`]: 64 MiB, room for an
/// ArchiveResponse of about 870,000 chats of 45 characters.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Initial capacity taken on the word of a count field, whatever it claims;
/// beyond it memory grows with the bytes actually received.
const INITIAL_CAPACITY: usize = 4096;

/// An incremental decoder: feed it bytes as they arrive, in chunks of any
/// size, and it yields whole messages.
///
/// Every byte is looked at once (decoding n bytes costs O(n) however they
/// are chunked), and memory grows with the bytes received, never with what a
/// count field claims: a PeerList claiming 4,000,000,000 addresses followed
/// by ten bytes holds ten bytes' worth. The size limit applies to bytes
/// received too, so a lying count is caught by the caller's read timeout,
/// and an oversized message is refused the moment it crosses the limit.
///
/// After an error the stream cannot be resynchronised: every later call
/// returns the same error.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Stream offset of the next byte to consume.
    position: u64,
    /// Stream offset of the first byte of the message in progress.
    start: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Between messages: the next byte is a type byte.
    Idle,
    /// Reading the u32 count of a PeerList or ArchiveResponse.
    Count {
        kind: MessageType,
        buf: [u8; 4],
        have: usize,
    },
    PeerList {
        remaining: u32,
        addrs: Vec<Ipv4Addr>,
        buf: [u8; 4],
        have: usize,
    },
    /// The chats are kept as bytes only (where each ends is found again
    /// once the message is whole), so a partial archive holds at most twice
    /// the bytes received.
    Archive {
        remaining: u32,
        bytes: Vec<u8>,
        /// Chats already whole, and where the one being read starts.
        done: u32,
        chat_start: usize,
        /// Where the chat being read ends in `bytes`; `None` until its
        /// length byte has arrived.
        chat_end: Option<usize>,
    },
    /// Reading the u8 length of a Notification.
    NotificationLen,
    Notification {
        remaining: usize,
        text: Vec<u8>,
    },
    Failed(DecodeError),
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Decoder {
    /// A decoder that refuses messages of more than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            position: 0,
            start: 0,
            state: State::Idle,
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// True between messages (no partial message is held).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Bytes of a partial message held in memory (capacity, not length).
    pub fn held_bytes(&self) -> usize {
        match &self.state {
            State::PeerList { addrs, .. } => addrs.capacity() * size_of::<Ipv4Addr>(),
            State::Archive { bytes, .. } => bytes.capacity(),
            State::Notification { text, .. } => text.capacity(),
            _ => 0,
        }
    }

    /// Consumes bytes from the front of `input` until one message is whole
    /// (returned, with `input` advanced past it) or `input` is used up
    /// (`Ok(None)`: feed more).
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        if let State::Failed(err) = &self.state {
            return Err(err.clone());
        }
        while !input.is_empty() {
            match self.step(input) {
                Ok(None) => {}
                Ok(Some(message)) => {
                    self.state = State::Idle;
                    return Ok(Some(message));
                }
                Err(err) => {
                    self.state = State::Failed(err.clone());
                    return Err(err);
                }
            }
        }
        Ok(None)
    }

    /// Takes up to `want` bytes from `input` for the message in progress,
    /// refusing them if they would carry it past the size limit.
    fn take<'a>(&mut self, input: &mut &'a [u8], want: usize) -> Result<&'a [u8], DecodeError> {
        let n = want.min(input.len());
        let used = (self.position - self.start) as usize;
        if used + n > self.max_message {
            return Err(DecodeError::TooLarge {
                max: self.max_message,
                start: self.start,
                offset: self.start + self.max_message as u64,
            });
        }
        let (taken, rest) = input.split_at(n);
        *input = rest;
        self.position += n as u64;
        Ok(taken)
    }

    /// Consumes at least one byte of a non-empty `input`.
    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        match self.state {
            State::Idle => {
                self.start = self.position;
                let byte = input[0];
                let kind = MessageType::from_byte(byte).ok_or(DecodeError::UnknownType {
                    byte,
                    offset: self.position,
                })?;
                self.take(input, 1)?;
                Ok(match kind {
                    MessageType::PeerRequest => Some(Message::PeerRequest),
                    MessageType::ArchiveRequest => Some(Message::ArchiveRequest),
                    MessageType::PeerList | MessageType::ArchiveResponse => {
                        self.state = State::Count {
                            kind,
                            buf: [0; 4],
                            have: 0,
                        };
                        None
                    }
                    MessageType::Notification => {
                        self.state = State::NotificationLen;
                        None
                    }
                })
            }
            State::Count {
                kind,
                mut buf,
                have,
            } => {
                let got = self.take(input, 4 - have)?;
                buf[have..have + got.len()].copy_from_slice(got);
                let have = have + got.len();
                if have < 4 {
                    self.state = State::Count { kind, buf, have };
                    return Ok(None);
                }
                let count = u32::from_be_bytes(buf);
                let initial = count as usize;
                Ok(match (kind, count) {
                    (MessageType::PeerList, 0) => Some(Message::PeerList(Vec::new())),
                    (MessageType::PeerList, _) => {
                        let addrs = Vec::with_capacity(initial.min(INITIAL_CAPACITY / 4));
                        self.state = State::PeerList {
                            remaining: count,
                            addrs,
                            buf: [0; 4],
                            have: 0,
                        };
                        None
                    }
                    (_, 0) => Some(Message::ArchiveResponse(History::new())),
                    _ => {
                        self.state = State::Archive {
                            remaining: count,
                            bytes: Vec::with_capacity(
                                initial.saturating_mul(CHAT_OVERHEAD).min(INITIAL_CAPACITY),
                            ),
                            done: 0,
                            chat_start: 0,
                            chat_end: None,
                        };
                        None
                    }
                })
            }
            State::PeerList { .. } => self.step_peer_list(input),
            State::Archive { .. } => self.step_archive(input),
            State::NotificationLen => {
                let len = self.take(input, 1)?[0] as usize;
                if len == 0 {
                    return Ok(Some(Message::Notification(Vec::new())));
                }
                self.state = State::Notification {
                    remaining: len,
                    text: Vec::with_capacity(len),
                };
                Ok(None)
            }
            State::Notification { remaining, .. } => {
                let got = self.take(input, remaining)?;
                let State::Notification { remaining, text } = &mut self.state else {
                    unreachable!()
                };
                text.extend_from_slice(got);
                *remaining -= got.len();
                Ok((*remaining == 0).then(|| Message::Notification(std::mem::take(text))))
            }
            State::Failed(_) => unreachable!("push returns before stepping a failed decoder"),
        }
    }

    fn step_peer_list(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        let State::PeerList { have, .. } = self.state else {
            unreachable!()
        };
        let got = self.take(input, 4 - have)?;
        let State::PeerList {
            remaining,
            addrs,
            buf,
            have,
        } = &mut self.state
        else {
            unreachable!()
        };
        buf[*have..*have + got.len()].copy_from_slice(got);
        *have += got.len();
        if *have == 4 {
            addrs.push(Ipv4Addr::from(*buf));
            *have = 0;
            *remaining -= 1;
            if *remaining == 0 {
                return Ok(Some(Message::PeerList(std::mem::take(addrs))));
            }
        }
        Ok(None)
    }

    fn step_archive(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        let State::Archive {
            ref bytes,
            chat_end,
            ..
        } = self.state
        else {
            unreachable!()
        };
        let want = match chat_end {
            None => 1,
            Some(end) => end - bytes.len(),
        };
        let got = self.take(input, want)?;
        let State::Archive {
            remaining,
            bytes,
            done,
            chat_start,
            chat_end,
        } = &mut self.state
        else {
            unreachable!()
        };
        if chat_end.is_none() {
            *chat_start = bytes.len();
            *chat_end = Some(bytes.len() + CHAT_OVERHEAD + got[0] as usize);
        }
        bytes.extend_from_slice(got);
        if Some(bytes.len()) == *chat_end {
            *chat_end = None;
            *done += 1;
            *remaining -= 1;
            if *remaining == 0 {
                let (history, cut) = History::from_whole_chats(std::mem::take(bytes));
                debug_assert_eq!(cut, 0, "the decoder delimited whole chats");
                return Ok(Some(Message::ArchiveResponse(history)));
            }
        }
        Ok(None)
    }

    /// What the decoder is in the middle of, for error messages.
    fn inside(&self) -> String {
        let at = self.start;
        match &self.state {
            State::Idle | State::Failed(_) => "no message".into(),
            State::Count { kind, .. } => format!("the count of the {kind:?} starting at byte {at}"),
            State::PeerList {
                addrs, remaining, ..
            } => format!(
                "address {} of {} of the PeerList starting at byte {at}",
                addrs.len(),
                addrs.len() + *remaining as usize
            ),
            State::Archive {
                done,
                remaining,
                bytes,
                chat_start,
                chat_end,
            } => {
                // Between chats, the next one starts where the bytes end.
                let start = if chat_end.is_some() {
                    *chat_start
                } else {
                    bytes.len()
                };
                format!(
                    "chat {done} of {} (starting at byte {}) of the ArchiveResponse starting at byte {at}",
                    *done as usize + *remaining as usize,
                    self.start + 5 + start as u64
                )
            }
            State::NotificationLen | State::Notification { .. } => {
                format!("the Notification starting at byte {at}")
            }
        }
    }
}

/// Decodes exactly one message from `bytes`, with no size limit (the bytes
/// are already in memory). Too few bytes or bytes left over are errors.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut decoder = Decoder::new(usize::MAX);
    let mut input = bytes;
    match decoder.push(&mut input)? {
        Some(_) if !input.is_empty() => Err(DecodeError::TrailingBytes {
            offset: decoder.position(),
        }),
        Some(message) => Ok(message),
        None => Err(DecodeError::Truncated {
            offset: decoder.position(),
            inside: if bytes.is_empty() {
                "an empty input".into()
            } else {
                decoder.inside()
            },
        }),
    }
}

/// Decodes exactly one ArchiveResponse from `bytes` (see [`decode`]) and
/// returns its history; any other message is
/// [`DecodeError::UnexpectedType`].
pub fn decode_archive(bytes: &[u8]) -> Result<History, DecodeError> {
    match decode(bytes)? {
        Message::ArchiveResponse(history) => Ok(history),
        other => Err(DecodeError::UnexpectedType {
            expected: MessageType::ArchiveResponse,
            found: other.message_type(),
        }),
    }
}
