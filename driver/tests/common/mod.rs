//! Helpers shared by the integration tests: an emulated controller and a driver on it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use nvme::transport::emu::EmuTransport;
use nvme::{Controller, DmaBuffer, Error, IoQueuePair, Options, QueuePairOptions};
use nvme_emu::EmuController;

/// A controller brought up over a fresh emulated device, plus a handle to the device.
pub struct Rig {
    pub emu: EmuController,
    pub ctrl: Controller<EmuTransport>,
}

/// Options with short deadlines so failure paths finish quickly.
pub fn fast_options() -> Options {
    Options {
        admin_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(1000),
        abort_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// Brings up `emu:<opts>` with `options`.
pub fn rig_with(opts: &str, options: Options) -> Rig {
    let name = if opts.is_empty() {
        "emu".to_string()
    } else {
        format!("emu:{opts}")
    };
    let t = EmuTransport::from_name(&name).expect("emu config");
    let emu = t.emu().clone();
    let ctrl = Controller::new(t, options).expect("bring-up");
    Rig { emu, ctrl }
}

/// Brings up `emu:<opts>` with fast options.
pub fn rig(opts: &str) -> Rig {
    rig_with(opts, fast_options())
}

/// A DMA buffer of `len` bytes filled with `pattern(i)`.
pub fn patterned(ctrl: &Controller<EmuTransport>, len: usize, seed: u64) -> DmaBuffer {
    let mut buf = ctrl.allocator().alloc(len, 4096).expect("DMA buffer");
    let bytes: Vec<u8> = (0..len).map(|i| pattern_byte(seed, i)).collect();
    buf.write(0, &bytes).unwrap();
    buf
}

/// The byte at `i` of pattern `seed`.
pub fn pattern_byte(seed: u64, i: usize) -> u8 {
    let x = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i as u64 / 8);
    (x.rotate_left((i % 8) as u32 * 8) >> 56) as u8 ^ (i as u8)
}

/// The contents of `buf`.
pub fn contents(buf: &DmaBuffer) -> Vec<u8> {
    let mut v = vec![0u8; buf.len()];
    buf.read(0, &mut v).unwrap();
    v
}

/// A queue pair on the emulated controller with `u64` contexts.
pub type Qp = IoQueuePair<EmuTransport>;

/// A polled queue pair of depth 16.
pub fn qp(r: &Rig) -> Qp {
    r.ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 16,
            ..QueuePairOptions::default()
        })
        .unwrap()
}

/// Polls until `n` completions have been reported (at most 10 s) and returns them.
pub fn collect(q: &mut Qp, n: usize) -> Vec<(u64, Result<(), Error>)> {
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(
            Instant::now() < end,
            "completions did not arrive: got {}",
            out.len()
        );
        q.wait_completions(usize::MAX, Duration::from_millis(20), |c, r| {
            out.push((c, r))
        })
        .unwrap();
    }
    out
}
