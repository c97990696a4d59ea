//! The register file: CAP/VS, the CC/CSTS state machine (enable checks, reset,
//! shutdown), AQA/ASQ/ACQ, INTMS/INTMC and doorbell decoding.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use nvme_spec::registers::{offset, ShutdownNotification, ShutdownStatus};
use nvme_spec::{Aqa, Cap, Cc, Csts, Version};

use crate::config::EmuConfig;
use crate::controller::Ctrl;
use crate::events::{AER_INVALID_DOORBELL, AER_INVALID_DOORBELL_VALUE};
use crate::stats::GlobalCounters;
use hugepages::sync::lock;

/// The controller registers (doorbells live with the queues, in `Doorbells`).
pub(crate) struct Registers {
    /// CAP, fixed at creation.
    pub cap: u64,
    /// Doorbell stride as a shift: 2 + CAP.DSTRD.
    pub stride_shift: u32,
    /// The registers that are plain state; the first lock of the controller.
    pub file: Mutex<RegisterFile>,
    /// CSTS.RDY.
    pub ready: AtomicBool,
    /// CSTS.CFS.
    pub cfs: AtomicBool,
    /// Memory page size as a shift, from CC.MPS when the controller was enabled.
    pub page_shift: AtomicU32,
    /// CC.CSS was 110b when the controller was enabled: every I/O command set is on.
    pub all_command_sets: AtomicBool,
}

/// CC, AQA, ASQ, ACQ and CSTS.SHST.
pub(crate) struct RegisterFile {
    pub cc: Cc,
    pub aqa: u32,
    pub asq: u64,
    pub acq: u64,
    pub shst: ShutdownStatus,
}

impl RegisterFile {
    /// Power-on values.
    pub(crate) fn new() -> Self {
        Self {
            cc: Cc::new(),
            aqa: 0,
            asq: 0,
            acq: 0,
            shst: ShutdownStatus::Normal,
        }
    }
}

impl Registers {
    /// Power-on registers of a controller configured by `cfg`.
    pub(crate) fn new(cfg: &EmuConfig) -> Self {
        let cap = Cap::new()
            .with_mqes(cfg.mqes)
            .with_cqr(true)
            .with_to(cfg.timeout)
            .with_dstrd(cfg.dstrd)
            .with_css(if cfg.zoned.is_some() {
                nvme_spec::registers::CAP_CSS_NVM | nvme_spec::registers::CAP_CSS_IO_COMMAND_SETS
            } else {
                nvme_spec::registers::CAP_CSS_NVM
            })
            .with_mpsmin(cfg.mpsmin)
            .with_mpsmax(cfg.mpsmax);
        Self {
            cap: cap.into_bits(),
            stride_shift: 2 + u32::from(cfg.dstrd),
            file: Mutex::new(RegisterFile::new()),
            ready: AtomicBool::new(false),
            cfs: AtomicBool::new(false),
            page_shift: AtomicU32::new(12),
            all_command_sets: AtomicBool::new(false),
        }
    }

    /// Whether the host enabled every I/O command set (CC.CSS 110b), which the zoned
    /// commands need.
    pub(crate) fn all_command_sets(&self) -> bool {
        self.all_command_sets.load(Ordering::Acquire)
    }

    /// The memory page size (CC.MPS) in bytes.
    #[inline]
    pub(crate) fn page_size(&self) -> u64 {
        1 << self.page_shift.load(Ordering::Relaxed)
    }

    /// Sets CSTS.CFS.
    pub(crate) fn fatal(&self) {
        self.cfs.store(true, Ordering::Release);
    }
}

impl Ctrl {
    pub(crate) fn read32(&self, off: usize) -> u32 {
        let value = self.read32_honest(off);
        match &self.hostile {
            Some(h) => h.register(off, value),
            None => value,
        }
    }

