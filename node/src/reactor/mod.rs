//! The event loop: mio owns every socket; the protocol state machine
//! decides. Each round has one shape: take what happened (connections
//! accepted, bytes read, mail from the threads, the clock) as events, feed
//! them to the state machine, carry out every action it asks for, and
//! repeat until neither events nor actions are left; then write what is
//! queued. Every way a connection ends goes through [`Reactor::teardown`].

mod conn;
mod listeners;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};
use wire::ChunkPool;

use crate::control::server::ControlServer;
use crate::inbox::{Inbox, Mail};
use crate::intake::{Arrival, IntakeError};
use crate::log_limit::LogLimit;
use crate::protocol::{Action, ConnId, Dialect, Direction, Ending, Event, Node, Origin};
use crate::screen::{LogSink, Screen};
use crate::store::StoreThread;
use conn::{Conn, End, State};
pub use listeners::{Endpoint, Listeners, listen};
pub use workers::{MiningThread, ValidationThread};

const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const CONTROL: Token = Token(3);
const FIRST_CONN: usize = 16;

/// How often the state machine's clock advances.
const TICK: Duration = Duration::from_millis(100);
/// Patience for an outgoing connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Data a peer's TCP has not acknowledged for this long means the peer is
/// gone (a split network, a host that vanished): the kernel closes the
/// connection (TCP_USER_TIMEOUT) and the node dials again. Without it, a
/// connection across a healed split waits out TCP's retransmission
/// backoff (12 s and more after a 15 s split, up to 2 minutes) before
/// anything crosses. Every connection carries a PeerRequest every 5 s, so
/// a dead one is noticed within about 15 s.
const UNACKNOWLEDGED_FOR: Duration = Duration::from_secs(10);
/// A connection we close keeps at most this long to write what it was
/// sent last (a Notification saying why).
const LINGER: Duration = Duration::from_secs(2);
/// Rounds of events and actions in one settling before the loop serves the
/// sockets again (a safety bound: a round normally settles in two or three).
const MAX_SETTLE_ROUNDS: usize = 10_000;

/// What a peer may cost (the state machine never sees them).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A started message must finish within this plus its size at 64 KiB/s;
    /// a new inbound peer must speak and a peer must read what we queue
    /// within this.
    pub read_timeout: Duration,
    /// Largest message other than an archive; and most bytes of an
    /// archive's new chats held unchecked per connection.
    pub max_message: usize,
    /// Most inbound connections.
    pub max_inbound: usize,
    /// Most bytes held unchecked across all connections.
    pub max_buffered: usize,
}

/// The threads the loop hands work to.
pub struct Workers {
    /// Mining jobs.
    pub mining: MiningThread,
    /// Checks of incoming archives.
    pub validation: ValidationThread,
    /// Writes to the data directory.
    pub store: StoreThread,
    /// The screen.
    pub screen: Screen,
    /// The control socket.
    pub control: ControlServer,
    /// The log's output, opened again on SIGHUP when it is a file.
    pub log: LogSink,
}

/// The event loop.
pub struct Reactor {
    poll: Poll,
    listeners: Listeners,
    signals: Signals,
    inbox: Inbox,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Our outbound sockets by their local address: an inbound connection
    /// from one of these is this node talking to itself.
    dialing_from: HashMap<SocketAddrV4, Token>,
    /// Connections kept open after their end to finish a reply, oldest
    /// first (some may be closed already): at most `max_inbound` are kept.
    lingering: VecDeque<Token>,
    node: Node,
    /// Events waiting for the state machine.
    events: VecDeque<Event>,
    workers: Workers,
    endpoint: Endpoint,
    limits: Limits,
    pool: ChunkPool,
    buf: Vec<u8>,
    running: bool,
    log_limit: LogLimit,
}

/// The waker of `poll`'s loop, for the threads' mailer.
///
/// # Errors
/// mio's.
pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
    Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
}

