use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use crate::{CHAT_OVERHEAD, Chat, ChatRef, DIGEST_LEN, MessageType, WINDOW_CHATS};

/// Chats per chunk of a [`History`]: about 300 KB of real chats (73 bytes
/// on average), so that the copy made when a shared last chunk grows is
/// cheap, and a history of 10,000,000 chats is 2,442 chunks.
pub const CHUNK_CHATS: usize = 4096;

/// Chats before a chat that its window holds (PROTOCOL.md: the window of
/// chat k is chats `max(0, k-19) ..= k`).
const CONTEXT_CHATS: usize = WINDOW_CHATS - 1;

/// A chat history laid out for hashing and for sharing: the chats' wire
/// bytes in chunks of [`CHUNK_CHATS`] chats, each chunk behind an `Arc`.
///
/// - Each chunk but the first starts with a copy of the 19 chats before it,
///   so the window of any chat (it and the up to 19 chats before it) is one
///   contiguous slice ([`History::window`]): checking or mining a chat
///   hashes bytes in place. The copies cost 19 chats in 4,096 (0.5 %).
/// - Cloning a history clones the `Arc`s, not the bytes: a history sent to
///   a peer, written to disk, or extended by a peer's longer one shares its
///   chunks with ours. A chunk is copied only when a history that shares it
///   changes it (appending to or truncating a shared last chunk).
/// - Where each chat ends is kept as a `u32` per chat, so memory is the wire
///   size plus about 5 % (4 bytes of a 73-byte average chat).
///
/// Two histories are equal when they hold the same chats, however their
/// chunks are shared.
#[derive(Clone, Default)]
pub struct History {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
    /// Wire bytes of all chats (the body of an ArchiveResponse).
    wire_len: usize,
}

#[derive(Clone, Default, PartialEq, Eq)]
struct Chunk {
    /// The context chats (the up to 19 chats before this chunk's first),
    /// then this chunk's own chats, back to back in their wire form.
    bytes: Vec<u8>,
    /// Context chats at the start of `bytes`: 0 in the first chunk, 19 in
    /// every other.
    context: usize,
    /// Where each chat, context chats first, ends in `bytes`.
    ends: Vec<u32>,
}

impl Chunk {
    /// Offset in `bytes` of chat `local` (counting context chats).
    fn start(&self, local: usize) -> usize {
        if local == 0 {
            0
        } else {
            self.ends[local - 1] as usize
        }
    }

    /// Chats of this chunk, not counting its context.
    fn chats(&self) -> usize {
        self.ends.len() - self.context
    }

    /// This chunk's own chats' bytes (without the context).
    fn own(&self) -> &[u8] {
        &self.bytes[self.start(self.context)..]
    }

    /// `chat` must be one well-formed chat. Buffers grow by half when
    /// full, so a chunk being received holds at most 1.5 times its bytes.
    fn push(&mut self, chat: &[u8]) {
        if self.bytes.capacity() - self.bytes.len() < chat.len() {
            let more = chat.len().max(self.bytes.len() / 2).max(1024);
            self.bytes.reserve_exact(more);
        }
        if self.ends.capacity() == self.ends.len() {
            self.ends.reserve_exact((self.ends.len() / 2).max(32));
        }
        self.bytes.extend_from_slice(chat);
        let end = u32::try_from(self.bytes.len()).expect("a chunk is far below 4 GiB");
        self.ends.push(end);
    }

    /// Keeps the context and the first `chats` own chats.
    fn truncate(&mut self, chats: usize) {
        let local = self.context + chats;
        self.bytes.truncate(self.start(local));
        self.ends.truncate(local);
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * size_of::<u32>()
    }
}

/// Bytes that do not form one well-formed chat (the length byte does not
/// match the length): given to [`History::push_wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedChat {
    /// Bytes given.
    pub len: usize,
}

impl fmt::Display for MalformedChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes are not one whole chat", self.len)
    }
}

impl std::error::Error for MalformedChat {}

impl History {
    /// The empty history (valid, PROTOCOL.md).
    pub fn new() -> Self {
        History::default()
    }

    /// Number of chats.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the history holds no chat.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of all chats on the wire (an ArchiveResponse is 5 more).
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// The chunk holding chat `k` and `k`'s index within it, context
    /// chats counted.
    ///
    /// # Panics
    /// If `k >= self.len()`.
    fn locate(&self, k: usize) -> (&Chunk, usize) {
        assert!(k < self.len, "chat {k} of a history of {} chats", self.len);
        let chunk = &self.chunks[k / CHUNK_CHATS];
        (chunk, chunk.context + k % CHUNK_CHATS)
    }

