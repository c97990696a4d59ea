//! The I/O loop of one `nvme-perf` thread: keep the queue full, time every I/O,
//! verify reads, and stop on time.
//!
//! The loop is generic over [`PerfQueue`] (static dispatch, no allocation per I/O):
//! buffers are allocated once per slot, completions are collected into a preallocated
//! list, and the clock (a [`TickClock`], the time-stamp counter where it is steady) is
//! read once per poll and once per reaped batch.

use std::time::{Duration, Instant};

use super::cpu_clock::thread_cpu_ns;
use super::pattern;
use super::progress::Counter;
use super::stats::ThreadStats;
use super::ticks::TickClock;
use super::verify::{Expect, WriteLog};
use super::workload::{Generator, UnitRange};

/// How long to wait for outstanding I/Os after the run ends before counting them as
/// errors (the driver aborts commands long before this on a live controller).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest sleep of one blocking reap in interrupt mode.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Attempts to find an idle unit before giving up for this round (`--verify` only).
const PICK_ATTEMPTS: usize = 16;

/// Why a submission was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// No room in the submission queue now; reap and retry.
    Full,
    /// The command was refused; the message says why.
    Rejected(String),
    /// The queue pair is unusable; the thread stops.
    Fatal(String),
}

/// The queue pair as the loop uses it. Each slot `0..depth` owns one I/O buffer of
/// `io_size / lba_size` transfer blocks (`block_bytes` each), allocated when the
/// queue is set up.
pub trait PerfQueue {
    /// Queues a read (`read`) or write of `blocks` blocks at `lba` through slot
    /// `slot`'s buffer; the completion reports `slot`.
    fn submit(&mut self, read: bool, lba: u64, blocks: u32, slot: usize)
        -> Result<(), SubmitError>;

    /// Reaps completions, calling `done(slot, error)` for each (`None` on success);
    /// returns how many. With `block`, sleeps on the queue's interrupt for up to
    /// [`WAIT_SLICE`] when none is ready. An `Err` means the queue pair is unusable.
    fn reap<F: FnMut(usize, Option<String>)>(
        &mut self,
        block: bool,
        done: F,
    ) -> Result<usize, String>;

    /// Copies `src` into slot `slot`'s buffer.
    fn fill(&mut self, slot: usize, src: &[u8]);

    /// Copies slot `slot`'s buffer into `dst`.
    fn fetch(&self, slot: usize, dst: &mut [u8]);
}

/// What one thread does.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// The thread's slice of I/O units.
    pub range: UnitRange,
    /// I/O size in data bytes (a multiple of `lba_size`).
    pub io_size: usize,
    /// Logical block size in data bytes.
    pub lba_size: usize,
    /// Bytes per block in the I/O buffer: `lba_size` plus the metadata on an
    /// extended-LBA format.
    pub block_bytes: usize,
    /// Outstanding I/Os to keep.
    pub depth: usize,
    /// Random rather than sequential offsets.
    pub random: bool,
    /// Percentage of reads.
    pub read_percent: u8,
    /// Check reads of blocks this run wrote.
    pub verify: bool,
    /// Sleep on the queue's interrupt when nothing is ready.
    pub interrupt: bool,
    /// Seed of the workload generator.
    pub seed: u64,
    /// I/O before this instant is not measured.
    pub measure_from: Instant,
    /// No I/O is submitted at or after this instant.
    pub end: Instant,
    /// No I/O is submitted after this many have been (`--number-ios`); `None`: the
    /// time alone ends the run.
    pub max_ios: Option<u64>,
    /// The clock that times each I/O.
    pub clock: TickClock,
}

#[derive(Debug, Clone, Copy, Default)]
struct Inflight {
    unit: u64,
    read: bool,
    generation: u32,
    /// Submission tick ([`TickClock`]); `None` when the slot is free.
    start: Option<u64>,
}

/// Runs one thread's workload on `q`; publishes progress to `counter`.
pub fn run_thread<Q: PerfQueue>(q: &mut Q, plan: &ThreadPlan, counter: &Counter) -> ThreadStats {
    run_thread_with_log(q, plan, counter, &mut new_log(plan))
}

/// The write record `--verify` keeps for `plan` (`None` without `--verify`).
pub fn new_log(plan: &ThreadPlan) -> Option<WriteLog> {
    plan.verify
        .then(|| WriteLog::new(plan.range.count as usize))
}

