//! One run of the driver against a hostile emulated controller: bring-up, admin
//! commands and I/O on several queue pairs, with every call timed and every transfer the
//! device made checked against the buffers of the command that named it.
//!
//! What the driver guarantees against a lying device, and what it cannot:
//! - every call returns (within its deadline plus the abort and reset it may need) with
//!   `Ok` or a typed `nvme::Error`; nothing panics;
//! - each submitted command is reported exactly once;
//! - the transfers its PRPs and SGLs describe stay inside the buffers of the command in
//!   hand (the IOMMU model refuses whatever the device reads on its own beyond mapped
//!   memory);
//! - it cannot check data: a read the device reports as successful may hold any bytes,
//!   and a completion with a forged command id can report a command as done before the
//!   device ran it. Data is compared only when the device tells no lies (rate 0).

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nvme::spec::features::FeatureId;
use nvme::spec::identify::Cns;
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, DmaBuffer, Error, IoQueuePair, Options, QueuePairOptions};
use nvme_emu::{EmuController, HostileStats};

/// Bytes of each I/O buffer: four pages, so the PRPs need a list.
pub const BUF_BYTES: usize = 16 << 10;
/// Buffers (commands in flight) per queue pair.
pub const BUFS_PER_PAIR: usize = 4;
/// Longest any single driver call may take: its own deadline plus abort and reset.
pub const CALL_BOUND: Duration = Duration::from_secs(5);

/// What one run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Driver calls made.
    pub calls: u64,
    /// Calls and commands that failed, each with a typed error.
    pub errors: u64,
    /// Commands reported successful.
    pub ok: u64,
    /// Data accesses checked against their command's buffers.
    pub accesses_checked: u64,
    /// The device's counters at the end.
    pub hostile: HostileStats,
    /// IOMMU translations and refusals at the end.
    pub dma_accesses: u64,
    /// IOMMU refusals at the end.
    pub dma_refused: u64,
    /// Whether bring-up succeeded.
    pub brought_up: bool,
}

/// The driver options of a run: short deadlines so a lying device costs little time.
pub fn options(qpairs: u16, interrupts: bool) -> Options {
    Options {
        io_queues: qpairs,
        admin_depth: 16,
        interrupts,
        admin_timeout: Duration::from_millis(150),
        io_timeout: Duration::from_millis(60),
        abort_timeout: Duration::from_millis(40),
        shutdown_timeout: Duration::from_millis(150),
        ..Options::default()
    }
}

struct Timer<'a>(&'a mut Report);

impl Timer<'_> {
    /// Runs one driver call, checks its duration and counts its result.
    fn call<R>(
        &mut self,
        what: &str,
        f: impl FnOnce() -> Result<R, Error>,
    ) -> Result<Option<R>, String> {
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        self.0.calls += 1;
        if took > CALL_BOUND {
            return Err(format!("{what} took {took:?}, beyond {CALL_BOUND:?}"));
        }
        Ok(match r {
            Ok(v) => Some(v),
            Err(e) => {
                check_error(&e)?;
                self.0.errors += 1;
                None
            }
        })
    }
}

/// A typed error must print as a sentence.
fn check_error(e: &Error) -> Result<(), String> {
    let text = e.to_string();
    if text.trim().is_empty() {
        return Err(format!("an error without a message: {e:?}"));
    }
    Ok(())
}

/// One command the run submitted: where its data lives.
#[derive(Clone, Copy)]
struct Cmd {
    slba: u64,
    blocks: u64,
    iova: u64,
    len: u64,
}

