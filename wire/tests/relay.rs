//! The compact relay extension's codec: round trips through a relay
//! [`FrameDecoder`], Chats streamed chat by chat, standard messages beside
//! the extension's, what a standard decoder and a relay decoder refuse,
//! size limits, lying counts, and the test vector of `docs/EXTENSION.md`.

#[path = "../../fuzz/harness/frames.rs"]
mod frames;

use std::net::Ipv4Addr;

use frames::{Outcome, Owned};
use proptest::prelude::*;
use wire::{
    CHAT_OVERHEAD, DEFAULT_MAX_MESSAGE, DIGEST_LEN, DecodeError, FrameDecoder, History, MAX_TEXT,
    Message, RELAY_MAGIC, RELAY_VERSION, RelayMessage, RelayType, chats_header, decode_archive,
};

/// The test vector of `docs/PROTOCOL.md`: an ArchiveResponse of 5 chats.
const VECTOR: &[u8] = include_bytes!("../../tests/fixtures/vector.bin");
/// An ArchiveResponse of the network's first 1,000 chats.
const HISTORY_1K: &[u8] = include_bytes!("../../tests/fixtures/history-1k.bin");
const PROTOCOL_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"));
const EXTENSION_MD: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/EXTENSION.md"));

/// A relay decoder with the default limits.
fn relay() -> FrameDecoder {
    FrameDecoder::relay(DEFAULT_MAX_MESSAGE, DEFAULT_MAX_MESSAGE)
}

fn fixture(bytes: &[u8]) -> History {
    decode_archive(bytes).expect("a fixture is an ArchiveResponse")
}

/// The digest of chat `from - 1` of `history`; zeros for 0.
fn prev(history: &History, from: usize) -> [u8; DIGEST_LEN] {
    from.checked_sub(1).map_or([0; DIGEST_LEN], |last| {
        *history.chat(last).expect("in the history").digest()
    })
}

/// A Chats message carrying chats `from..from + count` of `history`, laid
/// out by hand from its header and the chats' bytes, and the frames a relay
/// decoder yields for it.
fn chats(history: &History, from: usize, count: usize) -> (Vec<u8>, Vec<Owned>) {
    let given: Vec<&[u8]> = (from..from + count)
        .map(|k| history.chat(k).expect("in the history").as_bytes())
        .collect();
    let prev = prev(history, from);
    let from = u32::try_from(from).expect("a u32 index");
    let count = u32::try_from(count).expect("a u32 count");
    let bytes = [&chats_header(from, &prev, count)[..], &given.concat()].concat();
    let mut frames = vec![Owned::ChatsStart { from, prev, count }];
    frames.extend(given.iter().map(|chat| Owned::Chat(chat.to_vec())));
    frames.push(Owned::ArchiveEnd);
    (bytes, frames)
}

/// The frames a decoder yields for a standard message.
fn standard_frames(message: Message) -> Vec<Owned> {
    match message {
        Message::ArchiveResponse(history) => {
            let mut frames = vec![Owned::ArchiveStart {
                count: history.len() as u32,
            }];
            frames.extend(
                history
                    .iter()
                    .map(|chat| Owned::Chat(chat.as_bytes().to_vec())),
            );
            frames.push(Owned::ArchiveEnd);
            frames
        }
        message => vec![Owned::Message(message)],
    }
}

/// One message of every standard type, the archive being the PROTOCOL.md
/// vector.
fn standard_messages() -> Vec<Message> {
    vec![
        Message::PeerRequest,
        Message::PeerList(vec![Ipv4Addr::new(10, 0, 0, 7), Ipv4Addr::LOCALHOST]),
        Message::ArchiveRequest,
        Message::ArchiveResponse(fixture(VECTOR)),
        Message::Notification(b"hello".to_vec()),
    ]
}

/// One message of every extension type: the test vector's, from the
/// PROTOCOL.md history. Wire bytes, and the frames a relay decoder yields.
fn extension_messages() -> Vec<(Vec<u8>, Vec<Owned>)> {
    let vector = fixture(VECTOR);
    let relay = |message: RelayMessage| (message.to_bytes(), vec![Owned::Relay(message)]);
    vec![
        relay(RelayMessage::Hello {
            version: RELAY_VERSION,
        }),
        relay(RelayMessage::Tip {
            len: 2,
            digest: prev(&vector, 2),
        }),
        relay(RelayMessage::ChatsRequest {
            from: 1,
            prev: prev(&vector, 1),
        }),
        chats(&vector, 1, 1),
        relay(RelayMessage::NoCommonPrefix {
            from: 1,
            prev: prev(&vector, 1),
        }),
    ]
}

