//! The channel into the event loop: threads (the prompt, mining,
//! validation, the store) post [`Mail`] and wake the loop through its
//! `mio::Waker`; the loop takes it all at the start of each round.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryIter};
use log::warn;
use mio::Waker;

use crate::intake::Verified;
use crate::protocol::Event;

/// What a thread tells the event loop.
#[derive(Debug)]
pub enum Mail {
    /// An event for the state machine (a command, a mining result, a save
    /// made durable).
    Event(Event),
    /// A batch of an incoming archive's chats was checked (for the
    /// connection's intake, not the state machine).
    Verified(Verified),
    /// A line from the prompt that is not a command: said back to the user.
    Refused(String),
    /// The prompt's input ended (stdin closed, not a terminal): the node
    /// goes on without a prompt.
    InputEnded,
    /// The prompt's terminal is gone (hung up): stop, as on SIGHUP.
    Hangup,
}

/// The loop's end: takes the mail.
pub struct Inbox {
    rx: Receiver<Mail>,
}

/// A thread's end: posts mail and wakes the loop. Cloned into every thread.
#[derive(Clone)]
pub struct Mailer {
    tx: Sender<Mail>,
    waker: Arc<Waker>,
}

/// A channel whose posts wake `waker`'s poll.
pub fn channel(waker: Arc<Waker>) -> (Mailer, Inbox) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (Mailer { tx, waker }, Inbox { rx })
}

impl Inbox {
    /// The mail posted since the last call, without waiting.
    pub fn drain(&self) -> TryIter<'_, Mail> {
        self.rx.try_iter()
    }
}

impl Mailer {
    /// Posts `mail`; false once the event loop is gone.
    pub fn post(&self, mail: Mail) -> bool {
        if self.tx.send(mail).is_err() {
            return false;
        }
        if let Err(e) = self.waker.wake() {
            warn!("waking the event loop failed: {e}");
        }
        true
    }
}
