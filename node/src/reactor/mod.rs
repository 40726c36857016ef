//! The event loop: mio owns every socket; the protocol state machine
//! decides. Bytes in become messages through each connection's decoder,
//! the state machine's actions become syscalls, worker threads report back
//! over a channel and the loop's waker.

mod conn;
mod workers;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::prompt::Printer;
use crate::protocol::{Action, ConnId, Direction, Event, Node, Store};
use conn::{Conn, End, State};
pub use workers::{Mining, Outbox, Report, Validation};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const FIRST_CONN: usize = 16;

/// How often the state machine's clock advances.
const TICK: Duration = Duration::from_millis(100);
/// PROTOCOL-level patience for an outgoing connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A duplicate connection stays open at least this long, so that a peer
/// which connects only to push one archive gets to send it.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from one connection before the loop serves the others.
const READ_BUDGET: usize = 1 << 20;

/// Transport limits (the state machine never sees them).
#[derive(Debug, Clone)]
pub struct Limits {
    pub bind: Ipv4Addr,
    pub port: u16,
    pub read_timeout: Duration,
    pub max_message: usize,
    pub max_inbound: usize,
    /// Most bytes of partial messages held across all connections.
    pub max_buffered: usize,
}

pub struct Reactor<S: Store> {
    poll: Poll,
    listener: TcpListener,
    signals: Signals,
    reports: Receiver<Report>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    node: Node<S>,
    mining: Mining,
    validation: Validation,
    printer: Printer,
    limits: Limits,
    buf: Vec<u8>,
    running: bool,
}

/// Binds the listening socket; done before anything else so that a busy
/// port is reported at once.
pub fn listen(bind: Ipv4Addr, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::V4(SocketAddrV4::new(bind, port)))
}