/// Every message of `messages` back to back, and their frames.
fn stream(messages: &[(Vec<u8>, Vec<Owned>)]) -> (Vec<u8>, Vec<Owned>) {
    let bytes = messages
        .iter()
        .flat_map(|(bytes, _)| bytes.clone())
        .collect();
    let frames = messages
        .iter()
        .flat_map(|(_, frames)| frames.clone())
        .collect();
    (bytes, frames)
}

/// What a decoder makes of `bytes` when they are whole messages yielding
/// `frames`.
fn decoded(bytes: &[u8], frames: Vec<Owned>) -> Outcome {
    let len = bytes.len() as u64;
    Outcome {
        frames,
        start: len,
        end: Ok((len, true)),
    }
}

/// Feeds `bytes` to fresh decoders made by `decoder`, in one piece, one
/// byte at a time and in uneven chunks, and checks that each feed gives
/// `expected`.
fn assert_every_chunking(decoder: impl Fn() -> FrameDecoder, bytes: &[u8], expected: &Outcome) {
    for sizes in [&[][..], &[1], &[1, 7, 300, 2]] {
        let outcome = frames::feed(&mut decoder(), bytes, sizes);
        assert_eq!(&outcome, expected, "in chunks of {sizes:?}");
    }
}

#[test]
fn every_message_round_trips_whole_and_byte_by_byte() {
    let vector = fixture(VECTOR);
    let mut messages = extension_messages();
    messages.extend(
        [
            RelayMessage::Hello { version: 0 },
            RelayMessage::Hello { version: 255 },
            RelayMessage::Tip {
                len: 0,
                digest: [0; DIGEST_LEN],
            },
            RelayMessage::ChatsRequest {
                from: u32::MAX,
                prev: [0xff; DIGEST_LEN],
            },
            RelayMessage::NoCommonPrefix {
                from: 0x0102_0304,
                prev: *b"0123456789abcdef",
            },
        ]
        .map(|message| (message.to_bytes(), vec![Owned::Relay(message)])),
    );
    messages.push(chats(&vector, 0, 5));
    messages.extend(
        standard_messages()
            .into_iter()
            .map(|message| (message.to_bytes(), standard_frames(message))),
    );
    for (bytes, frames) in &messages {
        assert_eq!(frames::encode(frames), *bytes, "{frames:?} re-encoded");
        assert_every_chunking(relay, bytes, &decoded(bytes, frames.clone()));
    }
    let (bytes, frames) = stream(&messages);
    assert_every_chunking(relay, &bytes, &decoded(&bytes, frames));
}

#[test]
fn a_chats_message_streams_its_chats_one_frame_each() {
    let history = fixture(HISTORY_1K);
    // Chats 2, 3 and 4: 82, 288 (the longest a chat can be) and 71 bytes.
    let (bytes, frames) = chats(&history, 2, 3);
    let chat = |k: usize| history.chat(k).unwrap().as_bytes().to_vec();
    assert_eq!(chat(3).len(), CHAT_OVERHEAD + MAX_TEXT);
    assert_eq!(
        frames,
        [
            Owned::ChatsStart {
                from: 2,
                prev: *history.chat(1).unwrap().digest(),
                count: 3,
            },
            Owned::Chat(chat(2)),
            Owned::Chat(chat(3)),
            Owned::Chat(chat(4)),
            Owned::ArchiveEnd,
        ]
    );
    assert_eq!(bytes.len(), 25 + 82 + 288 + 71);
    assert_every_chunking(relay, &bytes, &decoded(&bytes, frames));

    // None: the sender's whole history is the receiver's first 1,000 chats.
    let (bytes, frames) = chats(&history, 1000, 0);
    assert_eq!(
        frames,
        [
            Owned::ChatsStart {
                from: 1000,
                prev: *history.last().unwrap().digest(),
                count: 0,
            },
            Owned::ArchiveEnd,
        ]
    );
    assert_eq!(bytes.len(), 25);
    assert_every_chunking(relay, &bytes, &decoded(&bytes, frames));
}

#[test]
fn standard_messages_decode_alike_on_relay_and_standard_decoders() {
    let messages: Vec<_> = standard_messages()
        .into_iter()
        .map(|message| (message.to_bytes(), standard_frames(message)))
        .collect();
    let (bytes, frames) = stream(&messages);
    let expected = decoded(&bytes, frames);
    assert_every_chunking(relay, &bytes, &expected);
    assert_every_chunking(
        || FrameDecoder::with_limits(DEFAULT_MAX_MESSAGE, DEFAULT_MAX_MESSAGE),
        &bytes,
        &expected,
    );
}

