//! Controller start-up (NVMe Base 2.0 §3.5.1; the order follows Linux
//! `nvme_reset_work` in `drivers/nvme/host/pci.c`): disable, admin queue, CC, enable,
//! identify, shadow doorbells, Number of Queues, asynchronous events; and the same
//! steps again after a reset.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hugepages::DmaAllocator;

use crate::admin::{exec_admin, AdminQueue};
use crate::backoff::Backoff;
use crate::dma::{DmaMem, SharedDmaMem};
use crate::namespace::{Namespace, NsTable};
use crate::options::Options;
use crate::queue::prp;
use crate::spec::admin::{DoorbellBufferConfig, Identify, SetFeatures};
use crate::spec::features::NumberOfQueues;
use crate::spec::identify::{
    Cns, CommandSetId, IdentifyController, IdentifyNamespace, IdentifyNamespaceNvm, NamespaceIds,
};
use crate::spec::registers::{offset, ShutdownNotification};
use crate::spec::{Aqa, Cap, Cc, Csts, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

use super::zns_identify;
use super::{AtomicState, ControllerState, CtrlInfo, DbBuf, Shared};

/// Largest shadow doorbell (and EventIdx) buffer the driver allocates: with a doorbell
/// stride that needs more, the controller's doorbells are written by MMIO only.
const MAX_DBBUF_BYTES: usize = 1 << 20;

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
                reason: t.failure(),
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
            reason: t.failure(),
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
    // Every I/O command set the controller supports, as Linux `nvme_enable_ctrl` does;
    // the I/O Command Set Profile feature keeps its default (index 0: the first
    // combination the controller lists, which includes every supported set).
    let css = if cap.css() & crate::spec::registers::CAP_CSS_IO_COMMAND_SETS != 0 {
        crate::spec::registers::CC_CSS_ALL_IO
    } else {
        crate::spec::registers::CC_CSS_NVM
    };
    let cc = Cc::new()
        .with_css(css)
        .with_mps(mps)
        .with_ams(0)
        .with_shn(ShutdownNotification::None)
        .with_iosqes(crate::spec::command::SQE_SIZE_SHIFT)
        .with_iocqes(crate::spec::command::CQE_SIZE_SHIFT);
    t.write32(offset::CC, cc.into_bits());
    t.write32(offset::CC, cc.with_en(true).into_bits());
    wait_ready(t, name, true, ready_timeout(cap))
}

/// An admin command with one data page in `buf` (4 KiB at most, page aligned): PRP1,
/// or one SGL Data Block where the transport takes only SGLs.
fn with_data<T: Transport>(t: &T, mut sqe: SubmissionEntry, buf: &DmaMem) -> SubmissionEntry {
    if t.sgl_only() {
        let len = buf.len().min(4096) as u32;
        let desc = crate::spec::sgl::SglDescriptor::data_block(buf.iova(), len);
        sqe.set_sgl(desc, crate::spec::command::Psdt::SglMptrContiguous);
    } else {
        sqe.set_prp(buf.iova(), 0);
    }
    sqe
}

fn identify_sqe(cns: Cns, nsid: u32, csi: CommandSetId) -> SubmissionEntry {
    Identify {
        cns,
        nsid,
        cntid: 0,
        csi: csi.0,
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
    identify_csi_page(t, name, q, alloc, (cns, CommandSetId::NVM), nsid, timeout)
}

/// Reads one 4 KiB Identify page of an I/O command set specific structure.
pub(super) fn identify_csi_page<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    (cns, csi): (Cns, CommandSetId),
    nsid: u32,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let buf = DmaMem::alloc(alloc, 4096, 4096, "an Identify buffer")?;
    exec_admin(
        t,
        name,
        q,
        with_data(t, identify_sqe(cns, nsid, csi), &buf),
        timeout,
    )?;
    let mut out = vec![0u8; 4096];
    buf.buffer()
        .read(0, &mut out)
        .map_err(|source| Error::Dma {
            what: "an Identify buffer",
            source,
        })?;
    Ok(out)
}

