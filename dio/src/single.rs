//! The common synchronous request in one step: one buffer piece, one mapped
//! extent, one command, and no zeroing or EOF work. The rules are those of the
//! general path (`engine` and `extent_io`); only its loops are gone.

use crate::buf::DmaBuf;
use crate::engine::{completion_flags, Dio, Direction, Submit, DMA_ALIGN};
use crate::error::DioError;
use crate::iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{CommandStatus, DioQueue, IoCommand, QueueError, Segment};
use crate::slot::{make_tag, tag_op_name, Op, SlotState, GEN_MASK};

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Runs a synchronous request whose buffers are one piece that one command
    /// carries, that needs no EOF cut (reads) and no tail zeroing (writes).
    ///
    /// A request of another shape, or one that breaks a rule, goes to the general
    /// path with nothing done. When the provider answers with anything but one
    /// plain mapped extent over the whole range, the request goes on through the
    /// general path with that answer.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rw_single<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        dir: Direction,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
        dio_flags: DioFlags,
        done_before: usize,
    ) -> Result<usize, DioError> {
        // Anything but the lean shape goes to the general path, which applies
        // the same rules and reports any error.
        macro_rules! general {
            () => {
                return self.rw_general(dir, iocb, iter, ops, dops, dio_flags, done_before)
            };
        }
        let write = dir == Direction::Write;
        let Some((buf, off)) = iter.single() else {
            general!()
        };
        let len = iter.count();
        let bytes = len as u64;
        let pos = iocb.pos;
        let Some(end) = pos.checked_add(bytes) else {
            general!()
        };
        let lba_mask = u64::from(self.caps.lba_size) - 1;
        if len > self.max_command || (pos | bytes) & lba_mask != 0 {
            general!()
        }
        let Some(iova) = buf.iova_at(off) else {
            general!()
        };
        if iova & u64::from(DMA_ALIGN - 1) != 0 {
            general!()
        }
        let i_size = ops.size();
        let fs_block = u64::from(ops.block_size());
        // A power of two above the logical block (0 fails the second test).
        if fs_block & fs_block.wrapping_sub(1) != 0 || fs_block <= lba_mask {
            general!()
        }
        let mut map_flags = IomapFlags::DIRECT;
        if write {
            // A write ending at or past EOF off a block boundary zeroes the tail
            // (from its start if the command cannot be issued).
            let tail = |at: u64| at >= i_size && at & (fs_block - 1) != 0;
            if tail(end) || tail(pos) {
                general!()
            }
            map_flags |= IomapFlags::WRITE;
            if dio_flags.contains(DioFlags::OVERWRITE_ONLY) {
                if end > i_size {
                    general!()
                }
                map_flags |= IomapFlags::OVERWRITE_ONLY;
            }
        } else if end > i_size {
            general!()
        }
        let nowait = iocb.flags.contains(KiocbFlags::NOWAIT);
        if nowait {
            map_flags |= IomapFlags::NOWAIT;
        }
        // The reserved slot is busy only while commands of an abandoned request
        // are still out; the general path then takes the request.
        let slot = self.sync_slot;
        let op = if write { Op::Write } else { Op::Read };
        let tag = match self.slots.get_mut(slot) {
            Some(s) if s.state == SlotState::Free => {
                s.gen = s.gen.wrapping_add(1) & GEN_MASK;
                make_tag(slot, s.gen, op)
            }
            _ => general!(),
        };
        let sub = || Submit {
            slot,
            nowait,
            i_size,
            fs_block,
            commands: 0,
        };
        let map = match ops.begin(pos, bytes, map_flags) {
            Ok(m) if self.plain_extent(&m, pos, end, write) => m,
            other => {
                self.init_slot(slot, write, iocb.flags);
                self.run_mappings(
                    sub(),
                    iocb,
                    bytes,
                    iter,
                    ops,
                    write,
                    map_flags,
                    dio_flags,
                    Some(other),
                );
                return self.finish_sync(slot, iocb, i_size, dops, done_before);
            }
        };
        let seg = [Segment {
            iova,
            len: len as u32,
        }];
        let lba = map.device_addr(pos) >> self.lba_shift;
        let blocks = (bytes >> self.lba_shift) as u32;
        let mut flags = completion_flags(write, iocb.flags);
        let (cmd, fua) = if write {
            let fua = !map.flags.contains(MappingFlags::DIRTY)
                && flags.contains(CompletionFlags::WRITE_THROUGH)
                && (self.caps.fua || !self.caps.volatile_write_cache);
            if !fua {
                flags.remove(CompletionFlags::WRITE_THROUGH);
            }
            let cmd = IoCommand::Write {
                lba,
                blocks,
                segments: &seg,
                fua,
            };
            (cmd, fua)
        } else {
            let cmd = IoCommand::Read {
                lba,
                blocks,
                segments: &seg,
            };
            (cmd, false)
        };
        if flags.contains(CompletionFlags::WRITE_THROUGH) {
            flags.remove(CompletionFlags::NEED_SYNC);
        }
        // Without a flush to follow, the command's own completion finishes the
        // request: it is waited for by its tag, and the slot record is only
        // written if the wait is given up.
        let flush =
            write && self.caps.volatile_write_cache && flags.contains(CompletionFlags::NEED_SYNC);
        if flush || !accepted(self.qp.submit(&cmd, tag)) {
            // A flush to follow or a queue that did not take the command: the
            // slot records the request and the general completion finishes it.
            self.init_slot(slot, write, iocb.flags);
            return self.single_slotted(
                sub(),
                iocb,
                iter,
                ops,
                dops,
                &map,
                &cmd,
                op,
                fua,
                map_flags,
                dio_flags,
                done_before,
            );
        }
        self.commands_in_flight += 1;
        self.stats.commands += 1;
        if fua {
            self.stats.fua_commands += 1;
        }
        iter.advance(len);
        let ended = ops.end(pos, bytes, bytes, map_flags, &map);
        let status = match self.wait_tag(tag, iocb.flags.contains(KiocbFlags::HIPRI)) {
            Ok(st) => st,
            Err(e) => {
                // The command may still complete: the slot waits for it.
                let s = &mut self.slots[slot];
                s.state = SlotState::Abandoned;
                s.outstanding = 1;
                s.submitting = false;
                s.finished = false;
                s.flush_issued = false;
                s.write = write;
                s.size = bytes;
                s.error = None;
                s.flags = flags;
                return Err(e);
            }
        };
        let mut error = match ended {
            Err(DioError::Fault { .. }) if dio_flags.contains(DioFlags::PARTIAL) => None,
            Err(e) => Some(e),
            Ok(()) => None,
        };
        if !status.is_success() && error.is_none() {
            error = Some(device_error(op, status));
        }
        let hook = dops.end_io(iocb, bytes, error.as_ref(), flags);
        if let Some(e) = error {
            return Err(e);
        }
        hook?;
        iocb.pos += bytes;
        self.stats.bytes += bytes;
        Ok(len + done_before)
    }

    /// The rest of a single-command request whose slot records it: issues `cmd`
    /// (reaping while the queue is full), ends the mapping and waits.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn single_slotted<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        mut sub: Submit,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
        map: &Mapping,
        cmd: &IoCommand<'_>,
        op: Op,
        fua: bool,
        map_flags: IomapFlags,
        dio_flags: DioFlags,
        done_before: usize,
    ) -> Result<usize, DioError> {
        let slot = sub.slot;
        let pos = iocb.pos;
        let bytes = iter.count() as u64;
        let i_size = sub.i_size;
        if !fua {
            self.slots[slot]
                .flags
                .remove(CompletionFlags::WRITE_THROUGH);
        }
        let issued = self.issue(&mut sub, cmd, op);
        let done = if issued.is_ok() {
            if fua {
                self.stats.fua_commands += 1;
            }
            self.slots[slot].size = bytes;
            iter.advance(bytes as usize);
            bytes
        } else {
            0
        };
        let ended = ops.end(pos, bytes, done, map_flags, map);
        let s = &mut self.slots[slot];
        match issued.err().or(ended.err()) {
            Some(DioError::Fault { .. }) if s.size > 0 && dio_flags.contains(DioFlags::PARTIAL) => {
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
        self.finish_sync(slot, iocb, i_size, dops, done_before)
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
