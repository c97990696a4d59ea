//! The controller core: shared state and submission queue processing (fetch, execute,
//! complete). Registers are in `registers.rs`, command semantics in `admin.rs` and
//! `io.rs`, host notification in `events.rs`, the device thread in `worker.rs`.
//!
//! Concurrency. Each submission queue id and each completion queue id has its own slot
//! (`Mutex`, one cache line apart); doorbell values are per-queue atomics. Processing a
//! submission queue locks its SQ slot, then its CQ slot, for the whole batch, so queue
//! pairs driven from different threads share no lock and no written cache line. Lock
//! order: register file, admin SQ, admin CQ, one I/O SQ, one I/O CQ (admin commands
//! that manage I/O queues run with the admin pair locked); `admin`, `faults.*`,
//! `vectors` and the log are leaf locks, never held while taking another. Completions posted from outside a batch
//! (held, aborted, asynchronous events) take only the CQ slot. IOMMU updates replace
//! each slot's snapshot under that slot's lock, so an unmap returns only once no batch
//! can still reach the removed memory.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crossbeam_utils::CachePadded;
use nvme_spec::status::GenericStatus;
use nvme_spec::{Cap, CompletionEntry, Status, SubmissionEntry};
use vmm_sys_util::eventfd::EventFd;

use crate::backend::{Backend, RamStore};
use crate::config::{BackendKind, EmuConfig, ExecMode};
use crate::error::EmuError;
use crate::fault::{FaultAction, FaultState};
use crate::identify::{ErrorEntry, ELPE};
use crate::iommu::{Iommu, MemView};
use crate::log::{LogEntry, LogState};
use crate::namespace::Namespace;
use crate::queue::{CqSlot, CqState, Scratch, Shadow, SqSlot};
use crate::registers::Regs;
use crate::stats::{GlobalCounters, QueueCounters};
use crate::worker::Worker;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asynchronous event: Error status, Write to Invalid Doorbell Register, Error log.
pub(crate) const AER_INVALID_DOORBELL: u32 = 0x01 << 16;
/// Asynchronous event: Error status, Invalid Doorbell Write Value, Error log.
pub(crate) const AER_INVALID_DOORBELL_VALUE: u32 = (0x01 << 16) | (0x01 << 8);

/// What a command's execution produced.
pub(crate) enum Outcome {
    /// Complete with this dword 0 and status.
    Done(u32, Status),
    /// Completion comes later (Asynchronous Event Request).
    Deferred,
}

/// Per-command execution context: the issuing queue's view, buffers and counters.
pub(crate) struct Ctx<'a> {
    pub view: &'a mut MemView,
    pub scratch: &'a mut Scratch,
    pub counters: &'a mut QueueCounters,
    /// Extra completions for the issuing queue's CQ (e.g. an aborted admin command).
    pub extra: &'a mut Vec<CompletionEntry>,
}

/// Admin-side controller state (a leaf lock: never held while taking another lock).
pub(crate) struct AdminState {
    /// Number of I/O SQs and CQs granted by Set Features Number of Queues.
    pub nq: (u16, u16),
    pub nq_locked: bool,
    pub arbitration: u32,
    pub coalescing: u32,
    pub async_config: u32,
    pub aer_cids: Vec<u16>,
    pub events: VecDeque<u32>,
    pub errors: VecDeque<ErrorEntry>,
    pub error_count: u64,
    pub dbbuf: Option<(u64, u64)>,
    pub media_errors: u64,
    pub power_cycles: u64,
    pub unsafe_shutdowns: u64,
    pub clean_shutdown: bool,
}

/// Per-queue-id doorbell registers and the sizes they are checked against (0: no queue).
#[derive(Default)]
pub(crate) struct QueueRegs {
    pub sq_tail: AtomicU32,
    pub cq_head: AtomicU32,
    pub sq_size: AtomicU32,
    pub cq_size: AtomicU32,
    pub cq_stalled: AtomicBool,
}

