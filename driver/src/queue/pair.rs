//! An I/O queue pair: one per thread, no lock and no allocation per command.
//!
//! Submissions are queued with `submit_*` and reach the controller at the next
//! [`IoQueuePair::ring`] (or [`IoQueuePair::process_completions`], which rings first): one
//! doorbell write per batch. Completions are handed to a closure with the context the
//! caller gave at submission. A polled pair's CQ is [`POLLED_CQ_SLACK`] entries larger than
//! its SQ, so its head doorbell is written once per that many completions, not per poll.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hugepages::DmaBuffer;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::admin::{Backoff, QueueStats};
use crate::controller::{check_csts, Controller, Shared, STATE_LIVE, STATE_SHUT_DOWN};
use crate::dma::DmaMem;
use crate::error::{CommandDesc, IoKind, PrpRule};
use crate::namespace::NsTable;
use crate::options::{CompletionMode, QueuePairOptions};
use crate::queue::prp::{self, ListPages, Segment};
use crate::queue::ring::{CqRing, Doorbells, ShadowSlots, SqRing};
use crate::queue::tracker::{Released, TrackerPool};
use crate::spec::admin::{delete_io_cq, delete_io_sq, CreateIoCq, CreateIoSq, QueuePriority};
use crate::spec::registers::shadow_doorbell_needs_mmio;
use crate::spec::{nvm, Status, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

/// Most blocks one read/write command can carry (NLB is 16 bits, 0's based).
const MAX_BLOCKS: u32 = 1 << 16;
/// Most ranges in one Dataset Management command.
const MAX_DSM_RANGES: usize = 256;
/// Completion queue entries a polled queue pair adds beyond its submission queue's; its
/// CQ head doorbell is written only once more than this many consumed entries await it.
const POLLED_CQ_SLACK: u16 = 64;

/// A piece of a large request that fits one command (see [`IoQueuePair::split_by_mdts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoChunk {
    /// First LBA of the piece.
    pub slba: u64,
    /// Number of blocks.
    pub blocks: u32,
    /// The data segments of the piece.
    pub segments: Vec<Segment>,
}

/// PRP list pages of one command slot.
struct SlotLists<'a> {
    mem: &'a mut DmaMem,
    base: usize,
    pages: usize,
    page_size: usize,
}

impl ListPages for SlotLists<'_> {
    fn page_count(&self) -> usize {
        self.pages
    }

    fn page_iova(&self, page: usize) -> u64 {
        self.mem.iova() + (self.base + page * self.page_size) as u64
    }

    fn write_entry(&mut self, page: usize, slot: usize, value: u64) -> Result<(), Error> {
        self.mem
            .write_u64(self.base + page * self.page_size + slot * 8, value)
    }
}

/// Polls between two readings of the clock while commands are outstanding.
///
/// The hot path reads the clock only this often, and then the coarse clock (see
/// [`coarse_ns`]); command deadlines are measured from the first reading after
/// submission (see [`TrackerPool::stamp`]).
const CLOCK_POLLS: u32 = 256;

/// A coarse clock for command deadlines, read every [`CLOCK_POLLS`] polls and once per
/// round of [`IoQueuePair::wait_completions`]; never per command or doorbell.
struct Clock {
    start: Instant,
    /// [`coarse_ns`] at `start` (`None`: the coarse clock is unavailable).
    coarse_start: Option<u64>,
    now_ns: u64,
    /// Polls left before the next reading.
    countdown: u32,
    next_check_ns: u64,
}

impl Clock {
    fn new(start: Instant) -> Self {
        Clock {
            start,
            coarse_start: coarse_ns(),
            now_ns: 0,
            countdown: CLOCK_POLLS,
            next_check_ns: 0,
        }
    }

