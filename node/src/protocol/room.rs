//! What a person at the node's terminal is shown, as an IRC client shows a
//! channel: the last chats of the history at start (the backlog), then each
//! chat once, peers joining and leaving, and a short status for the prompt.
//!
//! The exact account of the history (every switch to a rival history, every
//! chat under its index) is the [`Feed`](super::feed::Feed)'s, for scripts
//! (`node hist --follow`) and piped output. A person is shown less:
//!
//! - Chats are shown once the history has been still for [`QUIET`] (or a
//!   chat has waited [`MAX_HOLD`]): chats typed at the same moment on
//!   several nodes race, and the winner of the race is known within a few
//!   milliseconds; shown after it, they are shown in the order they ended
//!   up in.
//! - A chat shown before and taken out by a rival history is not shown
//!   again when its author mines it again (a chat with the same text comes
//!   back); one that stays out for [`GONE_AFTER`] is said once to be gone.
//!   (Chats carry no author: two chats of the same text typed by two people
//!   in the same race would be shown once.)
//! - Joins and leaves are rate-limited, as everything a peer can cause.
//!
//! No clock here: `now` comes with every call.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use wire::History;

use super::feed::Change;
use super::own::Digest;
use super::report::{Figures, Line};
use crate::log_limit::LogLimit;
use crate::text::{count, printable};

/// A chat is shown once the history has not changed for this long.
pub const QUIET: Duration = Duration::from_millis(250);
/// ... or once it has waited this long, changes or not.
pub const MAX_HOLD: Duration = Duration::from_secs(2);
/// A chat shown, then taken out of the history, is said to be gone once it
/// has stayed out this long (its author mines it again at once if it can).
pub const GONE_AFTER: Duration = Duration::from_secs(30);
/// Chats shown at start.
pub const BACKLOG: usize = 10;
/// New chats shown one by one at once; more are summed up in one line
/// (`hist` shows them). More than the feed's: chats typed at the same
/// moment on several nodes are shown together, once the race is over.
pub const SHOW_AT_MOST: usize = 40;
/// Texts of shown chats remembered to recognise them when they move.
const WINDOW: usize = 256;

/// A line for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenLine {
    /// The text.
    pub text: String,
    /// Preceded by the local time it is shown at (`HH:MM`): when this node
    /// saw it happen.
    pub stamped: bool,
}

impl ScreenLine {
    /// A line shown as it is.
    pub fn plain(text: impl Into<String>) -> ScreenLine {
        ScreenLine {
            text: text.into(),
            stamped: false,
        }
    }

    fn stamped(text: impl Into<String>) -> ScreenLine {
        ScreenLine {
            text: text.into(),
            stamped: true,
        }
    }
}

/// What the prompt shows of the node: peers, history, pending chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusBar {
    /// Connected peers.
    pub peers: usize,
    /// Chats in the history.
    pub history: usize,
    /// Chats of ours not in the history yet.
    pub pending: usize,
}

impl StatusBar {
    /// The prompt: `[peers 2, chats 14, pending 0] > `. Numbers only, so
    /// that the prompt keeps its width as they change (the line editor
    /// draws the status of now in place of the prompt as wide).
    pub fn prompt(&self) -> String {
        format!(
            "[peers {}, chats {}, pending {}] > ",
            self.peers, self.history, self.pending
        )
    }
}

/// The terminal's view. See the module's comment.
#[derive(Debug)]
pub struct Room {
    /// The history's chats before this index are behind the window.
    at: usize,
    /// The texts of the history's chats from `at` on, as far as they are
    /// shown (or summed up).
    shown: VecDeque<Vec<u8>>,
    /// Shown chats taken out of the history, with when.
    limbo: Vec<(Vec<u8>, Instant)>,
    /// The last change not shown yet, and the first.
    changed: Option<(Instant, Instant)>,
    /// The chats this node mined that are not shown yet (by digest), and
    /// the figures of the job that found the last of them.
    mined: Vec<(Digest, Option<Figures>)>,
    peer_lines: LogLimit,
    bar: Option<StatusBar>,
}

