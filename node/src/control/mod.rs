//! The control interface: a Unix domain socket in the data directory
//! (`control.sock`, mode 0600, so only its owner can use it) on which the
//! running node answers scripts, services and tests; and the same binary's
//! client subcommands (`node status`, `node peers`, `node hist`, `node
//! chat`, and those that manage the node: `stop`, `connect`, `disconnect`,
//! `ban`, `unban`, `bans`, `log`, `metrics`). One JSON document per line
//! each way; the schema is in `docs/CONTROL.md`.

pub mod client;
pub mod server;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::command::{self, Command, DEFAULT_HIST, Stage};
use crate::text::chat_text;

/// The control socket's file in a data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// The longest path a Unix socket can have (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Whether the control socket of data directory `dir` can be made (or
/// reached): its path must fit a Unix socket address.
///
/// # Errors
/// The path, its length and the limit, and what to do.
pub fn check_path(dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(SOCKET_FILE);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "the data directory's path is too long for its control socket: {} is {len} \
             bytes, and a Unix socket's path is at most {MAX_SOCKET_PATH}. Give a shorter \
             --data-dir (a symbolic link to this directory will do)",
            path.display()
        ));
    }
    Ok(())
}

/// A request, one JSON object a line, tagged `"command"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// `{"command":"status"}`
    Status,
    /// `{"command":"peers"}`
    Peers,
    /// `{"command":"hist","n":20,"follow":false}`: the last `n` chats;
    /// with `follow`, then every change of the history as it happens;
    /// with `before` (and no `follow`), the `n` chats before that index.
    Hist {
        /// Chats (20 if absent), at most [`command::MAX_HIST`].
        #[serde(default = "default_hist")]
        n: usize,
        /// Keep the connection and send every chat entering the history.
        #[serde(default)]
        follow: bool,
        /// The index of the first chat not sent: the page before it (the
        /// last `n` chats if absent). Not with `follow`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<usize>,
    },
    /// `{"command":"chat","text":"hello","wait":"mined"}`: answered once
    /// the chat is on disk, or mined, or sent to a peer (`wait`: `saved`
    /// when absent).
    Chat {
        /// 1 to 255 bytes of printable ASCII.
        text: String,
        /// The stage to answer at.
        #[serde(default, skip_serializing_if = "is_saved")]
        wait: Stage,
    },
    /// `{"command":"stop"}`: the clean stop of SIGTERM, answered
    /// (`{"reply":"stopped"}`) once the node has saved what it holds.
    Stop,
    /// `{"command":"connect","addr":"192.0.2.7"}`: dial it now, and again
    /// whenever it is lost (as a `--peer`).
    Connect {
        /// The address (the client resolves a host name first).
        addr: Ipv4Addr,
    },
    /// `{"command":"disconnect","addr":"192.0.2.7"}`: close every
    /// connection with it.
    Disconnect {
        /// The address.
        addr: Ipv4Addr,
    },
    /// `{"command":"ban","addr":"192.0.2.7","duration":"2h"}`: ban it
    /// (`duration`: see [`command::ban_span`]; 24h when absent).
    Ban {
        /// The address.
        addr: Ipv4Addr,
        /// How long: `90`, `30m`, `2h`, `7d` or `forever`.
        #[serde(default = "default_ban")]
        duration: String,
    },
    /// `{"command":"unban","addr":"192.0.2.7"}`: lift its ban.
    Unban {
        /// The address.
        addr: Ipv4Addr,
    },
    /// `{"command":"bans"}`: the banned addresses.
    Bans,
    /// `{"command":"log","level":"debug"}`: the log level from now on.
    Log {
        /// error, warn, info, debug, trace or off.
        level: String,
    },
    /// `{"command":"metrics"}`: the node's figures as OpenMetrics text.
    Metrics,
}

fn default_hist() -> usize {
    DEFAULT_HIST
}

fn default_ban() -> String {
    command::DEFAULT_BAN.to_string()
}

fn is_saved(stage: &Stage) -> bool {
    *stage == Stage::Saved
}

