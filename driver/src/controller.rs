//! Controller bring-up, reset and shutdown (NVMe Base 2.0 §3.5; the order follows Linux
//! `drivers/nvme/host/pci.c`), and the state every queue pair shares.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use hugepages::DmaAllocator;
use vmm_sys_util::eventfd::EventFd;

use crate::admin::{deadline, AdminCtx, AdminQueue, AsyncEvent, Backoff, QueueStats};
use crate::dma::{DmaMem, SharedDmaMem};
use crate::error::CommandDesc;
use crate::namespace::{Namespace, NsTable};
use crate::options::Options;
use crate::queue::prp;
use crate::spec::admin::{delete_io_cq, delete_io_sq, DoorbellBufferConfig, Identify, SetFeatures};
use crate::spec::features::NumberOfQueues;
use crate::spec::identify::{Cns, IdentifyController, IdentifyNamespace};
use crate::spec::registers::{offset, ShutdownNotification, ShutdownStatus};
use crate::spec::{AdminOpcode, Aqa, Cap, Cc, CompletionEntry, Csts, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

/// Controller is usable.
pub(crate) const STATE_LIVE: u8 = 0;
/// A reset is in progress.
pub(crate) const STATE_RESETTING: u8 = 1;
/// Bring-up or reset failed; only a new reset can help.
pub(crate) const STATE_FAILED: u8 = 2;
/// Shut down (the `Controller` was dropped).
pub(crate) const STATE_SHUT_DOWN: u8 = 3;

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
    pub state: AtomicU8,
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

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads CSTS and turns a vanished device or a fatal status into an error.
pub(crate) fn check_csts<T: Transport>(
    t: &T,
    name: &str,
    during: &'static str,
) -> Result<Csts, Error> {
    let raw = t.read32(offset::CSTS);
    if raw == u32::MAX {
        return Err(Error::DeviceGone {
            device: name.to_string(),
            during,
        });
    }
    let csts = Csts::from_bits(raw);
    if csts.cfs() {
        return Err(Error::ControllerFatal {
            device: name.to_string(),
            during,
        });
    }
    Ok(csts)
}

/// Waits until CSTS.RDY equals `ready`, within `timeout`.
fn wait_ready<T: Transport>(
    t: &T,
    name: &str,
    ready: bool,
    timeout: Duration,
) -> Result<(), Error> {
    let during = if ready {
        "enable (waiting for CSTS.RDY=1)"
    } else {
        "disable (waiting for CSTS.RDY=0)"
    };
    let start = Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let raw = t.read32(offset::CSTS);
        if raw == u32::MAX {
            return Err(Error::DeviceGone {
                device: name.to_string(),
                during,
            });
        }
        let csts = Csts::from_bits(raw);
        // A fatal status while disabling is expected to clear with CC.EN=0; while enabling
        // it means the controller cannot come up.
        if ready && csts.cfs() {
            return Err(Error::ControllerFatal {
                device: name.to_string(),
                during,
            });
        }
        if csts.rdy() == ready {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                device: name.to_string(),
                what: if ready {
                    "become ready (CSTS.RDY=1)"
                } else {
                    "stop (CSTS.RDY=0)"
                },
                waited: timeout,
            });
        }
        backoff.wait();
    }
}

/// CAP.TO as a bounded wait (at least 500 ms).
fn ready_timeout(cap: Cap) -> Duration {
    cap.timeout().max(Duration::from_millis(500))
}

/// Clears CC.EN and waits for CSTS.RDY=0.
fn disable<T: Transport>(t: &T, name: &str, cap: Cap) -> Result<(), Error> {
    let raw = t.read32(offset::CC);
    if raw == u32::MAX {
        return Err(Error::DeviceGone {
            device: name.to_string(),
            during: "disable",
        });
    }
    let cc = Cc::from_bits(raw);
    if cc.en() {
        t.write32(offset::CC, cc.with_en(false).into_bits());
    }
    wait_ready(t, name, false, ready_timeout(cap))
}

