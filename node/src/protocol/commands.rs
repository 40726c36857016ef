//! What the node does with a command from its prompt or a control client
//! (`chat`, `hist`, `peers`, `status`, `help`, `quit`; and from the
//! control socket, `connect`, `disconnect`, `ban`, `unban`, `bans`, `log`
//! and `metrics`), and the `status` and metrics it answers with.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use log::info;

use super::counts::Scrape;
use super::io::{Action, Origin, Save};
use super::report::{Reply, Status};
use super::room::{ScreenLine, StatusBar};
use super::{Node, QUIT_WAIT, Unacked};
use crate::command::{self, Command, Stage};
use crate::text::count;

/// The version `status` gives: the one `node --version` prints.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A ban's span as the replies say it: `forever`, or `for 2h00m` (as
/// `status` shows uptimes).
fn for_span(span: Option<Duration>) -> String {
    match span {
        None => "forever".to_string(),
        Some(span) => format!("for {}", super::report::span(span)),
    }
}

impl Node {
    pub(super) fn on_command(&mut self, now: Instant, from: Origin, command: Command) {
        let reply = match command {
            Command::Chat(text) => return self.chat(now, from, text, Stage::Saved),
            Command::ChatUntil { text, stage } => return self.chat(now, from, text, stage),
            Command::Hist { n, before } => Reply::hist(&self.history, n, before, true),
            Command::Peers => Reply::Peers {
                peers: self.peers.rows(now),
                dialing: self.book.rows(now),
                resolving: self.book.name_rows(now),
            },
            Command::Status => Reply::Status(Box::new(self.status(now))),
            Command::Help(topic) => Reply::Help {
                text: command::help(topic),
            },
            Command::Quit => {
                if self.quitting.is_none() && !self.settled() {
                    let what = match self.own.pending() {
                        0 => "the history to be saved".to_string(),
                        n => format!("{} of yours to be mined and saved", count(n, "chat")),
                    };
                    self.print(ScreenLine::plain(format!(
                        "waiting at most {} s for {what}",
                        QUIT_WAIT.as_secs()
                    )));
                }
                self.quitting.get_or_insert(now + QUIT_WAIT);
                return;
            }
            Command::Connect(addr) => self.connect_to(now, addr),
            Command::Disconnect(addr) => self.disconnect(addr),
            Command::Ban { addr, span } => {
                self.book.ban(addr, span, now);
                let closed = self.close_all(addr);
                self.save_bans(now);
                info!("{addr} banned {}", for_span(span));
                done(format!(
                    "banned {addr} {}{}",
                    for_span(span),
                    match closed {
                        0 => String::new(),
                        n => format!("; {n} connection(s) with it closed"),
                    }
                ))
            }
            Command::Unban(addr) => {
                if self.book.unban(addr) {
                    self.save_bans(now);
                    done(format!("{addr} is no longer banned"))
                } else {
                    error(format!("{addr} is not banned (see 'chatchain bans')"))
                }
            }
            Command::Bans => Reply::Bans {
                bans: self.book.ban_rows(now),
            },
            Command::Log(level) => {
                self.outbox.push_back(Action::SetLog(level));
                done(format!("log level: {}", level.as_str().to_lowercase()))
            }
            Command::Metrics => Reply::Metrics {
                text: crate::metrics::render(&self.scrape(now)),
            },
        };
        self.reply(from, reply);
    }

    /// Queues our chat `text` for mining, saved first; `from` is answered
    /// once it is on disk, or at `stage`.
    fn chat(&mut self, now: Instant, from: Origin, text: Vec<u8>, stage: Stage) {
        if from == Origin::Prompt && self.room.is_some() && self.peers.count() == 0 {
            self.print(ScreenLine::plain(
                "no peer is connected: the chat is mined here and waits for one \
                 ('peers' shows the addresses being tried)",
            ));
        }
        let id = self.own.queue(text.clone());
        self.save_tracked(Unacked::Chat(from, id, stage), |ticket| Save::Chat {
            id,
            text,
            ticket,
        });
        self.schedule_mining(now);
    }

