//! The data directory: the history as an append-only file, this node's own
//! chats, and a lock so that two nodes never share one directory. Writes
//! happen on the store thread (`writer.rs`), never on the event loop.
//!
//! `history.bin` is a magic line followed by the chats' wire bytes back to
//! back. Appending a chat writes that chat; adopting a history that forks
//! from ours truncates the file to the common prefix and appends the rest.
//! A crash at any moment leaves a file whose whole, valid chats form a
//! prefix of some history we held: on start the longest valid prefix is
//! kept and any tail beyond it is cut off, with a word to the user.
//!
//! `own.log` records the chats typed at this node's prompt and their mined
//! copies, append-only (`own_log.rs`): a chat is acknowledged once its
//! record is synced, and a copy is recorded before it leaves the node, so
//! a chat is never lost and, after a crash, never mined twice into the
//! network.

mod append;
mod bans;
mod own_log;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use wire::History;

use crate::protocol::{BanRow, Digest};
use append::AppendFile;
use own_log::OwnLog;
pub use own_log::{chat_line, copy_line, read_records as read_own_records};
pub use writer::StoreThread;

/// The first bytes of `history.bin`.
pub const MAGIC: &[u8; 8] = b"CHATLOG1";
/// The history's file in a data directory.
pub const HISTORY_FILE: &str = "history.bin";
/// The lock file: held locked while a node runs, and holding its process
/// id (as bitcoind's pid file).
pub const LOCK_FILE: &str = "lock";
/// Bytes read at a time when loading the history.
const READ_BLOCK: usize = 1 << 20;

/// An own chat as stored: its text and the digests of its mined copies.
pub type OwnRecord = (Vec<u8>, Vec<Digest>);

/// An open, locked data directory.
pub struct DataDir {
    dir: PathBuf,
    history: AppendFile,
    /// Chats of the file known to be the history's (a failed write leaves
    /// the rest unknown).
    pub stored: usize,
    own: OwnLog,
    /// Held for the lifetime of the store: the directory's lock.
    _lock: File,
}

/// What was found in the data directory.
pub struct Recovered {
    /// The longest valid history in `history.bin`.
    pub history: History,
    /// This node's chats.
    pub own: Vec<OwnRecord>,
    /// A line for the user when something had to be repaired.
    pub notes: Vec<String>,
    /// The bans that have not ended, with their time left.
    pub bans: Vec<BanRow>,
}

/// `what path: error`, for errors that must name the file.
fn context(what: &str, path: &Path) -> impl FnOnce(io::Error) -> String {
    let path = path.display().to_string();
    let what = what.to_string();
    move |e| format!("{what} {path}: {e}")
}