/// The shared controller state behind every handle.
pub(crate) struct Ctrl {
    pub cfg: EmuConfig,
    pub(crate) cap: u64,
    pub(crate) stride_shift: u32,
    pub(crate) max_xfer: u64,
    pub(crate) regs: Mutex<Regs>,
    pub(crate) ready: AtomicBool,
    pub(crate) cfs: AtomicBool,
    pub(crate) page_shift: AtomicU32,
    pub sqs: Box<[CachePadded<Mutex<SqSlot>>]>,
    pub cqs: Box<[CachePadded<Mutex<CqSlot>>]>,
    /// Doorbell values and sizes per queue id, one cache line each so queue pairs
    /// driven from different threads do not share lines.
    pub qregs: Box<[CachePadded<QueueRegs>]>,
    pub iommu: Arc<Iommu>,
    pub namespaces: Box<[Namespace]>,
    pub vwc: AtomicBool,
    pub admin: Mutex<AdminState>,
    pub(crate) events_pending: AtomicBool,
    pub faults: FaultState,
    pub log: Arc<LogState>,
    pub global: GlobalCounters,
    pub(crate) vectors: Mutex<Vec<Arc<EventFd>>>,
    pub(crate) intms: AtomicU32,
    pub(crate) irq_pending: AtomicU32,
    pub(crate) worker: OnceLock<Worker>,
    pub(crate) timer_running: AtomicBool,
    pub(crate) weak: OnceLock<Weak<Ctrl>>,
}

impl AdminState {
    /// Power-on values (also what Get Features reports as default and saved).
    pub(crate) fn defaults(cfg: &EmuConfig) -> Self {
        Self::new(cfg)
    }

    pub(crate) fn new(cfg: &EmuConfig) -> Self {
        Self {
            nq: (cfg.qpairs, cfg.qpairs),
            nq_locked: false,
            arbitration: 0,
            coalescing: 0,
            async_config: 0,
            aer_cids: Vec::new(),
            events: VecDeque::new(),
            errors: VecDeque::new(),
            error_count: 0,
            dbbuf: None,
            media_errors: 0,
            power_cycles: 1,
            unsafe_shutdowns: 0,
            clean_shutdown: false,
        }
    }
}

