//! The addresses this node knows, and which ones to dial next.
//!
//! Addresses come from `--peer` and from peers' PeerLists, which may name
//! anything: this node itself, duplicates, short-lived clients that do not
//! listen, addresses that never answer, peers that accept and close at
//! once. So dialing is queued, at most `max_connecting` attempts are in
//! flight, both tables are bounded, and every address that fails waits out
//! a backoff before it is dialed again: doubling from 1 s, with jitter, up
//! to 2 minutes. A connection that ends before it has lived
//! [`HEALTHY_AFTER`] counts as a failure, whoever ended it and however
//! (refused, reset, closed by the peer or by us): a peer that accepts and
//! closes is dialed at most 6 times in 30 s, not thousands of times a
//! second.
//!
//! A dial that gets no answer at all (it times out, or the host or network
//! is unreachable) says the path is down, not that the peer refuses: a
//! split network. Such an address is tried again at least every
//! [`UNANSWERED_MAX`] (times the jitter) for its first [`QUICK_RETRY_FOR`]
//! of failing, so that a healed split is crossed within seconds; each of
//! those tries is one SYN and its retransmissions. The peers we lost are
//! wanted back for as long as [`GIVE_UP_AFTER`], at most [`MAX_WANTED`] of
//! them (the longest failing gives way): a split of hours still heals, and
//! dead addresses do not pile up.
//!
//! Addresses not known to listen (named in a PeerList, or dialed once
//! after they connected to us and left, to learn whether they listen) are discovered at a bounded rate:
//! [`DISCOVERY_BURST`] at once, then [`DISCOVERY_PER_SEC`]. On a node bound
//! to 0.0.0.0 every loopback address leads back to the node itself, and a
//! PeerList may name thousands of them: each is dialed once, learnt as
//! this node's own, and counted in the same [`MAX_KNOWN`] bound as every
//! other address, so their dials end, slowly, instead of looping through
//! the kernel's ports.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::bans::Bans;
use super::report::{BanRow, DialRow, ResolvingRow};

/// Most addresses remembered; PeerLists beyond it are not followed.
const MAX_KNOWN: usize = 4096;
/// Backoff after the first failure; doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// A connection that lives this long is healthy: the address's failures
/// are forgotten when it ends. One that ends sooner is a failure.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// The longest backoff after a dial that got no answer, while the address
/// has been failing for less than [`QUICK_RETRY_FOR`].
const UNANSWERED_MAX: Duration = Duration::from_secs(4);
/// How long unanswered dials are retried quickly.
const QUICK_RETRY_FOR: Duration = Duration::from_secs(15 * 60);
/// A lost peer (not a bootstrap one) is given up after failing this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Most lost peers (not bootstrap ones) wanted back at once.
const MAX_WANTED: usize = 64;
/// Dials of addresses not known to listen that may start at once...
const DISCOVERY_BURST: f64 = 64.0;
/// ...and then a second: a flood of PeerLists costs a few dials a second.
const DISCOVERY_PER_SEC: f64 = 8.0;

#[derive(Debug, Default)]
struct Known {
    /// A connection to it succeeded once: it listens on the network port.
    listening: bool,
    /// Dialed back once after it connected to us, to learn whether it
    /// listens.
    probed: bool,
    /// We want a connection with it: a bootstrap peer, or a listening peer
    /// we lost. Redialed whenever its backoff allows.
    wanted: bool,
    bootstrap: bool,
    failures: u32,
    /// The first failure of the current run of failures.
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
}

/// A `--peer` host name waiting to be resolved.
#[derive(Debug)]
struct PendingName {
    name: String,
    /// The resolver's last answer, in words.
    reason: String,
    retry_at: Instant,
}

