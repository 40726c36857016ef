//! What the node does with a command from its prompt or a control client
//! (`chat`, `hist`, `peers`, `status`, `help`, `quit`), and the `status`
//! it answers with.

use std::time::Instant;

use super::io::{Action, Origin, Save};
use super::report::{Reply, Status};
use super::room::{ScreenLine, StatusBar};
use super::{Node, QUIT_WAIT, Unacked};
use crate::command::{self, Command};
use crate::text::count;

impl Node {
    pub(super) fn on_command(&mut self, now: Instant, from: Origin, command: Command) {
        let reply = match command {
            Command::Chat(text) => {
                if from == Origin::Prompt && self.room.is_some() && self.peers.count() == 0 {
                    self.print(ScreenLine::plain(
                        "no peer is connected: the chat is mined here and waits for one \
                         ('peers' shows the addresses being tried)",
                    ));
                }
                let id = self.own.queue(text.clone());
                self.save_tracked(Unacked::Chat(from), |ticket| Save::Chat {
                    id,
                    text,
                    ticket,
                });
                self.schedule_mining(now);
                return;
            }
            Command::Hist(n) => Reply::hist(&self.history, n, true),
            Command::Peers => Reply::Peers {
                peers: self.peers.rows(now),
                dialing: self.book.rows(now),
                resolving: self.book.name_rows(now),
            },
            Command::Status => Reply::Status(self.status(now)),
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
        };
        self.reply(from, reply);
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
        }
    }
}