impl Ctrl {
    pub(crate) fn new(cfg: EmuConfig) -> Result<Arc<Self>, EmuError> {
        cfg.validate()?;
        let blocks = cfg.blocks_per_namespace();
        let file = match &cfg.backend {
            BackendKind::File(path) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?;
                let want = cfg.ns_size * u64::from(cfg.namespaces);
                let have = f
                    .metadata()
                    .map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if have < want {
                    f.set_len(want).map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?;
                }
                Some(Arc::new(f))
            }
            _ => None,
        };
        let namespaces = (1..=cfg.namespaces)
            .map(|nsid| {
                let backend = match (&cfg.backend, &file) {
                    (BackendKind::Null, _) => Backend::Null,
                    (BackendKind::File(_), Some(f)) => Backend::File {
                        file: f.clone(),
                        base: u64::from(nsid - 1) * cfg.ns_size,
                    },
                    _ => Backend::Ram(RamStore::new(cfg.ns_size).map_err(|source| {
                        EmuError::Memory {
                            bytes: cfg.ns_size,
                            source,
                        }
                    })?),
                };
                Ok(Namespace::new(nsid, cfg.lba_size, blocks, backend))
            })
            .collect::<Result<_, EmuError>>()?;
        let cap = Cap::new()
            .with_mqes(cfg.mqes)
            .with_cqr(true)
            .with_to(cfg.timeout)
            .with_dstrd(cfg.dstrd)
            .with_css(nvme_spec::registers::CAP_CSS_NVM)
            .with_mpsmin(cfg.mpsmin)
            .with_mpsmax(cfg.mpsmax);
        let iommu = Arc::new(Iommu::new());
        let n = usize::from(cfg.qpairs) + 1;
        let sqs = (0..n)
            .map(|_| {
                CachePadded::new(Mutex::new(SqSlot {
                    view: iommu.view(),
                    q: None,
                    counters: QueueCounters::default(),
                    scratch: Scratch::default(),
                }))
            })
            .collect();
        let cqs = (0..n)
            .map(|_| {
                CachePadded::new(Mutex::new(CqSlot {
                    view: iommu.view(),
                    q: None,
                }))
            })
            .collect();
        let ctrl = Arc::new(Self {
            cap: cap.into_bits(),
            stride_shift: 2 + u32::from(cfg.dstrd),
            max_xfer: cfg.max_transfer_bytes().unwrap_or(u64::MAX),
            regs: Mutex::new(Regs::new()),
            ready: AtomicBool::new(false),
            cfs: AtomicBool::new(false),
            page_shift: AtomicU32::new(12),
            sqs,
            cqs,
            qregs: (0..n)
                .map(|_| CachePadded::new(QueueRegs::default()))
                .collect(),
            iommu: iommu.clone(),
            namespaces,
            vwc: AtomicBool::new(cfg.vwc),
            admin: Mutex::new(AdminState::new(&cfg)),
            events_pending: AtomicBool::new(false),
            faults: FaultState::default(),
            log: Arc::new(LogState::new(cfg.log)),
            global: GlobalCounters::default(),
            vectors: Mutex::new(Vec::new()),
            intms: AtomicU32::new(0),
            irq_pending: AtomicU32::new(0),
            worker: OnceLock::new(),
            timer_running: AtomicBool::new(false),
            weak: OnceLock::new(),
            cfg,
        });
        let _ = ctrl.weak.set(Arc::downgrade(&ctrl));
        let weak = Arc::downgrade(&ctrl);
        iommu.set_refresh(Box::new(move |regions| {
            if let Some(ctrl) = weak.upgrade() {
                for slot in ctrl.sqs.iter() {
                    lock(slot).view.refresh(regions);
                }
                for slot in ctrl.cqs.iter() {
                    lock(slot).view.refresh(regions);
                }
            }
        }));
        if ctrl.cfg.mode == ExecMode::Threaded {
            ctrl.start_worker()?;
        }
        Ok(ctrl)
    }

    pub(crate) fn max_transfer(&self) -> u64 {
        self.max_xfer
    }

    pub(crate) fn page_size(&self) -> u64 {
        1 << self.page_shift.load(Ordering::Relaxed)
    }

    pub(crate) fn stride_shift(&self) -> u32 {
        self.stride_shift
    }

    pub(crate) fn vwc_present(&self) -> bool {
        self.cfg.vwc
    }

    /// Sets CSTS.CFS.
    pub(crate) fn fatal(&self) {
        self.cfs.store(true, Ordering::Release);
    }

    /// Posts overflowed completions and restarts submission queues that stalled on a full
    /// completion queue.
    pub(crate) fn resume_cq(&self, cqid: u16) {
        let sqs = {
            let mut slot = lock(&self.cqs[usize::from(cqid)]);
            let CqSlot { view, q } = &mut *slot;
            let Some(cq) = q.as_mut() else { return };
            self.qregs[usize::from(cqid)]
                .cq_stalled
                .store(false, Ordering::Release);
            self.drain_held(cqid, cq, view);
            cq.sqs.clone()
        };
        for sqid in sqs {
            self.process_sq(sqid);
        }
    }

    /// Fetches and executes every command between the SQ's head and its tail doorbell.
    pub(crate) fn process_sq(&self, qid: u16) {
        let mut sq_guard = lock(&self.sqs[usize::from(qid)]);
        let SqSlot {
            view,
            q,
            counters,
            scratch,
        } = &mut *sq_guard;
        let Some(sq) = q.as_mut() else { return };
        let tail = match sq.shadow {
            Some(sh) => match view.load_u32(sh.db) {
                Ok(t) => t,
                Err(_) => {
                    counters.dma_errors += 1;
                    self.qregs[usize::from(qid)].sq_tail.load(Ordering::Acquire)
                }
            },
            None => self.qregs[usize::from(qid)].sq_tail.load(Ordering::Acquire),
        };
        if tail >= sq.size {
            GlobalCounters::bump(&self.global.invalid_doorbells);
            drop(sq_guard);
            self.raise_event(AER_INVALID_DOORBELL_VALUE);
            return;
        }
        sq.tail = tail;
        if sq.head == sq.tail {
            match sq.shadow {
                // Publish EventIdx, then look again: the host may have moved the shadow
                // tail after we read it and, seeing the old EventIdx, skipped the MMIO write.
                Some(sh) => match republish_event_idx(view, sh, sq.tail, sq.size) {
                    Some(t) => sq.tail = t,
                    None => return,
                },
                None => return,
            }
        }
        let cqid = sq.cqid;
        let mut cq_guard = lock(&self.cqs[usize::from(cqid)]);
        let CqSlot {
            view: cq_view,
            q: cq_q,
        } = &mut *cq_guard;
        let Some(cq) = cq_q.as_mut() else { return };
        let cq_db = &self.qregs[usize::from(cqid)].cq_head;
        let page_size = self.page_size();
        let mut extra = Vec::new();
        let mut posted = false;
        let mut failed_fatally = false;
        let mut stalled = false;
        'fetch: loop {
            while sq.head != sq.tail {
                if !cq.has_room(cq_view, cq_db) {
                    self.qregs[usize::from(cqid)]
                        .cq_stalled
                        .store(true, Ordering::Release);
                    // The host may have freed room between the check and the flag.
                    if !cq.has_room(cq_view, cq_db) {
                        stalled = true;
                        break;
                    }
                    self.qregs[usize::from(cqid)]
                        .cq_stalled
                        .store(false, Ordering::Release);
                }
                let raw = match view.read_sqe(sq.base.wrapping_add(u64::from(sq.head) * 64)) {
                    Ok(raw) => raw,
                    Err(_) => {
                        // Without the entry there is no command id to complete: a fatal
                        // controller error, as a failed fetch is on hardware.
                        counters.dma_errors += 1;
                        failed_fatally = true;
                        break;
                    }
                };
                sq.head = if sq.head + 1 == sq.size {
                    0
                } else {
                    sq.head + 1
                };
                let sqe = SubmissionEntry::from_bytes(&raw);
                counters.commands += 1;
                let action = if self.faults.armed() {
                    self.faults
                        .take_action(qid, sqe.opcode(), sqe.nsid, io_lbas(qid, &sqe))
                } else {
                    None
                };
                let mut ctx = Ctx {
                    view,
                    scratch,
                    counters,
                    extra: &mut extra,
                };
                let aborted = !sq.aborts.is_empty() && {
                    let found = sq.aborts.iter().position(|&c| c == sqe.cid());
                    found.map(|i| sq.aborts.swap_remove(i)).is_some()
                };
                let outcome = match action {
                    _ if aborted => Outcome::Done(0, generic(GenericStatus::CommandAbortRequested)),
                    Some(FaultAction::Fail(status)) => Outcome::Done(0, status),
                    _ => {
                        if qid == 0 {
                            self.exec_admin(&mut ctx, &sqe, page_size)
                        } else {
                            self.exec_io(&mut ctx, &sqe, page_size)
                        }
                    }
                };
                let Outcome::Done(dw0, status) = outcome else {
                    continue;
                };
                if !status.is_success() {
                    counters.failed += 1;
                    self.record_error(qid, &sqe, status);
                }
                if self.log.enabled() {
                    self.log.push(log_entry(qid, &sqe, status));
                }
                let mut cqe = CompletionEntry {
                    dw0,
                    dw1: 0,
                    sq_head: sq.head as u16,
                    sq_id: qid,
                    cid: sqe.cid(),
                    status,
                };
                match action {
                    Some(FaultAction::Hold) => {
                        self.hold(cqid, cqe, None);
                        continue;
                    }
                    Some(FaultAction::Delay(d)) => {
                        self.hold(cqid, cqe, Some(d));
                        continue;
                    }
                    Some(FaultAction::Drop) => continue,
                    Some(FaultAction::WrongCid) => cqe.cid ^= 0xffff,
                    Some(FaultAction::WrongSqid) => cqe.sq_id ^= 0x8000,
                    _ => {}
                }
                if cq.post(cq_view, cqe).is_err() {
                    GlobalCounters::bump(&self.global.dma_errors);
                    failed_fatally = true;
                    break;
                }
                posted = true;
            }
            if let (Some(sh), false, false) = (sq.shadow, stalled, failed_fatally) {
                if let Some(t) = republish_event_idx(view, sh, sq.tail, sq.size) {
                    sq.tail = t;
                    continue 'fetch;
                }
            }
            break;
        }
        for cqe in extra {
            cq.overflow.push_back(cqe);
        }
        if !cq.overflow.is_empty() {
            match cq.drain_overflow(cq_view, cq_db) {
                Ok(n) => posted |= n > 0,
                Err(_) => failed_fatally = true,
            }
            if !cq.overflow.is_empty() {
                self.qregs[usize::from(cqid)]
                    .cq_stalled
                    .store(true, Ordering::Release);
            }
        }
        if let Some(sh) = sq.shadow {
            let _ = view.store_u32(sh.ei, sq.tail);
        }
        if posted && cq.ien {
            self.signal(cq.iv);
        }
        if failed_fatally {
            self.fatal();
        }
    }

    /// Posts a completion from outside queue processing (held, aborted, async events).
    pub(crate) fn post_async(&self, cqid: u16, cqe: CompletionEntry) {
        let mut slot = lock(&self.cqs[usize::from(cqid)]);
        let CqSlot { view, q } = &mut *slot;
        let Some(cq) = q.as_mut() else { return };
        cq.overflow.push_back(cqe);
        self.drain_held(cqid, cq, view);
    }

    /// Posts the completions CQ `cqid` holds back as far as its free entries allow,
    /// signals them, and marks the queue stalled while some are still held.
    fn drain_held(&self, cqid: u16, cq: &mut CqState, view: &mut MemView) {
        match cq.drain_overflow(view, &self.qregs[usize::from(cqid)].cq_head) {
            Ok(n) if n > 0 && cq.ien => self.signal(cq.iv),
            Ok(_) => {}
            Err(_) => {
                GlobalCounters::bump(&self.global.dma_errors);
                self.fatal();
            }
        }
        if !cq.overflow.is_empty() {
            self.qregs[usize::from(cqid)]
                .cq_stalled
                .store(true, Ordering::Release);
        }
    }

    fn record_error(&self, qid: u16, sqe: &SubmissionEntry, status: Status) {
        let mut admin = lock(&self.admin);
        admin.error_count += 1;
        let entry = ErrorEntry {
            count: admin.error_count,
            sqid: qid,
            cid: sqe.cid(),
            status: status.without_phase(),
            lba: io_lbas(qid, sqe).map_or(0, |r| r.start),
            nsid: sqe.nsid,
        };
        if status.sct() == nvme_spec::StatusCodeType::MediaAndDataIntegrity {
            admin.media_errors += 1;
        }
        admin.errors.push_back(entry);
        if admin.errors.len() > usize::from(ELPE) + 1 {
            admin.errors.pop_front();
        }
    }
}

