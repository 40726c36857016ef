//! Chats from control clients that wait for a stage (`node chat --wait
//! mined|sent`): each is answered when its chat reaches that stage, with
//! its index and digest. `mined`: a copy of it is in the history; `sent`:
//! an archive holding that copy was handed to at least one peer's
//! connection. A chat displaced by a switch waits until it is mined again.

use super::Node;

/// Chats awaited at once, at most: each control client has one request in
/// flight, but one that went away leaves its watch behind; past this the
/// oldest gives way (its client, if still there, gives up at its bound).
const MAX_WATCHES: usize = 256;
use super::io::Origin;
use super::own::{OwnId, Place};
use super::report::{Placed, Reply};
use crate::command::Stage;

/// A chat awaited at a stage.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watch {
    /// Our chat.
    id: OwnId,
    /// Who waits.
    origin: Origin,
    /// For what.
    stage: Stage,
    /// An archive holding it went to a peer (for [`Stage::Sent`]).
    sent: bool,
}

/// Bytes in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Node {
    /// `origin` waits for our chat `id` to reach `stage`.
    pub(super) fn watch(&mut self, id: OwnId, origin: Origin, stage: Stage) {
        if self.watches.len() >= MAX_WATCHES {
            self.watches.remove(0);
        }
        self.watches.push(Watch {
            id,
            origin,
            stage,
            sent: false,
        });
    }

    /// An archive of the history's first `len` chats went to a peer.
    pub(super) fn watched_sent(&mut self, len: usize) {
        for watch in &mut self.watches {
            if let Some(Place::InHistory(index)) = self.own.all().get(watch.id).map(|c| c.place)
                && index < len
            {
                watch.sent = true;
            }
        }
    }

    /// Answers the watches whose chat reached its stage.
    pub(super) fn check_watches(&mut self) {
        if self.watches.is_empty() {
            return;
        }
        for watch in std::mem::take(&mut self.watches) {
            match self.reached(&watch) {
                Some(reply) => self.reply(watch.origin, reply),
                None => self.watches.push(watch),
            }
        }
    }

    fn reached(&self, watch: &Watch) -> Option<Reply> {
        let Place::InHistory(index) = self.own.all().get(watch.id)?.place else {
            return None;
        };
        let placed = Placed {
            index,
            digest: hex(self.history.chat(index)?.digest()),
            pending: self.own.pending(),
        };
        match watch.stage {
            Stage::Saved | Stage::Mined => Some(Reply::Mined(placed)),
            Stage::Sent => watch.sent.then_some(Reply::Sent(placed)),
        }
    }
}
