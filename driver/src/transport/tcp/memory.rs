//! Host memory as the NVMe/TCP transport sees it: the IOVAs the driver's allocator
//! hands out, translated back to the memory behind them so the transport can copy
//! command data to and from its sockets.
//!
//! The table is a sorted snapshot (`Arc<[Region]>`). Every queue keeps its own copy,
//! replaced under the queue's lock whenever a region is mapped or unmapped, so
//! translation takes no lock and, once `unmap` returns, no queue can still reach the
//! removed memory.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use hugepages::sync::lock;
use hugepages::{DmaMapper, IovaRange, MapError, VolatileSlice};

/// Mapping granularity.
const PAGE: u64 = 4096;
/// The IOVA window handed to the allocator.
const IOVA_LIMIT: u64 = (1 << 48) - 1;

/// One mapping: `len` bytes at `iova` backed by `host`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Region {
    iova: u64,
    len: u64,
    host: VolatileSlice<'static>,
}

/// The hook that hands a new snapshot to every queue.
pub(super) type Refresh = Box<dyn Fn(&Arc<[Region]>) + Send + Sync>;

/// The authoritative table.
pub(super) struct MemTable {
    regions: Mutex<Arc<[Region]>>,
    refresh: std::sync::OnceLock<Refresh>,
}

impl MemTable {
    pub(super) fn new() -> Self {
        Self {
            regions: Mutex::new(Arc::from(Vec::new())),
            refresh: std::sync::OnceLock::new(),
        }
    }

    /// Installs the hook that pushes a new snapshot into every queue.
    pub(super) fn set_refresh(&self, refresh: Refresh) {
        let _ = self.refresh.set(refresh);
    }

    /// The current snapshot.
    pub(super) fn snapshot(&self) -> Arc<[Region]> {
        lock(&self.regions).clone()
    }

    fn publish(&self, table: &mut Arc<[Region]>, next: Vec<Region>) {
        *table = Arc::from(next);
        if let Some(refresh) = self.refresh.get() {
            refresh(table);
        }
    }
}

/// The [`DmaMapper`] of a TCP transport: records where memory is, maps nothing.
pub(super) struct TableMapper(pub(super) Arc<MemTable>);

impl DmaMapper for TableMapper {
    fn iova_ranges(&self) -> Vec<IovaRange> {
        vec![PAGE..=IOVA_LIMIT]
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError> {
        let misaligned = MapError::Misaligned {
            iova,
            len,
            align: PAGE as usize,
        };
        let mask = PAGE - 1;
        if len == 0 || iova & mask != 0 || len as u64 & mask != 0 {
            return Err(misaligned);
        }
        let end = match iova.checked_add(len as u64) {
            Some(end) if end - 1 <= IOVA_LIMIT => end,
            _ => return Err(MapError::OutOfRange { iova, len }),
        };
        let Some(vaddr) = NonNull::new(vaddr) else {
            return Err(misaligned);
        };
        let mut table = lock(&self.0.regions);
        let pos = table.partition_point(|r| r.iova < iova);
        if (pos > 0 && table[pos - 1].iova + table[pos - 1].len > iova)
            || (pos < table.len() && table[pos].iova < end)
        {
            return Err(MapError::Overlap { iova, len });
        }
        // SAFETY: the caller keeps `vaddr..vaddr + len` valid and unreferenced until
        // `unmap` returns (this method's contract); `unmap` replaces every queue's
        // snapshot before it returns, so no copy of this slice is used after that.
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
        self.0.publish(&mut table, next);
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError> {
        let mut table = lock(&self.0.regions);
        let Some(pos) = table
            .iter()
            .position(|r| r.iova == iova && r.len == len as u64)
        else {
            return Err(MapError::NotMapped { iova, len });
        };
        let mut next = table.to_vec();
        next.remove(pos);
        self.0.publish(&mut table, next);
        Ok(())
    }
}

/// A queue's copy of the table, with a last-hit cache.
#[derive(Debug, Clone)]
pub(super) struct MemView {
    regions: Arc<[Region]>,
    last: usize,
}

impl MemView {
    pub(super) fn new(regions: Arc<[Region]>) -> Self {
        Self { regions, last: 0 }
    }

    /// Replaces the snapshot (called with the owning queue's lock held).
    pub(super) fn refresh(&mut self, regions: &Arc<[Region]>) {
        self.regions = regions.clone();
        self.last = 0;
    }

    /// The memory at `iova`: at most `len` bytes, fewer where its region ends; `None`
    /// when `iova` is not mapped.
    #[inline]
    pub(super) fn translate(&mut self, iova: u64, len: usize) -> Option<VolatileSlice<'static>> {
        let regions = &*self.regions;
        let region = match regions.get(self.last) {
            Some(r) if iova >= r.iova && iova - r.iova < r.len => r,
            _ => {
                let pos = regions.partition_point(|r| r.iova <= iova);
                let i = pos.checked_sub(1)?;
                let r = &regions[i];
                if iova - r.iova >= r.len {
                    return None;
                }
                self.last = i;
                r
            }
        };
        let offset = (iova - region.iova) as usize;
        let avail = (region.len as usize - offset).min(len);
        region.host.subslice(offset, avail).ok()
    }

    /// Copies `dst.len()` bytes from `iova`; false if any byte is not mapped.
    pub(super) fn read(&mut self, iova: u64, dst: &mut [u8]) -> bool {
        let mut done = 0;
        while done < dst.len() {
            let Some(host) = self.translate(iova + done as u64, dst.len() - done) else {
                return false;
            };
            let n = host.len();
            if n == 0 || host.read(0, &mut dst[done..done + n]).is_err() {
                return false;
            }
            done += n;
        }
        true
    }

    /// Copies `src` to `iova`; false if any byte is not mapped.
    pub(super) fn write(&mut self, iova: u64, src: &[u8]) -> bool {
        let mut done = 0;
        while done < src.len() {
            let Some(host) = self.translate(iova + done as u64, src.len() - done) else {
                return false;
            };
            let n = host.len();
            if n == 0 || host.write(0, &src[done..done + n]).is_err() {
                return false;
            }
            done += n;
        }
        true
    }
}
