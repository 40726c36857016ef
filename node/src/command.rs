//! Commands a person or a script gives the node, and their parsing from a
//! prompt line.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
/// More than [`MAX_HIST`] chats asked, in words naming `chatchain export`.
pub fn hist(n: usize, before: Option<usize>) -> Result<Command, String> {
    if n > MAX_HIST {
        return Err(format!(
            "hist refused: {n} chats asked, at most {MAX_HIST} are sent in one answer; \
             'chatchain export' writes the whole history"
        ));
    }
    Ok(Command::Hist { n, before })
}

/// A ban lasts this long unless told otherwise (as bitcoind's `setban`),
/// as [`ban_span`] reads it.
pub const DEFAULT_BAN: &str = "24h";
/// The longest ban with an end: ten years (`forever` has none).
pub const MAX_BAN: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// How far a chat sent by a control client goes before it is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// On disk (`own.log`): it survives a crash.
    #[default]
    Saved,
    /// Mined into the history: its index and digest are known.
    Mined,
    /// Queued whole to at least one peer in an archive.
    Sent,
}

/// A command for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Queue a chat for mining; the text is already checked
    /// ([`chat_text`]). Answered once saved.
    Chat(Vec<u8>),
    /// [`Command::Chat`], answered once the chat reached `stage`.
    ChatUntil {
        /// The text, already checked.
        text: Vec<u8>,
        /// When to answer.
        stage: Stage,
    },
    /// Dial this address now, and want it as a bootstrap peer is.
    Connect(Ipv4Addr),
    /// Close every connection with this address.
    Disconnect(Ipv4Addr),
    /// Ban an address for a span (`None`: forever): its connections close,
    /// it is neither dialed nor accepted, nor named in PeerLists.
    Ban {
        /// The address.
        addr: Ipv4Addr,
        /// How long, from now.
        span: Option<Duration>,
    },
    /// Lift a ban.
    Unban(Ipv4Addr),
    /// List the bans.
    Bans,
    /// Set the log level of the running node.
    Log(log::LevelFilter),
    /// The node's figures for scrapers (OpenMetrics text).
    Metrics,
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
/// `/help COMMAND`.
const TOPICS: [(Topic, &str, &str, &str); 6] = [
    (
        Topic::Chat,
        "/chat TEXT",
        "send TEXT as a chat (a line without '/' is sent so too)",
        "TEXT is everything after '/chat ', 1 to 255 bytes of printable ASCII (the \
         network's chats are ASCII). The chat is saved in the data directory, then mined \
         on top of the current history and sent to every peer; with no peer connected it \
         waits for one. If a rival history without it wins, it is mined again: it ends in \
         the history exactly once, and is shown once.",
    ),
    (
        Topic::Hist,
        "/hist [N]",
        "show the last N chats (default 20) with their index",
        "Shows the last N chats of the history (20 if N is not given, at most 100000: \
         'chatchain export' writes the whole history), each as '#INDEX TEXT'; control and \
         invisible characters, and bytes that are not UTF-8, are shown escaped.",
    ),
    (
        Topic::Peers,
        "/peers",
        "show the connected peers and the addresses still being tried",
        "One row per connection: address, direction (inbound: it dialed us; outbound: we \
         dialed it; * marks a second connection with the same address, closed once idle), \
         when it connected, bytes in and out. Then the addresses being dialed or waiting \
         for their next try, with when that is.",
    ),
    (
        Topic::Status,
        "/status",
        "show this node's address, peers, history, pending chats and mining",
        "Shows the address and port, the number of peers, the history's length and last \
         chat, the chats of ours not yet in the history, what the miner is doing and the \
         figures of its last job, the archives sent, and the data directory.",
    ),
    (
        Topic::Help,
        "/help [COMMAND]",
        "list the commands, or explain one",
        "'/help' lists every command; '/help COMMAND' explains one. '?' is '/help'.",
    ),
    (
        Topic::Quit,
        "/quit, /exit",
        "stop the node, keeping the history on disk",
        "Stops the node cleanly, once chats of yours still being mined are mined and \
         saved (at most a few seconds): connections are closed and everything is saved in \
         the data directory. Ctrl-C on an empty line and Ctrl-D do the same.",
    ),
];

