//! State-machine tests: no sockets, a fake clock, real MD5.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use miner::{JobStats, Miner};
use wire::{Chat, History, Message};

use crate::command::Command;

use super::*;

/// A valid history of `texts` on top of `base`.
pub fn extend(miner: &Miner, base: &History, texts: &[&str]) -> History {
    let mut history = base.clone();
    for text in texts {
        let chat = miner.mine_next(&history, text.as_bytes());
        history.push(&chat);
    }
    history
}

/// `history` with the low bit of its wire byte `at` flipped (a text or
/// digest byte, so the chats keep their lengths).
fn flip_bit(history: &History, at: usize) -> History {
    let mut bytes = history.segments().collect::<Vec<_>>().concat();
    bytes[at] ^= 1;
    let mut forged = History::new();
    forged.extend_from_wire(&bytes);
    forged
}

pub fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 40, 0, last)
}

pub fn config(bind: Ipv4Addr, bootstrap: Vec<Ipv4Addr>) -> Config {
    Config {
        bind,
        port: 51511,
        bootstrap,
        unresolved: Vec::new(),
        max_connecting: 4,
        max_outbound: usize::MAX,
        threads: 1,
        data_dir: "(memory)".into(),
        pid: 1,
        bans: Vec::new(),
        room: false,
        relay_port: None,
    }
}

struct Harness {
    node: Node,
    now: Instant,
    /// The `from` of every history save asked for, in order.
    history_saves: Vec<usize>,
}

impl Harness {
    fn new(history: History) -> Self {
        Self::with_config(config(ip(1), vec![]), history)
    }

    fn with_config(config: Config, history: History) -> Self {
        let now = Instant::now();
        let own = OwnChats::restore(vec![], &history);
        Harness {
            node: Node::new(config, history, own, 7, now),
            now,
            history_saves: Vec::new(),
        }
    }

    fn handle(&mut self, event: Event) -> Vec<Action> {
        self.node.handle(self.now, event);
        self.actions()
    }

    /// The actions the node asks for; saves are made durable at once (the
    /// store's acknowledgements are handled, and what they cause follows).
    fn actions(&mut self) -> Vec<Action> {
        let mut actions: Vec<Action> = std::iter::from_fn(|| self.node.poll_action()).collect();
        let mut tickets = Vec::new();
        for action in &actions {
            match action {
                Action::Save(Save::History { from, .. }) => self.history_saves.push(*from),
                Action::Save(Save::Chat { ticket, .. } | Save::Copy { ticket, .. }) => {
                    tickets.push(*ticket)
                }
                _ => {}
            }
        }
        if !tickets.is_empty() {
            self.node.handle(
                self.now,
                Event::Saved(Saved {
                    tickets,
                    stored: None,
                    outcome: Ok(()),
                    elapsed: Duration::ZERO,
                }),
            );
            actions.extend(self.actions());
        }
        actions
    }

    /// `chat TEXT` typed at the prompt.
    fn chat(&mut self, text: &str) -> Vec<Action> {
        self.handle(Event::Command {
            from: Origin::Prompt,
            command: Command::Chat(text.as_bytes().to_vec()),
        })
    }

    /// Mining job `job` found `chat`.
    fn mined(&mut self, job: u64, chat: &Chat) -> Vec<Action> {
        self.handle(Event::Mined {
            job,
            outcome: Mined::Found(vec![chat.clone()]),
            stats: JobStats {
                tries: 1,
                elapsed: Duration::from_millis(1),
            },
        })
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.handle(Event::Tick)
    }

    /// Connects a peer; returns its id and drops the greeting actions.
    /// A connection with `addr` from our address `local`; returns what the
    /// node does about it.
    fn connected(
        &mut self,
        id: u64,
        addr: Ipv4Addr,
        local: Ipv4Addr,
        direction: Direction,
    ) -> Vec<Action> {
        self.handle(Event::Connected {
            dialect: Dialect::Standard,
            conn: ConnId(id),
            addr,
            local,
            direction,
        })
    }

    /// Connects a peer to 127.40.0.1; returns its id and drops the greeting.
    fn connect(&mut self, id: u64, addr: Ipv4Addr, direction: Direction) -> ConnId {
        self.connected(id, addr, ip(1), direction);
        ConnId(id)
    }

    /// `message` from `conn`; an archive is judged against our history as
    /// the reactor's intake would.
    fn receive(&mut self, conn: ConnId, message: Message) -> Vec<Action> {
        let wire_len = message.encoded_len();
        let event = match message {
            Message::ArchiveResponse(history) => Event::Archive {
                conn,
                archive: Archive::judge(self.node.history(), history),
                wire_len,
            },
            message => Event::Received {
                conn,
                message,
                wire_len,
            },
        };
        self.handle(event)
    }

    /// Answers our ArchiveRequest, so that the archive counts as solicited.
    fn answer(&mut self, conn: ConnId, history: &History) -> Vec<Action> {
        self.receive(conn, Message::ArchiveResponse(history.clone()))
    }
}

/// The messages sent, by connection, decoded.
fn sent(actions: &[Action]) -> Vec<(ConnId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, payload } => Some((
                *conn,
                match payload {
                    Payload::Archive { history, .. } => Message::ArchiveResponse(history.clone()),
                    Payload::Message(bytes) => wire::decode(bytes).expect("we send valid bytes"),
                    Payload::Chats { .. } => {
                        unreachable!("the tests' peers speak the standard protocol")
                    }
                },
            )),
            _ => None,
        })
        .collect()
}

