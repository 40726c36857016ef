//! The subcommands that work on histories without a running node:
//! `node verify` and `node export`.
//!
//! `verify` streams: it reads a block at a time and checks chats in batches,
//! keeping only the 19 chats before each batch (a chat's validity needs only
//! those), so memory stays flat whatever the size, and a file that is no
//! history fails at once.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use wire::{CHAT_OVERHEAD, History, MessageType, WINDOW_CHATS};

use crate::store::{self, HISTORY_FILE, MAGIC};
use crate::text::printable;

/// Exit status of a history that decodes but is invalid.
const INVALID: u8 = 1;
/// Exit status of a file that cannot be read or decoded.
const UNREADABLE: u8 = 2;
/// Exit status of a usage error, as for a bad flag.
const USAGE: u8 = 2;
/// Chats checked at once (in SIMD lanes, on every core).
const BATCH: usize = 4096;
/// Bytes read at a time.
const BLOCK: usize = 1 << 16;

/// The layouts `verify` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A data directory's `history.bin`: the magic line, then chats to the
    /// end of the file.
    NodeFile,
    /// An ArchiveResponse: type byte 0x04, u32 count, chats.
    Archive,
    /// A bare history, as some implementations store it: u32 count, chats.
    Bare,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::NodeFile => "a node's history file (history.bin)",
            Layout::Archive => "an ArchiveResponse",
            Layout::Bare => "a bare history (u32 count, then the chats)",
        }
    }
}

/// Why a history could not be read to its end.
enum Unreadable {
    Io(io::Error),
    /// The bytes are not of the layout, at this offset.
    Format(String),
}

impl From<io::Error> for Unreadable {
    fn from(e: io::Error) -> Self {
        Unreadable::Io(e)
    }
}

/// `node verify FILE`: exit 0 valid, 1 invalid, 2 unreadable.
pub fn verify(path: &Path) -> ExitCode {
    let (name, mut input): (String, Box<dyn Read>) = match open(path) {
        Ok(opened) => opened,
        Err(why) => {
            eprintln!("{} verify: {why}", crate::program_name());
            return ExitCode::from(UNREADABLE);
        }
    };
    let mut out = io::stdout().lock();
    match check(&mut input, &mut out) {
        Ok(Verdict::Valid) => {
            let _ = writeln!(out, "valid");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Invalid(why)) => {
            let _ = writeln!(out, "invalid: {why}");
            ExitCode::from(INVALID)
        }
        Err(Unreadable::Io(e)) => {
            eprintln!("{} verify: {name}: {e}", crate::program_name());
            ExitCode::from(UNREADABLE)
        }
        Err(Unreadable::Format(why)) => {
            eprintln!("{} verify: {name}: {why}", crate::program_name());
            ExitCode::from(UNREADABLE)
        }
    }
}