    /// Nanoseconds since `start`, within one timer tick (a few milliseconds, far below
    /// any command timeout).
    fn refresh(&mut self) -> u64 {
        self.now_ns = match (self.coarse_start, coarse_ns()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.start.elapsed().as_nanos() as u64,
        };
        self.now_ns
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the monotonic clock as of the last timer
/// tick. The vDSO answers it from memory, without a system call or a timer-device
/// access, which `Instant::now` needs where the clock source is not the TSC (an
/// HPET-clocked virtual machine: there each such read also waits for the emulator's
/// device lock, costing more than a polled completion).
fn coarse_ns() -> Option<u64> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// An I/O submission/completion queue pair owned by one thread.
///
/// `C` is the per-command context handed back on completion (`u64` by default; any
/// `Copy + Default` type). The pair is `Send` but not `Sync`.
pub struct IoQueuePair<T: Transport, C: Copy + Default = u64> {
    qid: u16,
    sq: SqRing,
    cq: CqRing,
    /// Completions consumed since the CQ head doorbell was last written.
    cq_unrung: u16,
    /// Most completions the CQ head doorbell may lag by (CQ entries minus SQ entries).
    cq_slack: u16,
    db: Doorbells,
    shadow: Option<ShadowSlots>,
    slots: TrackerPool<C>,
    lists: DmaMem,
    list_pages: usize,
    page_size: u64,
    max_transfer: u64,
    ns: Arc<NsTable>,
    mode: CompletionMode,
    vector: u16,
    irq: Option<(Arc<EventFd>, Epoll)>,
    epoch: u64,
    failed_pending: usize,
    stats: QueueStats,
    clock: Clock,
    timeout: Duration,
    _not_sync: PhantomData<Cell<()>>,
    // Last: the rings and lists above are unmapped while the transport (possibly owned
    // only through this Arc) still exists.
    shared: Arc<Shared<T>>,
}

impl<T: Transport, C: Copy + Default> std::fmt::Debug for IoQueuePair<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoQueuePair")
            .field("qid", &self.qid)
            .field("depth", &self.sq.entries())
            .field("outstanding", &self.slots.outstanding())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Creates the CQ then the SQ of `qid` on the controller (CQ deleted again if the SQ fails).
fn create_hw_queues<T: Transport>(
    shared: &Shared<T>,
    qid: u16,
    sq_iova: u64,
    cq_iova: u64,
    (sq_depth, cq_depth): (u16, u16),
    vector: Option<u16>,
) -> Result<(), Error> {
    let timeout = shared.options.admin_timeout;
    let bad = |e: crate::spec::Error| Error::InvalidRequest(e.to_string());
    let cq = CreateIoCq {
        qid,
        entries: u32::from(cq_depth),
        prp1: cq_iova,
        contiguous: true,
        interrupt_vector: vector,
    }
    .to_sqe()
    .map_err(bad)?;
    let sq = CreateIoSq {
        qid,
        entries: u32::from(sq_depth),
        prp1: sq_iova,
        contiguous: true,
        cqid: qid,
        priority: QueuePriority::Urgent,
    }
    .to_sqe()
    .map_err(bad)?;
    shared.admin_exec(cq, timeout)?;
    if let Err(e) = shared.admin_exec(sq, timeout) {
        let _ = shared.admin_exec(delete_io_cq(qid), timeout);
        return Err(e);
    }
    Ok(())
}

impl<T: Transport> Controller<T> {
    /// Creates an I/O queue pair with `u64` command contexts.
    pub fn create_io_queue_pair(
        &self,
        options: QueuePairOptions,
    ) -> Result<IoQueuePair<T, u64>, Error> {
        self.create_io_queue_pair_with_context(options)
    }

    /// Creates an I/O queue pair whose commands carry a context of type `C`.
    pub fn create_io_queue_pair_with_context<C: Copy + Default>(
        &self,
        options: QueuePairOptions,
    ) -> Result<IoQueuePair<T, C>, Error> {
        IoQueuePair::new(self.shared.clone(), options)
    }
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    fn new(shared: Arc<Shared<T>>, options: QueuePairOptions) -> Result<Self, Error> {
        shared.check_live("creating an I/O queue pair")?;
        let info = shared.info();
        let qid = {
            let mut qids = shared.qids.lock().unwrap_or_else(|p| p.into_inner());
            let free = (1..qids.len()).find(|&q| !qids[q]);
            let Some(q) = free else {
                return Err(Error::NoFreeQueue {
                    device: shared.name.clone(),
                    granted: info.io_queues,
                });
            };
            qids[q] = true;
            q as u16
        };
        let release_qid = |shared: &Shared<T>| {
            let mut qids = shared.qids.lock().unwrap_or_else(|p| p.into_inner());
            qids[usize::from(qid)] = false;
        };
        let result = Self::build(shared.clone(), options, qid);
        if result.is_err() {
            release_qid(&shared);
        }
        result
    }

    fn build(shared: Arc<Shared<T>>, options: QueuePairOptions, qid: u16) -> Result<Self, Error> {
        let info = shared.info();
        let max_entries = shared.cap.max_queue_entries().min(65535) as u16;
        let depth = options.depth.max(2).min(max_entries);
        // A polled CQ larger than the SQ never fills while its head doorbell lags by up to
        // the difference (at most `depth - 1` commands are outstanding), so that doorbell
        // is written once per batch of completions instead of once per poll. With
        // interrupts the head is reported at once, as the controller may use it to
        // decide on the next interrupt.
        let cq_depth = match options.mode {
            CompletionMode::Polled => depth.saturating_add(POLLED_CQ_SLACK).min(max_entries),
            CompletionMode::Interrupt => depth,
        };
        let ps = shared.page_size as usize;
        let sq_mem = DmaMem::alloc(&shared.alloc, usize::from(depth) * 64, ps, "an I/O SQ")?;
        let cq_mem = DmaMem::alloc(&shared.alloc, usize::from(cq_depth) * 16, ps, "an I/O CQ")?;
        // Entries for the largest transfer, plus one when the buffer starts mid-page.
        let entries = (info.max_transfer / shared.page_size) as usize + 1;
        let list_pages = prp::list_pages_needed(entries - 1, ps / 8).max(1);
        let slots = depth - 1;
        let lists = DmaMem::alloc(
            &shared.alloc,
            usize::from(slots) * list_pages * ps,
            ps,
            "PRP lists",
        )?;
        let (vector, irq) = match options.mode {
            CompletionMode::Polled => (0, None),
            CompletionMode::Interrupt => {
                let Some(fd) = shared.vectors.get(usize::from(qid)) else {
                    return Err(Error::Unsupported {
                        device: shared.name.clone(),
                        what: format!(
                            "an interrupt vector for queue {qid} ({} vectors enabled)",
                            shared.vectors.len()
                        ),
                    });
                };
                let epoll = Epoll::new().map_err(|source| Error::Interrupt {
                    vector: qid,
                    source,
                })?;
                epoll
                    .ctl(
                        ControlOperation::Add,
                        std::os::fd::AsRawFd::as_raw_fd(fd.as_ref()),
                        EpollEvent::new(EventSet::IN, u64::from(qid)),
                    )
                    .map_err(|source| Error::Interrupt {
                        vector: qid,
                        source,
                    })?;
                (qid, Some((fd.clone(), epoll)))
            }
        };
        let iv = irq.as_ref().map(|_| vector);
        let epoch = shared.epoch.load(Ordering::Acquire);
        create_hw_queues(
            &shared,
            qid,
            sq_mem.iova(),
            cq_mem.iova(),
            (depth, cq_depth),
            iv,
        )?;
        let dstrd = shared.cap.dstrd();
        let now = Instant::now();
        Ok(IoQueuePair {
            qid,
            sq: SqRing::new(sq_mem, depth),
            cq: CqRing::new(cq_mem, cq_depth),
            cq_unrung: 0,
            cq_slack: cq_depth - depth,
            db: Doorbells::new(qid, dstrd),
            shadow: shared
                .dbbuf
                .as_ref()
                .map(|_| Doorbells::shadow_slots(qid, dstrd)),
            slots: TrackerPool::new(slots, C::default()),
            lists,
            list_pages,
            page_size: shared.page_size,
            max_transfer: info.max_transfer,
            ns: info.ns_table.clone(),
            mode: options.mode,
            vector,
            irq,
            epoch,
            failed_pending: 0,
            stats: QueueStats::default(),
            clock: Clock::new(now),
            timeout: shared.options.io_timeout,
            _not_sync: PhantomData,
            shared,
        })
    }

    /// The queue ID.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Queue entries; at most `depth() - 1` commands are outstanding at once.
    pub fn depth(&self) -> u16 {
        self.sq.entries()
    }

    /// Commands submitted and not yet reported.
    pub fn outstanding(&self) -> usize {
        self.slots.outstanding()
    }

    /// The completion mode.
    pub fn mode(&self) -> CompletionMode {
        self.mode
    }

    /// Counters, including device misbehaviour seen on this queue.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The eventfd signalled by this queue's interrupt vector (interrupt mode only), for
    /// callers that wait in their own event loop.
    pub fn interrupt_fd(&self) -> Option<&EventFd> {
        self.irq.as_ref().map(|(fd, _)| fd.as_ref())
    }

    /// The largest transfer of one command in bytes.
    pub fn max_transfer_bytes(&self) -> u64 {
        self.max_transfer
    }

    fn ns_shift(&self, nsid: u32) -> Result<u32, Error> {
        self.ns
            .get(nsid)
            .map(|g| g.lba_shift)
            .ok_or_else(|| Error::NoSuchNamespace {
                device: self.shared.name.clone(),
                nsid,
            })
    }

    #[inline]
    fn check_epoch(&mut self) -> Result<(), Error> {
        if self.epoch != self.shared.epoch.load(Ordering::Acquire) {
            self.recover()?;
        }
        Ok(())
    }

    /// Queues one command; `data` is described with PRPs in the slot's list pages.
    #[inline(always)]
    fn submit(
        &mut self,
        mut sqe: SubmissionEntry,
        desc: CommandDesc,
        data: Option<(&[Segment], u64)>,
        ctx: C,
    ) -> Result<(), Error> {
        self.check_epoch()?;
        if self.sq.is_full() {
            return Err(self.queue_full());
        }
        let Some(cid) = self.slots.take(ctx, desc) else {
            return Err(self.queue_full());
        };
        if let Some((segments, bytes)) = data {
            let total: usize = segments.iter().map(|s| s.len).sum();
            if total as u64 != bytes {
                self.slots.undo_take(cid);
                return Err(Error::BadSegment {
                    index: 0,
                    iova: segments.first().map_or(0, |s| s.iova),
                    len: total,
                    rule: PrpRule::LengthMismatch,
                });
            }
            let ps = self.page_size as usize;
            let mut lists = SlotLists {
                base: usize::from(cid) * self.list_pages * ps,
                pages: self.list_pages,
                page_size: ps,
                mem: &mut self.lists,
            };
            match prp::build(segments, self.page_size, &mut lists) {
                Ok((prp1, prp2)) => sqe.set_prp(prp1, prp2),
                Err(e) => {
                    self.slots.undo_take(cid);
                    return Err(e);
                }
            }
        }
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        self.stats.submitted += 1;
        Ok(())
    }

    fn queue_full(&self) -> Error {
        Error::QueueFull {
            qid: self.qid,
            depth: self.sq.entries(),
        }
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn rw(
        &mut self,
        kind: IoKind,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        fua: bool,
        ctx: C,
    ) -> Result<(), Error> {
        let shift = self.ns_shift(nsid)?;
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba,
            blocks,
        };
        let bytes = u64::from(blocks) << shift;
        if blocks == 0 || blocks > MAX_BLOCKS || bytes > self.max_transfer {
            if blocks == 0 {
                return Err(Error::InvalidRequest(format!("{desc}: zero blocks")));
            }
            return Err(Error::ExceedsMdts {
                command: desc,
                bytes,
                max: self.max_transfer.min(u64::from(MAX_BLOCKS) << shift),
            });
        }
        let sqe = if kind == IoKind::Read {
            nvm::read(nsid, slba, blocks)
        } else {
            nvm::write(nsid, slba, blocks).map(|e| e.with_fua(fua))
        };
        let sqe = sqe.map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        self.submit(sqe, desc, Some((data, bytes)), ctx)
    }

    /// Queues a Read of `blocks` blocks at `slba` into `data`.
    ///
    /// The memory behind `data` must stay allocated until the completion is reported
    /// (dropping the pair waits for outstanding commands).
    pub fn submit_read(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        ctx: C,
    ) -> Result<(), Error> {
        self.rw(IoKind::Read, nsid, slba, blocks, data, false, ctx)
    }

    /// Queues a Write of `blocks` blocks at `slba` from `data`; `fua` makes it durable
    /// before it completes. `data` must stay allocated until the completion is reported.
    pub fn submit_write(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        fua: bool,
        ctx: C,
    ) -> Result<(), Error> {
        self.rw(IoKind::Write, nsid, slba, blocks, data, fua, ctx)
    }

    /// Queues a Flush of the namespace's volatile write cache.
    pub fn submit_flush(&mut self, nsid: u32, ctx: C) -> Result<(), Error> {
        let desc = CommandDesc::Io {
            kind: IoKind::Flush,
            nsid,
            slba: 0,
            blocks: 0,
        };
        self.submit(nvm::flush(nsid), desc, None, ctx)
    }

    /// Queues a Write Zeroes of `blocks` blocks at `slba`; `deallocate` sets DEAC.
    pub fn submit_write_zeroes(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        deallocate: bool,
        ctx: C,
    ) -> Result<(), Error> {
        self.no_data(IoKind::WriteZeroes, nsid, slba, blocks, ctx, |n, s, b| {
            nvm::write_zeroes(n, s, b).map(|e| e.with_deac(deallocate))
        })
    }

    /// Queues a Verify of `blocks` blocks at `slba`.
    pub fn submit_verify(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        ctx: C,
    ) -> Result<(), Error> {
        self.no_data(IoKind::Verify, nsid, slba, blocks, ctx, nvm::verify)
    }

    fn no_data(
        &mut self,
        kind: IoKind,
        nsid: u32,
        slba: u64,
        blocks: u32,
        ctx: C,
        build: impl FnOnce(u32, u64, u32) -> Result<SubmissionEntry, crate::spec::Error>,
    ) -> Result<(), Error> {
        self.ns_shift(nsid)?;
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba,
            blocks,
        };
        if blocks == 0 || blocks > MAX_BLOCKS {
            return Err(Error::InvalidRequest(format!(
                "{desc}: block count must be 1..=65536"
            )));
        }
        let sqe =
            build(nsid, slba, blocks).map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        self.submit(sqe, desc, None, ctx)
    }

    /// Queues a Dataset Management deallocate (trim) of `ranges` (start LBA, blocks);
    /// at most 256 ranges, written into the command's own list page.
    pub fn submit_deallocate(
        &mut self,
        nsid: u32,
        ranges: &[(u64, u32)],
        ctx: C,
    ) -> Result<(), Error> {
        self.ns_shift(nsid)?;
        let desc = CommandDesc::Io {
            kind: IoKind::DatasetManagement,
            nsid,
            slba: ranges.first().map_or(0, |r| r.0),
            blocks: ranges.first().map_or(0, |r| r.1),
        };
        if ranges.is_empty() || ranges.len() > MAX_DSM_RANGES {
            return Err(Error::InvalidRequest(format!(
                "{desc}: {} ranges given, 1..=256 allowed",
                ranges.len()
            )));
        }
        self.check_epoch()?;
        if self.sq.is_full() {
            return Err(self.queue_full());
        }
        let Some(cid) = self.slots.take(ctx, desc) else {
            return Err(self.queue_full());
        };
        let ps = self.page_size as usize;
        let base = usize::from(cid) * self.list_pages * ps;
        for (i, &(slba, blocks)) in ranges.iter().enumerate() {
            let off = base + i * 16;
            self.lists.write_u32(off, 0)?;
            self.lists.write_u32(off + 4, blocks)?;
            self.lists.write_u64(off + 8, slba)?;
        }
        let Ok(mut sqe) = nvm::deallocate(nsid, ranges.len()) else {
            self.slots.undo_take(cid);
            return Err(Error::InvalidRequest(format!("{desc}: bad range count")));
        };
        sqe.set_prp(self.lists.iova() + base as u64, 0);
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        self.stats.submitted += 1;
        Ok(())
    }

    /// Splits a request of `blocks` blocks at `slba` over `data` into pieces that each
    /// fit one command (MDTS and the 65536-block limit).
    pub fn split_by_mdts(
        &self,
        nsid: u32,
        slba: u64,
        blocks: u64,
        data: &[Segment],
    ) -> Result<Vec<IoChunk>, Error> {
        let shift = self.ns_shift(nsid)?;
        let lba = 1u64 << shift;
        let per_cmd = (self.max_transfer / lba).min(u64::from(MAX_BLOCKS)).max(1);
        let total: u64 = data.iter().map(|s| s.len as u64).sum();
        if total != blocks << shift {
            return Err(Error::BadSegment {
                index: 0,
                iova: data.first().map_or(0, |s| s.iova),
                len: total as usize,
                rule: PrpRule::LengthMismatch,
            });
        }
        let mut chunks = Vec::new();
        let mut seg_i = 0usize;
        let mut seg_off = 0usize;
        let mut done = 0u64;
        while done < blocks {
            let n = per_cmd.min(blocks - done);
            let mut want = (n << shift) as usize;
            let mut segments = Vec::new();
            while want > 0 {
                let s = data[seg_i];
                let take = (s.len - seg_off).min(want);
                segments.push(Segment {
                    iova: s.iova + seg_off as u64,
                    len: take,
                    ptr: s.ptr.wrapping_add(seg_off),
                });
                want -= take;
                seg_off += take;
                if seg_off == s.len {
                    seg_i += 1;
                    seg_off = 0;
                }
            }
            chunks.push(IoChunk {
                slba: slba + done,
                blocks: n as u32,
                segments,
            });
            done += n;
        }
        Ok(chunks)
    }

    /// Shadow-doorbell update (Linux `nvme_dbbuf_update_and_check_event`): returns whether
    /// the MMIO doorbell must still be written.
    #[inline]
    fn shadow_update(&self, sq: bool, value: u16) -> bool {
        let (Some(d), Some(s)) = (self.shared.dbbuf.as_ref(), self.shadow) else {
            return true;
        };
        let off = if sq { s.sq } else { s.cq };
        // A slot outside the buffers (a driver bug) falls back to the MMIO doorbell.
        let Ok(old) = d.shadow.read_u32(off) else {
            return true;
        };
        if d.shadow.write_u32(off, u32::from(value)).is_err() {
            return true;
        }
        // The shadow value must be visible before EventIdx is read.
        fence(Ordering::SeqCst);
        let Ok(event_idx) = d.eventidx.read_u32(off) else {
            return true;
        };
        let (old, event_idx) = (old as u16, event_idx as u16);
        shadow_doorbell_needs_mmio(event_idx, value, old)
    }

    /// Rings the SQ tail doorbell for everything queued since the last ring.
    #[inline]
    pub fn ring(&mut self) {
        if !self.sq.has_unrung() {
            return;
        }
        let tail = self.sq.mark_rung();
        // Entries must be in memory before the controller can see the new tail.
        fence(Ordering::Release);
        if self.shadow_update(true, tail) {
            self.db.ring_sq(&self.shared.t, tail);
            self.stats.doorbell_writes += 1;
        } else {
            self.stats.doorbell_writes_skipped += 1;
        }
    }

    /// Reaps up to `max` completions, calls `f(context, result)` for each, and returns
    /// how many it reported. Rings the SQ doorbell first if submissions are waiting, and
    /// the CQ head doorbell once at the end. Also enforces command deadlines.
    #[inline]
    pub fn process_completions(
        &mut self,
        max: usize,
        mut f: impl FnMut(C, Result<(), Error>),
    ) -> usize {
        if self.epoch != self.shared.epoch.load(Ordering::Acquire) {
            if let Err(e) = self.recover() {
                tracing::warn!(qid = self.qid, error = %e, "queue recovery failed");
            }
        }
        let mut n = 0;
        if self.failed_pending > 0 {
            n += self.deliver_failed(&mut f);
        }
        self.ring();
        n += self.reap(max.saturating_sub(n), &mut f);
        self.clock.countdown -= 1;
        if self.clock.countdown == 0 {
            self.clock.countdown = CLOCK_POLLS;
            n += self.tick(&mut f);
        }
        n
    }

    /// Reads the clock, stamps commands submitted since the last reading, and enforces
    /// deadlines at most every quarter timeout.
    fn tick(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        if self.slots.outstanding() == 0 {
            return 0;
        }
        let now = self.clock.refresh();
        self.tick_at(now, f)
    }

    /// [`IoQueuePair::tick`] with a clock reading (`now_ns` in the queue's clock) the
    /// caller already has.
    fn tick_at(&mut self, now_ns: u64, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        self.clock.now_ns = now_ns;
        self.slots.stamp(now_ns);
        if now_ns < self.clock.next_check_ns {
            return 0;
        }
        let interval = (self.timeout / 4).max(Duration::from_millis(1));
        self.clock.next_check_ns = now_ns + interval.as_nanos() as u64;
        self.check_deadlines(f)
    }

    #[inline]
    fn reap(&mut self, max: usize, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        let mut n = 0;
        let mut consumed: u16 = 0;
        while n < max {
            let Some(cqe) = self.cq.pop() else { break };
            consumed = consumed.saturating_add(1);
            if cqe.sq_id != self.qid {
                self.stats.wrong_sq_id += 1;
                warn_wrong_sq_id(self.qid, cqe.sq_id, cqe.cid);
                continue;
            }
            if !self.sq.set_head(cqe.sq_head) {
                self.stats.bad_sq_head += 1;
                warn_bad_sq_head(self.qid, cqe.sq_head);
            }
            let Some(slot) = self.slots.release_context(cqe.cid) else {
                self.stats.unknown_cid += 1;
                warn_unknown_cid(self.qid, cqe.cid);
                continue;
            };
            self.stats.completed += 1;
            let status = cqe.status.without_phase();
            let result = if !slot.failed && status.is_success() {
                Ok(())
            } else {
                Err(self.completion_error(cqe.cid, slot, status))
            };
            f(slot.ctx, result);
            n += 1;
        }
        self.cq_unrung = self.cq_unrung.saturating_add(consumed);
        if self.cq_unrung > self.cq_slack {
            self.cq_unrung = 0;
            let head = self.cq.head();
            if self.shadow_update(false, head) {
                self.db.ring_cq(&self.shared.t, head);
                self.stats.doorbell_writes += 1;
            } else {
                self.stats.doorbell_writes_skipped += 1;
            }
        }
        n
    }

    /// The error of a completion that did not succeed, or of a command a reset cut
    /// short (still reported as cut short); out of line, as completions nearly
    /// always succeed.
    #[cold]
    #[inline(never)]
    fn completion_error(&mut self, cid: u16, slot: Released<C>, status: Status) -> Error {
        let command = self.slots.desc(cid);
        if slot.failed {
            self.failed_pending = self.failed_pending.saturating_sub(1);
            Error::ControllerReset { command }
        } else if slot.aborted {
            Error::CommandTimedOut {
                command,
                timeout: self.timeout,
            }
        } else {
            Error::CommandFailed { command, status }
        }
    }

    /// Reports every command a reset cut short.
    fn deliver_failed(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        let down = match self.shared.state.load(Ordering::Acquire) {
            STATE_LIVE => None,
            STATE_SHUT_DOWN => Some("was shut down"),
            _ => Some("failed and could not be reset"),
        };
        let cids: Vec<u16> = self
            .slots
            .outstanding_cids()
            .filter(|&c| self.slots.get(c).is_some_and(|s| s.failed))
            .collect();
        let mut n = 0;
        for cid in cids {
            if let Some(slot) = self.slots.release(cid) {
                let err = match down {
                    _ if slot.aborted => Error::CommandTimedOut {
                        command: slot.desc,
                        timeout: self.timeout,
                    },
                    Some(reason) => Error::ControllerDown {
                        command: slot.desc,
                        device: self.shared.name.clone(),
                        reason,
                    },
                    None => Error::ControllerReset { command: slot.desc },
                };
                f(slot.ctx, Err(err));
                n += 1;
            }
        }
        self.failed_pending = 0;
        n
    }

    /// Aborts the oldest command past its deadline; resets the controller when the abort
    /// does not bring it back. Also notices a fatal or vanished controller.
    fn check_deadlines(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        if let Err(e) = check_csts(&self.shared.t, &self.shared.name, "I/O") {
            tracing::error!(qid = self.qid, error = %e, "controller failed; resetting");
            let _ = self.shared.reset_unless_past(Some(self.epoch));
            let _ = self.recover();
            return self.deliver_failed(f);
        }
        let Some((cid, slot)) = self.slots.oldest().map(|(c, s)| (c, *s)) else {
            return 0;
        };
        if slot.failed || slot.aborted {
            return 0;
        }
        let age = Duration::from_nanos(self.clock.now_ns.saturating_sub(slot.submitted_ns));
        if age < self.timeout {
            return 0;
        }
        self.stats.timeouts += 1;
        self.slots.mark_aborted(cid);
        tracing::warn!(qid = self.qid, cid, command = %slot.desc, ?age, "command timed out; aborting");
        self.stats.aborts += 1;
        if let Err(e) = self.shared.abort(self.qid, cid) {
            tracing::warn!(qid = self.qid, cid, error = %e, "Abort failed");
        }
        let end = Instant::now() + self.shared.options.abort_timeout;
        let mut n = 0;
        let mut backoff = Backoff::new();
        while self.slots.get(cid).is_some_and(|s| s.aborted) && Instant::now() < end {
            n += self.reap(usize::MAX, f);
            backoff.wait();
        }
        if self.slots.get(cid).is_some_and(|s| s.aborted) {
            tracing::error!(
                qid = self.qid,
                cid,
                "aborted command did not complete; resetting the controller"
            );
            let _ = self.shared.reset_unless_past(Some(self.epoch));
            let _ = self.recover();
            n += self.deliver_failed(f);
        }
        n
    }

    /// Catches up with a controller reset or shutdown: outstanding commands are marked
    /// failed (reported by the next `process_completions`), the rings emptied and the
    /// queues re-created.
    fn recover(&mut self) -> Result<(), Error> {
        // Wait for a reset in progress to finish.
        drop(
            self.shared
                .reset_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let cids: Vec<u16> = self.slots.outstanding_cids().collect();
        for cid in cids {
            if let Some(s) = self.slots.get_mut(cid) {
                if !s.failed {
                    s.failed = true;
                    self.failed_pending += 1;
                }
            }
        }
        let state = self.shared.state.load(Ordering::Acquire);
        if state != STATE_LIVE {
            // Shut down or failed: keep our epoch stale so every call reports it.
            return self.shared.check_live("I/O");
        }
        self.sq.reset();
        self.cq.reset();
        self.cq_unrung = 0;
        if let (Some(d), Some(s)) = (self.shared.dbbuf.as_ref(), self.shadow) {
            d.shadow.write_u32(s.sq, 0)?;
            d.shadow.write_u32(s.cq, 0)?;
        }
        let iv = self.irq.as_ref().map(|_| self.vector);
        let r = create_hw_queues(
            &self.shared,
            self.qid,
            self.sq.iova(),
            self.cq.iova(),
            (self.sq.entries(), self.cq.entries()),
            iv,
        );
        if r.is_ok() {
            self.epoch = epoch;
            self.stats.resets += 1;
        }
        r
    }

    /// Processes completions, waiting up to `timeout` for at least one when none is
    /// ready: on the queue's eventfd in interrupt mode, by polling otherwise.
    pub fn wait_completions(
        &mut self,
        max: usize,
        timeout: Duration,
        mut f: impl FnMut(C, Result<(), Error>),
    ) -> Result<usize, Error> {
        let end = Instant::now() + timeout;
        let mut backoff = Backoff::new();
        loop {
            let n = self.process_completions(max, &mut f);
            if n > 0 || self.slots.outstanding() == 0 {
                return Ok(n);
            }
            // The clock is read anyway on this path: stamp and enforce deadlines with it.
            let now = Instant::now();
            let since_start = now.saturating_duration_since(self.clock.start).as_nanos() as u64;
            let n = self.tick_at(since_start, &mut f);
            if n > 0 {
                return Ok(n);
            }
            if now >= end {
                return Ok(0);
            }
            match &self.irq {
                Some((fd, epoll)) => {
                    // Wake at least every 10 ms so deadlines are still enforced.
                    let ms = (end - now)
                        .min(Duration::from_millis(10))
                        .as_millis()
                        .max(1);
                    let mut events = [EpollEvent::default(); 1];
                    match epoll.wait(ms as i32, &mut events) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(Error::Interrupt {
                                vector: self.vector,
                                source,
                            })
                        }
                    }
                    // Clear the counter; EAGAIN just means it was already clear.
                    let _ = fd.read();
                }
                None => backoff.wait(),
            }
        }
    }