impl Room {
    /// The room of a node starting with `history`, and its backlog lines.
    pub fn new(history: &History) -> (Room, Vec<ScreenLine>) {
        let len = history.len();
        let first = len.saturating_sub(BACKLOG);
        let mut lines = Vec::new();
        if len > 0 {
            lines.push(ScreenLine::plain(format!(
                "-- the last {} of {} in the history ('hist N' shows more; the times of \
                 chats before this start are not known):",
                len - first,
                count(len, "chat")
            )));
        }
        let mut shown = VecDeque::new();
        for index in first..len {
            let text = history.chat(index).expect("index < len").text();
            lines.push(ScreenLine::plain(format!("      {}", printable(text))));
            shown.push_back(text.to_vec());
        }
        let room = Room {
            at: first,
            shown,
            limbo: Vec::new(),
            changed: None,
            mined: Vec::new(),
            peer_lines: LogLimit::default(),
            bar: None,
        };
        (room, lines)
    }

    fn accounted(&self) -> usize {
        self.at + self.shown.len()
    }

    /// The history became `history` by `change`: what was shown from the
    /// fork on waits in limbo; new chats are shown once it is quiet.
    pub fn changed(&mut self, now: Instant, history: &History, change: Change) -> Vec<ScreenLine> {
        let mut lines = Vec::new();
        if change.fork < self.at {
            // Deeper than the window: said as the feed says it.
            lines.push(ScreenLine::stamped(
                Line::Switched {
                    from: change.fork,
                    longer: history.len() > self.accounted(),
                    replaced: self.accounted() - change.fork,
                    displaced: change.displaced,
                }
                .to_string(),
            ));
            self.at = change.fork;
            self.shown.clear();
        } else if change.fork < self.accounted() {
            let gone = self.shown.split_off(change.fork - self.at);
            self.limbo.extend(gone.into_iter().map(|text| (text, now)));
        }
        if let Some((from, stats)) = change.mined {
            let len = history.len();
            for index in from..len {
                let digest = *history.chat(index).expect("index < len").digest();
                let figures = (index + 1 == len).then(|| stats.into());
                self.mined.push((digest, figures));
            }
        }
        let first = self.changed.map_or(now, |(_, first)| first);
        self.changed = Some((now, first));
        lines.extend(self.tick(now, history));
        lines
    }

    /// What is due at `now`: the chats the history holds once it is quiet,
    /// and chats gone for good.
    pub fn tick(&mut self, now: Instant, history: &History) -> Vec<ScreenLine> {
        let mut lines = Vec::new();
        if let Some((last, first)) = self.changed
            && (now >= last + QUIET || now >= first + MAX_HOLD)
        {
            self.changed = None;
            self.show_new(history, &mut lines);
        }
        self.limbo.retain(|(text, since)| {
            let gone = now >= *since + GONE_AFTER;
            if gone {
                lines.push(ScreenLine::stamped(format!(
                    "a chat shown before is no longer in the history: '{}'",
                    printable(text)
                )));
            }
            !gone
        });
        lines
    }

    fn show_new(&mut self, history: &History, lines: &mut Vec<ScreenLine>) {
        let len = history.len();
        let mut from = self.accounted();
        if len > from + SHOW_AT_MOST {
            lines.push(ScreenLine::stamped(
                Line::Received {
                    from,
                    to: len - SHOW_AT_MOST - 1,
                }
                .to_string(),
            ));
            self.at = len - SHOW_AT_MOST;
            self.shown.clear();
            from = self.at;
        }
        for index in from..len {
            let text = history.chat(index).expect("index < len").text();
            self.shown.push_back(text.to_vec());
            if let Some(at) = self.limbo.iter().position(|(t, _)| t == text) {
                self.limbo.swap_remove(at);
                continue;
            }
            let digest = history.chat(index).expect("index < len").digest();
            let shown = match self.mined.iter().find(|(d, _)| d == digest) {
                Some((_, Some(figures))) => format!("{} (mined here: {figures})", printable(text)),
                Some((_, None)) => format!("{} (mined here)", printable(text)),
                None => printable(text),
            };
            lines.push(ScreenLine::stamped(shown));
        }
        // Copies displaced before they were shown are not shown.
        self.mined.clear();
        while self.shown.len() > WINDOW {
            self.shown.pop_front();
            self.at += 1;
        }
    }

    /// A peer at `addr` joined (`joined`) or left; `peers` are connected
    /// now. `None` while such lines are being left out.
    pub fn peer(
        &mut self,
        now: Instant,
        addr: Ipv4Addr,
        joined: bool,
        peers: usize,
    ) -> Option<ScreenLine> {
        let suppressed = self.peer_lines.allow(now)?;
        let what = if joined { "joined" } else { "left" };
        Some(ScreenLine::stamped(format!(
            "{addr} {what} ({} connected){suppressed}",
            count(peers, "peer")
        )))
    }

