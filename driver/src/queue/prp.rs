//! PRP entries (NVMe Base 2.0, 4.1.1): PRP1, PRP2, and PRP lists that chain through the
//! last entry of each list page.
//!
//! A data buffer is a list of DMA segments (an iovec). The first segment may start at any
//! dword offset; every segment that another follows must end on a memory page boundary,
//! and every segment after the first must start on one. Buffers breaking these rules are
//! refused before anything is written.

use crate::error::{Error, PrpRule};

pub use hugepages::DmaSegment as Segment;

/// Where a command's PRP list entries go: a few pages of DMA memory.
pub trait ListPages {
    /// How many list pages the command owns.
    fn page_count(&self) -> usize;
    /// The IOVA of list page `page`.
    fn page_iova(&self, page: usize) -> u64;
    /// Writes entry `slot` of list page `page`.
    fn write_entry(&mut self, page: usize, slot: usize, value: u64) -> Result<(), Error>;
}

/// List pages needed for `list_entries` entries with `per_page` entries per page.
pub fn list_pages_needed(list_entries: usize, per_page: usize) -> usize {
    if list_entries == 0 {
        0
    } else if list_entries <= per_page {
        1
    } else {
        // Every page but the last gives its final slot to the chain pointer.
        1 + (list_entries - per_page).div_ceil(per_page - 1)
    }
}

/// The most data one command can describe with `list_pages` list pages.
pub fn max_transfer(page_size: u64, list_pages: usize) -> u64 {
    let per_page = (page_size / 8) as usize;
    let list_entries = if list_pages == 0 {
        1
    } else {
        list_pages * per_page - (list_pages - 1)
    };
    // One entry in PRP1 plus the list; an unaligned start loses part of the first page.
    (list_entries as u64) * page_size
}

/// Checks the PRP rules and returns the number of PRP entries the buffer needs.
pub fn validate(segments: &[Segment], page_size: u64) -> Result<usize, Error> {
    let mask = page_size - 1;
    if segments.is_empty() || segments.iter().all(|s| s.len == 0) {
        return Err(Error::BadSegment {
            index: 0,
            iova: segments.first().map_or(0, |s| s.iova),
            len: 0,
            rule: PrpRule::Empty,
        });
    }
    let last = segments.len() - 1;
    let mut entries = 0usize;
    for (index, s) in segments.iter().enumerate() {
        let bad = |rule| Error::BadSegment {
            index,
            iova: s.iova,
            len: s.len,
            rule,
        };
        if s.len == 0 {
            return Err(bad(PrpRule::Empty));
        }
        if s.iova & 3 != 0 {
            return Err(bad(PrpRule::NotDwordAligned));
        }
        if index > 0 && s.iova & mask != 0 {
            return Err(bad(PrpRule::MiddleStartNotPageAligned));
        }
        let end = s
            .iova
            .checked_add(s.len as u64)
            .ok_or(bad(PrpRule::Empty))?;
        if index < last && end & mask != 0 {
            return Err(bad(PrpRule::MiddleEndNotPageAligned));
        }
        entries += ((s.iova & mask) + s.len as u64).div_ceil(page_size) as usize;
    }
    Ok(entries)
}

/// Every page address of the buffer, in order: the first keeps its offset.
fn page_addresses(segments: &[Segment], page_size: u64) -> impl Iterator<Item = u64> + '_ {
    let mask = page_size - 1;
    segments.iter().enumerate().flat_map(move |(i, s)| {
        let count = ((s.iova & mask) + s.len as u64).div_ceil(page_size);
        (0..count).map(move |k| {
            if k == 0 {
                if i == 0 {
                    s.iova
                } else {
                    s.iova & !mask
                }
            } else {
                (s.iova & !mask) + k * page_size
            }
        })
    })
}

/// Builds PRP1 and PRP2 for `segments`, writing a PRP list into `list` when needed.
#[inline(always)]
pub fn build(
    segments: &[Segment],
    page_size: u64,
    list: &mut impl ListPages,
) -> Result<(u64, u64), Error> {
    // Fast path (inlined into the submission): one segment within two pages needs no
    // list.
    if let [s] = segments {
        let mask = page_size - 1;
        if s.len != 0 && s.iova & 3 == 0 && s.iova.checked_add(2 * page_size).is_some() {
            let span = (s.iova & mask) + s.len as u64;
            if span <= page_size {
                return Ok((s.iova, 0));
            }
            if span <= 2 * page_size {
                return Ok((s.iova, (s.iova & !mask) + page_size));
            }
        }
    }
    build_list(segments, page_size, list)
}

