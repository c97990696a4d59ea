//! Queue rings, PRP lists and doorbell buffers in DMA memory: the one place the driver
//! touches memory the device also writes.
//!
//! The device may change this memory at any time, so it is never reached through a Rust
//! reference: every access goes through the buffer's [`VolatileSlice`] (volatile loads
//! and stores, bounds checked against the buffer).

use std::sync::atomic::{fence, Ordering};

use hugepages::{DmaAllocator, DmaBuffer, VolatileSlice};

use crate::spec::{CompletionEntry, SubmissionEntry};
use crate::Error;

/// Turns an allocator error into ours; a refused lock or pin names the memlock limit and
/// what the process would need: `mapped` bytes already pinned plus the failed request.
pub fn dma_error(what: &'static str, e: hugepages::Error, mapped: u64) -> Error {
    let locked = match &e {
        hugepages::Error::Lock { len, .. } => Some(*len as u64),
        hugepages::Error::Map(hugepages::MapError::Os { len, source, .. })
            if source.raw_os_error() == Some(libc::ENOMEM) =>
        {
            Some(*len as u64)
        }
        _ => None,
    };
    if let Some(needed) = locked.map(|l| l + mapped) {
        if let Ok(limit) = crate::transport::vfio::memlock_limit() {
            if limit != u64::MAX {
                return Error::MemlockTooLow { needed, limit };
            }
        }
    }
    Error::Dma { what, source: e }
}

/// A DMA buffer for the driver's own structures, with typed volatile accessors.
///
/// Every access goes through the buffer's [`VolatileSlice`]: an offset outside the
/// buffer is a driver bug, which panics in debug builds and is returned as
/// [`Error::MemoryAccess`] in release builds; nothing is ever dropped silently.
pub struct DmaMem {
    buf: DmaBuffer,
}

impl std::fmt::Debug for DmaMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaMem")
            .field("iova", &format_args!("{:#x}", self.iova()))
            .field("len", &self.len())
            .finish()
    }
}

impl DmaMem {
    /// `len` zeroed bytes aligned to `align` (a power of two, at least 4 KiB), for `what`
    /// (used in error messages).
    pub fn alloc(
        alloc: &DmaAllocator,
        len: usize,
        align: usize,
        what: &'static str,
    ) -> Result<Self, Error> {
        let buf = alloc
            .alloc(len, align.max(4096))
            .map_err(|e| dma_error(what, e, alloc.stats().region_bytes as u64))?;
        Ok(DmaMem { buf })
    }

    /// The device address of byte 0.
    #[inline]
    pub fn iova(&self) -> u64 {
        self.buf.iova()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The underlying buffer, for copying data in and out.
    pub fn buffer(&self) -> &DmaBuffer {
        &self.buf
    }

    #[inline]
    fn mem(&self) -> VolatileSlice<'_> {
        self.buf.mem()
    }

    /// Reads the u32 at `offset` (4-aligned).
    #[inline]
    pub fn read_u32(&self, offset: usize) -> Result<u32, Error> {
        Ok(self.mem().read_u32(offset)?)
    }

    /// Writes the u32 at `offset` (4-aligned).
    #[inline]
    pub fn write_u32(&mut self, offset: usize, value: u32) -> Result<(), Error> {
        Ok(self.mem().write_u32(offset, value)?)
    }

    /// Writes the u64 at `offset` (8-aligned).
    #[inline]
    pub fn write_u64(&mut self, offset: usize, value: u64) -> Result<(), Error> {
        Ok(self.mem().write_u64(offset, value)?)
    }

    /// Stores a submission entry at `offset` (64-aligned): eight 8-byte volatile stores.
    #[inline(always)]
    pub fn write_sqe(&mut self, offset: usize, sqe: &SubmissionEntry) -> Result<(), Error> {
        Ok(self.mem().write_obj(offset, sqe)?)
    }

    /// Reads the completion entry at `offset` (16-aligned) if its phase tag equals
    /// `phase`; otherwise `None` (the slot still holds an old entry).
    #[inline(always)]
    pub fn read_cqe(&self, offset: usize, phase: bool) -> Result<Option<CompletionEntry>, Error> {
        let mem = self.mem();
        // The second word of the entry holds the status, phase tag in bit 48.
        let hi = mem.read_u64(offset + 8)?;
        if ((hi >> 48) & 1 == 1) != phase {
            return Ok(None);
        }
        // The rest of the entry must not be read before the phase tag says it is new.
        fence(Ordering::Acquire);
        // Both words again, after the fence, so both halves are from the new entry.
        Ok(Some(mem.read_obj(offset)?))
    }

    /// Zeroes the whole buffer (queue re-creation after a reset).
    pub fn zero(&mut self) {
        self.mem().zero();
    }
}

/// DMA memory several threads use at disjoint offsets (shadow doorbells, EventIdx):
/// only 32-bit volatile accesses through `&self`.
#[derive(Debug)]
pub struct SharedDmaMem {
    mem: DmaMem,
}

impl SharedDmaMem {
    /// Wraps `mem` for shared use.
    pub fn new(mem: DmaMem) -> Self {
        SharedDmaMem { mem }
    }

    /// The device address of byte 0.
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Reads the u32 at `offset` (4-aligned).
    #[inline]
    pub fn read_u32(&self, offset: usize) -> Result<u32, Error> {
        self.mem.read_u32(offset)
    }

    /// Writes the u32 at `offset` (4-aligned). Each slot has one writing thread (its
    /// queue pair) besides the device, and the stores are 32-bit volatile, so
    /// concurrent use of other slots is sound.
    #[inline]
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<(), Error> {
        Ok(self.mem.mem().write_u32(offset, value)?)
    }

    /// Zeroes every slot (controller reset, before re-registering the buffers).
    pub fn zero(&self) {
        let mem = self.mem.mem();
        for off in (0..mem.len()).step_by(4) {
            mem.write_u32(off, 0)
                .expect("every slot lies inside the buffer");
        }
    }
}
