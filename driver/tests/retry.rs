//! Retries: commands cut short by a controller reset and commands failed with a
//! transient status are resubmitted within their budget; DNR and the no-retry flag
//! complete at once; the Command Retry Delay is waited without blocking; ACRE is
//! enabled exactly when the controller reports a delay.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nvme::spec::status::GenericStatus;
use nvme::spec::NvmOpcode;
use nvme::spec::Status;
use nvme::{Error, IoFlags, Options};
use nvme_emu::{CommandMatch, FaultAction};

/// Reads logged by the emulated controller on LBAs `lbas`.
fn reads_logged(r: &Rig, slba: u64) -> usize {
    r.emu
        .command_log()
        .io_entries()
        .iter()
        .filter(|e| e.opcode == NvmOpcode::READ.0 && e.slba == slba)
        .count()
}

fn fail_with(code: GenericStatus, crd: u8, dnr: bool) -> FaultAction {
    FaultAction::FailWith {
        status: Status::generic(code),
        crd,
        dnr,
    }
}

fn reads_of(lbas: std::ops::Range<u64>) -> CommandMatch {
    CommandMatch {
        lbas: Some(lbas),
        ..CommandMatch::io_opcode(NvmOpcode::READ.0)
    }
}

#[test]
fn a_read_cut_short_by_a_reset_succeeds_on_its_retry_with_the_right_data() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    let src = patterned(&r.ctrl, 4096, 11);
    q.write_sync(1, 40, 8, &src, IoFlags::empty()).unwrap();
    r.emu.faults().hold_next(1);
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read(1, 40, 8, &[buf.as_segment()], 9).unwrap();
    q.ring();
    assert_eq!(r.emu.faults().held(), 1);
    r.ctrl.reset().unwrap();
    let got = collect(&mut q, 1);
    assert_eq!(got[0].0, 9);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert_eq!(contents(&buf), contents(&src));
    assert_eq!(q.stats().retries, 1);
    assert!(q.stats().resets >= 1);
}

#[test]
fn a_timed_out_read_is_aborted_then_retried_and_succeeds() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().drop_next(1);
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read(1, 0, 8, &[buf.as_segment()], 3).unwrap();
    let got = collect(&mut q, 1);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    let s = q.stats();
    assert_eq!((s.timeouts, s.retries), (1, 1));
}

#[test]
fn a_read_failing_every_attempt_ends_with_retries_exhausted_after_the_budget() {
    let r = rig("size=1M,lba=512,log=on");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(64..72),
        fail_with(GenericStatus::CommandInterrupted, 0, false),
        None,
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 64, 8, &mut buf).unwrap_err();
    match &err {
        Error::RetriesExhausted {
            retries, source, ..
        } => {
            assert_eq!(*retries, 5);
            assert_eq!(
                source.status().map(|s| s.code_only()),
                Some(Status::generic(GenericStatus::CommandInterrupted))
            );
        }
        e => panic!("expected RetriesExhausted, got {e}"),
    }
    assert!(err.to_string().contains("retried 5 times"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(reads_logged(&r, 64), 6, "one attempt and five retries");
    assert_eq!(q.stats().retries, 5);
}

#[test]
fn the_retry_budget_is_an_option() {
    let r = rig_with(
        "size=1M,lba=512,log=on",
        Options {
            command_retries: 2,
            ..fast_options()
        },
    );
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(0..8),
        fail_with(GenericStatus::NamespaceNotReady, 0, false),
        None,
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 0, 8, &mut buf).unwrap_err();
    assert!(
        matches!(err, Error::RetriesExhausted { retries: 2, .. }),
        "{err}"
    );
    assert_eq!(reads_logged(&r, 0), 3);
}

#[test]
fn dnr_completes_at_once_with_its_status() {
    let r = rig("size=1M,lba=512,log=on");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(8..16),
        fail_with(GenericStatus::NamespaceNotReady, 0, true),
        None,
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 8, 8, &mut buf).unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }), "{err}");
    assert!(err.status().unwrap().dnr());
    assert_eq!(reads_logged(&r, 8), 1);
    assert_eq!(q.stats().retries, 0);
}

#[test]
fn a_status_that_is_not_transient_is_not_retried() {
    let r = rig("size=1M,lba=512,log=on");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(8..16),
        fail_with(GenericStatus::InternalError, 0, false),
        None,
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 8, 8, &mut buf).unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }), "{err}");
    assert_eq!(reads_logged(&r, 8), 1);
}

