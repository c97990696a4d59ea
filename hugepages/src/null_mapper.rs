//! A [`DmaMapper`] with no device behind it, for tests and for running without an IOMMU
//! model.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{DmaMapper, IovaRange, MapError};

/// Accepts every well-formed mapping and remembers it; no device sees anything.
///
/// Like an IOMMU it refuses ranges outside its windows, overlapping or misaligned
/// mappings, and unmaps of ranges that are not mapped exactly, so tests catch an
/// allocator that breaks the [`DmaMapper`] contract. [`NullMapper::translate`] turns an
/// IOVA back into the host address it was mapped to, as a device model would.
#[derive(Debug)]
pub struct NullMapper {
    ranges: Vec<IovaRange>,
    /// iova -> (len, host address)
    mappings: Mutex<BTreeMap<u64, (usize, usize)>>,
}

/// The page granularity the null mapper enforces.
const PAGE: u64 = 4096;

impl Default for NullMapper {
    fn default() -> Self {
        NullMapper::new()
    }
}

impl NullMapper {
    /// A mapper accepting IOVAs `0x1000..2^48` (a 48-bit IOMMU without the zero page).
    pub fn new() -> NullMapper {
        NullMapper::with_ranges(vec![0x1000..=(1 << 48) - 1])
    }

    /// A mapper accepting only IOVAs in `ranges`.
    pub fn with_ranges(ranges: Vec<IovaRange>) -> NullMapper {
        NullMapper {
            ranges,
            mappings: Mutex::new(BTreeMap::new()),
        }
    }

    /// The current mappings as `(iova, len)`, ascending.
    pub fn mappings(&self) -> Vec<(u64, usize)> {
        self.lock()
            .iter()
            .map(|(&iova, &(len, _))| (iova, len))
            .collect()
    }

    /// The host address mapped at `iova`, if `iova..iova + len` lies inside one mapping.
    pub fn translate(&self, iova: u64, len: usize) -> Option<*mut u8> {
        let mappings = self.lock();
        let (&start, &(map_len, host)) = mappings.range(..=iova).next_back()?;
        let offset = usize::try_from(iova - start).ok()?;
        (offset.checked_add(len)? <= map_len).then(|| (host + offset) as *mut u8)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (usize, usize)>> {
        crate::sync::lock(&self.mappings)
    }
}

impl DmaMapper for NullMapper {
    fn iova_ranges(&self) -> Vec<IovaRange> {
        self.ranges.clone()
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError> {
        let last = iova
            .checked_add(len as u64)
            .and_then(|end| end.checked_sub(1));
        if len == 0 || iova % PAGE != 0 || len as u64 % PAGE != 0 || vaddr as u64 % PAGE != 0 {
            return Err(MapError::Misaligned {
                iova,
                len,
                align: PAGE as usize,
            });
        }
        let inside = last.is_some_and(|last| {
            self.ranges
                .iter()
                .any(|r| *r.start() <= iova && last <= *r.end())
        });
        let Some(last) = last.filter(|_| inside) else {
            return Err(MapError::OutOfRange { iova, len });
        };
        let mut mappings = self.lock();
        let overlaps = mappings
            .range(..=last)
            .next_back()
            .is_some_and(|(&start, &(l, _))| start + l as u64 > iova);
        if overlaps {
            return Err(MapError::Overlap { iova, len });
        }
        mappings.insert(iova, (len, vaddr as usize));
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError> {
        let mut mappings = self.lock();
        match mappings.get(&iova) {
            Some(&(l, _)) if l == len => {
                mappings.remove(&iova);
                Ok(())
            }
            _ => Err(MapError::NotMapped { iova, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(m: &NullMapper, iova: u64, len: usize) -> Result<(), MapError> {
        // SAFETY: the null mapper never dereferences the address.
        unsafe { m.map(0x7000_0000 as *mut u8, len, iova) }
    }

    #[test]
    fn overlapping_map_is_refused() {
        let m = NullMapper::new();
        map(&m, 0x10000, 0x2000).unwrap();
        assert!(matches!(
            map(&m, 0x11000, 0x1000),
            Err(MapError::Overlap { .. })
        ));
        assert!(matches!(
            map(&m, 0xf000, 0x2000),
            Err(MapError::Overlap { .. })
        ));
        map(&m, 0x12000, 0x1000).unwrap();
        assert_eq!(m.mappings(), vec![(0x10000, 0x2000), (0x12000, 0x1000)]);
    }

    #[test]
    fn out_of_window_and_misaligned_maps_are_refused() {
        let m = NullMapper::new();
        assert!(matches!(
            map(&m, 0, 0x1000),
            Err(MapError::OutOfRange { .. })
        ));
        assert!(matches!(
            map(&m, 1 << 48, 0x1000),
            Err(MapError::OutOfRange { .. })
        ));
        assert!(matches!(
            map(&m, u64::MAX - 0xfff, 0x2000),
            Err(MapError::OutOfRange { .. })
        ));
        assert!(matches!(
            map(&m, 0x1800, 0x1000),
            Err(MapError::Misaligned { .. })
        ));
        assert!(matches!(
            map(&m, 0x1000, 0),
            Err(MapError::Misaligned { .. })
        ));
    }

    #[test]
    fn unmap_must_name_an_exact_mapping() {
        let m = NullMapper::new();
        map(&m, 0x10000, 0x2000).unwrap();
        assert!(matches!(
            m.unmap(0x10000, 0x1000),
            Err(MapError::NotMapped { .. })
        ));
        m.unmap(0x10000, 0x2000).unwrap();
        assert!(m.mappings().is_empty());
    }

    #[test]
    fn translate_stays_inside_one_mapping() {
        let m = NullMapper::new();
        map(&m, 0x10000, 0x2000).unwrap();
        assert_eq!(m.translate(0x10010, 16), Some(0x7000_0010 as *mut u8));
        assert_eq!(m.translate(0x11000, 0x1000), Some(0x7000_1000 as *mut u8));
        assert_eq!(m.translate(0x11000, 0x1001), None);
        assert_eq!(m.translate(0xf000, 1), None);
    }
}
