//! A [`FrameDecoder`]'s frames as owned values, their wire bytes, and a
//! feed that checks every frame as it comes. Shared by the `relay` fuzz
//! target's body (`relay.rs` beside this file) and `wire/tests/relay.rs`.

use wire::{
    CHAT_OVERHEAD, DIGEST_LEN, DecodeError, Frame, FrameDecoder, MAX_TEXT, Message, MessageType,
    RelayMessage, chats_header,
};

/// Memory a [`FrameDecoder`] may hold beyond twice the bytes received of
/// the message in progress: the 4 KiB it takes on the word of a PeerList's
/// count, and its chat buffer (one chat of at most 288 bytes), which it
/// keeps between archives.
pub const HELD_SLACK: usize = 4096 + CHAT_OVERHEAD + MAX_TEXT;

/// A [`Frame`] that outlives the decoder's next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// [`Frame::Message`].
    Message(Message),
    /// [`Frame::Relay`].
    Relay(RelayMessage),
    /// [`Frame::ArchiveStart`].
    ArchiveStart {
        /// Chats claimed.
        count: u32,
    },
    /// [`Frame::ChatsStart`].
    ChatsStart {
        /// Index of the first chat.
        from: u32,
        /// Digest of chat `from - 1`.
        prev: [u8; DIGEST_LEN],
        /// Chats claimed.
        count: u32,
    },
    /// [`Frame::Chat`], copied.
    Chat(Vec<u8>),
    /// [`Frame::ArchiveEnd`].
    ArchiveEnd,
}

impl From<Frame<'_>> for Owned {
    fn from(frame: Frame<'_>) -> Self {
        match frame {
            Frame::Message(message) => Owned::Message(message),
            Frame::Relay(message) => Owned::Relay(message),
            Frame::ArchiveStart { count } => Owned::ArchiveStart { count },
            Frame::ChatsStart { from, prev, count } => Owned::ChatsStart { from, prev, count },
            Frame::Chat(chat) => Owned::Chat(chat.to_vec()),
            Frame::ArchiveEnd => Owned::ArchiveEnd,
        }
    }
}

impl Owned {
    /// Appends the bytes the decoder consumed for this frame (none for
    /// `ArchiveEnd`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Message(message) => message.encode(out),
            Owned::Relay(message) => message.encode(out),
            Owned::ArchiveStart { count } => {
                out.push(MessageType::ArchiveResponse as u8);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Owned::ChatsStart { from, prev, count } => {
                out.extend_from_slice(&chats_header(*from, prev, *count));
            }
            Owned::Chat(chat) => out.extend_from_slice(chat),
            Owned::ArchiveEnd => {}
        }
    }

    /// True for the frames that end a message: the decoder is idle after
    /// them.
    pub fn ends_message(&self) -> bool {
        matches!(
            self,
            Owned::Message(_) | Owned::Relay(_) | Owned::ArchiveEnd
        )
    }
}

/// The wire bytes of `frames`, back to back.
pub fn encode(frames: &[Owned]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out
}

/// What a decoder made of a stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every frame yielded, in order.
    pub frames: Vec<Owned>,
    /// Stream offset of the first byte of the message in progress at the
    /// end: the one that failed, if one did.
    pub start: u64,
    /// The error the decoder stopped at, or, if none, the bytes it consumed
    /// and whether the stream ended between messages. (After an error the
    /// position depends on the chunking: a chunk that would carry a message
    /// past its limit is refused whole.)
    pub end: Result<(u64, bool), DecodeError>,
}

/// An archive or Chats in progress: chats claimed, chats seen.
struct Open {
    count: u32,
    seen: u32,
}

