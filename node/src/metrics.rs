//! The node's figures for scrapers, in the OpenMetrics text format
//! (prometheus-client's encoder): what `{"command":"metrics"}` answers
//! and `node metrics` prints. Each scrape builds a registry from a
//! [`Scrape`] of the state machine's counts; nothing is counted here.
//! Every name starts with `chatchain_`; `docs/CONTROL.md` lists them.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::protocol::{Scrape, Timed, Why};

type Labels = Vec<(&'static str, &'static str)>;

/// A counter holding `value`.
fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

/// A counter of seconds holding `value`.
fn seconds(value: f64) -> Counter<f64, AtomicU64> {
    let counter = Counter::<f64, AtomicU64>::default();
    counter.inc_by(value);
    counter
}

/// A gauge holding `value`.
fn gauge(value: usize) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

/// A gauge of a real number holding `value`.
fn real_gauge(value: f64) -> Gauge<f64, AtomicU64> {
    let gauge = Gauge::<f64, AtomicU64>::default();
    gauge.set(value);
    gauge
}

/// Registers how many of a thing (`count`: name and help) and their time
/// in seconds (`time`).
fn timed(r: &mut Registry, count: (&str, &str), time: (&str, &str), figures: Timed) {
    r.register(count.0, count.1, counter(figures.count));
    r.register_with_unit(
        time.0,
        time.1,
        Unit::Seconds,
        seconds(figures.total.as_secs_f64()),
    );
}

/// A family of counters, one per set of labels.
fn family(rows: impl IntoIterator<Item = (Labels, u64)>) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in rows {
        family.get_or_create(&labels).inc_by(value);
    }
    family
}

/// The OpenMetrics text of `scrape`, ending with `# EOF`.
pub fn render(scrape: &Scrape) -> String {
    let counts = &scrape.counts;
    let mut r = Registry::with_prefix("chatchain");
    r.register(
        "history_chats",
        "Chats in the history",
        gauge(scrape.history),
    );
    r.register(
        "pending_chats",
        "Chats typed here and not in the history",
        gauge(scrape.pending),
    );
    r.register(
        "peers",
        "Peers connected, one per address",
        gauge(scrape.peers),
    );
    r.register(
        "chats_mined",
        "Chats mined here",
        counter(counts.chats_mined),
    );
    r.register(
        "chats_received",
        "Chats that entered the history from peers",
        counter(counts.chats_received),
    );
    let why =
        |f: &dyn Fn(Why) -> u64| family(Why::ALL.map(|why| (vec![("reason", why.name())], f(why))));
    r.register(
        "archives_sent",
        "ArchiveResponses sent, by why",
        why(&|w| scrape.sent.of(w)),
    );
    r.register_with_unit(
        "archive_sent",
        "Bytes of ArchiveResponses sent, by why",
        Unit::Bytes,
        why(&|w| scrape.sent.bytes_by_why[w as usize]),
    );
    r.register_with_unit(
        "received",
        "Bytes of whole messages received, by message type",
        Unit::Bytes,
        family(
            counts
                .bytes_in
                .iter()
                .map(|(&kind, &n)| (vec![("type", kind)], n)),
        ),
    );
    r.register(
        "connections_opened",
        "Connections established, by direction",
        family(
            counts
                .opened
                .iter()
                .map(|(&dir, &n)| (vec![("direction", dir)], n)),
        ),
    );
    r.register(
        "connections_ended",
        "Connections with peers ended, by direction and way of ending",
        family(
            counts
                .ended
                .iter()
                .map(|(&(dir, end), &n)| (vec![("direction", dir), ("ending", end)], n)),
        ),
    );
    r.register("dials", "Dials started", counter(counts.dials));
    r.register(
        "dials_failed",
        "Dials that failed",
        counter(counts.dials_failed),
    );
    r.register(
        "dial_backoff_addresses",
        "Addresses waiting out a backoff before their next dial",
        gauge(scrape.backing_off),
    );
    r.register("banned_addresses", "Addresses banned", gauge(scrape.banned));
    r.register(
        "mining_hash_rate",
        "Tries per second of the last mining job that found its chats",
        real_gauge(scrape.hash_rate),
    );
    r.register(
        "mining_tries",
        "Tries of the mining jobs that found their chats",
        counter(counts.mining_tries),
    );
    timed(
        &mut r,
        ("mining_jobs", "Mining jobs that found their chats"),
        ("mining_job", "Wall time of those jobs"),
        counts.mining,
    );
    timed(
        &mut r,
        (
            "validation_batches",
            "Batches of an archive's chats validated",
        ),
        ("validation", "Time spent validating them"),
        counts.validation,
    );
    timed(
        &mut r,
        (
            "store_commits",
            "Commits (writes and syncs) of the data directory",
        ),
        (
            "store_sync",
            "Time spent writing and syncing the data directory",
        ),
        counts.store,
    );
    r.register_with_unit(
        "uptime",
        "Since the node started",
        Unit::Seconds,
        real_gauge(scrape.uptime.as_secs_f64()),
    );
    let mut text = String::new();
    encode(&mut text, &r).expect("writing to a String cannot fail");
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{Counts, Sent};

    #[test]
    fn a_scrape_is_openmetrics_text_with_every_figure() {
        let mut counts = Counts {
            chats_mined: 3,
            ..Counts::default()
        };
        counts.bytes_in.insert("peer_list", 12);
        counts.ended.insert(("inbound", "closed by peer"), 2);
        counts.store.add(Duration::from_millis(5));
        let mut sent = Sent::default();
        sent.count(100, Why::Asked);
        let text = render(&Scrape {
            counts,
            sent,
            history: 7,
            pending: 1,
            peers: 2,
            backing_off: 0,
            banned: 1,
            hash_rate: 1.5e6,
            uptime: Duration::from_secs(9),
        });
        for line in [
            "chatchain_history_chats 7",
            "chatchain_chats_mined_total 3",
            "chatchain_archives_sent_total{reason=\"asked\"} 1",
            "chatchain_archive_sent_bytes_total{reason=\"asked\"} 100",
            "chatchain_received_bytes_total{type=\"peer_list\"} 12",
            "chatchain_connections_ended_total{direction=\"inbound\",ending=\"closed by peer\"} 2",
            "chatchain_store_sync_seconds_total 0.005",
            "chatchain_mining_hash_rate 1500000.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
