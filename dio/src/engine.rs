//! [`Dio`]: turns requests into NVMe commands on one queue pair (Linux's
//! `__iomap_dio_rw` and `iomap_dio_bio_iter` in `fs/iomap/direct-io.c`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buf::DmaBuf;
use crate::error::DioError;
use crate::iomap::{CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{DeviceCaps, DioQueue, QueueError};
use crate::slot::{make_tag, tag_op_name, AsyncCtx, Op, Slot, SlotState, GEN_MASK, MAX_SLOTS};

/// Most DMA segments the layer puts in one command.
pub(crate) const MAX_SEGMENTS: usize = 16;
/// Buffer addresses must be dword aligned (NVMe PRP entries).
pub(crate) const DMA_ALIGN: u32 = 4;
/// [`Dio::sync_tag`] while the reserved slot is taken (no tag has every bit set).
pub(crate) const NO_SYNC_TAG: u64 = u64::MAX;
/// Completions reaped per poll call.
const REAP_BATCH: usize = 64;
/// Largest transfer the layer puts in one command when the device sets no limit.
const DEFAULT_MAX_COMMAND: usize = 1 << 20;

/// Direction of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Device to memory.
    Read,
    /// Memory to device.
    Write,
    /// The device compares its data with memory; nothing moves to memory.
    Compare,
}

/// How a request is issued, beyond its [`Kiocb`]: the arguments `iomap_dio_rw`
/// takes besides the iocb, iterator and operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Read or write.
    pub dir: Direction,
    /// Caller options (`dio_flags`).
    pub flags: DioFlags,
    /// Bytes an earlier part of the request already transferred; added to the result.
    pub done_before: usize,
}

impl Request {
    /// A request in direction `dir` with no options and nothing done before.
    #[inline]
    pub const fn new(dir: Direction) -> Self {
        Request {
            dir,
            flags: DioFlags::empty(),
            done_before: 0,
        }
    }

    /// A read with no options and nothing done before.
    #[inline]
    pub const fn read() -> Self {
        Self::new(Direction::Read)
    }

    /// A write with no options and nothing done before.
    #[inline]
    pub const fn write() -> Self {
        Self::new(Direction::Write)
    }

    /// A compare with no options and nothing done before.
    #[inline]
    pub const fn compare() -> Self {
        Self::new(Direction::Compare)
    }

    /// This request with the options `flags`.
    #[inline]
    pub const fn flags(mut self, flags: DioFlags) -> Self {
        self.flags = flags;
        self
    }

    /// This request with `done_before` bytes already transferred.
    #[inline]
    pub const fn done_before(mut self, done_before: usize) -> Self {
        self.done_before = done_before;
        self
    }

    /// Whether the request writes.
    #[inline(always)]
    pub(crate) fn is_write(&self) -> bool {
        self.dir == Direction::Write
    }
}

/// Counters of what the layer did on its queue pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DioStats {
    /// Bytes reported transferred to callers.
    pub bytes: u64,
    /// Commands issued (reads, writes, write zeroes, flushes).
    pub commands: u64,
    /// Write and Write Zeroes commands issued with FUA.
    pub fua_commands: u64,
    /// Flush commands issued.
    pub flush_commands: u64,
    /// Bytes zeroed on the device for sub-block zeroing.
    pub zeroed_bytes: u64,
    /// Bytes zero-filled in memory for holes and unwritten extents.
    pub hole_bytes: u64,
}

/// How an asynchronous request went on.
pub enum Submitted<B> {
    /// Commands are in flight; the callback runs when they complete.
    Queued,
    /// The request finished during submission; the callback is not called.
    Done(AsyncDone<B>),
}

/// A finished asynchronous request.
pub struct AsyncDone<B> {
    /// The request, with its position advanced on success.
    pub iocb: Kiocb,
    /// The buffers, handed back.
    pub iter: IovIter<B>,
    /// Bytes transferred (plus `done_before`), or the first error.
    pub result: Result<usize, DioError>,
}

