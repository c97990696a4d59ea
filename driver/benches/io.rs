//! Submit + complete of 4 KiB reads on the emulated controller's inline `null`
//! namespace, at queue depth 1, 32 and 128; and of 1 MiB reads at queue depth 1 and 4,
//! in one command (MDTS 1 MiB) or split by the driver into 128 commands (MDTS 8 KiB).
//! Reports time per I/O and I/Os per second.
//!
//! Run with `cargo bench -p nvme --bench io`.
//!
//! One criterion iteration is one I/O: "time" is ns per I/O, "thrpt" is I/O per second.
//!
//! `cargo bench -p nvme --bench io` on the 2-core build machine (release, 4 KiB reads,
//! one core, other work running at load ~3): QD 1 92.3 ns (10.8 M I/O/s), QD 32 65.8 ns
//! (15.2 M I/O/s), QD 128 65.8 ns (15.2 M I/O/s). Under heavier load the same run varied
//! by tens of percent. Callgrind at QD 128 counted about 740 instructions per I/O before
//! the last doorbell and clock changes: about
//! 400 in the emulated controller's doorbell handling, 340 in the driver.

// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, DmaSegment, IoQueuePair, Options, QueuePairOptions};

fn reads(c: &mut Criterion) {
    let t = EmuTransport::from_name("emu:null,size=64G,lba=512,mode=inline").unwrap();
    let ctrl = Controller::new(
        t,
        Options {
            io_queues: 1,
            ..Options::default()
        },
    )
    .unwrap();
    let mut group = c.benchmark_group("read_4k_null");
    group.measurement_time(Duration::from_secs(5));
    for qd in [1usize, 32, 128] {
        let mut qp = ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 256,
                ..QueuePairOptions::default()
            })
            .unwrap();
        let bufs: Vec<_> = (0..qd)
            .map(|_| ctrl.allocator().alloc(4096, 4096).unwrap())
            .collect();
        let segs: Vec<_> = bufs.iter().map(|b| [b.as_segment()]).collect();
        // One criterion iteration is one I/O, so "time" reads as ns per I/O and
        // "thrpt" as I/Os per second; I/Os go in batches of `qd` per doorbell.
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(qd), &qd, |b, &qd| {
            let mut lba = 0u64;
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = iters as usize;
                while left > 0 {
                    let batch = left.min(qd);
                    for (i, seg) in segs[..batch].iter().enumerate() {
                        qp.submit_read(1, lba, 8, seg, i as u64).unwrap();
                        lba = (lba + 8) & ((1 << 27) - 1);
                    }
                    qp.ring();
                    let mut n = 0;
                    while n < batch {
                        n += qp.process_completions(usize::MAX, |_, r| {
                            debug_assert!(r.is_ok());
                        });
                    }
                    left -= batch;
                }
                start.elapsed()
            });
        });
        drop(qp);
    }
    group.finish();
}

/// Keeps `qd` reads of `blocks` blocks each in flight, one doorbell per batch, for
/// `iters` reads; returns the time taken.
fn run_reads(
    qp: &mut IoQueuePair<EmuTransport>,
    segs: &[[DmaSegment; 1]],
    blocks: u32,
    lba: &mut u64,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let batch = left.min(segs.len());
        for (i, seg) in segs[..batch].iter().enumerate() {
            qp.submit_read(1, *lba, blocks, seg, i as u64).unwrap();
            *lba = (*lba + u64::from(blocks)) & ((1 << 27) - 1);
        }
        qp.ring();
        let mut n = 0;
        while n < batch {
            n += qp.process_completions(usize::MAX, |_, r| {
                debug_assert!(r.is_ok());
            });
        }
        left -= batch;
    }
    start.elapsed()
}

/// 1 MiB reads on controllers whose limit per command holds them (`mdts=8`: 1 MiB) or
/// splits each into 128 commands (`mdts=1`: 8 KiB).
fn reads_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_1m_null");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for (name, mdts) in [("unsplit", 8), ("split_128", 1)] {
        let t = EmuTransport::from_name(&format!(
            "emu:null,size=64G,lba=512,mode=inline,mdts={mdts}"
        ))
        .unwrap();
        let ctrl = Controller::new(
            t,
            Options {
                io_queues: 1,
                ..Options::default()
            },
        )
        .unwrap();
        for qd in [1usize, 4] {
            let mut qp = ctrl
                .create_io_queue_pair(QueuePairOptions {
                    depth: 1024,
                    ..QueuePairOptions::default()
                })
                .unwrap();
            let bufs: Vec<_> = (0..qd)
                .map(|_| ctrl.allocator().alloc(1 << 20, 4096).unwrap())
                .collect();
            let segs: Vec<_> = bufs.iter().map(|b| [b.as_segment()]).collect();
            group.bench_with_input(BenchmarkId::new(name, qd), &qd, |b, _| {
                let mut lba = 0u64;
                b.iter_custom(|iters| run_reads(&mut qp, &segs, 2048, &mut lba, iters));
            });
            drop(qp);
        }
    }
    group.finish();
}

criterion_group!(benches, reads, reads_1m);
criterion_main!(benches);
