//! The DMA buffer allocator: regions mapped for a device, carved into buffers.

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buffer::DmaBuffer;
use crate::iova::IovaSpace;
use crate::{Backing, DmaMapper, DmaRegion, Error, MapError, PageSize, RegionOptions};

/// Every buffer starts on, and is sized in multiples of, this many bytes (a cache line).
pub const MIN_ALIGN: usize = 64;

/// How many times a region is moved to fresh IOVAs when the mapper reports a clash.
const MAP_RETRIES: usize = 16;

/// How a [`DmaAllocator`] gets its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorOptions {
    /// Size of each region the allocator adds when it runs out of space (2 MiB by
    /// default); a multiple of `region.page_size`. Requests larger than this get a
    /// region of their own.
    pub region_size: usize,
    /// Upper bound on the bytes held in regions (`usize::MAX`, no bound, by default).
    pub max_bytes: usize,
    /// Page size, fallback policy and sharing of each region.
    pub region: RegionOptions,
}

impl Default for AllocatorOptions {
    fn default() -> Self {
        AllocatorOptions {
            region_size: 2 << 20,
            max_bytes: usize::MAX,
            region: RegionOptions::default(),
        }
    }
}

/// A snapshot of an allocator's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocatorStats {
    /// Regions currently mapped.
    pub regions: usize,
    /// Of those, regions backed by hugepages.
    pub hugepage_regions: usize,
    /// Bytes held in regions.
    pub region_bytes: usize,
    /// Bytes of those regions not handed out as buffers.
    pub free_bytes: usize,
}

/// One mapped region, as [`DmaAllocator::regions`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// First IOVA of the region.
    pub iova: u64,
    /// Host address of the region.
    pub vaddr: usize,
    /// Length in bytes.
    pub len: usize,
    /// What backs it.
    pub backing: Backing,
}

/// Hands out [`DmaBuffer`]s from regions it maps through a [`DmaMapper`].
///
/// Cloning is cheap and every clone shares the same regions. Each buffer keeps its
/// region alive; a region is unmapped and freed once the allocator (every clone) and
/// all of its buffers are gone, or by [`DmaAllocator::trim`] when it holds no buffers.
#[derive(Clone)]
pub struct DmaAllocator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DmaAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaAllocator")
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    mapper: Arc<dyn DmaMapper>,
    options: AllocatorOptions,
    state: Mutex<State>,
}

struct State {
    regions: Vec<Arc<MappedRegion>>,
    iova: IovaSpace,
    total: usize,
}

/// A region mapped for the device, with the free space left in it.
pub(crate) struct MappedRegion {
    region: ManuallyDrop<DmaRegion>,
    iova: u64,
    mapper: Arc<dyn DmaMapper>,
    /// Free extents: offset -> length, coalesced.
    free: Mutex<BTreeMap<usize, usize>>,
}

impl MappedRegion {
    pub(crate) fn region(&self) -> &DmaRegion {
        &self.region
    }

    pub(crate) fn iova(&self) -> u64 {
        self.iova
    }

    fn free_list(&self) -> MutexGuard<'_, BTreeMap<usize, usize>> {
        crate::sync::lock(&self.free)
    }

    /// Takes `len` bytes aligned to `align` (relative to the region start, which is
    /// aligned to at least `align`); returns the offset.
    fn carve(&self, len: usize, align: usize) -> Option<usize> {
        let mut free = self.free_list();
        let (start, off, flen) = free.iter().find_map(|(&off, &flen)| {
            let start = off.checked_next_multiple_of(align)?;
            (start.checked_add(len)? <= off + flen).then_some((start, off, flen))
        })?;
        free.remove(&off);
        if start > off {
            free.insert(off, start - off);
        }
        if start + len < off + flen {
            free.insert(start + len, off + flen - start - len);
        }
        Some(start)
    }

    /// Returns `offset..offset + len` to the free space, merging with its neighbours.
    pub(crate) fn release(&self, offset: usize, len: usize) {
        let mut free = self.free_list();
        let (mut start, mut end) = (offset, offset + len);
        if let Some((&prev, &plen)) = free.range(..start).next_back() {
            if prev + plen == start {
                free.remove(&prev);
                start = prev;
            }
        }
        if let Some(&nlen) = free.get(&end) {
            free.remove(&end);
            end += nlen;
        }
        free.insert(start, end - start);
    }

    fn free_bytes(&self) -> usize {
        self.free_list().values().sum()
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        match self.mapper.unmap(self.iova, self.region.len()) {
            // SAFETY: the device can no longer reach the memory, and this is the last
            // use of `region`.
            Ok(()) => unsafe { ManuallyDrop::drop(&mut self.region) },
            Err(e) => {
                // The device may still reach the pages: leak them rather than let the
                // memory be reused while it can be written.
                tracing::error!(
                    iova = self.iova,
                    len = self.region.len(),
                    error = %e,
                    "DMA unmap failed; leaking the region"
                );
            }
        }
    }
}

