//! Admin command set (NVMe Base Specification 2.0, section 5).

use std::sync::atomic::Ordering;

use nvme_spec::admin::{
    AbortCdw10, CreateCqCdw11, CreateSqCdw11, GetFeaturesCdw10, GetLogPageCdw10, GetLogPageCdw11,
    IdentifyCdw10, QueueCdw10, SetFeaturesCdw10,
};
use nvme_spec::command::Psdt;
use nvme_spec::features::{FeatureId as Fid, Select};
use nvme_spec::log::LogPageId as Lid;
use nvme_spec::status::{CommandSpecificStatus as Cs, GenericStatus as G};
use nvme_spec::{AdminOpcode as Op, CompletionEntry, Status, SubmissionEntry};

use crate::config::EmuConfig;
use crate::controller::{generic, shadow_for, Ctrl, Ctx, Outcome};
use crate::identify;
use crate::prp::{self, PrpError};
use crate::queue::{CqState, SqState};
use hugepages::sync::lock;

/// Largest admin data transfer accepted (Get Log Page may ask for up to 16 GiB).
const ADMIN_MAX_TRANSFER: u64 = 1 << 20;

/// What admin commands set: features and the Doorbell Buffer Config addresses. A
/// controller reset returns them to their power-on values.
pub(crate) struct AdminSettings {
    /// Number of I/O SQs and CQs granted by Set Features Number of Queues.
    pub nq: (u16, u16),
    /// Set once an I/O queue was created: Number of Queues may no longer change.
    pub nq_locked: bool,
    pub arbitration: u32,
    pub coalescing: u32,
    pub async_config: u32,
    /// Shadow doorbell and EventIdx buffer addresses (Doorbell Buffer Config).
    pub dbbuf: Option<(u64, u64)>,
    /// Advanced Command Retry Enable (Host Behavior Support, byte 0): completions
    /// carry CRD only when it is set.
    pub acre: bool,
}

impl AdminSettings {
    /// Power-on values (also what Get Features reports as default and saved).
    pub(crate) fn new(cfg: &EmuConfig) -> Self {
        Self {
            nq: (cfg.qpairs, cfg.qpairs),
            nq_locked: false,
            arbitration: 0,
            coalescing: 0,
            async_config: 0,
            dbbuf: None,
            acre: false,
        }
    }
}

/// Host Behavior Support (NVMe Base 2.0 §5.27.1.22): a 512-byte data structure.
const HOST_BEHAVIOR_SUPPORT: Fid = Fid(0x16);
const HOST_BEHAVIOR_BYTES: usize = 512;

fn cs(code: Cs) -> Status {
    Status::command_specific(code)
}

fn done(status: Status) -> Outcome {
    Outcome::Done(0, status)
}

fn ok(dw0: u32) -> Outcome {
    Outcome::Done(dw0, Status::SUCCESS)
}

impl Ctrl {
    pub(crate) fn exec_admin(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        if sqe.cdw0.psdt() != Psdt::Prp {
            return done(generic(G::InvalidFieldInCommand));
        }
        match sqe.admin_opcode() {
            Op::IDENTIFY => self.identify(ctx, sqe, ps),
            Op::GET_LOG_PAGE => self.get_log_page(ctx, sqe, ps),
            Op::GET_FEATURES | Op::SET_FEATURES
                if Fid((sqe.cdw10 & 0xff) as u8) == HOST_BEHAVIOR_SUPPORT =>
            {
                self.host_behavior(ctx, sqe, ps)
            }
            Op::GET_FEATURES => self.get_features(sqe),
            Op::SET_FEATURES => self.set_features(sqe),
            Op::CREATE_IO_CQ => self.create_cq(sqe, ps),
            Op::CREATE_IO_SQ => self.create_sq(sqe, ps),
            Op::DELETE_IO_SQ => self.delete_sq(ctx, sqe),
            Op::DELETE_IO_CQ => self.delete_cq(sqe),
            Op::ABORT => self.abort(ctx, sqe),
            Op::ASYNC_EVENT_REQUEST => self.async_event_request(sqe),
            Op::DOORBELL_BUFFER_CONFIG => self.doorbell_buffer_config(sqe, ps),
            _ => done(generic(G::InvalidCommandOpcode)),
        }
    }

