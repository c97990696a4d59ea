//! The common synchronous request in one step: one buffer piece, one mapped
//! extent, one command, and no zeroing or EOF work. The rules are those of the
//! general path (`engine` and `extent_io`); only its loops are gone.

use crate::buf::DmaBuf;
use crate::engine::{completion_flags, Dio, Request, Submit, DMA_ALIGN, NO_SYNC_TAG};
use crate::error::DioError;
use crate::iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{CommandStatus, DioQueue, IoCommand, QueueError, Segment};
use crate::slot::{make_tag, tag_op_name, with_op, Op, SlotState};

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Runs a synchronous request whose buffers are one piece that one command
    /// carries, that needs no EOF cut (reads) and no tail zeroing (writes).
    ///
    /// A request of another shape, or one that breaks a rule, goes to the general
    /// path with nothing done. When the provider answers with anything but one
    /// plain mapped extent over the whole range, the request goes on through the
    /// general path with that answer.
    #[inline]
    pub(crate) fn rw_single<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        // Anything but the lean shape goes to the general path, which applies
        // the same rules and reports any error.
        macro_rules! general {
            () => {
                return self.rw_general(req, iocb, iter, ops, dops)
            };
        }
        let write = req.is_write();
        if req.dir == crate::Direction::Compare {
            general!()
        }
        let Some((buf, off)) = iter.single() else {
            general!()
        };
        let len = iter.count();
        let bytes = len as u64;
        let pos = iocb.pos;
        let i_size = ops.size();
        // Reads stay inside the file: `pos < i_size` and `bytes <= i_size - pos`.
        if !write && (pos >= i_size || bytes > i_size - pos) {
            general!()
        }
        let Some(end) = pos.checked_add(bytes) else {
            general!()
        };
        let lba_mask = self.lba_mask;
        if len > self.max_command || (pos | bytes) & lba_mask != 0 {
            general!()
        }
        let Some(iova) = buf.iova_at(off) else {
            general!()
        };
        if iova & u64::from(DMA_ALIGN - 1) != 0 {
            general!()
        }
        let mut map_flags = IomapFlags::DIRECT;
        if write {
            // The provider's block decides sub-block zeroing: a power of two
            // above the logical block (0 fails the second test).
            let fs_block = u64::from(ops.block_size());
            if fs_block & fs_block.wrapping_sub(1) != 0 || fs_block <= lba_mask {
                general!()
            }
            // A write ending at or past EOF off a block boundary zeroes the tail
            // (from its start if the command cannot be issued).
            let tail = |at: u64| at >= i_size && at & (fs_block - 1) != 0;
            if tail(end) || tail(pos) {
                general!()
            }
            map_flags |= IomapFlags::WRITE;
            if req.flags.contains(DioFlags::OVERWRITE_ONLY) {
                if end > i_size {
                    general!()
                }
                map_flags |= IomapFlags::OVERWRITE_ONLY;
            }
        }
        let nowait = iocb.flags.contains(KiocbFlags::NOWAIT);
        if nowait {
            map_flags |= IomapFlags::NOWAIT;
        }
        // The reserved slot is taken only while commands of an abandoned request
        // are still out; the general path then takes the request.
        if self.sync_tag == NO_SYNC_TAG {
            general!()
        }
        let op = if write { Op::Write } else { Op::Read };
        let tag = with_op(self.sync_tag, op);
        let map = match ops.begin(pos, bytes, map_flags) {
            Ok(m) if self.plain_extent(&m, pos, end, write) => m,
            other => return self.single_mapped_otherwise(other, req, iocb, iter, ops, dops),
        };
        let mut flags = completion_flags(write, iocb.flags);
        let fua = write
            && !map.flags.contains(MappingFlags::DIRTY)
            && flags.contains(CompletionFlags::WRITE_THROUGH)
            && (self.caps.fua || !self.caps.volatile_write_cache);
        if !fua {
            flags.remove(CompletionFlags::WRITE_THROUGH);
        }
        if flags.contains(CompletionFlags::WRITE_THROUGH) {
            flags.remove(CompletionFlags::NEED_SYNC);
        }
        // Without a flush to follow, the command's own completion finishes the
        // request: it is waited for by its tag, and the slot record is only
        // written if the wait is given up.
        let flush =
            write && self.caps.volatile_write_cache && flags.contains(CompletionFlags::NEED_SYNC);
        let seg = [Segment {
            iova,
            len: len as u32,
        }];
        if flush
            || !accepted(
                self.qp
                    .submit(&self.lone_command(&map, pos, &seg, write, fua), tag),
            )
        {
            // A flush to follow or a queue that did not take the command: the
            // slot records the request and the general completion finishes it.
            return self.single_slotted(req, iocb, iter, ops, dops, Lone { map: &map, fua });
        }
        self.stats.commands += 1;
        if fua {
            self.stats.fua_commands += 1;
        }
        iter.advance_all();
        let ended = ops.end(pos, bytes, bytes, map_flags, &map);
        let status = match self.wait_tag(tag, iocb.flags.contains(KiocbFlags::HIPRI)) {
            Ok(st) => st,
            Err(e) => return Err(self.abandon_single(write, bytes, flags, e)),
        };
        if ended.is_err() || !status.is_success() {
            let done = Done {
                tag,
                op,
                bytes,
                flags,
                partial: req.flags.contains(DioFlags::PARTIAL),
                total: len + req.done_before,
            };
            return self.single_failed(iocb, dops, ended, status, done);
        }
        dops.end_io(iocb, bytes, None, flags)?;
        iocb.pos += bytes;
        self.stats.bytes += bytes;
        Ok(len + req.done_before)
    }

    /// The end of a single-command request whose command failed or whose provider's
    /// `end` did: out of line, so the success path carries no error to drop.
    #[cold]
    #[inline(never)]
    fn single_failed<D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        dops: &D,
        ended: Result<(), DioError>,
        status: CommandStatus,
        done: Done,
    ) -> Result<usize, DioError> {
        let mut error = match ended {
            Err(DioError::Fault { .. }) if done.partial => None,
            Err(e) => Some(e),
            Ok(()) => None,
        };
        if !status.is_success() && error.is_none() {
            error = Some(if status == CommandStatus::QUEUE_FAILED {
                self.driver_error(done.tag, None)
            } else {
                device_error(done.op, status)
            });
        }
        let hook = dops.end_io(iocb, done.bytes, error.as_ref(), done.flags);
        if let Some(e) = error {
            return Err(e);
        }
        hook?;
        iocb.pos += done.bytes;
        self.stats.bytes += done.bytes;
        Ok(done.total)
    }

    /// The command of a single-command request: the bytes of `seg` at file
    /// position `pos` of `map`.
    #[inline(always)]
    fn lone_command<'a>(
        &self,
        map: &Mapping,
        pos: u64,
        seg: &'a [Segment; 1],
        write: bool,
        fua: bool,
    ) -> IoCommand<'a> {
        let lba = map.device_addr(pos) >> self.lba_shift;
        let blocks = (u64::from(seg[0].len) >> self.lba_shift) as u32;
        if write {
            IoCommand::Write {
                lba,
                blocks,
                segments: seg,
                fua,
            }
        } else {
            IoCommand::Read {
                lba,
                blocks,
                segments: seg,
            }
        }
    }

    /// A single-command request whose provider answered with something other
    /// than one plain mapped extent over the whole range (or an error): the
    /// general mapping loop takes that answer, in the reserved slot.
    #[inline(never)]
    fn single_mapped_otherwise<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        first: Result<Mapping, DioError>,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
    ) -> Result<usize, DioError> {
        let slot = self.sync_slot;
        let i_size = ops.size();
        let sub = Submit::new(slot, req, iocb, i_size, u64::from(ops.block_size()));
        self.init_slot(slot, req.is_write(), iocb.flags);
        self.run_mappings(sub, iocb, iter, ops, Some(first));
        self.finish_sync(slot, iocb, i_size, dops, req.done_before)
    }

    /// Gives up the wait of a single-command request: the slot records the
    /// command still out, and its late completion frees the slot.
    #[cold]
    #[inline(never)]
    fn abandon_single(
        &mut self,
        write: bool,
        bytes: u64,
        flags: CompletionFlags,
        e: DioError,
    ) -> DioError {
        // Counted now: the late completion is routed like any other.
        self.commands_in_flight += 1;
        self.init_slot(self.sync_slot, write, KiocbFlags::empty());
        let s = &mut self.slots[self.sync_slot];
        s.state = SlotState::Abandoned;
        s.outstanding = 1;
        s.submitting = false;
        s.size = bytes;
        s.flags = flags;
        e
    }

    /// The rest of a single-command request that the slot records: issues its
    /// command (reaping while the queue is full), ends the mapping and waits.
    #[inline(never)]
    fn single_slotted<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        req: Request,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
        lone: Lone<'_>,
    ) -> Result<usize, DioError> {
        let Lone { map, fua } = lone;
        let slot = self.sync_slot;
        let write = req.is_write();
        let op = if write { Op::Write } else { Op::Read };
        self.init_slot(slot, write, iocb.flags);
        let pos = iocb.pos;
        let len = iter.count();
        let bytes = len as u64;
        let i_size = ops.size();
        let mut sub = Submit::new(slot, req, iocb, i_size, u64::from(ops.block_size()));
        if !fua {
            self.slots[slot]
                .flags
                .remove(CompletionFlags::WRITE_THROUGH);
        }
        // The fast path checked the piece; it is the same one.
        let iova = iter
            .single()
            .and_then(|(buf, off)| buf.iova_at(off))
            .unwrap_or_default();
        let seg = [Segment {
            iova,
            len: len as u32,
        }];
        let cmd = self.lone_command(map, pos, &seg, write, fua);
        let issued = self.issue(&mut sub, &cmd, op);
        let done = if issued.is_ok() {
            if fua {
                self.stats.fua_commands += 1;
            }
            self.slots[slot].size = bytes;
            iter.advance(len);
            bytes
        } else {
            0
        };
        let ended = ops.end(pos, bytes, done, sub.map_flags, map);
        let s = &mut self.slots[slot];
        match issued.err().or(ended.err()) {
            Some(DioError::Fault { .. }) if s.size > 0 && req.flags.contains(DioFlags::PARTIAL) => {
            }
            Some(e) => s.set_error(e),
            None => {}
        }
        if s.flags.contains(CompletionFlags::WRITE_THROUGH) {
            s.flags.remove(CompletionFlags::NEED_SYNC);
        }
        s.submitting = false;
        if s.outstanding == 0 {
            self.ready.push(slot);
            self.process_ready();
        }
        self.finish_sync(slot, iocb, i_size, dops, req.done_before)
    }

    /// Whether `m` is one mapped extent over `pos..end`, inside the namespace, that
    /// a write reaches without allocation, zeroing or copy-on-write.
    #[inline]
    fn plain_extent(&self, m: &Mapping, pos: u64, end: u64, write: bool) -> bool {
        m.kind == MappingKind::Mapped
            && m.offset <= pos
            && m.offset.saturating_add(m.length) >= end
            && (!write || !m.flags.intersects(MappingFlags::NEW | MappingFlags::SHARED))
            && self.in_namespace(m, pos, end - pos)
    }
}

/// The command a single-command request chose: its extent and whether the
/// write carries FUA.
#[derive(Clone, Copy)]
struct Lone<'m> {
    map: &'m Mapping,
    fua: bool,
}

/// What [`Dio::single_failed`] needs of the request besides its results.
struct Done {
    /// The command's tag.
    tag: u64,
    op: Op,
    /// Bytes the command moved.
    bytes: u64,
    flags: CompletionFlags,
    /// Whether the caller accepts a short transfer (`DioFlags::PARTIAL`).
    partial: bool,
    /// What the request returns: its bytes and those done before it.
    total: usize,
}

/// The error of a failed command (out of line: commands nearly always succeed).
#[cold]
#[inline(never)]
fn device_error(op: Op, status: CommandStatus) -> DioError {
    DioError::Device {
        op: tag_op_name(make_tag(0, 0, op)),
        status: status.status,
        dnr: status.dnr,
    }
}

/// Whether the queue took the command; a refusal is dropped out of line (the
/// slotted path submits again and reports it).
#[inline(always)]
fn accepted(r: Result<(), QueueError>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            refused(e);
            false
        }
    }
}

#[cold]
#[inline(never)]
fn refused(e: QueueError) {
    drop(e);
}
