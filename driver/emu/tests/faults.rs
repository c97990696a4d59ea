//! Fault injection hooks and the command log.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nvme_emu::{CommandMatch, FaultAction};
use nvme_spec::registers::offset;
use nvme_spec::status::{GenericStatus as G, MediaStatus as M};
use nvme_spec::Status;

#[test]
fn fail_next_fails_exactly_n_io_commands_with_the_given_status() {
    let mut h = Harness::with_io("emu", 16);
    let status = Status::generic(G::InternalError);
    h.ctrl.faults().fail_next(2, status);
    assert_eq!(code(h.read_blocks(1, 0, 1).0.status), code(status));
    assert_eq!(
        code(h.write_blocks(1, 0, &pattern(512, 1), false).status),
        code(status)
    );
    assert!(h.read_blocks(1, 0, 1).0.status.is_success());
    // A failed write was not executed.
    assert!(h.read_blocks(1, 0, 1).1.iter().all(|&b| b == 0));
    assert_eq!(h.ctrl.stats().failed, 2);
}

#[test]
fn rules_match_on_opcode_and_lba_range() {
    let mut h = Harness::with_io("emu", 16);
    let status = Status::media(M::WriteFault);
    h.ctrl.faults().inject(
        CommandMatch {
            opcode: Some(0x01),
            lbas: Some(100..200),
            ..CommandMatch::io()
        },
        FaultAction::Fail(status),
        None,
    );
    assert!(h
        .write_blocks(1, 0, &pattern(512, 1), false)
        .status
        .is_success());
    assert_eq!(
        code(h.write_blocks(1, 199, &pattern(1024, 1), false).status),
        code(status)
    );
    assert_eq!(
        code(h.write_blocks(1, 150, &pattern(512, 1), false).status),
        code(status)
    );
    assert!(h.read_blocks(1, 150, 1).0.status.is_success());
    h.ctrl.faults().clear();
    assert!(h
        .write_blocks(1, 150, &pattern(512, 1), false)
        .status
        .is_success());
}

#[test]
fn rules_match_on_queue() {
    let mut h = Harness::with_io("emu", 16);
    h.create_io_pair(2, 16);
    h.ctrl.faults().inject(
        CommandMatch {
            qid: Some(2),
            ..CommandMatch::default()
        },
        FaultAction::Fail(Status::generic(G::InternalError)),
        Some(1),
    );
    assert!(h.read_blocks(1, 0, 1).0.status.is_success());
    let buf = h.alloc(PAGE);
    let c = h.exec(2, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert_eq!(code(c.status), code(Status::generic(G::InternalError)));
    h.keep(buf);
}

#[test]
fn held_completions_appear_only_when_released() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().hold_next(2);
    let buf = h.alloc(PAGE);
    let a = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let b = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let c = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert_eq!(h.wait(1).cid, c);
    assert!(h.peek(1).is_none());
    assert_eq!(h.ctrl.faults().held(), 2);
    assert_eq!(h.ctrl.faults().release_held(), 2);
    assert_eq!(h.wait(1).cid, a);
    assert_eq!(h.wait(1).cid, b);
    h.keep(buf);
}

#[test]
fn delayed_completions_arrive_after_the_delay_without_help() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().delay_next(1, Duration::from_millis(20));
    let buf = h.alloc(PAGE);
    let start = Instant::now();
    let cid = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert!(h.peek(1).is_none());
    let c = h.wait(1);
    assert_eq!(c.cid, cid);
    assert!(start.elapsed() >= Duration::from_millis(20));
    h.keep(buf);
}

#[test]
fn dropped_commands_never_complete_and_cannot_be_aborted() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().drop_next(1);
    let buf = h.alloc(PAGE);
    let cid = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    assert!(h.peek(1).is_none());
    let mut abort = sqe(0x08);
    abort.cdw10 = 1 | (u32::from(cid) << 16);
    assert_eq!(
        h.admin(abort).dw0 & 1,
        1,
        "not aborted: the driver must reset"
    );
    assert_eq!(h.ctrl.faults().release_held(), 0);
    assert!(h.peek(1).is_none());
    h.keep(buf);
}

