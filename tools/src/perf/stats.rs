//! Per-thread counters and latency histograms, merged into the run's report.
//!
//! Each I/O thread owns its [`ThreadStats`] outright (no sharing, no atomics on the hot
//! path); the main thread merges them when the threads have finished.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::pattern::Mismatch;

/// Longest latency the histogram resolves exactly (larger values are clamped): 60 s.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Mismatches kept for the report (the count covers all of them).
pub const KEPT_MISMATCHES: usize = 16;

/// What one thread measured.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    /// Completion latencies in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Reads completed successfully.
    pub reads: u64,
    /// Writes completed successfully.
    pub writes: u64,
    /// Bytes moved by successful I/Os.
    pub bytes: u64,
    /// I/Os that completed with an error status (or could not be submitted).
    pub errors: u64,
    /// Blocks whose read data did not match what this run wrote.
    pub verify_failures: u64,
    /// Blocks that were checked.
    pub verified_blocks: u64,
    /// CPU time the thread used while measuring, in nanoseconds.
    pub cpu_ns: u64,
    /// The first mismatches found (at most [`KEPT_MISMATCHES`]).
    pub mismatches: Vec<Mismatch>,
    /// The first error message, if any.
    pub first_error: Option<String>,
    /// Blocks checked against either the last acknowledged write or a failed one
    /// after it (a failed write leaves old or new data, never a torn block).
    pub uncertain_blocks: u64,
    /// Of those, blocks that held a failed write's data.
    pub uncertain_blocks_new: u64,
}

impl Default for ThreadStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            // 3 significant digits between 1 ns and 60 s: about 200 KiB per thread.
            latency_ns: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            reads: 0,
            writes: 0,
            bytes: 0,
            errors: 0,
            verify_failures: 0,
            verified_blocks: 0,
            cpu_ns: 0,
            mismatches: Vec::with_capacity(KEPT_MISMATCHES),
            first_error: None,
            uncertain_blocks: 0,
            uncertain_blocks_new: 0,
        }
    }

    /// Records one successful I/O of `bytes` that took `ns`.
    #[inline]
    pub fn record(&mut self, read: bool, bytes: u64, ns: u64) {
        self.latency_ns
            .saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        if read {
            self.reads += 1;
        } else {
            self.writes += 1;
        }
        self.bytes += bytes;
    }

    /// Records a failed I/O; keeps the first message.
    pub fn record_error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    /// Records `count` failed I/Os that share one explanation.
    pub fn record_errors(&mut self, count: u64, message: impl FnOnce() -> String) {
        if count > 0 {
            self.record_error(message);
            self.errors += count - 1;
        }
    }

    /// Records a verify mismatch.
    pub fn record_mismatch(&mut self, m: Mismatch) {
        self.verify_failures += 1;
        if self.mismatches.len() < KEPT_MISMATCHES {
            self.mismatches.push(m);
        }
    }

    /// Forgets the measurements so far (end of the warm-up); errors and verify
    /// failures are kept, since they fail the run whenever they happen.
    pub fn reset(&mut self) {
        let kept = std::mem::take(&mut self.mismatches);
        let first_error = self.first_error.take();
        let (errors, failures, verified) =
            (self.errors, self.verify_failures, self.verified_blocks);
        let uncertain = (self.uncertain_blocks, self.uncertain_blocks_new);
        *self = Self::new();
        (self.uncertain_blocks, self.uncertain_blocks_new) = uncertain;
        self.mismatches = kept;
        self.first_error = first_error;
        self.errors = errors;
        self.verify_failures = failures;
        self.verified_blocks = verified;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ThreadStats) {
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.reads += other.reads;
        self.writes += other.writes;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.verify_failures += other.verify_failures;
        self.verified_blocks += other.verified_blocks;
        self.cpu_ns += other.cpu_ns;
        self.uncertain_blocks += other.uncertain_blocks;
        self.uncertain_blocks_new += other.uncertain_blocks_new;
        for m in &other.mismatches {
            if self.mismatches.len() < KEPT_MISMATCHES {
                self.mismatches.push(*m);
            }
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Successful I/Os.
    pub fn ios(&self) -> u64 {
        self.reads + self.writes
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyUs {
    /// Mean.
    pub avg: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
}

impl LatencyUs {
    /// Summarises a nanosecond histogram (all zero when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                avg: 0.0,
                min: 0.0,
                max: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                p99_99: 0.0,
            };
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            avg: h.mean() / 1000.0,
            min: us(h.min()),
            max: us(h.max()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            p99_99: us(h.value_at_quantile(0.9999)),
        }
    }
}

/// How the run was set up, repeated in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Device name as given.
    pub device: String,
    /// Namespace ID.
    pub nsid: u32,
    /// Workload name.
    pub workload: String,
    /// Read percentage.
    pub read_percent: u8,
    /// I/O size in bytes.
    pub io_size: u64,
    /// Queue depth per queue pair.
    pub queue_depth: u32,
    /// Queue pairs (threads).
    pub qpairs: u16,
    /// `poll` or `interrupt`.
    pub mode: String,
    /// Whether reads were verified.
    pub verify: bool,
    /// Whether the queue pairs used shadow doorbells (the controller offers them
    /// and `--no-shadow-doorbells` was not given).
    pub shadow_doorbells: bool,
    /// Data bytes per logical block (`io_size` and throughput count only these).
    pub lba_bytes: u32,
    /// Metadata bytes per logical block of the namespace's format.
    pub metadata_bytes: u16,
    /// Whether the metadata is interleaved with the data (extended LBAs), so each
    /// buffer holds `lba_bytes + metadata_bytes` per block.
    pub extended_lba: bool,
    /// How protection information was handled (`--pi`): `off`, `pract` (the
    /// controller generated the tuples) or `host` (the tool did).
    pub pi: String,
    /// How data buffers were described to the controller: `prp`, or `sgl` (`--sgl`).
    pub transfer: String,
    /// I/Os each queue pair submitted at most (`--number-ios`), if limited.
    pub number_ios: Option<u64>,
}

