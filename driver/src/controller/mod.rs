//! The [`Controller`] handle and the state it shares with its queue pairs: reset and
//! shutdown (NVMe Base 2.0 §3.6). Start-up is in [`bringup`], the admin commands offered
//! to users in [`commands`].

mod bringup;
mod commands;
mod state;
mod zns_identify;

pub(crate) use self::state::AtomicState;
pub use self::state::ControllerState;

use hugepages::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hugepages::DmaAllocator;
use vmm_sys_util::eventfd::EventFd;

use crate::admin::{desc_during, exec_admin, AdminQueue, AsyncEvent, QueueStats};
use crate::backoff::Backoff;
use crate::dma::SharedDmaMem;
use crate::health::check_csts;
use crate::namespace::{Namespace, NsTable};
use crate::options::Options;
use crate::spec::admin::{delete_io_cq, delete_io_sq};
use crate::spec::identify::IdentifyController;
use crate::spec::registers::{offset, ShutdownNotification, ShutdownStatus};
use crate::spec::{Cap, Cc, CompletionEntry, Csts, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

/// What identify told us, replaced as a whole on reset.
#[derive(Debug)]
pub(crate) struct CtrlInfo {
    pub identify: Box<IdentifyController>,
    pub namespaces: Vec<Namespace>,
    pub ns_table: Arc<NsTable>,
    pub io_queues: u16,
    pub max_transfer: u64,
}

/// Shadow doorbell and EventIdx buffers (Doorbell Buffer Config).
#[derive(Debug)]
pub(crate) struct DbBuf {
    pub shadow: SharedDmaMem,
    pub eventidx: SharedDmaMem,
}

/// Everything the controller handle and its queue pairs share.
///
/// Field order is drop order: every DMA buffer (admin queue, doorbell buffers, the
/// allocator) goes before the transport, whose IOMMU container must outlive the unmaps.
pub(crate) struct Shared<T: Transport> {
    pub name: String,
    pub alloc: DmaAllocator,
    pub cap: Cap,
    pub page_size: u64,
    pub options: Options,
    pub admin: Mutex<AdminQueue>,
    pub state: AtomicState,
    /// Bumped by every reset and by shutdown; queue pairs compare it to their own.
    pub epoch: AtomicU64,
    pub info: RwLock<Arc<CtrlInfo>>,
    pub vectors: Vec<Arc<EventFd>>,
    pub dbbuf: Option<DbBuf>,
    pub qids: Mutex<Vec<bool>>,
    #[allow(clippy::type_complexity)]
    pub aen: Mutex<Option<Box<dyn FnMut(AsyncEvent) + Send>>>,
    pub reset_lock: Mutex<()>,
    pub t: T,
}

/// The controller: bring-up, admin commands, queue-pair creation, reset and shutdown.
///
/// Dropping it shuts the controller down (CC.SHN normal, bounded wait). Queue pairs keep
/// their memory alive but fail every command after that.
pub struct Controller<T: Transport> {
    pub(crate) shared: Arc<Shared<T>>,
}

impl<T: Transport> std::fmt::Debug for Controller<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.shared.name)
            .field("page_size", &self.shared.page_size)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Controller<T> {
    /// Brings the controller up over `transport`: disable, admin queue, CC, enable,
    /// identify, namespaces, shadow doorbells, Number of Queues, asynchronous events.
    pub fn new(transport: T, options: Options) -> Result<Self, Error> {
        Ok(Controller {
            shared: Arc::new(bringup::bring_up(transport, options)?),
        })
    }

    /// The device name (`emu`, a PCI address).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The transport underneath.
    pub fn transport(&self) -> &T {
        &self.shared.t
    }

    /// The DMA allocator bound to this controller's IOMMU mapping; allocate I/O buffers here.
    pub fn allocator(&self) -> &DmaAllocator {
        &self.shared.alloc
    }

    /// CAP as read at bring-up.
    pub fn cap(&self) -> Cap {
        self.shared.cap
    }

    /// The memory page size programmed in CC.MPS, in bytes.
    pub fn page_size(&self) -> u64 {
        self.shared.page_size
    }

    /// Identify Controller data.
    pub fn identify_controller(&self) -> IdentifyController {
        *self.info().identify
    }

    /// The active namespaces.
    pub fn namespaces(&self) -> Vec<Namespace> {
        self.info().namespaces.clone()
    }

    /// The active namespace `nsid`.
    pub fn namespace(&self, nsid: u32) -> Option<Namespace> {
        self.info()
            .namespaces
            .iter()
            .find(|n| n.nsid == nsid)
            .cloned()
    }

    /// The largest transfer of one I/O command in bytes (MDTS, or the configured cap).
    pub fn max_transfer_bytes(&self) -> u64 {
        self.info().max_transfer
    }

    /// I/O queue pairs granted by Set Features Number of Queues.
    pub fn io_queue_count(&self) -> u16 {
        self.info().io_queues
    }

    /// Whether shadow doorbells are in use.
    pub fn shadow_doorbells(&self) -> bool {
        self.shared.dbbuf.is_some()
    }

    /// Where the controller is in its life cycle.
    pub fn state(&self) -> ControllerState {
        self.shared.state.load(Ordering::Acquire)
    }

    /// Admin queue counters.
    pub fn admin_stats(&self) -> QueueStats {
        lock(&self.shared.admin).stats
    }

    pub(crate) fn info(&self) -> Arc<CtrlInfo> {
        self.shared.info()
    }

    /// Reads CSTS: `Ok` when the controller is ready and healthy.
    pub fn check_health(&self) -> Result<(), Error> {
        self.shared.check_live("a health check")?;
        check_csts(&self.shared.t, &self.shared.name, "a health check")
            .map(|_| ())
            .inspect_err(|e| self.shared.note_gone(e))
    }

    /// Resets the controller (CC.EN 1→0→1) and brings the admin queue back. Queue pairs
    /// notice on their next call: their outstanding commands complete with
    /// [`Error::ControllerReset`] and their queues are re-created.
    pub fn reset(&self) -> Result<(), Error> {
        self.shared.reset()
    }

    /// Shuts the controller down now (also done on drop).
    pub fn shutdown(&self) -> Result<(), Error> {
        self.shared.shutdown()
    }
}

