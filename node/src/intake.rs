//! What comes in on a connection: bytes decoded into messages, and an
//! ArchiveResponse judged chat by chat while it arrives, so that a history
//! of millions of chats costs neither a second copy nor a pause.
//!
//! An incoming archive is compared with our history as it streams in
//! (bytes equal to ours are not stored again: the candidate shares our
//! chunks), chats past the common prefix are stored and checked in batches
//! on the validation thread as they arrive (the first invalid one ends the
//! storing at once, and the rest is skipped, at most `max_message` bytes of
//! it: past that the connection ends, told why), and what is held new and not
//! yet checked is bounded: past `max_unverified` bytes the connection is not
//! read until the checks catch up. Full chunks of new chats go through a
//! [`ChunkPool`], so the same archive arriving on several connections at
//! once (a node joining, asking all its peers) is held once. An archive shorter than our history
//! cannot win and is neither kept nor checked. The state machine is told
//! the verdict once the archive is whole ([`Archive`]).

use std::fmt;

use miner::InvalidChat;
use wire::{
    CHATS_HEADER_LEN, CHUNK_CHATS, ChunkPool, DIGEST_LEN, DecodeError, Frame, FrameDecoder,
    History, Message, RelayMessage,
};

use crate::protocol::{Archive, ConnId, Dialect, Tip};

/// New chats checked on the event loop when an archive ends (about 2 µs
/// each); more go to the validation thread.
const INLINE_CHATS: usize = 64;

/// A message that came in whole.
#[derive(Debug)]
pub enum Arrival {
    /// Any message but an ArchiveResponse.
    Message {
        /// The message.
        message: Message,
        /// Its bytes on the wire.
        wire_len: usize,
    },
    /// An extension message other than Chats.
    Relay {
        /// The message.
        message: RelayMessage,
    },
    /// An ArchiveResponse or an extension Chats message, judged.
    Archive {
        /// The verdict.
        archive: Archive,
        /// Its bytes on the wire.
        wire_len: usize,
    },
}

/// A batch of new chats to check off the event loop: chats `from..` of
/// `history` (those before are valid).
#[derive(Debug)]
pub struct VerifyJob {
    /// The connection it came on.
    pub conn: ConnId,
    /// Which archive of the connection.
    pub archive: u64,
    /// The candidate as received so far (shares its chunks).
    pub history: History,
    /// The first chat to check.
    pub from: usize,
}

impl VerifyJob {
    /// Checks the batch (on the validation thread).
    pub fn run(self) -> Verified {
        Verified {
            conn: self.conn,
            archive: self.archive,
            upto: self.history.len(),
            result: miner::validate_from(&self.history, self.from),
        }
    }
}

/// A checked batch, back from the validation thread.
#[derive(Debug)]
pub struct Verified {
    /// The connection it came on.
    pub conn: ConnId,
    /// Which archive of the connection.
    pub archive: u64,
    /// Chats before this index are checked.
    pub upto: usize,
    /// The first invalid chat, if any.
    pub result: Result<(), InvalidChat>,
}

/// Why a connection's stream cannot go on.
#[derive(Debug)]
pub enum IntakeError {
    /// The bytes do not decode.
    Decode(DecodeError),
    /// An archive known invalid goes on past `max` bytes after its first
    /// invalid chat: a buggy honest peer's archive ends well before, and
    /// nothing else would bound the rest (a count claims up to 4 G chats,
    /// a terabyte).
    InvalidGoesOn {
        /// Its first invalid chat; `None` for an extension Chats message
        /// extending a prefix we do not hold (skipped whole).
        invalid: Option<InvalidChat>,
        /// The bytes skipped after it that were allowed (`--max-message`).
        max: usize,
    },
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntakeError::Decode(error) => error.fmt(f),
            IntakeError::InvalidGoesOn {
                invalid: Some(invalid),
                max,
            } => write!(
                f,
                "history ignored: {invalid}; its archive goes on for more than {max} bytes after it"
            ),
            IntakeError::InvalidGoesOn { invalid: None, max } => write!(
                f,
                "chats ignored: they extend a prefix we do not hold, and go on for more than {max} bytes"
            ),
        }
    }
}