impl DmaAllocator {
    /// An allocator mapping its regions through `mapper`. Maps nothing yet.
    pub fn new(mapper: Arc<dyn DmaMapper>, options: AllocatorOptions) -> Result<Self, Error> {
        let page = options.region.page_size.as_usize();
        if options.region_size == 0 || options.region_size % page != 0 {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "region_size {} is not a nonzero multiple of the page size {}",
                    options.region_size, options.region.page_size
                ),
            });
        }
        let iova = IovaSpace::new(mapper.iova_ranges());
        Ok(DmaAllocator {
            inner: Arc::new(Inner {
                mapper,
                options,
                state: Mutex::new(State {
                    regions: Vec::new(),
                    iova,
                    total: 0,
                }),
            }),
        })
    }

    /// A zeroed buffer of `len` bytes whose host address and IOVA are both multiples
    /// of `align` (a power of two, at most the options' page size; at least
    /// [`MIN_ALIGN`] is always applied). The buffer never spans two regions, so its
    /// IOVAs are contiguous.
    pub fn alloc(&self, len: usize, align: usize) -> Result<DmaBuffer, Error> {
        let page = self.inner.options.region.page_size;
        if !align.is_power_of_two() || align > page.as_usize() {
            return Err(Error::InvalidAlignment {
                align,
                max: page.as_usize(),
            });
        }
        let align = align.max(MIN_ALIGN);
        let reserved = match len.checked_next_multiple_of(MIN_ALIGN) {
            Some(r) if len > 0 => r,
            _ => return Err(Error::InvalidLength { len }),
        };
        let mut state = self.lock();
        for region in &state.regions {
            if let Some(offset) = region.carve(reserved, align) {
                // The range was free, so no buffer (hence no device command of ours)
                // uses it.
                region
                    .region()
                    .mem()
                    .fill(offset, reserved, 0)
                    .expect("a carved range lies inside its region");
                return Ok(DmaBuffer::new(region.clone(), offset, len, reserved));
            }
        }
        let region_len = if reserved <= self.inner.options.region_size {
            self.inner.options.region_size
        } else {
            page.round_up(reserved)
                .ok_or(Error::InvalidLength { len })?
        };
        let region = self.add_region(&mut state, region_len)?;
        // Fresh pages are zero already.
        let offset = region
            .carve(reserved, align)
            .ok_or(Error::InvalidLength { len })?;
        Ok(DmaBuffer::new(region, offset, len, reserved))
    }

    /// A zeroed buffer of `len` bytes aligned to the base page (4 KiB): for queue rings
    /// and PRP lists.
    pub fn alloc_pages(&self, len: usize) -> Result<DmaBuffer, Error> {
        self.alloc(len, PageSize::base().as_usize())
    }

    /// Maps a new region of `len` bytes and adds it to the pool.
    fn add_region(&self, state: &mut State, len: usize) -> Result<Arc<MappedRegion>, Error> {
        let options = &self.inner.options;
        let max_bytes = options.max_bytes;
        if state.total.checked_add(len).is_none_or(|t| t > max_bytes) {
            return Err(Error::LimitExceeded {
                requested: len,
                in_use: state.total,
                max_bytes,
            });
        }
        let align = options.region.page_size.bytes();
        let region = DmaRegion::new(len, &options.region)?;
        let len = region.len();
        let mut clashes = Vec::new();
        let result = loop {
            let Some(iova) = state.iova.alloc(len as u64, align) else {
                break Err(Error::IovaExhausted { len, align });
            };
            // SAFETY: the region stays mapped (and unused for anything else) until
            // `MappedRegion::drop` has unmapped this exact range, and it is only ever
            // accessed through raw pointers.
            match unsafe { self.inner.mapper.map(region.as_ptr(), len, iova) } {
                Ok(()) => break Ok(iova),
                Err(e @ (MapError::Overlap { .. } | MapError::OutOfRange { .. }))
                    if clashes.len() < MAP_RETRIES =>
                {
                    // Something else owns these IOVAs: keep them marked used for this
                    // attempt and try the next range.
                    tracing::debug!(iova, error = %e, "IOVA clash; trying the next range");
                    clashes.push(iova);
                }
                Err(e) => {
                    state.iova.free(iova);
                    break Err(Error::Map(e));
                }
            }
        };
        for iova in clashes {
            state.iova.free(iova);
        }
        let iova = result?;
        let mapped = Arc::new(MappedRegion {
            iova,
            mapper: self.inner.mapper.clone(),
            free: Mutex::new(BTreeMap::from([(0, len)])),
            region: ManuallyDrop::new(region),
        });
        tracing::debug!(iova, len, backing = ?mapped.region().backing(), "DMA region mapped");
        state.total += len;
        state.regions.push(mapped.clone());
        Ok(mapped)
    }

    /// Unmaps and frees every region that holds no buffer; returns the bytes released.
    pub fn trim(&self) -> usize {
        let mut state = self.lock();
        let mut released = 0;
        let mut kept = Vec::new();
        for region in std::mem::take(&mut state.regions) {
            // Buffers hold the only other references, and new ones are made only under
            // the state lock we hold.
            if Arc::strong_count(&region) == 1 {
                released += region.region().len();
                state.iova.free(region.iova());
            } else {
                kept.push(region);
            }
        }
        state.regions = kept;
        state.total -= released;
        released
    }

    /// Counts of regions and bytes.
    pub fn stats(&self) -> AllocatorStats {
        let state = self.lock();
        let mut stats = AllocatorStats::default();
        for region in &state.regions {
            stats.regions += 1;
            if matches!(region.region().backing(), Backing::HugePages(_)) {
                stats.hugepage_regions += 1;
            }
            stats.region_bytes += region.region().len();
            stats.free_bytes += region.free_bytes();
        }
        stats
    }

    /// The regions currently mapped, in the order they were added.
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.lock()
            .regions
            .iter()
            .map(|r| RegionInfo {
                iova: r.iova(),
                vaddr: r.region().as_ptr() as usize,
                len: r.region().len(),
                backing: r.region().backing(),
            })
            .collect()
    }

    /// The options the allocator was made with.
    pub fn options(&self) -> &AllocatorOptions {
        &self.inner.options
    }

    /// The mapper the allocator maps regions through.
    pub fn mapper(&self) -> &Arc<dyn DmaMapper> {
        &self.inner.mapper
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.inner.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carve_and_release_coalesce_back_to_one_extent() {
        let free = Mutex::new(BTreeMap::from([(0usize, 4096usize)]));
        let region = DmaRegion::new(
            4096,
            &RegionOptions {
                page_size: PageSize::SIZE_4K,
                ..Default::default()
            },
        )
        .unwrap();
        let mapped = MappedRegion {
            region: ManuallyDrop::new(region),
            iova: 0x1000,
            mapper: Arc::new(crate::NullMapper::new()),
            free,
        };
        let a = mapped.carve(64, 64).unwrap();
        let b = mapped.carve(100, 1024).unwrap();
        let c = mapped.carve(64, 64).unwrap();
        assert_eq!((a, b, c), (0, 1024, 64));
        assert_eq!(mapped.carve(4096, 64), None);
        mapped.release(b, 100);
        mapped.release(a, 64);
        mapped.release(c, 64);
        assert_eq!(*mapped.free_list(), BTreeMap::from([(0, 4096)]));
        // The region was never mapped: make the drop's unmap succeed.
        // SAFETY: the null mapper never dereferences the address.
        unsafe { mapped.mapper.map(mapped.region().as_ptr(), 4096, 0x1000) }.unwrap();
    }
}