impl DataDir {
    /// Opens (creating it if needed) and locks the data directory `dir`,
    /// and recovers its history and own chats.
    ///
    /// # Errors
    /// In words naming the path: not a directory, cannot be created, read
    /// or written, in use by another node, or a history file of something
    /// else.
    pub fn open(dir: &Path) -> Result<(DataDir, Recovered), String> {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("data directory {}: not a directory", dir.display()));
        }
        fs::create_dir_all(dir).map_err(context("cannot create data directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(context(
                "cannot write in data directory: opening",
                &lock_path,
            ))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "data directory {} is in use by another node (use --data-dir)",
                dir.display()
            ));
        }
        let pid = format!("{}\n", std::process::id());
        lock.set_len(0)
            .and_then(|()| (&lock).write_all(pid.as_bytes()))
            .map_err(context("cannot write", &lock_path))?;
        let bans = bans::read(dir)?;
        let mut notes = Vec::new();
        let path = dir.join(HISTORY_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(context("cannot open", &path))?;
        let history = recover(&path, &mut file, &mut notes)?;
        // Cut what was not kept, then (re)write the magic if the file was new.
        let keep = if history.is_empty() {
            0
        } else {
            (MAGIC.len() + history.wire_len()) as u64
        };
        let repaired = (|| {
            file.set_len(keep)?;
            if keep == 0 {
                file.write_all(MAGIC)?;
            }
            file.sync_data()
        })();
        repaired.map_err(context("cannot write", &path))?;
        let (own_log, own) = OwnLog::open(dir, &mut notes)
            .map_err(context("cannot read or write the own chats in", dir))?;
        let stored = history.len();
        Ok((
            DataDir {
                dir: dir.to_path_buf(),
                history: AppendFile::new(file, keep.max(MAGIC.len() as u64)),
                stored,
                own: own_log,
                _lock: lock,
            },
            Recovered {
                history,
                own,
                notes,
                bans,
            },
        ))
    }

    /// The history changed from chat `from` on: keeps `from` chats of the
    /// file (fewer if a write failed before), appends the rest, syncs. A
    /// failed append is cut back to those `from` chats (`append.rs`).
    fn write_history(&mut self, history: &History, from: usize) -> io::Result<()> {
        let from = from.min(self.stored).min(history.len());
        self.stored = from;
        self.history
            .truncate((MAGIC.len() + history.wire_offset(from)) as u64)?;
        self.history.append(history.segments_from(from))?;
        self.stored = history.len();
        Ok(())
    }

    /// Replaces the bans' file (see `bans.rs`).
    fn write_bans(&self, rows: &[BanRow]) -> io::Result<()> {
        bans::write(&self.dir, rows)
    }

    /// Appends own-chat records (see `own_log.rs`) and syncs them.
    fn write_own(&mut self, lines: &str) -> io::Result<()> {
        self.own.append(lines)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Reads a file of chats after the magic, a block at a time, into a
/// history; returns it and the bytes after its last whole chat.
///
/// # Errors
/// A read error, or no magic (`InvalidData`).
pub fn read_chats(reader: &mut impl Read) -> io::Result<(History, usize)> {
    let mut history = History::new();
    let mut magic = [0; MAGIC.len()];
    let mut have = 0;
    while have < magic.len() {
        match reader.read(&mut magic[have..])? {
            0 if have == 0 => return Ok((history, 0)),
            0 => return Ok((history, have)),
            n => have += n,
        }
    }
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not a history file of this node (no {} header)",
                String::from_utf8_lossy(MAGIC)
            ),
        ));
    }
    let mut block = vec![0; READ_BLOCK];
    let mut carry = 0;
    loop {
        let n = match reader.read(&mut block[carry..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok((history, carry));
        }
        let filled = carry + n;
        let used = history.extend_from_wire(&block[..filled]);
        block.copy_within(used..filled, 0);
        carry = filled - used;
    }
}

/// The longest valid history at the start of the file.
fn recover(path: &Path, file: &mut File, notes: &mut Vec<String>) -> Result<History, String> {
    let (mut history, cut) = read_chats(file).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => {
            format!("{}: {e}; move it away to start afresh", path.display())
        }
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    let read = history.wire_len() + cut;
    if let Err(invalid) = miner::validate(&history) {
        history.truncate(invalid.index);
        // A damaged chat (a flipped bit, a bad disk) may have valid ones
        // after it: their bytes are kept aside, not only cut.
        let kept = keep_aside(path, file, MAGIC.len() + history.wire_len());
        notes.push(format!(
            "{}: {invalid}; keeping the {} chats before it (peers have the rest; the \
             {} bytes from it on {kept})",
            path.display(),
            invalid.index,
            read - history.wire_len(),
        ));
    } else if cut > 0 {
        notes.push(format!(
            "{}: recovered {} chats; dropped {cut} bytes after them (an interrupted write)",
            path.display(),
            history.len()
        ));
    }
    Ok(history)
}

