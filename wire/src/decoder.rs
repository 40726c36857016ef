use std::net::Ipv4Addr;

use crate::relay::{RelayMessage, RelayType};
use crate::{CHAT_OVERHEAD, DIGEST_LEN, DecodeError, History, MAX_TEXT, Message, MessageType};

/// Default largest message accepted by a [`Decoder`]: 64 MiB, room for an
/// ArchiveResponse of about 870,000 chats of 45 characters.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Initial capacity taken on the word of a count field, whatever it claims;
/// beyond it memory grows with the bytes actually received.
const INITIAL_CAPACITY: usize = 4096;

/// The longest chat on the wire: length byte, 255 bytes of text, code and
/// digest.
const MAX_CHAT: usize = CHAT_OVERHEAD + MAX_TEXT;

/// One piece of a decoded stream, as a [`FrameDecoder`] yields it.
///
/// Every message but an ArchiveResponse comes whole. An ArchiveResponse
/// comes chat by chat, so that its receiver can compare, store or check
/// each chat as it arrives instead of holding the whole message:
/// `ArchiveStart`, then exactly `count` `Chat`s, then `ArchiveEnd`.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message other than an ArchiveResponse.
    Message(Message),
    /// An ArchiveResponse begins; it claims `count` chats (a claim: the
    /// chats are yielded as their bytes arrive).
    ArchiveStart {
        /// The chat count from the message's header.
        count: u32,
    },
    /// The next chat of the ArchiveResponse in progress, in its wire form
    /// `[u8 N][N bytes of text][16-byte code][16-byte digest]` (33 to 288
    /// bytes). Borrowed from the decoder until its next call.
    Chat(&'a [u8]),
    /// The ArchiveResponse or Chats in progress has given all its chats.
    ArchiveEnd,
    /// An extension message other than Chats (only from a decoder made
    /// with [`FrameDecoder::relay`]).
    Relay(RelayMessage),
    /// An extension Chats message begins (only from a decoder made with
    /// [`FrameDecoder::relay`]): `count` chats from index `from` on, the
    /// sender's chat `from - 1` having digest `prev`. As for an archive,
    /// exactly `count` `Chat`s follow, then `ArchiveEnd`.
    ChatsStart {
        /// Index of its first chat in the sender's history.
        from: u32,
        /// The digest of the sender's chat `from - 1` (zeros for 0).
        prev: [u8; DIGEST_LEN],
        /// Chats claimed.
        count: u32,
    },
}

/// An incremental decoder of the message stream at the level of
/// [`Frame`]s: feed it bytes as they arrive, in chunks of any size.
///
/// Every byte is looked at once, and memory is bounded whatever the stream
/// claims: a PeerList grows with the bytes received (a count of 4,000,000,000
/// followed by ten bytes holds ten bytes' worth), and a chat of an archive
/// is at most 288 bytes, handed out as soon as it is whole. A message
/// larger than its limit is refused the moment it crosses it: archives
/// count against `max_archive`, other messages against `max_message`.
///
/// After an error the stream cannot be resynchronised: every later call
/// returns the same error.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Extension messages are taken too (see [`FrameDecoder::relay`]).
    relay: bool,
    max_message: usize,
    max_archive: usize,
    /// The limit of the message in progress.
    limit: usize,
    /// Stream offset of the next byte to consume.
    position: u64,
    /// Stream offset of the first byte of the message in progress.
    start: u64,
    state: State,
    /// The chat being assembled (at most 288 bytes).
    chat: Vec<u8>,
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
    /// Reading the chats of an ArchiveResponse: `done` given, `remaining`
    /// to come; the one in progress is in `FrameDecoder::chat`, and is
    /// `need` bytes long once its length byte has come (0 before).
    Chats {
        done: u32,
        remaining: u32,
        need: usize,
    },
    /// The last chat was given: `ArchiveEnd` is next.
    ArchiveDone,
    /// Reading the fixed part of an extension message.
    Fixed {
        kind: RelayType,
        buf: [u8; 24],
        have: usize,
    },
    /// Reading the u8 length of a Notification.
    NotificationLen,
    Notification {
        remaining: usize,
        text: Vec<u8>,
    },
    Failed(DecodeError),
}

/// What one step of decoding produced, before it is lent out as a
/// [`Frame`].
enum Step {
    Nothing,
    Message(Message),
    Relay(RelayMessage),
    ArchiveStart(u32),
    ChatsStart {
        from: u32,
        prev: [u8; DIGEST_LEN],
        count: u32,
    },
    Chat,
}

impl FrameDecoder {
    /// A decoder that refuses any message of more than `max_message`
    /// bytes.
    pub fn new(max_message: usize) -> Self {
        FrameDecoder::with_limits(max_message, max_message)
    }

