//! Choosing I/O virtual addresses inside the windows a device accepts.

use std::collections::BTreeMap;

use crate::IovaRange;

/// IOVAs the allocator never uses, whatever the mapper reports: the zero page (an IOVA
/// of 0 looks like a null pointer to firmware and to people), and the x86 MSI window,
/// where DMA writes are taken as interrupt messages instead of reaching memory.
pub const RESERVED_IOVA_RANGES: [IovaRange; 2] = [0..=0xfff, 0xfee0_0000..=0xfeef_ffff];

/// The free and used IOVAs of one allocator.
#[derive(Debug)]
pub(crate) struct IovaSpace {
    /// Usable windows, ascending, with the reserved ranges cut out.
    windows: Vec<IovaRange>,
    /// Allocated ranges: start -> length.
    used: BTreeMap<u64, u64>,
}

impl IovaSpace {
    /// The usable part of `ranges`.
    pub(crate) fn new(mut ranges: Vec<IovaRange>) -> IovaSpace {
        ranges.sort_by_key(|r| *r.start());
        let mut windows = Vec::new();
        for range in ranges {
            let mut pieces = vec![range];
            for hole in &RESERVED_IOVA_RANGES {
                pieces = pieces.into_iter().flat_map(|p| subtract(p, hole)).collect();
            }
            windows.extend(pieces);
        }
        IovaSpace {
            windows,
            used: BTreeMap::new(),
        }
    }

    /// The lowest free range of `len` bytes aligned to `align` (a power of two).
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        for window in &self.windows {
            let mut cursor = align_up(*window.start(), align)?;
            loop {
                let last = cursor.checked_add(len - 1)?;
                if last > *window.end() {
                    break;
                }
                // The first used range ending after `cursor` is the only one that can
                // collide, since used ranges do not overlap.
                let blocker = self
                    .used
                    .range(..=last)
                    .next_back()
                    // None: the used range reaches the top of the address space.
                    .map(|(&start, &used_len)| start.checked_add(used_len))
                    .filter(|end| end.is_none_or(|end| end > cursor));
                match blocker {
                    None => {
                        self.used.insert(cursor, len);
                        return Some(cursor);
                    }
                    Some(end) => match end.and_then(|end| align_up(end, align)) {
                        Some(next) => cursor = next,
                        None => break,
                    },
                }
            }
        }
        None
    }

    /// Returns the range starting at `iova` to the free space.
    pub(crate) fn free(&mut self, iova: u64) {
        self.used.remove(&iova);
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// `range` minus `hole`: zero, one or two pieces.
fn subtract(range: IovaRange, hole: &IovaRange) -> Vec<IovaRange> {
    let (s, e) = (*range.start(), *range.end());
    let (hs, he) = (*hole.start(), *hole.end());
    if range.is_empty() || he < s || hs > e {
        return if range.is_empty() {
            vec![]
        } else {
            vec![range]
        };
    }
    let mut out = Vec::new();
    if hs > s {
        out.push(s..=hs - 1);
    }
    if he < e {
        out.push(he + 1..=e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB2: u64 = 2 << 20;

    #[test]
    fn first_allocation_skips_the_zero_page() {
        let mut space = IovaSpace::new(vec![0..=u64::MAX]);
        assert_eq!(space.alloc(0x1000, 0x1000), Some(0x1000));
        assert_eq!(space.alloc(MIB2, MIB2), Some(MIB2));
    }

    #[test]
    fn allocations_ascend_and_never_touch_the_msi_window() {
        let mut space = IovaSpace::new(vec![0xfe00_0000..=0xffff_ffff]);
        let mut got = Vec::new();
        while let Some(iova) = space.alloc(MIB2, MIB2) {
            got.push(iova);
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        for iova in &got {
            let end = iova + MIB2 - 1;
            assert!(
                end < 0xfee0_0000 || *iova > 0xfeef_ffff,
                "{iova:#x} hits the MSI window"
            );
        }
        // 32 MiB window minus the 1 MiB hole: the 2 MiB slot holding the hole is lost.
        assert_eq!(got.len(), 15);
        assert_eq!(got[6], 0xfee0_0000 - MIB2);
        assert_eq!(got[7], 0xff00_0000);
    }

    #[test]
    fn freed_ranges_are_reused_lowest_first() {
        let mut space = IovaSpace::new(vec![0x1000..=0xffff_ffff]);
        let a = space.alloc(MIB2, MIB2).unwrap();
        let b = space.alloc(MIB2, MIB2).unwrap();
        let c = space.alloc(4 * MIB2, MIB2).unwrap();
        assert_eq!((a, b, c), (MIB2, 2 * MIB2, 3 * MIB2));
        space.free(a);
        assert_eq!(space.alloc(MIB2, MIB2), Some(a));
        space.free(b);
        // Too big for b's hole: goes after c.
        assert_eq!(space.alloc(2 * MIB2, MIB2), Some(7 * MIB2));
    }

    #[test]
    fn exhaustion_and_window_edges_do_not_overflow() {
        let mut space = IovaSpace::new(vec![u64::MAX - 0x2fff..=u64::MAX]);
        assert_eq!(space.alloc(0x1000, 0x1000), Some(u64::MAX - 0x2fff));
        assert_eq!(space.alloc(0x2000, 0x1000), Some(u64::MAX - 0x1fff));
        assert_eq!(space.alloc(0x1000, 0x1000), None);
        assert_eq!(space.alloc(u64::MAX, 0x1000), None);
        let mut empty = IovaSpace::new(vec![0..=0xfff]);
        assert_eq!(empty.alloc(0x1000, 0x1000), None);
    }

    #[test]
    fn unaligned_window_start_is_rounded_up() {
        let mut space = IovaSpace::new(vec![0x1234..=0x40_0000]);
        assert_eq!(space.alloc(0x1000, MIB2), Some(MIB2));
        assert_eq!(space.alloc(0x1000, 0x1000), Some(0x2000));
    }
}