/// Writes EventIdx = `tail`, then re-reads the shadow tail (both sequentially
/// consistent, pairing with the host's "write shadow, fence, read EventIdx"). Returns the
/// new tail if the host moved it meanwhile.
fn republish_event_idx(view: &mut MemView, sh: Shadow, tail: u32, size: u32) -> Option<u32> {
    view.store_u32(sh.ei, tail).ok()?;
    let now = view.load_u32(sh.db).ok()?;
    (now != tail && now < size).then_some(now)
}

/// The LBA range of an I/O command that has one (CDW10-12), for matching and logging.
pub(crate) fn io_lbas(qid: u16, sqe: &SubmissionEntry) -> Option<std::ops::Range<u64>> {
    use nvme_spec::NvmOpcode as Op;
    if qid == 0 {
        return None;
    }
    match sqe.nvm_opcode() {
        Op::READ
        | Op::WRITE
        | Op::COMPARE
        | Op::WRITE_ZEROES
        | Op::VERIFY
        | Op::WRITE_UNCORRECTABLE => {
            let slba = sqe.slba();
            Some(slba..slba.saturating_add(u64::from(sqe.block_count())))
        }
        _ => None,
    }
}

fn log_entry(qid: u16, sqe: &SubmissionEntry, status: Status) -> LogEntry {
    use nvme_spec::NvmOpcode as Op;
    let lbas = io_lbas(qid, sqe);
    let op = sqe.nvm_opcode();
    let has_fua = qid != 0
        && matches!(
            op,
            Op::READ | Op::WRITE | Op::COMPARE | Op::WRITE_ZEROES | Op::VERIFY
        );
    LogEntry {
        qid,
        cid: sqe.cid(),
        opcode: sqe.opcode(),
        nsid: sqe.nsid,
        slba: lbas.as_ref().map_or(0, |r| r.start),
        blocks: lbas.map_or(0, |r| (r.end - r.start) as u32),
        fua: has_fua && sqe.fua(),
        deac: qid != 0
            && ((op == Op::WRITE_ZEROES && sqe.deac())
                || (op == Op::DATASET_MANAGEMENT && sqe.dsm_attributes().ad())),
        status: status.without_phase(),
    }
}

/// Convenience for status values.
pub(crate) fn generic(code: GenericStatus) -> Status {
    Status::generic(code)
}

/// Shadow doorbell addresses of queue `qid` within the buffers at `db` and `ei`.
pub(crate) fn shadow_for(db: u64, ei: u64, index: usize, stride_shift: u32) -> Shadow {
    let off = (index as u64) << stride_shift;
    Shadow {
        db: db.wrapping_add(off),
        ei: ei.wrapping_add(off),
    }
}
