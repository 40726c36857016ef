//! The `bans` file of a data directory: one ban a line, `ADDR UNTIL`,
//! UNTIL being the end in seconds since the Unix epoch, or `forever`;
//! lines starting with `#` are comments. It is replaced whole, safely: a
//! temporary file is written and synced, renamed over the old one, and the
//! directory synced, so that a crash leaves the old bans or the new ones,
//! never a mix. The state machine counts a ban's time left from its own
//! clock; here it becomes a date, and back at the next start.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::protocol::BanRow;

/// The bans' file in a data directory.
pub const BANS_FILE: &str = "bans";
/// The temporary file a new `bans` is written to before it replaces it.
const BANS_TEMP: &str = "bans.tmp";

/// Seconds since the Unix epoch now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Replaces the `bans` file of `dir` with `rows`, safely (see the module).
///
/// # Errors
/// Writing, syncing or renaming.
pub fn write(dir: &Path, rows: &[BanRow]) -> io::Result<()> {
    let now = unix_now();
    let mut text = String::from("# banned addresses: ADDR UNTIL (seconds since 1970) or forever\n");
    for row in rows {
        match row.expires_in {
            None => text.push_str(&format!("{} forever\n", row.addr)),
            Some(left) => text.push_str(&format!("{} {}\n", row.addr, now + left.as_secs().max(1))),
        }
    }
    let temp = dir.join(BANS_TEMP);
    let mut file = File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(BANS_FILE))?;
    File::open(dir)?.sync_all()
}

/// The bans of `dir` that have not ended, with their time left (none when
/// there is no `bans` file).
///
/// # Errors
/// The file cannot be read, or a line is not a ban: its path, line number
/// and what is wrong.
pub fn read(dir: &Path) -> Result<Vec<BanRow>, String> {
    let path = dir.join(BANS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let now = unix_now();
    let mut rows = Vec::new();
    for (at, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("{}:{}: {why}: '{line}'", path.display(), at + 1);
        let (addr, until) = line
            .split_once(' ')
            .ok_or_else(|| bad("not a ban (ADDR UNTIL)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let expires_in = match until.trim() {
            "forever" => None,
            secs => {
                let secs: u64 = secs
                    .parse()
                    .map_err(|_| bad("the end is neither seconds since 1970 nor 'forever'"))?;
                match secs.checked_sub(now) {
                    Some(left) if left > 0 => Some(Duration::from_secs(left)),
                    _ => continue,
                }
            }
        };
        rows.push(BanRow { addr, expires_in });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_round_trip_and_ended_ones_are_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(read(dir.path()), Ok(Vec::new()));
        let rows = vec![
            BanRow {
                addr: Ipv4Addr::new(127, 0, 0, 5),
                expires_in: None,
            },
            BanRow {
                addr: Ipv4Addr::new(127, 0, 0, 6),
                expires_in: Some(Duration::from_secs(3600)),
            },
        ];
        write(dir.path(), &rows).expect("written");
        assert!(!dir.path().join(BANS_TEMP).exists());
        let read_back = read(dir.path()).expect("read");
        assert_eq!(read_back[0], rows[0]);
        let left = read_back[1].expires_in.expect("an end");
        assert!(left <= Duration::from_secs(3600) && left >= Duration::from_secs(3590));
        fs::write(dir.path().join(BANS_FILE), "127.0.0.7 1\n").expect("written");
        assert_eq!(read(dir.path()), Ok(Vec::new()));
    }

    #[test]
    fn a_bad_line_is_refused_with_its_path_and_number() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::write(
            dir.path().join(BANS_FILE),
            "# c\n127.0.0.1 forever\n127.0.0 forever\n",
        )
        .expect("written");
        let error = read(dir.path()).unwrap_err();
        assert!(error.contains("bans:3: not an IPv4 address"), "{error}");
        fs::write(dir.path().join(BANS_FILE), "127.0.0.1 soon\n").expect("written");
        assert!(read(dir.path()).unwrap_err().contains("bans:1: the end"));
    }
}
