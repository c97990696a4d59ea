//! The coarse clock that command deadlines are measured with.

use std::time::Instant;

/// Polls between two readings of the clock while commands are outstanding.
///
/// The hot path reads the clock only this often, and then the coarse clock (see
/// [`coarse_ns`]); command deadlines are measured from the first reading after
/// submission (see [`TrackerPool::stamp`]).
pub(super) const CLOCK_POLLS: u32 = 256;

/// A coarse clock for command deadlines, read every [`CLOCK_POLLS`] polls and once per
/// round of [`IoQueuePair::wait_completions`]; never per command or doorbell.
pub(super) struct Clock {
    pub(super) start: Instant,
    /// [`coarse_ns`] at `start` (`None`: the coarse clock is unavailable).
    pub(super) coarse_start: Option<u64>,
    pub(super) now_ns: u64,
    /// Polls left before the next reading.
    pub(super) countdown: u32,
    pub(super) next_check_ns: u64,
}

impl Clock {
    pub(super) fn new(start: Instant) -> Self {
        Clock {
            start,
            coarse_start: coarse_ns(),
            now_ns: 0,
            countdown: CLOCK_POLLS,
            next_check_ns: 0,
        }
    }

    /// Nanoseconds since `start`, within one timer tick (a few milliseconds, far below
    /// any command timeout).
    pub(super) fn refresh(&mut self) -> u64 {
        self.now_ns = match (self.coarse_start, coarse_ns()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.start.elapsed().as_nanos() as u64,
        };
        self.now_ns
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the monotonic clock as of the last timer
/// tick. The vDSO answers it from memory, without a system call or a timer-device
/// access, which `Instant::now` needs where the clock source is not the TSC (an
/// HPET-clocked virtual machine: there each such read also waits for the emulator's
/// device lock, costing more than a polled completion).
fn coarse_ns() -> Option<u64> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}
