//! `node verify FILE`: decode and validate a stored ArchiveResponse.

use std::path::Path;
use std::process::ExitCode;

use wire::History;

use crate::text::printable;

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
    wire::decode_archive(&bytes).map_err(|e| e.to_string())
}