fn archives_to(actions: &[Action]) -> Vec<ConnId> {
    sent(actions)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::ArchiveResponse(_)))
        .map(|(c, _)| c)
        .collect()
}

fn closes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Close { .. }))
        .count()
}

/// The mining jobs started: number, base tail and texts.
fn started_mining(actions: &[Action]) -> Vec<(u64, Vec<u8>, Vec<Vec<u8>>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartMining {
                job, prev, texts, ..
            } => Some((*job, prev.clone(), texts.clone())),
            _ => None,
        })
        .collect()
}

/// One text, as a job's texts.
fn texts(text: &str) -> Vec<Vec<u8>> {
    vec![text.as_bytes().to_vec()]
}

/// The lines shown, as the prompt prints them.
fn shown(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Show(line) => Some(line.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_peer_is_asked_for_its_archive_and_peers() {
    let greeting = [Message::ArchiveRequest, Message::PeerRequest];
    // What the node asks (our PeerList, announced to everyone, aside).
    let messages = |actions: &[Action]| -> Vec<Message> {
        sent(actions)
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| !matches!(m, Message::PeerList(_)))
            .collect()
    };
    // A peer we dialed: at once.
    let mut h = Harness::new(History::new());
    let actions = h.connected(1, ip(2), ip(1), Direction::Outbound);
    assert_eq!(messages(&actions), greeting);

    // A peer that dialed us may push an archive and hang up without reading:
    // it is greeted after its first message...
    let actions = h.connected(2, ip(3), ip(1), Direction::Inbound);
    assert!(messages(&actions).is_empty());
    let actions = h.receive(ConnId(2), Message::ArchiveResponse(History::new()));
    assert_eq!(messages(&actions), greeting);

    // ... or after a second of silence.
    let actions = h.connected(3, ip(4), ip(1), Direction::Inbound);
    assert!(messages(&actions).is_empty());
    assert!(messages(&h.advance(Duration::from_millis(500))).is_empty());
    assert_eq!(messages(&h.advance(Duration::from_millis(600))), greeting);
}

/// The addresses `actions` dial.
fn dials(actions: &[Action]) -> Vec<Ipv4Addr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect()
}

/// The `peers` answer: the addresses still being tried.
fn dialing(h: &mut Harness) -> Vec<report::DialRow> {
    peers_reply(h).0
}

/// The `peers` answer: the addresses still being tried, and the host
/// names not resolved yet.
fn peers_reply(h: &mut Harness) -> (Vec<report::DialRow>, Vec<ResolvingRow>) {
    let actions = h.handle(Event::Command {
        from: Origin::Control(1),
        command: Command::Peers,
    });
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Reply {
                reply: Reply::Peers {
                    dialing, resolving, ..
                },
                ..
            } => Some((dialing, resolving)),
            _ => None,
        })
        .expect("a peers reply")
}

/// A `--peer` host name the resolver could not resolve at start is shown
/// by `peers` with the resolver's last answer until it resolves; then it
/// is dialed, and redialed after failures, as a bootstrap peer.
#[test]
fn a_host_name_resolved_later_is_shown_until_then_and_dialed_as_a_bootstrap_peer() {
    let mut settings = config(ip(1), Vec::new());
    settings.unresolved = vec![ResolvingRow {
        name: "peer.test".into(),
        reason: "Temporary failure in name resolution".into(),
        retry_in: Some(Duration::from_secs(2)),
    }];
    let mut h = Harness::with_config(settings, History::new());
    assert!(dials(&h.advance(Duration::from_millis(500))).is_empty());
    let (_, names) = peers_reply(&mut h);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0].name, "peer.test");
    assert_eq!(names[0].retry_in, Some(Duration::from_millis(1500)));

    h.handle(Event::Unresolved {
        name: "peer.test".into(),
        reason: "still no network".into(),
        retry_in: Duration::from_secs(4),
    });
    let (_, names) = peers_reply(&mut h);
    assert_eq!(names[0].reason, "still no network");
    assert_eq!(names[0].retry_in, Some(Duration::from_secs(4)));

    let actions = h.handle(Event::Resolved {
        name: "peer.test".into(),
        addr: ip(7),
    });
    assert_eq!(dials(&actions), vec![ip(7)]);
    assert!(peers_reply(&mut h).1.is_empty());
    // A bootstrap peer: still wanted after many failures.
    let mut redials = 0;
    for _ in 0..20 {
        h.handle(Event::ConnectFailed {
            dialect: Dialect::Standard,
            addr: ip(7),
            reason: "refused".into(),
            unanswered: false,
        });
        let redialed = (0..2000).any(|_| !dials(&h.advance(Duration::from_millis(100))).is_empty());
        redials += usize::from(redialed);
    }
    assert_eq!(redials, 20);
}

