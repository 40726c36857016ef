//! This node's own chats: queued, mined, displaced and mined again.
//!
//! A chat typed at the prompt is kept until the end of the run (and on disk
//! across runs): "pending" until a mined copy of it is in the history. A
//! copy is known by its digest; a chat may have several copies (mined again
//! after a longer history displaced the first), and it is in the history
//! when any of them is. So a copy that comes back (a fork is undone) is not
//! mined a third time, and no chat is ever lost or doubled.

use std::collections::{HashMap, HashSet};

use wire::{DIGEST_LEN, History};

/// A chat's MD5 digest: names a mined copy.
pub type Digest = [u8; DIGEST_LEN];

/// A chat typed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnChat {
    /// Its text.
    pub text: Vec<u8>,
    /// Digests of every mined copy, oldest first.
    pub copies: Vec<Digest>,
    /// The first `durable` copies are on disk: only those may leave the
    /// node (a copy sent and then lost in a crash would be mined again, and
    /// the chat would be in the network twice).
    pub durable: usize,
    /// Where it is now.
    pub place: Place,
}

/// Where an own chat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// No copy of it is in the current history: to be mined.
    Pending,
    /// Index of the copy in the current history.
    InHistory(usize),
}

/// Every chat typed here, for the whole run.
#[derive(Debug, Default)]
pub struct OwnChats {
    chats: Vec<OwnChat>,
}

/// Index of an own chat; stable for the run (chats are never removed).
pub type OwnId = usize;

impl OwnChats {
    /// Rebuilds the table from stored records (text and copies) and finds
    /// where each one is in `history`.
    pub fn restore(records: Vec<(Vec<u8>, Vec<Digest>)>, history: &History) -> Self {
        let chats = records
            .into_iter()
            .map(|(text, copies)| OwnChat {
                text,
                durable: copies.len(),
                copies,
                place: Place::Pending,
            })
            .collect();
        let mut own = OwnChats { chats };
        own.reconcile(history, 0);
        own
    }

    /// Every own chat, oldest first.
    pub fn all(&self) -> &[OwnChat] {
        &self.chats
    }

    /// What a restart finds of them on disk: each chat's text and its copies
    /// known durable (the simulator restarts nodes from this).
    #[cfg(test)]
    pub fn durable_records(&self) -> Vec<(Vec<u8>, Vec<Digest>)> {
        self.chats
            .iter()
            .map(|c| (c.text.clone(), c.copies[..c.durable].to_vec()))
            .collect()
    }

    /// A chat typed now; pending.
    pub fn queue(&mut self, text: Vec<u8>) -> OwnId {
        self.chats.push(OwnChat {
            text,
            copies: Vec::new(),
            durable: 0,
            place: Place::Pending,
        });
        self.chats.len() - 1
    }

    /// The pending chats, oldest first.
    pub fn pending_ids(&self) -> impl Iterator<Item = OwnId> + '_ {
        self.chats
            .iter()
            .enumerate()
            .filter(|(_, c)| c.place == Place::Pending)
            .map(|(id, _)| id)
    }

    /// Chats not in the history.
    pub fn pending(&self) -> usize {
        self.chats
            .iter()
            .filter(|c| c.place == Place::Pending)
            .count()
    }

    /// A copy of chat `id` was mined and appended at `index`; returns the
    /// number of copies it has now.
    pub fn mined(&mut self, id: OwnId, digest: Digest, index: usize) -> usize {
        let chat = &mut self.chats[id];
        chat.copies.push(digest);
        chat.place = Place::InHistory(index);
        chat.copies.len()
    }

    /// The first `copies` copies of chat `id` are on disk.
    pub fn copies_durable(&mut self, id: OwnId, copies: usize) {
        let chat = &mut self.chats[id];
        chat.durable = chat.durable.max(copies);
    }

    /// The first index of `history` holding a copy of ours not yet on
    /// disk: what precedes it may be sent.
    pub fn first_undurable(&self, history: &History) -> Option<usize> {
        self.chats
            .iter()
            .filter_map(|c| match c.place {
                Place::InHistory(i) if c.durable < c.copies.len() => {
                    let digest = history.chat(i)?.digest();
                    (!c.copies[..c.durable].contains(digest)).then_some(i)
                }
                _ => None,
            })
            .min()
    }

    /// The history changed from chat `from` on: finds again every own chat
    /// that was pending or placed at `from` or later. Returns how many were
    /// placed before and are pending now (displaced).
    pub fn reconcile(&mut self, history: &History, from: usize) -> usize {
        let affected = |c: &OwnChat| match c.place {
            Place::Pending => !c.copies.is_empty(),
            Place::InHistory(i) => i >= from,
        };
        if !self.chats.iter().any(affected) {
            return 0;
        }
        let copies: HashSet<Digest> = self
            .chats
            .iter()
            .filter(|c| affected(c))
            .flat_map(|c| c.copies.iter().copied())
            .collect();
        let index = find_copies(history, from, &copies);
        let mut displaced = 0;
        for chat in self.chats.iter_mut().filter(|c| affected(c)) {
            let found = chat.copies.iter().find_map(|d| index.get(d).copied());
            if found.is_none() && matches!(chat.place, Place::InHistory(_)) {
                displaced += 1;
            }
            chat.place = found.map_or(Place::Pending, Place::InHistory);
        }
        displaced
    }
}

/// Where the chats of `history` from `from` on whose digest is one of
/// `copies` are: memory grows with our copies, not with the history (a
/// history of millions of chats adopted at once).
fn find_copies(history: &History, from: usize, copies: &HashSet<Digest>) -> HashMap<Digest, usize> {
    if copies.is_empty() {
        return HashMap::new();
    }
    (from..history.len())
        .filter_map(|i| {
            let digest = *history.chat(i).expect("in range").digest();
            copies.contains(&digest).then_some((digest, i))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Chat;

    fn chat(tag: u8) -> Chat {
        Chat::new(vec![b'a' + tag], [tag; 16], [tag; 16]).unwrap()
    }

    #[test]
    fn a_displaced_chat_is_pending_again_and_a_returning_copy_is_found() {
        let mut history: History = (0..3).map(chat).collect();
        let mut own = OwnChats::default();
        let id = own.queue(b"mine".to_vec());
        assert_eq!(own.pending_ids().collect::<Vec<_>>(), [id]);
        history.push(&chat(9));
        own.mined(id, [9; 16], 3);
        assert_eq!(own.pending(), 0);

        let mut other = history.clone();
        other.truncate(3);
        other.push(&chat(4));
        other.push(&chat(5));
        assert_eq!(own.reconcile(&other, 3), 1);
        assert_eq!(own.pending_ids().collect::<Vec<_>>(), [id]);

        // The first copy comes back in a longer history: found, not re-mined.
        let mut back = history.clone();
        back.push(&chat(6));
        assert_eq!(own.reconcile(&back, 3), 0);
        assert_eq!(own.all()[id].place, Place::InHistory(3));
    }

    #[test]
    fn restore_places_stored_copies() {
        let history: History = (0..5).map(chat).collect();
        let own = OwnChats::restore(
            vec![
                (b"x".to_vec(), vec![[2; 16]]),
                (b"y".to_vec(), vec![]),
                (b"z".to_vec(), vec![[7; 16]]),
            ],
            &history,
        );
        let places: Vec<Place> = own.all().iter().map(|c| c.place).collect();
        assert_eq!(
            places,
            [Place::InHistory(2), Place::Pending, Place::Pending]
        );
        assert_eq!(own.pending_ids().collect::<Vec<_>>(), [1, 2]);
    }
}
