//! The page's one door into the node: its control socket, as any client
//! (docs/CONTROL.md). A request is one connection, one line each way; at
//! most [`MAX_ASKING`] at once, so that the control server's 32 places
//! stay open to other clients. The live stream is one followed `hist`
//! shared by every page ([`Link::follow`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::control::client::{ANSWER_WAIT, SAVE_WAIT};
use crate::protocol::{Line, Reply};

/// Control requests of the page in flight at once.
pub const MAX_ASKING: usize = 8;
/// The longest answer line taken from the node: a `hist` of
/// [`super::routes::MAX_PAGE`] chats of 255 bytes, each escaped at most
/// six times over in JSON, fits many times over.
const MAX_ANSWER: u64 = 8 << 20;

/// The control socket of the node, and the requests in flight.
#[derive(Clone)]
pub struct Link {
    socket: PathBuf,
    asking: Arc<Semaphore>,
}

/// A followed `hist`: the node's events, one a line.
pub struct Follower {
    lines: BufReader<OwnedReadHalf>,
    /// Kept open: closing it would end the follow.
    _write: tokio::net::unix::OwnedWriteHalf,
}

impl Link {
    /// The node whose control socket is `socket`.
    pub fn new(socket: PathBuf) -> Link {
        Link {
            socket,
            asking: Arc::new(Semaphore::new(MAX_ASKING)),
        }
    }

    /// Sends `request` (a control request, `{"command":...}`) and returns
    /// the node's reply as it came, within the control client's waits
    /// (10 s, 60 s for `chat`).
    ///
    /// # Errors
    /// The node could not be reached, did not answer in time, or answered
    /// with what is no JSON, in words.
    pub async fn ask(&self, request: &Value) -> Result<Value, String> {
        let wait = match request.get("command").and_then(Value::as_str) {
            Some("chat") => SAVE_WAIT,
            _ => ANSWER_WAIT,
        };
        let _turn = self
            .asking
            .acquire()
            .await
            .map_err(|_| "the page's link to the node is closed".to_string())?;
        let answer = timeout(wait, async {
            let (read, mut write) = self.connect().await?.into_split();
            write
                .write_all(format!("{request}\n").as_bytes())
                .await
                .map_err(|e| format!("sending to the node: {e}"))?;
            let mut line = Vec::new();
            BufReader::new(read)
                .take(MAX_ANSWER)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| format!("reading the node's answer: {e}"))?;
            if line.is_empty() {
                return Err("the node closed the connection without an answer".to_string());
            }
            serde_json::from_slice(&line).map_err(|e| {
                format!(
                    "the node's answer is not understood ({e}): {} bytes",
                    line.len()
                )
            })
        })
        .await;
        answer.unwrap_or_else(|_| {
            Err(format!(
                "the node did not answer within {} s",
                wait.as_secs()
            ))
        })
    }

    /// Like [`Link::ask`], the reply read as the node's [`Reply`].
    ///
    /// # Errors
    /// As [`Link::ask`], or the reply is no [`Reply`]; an `error` reply is
    /// returned as `Ok`.
    pub async fn ask_reply(&self, request: &Value) -> Result<Reply, String> {
        let value = self.ask(request).await?;
        serde_json::from_value(value)
            .map_err(|e| format!("the node's answer is not understood: {e}"))
    }

    /// Follows the history from now on: the node's first answer (a
    /// `hist` of no chat, telling the history's length), then its events
    /// through [`Follower::next`].
    ///
    /// # Errors
    /// As [`Link::ask`], or the node refused (too many followers).
    pub async fn follow(&self) -> Result<(usize, Follower), String> {
        timeout(ANSWER_WAIT, async {
            let (read, mut write) = self.connect().await?.into_split();
            write
                .write_all(b"{\"command\":\"hist\",\"n\":0,\"follow\":true}\n")
                .await
                .map_err(|e| format!("sending to the node: {e}"))?;
            let mut follower = Follower {
                lines: BufReader::new(read),
                _write: write,
            };
            let mut line = Vec::new();
            follower.read_line(&mut line).await?;
            match serde_json::from_slice(&line) {
                Ok(Reply::Hist { history, .. }) => Ok((history, follower)),
                Ok(Reply::Error { error }) => Err(error),
                _ => Err("the node's answer to a followed hist is not understood".into()),
            }
        })
        .await
        .unwrap_or_else(|_| Err("the node did not answer a followed hist within 10 s".into()))
    }

    async fn connect(&self) -> Result<UnixStream, String> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("cannot reach the node ({}: {e})", self.socket.display()))
    }
}

impl Follower {
    /// The next event, or `None` when the follow ended (the node stopped,
    /// or dropped this follower); an event of a kind unknown to this
    /// binary is skipped.
    pub async fn next(&mut self) -> Option<Line> {
        let mut line = Vec::new();
        loop {
            line.clear();
            self.read_line(&mut line).await.ok()?;
            match serde_json::from_slice::<Line>(&line) {
                Ok(Line::Stopped) => return None,
                Ok(event) => return Some(event),
                Err(_) => continue,
            }
        }
    }

    async fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), String> {
        let read = (&mut self.lines)
            .take(MAX_ANSWER)
            .read_until(b'\n', line)
            .await
            .map_err(|e| format!("reading from the node: {e}"))?;
        if read == 0 || !line.ends_with(b"\n") {
            return Err("the node closed the connection".into());
        }
        Ok(())
    }
}