    fn read32_honest(&self, off: usize) -> u32 {
        if self.faults.gone.load(Ordering::Acquire) {
            return u32::MAX;
        }
        match off {
            offset::CAP => self.regs.cap as u32,
            o if o == offset::CAP + 4 => (self.regs.cap >> 32) as u32,
            offset::VS => Version::V1_4.into_bits(),
            offset::INTMS | offset::INTMC => self.irq.mask.load(Ordering::Acquire),
            offset::CC => lock(&self.regs.file).cc.into_bits(),
            offset::CSTS => {
                let mut regs = lock(&self.regs.file);
                let shst = regs.shst;
                if shst == ShutdownStatus::Occurring {
                    // Report "occurring" once, then the (already finished) completion.
                    regs.shst = ShutdownStatus::Complete;
                }
                Csts::new()
                    .with_rdy(self.regs.ready.load(Ordering::Acquire))
                    .with_cfs(self.regs.cfs.load(Ordering::Acquire))
                    .with_shst(shst)
                    .into_bits()
            }
            offset::AQA => lock(&self.regs.file).aqa,
            offset::ASQ => lock(&self.regs.file).asq as u32,
            o if o == offset::ASQ + 4 => (lock(&self.regs.file).asq >> 32) as u32,
            offset::ACQ => lock(&self.regs.file).acq as u32,
            o if o == offset::ACQ + 4 => (lock(&self.regs.file).acq >> 32) as u32,
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
                    self.irq.mask.fetch_or(value, Ordering::AcqRel);
                }
                offset::INTMC => {
                    self.irq.mask.fetch_and(!value, Ordering::AcqRel);
                    let pending = self.irq.pending.fetch_and(!value, Ordering::AcqRel) & value;
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
        if self.events.pending.load(Ordering::Relaxed) {
            self.deliver_events();
        }
    }

    /// AQA/ASQ/ACQ may only change while the controller is disabled.
    fn write_admin_reg(&self, f: impl FnOnce(&mut RegisterFile)) {
        let mut regs = lock(&self.regs.file);
        if !regs.cc.en() {
            f(&mut regs);
        }
    }

    fn write_cc(&self, new: Cc) {
        let mut regs = lock(&self.regs.file);
        let old = regs.cc;
        match (old.en(), new.en()) {
            (false, true) => {
                regs.cc = new;
                if let Err(why) = self.enable(&regs) {
                    tracing::debug!("emu: CC.EN=1 refused ({why}); setting CSTS.CFS");
                    self.regs.fatal();
                }
            }
            (true, false) => {
                regs.cc = new;
                regs.shst = ShutdownStatus::Normal;
                self.reset();
            }
            (true, true) => {
                // Only SHN may change while enabled.
                regs.cc = old.with_shn(new.shn());
                if new.shn() != ShutdownNotification::None
                    && old.shn() == ShutdownNotification::None
                {
                    for ns in self.storage.namespaces.iter() {
                        if let Err(e) = ns.flush() {
                            tracing::warn!("emu: flush at shutdown failed: {e}");
                        }
                    }
                    lock(&self.health).clean_shutdown = true;
                    regs.shst = ShutdownStatus::Occurring;
                }
            }
            (false, false) => regs.cc = new,
        }
    }

    /// Brings the controller up from the admin queue registers, or says why not.
    fn enable(&self, regs: &RegisterFile) -> Result<(), &'static str> {
        let cc = regs.cc;
        let cap = Cap::from_bits(self.regs.cap);
        let all_sets = cap.css() & nvme_spec::registers::CAP_CSS_IO_COMMAND_SETS != 0
            && cc.css() == nvme_spec::registers::CC_CSS_ALL_IO;
        if cc.css() != nvme_spec::registers::CC_CSS_NVM && !all_sets {
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
        if self.regs.cfs.load(Ordering::Acquire) {
            return Err("controller fatal status is set");
        }
        self.regs
            .page_shift
            .store(12 + u32::from(cc.mps()), Ordering::Relaxed);
        let sq_entries = u32::from(aqa.asqs()) + 1;
        let cq_entries = u32::from(aqa.acqs()) + 1;
        self.queues
            .create_admin(regs.asq, sq_entries, regs.acq, cq_entries);
        lock(&self.health).clean_shutdown = false;
        self.regs
            .all_command_sets
            .store(all_sets, Ordering::Release);
        self.regs.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Function level reset: a controller reset plus every register to its default.
    pub(crate) fn function_reset(&self) {
        let mut regs = lock(&self.regs.file);
        self.reset();
        *regs = RegisterFile::new();
    }

    fn doorbell(&self, rel: usize, value: u32) {
        let stride_mask = (1usize << self.regs.stride_shift) - 1;
        if rel & stride_mask != 0 {
            return;
        }
        let index = rel >> self.regs.stride_shift;
        let qid = index >> 1;
        if qid >= self.queues.sqs.len() || !self.regs.ready.load(Ordering::Acquire) {
            return;
        }
        let is_sq = index & 1 == 0;
        let size = if is_sq {
            &self.queues.doorbells[qid].sq_size
        } else {
            &self.queues.doorbells[qid].cq_size
        }
        .load(Ordering::Acquire);
        if size == 0 {
            GlobalCounters::bump(&self.counters.invalid_doorbells);
            self.raise_event(AER_INVALID_DOORBELL);
            return;
        }
        if value >= size {
            GlobalCounters::bump(&self.counters.invalid_doorbells);
            self.raise_event(AER_INVALID_DOORBELL_VALUE);
            return;
        }
        let qid = qid as u16;
        if is_sq {
            self.queues.doorbells[usize::from(qid)]
                .sq_tail
                .store(value, Ordering::Release);
            match self.worker.get() {
                None => self.process_sq(qid),
                Some(w) => self.kick(w, &w.sq_pending, qid),
            }
        } else {
            self.queues.doorbells[usize::from(qid)]
                .cq_head
                .store(value, Ordering::Release);
            if self.queues.doorbells[usize::from(qid)]
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
}