impl RunConfig {
    /// The namespace's format in words: `512 B blocks`, `512+8 B extended LBAs`.
    pub fn format_name(&self) -> String {
        let name = match (self.metadata_bytes, self.extended_lba) {
            (0, _) => format!("{} B blocks", self.lba_bytes),
            (ms, true) => format!("{}+{ms} B extended LBAs", self.lba_bytes),
            (ms, false) => format!("{}+{ms} B blocks, separate metadata", self.lba_bytes),
        };
        if self.pi == "off" {
            name
        } else {
            format!("{name}, PI {}", self.pi)
        }
    }
}

/// The results of a run, as printed (`--json` uses these field names).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The setup.
    pub config: RunConfig,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful I/Os.
    pub ios: u64,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
    /// I/Os per second.
    pub iops: f64,
    /// Throughput in MiB/s.
    pub mib_per_s: f64,
    /// Latency summary.
    pub latency_us: LatencyUs,
    /// CPU time of the I/O threads per I/O, in nanoseconds.
    pub cpu_ns_per_io: f64,
    /// Failed I/Os.
    pub errors: u64,
    /// Blocks whose read data mismatched.
    pub verify_failures: u64,
    /// Blocks checked by `--verify`.
    pub verified_blocks: u64,
    /// The first mismatches, as sentences.
    pub mismatches: Vec<String>,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The fault accounting of `--inject-faults`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<super::soak::SoakReport>,
}

impl Report {
    /// Builds the report from merged statistics over `seconds` of measurement.
    pub fn new(config: RunConfig, stats: &ThreadStats, seconds: f64) -> Self {
        let ios = stats.ios();
        let secs = if seconds > 0.0 {
            seconds
        } else {
            f64::MIN_POSITIVE
        };
        Self {
            config,
            seconds,
            ios,
            reads: stats.reads,
            writes: stats.writes,
            iops: ios as f64 / secs,
            mib_per_s: stats.bytes as f64 / (1024.0 * 1024.0) / secs,
            latency_us: LatencyUs::from_histogram(&stats.latency_ns),
            cpu_ns_per_io: if ios == 0 {
                0.0
            } else {
                stats.cpu_ns as f64 / ios as f64
            },
            errors: stats.errors,
            verify_failures: stats.verify_failures,
            verified_blocks: stats.verified_blocks,
            mismatches: stats.mismatches.iter().map(|m| m.to_string()).collect(),
            first_error: stats.first_error.clone(),
            soak: None,
        }
    }

    /// Whether the run counts as a success (exit status 0). A soak expects errors from
    /// its faults: it passes when every one is accounted for.
    pub fn passed(&self) -> bool {
        let errors_ok = match &self.soak {
            Some(s) => s.accounted,
            None => self.errors == 0,
        };
        errors_ok && self.verify_failures == 0
    }