    /// The status for the prompt, when it changed.
    pub fn status(&mut self, bar: StatusBar) -> Option<StatusBar> {
        (self.bar != Some(bar)).then(|| {
            self.bar = Some(bar);
            bar
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Chat;

    fn history(texts: &[&str]) -> History {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Chat::new(t.as_bytes().to_vec(), [i as u8; 16], [i as u8; 16]).unwrap())
            .collect()
    }

    fn texts(lines: &[ScreenLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn the_backlog_is_the_last_chats_and_says_how_many_of_how_many() {
        let all: Vec<String> = (0..15).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let (_, lines) = Room::new(&history(&refs));
        assert_eq!(lines.len(), 1 + BACKLOG);
        assert!(
            lines[0].text.contains("the last 10 of 15 chats"),
            "{lines:?}"
        );
        assert_eq!(lines[1].text, "      c5");
        let (_, none) = Room::new(&History::new());
        assert!(none.is_empty());
    }

    #[test]
    fn chats_wait_for_quiet_and_a_displaced_chat_that_comes_back_is_not_shown_again() {
        let t0 = Instant::now();
        let (mut room, _) = Room::new(&History::new());
        let h1 = history(&["a"]);
        assert!(room.changed(t0, &h1, Change::at(0)).is_empty());
        assert_eq!(texts(&room.tick(t0 + QUIET, &h1)), ["a"]);
        // A rival: "b" takes #0, "a" comes back at #1.
        let h2 = history(&["b", "a"]);
        let t1 = t0 + Duration::from_secs(1);
        assert!(room.changed(t1, &h2, Change::at(0)).is_empty());
        assert_eq!(texts(&room.tick(t1 + QUIET, &h2)), ["b"]);
        assert!(room.tick(t1 + GONE_AFTER, &h2).is_empty());
    }

    #[test]
    fn a_chat_that_stays_out_is_said_once_to_be_gone() {
        let t0 = Instant::now();
        let (mut room, _) = Room::new(&history(&["a", "b"]));
        let h = history(&["a", "x"]);
        room.changed(t0, &h, Change::at(1));
        assert_eq!(texts(&room.tick(t0 + QUIET, &h)), ["x"]);
        let gone = room.tick(t0 + GONE_AFTER, &h);
        assert_eq!(
            texts(&gone),
            ["a chat shown before is no longer in the history: 'b'"]
        );
        assert!(room.tick(t0 + GONE_AFTER * 2, &h).is_empty());
    }

    #[test]
    fn a_busy_history_is_shown_within_the_longest_hold() {
        let t0 = Instant::now();
        let (mut room, _) = Room::new(&History::new());
        let h = history(&["a"]);
        room.changed(t0, &h, Change::at(0));
        let step = QUIET / 2;
        let mut now = t0;
        while now < t0 + MAX_HOLD {
            assert!(room.changed(now, &h, Change::at(1)).is_empty());
            now += step;
        }
        assert_eq!(texts(&room.changed(now, &h, Change::at(1))), ["a"]);
    }

    /// A peer that comes and goes in a loop cannot flood the screen.
    #[test]
    fn joins_and_leaves_are_rate_limited() {
        let t0 = Instant::now();
        let mut room = Room::new(&History::new()).0;
        let addr = Ipv4Addr::new(127, 0, 0, 9);
        let said = (0..100)
            .filter(|&n| room.peer(t0, addr, n % 2 == 0, n % 2).is_some())
            .count();
        assert_eq!(said, 20);
        let later = room
            .peer(t0 + Duration::from_secs(1), addr, true, 1)
            .expect("a line a while later");
        assert_eq!(
            later.text,
            "127.0.0.9 joined (1 peer connected) (80 similar lines left out)"
        );
    }

    #[test]
    fn the_prompt_says_peers_chats_and_pending_in_words() {
        let bar = StatusBar {
            peers: 1,
            history: 0,
            pending: 2,
        };
        assert_eq!(bar.prompt(), "[peers 1, chats 0, pending 2] > ");
        let mut room = Room::new(&History::new()).0;
        assert_eq!(room.status(bar), Some(bar));
        assert_eq!(room.status(bar), None);
    }
}
