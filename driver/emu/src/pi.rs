//! End-to-end protection information checking and insertion (NVM Command Set
//! Specification 1.0, section 5.2), on blocks in their stored layout: each block's
//! data followed by its metadata.
//!
//! A read or write whose PRINFO field is non-zero on a namespace with protection
//! information runs through here: writes with PRACT get the controller's tuple (in
//! place of the host's, the other metadata bytes kept), writes without it have the
//! host's tuples checked as PRCHK asks, reads have the stored tuples checked and, with
//! PRACT on a format whose metadata is only the tuple, stripped. A failed check is the
//! spec's End-to-end Guard, Application Tag or Reference Tag Check Error, and the
//! failing LBA goes to the Error Information log. Blocks never written (all zeros)
//! read with the escape application tag, so their checks are skipped, as QEMU's
//! controller does.

use nvme_spec::pi::{
    self, Pi16, Pi8, APP_TAG_ESCAPE, PI16_STORAGE_REF_BITS, PRINFO_PRACT, PRINFO_PRCHK_APP,
    PRINFO_PRCHK_GUARD, PRINFO_PRCHK_REF,
};
use nvme_spec::status::CommandSpecificStatus;
use nvme_spec::status::MediaStatus as M;
use nvme_spec::{Status, SubmissionEntry};
use zerocopy::IntoBytes;

use crate::config::MetadataFormat;
use crate::controller::{Ctrl, Ctx};
use crate::namespace::Namespace;

/// Whether a read or write goes through protection information handling.
#[inline]
pub(crate) fn active(ns: &Namespace, sqe: &SubmissionEntry) -> bool {
    ns.metadata.pi != 0 && sqe.prinfo() != 0
}

/// Checks a read or write's PRINFO against the namespace's protection type before any
/// data moves, as QEMU's controller does (`nvme_check_prinfo`): type 1 checks the
/// reference tag only against the starting LBA, so an initial reference tag other than
/// the LBA's low bits is Invalid Protection Information (with DNR); type 3 has no
/// reference tag to check, so PRCHK's reference tag bit is Invalid Protection
/// Information.
pub(crate) fn check_prinfo(ns: &Namespace, sqe: &SubmissionEntry) -> Result<(), Status> {
    let prinfo = sqe.prinfo();
    if prinfo & PRINFO_PRCHK_REF == 0 {
        return Ok(());
    }
    let invalid = Status::command_specific(CommandSpecificStatus::InvalidProtectionInformation);
    let layout = Layout::of(ns);
    match ns.metadata.pi {
        1 if sqe.initial_ref_tag() & layout.ref_mask() != sqe.slba() & layout.ref_mask() => {
            Err(invalid.with_dnr(true))
        }
        3 => Err(invalid),
        _ => Ok(()),
    }
}

/// What one command's tuples are generated from and checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tags {
    prinfo: u8,
    app: u16,
    mask: u16,
    initial_ref: u64,
}

/// The protection layout of a namespace's blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    md: MetadataFormat,
    /// Data bytes per block.
    ds: usize,
}

impl Layout {
    pub(crate) fn of(ns: &Namespace) -> Self {
        Self {
            md: ns.metadata,
            ds: 1 << ns.lba_shift,
        }
    }

    fn tuple_size(&self) -> usize {
        self.md.pi_tuple_size()
    }

    /// Offset of the tuple within the block (data first).
    fn tuple_at(&self) -> usize {
        if self.md.pi_first {
            self.ds
        } else {
            self.ds + usize::from(self.md.size) - self.tuple_size()
        }
    }

    fn ref_mask(&self) -> u64 {
        let bits = if self.md.guard64 {
            PI16_STORAGE_REF_BITS
        } else {
            32
        };
        (1u64 << bits) - 1
    }

    pub(crate) fn tags(&self, sqe: &SubmissionEntry) -> Tags {
        Tags {
            prinfo: sqe.prinfo(),
            app: sqe.app_tag(),
            mask: sqe.app_tag_mask(),
            initial_ref: sqe.initial_ref_tag() & self.ref_mask(),
        }
    }

    /// The reference tag of block `index`: types 1 and 2 count up from the initial
    /// tag, type 3 keeps it.
    fn ref_tag(&self, tags: &Tags, index: u64) -> u64 {
        if self.md.pi == 3 {
            tags.initial_ref
        } else {
            tags.initial_ref.wrapping_add(index) & self.ref_mask()
        }
    }