    /// `node connect`: `addr` is dialed now and wanted from now on.
    fn connect_to(&mut self, now: Instant, addr: Ipv4Addr) -> Reply {
        if self.book.is_banned(addr) {
            return error(format!("{addr} is banned: 'chatchain unban {addr}' first"));
        }
        if self.peers.is_connected(addr) {
            return done(format!("already connected to {addr}"));
        }
        if !self.book.add_bootstrap(addr) {
            return error(format!(
                "{addr} cannot be dialed: it is this node's own address"
            ));
        }
        self.dial(now);
        done(format!(
            "connecting to {addr} (see 'chatchain peers'); it is dialed again whenever lost"
        ))
    }

    /// `node disconnect`: every connection with `addr` closes, and it is
    /// no longer wanted back (it may still dial us, or be named to us).
    fn disconnect(&mut self, addr: Ipv4Addr) -> Reply {
        self.book.unwant(addr);
        match self.close_all(addr) {
            0 => error(format!("no connection with {addr} (see 'chatchain peers')")),
            n => done(format!("disconnecting {addr} ({n} connection(s))")),
        }
    }

    /// Closes every connection with `addr`; how many.
    fn close_all(&mut self, addr: Ipv4Addr) -> usize {
        let conns: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr == addr)
            .map(|(c, _)| c)
            .collect();
        for &conn in &conns {
            self.outbox.push_back(Action::Close { conn, notify: None });
        }
        conns.len()
    }

    /// The bans as they stand, to the data directory.
    pub(super) fn save_bans(&mut self, now: Instant) {
        self.save(Save::Bans(self.book.ban_rows(now)));
    }

    /// Every chat of ours is in the history, and all of it is on disk.
    fn settled(&self) -> bool {
        self.own.pending() == 0 && self.unacked.is_empty() && self.stored >= self.history.len()
    }

    /// After a `quit`: stops once settled, or once the wait is over.
    pub(super) fn check_quit(&mut self, now: Instant) {
        if let Some(until) = self.quitting
            && (self.settled() || now >= until)
        {
            self.quitting = None;
            self.outbox.push_back(Action::Shutdown);
        }
    }

    /// Tells the prompt the node's status when it changed.
    pub(super) fn update_status(&mut self) {
        let bar = StatusBar {
            peers: self.peers.count(),
            history: self.history.len(),
            pending: self.own.pending(),
        };
        if let Some(bar) = self.room.as_mut().and_then(|room| room.status(bar)) {
            self.outbox.push_back(Action::Status(bar));
        }
    }

    fn status(&self, now: Instant) -> Status {
        Status {
            bind: self.config.bind,
            port: self.config.port,
            relay_port: self.config.relay_port,
            peers: self.peers.count(),
            history: self.history.len(),
            stored: self.stored,
            last: self.history.last().map(|c| c.text().to_vec()),
            pending: self.own.pending(),
            mining: self.mining.report(now, &self.own),
            threads: self.config.threads,
            last_job: self.mining.last().map(Into::into),
            sent: self.sent,
            endings: self
                .endings
                .iter()
                .map(|(&kind, &count)| (kind.to_string(), count))
                .collect(),
            data_dir: self.config.data_dir.clone(),
            pid: self.config.pid,
            version: VERSION.to_string(),
            uptime: now.saturating_duration_since(self.started),
        }
    }

    fn scrape(&self, now: Instant) -> Scrape {
        Scrape {
            counts: self.counts.clone(),
            sent: self.sent,
            history: self.history.len(),
            pending: self.own.pending(),
            peers: self.peers.count(),
            backing_off: self.book.backing_off(now),
            banned: self.book.ban_rows(now).len(),
            hash_rate: self
                .mining
                .last()
                .map_or(0.0, |stats| super::report::Figures::from(stats).hash_rate()),
            uptime: now.saturating_duration_since(self.started),
        }
    }
}

fn done(text: String) -> Reply {
    Reply::Done { text }
}

fn error(error: String) -> Reply {
    Reply::Error { error }
}
