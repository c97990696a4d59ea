//! The admin queue: one shared submission/completion pair behind a mutex, synchronous
//! command execution with a deadline, and Asynchronous Event Requests kept armed.

use std::time::{Duration, Instant};

use crate::dma::DmaMem;
use crate::error::CommandDesc;
use crate::queue::ring::{CqRing, Doorbells, SqRing};
use crate::queue::tracker::TrackerPool;
use crate::spec::features::FeatureId;
use crate::spec::log::LogPageId;
use crate::spec::{AdminOpcode, CompletionEntry, SubmissionEntry};
use crate::transport::Transport;

/// What an admin command slot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCtx {
    /// A caller is waiting for it.
    Sync,
    /// An Asynchronous Event Request.
    Aer,
    /// Its caller gave up waiting; the completion is dropped.
    Abandoned,
}

/// An asynchronous event reported by the controller (Asynchronous Event Request
/// completion, dword 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Asynchronous Event Type (0 error, 1 SMART/health, 2 notice, 6 I/O command set, 7 vendor).
    pub event_type: u8,
    /// Asynchronous Event Information.
    pub info: u8,
    /// The log page to read to clear the event.
    pub log_page: u8,
}

impl AsyncEvent {
    /// Decodes completion dword 0.
    pub fn from_dw0(dw0: u32) -> Self {
        let e = crate::spec::admin::AsyncEvent::from_bits(dw0);
        AsyncEvent {
            event_type: e.event_type().into_bits(),
            info: e.info(),
            log_page: e.lid(),
        }
    }
}

/// Counters of device misbehaviour seen on a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Commands submitted.
    pub submitted: u64,
    /// Completions delivered.
    pub completed: u64,
    /// Completions with a CID that is not outstanding (unknown or duplicate).
    pub unknown_cid: u64,
    /// Completions naming another submission queue.
    pub wrong_sq_id: u64,
    /// Completions whose SQ head lies outside the queue.
    pub bad_sq_head: u64,
    /// Commands that ran past their deadline.
    pub timeouts: u64,
    /// Abort commands sent.
    pub aborts: u64,
    /// Controller resets this queue went through.
    pub resets: u64,
    /// MMIO doorbell writes.
    pub doorbell_writes: u64,
    /// Doorbell updates that the shadow doorbell's EventIdx made unnecessary.
    pub doorbell_writes_skipped: u64,
}

/// The admin submission and completion queues.
pub(crate) struct AdminQueue {
    sq: SqRing,
    cq: CqRing,
    db: Doorbells,
    slots: TrackerPool<AdminCtx>,
    /// Completions of `Sync` commands, indexed by CID, until their caller takes them.
    done: Vec<Option<CompletionEntry>>,
    /// Events waiting for the callback.
    pub events: Vec<AsyncEvent>,
    pub stats: QueueStats,
    pub aers_armed: u16,
}

impl AdminQueue {
    pub fn new(sq_mem: DmaMem, cq_mem: DmaMem, depth: u16, dstrd: u8) -> Self {
        AdminQueue {
            sq: SqRing::new(sq_mem, depth),
            cq: CqRing::new(cq_mem, depth),
            db: Doorbells::new(0, dstrd),
            slots: TrackerPool::new(depth - 1, AdminCtx::Sync),
            done: vec![None; usize::from(depth)],
            events: Vec::new(),
            stats: QueueStats::default(),
            aers_armed: 0,
        }
    }

    pub fn sq_iova(&self) -> u64 {
        self.sq.iova()
    }

    pub fn cq_iova(&self) -> u64 {
        self.cq.iova()
    }

    pub fn depth(&self) -> u16 {
        self.sq.entries()
    }

    /// Forgets every outstanding command and empties the rings (controller disabled).
    pub fn reset(&mut self) {
        self.sq.reset();
        self.cq.reset();
        let depth = self.sq.entries();
        self.slots = TrackerPool::new(depth - 1, AdminCtx::Sync);
        self.done.iter_mut().for_each(|d| *d = None);
        self.aers_armed = 0;
    }

    /// Queues `sqe` and rings the doorbell; returns its CID.
    pub fn submit<T: Transport>(
        &mut self,
        t: &T,
        mut sqe: SubmissionEntry,
        ctx: AdminCtx,
    ) -> Option<u16> {
        if self.sq.is_full() {
            return None;
        }
        let desc = CommandDesc::Admin {
            name: AdminOpcode(sqe.opcode()).name().unwrap_or("vendor command"),
            opcode: sqe.opcode(),
        };
        let cid = self.slots.take(ctx, desc)?;
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        let tail = self.sq.mark_rung();
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.db.ring_sq(t, tail);
        self.stats.submitted += 1;
        self.stats.doorbell_writes += 1;
        Some(cid)
    }

