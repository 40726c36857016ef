//! The saved corpus of the `archive` fuzz target, replayed through its body.

#[path = "../../fuzz/harness/archive.rs"]
mod harness;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn archive_corpus_replays() {
    replay::replay("archive", harness::run);
}