#[test]
fn wrong_cid_and_wrong_sqid_are_posted_as_asked() {
    let mut h = Harness::with_io("emu", 16);
    let buf = h.alloc(PAGE);
    h.ctrl.faults().wrong_cid_next(1);
    let cid = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let c = h.wait(1);
    assert_ne!(c.cid, cid);
    assert_eq!(c.sq_id, 1);
    h.ctrl.faults().wrong_sqid_next(1);
    let cid = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let c = h.wait(1);
    assert_eq!(c.cid, cid);
    assert_ne!(c.sq_id, 1);
    h.keep(buf);
}

#[test]
fn raised_cfs_shows_in_csts_until_reset() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().raise_cfs();
    h.assert_reset_clears_cfs();
}

#[test]
fn a_gone_device_reads_all_ones_and_ignores_writes() {
    let h = Harness::new("emu");
    h.ctrl.faults().set_device_gone(true);
    assert_eq!(h.csts(), u32::MAX);
    assert_eq!(h.ctrl.read32(offset::VS), u32::MAX);
    h.ctrl.write32(offset::CC, 0);
    h.ctrl.faults().set_device_gone(false);
    assert!(h.ready(), "the CC write was ignored");
}

#[test]
fn media_errors_fail_reads_verifies_and_compares_of_the_range() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().media_error(1, 10..12);
    let bad = code(Status::media(M::UnrecoveredReadError));
    assert_eq!(code(h.read_blocks(1, 8, 4).0.status), bad);
    assert!(h.read_blocks(1, 12, 4).0.status.is_success());
    let mut v = sqe(0x0c);
    v.nsid = 1;
    v.cdw10 = 11;
    assert_eq!(code(h.exec(1, v).status), bad);
    let (c, buf) = h.io_with_buf(0x05, 1, 10, 1, Some(&[0u8; 512]), 0);
    assert_eq!(code(c.status), bad);
    h.keep(buf);
    let (_, log) = h.get_log(0x02, 512);
    assert_eq!(
        nvme_spec::SmartLog::parse(&log).unwrap().media_errors.get(),
        3
    );
}

#[test]
fn corrupt_reads_flip_the_first_byte_of_each_block_in_the_range() {
    let mut h = Harness::with_io("emu", 16);
    let data = pattern(4 * 512, 3);
    h.write_blocks(1, 0, &data, true);
    h.ctrl.faults().corrupt_reads(1, 1..3);
    let (c, got) = h.read_blocks(1, 0, 4);
    assert!(c.status.is_success());
    let mut expect = data.clone();
    expect[512] = !expect[512];
    expect[1024] = !expect[1024];
    assert_eq!(got, expect);
    h.ctrl.faults().clear();
    assert_eq!(h.read_blocks(1, 0, 4).1, data, "stored data is intact");
}

#[test]
fn command_log_is_off_by_default_and_records_what_was_issued() {
    let mut h = Harness::with_io("emu", 16);
    let log = h.ctrl.command_log();
    h.write_blocks(1, 0, &pattern(512, 1), false);
    assert!(log.entries().is_empty());
    log.enable();
    h.write_blocks(1, 8, &pattern(1024, 1), true);
    h.flush(1);
    let mut wz = sqe(0x08);
    wz.nsid = 1;
    wz.cdw10 = 64;
    wz.cdw12 = 15 | (1 << 25);
    h.exec(1, wz);
    h.read_blocks(1, 1 << 40, 1);
    let entries = log.io_entries();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        (
            entries[0].opcode,
            entries[0].slba,
            entries[0].blocks,
            entries[0].fua
        ),
        (0x01, 8, 2, true)
    );
    assert_eq!(entries[1].opcode, 0x00);
    assert_eq!(
        (
            entries[2].opcode,
            entries[2].slba,
            entries[2].blocks,
            entries[2].deac
        ),
        (0x08, 64, 16, true)
    );
    assert_eq!(
        code(entries[3].status),
        code(Status::generic(G::LbaOutOfRange))
    );
    assert!(entries.iter().all(|e| e.qid == 1 && e.nsid == 1));
    assert_eq!(log.take().len(), 4);
    assert!(log.entries().is_empty());
}

