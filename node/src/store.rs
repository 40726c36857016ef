//! The data directory: the history as an append-only file, this node's own
//! chats, and a lock so that two nodes never share one directory.
//!
//! `history.bin` is a magic line followed by the chats' wire bytes back to
//! back. Appending a chat writes that chat; adopting a history that forks
//! from ours truncates the file to the common prefix and appends the rest.
//! A crash at any moment leaves a file whose whole, valid chats form a
//! prefix of some history we held: on start the longest valid prefix is
//! kept and any tail beyond it is cut off, with a word to the user.
//!
//! `own.txt` lists the chats typed at this node's prompt, one a line: the
//! digests of the mined copies (or `-`) and the text. It is small and
//! replaced atomically (write, sync, rename) on every change, so a chat the
//! prompt has acknowledged is never lost.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use wire::{DIGEST_LEN, History};

use crate::protocol::{Digest, OwnChat, Store};

const MAGIC: &[u8; 8] = b"CHATLOG1";
const HISTORY_FILE: &str = "history.bin";
const OWN_FILE: &str = "own.txt";
const LOCK_FILE: &str = "lock";

pub struct DiskStore {
    dir: PathBuf,
    history: File,
    /// Chats in the file.
    stored: usize,
    /// Held for the lifetime of the store: the directory's lock.
    _lock: File,
}

/// What was found in the data directory.
pub struct Recovered {
    pub history: History,
    pub own: Vec<(Vec<u8>, Vec<Digest>)>,
    /// A line for the user when something had to be repaired.
    pub notes: Vec<String>,
}

impl DiskStore {
    pub fn open(dir: &Path) -> io::Result<(DiskStore, Recovered)> {
        fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create data directory {}: {e}", dir.display()),
            )
        })?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        if lock.try_lock().is_err() {
            return Err(io::Error::other(format!(
                "data directory {} is in use by another node (use --data-dir)",
                dir.display()
            )));
        }
        let mut notes = Vec::new();
        let path = dir.join(HISTORY_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let history = recover(&path, bytes, &mut notes)?;
        // Cut what was not kept, then (re)write the magic if the file was new.
        let keep = if history.is_empty() {
            0
        } else {
            (MAGIC.len() + history.wire_len()) as u64
        };
        file.set_len(keep)?;
        if keep == 0 {
            file.write_all(MAGIC)?;
        }
        file.sync_data()?;
        let own = read_own(&dir.join(OWN_FILE), &mut notes)?;
        let stored = history.len();
        Ok((
            DiskStore {
                dir: dir.to_path_buf(),
                history: file,
                stored,
                _lock: lock,
            },
            Recovered {
                history,
                own,
                notes,
            },
        ))
    }
}