/// Outbound connections, established and being dialed, stay within what
/// the open-file limit leaves (`max_outbound`), however many addresses a
/// PeerList names; a lost one makes room for the next dial.
#[test]
fn outbound_connections_stay_within_their_budget() {
    let mut settings = config(ip(1), Vec::new());
    settings.max_outbound = 3;
    let mut h = Harness::with_config(settings, History::new());
    let source = h.connect(1, ip(2), Direction::Inbound);
    let listed: Vec<Ipv4Addr> = (10..40).map(ip).collect();
    let first = dials(&h.receive(source, Message::PeerList(listed)));
    assert_eq!(first.len(), 3, "{first:?}");
    // Two connect: two outbound and one dial in flight, so no new dial.
    for (id, &addr) in first[..2].iter().enumerate() {
        let actions = h.connected(10 + id as u64, addr, ip(1), Direction::Outbound);
        assert!(dials(&actions).is_empty(), "{actions:?}");
    }
    assert!(dials(&h.advance(Duration::from_secs(1))).is_empty());
    // The third dial fails: room for one more.
    let actions = h.handle(Event::ConnectFailed {
        dialect: Dialect::Standard,
        addr: first[2],
        reason: "refused".into(),
        unanswered: false,
    });
    assert_eq!(dials(&actions).len(), 1, "{actions:?}");
    // An established connection ends: room for one more again.
    let actions = h.handle(Event::Disconnected {
        conn: ConnId(10),
        ending: Ending::ClosedByPeer,
    });
    assert_eq!(dials(&actions).len(), 1, "{actions:?}");
}

/// With no outbound connection left to open and dials waiting, a peer we
/// dialed that has said nothing for 30 s gives way (the oldest first); one
/// that spoke never does.
#[test]
fn a_silent_outbound_peer_gives_way_when_dials_wait() {
    let mut settings = config(ip(1), vec![ip(10), ip(11)]);
    settings.max_outbound = 2;
    let mut h = Harness::with_config(settings, History::new());
    let closes = |actions: &[Action]| {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Close { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let speaking = h.connect(10, ip(10), Direction::Outbound);
    h.advance(Duration::from_secs(1));
    let silent = h.connect(11, ip(11), Direction::Outbound);
    h.receive(speaking, Message::PeerList(vec![ip(20), ip(21)]));
    // Nobody has been silent for 30 s yet.
    let mut closed = Vec::new();
    for _ in 0..28 {
        closed.extend(closes(&h.advance(Duration::from_secs(1))));
    }
    assert!(closed.is_empty(), "{closed:?}");
    for _ in 0..3 {
        closed.extend(closes(&h.advance(Duration::from_secs(1))));
    }
    assert_eq!(closed.first(), Some(&silent), "{closed:?}");
    assert!(!closed.contains(&speaking), "{closed:?}");
}

/// Two nodes that dial each other keep one connection: the other one's
/// end is no failure of the address, which is not tried again.
#[test]
fn the_end_of_a_duplicate_connection_is_no_failure() {
    for (first, second) in [
        (Direction::Outbound, Direction::Inbound),
        (Direction::Inbound, Direction::Outbound),
    ] {
        let mut h = Harness::with_config(config(ip(1), vec![ip(2)]), History::new());
        h.connected(1, ip(2), ip(1), first);
        h.connected(2, ip(2), ip(1), second);
        for id in [1, 2] {
            h.handle(Event::Disconnected {
                conn: ConnId(id),
                ending: Ending::ClosedByUs,
            });
            if dialing(&mut h).is_empty() {
                // The first to end was the duplicate; the second is a
                // real loss, counted.
                assert_eq!(id, 1, "{first:?} then {second:?}");
                continue;
            }
            assert_eq!(id, 2, "{first:?} then {second:?}: {:?}", dialing(&mut h));
            assert_eq!(dialing(&mut h)[0].failures, 1);
        }
    }
}

#[test]
fn an_empty_history_is_answered_with_count_zero() {
    let mut h = Harness::new(History::new());
    let conn = h.connect(1, ip(2), Direction::Inbound);
    let actions = h.receive(conn, Message::ArchiveRequest);
    assert_eq!(
        sent(&actions)[0],
        (conn, Message::ArchiveResponse(History::new()))
    );
}

#[test]
fn adopts_a_longer_valid_history_and_ignores_shorter_equal_or_invalid_ones() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["one", "two"]);
    let longer = extend(&miner, &base, &["three"]);
    let mut h = Harness::new(base.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);

    // Invalid: a digest changed. Ignored, connection kept, no notification
    // (the peer never sent one).
    let forged = flip_bit(&longer, longer.wire_len() - 1);
    let actions = h.answer(conn, &forged);
    assert_eq!(h.node.history(), &base);
    assert_eq!(closes(&actions), 0);
    assert!(sent(&actions).is_empty(), "{actions:?}");

    // Equal and same: nothing. Shorter: ignored, and the peer gets ours.
    assert!(
        h.receive(conn, Message::ArchiveResponse(base.clone()))
            .is_empty()
    );
    let mut shorter = base.clone();
    shorter.truncate(1);
    let actions = h.receive(conn, Message::ArchiveResponse(shorter));
    assert_eq!(h.node.history(), &base);
    assert_eq!(archives_to(&actions), [conn]);

    // Longer and valid: adopted, persisted from the common prefix, printed.
    let actions = h.receive(conn, Message::ArchiveResponse(longer.clone()));
    assert_eq!(h.node.history(), &longer);
    assert_eq!(h.history_saves.last(), Some(&2));
    assert_eq!(shown(&actions), ["#2 three"]);
}

#[test]
fn a_peer_that_sends_notifications_is_told_why_its_history_was_ignored() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["one"]);
    let mut h = Harness::new(History::new());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    h.receive(conn, Message::Notification(b"hello".to_vec()));
    let forged = flip_bit(&base, 1);
    let actions = h.receive(conn, Message::ArchiveResponse(forged));
    let notes: Vec<Message> = sent(&actions).into_iter().map(|(_, m)| m).collect();
    assert_eq!(notes.len(), 1);
    let Message::Notification(text) = &notes[0] else {
        panic!("{notes:?}")
    };
    assert!(
        String::from_utf8_lossy(text).starts_with("history ignored: chat 0 is invalid"),
        "{}",
        text.escape_ascii()
    );
    assert_eq!(closes(&actions), 0);
}