/// Programs the admin queue and CC, sets CC.EN and waits for CSTS.RDY=1.
fn enable<T: Transport>(
    t: &T,
    name: &str,
    cap: Cap,
    mps: u8,
    admin: &AdminQueue,
) -> Result<(), Error> {
    let depth = admin.depth();
    let aqa = Aqa::new().with_asqs(depth - 1).with_acqs(depth - 1);
    t.write32(offset::AQA, aqa.into_bits());
    t.write64(offset::ASQ, admin.sq_iova());
    t.write64(offset::ACQ, admin.cq_iova());
    let cc = Cc::new()
        .with_css(crate::spec::registers::CC_CSS_NVM)
        .with_mps(mps)
        .with_ams(0)
        .with_shn(ShutdownNotification::None)
        .with_iosqes(crate::spec::command::SQE_SIZE_SHIFT)
        .with_iocqes(crate::spec::command::CQE_SIZE_SHIFT);
    t.write32(offset::CC, cc.into_bits());
    t.write32(offset::CC, cc.with_en(true).into_bits());
    wait_ready(t, name, true, ready_timeout(cap))
}

/// Runs one admin command to completion within `timeout`.
pub(crate) fn exec_admin<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    sqe: SubmissionEntry,
    timeout: Duration,
) -> Result<CompletionEntry, Error> {
    let opcode = sqe.opcode();
    let desc = CommandDesc::Admin {
        name: AdminOpcode(opcode).name().unwrap_or("vendor command"),
        opcode,
    };
    let Some(cid) = q.submit(t, sqe, AdminCtx::Sync) else {
        return Err(Error::QueueFull {
            qid: 0,
            depth: q.depth(),
        });
    };
    let end = deadline(timeout);
    let mut backoff = Backoff::new();
    let mut polls = 0u32;
    loop {
        q.drain(t);
        if let Some(cqe) = q.take_done(cid) {
            if cqe.status.is_success() {
                return Ok(cqe);
            }
            return Err(Error::CommandFailed {
                command: desc,
                status: cqe.status.without_phase(),
            });
        }
        polls += 1;
        if polls % 64 == 0 {
            if let Err(e) = check_csts(t, name, desc_during(opcode)) {
                q.abandon(cid);
                return Err(e);
            }
            if Instant::now() > end {
                q.abandon(cid);
                return Err(Error::CommandTimedOut {
                    command: desc,
                    timeout,
                });
            }
        }
        backoff.wait();
    }
}

fn desc_during(opcode: u8) -> &'static str {
    AdminOpcode(opcode).name().unwrap_or("an admin command")
}

/// An admin command with one data page in `buf`.
fn with_data(mut sqe: SubmissionEntry, buf: &DmaMem) -> SubmissionEntry {
    sqe.set_prp(buf.iova(), 0);
    sqe
}

fn identify_sqe(cns: Cns, nsid: u32) -> SubmissionEntry {
    Identify {
        cns,
        nsid,
        cntid: 0,
        csi: 0,
    }
    .to_sqe()
}

/// Reads one 4 KiB Identify page.
fn identify_page<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    cns: Cns,
    nsid: u32,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let buf = DmaMem::alloc(alloc, 4096, 4096, "an Identify buffer")?;
    exec_admin(
        t,
        name,
        q,
        with_data(identify_sqe(cns, nsid), &buf),
        timeout,
    )?;
    let mut out = vec![0u8; 4096];
    buf.buffer().read(0, &mut out).map_err(|e| Error::Dma {
        what: "an Identify buffer",
        detail: e.to_string(),
    })?;
    Ok(out)
}

fn bad_data(name: &str, e: impl std::fmt::Display) -> Error {
    Error::BadDeviceData {
        device: name.to_string(),
        detail: e.to_string(),
    }
}