impl Reactor {
    /// A loop around `node`; `poll` must be the one the inbox's waker was
    /// made from, and `pool` the one our history's chunks were shared
    /// through.
    ///
    /// # Errors
    /// Registering the listener or the signal handlers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        mut listeners: Listeners,
        inbox: Inbox,
        node: Node,
        workers: Workers,
        endpoint: Endpoint,
        limits: Limits,
        pool: ChunkPool,
    ) -> io::Result<Self> {
        listeners.register(poll.registry())?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut workers = workers;
        workers.control.register(poll.registry(), CONTROL)?;
        Ok(Reactor {
            poll,
            listeners,
            signals,
            inbox,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            dialing_from: HashMap::new(),
            lingering: VecDeque::new(),
            node,
            events: VecDeque::new(),
            workers,
            endpoint,
            limits,
            pool,
            buf: vec![0; 64 * 1024],
            running: true,
            log_limit: LogLimit::default(),
        })
    }

    /// Runs until `quit` (or `node stop`), SIGINT, SIGTERM, or SIGHUP
    /// when the log goes to no file (with `--log-file`, SIGHUP opens it
    /// again, for logrotate); then lets the store
    /// thread write what is queued, and tells the control socket's
    /// followers that the node stopped. Returns how many chats typed here
    /// are not in the history yet (kept on disk, mined at the next start).
    ///
    /// # Errors
    /// `poll`'s, other than an interrupted wait.
    pub fn run(mut self) -> io::Result<usize> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        self.settle(Instant::now());
        while self.running {
            let busy = self.conns.values().any(|c| c.read_ready);
            let timeout = if busy {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut accept = Vec::new();
            for event in events.iter() {
                match event.token() {
                    token if let Some(dialect) = Listeners::dialect_of(token) => {
                        accept.push(dialect);
                    }
                    WAKER => {}
                    SIGNALS => self.on_signals(),
                    CONTROL => {
                        let registry = self.poll.registry();
                        self.workers
                            .control
                            .accept(registry, &mut self.next_token, now);
                    }
                    token if self.workers.control.has(token) => {
                        let mut events = Vec::new();
                        let registry = self.poll.registry();
                        self.workers.control.serve(
                            registry,
                            token,
                            event.is_write_closed(),
                            now,
                            &mut events,
                        );
                        self.events.extend(events);
                    }
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            conn.read_ready |=
                                event.is_readable() || event.is_read_closed() || event.is_error();
                            conn.write_ready |= event.is_writable() || event.is_error();
                        }
                    }
                }
            }
            // Accepted first: a dial of ours that reached this node is then
            // recognised before it is taken for a peer.
            for dialect in accept {
                self.accept(dialect, now);
            }
            self.take_mail();
            self.serve_connections(now);
            if now >= next_tick {
                next_tick = now + TICK;
                self.check_clocks(now);
                let registry = self.poll.registry();
                let mut commands = Vec::new();
                self.workers.control.check_clocks(
                    registry,
                    now,
                    self.limits.read_timeout,
                    &mut commands,
                );
                self.events.extend(commands);
                self.events.push_back(Event::Tick);
            }
            self.settle(now);
            self.flush_all(now);
        }
        let Workers {
            store, mut control, ..
        } = self.workers;
        control.unlink();
        store.finish();
        control.stop();
        Ok(self.node.own().pending())
    }

    fn on_signals(&mut self) {
        for signal in self.signals.pending() {
            let reopened = (signal == SIGHUP)
                .then(|| self.workers.log.reopen())
                .flatten();
            match reopened {
                Some(Ok(path)) => info!("SIGHUP: log file {} opened again", path.display()),
                Some(Err(e)) => warn!("SIGHUP: cannot open the log file again: {e}"),
                None => {
                    info!("signal {signal}: stopping");
                    self.running = false;
                }
            }
        }
    }

    /// Feeds the state machine every waiting event and carries out every
    /// action, until neither is left.
    fn settle(&mut self, now: Instant) {
        for _ in 0..MAX_SETTLE_ROUNDS {
            while let Some(event) = self.events.pop_front() {
                self.node.handle(now, event);
            }
            while let Some(action) = self.node.poll_action() {
                self.perform(action, now);
            }
            if self.events.is_empty() {
                return;
            }
        }
        warn!("events still waiting after {MAX_SETTLE_ROUNDS} rounds; serving sockets first");
    }

    fn take_mail(&mut self) {
        let mail: Vec<Mail> = self.inbox.drain().collect();
        for mail in mail {
            match mail {
                Mail::Event(event) => self.events.push_back(event),
                Mail::Verified(verified) => {
                    let token = Token(verified.conn.0 as usize);
                    if let Some(conn) = self.conns.get_mut(&token) {
                        if let Some(arrival) = conn.intake().verified(verified) {
                            self.events.push_back(arrival_event(conn.id, arrival));
                        }
                        conn.resume();
                        self.start_checks(token);
                    }
                }
                // Both after the replies to the commands before them.
                Mail::Refused(text) => {
                    self.settle(Instant::now());
                    self.workers.screen.print(&text);
                }
                Mail::InputEnded => {
                    self.settle(Instant::now());
                    self.workers.screen.print(
                        "input closed: the node keeps running without a prompt until SIGINT or SIGTERM",
                    );
                }
                Mail::Hangup => {
                    info!("the terminal hung up: stopping");
                    self.running = false;
                }
            }
        }
    }

    fn accept(&mut self, dialect: Dialect, now: Instant) {
        loop {
            let (stream, addr) = match self.listeners.accept(dialect) {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like: try again later.
                    if let Some(suppressed) = self.log_limit.allow(now) {
                        warn!("accepting a connection failed: {e}{suppressed}");
                    }
                    return;
                }
            };
            let SocketAddr::V4(remote) = addr else {
                continue;
            };
            // The other end of one of our dials: this node itself. It takes
            // no inbound slot (both ends close at once), and must be told
            // even when the slots are full: turned away, our dial would be
            // taken for a peer and its real owner closed as a duplicate.
            let to_self = self.dialing_from.get(&remote).copied();
            if to_self.is_none() && !self.make_room_for_inbound(now) {
                debug!(
                    "turning away {remote}: {} inbound connections",
                    self.limits.max_inbound
                );
                continue;
            }
            let local = match stream.local_addr() {
                Ok(SocketAddr::V4(local)) => Some(local),
                _ => None,
            };
            let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(UNACKNOWLEDGED_FOR));
            let Some(token) = self.add_conn(
                stream,
                (*remote.ip(), dialect),
                local,
                Direction::Inbound,
                State::Open,
                now,
            ) else {
                continue;
            };
            if let Some(outbound) = to_self
                && let Some(out) = self.conns.get_mut(&outbound)
            {
                out.to_self = true;
                let addr = out.addr;
                let out_id = out.id;
                let conn = self.conns.get_mut(&token).expect("just added");
                conn.to_self = true;
                self.events.push_back(Event::SelfDialed {
                    outbound: out_id,
                    inbound: conn.id,
                    addr,
                });
                continue;
            }
            let conn = self.conns.get_mut(&token).expect("just added");
            conn.reported = true;
            conn.read_ready = true;
            self.events.push_back(Event::Connected {
                conn: conn.id,
                addr: *remote.ip(),
                local: local.map_or(self.endpoint.bind, |l| *l.ip()),
                direction: Direction::Inbound,
                dialect,
            });
            // Read at once, before the next accept: a peer that has already
            // spoken is not taken for a silent one and evicted, and one
            // that has already hung up frees its room, when a burst of
            // connections fills the inbound slots.
            self.read(token, now);
        }
    }

    /// At the inbound cap, the oldest inbound connection that has not sent a
    /// whole message yet gives way: a flood of silent connections cannot
    /// lock out honest newcomers, and peers that spoke are never evicted.
    fn make_room_for_inbound(&mut self, now: Instant) -> bool {
        let inbound = self
            .conns
            .values()
            .filter(|c| c.direction == Direction::Inbound && c.state == State::Open)
            .count();
        if inbound < self.limits.max_inbound {
            return true;
        }
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.direction == Direction::Inbound && c.state == State::Open && !c.spoke
            })
            .min_by_key(|(_, c)| c.opened)
            .map(|(&t, _)| t);
        match victim {
            Some(token) => {
                self.teardown(token, Ending::Evicted, now);
                true
            }
            None => false,
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        (addr, dialect): (Ipv4Addr, Dialect),
        local: Option<SocketAddrV4>,
        direction: Direction,
        state: State,
        now: Instant,
    ) -> Option<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = match state {
            State::Connecting { .. } => Interest::READABLE | Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("registering a connection with {addr} failed: {e}");
            return None;
        }
        let mut conn = Conn::new(
            stream,
            ConnId(token.0 as u64),
            (addr, dialect),
            local,
            direction,
            state,
            now,
            self.limits.max_message,
            self.limits.max_message,
        );
        conn.wants_write = interest.is_writable();
        self.conns.insert(token, conn);
        Some(token)
    }

    fn connect(&mut self, addr: Ipv4Addr, dialect: Dialect, now: Instant) {
        let stream = match self.start_connect(addr, dialect) {
            Ok(stream) => stream,
            Err(e) => {
                let ending = dial_ending(&e);
                return self.events.push_back(Event::ConnectFailed {
                    addr,
                    unanswered: matches!(ending, Ending::Unanswered(_)),
                    reason: ending.to_string(),
                    dialect,
                });
            }
        };
        let local = match stream.local_addr() {
            Ok(SocketAddr::V4(local)) => Some(local),
            _ => None,
        };
        let state = State::Connecting {
            deadline: now + CONNECT_TIMEOUT,
        };
        match self.add_conn(
            stream,
            (addr, dialect),
            local,
            Direction::Outbound,
            state,
            now,
        ) {
            Some(token) => {
                if let Some(local) = local {
                    self.dialing_from.insert(local, token);
                }
            }
            None => self.events.push_back(Event::ConnectFailed {
                addr,
                reason: "cannot register".into(),
                unanswered: false,
                dialect,
            }),
        }
    }

    /// A non-blocking connect from the bind address, so that peers see the
    /// address we listen on as the source.
    fn start_connect(&self, addr: Ipv4Addr, dialect: Dialect) -> io::Result<TcpStream> {
        let port = self
            .endpoint
            .port_of(dialect)
            .ok_or_else(|| io::Error::other("the relay extension is off"))?;
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_FOR))?;
        let bind = SocketAddrV4::new(self.endpoint.bind, 0);
        socket.bind(&SocketAddr::V4(bind).into())?;
        let target = SocketAddrV4::new(addr, port);
        match socket.connect(&SocketAddr::V4(target).into()) {
            Ok(()) => {}
            // The connect has started; the first writable event ends it.
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    /// Completes dials, reads and flushes the connections that signalled.
    fn serve_connections(&mut self, now: Instant) {
        let ready: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read_ready || c.write_ready)
            .map(|(&t, _)| t)
            .collect();
        for token in ready {
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            if let State::Connecting { .. } = conn.state {
                if conn.write_ready || conn.read_ready {
                    self.complete_connect(token, now);
                }
                continue;
            }
            if conn.write_ready {
                self.flush(token, now);
            }
            if self.conns.get(&token).is_some_and(|c| c.read_ready) {
                self.read(token, now);
            }
        }
    }

    /// The first event of a dial: connected, or failed.
    fn complete_connect(&mut self, token: Token, now: Instant) {
        // A dial that reached this node has its twin in the accept queue.
        if let Some(dialect) = self.conns.get(&token).map(|c| c.dialect) {
            self.accept(dialect, now);
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.write_ready = false;
        conn.read_ready = false;
        match conn.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.teardown(token, dial_ending(&e), now),
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.teardown(token, Ending::Failed(e.to_string()), now),
        }
        conn.state = State::Open;
        let _ = conn.stream.set_nodelay(true);
        if !conn.to_self {
            conn.reported = true;
            conn.read_ready = true;
            self.events.push_back(Event::Connected {
                conn: conn.id,
                addr: conn.addr,
                local: conn.local.map_or(self.endpoint.bind, |l| *l.ip()),
                direction: Direction::Outbound,
                dialect: conn.dialect,
            });
        }
        self.update_interest(token);
    }

    fn read(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.state != State::Open {
            conn.read_ready = false;
            return self.finish_closing(token, now);
        }
        let mut arrivals = Vec::new();
        let end = conn.read(
            &mut self.buf,
            self.node.history(),
            &mut self.pool,
            now,
            &mut arrivals,
        );
        let large = conn.held_bytes() > self.limits.max_message;
        // An inbound peer's first message beginning is told once: until it
        // is whole, the peer is sent nothing unasked.
        if conn.reported
            && conn.direction == Direction::Inbound
            && !conn.told_streaming
            && !conn.silent()
        {
            conn.told_streaming = true;
            self.events.push_back(Event::Streaming { conn: conn.id });
        }
        // Every whole message is told, also when the peer hung up right
        // after sending it.
        if conn.reported {
            for arrival in arrivals {
                self.events.push_back(arrival_event(conn.id, arrival));
            }
        }
        self.start_checks(token);
        match end {
            None => {}
            Some(End::Finished) => self.teardown(token, Ending::ClosedByPeer, now),
            Some(End::Failed(reason)) => self.teardown(token, Ending::Failed(reason), now),
            Some(End::Garbage(error)) => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.notify(&format!("closing: {error}"), now);
                    // A limit, not garbage: said at the default level, with
                    // the flag that raises it.
                    if let IntakeError::Decode(wire::DecodeError::TooLarge { max, .. }) = error
                        && let Some(suppressed) = self.log_limit.allow(now)
                    {
                        warn!(
                            "refused a message of more than {max} bytes from {} (raise --max-message to take larger ones){suppressed}",
                            conn.addr
                        );
                    }
                }
                self.teardown(token, Ending::Undecodable(error.to_string()), now);
            }
        }
        if large {
            self.bound_buffers(now);
        }
    }

    /// Hands the intake's due checks to the validation thread.
    fn start_checks(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token)
            && let Some(job) = conn.intake().job()
        {
            self.workers.validation.start(job);
        }
    }

    /// Many peers sending large messages at once could together hold more
    /// unchecked bytes than one may: past `max_buffered` in all, the
    /// connection holding the most is dropped.
    fn bound_buffers(&mut self, now: Instant) {
        let total: usize = self.conns.values().map(Conn::held_bytes).sum();
        if total <= self.limits.max_buffered {
            return;
        }
        if let Some((&token, conn)) = self.conns.iter().max_by_key(|(_, c)| c.held_bytes()) {
            if let Some(suppressed) = self.log_limit.allow(now) {
                warn!(
                    "dropped {}: messages in progress held more than {} bytes in all (raise --max-buffered to hold more){suppressed}",
                    conn.addr, self.limits.max_buffered
                );
            }
            self.teardown(token, Ending::BuffersFull, now);
        }
    }

    fn flush(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = conn.flush(now) {
            // A closing connection that cannot be written to is done: kept,
            // it would be flushed, and fail, on every turn of the loop.
            if let State::Closing { .. } = conn.state {
                return self.close(token);
            }
            // The peer hung up without reading (many open with a request,
            // push an archive and close): that ends our writing, not the
            // taking of what it sent before its end, which is read and
            // judged as after a FIN; the connection ends with its stream.
            let (addr, id, unsent) = (conn.addr, conn.id, conn.end_writing());
            if let Some(suppressed) = self.log_limit.allow(now) {
                info!(
                    "{addr} stopped reading (write failed: {e}); still taking what it sent{suppressed}"
                );
            }
            for (why, bytes) in unsent {
                self.events.push_back(Event::Unsent {
                    conn: id,
                    why,
                    bytes,
                });
            }
        }
        self.update_interest(token);
    }

    /// Writes every queue, and closes the connections that are done.
    fn flush_all(&mut self, now: Instant) {
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.has_queued() || matches!(c.state, State::Closing { .. }))
            .map(|(&t, _)| t)
            .collect();
        for token in tokens {
            self.flush(token, now);
            self.finish_closing(token, now);
        }
    }

    /// A closing connection whose queue is written closes. One with a peer
    /// that spoke (it may be reading replies we owed it) first sends its
    /// FIN and drains what the peer still sends until the peer's end of
    /// stream, or its deadline: a close with bytes unread resets the
    /// connection, which discards what the peer has not read yet. One that
    /// never sent a whole message (a message over the limit, garbage from
    /// its first byte) is owed nothing but the Notification, and is not
    /// read further.
    fn finish_closing(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let State::Closing { deadline } = conn.state else {
            return;
        };
        let done = !conn.has_queued() && (!conn.spoke || conn.finish(&mut self.buf));
        if done || now >= deadline {
            self.close(token);
        }
    }

    /// WRITABLE interest only while something waits to be written.
    fn update_interest(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let want = conn.has_queued();
        if want != conn.wants_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
                .is_ok()
            {
                conn.wants_write = want;
            }
        }
    }

    /// The one way a connection ends. A dial that never connected is told
    /// as failed; an established connection as disconnected, after the
    /// events that came before. A peer whose stream ended is still sent
    /// what it is owed (replies to its last requests are queued as the
    /// state machine takes those, within the read timeout); a connection
    /// we close still writes what it was last sent (within [`LINGER`]);
    /// any other closes at once.
    fn teardown(&mut self, token: Token, ending: Ending, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let State::Closing { .. } = conn.state {
            return;
        }
        if let Some(suppressed) = self.log_limit.allow(now) {
            debug!(
                "closing connection with {}: {ending}{suppressed}",
                conn.addr
            );
        }
        let linger = match ending {
            Ending::ClosedByPeer => Some(self.limits.read_timeout),
            Ending::ClosedByUs | Ending::Undecodable(_) if conn.has_queued() => Some(LINGER),
            _ => None,
        };
        match conn.state {
            State::Connecting { .. } if !conn.to_self => {
                self.events.push_back(Event::ConnectFailed {
                    addr: conn.addr,
                    reason: ending.to_string(),
                    unanswered: matches!(ending, Ending::Unanswered(_)),
                    dialect: conn.dialect,
                });
            }
            _ if conn.reported => self.events.push_back(Event::Disconnected {
                conn: conn.id,
                ending,
            }),
            _ => {}
        }
        conn.read_ready = false;
        match linger {
            Some(wait) => {
                conn.state = State::Closing {
                    deadline: now + wait,
                };
                self.lingering.push_back(token);
                self.bound_lingering();
            }
            None => self.close(token),
        }
    }

    /// Keeps at most `max_inbound` connections lingering: peers that ask and
    /// hang up without reading, in a flood, would otherwise hold a socket
    /// each for the whole linger. The oldest go first.
    fn bound_lingering(&mut self) {
        if self.lingering.len() <= self.limits.max_inbound {
            return;
        }
        let conns = &self.conns;
        self.lingering.retain(|token| {
            conns
                .get(token)
                .is_some_and(|c| matches!(c.state, State::Closing { .. }))
        });
        while self.lingering.len() > self.limits.max_inbound {
            let oldest = self.lingering.pop_front().expect("longer than the limit");
            self.close(oldest);
        }
    }

    /// Closes the socket and forgets the connection.
    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            // What the state machine counted as sent and did not go.
            for (why, bytes) in conn.unsent_archives() {
                let conn = conn.id;
                self.events.push_back(Event::Unsent { conn, why, bytes });
            }
            if let Some(local) = conn.local {
                self.dialing_from.remove(&local);
            }
        }
    }

    /// Deadlines of the transport: connect timeouts, messages that do not
    /// finish, peers that read nothing, silent newcomers.
    fn check_clocks(&mut self, now: Instant) {
        let timeout = self.limits.read_timeout;
        let mut expired = Vec::new();
        for (&token, conn) in &self.conns {
            let ending = match conn.state {
                State::Connecting { deadline } if now >= deadline => {
                    Some(Ending::Unanswered("connect timed out".into()))
                }
                State::Connecting { .. } | State::Closing { .. } => None,
                State::Open => {
                    if conn.message_overdue(now, timeout) {
                        Some(Ending::ReadTimeout)
                    } else if conn.stalled_since().is_some_and(|t| now >= t + timeout) {
                        Some(Ending::WriteTimeout)
                    } else if conn.direction == Direction::Inbound
                        && conn.silent()
                        && now >= conn.opened + timeout
                    {
                        Some(Ending::Silent)
                    } else {
                        None
                    }
                }
            };
            if let Some(ending) = ending {
                expired.push((token, ending));
            }
        }
        for (token, ending) in expired {
            self.teardown(token, ending, now);
        }
    }

    fn perform(&mut self, action: Action, now: Instant) {
        match action {
            Action::Send { conn, payload } => {
                let token = Token(conn.0 as usize);
                // A connection closing still takes the replies it is owed
                // (a peer that sent requests and then its FIN). One gone
                // (reset, with its last requests still being answered)
                // takes nothing, and an archive for it was not sent.
                let Some(c) = self
                    .conns
                    .get_mut(&token)
                    .filter(|c| !matches!(c.state, State::Connecting { .. }))
                else {
                    if let Some((why, bytes)) = payload.unsent() {
                        self.events.push_back(Event::Unsent { conn, why, bytes });
                    }
                    return;
                };
                match c.enqueue(payload, now) {
                    Ok(None) => {}
                    Ok(Some((why, bytes))) => {
                        self.events.push_back(Event::Unsent { conn, why, bytes });
                    }
                    Err(_) => self.teardown(token, Ending::RepliesUnread, now),
                }
            }
            Action::Connect { addr, dialect } => self.connect(addr, dialect, now),
            Action::Close { conn, notify } => {
                let token = Token(conn.0 as usize);
                if let (Some(c), Some(text)) = (self.conns.get_mut(&token), notify) {
                    c.notify(&text, now);
                }
                self.teardown(token, Ending::ClosedByUs, now);
            }
            Action::StartMining {
                job,
                prev,
                texts,
                delay,
            } => self.workers.mining.start(job, prev, texts, delay),
            Action::CancelMining { job } => self.workers.mining.cancel(job),
            Action::Save(save) => self.workers.store.save(save),
            Action::Show(line) => {
                let registry = self.poll.registry();
                self.workers.control.show(registry, &line, now);
            }
            Action::Print(line) => self.workers.screen.print_line(&line),
            Action::Status(bar) => self.workers.screen.set_status(bar),
            Action::Reply { to, reply } => match to {
                Origin::Prompt => self.workers.screen.print(&reply.to_string()),
                Origin::Control(id) => {
                    let mut events = Vec::new();
                    let registry = self.poll.registry();
                    self.workers
                        .control
                        .reply(registry, id, &reply, now, &mut events);
                    self.events.extend(events);
                }
            },
            Action::SetLog(level) => log::set_max_level(level),
            Action::Shutdown => self.running = false,
        }
    }
}

/// How a dial's error ends it: no answer at all (timed out, host or
/// network unreachable: the path is down), or anything else.
fn dial_ending(e: &io::Error) -> Ending {
    match e.kind() {
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => Ending::Unanswered(e.to_string()),
        _ => Ending::Failed(e.to_string()),
    }
}

/// The event for what came in whole on `conn`.
fn arrival_event(conn: ConnId, arrival: Arrival) -> Event {
    match arrival {
        Arrival::Message { message, wire_len } => Event::Received {
            conn,
            message,
            wire_len,
        },
        Arrival::Relay { message } => Event::Relayed { conn, message },
        Arrival::Archive { archive, wire_len } => Event::Archive {
            conn,
            archive,
            wire_len,
        },
    }
}
