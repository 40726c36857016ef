//! What the screen has shown of the history, so that every chat that
//! enters it is shown exactly once, in history order, whatever put it there
//! (a longer history adopted, a rival fork taken, our own chats mined), and
//! a switch to another history is said in one plain line before chats are
//! shown again from where the two differ.

use miner::JobStats;
use wire::History;

use super::report::Line;

/// New chats shown one by one when many arrive at once; more are summed up
/// in one line (`hist` shows them).
pub const SHOW_AT_MOST: usize = 20;

/// The screen's view of the history: chats `0..shown` are on it, each once,
/// in order.
#[derive(Debug)]
pub struct Feed {
    shown: usize,
}

/// What changed in the history, for [`Feed::update`].
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// The first chat that changed: chats before it are as they were.
    pub fork: usize,
    /// Our chats the change took out of the history.
    pub displaced: usize,
    /// This node mined the chats from this index on, with these figures.
    pub mined: Option<(usize, JobStats)>,
}

#[cfg(test)]
impl Change {
    /// A change from `fork` on, displacing none of ours, mined elsewhere.
    pub fn at(fork: usize) -> Change {
        Change {
            fork,
            displaced: 0,
            mined: None,
        }
    }
}

impl Feed {
    /// A screen that starts with the first `shown` chats taken as seen
    /// (the history the node starts with).
    pub fn new(shown: usize) -> Feed {
        Feed { shown }
    }

    /// The lines that bring the screen up to date with `history` after
    /// `change`.
    pub fn update(&mut self, history: &History, change: Change) -> Vec<Line> {
        let mut lines = Vec::new();
        if change.fork < self.shown {
            lines.push(Line::Switched {
                from: change.fork,
                longer: history.len() > self.shown,
                replaced: self.shown - change.fork,
                displaced: change.displaced,
            });
            self.shown = change.fork;
        }
        let len = history.len();
        if len > self.shown + SHOW_AT_MOST {
            lines.push(Line::Received {
                from: self.shown,
                to: len - SHOW_AT_MOST - 1,
            });
            self.shown = len - SHOW_AT_MOST;
        }
        for index in self.shown..len {
            let mined = change
                .mined
                .filter(|&(from, _)| index >= from && index + 1 == len)
                .map(|(_, stats)| stats.into());
            lines.push(Line::Chat {
                index,
                text: history.chat(index).expect("index < len").text().to_vec(),
                mined,
            });
        }
        self.shown = len;
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Chat;

    fn history(tags: &[u8]) -> History {
        tags.iter()
            .map(|&t| Chat::new(vec![b'a' + t], [t; 16], [t; 16]).unwrap())
            .collect()
    }

    fn chat(index: usize, tag: u8) -> Line {
        Line::Chat {
            index,
            text: vec![b'a' + tag],
            mined: None,
        }
    }

    #[test]
    fn new_chats_are_shown_once_and_a_switch_is_said_first() {
        let mut feed = Feed::new(1);
        assert_eq!(
            feed.update(&history(&[0, 1, 2]), Change::at(3)),
            [chat(1, 1), chat(2, 2)]
        );
        assert_eq!(feed.update(&history(&[0, 1, 2]), Change::at(3)), []);
        let lines = feed.update(
            &history(&[0, 5, 6, 7]),
            Change {
                fork: 1,
                displaced: 1,
                mined: None,
            },
        );
        assert_eq!(
            lines,
            [
                Line::Switched {
                    from: 1,
                    longer: true,
                    replaced: 2,
                    displaced: 1
                },
                chat(1, 5),
                chat(2, 6),
                chat(3, 7)
            ]
        );
    }

    /// A rival of the same length that wins the tie-break is no "longer
    /// history": the line says which it is.
    #[test]
    fn a_switch_to_a_rival_of_the_same_length_says_so() {
        let mut feed = Feed::new(3);
        let lines = feed.update(&history(&[0, 1, 5]), Change::at(2));
        assert_eq!(
            lines,
            [
                Line::Switched {
                    from: 2,
                    longer: false,
                    replaced: 1,
                    displaced: 0
                },
                chat(2, 5)
            ]
        );
        assert_eq!(
            lines[0].to_string(),
            "1 chat from #2 on replaced by a rival history of the same length (it wins the \
             tie-break)"
        );
        assert_eq!(
            serde_json::to_string(&lines[0]).unwrap(),
            r#"{"event":"switched","from":2,"longer":false,"replaced":1,"displaced":0}"#
        );
    }

    #[test]
    fn a_large_catch_up_is_summed_up() {
        let mut feed = Feed::new(0);
        let tags: Vec<u8> = (0..50).collect();
        let lines = feed.update(&history(&tags), Change::at(0));
        assert_eq!(lines.len(), 1 + SHOW_AT_MOST);
        assert_eq!(lines[0], Line::Received { from: 0, to: 29 });
        assert_eq!(lines[1], chat(30, 30));
    }
}
