//! The client subcommands: `node status`, `node peers`, `node hist [N]
//! [--follow]`, `node chat TEXT`, each with `--json`. They talk to the node
//! that owns the data directory, through its control socket; with no node
//! running, `status` and `hist` read the data directory itself and say so,
//! and `peers` and `chat` fail (exit status 1).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use super::{Request, SOCKET_FILE};
use crate::protocol::{Line, Reply};
use crate::store;

/// Runs `request` against the node of data directory `dir`, printing the
/// answer as text, or as the JSON document itself with `json`.
pub fn run(dir: &Path, request: &Request, json: bool) -> ExitCode {
    let mut out = io::stdout().lock();
    let answer = match UnixStream::connect(dir.join(SOCKET_FILE)) {
        Ok(stream) => ask(stream, request, json, &mut out),
        Err(e) => offline(dir, request, &e),
    };
    match answer {
        Ok(Some(reply)) => {
            let failed = matches!(reply, Reply::Error { .. } | Reply::NotSaved { .. });
            let _ = if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&reply).expect("replies serialize")
                )
            } else {
                writeln!(out, "{reply}")
            };
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(why) => {
            let _ = writeln!(io::stderr(), "node: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `request` and reads the answer; for a followed `hist`, prints the
/// answer and then every change as it comes, until the node stops (`None`).
fn ask(
    stream: UnixStream,
    request: &Request,
    json: bool,
    out: &mut dyn Write,
) -> Result<Option<Reply>, String> {
    let mut writer = &stream;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    writer
        .write_all(&line)
        .map_err(|e| format!("sending to the node: {e}"))?;
    let mut lines = BufReader::new(&stream).lines();
    let first = lines
        .next()
        .ok_or("the node closed the control connection without an answer")?
        .map_err(|e| format!("reading the node's answer: {e}"))?;
    let reply: Reply = serde_json::from_str(&first)
        .map_err(|e| format!("the node's answer is not understood ({e}): {first}"))?;
    if !matches!(request, Request::Hist { follow: true, .. }) {
        return Ok(Some(reply));
    }
    let _ = if json {
        writeln!(out, "{first}")
    } else {
        writeln!(out, "{reply}")
    };
    for line in lines {
        let Ok(line) = line else { break };
        let shown = if json {
            line
        } else {
            match serde_json::from_str::<Line>(&line) {
                Ok(event) => event.to_string(),
                Err(_) => line,
            }
        };
        if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(None)
}

/// With no node running: `status` and `hist` from the data directory.
fn offline(dir: &Path, request: &Request, why: &io::Error) -> Result<Option<Reply>, String> {
    let not_running = || {
        format!(
            "no node is running with data directory {} ({}: {why})",
            dir.display(),
            SOCKET_FILE
        )
    };
    match request {
        Request::Status => {
            let (history, pending) =
                read_dir(dir).map_err(|e| format!("{}; {e}", not_running()))?;
            Ok(Some(Reply::Offline(crate::protocol::Offline {
                data_dir: dir.display().to_string(),
                history: history.len(),
                last: history.last().map(|c| c.text().to_vec()),
                pending,
            })))
        }
        Request::Hist { n, .. } => {
            let (history, _) = read_dir(dir).map_err(|e| format!("{}; {e}", not_running()))?;
            let _ = writeln!(
                io::stderr(),
                "the node is not running; the history of {}:",
                dir.display()
            );
            let first = history.len().saturating_sub(*n);
            let chats = (first..history.len())
                .map(|index| crate::protocol::HistChat {
                    index,
                    text: history.chat(index).expect("in range").text().to_vec(),
                })
                .collect();
            Ok(Some(Reply::Hist {
                chats,
                running: false,
            }))
        }
        Request::Peers | Request::Chat { .. } => Err(not_running()),
    }
}

/// The valid history of a data directory and its pending chats, read
/// without changing anything.
fn read_dir(dir: &Path) -> Result<(wire::History, usize), String> {
    let path = dir.join(store::HISTORY_FILE);
    let mut file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut history, _) =
        store::read_chats(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(invalid) = miner::validate(&history) {
        history.truncate(invalid.index);
    }
    let own = store::read_own_records(dir).map_err(|e| e.to_string())?;
    let pending = crate::protocol::OwnChats::restore(own, &history).pending();
    Ok((history, pending))
}