/// Dialing: which addresses, how many at once, and when again.
#[derive(Debug)]
pub struct AddressBook {
    /// Addresses that lead back to this node.
    own: HashSet<Ipv4Addr>,
    known: HashMap<Ipv4Addr, Known>,
    /// Wanted or listening addresses to dial, in order.
    queue: VecDeque<Ipv4Addr>,
    /// Addresses to discover (neither wanted nor known to listen), dialed
    /// after `queue` and within the discovery rate.
    discover: VecDeque<Ipv4Addr>,
    connecting: HashSet<Ipv4Addr>,
    max_connecting: usize,
    rng: Xoshiro256PlusPlus,
    /// `--peer` host names not resolved yet (the resolver thread tries
    /// them again and says how it went): bootstrap peers once resolved.
    names: Vec<PendingName>,
    /// Discovery dials that may start now (a token bucket, see
    /// [`DISCOVERY_BURST`]), as of `tokens_at`.
    tokens: f64,
    tokens_at: Option<Instant>,
    /// Addresses never dialed (`node ban`).
    bans: Bans,
}

/// What became of an address after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures in a row, this one included.
    pub failures: u32,
    /// Wait before the next try.
    pub wait: Duration,
    /// A bootstrap peer (given with `--peer`).
    pub bootstrap: bool,
}

impl AddressBook {
    /// A book that never dials `own` (the address we listen on, unless it
    /// is 0.0.0.0), dials `bootstrap` first, at most `max_connecting` at
    /// once; `seed` drives the jitter.
    pub fn new(own: Ipv4Addr, bootstrap: &[Ipv4Addr], max_connecting: usize, seed: u64) -> Self {
        let mut book = AddressBook {
            own: HashSet::from([own]),
            known: HashMap::new(),
            queue: VecDeque::new(),
            discover: VecDeque::new(),
            connecting: HashSet::new(),
            max_connecting: max_connecting.max(1),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            names: Vec::new(),
            tokens: DISCOVERY_BURST,
            tokens_at: None,
            bans: Bans::default(),
        };
        for &addr in bootstrap {
            book.add_bootstrap(addr);
        }
        book
    }

    /// A bootstrap peer (`--peer`, or `node connect`): wanted whatever
    /// befalls it, dialed first, and now (any backoff is forgotten).
    /// False when it cannot be dialed (banned, or this node itself).
    pub fn add_bootstrap(&mut self, addr: Ipv4Addr) -> bool {
        if !self.dialable(addr) {
            return false;
        }
        let known = self.known.entry(addr).or_default();
        known.bootstrap = true;
        known.wanted = true;
        known.retry_at = None;
        self.enqueue(addr);
        true
    }

    /// `addr` is no longer wanted back when lost (`node disconnect`).
    pub fn unwant(&mut self, addr: Ipv4Addr) {
        if let Some(known) = self.known.get_mut(&addr) {
            known.wanted = false;
            known.bootstrap = false;
        }
        self.unqueue(addr);
    }

    /// The bans read at start (`now`).
    pub fn restore_bans(&mut self, rows: &[BanRow], now: Instant) {
        self.bans = Bans::restore(rows, now);
        for row in rows {
            self.unqueue(row.addr);
        }
    }

    /// Bans `addr` for `span` from `now` (`None`: forever): it is not
    /// dialed until the ban ends.
    pub fn ban(&mut self, addr: Ipv4Addr, span: Option<Duration>, now: Instant) {
        self.bans.ban(addr, span, now);
        self.unqueue(addr);
    }

    /// Lifts the ban of `addr`; false if it had none.
    pub fn unban(&mut self, addr: Ipv4Addr) -> bool {
        self.bans.unban(addr)
    }

    /// Whether `addr` is banned.
    pub fn is_banned(&self, addr: Ipv4Addr) -> bool {
        self.bans.contains(addr)
    }

    /// Lifts the bans that ended by `now`; whether any did.
    pub fn expire_bans(&mut self, now: Instant) -> bool {
        self.bans.expire(now)
    }

    /// The bans, with the time each has left.
    pub fn ban_rows(&self, now: Instant) -> Vec<BanRow> {
        self.bans.rows(now)
    }