pub(super) fn bad_data(name: &str, e: impl std::fmt::Display) -> Error {
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
    cap: Cap,
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
    let multi_css = cap.css() & crate::spec::registers::CAP_CSS_IO_COMMAND_SETS != 0;
    // ZASL, read once, with the first zoned namespace.
    let mut zns_controller = None;
    for nsid in nsids {
        let page = identify_page(t, name, q, alloc, Cns::NAMESPACE, nsid, timeout)?;
        let id = IdentifyNamespace::parse(&page).map_err(|e| bad_data(name, e))?;
        if id.is_inactive() {
            continue;
        }
        let lba_size = id.lba_size().map_err(|e| bad_data(name, e))?;
        let nvm = if ctrl.supports_extended_lba_formats() {
            // CSI 0 (the NVM Command Set): each format's guard and storage tag size. A
            // controller that announces it and then refuses it is taken at its word
            // for the 16-bit guard, with a warning.
            let cns = Cns::IO_COMMAND_SET_NAMESPACE;
            identify_page(t, name, q, alloc, cns, nsid, timeout)
                .and_then(|page| IdentifyNamespaceNvm::parse(&page).map_err(|e| bad_data(name, e)))
                .map_err(|e| tracing::warn!(nsid, error = %e, "NVM Command Set Identify Namespace"))
                .ok()
                .map(Box::new)
        } else {
            None
        };
        let command_set = if multi_css {
            command_set(t, name, q, alloc, nsid, timeout)
        } else {
            CommandSetId::NVM
        };
        let zoned = if command_set == CommandSetId::ZONED {
            let zasl = *zns_controller.get_or_insert_with(|| {
                zns_identify::controller_zasl(t, name, q, alloc, cap, timeout)
            });
            let info = zns_identify::namespace(t, name, q, alloc, (nsid, &id), zasl, timeout);
            // A zoned namespace whose zones cannot be read is kept, with I/O refused.
            match info {
                Ok(z) => Some(z),
                Err(e) => {
                    tracing::warn!(device = %name, nsid, error = %e, "zoned namespace without usable zone data; its I/O is refused");
                    None
                }
            }
        } else {
            None
        };
        namespaces.push(Namespace {
            nsid,
            lba_size,
            blocks: id.nsze,
            metadata_size: id.metadata_size().unwrap_or(0),
            identify: Box::new(id),
            nvm,
            command_set,
            zoned,
        });
    }
    Ok((ctrl, namespaces))
}

