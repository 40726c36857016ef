//! Commands typed at the prompt, and the rules for a chat's text.

use std::fmt;

/// The default number of chats `hist` shows.
pub const DEFAULT_HIST: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Queue a chat for mining; the text is already checked.
    Chat(Vec<u8>),
    /// Show the last N chats.
    Hist(usize),
    Peers,
    Status,
    Help,
    Quit,
}

pub const HELP: &str = "\
commands:
  chat TEXT   mine TEXT (printable ASCII, 1 to 255 bytes) into the history and send it to every peer
  hist [N]    show the last N chats (default 20) with their index
  peers       show the connected peers: address, direction, connected since, bytes in and out
  status      show this node's address, peers, history, pending chats and mining
  help        show this text
  quit        stop the node, keeping the history on disk";

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand(pub String);

impl fmt::Display for BadCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one line (without its line ending). `Ok(None)` for a blank line.
pub fn parse(line: &[u8]) -> Result<Option<Command>, BadCommand> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let (word, rest) = match trimmed.iter().position(|&b| b == b' ') {
        Some(at) => (&trimmed[..at], &trimmed[at + 1..]),
        None => (trimmed, &[][..]),
    };
    let no_argument = |command: Command| {
        if rest.trim_ascii().is_empty() {
            Ok(Some(command))
        } else {
            Err(BadCommand(format!(
                "'{}' takes no argument",
                String::from_utf8_lossy(word)
            )))
        }
    };
    match word {
        b"chat" => {
            // The text is everything after "chat ", as typed (only the line's
            // surrounding whitespace is dropped).
            check_chat_text(rest).map(|()| Some(Command::Chat(rest.to_vec())))
        }
        b"hist" => {
            let arg = rest.trim_ascii();
            if arg.is_empty() {
                return Ok(Some(Command::Hist(DEFAULT_HIST)));
            }
            std::str::from_utf8(arg)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(|n| Some(Command::Hist(n)))
                .ok_or_else(|| BadCommand("usage: hist [N], N a whole number".into()))
        }
        b"peers" => no_argument(Command::Peers),
        b"status" => no_argument(Command::Status),
        b"help" => no_argument(Command::Help),
        b"quit" | b"exit" => no_argument(Command::Quit),
        _ => Err(BadCommand(format!(
            "unknown command '{}'; type 'help'",
            String::from_utf8_lossy(word).escape_default()
        ))),
    }
}

/// A chat written here is 1 to 255 bytes of printable ASCII (0x20..=0x7E).
pub fn check_chat_text(text: &[u8]) -> Result<(), BadCommand> {
    if text.is_empty() {
        return Err(BadCommand(
            "chat refused: the text is empty (usage: chat TEXT)".into(),
        ));
    }
    if text.len() > wire::MAX_TEXT {
        return Err(BadCommand(format!(
            "chat refused: the text is {} bytes, the most is {}",
            text.len(),
            wire::MAX_TEXT
        )));
    }
    if let Some(at) = text.iter().position(|b| !(0x20..=0x7e).contains(b)) {
        let what = if text[at] < 0x80 {
            "a control character"
        } else {
            "a non-ASCII byte"
        };
        return Err(BadCommand(format!(
            "chat refused: {what} (0x{:02x}) at byte {at}; only printable ASCII can be sent",
            text[at]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse(b"chat hello  world "),
            Ok(Some(Command::Chat(b"hello  world".to_vec())))
        );
        assert_eq!(parse(b"  hist"), Ok(Some(Command::Hist(20))));
        assert_eq!(parse(b"hist 5"), Ok(Some(Command::Hist(5))));
        assert_eq!(parse(b"peers"), Ok(Some(Command::Peers)));
        assert_eq!(parse(b"status"), Ok(Some(Command::Status)));
        assert_eq!(parse(b"quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(b"   "), Ok(None));
        assert!(parse(b"hist x").is_err());
        assert!(parse(b"status now").is_err());
        assert!(
            parse(b"mine it")
                .unwrap_err()
                .0
                .contains("unknown command 'mine'")
        );
    }

    #[test]
    fn chat_text_rules() {
        assert!(parse(b"chat").unwrap_err().0.contains("empty"));
        assert!(parse(b"chat    ").unwrap_err().0.contains("empty"));
        let long = [b"chat ".as_slice(), &[b'a'; 256]].concat();
        assert!(parse(&long).unwrap_err().0.contains("256 bytes"));
        let max = [b"chat ".as_slice(), &[b'a'; 255]].concat();
        assert!(parse(&max).is_ok());
        assert!(
            parse("chat café".as_bytes())
                .unwrap_err()
                .0
                .contains("non-ASCII byte (0xc3) at byte 3")
        );
        assert!(
            parse(b"chat a\x07b")
                .unwrap_err()
                .0
                .contains("control character (0x07) at byte 1")
        );
        assert!(
            parse(b"chat tab\there")
                .unwrap_err()
                .0
                .contains("control character (0x09)")
        );
    }
}
