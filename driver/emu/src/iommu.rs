//! The IOMMU model: the device reaches host memory only through IOVAs the driver mapped.
//!
//! [`Iommu`] keeps the authoritative sorted list of mappings. Each queue holds a
//! [`MemView`], an immutable snapshot of that list plus a last-hit cache, so translation
//! on the hot path takes no lock and touches no shared cache line. `map` and `unmap`
//! publish a new snapshot to every view through the controller's refresh hook, which
//! takes each queue's lock in turn: when `unmap` returns, no queue can still be using a
//! snapshot that contains the removed region.

use std::sync::{Arc, Mutex, OnceLock};

use hugepages::{DmaMapper, IovaRange, MapError};

/// Mapping granularity and alignment.
pub const IOMMU_PAGE: u64 = 4096;
/// The IOVA window the model accepts (a 48-bit IOMMU).
pub const IOVA_LIMIT: u64 = (1 << 48) - 1;

/// One mapping: `len` bytes at `iova` backed by host memory at `host`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    iova: u64,
    len: u64,
    host: *mut u8,
}

// SAFETY: `host` is only dereferenced through the raw-pointer accessors below. The
// `DmaMapper::map` contract keeps the memory valid until `unmap` returns, and `unmap`
// returns only after every view has dropped the region (see the module docs).
unsafe impl Send for Region {}
// SAFETY: as for `Send`; a `Region` is plain data, never dereferenced through `&self`.
unsafe impl Sync for Region {}

impl Region {
    fn end(&self) -> u64 {
        self.iova + self.len
    }
}

/// An access to an IOVA that is not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DmaFault {
    /// The first unmapped address touched.
    pub iova: u64,
}

type Refresh = Box<dyn Fn(&Arc<[Region]>) + Send + Sync>;

/// The authoritative mapping table.
pub(crate) struct Iommu {
    regions: Mutex<Arc<[Region]>>,
    refresh: OnceLock<Refresh>,
}

impl Iommu {
    pub(crate) fn new() -> Self {
        Self {
            regions: Mutex::new(Arc::from(Vec::new())),
            refresh: OnceLock::new(),
        }
    }

    /// Installs the hook that pushes a new snapshot into every queue's view.
    pub(crate) fn set_refresh(&self, refresh: Refresh) {
        let _ = self.refresh.set(refresh);
    }