    /// A decoder that refuses an ArchiveResponse of more than
    /// `max_archive` bytes and any other message of more than
    /// `max_message` bytes. A receiver that bounds what it keeps of an
    /// archive by other means (it stores only new chats, say) passes
    /// `usize::MAX` as `max_archive`.
    pub fn with_limits(max_message: usize, max_archive: usize) -> Self {
        FrameDecoder {
            relay: false,
            max_message,
            max_archive,
            limit: max_message,
            position: 0,
            start: 0,
            state: State::Idle,
            chat: Vec::new(),
        }
    }

    /// A decoder of the compact relay extension's connections: the
    /// standard messages and the extension's (`docs/EXTENSION.md`), with
    /// limits as [`with_limits`](Self::with_limits), a Chats message
    /// counting against `max_archive`.
    pub fn relay(max_message: usize, max_archive: usize) -> Self {
        FrameDecoder {
            relay: true,
            ..FrameDecoder::with_limits(max_message, max_archive)
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// True between messages (no partial message is in progress).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Bytes held for a partial message (capacity, not length).
    pub fn held_bytes(&self) -> usize {
        self.chat.capacity()
            + match &self.state {
                State::PeerList { addrs, .. } => addrs.capacity() * size_of::<Ipv4Addr>(),
                State::Notification { text, .. } => text.capacity(),
                _ => 0,
            }
    }

    /// Consumes bytes from the front of `input` until one frame is
    /// complete (returned, with `input` advanced past its bytes) or `input`
    /// is used up (`Ok(None)`: feed more). `ArchiveEnd` is returned without
    /// consuming input, so a call with an empty `input` may still yield it.
    ///
    /// # Errors
    /// [`DecodeError::UnknownType`] for a byte that starts no message, and
    /// [`DecodeError::TooLarge`] for a message crossing its limit; the
    /// same error again on every later call.
    pub fn next(&mut self, input: &mut &[u8]) -> Result<Option<Frame<'_>>, DecodeError> {
        if let State::Failed(err) = &self.state {
            return Err(err.clone());
        }
        loop {
            if matches!(self.state, State::ArchiveDone) {
                self.state = State::Idle;
                return Ok(Some(Frame::ArchiveEnd));
            }
            if input.is_empty() {
                return Ok(None);
            }
            match self.step(input) {
                Ok(Step::Nothing) => {}
                Ok(Step::Message(message)) => {
                    self.state = State::Idle;
                    return Ok(Some(Frame::Message(message)));
                }
                Ok(Step::Relay(message)) => {
                    self.state = State::Idle;
                    return Ok(Some(Frame::Relay(message)));
                }
                Ok(Step::ArchiveStart(count)) => return Ok(Some(Frame::ArchiveStart { count })),
                Ok(Step::ChatsStart { from, prev, count }) => {
                    return Ok(Some(Frame::ChatsStart { from, prev, count }));
                }
                Ok(Step::Chat) => return Ok(Some(Frame::Chat(&self.chat))),
                Err(err) => {
                    self.state = State::Failed(err.clone());
                    self.chat = Vec::new();
                    return Err(err);
                }
            }
        }
    }

    /// Takes up to `want` bytes from `input` for the message in progress,
    /// refusing them if they would carry it past its limit.
    fn take<'a>(&mut self, input: &mut &'a [u8], want: usize) -> Result<&'a [u8], DecodeError> {
        let n = want.min(input.len());
        let used = (self.position - self.start) as usize;
        if used + n > self.limit {
            return Err(DecodeError::TooLarge {
                max: self.limit,
                start: self.start,
                offset: self.start + self.limit as u64,
            });
        }
        let (taken, rest) = input.split_at(n);
        *input = rest;
        self.position += n as u64;
        Ok(taken)
    }

    /// Consumes at least one byte of a non-empty `input`.
    fn step(&mut self, input: &mut &[u8]) -> Result<Step, DecodeError> {
        match self.state {
            State::Idle => {
                self.start = self.position;
                let byte = input[0];
                if self.relay
                    && let Some(kind) = RelayType::from_byte(byte)
                {
                    self.limit = if kind == RelayType::Chats {
                        self.max_archive
                    } else {
                        self.max_message
                    };
                    self.take(input, 1)?;
                    self.state = State::Fixed {
                        kind,
                        buf: [0; 24],
                        have: 0,
                    };
                    return Ok(Step::Nothing);
                }
                let kind = MessageType::from_byte(byte).ok_or(DecodeError::UnknownType {
                    byte,
                    offset: self.position,
                })?;
                self.limit = if kind == MessageType::ArchiveResponse {
                    self.max_archive
                } else {
                    self.max_message
                };
                self.take(input, 1)?;
                Ok(match kind {
                    MessageType::PeerRequest => Step::Message(Message::PeerRequest),
                    MessageType::ArchiveRequest => Step::Message(Message::ArchiveRequest),
                    MessageType::PeerList | MessageType::ArchiveResponse => {
                        self.state = State::Count {
                            kind,
                            buf: [0; 4],
                            have: 0,
                        };
                        Step::Nothing
                    }
                    MessageType::Notification => {
                        self.state = State::NotificationLen;
                        Step::Nothing
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
                    return Ok(Step::Nothing);
                }
                let count = u32::from_be_bytes(buf);
                Ok(match (kind, count) {
                    (MessageType::PeerList, 0) => Step::Message(Message::PeerList(Vec::new())),
                    (MessageType::PeerList, _) => {
                        let initial = (count as usize).min(INITIAL_CAPACITY / 4);
                        self.state = State::PeerList {
                            remaining: count,
                            addrs: Vec::with_capacity(initial),
                            buf: [0; 4],
                            have: 0,
                        };
                        Step::Nothing
                    }
                    _ => {
                        self.begin_chats(count);
                        Step::ArchiveStart(count)
                    }
                })
            }
            State::Fixed { .. } => self.step_fixed(input),
            State::PeerList { .. } => self.step_peer_list(input),
            State::Chats { .. } => self.step_chat(input),
            State::ArchiveDone => unreachable!("`next` yields ArchiveEnd before stepping"),
            State::NotificationLen => {
                let len = self.take(input, 1)?[0] as usize;
                if len == 0 {
                    return Ok(Step::Message(Message::Notification(Vec::new())));
                }
                self.state = State::Notification {
                    remaining: len,
                    text: Vec::with_capacity(len),
                };
                Ok(Step::Nothing)
            }
            State::Notification { remaining, .. } => {
                let got = self.take(input, remaining)?;
                let State::Notification { remaining, text } = &mut self.state else {
                    unreachable!()
                };
                text.extend_from_slice(got);
                *remaining -= got.len();
                Ok(if *remaining == 0 {
                    Step::Message(Message::Notification(std::mem::take(text)))
                } else {
                    Step::Nothing
                })
            }
            State::Failed(_) => unreachable!("`next` returns before stepping a failed decoder"),
        }
    }

    fn step_fixed(&mut self, input: &mut &[u8]) -> Result<Step, DecodeError> {
        let State::Fixed { kind, have, .. } = self.state else {
            unreachable!()
        };
        let need = kind.fixed_len();
        let got = self.take(input, need - have)?;
        let State::Fixed { buf, have, .. } = &mut self.state else {
            unreachable!()
        };
        buf[*have..*have + got.len()].copy_from_slice(got);
        *have += got.len();
        if *have < need {
            return Ok(Step::Nothing);
        }
        let body = *buf;
        if kind != RelayType::Chats {
            return RelayMessage::parse(kind, &body[..need])
                .map(Step::Relay)
                .ok_or(DecodeError::NotRelay { offset: self.start });
        }
        let from = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
        let prev: [u8; DIGEST_LEN] = body[4..20].try_into().expect("16 bytes");
        let count = u32::from_be_bytes(body[20..24].try_into().expect("4 bytes"));
        self.begin_chats(count);
        Ok(Step::ChatsStart { from, prev, count })
    }

    /// The chats of an ArchiveResponse or Chats claiming `count` come next.
    fn begin_chats(&mut self, count: u32) {
        if count == 0 {
            self.state = State::ArchiveDone;
            return;
        }
        if self.chat.capacity() < MAX_CHAT {
            self.chat.reserve_exact(MAX_CHAT);
        }
        self.state = State::Chats {
            done: 0,
            remaining: count,
            need: 0,
        };
    }

    fn step_peer_list(&mut self, input: &mut &[u8]) -> Result<Step, DecodeError> {
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
                return Ok(Step::Message(Message::PeerList(std::mem::take(addrs))));
            }
        }
        Ok(Step::Nothing)
    }

    fn step_chat(&mut self, input: &mut &[u8]) -> Result<Step, DecodeError> {
        let State::Chats { need, .. } = self.state else {
            unreachable!()
        };
        let want = if need == 0 { 1 } else { need - self.chat.len() };
        let got = self.take(input, want)?;
        let State::Chats {
            done,
            remaining,
            need,
        } = &mut self.state
        else {
            unreachable!()
        };
        if *need == 0 {
            self.chat.clear();
            *need = CHAT_OVERHEAD + got[0] as usize;
        }
        self.chat.extend_from_slice(got);
        if self.chat.len() < *need {
            return Ok(Step::Nothing);
        }
        *need = 0;
        *done += 1;
        *remaining -= 1;
        if *remaining == 0 {
            self.state = State::ArchiveDone;
        }
        Ok(Step::Chat)
    }

    /// What the decoder is in the middle of, for error messages.
    fn inside(&self) -> String {
        let at = self.start;
        match &self.state {
            State::Idle | State::Failed(_) | State::ArchiveDone => "no message".into(),
            State::Count { kind, .. } => format!("the count of the {kind:?} starting at byte {at}"),
            State::PeerList {
                addrs, remaining, ..
            } => format!(
                "address {} of {} of the PeerList starting at byte {at}",
                addrs.len(),
                addrs.len() + *remaining as usize
            ),
            State::Chats {
                done,
                remaining,
                need,
            } => {
                // Between chats, the next one starts at the current position.
                let held = if *need == 0 { 0 } else { self.chat.len() };
                format!(
                    "chat {done} of {} (starting at byte {}) of the ArchiveResponse starting at byte {at}",
                    *done as usize + *remaining as usize,
                    self.position - held as u64
                )
            }
            State::NotificationLen | State::Notification { .. } => {
                format!("the Notification starting at byte {at}")
            }
            State::Fixed { kind, .. } => format!("the {kind:?} starting at byte {at}"),
        }
    }
}

