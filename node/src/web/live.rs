//! The live side of the page: one followed `hist` on the control socket,
//! fanned out to every open page ([`follow`]); each page's stream of
//! Server-Sent Events ([`stream`]), which resumes after the last chat the
//! page holds (`Last-Event-ID`, the index of that chat; `-1` for none), so
//! that a reconnect, a reload or a node restart is a catch-up with no gap
//! and no duplicate; and the figures behind the two charts.
//!
//! A page's events wait in a queue of [`QUEUE`]: one that takes none of
//! them for the read timeout, or falls [`FANOUT`] events behind the node,
//! is dropped (said at info) and its connection closed; its browser
//! reconnects and catches up.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use log::info;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::{sleep, timeout};

use super::Shared;
use super::routes::refuse;
use crate::protocol::{HistChat, Line, Reply};
use axum::http::StatusCode;

/// Events of the node kept for pages that have not taken them yet.
pub const FANOUT: usize = 1024;
/// Events waiting for one page.
pub const QUEUE: usize = 256;
/// Pages following at once; one more is refused (503).
pub const MAX_STREAMS: usize = 32;
/// Chats a page may lack and still catch up one by one; further behind,
/// it is told to load the latest chats again (`reset`).
pub const MAX_CATCH_UP: usize = 1000;
/// Chats asked of the node at once while catching up.
const CATCH_UP_PAGE: usize = 200;
/// Arrival times kept (the oldest go first).
const MAX_TIMES: usize = 100_000;
/// How often the peers chart gets a point, and how many it keeps (an hour).
const PEERS_EVERY: Duration = Duration::from_secs(10);
const PEERS_POINTS: usize = 360;
/// The wait before following again after the follow ended.
const FOLLOW_AGAIN: Duration = Duration::from_secs(1);

/// A change of the history, as the node said it, for every page.
#[derive(Clone, Debug)]
pub enum Change {
    /// A `chat`, `switched` or `notice` event.
    Line(Arc<Line>),
    /// The follow (re)started with a history of this many chats: pages
    /// catch up to it, in case events went by unseen.
    Resync(usize),
}

/// What the pages share.
pub struct Live {
    changes: broadcast::Sender<Change>,
    /// Arrival times (ms since the Unix epoch) of chats seen since the
    /// page's server started, by index.
    times: Mutex<BTreeMap<usize, u64>>,
    /// (seconds since the Unix epoch, peers connected), oldest first.
    peers: Mutex<VecDeque<(u64, usize)>>,
    streams: AtomicUsize,
}

/// A chat as the page gets it.
#[derive(Serialize)]
pub struct PageChat {
    #[serde(flatten)]
    chat: HistChat,
    /// When this node took it in (ms since the Unix epoch), if since the
    /// page's server started.
    time: Option<u64>,
    /// Mined by this node just now.
    mined: bool,
}

/// The connection of a request, closed when notified (a page dropped).
#[derive(Clone, Default)]
pub struct Kill(pub Arc<Notify>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Live {
    /// Nothing seen yet.
    pub fn new() -> Live {
        Live {
            changes: broadcast::channel(FANOUT).0,
            times: Mutex::new(BTreeMap::new()),
            peers: Mutex::new(VecDeque::new()),
            streams: AtomicUsize::new(0),
        }
    }

    /// `chat` as the page shows it, with its arrival time if known.
    pub fn page_chat(&self, chat: HistChat, mined: bool) -> PageChat {
        let time = self
            .times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&chat.index)
            .copied();
        PageChat { chat, time, mined }
    }

    fn saw(&self, line: &Line) {
        let mut times = self.times.lock().unwrap_or_else(PoisonError::into_inner);
        match line {
            Line::Chat { index, .. } => {
                times.insert(*index, now_ms());
                if times.len() > MAX_TIMES {
                    times.pop_first();
                }
            }
            Line::Switched { from, .. } => {
                times.split_off(from);
            }
            _ => {}
        }
    }

    /// The charts: chats taken in per minute over the last hour (60
    /// counts, oldest first, of the chats seen since the page's server
    /// started), and the peers connected over the last hour (points
    /// `[seconds since the Unix epoch, peers]`, every 10 s).
    pub fn charts(&self) -> serde_json::Value {
        let now = now_ms();
        let mut minutes = vec![0u32; 60];
        let times = self.times.lock().unwrap_or_else(PoisonError::into_inner);
        for &time in times.values() {
            let ago = now.saturating_sub(time) / 60_000;
            if ago < 60 {
                minutes[59 - ago as usize] += 1;
            }
        }
        drop(times);
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        json!({"minutes": minutes, "peers": *peers, "now": now / 1000})
    }
}

/// Follows the node's history for every page, again and again: the node
/// may drop a follower, or be too busy to take one for a while.
pub async fn follow(shared: Arc<Shared>) {
    loop {
        match shared.link.follow().await {
            Ok((history, mut follower)) => {
                let _ = shared.live.changes.send(Change::Resync(history));
                while let Some(line) = follower.next().await {
                    if matches!(line, Line::Received { .. }) {
                        continue;
                    }
                    shared.live.saw(&line);
                    let _ = shared.live.changes.send(Change::Line(Arc::new(line)));
                }
                info!("page: the node's live stream ended; following it again");
            }
            Err(why) => info!("page: cannot follow the node's history: {why}"),
        }
        sleep(FOLLOW_AGAIN).await;
    }
}