    /// Addresses in a backoff: failed, and waiting for their next try.
    pub fn backing_off(&self, now: Instant) -> usize {
        self.known
            .values()
            .filter(|k| k.retry_at.is_some_and(|at| at > now))
            .count()
    }

    /// The `--peer` host names the resolver could not resolve at start
    /// (`now`), each with its answer and the wait before its next try.
    pub fn await_names(&mut self, names: &[ResolvingRow], now: Instant) {
        for name in names {
            let retry_at = now + name.retry_in.unwrap_or_default();
            self.name_unresolved(&name.name, name.reason.clone(), retry_at);
        }
    }

    /// The `--peer` host name `name` did not resolve (`reason`); it is
    /// tried again at `retry_at`.
    pub fn name_unresolved(&mut self, name: &str, reason: String, retry_at: Instant) {
        match self.names.iter_mut().find(|n| n.name == name) {
            Some(pending) => {
                pending.reason = reason;
                pending.retry_at = retry_at;
            }
            None => self.names.push(PendingName {
                name: name.to_string(),
                reason,
                retry_at,
            }),
        }
    }

    /// The `--peer` host name `name` resolved to `addr`: a bootstrap peer.
    pub fn name_resolved(&mut self, name: &str, addr: Ipv4Addr) {
        self.names.retain(|n| n.name != name);
        self.add_bootstrap(addr);
    }

    /// The host names not resolved yet, as `peers` shows them.
    pub fn name_rows(&self, now: Instant) -> Vec<ResolvingRow> {
        self.names
            .iter()
            .map(|n| ResolvingRow {
                name: n.name.clone(),
                reason: n.reason.clone(),
                retry_in: n.retry_at.checked_duration_since(now),
            })
            .collect()
    }

    fn dialable(&self, addr: Ipv4Addr) -> bool {
        !(addr.is_unspecified()
            || addr.is_broadcast()
            || addr.is_multicast()
            || self.own.contains(&addr)
            || self.bans.contains(addr))
    }

    fn enqueue(&mut self, addr: Ipv4Addr) {
        if self.connecting.contains(&addr) || self.is_queued(addr) {
            return;
        }
        if self.discovering(addr) {
            self.discover.push_back(addr);
        } else {
            self.queue.push_back(addr);
        }
    }

    fn is_queued(&self, addr: Ipv4Addr) -> bool {
        self.queue.contains(&addr) || self.discover.contains(&addr)
    }

    fn unqueue(&mut self, addr: Ipv4Addr) {
        self.queue.retain(|&a| a != addr);
        self.discover.retain(|&a| a != addr);
    }

    /// Room for one more entry about `addr`: addresses known to lead back
    /// to this node count too.
    fn room_for(&self, addr: Ipv4Addr) -> bool {
        self.known.contains_key(&addr) || self.known.len() + self.own.len() < MAX_KNOWN
    }

    fn due(known: &Known, now: Instant) -> bool {
        known.retry_at.is_none_or(|at| at <= now)
    }

    /// A dial of `addr` reached this node itself: never dial it again.
    pub fn mark_own(&mut self, addr: Ipv4Addr) {
        self.connecting.remove(&addr);
        self.own.insert(addr);
        self.known.remove(&addr);
        self.unqueue(addr);
    }

    /// Whether `addr` is known to listen on the network port.
    pub fn is_listening(&self, addr: Ipv4Addr) -> bool {
        self.known.get(&addr).is_some_and(|k| k.listening)
    }

    /// An address named by a peer; `connected` tells whether we already
    /// have a connection with it. Dialed unless it waits out a backoff.
    pub fn offer(&mut self, addr: Ipv4Addr, connected: bool, now: Instant) {
        if connected || !self.dialable(addr) || !self.room_for(addr) {
            return;
        }
        if Self::due(self.known.entry(addr).or_default(), now) {
            self.enqueue(addr);
        }
    }