#[test]
fn mining_restarts_on_a_changed_history_and_a_displaced_own_chat_is_mined_again() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["zero"]);
    let mut h = Harness::new(base.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);

    let actions = h.chat("mine");
    let [(job, prev, text)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (prev.as_slice(), text),
        (base.tail_for_append(), &texts("mine"))
    );

    // The history grows under the job: cancelled, restarted on the new one.
    let grown = extend(&miner, &base, &["other"]);
    let actions = h.answer(conn, &grown);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CancelMining { job: j } if j == job))
    );
    let [(job, prev, _)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(prev.as_slice(), grown.tail_for_append());

    // The job finds its chat: appended, persisted, sent to the peer.
    let chat = miner.mine_next(&grown, b"mine");
    let actions = h.mined(*job, &chat);
    assert_eq!(h.node.history().len(), 3);
    assert_eq!(archives_to(&actions), [conn]);
    assert_eq!(h.node.own().pending(), 0);

    // A longer history without our chat: it is pending and mined again on top.
    let rival = extend(&miner, &grown, &["x", "y"]);
    let actions = h.receive(conn, Message::ArchiveResponse(rival.clone()));
    assert_eq!(h.node.history(), &rival);
    assert_eq!(h.node.own().pending(), 1);
    let [(_, prev, text)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (prev.as_slice(), text),
        (rival.tail_for_append(), &texts("mine"))
    );
}

#[test]
fn an_own_chat_that_comes_back_in_a_longer_history_is_not_mined_twice() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["zero"]);
    let mut h = Harness::new(base.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    let actions = h.chat("mine");
    let job = started_mining(&actions)[0].0;
    let chat = miner.mine_next(&base, b"mine");
    h.mined(job, &chat);
    let mut with_ours = base.clone();
    with_ours.push(&chat);
    let longer = extend(&miner, &with_ours, &["after"]);
    let actions = h.receive(conn, Message::ArchiveResponse(longer));
    assert!(started_mining(&actions).is_empty());
    assert_eq!(h.node.own().pending(), 0);
}

#[test]
fn a_stale_mining_result_is_dropped() {
    let miner = Miner::new(1);
    let mut h = Harness::new(History::new());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    let job = started_mining(&h.chat("a"))[0].0;
    let other = extend(&miner, &History::new(), &["b"]);
    h.answer(conn, &other);
    let stale = miner.mine_next(&History::new(), b"a");
    h.mined(job, &stale);
    assert_eq!(h.node.history(), &other);
}

/// A chat mined on `base` whose digest is lower (or higher) than `than`'s.
fn rival_chat(miner: &Miner, base: &History, than: &Chat, lower: bool) -> Chat {
    (0..)
        .map(|i| miner.mine_next(base, format!("theirs {i}").as_bytes()))
        .find(|c| (c.digest() < than.digest()) == lower)
        .expect("digests are random")
}

#[test]
fn a_losing_equal_length_fork_is_ignored_and_a_winning_one_adopted_our_chat_mined_again() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["base"]);
    let mut h = Harness::new(base.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    let other = h.connect(2, ip(3), Direction::Outbound);
    let job = started_mining(&h.chat("ours"))[0].0;
    let ours = miner.mine_next(&base, b"ours");
    h.mined(job, &ours);
    let mut mine_side = base.clone();
    mine_side.push(&ours);

    // A fork of the same length that loses the tie-break: ignored; the
    // peer was sent ours when we mined it.
    let mut losing = base.clone();
    losing.push(&rival_chat(&miner, &base, &ours, false));
    let actions = h.answer(conn, &losing);
    assert_eq!(h.node.history(), &mine_side);
    assert!(archives_to(&actions).is_empty() && started_mining(&actions).is_empty());

    // One that wins: adopted and relayed, and our chat, which it lacks, is
    // mined again on top of it.
    let mut winning = base.clone();
    winning.push(&rival_chat(&miner, &base, &ours, true));
    let actions = h.receive(conn, Message::ArchiveResponse(winning.clone()));
    assert_eq!(h.node.history(), &winning);
    // Pushed by a peer whose PeerList we lack: asked for it first.
    assert!(archives_to(&actions).is_empty());
    assert!(sent(&actions).contains(&(conn, Message::PeerRequest)));
    let relayed = h.receive(conn, Message::PeerList(vec![]));
    assert_eq!(archives_to(&relayed), [other]);
    assert_eq!(
        shown(&actions)[0],
        "1 chat from #1 on replaced by a rival history of the same length (it wins the \
         tie-break); 1 of yours will be mined again"
    );
    let [(job, prev, text)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (prev.as_slice(), text),
        (winning.tail_for_append(), &texts("ours"))
    );

    // Mined: the fork plus our chat is longer than both sides.
    let again = miner.mine_next(&winning, b"ours");
    let actions = h.mined(*job, &again);
    let mut merged = winning.clone();
    merged.push(&again);
    assert_eq!(h.node.history(), &merged);
    assert_eq!(h.node.own().pending(), 0);
    assert_eq!(archives_to(&actions), [conn, other]);
    miner::validate(h.node.history()).expect("valid");
}

