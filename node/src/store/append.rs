//! An append-only file that never keeps half a record: every append is
//! whole records followed by a sync, and an append whose write or sync
//! fails (ENOSPC, EIO, EFBIG) is cut back to the file's length before it.
//! Left in place, the torn start of a record would be joined by the next
//! append into a record nobody wrote (a full disk once made `own.log` hold
//! `TORN-ttt…chat 17 after-space-came-back`, mined at the next start as a
//! chat nobody typed). When the cut itself fails, it is tried again
//! before the next append, which is refused until it succeeds.

use std::fs::File;
use std::io::{self, Write};

/// What [`AppendFile`] needs of a file: a real [`File`], or in tests one
/// that fails on cue.
pub trait Backing {
    /// Appends `bytes` at the end (the file is opened for appending).
    ///
    /// # Errors
    /// The write's, possibly after part of `bytes` was written.
    fn append_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Sets the file's length.
    ///
    /// # Errors
    /// The truncation's.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    ///
    /// # Errors
    /// The sync's.
    fn sync_data(&mut self) -> io::Result<()>;
}

impl Backing for File {
    fn append_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// An append-only file of whole records, `len` bytes of which are known
/// whole and durable.
pub struct AppendFile<F: Backing = File> {
    file: F,
    len: u64,
    /// A failed append may have left bytes past `len`, not yet cut.
    torn: bool,
}

impl<F: Backing> AppendFile<F> {
    /// `file`, opened for appending, whose first `len` bytes are whole
    /// records (and nothing follows them).
    pub fn new(file: F, len: u64) -> AppendFile<F> {
        AppendFile {
            file,
            len,
            torn: false,
        }
    }

    /// Cuts the file to `len` bytes (at most its length): a history that
    /// forks keeps only the common prefix. Made durable by the next
    /// [`append`](Self::append).
    ///
    /// # Errors
    /// The truncation's; the file is then cut before the next append.
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.len = len.min(self.len);
        self.file
            .set_len(self.len)
            .inspect_err(|_| self.torn = true)
    }

    /// Appends `records` and syncs them. On success they are durable; on
    /// failure the file is back to what it held before (or will be cut to
    /// it before the next append, if even the cut failed).
    ///
    /// # Errors
    /// The first failing write, sync or cut, as the system said it.
    pub fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        self.cut()?;
        let mut written = 0u64;
        let result = (|| {
            for record in records {
                self.torn = true;
                self.file.append_all(record)?;
                written += record.len() as u64;
            }
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += written;
                self.torn = false;
                Ok(())
            }
            Err(e) => {
                // The error that matters is the append's; a failed cut is
                // retried before the next one.
                let _ = self.cut();
                Err(e)
            }
        }
    }

    /// The file, to make it fail on cue.
    #[cfg(test)]
    pub fn backing_mut(&mut self) -> &mut F {
        &mut self.file
    }

    /// Cuts what a failed append left past `len`, durably.
    fn cut(&mut self) -> io::Result<()> {
        if self.torn {
            self.file.set_len(self.len)?;
            self.file.sync_data()?;
            self.torn = false;
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod faulty {
    //! A file that fails on cue, for tests of what a failed write leaves.

    use super::Backing;
    use std::fs::File;
    use std::io::{self, Write};

    /// A real file whose writes fail once `budget` bytes have been written
    /// (the write that crosses it writes up to it, then fails with
    /// `error`), and whose syncs fail while `sync_fails`.
    pub struct Faulty {
        /// The file written to.
        pub file: File,
        /// Bytes that may still be written; `None` for no limit.
        pub budget: Option<u64>,
        /// Syncs fail while true.
        pub sync_fails: bool,
        /// What a failing write or sync returns (ENOSPC, EIO, EFBIG).
        pub error: i32,
    }

    impl Faulty {
        /// `file`, failing nothing yet.
        pub fn new(file: File) -> Faulty {
            Faulty {
                file,
                budget: None,
                sync_fails: false,
                error: libc::ENOSPC,
            }
        }
    }

    impl Backing for Faulty {
        fn append_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            let allowed = self
                .budget
                .map_or(bytes.len(), |b| bytes.len().min(b as usize));
            self.file.write_all(&bytes[..allowed])?;
            if let Some(budget) = &mut self.budget {
                *budget -= allowed as u64;
            }
            if allowed < bytes.len() {
                return Err(io::Error::from_raw_os_error(self.error));
            }
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            if self.sync_fails {
                return Err(io::Error::from_raw_os_error(self.error));
            }
            self.file.sync_data()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::faulty::Faulty;
    use super::*;
    use std::fs::{self, OpenOptions};

    fn open(path: &std::path::Path) -> AppendFile<Faulty> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let len = file.metadata().unwrap().len();
        AppendFile::new(Faulty::new(file), len)
    }

    /// A write failing at every byte of a record, and at the boundary
    /// before it, leaves exactly the records acknowledged before.
    #[test]
    fn a_failed_append_leaves_only_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let records: [&[u8]; 3] = [b"first\n", b"second\n", b"third\n"];
        for error in [libc::ENOSPC, libc::EIO, libc::EFBIG] {
            for fail_at in 0..=records[1].len() {
                let path = dir.path().join(format!("log-{error}-{fail_at}"));
                let mut log = open(&path);
                log.append([records[0]]).unwrap();
                log.file.budget = Some(fail_at as u64);
                log.file.error = error;
                let failed = log.append([records[1]]);
                if fail_at < records[1].len() {
                    assert_eq!(failed.unwrap_err().raw_os_error(), Some(error));
                    assert_eq!(
                        fs::read(&path).unwrap(),
                        records[0],
                        "cut back at {fail_at}"
                    );
                } else {
                    failed.unwrap();
                }
                log.file.budget = None;
                log.append([records[2]]).unwrap();
                let expected: Vec<u8> = if fail_at < records[1].len() {
                    [records[0], records[2]].concat()
                } else {
                    records.concat()
                };
                assert_eq!(fs::read(&path).unwrap(), expected, "{error} at {fail_at}");
                assert_eq!(log.len, expected.len() as u64);
            }
        }
    }

    /// A failed sync takes the record back: it was not acknowledged.
    #[test]
    fn a_failed_sync_takes_the_record_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = open(&path);
        log.append([&b"kept\n"[..]]).unwrap();
        log.file.sync_fails = true;
        log.file.error = libc::EIO;
        assert!(log.append([&b"lost\n"[..]]).is_err());
        // The cut's own sync failed too: the next append cuts first, and
        // is refused while it cannot.
        assert!(log.append([&b"refused\n"[..]]).is_err());
        log.file.sync_fails = false;
        log.append([&b"after\n"[..]]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"kept\nafter\n");
    }

    #[test]
    fn truncate_then_append_replaces_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = open(&path);
        log.append([&b"abc"[..], b"def"]).unwrap();
        log.truncate(3).unwrap();
        log.file.budget = Some(1);
        assert!(log.append([&b"XYZ"[..]]).is_err());
        log.file.budget = None;
        log.append([&b"ghi"[..]]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abcghi");
    }
}
