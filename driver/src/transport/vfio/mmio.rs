//! BAR0 mapped into this process: the only place that touches device registers.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use hugepages::VolatileSlice;
use memmap2::{MmapOptions, MmapRaw};

/// A BAR mapped with `mmap` on the VFIO device fd, accessed with volatile loads and stores.
///
/// Register accesses go through a [`VolatileSlice`]. A register offset outside the BAR
/// or not 4-aligned is a bug: it panics in debug builds; in release builds a read returns
/// all ones (as from a vanished device) and a write is not made, and both log the
/// [`AccessError`](hugepages::AccessError) as a warning.
#[derive(Debug)]
pub struct MappedBar {
    // Field order is drop order: `mem` points into `map`.
    mem: VolatileSlice<'static>,
    map: MmapRaw,
}

impl MappedBar {
    /// Maps `len` bytes of the device fd at file offset `offset` (a region's offset).
    pub fn map(fd: RawFd, offset: u64, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty BAR"));
        }
        let map = MmapOptions::new().offset(offset).len(len).map_raw(fd)?;
        let ptr =
            NonNull::new(map.as_mut_ptr()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // SAFETY: `map` is a live shared mapping of `len` readable and writable bytes
        // that lives as long as `mem` (both are fields of this value, `mem` dropped
        // first); nothing creates a reference into it.
        let mem = unsafe { VolatileSlice::new(ptr, map.len()) };
        Ok(MappedBar { mem, map })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never true for a mapped BAR).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Reads the register at `offset`.
    #[inline]
    pub fn read32(&self, offset: usize) -> u32 {
        self.mem.read_u32(offset).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "register read outside BAR0 reads as all ones");
            u32::MAX
        })
    }

    /// Writes the register at `offset`.
    #[inline]
    pub fn write32(&self, offset: usize, value: u32) {
        if let Err(e) = self.mem.write_u32(offset, value) {
            tracing::warn!(error = %e, "register write outside BAR0 not made");
        }
    }
}