    /// Consumes every posted completion; re-arms AERs that completed.
    pub fn drain<T: Transport>(&mut self, t: &T) -> usize {
        let mut n = 0;
        let mut rearm = 0u16;
        while let Some(cqe) = self.cq.pop() {
            n += 1;
            if cqe.sq_id != 0 {
                self.stats.wrong_sq_id += 1;
                tracing::warn!(sq_id = cqe.sq_id, "admin completion names another queue");
                continue;
            }
            if !self.sq.set_head(cqe.sq_head) {
                self.stats.bad_sq_head += 1;
                tracing::warn!(
                    sq_head = cqe.sq_head,
                    "admin completion SQ head out of range"
                );
            }
            let Some(slot) = self.slots.release(cqe.cid) else {
                self.stats.unknown_cid += 1;
                tracing::warn!(
                    cid = cqe.cid,
                    "admin completion for a command not outstanding"
                );
                continue;
            };
            self.stats.completed += 1;
            match slot.ctx {
                AdminCtx::Sync => self.done[usize::from(cqe.cid)] = Some(cqe),
                AdminCtx::Abandoned => {}
                AdminCtx::Aer => {
                    self.aers_armed = self.aers_armed.saturating_sub(1);
                    if cqe.status.is_success() {
                        self.events.push(AsyncEvent::from_dw0(cqe.dw0));
                        rearm += 1;
                    } else {
                        // Aborted by a reset or refused (limit exceeded): do not re-arm.
                        tracing::debug!(status = %cqe.status, "asynchronous event request ended");
                    }
                }
            }
        }
        if n > 0 {
            self.db.ring_cq(t, self.cq.head());
            self.stats.doorbell_writes += 1;
        }
        for _ in 0..rearm {
            self.arm_aer(t);
        }
        n
    }

    /// Submits one Asynchronous Event Request.
    pub fn arm_aer<T: Transport>(&mut self, t: &T) -> bool {
        let sqe = crate::spec::admin::async_event_request();
        let ok = self.submit(t, sqe, AdminCtx::Aer).is_some();
        if ok {
            self.aers_armed += 1;
        }
        ok
    }

    /// The completion of `cid` if it has arrived.
    pub fn take_done(&mut self, cid: u16) -> Option<CompletionEntry> {
        self.done.get_mut(usize::from(cid)).and_then(|d| d.take())
    }

    /// Gives up on `cid`: its completion, if it ever comes, is dropped, and the CID is
    /// not reused until then.
    pub fn abandon(&mut self, cid: u16) {
        if let Some(slot) = self.slots.get_mut(cid) {
            slot.ctx = AdminCtx::Abandoned;
        }
    }
}

/// Sleeps a little longer each time, up to 1 ms: first spins, then yields, then sleeps.
pub(crate) struct Backoff {
    round: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { round: 0 }
    }

    pub fn wait(&mut self) {
        self.round += 1;
        if self.round < 64 {
            std::hint::spin_loop();
        } else if self.round < 128 {
            std::thread::yield_now();
        } else {
            let us = (self.round - 127).min(1000);
            std::thread::sleep(Duration::from_micros(u64::from(us)));
        }
    }
}

/// A deadline `timeout` from now.
pub(crate) fn deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

