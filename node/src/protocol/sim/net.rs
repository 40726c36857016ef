//! The simulated network: connections between nodes and when what is sent
//! on them arrives, with the faults of real networks (see [`Faults`]).
//!
//! Only arithmetic and bookkeeping live here: which connections exist, how
//! long each link takes, when a message sent now arrives, which pairs a
//! partition separates. The harness (`mod.rs`) schedules the deliveries and
//! checks at each one whether its connection still exists: a message whose
//! connection broke meanwhile is lost with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::protocol::ConnId;

/// The reactor's connect timeout (`reactor/mod.rs`): a dial whose packets
/// are dropped (across a partition) fails after it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP's first retransmission timeout: a lost segment is sent again after
/// it, and after twice as long at each further loss of the same segment.
const FIRST_RTO: Duration = Duration::from_millis(200);
/// Linux's longest retransmission timeout (`TCP_RTO_MAX`).
const MAX_RTO: Duration = Duration::from_secs(120);
/// No one-way trip takes longer, jitter included (retransmissions aside).
const MAX_LATENCY: Duration = Duration::from_millis(300);

/// How long a message takes from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// 0.2 to 3 ms a message, uniform: nodes in one room (the simulator's
    /// first model).
    Lan,
    /// Nodes spread over the world: each pair of nodes has a one-way base
    /// latency of `1 + 299 u³` ms for `u` uniform in [0, 1), skewed toward
    /// short links as on the Internet (median 38 ms, one pair in eight
    /// past 200 ms); each message adds jitter of up to a tenth of the base;
    /// the sum is at most 300 ms.
    Wan,
}

/// The faults a simulated network shows.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Message latency.
    pub latency: Latency,
    /// Probability that a message is lost on its way, and again at each
    /// retransmission. TCP never loses a message outright: the loss delays
    /// it, and everything behind it on its connection, by the
    /// retransmission timeout (200 ms, doubling on repeated losses).
    pub loss: f64,
    /// Mean life of a connection before its link is cut (exponentially
    /// distributed); `None`: links are never cut at random.
    pub link_life: Option<Duration>,
}

impl Faults {
    /// A network in one room: short latencies, nothing lost or cut.
    pub fn lan() -> Faults {
        Faults {
            latency: Latency::Lan,
            loss: 0.0,
            link_life: None,
        }
    }

    /// Nodes spread over the world; nothing lost or cut.
    pub fn wan() -> Faults {
        Faults {
            latency: Latency::Wan,
            ..Faults::lan()
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone)]
pub struct End {
    /// The node holding this end (its slot in the simulator).
    pub node: usize,
    /// The other end.
    pub peer_conn: ConnId,
    /// The node holding the other end.
    pub peer_node: usize,
    /// The link's one-way latency, before jitter.
    pub base: Duration,
    /// When the last byte sent from this end reaches the other. TCP
    /// delivers in order, so nothing sent later arrives sooner: a message
    /// delayed by retransmissions holds up everything behind it.
    pub last_arrival: Duration,
    /// The owner has been told `Connected`: it must be told when the
    /// connection ends. An end not told yet turns into a failed dial (or,
    /// inbound, into nothing).
    pub told: bool,
}

/// The connections and the links under them.
pub struct Net {
    pub faults: Faults,
    /// Links are cut at random (`Faults::link_life`) only while this holds:
    /// a test turns it off to let the network settle.
    pub cutting: bool,
    rng: Xoshiro256PlusPlus,
    /// The base latency of each pair of addresses, drawn when the pair
    /// first connects and kept: a node that reconnects (or restarts) sits
    /// where it was.
    bases: HashMap<(Ipv4Addr, Ipv4Addr), Duration>,
    /// Every open end, by its id. Ordered, so that iterating over it (to
    /// cut a node's or a partition's links) is the same in every run of a
    /// seed.
    ends: BTreeMap<ConnId, End>,
    next_conn: u64,
    /// The nodes on one side of a partition, while one holds.
    partition: Option<BTreeSet<usize>>,
}

impl Net {
    /// A network of no connections; `seed` drives every draw.
    pub fn new(faults: Faults, seed: u64) -> Net {
        Net {
            faults,
            cutting: true,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            bases: HashMap::new(),
            ends: BTreeMap::new(),
            next_conn: 1,
            partition: None,
        }
    }

