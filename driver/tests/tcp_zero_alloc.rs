//! The NVMe/TCP I/O path allocates nothing in steady state: capsules, in-capsule data,
//! R2T answers and received data all go through buffers the queue keeps. Counted on
//! the submitting and polling thread (the loopback target runs in its own threads).

use hugepages::test_utils::CountingAllocator;
use nvme::{IoFlags, Options, QueuePairOptions};
use nvme_emu::tcp::{TcpTarget, TcpTargetConfig};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator::new();

#[test]
fn steady_state_tcp_io_allocates_nothing() {
    let t =
        TcpTarget::start(TcpTargetConfig::with_emu("emu:null,size=1G,lba=512").unwrap()).unwrap();
    let name = format!("tcp://127.0.0.1:{}/{}", t.port(), t.subsystem_nqn());
    let ctrl = nvme::open(&name, Options::default()).unwrap();
    let mut qp = ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 64,
            ..QueuePairOptions::default()
        })
        .unwrap();
    // 4 KiB reads (C2HData), 4 KiB writes (in-capsule) and 64 KiB writes (R2T, H2CData).
    let bufs: Vec<_> = (0..24)
        .map(|_| ctrl.allocator().alloc(64 << 10, 4096).unwrap())
        .collect();
    let mut run = |rounds: u64| {
        let mut done = 0u64;
        for round in 0..rounds {
            for (i, b) in bufs.iter().enumerate() {
                let lba = (round * 24 + i as u64) % 10_000 * 128;
                match i % 3 {
                    0 => qp
                        .submit_read(1, lba, 8, &[b.segment(0, 4096).unwrap()], i as u64)
                        .unwrap(),
                    1 => qp
                        .submit_write(
                            1,
                            lba,
                            8,
                            &[b.segment(0, 4096).unwrap()],
                            IoFlags::empty(),
                            i as u64,
                        )
                        .unwrap(),
                    _ => qp
                        .submit_write(1, lba, 128, &[b.as_segment()], IoFlags::empty(), i as u64)
                        .unwrap(),
                }
            }
            qp.ring();
            let mut n = 0;
            while n < bufs.len() {
                n += qp.process_completions(usize::MAX, |_, r| {
                    if let Err(e) = r {
                        panic!("I/O failed: {e}");
                    }
                    done += 1;
                });
            }
        }
        done
    };
    run(50);
    let before = CountingAllocator::thread_allocations();
    let done = run(300);
    let after = CountingAllocator::thread_allocations();
    assert_eq!(done, 300 * 24);
    assert_eq!(
        after - before,
        0,
        "heap allocations during {done} I/Os over TCP"
    );
}