/// The command names, as typed with their `/` (Tab completes them).
pub const NAMES: [&str; 7] = [
    "/chat", "/hist", "/peers", "/status", "/help", "/quit", "/exit",
];

/// The text of `help` (no topic) or `help TOPIC`.
pub fn help(topic: Option<Topic>) -> String {
    match topic {
        None => {
            let mut out = String::from(
                "Type a line and press Enter: it is sent as a chat. Commands begin with '/':",
            );
            for (_, usage, summary, _) in TOPICS {
                out.push_str(&format!("\n  {usage:<16} {summary}"));
            }
            out.push_str(
                "\nchat TEXT, hist, peers, status, help, quit and exit work without '/' \
                 too, in any case. A line that begins with one of these words but does not \
                 fit the command (such as 'status report ready') is not sent: type \
                 '/chat status report ready' to send it ('//' sends a line that begins \
                 with '/'). Tab completes command names; '/help COMMAND' explains one.\
                 \nThe time before a chat (HH:MM) is when this node saw it: the protocol \
                 carries no timestamps.",
            );
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

/// A ban's span: `forever`, or a number with a unit, `s`, `m`, `h` or
/// `d` (seconds when none): `90`, `30m`, `2h`, `7d`. At least a second and
/// at most [`MAX_BAN`].
///
/// # Errors
/// What is wrong with `text`, in words listing the forms.
pub fn ban_span(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "forever" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "'{text}' is not a ban duration: a number of seconds, or with a unit (30m, 2h, \
             7d), or 'forever'"
        )
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let unit = match &text[digits..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let span = number
        .checked_mul(unit)
        .map(Duration::from_secs)
        .filter(|span| *span <= MAX_BAN)
        .ok_or_else(|| format!("a ban of '{text}' is longer than ten years; use 'forever'"))?;
    if span.is_zero() {
        return Err(format!(
            "a ban of '{text}' ends at once; lift a ban with 'unban'"
        ));
    }
    Ok(Some(span))
}

/// Why a line is not a command, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand(pub String);

impl fmt::Display for BadCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one line (without its line ending), as IRC clients do: a line is
/// a chat, a command begins with `/` (`//` sends a chat that begins with
/// `/`), and `?` is `/help`. The words of the first prompt (`chat TEXT`,
/// `hist`, `peers`, `status`, `help`, `quit`, `exit`) are commands without
/// `/` too; a line that begins with one of them but does not fit it is
/// refused, never sent as a chat. `Ok(None)` for a blank line.
///
/// # Errors
/// [`BadCommand`] naming what is wrong: an unknown command, a missing or
/// extra argument, a chat text that cannot be sent, a line that begins
/// with a command's word.
pub fn parse(line: &[u8]) -> Result<Option<Command>, BadCommand> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed == b"?" {
        return Ok(Some(Command::Help(None)));
    }
    if let Some(rest) = trimmed.strip_prefix(b"/") {
        if rest.starts_with(b"/") {
            return chat(rest);
        }
        let (word, args) = split_word(rest);
        return command(word, args).unwrap_or_else(|| {
            Err(BadCommand(format!(
                "unknown command '/{}'; type /help (a line without '/' is sent as a chat)",
                printable(word)
            )))
        });
    }
    let (word, args) = split_word(trimmed);
    match command(word, args) {
        None => chat(trimmed),
        Some(Ok(command)) => Ok(command),
        Some(Err(_)) if word.eq_ignore_ascii_case(b"chat") => chat(args),
        Some(Err(why)) => Err(BadCommand(format!(
            "not sent: '{}' begins with the command '{}' ({why}); to send it as a chat, \
             type /chat {}",
            printable(trimmed),
            printable(word).to_lowercase(),
            printable(trimmed)
        ))),
    }
}

/// The first word of a line and the rest after one space.
fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, &[][..]),
    }
}

