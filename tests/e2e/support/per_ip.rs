//! A scripted peer that keeps one entry per IP address, as several public
//! implementations do: a later connection from (or to) an address replaces
//! its entry, and the entry is dropped when *any* connection with that
//! address ends. It answers PeerRequest (an empty PeerList) and
//! ArchiveRequest (its archive) on whichever connection asks, but pushes a
//! new history only to the connections in its table. A node that opens a
//! second connection to it and then closes one leaves it with no entry
//! while a connection stays open, and it never sends that node its chats
//! again (issue 18, kind 3). It can also redial a node while connected, as
//! another public implementation does every few seconds.
//!
//! Every thread stops when the peer drops; every wait is bounded.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wire::{Frame, FrameDecoder, Message};

use super::misbehave::{Got, read_once};
use super::{WAIT, connect_from};

/// How often the threads look at the stop flag.
const POLL: Duration = Duration::from_millis(10);

/// The state its threads share.
#[derive(Default)]
struct Shared {
    /// Its table: address -> (connection id, the connection).
    table: Mutex<HashMap<Ipv4Addr, (u64, TcpStream)>>,
    /// The ArchiveResponse it answers with and pushes.
    archive: Mutex<Vec<u8>>,
    /// Connections accepted (dialed to it).
    accepted: AtomicU64,
    /// Connections that ended (the other side closed or reset).
    ended: AtomicU64,
    /// Dials it made.
    dials: AtomicU64,
    next_id: AtomicU64,
    stop: AtomicBool,
}

/// The per-IP-table peer. See the module's doc.
pub struct PerIpPeer {
    addr: SocketAddrV4,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl PerIpPeer {
    /// Listens on `addr` (a loopback address and the network port) with
    /// `archive` as its history. Panics if it cannot bind.
    pub fn start(addr: SocketAddrV4, archive: Vec<u8>) -> PerIpPeer {
        assert!(addr.ip().is_loopback(), "loopback only, not {addr}");
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let shared = Arc::new(Shared {
            archive: Mutex::new(archive),
            ..Shared::default()
        });
        let peer = PerIpPeer {
            addr,
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
        };
        let accepting = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut readers = Vec::new();
                while !shared.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, SocketAddr::V4(from))) => {
                            shared.accepted.fetch_add(1, Ordering::Relaxed);
                            let shared = Arc::clone(&shared);
                            readers.push(thread::spawn(move || serve(&shared, stream, *from.ip())));
                        }
                        Ok(_) => {}
                        Err(_) => thread::sleep(POLL),
                    }
                }
                for reader in readers {
                    let _ = reader.join();
                }
            })
        };
        peer.threads.lock().unwrap().push(accepting);
        peer
    }

    /// Dials the node at `to` from its own address and sends `first`
    /// (requests); with `redial`, dials again a second after that
    /// connection ends, for as long as the peer runs. Panics if it cannot
    /// connect or write the first time.
    pub fn dial(&self, to: SocketAddrV4, first: &[u8], redial: bool) {
        let from = *self.addr.ip();
        let shared = Arc::clone(&self.shared);
        let mut stream = Some(dial_once(&shared, from, to, first).expect("the first dial"));
        let first = first.to_vec();
        let dialer = thread::spawn(move || {
            while let Some(connection) = stream.take() {
                serve(&shared, connection, *to.ip());
                if !redial {
                    return;
                }
                for _ in 0..100 {
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(POLL);
                }
                stream = dial_once(&shared, from, to, &first);
            }
        });
        self.threads.lock().unwrap().push(dialer);
    }

    /// Takes `archive` as its history and pushes it to every connection
    /// in its table; returns how many it was pushed to.
    pub fn push(&self, archive: Vec<u8>) -> usize {
        *self.shared.archive.lock().unwrap() = archive.clone();
        let table = self.shared.table.lock().unwrap();
        table
            .values()
            .filter(|(_, stream)| (&*stream).write_all(&archive).is_ok())
            .count()
    }

    /// Connections dialed to it so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections that ended so far (closed or reset by the other side).
    pub fn ended(&self) -> u64 {
        self.shared.ended.load(Ordering::Relaxed)
    }

    /// Dials it made so far.
    pub fn dials(&self) -> u64 {
        self.shared.dials.load(Ordering::Relaxed)
    }
}

impl Drop for PerIpPeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

/// One dial from `from` to `to`, sending `first`; `None` if it fails.
fn dial_once(shared: &Shared, from: Ipv4Addr, to: SocketAddrV4, first: &[u8]) -> Option<TcpStream> {
    shared.dials.fetch_add(1, Ordering::Relaxed);
    let mut stream = connect_from(from, to, super::plain).ok()?;
    stream.write_all(first).ok()?;
    Some(stream)
}

/// Makes `stream` the entry of `addr` and serves it until it ends (or the
/// peer stops), then drops the entry of `addr`, whichever connection it
/// holds by then.
fn serve(shared: &Shared, mut stream: TcpStream, addr: Ipv4Addr) {
    stream.set_read_timeout(Some(POLL)).expect("a read timeout");
    stream
        .set_write_timeout(Some(WAIT))
        .expect("a write timeout");
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let entry = stream.try_clone().expect("a second handle");
    shared.table.lock().unwrap().insert(addr, (id, entry));
    let mut frames = FrameDecoder::with_limits(wire::DEFAULT_MAX_MESSAGE, usize::MAX);
    let mut buf = vec![0; 64 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match read_once(&mut stream, &mut buf) {
            Got::Bytes(n) => n,
            Got::Again => continue,
            Got::Eof | Got::Broken(_) => {
                shared.ended.fetch_add(1, Ordering::Relaxed);
                shared.table.lock().unwrap().remove(&addr);
                return;
            }
        };
        let mut input = &buf[..n];
        while let Ok(Some(frame)) = frames.next(&mut input) {
            let reply = match frame {
                Frame::Message(Message::PeerRequest) => Message::PeerList(vec![]).to_bytes(),
                Frame::Message(Message::ArchiveRequest) => shared.archive.lock().unwrap().clone(),
                _ => continue,
            };
            let _ = stream.write_all(&reply);
        }
    }
}