/// Admin commands offered to users of the controller.
impl<T: Transport> crate::Controller<T> {
    /// Sets the callback that receives asynchronous events (called from whichever thread
    /// polls the admin queue: [`crate::Controller::poll_admin`] or any admin command).
    pub fn set_async_event_callback(&self, f: impl FnMut(AsyncEvent) + Send + 'static) {
        *self.shared.aen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// Polls the admin completion queue once; asynchronous events found there go to the
    /// callback. Call it now and then when events matter: nothing else polls for them.
    pub fn poll_admin(&self) -> usize {
        self.shared.poll_admin()
    }

    /// Runs an admin command without data and returns completion dword 0.
    pub fn admin_command(&self, sqe: SubmissionEntry) -> Result<u32, crate::Error> {
        let timeout = self.shared.options.admin_timeout;
        self.shared.admin_exec(sqe, timeout).map(|c| c.dw0)
    }

    /// Runs an admin command that transfers `len` bytes from the controller, returning them.
    pub fn admin_read(
        &self,
        mut sqe: SubmissionEntry,
        len: usize,
    ) -> Result<Vec<u8>, crate::Error> {
        let ps = self.shared.page_size as usize;
        let buf = DmaMem::alloc(&self.shared.alloc, len.max(4), ps, "admin data")?;
        let mut list = DmaMem::alloc(&self.shared.alloc, ps, ps, "an admin PRP list")?;
        let seg = buf.buffer().as_segment();
        let (prp1, prp2) = crate::queue::prp::build(&[seg], ps as u64, &mut OnePage(&mut list))?;
        sqe.set_prp(prp1, prp2);
        let timeout = self.shared.options.admin_timeout;
        if let Err(e) = self.shared.admin_exec(sqe, timeout) {
            if matches!(e, crate::Error::CommandTimedOut { .. }) {
                // The controller may still write these pages: never hand them out again.
                std::mem::forget(buf);
                std::mem::forget(list);
            }
            return Err(e);
        }
        let mut out = vec![0u8; len];
        buf.buffer()
            .read(0, &mut out)
            .map_err(|e| crate::Error::Dma {
                what: "admin data",
                detail: e.to_string(),
            })?;
        Ok(out)
    }

    /// Identify with CNS `cns` for `nsid`: the raw 4096-byte page.
    pub fn identify(&self, cns: u8, nsid: u32) -> Result<Vec<u8>, crate::Error> {
        let sqe = crate::spec::admin::Identify {
            cns: crate::spec::identify::Cns(cns),
            nsid,
            cntid: 0,
            csi: 0,
        }
        .to_sqe();
        self.admin_read(sqe, 4096)
    }

    /// Get Features `fid` (current value) with `cdw11`; returns completion dword 0.
    pub fn get_features(&self, fid: u8, cdw11: u32) -> Result<u32, crate::Error> {
        let mut sqe = crate::spec::admin::GetFeatures::current(FeatureId(fid)).to_sqe();
        sqe.cdw11 = cdw11;
        self.admin_command(sqe)
    }

    /// Set Features `fid` to `value` (CDW11); returns completion dword 0.
    pub fn set_features(&self, fid: u8, value: u32, save: bool) -> Result<u32, crate::Error> {
        let set = crate::spec::admin::SetFeatures {
            save,
            ..crate::spec::admin::SetFeatures::new(FeatureId(fid), value)
        };
        self.admin_command(set.to_sqe())
    }

    /// Get Log Page `lid` for `nsid`, `len` bytes (a multiple of 4) from byte 0.
    pub fn get_log_page(&self, lid: u8, nsid: u32, len: usize) -> Result<Vec<u8>, crate::Error> {
        let sqe = crate::spec::admin::GetLogPage {
            nsid,
            ..crate::spec::admin::GetLogPage::new(LogPageId(lid), len as u64)
        }
        .to_sqe()
        .map_err(|e| crate::Error::InvalidRequest(e.to_string()))?;
        self.admin_read(sqe, len)
    }

    /// The SMART / Health Information log (log page 02h, controller wide).
    pub fn smart_log(&self) -> Result<crate::spec::SmartLog, crate::Error> {
        let page = self.get_log_page(0x02, crate::spec::command::NSID_ALL, 512)?;
        crate::spec::SmartLog::parse(&page).map_err(|e| crate::Error::BadDeviceData {
            device: self.name().to_string(),
            detail: e.to_string(),
        })
    }

    /// The Error Information log (log page 01h), `entries` entries of 64 bytes.
    pub fn error_log(
        &self,
        entries: usize,
    ) -> Result<Vec<crate::spec::ErrorLogEntry>, crate::Error> {
        let n = entries.clamp(
            1,
            usize::from(self.identify_controller().error_log_entries()),
        );
        let page = self.get_log_page(0x01, 0, n * 64)?;
        page.chunks_exact(64)
            .map(|c| {
                crate::spec::ErrorLogEntry::parse(c).map_err(|e| crate::Error::BadDeviceData {
                    device: self.name().to_string(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Abort command `cid` on submission queue `sqid`; returns whether the controller
    /// says it aborted it.
    pub fn abort(&self, sqid: u16, cid: u16) -> Result<bool, crate::Error> {
        self.shared.abort(sqid, cid)
    }
}

/// One PRP list page for an admin transfer.
struct OnePage<'a>(&'a mut DmaMem);

impl crate::queue::prp::ListPages for OnePage<'_> {
    fn page_count(&self) -> usize {
        1
    }
    fn page_iova(&self, _page: usize) -> u64 {
        self.0.iova()
    }
    fn write_entry(&mut self, _page: usize, slot: usize, value: u64) -> Result<(), crate::Error> {
        self.0.write_u64(slot * 8, value)
    }
}

impl<T: Transport> crate::controller::Shared<T> {
    /// Sends Abort for (`sqid`, `cid`); true when completion dword 0 bit 0 is clear.
    pub fn abort(&self, sqid: u16, cid: u16) -> Result<bool, crate::Error> {
        let sqe = crate::spec::admin::Abort { sqid, cid }.to_sqe();
        let timeout = self.options.abort_timeout;
        self.admin_exec(sqe, timeout)
            .map(|c| crate::spec::admin::Abort::aborted(c.dw0))
    }
}
