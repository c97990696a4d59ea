//! The controller core: the shared state behind every handle, the events that touch all
//! of it (controller reset, power cut), and submission queue processing (fetch,
//! execute, complete). Each part of the state lives with the module that implements
//! it: registers in `registers.rs`, queues and doorbells in `queue.rs`, namespaces and
//! the write cache switch in `namespace.rs`, admin settings in `admin.rs`, asynchronous
//! events and interrupts in `events.rs`, error log and health in `health.rs`, faults in
//! `fault.rs` and `held.rs`, counters in `stats.rs`, the device thread in `worker.rs`.
//!
//! # Locks
//!
//! Every lock of the controller, in the order they may be taken (a thread holding one
//! takes only locks further down the list):
//!
//! 1. `iommu` mapping table (`Iommu::regions`): `map`/`unmap` hold it while they
//!    refresh every queue slot's view, one slot at a time.
//! 2. `regs.file`, the register file: CC writes hold it while they enable or reset the
//!    queues and flush the namespaces.
//! 3. `queues.sqs[0]`, the admin submission queue slot.
//! 4. `queues.cqs[0]`, the admin completion queue slot.
//! 5. One I/O submission queue slot `queues.sqs[i]`.
//! 6. One I/O completion queue slot `queues.cqs[i]`.
//! 7. A namespace's range locks (`Namespace::ranges`), in ascending stripe order: held
//!    shared by a command that changes blocks, exclusively by a fused Compare and Write.
//! 8. Leaf locks, never held while taking another lock (not even another leaf):
//!    `settings`, `events.queue`, `health`, `irq.vectors`, each `faults` list (rules,
//!    media ranges, corrupt ranges, held completions), the command log's entries, and
//!    a namespace's write cache shards (held while writing that shard back to the
//!    backend, which takes no lock).
//!
//! Queue slots of one level are taken one after another, never two at once. Processing
//! a submission queue holds its SQ slot, then its CQ slot, for the whole batch, so queue
//! pairs driven from different threads share no lock and no written cache line; admin
//! commands that manage I/O queues run with the admin pair held and take one I/O slot
//! (or an I/O SQ and then its CQ). Completions posted from outside a batch (held,
//! aborted, asynchronous events) take only the CQ slot. Because each IOMMU update
//! replaces a slot's snapshot under that slot's lock, an unmap returns only once no
//! batch can still reach the removed memory. Doorbell values are per-queue atomics.

use hugepages::sync::lock;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use nvme_spec::command::Fuse;
use nvme_spec::status::GenericStatus;
use nvme_spec::{CompletionEntry, Status, SubmissionEntry};

use crate::admin::AdminSettings;
use crate::config::{EmuConfig, ExecMode};
use crate::error::EmuError;
use crate::events::{AsyncEvents, Interrupts, AER_INVALID_DOORBELL_VALUE};
use crate::fault::{FaultAction, FaultState};
use crate::health::Health;
use crate::hostile::completion;
use crate::hostile::Hostile;
use crate::iommu::{Iommu, MemView};
use crate::log::{LogEntry, LogState};
use crate::namespace::Storage;
use crate::queue::{CqSlot, CqState, Queues, Scratch, Shadow, SqSlot};
use crate::registers::Registers;
use crate::stats::{GlobalCounters, QueueCounters};
use crate::worker::Worker;

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

/// The shared controller state behind every handle, grouped by concern; the module docs
/// give the order in which its locks may be taken.
pub(crate) struct Ctrl {
    pub cfg: EmuConfig,
    /// Largest data transfer in bytes (MDTS), `u64::MAX` when unlimited.
    pub max_xfer: u64,
    pub regs: Registers,
    pub queues: Queues,
    pub iommu: Arc<Iommu>,
    pub storage: Storage,
    /// Values set by admin commands (Set Features, Doorbell Buffer Config); a leaf lock.
    pub settings: Mutex<AdminSettings>,
    pub events: AsyncEvents,
    pub irq: Interrupts,
    /// Error log and SMART / Health values; a leaf lock.
    pub health: Mutex<Health>,
    pub faults: FaultState,
    pub log: Arc<LogState>,
    pub counters: GlobalCounters,
    /// The device thread of `mode=threaded`.
    pub worker: OnceLock<Worker>,
    /// This controller, for the threads it starts.
    pub weak: OnceLock<Weak<Ctrl>>,
    /// The hostile device, when configured: every answer may be a lie.
    pub hostile: Option<Hostile>,
}