/// Feeds `stream` to `decoder`, which is between messages, in chunks of
/// `sizes` (cycled; one piece if empty), checking on the way that every frame re-encodes to exactly the
/// bytes it consumed, that every chat is 33 to 288 bytes long as its length
/// byte says, that exactly `count` chats come between the start of an
/// archive or Chats and its `ArchiveEnd`, that the memory held stays
/// within twice the bytes of the message in progress plus [`HELD_SLACK`],
/// and that after an error the decoder keeps returning it, consuming
/// nothing.
pub fn feed(decoder: &mut FrameDecoder, stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut frames: Vec<Owned> = Vec::new();
    let mut open: Option<Open> = None;
    let mut start = decoder.position();
    // Stream offset of `stream[0]`, and of the end of the last frame.
    let base = start;
    let mut frame_end = start;
    let mut sizes = sizes.iter().copied().cycle();
    let mut rest = stream;
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len());
        let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        loop {
            let frame = match decoder.next(&mut chunk) {
                Ok(Some(frame)) => Owned::from(frame),
                Ok(None) => {
                    assert!(chunk.is_empty(), "Ok(None) before the chunk was used up");
                    break;
                }
                Err(err) => {
                    check_stays_failed(decoder, &err, chunk);
                    return Outcome {
                        frames,
                        start,
                        end: Err(err),
                    };
                }
            };
            let position = decoder.position();
            let consumed = &stream[offset(frame_end - base)..offset(position - base)];
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            assert_eq!(bytes, consumed, "{frame:?} is not the bytes it came from");
            open = check_sequence(&frame, open);
            assert_eq!(decoder.is_idle(), frame.ends_message(), "after {frame:?}");
            frame_end = position;
            if frame.ends_message() {
                start = position;
            }
            frames.push(frame);
            check_held(decoder, start);
        }
        check_held(decoder, start);
    }
    Outcome {
        frames,
        start,
        end: Ok((decoder.position(), decoder.is_idle())),
    }
}

fn offset(position: u64) -> usize {
    usize::try_from(position).expect("fits in memory")
}

/// Checks `frame` against the archive or Chats in progress, if any, and
/// returns the one in progress after it.
fn check_sequence(frame: &Owned, open: Option<Open>) -> Option<Open> {
    match (frame, open) {
        (Owned::ArchiveStart { count } | Owned::ChatsStart { count, .. }, None) => Some(Open {
            count: *count,
            seen: 0,
        }),
        (Owned::Chat(chat), Some(Open { count, seen })) if seen < count => {
            assert!((CHAT_OVERHEAD..=CHAT_OVERHEAD + MAX_TEXT).contains(&chat.len()));
            assert_eq!(chat.len(), CHAT_OVERHEAD + usize::from(chat[0]));
            Some(Open {
                count,
                seen: seen + 1,
            })
        }
        (Owned::ArchiveEnd, Some(Open { count, seen })) if seen == count => None,
        (Owned::Message(_) | Owned::Relay(_), None) => None,
        (frame, Some(Open { count, seen })) => {
            panic!("{frame:?} after {seen} of {count} chats")
        }
        (frame, None) => panic!("{frame:?} outside an archive"),
    }
}

/// The memory held is within twice the bytes received of the message that
/// started at `start`, plus [`HELD_SLACK`].
fn check_held(decoder: &FrameDecoder, start: u64) {
    let received = offset(decoder.position() - start);
    assert!(
        decoder.held_bytes() <= 2 * received + HELD_SLACK,
        "{} bytes held for {received} bytes of a message",
        decoder.held_bytes()
    );
}

/// A failed decoder returns the same error for any input, empty or not,
/// consumes none of it, and holds no partial message.
fn check_stays_failed(decoder: &mut FrameDecoder, err: &DecodeError, rest: &[u8]) {
    let position = decoder.position();
    let hello = RelayMessage::Hello { version: 1 }.to_bytes();
    for input in [rest, &[], &[0x01], &hello] {
        let mut input = input;
        let len = input.len();
        assert_eq!(decoder.next(&mut input).map(|_| ()), Err(err.clone()));
        assert_eq!(input.len(), len, "a failed decoder consumed input");
    }
    assert_eq!(decoder.position(), position);
    assert!(!decoder.is_idle());
    assert_eq!(decoder.held_bytes(), 0);
}