    /// Chat `index`, or `None` past the end.
    pub fn chat(&self, index: usize) -> Option<ChatRef<'_>> {
        (index < self.len).then(|| {
            let (chunk, local) = self.locate(index);
            ChatRef::new(&chunk.bytes[chunk.start(local)..chunk.ends[local] as usize])
        })
    }

    /// The last chat, or `None` if the history is empty.
    pub fn last(&self) -> Option<ChatRef<'_>> {
        self.len.checked_sub(1).and_then(|i| self.chat(i))
    }

    /// The chats in order.
    pub fn iter(&self) -> impl Iterator<Item = ChatRef<'_>> + '_ {
        self.chunks.iter().flat_map(|chunk| {
            (chunk.context..chunk.ends.len()).map(|local| {
                ChatRef::new(&chunk.bytes[chunk.start(local)..chunk.ends[local] as usize])
            })
        })
    }

    /// The bytes hashed to check chat `k`: chats `max(0, k-19) ..= k`
    /// serialised back to back, without chat `k`'s own digest
    /// (PROTOCOL.md, "Validity of a history"). One slice, never a copy.
    ///
    /// # Panics
    /// If `k >= self.len()`.
    pub fn window(&self, k: usize) -> &[u8] {
        let (chunk, local) = self.locate(k);
        let start = chunk.start(local.saturating_sub(CONTEXT_CHATS));
        &chunk.bytes[start..chunk.ends[local] as usize - DIGEST_LEN]
    }

    /// The bytes that precede a chat appended now, within its window: the
    /// last up to 19 chats. Mining hashes these, then the new chat.
    pub fn tail_for_append(&self) -> &[u8] {
        match self.chunks.last() {
            None => &[],
            Some(chunk) => {
                let start = chunk.start(chunk.ends.len().saturating_sub(CONTEXT_CHATS));
                &chunk.bytes[start..]
            }
        }
    }

    /// Appends `chat`.
    pub fn push(&mut self, chat: &Chat) {
        let mut bytes = Vec::with_capacity(chat.encoded_len());
        chat.encode(&mut bytes);
        self.push_unchecked(&bytes);
    }

    /// Appends one chat given in its wire form `[u8 N][N bytes][code][digest]`.
    ///
    /// # Errors
    /// [`MalformedChat`] if `chat` is not exactly one chat long.
    pub fn push_wire(&mut self, chat: &[u8]) -> Result<(), MalformedChat> {
        match chat.first() {
            Some(&n) if chat.len() == CHAT_OVERHEAD + n as usize => {
                self.push_unchecked(chat);
                Ok(())
            }
            _ => Err(MalformedChat { len: chat.len() }),
        }
    }

    fn push_unchecked(&mut self, chat: &[u8]) {
        if self.len.is_multiple_of(CHUNK_CHATS) {
            self.open_chunk();
        }
        let last = self.chunks.last_mut().expect("a chunk is open");
        Arc::make_mut(last).push(chat);
        self.len += 1;
        self.wire_len += chat.len();
    }

    /// Starts a new chunk whose context is the last 19 chats, sized like
    /// the chunk before it; the full chunk before gives back what it
    /// reserved and did not use.
    fn open_chunk(&mut self) {
        let context = self.tail_for_append().to_vec();
        let context_chats = self.len.min(CONTEXT_CHATS);
        let mut reserve = context.len();
        if let Some(full) = self.chunks.last_mut() {
            reserve = full.bytes.len();
            if let Some(full) = Arc::get_mut(full) {
                full.bytes.shrink_to_fit();
                full.ends.shrink_to_fit();
            }
        }
        let mut bytes = Vec::with_capacity(reserve);
        let mut ends = Vec::with_capacity(if self.chunks.is_empty() {
            0
        } else {
            CONTEXT_CHATS + CHUNK_CHATS
        });
        // The context's ends, found by walking its self-delimiting chats.
        let mut at = 0;
        while at < context.len() {
            at += CHAT_OVERHEAD + context[at] as usize;
            ends.push(at as u32);
        }
        debug_assert_eq!(ends.len(), context_chats);
        bytes.extend_from_slice(&context);
        self.chunks.push(Arc::new(Chunk {
            bytes,
            context: context_chats,
            ends,
        }));
    }

    /// Appends the whole chats at the start of `bytes` (chats laid back to
    /// back, as in an ArchiveResponse after its count or in a file of
    /// them); returns how many bytes they took. Bytes after the last whole
    /// chat (a chat cut short) are left for the caller.
    pub fn extend_from_wire(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while let Some(&n) = bytes.get(at) {
            let end = at + CHAT_OVERHEAD + n as usize;
            if end > bytes.len() {
                break;
            }
            self.push_unchecked(&bytes[at..end]);
            at = end;
        }
        at
    }

    /// Appends chats `from..` of `other`.
    pub fn extend_from(&mut self, other: &History, from: usize) {
        for chat in other.iter().skip(from) {
            self.push_unchecked(chat.as_bytes());
        }
    }

    /// Keeps the first `len` chats (nothing changes if there are fewer).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.chunks.truncate(len.div_ceil(CHUNK_CHATS));
        let in_last = len % CHUNK_CHATS;
        if in_last != 0 {
            let last = self.chunks.last_mut().expect("len > 0");
            Arc::make_mut(last).truncate(in_last);
        }
        self.len = len;
        self.wire_len = self.chunks.iter().map(|c| c.own().len()).sum();
    }

    /// The first `len` chats (all, if there are fewer), sharing this
    /// history's chunks: only a partial last chunk is copied.
    pub fn prefix(&self, len: usize) -> History {
        let mut prefix = self.clone();
        prefix.truncate(len);
        prefix
    }

    /// Number of leading chats that are byte-identical in both histories.
    ///
    /// Chunks both histories share are skipped without a look; others are
    /// compared with `memcmp`. Chats are self-delimiting, so where the
    /// bytes agree the chat boundaries agree too.
    pub fn common_prefix_len(&self, other: &History) -> usize {
        let mut common = 0;
        for (a, b) in self.chunks.iter().zip(&other.chunks) {
            if Arc::ptr_eq(a, b) {
                common += a.chats();
                continue;
            }
            let agree = common_byte_prefix(a.own(), b.own());
            let shorter = if a.chats() <= b.chats() { a } else { b };
            let base = shorter.start(shorter.context);
            let whole = shorter.ends[shorter.context..]
                .partition_point(|&end| end as usize - base <= agree);
            common += whole;
            if whole < CHUNK_CHATS {
                break;
            }
        }
        common
    }

    /// Bytes of an ArchiveResponse carrying this history.
    pub fn archive_len(&self) -> usize {
        5 + self.wire_len
    }

    /// The first 5 bytes of an ArchiveResponse carrying this history: the
    /// type byte and the chat count (u32, big-endian). The chats'
    /// [`segments`](Self::segments) follow.
    ///
    /// # Panics
    /// If the history holds more than `u32::MAX` chats, which no message
    /// can carry.
    pub fn archive_header(&self) -> [u8; 5] {
        let count = u32::try_from(self.len).expect("at most u32::MAX chats in a message");
        let mut header = [MessageType::ArchiveResponse as u8, 0, 0, 0, 0];
        header[1..].copy_from_slice(&count.to_be_bytes());
        header
    }

    /// Appends an ArchiveResponse carrying this history to `out` (a copy;
    /// to send one without copying, write [`archive_header`](Self::archive_header)
    /// and then the [`segments`](Self::segments)).
    pub fn encode_archive(&self, out: &mut Vec<u8>) {
        out.reserve(self.archive_len());
        out.extend_from_slice(&self.archive_header());
        for segment in self.segments() {
            out.extend_from_slice(segment);
        }
    }

    /// The chats' wire bytes, back to back, as one slice per chunk: what
    /// follows the header of an ArchiveResponse, or fills a file of chats.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.segments_from(0)
    }

    /// The wire bytes of chats `from..`, as slices (see
    /// [`segments`](Self::segments)); nothing if `from >= len()`.
    pub fn segments_from(&self, from: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let first = from / CHUNK_CHATS;
        self.chunks
            .iter()
            .enumerate()
            .skip(first)
            .filter(move |_| from < self.len)
            .map(move |(c, chunk)| {
                let local = if c == first {
                    chunk.context + from % CHUNK_CHATS
                } else {
                    chunk.context
                };
                &chunk.bytes[chunk.start(local)..]
            })
    }

    /// Offset of chat `k` in the chats' wire bytes (0 for the first chat,
    /// [`wire_len`](Self::wire_len) for `k == len()`).
    ///
    /// # Panics
    /// If `k > self.len()`.
    pub fn wire_offset(&self, k: usize) -> usize {
        assert!(k <= self.len, "chat {k} of {}", self.len);
        if k == self.len {
            return self.wire_len;
        }
        let c = k / CHUNK_CHATS;
        let before: usize = self.chunks[..c].iter().map(|c| c.own().len()).sum();
        let chunk = &self.chunks[c];
        before + chunk.start(chunk.context + k % CHUNK_CHATS) - chunk.start(chunk.context)
    }

    /// Byte range of chat `k` in the chats' wire bytes (see
    /// [`wire_offset`](Self::wire_offset)); in an ArchiveResponse, 5 bytes
    /// later.
    ///
    /// # Panics
    /// If `k >= self.len()`.
    pub fn chat_range(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.wire_offset(k);
        start..start + self.chat(k).expect("k < len").as_bytes().len()
    }

    /// Trades every full chunk for an equal one in `pool`, registering the
    /// new ones: histories received apart hold their common chunks once.
    pub fn share_chunks(&mut self, pool: &mut ChunkPool) {
        let full = self.len / CHUNK_CHATS;
        for (index, chunk) in self.chunks.iter_mut().take(full).enumerate() {
            *chunk = pool.share(index, chunk);
        }
    }

    /// Like [`share_chunks`](Self::share_chunks) for the last chunk only,
    /// if it is full: call it after each push.
    pub fn share_last_chunk(&mut self, pool: &mut ChunkPool) {
        if self.len > 0 && self.len.is_multiple_of(CHUNK_CHATS) {
            let index = self.chunks.len() - 1;
            let last = &mut self.chunks[index];
            *last = pool.share(index, last);
        }
    }

    /// Heap memory this history holds, in bytes, counting shared chunks in
    /// full.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.heap_bytes()).sum::<usize>()
            + self.chunks.capacity() * size_of::<Arc<Chunk>>()
    }
}

