//! `--inject-faults`: a soak under faults on the emulated controller.
//!
//! The controller fails reads with Unrecovered Read Error, drops and delays completions
//! at seeded rates (its own random fault rules), and a thread resets the controller
//! every few seconds while the queue pairs run. At the end every fault the controller
//! applied is matched with what the host saw: a media error completion, a timeout (the
//! driver aborts, then resets), a completion posted late, or a command that a reset
//! cut short before its fault could show. Writes the host was told succeeded are read
//! back after the faults stop.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nvme::spec::status::MediaStatus;
use nvme::spec::Status;
use nvme::{AnyTransport, Controller};
use nvme_emu::{CommandMatch, FaultAction, FaultControl, FaultCounts};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::engine::{PerfQueue, SubmitError, ThreadPlan, DRAIN_TIMEOUT};
use super::stats::ThreadStats;
use super::verify::{Expect, WriteLog};
use crate::cli::ToolError;

/// I/O timeout of a soak unless `--io-timeout` says otherwise: a dropped completion
/// costs about this long, not the driver's 30 s default.
pub const SOAK_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Abort timeout of a soak unless `--abort-timeout` says otherwise.
pub const SOAK_ABORT_TIMEOUT: Duration = Duration::from_millis(250);
/// Read opcode (NVM command set).
const READ: u8 = 0x02;

/// Which faults to inject and how often (`--inject-faults`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultSpec {
    /// Reads failed with Unrecovered Read Error, per 1000 reads.
    pub media: u16,
    /// Completions never posted, per 1000 I/O commands.
    pub drop: u16,
    /// Completions posted late, per 1000 I/O commands.
    pub delay: u16,
    /// How late a delayed completion is posted.
    pub delay_for: Duration,
    /// Mean time between controller resets (each interval is drawn from half to one
    /// and a half times this); `None`: no resets.
    pub reset_every: Option<Duration>,
}