    /// Waits for every outstanding command (bounded by the I/O timeout plus abort time).
    fn wait_idle(&mut self, mut f: impl FnMut(C, Result<(), Error>)) -> Result<(), Error> {
        let limit = self.timeout + self.shared.options.abort_timeout * 2 + Duration::from_secs(1);
        let end = Instant::now() + limit;
        while self.slots.outstanding() > 0 {
            if Instant::now() >= end {
                return Err(Error::Timeout {
                    device: self.shared.name.clone(),
                    what: "complete the outstanding commands",
                    waited: limit,
                });
            }
            self.wait_completions(usize::MAX, Duration::from_millis(10), &mut f)?;
        }
        Ok(())
    }

    fn sync(&mut self, submit: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        if self.slots.outstanding() > 0 {
            return Err(Error::InvalidRequest(format!(
                "a blocking call on queue {} needs an idle queue pair ({} commands outstanding)",
                self.qid,
                self.slots.outstanding()
            )));
        }
        submit(self)?;
        self.ring();
        let mut result = Ok(());
        self.wait_idle(|_, r| {
            if r.is_err() {
                result = r;
            }
        })?;
        result
    }

    /// Reads `blocks` blocks at `slba` into the start of `buf` and waits.
    pub fn read_sync(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        buf: &mut DmaBuffer,
    ) -> Result<(), Error> {
        let bytes = (u64::from(blocks) << self.ns_shift(nsid)?) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_read(nsid, slba, blocks, &[seg], C::default()))
    }

    /// Writes `blocks` blocks at `slba` from the start of `buf` and waits.
    pub fn write_sync(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        buf: &DmaBuffer,
        fua: bool,
    ) -> Result<(), Error> {
        let bytes = (u64::from(blocks) << self.ns_shift(nsid)?) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_write(nsid, slba, blocks, &[seg], fua, C::default()))
    }

    /// Flushes the namespace and waits.
    pub fn flush_sync(&mut self, nsid: u32) -> Result<(), Error> {
        self.sync(|q| q.submit_flush(nsid, C::default()))
    }
}

