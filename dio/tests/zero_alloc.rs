//! The synchronous path through the layer allocates nothing per request once warm:
//! a counting global allocator sees zero allocations for reads and write-through writes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use dio::nvme_qp::NvmeQueue;
use dio::providers::RawNamespace;
use dio::{Dio, IovIter, Kiocb, KiocbFlags, NoHooks};
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, Options, QueuePairOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_sync_requests_allocate_nothing() {
    let t = EmuTransport::from_name("emu:null,size=1G,lba=512").unwrap();
    let ctrl = Controller::new(t, Options::default()).unwrap();
    let qp = ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let mut dio = Dio::new(NvmeQueue::new(&ctrl, qp, 1).unwrap(), None, 8).unwrap();
    let raw = RawNamespace::new(dio.caps());
    let mut iter = IovIter::new(vec![RefCell::new(
        ctrl.allocator().alloc(8192, 4096).unwrap(),
    )]);
    let mut run = |rounds: u64| {
        for i in 0..rounds {
            iter.reset();
            let pos = (i % 10_000) * 8192;
            let mut io = Kiocb::new(pos, KiocbFlags::HIPRI);
            assert_eq!(dio.read(&mut io, &mut iter, &raw, &NoHooks), Ok(8192));
            iter.reset();
            let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
            assert_eq!(dio.write(&mut io, &mut iter, &raw, &NoHooks), Ok(8192));
        }
    };
    run(100);
    let before = ALLOCS.load(Ordering::Relaxed);
    run(1000);
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations during 2000 requests");
}