/// An incremental decoder of whole [`Message`]s: feed it bytes as they
/// arrive, in chunks of any size, and it yields whole messages, an
/// ArchiveResponse as a [`History`].
///
/// A [`FrameDecoder`] underneath bounds what a message may claim; the
/// history being received grows with the chats actually received (at most
/// 1.5 times their bytes, plus 4 bytes a chat for where each ends), and the
/// size limit applies to every message.
///
/// After an error the stream cannot be resynchronised: every later call
/// returns the same error.
#[derive(Debug)]
pub struct Decoder {
    frames: FrameDecoder,
    /// The ArchiveResponse in progress.
    archive: Option<History>,
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
            frames: FrameDecoder::new(max_message),
            archive: None,
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.frames.position()
    }

    /// True between messages (no partial message is held).
    pub fn is_idle(&self) -> bool {
        self.frames.is_idle()
    }

    /// Bytes of a partial message held in memory (capacity, not length).
    pub fn held_bytes(&self) -> usize {
        self.frames.held_bytes() + self.archive.as_ref().map_or(0, History::heap_bytes)
    }

    /// Consumes bytes from the front of `input` until one message is whole
    /// (returned, with `input` advanced past it) or `input` is used up
    /// (`Ok(None)`: feed more).
    ///
    /// # Errors
    /// As [`FrameDecoder::next`]; the same error again on every later call.
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        loop {
            let frame = match self.frames.next(input) {
                Ok(frame) => frame,
                Err(err) => {
                    self.archive = None;
                    return Err(err);
                }
            };
            match frame {
                None => return Ok(None),
                Some(Frame::Message(message)) => return Ok(Some(message)),
                Some(Frame::ArchiveStart { .. }) => self.archive = Some(History::new()),
                Some(Frame::Chat(chat)) => {
                    let archive = self.archive.as_mut().expect("ArchiveStart came first");
                    archive
                        .push_wire(chat)
                        .expect("the frame decoder yields whole chats");
                }
                Some(Frame::ArchiveEnd) => {
                    let history = self.archive.take().expect("ArchiveStart came first");
                    return Ok(Some(Message::ArchiveResponse(history)));
                }
                Some(Frame::Relay(_) | Frame::ChatsStart { .. }) => {
                    unreachable!("a standard decoder yields no extension frame")
                }
            }
        }
    }
}

/// Decodes exactly one message from `bytes`, with no size limit (the bytes
/// are already in memory).
///
/// # Errors
/// As [`Decoder::push`]; [`DecodeError::Truncated`] if the bytes end inside
/// the message, [`DecodeError::TrailingBytes`] if bytes follow it.
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
                decoder.frames.inside()
            },
        }),
    }
}

/// Decodes exactly one ArchiveResponse from `bytes` (see [`decode`]) and
/// returns its history.
///
/// # Errors
/// As [`decode`]; [`DecodeError::UnexpectedType`] for any other message.
pub fn decode_archive(bytes: &[u8]) -> Result<History, DecodeError> {
    match decode(bytes)? {
        Message::ArchiveResponse(history) => Ok(history),
        other => Err(DecodeError::UnexpectedType {
            expected: MessageType::ArchiveResponse,
            found: other.message_type(),
        }),
    }
}