    /// The open end `conn`.
    pub fn end(&self, conn: ConnId) -> Option<&End> {
        self.ends.get(&conn)
    }

    /// The open end `conn`, to change.
    pub fn end_mut(&mut self, conn: ConnId) -> Option<&mut End> {
        self.ends.get_mut(&conn)
    }

    /// Removes the end `conn` (its owner closed it, or was told the peer
    /// did); the other end stays until its owner learns of the close.
    pub fn remove(&mut self, conn: ConnId) -> Option<End> {
        self.ends.remove(&conn)
    }

    /// The one-way latency between `a` and `b`, before jitter.
    pub fn base(&mut self, a: Ipv4Addr, b: Ipv4Addr) -> Duration {
        let key = (a.min(b), a.max(b));
        if let Some(&base) = self.bases.get(&key) {
            return base;
        }
        let base = match self.faults.latency {
            // A message's whole latency is drawn per message (`jitter`).
            Latency::Lan => Duration::from_micros(200),
            Latency::Wan => {
                let u: f64 = self.rng.random_range(0.0..1.0);
                Duration::from_secs_f64((1.0 + 299.0 * u * u * u) / 1000.0)
            }
        };
        self.bases.insert(key, base);
        base
    }

    /// What one message adds to its link's base latency.
    fn jitter(&mut self, base: Duration) -> Duration {
        match self.faults.latency {
            Latency::Lan => Duration::from_micros(self.rng.random_range(0..2800)),
            Latency::Wan => {
                let most = (base / 10).min(MAX_LATENCY - base);
                most.mul_f64(self.rng.random_range(0.0..=1.0))
            }
        }
    }

    /// Opens a connection dialed at `now` by node `i` (address `ai`) to
    /// node `j` (`aj`): the dialer's end, the acceptor's, and when each
    /// learns of it. The dialer is connected after a round trip (SYN,
    /// SYN-ACK); the acceptor accepts when the final ACK reaches it, half a
    /// round trip later. The first thing each end receives is its
    /// `Connected`, so each direction's deliveries start there.
    pub fn open(
        &mut self,
        now: Duration,
        (i, ai): (usize, Ipv4Addr),
        (j, aj): (usize, Ipv4Addr),
    ) -> (ConnId, Duration, ConnId, Duration) {
        let base = self.base(ai, aj);
        let (out, inb) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
        self.next_conn += 2;
        let (out_at, in_at) = (now + 2 * base, now + 3 * base);
        let end = |node, peer_conn, peer_node, last_arrival| End {
            node,
            peer_conn,
            peer_node,
            base,
            last_arrival,
            told: false,
        };
        // What the dialer sends reaches the acceptor after its accept, and
        // the other way round.
        self.ends.insert(out, end(i, inb, j, in_at));
        self.ends.insert(inb, end(j, out, i, out_at));
        (out, out_at, inb, in_at)
    }

    /// Something sent at `now` from the end `conn`: when it reaches the
    /// other end, and which node and end that is. `None` if `conn` is not
    /// open.
    pub fn transmit(&mut self, now: Duration, conn: ConnId) -> Option<(Duration, usize, ConnId)> {
        let base = self.ends.get(&conn)?.base;
        let mut at = now + base + self.jitter(base);
        let mut rto = FIRST_RTO;
        while self.faults.loss > 0.0 && self.rng.random_bool(self.faults.loss) {
            at += rto;
            rto = (rto * 2).min(MAX_RTO);
        }
        let end = self.ends.get_mut(&conn).expect("checked");
        at = at.max(end.last_arrival);
        end.last_arrival = at;
        Some((at, end.peer_node, end.peer_conn))
    }

    /// Cuts the link under `conn`: both ends go at once, and what is in
    /// flight on it is lost. Returns the ends whose owners were told of the
    /// connection, each with the delay after which it notices (the link's
    /// latency: the reset, or the failed write, takes that long).
    pub fn cut(&mut self, conn: ConnId) -> Vec<(usize, ConnId, Duration)> {
        let Some(end) = self.ends.remove(&conn) else {
            return Vec::new();
        };
        let peer_conn = end.peer_conn;
        let other = self.ends.remove(&peer_conn);
        [Some((conn, end)), other.map(|o| (peer_conn, o))]
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.told)
            .map(|(c, e)| (e.node, c, e.base))
            .collect()
    }

