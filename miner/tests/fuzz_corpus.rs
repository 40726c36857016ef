//! Replays the saved corpus of the `archive` fuzz target (`fuzz/corpus/archive`,
//! seeds, inputs kept by libFuzzer and regression inputs) through the
//! target's own body, on stable Rust without libFuzzer. See fuzz/README.md.

#[path = "../../fuzz/harness/archive.rs"]
mod harness;

#[test]
fn archive_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/archive");
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
