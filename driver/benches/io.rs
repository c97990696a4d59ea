//! Submit + complete of 4 KiB reads on the emulated controller's inline `null`
//! namespace, at queue depth 1, 32 and 128. Reports time per I/O and I/Os per second.
//!
//! Run with `cargo bench -p nvme --bench io`.
//!
//! Measured on the project's 2-core build machine while other builds ran (load ~4), so
//! treat as rough: QD 1 ≈ 143 ns per I/O (7.0 M I/O/s), QD 32 ≈ 80–115 ns (8.7–12.3 M
//! I/O/s, noisy), QD 128 ≈ 69 ns (14.5 M I/O/s). A callgrind profile at QD 128 puts
//! about 52% of instructions in the emulated controller's doorbell handling and 47% in
//! the driver's submit/complete path.

// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, Options, QueuePairOptions};

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
        group.throughput(Throughput::Elements(qd as u64));
        group.bench_with_input(BenchmarkId::from_parameter(qd), &qd, |b, &qd| {
            let mut lba = 0u64;
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for (i, seg) in segs.iter().enumerate() {
                        qp.submit_read(1, lba, 8, seg, i as u64).unwrap();
                        lba = (lba + 8) & ((1 << 27) - 1);
                    }
                    qp.ring();
                    let mut n = 0;
                    while n < qd {
                        n += qp.process_completions(usize::MAX, |_, r| {
                            debug_assert!(r.is_ok());
                        });
                    }
                }
                start.elapsed()
            });
        });
        drop(qp);
    }
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
