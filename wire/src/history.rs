use std::fmt;
use std::ops::Range;

use crate::{CHAT_OVERHEAD, Chat, ChatRef, DIGEST_LEN, WINDOW_CHATS};

/// A chat history laid out for hashing: the chats' wire bytes back to back
/// in one buffer, plus the offset where each chat ends.
///
/// The window of any chat (it and the up to 19 chats before it) is then one
/// contiguous slice ([`History::window`]), so checking or mining a chat
/// hashes bytes in place; appending is a copy of the new chat, truncating is
/// O(1), and encoding an ArchiveResponse is one `memcpy`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct History {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    /// Parses chats laid back to back (the body of an ArchiveResponse after
    /// its count, or a file of them). Bytes after the last whole chat (a
    /// chat cut short) are dropped; returns the history and how many bytes
    /// were dropped.
    pub fn from_whole_chats(mut bytes: Vec<u8>) -> (Self, usize) {
        let mut ends = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = at + CHAT_OVERHEAD + bytes[at] as usize;
            if end > bytes.len() {
                break;
            }
            ends.push(end);
            at = end;
        }
        let dropped = bytes.len() - at;
        bytes.truncate(at);
        (History { bytes, ends }, dropped)
    }

    /// Number of chats.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All chats' wire bytes, back to back.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Byte range of chat `index` within [`as_bytes`](Self::as_bytes).
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn chat_range(&self, index: usize) -> Range<usize> {
        self.start_of(index)..self.ends[index]
    }

    fn start_of(&self, index: usize) -> usize {
        if index == 0 { 0 } else { self.ends[index - 1] }
    }

    pub fn chat(&self, index: usize) -> Option<ChatRef<'_>> {
        (index < self.len()).then(|| ChatRef::new(&self.bytes[self.chat_range(index)]))
    }

    pub fn last(&self) -> Option<ChatRef<'_>> {
        self.len().checked_sub(1).and_then(|i| self.chat(i))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = ChatRef<'_>> + '_ {
        (0..self.len()).map(|i| ChatRef::new(&self.bytes[self.chat_range(i)]))
    }

    /// The bytes hashed to check chat `k`: chats `max(0, k-19) ..= k`
    /// serialised back to back, without chat `k`'s own digest.
    ///
    /// # Panics
    /// If `k >= self.len()`.
    pub fn window(&self, k: usize) -> &[u8] {
        &self.bytes[self.window_start(k)..self.ends[k] - DIGEST_LEN]
    }

    /// The bytes that precede a chat appended now, within its window: the
    /// last up to 19 chats. Mining hashes these, then the new chat.
    pub fn tail_for_append(&self) -> &[u8] {
        &self.bytes[self.window_start(self.len())..]
    }

    /// Offset of the first chat of the window of chat `k` (`k` may be
    /// `len()`, for a chat about to be appended).
    fn window_start(&self, k: usize) -> usize {
        self.start_of(k.saturating_sub(WINDOW_CHATS - 1))
    }

    pub fn push(&mut self, chat: &Chat) {
        chat.encode(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Appends chats `from..` of `other`.
    pub fn extend_from(&mut self, other: &History, from: usize) {
        if from >= other.len() {
            return;
        }
        let base = other.start_of(from);
        let shift = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes[base..]);
        self.ends
            .extend(other.ends[from..].iter().map(|&end| end - base + shift));
    }

    /// Keeps the first `len` chats.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.bytes.truncate(self.start_of(len));
            self.ends.truncate(len);
        }
    }

    /// Number of leading chats that are byte-identical in both histories.
    ///
    /// Chats are self-delimiting, so where the bytes agree the chat
    /// boundaries agree too: one byte comparison and a binary search.
    pub fn common_prefix_len(&self, other: &History) -> usize {
        let agree = common_byte_prefix(&self.bytes, &other.bytes);
        let shorter = if self.len() <= other.len() {
            self
        } else {
            other
        };
        shorter.ends.partition_point(|&end| end <= agree)
    }

    /// Bytes of an ArchiveResponse carrying this history.
    pub fn archive_len(&self) -> usize {
        5 + self.bytes.len()
    }

    /// Appends an ArchiveResponse carrying this history to `out`.
    pub fn encode_archive(&self, out: &mut Vec<u8>) {
        out.reserve(self.archive_len());
        out.push(crate::MessageType::ArchiveResponse as u8);
        out.extend_from_slice(&(self.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.bytes);
    }
}

/// Length of the longest common prefix of two byte strings, comparing
/// blocks with `==` (memcmp) before looking at single bytes.
fn common_byte_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + BLOCK <= n && a[at..at + BLOCK] == b[at..at + BLOCK] {
        at += BLOCK;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<Chat> for History {
    fn from_iter<I: IntoIterator<Item = Chat>>(iter: I) -> Self {
        let mut history = History::new();
        for chat in iter {
            history.push(&chat);
        }
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str, tag: u8) -> Chat {
        Chat::new(text, [tag; 16], [tag; 16]).unwrap()
    }

    fn sample(n: usize) -> History {
        (0..n).map(|i| chat(&"x".repeat(i % 7), i as u8)).collect()
    }

    #[test]
    fn window_covers_up_to_twenty_chats_without_the_last_digest() {
        let history = sample(30);
        for k in 0..30usize {
            let first = k.saturating_sub(19);
            let mut expected = Vec::new();
            for i in first..=k {
                expected.extend_from_slice(history.chat(i).unwrap().as_bytes());
            }
            expected.truncate(expected.len() - DIGEST_LEN);
            assert_eq!(history.window(k), &expected[..], "window of chat {k}");
        }
    }

    #[test]
    fn tail_for_append_is_the_window_prefix_of_the_next_chat() {
        let mut history = sample(25);
        let tail = history.tail_for_append().to_vec();
        history.push(&chat("new", 0xee));
        let window = history.window(25);
        assert!(window.starts_with(&tail));
        assert_eq!(window.len(), tail.len() + 1 + 3 + 16);
    }

    #[test]
    fn truncate_and_extend_round_trip() {
        let full = sample(40);
        let mut part = full.clone();
        part.truncate(13);
        assert_eq!(part.len(), 13);
        assert_eq!(part.common_prefix_len(&full), 13);
        part.extend_from(&full, 13);
        assert_eq!(part, full);
    }

    #[test]
    fn common_prefix_stops_at_first_differing_chat() {
        let a = sample(50);
        let mut b = a.clone();
        b.truncate(31);
        b.push(&chat("different", 1));
        assert_eq!(a.common_prefix_len(&b), 31);
        assert_eq!(b.common_prefix_len(&a), 31);
        assert_eq!(a.common_prefix_len(&History::new()), 0);
    }

    #[test]
    fn from_whole_chats_drops_a_cut_chat() {
        let history = sample(5);
        let bytes = history.as_bytes();
        assert_eq!(
            History::from_whole_chats(bytes.to_vec()),
            (history.clone(), 0)
        );
        let (cut, dropped) = History::from_whole_chats(bytes[..bytes.len() - 1].to_vec());
        assert_eq!(cut.len(), 4);
        assert_eq!(dropped, history.chat_range(4).len() - 1);
    }
}