/// Runs bring-up, admin commands and `rounds` rounds of writes and reads on `qpairs`
/// queue pairs against `emu:...,hostile=seed,hostile_rate=rate`. Returns what happened,
/// or the property it broke.
pub fn run(
    seed: u64,
    rate: u16,
    qpairs: u16,
    mode: CompletionMode,
    rounds: usize,
) -> Result<Report, String> {
    let name = format!("emu:size=4M,lba=512,qpairs=8,to=1,hostile={seed},hostile_rate={rate}");
    let emu = EmuController::from_name(&name).map_err(|e| format!("{name}: {e}"))?;
    let mut report = Report::default();
    let interrupts = mode == CompletionMode::Interrupt;
    let ctrl = {
        let mut t = Timer(&mut report);
        t.call("bring-up", || {
            Controller::new(EmuTransport::new(emu.clone()), options(qpairs, interrupts))
        })?
    };
    if let Some(ctrl) = ctrl {
        report.brought_up = true;
        exercise(&emu, &ctrl, &mut report, seed, rate, qpairs, mode, rounds)?;
        let mut t = Timer(&mut report);
        t.call("shutdown", || ctrl.shutdown())?;
        let start = Instant::now();
        drop(ctrl);
        if start.elapsed() > CALL_BOUND {
            return Err(format!(
                "dropping the controller took {:?}",
                start.elapsed()
            ));
        }
    }
    check_accesses(&emu, &HashMap::new(), &mut report)?;
    report.hostile = emu.hostile_stats().unwrap_or_default();
    let dma = emu.dma_counts();
    report.dma_accesses = dma.accesses;
    report.dma_refused = dma.refused;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn exercise(
    emu: &EmuController,
    ctrl: &Controller<EmuTransport>,
    report: &mut Report,
    seed: u64,
    rate: u16,
    qpairs: u16,
    mode: CompletionMode,
    rounds: usize,
) -> Result<(), String> {
    {
        let mut t = Timer(report);
        t.call("identify controller", || ctrl.identify(Cns::CONTROLLER, 0))?;
        t.call("identify namespace", || ctrl.identify(Cns::NAMESPACE, 1))?;
        t.call("get features", || {
            ctrl.get_features(FeatureId::NUMBER_OF_QUEUES, 0)
        })?;
        t.call("smart log", || ctrl.smart_log())?;
    }
    let Some(ns) = ctrl.namespace(1) else {
        return Ok(());
    };
    let lba = u64::from(ns.lba_size.max(1));
    let blocks = (BUF_BYTES as u64 / lba).max(1);
    let mut pairs: Vec<(IoQueuePair<EmuTransport>, Vec<DmaBuffer>)> = Vec::new();
    for _ in 0..qpairs {
        let mut t = Timer(report);
        let qp = t.call("create queue pair", || {
            ctrl.create_io_queue_pair(QueuePairOptions {
                depth: 16,
                mode,
                ..QueuePairOptions::default()
            })
        })?;
        if let Some(qp) = qp {
            let mut bufs = Vec::new();
            for _ in 0..BUFS_PER_PAIR {
                let b = ctrl
                    .allocator()
                    .alloc(BUF_BYTES, 4096)
                    .map_err(|e| format!("alloc: {e}"))?;
                bufs.push(b);
            }
            pairs.push((qp, bufs));
        }
    }
    // Each command of the run has its own LBA range and buffer, keyed by queue id.
    let mut cmds: HashMap<u16, Vec<Cmd>> = HashMap::new();
    for (p, (qp, bufs)) in pairs.iter().enumerate() {
        let list = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| Cmd {
                slba: ((p * BUFS_PER_PAIR + i) as u64) * blocks,
                blocks,
                iova: b.iova(),
                len: b.len() as u64,
            })
            .collect();
        cmds.insert(qp.qid(), list);
    }
    check_accesses(emu, &cmds, report)?;
    for round in 0..rounds {
        for write in [true, false] {
            for (qp, bufs) in pairs.iter_mut() {
                let list = cmds[&qp.qid()].clone();
                if write {
                    for (i, b) in bufs.iter_mut().enumerate() {
                        let fill = pattern(seed, round, list[i].slba);
                        b.fill(0, BUF_BYTES, fill)
                            .map_err(|e| format!("fill: {e}"))?;
                    }
                } else {
                    for b in bufs.iter_mut() {
                        b.fill(0, BUF_BYTES, 0).map_err(|e| format!("fill: {e}"))?;
                    }
                }
                let mut submitted = vec![false; bufs.len()];
                {
                    let mut t = Timer(report);
                    for (i, b) in bufs.iter().enumerate() {
                        let c = list[i];
                        let seg = [b.as_segment()];
                        let r = t.call("submit", || {
                            if write {
                                qp.submit_write(
                                    1,
                                    c.slba,
                                    c.blocks as u32,
                                    &seg,
                                    nvme::IoFlags::empty(),
                                    i as u64,
                                )
                            } else {
                                qp.submit_read(1, c.slba, c.blocks as u32, &seg, i as u64)
                            }
                        })?;
                        submitted[i] = r.is_some();
                    }
                }
                let results = collect(qp, &submitted, report)?;
                for (i, ok) in results.into_iter().enumerate() {
                    if !ok || write || rate != 0 {
                        continue;
                    }
                    // An honest device: what was read is what was written.
                    let want = vec![pattern(seed, round, list[i].slba); BUF_BYTES];
                    if !bufs[i]
                        .compare(0, &want)
                        .map_err(|e| format!("compare: {e}"))?
                    {
                        return Err(format!("read of LBA {} returned other data", list[i].slba));
                    }
                }
            }
            check_accesses(emu, &cmds, report)?;
        }
    }
    for (qp, bufs) in pairs {
        let start = Instant::now();
        drop(qp);
        drop(bufs);
        if start.elapsed() > CALL_BOUND {
            return Err(format!("dropping a queue pair took {:?}", start.elapsed()));
        }
    }
    Ok(())
}