fn chat(text: &[u8]) -> Result<Option<Command>, BadCommand> {
    chat_text(text)
        .map(|text| Some(Command::Chat(text.to_vec())))
        .map_err(|e| BadCommand(e.to_string()))
}

/// The command named `word` (any case) with `args`; `None` if no command
/// has that name.
fn command(word: &[u8], args: &[u8]) -> Option<Result<Option<Command>, BadCommand>> {
    let name = word.to_ascii_lowercase();
    let args = args.trim_ascii();
    let no_argument = |command: Command| {
        if args.is_empty() {
            Ok(Some(command))
        } else {
            Err(BadCommand(format!(
                "'{}' takes no argument",
                printable(&name)
            )))
        }
    };
    Some(match name.as_slice() {
        b"chat" => chat(args),
        b"hist" => {
            if args.is_empty() {
                return Some(Ok(Some(Command::Hist {
                    n: DEFAULT_HIST,
                    before: None,
                })));
            }
            match std::str::from_utf8(args).ok().and_then(|s| s.parse().ok()) {
                Some(n) => hist(n, None).map(Some).map_err(BadCommand),
                None => Err(BadCommand("usage: hist [N], N a whole number".into())),
            }
        }
        b"peers" => no_argument(Command::Peers),
        b"status" => no_argument(Command::Status),
        b"help" => match args {
            b"" => Ok(Some(Command::Help(None))),
            name => topic(name)
                .map(|t| Some(Command::Help(Some(t))))
                .ok_or_else(|| {
                    BadCommand(format!(
                        "no command '{}'; type /help for the list",
                        printable(name)
                    ))
                }),
        },
        b"quit" | b"exit" => no_argument(Command::Quit),
        _ => return None,
    })
}

