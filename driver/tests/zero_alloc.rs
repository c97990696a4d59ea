//! The I/O hot path allocates nothing: a counting global allocator sees zero
//! allocations per I/O on the submitting thread (where the inline emulated controller
//! also runs) once the queue pair is warm.

use hugepages::test_utils::CountingAllocator;
use nvme::transport::emu::EmuTransport;
use nvme::{Controller, DmaSegment, IoFlags, IoOptions, Options, QueuePairOptions, SglMode};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator::new();

#[test]
fn steady_state_io_allocates_nothing() {
    let t = EmuTransport::from_name("emu:null,size=1G,lba=512").unwrap();
    let ctrl = Controller::new(t, Options::default()).unwrap();
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 64,
            ..QueuePairOptions::default()
        })
        .unwrap();
    let bufs: Vec<_> = (0..32)
        .map(|_| ctrl.allocator().alloc(4096, 4096).unwrap())
        .collect();
    let segs: Vec<_> = bufs.iter().map(|b| b.as_segment()).collect();
    let mut run = |rounds: u64| {
        let mut done = 0u64;
        for round in 0..rounds {
            for (i, seg) in segs.iter().enumerate() {
                let lba = (round * 32 + i as u64) % 1_000_000 * 8;
                if i % 2 == 0 {
                    qp.submit_read(1, lba, 8, std::slice::from_ref(seg), i as u64)
                        .unwrap();
                } else {
                    qp.submit_write(
                        1,
                        lba,
                        8,
                        std::slice::from_ref(seg),
                        if i % 4 == 1 {
                            IoFlags::FUA
                        } else {
                            IoFlags::empty()
                        },
                        i as u64,
                    )
                    .unwrap();
                }
            }
            qp.ring();
            let mut n = 0;
            while n < segs.len() {
                n += qp.process_completions(usize::MAX, |_, r| {
                    if r.is_err() {
                        panic!("I/O failed");
                    }
                    done += 1;
                });
            }
        }
        done
    };
    // Warm up: lazily initialised state (thread locals, clocks) settles here.
    run(100);
    let before = CountingAllocator::thread_allocations();
    let done = run(1000);
    let after = CountingAllocator::thread_allocations();
    assert_eq!(done, 32_000);
    assert_eq!(after - before, 0, "heap allocations during {done} I/Os");
}

#[test]
fn steady_state_sgl_io_with_separate_metadata_allocates_nothing() {
    let t = EmuTransport::from_name("emu:size=64M,lba=512,ms=8,mset=sep,sgl=on").unwrap();
    let ctrl = Controller::new(t, Options::default()).unwrap();
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 64,
            sgl: SglMode::Always,
            ..QueuePairOptions::default()
        })
        .unwrap();
    let bufs: Vec<_> = (0..16)
        .map(|_| ctrl.allocator().alloc(8192, 4096).unwrap())
        .collect();
    let mds: Vec<_> = (0..16)
        .map(|_| ctrl.allocator().alloc(64, 64).unwrap())
        .collect();
    // Three pieces per command, none page aligned: a Last Segment of Data Blocks, and
    // the metadata through an MPTR SGL.
    let lists: Vec<[DmaSegment; 3]> = bufs
        .iter()
        .map(|b| {
            [
                b.segment(4, 1000).unwrap(),
                b.segment(2000, 2000).unwrap(),
                b.segment(5000, 1096).unwrap(),
            ]
        })
        .collect();
    let opts: Vec<IoOptions> = mds
        .iter()
        .map(|m| IoOptions {
            metadata: Some(m.segment(0, 64).unwrap()),
            ..IoOptions::default()
        })
        .collect();
    let mut run = |rounds: u64| {
        let mut done = 0u64;
        for round in 0..rounds {
            for (i, (segs, o)) in lists.iter().zip(&opts).enumerate() {
                // RAM-backed: the warm-up already touched every range used here.
                let lba = ((round % 4) * 16 + i as u64) * 8;
                if i % 2 == 0 {
                    qp.submit_read_ext(1, lba, 8, segs, o, i as u64).unwrap();
                } else {
                    qp.submit_write_ext(1, lba, 8, segs, o, i as u64).unwrap();
                }
            }
            qp.ring();
            let mut n = 0;
            while n < lists.len() {
                n += qp.process_completions(usize::MAX, |_, r| {
                    if r.is_err() {
                        panic!("I/O failed");
                    }
                    done += 1;
                });
            }
        }
        done
    };
    run(100);
    let before = CountingAllocator::thread_allocations();
    let done = run(500);
    let after = CountingAllocator::thread_allocations();
    assert_eq!(done, 8_000);
    assert_eq!(after - before, 0, "heap allocations during {done} SGL I/Os");
}

#[test]
fn split_io_allocates_nothing() {
    // 8 KiB per command: every 64 KiB request is split into 8 child commands.
    let t = EmuTransport::from_name("emu:null,size=1G,lba=512,mdts=1").unwrap();
    let ctrl = Controller::new(t, Options::default()).unwrap();
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 64,
            ..QueuePairOptions::default()
        })
        .unwrap();
    assert_eq!(qp.max_transfer_bytes(), 8192);
    let bufs: Vec<_> = (0..4)
        .map(|_| ctrl.allocator().alloc(65536, 4096).unwrap())
        .collect();
    let segs: Vec<_> = bufs.iter().map(|b| b.as_segment()).collect();
    let mut run = |rounds: u64| {
        let mut done = 0u64;
        for round in 0..rounds {
            for (i, seg) in segs.iter().enumerate() {
                let lba = (round * 4 + i as u64) % 10_000 * 128;
                let seg = std::slice::from_ref(seg);
                if i % 2 == 0 {
                    qp.submit_read(1, lba, 128, seg, i as u64).unwrap();
                } else {
                    qp.submit_write(1, lba, 128, seg, IoFlags::FUA, i as u64)
                        .unwrap();
                }
            }
            qp.ring();
            let mut n = 0;
            while n < segs.len() {
                n += qp.process_completions(usize::MAX, |_, r| {
                    if r.is_err() {
                        panic!("I/O failed");
                    }
                    done += 1;
                });
            }
        }
        done
    };
    run(100);
    let before = CountingAllocator::thread_allocations();
    let done = run(1000);
    let after = CountingAllocator::thread_allocations();
    assert_eq!(done, 4000);
    assert_eq!(qp.stats().submitted, 8 * 4 * 1100, "8 commands per request");
    assert_eq!(
        after - before,
        0,
        "heap allocations during {done} split I/Os"
    );
}