    /// A view of the current mappings.
    pub(crate) fn view(&self) -> MemView {
        MemView {
            regions: self.snapshot(),
            last: 0,
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<[Region]> {
        lock(&self.regions).clone()
    }

    fn publish(&self, table: &mut Arc<[Region]>, next: Vec<Region>) {
        *table = Arc::from(next);
        if let Some(refresh) = self.refresh.get() {
            refresh(table);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The [`DmaMapper`] the driver uses to make memory visible to the emulated controller.
pub(crate) struct IommuMapper(pub(crate) Arc<Iommu>);

impl DmaMapper for IommuMapper {
    fn iova_ranges(&self) -> Vec<IovaRange> {
        vec![0..=IOVA_LIMIT]
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError> {
        let mask = IOMMU_PAGE - 1;
        if len == 0 || iova & mask != 0 || len as u64 & mask != 0 || vaddr as u64 & mask != 0 {
            return Err(MapError::Misaligned {
                iova,
                len,
                align: IOMMU_PAGE as usize,
            });
        }
        let end = match iova.checked_add(len as u64) {
            Some(end) if end - 1 <= IOVA_LIMIT => end,
            _ => return Err(MapError::OutOfRange { iova, len }),
        };
        let iommu = &self.0;
        let mut table = lock(&iommu.regions);
        let pos = table.partition_point(|r| r.iova < iova);
        let overlaps_prev = pos > 0 && table[pos - 1].end() > iova;
        let overlaps_next = pos < table.len() && table[pos].iova < end;
        if overlaps_prev || overlaps_next {
            return Err(MapError::Overlap { iova, len });
        }
        let mut next = table.to_vec();
        next.insert(
            pos,
            Region {
                iova,
                len: len as u64,
                host: vaddr,
            },
        );
        iommu.publish(&mut table, next);
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError> {
        let iommu = &self.0;
        let mut table = lock(&iommu.regions);
        let Some(pos) = table
            .iter()
            .position(|r| r.iova == iova && r.len == len as u64)
        else {
            return Err(MapError::NotMapped { iova, len });
        };
        let mut next = table.to_vec();
        next.remove(pos);
        iommu.publish(&mut table, next);
        Ok(())
    }
}

/// A queue's snapshot of the mappings with a last-hit cache.
pub(crate) struct MemView {
    regions: Arc<[Region]>,
    last: usize,
}

impl MemView {
    /// Replaces the snapshot (called with the owning queue's lock held).
    pub(crate) fn refresh(&mut self, regions: &Arc<[Region]>) {
        self.regions = regions.clone();
        self.last = 0;
    }

    /// Host address of `iova` and how many bytes (at most `len`) are contiguous there.
    #[inline]
    pub(crate) fn translate(
        &mut self,
        iova: u64,
        len: usize,
    ) -> Result<(*mut u8, usize), DmaFault> {
        let regions = &*self.regions;
        let region = match regions.get(self.last) {
            Some(r) if iova >= r.iova && iova < r.end() => r,
            _ => {
                let pos = regions.partition_point(|r| r.iova <= iova);
                match pos.checked_sub(1).map(|i| (i, &regions[i])) {
                    Some((i, r)) if iova < r.end() => {
                        self.last = i;
                        r
                    }
                    _ => return Err(DmaFault { iova }),
                }
            }
        };
        let offset = iova - region.iova;
        let avail = (region.len - offset).min(len as u64) as usize;
        // Pointer arithmetic only; `offset < region.len`, so the result stays inside the
        // mapped host range (no dereference here).
        Ok((region.host.wrapping_add(offset as usize), avail))
    }

    /// Calls `f(host, len)` for each contiguous host piece of `iova..iova+len`.
    #[inline]
    pub(crate) fn for_each_piece(
        &mut self,
        mut iova: u64,
        mut len: usize,
        mut f: impl FnMut(*mut u8, usize),
    ) -> Result<(), DmaFault> {
        while len > 0 {
            let (host, n) = self.translate(iova, len)?;
            f(host, n);
            iova += n as u64;
            len -= n;
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes from device-visible memory at `iova`.
    pub(crate) fn read(&mut self, iova: u64, dst: &mut [u8]) -> Result<(), DmaFault> {
        let mut done = 0;
        let base = dst.as_mut_ptr();
        self.for_each_piece(iova, dst.len(), |host, n| {
            // SAFETY: `host..host+n` lies in a mapped region (valid per the map contract);
            // `base+done..+n` is inside `dst`; they cannot overlap because `dst` is our own
            // buffer, not DMA memory.
            unsafe { std::ptr::copy_nonoverlapping(host, base.add(done), n) };
            done += n;
        })
    }

    /// Reads a little-endian u64 (a PRP entry).
    pub(crate) fn read_u64(&mut self, iova: u64) -> Result<u64, DmaFault> {
        let mut b = [0u8; 8];
        self.read(iova, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a 4-byte aligned little-endian u32, sequentially consistent (shadow doorbells).
    pub(crate) fn load_u32(&mut self, iova: u64) -> Result<u32, DmaFault> {
        let (host, n) = self.translate(iova, 4)?;
        if n < 4 || host as usize % 4 != 0 {
            return Err(DmaFault { iova });
        }
        // SAFETY: 4 mapped, aligned bytes; the driver updates them with atomic stores,
        // so reading them atomically is the matching access.
        let v = unsafe { std::sync::atomic::AtomicU32::from_ptr(host.cast()) }
            .load(std::sync::atomic::Ordering::SeqCst);
        Ok(u32::from_le(v))
    }

    /// Writes a 4-byte aligned little-endian u32, sequentially consistent (EventIdx).
    pub(crate) fn store_u32(&mut self, iova: u64, value: u32) -> Result<(), DmaFault> {
        let (host, n) = self.translate(iova, 4)?;
        if n < 4 || host as usize % 4 != 0 {
            return Err(DmaFault { iova });
        }
        // SAFETY: 4 mapped, aligned bytes, written atomically as the driver reads them.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(host.cast()) }
            .store(value.to_le(), std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Reads a 64-byte submission queue entry.
    #[inline]
    pub(crate) fn read_sqe(&mut self, iova: u64) -> Result<[u8; 64], DmaFault> {
        let mut b = [0u8; 64];
        let (host, n) = self.translate(iova, 64)?;
        if n == 64 {
            // SAFETY: 64 mapped bytes at `host`; `b` is a local buffer.
            unsafe { std::ptr::copy_nonoverlapping(host, b.as_mut_ptr(), 64) };
        } else {
            self.read(iova, &mut b)?;
        }
        Ok(b)
    }

    /// Posts a 16-byte completion entry: dwords 0-2 first, then dword 3 (which holds the
    /// phase tag) with release ordering, so a driver that sees the new phase sees the rest.
    #[inline]
    pub(crate) fn write_cqe(&mut self, iova: u64, cqe: &[u8; 16]) -> Result<(), DmaFault> {
        let (host, n) = self.translate(iova, 16)?;
        if n < 16 || host as usize % 4 != 0 {
            return Err(DmaFault { iova });
        }
        // SAFETY: 16 mapped bytes at a 4-byte aligned `host`; the first 12 are copied
        // plainly, the last dword stored atomically (the driver polls it atomically).
        unsafe {
            std::ptr::copy_nonoverlapping(cqe.as_ptr(), host, 12);
            let dw3 = u32::from_ne_bytes([cqe[12], cqe[13], cqe[14], cqe[15]]);
            std::sync::atomic::AtomicU32::from_ptr(host.add(12).cast())
                .store(dw3, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper() -> (Arc<Iommu>, IommuMapper) {
        let iommu = Arc::new(Iommu::new());
        (iommu.clone(), IommuMapper(iommu))
    }

    #[test]
    fn overlapping_map_is_rejected_and_unmap_needs_exact_range() {
        let (iommu, m) = mapper();
        let mut buf = vec![0u8; 3 * 4096];
        let p = buf
            .as_mut_ptr()
            .wrapping_add(4096 - buf.as_ptr() as usize % 4096);
        // SAFETY: `p..p+4096` is inside `buf`, which outlives the mapping.
        unsafe { m.map(p, 4096, 0x10000) }.unwrap();
        // SAFETY: as above.
        let err = unsafe { m.map(p, 4096, 0x10000 - 0x1000 + 0x1000) }.unwrap_err();
        assert!(matches!(err, MapError::Overlap { .. }));
        assert!(matches!(
            m.unmap(0x10000, 8192),
            Err(MapError::NotMapped { .. })
        ));
        let mut view = iommu.view();
        assert!(view.translate(0x10800, 16).is_ok());
        assert_eq!(view.translate(0x11000, 16), Err(DmaFault { iova: 0x11000 }));
        m.unmap(0x10000, 4096).unwrap();
        assert_eq!(
            iommu.view().translate(0x10800, 16),
            Err(DmaFault { iova: 0x10800 })
        );
    }
}

/// A piece of mapped host memory, valid while the view that produced it is locked.
///
/// Invariant (established by [`MemView::host_slice`]): `ptr..ptr+len` lies inside one
/// mapped region, so it is valid for reads and writes until that mapping is removed,
/// which cannot happen while the owning queue's lock is held.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostSlice {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a `HostSlice` is plain data; it is dereferenced only by the thread that holds
// the lock of the queue whose view produced it, during the command it was made for
// (segment lists are rebuilt for every command).
unsafe impl Send for HostSlice {}
// SAFETY: as for `Send`; no method mutates the `HostSlice` itself.
unsafe impl Sync for HostSlice {}

impl HostSlice {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Copies `src` into this slice at byte `at` (clamped to the slice).
    pub(crate) fn copy_from(&self, at: usize, src: &[u8]) {
        let n = src.len().min(self.len.saturating_sub(at));
        // SAFETY: `at + n <= len`, inside the mapped range (type invariant); `src` is
        // not DMA memory, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(at), n) };
    }

    /// Copies from this slice at byte `at` into `dst` (clamped to the slice).
    pub(crate) fn copy_to(&self, at: usize, dst: &mut [u8]) {
        let n = dst.len().min(self.len.saturating_sub(at));
        // SAFETY: as in `copy_from`, reversed.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), dst.as_mut_ptr(), n) };
    }

    /// Inverts the byte at `at`, if inside the slice.
    pub(crate) fn flip(&self, at: usize) {
        if at < self.len {
            // SAFETY: `at < len`, inside the mapped range (type invariant).
            unsafe {
                let p = self.ptr.add(at);
                p.write_volatile(!p.read_volatile());
            }
        }
    }
}

impl MemView {
    /// The contiguous mapped host memory at `iova` (at most `len` bytes; may be shorter
    /// when a region ends first).
    #[inline]
    pub(crate) fn host_slice(&mut self, iova: u64, len: usize) -> Result<HostSlice, DmaFault> {
        let (ptr, len) = self.translate(iova, len)?;
        Ok(HostSlice { ptr, len })
    }
}