/// A history pushed by a peer whose PeerList we lack (it has just
/// connected, or restarted) waits for the list before it is relayed, so
/// that the peers the source reaches itself are not sent it again; the
/// wait is bounded.
#[test]
fn a_pushed_history_is_relayed_once_the_sources_peer_list_comes_or_the_wait_ends() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["base"]);
    let longer = extend(&miner, &base, &["news"]);
    let longest = extend(&miner, &longer, &["more news"]);
    let mut h = Harness::new(base.clone());
    let source = h.connect(1, ip(2), Direction::Outbound);
    let reached = h.connect(2, ip(3), Direction::Outbound);
    let other = h.connect(3, ip(4), Direction::Outbound);
    h.answer(source, &base);

    // The list comes: the peer it names is left out.
    let actions = h.receive(source, Message::ArchiveResponse(longer));
    assert!(archives_to(&actions).is_empty());
    assert!(sent(&actions).contains(&(source, Message::PeerRequest)));
    let relayed = h.receive(source, Message::PeerList(vec![ip(3)]));
    assert_eq!(archives_to(&relayed), [other]);

    // The list is fresh now: the next push is relayed at once.
    let actions = h.receive(source, Message::ArchiveResponse(longest.clone()));
    assert_eq!(archives_to(&actions), [other]);

    // A new source that never answers: relayed to all but it once the
    // wait is over, not before.
    let silent = h.connect(4, ip(5), Direction::Outbound);
    h.answer(silent, &longest);
    let newest = extend(&miner, &longest, &["newest"]);
    let actions = h.receive(silent, Message::ArchiveResponse(newest));
    assert!(archives_to(&actions).is_empty());
    assert!(archives_to(&h.advance(Duration::from_millis(100))).is_empty());
    let mut relayed = archives_to(&h.advance(Duration::from_millis(300)));
    relayed.sort();
    assert_eq!(relayed, [source, reached, other]);
}

/// Two forks of one length with none of our chats (the same chats in
/// another order, say) would keep the network split for good if the
/// winner were not taken: it is.
#[test]
fn a_winning_fork_without_our_chats_is_adopted_too() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["base"]);
    let someone = miner.mine_next(&base, b"someone's");
    let mut held = base.clone();
    held.push(&someone);
    let mut h = Harness::new(held.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    let mut winning = base.clone();
    winning.push(&rival_chat(&miner, &base, &someone, true));
    let actions = h.answer(conn, &winning);
    assert_eq!(h.node.history(), &winning);
    assert!(started_mining(&actions).is_empty());
    assert_eq!(h.history_saves, [1]);
    // And it does not go back.
    h.answer(conn, &held);
    assert_eq!(h.node.history(), &winning);
}

