//! Banned addresses (`node ban ADDR [DURATION]`, as bitcoind's `setban`):
//! a banned address is neither dialed nor kept when it connects, and so
//! never named in our PeerLists. A ban ends at its time (checked on each
//! tick, with the `now` passed in) or when it is lifted. The table is
//! bounded: past [`MAX_BANS`], the ban that ends first gives way.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::report::BanRow;

/// Most bans held; a newer one replaces the one that ends first (a
/// `forever` ban last).
pub const MAX_BANS: usize = 4096;

/// The bans, each with its end (`None`: forever).
#[derive(Debug, Default)]
pub struct Bans {
    until: BTreeMap<Ipv4Addr, Option<Instant>>,
}

impl Bans {
    /// The bans read from the data directory at `now`, their spans counted
    /// from then.
    pub fn restore(rows: &[BanRow], now: Instant) -> Bans {
        let mut bans = Bans::default();
        for row in rows {
            bans.ban(row.addr, row.expires_in, now);
        }
        bans
    }

    /// Bans `addr` for `span` from `now` (`None`: forever), replacing any
    /// ban it had.
    pub fn ban(&mut self, addr: Ipv4Addr, span: Option<Duration>, now: Instant) {
        self.until.insert(addr, span.map(|span| now + span));
        if self.until.len() > MAX_BANS {
            let first = self
                .until
                .iter()
                .filter(|&(&a, _)| a != addr)
                .min_by_key(|(_, until)| (until.is_none(), **until))
                .map(|(&a, _)| a);
            if let Some(first) = first {
                self.until.remove(&first);
            }
        }
    }

    /// Lifts the ban of `addr`; false if it had none.
    pub fn unban(&mut self, addr: Ipv4Addr) -> bool {
        self.until.remove(&addr).is_some()
    }

    /// Whether `addr` is banned (ends are applied by [`Bans::expire`]).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.until.contains_key(&addr)
    }

    /// Lifts the bans that ended by `now`; whether any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.until.len();
        self.until
            .retain(|_, until| until.is_none_or(|at| at > now));
        self.until.len() != before
    }

    /// Every ban with the time it has left, by address.
    pub fn rows(&self, now: Instant) -> Vec<BanRow> {
        self.until
            .iter()
            .map(|(&addr, until)| BanRow {
                addr,
                expires_in: until.map(|at| at.saturating_duration_since(now)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 41, 0, last)
    }

    #[test]
    fn bans_end_at_their_time_or_when_lifted() {
        let start = Instant::now();
        let mut bans = Bans::default();
        bans.ban(ip(1), Some(Duration::from_secs(60)), start);
        bans.ban(ip(2), None, start);
        assert!(bans.contains(ip(1)) && bans.contains(ip(2)));
        assert!(!bans.expire(start + Duration::from_secs(59)));
        assert_eq!(
            bans.rows(start + Duration::from_secs(59))[0].expires_in,
            Some(Duration::from_secs(1))
        );
        assert!(bans.expire(start + Duration::from_secs(60)));
        assert!(!bans.contains(ip(1)));
        assert!(bans.unban(ip(2)));
        assert!(!bans.unban(ip(2)));
        assert!(bans.rows(start).is_empty());
    }

    #[test]
    fn restored_bans_count_their_span_from_the_start_and_are_bounded() {
        let now = Instant::now();
        let rows = [BanRow {
            addr: ip(3),
            expires_in: Some(Duration::from_secs(5)),
        }];
        let mut bans = Bans::restore(&rows, now);
        assert_eq!(bans.rows(now), rows);
        bans.ban(ip(4), None, now);
        for i in 0..MAX_BANS as u32 {
            bans.ban(
                Ipv4Addr::from(0x0a00_0000 + i),
                Some(Duration::from_secs(60)),
                now,
            );
        }
        assert_eq!(bans.rows(now).len(), MAX_BANS);
        assert!(!bans.contains(ip(3)), "the ban ending first gave way");
        assert!(bans.contains(ip(4)), "a ban forever goes last");
    }
}
