//! Completion modes, shadow doorbells, asynchronous events and the admin API.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nvme::spec::features::FeatureId;
use nvme::spec::identify::Cns;
use nvme::{CompletionMode, IoFlags, Options, QueuePairOptions, Transport};

fn write_read_many(r: &Rig, mode: CompletionMode, count: u64) -> nvme::QueueStats {
    let mut q = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 8,
            mode,
            ..QueuePairOptions::default()
        })
        .unwrap();
    let src = patterned(&r.ctrl, 4096, 77);
    let rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    for i in 0..count {
        let lba = (i % 64) * 8;
        q.submit_write(1, lba, 8, &[src.as_segment()], IoFlags::empty(), i)
            .unwrap();
        q.submit_read(1, lba, 8, &[rd.as_segment()], i).unwrap();
        q.ring();
        let mut got = 0;
        while got < 2 {
            got += q
                .wait_completions(8, Duration::from_secs(5), |_, r| r.unwrap())
                .unwrap();
        }
        assert_eq!(contents(&rd), contents(&src));
    }
    q.stats()
}

#[test]
fn interrupt_mode_completes_through_the_eventfd() {
    let r = rig("size=1M,lba=512");
    let stats = write_read_many(&r, CompletionMode::Interrupt, 50);
    assert_eq!(stats.completed, 100);
}

#[test]
fn interrupt_mode_queue_signals_its_own_vector() {
    let r = rig("size=1M,lba=512");
    let mut q = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 8,
            mode: CompletionMode::Interrupt,
            ..QueuePairOptions::default()
        })
        .unwrap();
    let rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    // Drain anything signalled while the queue was created.
    let _ = q.interrupt_fd().unwrap().read();
    q.submit_read(1, 0, 8, &[rd.as_segment()], 0).unwrap();
    q.ring();
    let fired = (0..1000).any(|_| {
        let n = q.interrupt_fd().unwrap().read().unwrap_or(0);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        n > 0
    });
    assert!(fired, "the completion raised no interrupt");
    let n = q.process_completions(8, |_, r| r.unwrap());
    assert_eq!(n, 1);
}

#[test]
fn interrupt_mode_also_works_with_a_device_thread() {
    let r = rig("size=1M,lba=512,mode=threaded");
    let stats = write_read_many(&r, CompletionMode::Interrupt, 50);
    assert_eq!(stats.completed, 100);
}

#[test]
fn polled_mode_works_with_a_device_thread() {
    let r = rig("size=1M,lba=512,mode=threaded");
    let stats = write_read_many(&r, CompletionMode::Polled, 50);
    assert_eq!(stats.completed, 100);
}

#[test]
fn interrupt_mode_needs_a_vector_for_the_queue() {
    let r = rig_with(
        "size=1M,vectors=1",
        Options {
            io_queues: 2,
            ..fast_options()
        },
    );
    let err = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 8,
            mode: CompletionMode::Interrupt,
            ..QueuePairOptions::default()
        })
        .unwrap_err();
    assert!(matches!(err, nvme::Error::Unsupported { .. }), "{err}");
}

#[test]
fn shadow_doorbells_skip_mmio_writes_when_event_index_allows() {
    // Interrupt mode writes the CQ head doorbell after every batch, so both doorbells
    // go through the EventIdx rule often.
    let on = rig("size=1M,lba=512");
    assert!(on.ctrl.shadow_doorbells());
    let with = write_read_many(&on, CompletionMode::Interrupt, 50);
    assert!(with.doorbell_writes_skipped > 0, "{with:?}");

    let off = rig_with(
        "size=1M,lba=512",
        Options {
            shadow_doorbells: false,
            ..fast_options()
        },
    );
    assert!(!off.ctrl.shadow_doorbells());
    let without = write_read_many(&off, CompletionMode::Interrupt, 50);
    assert_eq!(without.doorbell_writes_skipped, 0);
    assert!(without.doorbell_writes > with.doorbell_writes);
}

#[test]
fn polled_queue_writes_the_cq_head_doorbell_once_per_64_completions() {
    let r = rig_with(
        "size=1M,lba=512",
        Options {
            shadow_doorbells: false,
            ..fast_options()
        },
    );
    // 50 batches of a write and a read: 50 SQ tail writes; of the 100 completions the
    // 65th passes the CQ's 64 spare entries and is reported with one CQ head write.
    let stats = write_read_many(&r, CompletionMode::Polled, 50);
    assert_eq!(stats.completed, 100);
    assert_eq!(stats.doorbell_writes, 50 + 1);
}

#[test]
fn asynchronous_events_reach_the_callback() {
    let r = rig("size=1M");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    r.ctrl
        .set_async_event_callback(move |ev| s.lock().unwrap().push(ev));
    // A doorbell write for a queue that does not exist: an error event (type 0).
    let off = nvme::spec::registers::sq_tail_doorbell(40, 0);
    r.ctrl.transport().write32(off, 1);
    for _ in 0..1000 {
        r.ctrl.poll_admin();
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, 0);
}