#[test]
fn a_long_history_is_adopted_and_summed_up_on_the_screen() {
    let miner = Miner::new(1);
    let texts: Vec<String> = (0..70).map(|i| format!("chat {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let big = extend(&miner, &History::new(), &refs);
    let mut h = Harness::new(History::new());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    let actions = h.answer(conn, &big);
    assert_eq!(h.node.history(), &big);
    let lines = shown(&actions);
    assert_eq!(lines[0], "received chats #0 to #49 (see 'hist'); then:");
    assert_eq!(
        lines[1..],
        (50..70)
            .map(|i| format!("#{i} chat {i}"))
            .collect::<Vec<_>>()[..]
    );
}

#[test]
fn peer_lists_list_peers_and_drive_capped_dialing() {
    let mut h = Harness::new(History::new());
    let a = h.connect(1, ip(2), Direction::Outbound);
    // An inbound peer is not dialed while it is connected (issue 18: a
    // second connection costs a peer that keeps one entry per address
    // its entry).
    let actions = h.connected(2, ip(3), ip(1), Direction::Inbound);
    assert!(
        !actions.iter().any(|x| matches!(x, Action::Connect { .. })),
        "{actions:?}"
    );
    let actions = h.receive(a, Message::PeerRequest);
    assert_eq!(sent(&actions), [(a, Message::PeerList(vec![ip(3)]))]);

    let offered: Vec<Ipv4Addr> = [1, 2, 3, 10, 11, 12, 13, 14, 10]
        .into_iter()
        .map(ip)
        .collect();
    let actions = h.receive(a, Message::PeerList(offered));
    let dials_now = dials(&actions);
    // Own address, connected peers and duplicates skipped; four attempts
    // at a time.
    assert_eq!(dials_now, [ip(10), ip(11), ip(12), ip(13)]);
    let actions = h.handle(Event::ConnectFailed {
        dialect: Dialect::Standard,
        addr: ip(10),
        reason: "refused".into(),
        unanswered: false,
    });
    assert!(matches!(actions[..], [Action::Connect { addr, .. }] if addr == ip(14)));
    // Once the inbound peer has gone, it is dialed once to learn whether
    // it listens (queued behind the discovery in flight).
    h.advance(Duration::from_secs(11));
    h.handle(Event::Disconnected {
        conn: ConnId(2),
        ending: Ending::ClosedByPeer,
    });
    let mut later = Vec::new();
    for addr in [11, 12, 13, 14] {
        later.extend(dials(&h.handle(Event::ConnectFailed {
            dialect: Dialect::Standard,
            addr: ip(addr),
            reason: "refused".into(),
            unanswered: false,
        })));
    }
    assert_eq!(later, [ip(3)]);
}

fn closed(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|x| match x {
            Action::Close { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

#[test]
fn simultaneous_dials_keep_the_connection_from_the_lower_address() {
    // We are 127.40.0.1, lower than the peer: our outbound survives; their
    // inbound is kept unused, for its dialer to close by the same rule.
    let mut h = Harness::new(History::new());
    h.connect(1, ip(5), Direction::Outbound);
    let actions = h.connected(2, ip(5), ip(1), Direction::Inbound);
    assert!(closed(&actions).is_empty(), "{actions:?}");
    let rows = h.node.peers.rows(h.now);
    assert_eq!(rows.iter().filter(|r| r.duplicate).count(), 1, "{rows:?}");

    // Against a lower peer, its dial survives: our outbound is closed.
    let mut h = Harness::with_config(config(ip(9), vec![]), History::new());
    h.connected(1, ip(5), ip(9), Direction::Outbound);
    let actions = h.connected(2, ip(5), ip(9), Direction::Inbound);
    assert_eq!(closed(&actions), [ConnId(1)], "{actions:?}");
    assert!(
        sent(&actions).is_empty(),
        "an inbound primary is greeted later"
    );
    // And when that closes, nothing is left over.
    h.handle(Event::Disconnected {
        conn: ConnId(1),
        ending: Ending::ClosedByPeer,
    });
    let actions = h.receive(ConnId(2), Message::PeerRequest);
    assert_eq!(sent(&actions)[0], (ConnId(2), Message::PeerList(vec![])));
}

#[test]
fn a_peer_that_dials_again_gets_its_new_connection_used_and_none_closed() {
    // Our connection to 127.40.0.9 is long established (no dial race):
    // the peer dials us, again and again. Nothing it may be using is
    // closed; its latest connection is the one we send on; at most
    // MAX_DUPLICATES are kept beside it, the oldest going first.
    let mut h = Harness::with_config(config(ip(9), vec![]), History::new());
    h.connected(1, ip(5), ip(9), Direction::Outbound);
    h.advance(Duration::from_secs(30));
    let mut gone = Vec::new();
    for id in 2..=7 {
        gone.extend(closed(&h.connected(id, ip(5), ip(9), Direction::Inbound)));
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(gone, [ConnId(1), ConnId(2)], "the two oldest, past the cap");
    let primary: Vec<_> = h
        .node
        .peers
        .rows(h.now)
        .into_iter()
        .filter(|r| !r.duplicate)
        .collect();
    assert_eq!(primary.len(), 1);
    assert_eq!(primary[0].direction, Direction::Inbound);
    // When the one in use goes, the newest left takes its place.
    h.handle(Event::Disconnected {
        conn: ConnId(7),
        ending: Ending::ClosedByPeer,
    });
    let rows = h.node.peers.rows(h.now);
    assert_eq!(rows.iter().filter(|r| !r.duplicate).count(), 1, "{rows:?}");
}

#[test]
fn a_connection_to_ourselves_is_closed_and_never_retried() {
    let mut h = Harness::with_config(config(Ipv4Addr::UNSPECIFIED, vec![ip(7)]), History::new());
    assert!(matches!(h.actions()[..], [Action::Connect { addr, .. }] if addr == ip(7)));
    // The reactor matched the socket pair: our dial of 127.40.0.7 came back.
    let actions = h.handle(Event::SelfDialed {
        outbound: ConnId(1),
        inbound: ConnId(2),
        addr: ip(7),
    });
    let closed: Vec<ConnId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [ConnId(1), ConnId(2)], "{actions:?}");
    for conn in closed {
        h.handle(Event::Disconnected {
            conn,
            ending: Ending::ClosedByUs,
        });
    }
    let actions = h.advance(Duration::from_secs(300));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_client_on_our_own_ip_address_is_an_ordinary_peer() {
    // Listening on every address, a client from 127.0.0.1 to 127.0.0.1 has
    // the same IP address at both ends, and is still someone else.
    let mut h = Harness::with_config(config(Ipv4Addr::UNSPECIFIED, vec![]), History::new());
    let actions = h.connected(1, ip(7), ip(7), Direction::Inbound);
    assert_eq!(closes(&actions), 0, "{actions:?}");
    let actions = h.receive(ConnId(1), Message::PeerRequest);
    assert_eq!(sent(&actions)[0], (ConnId(1), Message::PeerList(vec![])));
}

#[test]
fn a_peer_silent_on_our_archive_request_gets_our_history() {
    let miner = Miner::new(1);
    let base = extend(&miner, &History::new(), &["hello"]);
    let mut h = Harness::new(base.clone());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    assert!(archives_to(&h.advance(Duration::from_secs(1))).is_empty());
    assert_eq!(archives_to(&h.advance(Duration::from_secs(3))), [conn]);
    assert!(
        archives_to(&h.advance(Duration::from_secs(3))).is_empty(),
        "only once"
    );
}

#[test]
fn timers_send_peer_requests_every_five_seconds_and_a_repair_request_every_minute() {
    let mut h = Harness::new(History::new());
    let conn = h.connect(1, ip(2), Direction::Outbound);
    h.receive(conn, Message::ArchiveResponse(History::new()));
    let mut peer_requests = 0;
    let mut archive_requests = 0;
    for _ in 0..600 {
        for (_, message) in sent(&h.advance(Duration::from_millis(100))) {
            match message {
                Message::PeerRequest => peer_requests += 1,
                Message::ArchiveRequest => archive_requests += 1,
                _ => {}
            }
        }
    }
    assert_eq!((peer_requests, archive_requests), (12, 1));
}

#[test]
fn bootstrap_peers_are_retried_with_doubling_jittered_backoff() {
    let mut h = Harness::with_config(config(ip(1), vec![ip(2)]), History::new());
    let mut attempts = vec![];
    let start = h.now;
    for _ in 0..300 {
        let actions = h.advance(Duration::from_millis(100));
        for a in actions {
            if let Action::Connect { addr, .. } = a {
                attempts.push((h.now - start).as_millis() / 100);
                h.handle(Event::ConnectFailed {
                    dialect: Dialect::Standard,
                    addr,
                    reason: "refused".into(),
                    unanswered: false,
                });
            }
        }
    }
    // Waits of 1, 2, 4, 8 and 16 seconds times 1 to 1.5 (in 100 ms ticks).
    let gaps: Vec<u128> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), 4, "{attempts:?}");
    for (k, gap) in gaps.iter().enumerate() {
        let base = 10 << k;
        assert!(
            *gap >= base && *gap <= base * 3 / 2 + 1,
            "gap {k}: {gaps:?}"
        );
    }
}

#[test]
fn a_peer_that_closes_at_once_is_redialed_with_backoff() {
    let mut h = Harness::with_config(config(ip(1), vec![ip(2)]), History::new());
    let mut dials = 0;
    let mut next = 1;
    for _ in 0..300 {
        for a in h.advance(Duration::from_millis(100)) {
            if let Action::Connect { addr, .. } = a {
                dials += 1;
                // It accepts, then closes at once.
                h.connected(next, addr, ip(1), Direction::Outbound);
                h.handle(Event::Disconnected {
                    conn: ConnId(next),
                    ending: Ending::ClosedByPeer,
                });
                next += 1;
            }
        }
    }
    assert!((4..=6).contains(&dials), "{dials} connections in 30 s");
}

/// The replies to control client `id` among `actions`.
fn replies_to(actions: &[Action], id: u64) -> Vec<Reply> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply {
                to: Origin::Control(to),
                reply,
            } if *to == id => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

/// The lines for the screen, as the reactor prints them (time aside).
fn printed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Print(line) => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_banned_address_is_neither_kept_nor_dialed_nor_passed_on_until_its_ban_ends() {
    let mut h = Harness::new(History::new());
    let banned = h.connect(1, ip(2), Direction::Outbound);
    let other = h.connect(2, ip(3), Direction::Inbound);
    let command = Command::Ban {
        addr: ip(2),
        span: Some(Duration::from_secs(60)),
    };
    let actions = h.handle(Event::Command {
        from: Origin::Control(9),
        command,
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Close { conn, .. } if *conn == banned))
    );
    assert!(actions.iter().any(
        |a| matches!(a, Action::Save(Save::Bans(rows)) if rows.len() == 1 && rows[0].addr == ip(2))
    ));
    assert!(matches!(&replies_to(&actions, 9)[..], [Reply::Done { .. }]));
    h.handle(Event::Disconnected {
        conn: banned,
        ending: Ending::ClosedByUs,
    });
    // It dials us: closed at once, and not a peer.
    let actions = h.connected(3, ip(2), ip(1), Direction::Inbound);
    assert_eq!(closes(&actions), 1, "{actions:?}");
    // Named in a PeerList: not dialed; not named in ours.
    let actions = h.receive(other, Message::PeerList(vec![ip(2), ip(4)]));
    assert!(!dials(&actions).contains(&ip(2)), "{actions:?}");
    let lists: Vec<Vec<Ipv4Addr>> = sent(&h.receive(other, Message::PeerRequest))
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::PeerList(addrs) => Some(addrs),
            _ => None,
        })
        .collect();
    assert!(lists.len() == 1 && !lists[0].contains(&ip(2)), "{lists:?}");
    // `connect` refuses it while banned.
    let actions = h.handle(Event::Command {
        from: Origin::Control(9),
        command: Command::Connect(ip(2)),
    });
    assert!(matches!(
        &replies_to(&actions, 9)[..],
        [Reply::Error { .. }]
    ));
    // The ban ends on time; the bans are saved without it.
    let actions = h.advance(Duration::from_secs(61));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Save(Save::Bans(rows)) if rows.is_empty()))
    );
    let actions = h.handle(Event::Command {
        from: Origin::Control(9),
        command: Command::Connect(ip(2)),
    });
    assert_eq!(dials(&actions), [ip(2)]);
}