#[test]
fn the_no_retry_flag_completes_at_once_and_never_reaches_the_wire() {
    let r = rig("size=1M,lba=512,log=on");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(16..24),
        fail_with(GenericStatus::CommandInterrupted, 0, false),
        None,
    );
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read_with_flags(1, 16, 8, &[buf.as_segment()], IoFlags::NO_RETRY, 4)
        .unwrap();
    let got = collect(&mut q, 1);
    assert!(
        matches!(got[0].1, Err(Error::CommandFailed { .. })),
        "{:?}",
        got[0].1
    );
    assert_eq!(reads_logged(&r, 16), 1);
    r.emu.faults().clear();
    // Without the fault the flagged read succeeds: bit 16 of CDW12 was not sent (the
    // emulated controller would have read it as part of a wrong command otherwise).
    q.submit_read_with_flags(1, 16, 8, &[buf.as_segment()], IoFlags::NO_RETRY, 5)
        .unwrap();
    let got = collect(&mut q, 1);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert_eq!(q.stats().retries, 0);
}

#[test]
fn the_no_retry_flag_also_skips_the_retry_after_a_reset() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().hold_next(1);
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read_with_flags(1, 0, 8, &[buf.as_segment()], IoFlags::NO_RETRY, 1)
        .unwrap();
    q.ring();
    r.ctrl.reset().unwrap();
    let got = collect(&mut q, 1);
    assert!(
        matches!(got[0].1, Err(Error::ControllerReset { .. })),
        "{:?}",
        got[0].1
    );
    assert_eq!(q.stats().retries, 0);
}

#[test]
fn namespace_not_ready_with_crd_waits_crdt_before_the_retry() {
    let r = rig("size=1M,lba=512,log=on,crdt=1:0:0");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(24..32),
        fail_with(GenericStatus::NamespaceNotReady, 1, false),
        Some(1),
    );
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let start = Instant::now();
    q.submit_read(1, 24, 8, &[buf.as_segment()], 6).unwrap();
    // Poll for a while well inside the 100 ms delay: the failure is not reported, and
    // the command is not sent again yet.
    let mut early = Vec::new();
    while start.elapsed() < Duration::from_millis(40) {
        q.process_completions(usize::MAX, |c, r| early.push((c, r)));
    }
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(reads_logged(&r, 24), 1, "no retry before the delay");
    let got = collect(&mut q, 1);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(reads_logged(&r, 24), 2);
    assert_eq!(q.stats().retries, 1);
}

#[test]
fn crd_is_ignored_when_the_controller_reports_no_delay_times() {
    let r = rig("size=1M,lba=512,log=on");
    let mut q = qp(&r);
    r.emu.faults().inject(
        reads_of(24..32),
        fail_with(GenericStatus::NamespaceNotReady, 3, false),
        Some(1),
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.read_sync(1, 24, 8, &mut buf).unwrap();
    assert_eq!(reads_logged(&r, 24), 2);
}

/// Reads byte 0 (ACRE) of Host Behavior Support.
fn acre(r: &Rig) -> u8 {
    let mut sqe =
        nvme::spec::admin::GetFeatures::current(nvme::spec::features::FeatureId(0x16)).to_sqe();
    sqe.cdw11 = 0;
    r.ctrl.admin_read(sqe, 512).unwrap()[0]
}

#[test]
fn acre_is_enabled_exactly_when_a_crdt_is_nonzero() {
    assert_eq!(acre(&rig("size=1M,lba=512")), 0);
    assert_eq!(acre(&rig("size=1M,lba=512,crdt=0:5:0")), 1);
    let r = rig("size=1M,lba=512,crdt=1:5:10");
    assert_eq!(acre(&r), 1);
    let id = r.ctrl.identify_controller();
    assert_eq!((id.crdt1, id.crdt2, id.crdt3), (1, 5, 10));
    r.ctrl.reset().unwrap();
    assert_eq!(acre(&r), 1, "enabled again after a reset");
}

#[test]
fn a_split_read_with_a_retried_child_completes_once_with_success() {
    let r = rig("size=1M,lba=512,mdts=1,log=on");
    let mut q = qp(&r);
    let blocks = 64u32;
    let src = patterned(&r.ctrl, blocks as usize * 512, 3);
    q.write_sync(1, 128, blocks, &src, IoFlags::empty())
        .unwrap();
    // One child (blocks 144..152) is interrupted once.
    r.emu.faults().inject(
        reads_of(144..145),
        fail_with(GenericStatus::CommandInterrupted, 0, false),
        Some(1),
    );
    let buf = r
        .ctrl
        .allocator()
        .alloc(blocks as usize * 512, 4096)
        .unwrap();
    q.submit_read(1, 128, blocks, &[buf.as_segment()], 77)
        .unwrap();
    let got = collect(&mut q, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 77);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert_eq!(contents(&buf), contents(&src));
    assert_eq!(q.stats().retries, 1);
    assert_eq!(q.outstanding(), 0);
    let mut more = 0;
    q.process_completions(usize::MAX, |_, _| more += 1);
    assert_eq!(more, 0, "reported once");
}