impl<T: Transport, C: Copy + Default> Drop for IoQueuePair<T, C> {
    fn drop(&mut self) {
        if self.slots.outstanding() > 0 && self.shared.state.load(Ordering::Acquire) == STATE_LIVE {
            // The device may still be moving data for these: let them finish (bounded).
            if let Err(e) = self.wait_idle(|_, _| {}) {
                tracing::warn!(qid = self.qid, error = %e, "queue pair dropped with commands outstanding");
            }
        }
        let shared = &self.shared;
        if shared.state.load(Ordering::Acquire) == STATE_LIVE
            && self.epoch == shared.epoch.load(Ordering::Acquire)
        {
            let timeout = shared.options.admin_timeout;
            if let Err(e) = shared
                .admin_exec(delete_io_sq(self.qid), timeout)
                .and_then(|_| shared.admin_exec(delete_io_cq(self.qid), timeout))
            {
                tracing::warn!(qid = self.qid, error = %e, "deleting I/O queues failed");
            }
        }
        let mut qids = shared.qids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = qids.get_mut(usize::from(self.qid)) {
            *q = false;
        }
    }
}

// The device's mistakes are reported out of line: the reap loop stays small.

#[cold]
#[inline(never)]
fn warn_wrong_sq_id(qid: u16, sq_id: u16, cid: u16) {
    tracing::warn!(
        qid,
        sq_id,
        cid,
        "completion names another submission queue; ignored"
    );
}

#[cold]
#[inline(never)]
fn warn_bad_sq_head(qid: u16, sq_head: u16) {
    tracing::warn!(
        qid,
        sq_head,
        "completion reports an SQ head outside the queue; ignored"
    );
}

#[cold]
#[inline(never)]
fn warn_unknown_cid(qid: u16, cid: u16) {
    tracing::warn!(
        qid,
        cid,
        "completion for a command that is not outstanding; ignored"
    );
}
