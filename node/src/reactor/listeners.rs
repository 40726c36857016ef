//! The listening sockets: the network port, and the relay port when the
//! compact relay extension is offered (`docs/EXTENSION.md`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::protocol::Dialect;

/// The network port's listener.
const STANDARD: Token = Token(0);
/// The relay port's listener.
const RELAY: Token = Token(4);

/// Connections the kernel may hold accepted before the loop takes them: a
/// peer reconnecting in a tight loop fills a short queue between two rounds
/// and honest newcomers' handshakes are then dropped and retried a second
/// later.
const LISTEN_BACKLOG: i32 = 1024;

/// Where the node listens, and dials from.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The address to listen on and dial from (0.0.0.0: any).
    pub bind: Ipv4Addr,
    /// The network port.
    pub port: u16,
    /// The relay port, `None` when the extension is off.
    pub relay_port: Option<u16>,
}

impl Endpoint {
    /// The port a connection of `dialect` is dialed on (the relay port is
    /// every node's own: ours is the one we dial).
    pub fn port_of(&self, dialect: Dialect) -> Option<u16> {
        match dialect {
            Dialect::Standard => Some(self.port),
            Dialect::Relay => self.relay_port,
        }
    }
}

/// The listening sockets.
#[derive(Debug)]
pub struct Listeners {
    standard: TcpListener,
    relay: Option<TcpListener>,
}

/// Binds a listening socket on `bind:port`; done before anything else so
/// that a busy port is reported at once.
///
/// # Errors
/// The bind's or the listen's.
pub fn listen(bind: Ipv4Addr, port: u16) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(bind, port)).into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl Listeners {
    /// The network port's listener, and the relay port's if offered.
    pub fn new(standard: TcpListener, relay: Option<TcpListener>) -> Self {
        Listeners { standard, relay }
    }

    /// Registers them with `registry`.
    ///
    /// # Errors
    /// mio's.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.standard, STANDARD, Interest::READABLE)?;
        if let Some(relay) = &mut self.relay {
            registry.register(relay, RELAY, Interest::READABLE)?;
        }
        Ok(())
    }

    /// The dialect of the listener `token` names, if it names one.
    pub fn dialect_of(token: Token) -> Option<Dialect> {
        match token {
            STANDARD => Some(Dialect::Standard),
            RELAY => Some(Dialect::Relay),
            _ => None,
        }
    }

    /// Accepts one connection on the port of `dialect`.
    ///
    /// # Errors
    /// The accept's (`WouldBlock` when none waits, or that port is not
    /// listened on).
    pub fn accept(&self, dialect: Dialect) -> io::Result<(TcpStream, SocketAddr)> {
        match dialect {
            Dialect::Standard => self.standard.accept(),
            Dialect::Relay => match &self.relay {
                Some(relay) => relay.accept(),
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }
}