/// Per-request submission state that does not outlive submission.
pub(crate) struct Submit {
    pub(crate) slot: usize,
    pub(crate) write: bool,
    /// A compare: read-like, but the device compares instead of moving data.
    pub(crate) compare: bool,
    /// NOWAIT: a full queue fails the request instead of waiting for room.
    pub(crate) nowait: bool,
    /// What the provider is told about the request.
    pub(crate) map_flags: IomapFlags,
    /// The caller's options.
    pub(crate) dio_flags: DioFlags,
    pub(crate) i_size: u64,
    pub(crate) fs_block: u64,
    pub(crate) commands: u32,
}

impl Submit {
    /// The submission state of `req` at `iocb` in `slot`.
    #[inline]
    pub(crate) fn new(slot: usize, req: Request, iocb: &Kiocb, i_size: u64, fs_block: u64) -> Self {
        Submit {
            slot,
            write: req.is_write(),
            compare: req.dir == Direction::Compare,
            nowait: iocb.flags.contains(KiocbFlags::NOWAIT),
            map_flags: map_flags(req, iocb.flags),
            dio_flags: req.flags,
            i_size,
            fs_block,
            commands: 0,
        }
    }
}

/// What the provider is told about a request (`IOMAP_DIRECT`, `IOMAP_WRITE`,
/// `IOMAP_NOWAIT`, `IOMAP_OVERWRITE_ONLY`).
#[inline]
pub(crate) fn map_flags(req: Request, flags: KiocbFlags) -> IomapFlags {
    let mut map_flags = IomapFlags::DIRECT;
    if req.is_write() {
        map_flags |= IomapFlags::WRITE;
        if req.flags.contains(DioFlags::OVERWRITE_ONLY) {
            map_flags |= IomapFlags::OVERWRITE_ONLY;
        }
    }
    if flags.contains(KiocbFlags::NOWAIT) {
        map_flags |= IomapFlags::NOWAIT;
    }
    map_flags
}

