//! NVM command set (NVM Command Set Specification 1.0, section 3).

use std::sync::atomic::Ordering;

use nvme_spec::status::{GenericStatus as G, MediaStatus as M};
use nvme_spec::{DsmRange, NvmOpcode as Op, Status, SubmissionEntry};

use crate::controller::{generic, Ctrl, Ctx, Outcome};
use crate::namespace::{sg_copy_from, sg_copy_to, Namespace};

fn done(status: Status) -> Outcome {
    Outcome::Done(0, status)
}

/// PRACT within the PRINFO field (CDW12 bits 29:26).
const PRACT: u8 = 0b1000;

const SUCCESS: Outcome = Outcome::Done(0, Status::SUCCESS);

impl Ctrl {
    #[inline]
    pub(crate) fn exec_io(&self, ctx: &mut Ctx<'_>, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        if let Err(s) = self.check_psdt(sqe) {
            return done(s);
        }
        let op = sqe.nvm_opcode();
        if op == Op::FLUSH {
            ctx.counters.flushes += 1;
            return self.flush(sqe);
        }
        let ns = match self.storage.get(sqe.nsid) {
            Some(ns) => ns,
            None => {
                ctx.counters.other_io += 1;
                if matches!(
                    op,
                    Op::READ
                        | Op::WRITE
                        | Op::COMPARE
                        | Op::WRITE_ZEROES
                        | Op::VERIFY
                        | Op::DATASET_MANAGEMENT
                ) {
                    return done(generic(G::InvalidNamespaceOrFormat));
                }
                return done(generic(G::InvalidCommandOpcode));
            }
        };
        match op {
            Op::READ => ctx.counters.reads += 1,
            Op::WRITE => ctx.counters.writes += 1,
            _ => ctx.counters.other_io += 1,
        }
        match op {
            Op::READ => self.read(ctx, ns, sqe, ps),
            Op::WRITE => {
                let _range = ns.ranges.shared(sqe.slba(), u64::from(sqe.block_count()));
                self.write(ctx, ns, sqe, ps)
            }
            Op::WRITE_ZEROES => {
                let _range = ns.ranges.shared(sqe.slba(), u64::from(sqe.block_count()));
                self.write_zeroes(ns, sqe)
            }
            Op::DATASET_MANAGEMENT => {
                let _range = ns.ranges.shared_all();
                self.dataset_management(ctx, ns, sqe, ps)
            }
            Op::VERIFY => self.verify(ns, sqe),
            Op::COMPARE => self.compare(ctx, ns, sqe, ps),
            Op::ZONE_APPEND => {
                let _range = ns.ranges.shared_all();
                self.exec_zoned(ctx, ns, sqe, ps)
            }
            Op::ZONE_MANAGEMENT_SEND | Op::ZONE_MANAGEMENT_RECEIVE => {
                self.exec_zoned(ctx, ns, sqe, ps)
            }
            _ => done(generic(G::InvalidCommandOpcode)),
        }
    }

    /// Checks the LBA range and transfer size of a Read/Write-style command and maps its
    /// PRPs into the queue's segment list. Returns the starting LBA and block count.
    #[inline]
    fn rw_setup(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
        map: bool,
    ) -> Result<(u64, u64), Status> {
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        if !ns.holds(slba, nlb) {
            return Err(generic(G::LbaOutOfRange));
        }
        if !map {
            return Ok((slba, nlb));
        }
        let strip = strips_pi(ns, sqe);
        let len = nlb * host_block_size(ns, strip);
        if len > self.max_transfer() {
            return Err(generic(G::InvalidFieldInCommand));
        }
        let md_len = if strip {
            0
        } else {
            nlb as usize * ns.separate_metadata_size()
        };
        if md_len != 0 {
            self.map_metadata(ctx, sqe, md_len)?;
        }
        self.map_data(ctx, sqe, len as usize, ps)?;
        Ok((slba, nlb))
    }

    /// Maps the contiguous `len`-byte metadata buffer at `mptr` into the queue's metadata
    /// segment list; a null or unmapped pointer is a Data Transfer Error.
    pub(crate) fn collect_metadata(
        &self,
        ctx: &mut Ctx<'_>,
        mptr: u64,
        len: usize,
    ) -> Result<(), Status> {
        let out = &mut ctx.scratch.md;
        out.clear();
        let (mut iova, mut left) = (mptr, len);
        while left > 0 {
            let piece = if mptr == 0 {
                None
            } else {
                ctx.view.host_slice(iova, left).ok()
            };
            let Some(piece) = piece else {
                ctx.counters.dma_errors += 1;
                return Err(generic(G::DataTransferError));
            };
            iova += piece.len() as u64;
            left -= piece.len();
            out.push(piece);
        }
        Ok(())
    }

    /// Reads stored blocks into the data segments and, unless `strip`, the separate
    /// metadata buffer.
    fn read_separate(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        slba: u64,
        nlb: u64,
        strip: bool,
    ) -> bool {
        if ns.backend.is_null() {
            return true;
        }
        let scratch = &mut *ctx.scratch;
        let len = nlb as usize * ns.block_size();
        scratch.a.resize(len, 0);
        if ns.read_buf(slba, &mut scratch.a[..len]).is_err() {
            return false;
        }
        Self::scatter_blocks(ctx, ns, len, strip);
        true
    }

    /// Moves the stored blocks in `ctx.scratch.a[..len]` to the host: the data to the
    /// data segments, the metadata to the separate metadata buffer (unless `strip`),
    /// or both to the data segments on an extended-LBA format. The inverse of
    /// [`Self::gather_blocks`].
    pub(crate) fn scatter_blocks(ctx: &mut Ctx<'_>, ns: &Namespace, len: usize, strip: bool) {
        let (ds, stride) = (1usize << ns.lba_shift, ns.block_size());
        let ms = stride - ds;
        let scratch = &mut *ctx.scratch;
        if !strip && ns.separate_metadata_size() == 0 {
            sg_copy_from(&scratch.segs, 0, &scratch.a[..len]);
            return;
        }
        for (i, block) in scratch.a[..len].chunks(stride).enumerate() {
            sg_copy_from(&scratch.segs, i * ds, &block[..ds]);
            if !strip {
                sg_copy_from(&scratch.md, i * ms, &block[ds..]);
            }
        }
    }

    /// Gathers a write's or compare's data (and separate metadata unless `strip`) into
    /// stored blocks in `ctx.scratch.a`; returns their length. Metadata that does not
    /// move (`strip`) is zero until the tuple is inserted.
    pub(crate) fn gather_blocks(ctx: &mut Ctx<'_>, ns: &Namespace, nlb: u64, strip: bool) -> usize {
        let (ds, stride) = (1usize << ns.lba_shift, ns.block_size());
        let ms = stride - ds;
        let per_block = strip || ns.separate_metadata_size() != 0;
        let scratch = &mut *ctx.scratch;
        let len = nlb as usize * stride;
        scratch.a.resize(len, 0);
        if !per_block {
            sg_copy_to(&scratch.segs, 0, &mut scratch.a[..len]);
            return len;
        }
        for (i, block) in scratch.a[..len].chunks_mut(stride).enumerate() {
            let (data, md) = block.split_at_mut(ds);
            sg_copy_to(&scratch.segs, i * ds, data);
            if strip {
                md.fill(0);
            } else {
                sg_copy_to(&scratch.md, i * ms, md);
            }
        }
        len
    }

    fn media_fault(&self, ns: &Namespace, slba: u64, nlb: u64) -> Option<Status> {
        if self.faults.armed()
            && self
                .faults
                .media_error(ns.nsid, &(slba..slba + nlb))
                .is_some()
        {
            return Some(Status::media(M::UnrecoveredReadError));
        }
        None
    }

    fn read(&self, ctx: &mut Ctx<'_>, ns: &Namespace, sqe: &SubmissionEntry, ps: u64) -> Outcome {
        let (slba, nlb) = match self.rw_setup(ctx, ns, sqe, ps, true) {
            Ok(v) => v,
            Err(s) => return done(s),
        };
        if let Some(Err(s)) = ns.zones.as_ref().map(|z| z.read(slba, nlb)) {
            return done(s);
        }
        if let Some(s) = self.media_fault(ns, slba, nlb) {
            return done(s);
        }
        let strip = strips_pi(ns, sqe);
        let ok = if crate::pi::active(ns, sqe) {
            if let Err(s) = crate::pi::check_prinfo(ns, sqe) {
                return done(s);
            }
            if let Err(s) = self.read_pi(ctx, ns, sqe, strip) {
                return done(s);
            }
            true
        } else if strip || ns.separate_metadata_size() != 0 {
            self.read_separate(ctx, ns, slba, nlb, strip)
        } else {
            ns.read(slba, &ctx.scratch.segs).is_ok()
        };
        if !ok {
            return done(Status::media(M::UnrecoveredReadError));
        }
        if self.faults.armed() {
            if let Some(bad) = self.faults.corrupt(ns.nsid, &(slba..slba + nlb)) {
                for lba in bad {
                    let at = ((lba - slba) * host_block_size(ns, strip)) as usize;
                    flip_at(&ctx.scratch.segs, at);
                }
            }
        }
        let bytes = nlb << ns.lba_shift;
        ctx.counters.read_units += bytes >> 9;
        ctx.counters.bytes_read += bytes;
        SUCCESS
    }

    pub(crate) fn write(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let Some(zones) = &ns.zones else {
            return self.write_data(ctx, ns, sqe, ps);
        };
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        if let Err(s) = zones.write(slba, nlb) {
            return done(s);
        }
        let outcome = self.write_data(ctx, ns, sqe, ps);
        if matches!(outcome, Outcome::Done(_, s) if !s.is_success()) {
            zones.rollback(slba, nlb);
        }
        outcome
    }

    /// Writes the command's blocks, with no zone check.
    pub(crate) fn write_data(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let (slba, nlb) = match self.rw_setup(ctx, ns, sqe, ps, true) {
            Ok(v) => v,
            Err(s) => return done(s),
        };
        let cached = !sqe.fua() && self.storage.write_cache.load(Ordering::Relaxed);
        let strip = strips_pi(ns, sqe);
        let written = if crate::pi::active(ns, sqe) {
            if let Err(s) = crate::pi::check_prinfo(ns, sqe) {
                return done(s);
            }
            match self.write_pi(ctx, ns, sqe, strip, cached) {
                Ok(()) => Ok(()),
                Err(s) => return done(s),
            }
        } else if strip || ns.separate_metadata_size() != 0 {
            let len = Self::gather_blocks(ctx, ns, nlb, strip);
            ns.write_buf(slba, &ctx.scratch.a[..len], cached)
        } else {
            ns.write(slba, &ctx.scratch.segs, cached)
        };
        if written.is_err() {
            return done(Status::media(M::WriteFault));
        }
        let bytes = nlb << ns.lba_shift;
        ctx.counters.write_units += bytes >> 9;
        ctx.counters.bytes_written += bytes;
        SUCCESS
    }

    fn flush(&self, sqe: &SubmissionEntry) -> Outcome {
        let targets: &[Namespace] = if sqe.nsid == nvme_spec::command::NSID_ALL {
            &self.storage.namespaces
        } else {
            match self.storage.get(sqe.nsid) {
                Some(ns) => std::slice::from_ref(ns),
                None => return done(generic(G::InvalidNamespaceOrFormat)),
            }
        };
        for ns in targets {
            if ns.flush().is_err() {
                return done(Status::media(M::WriteFault));
            }
        }
        SUCCESS
    }

    fn write_zeroes(&self, ns: &Namespace, sqe: &SubmissionEntry) -> Outcome {
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        if !ns.holds(slba, nlb) {
            return done(generic(G::LbaOutOfRange));
        }
        if let Some(Err(s)) = ns.zones.as_ref().map(|z| z.write(slba, nlb)) {
            return done(s);
        }
        // Zeroing (with or without DEAC) is made durable at once: allowed, since a
        // device may write its cache back at any time.
        if ns.zero(slba, nlb).is_err() {
            return done(Status::media(M::WriteFault));
        }
        SUCCESS
    }

    fn dataset_management(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let nr = sqe.dsm_range_count();
        let deallocate = sqe.dsm_attributes().ad();
        let len = nr * 16;
        if let Err(s) = self.map_data(ctx, sqe, len, ps) {
            return done(s);
        }
        let mut ranges = [0u8; 256 * 16];
        sg_copy_to(&ctx.scratch.segs, 0, &mut ranges[..len]);
        let Ok(list) = DsmRange::parse_list(&ranges[..len], nr) else {
            return done(generic(G::InvalidFieldInCommand));
        };
        let decoded = list.iter().map(|r| (r.slba, u64::from(r.length)));
        for (slba, nlb) in decoded.clone() {
            if !ns.holds(slba, nlb) {
                return done(generic(G::LbaOutOfRange));
            }
        }
        if deallocate {
            for (slba, nlb) in decoded {
                if nlb > 0 && ns.zero(slba, nlb).is_err() {
                    return done(Status::media(M::WriteFault));
                }
            }
        }
        SUCCESS
    }

    fn verify(&self, ns: &Namespace, sqe: &SubmissionEntry) -> Outcome {
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        if !ns.holds(slba, nlb) {
            return done(generic(G::LbaOutOfRange));
        }
        match self.media_fault(ns, slba, nlb) {
            Some(s) => done(s),
            None => SUCCESS,
        }
    }

    pub(crate) fn compare(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let (slba, nlb) = match self.rw_setup(ctx, ns, sqe, ps, true) {
            Ok(v) => v,
            Err(s) => return done(s),
        };
        if let Some(s) = self.media_fault(ns, slba, nlb) {
            return done(s);
        }
        let strip = strips_pi(ns, sqe);
        let len = Self::gather_blocks(ctx, ns, nlb, strip);
        let scratch = &mut *ctx.scratch;
        scratch.b.resize(len, 0);
        if ns.read_buf(slba, &mut scratch.b[..len]).is_err() {
            return done(Status::media(M::UnrecoveredReadError));
        }
        // With PRACT the tuple never left the controller: only the data is compared
        // (NVM Command Set 1.0 §5.2.2).
        let (ds, stride) = (1usize << ns.lba_shift, ns.block_size());
        let differ = if strip {
            let mut blocks = scratch.a[..len]
                .chunks(stride)
                .zip(scratch.b[..len].chunks(stride));
            blocks.any(|(a, b)| a[..ds] != b[..ds])
        } else {
            scratch.a[..len] != scratch.b[..len]
        };
        if differ {
            return done(Status::media(M::CompareFailure));
        }
        SUCCESS
    }
}

/// Whether the controller inserts and strips protection information itself and moves
/// no metadata: PRACT set on a format whose metadata is exactly the 8-byte tuple
/// (NVM Command Set Specification 1.0, section 5.2.2).
#[inline]
fn strips_pi(ns: &Namespace, sqe: &SubmissionEntry) -> bool {
    ns.metadata.pi != 0
        && usize::from(ns.metadata.size) == ns.metadata.pi_tuple_size()
        && sqe.prinfo() & PRACT != 0
}

/// Bytes per block in a command's data buffer.
#[inline]
fn host_block_size(ns: &Namespace, strip: bool) -> u64 {
    if strip {
        1 << ns.lba_shift
    } else {
        ns.transfer_block_size()
    }
}

/// Inverts the byte at transfer offset `at`.
fn flip_at(segs: &[crate::iommu::HostSlice], mut at: usize) {
    for s in segs {
        if at < s.len() {
            s.flip(at);
            return;
        }
        at -= s.len();
    }
}