    /// A peer that connected to us from `addr` is gone: dial it once, to
    /// learn whether it listens (a node) or not (a client). The relay rule
    /// trusts only listening peers to pass histories on. Never while a
    /// connection with it exists: a second one would cost a peer that
    /// keeps one entry per address its entry.
    pub fn probe(&mut self, addr: Ipv4Addr, now: Instant) {
        if !self.dialable(addr) || !self.room_for(addr) {
            return;
        }
        let known = self.known.entry(addr).or_default();
        if !known.listening && !known.probed && Self::due(known, now) {
            known.probed = true;
            self.enqueue(addr);
        }
    }

    /// A connection with `addr` ended after `lived`. Short-lived ones count
    /// as failures; a listening peer that was one of our peers (`primary`)
    /// is wanted back, dialed again once its backoff allows.
    pub fn ended(
        &mut self,
        addr: Ipv4Addr,
        lived: Duration,
        primary: bool,
        now: Instant,
    ) -> Option<Backoff> {
        if !self.dialable(addr) || !self.room_for(addr) {
            return None;
        }
        let backoff = if lived < HEALTHY_AFTER {
            Some(self.failed(addr, now, false))
        } else {
            let known = self.known.entry(addr).or_default();
            known.failures = 0;
            known.failing_since = None;
            known.retry_at = None;
            None
        };
        let known = self.known.entry(addr).or_default();
        if primary && known.listening && !known.wanted {
            known.wanted = true;
            self.bound_wanted();
        }
        backoff
    }

    /// At most [`MAX_WANTED`] lost peers are wanted back: past it, the one
    /// failing the longest is given up.
    fn bound_wanted(&mut self) {
        let lost = || self.known.iter().filter(|(_, k)| k.wanted && !k.bootstrap);
        if lost().count() <= MAX_WANTED {
            return;
        }
        let longest = lost()
            .min_by_key(|(addr, k)| (k.failing_since.is_none(), k.failing_since, **addr))
            .map(|(&addr, _)| addr);
        if let Some(known) = longest.and_then(|addr| self.known.get_mut(&addr)) {
            known.wanted = false;
        }
    }

    /// Counts a failure of `addr` and sets its next try; `unanswered`: the
    /// dial got no answer (see the module's comment).
    fn failed(&mut self, addr: Ipv4Addr, now: Instant, unanswered: bool) -> Backoff {
        let jitter = self.rng.random_range(1.0..1.5);
        let known = self.known.entry(addr).or_default();
        known.failures = known.failures.saturating_add(1);
        let failing_for = now.saturating_duration_since(*known.failing_since.get_or_insert(now));
        let doubled = FIRST_BACKOFF.saturating_mul(1 << (known.failures - 1).min(16));
        let wait = if unanswered && failing_for < QUICK_RETRY_FOR {
            doubled.min(UNANSWERED_MAX).mul_f64(jitter)
        } else {
            doubled.mul_f64(jitter).min(MAX_BACKOFF)
        };
        known.retry_at = Some(now + wait);
        if !known.bootstrap && failing_for >= GIVE_UP_AFTER {
            known.wanted = false;
        }
        Backoff {
            failures: known.failures,
            wait,
            bootstrap: known.bootstrap,
        }
    }

    /// Queues the wanted addresses whose backoff is over and that have no
    /// connection (`connected` says which have one).
    pub fn redial_wanted(&mut self, now: Instant, connected: impl Fn(Ipv4Addr) -> bool) {
        let mut due: Vec<Ipv4Addr> = self
            .known
            .iter()
            .filter(|&(&a, k)| {
                k.wanted && Self::due(k, now) && !connected(a) && !self.bans.contains(a)
            })
            .map(|(&a, _)| a)
            .collect();
        // In a known order, so that a simulation replays its seed.
        due.sort_unstable();
        for addr in due {
            self.enqueue(addr);
        }
    }

    /// A dial of `addr` would discover whether it listens: it is neither
    /// wanted nor known to listen.
    fn discovering(&self, addr: Ipv4Addr) -> bool {
        self.known
            .get(&addr)
            .is_none_or(|k| !k.wanted && !k.listening)
    }