/// The direct-I/O engine for one queue pair; one per thread.
pub struct Dio<Q: DioQueue, B: DmaBuf> {
    pub(crate) qp: Q,
    pub(crate) caps: DeviceCaps,
    pub(crate) lba_shift: u32,
    /// Logical block size minus one.
    pub(crate) lba_mask: u64,
    /// Namespace size in bytes (saturated at `u64::MAX`).
    pub(crate) capacity_bytes: u64,
    pub(crate) max_command: usize,
    pub(crate) max_segments: usize,
    pub(crate) zero: Option<B>,
    pub(crate) slots: Vec<Slot<B>>,
    /// Free slots of the shared pool (every slot but the reserved one).
    pub(crate) free: Vec<usize>,
    /// Index of the slot reserved for synchronous single-command requests, or
    /// `usize::MAX` when the pool fills the whole tag index space.
    pub(crate) sync_slot: usize,
    /// The read tag of the reserved slot's current generation while the slot is
    /// free ([`NO_SYNC_TAG`] while a request holds it or there is none), so the
    /// single-command path takes a tag without touching the slot record.
    pub(crate) sync_tag: u64,
    pub(crate) ready: Vec<usize>,
    pub(crate) stats: DioStats,
    pub(crate) stray_completions: u64,
    /// Commands the layer issued whose completions it has not reaped yet.
    pub(crate) commands_in_flight: usize,
    pub(crate) timeout: Duration,
}

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// An engine over `qp` with room for `slots` requests in flight.
    ///
    /// One more slot, outside that pool, is kept for synchronous single-command
    /// requests (unless `slots` is the 2^20 maximum), so they never wait for room.
    ///
    /// `zero` is a zeroed, page-aligned buffer of at least one controller page used
    /// for sub-block zeroing when the device lacks Write Zeroes.
    pub fn new(qp: Q, zero: Option<B>, slots: usize) -> Result<Self, DioError> {
        let caps = qp.caps();
        let lba = caps.lba_size;
        if !lba.is_power_of_two() || !(512..=65536).contains(&lba) {
            return Err(DioError::InvalidRequest {
                reason: "device logical block size is not a power of two in 512..=65536",
            });
        }
        if !caps.page_size.is_power_of_two() || caps.page_size < 4096 {
            return Err(DioError::InvalidRequest {
                reason: "controller page size is not a power of two of at least 4096",
            });
        }
        if caps.max_segments == 0 {
            return Err(DioError::InvalidRequest {
                reason: "queue pair accepts no DMA segments",
            });
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(DioError::InvalidRequest {
                reason: "request slot count must be between 1 and 2^20",
            });
        }
        if let Some(z) = &zero {
            let page = caps.page_size as usize;
            let aligned = z.iova_at(0).is_some_and(|a| a % page as u64 == 0);
            if z.len() < page || !aligned || !z.zero(0, page) {
                return Err(DioError::InvalidRequest {
                    reason: "the zero buffer must be page aligned and at least one controller page",
                });
            }
        }
        // One more slot, outside the free list, for synchronous single-command
        // requests, when the tag index space has room for it.
        let sync_slot = if slots < MAX_SLOTS { slots } else { usize::MAX };
        let total = slots + usize::from(sync_slot != usize::MAX);
        let mut dio = Dio {
            qp,
            caps,
            lba_shift: lba.trailing_zeros(),
            lba_mask: u64::from(lba) - 1,
            capacity_bytes: caps.capacity_lbas.saturating_mul(u64::from(lba)),
            max_command: 0,
            max_segments: caps.max_segments.min(MAX_SEGMENTS),
            zero,
            slots: (0..total).map(|_| Slot::new()).collect(),
            free: (0..slots).rev().collect(),
            sync_slot,
            sync_tag: if sync_slot == usize::MAX {
                NO_SYNC_TAG
            } else {
                make_tag(sync_slot, 0, Op::Read)
            },
            ready: Vec::with_capacity(slots),
            stats: DioStats::default(),
            stray_completions: 0,
            commands_in_flight: 0,
            timeout: Duration::from_secs(30),
        };
        dio.set_max_command_bytes(usize::MAX);
        Ok(dio)
    }

    /// Limits every command to `bytes` (rounded down to whole blocks, at least one
    /// block, never above the device's MDTS).
    pub fn set_max_command_bytes(&mut self, bytes: usize) {
        let lba = self.caps.lba_size as usize;
        let mut max = bytes.min(lba << 16).min(1 << 30);
        max = max.min(if self.caps.max_transfer == 0 {
            DEFAULT_MAX_COMMAND.max(lba)
        } else {
            self.caps.max_transfer
        });
        self.max_command = (max / lba).max(1) * lba;
    }

    /// The largest transfer of one command in bytes.
    pub fn max_command_bytes(&self) -> usize {
        self.max_command
    }

    /// How long a waiter waits for a device that makes no progress. A wait for
    /// commands the device may still move data for never ends sooner than the queue's
    /// [`DioQueue::verdict_limit`]: until the queue reports them, the buffers stay
    /// the request's.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// How long a wait for this queue's commands goes on without progress: the
    /// layer's timeout, and never less than the queue's verdict limit.
    #[inline]
    pub(crate) fn wait_limit(&self) -> Duration {
        self.timeout.max(self.qp.verdict_limit())
    }

    /// The device properties.
    pub fn caps(&self) -> &DeviceCaps {
        &self.caps
    }

    /// The counters.
    pub fn stats(&self) -> DioStats {
        self.stats
    }

    /// Completions whose tag named no request in flight (a misbehaving device).
    pub fn stray_completions(&self) -> u64 {
        self.stray_completions
    }

    /// The queue pair.
    pub fn queue(&self) -> &Q {
        &self.qp
    }

    /// The queue pair, mutably (for commands the layer does not issue).
    pub fn queue_mut(&mut self) -> &mut Q {
        &mut self.qp
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        let reserved_free = self
            .slots
            .get(self.sync_slot)
            .is_some_and(|s| s.state == SlotState::Free);
        self.slots.len() - self.free.len() - usize::from(reserved_free)
    }

    /// Slots of the shared pool (the reserved synchronous slot excluded).
    fn pool_slots(&self) -> usize {
        self.slots.len() - usize::from(self.sync_slot != usize::MAX)
    }

    /// Reads from `iocb.pos` into `iter`, waiting for completion.
    #[inline]
    pub fn read<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        self.rw(Request::read(), iocb, iter, ops, dops)
    }

    /// Writes `iter` at `iocb.pos`, waiting for completion.
    #[inline]
    pub fn write<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        self.rw(Request::write(), iocb, iter, ops, dops)
    }

    /// Compares the file's data from `iocb.pos` with `iter`, waiting for completion:
    /// like a read (extents, EOF, alignment), but mapped blocks are compared by the
    /// device (NVMe Compare) and holes and unwritten extents must hold zeros in `iter`.
    /// A difference is [`DioError::Miscompare`]; `iter` is never written.
    #[inline]
    pub fn compare<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        self.rw(Request::compare(), iocb, iter, ops, dops)
    }

    /// A synchronous request: issues the commands and waits for them.
    ///
    /// Returns the bytes transferred plus `req.done_before`, and advances
    /// `iocb.pos`; on error `iocb.pos` is unchanged. With HIPRI the wait polls the
    /// queue pair if the request became a single command, otherwise it sleeps on
    /// the interrupt.
    #[inline]
    pub fn rw<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        if req.is_write() && ops.write_limit().is_some() {
            return self.rw_limited(req, iocb, iter, ops, dops);
        }
        self.rw_single(req, iocb, iter, ops, dops)
    }

    /// A synchronous write to a provider with a write limit: cut at the limit
    /// (`blkdev_write_iter`), then issued as usual; the iterator is re-expanded
    /// by the bytes cut off.
    #[inline(never)]
    fn rw_limited<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        let cut = cut_at_limit(iocb.pos, iter, ops)?;
        let r = self.rw_single(req, iocb, iter, ops, dops);
        iter.reexpand(iter.count() + cut);
        r
    }

    /// A synchronous request of any shape (out of line: the common shape takes
    /// the single-command path).
    #[inline(never)]
    pub(crate) fn rw_general<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        let Some((slot, i_size)) = self.start(req, iocb, iter, ops)? else {
            return Ok(0);
        };
        self.finish_sync(slot, iocb, i_size, dops, req.done_before)
    }

    /// Waits for a synchronous request's commands and reports it.
    #[inline]
    pub(crate) fn finish_sync<D: DioOps + ?Sized>(
        &mut self,
        slot: usize,
        iocb: &mut Kiocb,
        i_size: u64,
        dops: &D,
        done_before: usize,
    ) -> Result<usize, DioError> {
        if !self.slots[slot].finished {
            let waited = self.wait_slot(slot, iocb.flags.contains(KiocbFlags::HIPRI));
            if let Err(e) = waited {
                self.abandon(slot);
                return Err(e);
            }
        }
        let result = self.complete(slot, iocb, i_size, dops, done_before);
        self.release(slot);
        result
    }

    /// An asynchronous request: issues the commands and returns without waiting.
    ///
    /// When the request is [`Submitted::Queued`], `callback` runs from a later
    /// [`poll_completions`](Self::poll_completions) or
    /// [`wait_completions`](Self::wait_completions) on this engine. With
    /// FORCE_WAIT, or when nothing is left in flight, the result comes back as
    /// [`Submitted::Done`] and `callback` is dropped uncalled.
    pub fn rw_async<M: IomapOps + ?Sized>(
        &mut self,
        req: Request,
        mut iocb: Kiocb,
        mut iter: IovIter<B>,
        ops: &M,
        dops: Arc<dyn DioOps + Send + Sync>,
        callback: Box<dyn FnOnce(AsyncDone<B>) + Send>,
    ) -> Submitted<B> {
        let done_before = req.done_before;
        let mut cut = 0;
        if req.is_write() {
            match cut_at_limit(iocb.pos, &mut iter, ops) {
                Ok(n) => cut = n,
                Err(e) => {
                    return Submitted::Done(AsyncDone {
                        iocb,
                        iter,
                        result: Err(e),
                    })
                }
            }
        }
        let started = self.start(req, &mut iocb, &mut iter, ops);
        // The commands hold what they need: the caller gets its whole iterator back.
        iter.reexpand(iter.count() + cut);
        let (slot, i_size) = match started {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Submitted::Done(AsyncDone {
                    iocb,
                    iter,
                    result: Ok(0),
                })
            }
            Err(e) => {
                return Submitted::Done(AsyncDone {
                    iocb,
                    iter,
                    result: Err(e),
                })
            }
        };
        let force = req.flags.contains(DioFlags::FORCE_WAIT);
        if self.slots[slot].finished || force {
            let result = match self.wait_slot(slot, iocb.flags.contains(KiocbFlags::HIPRI)) {
                Ok(()) => {
                    let r = self.complete(slot, &mut iocb, i_size, &*dops, done_before);
                    self.release(slot);
                    r
                }
                Err(e) => {
                    self.abandon(slot);
                    Err(e)
                }
            };
            return Submitted::Done(AsyncDone { iocb, iter, result });
        }
        self.slots[slot].ctx = Some(AsyncCtx {
            iocb,
            iter,
            dops,
            i_size,
            done_before,
            callback,
        });
        Submitted::Queued
    }

    /// Checks the request and issues its commands; `None` when there is nothing to do.
    #[inline]
    fn start<M: IomapOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
    ) -> Result<Option<(usize, u64)>, DioError> {
        let len = iter.count() as u64;
        if len == 0 {
            return Ok(None);
        }
        if iocb.pos.checked_add(len).is_none() {
            return Err(DioError::InvalidRequest {
                reason: "position + length overflows a 64-bit offset",
            });
        }
        let i_size = ops.size();
        let write = req.is_write();
        if !write {
            if iocb.pos >= i_size {
                return Ok(None);
            }
        } else if req.flags.contains(DioFlags::OVERWRITE_ONLY)
            && (iocb.pos >= i_size || iocb.pos + len > i_size)
        {
            return Err(DioError::Again {
                reason: "an overwrite-only write reaches past the end of the file",
            });
        }
        let lba = u64::from(self.caps.lba_size);
        if (iocb.pos | len) & (lba - 1) != 0 {
            return Err(DioError::Inval {
                what: "position | length",
                value: iocb.pos | len,
                align: lba,
            });
        }
        iter.check_dma_rules(self.caps.lba_size, DMA_ALIGN)?;
        // The provider's block decides sub-block zeroing, which only writes do.
        let fs_block = if write {
            let b = u64::from(ops.block_size());
            if !b.is_power_of_two() || b < lba {
                return Err(DioError::InvalidRequest {
                    reason: "the file system block size is not a power of two at least the logical block size",
                });
            }
            b
        } else {
            lba
        };
        let slot = self.alloc_slot(write, iocb.flags)?;
        let sub = Submit::new(slot, req, iocb, i_size, fs_block);
        self.run_mappings(sub, iocb, iter, ops, None);
        Ok(Some((slot, i_size)))
    }

    /// Maps and issues the whole request (what `iter` holds) for an allocated
    /// slot, then hands the slot to completion. `first` is the answer of an
    /// [`IomapOps::begin`] already made for the request's start.
    pub(crate) fn run_mappings<M: IomapOps + ?Sized>(
        &mut self,
        mut sub: Submit,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        mut first: Option<Result<Mapping, DioError>>,
    ) {
        let slot = sub.slot;
        let i_size = sub.i_size;
        let (write, map_flags, dio_flags) = (sub.write, sub.map_flags, sub.dio_flags);
        let mut pos = iocb.pos;
        let mut left = iter.count() as u64;
        let mut ret = Ok(());
        while left > 0 {
            let mapped = match first.take() {
                Some(m) => m,
                None => ops.begin(pos, left, map_flags),
            };
            let map = match mapped {
                Ok(m) => m,
                Err(e) => {
                    ret = Err(e);
                    break;
                }
            };
            if map.offset > pos || map.offset.saturating_add(map.length) <= pos {
                ret = Err(DioError::Io {
                    reason: "the provider returned a mapping that does not cover the position",
                });
                break;
            }
            let length = (map.offset.saturating_add(map.length) - pos).min(left);
            let (done, err) = self.iter_mapping(&mut sub, &map, pos, length, iter, ops);
            let ended = ops.end(pos, length, done, map_flags, &map);
            pos += done;
            left -= done;
            if let Some(e) = err.or(ended.err()) {
                ret = Err(e);
                break;
            }
            if done == 0 {
                break;
            }
        }
        if !write && pos > i_size {
            // Only data up to EOF is reported; give the rest of the buffer back.
            iter.revert((pos - i_size) as usize);
        }
        if sub.commands > 1 {
            iocb.flags.remove(KiocbFlags::HIPRI);
        }
        let s = &mut self.slots[slot];
        match ret {
            Err(DioError::Fault { .. }) if s.size > 0 && dio_flags.contains(DioFlags::PARTIAL) => {}
            Err(e) => s.set_error(e),
            Ok(()) => {}
        }
        if s.flags.contains(CompletionFlags::WRITE_THROUGH) {
            s.flags.remove(CompletionFlags::NEED_SYNC);
        }
        s.submitting = false;
        if s.outstanding == 0 {
            self.ready.push(slot);
            self.process_ready();
        }
    }

    #[inline]
    pub(crate) fn alloc_slot(&mut self, write: bool, flags: KiocbFlags) -> Result<usize, DioError> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                return Err(DioError::Busy {
                    slots: self.pool_slots(),
                })
            }
        };
        self.init_slot(slot, write, flags);
        Ok(slot)
    }

    /// Prepares `slot` for a new request.
    #[inline]
    pub(crate) fn init_slot(&mut self, slot: usize, write: bool, flags: KiocbFlags) {
        if slot == self.sync_slot {
            self.sync_tag = NO_SYNC_TAG;
        }
        let s = &mut self.slots[slot];
        s.state = SlotState::Active;
        s.outstanding = 0;
        s.submitting = true;
        s.finished = false;
        s.flush_issued = false;
        s.write = write;
        s.size = 0;
        s.error = None;
        s.queue_failed = None;
        s.flags = completion_flags(write, flags);
    }

    /// Returns a slot whose request is complete to the free list.
    #[inline(always)]
    pub(crate) fn release(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.state = SlotState::Free;
        s.gen = s.gen.wrapping_add(1) & GEN_MASK;
        if s.ctx.is_some() {
            s.drop_ctx();
        }
        s.error = None;
        s.queue_failed = None;
        if slot == self.sync_slot {
            self.sync_tag = make_tag(slot, s.gen, Op::Read);
        } else {
            self.free.push(slot);
        }
    }

    /// Gives up on a slot whose commands may still complete later.
    fn abandon(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if s.outstanding == 0 {
            self.release(slot);
        } else {
            s.state = SlotState::Abandoned;
        }
    }

    /// Waits until every command of `slot` has completed.
    #[inline]
    fn wait_slot(&mut self, slot: usize, poll: bool) -> Result<(), DioError> {
        let mut idle = Idle::checking_every(self.wait_limit(), if poll { 64 } else { 1 });
        while !self.slots[slot].finished {
            if !poll {
                self.qp
                    .wait_interrupt(self.timeout.min(Duration::from_millis(100)))
                    .map_err(queue_error)?;
            }
            // Ask for no more completions than the layer has commands in flight.
            let n = self.reap_up_to(self.commands_in_flight.clamp(1, reap_batch()))?;
            idle.progress(n)?;
        }
        Ok(())
    }

    /// The error of the command tagged `tag`, which the queue failed without a device
    /// status: the queue's cause when it kept one, otherwise `recorded`.
    #[cold]
    #[inline(never)]
    pub(crate) fn driver_error(&mut self, tag: u64, recorded: Option<DioError>) -> DioError {
        match self.qp.take_cause(tag) {
            Some(cause) => DioError::Driver {
                op: tag_op_name(tag),
                cause,
            },
            None => recorded.unwrap_or(DioError::Io {
                reason: "the driver failed a command without a device status",
            }),
        }
    }

    /// Reports a finished request: end_io, EOF truncation, position update.
    #[inline]
    pub(crate) fn complete<D: DioOps + ?Sized>(
        &mut self,
        slot: usize,
        iocb: &mut Kiocb,
        i_size: u64,
        dops: &D,
        done_before: usize,
    ) -> Result<usize, DioError> {
        let mut error = self.slots[slot].error.take();
        if let Some(tag) = self.slots[slot].queue_failed.take() {
            error = Some(self.driver_error(tag, error));
        }
        let s = &mut self.slots[slot];
        let hook = dops.end_io(iocb, s.size, error.as_ref(), s.flags);
        if let Some(e) = error {
            return Err(e);
        }
        hook?;
        let mut n = s.size;
        if !s.write && iocb.pos + n > i_size {
            n = i_size.saturating_sub(iocb.pos);
        }
        iocb.pos += n;
        self.stats.bytes += n;
        Ok(n as usize + done_before)
    }
}

