//! Body of the `relay` fuzz target, shared by `fuzz/fuzz_targets/relay.rs`
//! (libFuzzer) and `wire/tests/fuzz_corpus.rs` (replay of the saved corpus
//! on stable Rust).
//!
//! Input layout:
//!
//! - byte 0 picks the decoder's `max_message`, byte 1 its `max_archive`
//!   (see [`input::limit`]);
//! - byte 2 modulo 8 is how many chunk-size bytes follow, each giving a chunk
//!   of 1..=256 bytes;
//! - the rest is the byte stream, fed to a [`FrameDecoder::relay`] in chunks
//!   of those sizes (cycled), or in one piece when there are none.
//!
//! Besides "no panic" and what [`frames::feed`] checks on every frame (each
//! re-encodes to exactly the bytes it consumed; chats of 33 to 288 bytes, as
//! their length byte says; exactly `count` chats between the start of an
//! archive or Chats and its end; memory within twice the bytes of the
//! message in progress plus a few KiB; a failed decoder keeps its error and
//! consumes nothing), it checks that the chunked feed and a one-piece feed
//! give the same frames and the same error, that the error is right about
//! the message it names, that every message is within its limit, that the
//! frames, re-encoded, decode to the same
//! frames, and that a standard decoder with the same limits gives the same
//! frames up to the first extension message and refuses that one as an
//! `UnknownType`.

use wire::{DecodeError, FrameDecoder, MessageType, RELAY_MAGIC, RelayType};

#[path = "frames.rs"]
mod frames;
#[path = "input.rs"]
mod input;

use frames::{Outcome, Owned};

/// Decodes `data` as laid out above and checks the outcome; panics on a
/// broken invariant.
pub fn run(data: &[u8]) {
    let [max_message, max_archive, n_sizes, rest @ ..] = data else {
        return;
    };
    let (sizes, stream) = input::chunk_sizes(*n_sizes, rest);
    let limits = Limits {
        message: input::limit(*max_message),
        archive: input::limit(*max_archive),
    };

    let chunked = frames::feed(&mut limits.relay(), stream, &sizes);
    let whole = frames::feed(&mut limits.relay(), stream, &[]);
    assert_eq!(chunked, whole, "chunks {sizes:?} changed the outcome");
    if let Err(err) = &whole.end {
        check_error(err, stream, whole.start, &limits);
    }
    check_within_limits(stream, &whole, &limits);
    check_reencoded(&whole, &limits);
    check_standard(stream, &whole, &limits);
}

/// The decoder's size limits.
struct Limits {
    message: usize,
    archive: usize,
}

impl Limits {
    fn relay(&self) -> FrameDecoder {
        FrameDecoder::relay(self.message, self.archive)
    }

    /// The limit of a message starting with `byte`.
    fn of(&self, byte: u8) -> usize {
        let archive = MessageType::from_byte(byte) == Some(MessageType::ArchiveResponse)
            || RelayType::from_byte(byte) == Some(RelayType::Chats);
        if archive { self.archive } else { self.message }
    }
}

/// The error names the message that started at `start`, and is right
/// about it: its type byte is unknown; or it is longer than its limit (as
/// decoding it without limits shows) and the stream went past the limit;
/// or it is a Hello without the magic.
fn check_error(err: &DecodeError, stream: &[u8], start: u64, limits: &Limits) {
    let at = usize::try_from(start).expect("fits in memory");
    match *err {
        DecodeError::UnknownType { byte, offset } => {
            assert_eq!((byte, offset), (stream[at], start));
            assert_eq!(MessageType::from_byte(byte), None);
            assert_eq!(RelayType::from_byte(byte), None);
        }
        DecodeError::TooLarge {
            max,
            start: from,
            offset,
        } => {
            assert_eq!((max, from), (limits.of(stream[at]), start));
            assert_eq!(offset, (at + max) as u64);
            assert!(stream.len() > at + max, "refused before the limit");
            // If the message ends within the stream, it is longer than `max`.
            let mut unlimited = FrameDecoder::relay(usize::MAX, usize::MAX);
            let mut rest = &stream[at..];
            while let Ok(Some(_)) = unlimited.next(&mut rest) {
                if unlimited.is_idle() {
                    assert!(unlimited.position() > max as u64, "refused at {max} bytes");
                    break;
                }
            }
        }
        DecodeError::NotRelay { offset } => {
            assert_eq!(offset, start);
            assert_eq!(stream[at], RelayType::Hello as u8);
            assert_ne!(stream[at + 1..at + 5], RELAY_MAGIC);
        }
        DecodeError::Truncated { .. }
        | DecodeError::TrailingBytes { .. }
        | DecodeError::UnexpectedType { .. } => {
            panic!("{err:?} from a FrameDecoder: only `decode` returns it")
        }
    }
}

/// Every message given whole, and what was given of the one in progress,
/// is within its limit.
fn check_within_limits(stream: &[u8], whole: &Outcome, limits: &Limits) {
    let (mut start, mut end) = (0, 0);
    let mut bytes = Vec::new();
    for frame in &whole.frames {
        bytes.clear();
        frame.encode(&mut bytes);
        end += bytes.len();
        let max = limits.of(stream[start]);
        assert!(
            end - start <= max,
            "{frame:?} ends {} bytes into a message limited to {max}",
            end - start
        );
        if frame.ends_message() {
            start = end;
        }
    }
}

/// The frames, re-encoded (the stream up to the end of the last frame),
/// decode to the same frames, and end inside the same message.
fn check_reencoded(whole: &Outcome, limits: &Limits) {
    let bytes = frames::encode(&whole.frames);
    let len = bytes.len() as u64;
    let again = frames::feed(&mut limits.relay(), &bytes, &[]);
    assert_eq!(
        again,
        Outcome {
            frames: whole.frames.clone(),
            start: whole.start,
            end: Ok((len, whole.start == len)),
        }
    );
}

/// A standard decoder with the same limits yields the same frames until
/// the first message with an extension type byte, and refuses that one as
/// `UnknownType`; a stream without one it decodes exactly as the relay
/// decoder.
fn check_standard(stream: &[u8], whole: &Outcome, limits: &Limits) {
    let mut decoder = FrameDecoder::with_limits(limits.message, limits.archive);
    let standard = frames::feed(&mut decoder, stream, &[]);
    let (kept, start) = match whole
        .frames
        .iter()
        .position(|frame| matches!(frame, Owned::Relay(_) | Owned::ChatsStart { .. }))
    {
        Some(first) => (first, frames::encode(&whole.frames[..first]).len() as u64),
        None => (whole.frames.len(), whole.start),
    };
    match stream.get(usize::try_from(start).expect("fits in memory")) {
        Some(&byte) if RelayType::from_byte(byte).is_some() => assert_eq!(
            standard,
            Outcome {
                frames: whole.frames[..kept].to_vec(),
                start,
                end: Err(DecodeError::UnknownType {
                    byte,
                    offset: start
                }),
            }
        ),
        _ => assert_eq!(standard, *whole),
    }
}