/// [`build`] for buffers that need checking against the PRP rules or a PRP list.
#[inline(never)]
fn build_list(
    segments: &[Segment],
    page_size: u64,
    list: &mut impl ListPages,
) -> Result<(u64, u64), Error> {
    let entries = validate(segments, page_size)?;
    let mut pages = page_addresses(segments, page_size);
    let prp1 = pages.next().unwrap_or(0);
    if entries == 1 {
        return Ok((prp1, 0));
    }
    if entries == 2 {
        return Ok((prp1, pages.next().unwrap_or(0)));
    }
    let per_page = (page_size / 8) as usize;
    let list_entries = entries - 1;
    let needed = list_pages_needed(list_entries, per_page);
    if needed > list.page_count() {
        return Err(Error::BadSegment {
            index: 0,
            iova: segments[0].iova,
            len: segments.iter().map(|s| s.len).sum(),
            rule: PrpRule::TooManyPages,
        });
    }
    let last_page = needed - 1;
    for (p, addr) in pages.enumerate() {
        let page = (p / (per_page - 1)).min(last_page);
        let slot = p - page * (per_page - 1);
        list.write_entry(page, slot, addr)?;
    }
    for page in 0..last_page {
        list.write_entry(page, per_page - 1, list.page_iova(page + 1))?;
    }
    Ok((prp1, list.page_iova(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    /// List pages in plain memory at IOVA 0x10_0000 + page * PAGE.
    struct FakeList {
        pages: Vec<Vec<u64>>,
    }

    impl FakeList {
        fn new(n: usize) -> Self {
            FakeList {
                pages: vec![vec![0; (PAGE / 8) as usize]; n],
            }
        }
        /// Follows PRP2 like a controller would and returns all addresses after PRP1.
        fn walk(&self, prp2: u64, count: usize) -> Vec<u64> {
            let per = (PAGE / 8) as usize;
            let mut out = Vec::new();
            let mut page = ((prp2 - 0x10_0000) / PAGE) as usize;
            let mut slot = 0;
            while out.len() < count {
                if slot == per - 1 && count - out.len() > 1 {
                    page = ((self.pages[page][slot] - 0x10_0000) / PAGE) as usize;
                    slot = 0;
                    continue;
                }
                out.push(self.pages[page][slot]);
                slot += 1;
            }
            out
        }
    }

    impl ListPages for FakeList {
        fn page_count(&self) -> usize {
            self.pages.len()
        }
        fn page_iova(&self, page: usize) -> u64 {
            0x10_0000 + page as u64 * PAGE
        }
        fn write_entry(&mut self, page: usize, slot: usize, value: u64) -> Result<(), Error> {
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

    #[test]
    fn one_page_uses_prp1_only() {
        let mut l = FakeList::new(1);
        assert_eq!(
            build(&[seg(0x20_0000, 4096)], PAGE, &mut l).unwrap(),
            (0x20_0000, 0)
        );
    }

    #[test]
    fn offset_into_first_page_that_crosses_once_uses_prp2_as_page() {
        let mut l = FakeList::new(1);
        let (p1, p2) = build(&[seg(0x20_0200, 4096)], PAGE, &mut l).unwrap();
        assert_eq!((p1, p2), (0x20_0200, 0x20_1000));
    }

    #[test]
    fn exactly_two_pages_use_prp2_as_page() {
        let mut l = FakeList::new(1);
        let (p1, p2) = build(&[seg(0x20_0000, 8192)], PAGE, &mut l).unwrap();
        assert_eq!((p1, p2), (0x20_0000, 0x20_1000));
    }

    #[test]
    fn three_pages_use_a_list() {
        let mut l = FakeList::new(1);
        let (p1, p2) = build(&[seg(0x20_0000, 3 * 4096)], PAGE, &mut l).unwrap();
        assert_eq!(p1, 0x20_0000);
        assert_eq!(p2, 0x10_0000);
        assert_eq!(l.walk(p2, 2), vec![0x20_1000, 0x20_2000]);
    }

    #[test]
    fn list_exactly_filling_one_page_does_not_chain() {
        let mut l = FakeList::new(2);
        let len = 513 * 4096; // 1 in PRP1 + 512 list entries
        let (_, p2) = build(&[seg(0x40_0000, len)], PAGE, &mut l).unwrap();
        assert_eq!(p2, 0x10_0000);
        assert_eq!(l.pages[0][511], 0x40_0000 + 512 * 4096);
        assert_eq!(l.pages[1][0], 0, "second page unused");
    }

    #[test]
    fn long_lists_chain_through_the_last_entry() {
        let mut l = FakeList::new(3);
        let pages = 1200u64;
        let (p1, p2) = build(&[seg(0x100_0000, (pages * 4096) as usize)], PAGE, &mut l).unwrap();
        assert_eq!(p1, 0x100_0000);
        assert_eq!(l.pages[0][511], 0x10_1000, "chain pointer to page 1");
        assert_eq!(l.pages[1][511], 0x10_2000, "chain pointer to page 2");
        let want: Vec<u64> = (1..pages).map(|k| 0x100_0000 + k * 4096).collect();
        assert_eq!(l.walk(p2, want.len()), want);
    }

    #[test]
    fn too_few_list_pages_is_refused() {
        let mut l = FakeList::new(1);
        let err = build(&[seg(0x100_0000, 600 * 4096)], PAGE, &mut l).unwrap_err();
        assert!(matches!(
            err,
            Error::BadSegment {
                rule: PrpRule::TooManyPages,
                ..
            }
        ));
    }

    #[test]
    fn iovec_of_page_aligned_middles_is_accepted() {
        let mut l = FakeList::new(1);
        let segs = [
            seg(0x20_0e00, 0x200),
            seg(0x50_0000, 8192),
            seg(0x70_0000, 100),
        ];
        let (p1, p2) = build(&segs, PAGE, &mut l).unwrap();
        assert_eq!(p1, 0x20_0e00);
        assert_eq!(l.walk(p2, 3), vec![0x50_0000, 0x50_1000, 0x70_0000]);
    }

    #[test]
    fn segments_breaking_prp_rules_are_refused_with_the_rule() {
        let mut l = FakeList::new(1);
        let cases = [
            (vec![seg(0x1002, 512)], 0, PrpRule::NotDwordAligned),
            (
                vec![seg(0x1000, 512), seg(0x3000, 512)],
                0,
                PrpRule::MiddleEndNotPageAligned,
            ),
            (
                vec![seg(0x1000, 4096), seg(0x3200, 512)],
                1,
                PrpRule::MiddleStartNotPageAligned,
            ),
            (vec![seg(0x1000, 4096), seg(0x3000, 0)], 1, PrpRule::Empty),
        ];
        for (segs, want_index, want_rule) in cases {
            match build(&segs, PAGE, &mut l) {
                Err(Error::BadSegment { index, rule, .. }) => {
                    assert_eq!((index, rule), (want_index, want_rule), "{segs:?}")
                }
                other => panic!("{segs:?}: expected BadSegment, got {other:?}"),
            }
        }
    }

    #[test]
    fn segment_wrapping_the_address_space_is_refused_without_panic() {
        let mut l = FakeList::new(1);
        assert!(build(&[seg(u64::MAX - 3, 8)], PAGE, &mut l).is_err());
        assert!(build(&[seg(0x1000, 4096), seg(!0xfff, 8192)], PAGE, &mut l).is_err());
    }

    #[test]
    fn pages_needed_accounts_for_chain_slots() {
        assert_eq!(list_pages_needed(512, 512), 1);
        assert_eq!(list_pages_needed(513, 512), 2);
        assert_eq!(list_pages_needed(1023, 512), 2);
        assert_eq!(list_pages_needed(1024, 512), 3);
        assert_eq!(max_transfer(4096, 1), 512 * 4096);
        assert_eq!(max_transfer(4096, 2), 1023 * 4096);
    }
}
