//! The synchronous path through the layer allocates nothing per request once warm:
//! a counting global allocator sees zero allocations on the requesting thread (where the
//! inline emulated controller also runs) for reads and write-through writes.

use std::cell::RefCell;

use dio::nvme_qp::NvmeQueue;
use dio::providers::RawNamespace;
use dio::{Dio, IovIter, Kiocb, KiocbFlags, NoHooks};
use hugepages::test_utils::CountingAllocator;
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, Options, QueuePairOptions};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator::new();

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
    let before = CountingAllocator::thread_allocations();
    run(1000);
    let after = CountingAllocator::thread_allocations();
    assert_eq!(after - before, 0, "allocations during 2000 requests");
}
