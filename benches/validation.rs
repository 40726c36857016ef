//! Validation throughput, in chats per second, on the 100,000-chat fixture
//! (real mined chats, mean text 43.7 bytes): whole histories on one thread
//! and on all threads (`validate`, windows hashed side by side in the
//! kernel's lanes; `validate-single-window`, one window at a time with
//! md-5, for comparison), and the incremental check of one appended chat.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;
use wire::History;

fn fixture_100k() -> History {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/history-100k.bin"
    );
    wire::decode_archive(&std::fs::read(path).expect("fixture")).expect("an ArchiveResponse")
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn whole_history(c: &mut Criterion) {
    let history = fixture_100k();
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(history.len() as u64));
    group.sample_size(20);
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, threads) in [("1", 1), ("all", all)] {
        let pool = pool(threads);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                pool.install(|| miner::validate(black_box(&history)))
                    .expect("valid")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("validate-single-window");
    group.throughput(Throughput::Elements(history.len() as u64));
    group.sample_size(10);
    for (name, threads) in [("1", 1), ("all", all)] {
        let pool = pool(threads);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                pool.install(|| {
                    (0..history.len())
                        .into_par_iter()
                        .with_min_len(64)
                        .find_map_first(|k| miner::check_chat(black_box(&history), k).err())
                })
                .ok_or(())
                .expect_err("valid")
            })
        });
    }
    group.finish();
}

fn one_appended_chat(c: &mut Criterion) {
    let full = fixture_100k();
    let mut held = full.clone();
    held.truncate(full.len() - 1);
    let mut group = c.benchmark_group("incremental");
    group.throughput(Throughput::Elements(1));
    // What a node does when a peer sends its history plus one chat: compare
    // the shared prefix byte for byte, hash the one new window.
    group.bench_function("append-one", |b| {
        b.iter(|| miner::validate_extension(black_box(&held), black_box(&full)).expect("valid"))
    });
    // The hashing alone, for comparison: one window.
    group.bench_function("one-window", |b| {
        b.iter(|| miner::validate_from(black_box(&full), full.len() - 1).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, whole_history, one_appended_chat);
criterion_main!(benches);
