//! [`Dio`]: turns requests into NVMe commands on one queue pair (the seed's
//! `__iomap_dio_rw` and `iomap_dio_bio_iter`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buf::DmaBuf;
use crate::error::DioError;
use crate::iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{DeviceCaps, DioQueue, IoCommand, QueueError, Segment};
use crate::slot::{make_tag, AsyncCtx, Op, Slot, SlotState, MAX_SLOTS};

/// Most DMA segments the layer puts in one command.
const MAX_SEGMENTS: usize = 16;
/// Buffer addresses must be dword aligned (NVMe PRP entries).
const DMA_ALIGN: u32 = 4;
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
struct Submit {
    slot: usize,
    /// NOWAIT: a full queue fails the request instead of waiting for room.
    nowait: bool,
    i_size: u64,
    fs_block: u64,
    commands: u32,
}

/// The direct-I/O engine for one queue pair; one per thread.
pub struct Dio<Q: DioQueue, B: DmaBuf> {
    pub(crate) qp: Q,
    caps: DeviceCaps,
    lba_shift: u32,
    max_command: usize,
    max_segments: usize,
    zero: Option<B>,
    pub(crate) slots: Vec<Slot<B>>,
    free: Vec<usize>,
    pub(crate) ready: Vec<usize>,
    pub(crate) stats: DioStats,
    pub(crate) stray_completions: u64,
    timeout: Duration,
}

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// An engine over `qp` with room for `slots` requests in flight.
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
        let mut dio = Dio {
            qp,
            caps,
            lba_shift: lba.trailing_zeros(),
            max_command: 0,
            max_segments: caps.max_segments.min(MAX_SEGMENTS),
            zero,
            slots: (0..slots).map(|_| Slot::new()).collect(),
            free: (0..slots).rev().collect(),
            ready: Vec::with_capacity(slots),
            stats: DioStats::default(),
            stray_completions: 0,
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

    /// How long a waiter waits for a device that makes no progress.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
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
        self.slots.len() - self.free.len()
    }

    /// Reads from `iocb.pos` into `iter`, waiting for completion.
    pub fn read<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        self.rw(Direction::Read, iocb, iter, ops, dops, DioFlags::empty(), 0)
    }

    /// Writes `iter` at `iocb.pos`, waiting for completion.
    pub fn write<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        self.rw(
            Direction::Write,
            iocb,
            iter,
            ops,
            dops,
            DioFlags::empty(),
            0,
        )
    }

    /// A synchronous request: issues the commands and waits for them.
    ///
    /// Returns the bytes transferred plus `done_before`, and advances `iocb.pos`;
    /// on error `iocb.pos` is unchanged. With HIPRI the wait polls the queue pair
    /// if the request became a single command, otherwise it sleeps on the interrupt.
    #[allow(clippy::too_many_arguments)]
    pub fn rw<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        dir: Direction,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
        dio_flags: DioFlags,
        done_before: usize,
    ) -> Result<usize, DioError> {
        let Some((slot, i_size)) = self.start(dir, iocb, iter, ops, dio_flags)? else {
            return Ok(0);
        };
        let waited = self.wait_slot(slot, iocb.flags.contains(KiocbFlags::HIPRI));
        if let Err(e) = waited {
            self.abandon(slot);
            return Err(e);
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
    #[allow(clippy::too_many_arguments)]
    pub fn rw_async<M: IomapOps + ?Sized>(
        &mut self,
        dir: Direction,
        mut iocb: Kiocb,
        mut iter: IovIter<B>,
        ops: &M,
        dops: Arc<dyn DioOps + Send + Sync>,
        dio_flags: DioFlags,
        done_before: usize,
        callback: Box<dyn FnOnce(AsyncDone<B>) + Send>,
    ) -> Submitted<B> {
        let (slot, i_size) = match self.start(dir, &mut iocb, &mut iter, ops, dio_flags) {
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
        let force = dio_flags.contains(DioFlags::FORCE_WAIT);
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
    fn start<M: IomapOps + ?Sized>(
        &mut self,
        dir: Direction,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dio_flags: DioFlags,
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
        let write = dir == Direction::Write;
        let mut map_flags = IomapFlags::DIRECT;
        if iocb.flags.contains(KiocbFlags::NOWAIT) {
            map_flags |= IomapFlags::NOWAIT;
        }
        if !write {
            if iocb.pos >= i_size {
                return Ok(None);
            }
        } else {
            map_flags |= IomapFlags::WRITE;
            if dio_flags.contains(DioFlags::OVERWRITE_ONLY) {
                if iocb.pos >= i_size || iocb.pos + len > i_size {
                    return Err(DioError::Again {
                        reason: "an overwrite-only write reaches past the end of the file",
                    });
                }
                map_flags |= IomapFlags::OVERWRITE_ONLY;
            }
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
        let fs_block = u64::from(ops.block_size());
        if !fs_block.is_power_of_two() || fs_block < lba {
            return Err(DioError::InvalidRequest {
                reason: "the file system block size is not a power of two at least the logical block size",
            });
        }
        let slot = self.alloc_slot(write, iocb.flags)?;
        let mut sub = Submit {
            slot,
            nowait: iocb.flags.contains(KiocbFlags::NOWAIT),
            i_size,
            fs_block,
            commands: 0,
        };
        let mut pos = iocb.pos;
        let mut left = len;
        let mut ret = Ok(());
        while left > 0 {
            let map = match ops.begin(pos, left, map_flags) {
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
            let (done, err) =
                self.iter_mapping(&mut sub, &map, pos, length, iter, ops, write, dio_flags);
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
        Ok(Some((slot, i_size)))
    }

    fn alloc_slot(&mut self, write: bool, flags: KiocbFlags) -> Result<usize, DioError> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                return Err(DioError::Busy {
                    slots: self.slots.len(),
                })
            }
        };
        let s = &mut self.slots[slot];
        s.state = SlotState::Active;
        s.outstanding = 0;
        s.submitting = true;
        s.finished = false;
        s.flush_issued = false;
        s.write = write;
        s.size = 0;
        s.error = None;
        s.flags = CompletionFlags::empty();
        if write {
            s.flags |= CompletionFlags::WRITE;
            if flags.intersects(KiocbFlags::DSYNC | KiocbFlags::SYNC) {
                s.flags |= CompletionFlags::NEED_SYNC;
                if !flags.contains(KiocbFlags::SYNC) {
                    s.flags |= CompletionFlags::WRITE_THROUGH;
                }
            }
        }
        Ok(slot)
    }

    /// Returns a slot whose request is complete to the free list.
    pub(crate) fn release(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.state = SlotState::Free;
        s.gen = s.gen.wrapping_add(1) & ((1 << 40) - 1);
        if s.ctx.is_some() {
            s.ctx = None;
        }
        s.error = None;
        self.free.push(slot);
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

    /// Works on one mapping; returns the bytes processed and the error that stopped it.
    #[allow(clippy::too_many_arguments)]
    fn iter_mapping<M: IomapOps + ?Sized>(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        pos: u64,
        length: u64,
        iter: &mut IovIter<B>,
        ops: &M,
        write: bool,
        dio_flags: DioFlags,
    ) -> (u64, Option<DioError>) {
        match (map.kind, write) {
            (MappingKind::Hole | MappingKind::Unwritten, false) => {
                let n = length.min(iter.count() as u64);
                match iter.zero_fill(n as usize) {
                    Ok(()) => {
                        self.slots[sub.slot].size += n;
                        self.stats.hole_bytes += n;
                        (n, None)
                    }
                    Err(e) => (0, Some(e)),
                }
            }
            (MappingKind::Hole, true) => (
                0,
                Some(DioError::Io {
                    reason: "write into a hole: the provider must allocate blocks first",
                }),
            ),
            (MappingKind::Delalloc, _) => (
                0,
                Some(DioError::Io {
                    reason: "direct I/O met a delayed-allocation extent; the provider must allocate it first",
                }),
            ),
            (MappingKind::Inline, _) => self.iter_inline(sub, map, pos, length, iter, ops, write),
            (MappingKind::Mapped | MappingKind::Unwritten, _) => {
                if write
                    && dio_flags.contains(DioFlags::OVERWRITE_ONLY)
                    && (map.kind != MappingKind::Mapped
                        || map.flags.intersects(MappingFlags::NEW | MappingFlags::SHARED))
                {
                    return (
                        0,
                        Some(DioError::Again {
                            reason: "an overwrite-only write needs allocation, conversion or copy-on-write",
                        }),
                    );
                }
                self.iter_bio(sub, map, pos, length, iter, write)
            }
        }
    }

    /// Copies between the buffers and inline data.
    #[allow(clippy::too_many_arguments)]
    fn iter_inline<M: IomapOps + ?Sized>(
        &mut self,
        sub: &mut Submit,
        _map: &Mapping,
        pos: u64,
        length: u64,
        iter: &mut IovIter<B>,
        ops: &M,
        write: bool,
    ) -> (u64, Option<DioError>) {
        let n = length.min(iter.count() as u64);
        let mut tmp = [0u8; 512];
        let mut done = 0u64;
        while done < n {
            let k = (n - done).min(tmp.len() as u64) as usize;
            let r = if write {
                iter.copy_out(&mut tmp[..k])
                    .and_then(|()| ops.write_inline(pos + done, &tmp[..k]))
            } else {
                ops.read_inline(pos + done, &mut tmp[..k])
                    .and_then(|()| iter.copy_in(&tmp[..k]))
            };
            if let Err(e) = r {
                iter.revert(done as usize);
                return (0, Some(e));
            }
            done += k as u64;
        }
        self.slots[sub.slot].size += n;
        (n, None)
    }

    /// Issues read or write commands for one device-backed mapping, with
    /// sub-block zeroing around writes that need it.
    fn iter_bio(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        start: u64,
        length: u64,
        iter: &mut IovIter<B>,
        write: bool,
    ) -> (u64, Option<DioError>) {
        let lba = u64::from(self.caps.lba_size);
        if (start | length) & (lba - 1) != 0 {
            return (
                0,
                Some(DioError::Inval {
                    what: "extent position | length",
                    value: start | length,
                    align: lba,
                }),
            );
        }
        let capacity = self.caps.capacity_lbas.saturating_mul(lba);
        let in_range = map
            .addr
            .checked_add(start - map.offset)
            .and_then(|a| a.checked_add(length))
            .is_some_and(|end| end <= capacity);
        if map.addr & (lba - 1) != 0 || !in_range {
            return (
                0,
                Some(DioError::Io {
                    reason: "the provider mapped the range outside the namespace or off a block boundary",
                }),
            );
        }
        let s = &mut self.slots[sub.slot];
        let mut need_zero = false;
        let mut fua = false;
        if write {
            if map.kind == MappingKind::Unwritten {
                s.flags |= CompletionFlags::UNWRITTEN;
                need_zero = true;
            }
            if map.flags.contains(MappingFlags::SHARED) {
                s.flags |= CompletionFlags::COW;
            }
            if map.flags.contains(MappingFlags::NEW) {
                need_zero = true;
            } else if map.kind == MappingKind::Mapped
                && !map
                    .flags
                    .intersects(MappingFlags::SHARED | MappingFlags::DIRTY)
                && s.flags.contains(CompletionFlags::WRITE_THROUGH)
                && (self.caps.fua || !self.caps.volatile_write_cache)
            {
                fua = true;
            }
        }
        let orig = iter.count();
        iter.truncate(length as usize);
        if iter.count() == 0 {
            iter.reexpand(orig);
            return (0, None);
        }
        let fsb = sub.fs_block;
        if need_zero {
            let pad = start & (fsb - 1);
            if pad != 0 {
                if let Err(e) = self.zero_range(sub, map, start - pad, pad) {
                    iter.reexpand(orig);
                    return (0, Some(e));
                }
            }
        }
        let mut pos = start;
        let mut copied = 0usize;
        let mut err = None;
        let mut segs = [Segment::default(); MAX_SEGMENTS];
        while iter.count() > 0 {
            if self.slots[sub.slot].error.is_some() {
                // A command already failed: stop issuing and give the bytes back.
                iter.revert(copied);
                iter.reexpand(orig);
                return (0, None);
            }
            let (n, nsegs) = match self.build_segments(iter, &mut segs) {
                Ok(v) => v,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            let lba_no = map.device_addr(pos) >> self.lba_shift;
            let blocks = (n >> self.lba_shift) as u32;
            let (cmd, op) = if write {
                if !fua {
                    self.slots[sub.slot]
                        .flags
                        .remove(CompletionFlags::WRITE_THROUGH);
                }
                (
                    IoCommand::Write {
                        lba: lba_no,
                        blocks,
                        segments: &segs[..nsegs],
                        fua,
                    },
                    Op::Write,
                )
            } else {
                (
                    IoCommand::Read {
                        lba: lba_no,
                        blocks,
                        segments: &segs[..nsegs],
                    },
                    Op::Read,
                )
            };
            if let Err(e) = self.issue(sub, &cmd, op) {
                iter.reexpand(orig - copied);
                return (copied as u64, Some(e));
            }
            if fua {
                self.stats.fua_commands += 1;
            }
            self.slots[sub.slot].size += n as u64;
            iter.advance(n);
            copied += n;
            pos += n as u64;
        }
        // Zero the rest of the last block so a short or EOF-extending write never
        // exposes stale data, also when submission stopped part-way.
        if write && (need_zero || pos >= sub.i_size) {
            let pad = pos & (fsb - 1);
            if pad != 0 {
                if let Err(e) = self.zero_range(sub, map, pos, fsb - pad) {
                    err.get_or_insert(e);
                }
            }
        }
        iter.reexpand(orig - copied);
        (copied as u64, err)
    }

    /// Takes the next command's worth of segments from `iter` without consuming
    /// them. A segment after the first must start on a page boundary and follow
    /// one that ends on a page boundary (the PRP rule); otherwise it starts the
    /// next command.
    fn build_segments(
        &self,
        iter: &IovIter<B>,
        segs: &mut [Segment; MAX_SEGMENTS],
    ) -> Result<(usize, usize), DioError> {
        let page = u64::from(self.caps.page_size);
        let mut n = 0usize;
        let mut count = 0usize;
        for c in iter.chunks() {
            if count == self.max_segments || n == self.max_command {
                break;
            }
            let Some(iova) = iter.buffers()[c.index].iova_at(c.offset) else {
                if count > 0 {
                    break;
                }
                return Err(DioError::Fault {
                    index: c.index,
                    offset: c.offset,
                });
            };
            if count > 0 {
                let prev = segs[count - 1];
                if (iova | (prev.iova + u64::from(prev.len))) & (page - 1) != 0 {
                    break;
                }
            }
            let len = c.len.min(self.max_command - n);
            segs[count] = Segment {
                iova,
                len: len as u32,
            };
            count += 1;
            n += len;
        }
        Ok((n, count))
    }

    /// Zeroes `len` bytes of the device at file position `pos` of `map`.
    fn zero_range(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        pos: u64,
        len: u64,
    ) -> Result<(), DioError> {
        if pos < map.offset || pos + len > map.offset + map.length {
            return Err(DioError::Io {
                reason: "the provider's mapping is not aligned to its block size",
            });
        }
        let lba = u64::from(self.caps.lba_size);
        let mut lba_no = map.device_addr(pos) >> self.lba_shift;
        let mut blocks_left = len >> self.lba_shift;
        // Zeroing writes carry no FUA, so the request needs a flush if it needs sync.
        self.slots[sub.slot]
            .flags
            .remove(CompletionFlags::WRITE_THROUGH);
        while blocks_left > 0 {
            if self.caps.write_zeroes {
                let blocks = blocks_left.min(1 << 16);
                let cmd = IoCommand::WriteZeroes {
                    lba: lba_no,
                    blocks: blocks as u32,
                    fua: false,
                };
                self.issue(sub, &cmd, Op::WriteZeroes)?;
                lba_no += blocks;
                blocks_left -= blocks;
            } else {
                let Some(zero) = &self.zero else {
                    return Err(DioError::Io {
                        reason: "sub-block zeroing needs Write Zeroes or a zero buffer",
                    });
                };
                let page = u64::from(self.caps.page_size);
                let base = zero.iova_at(0).unwrap_or(0);
                let mut segs = [Segment::default(); MAX_SEGMENTS];
                let mut bytes = 0u64;
                let mut count = 0;
                let limit = (self.max_command as u64).min(blocks_left * lba);
                while bytes < limit && count < self.max_segments {
                    let l = (limit - bytes).min(page);
                    segs[count] = Segment {
                        iova: base,
                        len: l as u32,
                    };
                    count += 1;
                    bytes += l;
                }
                let blocks = bytes >> self.lba_shift;
                let cmd = IoCommand::Write {
                    lba: lba_no,
                    blocks: blocks as u32,
                    segments: &segs[..count],
                    fua: false,
                };
                self.issue(sub, &cmd, Op::Write)?;
                lba_no += blocks;
                blocks_left -= blocks;
            }
        }
        self.stats.zeroed_bytes += len;
        Ok(())
    }

    /// Submits one command for the request, reaping completions while the queue is full.
    fn issue(&mut self, sub: &mut Submit, cmd: &IoCommand<'_>, op: Op) -> Result<(), DioError> {
        let tag = make_tag(sub.slot, self.slots[sub.slot].gen, op);
        let mut idle = Idle::new(self.timeout);
        loop {
            match self.qp.submit(cmd, tag) {
                Ok(()) => break,
                Err(QueueError::Full) if sub.nowait => {
                    return Err(DioError::Again {
                        reason: "the submission queue is full",
                    })
                }
                Err(QueueError::Full) => {
                    let n = self.reap()?;
                    idle.progress(n)?;
                }
                Err(e) => return Err(queue_error(e)),
            }
        }
        self.slots[sub.slot].outstanding += 1;
        self.stats.commands += 1;
        sub.commands += 1;
        Ok(())
    }

    /// Waits until every command of `slot` has completed.
    fn wait_slot(&mut self, slot: usize, poll: bool) -> Result<(), DioError> {
        let mut idle = Idle::checking_every(self.timeout, if poll { 64 } else { 1 });
        while !self.slots[slot].finished {
            if !poll {
                self.qp
                    .wait_interrupt(self.timeout.min(Duration::from_millis(100)))
                    .map_err(queue_error)?;
            }
            let n = self.reap()?;
            idle.progress(n)?;
        }
        Ok(())
    }

    /// Reports a finished request: end_io, EOF truncation, position update.
    pub(crate) fn complete<D: DioOps + ?Sized>(
        &mut self,
        slot: usize,
        iocb: &mut Kiocb,
        i_size: u64,
        dops: &D,
        done_before: usize,
    ) -> Result<usize, DioError> {
        let s = &mut self.slots[slot];
        let error = s.error.take();
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

    pub(crate) fn checking_every(timeout: Duration, every: u32) -> Self {
        Idle {
            timeout,
            since: None,
            spins: 0,
            every,
        }
    }

    /// Notes a poll that reaped `n` completions; fails once nothing happened for the timeout.
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
        QueueError::Failed(_) => DioError::Io {
            reason: "the queue pair failed",
        },
    }
}

/// The batch size for reaping.
pub(crate) const fn reap_batch() -> usize {
    REAP_BATCH
}