    /// Addresses to dial now, within the in-flight cap and `room` (the
    /// outbound connections that may still open, dials in flight
    /// included); those not known to listen within the discovery rate
    /// too. An address `connected` says a connection exists with is
    /// dropped from the queue, not dialed.
    pub fn next_dials(
        &mut self,
        now: Instant,
        room: usize,
        connected: impl Fn(Ipv4Addr) -> bool,
    ) -> Vec<Ipv4Addr> {
        let since = self
            .tokens_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.tokens = (self.tokens + since.as_secs_f64() * DISCOVERY_PER_SEC).min(DISCOVERY_BURST);
        self.tokens_at = Some(now);
        let mut dials = Vec::new();
        while self.connecting.len() < self.max_connecting.min(room) {
            let addr = match self.queue.pop_front() {
                Some(addr) => addr,
                None if self.tokens >= 1.0 => match self.discover.pop_front() {
                    Some(addr) => {
                        self.tokens -= 1.0;
                        addr
                    }
                    None => break,
                },
                None => break,
            };
            // Never an address a connection exists with (PROTOCOL.md: those
            // "not yet connected to"); dropped from the queue.
            if self.dialable(addr) && !connected(addr) {
                self.connecting.insert(addr);
                dials.push(addr);
            }
        }
        dials
    }

