//! One mapping at a time: hole and inline copies, and the read/write commands for
//! device-backed extents with their FUA decision and sub-block zeroing (Linux's
//! `iomap_dio_iter` and `iomap_dio_bio_iter` in `fs/iomap/direct-io.c`).

use crate::buf::DmaBuf;
use crate::engine::{queue_error, Dio, Idle, Submit, MAX_SEGMENTS};
use crate::error::DioError;
use crate::iomap::{CompletionFlags, DioFlags, IomapOps, Mapping, MappingFlags, MappingKind};
use crate::iov::IovIter;
use crate::queue::{DioQueue, IoCommand, QueueError, Segment};
use crate::slot::{make_tag, Op};

/// How issuing a mapping's segment-list commands ended.
enum Segments {
    /// Every command was issued, or building one stopped with the error.
    Issued(Option<DioError>),
    /// An earlier command of the request had failed: the bytes were given back.
    GaveBack,
    /// A submission failed.
    Failed(DioError),
}

impl<Q: DioQueue, B: DmaBuf> Dio<Q, B> {
    /// Works on one mapping; returns the bytes processed and the error that stopped it.
    #[inline]
    pub(crate) fn iter_mapping<M: IomapOps + ?Sized>(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        pos: u64,
        length: u64,
        iter: &mut IovIter<B>,
        ops: &M,
    ) -> (u64, Option<DioError>) {
        let write = sub.write;
        match (map.kind, write) {
            (MappingKind::Hole | MappingKind::Unwritten, false) if sub.compare => {
                self.compare_zeros(sub, length, iter)
            }
            (MappingKind::Inline, false) if sub.compare => (
                0,
                Some(DioError::InvalidRequest {
                    reason: "compare of inline data is not supported",
                }),
            ),
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
            (MappingKind::Inline, _) => self.iter_inline(sub, pos, length, iter, ops),
            (MappingKind::Mapped | MappingKind::Unwritten, _) => {
                if write
                    && sub.dio_flags.contains(DioFlags::OVERWRITE_ONLY)
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
                self.iter_bio(sub, map, pos, length, iter)
            }
        }
    }

    /// Compares up to `length` bytes of the buffers with a hole's zeros.
    #[inline(never)]
    fn compare_zeros(
        &mut self,
        sub: &mut Submit,
        length: u64,
        iter: &mut IovIter<B>,
    ) -> (u64, Option<DioError>) {
        let n = length.min(iter.count() as u64);
        let mut tmp = [0u8; 512];
        let mut done = 0u64;
        while done < n {
            let k = (n - done).min(tmp.len() as u64) as usize;
            if let Err(e) = iter.copy_out(&mut tmp[..k]) {
                iter.revert(done as usize);
                return (0, Some(e));
            }
            if tmp[..k].iter().any(|&b| b != 0) {
                iter.revert(done as usize + k);
                return (0, Some(DioError::Miscompare));
            }
            done += k as u64;
        }
        self.slots[sub.slot].size += n;
        self.stats.hole_bytes += n;
        (n, None)
    }

