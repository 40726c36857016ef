//! Mining hash rates, in tries per second (chats per second for `chat`),
//! on the layout of issue 3: a history of 19 chats of 40 characters and a
//! new chat of 30 (1434-byte window, the code at bytes 10..26 of the last of
//! 23 blocks). `engine-2block` mines a 60-character chat instead, whose
//! window (1464 bytes, 56 mod 64) pushes the padding into a block of its
//! own: two compressions a try.
//!
//! Every id is `<group>/<threads>`; the per-try groups run on one thread.
//! `engine-avx2/1` (on CPUs whose best kernel is AVX-512) runs the engine
//! with the AVX2 kernel, as a machine without AVX-512 would.

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use md5::{Digest, Md5};
use miner::{CancelToken, Job, Kernel, Miner};
use wire::{Chat, History};

/// `History::tail_for_append` of 19 chats of 40 characters.
fn prev() -> Vec<u8> {
    let history: History = (0..19u8)
        .map(|i| Chat::new(vec![b'a' + i; 40], [i; 16], [0; 16]).expect("short"))
        .collect();
    history.tail_for_append().to_vec()
}

const TEXT: &[u8] = b"a new chat of thirty bytes....";
const TEXT_2BLOCK: &[u8] = b"a new chat of sixty bytes, enough to spill the padding......";
const _: () = assert!(TEXT.len() == 30 && TEXT_2BLOCK.len() == 60);

/// Tries per iteration of the per-try benches.
const TRIES: u64 = 1 << 16;

fn per_try(c: &mut Criterion) {
    let prev = prev();
    let mut head = prev.clone();
    head.push(TEXT.len() as u8);
    head.extend_from_slice(TEXT);

    // What a simple implementation does: hash the whole window per try.
    let naive_tries = 1 << 10;
    let mut group = c.benchmark_group("naive");
    group.throughput(Throughput::Elements(naive_tries));
    let mut window = head.clone();
    window.extend_from_slice(&[0; 16]);
    group.bench_function("1", |b| {
        b.iter(|| {
            (0..naive_tries as u32).any(|n| {
                let at = window.len() - 4;
                window[at..].copy_from_slice(&n.to_le_bytes());
                Md5::digest(black_box(&window))[..2] == [0, 0]
            })
        })
    });
    group.finish();

    // md-5 with the state over the window up to the code cloned per try.
    let mut group = c.benchmark_group("midstate");
    group.throughput(Throughput::Elements(TRIES));
    let before_code = Md5::new().chain_update(&head);
    group.bench_function("1", |b| {
        b.iter(|| {
            (0..TRIES as u32).any(|n| {
                let mut code = [0; 16];
                code[12..].copy_from_slice(&n.to_le_bytes());
                before_code.clone().chain_update(code).finalize()[..2] == [0, 0]
            })
        })
    });
    group.finish();

    // The engine's own compression; 32 bits of difficulty so that a scan
    // almost never stops early.
    let job = Job::new(&prev, TEXT, 32);
    let hot = job.hot_block(&[0x5a; 16]);
    for kernel in Kernel::supported() {
        let mut group = c.benchmark_group(format!("kernel-{}", kernel.name()));
        group.throughput(Throughput::Elements(TRIES));
        group.bench_function("1", |b| {
            b.iter(|| kernel.scan(black_box(&hot), 0, TRIES as u32))
        });
        group.finish();
    }
}

/// Tries per second of the whole engine: a job that cannot finish (128
/// bits), cancelled after the time the requested tries should take at the
/// rate measured so far; the time reported is scaled to the tries asked
/// for, so criterion's tries per second are the job's own.
fn engine(c: &mut Criterion) {
    let prev = prev();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    const TRIES_PER_ITER: u64 = 1 << 24;
    let mut setups = vec![
        ("engine", TEXT, vec![("1", 1), ("all", all)], Kernel::best()),
        ("engine-2block", TEXT_2BLOCK, vec![("1", 1)], Kernel::best()),
    ];
    // Where AVX-512 is the best kernel, the AVX2 engine too, for comparison
    // with machines that have only AVX2.
    if Kernel::best() != Kernel::Avx2 && Kernel::Avx2.is_supported() {
        setups.push(("engine-avx2", TEXT, vec![("1", 1)], Kernel::Avx2));
    }
    for (group_name, text, threads, kernel) in setups {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(TRIES_PER_ITER));
        group.sample_size(10);
        for (id, threads) in threads {
            let miner = Miner::with_kernel(threads, kernel);
            let rate = Cell::new(1e8);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let wanted = iters * TRIES_PER_ITER;
                    let cancel = CancelToken::new();
                    let stats = std::thread::scope(|s| {
                        let timer = cancel.clone();
                        let run_for = Duration::from_secs_f64(wanted as f64 / rate.get());
                        s.spawn(move || {
                            std::thread::sleep(run_for);
                            timer.cancel();
                        });
                        miner
                            .mine(&prev, text, 128, &cancel)
                            .expect_err("128 bits are never found")
                            .stats
                    });
                    rate.set(stats.hash_rate());
                    stats.elapsed.mul_f64(wanted as f64 / stats.tries as f64)
                })
            });
        }
        group.finish();
    }
}

/// Chats mined per second at the network's difficulty.
fn chat(c: &mut Criterion) {
    let prev = prev();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Elements(1));
    for (id, threads) in [("1", 1), ("all", all)] {
        let miner = Miner::new(threads);
        let never = CancelToken::new();
        group.bench_function(id, |b| {
            b.iter(|| miner.mine(&prev, TEXT, miner::NETWORK_DIFFICULTY, &never))
        });
    }
    group.finish();
}

criterion_group!(benches, per_try, engine, chat);
criterion_main!(benches);
