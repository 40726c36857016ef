//! The saved corpora of the `decoder` and `relay` fuzz targets, replayed
//! through their bodies.

#[path = "../../fuzz/harness/decoder.rs"]
mod decoder;
// Each harness includes `harness/input.rs` itself, as its fuzz target needs:
// here that file is loaded twice, once per harness, on purpose.
#[allow(clippy::duplicate_mod)]
#[path = "../../fuzz/harness/relay.rs"]
mod relay;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn decoder_corpus_replays() {
    replay::replay("decoder", decoder::run);
}

#[test]
fn relay_corpus_replays() {
    replay::replay("relay", relay::run);
}
