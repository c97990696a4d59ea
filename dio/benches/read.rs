//! 4 KiB reads at queue depth 1 on the emulated controller's inline `null`
//! namespace: through the direct-I/O layer (raw namespace provider, HIPRI polling)
//! versus the bare queue pair. With the inline emulator the controller runs in the
//! submitting thread, so time per I/O is CPU per I/O. Both sides do the same work:
//! same queue pair, same buffer, queue depth 1, polled completion, and every
//! completion's result checked.
//!
//! Run with `cargo bench -p dio --bench read`.

// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::providers::RawNamespace;
use dio::{Dio, IovIter, Kiocb, KiocbFlags, NoHooks};
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, Options, QueuePairOptions};

const DEVICE: &str = "emu:null,size=64G,lba=512,mode=inline";
/// Reads rotate over this many 4 KiB slots.
const SLOTS: u64 = 1 << 20;

fn controller() -> Controller<EmuTransport> {
    let t = EmuTransport::from_name(DEVICE).unwrap();
    Controller::new(
        t,
        Options {
            io_queues: 2,
            ..Options::default()
        },
    )
    .unwrap()
}

fn reads(c: &mut Criterion) {
    let ctrl = controller();
    let mut group = c.benchmark_group("read_4k_qd1");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));

    // Both sides use the same queue pair, the same buffer, queue depth 1 and polled
    // completion, and both check every completion's result.
    let buf = IoBuffer::new(ctrl.allocator().alloc(4096, 4096).unwrap());
    let qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let q = NvmeQueue::new(&ctrl, qp, 1).unwrap();
    let mut dio = Dio::new(q, None, 16).unwrap();
    let raw = RawNamespace::new(dio.caps());

    let seg = [buf.as_segment()];
    let mut slot = 0u64;
    group.bench_function("queue_pair", |b| {
        let qp = dio.queue_mut().queue_pair();
        b.iter(|| {
            qp.submit_read(1, slot * 8, 8, &seg, 0).unwrap();
            slot = (slot + 1) % SLOTS;
            let mut n = 0;
            while n == 0 {
                n = qp.process_completions(1, |_, r| {
                    assert!(r.is_ok());
                });
            }
        })
    });

    let mut iter = IovIter::new(vec![&buf]);
    let mut slot = 0u64;
    group.bench_function("dio_raw", |b| {
        b.iter(|| {
            iter.reset();
            let mut iocb = Kiocb::new(slot * 4096, KiocbFlags::HIPRI);
            slot = (slot + 1) % SLOTS;
            let n = dio.read(&mut iocb, &mut iter, &raw, &NoHooks).unwrap();
            assert_eq!(n, 4096);
        })
    });
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
