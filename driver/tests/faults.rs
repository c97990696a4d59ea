//! Device faults surface as the right typed errors, and the driver recovers or stops
//! cleanly: statuses, timeouts with abort and reset, an untrusted completion queue,
//! fatal status and a vanished device.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nvme::spec::features::FeatureId;
use nvme::spec::status::{GenericStatus, MediaStatus};
use nvme::spec::Status;
use nvme::transport::emu::EmuTransport;
use nvme::{Error, IoFlags};
use nvme_emu::{CommandMatch, FaultAction};

/// A rig whose driver reports the first error of every command (no retries): for the
/// tests of the error each failure path reports.
fn no_retries(opts: &str) -> Rig {
    rig_with(
        opts,
        nvme::Options {
            command_retries: 0,
            ..fast_options()
        },
    )
}

fn read_one(r: &Rig, q: &mut Qp, lba: u64, ctx: u64) -> nvme::DmaBuffer {
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.submit_read(1, lba, 8, &[buf.as_segment()], ctx).unwrap();
    buf
}

#[test]
fn lba_out_of_range_reports_spec_status_in_a_sentence() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 0x100_0000, 8, &mut buf).unwrap_err();
    let status = err.status().expect("a device status");
    assert_eq!(
        status.code_only(),
        Status::generic(GenericStatus::LbaOutOfRange)
    );
    let dnr = if status.dnr() { ", DNR" } else { "" };
    assert_eq!(
        err.to_string(),
        format!(
            "read of 8 blocks at LBA 0x1000000 on namespace 1 failed: LBA Out of Range (SCT 0x0, SC 0x80{dnr})"
        )
    );
}

#[test]
fn every_injected_status_is_reported_with_its_code() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    let statuses = [
        Status::generic(GenericStatus::InternalError),
        Status::generic(GenericStatus::DataTransferError),
        Status::generic(GenericStatus::InvalidFieldInCommand).with_dnr(true),
        Status::media(MediaStatus::UnrecoveredReadError),
        Status::media(MediaStatus::WriteFault),
    ];
    for (i, st) in statuses.iter().enumerate() {
        r.emu.faults().fail_next(1, *st);
        let _buf = read_one(&r, &mut q, 0, i as u64);
        let got = collect(&mut q, 1);
        match &got[0].1 {
            Err(Error::CommandFailed { status, .. }) => {
                assert_eq!(status.code_only(), st.code_only());
                assert_eq!(status.dnr(), st.dnr());
            }
            other => panic!("status {st}: got {other:?}"),
        }
    }
}

#[test]
fn media_error_surfaces_as_unrecovered_read_error() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().media_error(1, 16..24);
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.read_sync(1, 16, 8, &mut buf).unwrap_err();
    assert_eq!(
        err.status().map(|s| s.code_only()),
        Some(Status::media(MediaStatus::UnrecoveredReadError))
    );
    q.read_sync(1, 0, 8, &mut buf).unwrap();
}

