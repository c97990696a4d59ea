//! The controller core: register file, doorbells, queue processing, interrupts and the
//! optional device thread. Command semantics live in `admin.rs` and `io.rs`.
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use nvme_spec::registers::{offset, ShutdownNotification, ShutdownStatus};
use nvme_spec::status::GenericStatus;
use nvme_spec::{Aqa, Cap, Cc, CompletionEntry, Csts, Status, SubmissionEntry, Version};
use vmm_sys_util::eventfd::EventFd;

use crate::backend::{Backend, RamStore};
use crate::config::{BackendKind, EmuConfig, ExecMode};
use crate::error::EmuError;
use crate::fault::{FaultAction, FaultState, Held};
use crate::identify::{ErrorEntry, ELPE};
use crate::iommu::{Iommu, MemView};
use crate::log::{LogEntry, LogState};
use crate::namespace::Namespace;
use crate::queue::{CqSlot, CqState, Scratch, Shadow, SqSlot, SqState};
use crate::stats::{GlobalCounters, QueueCounters};

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

struct Regs {
    cc: Cc,
    aqa: u32,
    asq: u64,
    acq: u64,
    shst: ShutdownStatus,
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

struct Worker {
    thread: Thread,
    sq_pending: Box<[AtomicU64]>,
    cq_pending: Box<[AtomicU64]>,
    sleeping: AtomicBool,
}

/// The shared controller state behind every handle.
pub(crate) struct Ctrl {
    pub cfg: EmuConfig,
    cap: u64,
    stride_shift: u32,
    max_xfer: u64,
    regs: Mutex<Regs>,
    ready: AtomicBool,
    cfs: AtomicBool,
    page_shift: AtomicU32,
    pub sqs: Box<[CachePadded<Mutex<SqSlot>>]>,
    pub cqs: Box<[CachePadded<Mutex<CqSlot>>]>,
    /// Doorbell values and sizes per queue id, one cache line each so queue pairs
    /// driven from different threads do not share lines.
    pub qregs: Box<[CachePadded<QueueRegs>]>,
    pub iommu: Arc<Iommu>,
    pub namespaces: Box<[Namespace]>,
    pub vwc: AtomicBool,
    pub admin: Mutex<AdminState>,
    events_pending: AtomicBool,
    pub faults: FaultState,
    pub log: Arc<LogState>,
    pub global: GlobalCounters,
    vectors: Mutex<Vec<Arc<EventFd>>>,
    intms: AtomicU32,
    irq_pending: AtomicU32,
    worker: OnceLock<Worker>,
    timer_running: AtomicBool,
    weak: OnceLock<Weak<Ctrl>>,
}

impl AdminState {
    /// Power-on values (also what Get Features reports as default and saved).
    pub(crate) fn defaults(cfg: &EmuConfig) -> Self {
        Self::new(cfg)
    }

