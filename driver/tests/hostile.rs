//! The driver against a hostile device: a seeded emulated controller that lies in its
//! completions, Identify pages, registers, interrupts and DMA. Every run must end without
//! a panic or a hang, report every failure as a typed error, report each command once,
//! and direct the device only at the buffers of the command in hand.

mod hostile_workload;

use std::sync::mpsc;
use std::time::Duration;

use hostile_workload::{run, Report};
use nvme::CompletionMode;
use proptest::prelude::*;

/// A case that has not finished by then has hung.
const CASE_BOUND: Duration = Duration::from_secs(45);

/// Runs one case on its own thread: a panic or an overrun fails the test.
fn watched(seed: u64, rate: u16, qpairs: u16, mode: CompletionMode, rounds: usize) -> Report {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(run(seed, rate, qpairs, mode, rounds));
    });
    match rx.recv_timeout(CASE_BOUND) {
        Ok(Ok(report)) => {
            worker.join().expect("the case thread ends after sending");
            report
        }
        Ok(Err(broken)) => panic!("seed {seed} rate {rate} {qpairs} pairs {mode:?}: {broken}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("seed {seed} rate {rate} {qpairs} pairs {mode:?}: the driver panicked")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("seed {seed} rate {rate} {qpairs} pairs {mode:?}: hung for {CASE_BOUND:?}")
        }
    }
}

#[test]
fn an_honest_device_gives_back_every_block_and_the_harness_checks_it() {
    for mode in [CompletionMode::Polled, CompletionMode::Interrupt] {
        let r = watched(7, 0, 3, mode, 2);
        assert!(r.brought_up);
        assert_eq!(r.errors, 0, "{r:?}");
        // 3 pairs x 4 buffers x (write + read) x 2 rounds.
        assert_eq!(r.ok, 3 * 4 * 2 * 2);
        assert!(r.accesses_checked >= r.ok, "{r:?}");
        assert_eq!(r.hostile.tampered(), 0);
        assert!(r.hostile.events() > 0);
    }
}

#[test]
fn a_device_that_always_lies_is_survived() {
    for mode in [CompletionMode::Polled, CompletionMode::Interrupt] {
        let r = watched(3, 1000, 2, mode, 1);
        assert!(
            !r.brought_up,
            "a device lying in every register read cannot be brought up"
        );
        assert!(r.hostile.register_reads_tampered > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_hostile_device_causes_no_panic_no_hang_and_no_stray_dma(
        seed in any::<u64>(),
        rate in prop_oneof![Just(10u16), Just(50), Just(200)],
        qpairs in 2u16..=4,
        interrupt in any::<bool>(),
    ) {
        let mode = if interrupt { CompletionMode::Interrupt } else { CompletionMode::Polled };
        let r = watched(seed, rate, qpairs, mode, 2);
        prop_assert!(r.hostile.events() > 0);
        prop_assert!(r.calls > 0);
    }
}
