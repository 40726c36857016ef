//! What the node does with a command from its prompt or a control client
//! (`chat`, `hist`, `peers`, `status`, `help`, `quit`), and the `status`
//! it answers with.

use std::time::Instant;

use super::io::{Action, Origin, Save};
use super::report::{Reply, Status};
use super::{Node, Unacked};
use crate::command::{self, Command};

impl Node {
    pub(super) fn on_command(&mut self, now: Instant, from: Origin, command: Command) {
        let reply = match command {
            Command::Chat(text) => {
                let id = self.own.queue(text.clone());
                self.save_tracked(Unacked::Chat(from), |ticket| Save::Chat {
                    id,
                    text,
                    ticket,
                });
                self.schedule_mining(now);
                return;
            }
            Command::Hist { n, before } => Reply::hist(&self.history, n, before, true),
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
                self.outbox.push_back(Action::Shutdown);
                return;
            }
        };
        self.reply(from, reply);
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
