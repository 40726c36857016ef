//! Commands a person or a script gives the node, and their parsing from a
//! prompt line.

use std::fmt;

use crate::text::{chat_text, printable};

/// The default number of chats `hist` shows.
pub const DEFAULT_HIST: usize = 20;
/// The most chats of one `hist` answer: the node builds the whole answer
/// before it is shown or sent (`node export` writes any length).
pub const MAX_HIST: usize = 100_000;

/// `hist N` (the last `n` chats, or with `before` the `n` chats before
/// index `before`), or why not.
///
/// # Errors
/// More than [`MAX_HIST`] chats asked, in words naming `node export`.
pub fn hist(n: usize, before: Option<usize>) -> Result<Command, String> {
    if n > MAX_HIST {
        return Err(format!(
            "hist refused: {n} chats asked, at most {MAX_HIST} are sent in one answer; \
             'node export' writes the whole history"
        ));
    }
    Ok(Command::Hist { n, before })
}

/// A command for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Queue a chat for mining; the text is already checked
    /// ([`chat_text`]).
    Chat(Vec<u8>),
    /// Show the last `n` chats; with `before`, the `n` chats before that
    /// index (fewer at the history's start; `before` past the history's
    /// end counts from its end).
    Hist {
        /// Chats, at most [`MAX_HIST`].
        n: usize,
        /// Index of the first chat not shown.
        before: Option<usize>,
    },
    /// Show the connected peers and the addresses still being tried.
    Peers,
    /// Show the node's state.
    Status,
    /// Show the commands, or what one of them does.
    Help(Option<Topic>),
    /// Stop the node.
    Quit,
}

/// A command `help` can explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `chat TEXT`.
    Chat,
    /// `hist [N]`.
    Hist,
    /// `peers`.
    Peers,
    /// `status`.
    Status,
    /// `help [COMMAND]`.
    Help,
    /// `quit` and `exit`.
    Quit,
}

/// Every command: its usage, one line of summary, and the longer text of
/// `help COMMAND`.
const TOPICS: [(Topic, &str, &str, &str); 6] = [
    (
        Topic::Chat,
        "chat TEXT",
        "mine TEXT into the history and send it to every peer",
        "TEXT is everything after 'chat ', 1 to 255 bytes of printable ASCII. The chat is \
         saved in the data directory before it is acknowledged, then mined on top of the \
         current history and sent to every peer. If a longer history without it wins, it \
         is mined again: it ends in the history exactly once.",
    ),
    (
        Topic::Hist,
        "hist [N]",
        "show the last N chats (default 20) with their index",
        "Shows the last N chats of the history (20 if N is not given, at most 100000: \
         'node export' writes the whole history), each as '#INDEX TEXT'; bytes outside \
         printable ASCII are shown escaped.",
    ),
    (
        Topic::Peers,
        "peers",
        "show the connected peers and the addresses still being tried",
        "One row per connection: address, direction (inbound: it dialed us; outbound: we \
         dialed it; * marks a second connection with the same address, closed once idle), \
         when it connected, bytes in and out. Then the addresses being dialed or waiting \
         for their next try, with when that is.",
    ),
    (
        Topic::Status,
        "status",
        "show this node's address, peers, history, pending chats and mining",
        "Shows the address and port, the number of peers, the history's length and last \
         chat, the chats of ours not yet in the history, what the miner is doing and the \
         figures of its last job, the archives sent, and the data directory.",
    ),
    (
        Topic::Help,
        "help [COMMAND]",
        "list the commands, or explain one",
        "'help' lists every command; 'help COMMAND' explains one.",
    ),
    (
        Topic::Quit,
        "quit, exit",
        "stop the node, keeping the history on disk",
        "Stops the node cleanly: connections are closed and everything is saved in the \
         data directory. Ctrl-C on an empty line and Ctrl-D do the same.",
    ),
];

/// The text of `help` (no topic) or `help TOPIC`.
pub fn help(topic: Option<Topic>) -> String {
    match topic {
        None => {
            let mut out = String::from("commands:");
            for (_, usage, summary, _) in TOPICS {
                out.push_str(&format!("\n  {usage:<15} {summary}"));
            }
            out.push_str("\ntype 'help COMMAND' for more about one");
            out
        }
        Some(topic) => {
            let (_, usage, summary, long) = TOPICS
                .iter()
                .find(|(t, ..)| *t == topic)
                .expect("every topic has a text");
            format!("{usage}: {summary}\n{long}")
        }
    }
}

/// Why a line is not a command, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand(pub String);