    /// The guard of a stored block: its data and the metadata before the tuple.
    fn guard(&self, block: &[u8]) -> u64 {
        let covered = &block[..self.tuple_at()];
        if self.md.guard64 {
            pi::guard64(covered)
        } else {
            u64::from(pi::guard16(covered))
        }
    }

    /// The tuple of a stored block as (guard, application tag, reference tag).
    fn read(&self, block: &[u8]) -> (u64, u16, u64) {
        let raw = &block[self.tuple_at()..];
        if self.md.guard64 {
            let t = Pi16::read(raw).unwrap_or_default();
            (t.guard.get(), t.app_tag.get(), t.reference_tag(0))
        } else {
            let t = Pi8::read(raw).unwrap_or_default();
            (
                u64::from(t.guard.get()),
                t.app_tag.get(),
                u64::from(t.ref_tag.get()),
            )
        }
    }

    fn write(&self, block: &mut [u8], guard: u64, app: u16, ref_tag: u64) {
        let at = self.tuple_at();
        if self.md.guard64 {
            let t = Pi16::new(guard, app, ref_tag);
            block[at..at + 16].copy_from_slice(t.as_bytes());
        } else {
            let t = Pi8::new(guard as u16, app, ref_tag as u32);
            block[at..at + 8].copy_from_slice(t.as_bytes());
        }
    }

    /// PRACT on a write: the controller's tuple for block `index`, with the command's
    /// application tag.
    pub(crate) fn insert(&self, tags: &Tags, index: u64, block: &mut [u8]) {
        let guard = self.guard(block);
        self.write(block, guard, tags.app, self.ref_tag(tags, index));
    }

    /// Checks block `index`'s tuple as PRCHK asks; escape tags skip the block.
    pub(crate) fn check(&self, tags: &Tags, index: u64, block: &[u8]) -> Result<(), Status> {
        let (guard, app, ref_tag) = self.read(block);
        let escape = app == APP_TAG_ESCAPE && (self.md.pi != 3 || ref_tag == self.ref_mask());
        if escape {
            return Ok(());
        }
        if tags.prinfo & PRINFO_PRCHK_GUARD != 0 && guard != self.guard(block) {
            return Err(Status::media(M::EndToEndGuardCheckError));
        }
        if tags.prinfo & PRINFO_PRCHK_APP != 0 && app & tags.mask != tags.app & tags.mask {
            return Err(Status::media(M::EndToEndApplicationTagCheckError));
        }
        if tags.prinfo & PRINFO_PRCHK_REF != 0 && ref_tag != self.ref_tag(tags, index) {
            return Err(Status::media(M::EndToEndReferenceTagCheckError));
        }
        Ok(())
    }

    /// A block never written reads with escape tags (application tag FFFFh, and for
    /// type 3 an all-ones reference tag), so checks skip it.
    fn mark_unwritten(&self, block: &mut [u8]) {
        if block.iter().all(|&b| b == 0) {
            let ref_tag = if self.md.pi == 3 { self.ref_mask() } else { 0 };
            self.write(block, 0, APP_TAG_ESCAPE, ref_tag);
        }
    }
}

impl Ctrl {
    /// A write with PRINFO set: PRACT inserts the controller's tuples, otherwise the
    /// host's are checked as PRCHK asks; then the blocks are stored.
    pub(crate) fn write_pi(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        strip: bool,
        cached: bool,
    ) -> Result<(), Status> {
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        let len = Self::gather_blocks(ctx, ns, nlb, strip);
        let layout = Layout::of(ns);
        let tags = layout.tags(sqe);
        let stride = ns.block_size();
        let scratch = &mut *ctx.scratch;
        for (i, block) in scratch.a[..len].chunks_mut(stride).enumerate() {
            if tags.prinfo & PRINFO_PRACT != 0 {
                layout.insert(&tags, i as u64, block);
            } else if let Err(s) = layout.check(&tags, i as u64, block) {
                scratch.error_lba = Some(slba + i as u64);
                return Err(s);
            }
        }
        ns.write_buf(slba, &scratch.a[..len], cached)
            .map_err(|_| Status::media(M::WriteFault))
    }