/// The I/O command set of namespace `nsid`, from its descriptor list (CNS 03h). A
/// controller that does not say is taken to mean NVM, with a warning, as Linux
/// `nvme_identify_ns_descs` does for controllers before NVMe 1.3.
fn command_set<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    nsid: u32,
    timeout: Duration,
) -> CommandSetId {
    let ids = identify_page(
        t,
        name,
        q,
        alloc,
        Cns::NAMESPACE_DESCRIPTOR_LIST,
        nsid,
        timeout,
    )
    .and_then(|page| NamespaceIds::parse(&page).map_err(|e| bad_data(name, e)));
    match ids {
        Ok(NamespaceIds { csi: Some(csi), .. }) => csi,
        Ok(_) => {
            tracing::warn!(device = %name, nsid, "no command set in the namespace's descriptor list; taken as NVM");
            CommandSetId::NVM
        }
        Err(e) => {
            tracing::warn!(device = %name, nsid, error = %e, "namespace descriptor list; the namespace is taken as NVM");
            CommandSetId::NVM
        }
    }
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

/// Host Behavior Support (NVMe Base 2.0 §5.27.1.22) and its data structure's size.
const HOST_BEHAVIOR_SUPPORT: crate::spec::features::FeatureId =
    crate::spec::features::FeatureId(0x16);
const HOST_BEHAVIOR_BYTES: usize = 512;

/// Enables Advanced Command Retry (ACRE, byte 0 of Host Behavior Support) when the
/// controller reports a Command Retry Delay Time, so its transient failures name the
/// delay to wait before a retry (Linux `nvme_configure_acre`). A controller that
/// refuses keeps its default, retries without delay: the failure is logged, not
/// returned.
fn configure_acre<T: Transport>(
    t: &T,
    name: &str,
    q: &mut AdminQueue,
    alloc: &DmaAllocator,
    id: &IdentifyController,
    timeout: Duration,
) {
    if [id.crdt1, id.crdt2, id.crdt3] == [0; 3] {
        return;
    }
    let mut set = || -> Result<(), Error> {
        // Page aligned, so the structure lies in one page: PRP1 alone describes it.
        let mut buf = DmaMem::alloc(alloc, HOST_BEHAVIOR_BYTES, 4096, "Host Behavior Support")?;
        buf.write_u32(0, 1)?;
        let sqe = with_data(t, SetFeatures::new(HOST_BEHAVIOR_SUPPORT, 0).to_sqe(), &buf);
        match exec_admin(t, name, q, sqe, timeout) {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, Error::CommandTimedOut { .. }) {
                    // The controller may still read the page: never hand it out again.
                    std::mem::forget(buf);
                }
                Err(e)
            }
        }
    };
    match set() {
        Ok(()) => tracing::debug!(device = %name, "Advanced Command Retry enabled"),
        Err(e) => {
            tracing::warn!(device = %name, error = %e, "Set Features Host Behavior Support (ACRE) failed; retries take no delay")
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

/// Brings the controller up over `transport`: disable, admin queue, CC, enable, identify,
/// namespaces, shadow doorbells, Number of Queues, asynchronous events.
pub(super) fn bring_up<T: Transport>(transport: T, options: Options) -> Result<Shared<T>, Error> {
    let t = transport;
    let name = t.name();
    let alloc =
        DmaAllocator::new(t.dma_mapper(), t.allocator_options()).map_err(|source| Error::Dma {
            what: "the allocator",
            source,
        })?;
    let cap_raw = t.read64(offset::CAP);
    if cap_raw == u64::MAX || t.read32(offset::CSTS) == u32::MAX {
        return Err(Error::DeviceGone {
            device: name,
            during: "reading CAP",
            reason: t.failure(),
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
        let (identify, namespaces) = identify_all(&t, &name, &mut admin, &alloc, cap, timeout)?;
        // The shadow and EventIdx buffers are laid out like the doorbells, with the
        // stride CAP.DSTRD gives (the device's word): sized as Linux sizes them
        // (`nvme_dbbuf_size`), for every queue, in whole pages; a stride that would
        // need more than MAX_DBBUF_BYTES means MMIO doorbells only.
        let stride = 4usize << cap.dstrd();
        let dbbuf_bytes = ((usize::from(options.io_queues) + 1) * 2 * stride).div_ceil(ps) * ps;
        let dbbuf_fits = dbbuf_bytes <= MAX_DBBUF_BYTES;
        if options.shadow_doorbells && !dbbuf_fits {
            tracing::debug!(device = %name, dstrd = cap.dstrd(), "doorbell stride too large for shadow doorbells; using MMIO doorbells only");
        }
        let dbbuf = if options.shadow_doorbells
            && dbbuf_fits
            && identify.supports_doorbell_buffer_config()
        {
            let shadow = DmaMem::alloc(&alloc, dbbuf_bytes, ps, "shadow doorbells")?;
            let eventidx = DmaMem::alloc(&alloc, dbbuf_bytes, ps, "EventIdx buffer")?;
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
        configure_acre(&t, &name, &mut admin, &alloc, &identify, timeout);
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
    Ok(Shared {
        name,
        alloc,
        cap,
        page_size,
        admin: Mutex::new(admin),
        state: AtomicState::new(ControllerState::Live),
        epoch: AtomicU64::new(0),
        info: RwLock::new(Arc::new(info)),
        vectors,
        dbbuf,
        qids: Mutex::new(vec![false; usize::from(io_queues) + 1]),
        aen: Mutex::new(None),
        reset_lock: Mutex::new(()),
        options,
        t,
    })
}

impl<T: Transport> Shared<T> {
    /// Repeats the start-up steps after a reset: disable (escalating to a function
    /// reset), re-enable with the emptied admin queue `q`, shadow doorbells, Number of
    /// Queues, asynchronous events.
    pub(super) fn reset_locked(&self, q: &mut AdminQueue) -> Result<(), Error> {
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
        configure_acre(t, name, q, &self.alloc, &self.info().identify, timeout);
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
}
