//! The open-file limit (`ulimit -n`) against the connections the flags
//! allow. Every connection is a file descriptor: past the limit, `accept`
//! fails and the node cannot even be reached on its control socket. So at
//! start the soft limit is raised to the hard one (as most servers do), and
//! when that is still too low for `--max-inbound`, the bound is lowered to
//! fit, and said (as bitcoind does with `-maxconnections`).

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

/// Raises the soft open-file limit to the hard one and returns
/// `max_inbound`, lowered to what the limit leaves (at least 1; warned
/// at the default level when lowered). When the limit cannot be read,
/// `max_inbound` as given.
pub fn fit(max_inbound: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read the open-file limit: {e}");
            return max_inbound;
        }
    };
    let fits = fitting(max_inbound, limit);
    if fits < max_inbound {
        warn!(
            "--max-inbound {max_inbound} lowered to {fits}: the open-file limit is {limit} \
             (ulimit -n; each inbound connection may take {PER_INBOUND} and the node \
             {RESERVED} more)"
        );
    }
    fits
}

/// `max_inbound`, lowered to what `limit` descriptors leave.
fn fitting(max_inbound: usize, limit: u64) -> usize {
    let room = limit.saturating_sub(RESERVED) / PER_INBOUND;
    max_inbound
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbound_bound_fits_the_open_file_limit() {
        assert_eq!(fitting(128, 1024), 128);
        assert_eq!(fitting(128, 300), 84);
        assert_eq!(fitting(128, 64), 5);
        assert_eq!(fitting(128, 10), 1);
        assert_eq!(fitting(128, u64::MAX), 128);
    }
}
