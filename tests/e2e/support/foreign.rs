//! [`Foreign`], a scripted peer that behaves like a simple foreign node:
//! it speaks the standard protocol only (`docs/PROTOCOL.md`), on its
//! network port, and knows nothing of the relay extension (nothing
//! listens on its relay port: a dial there is refused). It answers
//! PeerRequest with an empty PeerList (so that its peers cannot learn of
//! each other through it), answers ArchiveRequest with its current
//! history, and takes any valid longer ArchiveResponse, which it pushes to
//! every other connection: a node in the middle that relays whole
//! archives between its peers, as the other implementations do. It only
//! accepts: the nodes dial it.
//!
//! Every thread stops and is joined when it drops; every wait is bounded.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use wire::{Decoder, History, Message};

use super::WAIT;
use super::misbehave::{Got, POLL, read_once};

/// The state its threads share.
#[derive(Default)]
struct Shared {
    /// Its history.
    history: Mutex<History>,
    /// Its connections, each by number with its write half (one write at
    /// a time per connection).
    conns: Mutex<Vec<(u64, Arc<Mutex<TcpStream>>)>>,
    /// Histories it took from its peers.
    adopted: AtomicU64,
    /// Why each connection that ended did, in order.
    endings: Mutex<Vec<String>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

/// The simple foreign node. See the module's doc.
pub struct Foreign {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Foreign {
    /// Listens on `addr` (a loopback address and the network port) with
    /// `history` as its own. Panics if it cannot bind.
    pub fn start(addr: SocketAddrV4, history: History) -> Foreign {
        assert!(addr.ip().is_loopback(), "loopback only, not {addr}");
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let shared = Arc::new(Shared {
            history: Mutex::new(history),
            ..Shared::default()
        });
        let accepting = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut serving = Vec::new();
                while !shared.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, SocketAddr::V4(_))) => {
                            let shared = Arc::clone(&shared);
                            serving.push(thread::spawn(move || serve(&shared, stream)));
                        }
                        Ok(_) => {}
                        Err(_) => thread::sleep(POLL),
                    }
                }
                for thread in serving {
                    let _ = thread.join();
                }
            })
        };
        Foreign {
            shared,
            threads: Mutex::new(vec![accepting]),
        }
    }

    /// Its history now.
    pub fn history(&self) -> History {
        self.shared.history.lock().unwrap().clone()
    }

    /// Histories it took from its peers so far.
    pub fn adopted(&self) -> u64 {
        self.shared.adopted.load(Ordering::Relaxed)
    }

    /// Why each connection that ended so far did: `closed by the other
    /// side`, `broken: ERROR`, `undecodable: ERROR` (it closed on bytes
    /// that are not the standard protocol), `write failed`.
    pub fn endings(&self) -> Vec<String> {
        self.shared.endings.lock().unwrap().clone()
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

/// Writes `bytes` to one connection; false if they could not go.
fn write_to(conn: &Mutex<TcpStream>, bytes: &[u8]) -> bool {
    conn.lock().unwrap().write_all(bytes).is_ok()
}

/// Serves one connection until it ends (the other side closes, sends
/// bytes that do not decode, or a write fails) or the peer stops.
fn serve(shared: &Shared, mut stream: TcpStream) {
    stream.set_read_timeout(Some(POLL)).expect("a read timeout");
    stream
        .set_write_timeout(Some(WAIT))
        .expect("a write timeout");
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let writer = Arc::new(Mutex::new(stream.try_clone().expect("a second handle")));
    shared.conns.lock().unwrap().push((id, Arc::clone(&writer)));
    let mut decoder = Decoder::new(wire::DEFAULT_MAX_MESSAGE);
    let mut buf = vec![0; 64 * 1024];
    let ending = 'reading: loop {
        if shared.stop.load(Ordering::Relaxed) {
            break "stopped".to_string();
        }
        let n = match read_once(&mut stream, &mut buf) {
            Got::Bytes(n) => n,
            Got::Again => continue,
            Got::Eof => break "closed by the other side".to_string(),
            Got::Broken(e) => break format!("broken: {e}"),
        };
        let mut input = &buf[..n];
        loop {
            let message = match decoder.push(&mut input) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => break 'reading format!("undecodable: {e}"),
            };
            let answered = match message {
                Message::PeerRequest => write_to(&writer, &Message::PeerList(vec![]).to_bytes()),
                Message::ArchiveRequest => {
                    let archive = Message::ArchiveResponse(shared.history.lock().unwrap().clone());
                    write_to(&writer, &archive.to_bytes())
                }
                Message::ArchiveResponse(history) => {
                    take(shared, id, history);
                    true
                }
                Message::PeerList(_) | Message::Notification(_) => true,
            };
            if !answered {
                break 'reading "write failed".to_string();
            }
        }
    };
    shared
        .conns
        .lock()
        .unwrap()
        .retain(|(other, _)| *other != id);
    shared.endings.lock().unwrap().push(ending);
}

/// An ArchiveResponse from connection `from`: adopted if valid and longer
/// than ours, and then pushed to every other connection.
fn take(shared: &Shared, from: u64, history: History) {
    let archive = {
        let mut ours = shared.history.lock().unwrap();
        if history.len() <= ours.len() || miner::validate(&history).is_err() {
            return;
        }
        *ours = history;
        shared.adopted.fetch_add(1, Ordering::Relaxed);
        Message::ArchiveResponse(ours.clone()).to_bytes()
    };
    let others: Vec<_> = shared
        .conns
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| *id != from)
        .map(|(_, conn)| Arc::clone(conn))
        .collect();
    for conn in others {
        write_to(&conn, &archive);
    }
}
