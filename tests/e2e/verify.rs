//! `node verify FILE` on the PROTOCOL.md vector, a corrupted copy and a
//! truncated file.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use crate::support::{WAIT, fixture, fixture_bytes, run_to_exit, shared_cpu};

/// `node verify FILE`, which must exit within [`WAIT`].
fn verify(file: &Path) -> Output {
    run_to_exit([OsStr::new("verify"), file.as_os_str()], WAIT)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_vector_is_valid() {
    let _cpu = shared_cpu();
    let output = verify(&fixture("vector.bin"));
    assert_eq!(
        stdout(&output),
        "read: an ArchiveResponse, 5 chats claimed\nchats: 5\nlast chat: nova msg\nvalid\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_corrupted_copy_names_the_first_invalid_chat() {
    let _cpu = shared_cpu();
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fixture_bytes("vector.bin");
    // A letter of "gahoga", the text of chat 2.
    let at = bytes.windows(6).position(|w| w == b"gahoga").unwrap();
    bytes[at] = b'G';
    let file = dir.path().join("corrupt.bin");
    std::fs::write(&file, &bytes).unwrap();

    let output = verify(&file);
    let out = stdout(&output);
    assert!(
        out.starts_with(
            "read: an ArchiveResponse, 5 chats claimed\ninvalid: chat 2 is invalid: its MD5 field is 00002e68"
        ),
        "{out}"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_truncated_file_is_an_error_naming_the_offset() {
    let _cpu = shared_cpu();
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixture_bytes("vector.bin");
    let file = dir.path().join("cut.bin");
    std::fs::write(&file, &bytes[..200]).unwrap();

    let output = verify(&file);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("input ends at byte 200, inside chat 3 of 5 (starting at byte 181)"),
        "{err}"
    );
    assert_eq!(
        stdout(&output),
        "read: an ArchiveResponse, 5 chats claimed\n"
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_missing_file_or_another_message_is_an_error() {
    let _cpu = shared_cpu();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        verify(&dir.path().join("absent.bin")).status.code(),
        Some(2)
    );
    // A directory that is no data directory: said so, not "No such file".
    let output = verify(dir.path());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("no history.bin in this directory"), "{err}");
    assert_eq!(output.status.code(), Some(2));
    let file = dir.path().join("request.bin");
    std::fs::write(&file, [3]).unwrap();
    let output = verify(&file);
    let err = String::from_utf8_lossy(&output.stderr);
    // What the message must say, in parts: wire is still rewording it.
    for part in [
        "ArchiveRequest message",
        "not an ArchiveResponse",
        "type byte 0x03",
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_fixture_histories_are_valid() {
    let _cpu = shared_cpu();
    for (name, chats) in [("history-1k.bin", 1000), ("history-100k.bin", 100_000)] {
        let output = verify(&fixture(name));
        let out = stdout(&output);
        assert!(
            out.contains(&format!("\nchats: {chats}\n")) && out.ends_with("\nvalid\n"),
            "{name}: {out}"
        );
        assert_eq!(output.status.code(), Some(0));
    }
}