/// Copies `file` from `offset` on to a file beside `path`; in words, where
/// it went (or why it could not).
fn keep_aside(path: &Path, file: &mut File, offset: usize) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("dropped-{secs}"));
    let copied = (|| {
        file.seek(SeekFrom::Start(offset as u64))?;
        let mut out = File::create(&aside)?;
        io::copy(file, &mut out)?;
        out.sync_all()
    })();
    match copied {
        Ok(()) => format!("are in {}", aside.display()),
        Err(e) => format!("could not be kept in {}: {e}", aside.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> History {
        let bytes = fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/history-1k.bin"
        ))
        .unwrap();
        wire::decode_archive(&bytes).unwrap()
    }

    #[test]
    fn history_survives_appends_forks_and_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let full = fixture();
        {
            let (mut store, rec) = DataDir::open(dir.path()).unwrap();
            assert!(rec.history.is_empty());
            let mut h = full.prefix(500);
            store.write_history(&h, 0).unwrap();
            h.extend_from(&full, 500);
            h.truncate(501);
            store.write_history(&h, 500).unwrap();
            // A fork from chat 300: keep 300, append the rest.
            let fork = full.clone();
            store.write_history(&fork, 300).unwrap();
        }
        let (store, rec) = DataDir::open(dir.path()).unwrap();
        assert_eq!(rec.history, full);
        assert!(rec.notes.is_empty());
        drop(store);

        // Half a chat at the end, as a kill during a write leaves it.
        let path = dir.path().join(HISTORY_FILE);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (_, rec) = DataDir::open(dir.path()).unwrap();
        assert_eq!(rec.history.len(), 999);
        assert!(
            rec.notes[0].contains("recovered 999 chats"),
            "{:?}",
            rec.notes
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len() as usize,
            MAGIC.len() + rec.history.wire_len()
        );
    }

    #[test]
    fn a_corrupt_chat_cuts_the_history_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let full = fixture();
        {
            let (mut store, _) = DataDir::open(dir.path()).unwrap();
            store.write_history(&full, 0).unwrap();
        }
        let path = dir.path().join(HISTORY_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[MAGIC.len() + full.chat_range(600).start + 3] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let (_, rec) = DataDir::open(dir.path()).unwrap();
        assert_eq!(rec.history.len(), 600);
        assert!(
            rec.notes.len() == 1 && rec.notes[0].contains("chat 600 is invalid"),
            "{:?}",
            rec.notes
        );
        // The bytes from the damaged chat on are kept aside, as they were.
        let aside: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".dropped-"))
            .collect();
        assert_eq!(aside.len(), 1, "{:?}", rec.notes);
        assert!(rec.notes[0].contains(&aside[0].display().to_string()));
        let from = MAGIC.len() + full.chat_range(600).start;
        assert_eq!(fs::read(&aside[0]).unwrap(), bytes[from..]);
    }

    #[test]
    fn own_chats_round_trip_and_the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DataDir::open(dir.path()).unwrap();
        let own = vec![
            (b"hello there".to_vec(), vec![]),
            (b"x".to_vec(), vec![[0xab; 16], [0; 16]]),
        ];
        let lines = [
            chat_line(0, b"hello there"),
            chat_line(1, b"x"),
            copy_line(1, &[0xab; 16]),
            copy_line(1, &[0; 16]),
        ]
        .concat();
        store.write_own(&lines).unwrap();
        assert!(
            DataDir::open(dir.path())
                .err()
                .unwrap()
                .contains("in use by another node")
        );
        drop(store);
        let (_, rec) = DataDir::open(dir.path()).unwrap();
        assert_eq!(rec.own, own);
    }

    #[test]
    fn a_file_or_an_unwritable_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let err = DataDir::open(&file).err().unwrap();
        assert_eq!(
            err,
            format!("data directory {}: not a directory", file.display())
        );
        let err = DataDir::open(&file.join("below")).err().unwrap();
        assert!(
            err.contains(&file.join("below").display().to_string()),
            "{err}"
        );
    }
}
