//! `node verify FILE`: decode and validate a stored ArchiveResponse.

use std::path::Path;
use std::process::ExitCode;

use wire::{History, Message};

/// Exit status of a file that decodes but holds an invalid history.
const INVALID: u8 = 1;
/// Exit status of a file that cannot be read or decoded.
const UNREADABLE: u8 = 2;

pub fn run(file: &Path) -> ExitCode {
    match load(file) {
        Err(reason) => {
            eprintln!("node verify: {}: {reason}", file.display());
            ExitCode::from(UNREADABLE)
        }
        Ok(history) => {
            println!("chats: {}", history.len());
            match history.last() {
                Some(chat) => println!("last chat: {}", printable(chat.text())),
                None => println!("last chat: (none, the history is empty)"),
            }
            match miner::validate(&history) {
                Ok(()) => {
                    println!("valid");
                    ExitCode::SUCCESS
                }
                Err(invalid) => {
                    println!("invalid: {invalid}");
                    ExitCode::from(INVALID)
                }
            }
        }
    }
}

fn load(file: &Path) -> Result<History, String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    match wire::decode(&bytes).map_err(|e| e.to_string())? {
        Message::ArchiveResponse(history) => Ok(history),
        other => Err(format!(
            "holds a {:?} message, not an ArchiveResponse (type byte 0x04)",
            other.message_type()
        )),
    }
}

/// Chat text for a terminal: bytes from other peers may be anything, so
/// non-printable ones are escaped.
pub fn printable(text: &[u8]) -> String {
    text.escape_ascii().to_string()
}