impl Ctrl {
    pub(crate) fn new(cfg: EmuConfig) -> Result<Arc<Self>, EmuError> {
        cfg.validate()?;
        let storage = Storage::new(&cfg)?;
        let iommu = Arc::new(Iommu::new());
        let ctrl = Arc::new(Self {
            max_xfer: cfg.max_transfer_bytes().unwrap_or(u64::MAX),
            regs: Registers::new(&cfg),
            queues: Queues::new(usize::from(cfg.qpairs) + 1, &iommu),
            iommu: iommu.clone(),
            storage,
            settings: Mutex::new(AdminSettings::new(&cfg)),
            events: AsyncEvents::default(),
            irq: Interrupts::default(),
            health: Mutex::new(Health::new()),
            faults: FaultState::default(),
            log: Arc::new(LogState::new(cfg.log)),
            counters: GlobalCounters::default(),
            worker: OnceLock::new(),
            weak: OnceLock::new(),
            hostile: cfg.hostile.map(Hostile::new),
            cfg,
        });
        let _ = ctrl.weak.set(Arc::downgrade(&ctrl));
        if ctrl.hostile.is_some() {
            ctrl.queues.record_segments();
        }
        let weak = Arc::downgrade(&ctrl);
        iommu.set_refresh(Box::new(move |regions| {
            if let Some(ctrl) = weak.upgrade() {
                ctrl.queues.refresh_views(regions);
            }
        }));
        if ctrl.cfg.mode == ExecMode::Threaded {
            ctrl.start_worker()?;
        }
        Ok(ctrl)
    }

    /// Controller reset: every queue, pending request and volatile setting goes.
    pub(crate) fn reset(&self) {
        self.regs.ready.store(false, Ordering::Release);
        self.queues.reset();
        let discarded = self.faults.held.clear();
        self.faults.count_discarded(discarded);
        *lock(&self.settings) = AdminSettings::new(&self.cfg);
        self.events.reset();
        self.storage.reset_write_cache();
        self.storage.close_open_zones();
        self.regs.cfs.store(false, Ordering::Release);
        self.irq.reset();
        GlobalCounters::bump(&self.counters.resets);
    }

    /// Simulated power loss: every write not yet durable is lost.
    pub(crate) fn power_cut(&self) {
        let lost = self.storage.power_cut();
        self.count_power_cut(lost);
    }

    /// Simulated power loss while the cache destages: what `cut` keeps survives.
    pub(crate) fn power_cut_partial(&self, cut: &crate::power::PartialCut) -> usize {
        let (kept, lost) = self.storage.power_cut_partial(cut);
        self.count_power_cut(lost);
        kept
    }

    fn count_power_cut(&self, lost: usize) {
        self.counters
            .lost_blocks
            .fetch_add(lost as u64, Ordering::Relaxed);
        GlobalCounters::bump(&self.counters.power_cuts);
        let mut health = lock(&self.health);
        health.power_cycles += 1;
        if !health.clean_shutdown {
            health.unsafe_shutdowns += 1;
        }
    }

    pub(crate) fn max_transfer(&self) -> u64 {
        self.max_xfer
    }

    pub(crate) fn vwc_present(&self) -> bool {
        self.storage.write_cache_present
    }

