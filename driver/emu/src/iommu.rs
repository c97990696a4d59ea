//! The IOMMU model: the device reaches host memory only through IOVAs the driver mapped.
//!
//! [`Iommu`] keeps the authoritative sorted list of mappings. Each queue holds a
//! [`MemView`], an immutable snapshot of that list plus a last-hit cache, so translation
//! on the hot path takes no lock and touches no shared cache line. `map` and `unmap`
//! publish a new snapshot to every view through the controller's refresh hook, which
//! takes each queue's lock in turn: when `unmap` returns, no queue can still be using a
//! snapshot that contains the removed region.

use hugepages::sync::lock;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use hugepages::{DmaMapper, IovaRange, MapError, VolatileSlice};

/// Mapping granularity and alignment.
pub const IOMMU_PAGE: u64 = 4096;
/// The IOVA window the model accepts (a 48-bit IOMMU).
pub const IOVA_LIMIT: u64 = (1 << 48) - 1;

/// One mapping: `len` bytes at `iova` backed by host memory `host`.
///
/// `host` is valid while the region is in a snapshot: the `DmaMapper::map` contract keeps
/// the memory valid until `unmap` returns, and `unmap` returns only after every view has
/// dropped the region (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    iova: u64,
    len: u64,
    host: VolatileSlice<'static>,
}

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
            audit: None,
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
        let Some(vaddr) = NonNull::new(vaddr) else {
            return Err(MapError::Misaligned {
                iova,
                len,
                align: IOMMU_PAGE as usize,
            });
        };
        // SAFETY: the caller keeps `vaddr..vaddr + len` valid and unreferenced until
        // `unmap` returns (this method's contract), and no view holds the region after
        // that (see the module docs).
        let host = unsafe { VolatileSlice::new(vaddr, len) };
        let mut next = table.to_vec();
        next.insert(
            pos,
            Region {
                iova,
                len: len as u64,
                host,
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
    /// The access record, kept only once asked for ([`MemView::record_segments`], a
    /// hostile device): otherwise a translation counts and records nothing.
    audit: Option<Box<Audit>>,
}

/// What a [`MemView`] records of its accesses when asked to.
#[derive(Default)]
struct Audit {
    /// Translations asked for (every DMA access goes through one or more).
    accesses: u64,
    /// Translations refused: the IOVA was not mapped.
    refused: u64,
    /// The (IOVA, length) of every data segment handed out by [`MemView::host_slice`]
    /// since the last [`MemView::take_trace`].
    trace: Vec<(u64, u64)>,
}

impl MemView {
    /// Replaces the snapshot (called with the owning queue's lock held).
    pub(crate) fn refresh(&mut self, regions: &Arc<[Region]>) {
        self.regions = regions.clone();
        self.last = 0;
    }

    /// The host memory at `iova`: at most `len` bytes, fewer where the region ends.
    #[inline(always)]
    pub(crate) fn translate(
        &mut self,
        iova: u64,
        len: usize,
    ) -> Result<VolatileSlice<'static>, DmaFault> {
        if let Some(a) = self.audit.as_deref_mut() {
            a.accesses += 1;
        }
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
                    _ => return Err(self.refuse(iova)),
                }
            }
        };
        let offset = (iova - region.iova) as usize;
        let avail = (region.len as usize - offset).min(len);
        // `offset < region.len` and `avail <= region.len - offset`: always in range.
        region
            .host
            .subslice(offset, avail)
            .map_err(|_| DmaFault { iova })
    }

    /// The fault of an unmapped `iova`, counted when recording; out of line, as it is
    /// rare.
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, iova: u64) -> DmaFault {
        if let Some(a) = self.audit.as_deref_mut() {
            a.refused += 1;
        }
        DmaFault { iova }
    }

    /// Translations asked for and refused since creation, counted only while
    /// recording ([`MemView::record_segments`]); zeros otherwise.
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.audit
            .as_deref()
            .map_or((0, 0), |a| (a.accesses, a.refused))
    }

    /// Copies `dst.len()` bytes from device-visible memory at `iova`.
    pub(crate) fn read(&mut self, iova: u64, dst: &mut [u8]) -> Result<(), DmaFault> {
        let mut done = 0;
        while done < dst.len() {
            let host = self.translate(iova + done as u64, dst.len() - done)?;
            let n = host.len();
            host.read(0, &mut dst[done..done + n])
                .map_err(|_| DmaFault { iova })?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u64 (a PRP entry).
    pub(crate) fn read_u64(&mut self, iova: u64) -> Result<u64, DmaFault> {
        let mut b = [0u8; 8];
        self.read(iova, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a 4-byte aligned little-endian u32, sequentially consistent (shadow doorbells).
    #[inline]
    pub(crate) fn load_u32(&mut self, iova: u64) -> Result<u32, DmaFault> {
        let host = self.word(iova)?;
        // The driver updates the word with 32-bit stores; an atomic load matches them.
        host.load_u32(0, Ordering::SeqCst)
            .map_err(|_| DmaFault { iova })
    }

    /// The 4 mapped, 4-aligned bytes at `iova`; a fault if the driver gave fewer or an
    /// unaligned address.
    #[inline]
    fn word(&mut self, iova: u64) -> Result<VolatileSlice<'static>, DmaFault> {
        let host = self.translate(iova, 4)?;
        if host.len() < 4 || host.as_ptr() as usize % 4 != 0 {
            return Err(DmaFault { iova });
        }
        Ok(host)
    }

    /// Writes a 4-byte aligned little-endian u32, sequentially consistent (EventIdx).
    #[inline]
    pub(crate) fn store_u32(&mut self, iova: u64, value: u32) -> Result<(), DmaFault> {
        let host = self.word(iova)?;
        host.store_u32(0, value, Ordering::SeqCst)
            .map_err(|_| DmaFault { iova })
    }

    /// Reads a 64-byte submission queue entry.
    #[inline(always)]
    pub(crate) fn read_sqe(&mut self, iova: u64) -> Result<[u8; 64], DmaFault> {
        let mut b = [0u8; 64];
        let host = self.translate(iova, 64)?;
        if host.len() == 64 {
            host.read(0, &mut b).map_err(|_| DmaFault { iova })?;
        } else {
            self.read(iova, &mut b)?;
        }
        Ok(b)
    }

    /// Posts a 16-byte completion entry: dwords 0-2 first, then dword 3 (which holds the
    /// phase tag) with release ordering, so a driver that sees the new phase sees the rest.
    #[inline]
    pub(crate) fn write_cqe(&mut self, iova: u64, cqe: &[u8; 16]) -> Result<(), DmaFault> {
        let host = self.translate(iova, 16)?;
        if host.len() < 16 || host.as_ptr() as usize % 4 != 0 {
            return Err(DmaFault { iova });
        }
        // The first 12 bytes are copied plainly, then the last dword (with the phase
        // tag) is stored atomically with release ordering.
        let dw3 = u32::from_le_bytes([cqe[12], cqe[13], cqe[14], cqe[15]]);
        host.write(0, &cqe[..12])
            .and_then(|()| host.store_u32(12, dw3, Ordering::Release))
            .map_err(|_| DmaFault { iova })
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
        assert_eq!(
            view.translate(0x11000, 16).unwrap_err(),
            DmaFault { iova: 0x11000 }
        );
        m.unmap(0x10000, 4096).unwrap();
        assert_eq!(
            iommu.view().translate(0x10800, 16).unwrap_err(),
            DmaFault { iova: 0x10800 }
        );
    }
}

/// A piece of mapped host memory, valid while the view that produced it is locked.
///
/// Invariant (established by [`MemView::host_slice`]): the memory lies inside one mapped
/// region, so it is valid until that mapping is removed, which cannot happen while the
/// owning queue's lock is held; the slice is used only by the thread that holds that
/// lock, during the command it was made for (segment lists are rebuilt for every
/// command). Callers pass only offsets inside the slice: an access outside it is a bug
/// and panics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostSlice(VolatileSlice<'static>);

impl HostSlice {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    pub(crate) fn mem(&self) -> VolatileSlice<'static> {
        self.0
    }

    /// Copies `src` into this slice at byte `at`.
    pub(crate) fn copy_from(&self, at: usize, src: &[u8]) {
        self.0.write(at, src).expect("a copy inside the host slice");
    }

    /// Copies from this slice at byte `at` into `dst`.
    pub(crate) fn copy_to(&self, at: usize, dst: &mut [u8]) {
        self.0.read(at, dst).expect("a copy inside the host slice");
    }

    /// Inverts the byte at `at`.
    pub(crate) fn flip(&self, at: usize) {
        let mut b = [0u8];
        self.copy_to(at, &mut b);
        self.copy_from(at, &[!b[0]]);
    }
}

impl MemView {
    /// The contiguous mapped host memory at `iova` (at most `len` bytes; may be shorter
    /// when a region ends first).
    #[inline(always)]
    pub(crate) fn host_slice(&mut self, iova: u64, len: usize) -> Result<HostSlice, DmaFault> {
        let s = self.translate(iova, len)?;
        if let Some(a) = self.audit.as_deref_mut() {
            record(a, iova, s.len());
        }
        Ok(HostSlice(s))
    }

    /// Starts counting translations and recording the data segments handed out (see
    /// [`MemView::counts`] and [`MemView::take_trace`]).
    pub(crate) fn record_segments(&mut self) {
        self.audit.get_or_insert_with(Box::default);
    }

    /// The data segments handed out since the last call, when recording.
    pub(crate) fn take_trace(&mut self) -> Vec<(u64, u64)> {
        self.audit
            .as_deref_mut()
            .map(|a| std::mem::take(&mut a.trace))
            .unwrap_or_default()
    }
}

/// Records a data segment handed out; out of line, as only a hostile device records.
#[cold]
#[inline(never)]
fn record(audit: &mut Audit, iova: u64, len: usize) {
    audit.trace.push((iova, len as u64));
}
