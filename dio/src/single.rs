//! The common synchronous read in one step: one buffer piece, one mapped extent,
//! one command, nothing to cut at EOF. The rules are those of the general path
//! (`engine` and `extent_io`); only the loop over mappings and segments is gone.

use crate::buf::DmaBuf;
use crate::engine::{Dio, Submit, DMA_ALIGN};
use crate::error::DioError;
use crate::iomap::{DioFlags, DioOps, IomapFlags, IomapOps, MappingKind};
use crate::iov::IovIter;
use crate::kiocb::{Kiocb, KiocbFlags};
use crate::queue::{DioQueue, IoCommand, Segment};
use crate::slot::Op;

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Runs a synchronous read whose buffers are one piece that one command carries
    /// and that ends at or before EOF. `None`, with nothing done, when the request
    /// has another shape or breaks a rule: the general path then handles it and
    /// reports the error. A mapping other than one mapped extent over the whole
    /// range goes on through the general path.
    #[inline]
    pub(crate) fn read_single<M: IomapOps + ?Sized, D: DioOps + ?Sized>(
        &mut self,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        ops: &M,
        dops: &D,
        dio_flags: DioFlags,
        done_before: usize,
    ) -> Option<Result<usize, DioError>> {
        let (buf, off) = iter.single()?;
        let len = iter.count();
        let bytes = len as u64;
        let pos = iocb.pos;
        let end = pos.checked_add(bytes)?;
        let lba_mask = u64::from(self.caps.lba_size) - 1;
        if len > self.max_command || (pos | bytes) & lba_mask != 0 || self.free.is_empty() {
            return None;
        }
        let iova = buf.iova_at(off)?;
        if iova & u64::from(DMA_ALIGN - 1) != 0 {
            return None;
        }
        let i_size = ops.size();
        if end > i_size {
            return None;
        }
        let fs_block = u64::from(ops.block_size());
        if !fs_block.is_power_of_two() || fs_block <= lba_mask {
            return None;
        }
        let nowait = iocb.flags.contains(KiocbFlags::NOWAIT);
        let mut map_flags = IomapFlags::DIRECT;
        if nowait {
            map_flags |= IomapFlags::NOWAIT;
        }
        // A slot is free (checked above), so this cannot fail.
        let slot = self.alloc_slot(false, iocb.flags).ok()?;
        let mut sub = Submit {
            slot,
            nowait,
            i_size,
            fs_block,
            commands: 0,
        };
        let map = match ops.begin(pos, bytes, map_flags) {
            Ok(m)
                if m.kind == MappingKind::Mapped
                    && m.offset <= pos
                    && m.offset.saturating_add(m.length) >= end
                    && self.in_namespace(&m, pos, bytes) =>
            {
                m
            }
            other => {
                self.run_mappings(
                    sub,
                    iocb,
                    bytes,
                    iter,
                    ops,
                    false,
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
        let cmd = IoCommand::Read {
            lba: map.device_addr(pos) >> self.lba_shift,
            blocks: (bytes >> self.lba_shift) as u32,
            segments: &seg,
        };
        let issued = self.issue(&mut sub, &cmd, Op::Read);
        let done = if issued.is_ok() {
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
        s.submitting = false;
        if s.outstanding == 0 {
            self.ready.push(slot);
            self.process_ready();
        }
        Some(self.finish_sync(slot, iocb, i_size, dops, done_before))
    }
}
