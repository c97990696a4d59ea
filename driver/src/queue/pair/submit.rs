//! Building commands and queueing them; the SQ tail doorbell.

use std::sync::atomic::{fence, Ordering};

use crate::dma::DmaMem;
use crate::error::{CommandDesc, IoKind, PrpRule};
use crate::queue::prp::{ListPages, Segment};
use crate::queue::sgl;
use crate::queue::{IoFlags, IoOptions};
use crate::spec::registers::shadow_doorbell_needs_mmio;
use crate::spec::{nvm, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

use super::IoQueuePair;

/// Most blocks one read/write command can carry (NLB is 16 bits, 0's based).
pub(super) const MAX_BLOCKS: u32 = 1 << 16;
/// Most ranges in one Dataset Management command.
const MAX_DSM_RANGES: usize = 256;
/// The blocks one read or write command addresses.
#[derive(Clone, Copy)]
pub(super) struct Blocks {
    pub(super) nsid: u32,
    pub(super) slba: u64,
    pub(super) blocks: u32,
}

/// What a data command moves: its data segments and, for a namespace with separate
/// metadata, the metadata buffer, each with the exact byte count the command moves.
#[derive(Clone, Copy)]
pub(super) struct Transfer<'a> {
    pub(super) data: &'a [Segment],
    pub(super) bytes: u64,
    pub(super) metadata: Option<Segment>,
    pub(super) metadata_bytes: u64,
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

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    #[inline]
    pub(super) fn check_epoch(&mut self) -> Result<(), Error> {
        if self.epoch != self.shared.epoch.load(Ordering::Acquire) {
            self.recover()?;
        }
        Ok(())
    }

    /// Queues one command after catching up with a controller reset (see
    /// [`Self::queue_command`]).
    #[inline(always)]
    pub(super) fn submit(
        &mut self,
        sqe: SubmissionEntry,
        desc: CommandDesc,
        data: Option<Transfer<'_>>,
        ctx: C,
    ) -> Result<(), Error> {
        self.check_epoch()?;
        self.queue_command(sqe, desc, data, ctx)
    }

    /// Queues one command; `data` is described with PRPs or an SGL (as the pair's
    /// [`crate::SglMode`] says) in the slot's list pages, and its metadata buffer, if
    /// any, with MPTR (an address or a metadata SGL). This is the one place every transfer is
    /// checked: the buffers must hold exactly the bytes the command moves. Nothing
    /// reaches the controller before the next [`Self::ring`].
    #[inline(always)]
    pub(super) fn queue_command(
        &mut self,
        mut sqe: SubmissionEntry,
        desc: CommandDesc,
        data: Option<Transfer<'_>>,
        ctx: C,
    ) -> Result<(), Error> {
        if self.sq.is_full() {
            return Err(self.queue_full());
        }
        if let Some(t) = &data {
            check_metadata(desc, t)?;
        }
        let Some(cid) = self.slots.take(ctx, desc) else {
            return Err(self.queue_full());
        };
        if let Some(t) = data {
            let segments = t.data;
            let total: usize = segments.iter().map(|s| s.len).sum();
            if total as u64 != t.bytes {
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
            let (ps, policy) = (self.page_size, self.sgl);
            let set = sgl::set_data_pointer(&mut sqe, segments, t.metadata, ps, policy, &mut lists);
            if let Err(e) = set {
                self.slots.undo_take(cid);
                return Err(e);
            }
        }
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        self.retry.save(cid, &sqe);
        self.stats.submitted += 1;
        Ok(())
    }

    pub(super) fn queue_full(&self) -> Error {
        Error::QueueFull {
            qid: self.qid,
            depth: self.sq.entries(),
        }
    }

    // Always inlined into the `submit_*` calls: the split path's call below otherwise
    // tips the inliner into an out-of-line call on every unsplit read and write.
    #[inline(always)]
    pub(super) fn rw(
        &mut self,
        kind: IoKind,
        at: Blocks,
        data: &[Segment],
        opts: &IoOptions,
        ctx: C,
    ) -> Result<(), Error> {
        let Blocks { nsid, slba, blocks } = at;
        let sizes = self.block_sizes(nsid, opts.flags, opts.metadata.is_some())?;
        // The one size every data command is checked on: `submit` refuses a buffer
        // whose segments do not add up to exactly this many bytes.
        let bytes = u64::from(blocks) * u64::from(sizes.0);
        if blocks == 0 || blocks > MAX_BLOCKS || bytes > self.max_transfer {
            if blocks == 0 {
                let desc = CommandDesc::Io {
                    kind,
                    nsid,
                    slba,
                    blocks,
                };
                return Err(Error::InvalidRequest(format!("{desc}: zero blocks")));
            }
            // Larger than one command: split into child commands (`split.rs`).
            return self.submit_split(kind, at, data, opts, sizes, ctx);
        }
        self.check_epoch()?;
        self.rw_command(kind, at, data, opts, sizes, ctx)
    }

    /// Builds and queues one Read or Write of `at` (at most one command's worth), with
    /// `sizes` the data-buffer and separate-metadata bytes per block.
    #[inline(always)]
    pub(super) fn rw_command(
        &mut self,
        kind: IoKind,
        at: Blocks,
        data: &[Segment],
        opts: &IoOptions,
        sizes: (u32, u16),
        ctx: C,
    ) -> Result<(), Error> {
        let Blocks { nsid, slba, blocks } = at;
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba,
            blocks,
        };
        let sqe = match kind {
            IoKind::Read => nvm::read(nsid, slba, blocks),
            IoKind::Compare => nvm::compare(nsid, slba, blocks),
            _ => nvm::write(nsid, slba, blocks),
        };
        let sqe = sqe.map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        let (sqe, transfer) = self.data_command(sqe, at, data, opts, sizes)?;
        // The entry goes to `queue_command` on one path only: a branch around it would
        // copy the entry and the transfer.
        let no_retry = match opts.flags.contains(IoFlags::NO_RETRY) {
            true => self.slots.next_cid(),
            false => None,
        };
        self.queue_command(sqe, desc, Some(transfer), ctx)?;
        if let Some(cid) = no_retry {
            self.mark_no_retry(cid);
        }
        Ok(())
    }

    /// Marks command `cid`, just queued, as one the caller asked not to be retried.
    #[cold]
    #[inline(never)]
    fn mark_no_retry(&mut self, cid: u16) {
        if let Some(slot) = self.slots.get_mut(cid) {
            slot.no_retry = true;
        }
    }

    /// Completes `sqe`, a data command on the blocks `at`, with `opts`: its flags, its
    /// protection information tags, and the transfer `submit` checks, with `sizes` the
    /// data-buffer and separate-metadata bytes per block. Reads, writes, compares and
    /// zone appends all take this path.
    #[inline(always)]
    pub(super) fn data_command<'a>(
        &self,
        mut sqe: SubmissionEntry,
        at: Blocks,
        data: &'a [Segment],
        opts: &IoOptions,
        (block_bytes, md_block_bytes): (u32, u16),
    ) -> Result<(SubmissionEntry, Transfer<'a>), Error> {
        let Blocks { nsid, slba, blocks } = at;
        // NO_RETRY is the host's alone: never sent.
        sqe.cdw12 |= opts.flags.difference(IoFlags::NO_RETRY).bits();
        // The tags matter only to a command that asks for PRACT or PRCHK.
        if opts.flags.intersects(IoFlags::PRACT.union(IoFlags::PRCHK)) {
            crate::pi::fill_command(&mut sqe, self.ns_geometry(nsid)?.pi.as_ref(), slba, opts);
        }
        let transfer = Transfer {
            data,
            bytes: u64::from(blocks) * u64::from(block_bytes),
            metadata: opts.metadata,
            metadata_bytes: u64::from(blocks) * u64::from(md_block_bytes),
        };
        Ok((sqe, transfer))
    }

    /// Queues a Read of `blocks` blocks at `slba` into `data`.
    ///
    /// `data` holds exactly `blocks` times the namespace's data-buffer block size (data
    /// plus metadata for extended LBAs). The memory behind `data` must stay allocated
    /// until the completion is reported (dropping the pair waits for outstanding
    /// commands).
    ///
    /// A read larger than one command ([`Self::max_transfer_bytes`], or more than 65536
    /// blocks) is split into child commands and still completes once, with the first
    /// error of any child; it needs a free command slot per child
    /// ([`super::commands_per_request`]), at most `depth() - 1`, or nothing is submitted.
    pub fn submit_read(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        ctx: C,
    ) -> Result<(), Error> {
        let at = Blocks { nsid, slba, blocks };
        self.rw(IoKind::Read, at, data, &IoOptions::default(), ctx)
    }

    /// [`Self::submit_read`] with `flags` (such as [`IoFlags::PRACT`]).
    pub fn submit_read_with_flags(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        flags: IoFlags,
        ctx: C,
    ) -> Result<(), Error> {
        let at = Blocks { nsid, slba, blocks };
        let opts = IoOptions {
            flags,
            ..IoOptions::default()
        };
        self.rw(IoKind::Read, at, data, &opts, ctx)
    }

    /// Queues a Read with everything [`IoOptions`] carries: flags and the separate
    /// metadata buffer (required on a namespace formatted with separate metadata,
    /// unless PRACT strips protection information that is the whole metadata).
    pub fn submit_read_ext(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        opts: &IoOptions,
        ctx: C,
    ) -> Result<(), Error> {
        let at = Blocks { nsid, slba, blocks };
        self.rw(IoKind::Read, at, data, opts, ctx)
    }

    /// Queues a Write of `blocks` blocks at `slba` from `data` with `flags`
    /// ([`IoFlags::FUA`] makes it durable before it completes). `data` must stay
    /// allocated until the completion is reported; it holds exactly `blocks` times the
    /// namespace's data-buffer block size (data plus metadata for extended LBAs). A
    /// write larger than one command is split as [`Self::submit_read`] describes, with
    /// the flags on every child.
    pub fn submit_write(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        flags: IoFlags,
        ctx: C,
    ) -> Result<(), Error> {
        let at = Blocks { nsid, slba, blocks };
        let opts = IoOptions {
            flags,
            ..IoOptions::default()
        };
        self.rw(IoKind::Write, at, data, &opts, ctx)
    }

    /// Queues a Write with everything [`IoOptions`] carries (see
    /// [`Self::submit_read_ext`]).
    pub fn submit_write_ext(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        opts: &IoOptions,
        ctx: C,
    ) -> Result<(), Error> {
        let at = Blocks { nsid, slba, blocks };
        self.rw(IoKind::Write, at, data, opts, ctx)
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
        let lists = &mut self.lists;
        let written = ranges
            .iter()
            .enumerate()
            .try_for_each(|(i, &(slba, blocks))| {
                let off = base + i * 16;
                lists.write_u32(off, 0)?;
                lists.write_u32(off + 4, blocks)?;
                lists.write_u64(off + 8, slba)
            });
        if let Err(e) = written {
            self.slots.undo_take(cid);
            return Err(e);
        }
        let Ok(mut sqe) = nvm::deallocate(nsid, ranges.len()) else {
            self.slots.undo_take(cid);
            return Err(Error::InvalidRequest(format!("{desc}: bad range count")));
        };
        let ranges_iova = self.lists.iova() + base as u64;
        if self.shared.t.sgl_only() {
            let desc = crate::spec::sgl::SglDescriptor::data_block(
                ranges_iova,
                (ranges.len() * 16) as u32,
            );
            sqe.set_sgl(desc, crate::spec::command::Psdt::SglMptrContiguous);
        } else {
            sqe.set_prp(ranges_iova, 0);
        }
        sqe.set_cid(cid);
        self.sq.push(&sqe);
        self.retry.save(cid, &sqe);
        self.stats.submitted += 1;
        Ok(())
    }

    /// Shadow-doorbell update (Linux `nvme_dbbuf_update_and_check_event`): returns whether
    /// the MMIO doorbell must still be written.
    #[inline]
    pub(super) fn shadow_update(&self, sq: bool, value: u16) -> bool {
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
}

/// Checks a command's metadata buffer against the bytes of separate metadata it moves:
/// present exactly when the format needs one, exactly that long, and dword aligned
/// (MPTR, NVMe Base 2.0 §4.1.1).
#[inline]
pub(super) fn check_metadata(desc: CommandDesc, t: &Transfer<'_>) -> Result<(), Error> {
    match t.metadata {
        None if t.metadata_bytes == 0 => Ok(()),
        Some(m) if m.len as u64 == t.metadata_bytes && m.iova & 3 == 0 => Ok(()),
        Some(m) if m.len as u64 == t.metadata_bytes => Err(Error::BadSegment {
            index: 0,
            iova: m.iova,
            len: m.len,
            rule: PrpRule::NotDwordAligned,
        }),
        m => Err(Error::MetadataLengthMismatch {
            command: desc,
            expected: t.metadata_bytes,
            given: m.map_or(0, |m| m.len as u64),
        }),
    }
}