/// Equal chunks of histories built apart, found so that they are held
/// once: the same archive received on several connections at once, or a
/// fork received while its twin is being received elsewhere.
///
/// Keyed by a full chunk's place and its last chat's digest (which, through
/// every window before it, commits to every chat before); a chunk is shared
/// only when its bytes are equal too. Holds no chunk alive: entries whose
/// chunks are gone are swept as the pool grows.
#[derive(Debug, Default)]
pub struct ChunkPool {
    chunks: HashMap<(usize, [u8; DIGEST_LEN]), Weak<Chunk>>,
    /// Entries after the last sweep: the next comes when there are twice as
    /// many.
    swept_at: usize,
}

impl ChunkPool {
    /// An empty pool.
    pub fn new() -> Self {
        ChunkPool::default()
    }

    /// Entries, live or not yet swept.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the pool has no entry.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The pool's chunk equal to `chunk` (number `index`), registering
    /// `chunk` if there is none.
    fn share(&mut self, index: usize, chunk: &Arc<Chunk>) -> Arc<Chunk> {
        let last = chunk.ends.len() - 1;
        let key = (
            index,
            last_digest(&chunk.bytes[..chunk.ends[last] as usize]),
        );
        if let Some(known) = self.chunks.get(&key).and_then(Weak::upgrade)
            && known == *chunk
        {
            return known;
        }
        if self.chunks.len() >= 2 * self.swept_at + 64 {
            self.chunks.retain(|_, weak| weak.strong_count() > 0);
            self.swept_at = self.chunks.len();
        }
        self.chunks.insert(key, Arc::downgrade(chunk));
        chunk.clone()
    }
}

