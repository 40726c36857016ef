//! What `hist`, `peers` and `status` print.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use wire::History;

use super::peers::Peers;
use crate::verify::printable;

pub fn hist(history: &History, n: usize) -> String {
    if history.is_empty() {
        return "the history is empty".into();
    }
    let first = history.len().saturating_sub(n);
    let mut out = String::new();
    for index in first..history.len() {
        let chat = history.chat(index).expect("in range");
        let _ = writeln!(out, "#{index} {}", printable(chat.text()));
    }
    out.pop();
    out
}

pub fn peers(peers: &Peers, now: Instant) -> String {
    if peers.is_empty() {
        return "no peers connected".into();
    }
    let mut out = format!(
        "{:<16} {:<9} {:>10} {:>12} {:>12}\n",
        "address", "direction", "since", "bytes in", "bytes out"
    );
    for peer in peers.values() {
        let direction = format!(
            "{:?}{}",
            peer.direction,
            if peer.primary { "" } else { "*" }
        )
        .to_lowercase();
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:>10} {:>12} {:>12}",
            peer.addr.to_string(),
            direction,
            ago(now - peer.since),
            peer.bytes_in,
            peer.bytes_out
        );
    }
    if peers.values().any(|p| !p.primary) {
        out.push_str("(* a second connection with the same address, closed once idle)\n");
    }
    out.pop();
    out
}

fn ago(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m{:02}s ago", s / 60, s % 60),
        _ => format!("{}h{:02}m ago", s / 3600, s % 3600 / 60),
    }
}

pub struct Status<'a> {
    pub bind: Ipv4Addr,
    pub port: u16,
    pub peers: &'a Peers,
    pub history: &'a History,
    pub pending: usize,
    pub mining: String,
    pub last_job: String,
    pub archives_sent: (u64, u64),
    pub data_dir: &'a str,
}

pub fn status(s: &Status) -> String {
    let primaries = s.peers.values().filter(|p| p.primary).count();
    let last = s.history.last().map_or("(none)".to_string(), |c| {
        format!("\"{}\"", printable(c.text()))
    });
    format!(
        "address:   {}:{}\npeers:     {primaries}\nhistory:   {} chats, last {last}\npending:   {} chats\nmining:    {}\nlast job:  {}\nsent:      {} archives, {} bytes\ndata dir:  {}",
        s.bind,
        s.port,
        s.history.len(),
        s.pending,
        s.mining,
        s.last_job,
        s.archives_sent.0,
        s.archives_sent.1,
        s.data_dir
    )
}