fn pattern(seed: u64, round: usize, slba: u64) -> u8 {
    (seed ^ (round as u64 * 31) ^ slba) as u8 | 1
}

/// Waits until every submitted command has been reported once; returns which succeeded.
fn collect(
    qp: &mut IoQueuePair<EmuTransport>,
    submitted: &[bool],
    report: &mut Report,
) -> Result<Vec<bool>, String> {
    let mut seen = vec![0u32; submitted.len()];
    let mut ok = vec![false; submitted.len()];
    let end = Instant::now() + CALL_BOUND;
    let mut failure = None;
    while (0..submitted.len()).any(|i| submitted[i] && seen[i] == 0) {
        if Instant::now() > end {
            return Err(format!(
                "commands not reported within {CALL_BOUND:?}: {seen:?} of {submitted:?}"
            ));
        }
        let mut t = Timer(report);
        let mut results = Vec::new();
        t.call("wait completions", || {
            qp.wait_completions(usize::MAX, Duration::from_millis(20), |ctx, r| {
                results.push((ctx, r))
            })
        })?;
        for (ctx, r) in results {
            let i = ctx as usize;
            if i >= submitted.len() || !submitted[i] {
                return Err(format!(
                    "a completion for context {ctx}, which was never submitted"
                ));
            }
            seen[i] += 1;
            if seen[i] > 1 {
                return Err(format!("command {i} reported {} times", seen[i]));
            }
            match r {
                Ok(()) => {
                    ok[i] = true;
                    report.ok += 1;
                }
                Err(e) => {
                    if let Err(m) = check_error(&e) {
                        failure = Some(m);
                    }
                    report.errors += 1;
                }
            }
        }
    }
    match failure {
        Some(m) => Err(m),
        None => Ok(ok),
    }
}

/// Every data transfer the device made for an I/O command must lie inside the buffer of
/// the command it served (found by queue id and LBA).
fn check_accesses(
    emu: &EmuController,
    cmds: &HashMap<u16, Vec<Cmd>>,
    report: &mut Report,
) -> Result<(), String> {
    for a in emu.take_data_accesses() {
        if a.qid == 0 {
            // Admin data buffers belong to the driver; their bounds are its own.
            continue;
        }
        report.accesses_checked += 1;
        let cmd = cmds.get(&a.qid).and_then(|l| {
            l.iter()
                .find(|c| a.slba >= c.slba && a.slba < c.slba + c.blocks)
        });
        let Some(c) = cmd else {
            return Err(format!(
                "a transfer for queue {} at LBA {} that no command asked for: {a:?}",
                a.qid, a.slba
            ));
        };
        let inside = a.iova >= c.iova
            && a.iova
                .checked_add(a.len)
                .is_some_and(|e| e <= c.iova + c.len);
        if !inside {
            return Err(format!(
                "a transfer outside its command's buffer: {a:?}, buffer {:#x}+{:#x}",
                c.iova, c.len
            ));
        }
    }
    Ok(())
}
