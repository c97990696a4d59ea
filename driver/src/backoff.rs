//! Bounded waits: a backoff that spins, then yields, then sleeps; deadlines.

use std::time::{Duration, Instant};

/// Sleeps a little longer each time, up to 1 ms: first spins, then yields, then sleeps.
pub(crate) struct Backoff {
    round: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { round: 0 }
    }

    pub fn wait(&mut self) {
        self.round += 1;
        if self.round < 64 {
            std::hint::spin_loop();
        } else if self.round < 128 {
            std::thread::yield_now();
        } else {
            let us = (self.round - 127).min(1000);
            std::thread::sleep(Duration::from_micros(u64::from(us)));
        }
    }
}

/// A deadline `timeout` from now.
pub(crate) fn deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}