    /// Copies `data` (zero padded to `len`) to the command's PRPs.
    fn send_to_host(
        &self,
        ctx: &mut Ctx<'_>,
        sqe: &SubmissionEntry,
        ps: u64,
        data: &[u8],
        len: usize,
    ) -> Status {
        // Admin data is at most a few pages; bound it even when MDTS is unlimited.
        if len as u64 > self.max_transfer().min(ADMIN_MAX_TRANSFER) {
            return generic(G::InvalidFieldInCommand);
        }
        match prp::collect(ctx.view, sqe.prp1, sqe.prp2, len, ps, &mut ctx.scratch.segs) {
            Ok(()) => {}
            Err(PrpError::Offset) => return generic(G::PrpOffsetInvalid),
            Err(PrpError::Dma(_)) => {
                ctx.counters.dma_errors += 1;
                return generic(G::DataTransferError);
            }
        }
        let mut at = 0;
        for s in &ctx.scratch.segs {
            let n = s.len();
            let src_end = (at + n).min(data.len());
            if at < src_end {
                s.copy_from(0, &data[at..src_end]);
            }
            if at + n > src_end {
                // Zero the part beyond the data.
                let start = src_end.saturating_sub(at);
                let zeros = [0u8; 512];
                let mut z = start;
                while z < n {
                    let k = (n - z).min(zeros.len());
                    s.copy_from(z, &zeros[..k]);
                    z += k;
                }
            }
            at += n;
        }
        Status::SUCCESS
    }

    /// Get or Set Features Host Behavior Support: byte 0 is ACRE; the rest is kept
    /// zero (the other host behaviors are not modelled).
    fn host_behavior(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        if sqe.admin_opcode() == Op::GET_FEATURES {
            let mut data = [0u8; HOST_BEHAVIOR_BYTES];
            data[0] = u8::from(lock(&self.settings).acre);
            return done(self.send_to_host(ctx, sqe, ps, &data, HOST_BEHAVIOR_BYTES));
        }
        if SetFeaturesCdw10::from_bits(sqe.cdw10).sv() {
            return done(cs(Cs::FeatureIdentifierNotSaveable));
        }
        match prp::collect(
            ctx.view,
            sqe.prp1,
            sqe.prp2,
            HOST_BEHAVIOR_BYTES,
            ps,
            &mut ctx.scratch.segs,
        ) {
            Ok(()) => {}
            Err(PrpError::Offset) => return done(generic(G::PrpOffsetInvalid)),
            Err(PrpError::Dma(_)) => {
                ctx.counters.dma_errors += 1;
                return done(generic(G::DataTransferError));
            }
        }
        let mut acre = [0u8; 1];
        match ctx.scratch.segs.first() {
            Some(s) if s.len() > 0 => s.copy_to(0, &mut acre),
            _ => return done(generic(G::DataTransferError)),
        }
        // ACRE is one bit; other values of the byte are reserved.
        if acre[0] > 1 {
            return done(generic(G::InvalidFieldInCommand));
        }
        lock(&self.settings).acre = acre[0] == 1;
        ok(0)
    }

    fn identify(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let cns = IdentifyCdw10::from_bits(sqe.cdw10).cns();
        let nn = self.cfg.namespaces;
        let mut data = match cns {
            0x00 => {
                if sqe.nsid == 0 || sqe.nsid > nn {
                    return done(generic(G::InvalidNamespaceOrFormat));
                }
                let ns = &self.storage.namespaces[(sqe.nsid - 1) as usize];
                identify::namespace(
                    &self.cfg.serial,
                    ns.nsid,
                    ns.blocks,
                    ns.lba_shift,
                    ns.metadata,
                )
            }
            0x01 => identify::controller(&self.cfg, self.vwc_present()),
            0x02 => {
                if sqe.nsid >= 0xffff_fffe {
                    return done(generic(G::InvalidNamespaceOrFormat));
                }
                identify::active_ns_list(nn, sqe.nsid)
            }
            0x03 => {
                if sqe.nsid == 0 || sqe.nsid > nn {
                    return done(generic(G::InvalidNamespaceOrFormat));
                }
                let zoned = self
                    .storage
                    .get(sqe.nsid)
                    .is_some_and(|ns| ns.zones.is_some());
                identify::namespace_descriptors(&self.cfg.serial, sqe.nsid, zoned)
            }
            0x05 => {
                let csi = nvme_spec::admin::IdentifyCdw11::from_bits(sqe.cdw11).csi();
                if sqe.nsid == 0 || sqe.nsid > nn {
                    return done(generic(G::InvalidNamespaceOrFormat));
                }
                let ns = &self.storage.namespaces[(sqe.nsid - 1) as usize];
                match (csi, &ns.zones) {
                    (0, _) => identify::namespace_nvm(ns.metadata),
                    (2, Some(zones)) => identify::namespace_zns(zones),
                    _ => return done(generic(G::InvalidFieldInCommand)),
                }
            }
            0x06 => match nvme_spec::admin::IdentifyCdw11::from_bits(sqe.cdw11).csi() {
                // The NVM Command Set defines no controller fields the emulator sets.
                0 => [0u8; 4096],
                // ZASL 0: Zone Append is limited by MDTS.
                2 if self.cfg.zoned.is_some() => {
                    nvme_spec::zns::IdentifyControllerZns::default().encode()
                }
                _ => return done(generic(G::InvalidFieldInCommand)),
            },
            _ => return done(generic(G::InvalidFieldInCommand)),
        };
        if let Some(h) = &self.hostile {
            h.identify(cns, &mut data);
        }
        done(self.send_to_host(ctx, sqe, ps, &data, 4096))
    }