impl From<DecodeError> for IntakeError {
    fn from(error: DecodeError) -> IntakeError {
        IntakeError::Decode(error)
    }
}

/// The decoding state of one connection's incoming stream.
#[derive(Debug)]
pub struct Intake {
    conn: ConnId,
    frames: FrameDecoder,
    incoming: Option<Incoming>,
    max_message: usize,
    max_unverified: usize,
    archives: u64,
    /// On a relay connection, the last valid history it gave, while the
    /// state machine may not have taken it yet: Chats pushed back to back
    /// extend it, not our history (`None` on a standard connection).
    last_valid: Option<History>,
    relay: bool,
}

/// An ArchiveResponse being received.
#[derive(Debug)]
struct Incoming {
    id: u64,
    count: usize,
    received: usize,
    /// Stream offset of its first byte.
    start: u64,
    /// Our history when it began: what it is compared with.
    base: History,
    digest: [u8; DIGEST_LEN],
    progress: Progress,
    /// Every chat has come; the verdict waits for the last checks.
    ended: bool,
    /// Bytes of chats skipped since it was found invalid.
    skipped_invalid: usize,
}

#[derive(Debug)]
enum Progress {
    /// Every chat so far is the same as `base`'s.
    Matching,
    /// It differs from `base` from some chat on: `history` holds `base`'s
    /// chats before it (shared) and the new ones; chats before `verified`
    /// are valid; a batch up to `checking` is on the validation thread.
    New {
        history: History,
        verified: usize,
        unverified_bytes: usize,
        checking: Option<usize>,
    },
    /// Not kept (see [`Skip`]).
    Skipping(Skip),
}

/// Why the chats of an incoming history are skipped.
#[derive(Debug, Clone, Copy)]
enum Skip {
    /// Shorter than `base`: it cannot win.
    Shorter,
    /// This chat is invalid.
    Invalid(InvalidChat),
    /// An extension Chats message extending a prefix we do not hold.
    Unrooted,
}

impl Skip {
    /// Skipped bytes are bounded (by `max_message`): what follows an
    /// invalid chat, or chats we cannot place.
    fn is_bounded(self) -> Option<Option<InvalidChat>> {
        match self {
            Skip::Shorter => None,
            Skip::Invalid(invalid) => Some(Some(invalid)),
            Skip::Unrooted => Some(None),
        }
    }
}

