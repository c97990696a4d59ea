//! The common synchronous request in one step: one buffer piece, one mapped
//! extent, one command, and no zeroing or EOF work. The rules are those of the
//! general path (`engine` and `extent_io`); only its loops are gone.

use crate::buf::DmaBuf;
use crate::engine::{Dio, Direction, Submit, DMA_ALIGN};
use crate::error::DioError;
use crate::iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{DioQueue, IoCommand, Segment};
use crate::slot::Op;

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Runs a synchronous request whose buffers are one piece that one command
    /// carries, that needs no EOF cut (reads) and no tail zeroing (writes).
    ///
    /// `None`, with nothing done, when the request has another shape or breaks a
    /// rule: the general path then handles it and reports the error. When the
    /// provider answers with anything but one plain mapped extent over the whole
    /// range, the request goes on through the general path with that answer.
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
    ) -> Option<Result<usize, DioError>> {
        let write = dir == Direction::Write;
        let (buf, off) = iter.single()?;
        let len = iter.count();
        let bytes = len as u64;
        let pos = iocb.pos;
        let end = pos.checked_add(bytes)?;
        let lba_mask = u64::from(self.caps.lba_size) - 1;
        if len > self.max_command || (pos | bytes) & lba_mask != 0 {
            return None;
        }
        let iova = buf.iova_at(off)?;
        if iova & u64::from(DMA_ALIGN - 1) != 0 {
            return None;
        }
        let i_size = ops.size();
        let fs_block = u64::from(ops.block_size());
        if !fs_block.is_power_of_two() || fs_block <= lba_mask {
            return None;
        }
        let mut map_flags = IomapFlags::DIRECT;
        if write {
            // A write ending at or past EOF off a block boundary zeroes the tail
            // (from its start if the command cannot be issued).
            let tail = |at: u64| at >= i_size && at & (fs_block - 1) != 0;
            if tail(end) || tail(pos) {
                return None;
            }
            map_flags |= IomapFlags::WRITE;
            if dio_flags.contains(DioFlags::OVERWRITE_ONLY) {
                if end > i_size {
                    return None;
                }
                map_flags |= IomapFlags::OVERWRITE_ONLY;
            }
        } else if end > i_size {
            return None;
        }
        let nowait = iocb.flags.contains(KiocbFlags::NOWAIT);
        if nowait {
            map_flags |= IomapFlags::NOWAIT;
        }
        let slot = self.alloc_slot(write, iocb.flags).ok()?;
        let mut sub = Submit {
            slot,
            nowait,
            i_size,
            fs_block,
            commands: 0,
        };
        let map = match ops.begin(pos, bytes, map_flags) {
            Ok(m) if self.plain_extent(&m, pos, end, write) => m,
            other => {
                self.run_mappings(
                    sub,
                    iocb,
                    bytes,
                    iter,
                    ops,
                    write,
                    map_flags,
                    dio_flags,
                    Some(other),
                );
                return Some(self.finish_sync(slot, iocb, i_size, dops, done_before));
            }
        };
        let seg = [Segment {
            iova,
            len: len as u32,
        }];
        let lba = map.device_addr(pos) >> self.lba_shift;
        let blocks = (bytes >> self.lba_shift) as u32;
        let (cmd, op, fua) = if write {
            let s = &mut self.slots[slot];
            let fua = !map.flags.contains(MappingFlags::DIRTY)
                && s.flags.contains(CompletionFlags::WRITE_THROUGH)
                && (self.caps.fua || !self.caps.volatile_write_cache);
            if !fua {
                s.flags.remove(CompletionFlags::WRITE_THROUGH);
            }
            let cmd = IoCommand::Write {
                lba,
                blocks,
                segments: &seg,
                fua,
            };
            (cmd, Op::Write, fua)
        } else {
            let cmd = IoCommand::Read {
                lba,
                blocks,
                segments: &seg,
            };
            (cmd, Op::Read, false)
        };
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
        let ended = ops.end(pos, bytes, done, map_flags, &map);
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
        Some(self.finish_sync(slot, iocb, i_size, dops, done_before))
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
