//! What `nvme-perf` adds per I/O on top of the driver: latency recording, and with
//! `--verify` the pattern fill of a write and the check of a read (4 KiB, 512-byte
//! blocks).
//!
//! Run with `cargo bench -p nvme-tools --bench perf_verify`. On the 2-core build machine
//! under load: fill ≈ 570 ns, check ≈ 650 ns, histogram record ≈ 4.4 ns.

#![forbid(unsafe_code)]
// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nvme_tools::perf::pattern;
use nvme_tools::perf::stats::ThreadStats;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("perf_per_io");
    g.throughput(Throughput::Elements(1));
    let mut buf = vec![0u8; 4096];
    g.bench_function("pattern_fill_4k", |b| {
        let mut generation = 0u32;
        b.iter(|| {
            generation = generation.wrapping_add(1);
            pattern::fill(black_box(&mut buf), 1000, 512, generation);
        })
    });
    pattern::fill(&mut buf, 1000, 512, 7);
    g.bench_function("pattern_check_4k", |b| {
        b.iter(|| pattern::check(black_box(&buf), 1000, 512, 512, 7))
    });
    let mut stats = ThreadStats::new();
    g.bench_function("histogram_record", |b| {
        let mut ns = 0u64;
        b.iter(|| {
            ns = (ns + 977) % 100_000;
            stats.record(true, 4096, black_box(ns + 1));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