impl<T: Transport> Drop for Controller<T> {
    fn drop(&mut self) {
        if let Err(e) = self.shared.shutdown() {
            tracing::warn!(device = %self.shared.name, error = %e, "shutdown failed");
        }
    }
}

impl<T: Transport> Shared<T> {
    pub fn info(&self) -> Arc<CtrlInfo> {
        self.info.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn check_live(&self, during: &'static str) -> Result<(), Error> {
        match self.state.load(Ordering::Acquire) {
            ControllerState::Live => Ok(()),
            ControllerState::ShutDown => Err(Error::ShutDown {
                device: self.name.clone(),
                during,
            }),
            ControllerState::Gone => Err(Error::DeviceGone {
                device: self.name.clone(),
                during,
                reason: self.t.failure(),
            }),
            _ => Err(Error::ControllerFatal {
                device: self.name.clone(),
                during,
            }),
        }
    }

    /// Runs an admin command; asynchronous events it collects go to the callback.
    pub fn admin_exec(
        &self,
        sqe: SubmissionEntry,
        timeout: Duration,
    ) -> Result<CompletionEntry, Error> {
        self.check_live(desc_during(sqe.opcode()))?;
        let result = {
            let mut q = lock(&self.admin);
            exec_admin(&self.t, &self.name, &mut q, sqe, timeout)
        };
        if let Err(e) = &result {
            self.note_gone(e);
        }
        self.deliver_events();
        result
    }

    /// Marks the device gone when `e` says it is (registers read all ones): every
    /// later call on the controller and its queue pairs fails with
    /// [`Error::DeviceGone`], and queue pairs report their outstanding commands so at
    /// their next call (the epoch changes).
    pub fn note_gone(&self, e: &Error) {
        if matches!(e, Error::DeviceGone { .. }) && self.state.mark_gone() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            tracing::error!(device = %self.name, error = %e, "device is gone; failing every call");
        }
    }

    /// Polls the admin completion queue once.
    pub fn poll_admin(&self) -> usize {
        let n = lock(&self.admin).drain(&self.t);
        self.deliver_events();
        n
    }

