//! Round trips, chunked streams, hostile input and size limits of the
//! wire codec.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use wire::{Chat, DecodeError, Decoder, History, Message, decode};

fn chat() -> impl Strategy<Value = Chat> {
    (
        prop::collection::vec(any::<u8>(), 0..=255),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(text, code, digest)| Chat::new(text, code, digest).unwrap())
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::PeerRequest),
        Just(Message::ArchiveRequest),
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..40)
            .prop_map(Message::PeerList),
        prop::collection::vec(chat(), 0..30)
            .prop_map(|chats| Message::ArchiveResponse(chats.into_iter().collect())),
        prop::collection::vec(any::<u8>(), 0..=255).prop_map(Message::Notification),
    ]
}

/// Feeds `bytes` to a fresh decoder in chunks of the given sizes (cycled).
fn decode_chunked(bytes: &[u8], sizes: &[usize]) -> Result<Vec<Message>, DecodeError> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        while let Some(message) = decoder.push(&mut chunk)? {
            out.push(message);
        }
    }
    assert!(decoder.is_idle(), "stream ended inside a message");
    Ok(out)
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(message in message()) {
        let bytes = message.to_bytes();
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(decode(&bytes).unwrap(), message);
    }

    #[test]
    fn any_chunking_yields_the_same_messages(
        messages in prop::collection::vec(message(), 1..8),
        sizes in prop::collection::vec(1usize..600, 1..20),
    ) {
        let bytes: Vec<u8> = messages.iter().flat_map(Message::to_bytes).collect();
        prop_assert_eq!(decode_chunked(&bytes, &sizes).unwrap(), messages);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_hoard_memory(
        bytes in prop::collection::vec(any::<u8>(), 0..4000),
        sizes in prop::collection::vec(1usize..300, 1..10),
    ) {
        let mut decoder = Decoder::default();
        let mut fed = 0;
        let mut rest = &bytes[..];
        'feed: for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            fed += chunk.len();
            loop {
                match decoder.push(&mut chunk) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            // Buffers grow geometrically: at most twice what was received,
            // plus the small initial capacity a count may claim.
            prop_assert!(decoder.held_bytes() <= 2 * fed + 4096,
                "held {} after {} bytes", decoder.held_bytes(), fed);
        }
    }
}

#[test]
fn lying_counts_allocate_nothing_large_and_wait_for_more() {
    for kind in [0x02u8, 0x04] {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&4_000_000_000u32.to_be_bytes());
        bytes.extend_from_slice(&[7; 10]);
        let mut decoder = Decoder::default();
        let mut input = &bytes[..];
        assert_eq!(decoder.push(&mut input), Ok(None), "type 0x{kind:02x}");
        assert!(input.is_empty());
        assert!(!decoder.is_idle());
        assert!(
            decoder.held_bytes() <= 4096,
            "type 0x{kind:02x} holds {}",
            decoder.held_bytes()
        );
    }
}

#[test]
fn an_archive_of_many_small_chats_holds_at_most_twice_its_bytes() {
    // Empty chats are where an index per chat would weigh most.
    let history: History = (0..2000)
        .map(|_| Chat::new(vec![], [1; 16], [2; 16]).unwrap())
        .collect();
    let bytes = Message::ArchiveResponse(history.clone()).to_bytes();
    let mut decoder = Decoder::default();
    for (received, byte) in bytes.iter().enumerate() {
        if let Some(message) = decoder.push(&mut &[*byte][..]).unwrap() {
            assert_eq!(message, Message::ArchiveResponse(history));
            return;
        }
        assert!(
            decoder.held_bytes() <= 2 * (received + 1) + 4096,
            "{} held after {} bytes",
            decoder.held_bytes(),
            received + 1
        );
    }
    panic!("the archive did not decode");
}

#[test]
fn oversized_message_is_refused_when_it_crosses_the_limit() {
    let history: History = (0..10)
        .map(|i| Chat::new(vec![b'a'; 40], [i; 16], [i; 16]).unwrap())
        .collect();
    let bytes = Message::ArchiveResponse(history).to_bytes();
    let max = 300;
    let mut decoder = Decoder::new(max);
    for (i, byte) in bytes.iter().enumerate() {
        let result = decoder.push(&mut &[*byte][..]);
        if i < max {
            assert_eq!(result, Ok(None), "byte {i}");
        } else {
            assert_eq!(
                result,
                Err(DecodeError::TooLarge {
                    max,
                    start: 0,
                    offset: max as u64
                })
            );
            break;
        }
    }
    // The stream cannot be resynchronised: the decoder stays failed.
    assert!(decoder.push(&mut &[1u8][..]).is_err());
}

#[test]
fn a_message_of_exactly_the_limit_is_accepted() {
    let bytes = Message::PeerList(vec![Ipv4Addr::LOCALHOST; 3]).to_bytes();
    let mut decoder = Decoder::new(bytes.len());
    assert!(matches!(
        decoder.push(&mut &bytes[..]),
        Ok(Some(Message::PeerList(_)))
    ));
}

#[test]
fn unknown_type_byte_is_an_error_at_its_offset() {
    let mut bytes = Message::PeerRequest.to_bytes();
    bytes.extend(Message::ArchiveRequest.to_bytes());
    bytes.push(0x09);
    let mut decoder = Decoder::default();
    let mut input = &bytes[..];
    assert_eq!(decoder.push(&mut input), Ok(Some(Message::PeerRequest)));
    assert_eq!(decoder.push(&mut input), Ok(Some(Message::ArchiveRequest)));
    assert_eq!(
        decoder.push(&mut input),
        Err(DecodeError::UnknownType {
            byte: 0x09,
            offset: 2
        })
    );
}

#[test]
fn strict_decode_reports_truncation_and_trailing_bytes() {
    let history: History = (0..3)
        .map(|i| Chat::new(vec![b'z'; 5], [i; 16], [i; 16]).unwrap())
        .collect();
    let bytes = Message::ArchiveResponse(history).to_bytes();
    let err = decode(&bytes[..bytes.len() - 3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "input ends at byte {}, inside chat 2 of 3 (starting at byte 81) of the ArchiveResponse starting at byte 0",
            bytes.len() - 3
        )
    );
    let mut long = bytes.clone();
    long.push(1);
    assert_eq!(
        decode(&long),
        Err(DecodeError::TrailingBytes {
            offset: bytes.len() as u64
        })
    );
    assert!(matches!(
        decode(&[]),
        Err(DecodeError::Truncated { offset: 0, .. })
    ));
}

#[test]
fn fixture_decodes_in_socket_sized_reads() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/history-1k.bin"
    ))
    .unwrap();
    let whole = decode(&bytes).unwrap();
    let Message::ArchiveResponse(history) = &whole else {
        panic!("not an archive")
    };
    assert_eq!(history.len(), 1000);
    assert_eq!(history.chat(3).unwrap().text().len(), 255);
    assert_eq!(
        decode_chunked(&bytes, &[4096]).unwrap(),
        vec![whole.clone()]
    );
    assert_eq!(decode_chunked(&bytes, &[1, 7, 300]).unwrap(), vec![whole]);
}
