use std::collections::HashSet;

use md5::{Digest, Md5};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::layout::first_word_mask;
use super::*;

fn first_word(job_head: &[u8], code: &[u8; CODE_LEN]) -> u32 {
    let digest = Md5::new()
        .chain_update(job_head)
        .chain_update(code)
        .finalize();
    u32::from_le_bytes(digest[..4].try_into().unwrap())
}

/// For every text length (so the code lands at every offset of its block,
/// straddles two blocks, or pushes the padding into a block of its own),
/// each lane of each kernel computes the digest's first word as md-5 does:
/// the kernel is asked for the exact first word of one try, and must find
/// that try at its lane.
#[test]
fn every_kernel_lane_equals_md5_at_every_code_offset() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    for kernel in Kernel::supported() {
        let width = kernel.width() as u32;
        for prev_len in [0, 1, 37, 64, 1387] {
            let prev: Vec<u8> = (0..prev_len).map(|_| rng.random()).collect();
            for text_len in 0..=255 {
                let text: Vec<u8> = (0..text_len).map(|_| rng.random()).collect();
                let mut job = Job::new(&prev, &text, 0);
                let mut fixed = [0; CODE_LEN];
                rng.fill(&mut fixed[..]);
                let start = rng.random_range(0..job.counters() - u64::from(width)) as u32;
                for lane in 0..width {
                    let counter = start + lane;
                    let mut head = prev.clone();
                    head.push(text_len as u8);
                    head.extend_from_slice(&text);
                    job.set_filter(u32::MAX, first_word(&head, &job.code(&fixed, counter)));
                    let hot = job.hot_block(&fixed);
                    assert_eq!(
                        kernel.scan(&hot, start, width),
                        Some(counter),
                        "{kernel:?}, prev {prev_len} bytes, text {text_len} bytes, lane {lane}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_scan_reports_nothing_past_its_range() {
    for kernel in Kernel::supported() {
        let job = Job::new(b"", b"x", 0);
        let hot = job.hot_block(&[0; CODE_LEN]);
        // Difficulty 0: every try passes, so the first counter is reported.
        assert_eq!(kernel.scan(&hot, 5, 3), Some(5));
        assert_eq!(kernel.scan(&hot, 5, 0), None);
    }
}

#[test]
fn the_kernel_filter_is_the_leading_bytes_of_the_first_word() {
    assert_eq!(first_word_mask(0), 0);
    assert_eq!(first_word_mask(8), 0x0000_00ff);
    assert_eq!(first_word_mask(16), 0x0000_ffff);
    assert_eq!(first_word_mask(17), 0x0080_ffff);
    assert_eq!(first_word_mask(32), u32::MAX);
    assert_eq!(first_word_mask(128), u32::MAX);
}

#[test]
fn workers_try_different_codes() {
    let job = Job::new(&[b'x'; 1387], &[b'y'; 30], 16);
    let mut seen = HashSet::new();
    for _ in 0..8 {
        let mut worker = Worker::new();
        for _ in 0..100 {
            let prefix = job.code(&worker.fixed_code(), 0);
            assert!(seen.insert(prefix), "a code prefix came twice");
        }
    }
}

#[test]
fn the_layouts_cost_one_compression_unless_the_padding_spills() {
    let costs: Vec<usize> = (0..64)
        .map(|n| Job::new(&[], &[b'a'; 64][..n], 16).compressions_per_try())
        .collect();
    for (n, cost) in costs.into_iter().enumerate() {
        // The window is 17 + n bytes.
        let spills = matches!((17 + n) % 64, 0 | 56..=63);
        assert_eq!(cost, if spills { 2 } else { 1 }, "text of {n} bytes");
    }
}