/// Cuts a write at `pos` to the provider's write limit, if it has one; returns
/// the bytes cut off. ENOSPC for a write of some bytes at or past the limit.
#[inline]
fn cut_at_limit<B: DmaBuf, M: IomapOps + ?Sized>(
    pos: u64,
    iter: &mut IovIter<B>,
    ops: &M,
) -> Result<usize, DioError> {
    let (Some(limit), count) = (ops.write_limit(), iter.count()) else {
        return Ok(0);
    };
    if count == 0 {
        return Ok(0);
    }
    if pos >= limit {
        return Err(DioError::NoSpace {
            needed: count as u64,
            free: 0,
        });
    }
    let room = usize::try_from(limit - pos).unwrap_or(usize::MAX);
    let cut = count.saturating_sub(room);
    iter.truncate(count - cut);
    Ok(cut)
}

/// The completion flags a request starts with.
#[inline]
pub(crate) fn completion_flags(write: bool, flags: KiocbFlags) -> CompletionFlags {
    let mut c = CompletionFlags::empty();
    if write {
        c |= CompletionFlags::WRITE;
        if flags.intersects(KiocbFlags::DSYNC | KiocbFlags::SYNC) {
            c |= CompletionFlags::NEED_SYNC;
            if !flags.contains(KiocbFlags::SYNC) {
                c |= CompletionFlags::WRITE_THROUGH;
            }
        }
    }
    c
}