impl Request {
    /// One request line (its newline and surrounding blanks ignored).
    ///
    /// # Errors
    /// Why the line is no request, in words naming `docs/CONTROL.md`:
    /// anything but a JSON object (serde would also take an array in
    /// field order, which the schema does not promise), or an object
    /// that is no known command with valid fields.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let line = line.trim_ascii();
        if line.first() != Some(&b'{') {
            return Err(
                "not a request: a request is a JSON object on one line, such as \
                 {\"command\":\"status\"}; see docs/CONTROL.md"
                    .to_string(),
            );
        }
        serde_json::from_slice(line)
            .map_err(|e| format!("not a request ({e}); see docs/CONTROL.md"))
    }

    /// The node's command for this request.
    ///
    /// # Errors
    /// Why it cannot be carried out, in words: a chat's text cannot be
    /// sent, `hist` asks for more than [`command::MAX_HIST`] chats, or
    /// for a page `before` an index while following, a ban's duration or
    /// a log level is not one.
    pub fn command(&self) -> Result<Command, String> {
        Ok(match self {
            Request::Status => Command::Status,
            Request::Peers => Command::Peers,
            Request::Hist {
                follow: true,
                before: Some(_),
                ..
            } => return Err("hist refused: 'before' and 'follow' cannot go together".into()),
            Request::Hist { n, before, .. } => command::hist(*n, *before)?,
            Request::Chat { text, wait } => {
                let text = chat_text(text.as_bytes())
                    .map_err(|e| e.to_string())?
                    .to_vec();
                match wait {
                    Stage::Saved => Command::Chat(text),
                    stage => Command::ChatUntil {
                        text,
                        stage: *stage,
                    },
                }
            }
            Request::Stop => Command::Quit,
            Request::Connect { addr } => Command::Connect(*addr),
            Request::Disconnect { addr } => Command::Disconnect(*addr),
            Request::Ban { addr, duration } => Command::Ban {
                addr: *addr,
                span: command::ban_span(duration)?,
            },
            Request::Unban { addr } => Command::Unban(*addr),
            Request::Bans => Command::Bans,
            Request::Log { level } => Command::Log(crate::cli::parse_log_level(level)?),
            Request::Metrics => Command::Metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MAX_HIST;
    use crate::protocol::Reply;

    #[test]
    fn a_request_is_one_json_object() {
        assert_eq!(
            Request::parse(b" {\"command\":\"status\"} "),
            Ok(Request::Status)
        );
        for line in [
            &b"[\"status\"]"[..],
            b"[\"hist\", 5, true]",
            b"\"status\"",
            b"{\"command\":\"nope\"}",
            b"{}",
            b"",
            b"\xff",
        ] {
            let error = Request::parse(line).unwrap_err();
            assert!(error.contains("docs/CONTROL.md"), "{error}");
        }
        let array = Request::parse(b"[\"status\"]").unwrap_err();
        assert!(array.contains("a JSON object"), "{array}");
    }

    #[test]
    fn management_requests_parse_and_check_their_fields() {
        let command = |line: &str| Request::parse(line.as_bytes()).and_then(|r| r.command());
        let addr = Ipv4Addr::new(127, 0, 0, 7);
        assert_eq!(command(r#"{"command":"stop"}"#), Ok(Command::Quit));
        assert_eq!(
            command(r#"{"command":"ban","addr":"127.0.0.7"}"#),
            Ok(Command::Ban {
                addr,
                span: Some(std::time::Duration::from_secs(86_400))
            })
        );
        assert_eq!(
            command(r#"{"command":"ban","addr":"127.0.0.7","duration":"forever"}"#),
            Ok(Command::Ban { addr, span: None })
        );
        let bad = command(r#"{"command":"ban","addr":"127.0.0.7","duration":"soon"}"#);
        assert!(bad.unwrap_err().contains("not a ban duration"));
        let bad = command(r#"{"command":"connect","addr":"127.0.0"}"#);
        assert!(bad.unwrap_err().contains("docs/CONTROL.md"));
        assert_eq!(
            command(r#"{"command":"log","level":"DEBUG"}"#),
            Ok(Command::Log(log::LevelFilter::Debug))
        );
        assert!(command(r#"{"command":"log","level":"loud"}"#).is_err());
        assert_eq!(
            command(r#"{"command":"chat","text":"hi","wait":"sent"}"#),
            Ok(Command::ChatUntil {
                text: b"hi".to_vec(),
                stage: Stage::Sent
            })
        );
        assert_eq!(
            command(r#"{"command":"chat","text":"hi"}"#),
            Ok(Command::Chat(b"hi".to_vec()))
        );
    }

    #[test]
    fn hist_asks_for_at_most_max_hist_chats() {
        let hist = |n| {
            Request::Hist {
                n,
                follow: true,
                before: None,
            }
            .command()
        };
        assert_eq!(
            hist(MAX_HIST),
            Ok(Command::Hist {
                n: MAX_HIST,
                before: None
            })
        );
        let refused = hist(MAX_HIST + 1).unwrap_err();
        assert!(refused.contains("at most 100000"), "{refused}");
        assert!(refused.contains("chatchain export"), "{refused}");
    }

    #[test]
    fn hist_takes_a_page_before_an_index_but_not_while_following() {
        let page = Request::parse(br#"{"command":"hist","n":50,"before":1000}"#).unwrap();
        assert_eq!(
            page.command(),
            Ok(Command::Hist {
                n: 50,
                before: Some(1000)
            })
        );
        // The page before index 3 of 5 chats, one at its start, and a
        // `before` past the end counting from the end.
        let miner = miner::Miner::new(1);
        let mut history = wire::History::new();
        for text in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            history.push(&miner.mine_next(&history, text));
        }
        let indexes = |n, before| match Reply::hist(&history, n, before, true) {
            Reply::Hist { chats, history, .. } => {
                assert_eq!(history, 5);
                chats.iter().map(|c| c.index).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(indexes(2, Some(3)), [1, 2]);
        assert_eq!(indexes(9, Some(2)), [0, 1]);
        assert_eq!(indexes(2, Some(0)), Vec::<usize>::new());
        assert_eq!(indexes(2, Some(99)), [3, 4]);
        assert_eq!(indexes(2, None), [3, 4]);
        let both = Request::parse(br#"{"command":"hist","n":5,"before":9,"follow":true}"#);
        let refused = both.unwrap().command().unwrap_err();
        assert!(refused.contains("'before' and 'follow'"), "{refused}");
    }
}