#[test]
fn held_command_past_its_deadline_is_aborted_and_reported_as_timed_out() {
    let r = no_retries("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().hold_next(1);
    let _buf = read_one(&r, &mut q, 0, 7);
    let got = collect(&mut q, 1);
    assert_eq!(got[0].0, 7);
    assert!(
        matches!(got[0].1, Err(Error::CommandTimedOut { .. })),
        "{:?}",
        got[0].1
    );
    let s = q.stats();
    assert_eq!((s.timeouts, s.aborts), (1, 1));
    assert_eq!(
        r.ctrl.admin_stats().resets,
        0,
        "the abort sufficed: no reset"
    );
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.read_sync(1, 0, 8, &mut buf).unwrap();
}

#[test]
fn dropped_command_leads_to_abort_then_reset_and_the_queue_works_after() {
    let r = no_retries("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu
        .faults()
        .inject(CommandMatch::io(), FaultAction::Drop, Some(1));
    r.emu
        .faults()
        .inject(CommandMatch::io(), FaultAction::Hold, Some(1));
    let _a = read_one(&r, &mut q, 0, 1);
    let _b = read_one(&r, &mut q, 8, 2);
    let mut got = collect(&mut q, 2);
    got.sort_by_key(|g| g.0);
    assert!(
        matches!(got[0].1, Err(Error::CommandTimedOut { .. })),
        "{:?}",
        got[0].1
    );
    assert!(
        matches!(
            got[1].1,
            Err(Error::ControllerReset { .. }) | Err(Error::CommandTimedOut { .. })
        ),
        "{:?}",
        got[1].1
    );
    assert_eq!(r.ctrl.admin_stats().resets, 1);
    assert!(q.stats().resets >= 1);
    let src = patterned(&r.ctrl, 4096, 5);
    q.write_sync(1, 0, 8, &src, IoFlags::empty()).unwrap();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.read_sync(1, 0, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&src));
}

#[test]
fn unknown_cid_and_wrong_sq_id_are_counted_never_trusted() {
    let r = no_retries("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().wrong_cid_next(1);
    let _a = read_one(&r, &mut q, 0, 1);
    let got = collect(&mut q, 1);
    // The real command never completes under its own CID: it times out.
    assert!(
        matches!(got[0].1, Err(Error::CommandTimedOut { .. })),
        "{:?}",
        got[0].1
    );
    assert_eq!(q.stats().unknown_cid, 1);

    r.emu.faults().wrong_sqid_next(1);
    let _b = read_one(&r, &mut q, 0, 2);
    let got = collect(&mut q, 1);
    assert!(got[0].1.is_err());
    assert_eq!(q.stats().wrong_sq_id, 1);
}

#[test]
fn fatal_status_is_detected_and_cleared_by_reset() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().raise_cfs();
    let err = r.ctrl.check_health().unwrap_err();
    assert!(matches!(err, Error::ControllerFatal { .. }), "{err}");
    r.ctrl.reset().unwrap();
    r.ctrl.check_health().unwrap();
    let mut buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    q.read_sync(1, 0, 8, &mut buf).unwrap();
}

#[test]
fn fatal_status_during_io_resets_and_fails_outstanding_commands() {
    let r = no_retries("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().hold_next(1);
    let _a = read_one(&r, &mut q, 0, 1);
    q.ring();
    r.emu.faults().raise_cfs();
    let got = collect(&mut q, 1);
    assert!(
        matches!(got[0].1, Err(Error::ControllerReset { .. })),
        "{:?}",
        got[0].1
    );
    r.ctrl.check_health().unwrap();
}

#[test]
fn vanished_device_is_reported_not_waited_for() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().hold_next(1);
    let _a = read_one(&r, &mut q, 0, 1);
    q.ring();
    r.emu.faults().set_device_gone(true);
    let err = r.ctrl.check_health().unwrap_err();
    assert!(matches!(err, Error::DeviceGone { .. }), "{err}");
    let got = collect(&mut q, 1);
    match &got[0].1 {
        Err(e @ Error::DeviceGone { .. }) => {
            assert!(
                e.to_string().contains("is gone (registers read all ones)"),
                "{e}"
            )
        }
        other => panic!("expected DeviceGone, got {other:?}"),
    }
    // Later submissions fail at once instead of waiting for a deadline.
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let err = q.submit_read(1, 0, 8, &[buf.as_segment()], 2).unwrap_err();
    assert!(matches!(err, Error::DeviceGone { .. }), "{err}");
}

#[test]
fn bring_up_of_a_vanished_device_fails_with_device_gone() {
    let t = EmuTransport::from_name("emu:size=1M").unwrap();
    t.emu().faults().set_device_gone(true);
    let err = nvme::Controller::new(t, fast_options()).unwrap_err();
    assert!(matches!(err, Error::DeviceGone { .. }), "{err}");
}

#[test]
fn failing_identify_fails_bring_up_and_leaves_the_controller_disabled() {
    let t = EmuTransport::from_name("emu:size=1M").unwrap();
    t.emu().faults().inject(
        CommandMatch::admin_opcode(0x06),
        FaultAction::Fail(Status::generic(GenericStatus::InternalError)),
        Some(1),
    );
    let emu = t.emu().clone();
    let err = nvme::Controller::new(t, fast_options()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("admin command Identify (opcode 0x06) failed: Internal Error"),
        "{err}"
    );
    let csts = nvme::spec::Csts::from_bits(emu.read32(nvme::spec::registers::offset::CSTS));
    assert!(
        !csts.rdy(),
        "a failed bring-up leaves the controller disabled"
    );
}

#[test]
fn admin_command_the_device_never_answers_times_out() {
    let r = rig("size=1M");
    r.emu
        .faults()
        .inject(CommandMatch::admin_opcode(0x0a), FaultAction::Drop, Some(1));
    let start = Instant::now();
    let err = r
        .ctrl
        .get_features(FeatureId::NUMBER_OF_QUEUES, 0)
        .unwrap_err();
    assert!(matches!(err, Error::CommandTimedOut { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        r.ctrl.get_features(FeatureId::NUMBER_OF_QUEUES, 0).unwrap() & 0xffff,
        3
    );
}

#[test]
fn delayed_completion_within_the_deadline_is_a_success() {
    let r = rig("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().delay_next(1, Duration::from_millis(50));
    let _a = read_one(&r, &mut q, 0, 3);
    let got = collect(&mut q, 1);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert_eq!(q.stats().timeouts, 0);
}

#[test]
fn delayed_completion_past_the_deadline_is_aborted() {
    let r = no_retries("size=1M,lba=512");
    let mut q = qp(&r);
    r.emu.faults().delay_next(1, Duration::from_secs(5));
    let _a = read_one(&r, &mut q, 0, 3);
    let got = collect(&mut q, 1);
    assert!(
        matches!(got[0].1, Err(Error::CommandTimedOut { .. })),
        "{:?}",
        got[0].1
    );
    assert_eq!(q.stats().timeouts, 1);
}

#[test]
fn two_pairs_timing_out_together_reset_the_controller_once() {
    let r = rig_with(
        "size=1M,lba=512",
        nvme::Options {
            io_queues: 2,
            command_retries: 0,
            ..fast_options()
        },
    );
    r.emu
        .faults()
        .inject(CommandMatch::io(), FaultAction::Drop, Some(2));
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (r, barrier) = (&r, &barrier);
            s.spawn(move || {
                let mut q = qp(r);
                barrier.wait();
                let _buf = read_one(r, &mut q, t * 8, t);
                q.ring();
                let got = collect(&mut q, 1);
                assert!(
                    matches!(
                        got[0].1,
                        Err(Error::CommandTimedOut { .. }) | Err(Error::ControllerReset { .. })
                    ),
                    "{:?}",
                    got[0].1
                );
                let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
                q.read_sync(1, 0, 8, &mut rd).unwrap();
            });
        }
    });
    assert_eq!(r.ctrl.admin_stats().resets, 1);
}
