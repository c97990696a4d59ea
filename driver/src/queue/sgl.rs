//! SGL descriptors (NVMe Base 2.0, 4.1.2) for a command's data and metadata, written
//! into the same per-slot list pages the PRP lists use, and the choice between PRPs and
//! SGLs for each command.
//!
//! One non-empty segment becomes a Data Block descriptor in the SQE's DPTR. Several
//! become a Last Segment descriptor in DPTR pointing at a list page of Data Block
//! descriptors; when one page does not hold them all, the page's last slot is a Segment
//! (or, before the final page, a Last Segment) descriptor to the next page, as Linux's
//! `nvme_pci_setup_sgls` and SPDK's `nvme_pcie_qpair_build_hw_sgl_request` chain them.
//! Empty segments need no descriptor and get none.
//!
//! Separate metadata in SGL mode: when the controller accepts a metadata SGL (SGLS bit
//! 19), MPTR holds the address of a one-descriptor segment, a Data Block descriptor for
//! the metadata buffer placed right after the data descriptors (PSDT 10b); otherwise
//! MPTR is the buffer's address (PSDT 01b).
//!
//! Everything is checked before anything is written, so a refused buffer leaves the
//! list pages and the SQE as they were.

use crate::error::{Error, SglRule};
use crate::options::SglMode;
use crate::queue::prp::{self, ListPages, Segment};
use crate::spec::command::Psdt;
use crate::spec::identify::Sgls;
use crate::spec::sgl::{SglDescriptor, SGL_DESCRIPTOR_SIZE};
use crate::spec::SubmissionEntry;

/// How one queue pair describes data: the mode it was created with, resolved against
/// what the controller supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SglPolicy {
    /// Every data command uses SGLs.
    pub always: bool,
    /// A buffer PRPs refuse is described with SGLs instead.
    pub fallback: bool,
    /// Data Block addresses and lengths must be dword aligned (SGLS 10b).
    pub dword_aligned: bool,
    /// MPTR may point at a metadata SGL (SGLS bit 19).
    pub metadata_sgl: bool,
}

impl SglPolicy {
    /// The policy for `mode` on a controller reporting `sgls`; `None` when `mode` is
    /// [`SglMode::Always`] and the controller has no SGL support.
    pub fn new(mode: SglMode, sgls: Sgls) -> Option<Self> {
        let supported = sgls.supported();
        if mode == SglMode::Always && !supported {
            return None;
        }
        Some(SglPolicy {
            always: mode == SglMode::Always,
            fallback: mode == SglMode::Auto && supported,
            dword_aligned: sgls.dword_aligned(),
            metadata_sgl: sgls.mptr_sgl(),
        })
    }

    /// PRPs only.
    #[cfg(test)]
    pub const NEVER: Self = SglPolicy {
        always: false,
        fallback: false,
        dword_aligned: false,
        metadata_sgl: false,
    };
}

/// A position in the list pages: page and descriptor index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    page: usize,
    index: usize,
}

/// Where `count` data descriptors (more than one) and, if `metadata`, one metadata
/// descriptor after them go; `None` when the list pages are too few.
#[inline]
fn layout(count: usize, per_page: usize, pages: usize, metadata: bool) -> Option<Slot> {
    // Every page but the last gives its final slot to the pointer to the next page.
    let data_pages = prp::list_pages_needed(count, per_page);
    let on_last = count - (data_pages - 1) * (per_page - 1);
    let next = if metadata && on_last == per_page {
        Slot {
            page: data_pages,
            index: 0,
        }
    } else {
        Slot {
            page: data_pages - 1,
            index: on_last,
        }
    };
    let used_pages = if metadata { next.page + 1 } else { data_pages };
    (used_pages <= pages).then_some(next)
}

/// Checks `segments` against the SGL rules and returns how many Data Block descriptors
/// they need (one per non-empty segment).
pub fn validate(segments: &[Segment], dword_aligned: bool) -> Result<usize, Error> {
    let mut count = 0usize;
    for (index, s) in segments.iter().enumerate() {
        let bad = |rule| Error::BadSglSegment {
            index,
            iova: s.iova,
            len: s.len,
            rule,
        };
        if s.len == 0 {
            continue;
        }
        if u32::try_from(s.len).is_err() {
            return Err(bad(SglRule::LongerThanDataBlock));
        }
        if s.iova.checked_add(s.len as u64).is_none() {
            return Err(bad(SglRule::WrapsAddressSpace));
        }
        if dword_aligned && (s.iova | s.len as u64) & 3 != 0 {
            return Err(bad(SglRule::NotDwordAligned));
        }
        count += 1;
    }
    if count == 0 {
        return Err(Error::BadSglSegment {
            index: 0,
            iova: segments.first().map_or(0, |s| s.iova),
            len: 0,
            rule: SglRule::Empty,
        });
    }
    Ok(count)
}

