//! The mining engine end to end: mined chats validate, cancellation stops a
//! job, every kernel mines.

use std::sync::mpsc;
use std::time::Duration;

use miner::{CancelToken, Kernel, Miner, NETWORK_DIFFICULTY, has_leading_zero_bits, validate};
use wire::History;

/// Mines `text` onto `history` and checks that the result validates.
fn mine_onto(miner: &Miner, history: &mut History, text: &[u8], difficulty: u32) {
    let mined = miner
        .mine(
            history.tail_for_append(),
            text,
            difficulty,
            &CancelToken::new(),
        )
        .expect("not cancelled");
    assert_eq!(mined.chat.text(), text);
    assert!(has_leading_zero_bits(mined.chat.digest(), difficulty));
    assert!(mined.stats.tries > 0);
    history.push(&mined.chat);
    assert_eq!(
        validate(history),
        Ok(()),
        "{:?}: chat {} of {} bytes",
        miner.kernel(),
        history.len() - 1,
        text.len()
    );
}

/// A valid history of `len` chats of varied lengths (so that windows past
/// 20 chats mix lengths), mined with `miner`.
fn history_of(miner: &Miner, len: usize) -> History {
    let mut history = History::new();
    for i in 0..len {
        let text = vec![b'a' + (i % 26) as u8; (i * 37) % 90];
        mine_onto(miner, &mut history, &text, NETWORK_DIFFICULTY);
    }
    history
}

#[test]
fn mined_chats_validate_for_every_history_length_and_text_length() {
    for kernel in Kernel::supported() {
        let miner = Miner::with_kernel(2, kernel);
        let base = history_of(&miner, 50);
        for history_len in [0, 1, 19, 20, 21, 50] {
            for text_len in [0, 1, 55, 56, 63, 64, 255] {
                let mut history = base.clone();
                history.truncate(history_len);
                let text: Vec<u8> = (0..text_len).map(|i| b' ' + (i % 95) as u8).collect();
                mine_onto(&miner, &mut history, &text, NETWORK_DIFFICULTY);
            }
        }
    }
}

/// Every window length mod 64, so every layout (counter word, straddling
/// code, spilling padding) is mined, with the best kernel.
#[test]
fn every_layout_is_mined() {
    let miner = Miner::new(2);
    let base = history_of(&miner, 20);
    for text_len in 0..64 {
        let mut history = base.clone();
        mine_onto(
            &miner,
            &mut history,
            &vec![b'z'; text_len],
            NETWORK_DIFFICULTY,
        );
    }
}

#[test]
fn a_higher_difficulty_yields_that_many_zero_bits() {
    let miner = Miner::new(2);
    let mut history = history_of(&miner, 3);
    mine_onto(&miner, &mut history, b"harder", 22);
}

#[test]
fn two_jobs_for_the_same_chat_find_different_codes() {
    let miner = Miner::new(2);
    let never = CancelToken::new();
    let a = miner.mine(b"", b"same", 8, &never).expect("found");
    let b = miner.mine(b"", b"same", 8, &never).expect("found");
    assert_ne!(a.chat.code(), b.chat.code());
}

#[test]
fn cancelling_stops_a_job_that_cannot_finish() {
    for threads in [1, 2] {
        let miner = Miner::new(threads);
        let cancel = CancelToken::new();
        let (done, finished) = mpsc::channel();
        std::thread::scope(|s| {
            let job_cancel = cancel.clone();
            let miner = &miner;
            s.spawn(move || {
                let outcome = miner.mine(b"", b"never", 128, &job_cancel);
                done.send(outcome.map(|m| m.chat)).expect("receiver waits");
            });
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
            let outcome = finished
                .recv_timeout(Duration::from_secs(10))
                .expect("the job returns once cancelled");
            let stopped = outcome.expect_err("no chat at 128 bits");
            assert!(stopped.stats.tries > 0);
            assert!(stopped.stats.hash_rate() > 0.0);
        });
    }
}

#[test]
fn a_job_cancelled_before_it_starts_returns_at_once() {
    let miner = Miner::new(2);
    let cancel = CancelToken::new();
    cancel.cancel();
    let stopped = miner.mine(b"", b"x", 16, &cancel).expect_err("cancelled");
    assert_eq!(stopped.stats.tries, 0);
    assert_eq!(miner.threads(), 2);
}

#[test]
fn a_seeded_miner_of_one_thread_finds_the_same_chats_again() {
    let mine = |seed| {
        let miner = Miner::seeded(1, seed);
        let mut history = History::new();
        for text in [&b"one"[..], b"two", b"three"] {
            let chat = miner.mine_next(&history, text);
            history.push(&chat);
        }
        history
    };
    assert_eq!(mine(7), mine(7));
    assert_ne!(mine(7), mine(8));
    validate(&mine(7)).expect("valid");
}