/// The longest valid history at the start of the file's bytes.
fn recover(path: &Path, mut bytes: Vec<u8>, notes: &mut Vec<String>) -> io::Result<History> {
    if bytes.len() < MAGIC.len() {
        return Ok(History::new());
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(io::Error::other(format!(
            "{} is not a history file of this node (no {} header); move it away to start afresh",
            path.display(),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    bytes.drain(..MAGIC.len());
    let total = bytes.len();
    let mut history = History::new();
    history.extend_from_wire(&bytes);
    if let Err(invalid) = miner::validate(&history) {
        notes.push(format!(
            "{}: {invalid}; keeping the {} chats before it",
            path.display(),
            invalid.index
        ));
        history.truncate(invalid.index);
    }
    let dropped = total - history.wire_len();
    if dropped > 0 {
        notes.push(format!(
            "{}: recovered {} chats; dropped {dropped} bytes after them (an interrupted write)",
            path.display(),
            history.len()
        ));
    }
    Ok(history)
}

fn read_own(path: &Path, notes: &mut Vec<String>) -> io::Result<Vec<(Vec<u8>, Vec<Digest>)>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut own = Vec::new();
    for (n, line) in text
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        match parse_own_line(line) {
            Some(record) => own.push(record),
            None => notes.push(format!(
                "{}: line {} is damaged; skipped",
                path.display(),
                n + 1
            )),
        }
    }
    Ok(own)
}

fn parse_own_line(line: &[u8]) -> Option<(Vec<u8>, Vec<Digest>)> {
    let space = line.iter().position(|&b| b == b' ')?;
    let (copies, text) = (&line[..space], &line[space + 1..]);
    crate::command::check_chat_text(text).ok()?;
    let copies = if copies == b"-" {
        Vec::new()
    } else {
        copies
            .split(|&b| b == b',')
            .map(parse_hex)
            .collect::<Option<Vec<_>>>()?
    };
    Some((text.to_vec(), copies))
}

fn parse_hex(hex: &[u8]) -> Option<Digest> {
    if hex.len() != 2 * DIGEST_LEN {
        return None;
    }
    let mut out = [0; DIGEST_LEN];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn own_line(chat: &OwnChat) -> String {
    let copies = if chat.copies.is_empty() {
        "-".to_string()
    } else {
        chat.copies
            .iter()
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("{copies} {}\n", String::from_utf8_lossy(&chat.text))
}

impl Store for DiskStore {
    fn save_history(&mut self, history: &History, from: usize) -> io::Result<()> {
        let from = from.min(self.stored);
        let keep = history.wire_offset(from);
        self.history.set_len((MAGIC.len() + keep) as u64)?;
        for segment in history.segments_from(from) {
            self.history.write_all(segment)?;
        }
        self.history.sync_data()?;
        self.stored = history.len();
        Ok(())
    }

    fn save_own(&mut self, own: &[OwnChat]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{OWN_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        for chat in own {
            file.write_all(own_line(chat).as_bytes())?;
        }
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join(OWN_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Place;

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
            let (mut store, rec) = DiskStore::open(dir.path()).unwrap();
            assert!(rec.history.is_empty());
            let mut h = full.clone();
            h.truncate(500);
            store.save_history(&h, 0).unwrap();
            h.extend_from(&full, 500);
            h.truncate(501);
            store.save_history(&h, 500).unwrap();
            // A fork from chat 300: keep 300, append the rest.
            let mut fork = full.clone();
            fork.truncate(300);
            fork.extend_from(&full, 300);
            store.save_history(&fork, 300).unwrap();
        }
        let (store, rec) = DiskStore::open(dir.path()).unwrap();
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
        let (_, rec) = DiskStore::open(dir.path()).unwrap();
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
            let (mut store, _) = DiskStore::open(dir.path()).unwrap();
            store.save_history(&full, 0).unwrap();
        }
        let path = dir.path().join(HISTORY_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[MAGIC.len() + full.chat_range(600).start + 3] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let (_, rec) = DiskStore::open(dir.path()).unwrap();
        assert_eq!(rec.history.len(), 600);
        assert!(
            rec.notes[0].contains("chat 600 is invalid"),
            "{:?}",
            rec.notes
        );
    }

    #[test]
    fn own_chats_round_trip_and_the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path()).unwrap();
        let own = vec![
            OwnChat {
                text: b"hello there".to_vec(),
                copies: vec![],
                place: Place::Pending,
            },
            OwnChat {
                text: b"x".to_vec(),
                copies: vec![[0xab; 16], [0; 16]],
                place: Place::Pending,
            },
        ];
        store.save_own(&own).unwrap();
        assert!(
            DiskStore::open(dir.path())
                .err()
                .unwrap()
                .to_string()
                .contains("in use by another node")
        );
        drop(store);
        let (_, rec) = DiskStore::open(dir.path()).unwrap();
        assert_eq!(
            rec.own,
            vec![
                (b"hello there".to_vec(), vec![]),
                (b"x".to_vec(), vec![[0xab; 16], [0; 16]])
            ]
        );
    }
}