    fn deliver_events(&self) {
        let events = std::mem::take(&mut lock(&self.admin).events);
        if events.is_empty() {
            return;
        }
        let mut cb = lock(&self.aen);
        for ev in events {
            match cb.as_mut() {
                Some(f) => f(ev),
                None => {
                    tracing::info!(device = %self.name, ?ev, "asynchronous event (no callback set)")
                }
            }
        }
    }

    pub fn reset(&self) -> Result<(), Error> {
        self.reset_unless_past(None)
    }

    /// Resets the controller, unless `seen` is given and a reset completed since the
    /// caller observed epoch `seen` (two queue pairs timing out together reset once).
    pub fn reset_unless_past(&self, seen: Option<u64>) -> Result<(), Error> {
        let _g = lock(&self.reset_lock);
        if matches!(
            self.state.load(Ordering::Acquire),
            ControllerState::ShutDown | ControllerState::Gone
        ) {
            return self.check_live("reset");
        }
        if let Some(seen) = seen {
            if self.epoch.load(Ordering::Acquire) != seen
                && self.state.load(Ordering::Acquire) == ControllerState::Live
            {
                return Ok(());
            }
        }
        let mut q = lock(&self.admin);
        self.state.store_unless_gone(ControllerState::Resetting);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let r = self.reset_locked(&mut q);
        self.state.store_unless_gone(if r.is_ok() {
            ControllerState::Live
        } else {
            ControllerState::Failed
        });
        if matches!(r, Err(Error::DeviceGone { .. })) {
            self.state.mark_gone();
        }
        // Pairs compare epochs; bump again so a pair that looked mid-reset re-checks.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = &r {
            tracing::error!(device = %self.name, error = %e, "controller reset failed");
        }
        r
    }

    pub fn shutdown(&self) -> Result<(), Error> {
        let _g = lock(&self.reset_lock);
        let prev = self.state.swap(ControllerState::ShutDown, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if matches!(prev, ControllerState::ShutDown | ControllerState::Gone) {
            // Nothing to tell a device that is gone.
            return Ok(());
        }
        let mut q = lock(&self.admin);
        let t = &self.t;
        if prev == ControllerState::Live {
            // Delete the I/O queues first (NVMe Base 2.0 §3.6.1), SQ before its CQ.
            let live: Vec<u16> = lock(&self.qids)
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, used)| **used)
                .map(|(qid, _)| qid as u16)
                .collect();
            let timeout = self.options.admin_timeout.min(Duration::from_secs(1));
            for qid in live {
                let name = &self.name;
                if let Err(e) = exec_admin(t, name, &mut q, delete_io_sq(qid), timeout)
                    .and_then(|_| exec_admin(t, name, &mut q, delete_io_cq(qid), timeout))
                {
                    tracing::warn!(device = %name, qid, error = %e, "deleting I/O queue at shutdown failed");
                }
            }
        }
        let raw = t.read32(offset::CC);
        if raw == u32::MAX {
            return Err(Error::DeviceGone {
                device: self.name.clone(),
                during: "shutdown",
                reason: self.t.failure(),
            });
        }
        let cc = Cc::from_bits(raw);
        if cc.en() {
            t.write32(
                offset::CC,
                cc.with_shn(ShutdownNotification::Normal).into_bits(),
            );
            let rtd3e = Duration::from_micros(u64::from(self.info().identify.rtd3e));
            let timeout = rtd3e
                .max(Duration::from_secs(1))
                .min(self.options.shutdown_timeout);
            let start = Instant::now();
            let mut backoff = Backoff::new();
            loop {
                let raw = t.read32(offset::CSTS);
                if raw == u32::MAX {
                    return Err(Error::DeviceGone {
                        device: self.name.clone(),
                        during: "shutdown",
                        reason: self.t.failure(),
                    });
                }
                if Csts::from_bits(raw).shst() == ShutdownStatus::Complete {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(Error::Timeout {
                        device: self.name.clone(),
                        what: "finish shutdown (CSTS.SHST complete)",
                        waited: timeout,
                    });
                }
                backoff.wait();
            }
        }
        if !self.vectors.is_empty() {
            t.disable_interrupts()?;
        }
        Ok(())
    }
}
