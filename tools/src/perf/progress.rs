//! The once-per-second progress line and the counters it reads.
//!
//! Each I/O thread owns one cache-line-padded counter and only stores to it (relaxed),
//! so publishing progress costs the hot path one uncontended store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One thread's completion count on its own cache line (two on x86-64, where the
/// adjacent-line prefetcher pairs them).
#[derive(Debug, Default)]
pub struct Counter(CachePadded<AtomicU64>);

impl Counter {
    /// Publishes the thread's running total.
    #[inline]
    pub fn set(&self, ios: u64) {
        self.0.store(ios, Ordering::Relaxed);
    }

    /// The last published total.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of all I/O threads plus the stop flag of the printer.
#[derive(Debug)]
pub struct Progress {
    counters: Vec<Counter>,
    stop: AtomicBool,
}

impl Progress {
    /// Counters for `threads` threads.
    pub fn new(threads: usize) -> Arc<Self> {
        Arc::new(Self {
            counters: (0..threads).map(|_| Counter::default()).collect(),
            stop: AtomicBool::new(false),
        })
    }

    /// Thread `i`'s counter.
    pub fn counter(&self, i: usize) -> &Counter {
        &self.counters[i]
    }

    /// Sum over all threads.
    pub fn total(&self) -> u64 {
        self.counters.iter().map(Counter::get).sum()
    }
}

/// Formats one progress line.
pub fn line(elapsed_s: u64, total_s: u64, iops: f64, mib_per_s: f64) -> String {
    format!("[{elapsed_s:>4}/{total_s} s] {iops:>12.0} IOPS {mib_per_s:>10.2} MiB/s")
}

/// Prints a progress line on stderr every second until [`stop`] is called, redrawn in
/// place; the last line stays when the printer stops. Prints nothing when stderr is not
/// a terminal.
pub fn spawn_printer(progress: Arc<Progress>, io_size: u64, total_s: u64) -> JoinHandle<()> {
    std::thread::spawn(move || {
        // Made at the first line, so a run shorter than a second prints nothing.
        let mut bar: Option<ProgressBar> = None;
        let start = Instant::now();
        let mut last = 0u64;
        let mut tick = 1u64;
        while !progress.stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_secs(tick);
            let now = Instant::now();
            if now < due {
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            let total = progress.total();
            let delta = total.saturating_sub(last) as f64;
            last = total;
            let bar = bar.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
                bar
            });
            bar.set_message(line(
                tick,
                total_s,
                delta,
                delta * io_size as f64 / 1_048_576.0,
            ));
            tick += 1;
        }
        if let Some(bar) = bar {
            bar.abandon();
        }
    })
}

/// Stops the printer and waits for it.
pub fn stop(progress: &Progress, printer: JoinHandle<()>) {
    progress.stop.store(true, Ordering::Relaxed);
    let _ = printer.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_thread() {
        let p = Progress::new(3);
        p.counter(0).set(5);
        p.counter(2).set(7);
        assert_eq!(p.total(), 12);
    }

    #[test]
    fn counters_sit_on_their_own_cache_lines() {
        assert!(std::mem::align_of::<Counter>() >= 64);
        assert!(std::mem::size_of::<Counter>() >= 64);
    }

    #[test]
    fn the_line_shows_rate_and_time() {
        assert_eq!(
            line(3, 5, 250000.0, 976.5625),
            "[   3/5 s]       250000 IOPS     976.56 MiB/s"
        );
    }
}
