//! The comparison of `read.rs` as one interleaved run: 30 rounds, each 200,000
//! reads through the bare queue pair and then 200,000 through the direct-I/O
//! layer, on the same queue pair, buffer and inline `null` namespace. Slow drift
//! and other load hit both sides alike; prints the fastest and the median round
//! of each side in nanoseconds per read and their ratio.
//!
//! Run with `cargo bench -p dio --bench read_ab`.

// A plain main (no criterion): the two loops must alternate in one process.
#![allow(missing_docs)]

use std::time::Instant;

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::providers::RawNamespace;
use dio::{Dio, IovIter, Kiocb, KiocbFlags, NoHooks};
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, Options, QueuePairOptions};

const DEVICE: &str = "emu:null,size=64G,lba=512,mode=inline";
/// Reads rotate over this many 4 KiB slots.
const SLOTS: u64 = 1 << 20;
const ROUNDS: usize = 30;
const READS: u64 = 200_000;

fn main() {
    let t = EmuTransport::from_name(DEVICE).expect("the emulated controller");
    let options = Options {
        io_queues: 2,
        ..Options::default()
    };
    let ctrl = Controller::new(t, options).expect("controller bring-up");
    let buf = IoBuffer::new(ctrl.allocator().alloc(4096, 4096).expect("a DMA buffer"));
    let qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .expect("a queue pair");
    let q = NvmeQueue::new(&ctrl, qp, 1).expect("namespace 1");
    let mut dio = Dio::new(q, None, 16).expect("the engine");
    let raw = RawNamespace::new(dio.caps());
    let seg = [buf.as_segment()];
    let mut iter = IovIter::new(vec![&buf]);
    let mut slot = 0u64;
    let (mut bare, mut layer) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let qp = dio.queue_mut().queue_pair();
        let t0 = Instant::now();
        for _ in 0..READS {
            qp.submit_read(1, slot * 8, 8, &seg, 0).expect("submit");
            slot = (slot + 1) % SLOTS;
            let mut n = 0;
            while n == 0 {
                n = qp.process_completions(1, |_, r| assert!(r.is_ok()));
            }
        }
        bare.push(t0.elapsed().as_nanos() as f64 / READS as f64);
        let t0 = Instant::now();
        for _ in 0..READS {
            iter.reset();
            let mut iocb = Kiocb::new(slot * 4096, KiocbFlags::HIPRI);
            slot = (slot + 1) % SLOTS;
            let n = dio
                .read(&mut iocb, &mut iter, &raw, &NoHooks)
                .expect("read");
            assert_eq!(n, 4096);
        }
        layer.push(t0.elapsed().as_nanos() as f64 / READS as f64);
    }
    bare.sort_by(f64::total_cmp);
    layer.sort_by(f64::total_cmp);
    let (b, l) = (bare[0], layer[0]);
    println!(
        "fastest round: queue pair {b:.1} ns, dio {l:.1} ns per read, ratio {:.3}",
        l / b
    );
    let (b, l) = (bare[ROUNDS / 2], layer[ROUNDS / 2]);
    println!(
        "median round:  queue pair {b:.1} ns, dio {l:.1} ns per read, ratio {:.3}",
        l / b
    );
}
