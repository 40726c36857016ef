use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A peer of the blockchain chat network: mines chats into the shared
/// MD5 proof-of-work history and replicates it with its peers.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a history file: one ArchiveResponse message as it travels on
    /// the wire. Exit status: 0 valid, 1 invalid, 2 unreadable or
    /// undecodable.
    Verify {
        /// The file to check.
        file: PathBuf,
    },
}
