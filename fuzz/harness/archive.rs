//! Body of the `archive` fuzz target, shared by `fuzz/fuzz_targets/archive.rs`
//! (libFuzzer) and `miner/tests/fuzz_corpus.rs` (replay of the saved corpus
//! on stable Rust).
//!
//! Input layout: byte 0 modulo 3 picks the mode, byte 1 picks the indices
//! the checks start from (see [`check_validation`]), and then:
//!
//! - mode 0: the rest is chats laid back to back, parsed with
//!   `History::extend_from_wire`;
//! - mode 1 (the PROTOCOL.md vector, 5 chats) and mode 2 (the first 1,000
//!   chats of the network, `history-1k.bin`): byte 2 is how many of the
//!   fixture's first chats to keep (see [`chats_to_keep`]), then every 4
//!   bytes are one mutation of those chats' bytes (at most 8). A fuzzer
//!   almost never mines an MD5 with two zero bytes by itself, so starting
//!   from valid chats is what reaches the `WrongDigest` and "valid" paths.
//!
//! It checks the framing of the parsed history and its trip through an
//! ArchiveResponse, every chat's window against one rebuilt from its chats,
//! and that `validate`, `validate_from` and `validate_extension` agree with a
//! sequential loop of `check_chat` (first invalid index and reason).

use miner::{InvalidChat, Invalidity, check_chat, validate, validate_extension, validate_from};
use wire::{CHAT_OVERHEAD, DIGEST_LEN, History, Message, WINDOW_CHATS, decode};

/// ArchiveResponses: a 5-byte header (type, count), then the chats.
const VECTOR: &[u8] = include_bytes!("../../tests/fixtures/vector.bin");
const HISTORY_1K: &[u8] = include_bytes!("../../tests/fixtures/history-1k.bin");
const HEADER: usize = 5;

const MAX_MUTATIONS: usize = 8;

pub fn run(data: &[u8]) {
    let [mode, pick, rest @ ..] = data else {
        return;
    };
    match mode % 3 {
        0 => {
            let history = parse(rest);
            check_validation(&history, *pick, None);
        }
        mode => {
            let [keep, mutations @ ..] = rest else {
                return;
            };
            let fixture = if mode == 1 { VECTOR } else { HISTORY_1K };
            let mut original = History::new();
            assert_eq!(
                original.extend_from_wire(&fixture[HEADER..]),
                fixture.len() - HEADER
            );
            original.truncate(chats_to_keep(original.len(), *keep));
            let mut bytes = original.segments().collect::<Vec<_>>().concat();
            for mutation in mutations.chunks_exact(4).take(MAX_MUTATIONS) {
                mutate(&mut bytes, mutation.try_into().expect("4 bytes"));
            }
            let history = parse(&bytes);
            check_validation(&history, *pick, Some(&original));
        }
    }
}

/// How many of a fixture's `len` first chats selector byte `byte` keeps:
/// any number up to 127 (windows holding the 255-byte chats 3 and 19..=21
/// of history-1k), then multiples of 8 up to all of them (chats 467 and 500,
/// and enough chats for the validators to split the work into tasks).
fn chats_to_keep(len: usize, byte: u8) -> usize {
    let keep = match byte {
        0..=127 => usize::from(byte),
        128.. => usize::from(byte - 127) * 8,
    };
    keep % (len + 1)
}

