//! The compact relay extension in a simulated network: every node
//! converging with it on, with half the nodes standard, and what a chat
//! costs per link.

use std::time::Duration;

use wire::History;

use super::tests::{assert_all_chats_once, type_in_rounds};
use super::{Faults, Kept, Sim};

/// The 1,000-chat fixture every node starts from.
fn fixture() -> History {
    crate::test_support::fixture("history-1k.bin")
}

/// `n` nodes in a chain, each holding `history`, those with `relay(i)`
/// offering the extension.
fn chain(n: usize, seed: u64, history: &History, relay: impl Fn(usize) -> bool + 'static) -> Sim {
    let history = history.clone();
    let mut sim = Sim::with_relay(
        n,
        |i| if i == 0 { vec![] } else { vec![i - 1] },
        seed,
        Faults::lan(),
        move |_| -> Kept { (history.clone(), Vec::new()) },
        relay,
    );
    sim.restrict(|i, j| i.abs_diff(j) == 1);
    sim
}

/// Chats typed at once on every node, in rounds: every chat lands once,
/// every node agrees, whatever the mix of dialects.
#[test]
fn colliding_chats_converge_with_the_extension_and_in_mixed_networks() {
    let base = fixture().prefix(50);
    for (name, relay) in [
        ("all relay", (|_| true) as fn(usize) -> bool),
        ("every other standard", |i| i % 2 == 0),
    ] {
        for seed in [1, 2] {
            let n = 6;
            let mut sim = chain(n, seed, &base, relay);
            sim.run_for(Duration::from_secs(8));
            let texts = type_in_rounds(&mut sim, n, 5);
            assert!(
                sim.run_until_settled(Duration::from_secs(600)).is_some(),
                "{name}, seed {seed}: no convergence"
            );
            assert_all_chats_once(&sim, base.len(), &texts);
        }
    }
}

/// Bytes sent per chat per link, chats mined one at a time on a chain of
/// nodes holding 1,000 chats: with the extension, about the chat's own
/// size; without, the whole history.
fn bytes_per_chat_per_link(relay: bool) -> f64 {
    let n = 5;
    let mut sim = chain(n, 7, &fixture(), move |_| relay);
    sim.run_for(Duration::from_secs(10));
    assert!(sim.converged());
    let before = sim.archive_bytes + sim.relay_bytes;
    let chats = 10;
    for k in 0..chats {
        sim.command(k % n, &format!("chat number {k}"));
        sim.run_for(Duration::from_secs(2));
        assert!(sim.converged(), "chat {k} did not reach every node");
    }
    let bytes = sim.archive_bytes + sim.relay_bytes - before;
    bytes as f64 / chats as f64 / (n - 1) as f64
}

#[test]
fn a_chat_costs_its_own_size_per_link_with_the_extension() {
    let compact = bytes_per_chat_per_link(true);
    let standard = bytes_per_chat_per_link(false);
    println!(
        "per chat per link, 1,000-chat history: {compact:.0} bytes with the extension, \
         {standard:.0} without"
    );
    assert!(compact < 1000.0, "{compact} bytes per chat per link");
    assert!(standard > 50_000.0, "{standard} bytes per chat per link");
}
