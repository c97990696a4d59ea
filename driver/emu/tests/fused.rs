//! The fused Compare and Write: atomic execution, the spec's statuses for a failed or
//! broken pair, and FUSES.

mod common;

use common::*;
use nvme_spec::command::Fuse;
use nvme_spec::status::{GenericStatus as G, MediaStatus as M};
use nvme_spec::{CompletionEntry, IdentifyController, Status, SubmissionEntry};

const COMPARE: u8 = 0x05;
const WRITE: u8 = 0x01;

fn generic(g: G) -> (u8, u8) {
    code(Status::generic(g))
}

fn fused(mut e: SubmissionEntry, fuse: Fuse) -> SubmissionEntry {
    e.cdw0.set_fuse(fuse);
    e
}

/// Places a fused Compare (with `expected`) and Write (with `new`) of `blocks` blocks
/// at `slba` on queue 1 and rings once; returns both completions, first then second.
fn compare_and_write(
    h: &mut Harness,
    slba: u64,
    expected: &[u8],
    new: &[u8],
) -> (CompletionEntry, CompletionEntry) {
    let blocks = (expected.len() / 512) as u32;
    let a = h.alloc(expected.len().max(PAGE));
    a.write(0, expected);
    let b = h.alloc(new.len().max(PAGE));
    b.write(0, new);
    let c1 = h.place(
        1,
        fused(rw(COMPARE, 1, slba, blocks, a.iova, 0), Fuse::First),
        false,
    );
    let c2 = h.place(
        1,
        fused(rw(WRITE, 1, slba, blocks, b.iova, 0), Fuse::Second),
        false,
    );
    h.ring(1);
    let x = h.wait(1);
    let y = h.wait(1);
    h.keep(a);
    h.keep(b);
    assert_eq!(
        (x.cid, y.cid),
        (c1, c2),
        "one completion per command, in order"
    );
    (x, y)
}

#[test]
fn identify_reports_fuses_from_the_option() {
    for (opts, want) in [("emu", true), ("emu:fuses=off", false)] {
        let mut h = Harness::with_io(opts, 16);
        let (c, bytes) = h.identify(1, 0);
        assert!(c.status.is_success());
        let id = IdentifyController::parse(&bytes).unwrap();
        assert_eq!(id.fuses.compare_and_write(), want, "{opts}");
    }
    assert!("emu:fuses=maybe".parse::<nvme_emu::EmuConfig>().is_err());
}

#[test]
fn matching_compare_lets_the_write_through() {
    let mut h = Harness::with_io("emu:size=1M,log=on", 16);
    let old = pattern(2 * 512, 1);
    let new = pattern(2 * 512, 2);
    assert!(h.write_blocks(1, 8, &old, false).status.is_success());
    let (c, w) = compare_and_write(&mut h, 8, &old, &new);
    assert!(c.status.is_success(), "{:?}", c.status);
    assert!(w.status.is_success(), "{:?}", w.status);
    assert_eq!(h.read_blocks(1, 8, 2).1, new);
    let log = h.ctrl.command_log().entries();
    let mut pair: Vec<_> = log.iter().filter(|e| e.fuse != 0).collect();
    pair.sort_by_key(|e| e.fuse);
    assert_eq!(pair.len(), 2);
    assert_eq!((pair[0].opcode, pair[0].fuse), (COMPARE, 1));
    assert_eq!((pair[1].opcode, pair[1].fuse), (WRITE, 2));
}

#[test]
fn failed_compare_aborts_the_write_and_leaves_the_blocks() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let old = pattern(4 * 512, 1);
    assert!(h.write_blocks(1, 0, &old, false).status.is_success());
    let mut wrong = old.clone();
    wrong[3 * 512 + 7] ^= 0x80;
    let (c, w) = compare_and_write(&mut h, 0, &wrong, &pattern(4 * 512, 9));
    assert_eq!(code(c.status), code(Status::media(M::CompareFailure)));
    assert_eq!(code(w.status), generic(G::CommandAbortedFailedFused));
    assert_eq!(h.read_blocks(1, 0, 4).1, old);
}

#[test]
fn a_pair_across_the_end_of_the_queue_is_adjacent() {
    // Queue of 4 slots: 3 commands put the tail at slot 3, the pair takes 3 and 0.
    let mut h = Harness::with_io("emu:size=1M,log=on", 4);
    let old = pattern(512, 1);
    for _ in 0..3 {
        assert!(h.write_blocks(1, 0, &old, false).status.is_success());
    }
    let (c, w) = compare_and_write(&mut h, 0, &old, &pattern(512, 5));
    assert!(c.status.is_success() && w.status.is_success());
    let log = h.ctrl.command_log().entries();
    let mut pair: Vec<_> = log.iter().filter(|e| e.fuse != 0).collect();
    pair.sort_by_key(|e| e.fuse);
    assert_eq!((pair[0].sq_slot, pair[1].sq_slot), (3, 0));
    assert_eq!(h.read_blocks(1, 0, 1).1, pattern(512, 5));
}

