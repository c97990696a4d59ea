//! Execution engines: the device thread, and concurrent queue pairs in both modes.

mod common;

use common::*;

#[test]
fn threaded_mode_executes_commands_on_the_device_thread() {
    let mut h = Harness::with_io("emu:mode=threaded", 32);
    let data = pattern(16 * 512, 21);
    assert!(h.write_blocks(1, 0, &data, false).status.is_success());
    let (c, got) = h.read_blocks(1, 0, 16);
    assert!(c.status.is_success());
    assert_eq!(got, data);
}

#[test]
fn threaded_mode_completes_a_full_batch_and_wraps() {
    let mut h = Harness::with_io("emu:mode=threaded,null", 8);
    let buf = h.alloc(PAGE);
    for _ in 0..40 {
        let cids: Vec<u16> = (0..7)
            .map(|_| h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false))
            .collect();
        h.ring(1);
        let mut got: Vec<u16> = (0..7).map(|_| h.wait(1).cid).collect();
        got.sort_unstable();
        let mut want = cids.clone();
        want.sort_unstable();
        assert_eq!(got, want);
    }
    h.keep(buf);
}

#[test]
fn threaded_mode_delivers_async_events() {
    let mut h = Harness::with_io("emu:mode=threaded", 8);
    let cid = h.submit(0, sqe(0x0c));
    h.ctrl.write32(h.sq_doorbell(1), 100);
    let c = h.wait(0);
    assert_eq!(c.cid, cid);
    assert_eq!((c.dw0 >> 8) & 0xff, 1);
}

fn concurrent_queue_pairs(name: &str) {
    let mut h = Harness::new(name);
    for qid in 1..=4 {
        h.create_io_pair(qid, 16);
    }
    let mut threads = Vec::new();
    for qid in 1..=4u16 {
        let mut q = h.queues[qid as usize].take().unwrap();
        let ctrl = h.ctrl.clone();
        let dstrd = h.dstrd;
        let buf = h.alloc(PAGE);
        threads.push(std::thread::spawn(move || {
            let base = u64::from(qid) * 1000;
            for i in 0..200u64 {
                let lba = base + (i % 50);
                buf.write(0, &pattern(512, (i as u8) ^ qid as u8));
                q.submit(&ctrl, dstrd, rw(0x01, 1, lba, 1, buf.iova, 0), i as u16);
                let c = q.wait(&ctrl, dstrd);
                assert!(c.status.is_success());
                assert_eq!(c.cid, i as u16);
                buf.fill(0, 512, 0);
                q.submit(&ctrl, dstrd, rw(0x02, 1, lba, 1, buf.iova, 0), i as u16);
                let c = q.wait(&ctrl, dstrd);
                assert!(c.status.is_success());
                assert_eq!(buf.read(0, 512), pattern(512, (i as u8) ^ qid as u8));
            }
            (q, buf)
        }));
    }
    for t in threads {
        let (_q, buf) = t.join().unwrap();
        h.keep(buf);
    }
    assert_eq!(h.ctrl.stats().writes, 800);
    assert_eq!(h.ctrl.stats().reads, 800);
}

#[test]
fn inline_queue_pairs_work_concurrently_from_several_threads() {
    concurrent_queue_pairs("emu");
}

#[test]
fn threaded_queue_pairs_work_concurrently_from_several_threads() {
    concurrent_queue_pairs("emu:mode=threaded");
}

#[test]
fn mapping_changes_while_io_runs_on_other_queues_are_safe() {
    let mut h = Harness::new("emu");
    h.create_io_pair(1, 16);
    let mut q = h.queues[1].take().unwrap();
    let ctrl = h.ctrl.clone();
    let dstrd = h.dstrd;
    let buf = h.alloc(PAGE);
    let io = std::thread::spawn(move || {
        for i in 0..500u16 {
            q.submit(&ctrl, dstrd, rw(0x02, 1, 0, 1, buf.iova, 0), i);
            assert!(q.wait(&ctrl, dstrd).status.is_success());
        }
        (q, buf)
    });
    for _ in 0..200 {
        let b = h.alloc(PAGE);
        h.unmap(&b);
    }
    let (_q, buf) = io.join().unwrap();
    h.keep(buf);
}