/// Identify Controller, active namespaces, and each namespace.
fn identify_all<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    timeout: Duration,
) -> Result<(Box<IdentifyController>, Vec<Namespace>), Error> {
    let page = identify_page(t, name, q, alloc, Cns::CONTROLLER, 0, timeout)?;
    let ctrl = Box::new(IdentifyController::parse(&page).map_err(|e| bad_data(name, e))?);
    let sqes = ctrl.sqes;
    let cqes = ctrl.cqes;
    if sqes.required() > 6 || (sqes.maximum() != 0 && sqes.maximum() < 6) {
        return Err(Error::Unsupported {
            device: name.to_string(),
            what: format!(
                "64-byte submission entries (SQES {}..{})",
                sqes.required(),
                sqes.maximum()
            ),
        });
    }
    if cqes.required() > 4 || (cqes.maximum() != 0 && cqes.maximum() < 4) {
        return Err(Error::Unsupported {
            device: name.to_string(),
            what: format!(
                "16-byte completion entries (CQES {}..{})",
                cqes.required(),
                cqes.maximum()
            ),
        });
    }
    let list = identify_page(t, name, q, alloc, Cns::ACTIVE_NAMESPACE_LIST, 0, timeout)?;
    let nsids =
        crate::spec::identify::parse_namespace_list(&list).map_err(|e| bad_data(name, e))?;
    let mut namespaces = Vec::with_capacity(nsids.len());
    for nsid in nsids {
        let page = identify_page(t, name, q, alloc, Cns::NAMESPACE, nsid, timeout)?;
        let id = IdentifyNamespace::parse(&page).map_err(|e| bad_data(name, e))?;
        if id.is_inactive() {
            continue;
        }
        let lba_size = id.lba_size().map_err(|e| bad_data(name, e))?;
        namespaces.push(Namespace {
            nsid,
            lba_size,
            blocks: id.nsze,
            metadata_size: id.metadata_size().unwrap_or(0),
            identify: Box::new(id),
        });
    }
    Ok((ctrl, namespaces))
}

/// Set Features Number of Queues; returns how many I/O queue pairs were granted.
fn set_queue_count<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    wanted: u16,
    timeout: Duration,
) -> Result<u16, Error> {
    let n = u32::from(wanted.max(1));
    let sqe = SetFeatures::number_of_queues(n, n)
        .map_err(|e| Error::InvalidRequest(e.to_string()))?
        .to_sqe();
    let cqe = exec_admin(t, name, q, sqe, timeout)?;
    let granted = NumberOfQueues::from_bits(cqe.dw0);
    let granted = granted.sq_count().min(granted.cq_count());
    Ok(wanted.max(1).min(granted.min(65535) as u16))
}

