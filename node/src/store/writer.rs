//! The store thread: every write and sync of the data directory, off the
//! event loop, with group commit: the saves that arrive while a commit is
//! being synced share the next one (one own-chats file, the history from
//! the earliest chat any of them changed, one sync each).

use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::Sender;
use wire::History;

use super::{DataDir, chat_line, copy_line};
use crate::inbox::{Mail, Mailer};
use crate::protocol::{BanRow, Event, Save, Saved};

/// The handle of the store thread.
pub struct StoreThread {
    saves: Option<Sender<Save>>,
    thread: Option<JoinHandle<()>>,
}

/// What one commit writes.
#[derive(Default)]
struct Commit {
    /// Own-chat records to append.
    own: String,
    history: Option<(History, usize)>,
    /// The bans as they stand last.
    bans: Option<Vec<BanRow>>,
    tickets: Vec<u64>,
}

impl Commit {
    fn add(&mut self, save: Save) {
        match save {
            Save::Chat { id, text, ticket } => {
                self.own.push_str(&chat_line(id, &text));
                self.tickets.push(ticket);
            }
            Save::Copy { id, digest, ticket } => {
                self.own.push_str(&copy_line(id, &digest));
                self.tickets.push(ticket);
            }
            Save::Bans(rows) => self.bans = Some(rows),
            Save::History { history, from } => {
                let from = self.history.as_ref().map_or(from, |(_, f)| from.min(*f));
                self.history = Some((history, from));
            }
        }
    }

    /// Own chats first: a mined copy is recorded before its chat is
    /// written (see `protocol/mining.rs`).
    fn write(&self, dir: &mut DataDir) -> Result<(), String> {
        if !self.own.is_empty() {
            dir.write_own(&self.own)
                .map_err(|e| format!("writing own chats in {}: {e}", dir.path().display()))?;
        }
        if let Some((history, from)) = &self.history {
            dir.write_history(history, *from)
                .map_err(|e| format!("writing the history in {}: {e}", dir.path().display()))?;
        }
        if let Some(rows) = &self.bans {
            dir.write_bans(rows)
                .map_err(|e| format!("writing the bans in {}: {e}", dir.path().display()))?;
        }
        Ok(())
    }
}

impl StoreThread {
    /// Starts the thread, which owns `dir` from now on; acknowledgements
    /// and failures go to `mailer` as [`Event::Saved`].
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn spawn(mut dir: DataDir, mailer: Mailer) -> StoreThread {
        let (saves, rx) = crossbeam_channel::unbounded::<Save>();
        let thread = thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut commit = Commit::default();
                    commit.add(first);
                    for save in rx.try_iter() {
                        commit.add(save);
                    }
                    let started = Instant::now();
                    let outcome = commit.write(&mut dir);
                    let saved = Saved {
                        tickets: commit.tickets,
                        stored: commit.history.is_some().then_some(dir.stored),
                        outcome,
                        elapsed: started.elapsed(),
                    };
                    // After the loop has stopped nobody listens; the writes
                    // are done all the same.
                    mailer.post(Mail::Event(Event::Saved(saved)));
                }
            })
            .expect("spawning the store thread");
        StoreThread {
            saves: Some(saves),
            thread: Some(thread),
        }
    }

    /// Queues a save.
    pub fn save(&self, save: Save) {
        if let Some(saves) = &self.saves {
            let _ = saves.send(save);
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn finish(mut self) {
        self.saves = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