/// Detects a device that stopped making progress.
pub(crate) struct Idle {
    timeout: Duration,
    since: Option<Instant>,
    spins: u32,
    /// Empty polls between clock reads (1 when every poll follows a sleep).
    every: u32,
}

impl Idle {
    /// For loops that spin: reads the clock every 64 empty polls.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self::checking_every(timeout, 64)
    }

    #[inline]
    pub(crate) fn checking_every(timeout: Duration, every: u32) -> Self {
        Idle {
            timeout,
            since: None,
            spins: 0,
            every,
        }
    }

    /// Notes a poll that reaped `n` completions; fails once nothing happened for the timeout.
    #[inline]
    pub(crate) fn progress(&mut self, n: usize) -> Result<(), DioError> {
        if n > 0 {
            self.since = None;
            self.spins = 0;
            return Ok(());
        }
        self.spins = self.spins.wrapping_add(1);
        if self.spins % self.every != 0 {
            return Ok(());
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= self.timeout {
            return Err(DioError::Timeout {
                millis: self.timeout.as_millis() as u64,
            });
        }
        std::thread::yield_now();
        Ok(())
    }
}

pub(crate) fn queue_error(e: QueueError) -> DioError {
    match e {
        QueueError::Full => DioError::Again {
            reason: "the submission queue is full",
        },
        QueueError::Invalid(reason) => DioError::InvalidRequest { reason },
        QueueError::Failed(cause) => DioError::Driver {
            op: "request",
            cause,
        },
    }
}

/// The batch size for reaping.
pub(crate) const fn reap_batch() -> usize {
    REAP_BATCH
}