    /// Posts overflowed completions and restarts submission queues that stalled on a full
    /// completion queue.
    pub(crate) fn resume_cq(&self, cqid: u16) {
        let sqs = {
            let mut slot = lock(&self.queues.cqs[usize::from(cqid)]);
            let CqSlot { view, q } = &mut *slot;
            let Some(cq) = q.as_mut() else { return };
            self.queues.doorbells[usize::from(cqid)]
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
        let mut sq_guard = lock(&self.queues.sqs[usize::from(qid)]);
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
                    self.queues.doorbells[usize::from(qid)]
                        .sq_tail
                        .load(Ordering::Acquire)
                }
            },
            None => self.queues.doorbells[usize::from(qid)]
                .sq_tail
                .load(Ordering::Acquire),
        };
        if tail >= sq.size {
            GlobalCounters::bump(&self.counters.invalid_doorbells);
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
        let mut cq_guard = lock(&self.queues.cqs[usize::from(cqid)]);
        let CqSlot {
            view: cq_view,
            q: cq_q,
        } = &mut *cq_guard;
        let Some(cq) = cq_q.as_mut() else { return };
        let cq_db = &self.queues.doorbells[usize::from(cqid)].cq_head;
        let page_size = self.regs.page_size();
        let mut extra = Vec::new();
        let mut posted = false;
        let mut failed_fatally = false;
        let mut stalled = false;
        'fetch: loop {
            while sq.head != sq.tail {
                if !cq.has_room(cq_view, cq_db) {
                    self.queues.doorbells[usize::from(cqid)]
                        .cq_stalled
                        .store(true, Ordering::Release);
                    // The host may have freed room between the check and the flag.
                    if !cq.has_room(cq_view, cq_db) {
                        stalled = true;
                        break;
                    }
                    self.queues.doorbells[usize::from(cqid)]
                        .cq_stalled
                        .store(false, Ordering::Release);
                }
                let slot = sq.head;
                let raw = match view.read_sqe(sq.base.wrapping_add(u64::from(slot) * 64)) {
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
                if let Some(h) = &self.hostile {
                    h.wild_walk(view, sqe.prp1, sqe.prp2);
                }
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
                    Some(FaultAction::FailWith { status, crd, dnr }) => {
                        let crd = if lock(&self.settings).acre {
                            crd & 3
                        } else {
                            0
                        };
                        Outcome::Done(0, status.with_crd(crd).with_dnr(dnr))
                    }
                    _ if sqe.cdw0.fuse() != Fuse::Normal => {
                        self.exec_fused(&mut ctx, sq, qid, &sqe, page_size)
                    }
                    _ => {
                        if qid == 0 {
                            self.exec_admin(&mut ctx, &sqe, page_size)
                        } else {
                            self.exec_io(&mut ctx, &sqe, page_size)
                        }
                    }
                };
                if let Some(h) = &self.hostile {
                    let slba = io_lbas(qid, &sqe).map_or(0, |r| r.start);
                    h.record(qid, sqe.opcode(), slba, &view.take_trace());
                }
                let Outcome::Done(dw0, status) = outcome else {
                    continue;
                };
                let error_lba = scratch.error_lba.take();
                let dw1 = std::mem::take(&mut scratch.dw1);
                if !status.is_success() {
                    counters.failed += 1;
                    self.record_error(qid, &sqe, status, error_lba);
                }
                if self.log.enabled() {
                    self.log.push(log_entry(qid, slot, &sqe, status));
                }
                let mut cqe = CompletionEntry {
                    dw0,
                    dw1,
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
                let written = match &self.hostile {
                    None => cq.post(cq_view, cqe),
                    Some(h) => completion::post_hostile(h, cq, cq_view, cq_db, cqe, sq.size),
                };
                if written.is_err() {
                    GlobalCounters::bump(&self.counters.dma_errors);
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
                self.queues.doorbells[usize::from(cqid)]
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
        if let Some(iv) = self
            .hostile
            .as_ref()
            .and_then(|h| h.spurious_vector(lock(&self.irq.vectors).len() as u16))
        {
            self.signal(iv);
        }
        if failed_fatally {
            self.regs.fatal();
        }
    }

    /// Posts a completion from outside queue processing (held, aborted, async events).
    pub(crate) fn post_async(&self, cqid: u16, cqe: CompletionEntry) {
        let mut slot = lock(&self.queues.cqs[usize::from(cqid)]);
        let CqSlot { view, q } = &mut *slot;
        let Some(cq) = q.as_mut() else { return };
        cq.overflow.push_back(cqe);
        self.drain_held(cqid, cq, view);
    }

    /// Posts the completions CQ `cqid` holds back as far as its free entries allow,
    /// signals them, and marks the queue stalled while some are still held.
    pub(crate) fn drain_held(&self, cqid: u16, cq: &mut CqState, view: &mut MemView) {
        match cq.drain_overflow(view, &self.queues.doorbells[usize::from(cqid)].cq_head) {
            Ok(n) if n > 0 && cq.ien => self.signal(cq.iv),
            Ok(_) => {}
            Err(_) => {
                GlobalCounters::bump(&self.counters.dma_errors);
                self.regs.fatal();
            }
        }
        if !cq.overflow.is_empty() {
            self.queues.doorbells[usize::from(cqid)]
                .cq_stalled
                .store(true, Ordering::Release);
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

/// The command log's record of `sqe`, fetched from slot `slot` of queue `qid`.
pub(crate) fn log_entry(qid: u16, slot: u32, sqe: &SubmissionEntry, status: Status) -> LogEntry {
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
        fuse: sqe.cdw0.fuse().into_bits(),
        sq_slot: slot as u16,
        psdt: sqe.cdw0.psdt(),
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
