//! The open-file limit (`ulimit -n`) against the connections the flags
//! allow. Every connection is a file descriptor: past the limit, `accept`
//! fails and the node cannot even be reached on its control socket. So at
//! start the soft limit is raised to the hard one (as most servers do);
//! when that is still too low for `--max-inbound`, the bound is lowered to
//! fit, and said (as bitcoind does with `-maxconnections`); and outbound
//! connections (PROTOCOL.md: one to every address a PeerList names) are
//! bounded by the descriptors left.

use log::warn;

/// Descriptors the node holds besides its connections: stdio, the event
/// loop and its waker, the signal pipe, both listeners, the control
/// socket's clients (at most 32), the data directory's files and lock,
/// the log file.
pub const RESERVED: u64 = 48;
/// Descriptors an inbound bound costs: its connections open, as many
/// again kept to finish a reply, and as many again left for outbound
/// peers.
pub const PER_INBOUND: u64 = 3;

/// The connections the open-file limit leaves room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `--max-inbound`, lowered to fit.
    pub max_inbound: usize,
    /// Outbound connections, established and being dialed, at most.
    pub max_outbound: usize,
}

/// Raises the soft open-file limit to the hard one and returns the
/// connections it leaves room for: `max_inbound` lowered to fit (at least
/// 1; warned at the default level when lowered), and what is left for
/// outbound ones. When the limit cannot be read, `max_inbound` as given
/// and no outbound bound.
pub fn fit(max_inbound: usize) -> Budget {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read the open-file limit: {e}");
            return Budget {
                max_inbound,
                max_outbound: usize::MAX,
            };
        }
    };
    let budget = budget(max_inbound, limit);
    if budget.max_inbound < max_inbound {
        warn!(
            "--max-inbound {max_inbound} lowered to {}: the open-file limit is {limit} \
             (ulimit -n; each inbound connection may take {PER_INBOUND} and the node \
             {RESERVED} more); outbound connections at most {}",
            budget.max_inbound, budget.max_outbound
        );
    }
    budget
}

/// What `limit` descriptors leave: [`PER_INBOUND`] a slot of
/// `max_inbound` (lowered to fit), then the rest, but one, for outbound
/// connections (two descriptors a slot are inbound ones: open, and
/// lingering to finish a reply).
fn budget(max_inbound: usize, limit: u64) -> Budget {
    let usable = limit.saturating_sub(RESERVED);
    let room = usize::try_from(usable / PER_INBOUND).unwrap_or(usize::MAX);
    let max_inbound = max_inbound.min(room).max(1);
    let inbound = 2 * max_inbound as u64;
    let max_outbound = usize::try_from(usable.saturating_sub(inbound))
        .unwrap_or(usize::MAX)
        .max(1);
    Budget {
        max_inbound,
        max_outbound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_fit_the_open_file_limit() {
        let fits = |inbound, limit| {
            let b = budget(inbound, limit);
            (b.max_inbound, b.max_outbound)
        };
        assert_eq!(fits(128, 1024), (128, 720));
        assert_eq!(fits(128, 300), (84, 84));
        assert_eq!(fits(128, 64), (5, 6));
        assert_eq!(fits(128, 10), (1, 1));
        assert_eq!(fits(128, u64::MAX).0, 128);
    }
}