/// [`run_thread`] with the write record `log` (from [`new_log`]), which keeps what the
/// run wrote for a later read-back.
pub fn run_thread_with_log<Q: PerfQueue>(
    q: &mut Q,
    plan: &ThreadPlan,
    counter: &Counter,
    log: &mut Option<WriteLog>,
) -> ThreadStats {
    let depth = plan.depth.max(1);
    let blocks_per_io = (plan.io_size / plan.lba_size) as u64;
    let blocks = blocks_per_io as u32;
    let mut gen = Generator::new(plan.range, plan.random, plan.read_percent, plan.seed);
    let mut scratch = vec![0u8; blocks_per_io as usize * plan.block_bytes];
    let mut slots = vec![Inflight::default(); depth];
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut done: Vec<(usize, Option<String>)> = Vec::with_capacity(depth);
    let mut stats = ThreadStats::new();
    let clock = plan.clock;
    let measure_from = clock.ticks_at(plan.measure_from);
    let end_tick = clock.ticks_at(plan.end);
    let mut measuring = clock.now() >= measure_from;
    let mut cpu_start = thread_cpu_ns();
    let mut published = 0u64;
    let mut submitted = 0u64;
    let max_ios = plan.max_ios.unwrap_or(u64::MAX);

    if !plan.verify {
        // Writes without --verify still carry a recognisable pattern, written once.
        for slot in 0..depth {
            let first_lba = (plan.range.first + slot as u64) * blocks_per_io;
            pattern::fill(&mut scratch, first_lba, plan.block_bytes, 0);
            q.fill(slot, &scratch);
        }
    }

    let mut drain_deadline: Option<u64> = None;
    loop {
        let now = clock.now();
        if !measuring && now >= measure_from {
            stats.reset();
            cpu_start = thread_cpu_ns();
            measuring = true;
        }
        let running = now < end_tick && submitted < max_ios;
        if running {
            // Fill the queue.
            while submitted < max_ios {
                let Some(slot) = free.pop() else { break };
                let Some(unit) = pick_unit(&mut gen, log.as_mut()) else {
                    free.push(slot);
                    break;
                };
                let read = gen.next_is_read();
                let mut generation = 0;
                let lba = (plan.range.first + unit) * blocks_per_io;
                if !read {
                    if let Some(log) = log.as_mut() {
                        generation = log.new_generation();
                        pattern::fill(&mut scratch, lba, plan.block_bytes, generation);
                        q.fill(slot, &scratch);
                    }
                }
                slots[slot] = Inflight {
                    unit,
                    read,
                    generation,
                    start: Some(now),
                };
                match q.submit(read, lba, blocks, slot) {
                    Ok(()) => submitted += 1,
                    Err(e) => {
                        free.push(slot);
                        if let Some(log) = log.as_mut() {
                            log.end(unit as usize);
                        }
                        match e {
                            SubmitError::Full => break,
                            SubmitError::Rejected(msg) => {
                                stats.record_error(|| format!("LBA {lba:#x}: {msg}"));
                                break;
                            }
                            SubmitError::Fatal(msg) => {
                                let lost = (depth - free.len()) as u64;
                                stats.record_error(|| msg);
                                stats
                                    .record_errors(lost, || "I/Os lost with the queue pair".into());
                                return finish(stats, cpu_start);
                            }
                        }
                    }
                }
            }
        } else if free.len() == depth {
            break;
        } else {
            let deadline = *drain_deadline.get_or_insert(now + clock.ticks_in(DRAIN_TIMEOUT));
            if now >= deadline {
                let lost = depth - free.len();
                stats.record_errors(lost as u64, || {
                    format!(
                        "{lost} I/Os did not complete within {} s",
                        DRAIN_TIMEOUT.as_secs()
                    )
                });
                break;
            }
        }

        // Reap.
        done.clear();
        let block = plan.interrupt && free.len() < depth;
        let reaped = q.reap(block, |slot, err| {
            if done.len() < done.capacity() {
                done.push((slot, err));
            }
        });
        let reaped = match reaped {
            Ok(n) => n,
            Err(msg) => {
                let lost = (depth - free.len()) as u64;
                stats.record_errors(lost.max(1), || msg);
                return finish(stats, cpu_start);
            }
        };
        if reaped == 0 {
            // No `spin_loop()` hint here: under QEMU's TCG a PAUSE instruction leaves the
            // translated code and takes the emulator's global lock, which the emulated
            // controller needs to make progress; a bare poll loop is cheaper there and
            // costs nothing on hardware.
            continue;
        }
        let end = clock.now();
        for (slot, outcome) in done.drain(..) {
            // The device is not trusted: a slot it names must be one we have in flight.
            let Some(io) = slots
                .get_mut(slot)
                .and_then(|s| s.start.take().map(|t| (t, *s)))
            else {
                stats.record_error(|| {
                    format!("completion for slot {slot}, which has no I/O in flight")
                });
                continue;
            };
            let (start, io) = io;
            free.push(slot);
            let lba = (plan.range.first + io.unit) * blocks_per_io;
            match outcome {
                None => {
                    if measuring {
                        let ns = clock.ns(end.saturating_sub(start));
                        stats.record(io.read, plan.io_size as u64, ns);
                    }
                    if let Some(log) = log.as_mut() {
                        let unit = io.unit as usize;
                        if io.read {
                            if log.expect(unit) != Expect::Nothing {
                                q.fetch(slot, &mut scratch);
                                let blocks = (plan.block_bytes, plan.lba_size);
                                log.check_read(unit, &scratch, lba, blocks, &mut stats);
                            }
                            log.end(unit);
                        } else {
                            log.end_write(unit, io.generation, true);
                        }
                    }
                }
                Some(msg) => {
                    let what = if io.read { "read" } else { "write" };
                    stats.record_error(|| {
                        format!("{what} of {blocks} blocks at LBA {lba:#x}: {msg}")
                    });
                    if let Some(log) = log.as_mut() {
                        if io.read {
                            log.end(io.unit as usize);
                        } else {
                            log.end_write(io.unit as usize, io.generation, false);
                        }
                    }
                }
            }
        }
        let total = stats.ios();
        if total != published {
            counter.set(total);
            published = total;
        }
    }
    finish(stats, cpu_start)
}