    /// Copies between the buffers and inline data.
    fn iter_inline<M: IomapOps + ?Sized>(
        &mut self,
        sub: &mut Submit,
        pos: u64,
        length: u64,
        iter: &mut IovIter<B>,
        ops: &M,
    ) -> (u64, Option<DioError>) {
        let write = sub.write;
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
    #[inline]
    fn iter_bio(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        start: u64,
        length: u64,
        iter: &mut IovIter<B>,
    ) -> (u64, Option<DioError>) {
        let write = sub.write;
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
        if !self.in_namespace(map, start, length) {
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
        // The common case: what is left is one piece of one buffer that fits one
        // command, so no segment list is built.
        if let Some(iova) = self.single_command(sub, iter) {
            let n = iter.count();
            let seg = [Segment {
                iova,
                len: n as u32,
            }];
            if let Err(e) = self.issue_rw(sub, map, pos, n, &seg, fua) {
                iter.reexpand(orig);
                return (0, Some(e));
            }
            self.slots[sub.slot].size += n as u64;
            iter.advance(n);
            copied = n;
            pos += n as u64;
        }
        if iter.count() > 0 {
            match self.issue_segments(sub, map, &mut pos, &mut copied, iter, fua) {
                Segments::Issued(e) => err = e,
                Segments::GaveBack => {
                    iter.reexpand(orig);
                    return (0, None);
                }
                Segments::Failed(e) => {
                    iter.reexpand(orig - copied);
                    return (copied as u64, Some(e));
                }
            }
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

    /// Whether `length` bytes from file position `start` of `map` lie inside the
    /// namespace and start on a logical block boundary of the device.
    #[inline]
    pub(crate) fn in_namespace(&self, map: &Mapping, start: u64, length: u64) -> bool {
        let lba = u64::from(self.caps.lba_size);
        let in_range = map
            .addr
            .checked_add(start - map.offset)
            .and_then(|a| a.checked_add(length))
            .is_some_and(|end| end <= self.capacity_bytes);
        map.addr & (lba - 1) == 0 && in_range
    }

    /// The device address of the available bytes when they are one piece that one
    /// command carries and no earlier command of the request failed.
    #[inline]
    fn single_command(&self, sub: &Submit, iter: &IovIter<B>) -> Option<u64> {
        let (buf, off) = iter.single()?;
        if iter.count() > self.max_command || self.slots[sub.slot].error.is_some() {
            return None;
        }
        buf.iova_at(off)
    }

    /// Issues one read or write of `n` bytes at file position `pos` of `map` from `segs`.
    #[inline(always)]
    fn issue_rw(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        pos: u64,
        n: usize,
        segs: &[Segment],
        fua: bool,
    ) -> Result<(), DioError> {
        let lba = map.device_addr(pos) >> self.lba_shift;
        let blocks = (n >> self.lba_shift) as u32;
        let (cmd, op) = if sub.write {
            if !fua {
                self.slots[sub.slot]
                    .flags
                    .remove(CompletionFlags::WRITE_THROUGH);
            }
            (
                IoCommand::Write {
                    lba,
                    blocks,
                    segments: segs,
                    fua,
                },
                Op::Write,
            )
        } else if sub.compare {
            (
                IoCommand::Compare {
                    lba,
                    blocks,
                    segments: segs,
                },
                Op::Compare,
            )
        } else {
            (
                IoCommand::Read {
                    lba,
                    blocks,
                    segments: segs,
                },
                Op::Read,
            )
        };
        self.issue(sub, &cmd, op)?;
        if fua {
            self.stats.fua_commands += 1;
        }
        Ok(())
    }

    /// Issues commands with segment lists for what is left of the iterator (the
    /// general case: several buffers, or more than one command's worth). Advances
    /// `pos`, `copied` and the iterator past what was issued.
    #[inline(never)]
    fn issue_segments(
        &mut self,
        sub: &mut Submit,
        map: &Mapping,
        pos: &mut u64,
        copied: &mut usize,
        iter: &mut IovIter<B>,
        fua: bool,
    ) -> Segments {
        let mut segs = [Segment::default(); MAX_SEGMENTS];
        while iter.count() > 0 {
            if self.slots[sub.slot].error.is_some() {
                // A command already failed: stop issuing and give the bytes back.
                iter.revert(*copied);
                return Segments::GaveBack;
            }
            let (n, nsegs) = match self.build_segments(iter, &mut segs) {
                Ok(v) => v,
                Err(e) => return Segments::Issued(Some(e)),
            };
            if let Err(e) = self.issue_rw(sub, map, *pos, n, &segs[..nsegs], fua) {
                return Segments::Failed(e);
            }
            self.slots[sub.slot].size += n as u64;
            iter.advance(n);
            *copied += n;
            *pos += n as u64;
        }
        Segments::Issued(None)
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

    /// Retries a submission the queue refused as full, reaping completions until it
    /// has room (or fails NOWAIT requests); other refusals are errors.
    #[cold]
    #[inline(never)]
    fn resubmit(
        &mut self,
        sub: &Submit,
        cmd: &IoCommand<'_>,
        tag: u64,
        first: QueueError,
    ) -> Result<(), DioError> {
        let mut idle = Idle::new(self.wait_limit());
        let mut err = first;
        loop {
            match err {
                QueueError::Full if sub.nowait => {
                    return Err(DioError::Again {
                        reason: "the submission queue is full",
                    })
                }
                QueueError::Full => {
                    let n = self.reap()?;
                    idle.progress(n)?;
                }
                e => return Err(queue_error(e)),
            }
            match self.qp.submit(cmd, tag) {
                Ok(()) => return Ok(()),
                Err(e) => err = e,
            }
        }
    }

    /// Submits one command for the request, reaping completions while the queue is full.
    #[inline(always)]
    pub(crate) fn issue(
        &mut self,
        sub: &mut Submit,
        cmd: &IoCommand<'_>,
        op: Op,
    ) -> Result<(), DioError> {
        let tag = make_tag(sub.slot, self.slots[sub.slot].gen, op);
        if let Err(e) = self.qp.submit(cmd, tag) {
            self.resubmit(sub, cmd, tag, e)?;
        }
        self.slots[sub.slot].outstanding += 1;
        self.commands_in_flight += 1;
        self.stats.commands += 1;
        sub.commands += 1;
        Ok(())
    }
}