#[test]
fn a_first_command_without_its_second_is_missing_fused() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let buf = h.alloc(PAGE);
    // Announced alone.
    let c = h.exec(1, fused(rw(COMPARE, 1, 0, 1, buf.iova, 0), Fuse::First));
    assert_eq!(code(c.status), generic(G::CommandAbortedMissingFused));
    // Followed by a normal command, which then runs as itself.
    h.place(
        1,
        fused(rw(COMPARE, 1, 0, 1, buf.iova, 0), Fuse::First),
        false,
    );
    h.place(1, rw(0x02, 1, 0, 1, buf.iova, 0), false);
    h.ring(1);
    assert_eq!(
        code(h.wait(1).status),
        generic(G::CommandAbortedMissingFused)
    );
    assert!(h.wait(1).status.is_success());
    // A second without a first.
    let c = h.exec(1, fused(rw(WRITE, 1, 0, 1, buf.iova, 0), Fuse::Second));
    assert_eq!(code(c.status), generic(G::CommandAbortedMissingFused));
    h.keep(buf);
}

#[test]
fn mismatched_or_unsupported_pairs_are_invalid_field() {
    let mut h = Harness::with_io("emu:size=1M", 16);
    let buf = h.alloc(PAGE);
    let first = |slba| fused(rw(COMPARE, 1, slba, 1, buf.iova, 0), Fuse::First);
    let second = |op, slba| fused(rw(op, 1, slba, 1, buf.iova, 0), Fuse::Second);
    for (a, b) in [
        (first(0), second(WRITE, 1)), // different blocks
        (first(0), second(0x02, 0)),  // a Read is no second half
        (
            fused(rw(WRITE, 1, 0, 1, buf.iova, 0), Fuse::First),
            second(WRITE, 0),
        ),
    ] {
        h.place(1, a, false);
        h.place(1, b, false);
        h.ring(1);
        assert_eq!(code(h.wait(1).status), generic(G::InvalidFieldInCommand));
        assert_eq!(code(h.wait(1).status), generic(G::InvalidFieldInCommand));
    }
    let mut reserved = rw(COMPARE, 1, 0, 1, buf.iova, 0);
    reserved.cdw0.set_fuse(Fuse::Reserved);
    assert_eq!(
        code(h.exec(1, reserved).status),
        generic(G::InvalidFieldInCommand)
    );
    h.keep(buf);
}

#[test]
fn with_fuses_off_every_fused_command_is_invalid_field_and_nothing_is_written() {
    let mut h = Harness::with_io("emu:size=1M,fuses=off", 16);
    let old = pattern(512, 1);
    assert!(h.write_blocks(1, 0, &old, false).status.is_success());
    let (c, w) = compare_and_write(&mut h, 0, &old, &pattern(512, 2));
    assert_eq!(code(c.status), generic(G::InvalidFieldInCommand));
    assert_eq!(code(w.status), generic(G::InvalidFieldInCommand));
    assert_eq!(h.read_blocks(1, 0, 1).1, old);
}

/// Places `e` with `cid` in `q` without ringing.
fn place(q: &mut Queue, mut e: SubmissionEntry, cid: u16) {
    e.set_cid(cid);
    q.sq.write(q.tail as usize * 64, &e.to_bytes());
    q.tail = (q.tail + 1) % q.size;
}

#[test]
fn concurrent_fused_increments_lose_no_update() {
    // Threads race to replace a counter block with counter + 1 by Compare and Write,
    // re-reading after a Compare Failure. Were the pair not atomic, two could both
    // match the same value and one increment would be lost.
    let threads = 3u16;
    let per_thread = 2000u64;
    let mut h = Harness::new("emu:size=1M");
    for qid in 1..=threads {
        h.create_io_pair(qid, 16);
    }
    let start = std::sync::Arc::new(std::sync::Barrier::new(usize::from(threads)));
    let mut running = Vec::new();
    for qid in 1..=threads {
        let start = start.clone();
        let mut q = h.queues[qid as usize].take().unwrap();
        let (ctrl, dstrd) = (h.ctrl.clone(), h.dstrd);
        let (a, b) = (h.alloc(PAGE), h.alloc(PAGE));
        running.push(std::thread::spawn(move || {
            start.wait();
            let mut done = 0;
            let mut cid = 0u16;
            while done < per_thread {
                cid = cid.wrapping_add(3);
                q.submit(&ctrl, dstrd, rw(0x02, 1, 0, 1, a.iova, 0), cid);
                assert!(q.wait(&ctrl, dstrd).status.is_success());
                let n = u64::from_le_bytes(a.read(0, 8).try_into().unwrap());
                b.write(0, &(n + 1).to_le_bytes());
                place(
                    &mut q,
                    fused(rw(COMPARE, 1, 0, 1, a.iova, 0), Fuse::First),
                    cid + 1,
                );
                place(
                    &mut q,
                    fused(rw(WRITE, 1, 0, 1, b.iova, 0), Fuse::Second),
                    cid + 2,
                );
                ctrl.write32(0x1000 + (2 * qid as usize) * (4 << dstrd), q.tail);
                let c = q.wait(&ctrl, dstrd);
                let w = q.wait(&ctrl, dstrd);
                if c.status.is_success() {
                    assert!(w.status.is_success());
                    done += 1;
                } else {
                    assert_eq!(code(c.status), code(Status::media(M::CompareFailure)));
                    assert_eq!(code(w.status), generic(G::CommandAbortedFailedFused));
                }
            }
            (q, a, b)
        }));
    }
    for t in running {
        let (q, a, b) = t.join().unwrap();
        let qid = usize::from(q.qid);
        h.queues[qid] = Some(q);
        h.keep(a);
        h.keep(b);
    }
    let (c, block) = h.read_blocks(1, 0, 1);
    assert!(c.status.is_success());
    let n = u64::from_le_bytes(block[..8].try_into().unwrap());
    assert_eq!(n, u64::from(threads) * per_thread);
}