    /// A read with PRINFO set: the stored tuples are checked as PRCHK asks, then the
    /// blocks move to the host, without the tuples when PRACT strips them (`strip`).
    pub(crate) fn read_pi(
        &self,
        ctx: &mut Ctx<'_>,
        ns: &Namespace,
        sqe: &SubmissionEntry,
        strip: bool,
    ) -> Result<(), Status> {
        if ns.backend.is_null() {
            return Ok(());
        }
        let (slba, nlb) = (sqe.slba(), u64::from(sqe.block_count()));
        let stride = ns.block_size();
        let layout = Layout::of(ns);
        let tags = layout.tags(sqe);
        let scratch = &mut *ctx.scratch;
        let len = nlb as usize * stride;
        scratch.a.resize(len, 0);
        if ns.read_buf(slba, &mut scratch.a[..len]).is_err() {
            return Err(Status::media(M::UnrecoveredReadError));
        }
        for (i, block) in scratch.a[..len].chunks_mut(stride).enumerate() {
            layout.mark_unwritten(block);
            if let Err(s) = layout.check(&tags, i as u64, block) {
                scratch.error_lba = Some(slba + i as u64);
                return Err(s);
            }
        }
        Self::scatter_blocks(ctx, ns, len, strip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(pi: u8, size: u16, pi_first: bool, guard64: bool) -> Layout {
        Layout {
            md: MetadataFormat {
                size,
                separate: false,
                pi,
                pi_first,
                guard64,
            },
            ds: 512,
        }
    }

    fn tags(prinfo: u8, app: u16, mask: u16, initial_ref: u64) -> Tags {
        Tags {
            prinfo,
            app,
            mask,
            initial_ref,
        }
    }

    const ALL: u8 = PRINFO_PRCHK_GUARD | PRINFO_PRCHK_APP | PRINFO_PRCHK_REF;

    #[test]
    fn inserted_tuples_pass_every_check_and_sit_where_pil_says() {
        for (size, first, guard64) in [
            (8, true, false),
            (16, false, false),
            (64, true, true),
            (64, false, true),
            (16, true, true),
        ] {
            let l = layout(1, size, first, guard64);
            let t = tags(PRINFO_PRACT | ALL, 0x1234, 0xffff, 100);
            let mut block = vec![0x5a; 512 + usize::from(size)];
            l.insert(&t, 3, &mut block);
            assert_eq!(l.check(&t, 3, &block), Ok(()));
            let at = if first {
                512
            } else {
                block.len() - l.tuple_size()
            };
            let (_, app, ref_tag) = l.read(&block);
            assert_eq!((app, ref_tag), (0x1234, 103));
            // The bytes beside the tuple are kept.
            assert!(block[512..at].iter().all(|&b| b == 0x5a));
            assert!(block[at + l.tuple_size()..].iter().all(|&b| b == 0x5a));
        }
    }

    #[test]
    fn each_wrong_field_gives_its_status_and_escapes_skip_checks() {
        let l = layout(1, 8, false, false);
        let t = tags(ALL, 0x00aa, 0x00ff, 7);
        let mut block = vec![1u8; 520];
        l.insert(&t, 0, &mut block);
        let mut bad = block.clone();
        bad[0] ^= 1;
        assert_eq!(
            l.check(&t, 0, &bad),
            Err(Status::media(M::EndToEndGuardCheckError))
        );
        let other_app = tags(ALL, 0x11ab, 0x00ff, 7);
        assert_eq!(
            l.check(&other_app, 0, &block),
            Err(Status::media(M::EndToEndApplicationTagCheckError))
        );
        // Outside the mask the application tag may differ.
        assert_eq!(l.check(&tags(ALL, 0x11aa, 0x00ff, 7), 0, &block), Ok(()));
        assert_eq!(
            l.check(&t, 1, &block),
            Err(Status::media(M::EndToEndReferenceTagCheckError))
        );
        // Without PRCHK bits nothing is checked.
        assert_eq!(l.check(&tags(0, 0, 0, 0), 1, &bad), Ok(()));
        // Application tag FFFFh disables type 1 checks, whatever else is wrong.
        l.write(&mut bad, 0, APP_TAG_ESCAPE, 9);
        assert_eq!(l.check(&t, 0, &bad), Ok(()));
        // Type 3 needs an all-ones reference tag too.
        let l3 = layout(3, 8, false, false);
        l3.write(&mut bad, 0, APP_TAG_ESCAPE, 9);
        assert!(l3.check(&t, 0, &bad).is_err());
        l3.write(&mut bad, 0, APP_TAG_ESCAPE, 0xffff_ffff);
        assert_eq!(l3.check(&t, 0, &bad), Ok(()));
    }

    #[test]
    fn type_3_keeps_the_initial_reference_tag() {
        let l = layout(3, 16, true, true);
        let t = tags(ALL, 0, 0, 0x1_0000_0005);
        let mut block = vec![2u8; 528];
        l.insert(&t, 4, &mut block);
        assert_eq!(l.read(&block).2, 0x1_0000_0005);
        assert_eq!(l.check(&t, 9, &block), Ok(()));
    }
}