fn finish(mut stats: ThreadStats, cpu_start: u64) -> ThreadStats {
    stats.cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    stats
}

fn pick_unit(gen: &mut Generator, log: Option<&mut WriteLog>) -> Option<u64> {
    match log {
        None => Some(gen.next_unit()),
        Some(log) => (0..PICK_ATTEMPTS)
            .map(|_| gen.next_unit())
            .find(|&u| log.try_begin(u as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A RAM "device" that completes every command on the next reap.
    struct FakeQueue {
        lba_size: usize,
        io_size: usize,
        disk: Vec<u8>,
        bufs: Vec<Vec<u8>>,
        pending: VecDeque<usize>,
        corrupt_reads: bool,
        /// Byte of each read buffer `corrupt_reads` flips.
        corrupt_offset: usize,
        fail_writes: bool,
    }

    impl FakeQueue {
        fn new(blocks: usize, lba_size: usize, io_size: usize, depth: usize) -> Self {
            Self {
                lba_size,
                io_size,
                disk: vec![0; blocks * lba_size],
                bufs: vec![vec![0; io_size]; depth],
                pending: VecDeque::new(),
                corrupt_reads: false,
                corrupt_offset: 0,
                fail_writes: false,
            }
        }
    }

    impl PerfQueue for FakeQueue {
        fn submit(
            &mut self,
            read: bool,
            lba: u64,
            blocks: u32,
            slot: usize,
        ) -> Result<(), SubmitError> {
            let off = lba as usize * self.lba_size;
            let len = blocks as usize * self.lba_size;
            assert_eq!(len, self.io_size);
            if read {
                self.bufs[slot].copy_from_slice(&self.disk[off..off + len]);
                if self.corrupt_reads {
                    self.bufs[slot][self.corrupt_offset] ^= 0xff;
                }
            } else if !self.fail_writes {
                self.disk[off..off + len].copy_from_slice(&self.bufs[slot]);
            }
            self.pending
                .push_back(slot | usize::from(!read && self.fail_writes) << 31);
            Ok(())
        }

        fn reap<F: FnMut(usize, Option<String>)>(
            &mut self,
            _block: bool,
            mut done: F,
        ) -> Result<usize, String> {
            let n = self.pending.len();
            for s in self.pending.drain(..) {
                let failed = s >> 31 != 0;
                done(s & 0x7fff_ffff, failed.then(|| "write fault".to_string()));
            }
            Ok(n)
        }

        fn fill(&mut self, slot: usize, src: &[u8]) {
            self.bufs[slot].copy_from_slice(src);
        }

        fn fetch(&self, slot: usize, dst: &mut [u8]) {
            dst.copy_from_slice(&self.bufs[slot]);
        }
    }

    /// Most a test run may take; only a broken loop comes near it.
    const SAFETY_NET: Duration = Duration::from_secs(60);

    /// A plan that ends after `ios` I/Os, not after a time: a run on a loaded machine
    /// does the same I/Os as one on an idle machine (a time-bounded run of a thread
    /// descheduled past its end would do none). Measuring starts before the clock's
    /// origin, so every I/O is measured.
    fn plan(verify: bool, read_percent: u8, ios: u64) -> ThreadPlan {
        let measure_from = Instant::now();
        let clock = TickClock::instant();
        ThreadPlan {
            range: UnitRange {
                first: 0,
                count: 64,
            },
            io_size: 4096,
            lba_size: 512,
            block_bytes: 512,
            depth: 8,
            random: true,
            read_percent,
            verify,
            interrupt: false,
            seed: 42,
            measure_from,
            end: measure_from + SAFETY_NET,
            max_ios: Some(ios),
            clock,
        }
    }

    #[test]
    fn a_clean_mixed_run_verifies_reads_without_mismatch() {
        let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
        let counter = Counter::default();
        let s = run_thread(&mut q, &plan(true, 50, 400), &counter);
        assert_eq!(s.ios(), 400, "{s:?}");
        assert!(s.reads > 0 && s.writes > 0, "{s:?}");
        assert!(s.verified_blocks > 0, "no read hit a written block");
        assert_eq!(s.verify_failures, 0, "{:?}", s.mismatches);
        assert_eq!(s.errors, 0);
        assert_eq!(counter.get(), s.ios());
    }

    #[test]
    fn corrupted_reads_are_counted_with_their_lba() {
        let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
        q.corrupt_reads = true;
        let s = run_thread(&mut q, &plan(true, 50, 400), &Counter::default());
        assert!(s.verify_failures > 0);
        let m = s.mismatches[0];
        assert_eq!(m.lba % 8, 0, "the first byte of each I/O is corrupted: {m}");
        assert!(m.to_string().contains("LBA"), "{m}");
    }

    #[test]
    fn extended_blocks_are_verified_whole_and_a_metadata_mismatch_is_named() {
        // 512+8 extended LBAs: 8 blocks of 520 bytes per 4096-byte I/O.
        let extended = || ThreadPlan {
            block_bytes: 520,
            ..plan(true, 50, 400)
        };
        let mut q = FakeQueue::new(64 * 8, 520, 8 * 520, 8);
        let s = run_thread(&mut q, &extended(), &Counter::default());
        assert!(s.verified_blocks > 0, "no read hit a written block");
        assert_eq!(s.verify_failures, 0, "{:?}", s.mismatches);
        assert_eq!(s.bytes, s.ios() * 4096, "throughput counts data bytes");

        let mut q = FakeQueue::new(64 * 8, 520, 8 * 520, 8);
        q.corrupt_reads = true;
        q.corrupt_offset = 2 * 520 + 512 + 3; // block 2's metadata
        let s = run_thread(&mut q, &extended(), &Counter::default());
        assert!(s.verify_failures > 0);
        let m = s.mismatches[0];
        assert_eq!(m.lba % 8, 2, "{m}");
        assert_eq!(m.found, pattern::Found::MetadataCorruptAt { offset: 0 });
        assert!(m.to_string().contains("metadata"), "{m}");
    }

    #[test]
    fn failed_writes_are_errors_and_their_blocks_are_not_verified() {
        let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
        q.fail_writes = true;
        let s = run_thread(&mut q, &plan(true, 50, 400), &Counter::default());
        assert!(s.errors > 0);
        assert_eq!(s.writes, 0);
        assert_eq!(
            s.reads + s.errors,
            400,
            "every I/O is a read or a failed write"
        );
        assert_eq!(s.verified_blocks, 0);
        assert_eq!(s.verify_failures, 0);
        assert!(s.first_error.as_deref().unwrap().contains("write fault"));
    }

    #[test]
    fn without_verify_reads_are_not_checked() {
        let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
        q.corrupt_reads = true;
        let s = run_thread(&mut q, &plan(false, 100, 400), &Counter::default());
        assert_eq!(s.reads, 400);
        assert_eq!(s.writes, 0);
        assert_eq!(s.verified_blocks, 0);
        assert_eq!(s.verify_failures, 0);
    }

    #[test]
    fn a_run_ends_after_its_io_count_and_waits_for_every_completion() {
        for ios in [1, 7, 8, 9, 100] {
            let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
            let counter = Counter::default();
            let s = run_thread(&mut q, &plan(true, 50, ios), &counter);
            assert_eq!(s.ios(), ios, "{s:?}");
            assert_eq!(s.errors, 0, "{s:?}");
            assert!(q.pending.is_empty(), "an I/O was left in flight");
            assert_eq!(counter.get(), ios);
        }
    }

    #[test]
    fn a_run_whose_time_is_up_submits_nothing() {
        let mut q = FakeQueue::new(64 * 8, 512, 4096, 8);
        let p = ThreadPlan {
            max_ios: None,
            ..plan(false, 100, 1)
        };
        let p = ThreadPlan {
            end: p.measure_from,
            ..p
        };
        let s = run_thread(&mut q, &p, &Counter::default());
        assert_eq!((s.ios(), s.errors), (0, 0), "{s:?}");
    }
}
