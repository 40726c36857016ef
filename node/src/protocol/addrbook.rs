//! The addresses this node knows, and which ones to dial next.
//!
//! Addresses come from `--peer` and from peers' PeerLists, which may name
//! anything: this node's own address, duplicates, short-lived clients that
//! do not listen, addresses that never answer. So dialing is queued, at most
//! `max_connecting` attempts are in flight at once, an address that failed
//! waits out a growing backoff, and both tables are bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Most addresses remembered; PeerLists beyond it are not followed.
const MAX_KNOWN: usize = 4096;
/// Backoff after the first failure; doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Known {
    /// A connection to it succeeded once: it listens on the network port.
    listening: bool,
    /// Dialed back once after it connected to us, to learn whether it
    /// listens.
    probed: bool,
    failures: u32,
    retry_at: Option<Instant>,
    bootstrap: bool,
}

#[derive(Debug)]
pub struct AddressBook {
    own: HashSet<Ipv4Addr>,
    known: HashMap<Ipv4Addr, Known>,
    queue: VecDeque<Ipv4Addr>,
    connecting: HashSet<Ipv4Addr>,
    max_connecting: usize,
}

impl AddressBook {
    pub fn new(own: Ipv4Addr, bootstrap: &[Ipv4Addr], max_connecting: usize) -> Self {
        let mut book = AddressBook {
            own: HashSet::from([own]),
            known: HashMap::new(),
            queue: VecDeque::new(),
            connecting: HashSet::new(),
            max_connecting: max_connecting.max(1),
        };
        for &addr in bootstrap {
            if book.dialable(addr) {
                book.known.entry(addr).or_default().bootstrap = true;
                book.enqueue(addr);
            }
        }
        book
    }

    fn dialable(&self, addr: Ipv4Addr) -> bool {
        !(addr.is_unspecified()
            || addr.is_broadcast()
            || addr.is_multicast()
            || self.own.contains(&addr))
    }

    fn enqueue(&mut self, addr: Ipv4Addr) {
        if !self.connecting.contains(&addr) && !self.queue.contains(&addr) {
            self.queue.push_back(addr);
        }
    }

    /// An address this node turned out to have (a connection to itself).
    pub fn mark_own(&mut self, addr: Ipv4Addr) {
        self.own.insert(addr);
        self.known.remove(&addr);
        self.queue.retain(|&a| a != addr);
    }

    pub fn is_own(&self, addr: Ipv4Addr) -> bool {
        self.own.contains(&addr)
    }

    pub fn is_listening(&self, addr: Ipv4Addr) -> bool {
        self.known.get(&addr).is_some_and(|k| k.listening)
    }

    /// An address named by a peer; `connected` tells whether we already
    /// have a connection with it.
    pub fn offer(&mut self, addr: Ipv4Addr, connected: bool, now: Instant) {
        if connected || !self.dialable(addr) {
            return;
        }
        if !self.known.contains_key(&addr) && self.known.len() >= MAX_KNOWN {
            return;
        }
        let known = self.known.entry(addr).or_default();
        if known.retry_at.is_none_or(|at| at <= now) {
            self.enqueue(addr);
        }
    }

    /// A peer connected to us from `addr`: dial it back once, to learn
    /// whether it listens (a node) or not (a client). The relay rule trusts
    /// only listening peers to pass histories on.
    pub fn probe(&mut self, addr: Ipv4Addr) {
        if !self.dialable(addr)
            || (!self.known.contains_key(&addr) && self.known.len() >= MAX_KNOWN)
        {
            return;
        }
        let known = self.known.entry(addr).or_default();
        if !known.listening && !known.probed {
            known.probed = true;
            self.enqueue(addr);
        }
    }

    /// A connection with a peer ended: if it listens, dial it again (after
    /// its backoff, if it failed before).
    pub fn lost(&mut self, addr: Ipv4Addr, now: Instant) {
        if self.is_listening(addr) {
            self.offer(addr, false, now);
        }
    }

