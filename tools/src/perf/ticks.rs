//! A cheap clock for timing every I/O: the CPU's time-stamp counter where it ticks
//! steadily, `Instant` elsewhere.
//!
//! `Instant::now()` is a `clock_gettime` call; where the kernel's clocksource is not
//! the TSC (an HPET-clocked virtual machine, for one) that is a system call and a timer
//! device access, costlier than a polled NVMe completion. The loop reads this clock
//! once per poll and per completion batch instead.

use std::time::{Duration, Instant};

use hugepages::tsc;

/// Length of each of the two calibration windows.
const CALIBRATION: Duration = Duration::from_millis(20);
/// Largest relative difference between the two calibration windows' rates (1/100).
const MAX_RATE_SKEW: f64 = 0.01;
/// Calibrations to try before settling for `Instant`.
const CALIBRATION_ATTEMPTS: usize = 3;
/// Tries at one paired reading of both clocks; the tightest is kept.
const READ_ATTEMPTS: usize = 8;

/// Ticks since an origin, converted to and from nanoseconds with a calibrated rate.
#[derive(Debug, Clone, Copy)]
pub struct TickClock {
    origin: Instant,
    origin_ticks: u64,
    /// Nanoseconds per tick.
    ns_per_tick: f64,
    tsc: bool,
}

impl TickClock {
    /// A clock on the time-stamp counter when it ticks at a steady rate (two calibration
    /// windows of 20 ms agree within 1 %, in one of three attempts), otherwise on
    /// `Instant`.
    ///
    /// Each end of a window pairs an `Instant` with the counter read just before and
    /// just after it, keeping the tightest of several tries: where `Instant::now` is a
    /// system call and a timer-device access that sometimes stalls (an HPET-clocked
    /// virtual machine), a single stalled reading would otherwise skew one window's
    /// rate past the limit, and the fallback to `Instant` would then cost a system call
    /// per poll.
    pub fn calibrate() -> Self {
        (0..CALIBRATION_ATTEMPTS)
            .find_map(|_| Self::try_calibrate())
            .unwrap_or_else(Self::instant)
    }

    fn try_calibrate() -> Option<Self> {
        let (t0, i0) = paired_reading()?;
        let rate = |from_t: u64, from_i: Instant| {
            while from_i.elapsed() < CALIBRATION {
                std::hint::spin_loop();
            }
            let (t, i) = paired_reading()?;
            let ticks = t.saturating_sub(from_t);
            let ns = i.duration_since(from_i).as_nanos() as f64;
            (ticks > 0).then(|| (ns / ticks as f64, t, i))
        };
        let (r1, t1, i1) = rate(t0, i0)?;
        let (r2, _, _) = rate(t1, i1)?;
        if ((r1 - r2) / r1).abs() > MAX_RATE_SKEW {
            tracing::debug!(r1, r2, "the TSC calibration windows disagree");
            return None;
        }
        Some(TickClock {
            origin: i0,
            origin_ticks: t0,
            ns_per_tick: (r1 + r2) / 2.0,
            tsc: true,
        })
    }

    /// A clock on `Instant` (one tick per nanosecond).
    pub fn instant() -> Self {
        TickClock {
            origin: Instant::now(),
            origin_ticks: 0,
            ns_per_tick: 1.0,
            tsc: false,
        }
    }

    /// Whether the clock reads the time-stamp counter.
    pub fn is_tsc(&self) -> bool {
        self.tsc
    }

    /// The current tick.
    #[inline]
    pub fn now(&self) -> u64 {
        if self.tsc {
            tsc().unwrap_or(self.origin_ticks)
        } else {
            self.origin.elapsed().as_nanos() as u64
        }
    }

    /// The tick at `t` (the origin's tick for instants before it).
    pub fn ticks_at(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.origin).as_nanos() as f64;
        self.origin_ticks + (ns / self.ns_per_tick) as u64
    }

    /// Ticks in `d`.
    pub fn ticks_in(&self, d: Duration) -> u64 {
        (d.as_nanos() as f64 / self.ns_per_tick) as u64
    }

    /// Nanoseconds in `ticks`.
    #[inline]
    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }
}

/// An `Instant` and the counter tick halfway between reads just before and after it,
/// from the try whose two counter reads lie closest together; `None` without a counter.
fn paired_reading() -> Option<(u64, Instant)> {
    let mut best: Option<(u64, Instant, u64)> = None;
    for _ in 0..READ_ATTEMPTS {
        let before = tsc()?;
        let i = Instant::now();
        let after = tsc()?;
        let width = after.saturating_sub(before);
        if best.is_none_or(|(_, _, w)| width < w) {
            best = Some((before + width / 2, i, width));
        }
    }
    best.map(|(t, i, _)| (t, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_to_the_elapsed_nanoseconds() {
        for clock in [TickClock::calibrate(), TickClock::instant()] {
            let start = clock.now();
            let i = Instant::now();
            std::thread::sleep(Duration::from_millis(30));
            let ns = clock.ns(clock.now() - start);
            let real = i.elapsed().as_nanos() as u64;
            // Generous bounds: the host may be busy; a wrong rate is off by far more.
            assert!(
                ns > real / 2 && ns < real * 2,
                "{ns} ns measured, {real} ns elapsed"
            );
        }
    }

    #[test]
    fn instants_map_to_ticks_in_order() {
        let clock = TickClock::calibrate();
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let (a, b) = (clock.ticks_at(now), clock.ticks_at(later));
        assert!(b > a);
        let ns = clock.ns(b - a);
        assert!((4_900_000..=5_100_000).contains(&ns), "{ns}");
        assert!(clock.ticks_in(Duration::from_millis(5)).abs_diff(b - a) <= 1);
    }
}
