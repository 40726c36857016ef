//! Replays the saved corpus of a fuzz target (`fuzz/corpus/<target>`:
//! seeds, inputs kept by libFuzzer, regression inputs) through the
//! target's own body, on stable Rust without libFuzzer, so that
//! `cargo test` runs it. See fuzz/README.md.

/// Runs `body` on every file of the corpus of `target`.
pub fn replay(target: &str, body: fn(&[u8])) {
    let dir = format!("{}/../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("directory entry").path();
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{}", path.display());
        body(&input);
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus in {dir}");
}