#[test]
fn a_chat_awaited_at_a_stage_is_answered_there_with_its_index_and_digest() {
    let miner = Miner::new(1);
    let mut h = Harness::new(History::new());
    let ask = |stage| Event::Command {
        from: Origin::Control(5),
        command: Command::ChatUntil {
            text: b"hi".to_vec(),
            stage,
        },
    };
    let actions = h.handle(ask(crate::command::Stage::Sent));
    assert!(replies_to(&actions, 5).is_empty(), "saved is not enough");
    let [(job, ..)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    let chat = miner.mine_next(&History::new(), b"hi");
    let actions = h.mined(*job, &chat);
    assert!(replies_to(&actions, 5).is_empty(), "no peer yet: not sent");
    // A peer: it is sent the history with the chat.
    let mut actions = h.connected(1, ip(2), ip(1), Direction::Outbound);
    actions.extend(h.receive(ConnId(1), Message::ArchiveResponse(History::new())));
    let digest: String = chat.digest().iter().map(|b| format!("{b:02x}")).collect();
    let placed = report::Placed {
        index: 0,
        digest,
        pending: 0,
    };
    assert_eq!(replies_to(&actions, 5), [Reply::Sent(placed)]);
    // At `mined`: answered once mined, with the index it got.
    let actions = h.handle(ask(crate::command::Stage::Mined));
    let [(job, ..)] = &started_mining(&actions)[..] else {
        panic!("{actions:?}")
    };
    let again = miner.mine_next(h.node.history(), b"hi");
    let actions = h.mined(*job, &again);
    let [Reply::Mined(placed)] = &replies_to(&actions, 5)[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(placed.index, 1);
}

/// A person's terminal: a chat typed with no peer says it waits for one;
/// once mined it is shown once the history has been quiet, with the
/// mining figures; the feed's lines go to control followers only.
#[test]
fn the_room_shows_a_mined_chat_once_the_history_is_quiet() {
    let mut cfg = config(ip(1), vec![]);
    cfg.room = true;
    let mut h = Harness::with_config(cfg, History::new());
    let actions = h.chat("hi");
    assert_eq!(
        printed(&actions)[0],
        "no peer is connected: the chat is mined here and waits for one ('peers' shows the \
         addresses being tried)"
    );
    let chat = miner::Miner::new(1).mine_next(&History::new(), b"hi");
    let actions = h.mined(0, &chat);
    assert!(printed(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        shown(&actions),
        ["#0 hi (mined: 1 tries in 1.0 ms, 0.0 MH/s)"]
    );
    let actions = h.advance(Duration::from_millis(300));
    assert_eq!(
        printed(&actions),
        ["hi (mined here: 1 tries in 1.0 ms, 0.0 MH/s)"]
    );
}

/// The dials asked for, with their ports.
fn dials_with_dialect(actions: &[Action]) -> Vec<(Ipv4Addr, Dialect)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { addr, dialect } => Some((*addr, *dialect)),
            _ => None,
        })
        .collect()
}