impl Intake {
    /// The intake of connection `conn`: messages other than archives of at
    /// most `max_message` bytes; at most `max_unverified` bytes of an
    /// archive's new chats held unchecked.
    pub fn new(
        conn: ConnId,
        dialect: Dialect,
        max_message: usize,
        max_unverified: usize,
    ) -> Intake {
        let frames = match dialect {
            Dialect::Standard => FrameDecoder::with_limits(max_message, usize::MAX),
            Dialect::Relay => FrameDecoder::relay(max_message, usize::MAX),
        };
        Intake {
            conn,
            frames,
            incoming: None,
            max_message,
            max_unverified,
            archives: 0,
            last_valid: None,
            relay: dialect == Dialect::Relay,
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.frames.position()
    }

    /// True between messages.
    pub fn is_idle(&self) -> bool {
        self.frames.is_idle() && self.incoming.is_none()
    }

    /// Bytes held for a message in progress and not yet checked: the
    /// decoder's, and an archive's new chats waiting to be checked.
    pub fn unverified_bytes(&self) -> usize {
        let archive = match &self.incoming {
            Some(Incoming {
                progress: Progress::New {
                    unverified_bytes, ..
                },
                ..
            }) => *unverified_bytes,
            _ => 0,
        };
        self.frames.held_bytes() + archive
    }

    /// Whether no more input may be taken until checks come back: the
    /// new chats waiting to be checked reached the limit, or the archive
    /// is whole and waits for its verdict.
    pub fn is_blocked(&self) -> bool {
        match &self.incoming {
            Some(Incoming {
                ended,
                progress: Progress::New {
                    unverified_bytes, ..
                },
                ..
            }) => *ended || *unverified_bytes >= self.max_unverified,
            _ => false,
        }
    }

    /// Decodes `input` (advancing it), comparing an archive with `ours`,
    /// until it is used up, `budget` arrivals are in `out`, or the intake
    /// is blocked (see [`is_blocked`](Self::is_blocked)): the rest of
    /// `input` is for a later call.
    ///
    /// # Errors
    /// The stream cannot go on: the decoder's error, or an archive known
    /// invalid goes on for more than `max_message` bytes.
    pub fn push(
        &mut self,
        input: &mut &[u8],
        ours: &History,
        pool: &mut ChunkPool,
        budget: usize,
        out: &mut Vec<Arrival>,
    ) -> Result<(), IntakeError> {
        while out.len() < budget && !self.is_blocked() {
            let frame = match self.frames.next(input)? {
                None => return Ok(()),
                Some(frame) => frame,
            };
            match frame {
                Frame::Message(message) => out.push(Arrival::Message {
                    wire_len: message.encoded_len(),
                    message,
                }),
                Frame::Relay(message) => out.push(Arrival::Relay { message }),
                Frame::ArchiveStart { count } => {
                    let start = self.frames.position() - 5;
                    self.begin(ours, start, 0, [0; DIGEST_LEN], count);
                }
                Frame::ChatsStart { from, prev, count } => {
                    let start = self.frames.position() - CHATS_HEADER_LEN as u64;
                    self.begin(ours, start, from as usize, prev, count);
                }
                Frame::Chat(chat) => {
                    let incoming = self.incoming.as_mut().expect("ArchiveStart came first");
                    incoming.take(chat, pool);
                    if let Progress::Skipping(skip) = incoming.progress
                        && let Some(invalid) = skip.is_bounded()
                        && incoming.skipped_invalid > self.max_message
                    {
                        return Err(IntakeError::InvalidGoesOn {
                            invalid,
                            max: self.max_message,
                        });
                    }
                }
                Frame::ArchiveEnd => {
                    let position = self.frames.position();
                    let incoming = self.incoming.as_mut().expect("ArchiveStart came first");
                    incoming.ended = true;
                    incoming.check_inline();
                    if let Some(arrival) = self.finish(position) {
                        out.push(arrival);
                    }
                }
            }
        }
        Ok(())
    }

    /// An incoming history begins at stream offset `start`: `count` chats
    /// from index `from` on, its chat `from - 1` having digest `prev` (an
    /// ArchiveResponse: from 0, zeros). It extends our first `from` chats
    /// if they end with `prev`, or else those of the last valid history
    /// this connection gave (see `last_valid`); otherwise it is skipped.
    fn begin(
        &mut self,
        ours: &History,
        start: u64,
        from: usize,
        prev: [u8; DIGEST_LEN],
        count: u32,
    ) {
        let total = from + count as usize;
        let rooted = |h: &History| match from {
            0 => prev == [0; DIGEST_LEN],
            _ => h.chat(from - 1).is_some_and(|c| *c.digest() == prev),
        };
        let base = [Some(ours), self.last_valid.as_ref()]
            .into_iter()
            .flatten()
            .find(|h| rooted(h));
        let progress = match base {
            None => Progress::Skipping(Skip::Unrooted),
            Some(base) if total < base.len() => Progress::Skipping(Skip::Shorter),
            Some(_) => Progress::Matching,
        };
        self.archives += 1;
        self.incoming = Some(Incoming {
            id: self.archives,
            count: total,
            received: from,
            start,
            base: base.unwrap_or(ours).clone(),
            digest: prev,
            progress,
            ended: false,
            skipped_invalid: 0,
        });
    }

    /// A batch of new chats to check on the validation thread, if one is
    /// due: a chunk of them is whole, the archive ended, or the unchecked
    /// bytes reached the limit.
    pub fn job(&mut self) -> Option<VerifyJob> {
        let incoming = self.incoming.as_mut()?;
        let Progress::New {
            history,
            verified,
            unverified_bytes,
            checking,
        } = &mut incoming.progress
        else {
            return None;
        };
        let due = checking.is_none()
            && history.len() > *verified
            && (incoming.ended
                || history.len().is_multiple_of(CHUNK_CHATS)
                || *unverified_bytes >= self.max_unverified);
        if !due {
            return None;
        }
        *checking = Some(history.len());
        Some(VerifyJob {
            conn: self.conn,
            archive: incoming.id,
            history: history.clone(),
            from: *verified,
        })
    }

    /// A batch came back checked; the archive's verdict if that was the
    /// last thing it waited for.
    pub fn verified(&mut self, verified: Verified) -> Option<Arrival> {
        let incoming = self.incoming.as_mut()?;
        if incoming.id != verified.archive {
            return None;
        }
        match verified.result {
            Err(invalid) => incoming.found_invalid(invalid),
            Ok(()) => {
                if let Progress::New {
                    history,
                    verified: done,
                    unverified_bytes,
                    checking,
                } = &mut incoming.progress
                {
                    *done = verified.upto;
                    *checking = None;
                    *unverified_bytes = history.wire_len() - history.wire_offset(*done);
                }
            }
        }
        let position = self.frames.position();
        self.finish(position)
    }

    /// The verdict of an archive that has ended, once nothing is left to
    /// check.
    fn finish(&mut self, position: u64) -> Option<Arrival> {
        let incoming = self.incoming.as_ref()?;
        if !incoming.ended {
            return None;
        }
        let archive = match &incoming.progress {
            Progress::New {
                history, verified, ..
            } if *verified == history.len() => Archive::Valid(history.clone()),
            Progress::New { .. } => return None,
            Progress::Matching => Archive::Valid(incoming.base.prefix(incoming.count)),
            Progress::Skipping(Skip::Shorter) => Archive::Shorter(Tip {
                len: incoming.count,
                digest: incoming.digest,
            }),
            Progress::Skipping(Skip::Invalid(invalid)) => Archive::Invalid(*invalid),
            Progress::Skipping(Skip::Unrooted) => Archive::Unrooted,
        };
        let wire_len = (position - incoming.start) as usize;
        self.incoming = None;
        if self.relay {
            self.last_valid = match &archive {
                Archive::Valid(history) => Some(history.clone()),
                _ => None,
            };
        }
        Some(Arrival::Archive { archive, wire_len })
    }
}

impl Incoming {
    /// Chat `received` of the archive, in its wire form.
    fn take(&mut self, chat: &[u8], pool: &mut ChunkPool) {
        let index = self.received;
        self.received += 1;
        if let Progress::Skipping(skip) = self.progress
            && skip.is_bounded().is_some()
        {
            self.skipped_invalid += chat.len();
        }
        self.digest
            .copy_from_slice(&chat[chat.len() - DIGEST_LEN..]);
        if let Progress::Matching = self.progress {
            if self.base.chat(index).is_some_and(|c| c.as_bytes() == chat) {
                return;
            }
            self.progress = Progress::New {
                history: self.base.prefix(index),
                verified: index,
                unverified_bytes: 0,
                checking: None,
            };
        }
        if let Progress::New {
            history,
            unverified_bytes,
            ..
        } = &mut self.progress
        {
            history
                .push_wire(chat)
                .expect("the frame decoder yields whole chats");
            history.share_last_chunk(pool);
            *unverified_bytes += chat.len();
        }
    }

