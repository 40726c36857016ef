//! Replays the saved corpus of the `decoder` fuzz target (`fuzz/corpus/decoder`,
//! seeds, inputs kept by libFuzzer and regression inputs) through the
//! target's own body, on stable Rust without libFuzzer. See fuzz/README.md.

#[path = "../../fuzz/harness/decoder.rs"]
mod harness;

#[test]
fn decoder_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/decoder");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("directory entry").path();
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{}", path.display());
        harness::run(&input);
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus in {dir}");
}