/// The extension messages sent to `conn`, decoded, and the `from` of each
/// Chats sent.
fn relayed_to(actions: &[Action], to: ConnId) -> (Vec<wire::RelayMessage>, Vec<usize>) {
    let (mut messages, mut chats) = (Vec::new(), Vec::new());
    for action in actions {
        match action {
            Action::Send {
                conn,
                payload: Payload::Message(bytes),
            } if *conn == to => {
                let mut decoder = wire::FrameDecoder::relay(usize::MAX, usize::MAX);
                if let Ok(Some(wire::Frame::Relay(m))) = decoder.next(&mut &bytes[..]) {
                    messages.push(m);
                }
            }
            Action::Send {
                conn,
                payload: Payload::Chats { from, .. },
            } if *conn == to => chats.push(*from),
            Action::Send {
                conn,
                payload: Payload::Archive { .. },
            } if *conn == to => panic!("a full archive unasked to an extension peer"),
            _ => {}
        }
    }
    (messages, chats)
}

/// A peer's relay port refused: its network port is dialed at once, and
/// for the next 10 minutes it is dialed there first.
#[test]
fn a_refused_relay_port_is_followed_by_the_network_port_at_once() {
    let mut cfg = config(ip(1), vec![ip(2)]);
    cfg.relay_port = Some(51512);
    let mut h = Harness::with_config(cfg, History::new());
    assert_eq!(dials_with_dialect(&h.actions()), [(ip(2), Dialect::Relay)]);
    let actions = h.handle(Event::ConnectFailed {
        addr: ip(2),
        reason: "connection refused".into(),
        unanswered: false,
        dialect: Dialect::Relay,
    });
    assert_eq!(dials_with_dialect(&actions), [(ip(2), Dialect::Standard)]);
    h.connected(5, ip(2), ip(1), Direction::Outbound);
    let actions = h.handle(Event::Disconnected {
        conn: ConnId(5),
        ending: Ending::ClosedByPeer,
    });
    let later = h.advance(Duration::from_secs(3));
    let dialed: Vec<_> = dials_with_dialect(&actions)
        .into_iter()
        .chain(dials_with_dialect(&later))
        .collect();
    assert!(
        dialed.iter().all(|&(_, d)| d == Dialect::Standard),
        "{dialed:?}"
    );
}

/// An extension peer: Hello first, then our tip; a chat mined here goes to
/// it as the chats past the tip it told us, never as the whole history.
#[test]
fn an_extension_peer_is_pushed_the_chats_past_its_tip() {
    let base = extend(&Miner::new(1), &History::new(), &["one", "two", "three"]);
    let mut cfg = config(ip(1), vec![]);
    cfg.relay_port = Some(51512);
    let mut h = Harness::with_config(cfg, base.clone());
    let peer = ConnId(9);
    let actions = h.handle(Event::Connected {
        conn: peer,
        addr: ip(3),
        local: ip(1),
        direction: Direction::Inbound,
        dialect: Dialect::Relay,
    });
    assert_eq!(
        relayed_to(&actions, peer).0,
        [wire::RelayMessage::Hello { version: 1 }]
    );
    let actions = h.handle(Event::Relayed {
        conn: peer,
        message: wire::RelayMessage::Hello { version: 1 },
    });
    let tip = Tip::of(&base);
    assert_eq!(
        relayed_to(&actions, peer).0,
        [wire::RelayMessage::Tip {
            len: 3,
            digest: tip.digest
        }]
    );
    h.handle(Event::Relayed {
        conn: peer,
        message: wire::RelayMessage::Tip {
            len: 3,
            digest: tip.digest,
        },
    });
    h.chat("four");
    let chat = Miner::new(1).mine_next(&base, b"four");
    let actions = h.mined(0, &chat);
    assert_eq!(relayed_to(&actions, peer).1, [3]);
}