    /// Chat `invalid.index` is invalid: the rest is skipped, and what came
    /// after it while it waited to be checked counts as skipped already
    /// (the bound on the rest is `max_message` from that chat on, not from
    /// the verdict).
    fn found_invalid(&mut self, invalid: InvalidChat) {
        if let Progress::New { history, .. } = &self.progress {
            let after = (invalid.index + 1).min(history.len());
            self.skipped_invalid = history.wire_len() - history.wire_offset(after);
        }
        self.progress = Progress::Skipping(Skip::Invalid(invalid));
    }

    /// At the end of an archive, checks a few new chats right away rather
    /// than on the validation thread.
    fn check_inline(&mut self) {
        if let Progress::New {
            history,
            verified,
            checking: None,
            ..
        } = &self.progress
            && history.len() - verified <= INLINE_CHATS
        {
            let result = miner::validate_from(history, *verified);
            let upto = history.len();
            self.progress = match result {
                Err(invalid) => Progress::Skipping(Skip::Invalid(invalid)),
                Ok(()) => Progress::New {
                    history: history.clone(),
                    verified: upto,
                    unverified_bytes: 0,
                    checking: None,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> History {
        crate::test_support::fixture("history-1k.bin")
    }

    fn wire_of(history: &History) -> Vec<u8> {
        let mut bytes = Vec::new();
        history.encode_archive(&mut bytes);
        bytes
    }

    /// Feeds `bytes` in pieces of `piece` bytes, running every job as soon
    /// as it is due; returns the arrivals and the most unchecked bytes held
    /// at any point.
    fn feed(
        intake: &mut Intake,
        ours: &History,
        bytes: &[u8],
        piece: usize,
    ) -> (Vec<Arrival>, usize) {
        let mut pool = ChunkPool::new();
        let mut out = Vec::new();
        let mut held = 0;
        let mut rest = bytes;
        while !rest.is_empty() || intake.is_blocked() {
            let mut input = &rest[..piece.min(rest.len())];
            let offered = input.len();
            intake
                .push(&mut input, ours, &mut pool, usize::MAX, &mut out)
                .expect("decodes");
            held = held.max(intake.unverified_bytes());
            while let Some(job) = intake.job() {
                out.extend(intake.verified(job.run()));
            }
            rest = &rest[offered - input.len()..];
        }
        (out, held)
    }

    fn archives(out: Vec<Arrival>) -> Vec<Archive> {
        out.into_iter()
            .filter_map(|a| match a {
                Arrival::Archive { archive, .. } => Some(archive),
                Arrival::Message { .. } | Arrival::Relay { .. } => None,
            })
            .collect()
    }

    /// Chats messages pushed back to back on a relay connection, each
    /// extending the one before: each is judged against what the one
    /// before gave, not our history (which the state machine has not yet
    /// changed); one whose prefix neither holds is skipped.
    #[test]
    fn chats_pushed_back_to_back_extend_each_other() {
        let full = fixture();
        let ours = full.prefix(997);
        let mut bytes = Vec::new();
        for from in 997..1000 {
            bytes.extend_from_slice(&crate::protocol::Payload::chats_header(
                &full.prefix(from + 1),
                from,
            ));
            bytes.extend_from_slice(full.chat(from).expect("in the fixture").as_bytes());
        }
        bytes.extend_from_slice(&wire::chats_header(5, &[7; DIGEST_LEN], 0));
        let mut intake = Intake::new(ConnId(1), Dialect::Relay, 1 << 20, 1 << 20);
        let (out, _) = feed(&mut intake, &ours, &bytes, 50);
        let lens: Vec<Option<usize>> = archives(out)
            .iter()
            .map(|a| match a {
                Archive::Valid(h) => Some(h.len()),
                _ => None,
            })
            .collect();
        assert_eq!(lens, [Some(998), Some(999), Some(1000), None]);
    }

    #[test]
    fn an_extension_shares_our_chats_and_a_copy_of_ours_is_ours() {
        let full = fixture();
        let ours = full.prefix(900);
        let mut intake = Intake::new(ConnId(1), Dialect::Standard, 1 << 20, 1 << 20);
        let (out, held) = feed(&mut intake, &ours, &wire_of(&full), 4096);
        let [Archive::Valid(candidate)] = &archives(out)[..] else {
            panic!("not one valid archive")
        };
        assert_eq!(candidate, &full);
        assert!(
            held <= full.wire_len() - ours.wire_len() + 512,
            "held {held}"
        );
        let (out, _) = feed(&mut intake, &ours, &wire_of(&ours), 7);
        assert!(matches!(&archives(out)[..], [Archive::Valid(h)] if h == &ours));
    }

    #[test]
    fn the_first_invalid_chat_ends_the_storing_and_the_stream_goes_on() {
        let full = fixture();
        let mut bytes = wire_of(&full);
        bytes[5 + full.chat_range(10).start + 1] ^= 1;
        bytes.push(0x01);
        // A limit smaller than the archive: it is checked in batches.
        let mut intake = Intake::new(ConnId(1), Dialect::Standard, 1 << 20, 2000);
        let (out, held) = feed(&mut intake, &History::new(), &bytes, 1000);
        assert!(held < 4000, "held {held}");
        assert!(matches!(
            &out[..],
            [
                Arrival::Archive {
                    archive: Archive::Invalid(InvalidChat { index: 10, .. }),
                    ..
                },
                Arrival::Message {
                    message: Message::PeerRequest,
                    wire_len: 1
                }
            ]
        ));
    }

    /// The rest of an archive after its first invalid chat is bounded by
    /// `max_message`, counted from that chat whenever the verdict comes
    /// (what waited unchecked for it counts), and an archive that ends
    /// within the bound keeps its connection.
    #[test]
    fn the_rest_of_an_invalid_archive_is_bounded_from_the_invalid_chat() {
        let full = fixture();
        let max = 5000;
        for (bad, goes_on) in [(10, true), (full.len() - 40, false)] {
            let mut bytes = wire_of(&full);
            bytes[5 + full.chat_range(bad).start + 1] ^= 1;
            let invalid_end = 5 + full.chat_range(bad).end;
            // Checked in batches, as large as the bound: the verdict comes
            // late.
            let mut intake = Intake::new(ConnId(1), Dialect::Standard, max, max);
            let mut pool = ChunkPool::new();
            let mut out = Vec::new();
            let mut taken = 0;
            let mut ended = None;
            while taken < bytes.len() && ended.is_none() {
                let mut input = &bytes[taken..(taken + 100).min(bytes.len())];
                let offered = input.len();
                match intake.push(&mut input, &History::new(), &mut pool, usize::MAX, &mut out) {
                    Err(e) => ended = Some(e),
                    Ok(()) => taken += offered - input.len(),
                }
                while let Some(job) = intake.job() {
                    out.extend(intake.verified(job.run()));
                }
            }
            match ended {
                Some(IntakeError::InvalidGoesOn { invalid, max: m }) => {
                    assert!(goes_on, "chat {bad}");
                    assert_eq!((invalid.map(|i| i.index), m), (Some(bad), max));
                    let skipped = intake.position() as usize - invalid_end;
                    assert!(skipped <= max + 288, "{skipped} bytes skipped");
                }
                Some(other) => panic!("{other}"),
                None => {
                    assert!(!goes_on, "chat {bad}: the whole rest was taken");
                    assert!(matches!(
                        &out[..],
                        [Arrival::Archive {
                            archive: Archive::Invalid(_),
                            ..
                        }]
                    ));
                }
            }
        }
    }

    #[test]
    fn a_shorter_archive_is_not_kept_and_its_tip_is_told() {
        let full = fixture();
        let mut intake = Intake::new(ConnId(1), Dialect::Standard, 1 << 20, 1 << 20);
        let short = full.prefix(10);
        let (out, held) = feed(&mut intake, &full, &wire_of(&short), 100);
        assert!(
            held <= wire::CHAT_OVERHEAD + wire::MAX_TEXT,
            "only the decoder's chat buffer: {held}"
        );
        assert!(matches!(&archives(out)[..], [Archive::Shorter(tip)] if *tip == Tip::of(&short)));
    }
}
