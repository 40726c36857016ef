//! The page's access token: 32 lowercase hex digits (128 random bits) in
//! the data directory's [`TOKEN_FILE`], mode 0600, made at the first start
//! that serves the page and kept for the next ones (a page left open
//! stays signed in across restarts).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The token's file in a data directory.
pub const TOKEN_FILE: &str = "http-token";
/// Random bytes in a token (its hex form is twice as long).
const TOKEN_BYTES: usize = 16;

/// The secret a request must show (cookie or bearer header).
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token of data directory `dir`, made (from `/dev/urandom`) when
    /// it has none. A file that others may read is set back to mode 0600.
    ///
    /// # Errors
    /// The file cannot be read or written, or does not hold a token (then
    /// removing it makes a new one), in words naming it.
    pub fn load_or_create(dir: &Path) -> Result<Token, String> {
        let path = dir.join(TOKEN_FILE);
        let said = |e: io::Error| format!("the page's token file {}: {e}", path.display());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let mut random = [0u8; TOKEN_BYTES];
                File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut random))
                    .map_err(said)?;
                let token = hex(&random);
                file.write_all(token.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(said)?;
                Ok(Token(token))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mode = fs::metadata(&path).map_err(said)?.permissions().mode();
                if mode & 0o077 != 0 {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(said)?;
                    log::warn!(
                        "{} could be read by others (mode {:o}): set back to 0600",
                        path.display(),
                        mode & 0o777
                    );
                }
                let text = fs::read_to_string(&path).map_err(said)?;
                Token::parse(text.trim()).ok_or_else(|| {
                    format!(
                        "the page's token file {} does not hold a token ({} hex digits); \
                         remove it and a new one is made",
                        path.display(),
                        TOKEN_BYTES * 2
                    )
                })
            }
            Err(e) => Err(said(e)),
        }
    }

    fn parse(text: &str) -> Option<Token> {
        (text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Token(text.to_ascii_lowercase()))
    }

    /// The token as written in URLs, cookies and headers.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `shown` is the token, in a time that does not depend on
    /// where they differ.
    pub fn matches(&self, shown: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), shown.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_mode_0600_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::load_or_create(dir.path()).unwrap();
        assert_eq!(token.as_str().len(), 32);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Token::load_or_create(dir.path()).unwrap();
        assert_eq!(again.as_str(), token.as_str());
        assert!(token.matches(token.as_str()));
        assert!(!token.matches(&token.as_str()[1..]));
        assert!(!token.matches(""));
        assert!(!token.matches(&"0".repeat(32)) || token.as_str() == "0".repeat(32));
    }

    #[test]
    fn a_file_without_a_token_is_refused_and_an_open_one_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        fs::write(&path, "not a token").unwrap();
        let refused = Token::load_or_create(dir.path()).err().unwrap();
        assert!(refused.contains("remove it"), "{refused}");
        fs::write(&path, "0123456789abcdef0123456789ABCDEF\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let token = Token::load_or_create(dir.path()).unwrap();
        assert!(token.matches("0123456789abcdef0123456789abcdef"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
