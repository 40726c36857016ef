//! Host names given with `--peer`. Each is resolved to an IPv4 address
//! when the command line is parsed. A name the system's resolver cannot
//! resolve *yet* (it answers "try again": no network or no DNS server yet,
//! as for a service started at boot) does not stop the node: it is
//! resolved again on a thread of its own, every [`FIRST_RETRY`] doubling to
//! [`MAX_RETRY`], until it resolves (as bitcoind does with `-addnode`
//! names), and the node dials it then. A name that does not exist is a
//! mistake on the command line: exit 2.

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::Duration;

use dns_lookup::{AddrFamily, AddrInfoHints, LookupErrorKind, SockType};
use log::{debug, info};

use crate::inbox::{Mail, Mailer};
use crate::protocol::Event;

/// The wait before the first new try of a name that could not be resolved
/// at start.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two tries of a name (bitcoind tries its
/// `-addnode` names once a minute or so).
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// Said of a name with IPv6 addresses only (the network is IPv4).
const NO_IPV4: &str = "it has no IPv4 address (the network is IPv4 only)";

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// In words: the resolver's message.
    pub reason: String,
    /// The resolver said to try again later (no network, no answer from a
    /// DNS server); else the name has no IPv4 address, or does not exist.
    pub temporary: bool,
}

/// The first IPv4 address of `name`, as the system's resolver gives it
/// (`/etc/hosts`, DNS, ... as `nsswitch.conf` says). Blocks while the
/// resolver works (seconds when a DNS server does not answer).
///
/// # Errors
/// [`Unresolved`], saying whether to try again.
pub fn resolve(name: &str) -> Result<Ipv4Addr, Unresolved> {
    let hints = AddrInfoHints {
        socktype: SockType::Stream.into(),
        address: AddrFamily::Inet.into(),
        ..AddrInfoHints::default()
    };
    let found = dns_lookup::getaddrinfo(Some(name), None, Some(hints)).map_err(|e| {
        let temporary = matches!(e.kind(), LookupErrorKind::Again);
        // Asked for IPv4 only, the resolver says "not known" of a name
        // that has IPv6 addresses alone.
        let ipv6_only =
            !temporary && dns_lookup::lookup_host(name).is_ok_and(|mut a| a.next().is_some());
        Unresolved {
            reason: if ipv6_only {
                NO_IPV4.to_string()
            } else {
                std::io::Error::from(e).to_string()
            },
            temporary,
        }
    })?;
    found
        .filter_map(Result::ok)
        .find_map(|info| match info.sockaddr.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| Unresolved {
            reason: NO_IPV4.to_string(),
            temporary: false,
        })
}

/// Resolves `name` again on a thread of its own, after [`FIRST_RETRY`]
/// and then waits doubling to [`MAX_RETRY`], until it resolves; tells the
/// node each try ([`Event::Unresolved`], [`Event::Resolved`]). The thread
/// ends once the name resolves or the event loop is gone.
pub fn retry(name: String, mailer: Mailer) {
    let spawned = thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            let mut wait = FIRST_RETRY;
            loop {
                thread::sleep(wait);
                wait = (wait * 2).min(MAX_RETRY);
                match resolve(&name) {
                    Ok(addr) => {
                        info!("host name '{name}' resolved to {addr}: dialing it");
                        mailer.post(Mail::Event(Event::Resolved { name, addr }));
                        return;
                    }
                    Err(e) => {
                        debug!("host name '{name}' still unresolved: {}", e.reason);
                        let event = Event::Unresolved {
                            name: name.clone(),
                            reason: e.reason,
                            retry_in: wait,
                        };
                        if !mailer.post(Mail::Event(event)) {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start a thread to resolve a --peer host name: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_their_ipv4_address() {
        assert_eq!(resolve("localhost"), Ok(Ipv4Addr::LOCALHOST));
        assert_eq!(resolve("127.0.0.9"), Ok(Ipv4Addr::new(127, 0, 0, 9)));
        // An IPv6 literal stands for a name with IPv6 addresses only.
        let v6 = resolve("::1").unwrap_err();
        assert_eq!((v6.reason.as_str(), v6.temporary), (NO_IPV4, false));
    }
}