#[inline]
fn write(list: &mut impl ListPages, at: Slot, d: SglDescriptor) -> Result<(), Error> {
    let [lo, hi] = d.to_qwords();
    list.write_entry(at.page, 2 * at.index, lo)?;
    list.write_entry(at.page, 2 * at.index + 1, hi)
}

#[inline]
fn slot_iova(list: &impl ListPages, at: Slot) -> u64 {
    list.page_iova(at.page) + (at.index * SGL_DESCRIPTOR_SIZE) as u64
}

/// The SGL for `segments` (and the metadata buffer `metadata`, as a one-descriptor
/// segment, when given): returns SGL Entry 1 for DPTR and the MPTR value. Descriptors
/// go into `list`, whose pages are `page_size` bytes; nothing is written when the
/// buffer is refused.
pub fn build(
    segments: &[Segment],
    metadata: Option<Segment>,
    dword_aligned: bool,
    page_size: u64,
    list: &mut impl ListPages,
) -> Result<(SglDescriptor, u64), Error> {
    let count = validate(segments, dword_aligned)?;
    let mut data = segments.iter().filter(|s| s.len != 0);
    if count == 1 && metadata.is_none() {
        let s = data.next().copied().unwrap_or(segments[0]);
        return Ok((SglDescriptor::data_block(s.iova, s.len as u32), 0));
    }
    let pages = list.page_count();
    let per_page = page_size as usize / SGL_DESCRIPTOR_SIZE;
    let too_many = || Error::BadSglSegment {
        index: 0,
        iova: segments.first().map_or(0, |s| s.iova),
        len: segments.iter().map(|s| s.len).sum(),
        rule: SglRule::TooManyDescriptors,
    };
    if pages == 0 || per_page < 2 {
        return Err(too_many());
    }
    if count == 1 {
        // One data piece in DPTR; the metadata descriptor alone in the first page.
        let s = data.next().copied().unwrap_or(segments[0]);
        let at = Slot { page: 0, index: 0 };
        let m = metadata.unwrap_or(s);
        write(list, at, SglDescriptor::data_block(m.iova, m.len as u32))?;
        return Ok((
            SglDescriptor::data_block(s.iova, s.len as u32),
            slot_iova(list, at),
        ));
    }
    let Some(md_slot) = layout(count, per_page, pages, metadata.is_some()) else {
        return Err(too_many());
    };
    let data_pages = prp::list_pages_needed(count, per_page);
    let mut left = count;
    for page in 0..data_pages {
        let last = page + 1 == data_pages;
        let here = if last { left } else { per_page - 1 };
        for index in 0..here {
            let s = data.next().copied().unwrap_or(segments[0]);
            write(
                list,
                Slot { page, index },
                SglDescriptor::data_block(s.iova, s.len as u32),
            )?;
        }
        left -= here;
        if !last {
            let next = list.page_iova(page + 1);
            let after = left.min(per_page);
            let link = if page + 2 == data_pages {
                SglDescriptor::last_segment(next, after as u32)
            } else {
                SglDescriptor::segment(next, per_page as u32)
            };
            write(
                list,
                Slot {
                    page,
                    index: per_page - 1,
                },
                link,
            )?;
        }
    }
    let first_len = if data_pages == 1 { count } else { per_page };
    let entry1 = if data_pages == 1 {
        SglDescriptor::last_segment(list.page_iova(0), first_len as u32)
    } else {
        SglDescriptor::segment(list.page_iova(0), first_len as u32)
    };
    let mptr = match metadata {
        Some(m) => {
            write(
                list,
                md_slot,
                SglDescriptor::data_block(m.iova, m.len as u32),
            )?;
            slot_iova(list, md_slot)
        }
        None => 0,
    };
    Ok((entry1, mptr))
}