    /// Bootstrap peers due for another try (call while no peer is connected).
    pub fn retry_bootstrap(&mut self, now: Instant) {
        let due: Vec<Ipv4Addr> = self
            .known
            .iter()
            .filter(|(_, k)| k.bootstrap && k.retry_at.is_none_or(|at| at <= now))
            .map(|(&a, _)| a)
            .collect();
        for addr in due {
            self.enqueue(addr);
        }
    }

    /// Addresses to dial now, within the in-flight cap.
    pub fn next_dials(&mut self) -> Vec<Ipv4Addr> {
        let mut dials = Vec::new();
        while self.connecting.len() < self.max_connecting {
            let Some(addr) = self.queue.pop_front() else {
                break;
            };
            if self.dialable(addr) {
                self.connecting.insert(addr);
                dials.push(addr);
            }
        }
        dials
    }

    /// Drops queued dials to `addr` (a connection with it exists now).
    pub fn forget_queued(&mut self, addr: Ipv4Addr) {
        self.queue.retain(|&a| a != addr);
    }

    pub fn connecting(&self) -> usize {
        self.connecting.len()
    }

    pub fn dial_succeeded(&mut self, addr: Ipv4Addr) {
        self.connecting.remove(&addr);
        let known = self.known.entry(addr).or_default();
        known.listening = true;
        known.failures = 0;
        known.retry_at = None;
    }

    pub fn dial_failed(&mut self, addr: Ipv4Addr, now: Instant) {
        self.connecting.remove(&addr);
        if let Some(known) = self.known.get_mut(&addr) {
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << known.failures.min(16))
                .min(MAX_BACKOFF);
            known.failures += 1;
            known.retry_at = Some(now + backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 9, 0, last)
    }

    #[test]
    fn dials_are_capped_deduplicated_and_skip_own_address() {
        let now = Instant::now();
        let mut book = AddressBook::new(ip(1), &[ip(2)], 2);
        for last in [1, 2, 3, 3, 4, 5] {
            book.offer(ip(last), false, now);
        }
        book.offer(Ipv4Addr::UNSPECIFIED, false, now);
        assert_eq!(book.next_dials(), [ip(2), ip(3)]);
        assert_eq!(book.next_dials(), Vec::<Ipv4Addr>::new());
        book.dial_failed(ip(2), now);
        assert_eq!(book.next_dials(), [ip(4)]);
        book.dial_succeeded(ip(3));
        assert_eq!(book.next_dials(), [ip(5)]);
        assert!(book.is_listening(ip(3)));
        assert!(!book.is_listening(ip(4)));
    }

    #[test]
    fn an_inbound_peer_is_dialed_back_once() {
        let mut book = AddressBook::new(ip(1), &[], 8);
        book.probe(ip(2));
        book.probe(ip(2));
        assert_eq!(book.next_dials(), [ip(2)]);
        book.dial_failed(ip(2), Instant::now());
        book.probe(ip(2));
        assert_eq!(book.next_dials(), Vec::<Ipv4Addr>::new());
        assert!(!book.is_listening(ip(2)));
    }

    #[test]
    fn a_failed_address_waits_out_its_backoff() {
        let now = Instant::now();
        let mut book = AddressBook::new(ip(1), &[ip(2)], 8);
        assert_eq!(book.next_dials(), [ip(2)]);
        book.dial_failed(ip(2), now);
        book.retry_bootstrap(now);
        assert_eq!(book.next_dials(), Vec::<Ipv4Addr>::new());
        book.retry_bootstrap(now + Duration::from_secs(1));
        assert_eq!(book.next_dials(), [ip(2)]);
        book.dial_failed(ip(2), now);
        book.offer(ip(2), false, now + Duration::from_millis(1500));
        assert_eq!(
            book.next_dials(),
            Vec::<Ipv4Addr>::new(),
            "second backoff is 2 s"
        );
    }
}