/// Applies `[op, position (u16, big-endian), value]` to `bytes`: overwrite,
/// insert or remove one byte, or cut the bytes short. Inserting, removing
/// or changing a length byte reframes every chat after it.
fn mutate(bytes: &mut Vec<u8>, [op, high, low, value]: [u8; 4]) {
    let at = usize::from(u16::from_be_bytes([high, low]));
    match op % 4 {
        0 if !bytes.is_empty() => {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        1 => bytes.insert(at % (bytes.len() + 1), value),
        2 if !bytes.is_empty() => {
            bytes.remove(at % bytes.len());
        }
        3 => bytes.truncate(at % (bytes.len() + 1)),
        _ => {}
    }
}

/// Parses chats laid back to back and checks the result: whole chats in
/// order, each framed by its length byte, then only a cut chat dropped; the
/// windows; and an unchanged trip through an encoded ArchiveResponse.
fn parse(bytes: &[u8]) -> History {
    let mut history = History::new();
    let kept = history.extend_from_wire(bytes);
    let dropped = bytes.len() - kept;
    assert_eq!(history.wire_len(), kept);
    assert_eq!(
        history.segments().collect::<Vec<_>>().concat(),
        &bytes[..kept]
    );
    let mut at = 0;
    for (index, chat) in history.iter().enumerate() {
        let chat = chat.as_bytes();
        assert_eq!(chat.len(), CHAT_OVERHEAD + usize::from(chat[0]));
        assert_eq!(history.wire_offset(index), at);
        at += chat.len();
    }
    assert_eq!(at, kept);
    if dropped > 0 {
        assert!(dropped < CHAT_OVERHEAD + usize::from(bytes[kept]));
    }
    check_windows(&history);

    let mut archive = Vec::new();
    history.encode_archive(&mut archive);
    assert_eq!(archive.len(), history.archive_len());
    assert_eq!(
        decode(&archive),
        Ok(Message::ArchiveResponse(history.clone()))
    );
    history
}

/// The window of chat `k` is chats `max(0, k-19) ..= k` back to back,
/// without chat `k`'s digest.
fn check_windows(history: &History) {
    for k in 0..history.len() {
        let first = k.saturating_sub(WINDOW_CHATS - 1);
        let mut expected: Vec<u8> = (first..=k)
            .flat_map(|i| history.chat(i).expect("in range").as_bytes())
            .copied()
            .collect();
        expected.truncate(expected.len() - DIGEST_LEN);
        assert_eq!(history.window(k), expected, "window of chat {k}");
    }
}

/// Checks the validators against a sequential `check_chat` loop.
/// `original`, if given, is a valid history the checked one was mutated
/// from. `pick` chooses the trusted index handed to `validate_from` and
/// the length of the valid prefix handed to `validate_extension`.
fn check_validation(history: &History, pick: u8, original: Option<&History>) {
    let verdicts: Vec<Result<(), Invalidity>> =
        (0..history.len()).map(|k| check_chat(history, k)).collect();
    // What `validate_from(history, from)` must say.
    let expected_from = |from: usize| {
        verdicts
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(index, verdict)| verdict.err().map(|reason| InvalidChat { index, reason }))
            .map_or(Ok(()), Err)
    };
    assert_eq!(validate(history), expected_from(0));
    // One past `len` too: trusting more chats than there are checks none.
    let trusted = usize::from(pick) % (history.len() + 2);
    assert_eq!(validate_from(history, trusted), expected_from(trusted));

    // The longest valid prefix, and a prefix of it of `pick` chats or fewer.
    let valid_len = match expected_from(0) {
        Ok(()) => history.len(),
        Err(bad) => bad.index,
    };
    let mut valid = history.clone();
    valid.truncate(valid_len);
    let cut = trusted.min(valid_len);
    let mut prefix = history.clone();
    prefix.truncate(cut);
    // Extending a valid prefix checks only the chats past it.
    assert_eq!(
        validate_extension(&prefix, history),
        expected_from(cut).map(|()| cut)
    );
    // A truncation of a valid history is valid, all of it shared.
    assert_eq!(validate_extension(&valid, &prefix), Ok(cut));

    if let Some(original) = original {
        let common = leading_equal_chats(original, history);
        assert_eq!(original.common_prefix_len(history), common);
        assert_eq!(history.common_prefix_len(original), common);
        assert_eq!(
            validate_extension(original, history),
            expected_from(common).map(|()| common)
        );
        // The untouched history, offered to a node holding the valid part of
        // the mutated one.
        assert_eq!(
            validate_extension(&valid, original),
            Ok(leading_equal_chats(&valid, original))
        );
    }
}

/// Number of leading chats with identical bytes, counted chat by chat.
fn leading_equal_chats(a: &History, b: &History) -> usize {
    a.iter()
        .zip(b.iter())
        .take_while(|(x, y)| x.as_bytes() == y.as_bytes())
        .count()
}
