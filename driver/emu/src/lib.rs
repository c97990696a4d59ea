//! A software NVMe controller that sees only its registers and the memory the
//! driver mapped for DMA.
//!
//! [`EmuController`] implements the NVMe register interface (CAP, VS, CC/CSTS, AQA,
//! ASQ/ACQ, INTMS/INTMC, doorbells), the admin command set the driver needs (Identify,
//! Get/Set Features, queue management, Get Log Page, Abort, Asynchronous Event Request,
//! Doorbell Buffer Config) and the NVM commands Read, Write, Flush, Write Zeroes,
//! Dataset Management, Verify and Compare (data by PRPs or SGLs), on namespaces backed by sparse RAM, a file
//! or nothing (`null`). All DMA goes through an IOMMU model ([`EmuController::dma_mapper`]):
//! an access outside the mapped IOVAs fails its command with Data Transfer Error, as a
//! mapping bug would on hardware. A volatile write cache model gives FUA and Flush an
//! observable meaning ([`EmuController::power_cut`], and
//! [`EmuController::power_cut_partial`] that tears what was cached); [`FaultControl`] injects failures
//! and [`CommandLog`] records what was executed.
//!
//! Device strings are documented in [`config`].

pub mod config;
mod error;
mod fault;
mod identify;
mod log;
mod stats;

mod admin;
mod backend;
mod cache;
mod controller;
mod events;
mod fused;
mod health;
mod held;
pub mod hostile;
mod io;
mod iommu;
mod namespace;
mod pi;
mod power;
mod prp;
mod queue;
mod ranges;
mod registers;
mod sgl;
pub mod tcp;
mod worker;
mod zns;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

pub use config::{BackendKind, EmuConfig, ExecMode, MetadataFormat, ZonedConfig};
pub use error::EmuError;
pub use fault::{CommandMatch, FaultAction, FaultControl, FaultCounts};
pub use hostile::{DataAccess, HostileConfig, HostileStats};
pub use identify::{FIRMWARE, MODEL, VENDOR_ID};
pub use iommu::{IOMMU_PAGE, IOVA_LIMIT};
pub use log::{CommandLog, LogEntry};
pub use stats::EmuStats;

use controller::Ctrl;
use hugepages::sync::lock;

/// An emulated NVMe controller. Cloning gives another handle to the same controller.
#[derive(Clone)]
pub struct EmuController {
    ctrl: Arc<Ctrl>,
}

impl std::fmt::Debug for EmuController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmuController")
            .field("config", &self.ctrl.cfg)
            .finish_non_exhaustive()
    }
}

impl EmuController {
    /// Creates a controller (disabled, as after power-on: the driver enables it).
    pub fn new(config: EmuConfig) -> Result<Self, EmuError> {
        Ok(Self {
            ctrl: Ctrl::new(config)?,
        })
    }

    /// Creates a controller from a device string such as `emu:size=4G,lba=4096`.
    pub fn from_name(name: &str) -> Result<Self, EmuError> {
        Self::new(name.parse()?)
    }

    /// A short name for messages: `emu`.
    pub fn name(&self) -> String {
        "emu".to_string()
    }

    /// The configuration the controller was built with.
    pub fn config(&self) -> &EmuConfig {
        &self.ctrl.cfg
    }

    /// Reads the 32-bit register at byte `offset` (all ones if the device is "gone").
    pub fn read32(&self, offset: usize) -> u32 {
        self.ctrl.read32(offset)
    }

    /// Writes the 32-bit register at byte `offset`. A submission queue doorbell runs the
    /// queue (inline mode) or wakes the device thread (threaded mode).
    pub fn write32(&self, offset: usize, value: u32) {
        self.ctrl.write32(offset, value)
    }