impl fmt::Display for BadCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one line (without its line ending). `Ok(None)` for a blank line.
///
/// # Errors
/// [`BadCommand`] naming what is wrong: an unknown command, a missing or
/// extra argument, a chat text that cannot be sent.
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
                printable(word)
            )))
        }
    };
    match word {
        b"chat" => chat_text(rest)
            .map(|text| Some(Command::Chat(text.to_vec())))
            .map_err(|e| BadCommand(e.to_string())),
        b"hist" => {
            let arg = rest.trim_ascii();
            if arg.is_empty() {
                return Ok(Some(Command::Hist {
                    n: DEFAULT_HIST,
                    before: None,
                }));
            }
            let n = std::str::from_utf8(arg)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| BadCommand("usage: hist [N], N a whole number".into()))?;
            hist(n, None).map(Some).map_err(BadCommand)
        }
        b"peers" => no_argument(Command::Peers),
        b"status" => no_argument(Command::Status),
        b"help" => match rest.trim_ascii() {
            b"" => Ok(Some(Command::Help(None))),
            name => topic(name)
                .map(|t| Some(Command::Help(Some(t))))
                .ok_or_else(|| {
                    BadCommand(format!(
                        "no command '{}'; type 'help' for the list",
                        printable(name)
                    ))
                }),
        },
        b"quit" | b"exit" => no_argument(Command::Quit),
        _ => Err(BadCommand(format!(
            "unknown command '{}'; type 'help'",
            printable(word)
        ))),
    }
}

fn topic(name: &[u8]) -> Option<Topic> {
    Some(match name {
        b"chat" => Topic::Chat,
        b"hist" => Topic::Hist,
        b"peers" => Topic::Peers,
        b"status" => Topic::Status,
        b"help" => Topic::Help,
        b"quit" | b"exit" => Topic::Quit,
        _ => return None,
    })
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
        assert_eq!(
            parse(b"  hist"),
            Ok(Some(Command::Hist {
                n: 20,
                before: None
            }))
        );
        assert_eq!(
            parse(b"hist 5"),
            Ok(Some(Command::Hist { n: 5, before: None }))
        );
        assert_eq!(parse(b"peers"), Ok(Some(Command::Peers)));
        assert_eq!(parse(b"status"), Ok(Some(Command::Status)));
        assert_eq!(parse(b"quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(b"exit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(b"help"), Ok(Some(Command::Help(None))));
        assert_eq!(
            parse(b"help exit"),
            Ok(Some(Command::Help(Some(Topic::Quit))))
        );
        assert_eq!(parse(b"   "), Ok(None));
        assert!(parse(b"hist x").is_err());
        assert_eq!(
            parse(b"hist 100000"),
            Ok(Some(Command::Hist {
                n: MAX_HIST,
                before: None
            }))
        );
        let refused = parse(b"hist 100001").unwrap_err().0;
        assert!(
            refused.contains("at most 100000") && refused.contains("node export"),
            "{refused}"
        );
        assert!(parse(b"status now").is_err());
        assert!(parse(b"help me").unwrap_err().0.contains("no command 'me'"));
        assert!(
            parse(b"mine it")
                .unwrap_err()
                .0
                .contains("unknown command 'mine'")
        );
    }

    /// Bytes that cannot be shown are escaped as everywhere else (`\x00`,
    /// `\xc3`), not in Rust's `\u{0}` form.
    #[test]
    fn what_is_refused_is_shown_escaped_as_everywhere() {
        let refused = |line: &[u8]| parse(line).unwrap_err().0;
        assert_eq!(
            refused(b"status\0"),
            "unknown command 'status\\x00'; type 'help'"
        );
        assert_eq!(
            refused(b"caf\xc3\xa9"),
            "unknown command 'caf\\xc3\\xa9'; type 'help'"
        );
        assert_eq!(refused(b"peers \x1b"), "'peers' takes no argument");
        assert!(refused(b"help \x07").contains("no command '\\x07'"));
    }

    #[test]
    fn chat_text_rules_apply() {
        assert!(parse(b"chat").unwrap_err().0.contains("empty"));
        assert!(parse(b"chat    ").unwrap_err().0.contains("empty"));
        let long = [b"chat ".as_slice(), &[b'a'; 256]].concat();
        assert!(parse(&long).unwrap_err().0.contains("256 bytes"));
        let max = [b"chat ".as_slice(), &[b'a'; 255]].concat();
        assert!(parse(&max).is_ok());
        assert!(
            parse(b"chat tab\there")
                .unwrap_err()
                .0
                .contains("control character (0x09)")
        );
    }

    #[test]
    fn help_lists_every_command_and_explains_each() {
        let all = help(None);
        for word in ["chat", "hist", "peers", "status", "help", "quit", "exit"] {
            assert!(all.contains(word), "{word} missing from {all}");
        }
        for (topic, usage, ..) in TOPICS {
            assert!(help(Some(topic)).starts_with(usage));
        }
    }
}