/// The EventIdx rule of the shadow doorbell protocol (as Linux applies it): ring the
/// MMIO doorbell only if the device's EventIdx lies in `[old, new)`.
fn need_event(event_idx: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event_idx).wrapping_sub(1) < new.wrapping_sub(old)
}

#[test]
fn threaded_mode_with_shadow_doorbells_never_loses_a_skipped_mmio_write() {
    let mut h = Harness::new("emu:mode=threaded");
    let (db, ei) = h.enable_shadow_doorbells();
    h.create_io_pair(1, 32);
    let buf = h.alloc(PAGE);
    let mut outstanding = 0u32;
    for i in 0..2000u32 {
        let old = h.queues[1].as_ref().unwrap().tail as u16;
        h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false);
        let new = h.queues[1].as_ref().unwrap().tail as u16;
        db.store_u32(8, u32::from(new));
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if need_event(ei.load_u32(8) as u16, new, old) {
            h.ctrl.write32(h.sq_doorbell(1), u32::from(new));
        }
        outstanding += 1;
        // Keep a few commands in flight; reap in bursts.
        if outstanding == 8 || i == 1999 {
            for _ in 0..outstanding {
                assert!(h.wait_shadow(1, &db).status.is_success());
            }
            outstanding = 0;
        }
    }
    h.keep(db);
    h.keep(ei);
    h.keep(buf);
}

#[test]
fn reads_racing_a_flush_see_the_completed_write() {
    // Round k: queue 1 writes version k (cached) and completes; then queue 1 flushes
    // while queue 2 reads. The flush moves version k from the cache to the backend
    // (which still holds k-1): the read must see version k whichever side wins.
    let mut h = Harness::new("emu");
    h.create_io_pair(1, 16);
    h.create_io_pair(2, 16);
    let mut writer = h.queues[1].take().unwrap();
    let mut reader = h.queues[2].take().unwrap();
    let (ctrl_w, ctrl_r, dstrd) = (h.ctrl.clone(), h.ctrl.clone(), h.dstrd);
    let wbuf = h.alloc(8 * 512);
    let rbuf = h.alloc(8 * 512);
    let rounds = 300u32;
    let written = std::sync::Arc::new(Rendezvous::new(2));
    let done = std::sync::Arc::new(Rendezvous::new(2));
    let (w1, d1) = (written.clone(), done.clone());
    let w = std::thread::spawn(move || {
        for k in 0..rounds {
            wbuf.write(0, &pattern(8 * 512, k as u8));
            writer.submit(&ctrl_w, dstrd, rw(0x01, 1, 0, 8, wbuf.iova, 0), k as u16);
            assert!(writer.wait(&ctrl_w, dstrd).status.is_success());
            w1.wait();
            writer.submit(&ctrl_w, dstrd, sqe_flush(), k as u16);
            assert!(writer.wait(&ctrl_w, dstrd).status.is_success());
            d1.wait();
        }
        (writer, wbuf)
    });
    let r = std::thread::spawn(move || {
        for k in 0..rounds {
            written.wait();
            reader.submit(&ctrl_r, dstrd, rw(0x02, 1, 0, 8, rbuf.iova, 0), k as u16);
            assert!(reader.wait(&ctrl_r, dstrd).status.is_success());
            assert_eq!(
                rbuf.read(0, 8 * 512),
                pattern(8 * 512, k as u8),
                "round {k}"
            );
            done.wait();
        }
        (reader, rbuf)
    });
    let (_w, wbuf) = w.join().unwrap();
    let (_r, rbuf) = r.join().unwrap();
    h.keep(wbuf);
    h.keep(rbuf);
}

fn sqe_flush() -> nvme_spec::SubmissionEntry {
    let mut e = sqe(0x00);
    e.nsid = 1;
    e
}