    fn new(cfg: &EmuConfig) -> Self {
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
                    _ => Backend::Ram(RamStore::new(cfg.ns_size)),
                };
                Namespace::new(nsid, cfg.lba_size, blocks, backend)
            })
            .collect();
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
            regs: Mutex::new(Regs {
                cc: Cc::new(),
                aqa: 0,
                asq: 0,
                acq: 0,
                shst: ShutdownStatus::Normal,
            }),
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

    // ---------------------------------------------------------------- registers

    pub(crate) fn read32(&self, off: usize) -> u32 {
        if self.faults.gone.load(Ordering::Acquire) {
            return u32::MAX;
        }
        match off {
            offset::CAP => self.cap as u32,
            o if o == offset::CAP + 4 => (self.cap >> 32) as u32,
            offset::VS => Version::V1_4.into_bits(),
            offset::INTMS | offset::INTMC => self.intms.load(Ordering::Acquire),
            offset::CC => lock(&self.regs).cc.into_bits(),
            offset::CSTS => {
                let mut regs = lock(&self.regs);
                let shst = regs.shst;
                if shst == ShutdownStatus::Occurring {
                    // Report "occurring" once, then the (already finished) completion.
                    regs.shst = ShutdownStatus::Complete;
                }
                Csts::new()
                    .with_rdy(self.ready.load(Ordering::Acquire))
                    .with_cfs(self.cfs.load(Ordering::Acquire))
                    .with_shst(shst)
                    .into_bits()
            }
            offset::AQA => lock(&self.regs).aqa,
            offset::ASQ => lock(&self.regs).asq as u32,
            o if o == offset::ASQ + 4 => (lock(&self.regs).asq >> 32) as u32,
            offset::ACQ => lock(&self.regs).acq as u32,
            o if o == offset::ACQ + 4 => (lock(&self.regs).acq >> 32) as u32,
            // Doorbells are write only; everything else is reserved or unimplemented.
            _ => 0,
        }
    }

    pub(crate) fn write32(&self, off: usize, value: u32) {
        if self.faults.gone.load(Ordering::Acquire) {
            return;
        }
        if off >= offset::DOORBELL_BASE {
            self.doorbell(off - offset::DOORBELL_BASE, value);
        } else {
            match off {
                offset::INTMS => {
                    self.intms.fetch_or(value, Ordering::AcqRel);
                }
                offset::INTMC => {
                    self.intms.fetch_and(!value, Ordering::AcqRel);
                    let pending = self.irq_pending.fetch_and(!value, Ordering::AcqRel) & value;
                    for iv in 0..32u16 {
                        if pending & (1 << iv) != 0 {
                            self.signal(iv);
                        }
                    }
                }
                offset::CC => self.write_cc(Cc::from_bits(value)),
                offset::AQA => self.write_admin_reg(|r| r.aqa = value),
                offset::ASQ => {
                    self.write_admin_reg(|r| r.asq = (r.asq & !0xffff_ffff) | u64::from(value))
                }
                o if o == offset::ASQ + 4 => self
                    .write_admin_reg(|r| r.asq = (r.asq & 0xffff_ffff) | (u64::from(value) << 32)),
                offset::ACQ => {
                    self.write_admin_reg(|r| r.acq = (r.acq & !0xffff_ffff) | u64::from(value))
                }
                o if o == offset::ACQ + 4 => self
                    .write_admin_reg(|r| r.acq = (r.acq & 0xffff_ffff) | (u64::from(value) << 32)),
                _ => {}
            }
        }
        if self.events_pending.load(Ordering::Relaxed) {
            self.deliver_events();
        }
    }

    /// AQA/ASQ/ACQ may only change while the controller is disabled.
    fn write_admin_reg(&self, f: impl FnOnce(&mut Regs)) {
        let mut regs = lock(&self.regs);
        if !regs.cc.en() {
            f(&mut regs);
        }
    }

    fn write_cc(&self, new: Cc) {
        let mut regs = lock(&self.regs);
        let old = regs.cc;
        match (old.en(), new.en()) {
            (false, true) => {
                regs.cc = new;
                if let Err(why) = self.enable(&regs) {
                    tracing::debug!("emu: CC.EN=1 refused ({why}); setting CSTS.CFS");
                    self.fatal();
                }
            }
            (true, false) => {
                regs.cc = new;
                regs.shst = ShutdownStatus::Normal;
                self.reset_queues();
            }
            (true, true) => {
                // Only SHN may change while enabled.
                regs.cc = old.with_shn(new.shn());
                if new.shn() != ShutdownNotification::None
                    && old.shn() == ShutdownNotification::None
                {
                    for ns in self.namespaces.iter() {
                        if let Err(e) = ns.flush() {
                            tracing::warn!("emu: flush at shutdown failed: {e}");
                        }
                    }
                    lock(&self.admin).clean_shutdown = true;
                    regs.shst = ShutdownStatus::Occurring;
                }
            }
            (false, false) => regs.cc = new,
        }
    }

    /// Brings the controller up from the admin queue registers, or says why not.
    fn enable(&self, regs: &Regs) -> Result<(), &'static str> {
        let cc = regs.cc;
        let cap = Cap::from_bits(self.cap);
        if cc.css() != nvme_spec::registers::CC_CSS_NVM {
            return Err("CC.CSS selects an unsupported command set");
        }
        if cc.mps() < cap.mpsmin() || cc.mps() > cap.mpsmax() {
            return Err("CC.MPS outside CAP.MPSMIN..=CAP.MPSMAX");
        }
        if cc.ams() != 0 {
            return Err("CC.AMS selects an unsupported arbitration mechanism");
        }
        if cc.iosqes() != 6 || cc.iocqes() != 4 {
            return Err("CC.IOSQES must be 6 and CC.IOCQES 4");
        }
        let aqa = Aqa::from_bits(regs.aqa);
        if aqa.asqs() == 0 || aqa.acqs() == 0 {
            return Err("AQA sizes must be at least 2 entries");
        }
        let page_mask = cc.page_size() - 1;
        if regs.asq == 0 || regs.acq == 0 || regs.asq & page_mask != 0 || regs.acq & page_mask != 0
        {
            return Err("ASQ and ACQ must be non-zero and page aligned");
        }
        if self.cfs.load(Ordering::Acquire) {
            return Err("controller fatal status is set");
        }
        self.page_shift
            .store(12 + u32::from(cc.mps()), Ordering::Relaxed);
        let sq_entries = u32::from(aqa.asqs()) + 1;
        let cq_entries = u32::from(aqa.acqs()) + 1;
        {
            let mut cq = lock(&self.cqs[0]);
            let mut state = CqState::new(regs.acq, cq_entries, true, 0);
            state.sqs.push(0);
            cq.q = Some(state);
        }
        lock(&self.sqs[0]).q = Some(SqState {
            base: regs.asq,
            size: sq_entries,
            head: 0,
            tail: 0,
            cqid: 0,
            shadow: None,
            aborts: Vec::new(),
        });
        self.qregs[0].sq_tail.store(0, Ordering::Release);
        self.qregs[0].cq_head.store(0, Ordering::Release);
        self.qregs[0].sq_size.store(sq_entries, Ordering::Release);
        self.qregs[0].cq_size.store(cq_entries, Ordering::Release);
        lock(&self.admin).clean_shutdown = false;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Controller reset: every queue, pending request and volatile setting goes.
    fn reset_queues(&self) {
        self.ready.store(false, Ordering::Release);
        for (i, slot) in self.sqs.iter().enumerate() {
            lock(slot).q = None;
            self.qregs[i].sq_size.store(0, Ordering::Release);
            self.qregs[i].sq_tail.store(0, Ordering::Release);
        }
        for (i, slot) in self.cqs.iter().enumerate() {
            lock(slot).q = None;
            self.qregs[i].cq_size.store(0, Ordering::Release);
            self.qregs[i].cq_head.store(0, Ordering::Release);
            self.qregs[i].cq_stalled.store(false, Ordering::Release);
        }
        lock(&self.faults.held).clear();
        {
            let mut admin = lock(&self.admin);
            let fresh = AdminState::new(&self.cfg);
            admin.nq = fresh.nq;
            admin.nq_locked = false;
            admin.arbitration = 0;
            admin.coalescing = 0;
            admin.async_config = 0;
            admin.aer_cids.clear();
            admin.events.clear();
            admin.dbbuf = None;
        }
        self.events_pending.store(false, Ordering::Release);
        if !self.vwc.load(Ordering::Acquire) && self.cfg.vwc {
            self.vwc.store(true, Ordering::Release);
        }
        self.cfs.store(false, Ordering::Release);
        self.intms.store(0, Ordering::Release);
        self.irq_pending.store(0, Ordering::Release);
        GlobalCounters::bump(&self.global.resets);
    }

    /// Function level reset: a controller reset plus every register to its default.
    pub(crate) fn function_reset(&self) {
        let mut regs = lock(&self.regs);
        self.reset_queues();
        *regs = Regs {
            cc: Cc::new(),
            aqa: 0,
            asq: 0,
            acq: 0,
            shst: ShutdownStatus::Normal,
        };
    }

    /// Simulated power loss: every write not yet durable is lost.
    pub(crate) fn power_cut(&self) {
        let lost: usize = self.namespaces.iter().map(|ns| ns.power_cut()).sum();
        self.global
            .lost_blocks
            .fetch_add(lost as u64, Ordering::Relaxed);
        GlobalCounters::bump(&self.global.power_cuts);
        let mut admin = lock(&self.admin);
        admin.power_cycles += 1;
        if !admin.clean_shutdown {
            admin.unsafe_shutdowns += 1;
        }
    }

    // ---------------------------------------------------------------- doorbells

    fn doorbell(&self, rel: usize, value: u32) {
        let stride_mask = (1usize << self.stride_shift) - 1;
        if rel & stride_mask != 0 {
            return;
        }
        let index = rel >> self.stride_shift;
        let qid = index >> 1;
        if qid >= self.sqs.len() || !self.ready.load(Ordering::Acquire) {
            return;
        }
        let is_sq = index & 1 == 0;
        let size = if is_sq {
            &self.qregs[qid].sq_size
        } else {
            &self.qregs[qid].cq_size
        }
        .load(Ordering::Acquire);
        if size == 0 {
            GlobalCounters::bump(&self.global.invalid_doorbells);
            self.raise_event(AER_INVALID_DOORBELL);
            return;
        }
        if value >= size {
            GlobalCounters::bump(&self.global.invalid_doorbells);
            self.raise_event(AER_INVALID_DOORBELL_VALUE);
            return;
        }
        let qid = qid as u16;
        if is_sq {
            self.qregs[usize::from(qid)]
                .sq_tail
                .store(value, Ordering::Release);
            match self.worker.get() {
                None => self.process_sq(qid),
                Some(w) => self.kick(w, &w.sq_pending, qid),
            }
        } else {
            self.qregs[usize::from(qid)]
                .cq_head
                .store(value, Ordering::Release);
            if self.qregs[usize::from(qid)]
                .cq_stalled
                .load(Ordering::Acquire)
            {
                match self.worker.get() {
                    None => self.resume_cq(qid),
                    Some(w) => self.kick(w, &w.cq_pending, qid),
                }
            }
        }
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

    fn hold(&self, cqid: u16, cqe: CompletionEntry, delay: Option<Duration>) {
        let deadline = delay.map(|d| Instant::now() + d);
        lock(&self.faults.held).push(Held {
            cqid,
            cqe,
            deadline,
        });
        if delay.is_some() && !self.timer_running.swap(true, Ordering::AcqRel) {
            let Some(weak) = self.weak.get().cloned() else {
                return;
            };
            let spawned = std::thread::Builder::new()
                .name("emu-delay".into())
                .spawn(move || timer_loop(weak));
            if let Err(e) = spawned {
                // Called with queue locks held, so the completion cannot be posted here;
                // it stays held for `FaultControl::release_held`.
                self.timer_running.store(false, Ordering::Release);
                tracing::warn!("emu: cannot start the delay timer ({e}); completion stays held");
            }
        }
    }

    /// The earliest deadline among held completions, if any has one.
    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.faults.held)
            .iter()
            .filter_map(|h| h.deadline)
            .min()
    }

    /// Posts every held completion for which `which` is true; returns how many.
    pub(crate) fn release_held(&self, which: impl Fn(&Held) -> bool) -> usize {
        let released: Vec<Held> = {
            let mut held = lock(&self.faults.held);
            let (go, stay) = held.drain(..).partition(|h| which(h));
            *held = stay;
            go
        };
        for h in &released {
            self.post_async(h.cqid, h.cqe);
        }
        released.len()
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

    // ---------------------------------------------------------------- events and interrupts

    /// Queues an asynchronous event; it completes an outstanding AER when one exists.
    pub(crate) fn raise_event(&self, dw0: u32) {
        let mut admin = lock(&self.admin);
        if admin.events.len() < 64 {
            admin.events.push_back(dw0);
        }
        if !admin.aer_cids.is_empty() {
            self.events_pending.store(true, Ordering::Release);
        }
    }

    /// Completes outstanding AERs with queued events (called with no lock held).
    fn deliver_events(&self) {
        self.events_pending.store(false, Ordering::Release);
        let mut ready = Vec::new();
        {
            let mut admin = lock(&self.admin);
            while !admin.events.is_empty() && !admin.aer_cids.is_empty() {
                let cid = admin.aer_cids.remove(0);
                let dw0 = admin.events.pop_front().unwrap_or(0);
                ready.push((cid, dw0));
            }
        }
        let head = lock(&self.sqs[0]).q.as_ref().map_or(0, |q| q.head as u16);
        for (cid, dw0) in ready {
            let cqe = CompletionEntry {
                dw0,
                dw1: 0,
                sq_head: head,
                sq_id: 0,
                cid,
                status: Status::SUCCESS,
            };
            self.post_async(0, cqe);
        }
    }

    /// Signals interrupt vector `iv` unless masked by INTMS.
    pub(crate) fn signal(&self, iv: u16) {
        if iv < 32 && self.intms.load(Ordering::Acquire) & (1 << iv) != 0 {
            self.irq_pending.fetch_or(1 << iv, Ordering::AcqRel);
            return;
        }
        let fd = lock(&self.vectors).get(usize::from(iv)).cloned();
        if let Some(fd) = fd {
            if let Err(e) = fd.write(1) {
                tracing::warn!("emu: interrupt vector {iv} signal failed: {e}");
            }
        }
    }

    pub(crate) fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, EmuError> {
        if count > self.cfg.vectors {
            return Err(EmuError::TooManyVectors {
                requested: count,
                supported: self.cfg.vectors,
            });
        }
        let fds = (0..count)
            .map(|_| {
                EventFd::new(libc::EFD_NONBLOCK)
                    .map(Arc::new)
                    .map_err(EmuError::EventFd)
            })
            .collect::<Result<Vec<_>, _>>()?;
        *lock(&self.vectors) = fds.clone();
        Ok(fds)
    }

    pub(crate) fn disable_interrupts(&self) {
        lock(&self.vectors).clear();
    }

    // ---------------------------------------------------------------- device thread

    fn start_worker(self: &Arc<Self>) -> Result<(), EmuError> {
        let words = self.sqs.len().div_ceil(64);
        let weak = Arc::downgrade(self);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("emu-device".into())
            .spawn(move || {
                let _ = rx.recv();
                worker_loop(weak);
            })
            .map_err(EmuError::Thread)?;
        let bits = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let _ = self.worker.set(Worker {
            thread: handle.thread().clone(),
            sq_pending: bits(words),
            cq_pending: bits(words),
            sleeping: AtomicBool::new(false),
        });
        let _ = tx.send(());
        Ok(())
    }

    fn kick(&self, w: &Worker, bits: &[AtomicU64], qid: u16) {
        let q = usize::from(qid);
        bits[q / 64].fetch_or(1 << (q % 64), Ordering::SeqCst);
        if w.sleeping.load(Ordering::SeqCst) {
            w.thread.unpark();
        }
    }

    /// One pass over pending doorbells; returns whether there was work.
    fn run_pending(&self, w: &Worker) -> bool {
        let mut any = false;
        for (word, bits) in w.cq_pending.iter().enumerate() {
            let mut set = bits.swap(0, Ordering::AcqRel);
            while set != 0 {
                let bit = set.trailing_zeros() as usize;
                set &= set - 1;
                any = true;
                self.resume_cq((word * 64 + bit) as u16);
            }
        }
        for (word, bits) in w.sq_pending.iter().enumerate() {
            let mut set = bits.swap(0, Ordering::AcqRel);
            while set != 0 {
                let bit = set.trailing_zeros() as usize;
                set &= set - 1;
                any = true;
                self.process_sq((word * 64 + bit) as u16);
            }
        }
        if any && self.events_pending.load(Ordering::Relaxed) {
            self.deliver_events();
        }
        any
    }
}

