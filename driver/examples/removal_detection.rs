//! How long the driver takes to notice a surprise removal, on the emulated controller.
//!
//! Each round brings up a fresh controller, leaves commands outstanding whose
//! completions the device holds back, makes the device disappear (registers read all
//! ones) and measures the time from then to the `DeviceGone` report: on a polling queue
//! pair, on a blocked admin command, and on a thread waiting for an interrupt-driven
//! pair. The I/O and admin timeouts are 30 s, so only the removal check can be quick.
//!
//! ```sh
//! cargo run --release -p nvme --example removal_detection [ROUNDS]
//! ```

use std::thread;
use std::time::{Duration, Instant};

use nvme::spec::features::FeatureId;
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, Error, IoQueuePair, Options, QueuePairOptions};
use nvme_emu::{CommandMatch, EmuController, FaultAction};

const OUTSTANDING: u64 = 8;

/// One path's measurement on an emulated controller of the given mode.
type Path = fn(&str) -> Duration;

fn bring_up(mode: &str) -> (EmuController, Controller<EmuTransport>) {
    let t =
        EmuTransport::from_name(&format!("emu:size=4M,lba=512,mode={mode}")).expect("emu config");
    let emu = t.emu().clone();
    let options = Options {
        admin_timeout: Duration::from_secs(30),
        io_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    let ctrl = Controller::new(t, options).expect("bring-up");
    (emu, ctrl)
}

/// Submits `OUTSTANDING` reads whose completions the device holds back.
fn held_reads(
    emu: &EmuController,
    ctrl: &Controller<EmuTransport>,
    q: &mut IoQueuePair<EmuTransport>,
) -> Vec<nvme::DmaBuffer> {
    emu.faults().hold_next(OUTSTANDING as u32);
    let bufs: Vec<_> = (0..OUTSTANDING)
        .map(|i| {
            let buf = ctrl.allocator().alloc(4096, 4096).expect("buffer");
            q.submit_read(1, i * 8, 8, &[buf.as_segment()], i)
                .expect("submit");
            buf
        })
        .collect();
    q.ring();
    bufs
}

fn pair(ctrl: &Controller<EmuTransport>, mode: CompletionMode) -> IoQueuePair<EmuTransport> {
    ctrl.create_io_queue_pair(QueuePairOptions {
        depth: 32,
        mode,
        ..QueuePairOptions::default()
    })
    .expect("queue pair")
}

fn check_gone(r: &Result<(), Error>) {
    assert!(
        matches!(r, Err(Error::DeviceGone { .. })),
        "expected DeviceGone, got {r:?}"
    );
}

/// A polling pair: the thread that polls sets the fault between two polls.
fn polled(mode: &str) -> Duration {
    let (emu, ctrl) = bring_up(mode);
    let mut q = pair(&ctrl, CompletionMode::Polled);
    let _bufs = held_reads(&emu, &ctrl, &mut q);
    // Poll a while first, as a pair waiting on a stuck device does.
    let end = Instant::now() + Duration::from_millis(5);
    while Instant::now() < end {
        q.process_completions(usize::MAX, |_, r| panic!("completed: {r:?}"));
    }
    emu.faults().set_device_gone(true);
    let gone_at = Instant::now();
    let mut reported = 0;
    while reported < OUTSTANDING {
        q.process_completions(usize::MAX, |_, r| {
            check_gone(&r);
            reported += 1;
        });
    }
    gone_at.elapsed()
}

/// An admin command held by the device; another thread removes it.
fn admin(mode: &str) -> Duration {
    let (emu, ctrl) = bring_up(mode);
    emu.faults()
        .inject(CommandMatch::admin_opcode(0x0a), FaultAction::Hold, Some(1));
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let r = ctrl.get_features(FeatureId::NUMBER_OF_QUEUES, 0);
            let at = Instant::now();
            check_gone(&r.map(|_| ()));
            at
        });
        thread::sleep(Duration::from_millis(20));
        emu.faults().set_device_gone(true);
        let gone_at = Instant::now();
        waiter.join().expect("waiter").duration_since(gone_at)
    })
}

/// A thread blocked in an interrupt-driven pair's wait; another thread removes it.
fn interrupt(mode: &str) -> Duration {
    let (emu, ctrl) = bring_up(mode);
    let mut q = pair(&ctrl, CompletionMode::Interrupt);
    let _bufs = held_reads(&emu, &ctrl, &mut q);
    thread::scope(|s| {
        let q = &mut q;
        let waiter = s.spawn(move || {
            let mut reported = 0;
            while reported < OUTSTANDING {
                q.wait_completions(usize::MAX, Duration::from_secs(10), |_, r| {
                    check_gone(&r);
                    reported += 1;
                })
                .expect("wait");
            }
            Instant::now()
        });
        thread::sleep(Duration::from_millis(20));
        emu.faults().set_device_gone(true);
        let gone_at = Instant::now();
        waiter.join().expect("waiter").duration_since(gone_at)
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(25);
    let paths: [(&str, Path); 3] = [
        ("polled", polled),
        ("admin", admin),
        ("interrupt", interrupt),
    ];
    println!("removal detection: time from set_device_gone to the DeviceGone report (µs)");
    let mut summary = Vec::new();
    for mode in ["inline", "threaded"] {
        for (name, run) in paths {
            let mut times: Vec<f64> = (0..rounds).map(|_| micros(run(mode))).collect();
            let rounds_text: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
            println!("{mode:>8} {name:>9}: {}", rounds_text.join(" "));
            times.sort_by(f64::total_cmp);
            summary.push((mode, name, times[times.len() / 2], times[times.len() - 1]));
        }
    }
    println!();
    println!("| emu mode | path      | median µs | max µs |");
    println!("|----------|-----------|----------:|-------:|");
    for (mode, name, median, max) in summary {
        println!("| {mode:<8} | {name:<9} | {median:>9.0} | {max:>6.0} |");
    }
}