    /// Reads a 64-bit register (low dword first).
    pub fn read64(&self, offset: usize) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }

    /// Writes a 64-bit register (low dword first).
    pub fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// The IOMMU through which the controller sees host memory.
    pub fn dma_mapper(&self) -> Arc<dyn hugepages::DmaMapper> {
        Arc::new(iommu::IommuMapper(self.ctrl.iommu.clone()))
    }

    /// Enables `count` interrupt vectors, each signalled on its own event notifier
    /// (replacing any earlier set).
    pub fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, EmuError> {
        self.ctrl.enable_interrupts(count)
    }

    /// Disables every interrupt vector.
    pub fn disable_interrupts(&self) {
        self.ctrl.disable_interrupts()
    }

    /// Function level reset: queues, pending commands and registers return to their
    /// power-on state; namespace data, the write cache and DMA mappings are kept.
    pub fn function_reset(&self) {
        self.ctrl.function_reset()
    }

    /// Simulated power loss: every completed write that is not yet durable is lost.
    /// Controller state is left alone (call [`EmuController::function_reset`] as well to
    /// model the reset a real power cycle implies).
    pub fn power_cut(&self) {
        self.ctrl.power_cut()
    }

    /// Simulated power loss while the volatile write cache destages: each cached
    /// block (not yet durable) independently reaches the medium with a chance of
    /// `keep_permille` thousandths, or is lost, so a multi-block write not yet
    /// durable comes back as any subset of its blocks, each block wholly old or
    /// wholly new (the atomic write unit is one logical block). `seed` picks the
    /// subset: the same seed keeps the same LBAs. Returns how many blocks were
    /// kept (the lost ones count in [`EmuStats::lost_blocks`]). `keep_permille`
    /// 0 is [`EmuController::power_cut`]; 1000 or more keeps every block.
    pub fn power_cut_partial(&self, seed: u64, keep_permille: u16) -> usize {
        self.ctrl.power_cut_partial(&power::PartialCut {
            seed,
            keep_permille,
        })
    }

    /// Fault injection handle.
    pub fn faults(&self) -> FaultControl {
        FaultControl {
            ctrl: self.ctrl.clone(),
        }
    }

    /// Command log handle (recording is off unless enabled).
    pub fn command_log(&self) -> CommandLog {
        CommandLog {
            state: self.ctrl.log.clone(),
        }
    }

    /// Whether the volatile write cache is currently enabled.
    pub fn write_cache_enabled(&self) -> bool {
        self.ctrl.storage.write_cache_enabled()
    }

    /// Number of blocks sitting in the volatile write cache of namespace `nsid` (not yet
    /// durable), or `None` for an unknown namespace.
    pub fn cached_blocks(&self, nsid: u32) -> Option<usize> {
        Some(self.ctrl.storage.get(nsid)?.cache.len())
    }

    /// Puts zone `zone` (its index) of namespace `nsid` in the Read Only state, or with
    /// `offline` the Offline state, as a device does when its media wears out; returns
    /// false if the namespace is not zoned or has no such zone.
    pub fn fail_zone(&self, nsid: u32, zone: u64, offline: bool) -> bool {
        let state = if offline {
            nvme_spec::zns::ZoneState::Offline
        } else {
            nvme_spec::zns::ZoneState::ReadOnly
        };
        self.ctrl
            .storage
            .get(nsid)
            .and_then(|ns| ns.zones.as_ref())
            .is_some_and(|z| z.force_state(zone, state))
    }

    /// A snapshot of the controller's counters.
    pub fn stats(&self) -> EmuStats {
        let c = &*self.ctrl;
        let admin = lock(&c.queues.sqs[0]).counters;
        let io = c.queues.io_counters();
        let g = &c.counters;
        EmuStats {
            commands: io.commands + admin.commands,
            admin_commands: admin.commands,
            reads: io.reads,
            writes: io.writes,
            flushes: io.flushes,
            other_io: io.other_io,
            failed: io.failed + admin.failed,
            dma_errors: io.dma_errors + admin.dma_errors + g.dma_errors.load(Ordering::Relaxed),
            invalid_doorbell_writes: g.invalid_doorbells.load(Ordering::Relaxed),
            bytes_read: io.bytes_read,
            bytes_written: io.bytes_written,
            power_cuts: g.power_cuts.load(Ordering::Relaxed),
            lost_blocks: g.lost_blocks.load(Ordering::Relaxed),
            resets: g.resets.load(Ordering::Relaxed),
        }
    }

    /// DMA translations the IOMMU model was asked for and how many it refused (the
    /// IOVA was not mapped), over every queue's accesses since creation. Counted only
    /// on a hostile device (zeros otherwise): the count costs the data path.
    pub fn dma_counts(&self) -> DmaCounts {
        let (accesses, refused) = self.ctrl.queues.dma_counts();
        DmaCounts { accesses, refused }
    }

    /// The hostile device's counters, or `None` when it is not hostile.
    pub fn hostile_stats(&self) -> Option<HostileStats> {
        self.ctrl.hostile.as_ref().map(|h| h.stats())
    }

    /// The data segments commands moved since the last call (recorded only on a hostile
    /// device), for checking that every transfer stayed inside its command's buffers.
    pub fn take_data_accesses(&self) -> Vec<DataAccess> {
        self.ctrl
            .hostile
            .as_ref()
            .map(|h| h.take_accesses())
            .unwrap_or_default()
    }
}

/// DMA accesses seen by the IOMMU model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaCounts {
    /// Translations asked for.
    pub accesses: u64,
    /// Translations refused because the IOVA was not mapped.
    pub refused: u64,
}

// The driver shares one controller between threads.
const _: fn() = || {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<EmuController>();
    shared::<FaultControl>();
    shared::<CommandLog>();
};
