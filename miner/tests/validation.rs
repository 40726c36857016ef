//! Validation against the PROTOCOL.md test vector and the fixtures.

use miner::{InvalidChat, Invalidity, validate, validate_extension, validate_from, window_digest};
use wire::{History, Message, decode};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn history(bytes: &[u8]) -> History {
    wire::decode_archive(bytes).expect("an ArchiveResponse")
}

#[test]
fn vector_decodes_to_five_listed_chats_and_validates() {
    let history = history(&fixture("vector.bin"));
    let texts: Vec<&[u8]> = history.iter().map(|c| c.text()).collect();
    assert_eq!(
        texts,
        [
            &b"cunha@dcc.ufmg.br root gg norev thx"[..],
            b"cunha@dcc.ufmg.br izi mid izi life 2",
            b"gahoga",
            b"cunha@dcc test hangout",
            b"nova msg",
        ]
    );
    assert_eq!(
        history.last().unwrap().digest(),
        &[
            0x00, 0x00, 0x9c, 0xbe, 0x78, 0x3b, 0x2a, 0x1d, 0xe7, 0xf8, 0x33, 0xb3, 0x78, 0xdc,
            0x5e, 0xf9
        ]
    );
    assert_eq!(validate(&history), Ok(()));
    assert_eq!(
        &window_digest(&history, 4),
        history.last().unwrap().digest()
    );
}

#[test]
fn every_single_byte_change_inside_a_chat_fails_at_that_chat() {
    let bytes = fixture("vector.bin");
    let original = history(&bytes);
    let mut checked = 0;
    for chat in 0..original.len() {
        let range = original.chat_range(chat);
        for at in range.start + 5..range.end + 5 {
            for value in 0..=255u8 {
                if value == bytes[at] {
                    continue;
                }
                let mut changed = bytes.clone();
                changed[at] = value;
                // A changed length byte reframes the stream; it may no
                // longer decode, which rejects it just as well.
                let Ok(Message::ArchiveResponse(h)) = decode(&changed) else {
                    continue;
                };
                let err = validate(&h).expect_err("a changed byte must invalidate");
                assert_eq!(err.index, chat, "byte {at} set to {value:#04x}");
                checked += 1;
            }
        }
    }
    assert!(checked > 60_000, "only {checked} changes were checked");
}

#[test]
fn the_empty_history_is_valid() {
    assert_eq!(validate(&History::new()), Ok(()));
    assert_eq!(validate(&history(&[4, 0, 0, 0, 0])), Ok(()));
}

#[test]
fn fixture_of_a_thousand_chats_validates_and_reports_the_first_bad_chat() {
    let bytes = fixture("history-1k.bin");
    assert_eq!(validate(&history(&bytes)), Ok(()));
    let mut corrupt = bytes.clone();
    let h = history(&bytes);
    // One text byte in chat 700 and one digest byte of chat 900: the
    // earlier one is reported, and as a wrong digest.
    corrupt[5 + h.chat_range(700).start + 1] ^= 1;
    corrupt[5 + h.chat_range(900).end - 1] ^= 1;
    let err = validate(&history(&corrupt)).unwrap_err();
    assert_eq!(err.index, 700);
    assert!(matches!(err.reason, Invalidity::WrongDigest { .. }));
}

#[test]
fn a_digest_without_two_zero_bytes_is_reported_as_not_mined() {
    let bytes = fixture("vector.bin");
    let h = history(&bytes);
    let mut changed = bytes.clone();
    changed[5 + h.chat_range(2).end - 16] = 1;
    let err = validate(&history(&changed)).unwrap_err();
    assert!(
        matches!(
            err,
            InvalidChat {
                index: 2,
                reason: Invalidity::NotMined { .. }
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("chat 2 is invalid: its MD5 0100"),
        "{err}"
    );
}

#[test]
fn incremental_validation_hashes_only_past_the_common_prefix() {
    let long = history(&fixture("history-1k.bin"));
    let mut short = long.clone();
    short.truncate(999);
    assert_eq!(validate_extension(&short, &long), Ok(999));

    // A prefix that is trusted is not looked at: a broken chat inside it
    // (which breaks the windows of chats 10..30) goes unnoticed, which
    // proves it was not re-hashed.
    let mut bytes = fixture("history-1k.bin");
    bytes[5 + long.chat_range(10).start + 1] ^= 1;
    let broken = history(&bytes);
    assert_eq!(validate_from(&broken, 30), Ok(()));
    assert_eq!(validate_from(&broken, 29).unwrap_err().index, 29);
    assert_eq!(validate_from(&broken, 10).unwrap_err().index, 10);

    // A candidate that forks from ours is checked from the fork on: here
    // chat 500 is moved from elsewhere and cannot fit its new window.
    let mut fork = long.clone();
    fork.truncate(500);
    fork.extend_from(&long, 501);
    assert_eq!(validate_extension(&long, &fork).unwrap_err().index, 500);
    let mut bad_fork = long.clone();
    bad_fork.truncate(5);
    bad_fork.extend_from(&broken, 5);
    assert_eq!(validate_extension(&short, &bad_fork).unwrap_err().index, 10);
}