#[test]
fn a_standard_decoder_refuses_every_extension_type() {
    let mut types = Vec::new();
    for (bytes, _) in extension_messages() {
        let stream = [Message::PeerRequest.to_bytes(), bytes].concat();
        let byte = stream[1];
        assert_every_chunking(
            || FrameDecoder::with_limits(DEFAULT_MAX_MESSAGE, DEFAULT_MAX_MESSAGE),
            &stream,
            &Outcome {
                frames: vec![Owned::Message(Message::PeerRequest)],
                start: 1,
                end: Err(DecodeError::UnknownType { byte, offset: 1 }),
            },
        );
        types.push(byte);
    }
    assert_eq!(types, (0x10..=0x14).collect::<Vec<u8>>());
    assert_eq!(types[3], RelayType::Chats as u8);
}

#[test]
fn a_hello_without_the_magic_is_not_relay_at_its_first_byte() {
    let tip = RelayMessage::Tip {
        len: 7,
        digest: [3; DIGEST_LEN],
    };
    let before = [Message::PeerRequest.to_bytes(), tip.to_bytes()].concat();
    assert_eq!(before.len(), 22);
    let hello = RelayMessage::Hello { version: 1 }.to_bytes();
    for at in 1..=RELAY_MAGIC.len() {
        for wrong in [hello[at] ^ 0x20, 0] {
            let mut bad = hello.clone();
            bad[at] = wrong;
            let stream = [&before[..], &bad].concat();
            assert_every_chunking(
                relay,
                &stream,
                &Outcome {
                    frames: vec![Owned::Message(Message::PeerRequest), Owned::Relay(tip)],
                    start: 22,
                    end: Err(DecodeError::NotRelay { offset: 22 }),
                },
            );
            // Told once the whole Hello is in, not before.
            let mut decoder = relay();
            frames::feed(&mut decoder, &before, &[]);
            for byte in &bad[..bad.len() - 1] {
                assert_eq!(decoder.next(&mut &[*byte][..]), Ok(None));
            }
            assert_eq!(
                decoder.next(&mut &bad[bad.len() - 1..]).map(|_| ()),
                Err(DecodeError::NotRelay { offset: 22 })
            );
        }
    }
}

#[test]
fn a_tip_counts_against_max_message() {
    let tip = RelayMessage::Tip {
        len: 1000,
        digest: [9; DIGEST_LEN],
    };
    let stream = [Message::PeerRequest.to_bytes(), tip.to_bytes()].concat();
    assert_eq!(stream.len(), 1 + 21);
    // Exactly the limit: taken, whatever the archive limit.
    assert_every_chunking(
        || FrameDecoder::relay(21, 0),
        &stream,
        &decoded(
            &stream,
            vec![Owned::Message(Message::PeerRequest), Owned::Relay(tip)],
        ),
    );
    // One byte less: refused at its 21st byte, however large the archive
    // limit.
    assert_every_chunking(
        || FrameDecoder::relay(20, usize::MAX),
        &stream,
        &Outcome {
            frames: vec![Owned::Message(Message::PeerRequest)],
            start: 1,
            end: Err(DecodeError::TooLarge {
                max: 20,
                start: 1,
                offset: 21,
            }),
        },
    );
}

#[test]
fn a_chats_message_counts_against_max_archive() {
    let history = fixture(HISTORY_1K);
    let (chats, frames) = chats(&history, 2, 3);
    let len = chats.len();
    let stream = [Message::PeerRequest.to_bytes(), chats].concat();
    let mut all = vec![Owned::Message(Message::PeerRequest)];
    all.extend(frames.iter().cloned());
    // Exactly the archive limit: taken, though longer than `max_message`.
    assert_every_chunking(
        || FrameDecoder::relay(1, len),
        &stream,
        &decoded(&stream, all.clone()),
    );
    // One byte less: refused inside the last chat, the chats before it
    // given.
    assert_every_chunking(
        || FrameDecoder::relay(usize::MAX, len - 1),
        &stream,
        &Outcome {
            frames: all[..4].to_vec(),
            start: 1,
            end: Err(DecodeError::TooLarge {
                max: len - 1,
                start: 1,
                offset: len as u64,
            }),
        },
    );
}