/// Doorbell Buffer Config: hands the controller the shadow and EventIdx pages.
fn config_dbbuf<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    dbbuf: &DbBuf,
    timeout: Duration,
) -> Result<(), Error> {
    let sqe = DoorbellBufferConfig {
        shadow: dbbuf.shadow.iova(),
        eventidx: dbbuf.eventidx.iova(),
    }
    .to_sqe();
    exec_admin(t, name, q, sqe, timeout).map(|_| ())
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
        let t = transport;
        let name = t.name();
        let alloc =
            DmaAllocator::new(t.dma_mapper(), t.allocator_options()).map_err(|e| Error::Dma {
                what: "the allocator",
                detail: e.to_string(),
            })?;
        let cap_raw = t.read64(offset::CAP);
        if cap_raw == u64::MAX || t.read32(offset::CSTS) == u32::MAX {
            return Err(Error::DeviceGone {
                device: name,
                during: "reading CAP",
            });
        }
        let cap = Cap::from_bits(cap_raw);
        if cap.mqes() == 0 {
            return Err(Error::BadDeviceData {
                device: name,
                detail: "CAP.MQES is 0 (queues of one entry cannot hold a command)".into(),
            });
        }
        if !cap.supports_nvm_command_set() {
            return Err(Error::Unsupported {
                device: name,
                what: "the NVM command set (CAP.CSS bit 0)".into(),
            });
        }
        // Host pages are 4 KiB; use that unless the controller's minimum is larger.
        let page_size = cap.min_page_size().max(4096);
        if page_size > cap.max_page_size() || page_size > 2 << 20 {
            return Err(Error::Unsupported {
                device: name,
                what: format!(
                    "a memory page size this host can use (CAP.MPSMIN {})",
                    cap.mpsmin()
                ),
            });
        }
        let mps = (page_size.trailing_zeros() - 12) as u8;

        disable(&t, &name, cap)?;

        let admin_depth = options
            .admin_depth
            .clamp(2, 4096)
            .min(cap.max_queue_entries().min(4096) as u16);
        let ps = page_size as usize;
        let asq = DmaMem::alloc(&alloc, usize::from(admin_depth) * 64, ps, "the admin SQ")?;
        let acq = DmaMem::alloc(&alloc, usize::from(admin_depth) * 16, ps, "the admin CQ")?;
        let mut admin = AdminQueue::new(asq, acq, admin_depth, cap.dstrd());

        // MSI-X must be on before CC.EN, or some controllers never signal admin completions.
        let vectors = if options.interrupts && t.max_interrupts() > 0 {
            let n = t.max_interrupts().min(options.io_queues.saturating_add(1));
            t.enable_interrupts(n).unwrap_or_else(|e| {
                tracing::warn!(device = %name, error = %e, "interrupts unavailable; queue pairs can only poll");
                Vec::new()
            })
        } else {
            Vec::new()
        };

        let timeout = options.admin_timeout;
        let up = enable(&t, &name, cap, mps, &admin).and_then(|()| {
            let (identify, namespaces) = identify_all(&t, &name, &mut admin, &alloc, timeout)?;
            let dbbuf = if options.shadow_doorbells && identify.supports_doorbell_buffer_config()
            {
                let shadow = DmaMem::alloc(&alloc, ps, ps, "shadow doorbells")?;
                let eventidx = DmaMem::alloc(&alloc, ps, ps, "EventIdx buffer")?;
                let d = DbBuf {
                    shadow: SharedDmaMem::new(shadow),
                    eventidx: SharedDmaMem::new(eventidx),
                };
                match config_dbbuf(&t, &name, &mut admin, &d, timeout) {
                    Ok(()) => Some(d),
                    Err(e) => {
                        tracing::warn!(device = %name, error = %e, "Doorbell Buffer Config failed; using MMIO doorbells only");
                        None
                    }
                }
            } else {
                None
            };
            let io_queues = set_queue_count(&t, &name, &mut admin, options.io_queues, timeout)?;
            Ok((identify, namespaces, dbbuf, io_queues))
        });
        let (identify, namespaces, dbbuf, io_queues) = match up {
            Ok(up) => up,
            Err(e) => {
                // Stop the controller before its queues' memory is freed.
                let _ = disable(&t, &name, cap);
                if !vectors.is_empty() {
                    let _ = t.disable_interrupts();
                }
                return Err(e);
            }
        };
        let max_transfer = max_transfer(&identify, cap, page_size, &options);
        let aers = options
            .async_events
            .min(identify.async_event_limit())
            .min(admin_depth / 2);
        for _ in 0..aers {
            admin.arm_aer(&t);
        }

        let info = CtrlInfo {
            ns_table: Arc::new(NsTable::new(&namespaces)),
            identify,
            namespaces,
            io_queues,
            max_transfer,
        };
        tracing::debug!(device = %name, io_queues, max_transfer, shadow = dbbuf.is_some(), "controller ready");
        Ok(Controller {
            shared: Arc::new(Shared {
                name,
                alloc,
                cap,
                page_size,
                admin: Mutex::new(admin),
                state: AtomicU8::new(STATE_LIVE),
                epoch: AtomicU64::new(0),
                info: RwLock::new(Arc::new(info)),
                vectors,
                dbbuf,
                qids: Mutex::new(vec![false; usize::from(io_queues) + 1]),
                aen: Mutex::new(None),
                reset_lock: Mutex::new(()),
                options,
                t,
            }),
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
        check_csts(&self.shared.t, &self.shared.name, "a health check").map(|_| ())
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

fn max_transfer(id: &IdentifyController, cap: Cap, page_size: u64, options: &Options) -> u64 {
    let by_mdts = id
        .max_transfer_bytes(cap.min_page_size())
        .unwrap_or(options.max_transfer_bytes);
    // Our PRP lists hold at most 16 pages of entries per command.
    by_mdts.min(prp::max_transfer(page_size, 16)).max(page_size)
}

impl<T: Transport> Shared<T> {
    pub fn info(&self) -> Arc<CtrlInfo> {
        self.info.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn check_live(&self, during: &'static str) -> Result<(), Error> {
        match self.state.load(Ordering::Acquire) {
            STATE_LIVE => Ok(()),
            STATE_SHUT_DOWN => Err(Error::ShutDown {
                device: self.name.clone(),
                during,
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
        self.deliver_events();
        result
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
        if self.state.load(Ordering::Acquire) == STATE_SHUT_DOWN {
            return self.check_live("reset");
        }
        if let Some(seen) = seen {
            if self.epoch.load(Ordering::Acquire) != seen
                && self.state.load(Ordering::Acquire) == STATE_LIVE
            {
                return Ok(());
            }
        }
        let mut q = lock(&self.admin);
        self.state.store(STATE_RESETTING, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let r = self.reset_locked(&mut q);
        self.state.store(
            if r.is_ok() { STATE_LIVE } else { STATE_FAILED },
            Ordering::Release,
        );
        // Pairs compare epochs; bump again so a pair that looked mid-reset re-checks.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = &r {
            tracing::error!(device = %self.name, error = %e, "controller reset failed");
        }
        r
    }

    fn reset_locked(&self, q: &mut AdminQueue) -> Result<(), Error> {
        let t = &self.t;
        let name = &self.name;
        let cap = self.cap;
        if let Err(e) = disable(t, name, cap) {
            if matches!(e, Error::DeviceGone { .. }) {
                return Err(e);
            }
            // The controller will not stop: escalate to a function reset when offered.
            tracing::warn!(device = %name, error = %e, "disable failed; trying a function reset");
            if !t.function_reset()? {
                return Err(e);
            }
            disable(t, name, cap)?;
        }
        q.reset();
        let mps = (self.page_size.trailing_zeros() - 12) as u8;
        enable(t, name, cap, mps, q)?;
        let timeout = self.options.admin_timeout;
        if let Some(d) = &self.dbbuf {
            d.shadow.zero();
            d.eventidx.zero();
            config_dbbuf(t, name, q, d, timeout)?;
        }
        let wanted = self.info().io_queues;
        let granted = set_queue_count(t, name, q, wanted, timeout)?;
        if granted < wanted {
            tracing::warn!(device = %name, wanted, granted, "fewer I/O queues granted after reset");
        }
        let aers = self
            .options
            .async_events
            .min(self.info().identify.async_event_limit())
            .min(q.depth() / 2);
        for _ in 0..aers {
            q.arm_aer(t);
        }
        q.stats.resets += 1;
        Ok(())
    }

    pub fn shutdown(&self) -> Result<(), Error> {
        let _g = lock(&self.reset_lock);
        let prev = self.state.swap(STATE_SHUT_DOWN, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if prev == STATE_SHUT_DOWN {
            return Ok(());
        }
        let mut q = lock(&self.admin);
        let t = &self.t;
        if prev == STATE_LIVE {
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