    /// The human-readable summary.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let c = &self.config;
        let l = &self.latency_us;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ns {} ({}): {} {} B, queue depth {} x {} queue pair{}, {} mode, {} transfers{}{}",
            c.device,
            c.nsid,
            c.format_name(),
            c.workload,
            c.io_size,
            c.queue_depth,
            c.qpairs,
            if c.qpairs == 1 { "" } else { "s" },
            c.mode,
            c.transfer.to_uppercase(),
            if c.shadow_doorbells {
                ", shadow doorbells"
            } else {
                ""
            },
            if c.verify { ", verify" } else { "" }
        );
        let _ = writeln!(
            s,
            "  I/Os        {:>14} in {:.2} s ({} reads, {} writes)",
            self.ios, self.seconds, self.reads, self.writes
        );
        let _ = writeln!(s, "  IOPS        {:>14.0}", self.iops);
        let _ = writeln!(s, "  MiB/s       {:>14.2}", self.mib_per_s);
        let _ = writeln!(
            s,
            "  latency us  avg {:.2}  min {:.2}  max {:.2}",
            l.avg, l.min, l.max
        );
        let _ = writeln!(
            s,
            "              p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}",
            l.p50, l.p90, l.p99, l.p99_9, l.p99_99
        );
        let _ = writeln!(s, "  CPU ns/IO   {:>14.0}", self.cpu_ns_per_io);
        let _ = writeln!(s, "  errors      {:>14}", self.errors);
        let _ = write!(
            s,
            "  verify      {:>14} mismatching of {} checked blocks",
            self.verify_failures, self.verified_blocks
        );
        if let Some(e) = &self.first_error {
            let _ = write!(s, "\n  first error: {e}");
        }
        const SHOWN: usize = 5;
        for m in self.mismatches.iter().take(SHOWN) {
            let _ = write!(s, "\n  mismatch: {m}");
        }
        if self.verify_failures > SHOWN as u64 {
            let _ = write!(
                s,
                "\n  ... and {} more mismatching blocks",
                self.verify_failures - SHOWN as u64
            );
        }
        if let Some(soak) = &self.soak {
            let _ = write!(s, "\n{}", soak.human());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            device: "emu".into(),
            nsid: 1,
            workload: "randread".into(),
            read_percent: 100,
            io_size: 4096,
            queue_depth: 1,
            qpairs: 1,
            mode: "poll".into(),
            verify: false,
            shadow_doorbells: true,
            lba_bytes: 512,
            metadata_bytes: 0,
            extended_lba: false,
            pi: "off".into(),
            transfer: "prp".into(),
            number_ios: None,
        }
    }

    #[test]
    fn merged_threads_add_up_and_percentiles_are_ordered() {
        let mut a = ThreadStats::new();
        let mut b = ThreadStats::new();
        for ns in 1..=1000u64 {
            a.record(true, 4096, ns * 1000);
            b.record(false, 4096, ns * 2000);
        }
        a.merge(&b);
        let r = Report::new(config(), &a, 2.0);
        assert_eq!(r.ios, 2000);
        assert_eq!(r.iops, 1000.0);
        assert_eq!(r.mib_per_s, 2000.0 * 4096.0 / 1048576.0 / 2.0);
        let l = r.latency_us;
        assert!((l.min - 1.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 2000.0).abs() < 2.0, "{l:?}");
        assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99);
        assert!(l.p99 <= l.p99_9 && l.p99_9 <= l.p99_99 && l.p99_99 <= l.max);
    }

    #[test]
    fn errors_and_mismatches_fail_the_run() {
        let mut s = ThreadStats::new();
        s.record(true, 512, 10);
        assert!(Report::new(config(), &s, 1.0).passed());
        s.record_error(|| "write failed".into());
        s.record_error(|| "second".into());
        let r = Report::new(config(), &s, 1.0);
        assert!(!r.passed());
        assert_eq!(r.errors, 2);
        assert_eq!(r.first_error.as_deref(), Some("write failed"));
    }

    #[test]
    fn the_warm_up_reset_keeps_errors_and_mismatches() {
        let mut s = ThreadStats::new();
        s.record(true, 512, 10);
        s.record_error(|| "early failure".into());
        s.record_mismatch(crate::perf::pattern::Mismatch {
            lba: 3,
            expected_generation: 1,
            found: crate::perf::pattern::Found::Garbage,
        });
        s.reset();
        assert_eq!(s.ios(), 0);
        assert!(s.latency_ns.is_empty());
        assert_eq!(s.errors, 1);
        assert_eq!(s.verify_failures, 1);
        assert_eq!(s.mismatches.len(), 1);
        assert_eq!(s.first_error.as_deref(), Some("early failure"));
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nan() {
        let r = Report::new(config(), &ThreadStats::new(), 1.0);
        assert_eq!(r.ios, 0);
        assert_eq!(r.latency_us.avg, 0.0);
        assert_eq!(r.cpu_ns_per_io, 0.0);
    }
}
