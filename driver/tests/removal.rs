//! A device that disappears (surprise removal: registers read all ones) is noticed
//! within milliseconds on every path (a polling pair with commands outstanding, the
//! admin queue, an interrupt-driven pair's wait), long before the I/O timeout; every
//! outstanding command is reported once with `DeviceGone`; later calls fail at once.
//!
//! The I/O and admin timeouts are 30 s and each test asserts its detection within 2 s:
//! what is checked is that detection does not wait for a deadline, not its speed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use nvme::{CompletionMode, ControllerState, Error, Options, QueuePairOptions};
use nvme_emu::{CommandMatch, FaultAction};

const MODES: [&str; 2] = ["mode=inline", "mode=threaded"];
/// Far below the 30 s deadlines, far above any detection.
const BOUND: Duration = Duration::from_secs(2);

fn slow_deadlines() -> Options {
    Options {
        admin_timeout: Duration::from_secs(30),
        io_timeout: Duration::from_secs(30),
        abort_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

fn removal_rig(mode: &str) -> Rig {
    rig_with(&format!("size=4M,lba=512,{mode}"), slow_deadlines())
}

fn pair(r: &Rig, mode: CompletionMode) -> Qp {
    r.ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 32,
            mode,
            ..QueuePairOptions::default()
        })
        .unwrap()
}

/// Submits reads with contexts `ctxs` whose completions the device holds back, and
/// checks that nothing completes for a few milliseconds.
fn held_reads(r: &Rig, q: &mut Qp, ctxs: std::ops::Range<u64>) -> Vec<nvme::DmaBuffer> {
    r.emu.faults().hold_next((ctxs.end - ctxs.start) as u32);
    let bufs: Vec<_> = ctxs
        .clone()
        .map(|ctx| {
            let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
            q.submit_read(1, ctx * 8, 8, &[buf.as_segment()], ctx)
                .unwrap();
            buf
        })
        .collect();
    q.ring();
    let end = Instant::now() + Duration::from_millis(5);
    while Instant::now() < end {
        let n = q.process_completions(usize::MAX, |c, r| panic!("{c} completed: {r:?}"));
        assert_eq!(n, 0);
    }
    bufs
}

/// Checks that every context in `want` was reported exactly once, with DeviceGone.
fn assert_all_gone(got: &[(u64, Result<(), Error>)], want: std::ops::Range<u64>) {
    let mut seen = BTreeMap::new();
    for (ctx, r) in got {
        assert!(
            matches!(r, Err(Error::DeviceGone { .. })),
            "command {ctx}: {r:?}"
        );
        *seen.entry(*ctx).or_insert(0) += 1;
    }
    let expected: BTreeMap<u64, i32> = want.map(|c| (c, 1)).collect();
    assert_eq!(seen, expected, "each command reported exactly once");
}

/// Every later call fails at once with DeviceGone.
fn assert_later_calls_fail_at_once(r: &Rig, q: &mut Qp) {
    let start = Instant::now();
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let e = q.submit_read(1, 0, 8, &[buf.as_segment()], 99).unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "submit: {e}");
    let e = q.flush_sync(1).unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "flush_sync: {e}");
    let e = r
        .ctrl
        .get_features(nvme::spec::features::FeatureId::NUMBER_OF_QUEUES, 0)
        .unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "admin: {e}");
    let e = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "new pair: {e}");
    let e = r.ctrl.reset().unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "reset: {e}");
    assert_eq!(r.ctrl.state(), ControllerState::Gone);
    let n = q.process_completions(usize::MAX, |c, r| panic!("{c} reported again: {r:?}"));
    assert_eq!(n, 0);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "later calls took {:?}",
        start.elapsed()
    );
}

#[test]
fn polling_pair_reports_every_outstanding_command_device_gone_without_waiting_for_the_deadline() {
    for mode in MODES {
        let r = removal_rig(mode);
        let mut q = pair(&r, CompletionMode::Polled);
        let _bufs = held_reads(&r, &mut q, 1..9);
        r.emu.faults().set_device_gone(true);
        let gone_at = Instant::now();
        let mut got = Vec::new();
        while got.len() < 8 {
            assert!(gone_at.elapsed() < BOUND, "{mode}: not noticed: {got:?}");
            q.process_completions(usize::MAX, |c, r| got.push((c, r)));
        }
        assert_all_gone(&got, 1..9);
        assert_eq!(q.stats().removals, 1, "{mode}");
        assert_later_calls_fail_at_once(&r, &mut q);
    }
}

#[test]
fn a_split_request_on_a_removed_device_is_reported_once() {
    let r = removal_rig("mode=inline");
    let mut q = pair(&r, CompletionMode::Polled);
    let bytes = q.max_transfer_bytes() as usize * 3;
    r.emu.faults().hold_next(16);
    let buf = r.ctrl.allocator().alloc(bytes, 4096).unwrap();
    q.submit_read(1, 0, (bytes / 512) as u32, &[buf.as_segment()], 7)
        .unwrap();
    q.ring();
    r.emu.faults().set_device_gone(true);
    let gone_at = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(gone_at.elapsed() < BOUND, "not noticed");
        q.process_completions(usize::MAX, |c, r| got.push((c, r)));
    }
    // Nothing more arrives for the request's other child commands.
    for _ in 0..10_000 {
        q.process_completions(usize::MAX, |c, r| got.push((c, r)));
    }
    assert_all_gone(&got, 7..8);
    assert_eq!(q.outstanding(), 0);
}