/// The digest field of the chat that ends `bytes`.
fn last_digest(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    bytes[bytes.len() - DIGEST_LEN..]
        .try_into()
        .expect("16 bytes")
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

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.common_prefix_len(other) == self.len
    }
}

impl Eq for History {}

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

    /// The chats' bytes, back to back, rebuilt one chat at a time.
    fn flat(history: &History) -> Vec<u8> {
        history.iter().flat_map(|c| c.as_bytes().to_vec()).collect()
    }

    #[test]
    fn window_covers_up_to_twenty_chats_without_the_last_digest() {
        let history = sample(2 * CHUNK_CHATS + 30);
        let ks = (0..30)
            .chain(CHUNK_CHATS - 25..CHUNK_CHATS + 25)
            .chain(2 * CHUNK_CHATS..history.len());
        for k in ks {
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
        for n in [0, 5, 25, CHUNK_CHATS - 1, CHUNK_CHATS, CHUNK_CHATS + 3] {
            let mut history = sample(n);
            let tail = history.tail_for_append().to_vec();
            history.push(&chat("new", 0xee));
            let window = history.window(n);
            assert!(window.starts_with(&tail), "{n} chats");
            assert_eq!(window.len(), tail.len() + 1 + 3 + 16, "{n} chats");
        }
    }

    #[test]
    fn truncate_prefix_and_extend_round_trip_across_chunks() {
        let full = sample(3 * CHUNK_CHATS + 10);
        for cut in [0, 13, CHUNK_CHATS, CHUNK_CHATS + 1, 3 * CHUNK_CHATS + 9] {
            let mut part = full.clone();
            part.truncate(cut);
            assert_eq!(part.len(), cut);
            assert_eq!(part, full.prefix(cut));
            assert_eq!(part.common_prefix_len(&full), cut);
            assert_eq!(part.wire_len(), full.wire_offset(cut));
            part.extend_from(&full, cut);
            assert_eq!(part, full);
            assert_eq!(flat(&part), flat(&full));
        }
    }

    #[test]
    fn a_shared_chunk_is_copied_before_it_changes() {
        let mut a = sample(CHUNK_CHATS + 5);
        let b = a.clone();
        a.push(&chat("only in a", 1));
        a.truncate(3);
        assert_eq!(b, sample(CHUNK_CHATS + 5));
        assert_eq!(a, sample(3));
    }

    #[test]
    fn common_prefix_stops_at_first_differing_chat() {
        let a = sample(CHUNK_CHATS + 50);
        for at in [31, CHUNK_CHATS - 1, CHUNK_CHATS, CHUNK_CHATS + 7] {
            let mut b = a.prefix(at);
            b.push(&chat("different", 1));
            assert_eq!(a.common_prefix_len(&b), at);
            assert_eq!(b.common_prefix_len(&a), at);
        }
        assert_eq!(a.common_prefix_len(&History::new()), 0);
        // Equal chats in separate chunks (not shared) compare equal.
        let copy: History = a.iter().map(|c| c.to_chat()).collect();
        assert_eq!(a.common_prefix_len(&copy), a.len());
    }

    #[test]
    fn histories_built_apart_share_equal_full_chunks_through_a_pool() {
        let mut pool = ChunkPool::new();
        let a = sample(2 * CHUNK_CHATS + 1);
        let mut b = History::new();
        let mut c = History::new();
        for chat in a.iter() {
            b.push_wire(chat.as_bytes()).unwrap();
            b.share_last_chunk(&mut pool);
            c.push_wire(chat.as_bytes()).unwrap();
            c.share_last_chunk(&mut pool);
        }
        assert_eq!(b, a);
        assert_eq!(c, a);
        for k in 0..2 {
            assert!(Arc::ptr_eq(&b.chunks[k], &c.chunks[k]), "chunk {k}");
        }
        assert!(!Arc::ptr_eq(&b.chunks[2], &c.chunks[2]), "not full");
        // A different chunk under the same key is not shared.
        let mut d = a.prefix(CHUNK_CHATS - 1);
        d.push(&Chat::new("other", [0; 16], *a.chat(CHUNK_CHATS - 1).unwrap().digest()).unwrap());
        d.share_chunks(&mut pool);
        assert!(!Arc::ptr_eq(&d.chunks[0], &b.chunks[0]));
        drop((b, c, d));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn segments_and_offsets_give_the_wire_bytes() {
        let history = sample(2 * CHUNK_CHATS + 3);
        let bytes = flat(&history);
        assert_eq!(history.segments().collect::<Vec<_>>().concat(), bytes);
        assert_eq!(history.wire_len(), bytes.len());
        for k in [0, 1, CHUNK_CHATS, 2 * CHUNK_CHATS + 2, history.len()] {
            let at = history.wire_offset(k);
            assert_eq!(
                history.segments_from(k).collect::<Vec<_>>().concat(),
                bytes[at..]
            );
        }
        let mut archive = Vec::new();
        history.encode_archive(&mut archive);
        assert_eq!(archive.len(), history.archive_len());
        assert_eq!(&archive[5..], &bytes[..]);
    }

    #[test]
    fn extend_from_wire_takes_whole_chats_only() {
        let history = sample(5);
        let bytes = flat(&history);
        let mut parsed = History::new();
        assert_eq!(parsed.extend_from_wire(&bytes), bytes.len());
        assert_eq!(parsed, history);
        let mut cut = History::new();
        let taken = cut.extend_from_wire(&bytes[..bytes.len() - 1]);
        assert_eq!(cut.len(), 4);
        assert_eq!(taken, history.wire_offset(4));
        assert_eq!(
            History::new().push_wire(&bytes[..3]),
            Err(MalformedChat { len: 3 })
        );
    }
}