fn topic(name: &[u8]) -> Option<Topic> {
    let name = name.strip_prefix(b"/").unwrap_or(name).to_ascii_lowercase();
    Some(match name.as_slice() {
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

    fn chat_of(text: &str) -> Result<Option<Command>, BadCommand> {
        Ok(Some(Command::Chat(text.as_bytes().to_vec())))
    }

    #[test]
    fn commands_parse_with_or_without_a_slash_in_any_case() {
        assert_eq!(parse(b"chat hello  world "), chat_of("hello  world"));
        assert_eq!(parse(b"/chat hello"), chat_of("hello"));
        assert_eq!(
            parse(b"  hist"),
            Ok(Some(Command::Hist {
                n: 20,
                before: None
            }))
        );
        assert_eq!(
            parse(b"/hist 5"),
            Ok(Some(Command::Hist { n: 5, before: None }))
        );
        assert_eq!(
            parse(b"HIST 5"),
            Ok(Some(Command::Hist { n: 5, before: None }))
        );
        assert_eq!(parse(b"/peers"), Ok(Some(Command::Peers)));
        assert_eq!(parse(b"Status"), Ok(Some(Command::Status)));
        assert_eq!(parse(b"/quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(b"exit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(b"HELP"), Ok(Some(Command::Help(None))));
        assert_eq!(parse(b"?"), Ok(Some(Command::Help(None))));
        assert_eq!(
            parse(b"/help /exit"),
            Ok(Some(Command::Help(Some(Topic::Quit))))
        );
        assert_eq!(parse(b"   "), Ok(None));
        assert_eq!(
            parse(b"hist 100000"),
            Ok(Some(Command::Hist {
                n: MAX_HIST,
                before: None
            }))
        );
        let refused = parse(b"/hist 100001").unwrap_err().0;
        assert!(
            refused.contains("at most 100000") && refused.contains("chatchain export"),
            "{refused}"
        );
        assert!(
            parse(b"/mine it")
                .unwrap_err()
                .0
                .contains("unknown command '/mine'")
        );
        assert!(
            parse(b"/help me")
                .unwrap_err()
                .0
                .contains("no command 'me'")
        );
    }

    #[test]
    fn a_line_is_a_chat_and_a_doubled_slash_sends_a_slash() {
        assert_eq!(parse(b"hello"), chat_of("hello"));
        assert_eq!(parse(b"mine it"), chat_of("mine it"));
        assert_eq!(parse(b"statusreport"), chat_of("statusreport"));
        assert_eq!(parse(b"//me waves"), chat_of("/me waves"));
    }

    /// No line is taken silently as the other kind: one that begins with a
    /// command's word and does not fit it is refused, saying how to send it.
    #[test]
    fn a_line_that_begins_with_a_command_word_is_refused_with_the_way_to_send_it() {
        let refused = parse(b"status report ready").unwrap_err().0;
        assert_eq!(
            refused,
            "not sent: 'status report ready' begins with the command 'status' ('status' \
             takes no argument); to send it as a chat, type /chat status report ready"
        );
        for line in [
            &b"quit now"[..],
            b"hist of the world",
            b"Help me",
            b"exit stage left",
        ] {
            assert!(parse(line).unwrap_err().0.contains("/chat "), "{line:?}");
        }
        assert_eq!(
            parse(b"/chat status report ready"),
            chat_of("status report ready")
        );
    }

    /// Bytes that cannot be shown are escaped as everywhere else (`\x00`,
    /// `\xc3`), not in Rust's `\u{0}` form.
    #[test]
    fn what_is_refused_is_shown_escaped_as_everywhere() {
        let refused = |line: &[u8]| parse(line).unwrap_err().0;
        assert_eq!(
            refused(b"/status\0"),
            "unknown command '/status\\x00'; type /help (a line without '/' is sent as a chat)"
        );
        assert!(refused(b"caf\xc3\xa9").contains("'\u{e9}' (U+00E9)"));
        assert_eq!(refused(b"/peers \x1b"), "'peers' takes no argument");
        assert!(refused(b"/help \x07").contains("no command '\\x07'"));
    }

    #[test]
    fn chat_text_rules_apply() {
        assert!(parse(b"chat").unwrap_err().0.contains("empty"));
        assert!(parse(b"/chat    ").unwrap_err().0.contains("empty"));
        let long = [b"chat ".as_slice(), &[b'a'; 256]].concat();
        assert!(parse(&long).unwrap_err().0.contains("256 bytes"));
        let max = [b"chat ".as_slice(), &[b'a'; 255]].concat();
        assert!(parse(&max).is_ok());
        assert!(
            parse(b"tab\there")
                .unwrap_err()
                .0
                .contains("control character (0x09)")
        );
    }

    #[test]
    fn ban_spans_take_units_or_forever_and_are_bounded() {
        assert_eq!(ban_span("90"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(ban_span("30m"), Ok(Some(Duration::from_secs(1800))));
        assert_eq!(ban_span("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(ban_span("7d"), Ok(Some(Duration::from_secs(7 * 86_400))));
        assert_eq!(ban_span("forever"), Ok(None));
        assert!(ban_span("0").unwrap_err().contains("unban"));
        assert!(ban_span("11000d").unwrap_err().contains("ten years"));
        assert!(ban_span("99999999999999999999").is_err());
        for bad in ["", "soon", "5w", "-1", "1.5h"] {
            assert!(
                ban_span(bad).unwrap_err().contains("not a ban duration"),
                "{bad}"
            );
        }
    }

    #[test]
    fn help_lists_every_command_and_explains_each() {
        let all = help(None);
        for word in NAMES {
            assert!(all.contains(word), "{word} missing from {all}");
        }
        assert!(all.contains("status report ready") && all.contains("HH:MM"));
        for (topic, usage, ..) in TOPICS {
            assert!(help(Some(topic)).starts_with(usage));
        }
    }
}
