#![allow(missing_docs)] // `criterion_group!` generates an undocumented public function.
//! Cost of the emulated controller's per-command path: batches of 4 KiB reads at queue
//! depth 128, submitted through raw queue entries and one doorbell write per batch,
//! completions consumed from the CQ. Inline mode, so the device work runs in the
//! benchmark thread and the figure is the device's share of an I/O.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{rw, Harness, PAGE};

const QD: u32 = 128;

fn batch(c: &mut Criterion, name: &str, device: &str) {
    let mut h = Harness::with_io(device, 2 * QD);
    let buf = h.alloc(QD as usize * PAGE);
    // Fill the whole ring once; each batch reuses its entries (same commands, same CIDs).
    for i in 0..2 * QD {
        let slot = (i % QD) as u64;
        let mut e = rw(0x02, 1, slot * 8, 8, buf.iova + slot * PAGE as u64, 0);
        e.set_cid(i as u16);
        h.place(1, e, true);
    }
    let mut group = c.benchmark_group("device_path");
    group.throughput(Throughput::Elements(u64::from(QD)));
    group.measurement_time(Duration::from_secs(3));
    let mut tail = 0u32;
    group.bench_function(name, |b| {
        b.iter(|| {
            tail = (tail + QD) % (2 * QD);
            h.ctrl.write32(h.sq_doorbell(1), tail);
            for _ in 0..QD {
                let c = h.peek(1).expect("inline completion");
                debug_assert!(c.status.is_success());
            }
            h.ring_cq(1);
        })
    });
    group.finish();
    h.keep(buf);
}

/// Registers the device-path benchmarks.
fn device_path(c: &mut Criterion) {
    batch(c, "null_4k_read_qd128", "emu:null,mqes=1023");
    batch(c, "ram_4k_read_qd128", "emu:size=64M,mqes=1023");
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = device_path
);
criterion_main!(benches);