/// Parses `media=PERMILLE,drop=PERMILLE,delay=PERMILLE:DURATION,reset=SECONDS`
/// (any non-empty subset, any order; DURATION like `20ms` or `0.1s`).
pub fn parse_fault_spec(text: &str) -> Result<FaultSpec, String> {
    let mut spec = FaultSpec::default();
    let permille = |key: &str, v: &str| match v.parse::<u16>() {
        Ok(n) if n <= 1000 => Ok(n),
        _ => Err(format!(
            "{key}={v}: the rate is a whole number of faults per 1000 commands (0..=1000)"
        )),
    };
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            format!("'{part}' is not KIND=VALUE (kinds: media, drop, delay, reset)")
        })?;
        match key {
            "media" => spec.media = permille(key, value)?,
            "drop" => spec.drop = permille(key, value)?,
            "delay" => {
                let (rate, d) = value.split_once(':').ok_or_else(|| {
                    format!("delay={value}: give the rate and how long, as delay=PERMILLE:DURATION (e.g. delay=20:10ms)")
                })?;
                spec.delay = permille(key, rate)?;
                spec.delay_for = parse_duration(d).filter(|d| !d.is_zero()).ok_or_else(|| {
                    format!(
                        "delay={value}: '{d}' is not a duration above zero such as 10ms or 0.5s"
                    )
                })?;
            }
            "reset" => {
                let every = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.01 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        format!(
                            "reset={value}: the time between resets is in seconds, 0.01 to 86400"
                        )
                    })?;
                spec.reset_every = Some(Duration::from_secs_f64(every));
            }
            other => {
                return Err(format!(
                    "unknown fault kind '{other}' (kinds: media, drop, delay, reset)"
                ))
            }
        }
    }
    if spec == FaultSpec::default() {
        return Err(format!(
            "'{text}' injects nothing; e.g. media=2,drop=1,delay=20:10ms,reset=2"
        ));
    }
    Ok(spec)
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(us) = text.strip_suffix("us") {
        (us, 1e-6)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    let secs = number.parse::<f64>().ok()? * scale;
    (secs.is_finite() && (0.0..=3600.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// Errors one queue pair's I/Os completed with, by what a soak expects of them.
#[derive(Debug, Clone, Default)]
pub struct ErrorKinds {
    /// Unrecovered Read Error completions.
    pub media: u64,
    /// Commands aborted after their deadline.
    pub timed_out: u64,
    /// Commands a controller reset cut short.
    pub cut_short: u64,
    /// Anything else.
    pub other: u64,
    /// The first of the others.
    pub first_other: Option<String>,
}

impl ErrorKinds {
    /// Counts one failed command (only on the error path: the message of an
    /// unexpected one is kept).
    pub fn count(&mut self, e: &nvme::Error) {
        let ure = Status::media(MediaStatus::UnrecoveredReadError).code_only();
        match e {
            nvme::Error::CommandFailed { status, .. } if status.code_only() == ure => {
                self.media += 1
            }
            nvme::Error::CommandTimedOut { .. } => self.timed_out += 1,
            nvme::Error::ControllerReset { .. } => self.cut_short += 1,
            other => {
                self.other += 1;
                if self.first_other.is_none() {
                    self.first_other = Some(other.to_string());
                }
            }
        }
    }
}

/// What the host counted on one queue pair.
#[derive(Debug, Clone, Default)]
pub struct HostCounts {
    /// Completions by kind of error.
    pub errors: ErrorKinds,
    /// The driver's counters of the queue pair.
    pub pair: nvme::QueueStats,
    /// The read-back of every unit written.
    pub read_back: ReadBack,
}

impl HostCounts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &HostCounts) {
        let (e, o) = (&mut self.errors, &other.errors);
        e.media += o.media;
        e.timed_out += o.timed_out;
        e.cut_short += o.cut_short;
        e.other += o.other;
        if e.first_other.is_none() {
            e.first_other.clone_from(&o.first_other);
        }
        self.pair.timeouts += other.pair.timeouts;
        self.pair.aborts += other.pair.aborts;
        self.pair.resets += other.pair.resets;
        self.pair.retries += other.pair.retries;
        let (r, o) = (&mut self.read_back, &other.read_back);
        r.units += o.units;
        r.acknowledged_units += o.acknowledged_units;
        r.failed_writes += o.failed_writes;
        r.errors += o.errors;
        if r.first_error.is_none() {
            r.first_error.clone_from(&o.first_error);
        }
    }
}

/// The read of every unit a thread wrote, after the faults stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadBack {
    /// Units read back (their blocks are counted in `verified_blocks`).
    pub units: u64,
    /// Of those, units whose last write was acknowledged: they must read back exactly.
    pub acknowledged_units: u64,
    /// Writes that completed with an error during the run (their units may hold the
    /// old or the new data).
    pub failed_writes: u64,
    /// Reads of the read-back that failed (each leaves a unit unchecked).
    pub errors: u64,
    /// The first of those failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// A running soak: the controller's fault handle and the reset thread's tally.
pub struct Soak {
    spec: FaultSpec,
    seed: u64,
    faults: FaultControl,
    before: FaultCounts,
    resets_before: u64,
    resets: AtomicU64,
    reset_failures: AtomicU64,
    first_reset_failure: Mutex<Option<String>>,
    /// Threads (I/O and reset) done with the faulty part of the run.
    arrived: AtomicUsize,
    /// Set once every fault rule is removed.
    faults_off: AtomicBool,
}

impl Soak {
    /// Installs the controller's random fault rules; `--inject-faults` needs the
    /// emulated controller.
    pub fn start(
        ctrl: &Controller<AnyTransport>,
        spec: FaultSpec,
        seed: u64,
        io_timeout: Duration,
    ) -> Result<Self, ToolError> {
        let AnyTransport::Emu(t) = ctrl.transport() else {
            return Err(ToolError::Invalid(
                "--inject-faults works only on the emulated controller (emu)".into(),
            ));
        };
        if spec.delay > 0 && spec.delay_for * 2 >= io_timeout {
            return Err(ToolError::Invalid(format!(
                "--inject-faults delay={}:{:?}: a delay must stay under half the I/O timeout ({io_timeout:?}), or delayed commands time out; shorten it or raise --io-timeout",
                spec.delay, spec.delay_for
            )));
        }
        let faults = t.emu().faults();
        let before = faults.counts();
        let resets_before = t.emu().stats().resets;
        let media = Status::media(MediaStatus::UnrecoveredReadError);
        // First match wins: a read that draws a media error is not also dropped.
        faults.inject_random(
            CommandMatch::io_opcode(READ),
            FaultAction::Fail(media),
            spec.media,
            seed,
        );
        faults.inject_random(CommandMatch::io(), FaultAction::Drop, spec.drop, seed ^ 1);
        faults.inject_random(
            CommandMatch::io(),
            FaultAction::Delay(spec.delay_for),
            spec.delay,
            seed ^ 2,
        );
        Ok(Self {
            spec,
            seed,
            faults,
            before,
            resets_before,
            resets: AtomicU64::new(0),
            reset_failures: AtomicU64::new(0),
            first_reset_failure: Mutex::new(None),
            arrived: AtomicUsize::new(0),
            faults_off: AtomicBool::new(false),
        })
    }

    /// Resets the controller every few seconds until `end`, then stops every fault
    /// and waits for the `threads` I/O threads ([`Soak::faults_done`]).
    pub fn reset_loop(&self, ctrl: &Controller<AnyTransport>, end: Instant, threads: usize) {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 3);
        let mut next = self
            .spec
            .reset_every
            .map(|m| Instant::now() + jitter(&mut rng, m));
        while Instant::now() < end {
            match next {
                Some(at) if Instant::now() >= at => {
                    match ctrl.reset() {
                        Ok(()) => {
                            self.resets.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.reset_failures.fetch_add(1, Ordering::Relaxed);
                            let mut first = hugepages::sync::lock(&self.first_reset_failure);
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                    next = self
                        .spec
                        .reset_every
                        .map(|m| Instant::now() + jitter(&mut rng, m));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        self.faults.clear();
        self.faults_off.store(true, Ordering::Release);
        self.faults_done(threads + 1);
    }

    /// Called by each of `total` threads when its faulty part is over; returns when all
    /// have arrived (or, if one never does, after the longest an I/O thread drains),
    /// and never before the faults are off: a thread that stopped early must not read
    /// back under faults.
    pub fn faults_done(&self, total: usize) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let give_up = Instant::now() + DRAIN_TIMEOUT + Duration::from_secs(10);
        while self.arrived.load(Ordering::Acquire) < total
            && (Instant::now() < give_up || !self.faults_off.load(Ordering::Acquire))
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Matches the faults the controller applied with what the host counted.
    pub fn report(
        &self,
        ctrl: &Controller<AnyTransport>,
        host: &HostCounts,
        stats: &ThreadStats,
    ) -> SoakReport {
        let now = self.faults.counts();
        let b = self.before;
        let resets_now = match ctrl.transport() {
            AnyTransport::Emu(t) => t.emu().stats().resets,
            _ => self.resets_before,
        };
        let media = Tally {
            injected: now.failed - b.failed,
            seen: host.errors.media,
        };
        let dropped = Tally {
            injected: now.dropped - b.dropped,
            seen: host.pair.timeouts,
        };
        let delayed = DelayTally {
            injected: now.delayed - b.delayed,
            completed_late: now.released - b.released,
            discarded_by_reset: now.discarded - b.discarded,
            still_held: self.faults.held() as u64,
        };
        let injected = self.resets.load(Ordering::Relaxed);
        let controller = resets_now.saturating_sub(self.resets_before);
        let resets = ResetTally {
            injected,
            controller,
            recovery: controller.saturating_sub(injected),
            seen_by_queue_pairs: host.pair.resets,
            failed: self.reset_failures.load(Ordering::Relaxed),
        };
        let lost_to_resets = media.injected.saturating_sub(media.seen)
            + dropped.injected.saturating_sub(dropped.seen)
            + delayed.discarded_by_reset;
        let expected = host.errors.media + host.errors.timed_out + host.errors.cut_short;
        let mut report = SoakReport {
            seed: self.seed,
            media,
            dropped,
            delayed,
            resets,
            aborts: host.pair.aborts,
            // Cut short and failed (no retry left), or cut short and resubmitted.
            cut_short: host.errors.cut_short + host.pair.retries,
            lost_to_resets,
            unexpected_errors: stats.errors.saturating_sub(expected),
            uncertain_blocks: stats.uncertain_blocks,
            uncertain_blocks_new: stats.uncertain_blocks_new,
            read_back: host.read_back.clone(),
            accounted: false,
            problems: Vec::new(),
        };
        let first_unexpected = host
            .errors
            .first_other
            .as_deref()
            .or(stats.first_error.as_deref());
        let first_reset_failure = hugepages::sync::lock(&self.first_reset_failure).clone();
        report.check(first_unexpected, first_reset_failure.as_deref());
        report
    }
}

fn jitter(rng: &mut SmallRng, mean: Duration) -> Duration {
    mean.mul_f64(rng.gen_range(0.5..1.5))
}

/// Reads back every unit `log` says this thread wrote and checks it; faults must be
/// off. Units whose last write was acknowledged must match exactly.
pub fn read_back<Q: PerfQueue>(
    q: &mut Q,
    plan: &ThreadPlan,
    log: &WriteLog,
    stats: &mut ThreadStats,
    result: &mut ReadBack,
) {
    let blocks_per_io = (plan.io_size / plan.lba_size) as u64;
    let depth = plan.depth.max(1);
    let mut units = log.written_units().peekable();
    let mut inflight: Vec<Option<usize>> = vec![None; depth];
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut scratch = vec![0u8; blocks_per_io as usize * plan.block_bytes];
    let mut done: Vec<(usize, Option<String>)> = Vec::with_capacity(depth);
    let mut exhausted = false;
    let mut last_progress = Instant::now();
    result.failed_writes = log.failed_writes();
    loop {
        while !exhausted {
            let Some(slot) = free.pop() else { break };
            let Some(&unit) = units.peek() else {
                free.push(slot);
                exhausted = true;
                break;
            };
            let lba = (plan.range.first + unit as u64) * blocks_per_io;
            match q.submit(true, lba, blocks_per_io as u32, slot) {
                Ok(()) => {
                    inflight[slot] = Some(unit);
                    units.next();
                }
                Err(SubmitError::Full) => {
                    // The unit is read once completions make room.
                    free.push(slot);
                    break;
                }
                Err(SubmitError::Rejected(m) | SubmitError::Fatal(m)) => {
                    free.push(slot);
                    units.next();
                    result.errors += 1;
                    result
                        .first_error
                        .get_or_insert_with(|| format!("LBA {lba:#x}: {m}"));
                }
            }
        }
        if free.len() == depth && exhausted {
            break;
        }
        done.clear();
        let reaped = q.reap(plan.interrupt, |slot, e| done.push((slot, e)));
        match reaped {
            Ok(0) if last_progress.elapsed() > DRAIN_TIMEOUT => {
                let lost = (depth - free.len()) as u64;
                result.errors += lost;
                result.first_error.get_or_insert_with(|| {
                    format!(
                        "{lost} reads did not complete within {} s",
                        DRAIN_TIMEOUT.as_secs()
                    )
                });
                return;
            }
            Ok(0) => continue,
            Ok(_) => last_progress = Instant::now(),
            Err(m) => {
                result.errors += (depth - free.len()) as u64;
                result.first_error.get_or_insert(m);
                return;
            }
        }
        for (slot, outcome) in done.drain(..) {
            let Some(unit) = inflight.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            free.push(slot);
            let lba = (plan.range.first + unit as u64) * blocks_per_io;
            match outcome {
                None => {
                    result.units += 1;
                    if matches!(log.expect(unit), Expect::Generation(_)) {
                        result.acknowledged_units += 1;
                    }
                    q.fetch(slot, &mut scratch);
                    log.check_read(
                        unit,
                        &scratch,
                        lba,
                        (plan.block_bytes, plan.lba_size),
                        stats,
                    );
                }
                Some(m) => {
                    result.errors += 1;
                    result
                        .first_error
                        .get_or_insert_with(|| format!("read of LBA {lba:#x}: {m}"));
                }
            }
        }
    }
}

/// A fault kind's count as the controller applied it and as the host saw it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    /// Applied by the controller.
    pub injected: u64,
    /// Seen by the host.
    pub seen: u64,
}

/// Delayed completions and how each ended.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DelayTally {
    /// Completions the controller delayed.
    pub injected: u64,
    /// Posted when their delay ran out.
    pub completed_late: u64,
    /// Thrown away by a controller reset before their delay ran out.
    pub discarded_by_reset: u64,
    /// Still held at the end (0 in a finished run).
    pub still_held: u64,
}

/// Controller resets.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ResetTally {
    /// Resets the soak asked for (`Controller::reset` from its own thread).
    pub injected: u64,
    /// Resets the controller went through.
    pub controller: u64,
    /// Of those, resets the driver did to recover from commands that timed out.
    pub recovery: u64,
    /// Resets the queue pairs caught up with, summed over the pairs.
    pub seen_by_queue_pairs: u64,
    /// Resets that failed.
    pub failed: u64,
}

/// The fault accounting of a soak (`soak` in the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Seed of the fault and workload generators (`--seed`).
    pub seed: u64,
    /// Reads failed with Unrecovered Read Error: injected, and completions seen.
    pub media: Tally,
    /// Completions dropped: injected, and commands the host timed out.
    pub dropped: Tally,
    /// Completions delayed.
    pub delayed: DelayTally,
    /// Controller resets.
    pub resets: ResetTally,
    /// Abort commands the driver sent for commands past their deadline.
    pub aborts: u64,
    /// Commands a controller reset cut short, as the host saw them: failed with
    /// `ControllerReset`, or resubmitted by the driver (its retry counter).
    pub cut_short: u64,
    /// Injected faults whose outcome a reset hid (a lost completion), at most
    /// `cut_short`.
    pub lost_to_resets: u64,
    /// I/Os that failed in a way no injected fault explains.
    pub unexpected_errors: u64,
    /// Blocks read after a failed write to them (old or new data accepted, never torn).
    pub uncertain_blocks: u64,
    /// Of those, blocks that held the failed write's data.
    pub uncertain_blocks_new: u64,
    /// The read-back of every unit written, after the faults stopped.
    pub read_back: ReadBack,
    /// Whether every injected fault is accounted for and nothing else went wrong.
    pub accounted: bool,
    /// What is not accounted for, as sentences.
    pub problems: Vec<String>,
}

impl SoakReport {
    /// Fills `problems` with every fault not accounted for and everything else that
    /// went wrong, and sets `accounted`. `first_unexpected` and `first_reset_failure`
    /// are the first messages of those kinds of failures.
    pub fn check(&mut self, first_unexpected: Option<&str>, first_reset_failure: Option<&str>) {
        let (media, dropped, delayed, resets) =
            (self.media, self.dropped, self.delayed, self.resets);
        let mut problems = Vec::new();
        if media.seen > media.injected {
            problems.push(format!(
                "{} reads failed with Unrecovered Read Error, but the controller injected only {}",
                media.seen, media.injected
            ));
        }
        if dropped.seen > dropped.injected {
            problems.push(format!(
                "{} commands timed out, but the controller dropped only {} completions",
                dropped.seen, dropped.injected
            ));
        }
        let delays_ended = delayed.completed_late + delayed.discarded_by_reset + delayed.still_held;
        if delays_ended != delayed.injected {
            problems.push(format!(
                "of {} delayed completions, {} were posted late, {} discarded by a reset and {} are still held",
                delayed.injected, delayed.completed_late, delayed.discarded_by_reset, delayed.still_held
            ));
        }
        if resets.controller < resets.injected {
            problems.push(format!(
                "{} resets were asked for, but the controller went through only {}",
                resets.injected, resets.controller
            ));
        }
        if resets.recovery > dropped.seen {
            problems.push(format!(
                "the controller was reset {} times more than asked, but only {} commands timed out",
                resets.recovery, dropped.seen
            ));
        }
        if resets.failed > 0 {
            problems.push(format!(
                "{} controller resets failed (first: {})",
                resets.failed,
                first_reset_failure.unwrap_or("unknown")
            ));
        }
        if self.lost_to_resets > self.cut_short {
            problems.push(format!(
                "{} injected faults never showed, but resets cut short only {} commands",
                self.lost_to_resets, self.cut_short
            ));
        }
        if self.unexpected_errors > 0 {
            problems.push(format!(
                "{} I/Os failed in ways no injected fault explains (first: {})",
                self.unexpected_errors,
                first_unexpected.unwrap_or("unknown")
            ));
        }
        if self.read_back.errors > 0 {
            problems.push(format!(
                "{} reads of the final read-back failed, so their units are unchecked (first: {})",
                self.read_back.errors,
                self.read_back.first_error.as_deref().unwrap_or("unknown")
            ));
        }
        self.accounted = problems.is_empty();
        self.problems = problems;
    }

    /// The lines the human-readable report adds.
    pub fn human(&self) -> String {
        let mut s = format!(
            "  faults (seed {:#x})    injected  seen by the host\n\
             \x20   media errors     {:>10}  {:>10} Unrecovered Read Error completions\n\
             \x20   dropped          {:>10}  {:>10} timeouts, {} aborts\n\
             \x20   delayed          {:>10}  {:>10} posted late, {} discarded by a reset\n\
             \x20   resets           {:>10}  {:>10} by the controller ({} to recover), {} caught up by the queue pairs\n\
             \x20   cut short by resets  {} commands, covering {} faults a reset hid\n\
             \x20   failed writes    {:>10}  {} blocks read back as old or new data ({} new)\n\
             \x20   read-back        {:>10} units ({} acknowledged), {} failed reads\n",
            self.seed,
            self.media.injected,
            self.media.seen,
            self.dropped.injected,
            self.dropped.seen,
            self.aborts,
            self.delayed.injected,
            self.delayed.completed_late,
            self.delayed.discarded_by_reset,
            self.resets.injected,
            self.resets.controller,
            self.resets.recovery,
            self.resets.seen_by_queue_pairs,
            self.cut_short,
            self.lost_to_resets,
            self.read_back.failed_writes,
            self.uncertain_blocks,
            self.uncertain_blocks_new,
            self.read_back.units,
            self.read_back.acknowledged_units,
            self.read_back.errors,
        );
        if self.accounted {
            s.push_str("  every injected fault is accounted for");
        } else {
            s.push_str("  NOT every fault is accounted for:");
            for p in &self.problems {
                s.push_str("\n    ");
                s.push_str(p);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_every_kind_and_reject_nonsense() {
        let s = parse_fault_spec("media=5,drop=1,delay=20:10ms,reset=1.5").unwrap();
        assert_eq!(
            s,
            FaultSpec {
                media: 5,
                drop: 1,
                delay: 20,
                delay_for: Duration::from_millis(10),
                reset_every: Some(Duration::from_millis(1500)),
            }
        );
        assert_eq!(
            parse_fault_spec("delay=3:0.5s").unwrap().delay_for,
            Duration::from_millis(500)
        );
        for (bad, says) in [
            ("", "injects nothing"),
            ("media=0", "injects nothing"),
            ("media=1001", "0..=1000"),
            ("drop", "KIND=VALUE"),
            ("delay=5", "PERMILLE:DURATION"),
            ("delay=5:10", "not a duration"),
            ("delay=5:0ms", "not a duration"),
            ("reset=0", "seconds"),
            ("reset=nan", "seconds"),
            ("crash=1", "unknown fault kind 'crash'"),
        ] {
            let e = parse_fault_spec(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn balanced() -> SoakReport {
        SoakReport {
            seed: 1,
            media: Tally {
                injected: 10,
                seen: 8,
            },
            dropped: Tally {
                injected: 5,
                seen: 3,
            },
            delayed: DelayTally {
                injected: 20,
                completed_late: 18,
                discarded_by_reset: 2,
                still_held: 0,
            },
            resets: ResetTally {
                injected: 4,
                controller: 6,
                recovery: 2,
                seen_by_queue_pairs: 20,
                failed: 0,
            },
            aborts: 3,
            cut_short: 6,
            lost_to_resets: 2 + 2 + 2,
            unexpected_errors: 0,
            uncertain_blocks: 0,
            uncertain_blocks_new: 0,
            read_back: ReadBack::default(),
            accounted: false,
            problems: Vec::new(),
        }
    }

    #[test]
    fn faults_that_a_reset_hid_are_accounted_for_by_the_commands_it_cut_short() {
        let mut r = balanced();
        r.check(None, None);
        assert!(r.accounted, "{:?}", r.problems);
        r.cut_short = 5;
        r.check(None, None);
        assert!(!r.accounted);
        assert_eq!(
            r.problems,
            ["6 injected faults never showed, but resets cut short only 5 commands"]
        );
    }

    #[test]
    fn every_unexplained_observation_is_a_problem() {
        type Breaks = fn(&mut SoakReport);
        let cases: [(Breaks, &str); 8] = [
            (
                |r| r.media.seen = 11,
                "11 reads failed with Unrecovered Read Error, but the controller injected only 10",
            ),
            (
                |r| r.dropped.seen = 6,
                "6 commands timed out, but the controller dropped only 5",
            ),
            (
                |r| r.delayed.completed_late = 17,
                "of 20 delayed completions, 17 were posted late",
            ),
            (
                |r| r.resets.controller = 3,
                "4 resets were asked for, but the controller went through only 3",
            ),
            (
                |r| r.resets.recovery = 4,
                "reset 4 times more than asked, but only 3 commands timed out",
            ),
            (
                |r| r.resets.failed = 1,
                "1 controller resets failed (first: boom)",
            ),
            (
                |r| r.unexpected_errors = 2,
                "2 I/Os failed in ways no injected fault explains (first: odd)",
            ),
            (
                |r| r.read_back.errors = 1,
                "1 reads of the final read-back failed",
            ),
        ];
        for (breaks, says) in cases {
            let mut r = balanced();
            breaks(&mut r);
            r.check(Some("odd"), Some("boom"));
            assert!(!r.accounted);
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
            assert!(r.problems[0].contains(says), "{:?}", r.problems);
            assert!(r.human().contains("NOT every fault is accounted for"));
        }
    }

    #[test]
    fn error_kinds_tell_media_errors_timeouts_and_resets_from_the_rest() {
        let command = nvme::CommandDesc::Io {
            kind: nvme::IoKind::Read,
            nsid: 1,
            slba: 8,
            blocks: 8,
        };
        let mut k = ErrorKinds::default();
        let ure = Status::media(MediaStatus::UnrecoveredReadError).with_dnr(true);
        k.count(&nvme::Error::CommandFailed {
            command,
            status: ure,
        });
        k.count(&nvme::Error::CommandTimedOut {
            command,
            timeout: Duration::from_secs(1),
        });
        k.count(&nvme::Error::ControllerReset { command });
        let write_fault = Status::media(MediaStatus::WriteFault);
        k.count(&nvme::Error::CommandFailed {
            command,
            status: write_fault,
        });
        assert_eq!((k.media, k.timed_out, k.cut_short, k.other), (1, 1, 1, 1));
        assert!(k.first_other.unwrap().contains("Write Fault"));
    }
}
