//! `node`: a peer of the chat network (see README.md).

mod cli;
mod verify;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Verify { file }) => verify::run(&file),
        None => {
            eprintln!("node: the peer itself is not built yet; only `node verify FILE` works");
            ExitCode::FAILURE
        }
    }
}