/// Samples the number of peers for the chart, every [`PEERS_EVERY`].
pub async fn sample_peers(shared: Arc<Shared>) {
    loop {
        if let Ok(Reply::Status(status)) =
            shared.link.ask_reply(&json!({"command": "status"})).await
        {
            let mut peers = shared
                .live
                .peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            peers.push_back((now_ms() / 1000, status.peers));
            if peers.len() > PEERS_POINTS {
                peers.pop_front();
            }
        }
        sleep(PEERS_EVERY).await;
    }
}

/// A place among the [`MAX_STREAMS`], given back when dropped.
struct Place(Arc<Shared>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.live.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live stream of a page that holds the chats up to index `last`
/// (`-1`: none): the chats after it, then every change as it comes.
pub fn stream(shared: Arc<Shared>, last: i64, kill: Kill) -> Response {
    if shared.live.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        shared.live.streams.fetch_sub(1, Ordering::Relaxed);
        info!("page: a live stream refused: {MAX_STREAMS} are open");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{MAX_STREAMS} live streams are open; try again later"),
        );
    }
    let place = Place(shared.clone());
    let changes = shared.live.changes.subscribe();
    let (tx, rx) = mpsc::channel(QUEUE);
    let next = usize::try_from(last.saturating_add(1)).unwrap_or(0);
    tokio::spawn(async move {
        let mut feed = Feed {
            shared: place.0.clone(),
            tx,
            next,
        };
        let why = feed.run(changes).await.err().flatten();
        if let Some(why) = why {
            info!("page: a live stream dropped: {why}");
            kill.0.notify_one();
        }
        drop(place);
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One page's stream: `next` is the index of the next chat it needs.
struct Feed {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
    next: usize,
}

/// Why a stream ends: `None` when the page went away, else why it was
/// dropped.
type End = Option<String>;

impl Feed {
    async fn run(&mut self, mut changes: broadcast::Receiver<Change>) -> Result<(), End> {
        self.send(
            Event::default()
                .retry(Duration::from_secs(1))
                .comment("hello"),
        )
        .await?;
        let ask = json!({"command": "hist", "n": 0});
        let history = match self.shared.link.ask_reply(&ask).await {
            Ok(Reply::Hist { history, .. }) => history,
            Ok(_) | Err(_) => self.next,
        };
        self.catch_up(history).await?;
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = self.tx.closed() => return Ok(()),
            };
            match change {
                Ok(Change::Resync(history)) => self.catch_up(history).await?,
                Ok(Change::Line(line)) => self.take(&line).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(Some(format!(
                        "it fell {missed} events behind the node (at most {FANOUT} are kept)"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }

    async fn take(&mut self, line: &Line) -> Result<(), End> {
        match line {
            Line::Chat {
                index, text, mined, ..
            } => {
                if *index < self.next {
                    return Ok(());
                }
                self.catch_up(*index).await?;
                let chat = HistChat {
                    index: *index,
                    text: text.clone(),
                };
                let chat = self.shared.live.page_chat(chat, mined.is_some());
                self.send_chat(&chat).await
            }
            Line::Switched { from, .. } => {
                self.next = self.next.min(*from);
                let id = *from as i64 - 1;
                let data = serde_json::to_string(line).expect("events serialize");
                self.send(
                    Event::default()
                        .event("switched")
                        .id(id.to_string())
                        .data(data),
                )
                .await
            }
            Line::Notice { text } => {
                let data = json!({ "text": text }).to_string();
                self.send(Event::default().event("notice").data(data)).await
            }
            Line::Received { .. } | Line::Stopped => Ok(()),
        }
    }

    /// Sends the chats from `next` up to (not including) index `end`,
    /// asked of the node a page at a time; more than [`MAX_CATCH_UP`] of
    /// them, a `reset` instead, and the stream ends (the page loads the
    /// latest chats and follows again).
    async fn catch_up(&mut self, end: usize) -> Result<(), End> {
        if end.saturating_sub(self.next) > MAX_CATCH_UP {
            self.send(Event::default().event("reset").data("{}"))
                .await?;
            return Err(None);
        }
        while self.next < end {
            let n = CATCH_UP_PAGE.min(end - self.next);
            let ask = json!({"command": "hist", "n": n, "before": self.next + n});
            let chats = match self.shared.link.ask_reply(&ask).await {
                Ok(Reply::Hist { chats, .. }) => chats,
                Ok(_) | Err(_) => {
                    return Err(Some("the node did not give the chats it lacks".into()));
                }
            };
            let before = self.next;
            for chat in chats.into_iter().filter(|chat| chat.index >= before) {
                let chat = self.shared.live.page_chat(chat, false);
                self.send_chat(&chat).await?;
            }
            if self.next == before {
                // The history is shorter than thought (a switch to come).
                return Ok(());
            }
        }
        Ok(())
    }

    async fn send_chat(&mut self, chat: &PageChat) -> Result<(), End> {
        let data = serde_json::to_string(chat).expect("chats serialize");
        self.send(
            Event::default()
                .event("chat")
                .id(chat.chat.index.to_string())
                .data(data),
        )
        .await?;
        self.next = chat.chat.index + 1;
        Ok(())
    }

    async fn send(&self, event: Event) -> Result<(), End> {
        match timeout(self.shared.read_timeout, self.tx.send(event)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(format!(
                "it read none of its {QUEUE} waiting events for {} s",
                self.shared.read_timeout.as_secs_f64()
            ))),
        }
    }
}
