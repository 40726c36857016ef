//! The saved corpus of the `decoder` fuzz target, replayed through its body.

#[path = "../../fuzz/harness/decoder.rs"]
mod harness;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn decoder_corpus_replays() {
    replay::replay("decoder", harness::run);
}