    fn smart_values(&self) -> identify::Smart {
        // The admin queue's own slot is locked by the caller; it holds no I/O counts.
        let c = self.queues.io_counters();
        let health = lock(&self.health);
        identify::Smart {
            read_units: c.read_units,
            write_units: c.write_units,
            host_reads: c.reads,
            host_writes: c.writes,
            power_cycles: health.power_cycles,
            unsafe_shutdowns: health.unsafe_shutdowns,
            media_errors: health.media_errors,
            error_entries: health.error_count,
        }
    }

    fn get_log_page(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let dw10 = GetLogPageCdw10::from_bits(sqe.cdw10);
        let lid = Lid(dw10.lid());
        let numd = (usize::from(dw10.numdl())
            | (usize::from(GetLogPageCdw11::from_bits(sqe.cdw11).numdu()) << 16))
            + 1;
        let len = numd * 4;
        let offset = u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32);
        if offset & 3 != 0 {
            return done(generic(G::InvalidFieldInCommand));
        }
        let page: Vec<u8> = match lid {
            Lid::ERROR_INFORMATION => {
                let entries: Vec<_> = lock(&self.health).errors.iter().copied().collect();
                identify::error_log(&entries)
            }
            Lid::SMART_HEALTH => identify::smart(&self.smart_values()).to_vec(),
            Lid::FIRMWARE_SLOT => {
                let mut b = vec![0u8; 512];
                b[0] = 1; // active slot 1
                b[8..8 + identify::FIRMWARE.len()].copy_from_slice(identify::FIRMWARE.as_bytes());
                b[8 + identify::FIRMWARE.len()..16].fill(b' ');
                b
            }
            _ => return done(cs(Cs::InvalidLogPage)),
        };
        if offset >= page.len() as u64 && offset != 0 {
            return done(generic(G::InvalidFieldInCommand));
        }
        let start = (offset as usize).min(page.len());
        done(self.send_to_host(ctx, sqe, ps, &page[start..], len))
    }

    fn get_features(&self, sqe: &SubmissionEntry) -> Outcome {
        let dw10 = GetFeaturesCdw10::from_bits(sqe.cdw10);
        let f = Fid(dw10.fid());
        let known = matches!(
            f,
            Fid::ARBITRATION
                | Fid::POWER_MANAGEMENT
                | Fid::TEMPERATURE_THRESHOLD
                | Fid::NUMBER_OF_QUEUES
                | Fid::INTERRUPT_COALESCING
                | Fid::ASYNC_EVENT_CONFIG
        ) || (f == Fid::VOLATILE_WRITE_CACHE && self.vwc_present());
        if !known {
            return done(generic(G::InvalidFieldInCommand));
        }
        let defaults = AdminSettings::new(&self.cfg);
        let settings = lock(&self.settings);
        let (state, vwc) = match dw10.sel() {
            Select::Current => (&*settings, self.storage.write_cache_enabled()),
            // Nothing is saveable, so saved values are the defaults.
            Select::Default | Select::Saved => (&defaults, self.cfg.vwc),
            // Changeable, not saveable, not namespace specific.
            Select::SupportedCapabilities => return ok(1 << 2),
            _ => return done(generic(G::InvalidFieldInCommand)),
        };
        match f {
            Fid::ARBITRATION => ok(state.arbitration),
            Fid::POWER_MANAGEMENT => ok(0),
            Fid::TEMPERATURE_THRESHOLD => ok(343),
            Fid::VOLATILE_WRITE_CACHE => ok(u32::from(vwc)),
            Fid::NUMBER_OF_QUEUES => {
                ok(u32::from(state.nq.0 - 1) | (u32::from(state.nq.1 - 1) << 16))
            }
            Fid::INTERRUPT_COALESCING => ok(state.coalescing),
            _ => ok(state.async_config),
        }
    }

    fn set_features(&self, sqe: &SubmissionEntry) -> Outcome {
        let dw10 = SetFeaturesCdw10::from_bits(sqe.cdw10);
        let f = Fid(dw10.fid());
        if dw10.sv() {
            return done(cs(Cs::FeatureIdentifierNotSaveable));
        }
        let dw11 = sqe.cdw11;
        match f {
            Fid::ARBITRATION => {
                lock(&self.settings).arbitration = dw11;
                ok(0)
            }
            Fid::POWER_MANAGEMENT => {
                if dw11 & 0x1f != 0 {
                    return done(generic(G::InvalidFieldInCommand));
                }
                ok(0)
            }
            Fid::TEMPERATURE_THRESHOLD => ok(0),
            Fid::VOLATILE_WRITE_CACHE => {
                if !self.vwc_present() {
                    return done(generic(G::InvalidFieldInCommand));
                }
                match self.storage.set_write_cache(dw11 & 1 != 0) {
                    Ok(()) => ok(0),
                    Err(_) => done(generic(G::InternalError)),
                }
            }
            Fid::NUMBER_OF_QUEUES => {
                let nsqr = dw11 & 0xffff;
                let ncqr = dw11 >> 16;
                if nsqr == 0xffff || ncqr == 0xffff {
                    return done(generic(G::InvalidFieldInCommand));
                }
                let mut settings = lock(&self.settings);
                if settings.nq_locked {
                    return done(generic(G::CommandSequenceError));
                }
                let max = u32::from(self.cfg.qpairs);
                let nsq = (nsqr + 1).min(max) as u16;
                let ncq = (ncqr + 1).min(max) as u16;
                settings.nq = (nsq, ncq);
                ok(u32::from(nsq - 1) | (u32::from(ncq - 1) << 16))
            }
            Fid::INTERRUPT_COALESCING => {
                lock(&self.settings).coalescing = dw11 & 0xffff;
                ok(0)
            }
            Fid::ASYNC_EVENT_CONFIG => {
                lock(&self.settings).async_config = dw11;
                ok(0)
            }
            _ => done(generic(G::InvalidFieldInCommand)),
        }
    }

    fn create_cq(&self, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let dw10 = QueueCdw10::from_bits(sqe.cdw10);
        let dw11 = CreateCqCdw11::from_bits(sqe.cdw11);
        let (qid, qsize) = (dw10.qid(), u32::from(dw10.qsize()));
        let (pc, ien, iv) = (dw11.pc(), dw11.ien(), dw11.iv());
        let allowed = lock(&self.settings).nq.1;
        if qid == 0 || qid > allowed || usize::from(qid) >= self.queues.cqs.len() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        let mut slot = lock(&self.queues.cqs[usize::from(qid)]);
        if slot.q.is_some() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        if qsize == 0 || qsize > u32::from(self.cfg.mqes) {
            return done(cs(Cs::InvalidQueueSize));
        }
        if iv >= self.cfg.vectors {
            return done(cs(Cs::InvalidInterruptVector));
        }
        if !pc {
            // CAP.CQR = 1: queues must be physically contiguous.
            return done(generic(G::InvalidFieldInCommand));
        }
        if sqe.prp1 == 0 || sqe.prp1 & (ps - 1) != 0 {
            return done(generic(G::PrpOffsetInvalid));
        }
        let mut cq = CqState::new(sqe.prp1, qsize + 1, ien, iv);
        let dbbuf = lock(&self.settings).dbbuf;
        if let Some((db, ei)) = dbbuf {
            let sh = shadow_for(db, ei, 2 * usize::from(qid) + 1, self.regs.stride_shift);
            let _ = slot.view.store_u32(sh.db, 0);
            let _ = slot.view.store_u32(sh.ei, 0);
            cq.shadow = Some(sh);
        }
        slot.q = Some(cq);
        self.queues.doorbells[usize::from(qid)]
            .cq_head
            .store(0, Ordering::Release);
        self.queues.doorbells[usize::from(qid)]
            .cq_size
            .store(qsize + 1, Ordering::Release);
        lock(&self.settings).nq_locked = true;
        ok(0)
    }

    fn create_sq(&self, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let dw10 = QueueCdw10::from_bits(sqe.cdw10);
        let dw11 = CreateSqCdw11::from_bits(sqe.cdw11);
        let (qid, qsize) = (dw10.qid(), u32::from(dw10.qsize()));
        let (pc, cqid) = (dw11.pc(), dw11.cqid());
        let allowed = lock(&self.settings).nq.0;
        if qid == 0 || qid > allowed || usize::from(qid) >= self.queues.sqs.len() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        let mut slot = lock(&self.queues.sqs[usize::from(qid)]);
        if slot.q.is_some() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        if cqid == 0 || usize::from(cqid) >= self.queues.cqs.len() {
            return done(cs(Cs::CompletionQueueInvalid));
        }
        let mut cq_slot = lock(&self.queues.cqs[usize::from(cqid)]);
        let Some(cq) = cq_slot.q.as_mut() else {
            return done(cs(Cs::CompletionQueueInvalid));
        };
        if qsize == 0 || qsize > u32::from(self.cfg.mqes) {
            return done(cs(Cs::InvalidQueueSize));
        }
        if !pc {
            return done(generic(G::InvalidFieldInCommand));
        }
        if sqe.prp1 == 0 || sqe.prp1 & (ps - 1) != 0 {
            return done(generic(G::PrpOffsetInvalid));
        }
        cq.sqs.push(qid);
        drop(cq_slot);
        let mut sq = SqState {
            base: sqe.prp1,
            size: qsize + 1,
            head: 0,
            tail: 0,
            cqid,
            shadow: None,
            aborts: Vec::new(),
        };
        let dbbuf = lock(&self.settings).dbbuf;
        if let Some((db, ei)) = dbbuf {
            let sh = shadow_for(db, ei, 2 * usize::from(qid), self.regs.stride_shift);
            let _ = slot.view.store_u32(sh.db, 0);
            let _ = slot.view.store_u32(sh.ei, 0);
            sq.shadow = Some(sh);
        }
        slot.q = Some(sq);
        // Fresh queue: no stale counters from an earlier incarnation matter, keep them
        // (they feed SMART and stats).
        self.queues.doorbells[usize::from(qid)]
            .sq_tail
            .store(0, Ordering::Release);
        self.queues.doorbells[usize::from(qid)]
            .sq_size
            .store(qsize + 1, Ordering::Release);
        lock(&self.settings).nq_locked = true;
        ok(0)
    }

    fn delete_sq(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry) -> Outcome {
        let qid = QueueCdw10::from_bits(sqe.cdw10).qid();
        if qid == 0 || usize::from(qid) >= self.queues.sqs.len() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        let mut slot = lock(&self.queues.sqs[usize::from(qid)]);
        let Some(sq) = slot.q.take() else {
            return done(cs(Cs::InvalidQueueIdentifier));
        };
        self.queues.doorbells[usize::from(qid)]
            .sq_size
            .store(0, Ordering::Release);
        drop(slot);
        // Held commands of this queue complete as aborted by the deletion.
        let aborted = Status::generic(G::CommandAbortedSqDeletion);
        for h in self.faults.held.take(|h| h.cqe.sq_id == qid) {
            let cqe = CompletionEntry {
                status: aborted,
                ..h.cqe
            };
            if h.cqid == 0 {
                ctx.extra.push(cqe);
            } else {
                self.post_async(h.cqid, cqe);
            }
        }
        if let Some(cq) = lock(&self.queues.cqs[usize::from(sq.cqid)]).q.as_mut() {
            cq.sqs.retain(|&s| s != qid);
        }
        ok(0)
    }

    fn delete_cq(&self, sqe: &SubmissionEntry) -> Outcome {
        let qid = QueueCdw10::from_bits(sqe.cdw10).qid();
        if qid == 0 || usize::from(qid) >= self.queues.cqs.len() {
            return done(cs(Cs::InvalidQueueIdentifier));
        }
        let mut slot = lock(&self.queues.cqs[usize::from(qid)]);
        match slot.q.as_ref() {
            None => return done(cs(Cs::InvalidQueueIdentifier)),
            Some(cq) if !cq.sqs.is_empty() => return done(cs(Cs::InvalidQueueDeletion)),
            Some(_) => {}
        }
        slot.q = None;
        self.queues.doorbells[usize::from(qid)]
            .cq_size
            .store(0, Ordering::Release);
        ok(0)
    }

    fn abort(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry) -> Outcome {
        let dw10 = AbortCdw10::from_bits(sqe.cdw10);
        let (sqid, cid) = (dw10.sqid(), dw10.cid());
        let found = self
            .faults
            .held
            .take_first(|h| h.cqe.sq_id == sqid && h.cqe.cid == cid);
        match found {
            Some(h) => {
                let cqe = CompletionEntry {
                    dw0: 0,
                    status: Status::generic(G::CommandAbortRequested),
                    ..h.cqe
                };
                if h.cqid == 0 {
                    ctx.extra.push(cqe);
                } else {
                    self.post_async(h.cqid, cqe);
                }
                ok(0)
            }
            None if self.abort_queued(sqid, cid) => ok(0),
            // Dword 0 bit 0 set: the command was not aborted.
            None => ok(1),
        }
    }

    /// Marks command `cid` for abort if it sits in I/O SQ `sqid` between the head and the
    /// tail the host published (e.g. held back by a full completion queue).
    fn abort_queued(&self, sqid: u16, cid: u16) -> bool {
        // The admin queue is locked by the caller; its own commands are never queued.
        if sqid == 0 || usize::from(sqid) >= self.queues.sqs.len() {
            return false;
        }
        let mut slot = lock(&self.queues.sqs[usize::from(sqid)]);
        let crate::queue::SqSlot { view, q, .. } = &mut *slot;
        let Some(sq) = q.as_mut() else { return false };
        let tail = match sq.shadow {
            Some(sh) => view.load_u32(sh.db).unwrap_or(sq.tail),
            None => self.queues.doorbells[usize::from(sqid)]
                .sq_tail
                .load(Ordering::Acquire),
        };
        if tail >= sq.size {
            return false;
        }
        let mut at = sq.head;
        while at != tail {
            let Ok(raw) = view.read_sqe(sq.base.wrapping_add(u64::from(at) * 64)) else {
                return false;
            };
            if SubmissionEntry::from_bytes(&raw).cid() == cid {
                sq.aborts.push(cid);
                return true;
            }
            at = if at + 1 == sq.size { 0 } else { at + 1 };
        }
        false
    }

    fn async_event_request(&self, sqe: &SubmissionEntry) -> Outcome {
        let mut events = lock(&self.events.queue);
        if let Some(event) = events.raised.pop_front() {
            return ok(event);
        }
        if events.requests.len() > usize::from(self.cfg.aerl) {
            return done(cs(Cs::AsyncEventRequestLimitExceeded));
        }
        events.requests.push(sqe.cid());
        Outcome::Deferred
    }

    fn doorbell_buffer_config(&self, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let (db, ei) = (sqe.prp1, sqe.prp2);
        if db == 0 || ei == 0 || db & (ps - 1) != 0 || ei & (ps - 1) != 0 {
            return done(generic(G::InvalidFieldInCommand));
        }
        lock(&self.settings).dbbuf = Some((db, ei));
        let shift = self.regs.stride_shift;
        // The admin queue keeps using its MMIO doorbells (as Linux and QEMU do).
        for qid in 1..self.queues.sqs.len() {
            let mut slot = lock(&self.queues.sqs[qid]);
            let crate::queue::SqSlot { view, q, .. } = &mut *slot;
            if let Some(sq) = q.as_mut() {
                let sh = shadow_for(db, ei, 2 * qid, shift);
                let _ = view.store_u32(sh.db, sq.tail);
                let _ = view.store_u32(sh.ei, sq.tail);
                sq.shadow = Some(sh);
            }
        }
        for qid in 1..self.queues.cqs.len() {
            let mut slot = lock(&self.queues.cqs[qid]);
            let crate::queue::CqSlot { view, q } = &mut *slot;
            if let Some(cq) = q.as_mut() {
                let sh = shadow_for(db, ei, 2 * qid + 1, shift);
                let _ = view.store_u32(sh.db, cq.head);
                let _ = view.store_u32(sh.ei, cq.head);
                cq.shadow = Some(sh);
            }
        }
        ok(0)
    }
}