impl<S: Store> Reactor<S> {
    /// `poll` must be the one `waker` was made from.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        reports: Receiver<Report>,
        node: Node<S>,
        mining: Mining,
        validation: Validation,
        printer: Printer,
        limits: Limits,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener,
            signals,
            reports,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            node,
            mining,
            validation,
            printer,
            limits,
            buf: vec![0; 64 * 1024],
            running: true,
        })
    }

    pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
    }

    /// Runs until `quit`, SIGINT or SIGTERM.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        self.perform_actions(Instant::now());
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
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    SIGNALS => {
                        for signal in self.signals.pending() {
                            info!("signal {signal}: stopping");
                            self.running = false;
                        }
                    }
                    token => self.conn_event(token, event.is_writable(), now),
                }
            }
            self.drain_reports(now);
            let ready: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| c.read_ready)
                .map(|(&t, _)| t)
                .collect();
            for token in ready {
                self.read(token, now);
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.check_clocks(now);
                self.node.handle(now, Event::Tick);
            }
            self.perform_actions(now);
        }
        Ok(())
    }

    fn drain_reports(&mut self, now: Instant) {
        while let Ok(report) = self.reports.try_recv() {
            match report {
                Report::Event(event) => self.node.handle(now, event),
                Report::BadLine(bad) => self.printer.print(&bad.to_string()),
                Report::InputClosed => self.printer.print(
                    "input closed: the node keeps running without a prompt until SIGINT or SIGTERM",
                ),
            }
            self.perform_actions(now);
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let (stream, addr) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like: try again later.
                    warn!("accepting a connection failed: {e}");
                    return;
                }
            };
            let SocketAddr::V4(addr) = addr else { continue };
            if !self.make_room_for_inbound() {
                debug!(
                    "turning away {addr}: {} inbound connections",
                    self.limits.max_inbound
                );
                continue;
            }
            let local = match stream.local_addr() {
                Ok(SocketAddr::V4(local)) => *local.ip(),
                _ => self.limits.bind,
            };
            let token = self.add_conn(stream, *addr.ip(), Direction::Inbound, State::Open, now);
            if let Some(token) = token {
                let event = Event::Connected {
                    conn: ConnId(token.0 as u64),
                    addr: *addr.ip(),
                    local,
                    direction: Direction::Inbound,
                };
                self.node.handle(now, event);
                self.read(token, now);
            }
        }
    }

    /// At the inbound cap, the oldest inbound connection that has not sent a
    /// whole message yet gives way: a flood of silent connections cannot
    /// lock out honest newcomers, and peers that spoke are never evicted.
    fn make_room_for_inbound(&mut self) -> bool {
        let inbound = self
            .conns
            .values()
            .filter(|c| c.direction == Direction::Inbound)
            .count();
        if inbound < self.limits.max_inbound {
            return true;
        }
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.direction == Direction::Inbound && !c.spoke)
            .min_by_key(|(_, c)| c.opened)
            .map(|(&t, _)| t);
        match victim {
            Some(token) => {
                self.close(
                    token,
                    "evicted: inbound connections full and it had sent nothing",
                    Instant::now(),
                );
                true
            }
            None => false,
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        addr: Ipv4Addr,
        direction: Direction,
        state: State,
        now: Instant,
    ) -> Option<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = match state {
            State::Connecting { .. } => Interest::READABLE | Interest::WRITABLE,
            State::Open => Interest::READABLE,
        };
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("registering a connection with {addr} failed: {e}");
            return None;
        }
        let mut conn = Conn::new(stream, addr, direction, state, now, self.limits.max_message);
        conn.wants_write = interest.is_writable();
        self.conns.insert(token, conn);
        Some(token)
    }

    fn connect(&mut self, addr: Ipv4Addr, now: Instant) {
        match self.start_connect(addr) {
            Ok(stream) => {
                let state = State::Connecting {
                    deadline: now + CONNECT_TIMEOUT,
                };
                if self
                    .add_conn(stream, addr, Direction::Outbound, state, now)
                    .is_none()
                {
                    self.node.handle(
                        now,
                        Event::ConnectFailed {
                            addr,
                            reason: "cannot register".into(),
                        },
                    );
                }
            }
            Err(e) => self.node.handle(
                now,
                Event::ConnectFailed {
                    addr,
                    reason: e.to_string(),
                },
            ),
        }
    }

    /// A non-blocking connect from the bind address, so that peers see the
    /// address we listen on as the source.
    fn start_connect(&self, addr: Ipv4Addr) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !self.limits.bind.is_unspecified() {
            socket.bind(&SocketAddr::V4(SocketAddrV4::new(self.limits.bind, 0)).into())?;
        }
        match socket.connect(&SocketAddr::V4(SocketAddrV4::new(addr, self.limits.port)).into()) {
            Ok(()) => {}
            // The connect has started; the first writable event ends it.
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    fn conn_event(&mut self, token: Token, writable: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let State::Connecting { .. } = conn.state {
            let addr = conn.addr;
            match conn.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail_connect(token, addr, e.to_string(), now),
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail_connect(token, addr, e.to_string(), now),
            }
            conn.state = State::Open;
            let local = match conn.stream.local_addr() {
                Ok(SocketAddr::V4(local)) => *local.ip(),
                _ => self.limits.bind,
            };
            let _ = conn.stream.set_nodelay(true);
            self.update_interest(token);
            self.node.handle(
                now,
                Event::Connected {
                    conn: ConnId(token.0 as u64),
                    addr,
                    local,
                    direction: Direction::Outbound,
                },
            );
            self.perform_actions(now);
        } else if writable {
            self.flush(token, now);
        }
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.read_ready = true;
        }
    }

    fn fail_connect(&mut self, token: Token, addr: Ipv4Addr, reason: String, now: Instant) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.node.handle(now, Event::ConnectFailed { addr, reason });
    }

    fn read(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if !matches!(conn.state, State::Open) {
            conn.read_ready = false;
            return;
        }
        let outcome = conn.read(&mut self.buf, READ_BUDGET, now);
        let large = conn.held_bytes() > READ_BUDGET;
        let id = ConnId(token.0 as u64);
        // Every whole message is handled, also when the peer hung up right
        // after sending it.
        for (message, wire_len) in outcome.messages {
            self.node.handle(
                now,
                Event::Received {
                    conn: id,
                    message,
                    wire_len,
                },
            );
        }
        match outcome.end {
            None => {}
            Some(End::Closed(reason)) => self.close(token, &reason, now),
            Some(End::Garbage(error)) => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.notify(&format!("closing: {error}"));
                }
                self.close(token, &error.to_string(), now);
            }
        }
        if large {
            self.bound_buffers(now);
        }
    }

    /// Many peers sending large messages at once could together hold more
    /// memory than one message may: past `max_buffered` in all, the
    /// connection holding the most is dropped.
    fn bound_buffers(&mut self, now: Instant) {
        let total: usize = self.conns.values().map(Conn::held_bytes).sum();
        if total <= self.limits.max_buffered {
            return;
        }
        if let Some((&token, _)) = self.conns.iter().max_by_key(|(_, c)| c.held_bytes()) {
            self.close(
                token,
                "receive buffers full: dropping the largest partial message",
                now,
            );
        }
    }

    fn flush(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = conn.flush(now) {
            return self.close(token, &format!("write failed: {e}"), now);
        }
        self.update_interest(token);
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

    fn close(&mut self, token: Token, reason: &str, now: Instant) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        debug!("closing connection with {}: {reason}", conn.addr);
        match conn.state {
            State::Open => self.node.handle(
                now,
                Event::Disconnected {
                    conn: ConnId(token.0 as u64),
                    reason: reason.to_string(),
                },
            ),
            State::Connecting { .. } => self.node.handle(
                now,
                Event::ConnectFailed {
                    addr: conn.addr,
                    reason: reason.to_string(),
                },
            ),
        }
    }

    /// Deadlines of the transport: connect timeouts, messages that do not
    /// finish, peers that read nothing, silent newcomers, idle duplicates.
    fn check_clocks(&mut self, now: Instant) {
        let timeout = self.limits.read_timeout;
        let mut expired = Vec::new();
        for (&token, conn) in &self.conns {
            let reason = match conn.state {
                State::Connecting { deadline } if now >= deadline => Some("connect timed out"),
                State::Connecting { .. } => None,
                State::Open => {
                    if conn.receiving_since().is_some_and(|t| now >= t + timeout) {
                        Some("read timeout: a message did not finish in time")
                    } else if conn.stalled_since().is_some_and(|t| now >= t + timeout) {
                        Some("write timeout: the peer reads nothing")
                    } else if conn.direction == Direction::Inbound
                        && !conn.spoke
                        && now >= conn.opened + timeout
                    {
                        Some("silent: no message since it connected")
                    } else if conn.close_when_idle.is_some_and(|t| now >= t)
                        && conn.idle()
                        && !conn.has_queued()
                    {
                        Some("duplicate connection, now idle")
                    } else {
                        None
                    }
                }
            };
            if let Some(reason) = reason {
                expired.push((token, reason));
            }
        }
        for (token, reason) in expired {
            self.close(token, reason, now);
        }
    }

    fn perform_actions(&mut self, now: Instant) {
        // Sends are written once every action is queued, not one by one:
        // an archive queued and not yet written is shared by the requests
        // that follow it (`Conn::enqueue`), so a peer that asks a hundred
        // times in one read costs one write, not a hundred copies of the
        // archive into its socket (50 such peers held the loop for 50 ms).
        let mut unflushed = HashSet::new();
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send { conn, payload } => {
                    let token = Token(conn.0 as usize);
                    let Some(c) = self.conns.get_mut(&token) else {
                        continue;
                    };
                    if let Err(reason) = c.enqueue(payload, now) {
                        self.close(token, &reason, now);
                        continue;
                    }
                    unflushed.insert(token);
                }
                Action::Connect { addr } => self.connect(addr, now),
                Action::Close { conn, notify } => {
                    let token = Token(conn.0 as usize);
                    // What was sent to it before goes out first.
                    if unflushed.remove(&token) {
                        self.flush(token, now);
                    }
                    if let (Some(c), Some(text)) = (self.conns.get_mut(&token), notify) {
                        c.notify(&text);
                    }
                    self.close(token, "closed by us", now);
                }
                Action::CloseWhenIdle { conn } => {
                    if let Some(c) = self.conns.get_mut(&Token(conn.0 as usize)) {
                        c.close_when_idle = Some(now + DUPLICATE_GRACE);
                    }
                }
                Action::StartMining {
                    job,
                    prev,
                    text,
                    delay,
                } => self.mining.start(job, prev, text, delay),
                Action::CancelMining { job } => self.mining.cancel(job),
                Action::Validate(job) => self.validation.start(job),
                Action::Print(text) => self.printer.print(&text),
                Action::Shutdown => self.running = false,
            }
        }
        for token in unflushed {
            self.flush(token, now);
        }
    }
}