/// Fills `sqe`'s data pointer (and MPTR for a separate metadata buffer) for `data` as
/// `policy` says: PRPs when allowed and possible, otherwise SGLs.
#[inline(always)]
pub(crate) fn set_data_pointer(
    sqe: &mut SubmissionEntry,
    data: &[Segment],
    metadata: Option<Segment>,
    page_size: u64,
    policy: SglPolicy,
    list: &mut impl ListPages,
) -> Result<(), Error> {
    if !policy.always {
        match prp::build(data, page_size, list) {
            Ok((prp1, prp2)) => {
                sqe.set_prp(prp1, prp2);
                if let Some(m) = metadata {
                    sqe.mptr = m.iova;
                }
                return Ok(());
            }
            Err(Error::BadSegment { .. }) if policy.fallback => {}
            Err(e) => return Err(e),
        }
    }
    set_sgl(sqe, data, metadata, page_size, policy, list)
}

/// The SGL half of [`set_data_pointer`].
#[inline(never)]
fn set_sgl(
    sqe: &mut SubmissionEntry,
    data: &[Segment],
    metadata: Option<Segment>,
    page_size: u64,
    policy: SglPolicy,
    list: &mut impl ListPages,
) -> Result<(), Error> {
    if policy.metadata_sgl && metadata.is_some() {
        let (entry1, mptr) = build(data, metadata, policy.dword_aligned, page_size, list)?;
        sqe.set_sgl(entry1, Psdt::SglMptrSgl);
        sqe.mptr = mptr;
    } else {
        let (entry1, _) = build(data, None, policy.dword_aligned, page_size, list)?;
        sqe.set_sgl(entry1, Psdt::SglMptrContiguous);
        if let Some(m) = metadata {
            sqe.mptr = m.iova;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::sgl::SglType;
    use proptest::prelude::*;

    const PAGE: u64 = 4096;
    const LIST_BASE: u64 = 0x10_0000;

    /// List pages in plain memory at IOVA LIST_BASE + page * PAGE.
    struct FakeList {
        pages: Vec<Vec<u64>>,
        writes: usize,
    }

    impl FakeList {
        fn new(n: usize) -> Self {
            FakeList {
                pages: vec![vec![0; (PAGE / 8) as usize]; n],
                writes: 0,
            }
        }

        fn read(&self, iova: u64) -> SglDescriptor {
            let off = iova - LIST_BASE;
            let (page, slot) = ((off / PAGE) as usize, ((off % PAGE) / 8) as usize);
            SglDescriptor::from_qwords([self.pages[page][slot], self.pages[page][slot + 1]])
        }

        /// Follows SGL Entry 1 as a controller would: the Data Blocks in order.
        fn walk(&self, entry1: SglDescriptor) -> Vec<(u64, u32)> {
            let mut out = Vec::new();
            let mut d = entry1;
            loop {
                if d.kind() == SglType::DATA_BLOCK {
                    out.push((d.address, d.length));
                    return out;
                }
                let last = d.kind() == SglType::LAST_SEGMENT;
                assert!(last || d.kind() == SglType::SEGMENT, "{d:?}");
                assert_eq!(d.length % 16, 0);
                assert_eq!(d.address % 16, 0, "segments are qword aligned");
                let n = (d.length / 16) as u64;
                let mut next = None;
                for i in 0..n {
                    let e = self.read(d.address + 16 * i);
                    if e.kind() == SglType::DATA_BLOCK {
                        out.push((e.address, e.length));
                    } else {
                        assert_eq!(i, n - 1, "only the last descriptor chains");
                        assert!(!last, "a last segment does not chain");
                        next = Some(e);
                    }
                }
                match next {
                    Some(e) => d = e,
                    None => return out,
                }
            }
        }
    }

    impl ListPages for FakeList {
        fn page_count(&self) -> usize {
            self.pages.len()
        }
        fn page_iova(&self, page: usize) -> u64 {
            LIST_BASE + page as u64 * PAGE
        }
        fn write_entry(&mut self, page: usize, slot: usize, value: u64) -> Result<(), Error> {
            self.writes += 1;
            self.pages[page][slot] = value;
            Ok(())
        }
    }

    fn seg(iova: u64, len: usize) -> Segment {
        Segment {
            iova,
            len,
            ptr: std::ptr::null_mut(),
        }
    }

    fn pieces(segs: &[Segment]) -> Vec<(u64, u32)> {
        segs.iter()
            .filter(|s| s.len != 0)
            .map(|s| (s.iova, s.len as u32))
            .collect()
    }

    #[test]
    fn one_segment_is_a_data_block_in_dptr_and_writes_no_list() {
        let mut l = FakeList::new(1);
        let (e, mptr) = build(&[seg(0x20_0003, 777)], None, false, PAGE, &mut l).unwrap();
        assert_eq!(e, SglDescriptor::data_block(0x20_0003, 777));
        assert_eq!((mptr, l.writes), (0, 0));
    }

    #[test]
    fn odd_segments_become_one_last_segment_of_data_blocks() {
        let mut l = FakeList::new(1);
        let segs = [seg(0x20_0010, 100), seg(0x30_0202, 412), seg(0x40_0000, 0)];
        let (e, _) = build(&segs, None, false, PAGE, &mut l).unwrap();
        assert_eq!(e, SglDescriptor::last_segment(LIST_BASE, 2));
        assert_eq!(l.walk(e), pieces(&segs));
    }

    #[test]
    fn more_descriptors_than_a_page_chain_through_segment_descriptors() {
        let mut l = FakeList::new(3);
        let segs: Vec<_> = (0..600u64)
            .map(|i| seg(0x100_0000 + i * 0x2000, 512))
            .collect();
        let (e, _) = build(&segs, None, false, PAGE, &mut l).unwrap();
        assert_eq!(e, SglDescriptor::segment(LIST_BASE, 256));
        // 600 = 255 + 255 + 90: two full pages that chain, then the last segment.
        assert_eq!(
            l.read(LIST_BASE + 255 * 16),
            SglDescriptor::segment(LIST_BASE + PAGE, 256)
        );
        assert_eq!(
            l.read(LIST_BASE + PAGE + 254 * 16),
            SglDescriptor::data_block(0x100_0000 + 509 * 0x2000, 512)
        );
        assert_eq!(
            l.read(LIST_BASE + PAGE + 255 * 16),
            SglDescriptor::last_segment(LIST_BASE + 2 * PAGE, 90)
        );
        assert_eq!(l.walk(e), pieces(&segs));
    }

    #[test]
    fn metadata_descriptor_follows_the_data_descriptors() {
        let mut l = FakeList::new(1);
        let segs = [seg(0x20_0000, 512), seg(0x30_0000, 512)];
        let md = seg(0x50_0000, 16);
        let (e, mptr) = build(&segs, Some(md), false, PAGE, &mut l).unwrap();
        assert_eq!(l.walk(e), pieces(&segs));
        assert_eq!(mptr, LIST_BASE + 32);
        assert_eq!(l.read(mptr), SglDescriptor::data_block(0x50_0000, 16));
        let mut l = FakeList::new(1);
        let (e, mptr) = build(&segs[..1], Some(md), false, PAGE, &mut l).unwrap();
        assert_eq!(e, SglDescriptor::data_block(0x20_0000, 512));
        assert_eq!(l.read(mptr), SglDescriptor::data_block(0x50_0000, 16));
    }

    #[test]
    fn dword_alignment_is_required_only_when_the_controller_says_so() {
        let mut l = FakeList::new(1);
        let segs = [seg(0x20_0002, 510), seg(0x30_0000, 2)];
        assert!(build(&segs, None, false, PAGE, &mut l).is_ok());
        let mut l = FakeList::new(1);
        let err = build(&segs, None, true, PAGE, &mut l).unwrap_err();
        assert!(matches!(
            err,
            Error::BadSglSegment {
                index: 0,
                rule: SglRule::NotDwordAligned,
                ..
            }
        ));
        assert_eq!(l.writes, 0);
    }

    #[test]
    fn auto_falls_back_to_sgls_only_for_buffers_prps_refuse() {
        let auto = SglPolicy::new(SglMode::Auto, Sgls::new().with_support(1)).unwrap();
        let mut l = FakeList::new(1);
        let mut sqe = SubmissionEntry::new(0x02);
        set_data_pointer(&mut sqe, &[seg(0x20_0000, 8192)], None, PAGE, auto, &mut l).unwrap();
        assert_eq!(sqe.cdw0.psdt(), Psdt::Prp);
        let odd = [seg(0x20_0000, 512), seg(0x30_0200, 512)];
        set_data_pointer(&mut sqe, &odd, None, PAGE, auto, &mut l).unwrap();
        assert_eq!(sqe.cdw0.psdt(), Psdt::SglMptrContiguous);
        assert_eq!(l.walk(sqe.sgl1()), pieces(&odd));
        let never = SglPolicy::new(SglMode::Never, Sgls::new().with_support(1)).unwrap();
        assert!(matches!(
            set_data_pointer(&mut sqe, &odd, None, PAGE, never, &mut l),
            Err(Error::BadSegment { .. })
        ));
        let no_sgl = SglPolicy::new(SglMode::Auto, Sgls::new()).unwrap();
        assert_eq!(no_sgl, SglPolicy::NEVER);
        assert!(SglPolicy::new(SglMode::Always, Sgls::new()).is_none());
    }

    #[test]
    fn metadata_goes_by_sgl_only_where_the_controller_accepts_it() {
        let md = Some(seg(0x50_0000, 64));
        let data = [seg(0x20_0000, 4096)];
        let mut l = FakeList::new(1);
        let mut sqe = SubmissionEntry::new(0x02);
        let plain = SglPolicy::new(SglMode::Always, Sgls::new().with_support(1)).unwrap();
        set_data_pointer(&mut sqe, &data, md, PAGE, plain, &mut l).unwrap();
        assert_eq!(sqe.cdw0.psdt(), Psdt::SglMptrContiguous);
        assert_eq!(sqe.mptr, 0x50_0000);
        let msgl = Sgls::new().with_support(1).with_mptr_sgl(true);
        let with_md = SglPolicy::new(SglMode::Always, msgl).unwrap();
        set_data_pointer(&mut sqe, &data, md, PAGE, with_md, &mut l).unwrap();
        assert_eq!(sqe.cdw0.psdt(), Psdt::SglMptrSgl);
        assert_eq!(l.read(sqe.mptr), SglDescriptor::data_block(0x50_0000, 64));
        let prp_md = SglPolicy::new(SglMode::Auto, msgl).unwrap();
        set_data_pointer(&mut sqe, &data, md, PAGE, prp_md, &mut l).unwrap();
        assert_eq!((sqe.cdw0.psdt(), sqe.mptr), (Psdt::Prp, 0x50_0000));
    }

    fn segment_lists() -> impl Strategy<Value = Vec<Segment>> {
        let one = (0u64..1 << 20, 0usize..3, 0usize..9000).prop_map(|(page, skew, len)| {
            let iova = 0x1000_0000 + page * 0x4000 + [0, 2, 0x200][skew];
            seg(iova, len)
        });
        prop::collection::vec(one, 0..700)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every segment list either becomes descriptors that walk back to exactly its
        /// non-empty segments (so their lengths sum to the transfer), or is refused
        /// with a typed error and nothing written.
        #[test]
        fn sgl_describes_exactly_the_buffer_or_refuses_it(
            segs in segment_lists(),
            pages in 0usize..4,
            dword in any::<bool>(),
            with_md in any::<bool>(),
        ) {
            let mut l = FakeList::new(pages);
            let md = with_md.then(|| seg(0x9000_0000, 64));
            let total: u64 = segs.iter().map(|s| s.len as u64).sum();
            match build(&segs, md, dword, PAGE, &mut l) {
                Ok((e, mptr)) => {
                    let need = pieces(&segs).len() + usize::from(with_md);
                    prop_assert!(need == 1 || need <= pages * 255 + 1);
                    let got = l.walk(e);
                    prop_assert_eq!(&got, &pieces(&segs));
                    prop_assert_eq!(got.iter().map(|p| u64::from(p.1)).sum::<u64>(), total);
                    if dword {
                        prop_assert!(got.iter().all(|p| (p.0 | u64::from(p.1)) & 3 == 0));
                    }
                    if let Some(m) = md {
                        prop_assert_eq!(l.read(mptr), SglDescriptor::data_block(m.iova, 64));
                    }
                }
                Err(Error::BadSglSegment { rule, .. }) => {
                    prop_assert_eq!(l.writes, 0);
                    let count = pieces(&segs).len();
                    match rule {
                        SglRule::Empty => prop_assert_eq!(total, 0),
                        SglRule::NotDwordAligned => prop_assert!(dword),
                        SglRule::TooManyDescriptors => {
                            let need = count + usize::from(with_md);
                            prop_assert!(need > pages * 255 + 1, "{need} fit {pages} pages");
                        }
                        other => prop_assert!(false, "unexpected rule {other:?}"),
                    }
                }
                Err(e) => prop_assert!(false, "untyped refusal {e}"),
            }
        }
    }
}