#[test]
fn other_pairs_report_their_commands_at_their_next_poll() {
    for mode in MODES {
        let r = removal_rig(mode);
        let mut a = pair(&r, CompletionMode::Polled);
        let mut b = pair(&r, CompletionMode::Polled);
        let _ab = held_reads(&r, &mut a, 1..5);
        let _bb = held_reads(&r, &mut b, 1..4);
        r.emu.faults().set_device_gone(true);
        let gone_at = Instant::now();
        let mut got = Vec::new();
        while got.len() < 4 {
            assert!(gone_at.elapsed() < BOUND, "{mode}: not noticed");
            a.process_completions(usize::MAX, |c, r| got.push((c, r)));
        }
        assert_all_gone(&got, 1..5);
        // One call: the shared state already says the device is gone.
        let mut got = Vec::new();
        b.process_completions(usize::MAX, |c, r| got.push((c, r)));
        assert_all_gone(&got, 1..4);
        assert_eq!(b.stats().removals, 0, "{mode}: b read no register");
        assert_later_calls_fail_at_once(&r, &mut b);
    }
}

#[test]
fn admin_command_on_a_removed_device_fails_without_waiting_for_the_admin_timeout() {
    for mode in MODES {
        let r = removal_rig(mode);
        let mut q = pair(&r, CompletionMode::Polled);
        // Get Features, held by the device until it disappears.
        r.emu
            .faults()
            .inject(CommandMatch::admin_opcode(0x0a), FaultAction::Hold, Some(1));
        let (result, waited) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                r.ctrl
                    .get_features(nvme::spec::features::FeatureId::NUMBER_OF_QUEUES, 0)
            });
            // Long enough for the admin wait to reach its sleeping backoff.
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "{mode}: the held command completed");
            r.emu.faults().set_device_gone(true);
            let gone_at = Instant::now();
            let result = waiter.join().unwrap();
            (result, gone_at.elapsed())
        });
        assert!(
            matches!(result, Err(Error::DeviceGone { .. })),
            "{mode}: {result:?}"
        );
        assert!(waited < BOUND, "{mode}: took {waited:?}");
        assert_eq!(r.ctrl.state(), ControllerState::Gone);
        // The pair learns it from the controller's state, without I/O of its own.
        assert_later_calls_fail_at_once(&r, &mut q);
    }
}

#[test]
fn interrupt_wait_returns_device_gone_without_waiting_for_the_deadline() {
    for mode in MODES {
        let r = removal_rig(mode);
        let mut q = pair(&r, CompletionMode::Interrupt);
        let _bufs = held_reads(&r, &mut q, 1..4);
        let (got, waited) = std::thread::scope(|s| {
            let q = &mut q;
            let waiter = s.spawn(move || {
                let mut got = Vec::new();
                let end = Instant::now() + Duration::from_secs(20);
                while got.len() < 3 && Instant::now() < end {
                    q.wait_completions(usize::MAX, Duration::from_secs(10), |c, r| {
                        got.push((c, r))
                    })
                    .unwrap();
                }
                got
            });
            std::thread::sleep(Duration::from_millis(30));
            assert!(!waiter.is_finished(), "{mode}: the held commands completed");
            r.emu.faults().set_device_gone(true);
            let gone_at = Instant::now();
            let got = waiter.join().unwrap();
            (got, gone_at.elapsed())
        });
        assert!(waited < BOUND, "{mode}: took {waited:?}");
        assert_all_gone(&got, 1..4);
        assert_later_calls_fail_at_once(&r, &mut q);
    }
}

#[test]
fn a_removed_device_is_dropped_without_waiting() {
    let r = removal_rig("mode=threaded");
    let mut q = pair(&r, CompletionMode::Polled);
    let _bufs = held_reads(&r, &mut q, 1..4);
    r.emu.faults().set_device_gone(true);
    let start = Instant::now();
    drop(q);
    drop(r);
    assert!(start.elapsed() < BOUND, "drop took {:?}", start.elapsed());
}

#[test]
fn a_device_that_answers_is_not_reported_gone_while_its_commands_are_held() {
    let r = removal_rig("mode=inline");
    let mut q = pair(&r, CompletionMode::Polled);
    let _bufs = held_reads(&r, &mut q, 1..3);
    // Many removal checks' worth of empty polls: CSTS reads fine each time.
    let end = Instant::now() + Duration::from_millis(50);
    while Instant::now() < end {
        let n = q.process_completions(usize::MAX, |c, r| panic!("{c}: {r:?}"));
        assert_eq!(n, 0);
    }
    assert_eq!(r.ctrl.state(), ControllerState::Live);
    assert_eq!(r.emu.faults().release_held(), 2);
    let mut got = Vec::new();
    while got.len() < 2 {
        q.process_completions(usize::MAX, |c, r| got.push((c, r)));
    }
    assert!(got.iter().all(|(_, r)| r.is_ok()), "{got:?}");
    assert_eq!(q.stats().removals, 0);
}
