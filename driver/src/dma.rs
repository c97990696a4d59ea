//! Queue rings, PRP lists and doorbell buffers in DMA memory: the one place the driver
//! touches memory the device also writes.
//!
//! The device may change this memory at any time, so it is never reached through a Rust
//! reference: every access is a volatile load or store through the buffer's raw pointer,
//! bounds checked against the buffer.

use std::sync::atomic::{fence, Ordering};

use hugepages::{DmaAllocator, DmaBuffer};

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

/// A DMA buffer with volatile, bounds-checked accessors.
///
/// Invariant: `ptr` is `buf.as_ptr()` and `len` is `buf.len()`; `buf` owns that range
/// exclusively and keeps it mapped and allocated for as long as this value lives.
pub struct DmaMem {
    buf: DmaBuffer,
    ptr: *mut u8,
    len: usize,
}

impl std::fmt::Debug for DmaMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaMem")
            .field("iova", &format_args!("{:#x}", self.iova()))
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: `DmaMem` owns its buffer (which is `Send`); the raw pointer is into that buffer.
unsafe impl Send for DmaMem {}

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
        Ok(DmaMem {
            ptr: buf.as_ptr(),
            len: buf.len(),
            buf,
        })
    }

    /// The device address of byte 0.
    #[inline]
    pub fn iova(&self) -> u64 {
        self.buf.iova()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The underlying buffer, for copying data in and out.
    pub fn buffer(&self) -> &DmaBuffer {
        &self.buf
    }

    #[inline]
    fn check(&self, offset: usize, size: usize, align: usize) -> bool {
        offset % align == 0 && offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// Reads the u32 at `offset` (4-aligned); out of range reads as zero.
    #[inline]
    pub fn read_u32(&self, offset: usize) -> u32 {
        if !self.check(offset, 4, 4) {
            return 0;
        }
        // SAFETY: in bounds and aligned (checked above; the buffer is 4 KiB aligned),
        // inside the live buffer (type invariant); volatile because the device writes it.
        unsafe { self.ptr.add(offset).cast::<u32>().read_volatile() }
    }

    /// Writes the u32 at `offset` (4-aligned); out of range writes nothing.
    #[inline]
    pub fn write_u32(&mut self, offset: usize, value: u32) {
        if !self.check(offset, 4, 4) {
            return;
        }
        // SAFETY: as in `read_u32`.
        unsafe { self.ptr.add(offset).cast::<u32>().write_volatile(value) }
    }

    /// Writes the u64 at `offset` (8-aligned); out of range writes nothing.
    #[inline]
    pub fn write_u64(&mut self, offset: usize, value: u64) {
        if !self.check(offset, 8, 8) {
            return;
        }
        // SAFETY: as in `read_u32`, for 8 bytes at an 8-aligned offset.
        unsafe { self.ptr.add(offset).cast::<u64>().write_volatile(value) }
    }

    /// Stores a submission entry at `offset` (64-aligned).
    #[inline]
    pub fn write_sqe(&mut self, offset: usize, sqe: &SubmissionEntry) {
        if !self.check(offset, 64, 64) {
            return;
        }
        let words: [u64; 8] = zerocopy::transmute!(*sqe);
        // SAFETY: 64 bytes at a 64-aligned offset inside the live buffer (checked).
        let dst = unsafe { self.ptr.add(offset).cast::<u64>() };
        for (i, w) in words.iter().enumerate() {
            // SAFETY: `dst + i` for i < 8 stays within the 64 checked bytes.
            unsafe { dst.add(i).write_volatile(*w) };
        }
    }

    /// Reads the completion entry at `offset` (16-aligned) if its phase tag equals
    /// `phase`; otherwise `None` (the slot still holds an old entry).
    #[inline]
    pub fn read_cqe(&self, offset: usize, phase: bool) -> Option<CompletionEntry> {
        if !self.check(offset, 16, 16) {
            return None;
        }
        // SAFETY: 16 bytes at a 16-aligned offset inside the live buffer (checked).
        let src = unsafe { self.ptr.add(offset).cast::<u64>() };
        // SAFETY: the second word of the entry (status in its top 16 bits), in bounds.
        let hi = unsafe { src.add(1).read_volatile() };
        if ((hi >> 48) & 1 == 1) != phase {
            return None;
        }
        // The rest of the entry must not be read before the phase tag says it is new.
        fence(Ordering::Acquire);
        // SAFETY: the first word of the entry, in bounds.
        let lo = unsafe { src.read_volatile() };
        // Re-read the second word after the fence so both halves are from the new entry.
        // SAFETY: as above.
        let hi = unsafe { src.add(1).read_volatile() };
        let words = [lo, hi];
        Some(zerocopy::transmute!(words))
    }

    /// Zeroes the whole buffer (queue re-creation after a reset).
    pub fn zero(&mut self) {
        let len = self.len;
        let _ = self.buf.fill(0, len, 0);
    }
}

/// DMA memory several threads use at disjoint offsets (shadow doorbells, EventIdx):
/// only 32-bit volatile accesses through `&self`.
#[derive(Debug)]
pub struct SharedDmaMem {
    mem: DmaMem,
}

// SAFETY: all access is 32-bit volatile loads and stores through the raw pointer (never a
// reference); each slot has one writing thread (its queue pair) and the device.
unsafe impl Sync for SharedDmaMem {}

impl SharedDmaMem {
    /// Wraps `mem` for shared use.
    pub fn new(mem: DmaMem) -> Self {
        SharedDmaMem { mem }
    }

    /// The device address of byte 0.
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Reads the u32 at `offset`; out of range reads as zero.
    #[inline]
    pub fn read_u32(&self, offset: usize) -> u32 {
        self.mem.read_u32(offset)
    }

    /// Writes the u32 at `offset`; out of range writes nothing.
    #[inline]
    pub fn write_u32(&self, offset: usize, value: u32) {
        if !self.mem.check(offset, 4, 4) {
            return;
        }
        // SAFETY: in bounds and aligned (checked) within the live buffer (DmaMem's
        // invariant); volatile and 32-bit, so concurrent use of other slots is sound.
        unsafe { self.mem.ptr.add(offset).cast::<u32>().write_volatile(value) }
    }

    /// Zeroes every slot (controller reset, before re-registering the buffers).
    pub fn zero(&self) {
        for off in (0..self.mem.len()).step_by(4) {
            self.write_u32(off, 0);
        }
    }
}