    /// Whether addresses wait to be dialed.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty() || !self.discover.is_empty()
    }

    /// Drops queued dials to `addr` (a connection with it exists now).
    pub fn forget_queued(&mut self, addr: Ipv4Addr) {
        self.unqueue(addr);
    }

    /// A peer that connected to us from `addr` asked for our PeerList: a
    /// node, taken to listen on the network-wide port.
    pub fn heard_node(&mut self, addr: Ipv4Addr) {
        if self.dialable(addr) && self.room_for(addr) {
            self.known.entry(addr).or_default().listening = true;
        }
    }

    /// A dial of `addr` connected: it listens.
    pub fn dial_succeeded(&mut self, addr: Ipv4Addr) {
        self.connecting.remove(&addr);
        if self.room_for(addr) {
            self.known.entry(addr).or_default().listening = true;
        }
    }

    /// A dial of `addr` failed: refused, or `unanswered` (timed out, host
    /// or network unreachable).
    pub fn dial_failed(
        &mut self,
        addr: Ipv4Addr,
        now: Instant,
        unanswered: bool,
    ) -> Option<Backoff> {
        self.connecting.remove(&addr);
        (self.dialable(addr) && self.room_for(addr)).then(|| self.failed(addr, now, unanswered))
    }

    /// The addresses being dialed, queued, or waiting to be dialed again
    /// (wanted ones in backoff), for `peers`.
    pub fn rows(&self, now: Instant) -> Vec<DialRow> {
        let failures = |addr: &Ipv4Addr| self.known.get(addr).map_or(0, |k| k.failures);
        let row = |addr: &Ipv4Addr, queued| DialRow {
            addr: *addr,
            failures: failures(addr),
            retry_in: None,
            queued,
        };
        let mut rows: Vec<DialRow> = self
            .connecting
            .iter()
            .map(|addr| row(addr, false))
            .chain(
                self.queue
                    .iter()
                    .chain(&self.discover)
                    .map(|addr| row(addr, true)),
            )
            .collect();
        for (&addr, known) in &self.known {
            if let Some(at) = known.retry_at.filter(|&at| known.wanted && at > now)
                && !self.connecting.contains(&addr)
                && !self.is_queued(addr)
            {
                rows.push(DialRow {
                    addr,
                    failures: known.failures,
                    retry_in: Some(at - now),
                    queued: false,
                });
            }
        }
        rows.sort_by_key(|r| r.addr);
        rows
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
        let mut book = AddressBook::new(ip(1), &[ip(2)], 2, 1);
        for last in [1, 2, 3, 3, 4, 5] {
            book.offer(ip(last), false, now);
        }
        book.offer(Ipv4Addr::UNSPECIFIED, false, now);
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(2), ip(3)]);
        assert_eq!(
            book.next_dials(now, usize::MAX, |_| false),
            Vec::<Ipv4Addr>::new()
        );
        book.dial_failed(ip(2), now, false);
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(4)]);
        book.dial_succeeded(ip(3));
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(5)]);
        assert!(book.is_listening(ip(3)));
        assert!(!book.is_listening(ip(4)));
    }

    /// A flood of PeerLists naming addresses that lead back to this node
    /// (every loopback address, on a 0.0.0.0 bind) costs a burst of dials,
    /// then a few a second, and ends within [`MAX_KNOWN`] of them; wanted
    /// addresses are dialed whatever the discovery rate.
    #[test]
    fn discovery_is_bounded_in_rate_and_own_aliases_in_number() {
        let start = Instant::now();
        let mut book = AddressBook::new(Ipv4Addr::UNSPECIFIED, &[ip(2)], 8, 1);
        let alias = |i: usize| Ipv4Addr::from(0x7f64_0000 + u32::try_from(i).expect("small"));
        let mut dialed = Vec::new();
        let mut offered = 0;
        let mut now = start;
        for tick in 0..2400 {
            now = start + Duration::from_millis(250) * tick;
            // 2,000 new aliases a second.
            for _ in 0..500 {
                book.offer(alias(offered), false, now);
                offered += 1;
            }
            for addr in book.next_dials(now, usize::MAX, |_| false) {
                dialed.push((now, addr));
                if addr != ip(2) {
                    book.mark_own(addr);
                }
            }
            if tick == 40 {
                // Within the first 10 s: the burst and 8 a second, and the
                // bootstrap peer among them.
                assert!(
                    dialed.len() <= 64 + 80 + 1,
                    "{} dials in 10 s",
                    dialed.len()
                );
                assert!(dialed.iter().any(|&(_, a)| a == ip(2)));
            }
        }
        let aliases = dialed.iter().filter(|&&(_, a)| a != ip(2)).count();
        assert!(
            aliases < MAX_KNOWN,
            "{aliases} aliases dialed in {:?}",
            now - start
        );
        let last = dialed.last().expect("dials").0;
        for more in 0..100 {
            book.offer(alias(offered + more), false, now);
        }
        assert_eq!(
            book.next_dials(now + Duration::from_secs(60), usize::MAX, |_| false),
            Vec::<Ipv4Addr>::new(),
            "aliases still dialed after the bound ({aliases} so far, the last at {:?})",
            last - start
        );
    }

    #[test]
    fn an_inbound_peer_is_dialed_back_once() {
        let now = Instant::now();
        let mut book = AddressBook::new(ip(1), &[], 8, 1);
        book.probe(ip(2), now);
        book.probe(ip(2), now);
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(2)]);
        book.dial_failed(ip(2), now, false);
        book.probe(ip(2), now + Duration::from_secs(600));
        assert_eq!(
            book.next_dials(now, usize::MAX, |_| false),
            Vec::<Ipv4Addr>::new()
        );
        assert!(!book.is_listening(ip(2)));
    }

    #[test]
    fn failures_back_off_doubling_with_jitter_up_to_two_minutes() {
        let now = Instant::now();
        let mut book = AddressBook::new(ip(1), &[ip(2)], 8, 7);
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.push(book.dial_failed(ip(2), now, false).expect("dialable").wait);
        }
        for (k, wait) in waits.iter().enumerate() {
            let base = FIRST_BACKOFF * (1 << k);
            assert!(
                *wait == MAX_BACKOFF || (*wait >= base && *wait < base.mul_f64(1.5)),
                "failure {}: {wait:?}",
                k + 1
            );
        }
        assert_eq!(waits[9], MAX_BACKOFF);
    }

    /// Unanswered dials (a split network) are retried every few seconds
    /// for a while, then as slowly as refused ones; a refused dial never
    /// gets the quick retries.
    #[test]
    fn unanswered_dials_are_retried_quickly_for_a_while() {
        let start = Instant::now();
        let mut book = AddressBook::new(ip(1), &[ip(2), ip(3)], 8, 3);
        let mut now = start;
        let mut quick = Vec::new();
        while now < start + QUICK_RETRY_FOR {
            let wait = book.dial_failed(ip(2), now, true).expect("dialable").wait;
            quick.push(wait);
            now += wait + Duration::from_secs(5);
        }
        assert!(quick.len() > 50, "{} tries in 15 minutes", quick.len());
        assert!(
            quick.iter().all(|w| *w < UNANSWERED_MAX.mul_f64(1.5)),
            "{quick:?}"
        );
        let after = book.dial_failed(ip(2), now, true).expect("dialable").wait;
        assert_eq!(after, MAX_BACKOFF);
        let mut refused = Duration::ZERO;
        for _ in 0..10 {
            refused = book
                .dial_failed(ip(3), start, false)
                .expect("dialable")
                .wait;
        }
        assert_eq!(refused, MAX_BACKOFF);
    }

    /// Lost peers are wanted back for a day, at most [`MAX_WANTED`] of
    /// them: the one failing the longest gives way.
    #[test]
    fn lost_peers_are_wanted_back_for_a_day_and_at_most_max_wanted() {
        let start = Instant::now();
        let mut book = AddressBook::new(ip(1), &[], 128, 5);
        let lost = |book: &mut AddressBook, addr: Ipv4Addr, at: Instant| {
            book.dial_succeeded(addr);
            book.ended(addr, HEALTHY_AFTER, true, at);
            book.dial_failed(addr, at, true);
        };
        let wanted = |book: &AddressBook| {
            let mut w: Vec<Ipv4Addr> = book
                .known
                .iter()
                .filter(|(_, k)| k.wanted)
                .map(|(&a, _)| a)
                .collect();
            w.sort();
            w
        };
        for i in 0..=MAX_WANTED as u32 {
            lost(
                &mut book,
                Ipv4Addr::from(0x7f0a_0000 + i),
                start + Duration::from_secs(i.into()),
            );
        }
        let now = wanted(&book);
        assert_eq!(now.len(), MAX_WANTED);
        assert!(
            !now.contains(&Ipv4Addr::from(0x7f0a_0000)),
            "the longest failing gives way"
        );
        let first = Ipv4Addr::from(0x7f0a_0001);
        book.dial_failed(first, start + GIVE_UP_AFTER - Duration::from_secs(1), true);
        assert!(wanted(&book).contains(&first));
        book.dial_failed(first, start + GIVE_UP_AFTER + Duration::from_secs(1), true);
        assert!(!wanted(&book).contains(&first));
    }

    #[test]
    fn a_short_lived_connection_is_a_failure_and_a_long_one_resets_the_count() {
        let now = Instant::now();
        let mut book = AddressBook::new(ip(1), &[ip(2)], 8, 1);
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(2)]);
        book.dial_succeeded(ip(2));
        let first = book.ended(ip(2), Duration::from_millis(1), true, now);
        assert_eq!(first.map(|b| b.failures), Some(1));
        book.redial_wanted(now, |_| false);
        assert_eq!(
            book.next_dials(now, usize::MAX, |_| false),
            Vec::<Ipv4Addr>::new(),
            "in backoff"
        );
        book.redial_wanted(now + Duration::from_secs(2), |_| false);
        assert_eq!(book.next_dials(now, usize::MAX, |_| false), [ip(2)]);
        book.dial_succeeded(ip(2));
        assert_eq!(
            book.ended(ip(2), Duration::from_millis(1), true, now)
                .map(|b| b.failures),
            Some(2)
        );
        assert_eq!(book.ended(ip(2), HEALTHY_AFTER, true, now), None);
        book.redial_wanted(now, |_| false);
        assert_eq!(
            book.next_dials(now, usize::MAX, |_| false),
            [ip(2)],
            "healthy: redialed at once"
        );
    }
}