/// The input `path` names: stdin for `-`, a data directory's history file,
/// or the file itself.
fn open(path: &Path) -> Result<(String, Box<dyn Read>), String> {
    if path == Path::new("-") {
        return Ok(("stdin".into(), Box::new(io::stdin().lock())));
    }
    let file = if path.is_dir() {
        path.join(HISTORY_FILE)
    } else {
        path.to_path_buf()
    };
    match File::open(&file) {
        Ok(reader) => Ok((file.display().to_string(), Box::new(reader))),
        Err(e) if path.is_dir() && e.kind() == io::ErrorKind::NotFound => Err(format!(
            "{}: no {HISTORY_FILE} in this directory (not a node's data directory?)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

enum Verdict {
    Valid,
    Invalid(String),
}

/// Reads a history in any [`Layout`] from `input`, says on `out` what it
/// read, and checks it, streaming.
fn check(input: &mut dyn Read, out: &mut dyn Write) -> Result<Verdict, Unreadable> {
    let mut reader = Blocks::new(input);
    let first = reader.peek(MAGIC.len())?;
    let (layout, claimed) = if first.starts_with(MAGIC) {
        reader.consume(MAGIC.len());
        (Layout::NodeFile, None)
    } else if first.first() == Some(&(MessageType::ArchiveResponse as u8)) {
        reader.consume(1);
        (Layout::Archive, Some(reader.count()?))
    } else if let Some(other) = first
        .first()
        .and_then(|&b| MessageType::from_byte(b))
        .filter(|_| first.len() < 4 || first[..4] != [0; 4])
        .filter(|t| *t != MessageType::PeerList || first.len() < 4)
    {
        return Err(Unreadable::Format(format!(
            "holds {}, not an ArchiveResponse (type byte 0x{:02x}, not 0x04) nor a history",
            describe_message(other),
            other as u8
        )));
    } else if first.len() >= 4
        && first[..4]
            .iter()
            .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return Err(Unreadable::Format(format!(
            "not a history file: it begins with text ('{}'); this reads a node's \
             history.bin (or its data directory), an ArchiveResponse, or a bare history",
            String::from_utf8_lossy(&first[..4]).escape_debug()
        )));
    } else if first.len() >= 4 {
        (Layout::Bare, Some(reader.count()?))
    } else if first.is_empty() {
        return Err(Unreadable::Format("the input is empty".into()));
    } else {
        return Err(Unreadable::Format(format!(
            "{} bytes are not a history in any layout this reads",
            first.len()
        )));
    };
    let _ = match claimed {
        Some(count) => writeln!(out, "read: {}, {count} chats claimed", layout.describe()),
        None => writeln!(out, "read: {}", layout.describe()),
    };
    let mut checker = Checker::default();
    loop {
        if claimed.is_some_and(|count| checker.chats == count as usize) {
            break;
        }
        if let Some(chat) = reader.chat()? {
            if let Some(why) = checker.push(chat) {
                return Ok(finish(out, &checker, Verdict::Invalid(why)));
            }
            continue;
        }
        match reader.is_at_end() {
            true => break,
            false => {
                let of = claimed.map_or(String::new(), |count| format!(" of {count}"));
                return Err(Unreadable::Format(format!(
                    "the input ends at byte {}, inside chat {}{of} (starting at byte {})",
                    reader.offset + reader.available() as u64,
                    checker.chats,
                    reader.offset
                )));
            }
        }
    }
    if let Some(count) = claimed
        && checker.chats < count as usize
    {
        return Err(Unreadable::Format(format!(
            "the input ends at byte {} after {} of the {count} chats claimed",
            reader.offset, checker.chats
        )));
    }
    if !reader.peek(1)?.is_empty() {
        return Err(Unreadable::Format(format!(
            "unexpected bytes after the history, from byte {}",
            reader.offset
        )));
    }
    let verdict = match checker.flush() {
        Some(why) => Verdict::Invalid(why),
        None => Verdict::Valid,
    };
    Ok(finish(out, &checker, verdict))
}

fn describe_message(kind: MessageType) -> &'static str {
    match kind {
        MessageType::PeerRequest => "a PeerRequest message",
        MessageType::PeerList => "a PeerList message",
        MessageType::ArchiveRequest => "an ArchiveRequest message",
        MessageType::ArchiveResponse => "an ArchiveResponse message",
        MessageType::Notification => "a Notification message",
    }
}

/// Says what was read, for a valid history: how many chats and the last.
/// An invalid one is only named (chats are checked in batches, so the
/// count read so far would say nothing).
fn finish(out: &mut dyn Write, checker: &Checker, verdict: Verdict) -> Verdict {
    if let Verdict::Invalid(_) = verdict {
        return verdict;
    }
    let _ = writeln!(out, "chats: {}", checker.chats);
    let _ = match &checker.last {
        Some(text) => writeln!(out, "last chat: {}", printable(text)),
        None => writeln!(out, "last chat: (none, the history is empty)"),
    };
    verdict
}

/// Checks chats in batches, keeping only the 19 before each batch.
#[derive(Default)]
struct Checker {
    /// Context chats, then the batch.
    window: History,
    /// Context chats at the start of `window`.
    context: usize,
    /// Chats read.
    chats: usize,
    last: Option<Vec<u8>>,
}

impl Checker {
    /// Adds a chat; the verdict on a batch when it is full.
    fn push(&mut self, chat: &[u8]) -> Option<String> {
        self.window
            .push_wire(chat)
            .expect("the reader yields whole chats");
        self.chats += 1;
        self.last = Some(chat[1..chat.len() - 32].to_vec());
        (self.window.len() - self.context >= BATCH)
            .then(|| self.flush())
            .flatten()
    }

    /// Checks the batch; keeps its last 19 chats as the next context.
    fn flush(&mut self) -> Option<String> {
        let first = self.chats - (self.window.len() - self.context);
        if let Err(invalid) = miner::validate_from(&self.window, self.context) {
            let index = first + invalid.index - self.context;
            return Some(format!("chat {index} is invalid: {}", invalid.reason));
        }
        let keep = self.window.len().min(WINDOW_CHATS - 1);
        let mut next = History::new();
        next.extend_from(&self.window, self.window.len() - keep);
        self.window = next;
        self.context = keep;
        None
    }
}

/// A reader that hands out whole chats, a block at a time.
struct Blocks<'a> {
    input: &'a mut dyn Read,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Stream offset of `buf[start]`.
    offset: u64,
}

impl<'a> Blocks<'a> {
    fn new(input: &'a mut dyn Read) -> Self {
        Blocks {
            input,
            buf: vec![0; BLOCK],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
        }
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    fn is_at_end(&self) -> bool {
        self.eof && self.available() == 0
    }

    /// Up to `n` next bytes (fewer only at the end of the input).
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.available() < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[self.start..self.end.min(self.start + n)])
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// A u32 count, big-endian.
    fn count(&mut self) -> Result<u32, Unreadable> {
        let offset = self.offset;
        let bytes = self.peek(4)?;
        let Ok(count) = <[u8; 4]>::try_from(bytes) else {
            let end = offset + bytes.len() as u64;
            return Err(Unreadable::Format(format!(
                "the input ends at byte {end}, inside the count"
            )));
        };
        self.consume(4);
        Ok(u32::from_be_bytes(count))
    }

    /// The next whole chat, or `None` at the end of the input (whole, or
    /// inside a chat: see `available`).
    fn chat(&mut self) -> io::Result<Option<&[u8]>> {
        let Some(&len) = self.peek(1)?.first() else {
            return Ok(None);
        };
        let size = CHAT_OVERHEAD + len as usize;
        if self.peek(size)?.len() < size {
            return Ok(None);
        }
        let at = self.start;
        self.consume(size);
        Ok(Some(&self.buf[at..at + size]))
    }
}

/// `node export`: the history of the data directory `dir` as an
/// ArchiveResponse, to `output` (`-`: stdout). Exit 0; 2 when stdout is a
/// terminal and no `--output` is given (binary is no use there); 1 when the
/// history cannot be read or written. A reason on stderr.
pub fn export(dir: &Path, output: &Path) -> ExitCode {
    if output == Path::new("-") && io::stdout().is_terminal() {
        eprintln!(
            "{} export: stdout is a terminal: give --output FILE, or redirect it",
            crate::program_name()
        );
        return ExitCode::from(USAGE);
    }
    match write_export(dir, output) {
        Ok(chats) => {
            eprintln!("exported {chats} chats from {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{} export: {why}", crate::program_name());
            ExitCode::FAILURE
        }
    }
}

fn write_export(dir: &Path, output: &Path) -> Result<usize, String> {
    let path = dir.join(HISTORY_FILE);
    let mut file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut history, _) =
        store::read_chats(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Err(invalid) = miner::validate(&history) {
        history.truncate(invalid.index);
    }
    let mut sink: Box<dyn Write> = if output == Path::new("-") {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            File::create(output).map_err(|e| format!("cannot write {}: {e}", output.display()))?,
        )
    };
    let written = (|| {
        sink.write_all(&history.archive_header())?;
        for segment in history.segments() {
            sink.write_all(segment)?;
        }
        sink.flush()
    })();
    written.map_err(|e| format!("writing {}: {e}", output.display()))?;
    Ok(history.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/history-1k.bin"
        ))
        .unwrap()
    }

    fn run(bytes: &[u8]) -> (Result<bool, String>, String) {
        let mut out = Vec::new();
        let verdict = match check(&mut &bytes[..], &mut out) {
            Ok(Verdict::Valid) => Ok(true),
            Ok(Verdict::Invalid(why)) => Err(why),
            Err(Unreadable::Format(why)) => Err(why),
            Err(Unreadable::Io(e)) => Err(e.to_string()),
        };
        (verdict.map(|_| true), String::from_utf8(out).unwrap())
    }

    #[test]
    fn every_layout_is_read_and_said() {
        let archive = fixture();
        let (ok, out) = run(&archive);
        assert_eq!(ok, Ok(true));
        assert!(
            out.starts_with("read: an ArchiveResponse, 1000 chats claimed"),
            "{out}"
        );
        let (ok, out) = run(&archive[1..]);
        assert_eq!(ok, Ok(true));
        assert!(out.starts_with("read: a bare history"), "{out}");
        let node_file = [&MAGIC[..], &archive[5..]].concat();
        let (ok, out) = run(&node_file);
        assert_eq!(ok, Ok(true));
        assert!(out.starts_with("read: a node's history file"), "{out}");
        assert!(out.contains("chats: 1000"), "{out}");
    }

    #[test]
    fn an_invalid_chat_is_named_across_batches() {
        let mut archive = fixture();
        let history = wire::decode_archive(&archive).unwrap();
        archive[5 + history.chat_range(700).start + 2] ^= 1;
        let (verdict, _) = run(&archive);
        assert!(verdict.unwrap_err().starts_with("chat 700 is invalid"));
    }

    #[test]
    fn zeros_fail_at_once_and_a_cut_archive_names_the_offset() {
        let zeros = vec![0; 1 << 20];
        let (verdict, _) = run(&zeros);
        assert_eq!(
            verdict,
            Err("unexpected bytes after the history, from byte 4".into())
        );
        let archive = fixture();
        let (verdict, _) = run(&archive[..archive.len() - 3]);
        assert!(verdict.unwrap_err().contains("inside chat 999"));
    }
}