#[test]
fn a_chats_claiming_u32_max_chats_holds_one_chat_at_most() {
    let header = chats_header(0, &[0; DIGEST_LEN], u32::MAX);
    let start = Owned::ChatsStart {
        from: 0,
        prev: [0; DIGEST_LEN],
        count: u32::MAX,
    };
    // Ten bytes of a first chat, then nothing.
    let stream = [&header[..], &[40; 10]].concat();
    let mut decoder = FrameDecoder::relay(DEFAULT_MAX_MESSAGE, usize::MAX);
    assert_eq!(
        frames::feed(&mut decoder, &stream, &[]),
        Outcome {
            frames: vec![start.clone()],
            start: 0,
            end: Ok((35, false)),
        }
    );
    assert!(decoder.held_bytes() <= CHAT_OVERHEAD + MAX_TEXT);

    // Chats that keep coming: each is handed out, none is kept.
    let history = fixture(HISTORY_1K);
    let stream = [
        &header[..],
        &history.segments().collect::<Vec<_>>().concat(),
    ]
    .concat();
    let mut decoder = FrameDecoder::relay(DEFAULT_MAX_MESSAGE, usize::MAX);
    let outcome = frames::feed(&mut decoder, &stream, &[1, 100, 4096]);
    assert_eq!(outcome.frames.len(), 1 + 1000);
    assert_eq!(outcome.frames[0], start);
    assert_eq!(outcome.end, Ok((stream.len() as u64, false)));
    assert!(decoder.held_bytes() <= CHAT_OVERHEAD + MAX_TEXT);
}

fn relay_message() -> impl Strategy<Value = RelayMessage> {
    prop_oneof![
        any::<u8>().prop_map(|version| RelayMessage::Hello { version }),
        (any::<u32>(), any::<[u8; DIGEST_LEN]>())
            .prop_map(|(len, digest)| RelayMessage::Tip { len, digest }),
        (any::<u32>(), any::<[u8; DIGEST_LEN]>())
            .prop_map(|(from, prev)| RelayMessage::ChatsRequest { from, prev }),
        (any::<u32>(), any::<[u8; DIGEST_LEN]>())
            .prop_map(|(from, prev)| RelayMessage::NoCommonPrefix { from, prev }),
    ]
}

proptest! {
    #[test]
    fn any_extension_messages_round_trip_in_any_chunks(
        messages in prop::collection::vec(relay_message(), 1..10),
        sizes in prop::collection::vec(1usize..40, 1..10),
    ) {
        let messages: Vec<_> = messages
            .into_iter()
            .map(|message| {
                prop_assert_eq!(message.to_bytes().len(), message.encoded_len());
                Ok((message.to_bytes(), vec![Owned::Relay(message)]))
            })
            .collect::<Result<_, TestCaseError>>()?;
        let (bytes, frames) = stream(&messages);
        prop_assert_eq!(frames::feed(&mut relay(), &bytes, &sizes), decoded(&bytes, frames));
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A hex dump as the protocol documents print one: offset, then 16 bytes a
/// line in groups of two.
fn hexdump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(line, chunk)| {
            let groups: Vec<String> = chunk.chunks(2).map(hex).collect();
            format!("{:08x}: {}\n", line * 16, groups.join(" "))
        })
        .collect()
}

/// The fenced code blocks of the section of `markdown` titled `title` (a
/// level-2 heading), each with its lines' ends.
fn code_blocks(markdown: &str, title: &str) -> Vec<String> {
    let heading = format!("## {title}\n");
    let (_, section) = markdown
        .split_once(&heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let section = section.split("\n## ").next().expect("split yields one");
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in section.lines() {
        match (line.starts_with("```"), open.take()) {
            (true, None) => open = Some(String::new()),
            (true, Some(block)) => blocks.push(block),
            (false, Some(mut block)) => {
                block.push_str(line);
                block.push('\n');
                open = Some(block);
            }
            (false, None) => {}
        }
    }
    assert!(open.is_none(), "a code block of {title:?} is not closed");
    blocks
}

#[test]
fn the_test_vector_of_extension_md_is_what_the_codec_sends_and_reads() {
    // The history is the one of PROTOCOL.md's test vector.
    assert_eq!(
        code_blocks(PROTOCOL_MD, "Test vector: a history of 5 chats"),
        [hexdump(VECTOR)]
    );
    let messages = extension_messages();
    let blocks = code_blocks(EXTENSION_MD, "Test vector");
    assert_eq!(blocks.len(), messages.len(), "one dump per message");
    for ((bytes, frames), block) in messages.iter().zip(&blocks) {
        assert_eq!(*block, hexdump(bytes), "the dump of {frames:?}");
    }
    // The digests the text quotes.
    let vector = fixture(VECTOR);
    for k in 0..2 {
        let digest = hex(vector.chat(k).unwrap().digest());
        assert!(
            EXTENSION_MD.contains(&digest),
            "digest of chat {k}: {digest}"
        );
    }
    // The five, back to back, decode to those messages.
    let (bytes, frames) = stream(&messages);
    assert_every_chunking(relay, &bytes, &decoded(&bytes, frames));
}