#[test]
fn command_log_can_start_enabled_from_the_device_string() {
    let mut h = Harness::with_io("emu:log=on", 16);
    h.read_blocks(1, 0, 1);
    let entries = h.ctrl.command_log().entries();
    assert!(
        entries.iter().any(|e| e.qid == 0 && e.opcode == 0x05),
        "admin commands logged"
    );
    assert_eq!(h.ctrl.command_log().io_entries().len(), 1);
}

#[test]
fn many_delayed_completions_are_all_released_by_one_timer() {
    let mut h = Harness::with_io("emu", 32);
    let buf = h.alloc(PAGE);
    h.ctrl.faults().inject(
        CommandMatch::io_opcode(0x02),
        FaultAction::Delay(Duration::from_millis(5)),
        Some(10),
    );
    let mut cids: Vec<u16> = (0..10)
        .map(|_| h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0)))
        .collect();
    let mut got: Vec<u16> = (0..10).map(|_| h.wait(1).cid).collect();
    cids.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, cids);
    assert_eq!(h.ctrl.faults().held(), 0);
    h.keep(buf);
}

#[test]
fn counts_name_every_fault_applied_by_kind() {
    let mut h = Harness::with_io("emu", 16);
    let f = h.ctrl.faults();
    assert_eq!(f.counts(), nvme_emu::FaultCounts::default());
    f.fail_next(1, Status::generic(G::InternalError));
    h.read_blocks(1, 0, 1);
    f.delay_next(1, Duration::from_millis(5));
    h.read_blocks(1, 0, 1);
    f.hold_next(1);
    let buf = h.alloc(PAGE);
    h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    f.drop_next(1);
    h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    f.media_error(1, 4..5);
    h.read_blocks(1, 4, 1);
    h.read_blocks(1, 5, 1);
    let c = f.counts();
    assert_eq!(
        (c.failed, c.delayed, c.held, c.dropped, c.media_errors),
        (1, 1, 1, 1, 1),
        "{c:?}"
    );
    assert_eq!((c.released, c.discarded), (1, 0), "the delay ran out");
    // A reset throws the held completion away.
    h.disable();
    let c = f.counts();
    assert_eq!((c.released, c.discarded), (1, 1), "{c:?}");
    h.keep(buf);
}

#[test]
fn random_rules_fire_at_their_rate_and_repeat_with_their_seed() {
    let run = |seed: u64| {
        let mut h = Harness::with_io("emu", 16);
        let status = Status::media(M::UnrecoveredReadError);
        h.ctrl.faults().inject_random(
            CommandMatch::io_opcode(0x02),
            FaultAction::Fail(status),
            250,
            seed,
        );
        let failed: Vec<bool> = (0..400)
            .map(|i| !h.read_blocks(1, i % 16, 1).0.status.is_success())
            .collect();
        // Writes do not match the rule and never draw.
        assert!(h
            .write_blocks(1, 0, &pattern(512, 1), false)
            .status
            .is_success());
        let n = failed.iter().filter(|&&f| f).count() as u64;
        assert_eq!(h.ctrl.faults().counts().failed, n);
        failed
    };
    let a = run(7);
    let n = a.iter().filter(|&&f| f).count();
    assert!((60..140).contains(&n), "{n} of 400 at 25%");
    assert_eq!(run(7), a, "the same seed draws the same faults");
    assert_ne!(run(8), a);
}

#[test]
fn a_delayed_completion_reports_the_sq_head_when_it_is_posted() {
    let mut h = Harness::with_io("emu", 16);
    h.ctrl.faults().delay_next(1, Duration::from_millis(20));
    let buf = h.alloc(PAGE);
    let late = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let on_time = h.submit(1, rw(0x02, 1, 0, 1, buf.iova, 0));
    let c = h.wait(1);
    assert_eq!((c.cid, c.sq_head), (on_time, 2));
    let c = h.wait(1);
    assert_eq!(c.cid, late);
    assert_eq!(c.sq_head, 2, "not the head of when the command ran (1)");
    h.keep(buf);
}
