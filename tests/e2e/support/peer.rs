//! [`Peer`], a raw protocol client of a node under test, and
//! [`connect_from`] for a bare connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use wire::{Decoder, History, Message};

use super::WAIT;

/// A raw TCP connection from `from` to `to`; `tune` sets socket options
/// before the connect (buffer sizes).
pub fn connect_from(
    from: Ipv4Addr,
    to: SocketAddrV4,
    tune: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    tune(&socket)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    socket.connect_timeout(&SocketAddr::V4(to).into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Sets `stream`'s read timeout to what is left until `deadline`; false
/// when nothing is left.
pub fn read_until(stream: &TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return false;
    }
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("setting a read timeout");
    true
}

/// No socket options, for [`connect_from`].
pub fn plain(_: &Socket) -> io::Result<()> {
    Ok(())
}

/// A raw protocol client over TCP from a chosen loopback address.
#[derive(Debug)]
pub struct Peer {
    stream: TcpStream,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    decoder: Decoder,
    /// Bytes read but not yet decoded.
    unread: Vec<u8>,
    /// Raw bytes of the message being decoded.
    current: Vec<u8>,
    closed: bool,
}

impl Peer {
    /// Connects from `from` (any free port) to `to:port`; panics after 5 s.
    pub fn connect(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> Peer {
        Peer::try_connect(from, to, port)
            .unwrap_or_else(|e| panic!("connecting {from} -> {to}:{port}: {e}"))
    }

    pub fn try_connect(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> io::Result<Peer> {
        let remote = SocketAddrV4::new(to, port);
        let stream = connect_from(from, remote, plain)?;
        stream.set_nodelay(true)?;
        let SocketAddr::V4(local) = stream.local_addr()? else {
            unreachable!("an IPv4 socket")
        };
        Ok(Peer {
            stream,
            local,
            remote,
            decoder: Decoder::default(),
            unread: Vec::new(),
            current: Vec::new(),
            closed: false,
        })
    }

    /// The history of the node at `to:port`: connects from `from`, sends
    /// ArchiveRequest, reads the ArchiveResponse (panics if none comes
    /// within [`WAIT`]) and closes.
    pub fn archive(from: Ipv4Addr, to: Ipv4Addr, port: u16) -> History {
        let mut peer = Peer::connect(from, to, port);
        peer.send(&Message::ArchiveRequest);
        match peer.recv_archive(WAIT) {
            Some((history, _)) => history,
            None => panic!("{to}:{port} sent no ArchiveResponse to {from}"),
        }
    }

    pub fn send(&mut self, message: &Message) {
        self.send_raw(&message.to_bytes());
    }

    /// Writes bytes as they are (a message, part of one, or garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .set_write_timeout(Some(WAIT))
            .expect("setting a write timeout");
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{} -> {}: write failed: {e}", self.local, self.remote));
    }

    /// The next message and its exact bytes; `None` after `timeout` or when
    /// the node closed the connection (see [`Peer::is_closed`]). Panics on
    /// bytes that do not decode.
    pub fn recv_raw(&mut self, timeout: Duration) -> Option<(Message, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0; 64 * 1024];
        loop {
            if !self.unread.is_empty() {
                let mut input = &self.unread[..];
                let result = self.decoder.push(&mut input);
                let used = self.unread.len() - input.len();
                self.current.extend_from_slice(&self.unread[..used]);
                self.unread.drain(..used);
                match result {
                    Ok(Some(message)) => return Some((message, std::mem::take(&mut self.current))),
                    Ok(None) => {}
                    Err(e) => panic!("{} sent undecodable bytes: {e}", self.remote),
                }
            }
            if self.closed {
                return None;
            }
            if !read_until(&self.stream, deadline) {
                return None;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next message; `None` after `timeout` or on close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        self.recv_raw(timeout).map(|(message, _)| message)
    }

    /// The next message for which `wanted` holds, skipping others, with its
    /// bytes; `None` after `timeout` or on close.
    pub fn recv_until(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> Option<(Message, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (message, bytes) = self.recv_raw(left)?;
            if wanted(&message) {
                return Some((message, bytes));
            }
        }
    }

    /// The next ArchiveResponse (others skipped) and its bytes.
    pub fn recv_archive(&mut self, timeout: Duration) -> Option<(History, Vec<u8>)> {
        match self.recv_until(timeout, |m| matches!(m, Message::ArchiveResponse(_)))? {
            (Message::ArchiveResponse(history), bytes) => Some((history, bytes)),
            _ => unreachable!("filtered"),
        }
    }

    /// Reads and drops whatever arrives for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Message> {
        let mut got = Vec::new();
        while let Some(message) = self.recv(quiet) {
            got.push(message);
        }
        got
    }

    /// The node closed the connection (seen by a `recv`).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
