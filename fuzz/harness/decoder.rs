//! Body of the `decoder` fuzz target, shared by `fuzz/fuzz_targets/decoder.rs`
//! (libFuzzer) and `wire/tests/fuzz_corpus.rs` (replay of the saved corpus
//! on stable Rust).
//!
//! Input layout:
//!
//! - byte 0 picks the decoder's size limit (see [`input::limit`]);
//! - byte 1 modulo 8 is how many chunk-size bytes follow, each giving a chunk
//!   of 1..=256 bytes;
//! - the rest is the byte stream, fed to a [`Decoder`] in chunks of those
//!   sizes (cycled), or in one piece when there are none.
//!
//! Besides "no panic", it checks that every decoded message re-encodes to
//! exactly the bytes it consumed and is within the size limit, that the
//! chunked feed and a one-piece feed give the same messages and the same
//! error, that the error is right about the message it names, that the
//! memory held for a partial message stays within twice its bytes plus
//! 8 KiB (see [`HELD_SLACK`]), that a failed decoder keeps returning its
//! error without consuming input, and that `decode` agrees with the decoder
//! on the first message.

use wire::{DecodeError, Decoder, Message, decode};

#[path = "input.rs"]
mod input;

/// Memory a decoder may hold for a partial message beyond twice the bytes
/// of it received so far (buffers grow geometrically): room for the initial
/// capacities it takes on the word of a count field.
const HELD_SLACK: usize = 8 << 10;

pub fn run(data: &[u8]) {
    let [limit, n_sizes, rest @ ..] = data else {
        return;
    };
    let (sizes, stream) = input::chunk_sizes(*n_sizes, rest);
    let max_message = input::limit(*limit);

    let chunked = feed(stream, max_message, &sizes);
    let whole = feed(stream, max_message, &[]);
    assert_eq!(chunked, whole, "chunks {sizes:?} changed the outcome");
    // `decode` has no size limit: compare only when this limit refuses
    // nothing either.
    if max_message >= stream.len() {
        check_decode(stream, &whole);
    }
}

/// What a decoder made of a whole stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    /// The error the decoder stopped at, or, if none, the bytes it consumed
    /// and whether the stream ended between messages. (After an error the
    /// position depends on the chunking: the decoder refuses a chunk that
    /// would cross the size limit without consuming any of it.)
    end: Result<(u64, bool), DecodeError>,
}

/// Feeds `stream` to a fresh decoder in chunks of `sizes` (cycled; one piece
/// if empty), checking the per-message invariants on the way.
fn feed(stream: &[u8], max_message: usize, sizes: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(max_message);
    let mut messages = Vec::new();
    // Stream offset of the first byte of the message in progress.
    let mut start = 0;
    let mut sizes = sizes.iter().copied().cycle();
    let mut rest = stream;
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len());
        let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        loop {
            match decoder.push(&mut chunk) {
                Ok(Some(message)) => {
                    let end = usize::try_from(decoder.position()).expect("fits in memory");
                    assert_eq!(
                        message.to_bytes(),
                        &stream[start..end],
                        "{message:?} does not re-encode to the bytes it came from"
                    );
                    assert_eq!(message.encoded_len(), end - start);
                    assert!(end - start <= max_message, "{message:?} is over the limit");
                    assert!(decoder.is_idle());
                    messages.push(message);
                    start = end;
                }
                Ok(None) => {
                    assert!(chunk.is_empty(), "Ok(None) before the chunk was used up");
                    break;
                }
                Err(err) => {
                    check_error(&err, stream, start, max_message);
                    check_stays_failed(&mut decoder, &err, chunk);
                    return Outcome {
                        messages,
                        end: Err(err),
                    };
                }
            }
            let received = usize::try_from(decoder.position()).expect("fits in memory") - start;
            assert!(
                decoder.held_bytes() <= 2 * received + HELD_SLACK,
                "{} bytes held for {received} bytes of a message",
                decoder.held_bytes()
            );
        }
    }
    Outcome {
        messages,
        end: Ok((decoder.position(), decoder.is_idle())),
    }
}

/// The error names the message that started at `start`, and is right
/// about it: its type byte is unknown, or it is more than `max_message`
/// bytes long (as decoding it without a limit shows) and the stream went
/// past the limit.
fn check_error(err: &DecodeError, stream: &[u8], start: usize, max_message: usize) {
    match *err {
        DecodeError::UnknownType { byte, offset } => {
            assert_eq!(offset, start as u64);
            assert_eq!(byte, stream[start]);
        }
        DecodeError::TooLarge {
            max,
            start: at,
            offset,
        } => {
            assert_eq!((max, at), (max_message, start as u64));
            assert_eq!(offset, (start + max) as u64);
            assert!(stream.len() > start + max, "refused before the limit");
            let mut rest = &stream[start..];
            if let Ok(Some(message)) = Decoder::new(usize::MAX).push(&mut rest) {
                assert!(message.encoded_len() > max, "{message:?} refused");
            }
        }
        DecodeError::NotRelay { .. } => panic!("{err:?} from a standard decoder"),
        DecodeError::Truncated { .. }
        | DecodeError::TrailingBytes { .. }
        | DecodeError::UnexpectedType { .. } => {
            panic!("{err:?} from a Decoder: only `decode` returns it")
        }
    }
}

/// A failed decoder returns the same error for any input, empty or not,
/// consumes none of it, and holds no partial message.
fn check_stays_failed(decoder: &mut Decoder, err: &DecodeError, rest: &[u8]) {
    let position = decoder.position();
    for input in [rest, &[], &[0x01], &[0x04, 0, 0, 0, 0]] {
        let mut input = input;
        let len = input.len();
        assert_eq!(decoder.push(&mut input).as_ref(), Err(err));
        assert_eq!(input.len(), len, "a failed decoder consumed input");
    }
    assert_eq!(decoder.position(), position);
    assert!(!decoder.is_idle());
    assert_eq!(decoder.held_bytes(), 0);
}

/// `decode(stream)` is the first message of the stream if nothing follows
/// it, `TrailingBytes` if something does, and otherwise the decoder's error
/// or `Truncated` at the end of the stream.
fn check_decode(stream: &[u8], whole: &Outcome) {
    let decoded = decode(stream);
    match (whole.messages.first(), &whole.end) {
        (Some(first), Ok((end, true))) if whole.messages.len() == 1 => {
            assert_eq!(*end, stream.len() as u64);
            assert_eq!(decoded.as_ref(), Ok(first));
        }
        (Some(first), _) => assert_eq!(
            decoded,
            Err(DecodeError::TrailingBytes {
                offset: first.encoded_len() as u64
            })
        ),
        (None, Err(err)) => assert_eq!(decoded.as_ref(), Err(err)),
        (None, Ok(_)) => assert!(
            matches!(decoded, Err(DecodeError::Truncated { offset, .. }) if offset == stream.len() as u64),
            "{decoded:?} for {} bytes without a whole message",
            stream.len()
        ),
    }
}