#[test]
fn features_and_log_pages_round_trip() {
    let r = rig("size=1M,vwc=on");
    assert_eq!(
        r.ctrl
            .get_features(FeatureId::VOLATILE_WRITE_CACHE, 0)
            .unwrap()
            & 1,
        1
    );
    r.ctrl
        .set_features(FeatureId::VOLATILE_WRITE_CACHE, 0, false)
        .unwrap();
    assert_eq!(
        r.ctrl
            .get_features(FeatureId::VOLATILE_WRITE_CACHE, 0)
            .unwrap()
            & 1,
        0
    );
    assert!(!r.emu.write_cache_enabled());
    let mut q = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let src = patterned(&r.ctrl, 4096, 3);
    q.write_sync(1, 0, 8, &src, IoFlags::empty()).unwrap();
    let smart = r.ctrl.smart_log().unwrap();
    assert!(smart.host_write_commands.get() >= 1);
    let log = r.ctrl.error_log(4).unwrap();
    assert!(!log.is_empty());
    let page = r.ctrl.identify(Cns::CONTROLLER, 0).unwrap();
    assert_eq!(&page[4..12], b"EMU00001");
}

#[test]
fn controller_reset_recreates_queues_for_every_pair() {
    let r = rig("size=1M,lba=512");
    let mut a = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let mut b = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let src = patterned(&r.ctrl, 4096, 1);
    a.write_sync(1, 0, 8, &src, IoFlags::empty()).unwrap();
    r.ctrl.reset().unwrap();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    a.read_sync(1, 0, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&src));
    b.read_sync(1, 0, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&src));
    assert_eq!(a.stats().resets, 1);
}

#[test]
fn io_after_shutdown_is_an_error_not_a_hang() {
    let r = rig("size=1M,lba=512");
    let mut q = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    r.ctrl.shutdown().unwrap();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 0, 8, &mut rd).unwrap_err();
    assert!(matches!(err, nvme::Error::ShutDown { .. }), "{err}");
    let err = q.read_sync(1, 0, 8, &mut rd).unwrap_err();
    assert!(
        matches!(err, nvme::Error::ShutDown { .. }),
        "still refused: {err}"
    );
}

#[test]
fn commands_outstanding_at_shutdown_complete_with_a_clear_error() {
    let r = rig("size=1M,lba=512");
    let mut q = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    r.emu.faults().hold_next(1);
    let rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read(1, 0, 8, &[rd.as_segment()], 9).unwrap();
    q.ring();
    r.ctrl.shutdown().unwrap();
    let mut got = Vec::new();
    while got.is_empty() {
        q.wait_completions(8, Duration::from_millis(50), |c, r| got.push((c, r)))
            .unwrap();
    }
    assert_eq!(got[0].0, 9);
    let err = got[0].1.as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        "read of 8 blocks at LBA 0x0 on namespace 1 did not complete: controller emu was shut down"
    );
}

#[test]
fn queue_pairs_beyond_the_granted_count_are_refused() {
    let r = rig_with(
        "size=1M",
        Options {
            io_queues: 1,
            ..fast_options()
        },
    );
    let _a = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let err = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, nvme::Error::NoFreeQueue { granted: 1, .. }),
        "{err}"
    );
    drop(_a);
    r.ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
}

/// The shadow doorbell buffers follow the doorbell stride for every queue: with the
/// largest stride the emulated controller offers (4 << 8 bytes), the slots of the last
/// queue pairs lie past the first page, and I/O on every pair still completes and reads
/// back.
#[test]
fn shadow_doorbells_with_a_wide_doorbell_stride_cover_every_queue_pair() {
    let t = nvme::transport::emu::EmuTransport::from_name("emu:size=1M,dstrd=8,qpairs=4").unwrap();
    let ctrl = nvme::Controller::new(
        t,
        Options {
            io_queues: 4,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(ctrl.shadow_doorbells());
    let mut pairs: Vec<_> = (0..4)
        .map(|_| {
            ctrl.create_io_queue_pair(QueuePairOptions::default())
                .unwrap()
        })
        .collect();
    for (p, qp) in pairs.iter_mut().enumerate() {
        for lba in 0..16u64 {
            let seed = p as u64 * 100 + lba;
            let src = patterned(&ctrl, 4096, seed);
            qp.write_sync(1, lba * 8, 8, &src, IoFlags::empty())
                .unwrap();
            let mut dst = ctrl.allocator().alloc(4096, 4096).unwrap();
            qp.read_sync(1, lba * 8, 8, &mut dst).unwrap();
            let mut got = vec![0u8; 4096];
            dst.read(0, &mut got).unwrap();
            assert!(got
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(seed, i)));
        }
    }
}