    /// The open ends held by node `node`.
    pub fn ends_of(&self, node: usize) -> Vec<ConnId> {
        self.ends
            .iter()
            .filter(|(_, e)| e.node == node)
            .map(|(&c, _)| c)
            .collect()
    }

    /// When a new connection's link is to be cut, if links are cut at
    /// random.
    pub fn draw_life(&mut self) -> Option<Duration> {
        let mean = self.faults.link_life.filter(|_| self.cutting)?;
        // Exponential: the chance of a cut is the same at every moment.
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        Some(mean.mul_f64(-u.ln()))
    }

    /// Splits the network: `side` on one side, every other node on the
    /// other. Returns the ends of the links that cross it, for the caller
    /// to cut.
    pub fn split(&mut self, side: BTreeSet<usize>) -> Vec<ConnId> {
        let crossing = self
            .ends
            .iter()
            .filter(|(_, e)| side.contains(&e.node) != side.contains(&e.peer_node))
            .map(|(&c, _)| c)
            .collect();
        self.partition = Some(side);
        crossing
    }

    /// Ends the partition: dials across succeed again.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    /// Whether a partition separates nodes `i` and `j`.
    pub fn separated(&self, i: usize, j: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&i) != side.contains(&j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(loss: f64) -> Net {
        Net::new(
            Faults {
                loss,
                ..Faults::wan()
            },
            3,
        )
    }

    fn a(last: u8) -> (usize, Ipv4Addr) {
        (last as usize, Ipv4Addr::new(127, 50, 0, last))
    }

    #[test]
    fn wan_latencies_lie_between_1_and_300_ms_and_lean_short() {
        let mut net = net(0.0);
        let mut bases: Vec<Duration> = (1..=200)
            .map(|k| net.base(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 1, 0, k)))
            .collect();
        bases.sort();
        assert!(bases[0] >= Duration::from_millis(1));
        assert!(bases[199] <= MAX_LATENCY);
        let median = bases[100];
        assert!(
            median > Duration::from_millis(10) && median < Duration::from_millis(100),
            "{median:?}"
        );
        // Symmetric and stable.
        let (x, y) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 1, 0, 7));
        assert_eq!(net.base(x, y), net.base(y, x));
    }

    #[test]
    fn a_connection_delivers_in_order_even_when_messages_are_lost() {
        let mut net = net(0.3);
        let (out, out_at, inb, in_at) = net.open(Duration::ZERO, a(1), a(2));
        assert!(out_at < in_at);
        let mut last = in_at;
        let mut delayed = 0;
        for k in 0..1000u64 {
            let now = out_at + Duration::from_millis(k);
            let (at, node, conn) = net.transmit(now, out).expect("open");
            assert_eq!((node, conn), (2, inb));
            assert!(at >= last, "message {k} overtook an earlier one");
            if at >= now + FIRST_RTO {
                delayed += 1;
            }
            last = at;
        }
        // With 30 % loss, many messages wait out a retransmission (their
        // own or one ahead of them); none is dropped.
        assert!(delayed > 300, "{delayed}");
    }

    #[test]
    fn a_cut_closes_both_ends_and_tells_only_those_connected() {
        let mut net = net(0.0);
        let (out, _, inb, _) = net.open(Duration::ZERO, a(1), a(2));
        net.end_mut(out).expect("open").told = true;
        let told = net.cut(inb);
        assert_eq!(told.len(), 1);
        assert_eq!((told[0].0, told[0].1), (1, out));
        assert!(net.end(out).is_none() && net.end(inb).is_none());
        assert_eq!(net.transmit(Duration::ZERO, out), None);
    }

    #[test]
    fn a_partition_separates_its_sides_until_healed() {
        let mut net = net(0.0);
        let (within, ..) = net.open(Duration::ZERO, a(1), a(2));
        let (across, _, across_in, _) = net.open(Duration::ZERO, a(1), a(3));
        let crossing = net.split(BTreeSet::from([1, 2]));
        assert_eq!(crossing, [across, across_in]);
        assert!(net.separated(1, 3) && net.separated(3, 2));
        assert!(!net.separated(1, 2));
        assert!(net.end(within).is_some());
        net.heal();
        assert!(!net.separated(1, 3));
    }
}