/// Releases delayed completions when due; runs while any held completion has a deadline.
fn timer_loop(weak: Weak<Ctrl>) {
    loop {
        let Some(ctrl) = weak.upgrade() else { return };
        match ctrl.next_deadline() {
            Some(t) => {
                let now = Instant::now();
                if t <= now {
                    ctrl.release_held(|h| h.deadline.is_some_and(|d| d <= now));
                } else {
                    drop(ctrl);
                    std::thread::sleep((t - now).min(Duration::from_millis(10)));
                }
            }
            None => {
                ctrl.timer_running.store(false, Ordering::Release);
                // A delay may have been added after the check: keep going if so and no
                // other timer took over.
                if ctrl.next_deadline().is_none() || ctrl.timer_running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
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

fn worker_loop(weak: Weak<Ctrl>) {
    const SPIN: u32 = 2000;
    let mut idle = 0u32;
    loop {
        let Some(ctrl) = weak.upgrade() else { return };
        let Some(w) = ctrl.worker.get() else { return };
        if ctrl.run_pending(w) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < SPIN {
            std::hint::spin_loop();
            continue;
        }
        w.sleeping.store(true, Ordering::SeqCst);
        let pending = w
            .sq_pending
            .iter()
            .chain(w.cq_pending.iter())
            .any(|b| b.load(Ordering::SeqCst) != 0);
        drop(ctrl);
        if !pending {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        if let Some(ctrl) = weak.upgrade() {
            if let Some(w) = ctrl.worker.get() {
                w.sleeping.store(false, Ordering::SeqCst);
            }
        }
        idle = 0;
    }
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
