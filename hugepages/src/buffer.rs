//! Buffers carved out of mapped regions, and safe access to their bytes.
//!
//! The device may read or write a buffer at any moment, so no `&[u8]` or `&mut [u8]` to
//! its memory is ever created. Accessors copy through raw pointers, integers are read
//! and written with volatile accesses, and every offset is bounds-checked.

use std::sync::Arc;

use crate::allocator::MappedRegion;
use crate::{Backing, Error, PageSize};

/// A range of DMA memory handed out by a [`DmaAllocator`](crate::DmaAllocator).
///
/// The memory is contiguous in IOVA space and zeroed when allocated. Dropping the
/// buffer returns the range to its region for reuse; the region itself lives on while
/// any buffer of it exists.
pub struct DmaBuffer {
    region: Arc<MappedRegion>,
    offset: usize,
    len: usize,
    /// Bytes taken from the region (`len` rounded up to the allocation granule).
    reserved: usize,
}

impl std::fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("iova", &format_args!("{:#x}", self.iova()))
            .field("len", &self.len)
            .field("ptr", &self.as_ptr())
            .field("page_size", &self.page_size())
            .finish()
    }
}

/// A sub-range of a buffer, for building PRP entries and lists: the device address,
/// the host address, and the length.
///
/// It borrows nothing, so it stays valid only while the buffer it came from lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaSegment {
    /// IOVA of the first byte.
    pub iova: u64,
    /// Length in bytes.
    pub len: usize,
    /// Host address of the first byte.
    pub ptr: *mut u8,
}

// SAFETY: a segment is a plain description of memory; dereferencing `ptr` is unsafe
// and carries its own obligations, wherever the segment travels.
unsafe impl Send for DmaSegment {}
// SAFETY: as for `Send`; `&DmaSegment` gives access to nothing but the numbers.
unsafe impl Sync for DmaSegment {}

// SAFETY: the buffer owns its range exclusively (the allocator never hands out the same
// bytes twice); its region is `Send + Sync`, and memory access is raw pointers only.
unsafe impl Send for DmaBuffer {}
// SAFETY: methods taking `&self` only read the memory; writes need `&mut self`.
unsafe impl Sync for DmaBuffer {}

impl DmaBuffer {
    pub(crate) fn new(
        region: Arc<MappedRegion>,
        offset: usize,
        len: usize,
        reserved: usize,
    ) -> DmaBuffer {
        DmaBuffer {
            region,
            offset,
            len,
            reserved,
        }
    }

    /// The device address of the first byte.
    pub fn iova(&self) -> u64 {
        self.region.iova() + self.offset as u64
    }

    /// Length in bytes, as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: buffers have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of the first byte. Access it only through raw pointers (volatile or
    /// atomic), never through a long-lived reference.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.region().as_ptr().wrapping_add(self.offset)
    }

    /// Size of the pages backing the buffer: it is physically contiguous within each
    /// aligned page of this size.
    pub fn page_size(&self) -> PageSize {
        self.region.region().page_size()
    }

    /// Which pages back the buffer.
    pub fn backing(&self) -> Backing {
        self.region.region().backing()
    }

    /// The physical address of the byte at `offset` (needs `CAP_SYS_ADMIN`; for
    /// no-IOMMU use and tests).
    pub fn phys_addr(&self, offset: usize) -> Result<u64, Error> {
        self.check(offset, 1)?;
        self.region.region().phys_addr(self.offset + offset)
    }

    /// The sub-range `offset..offset + len` as a [`DmaSegment`].
    pub fn segment(&self, offset: usize, len: usize) -> Result<DmaSegment, Error> {
        self.check(offset, len)?;
        Ok(DmaSegment {
            iova: self.iova() + offset as u64,
            len,
            ptr: self.as_ptr().wrapping_add(offset),
        })
    }

    /// The whole buffer as a [`DmaSegment`].
    pub fn as_segment(&self) -> DmaSegment {
        DmaSegment {
            iova: self.iova(),
            len: self.len,
            ptr: self.as_ptr(),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Error> {
        self.check(offset, dst.len())?;
        // SAFETY: in bounds (checked); `dst` is ordinary memory distinct from the buffer
        // (no reference to DMA memory exists), and the copy goes through raw pointers.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// Copies `src` into the buffer at `offset`.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), Error> {
        self.check(offset, src.len())?;
        // SAFETY: in bounds (checked); `&mut self` excludes other writers of ours.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr().add(offset), src.len())
        };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) -> Result<(), Error> {
        self.check(offset, len)?;
        // SAFETY: in bounds (checked); `&mut self` excludes other writers of ours.
        unsafe { std::ptr::write_bytes(self.as_ptr().add(offset), byte, len) };
        Ok(())
    }

    /// Whether the bytes at `offset` equal `expected`.
    pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<bool, Error> {
        self.check(offset, expected.len())?;
        let mut chunk = [0u8; 512];
        for (i, want) in expected.chunks(chunk.len()).enumerate() {
            let got = &mut chunk[..want.len()];
            self.read(offset + i * 512, got)?;
            if got != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads a little-endian `u32` at `offset` (4-byte aligned) with one volatile load.
    pub fn read_u32(&self, offset: usize) -> Result<u32, Error> {
        let p = self.aligned::<u32>(offset)?;
        // SAFETY: in bounds and aligned (checked).
        Ok(u32::from_le(unsafe { p.read_volatile() }))
    }

    /// Reads a little-endian `u64` at `offset` (8-byte aligned) with one volatile load.
    pub fn read_u64(&self, offset: usize) -> Result<u64, Error> {
        let p = self.aligned::<u64>(offset)?;
        // SAFETY: in bounds and aligned (checked).
        Ok(u64::from_le(unsafe { p.read_volatile() }))
    }

    /// Writes `value` little-endian at `offset` (4-byte aligned) with one volatile store.
    pub fn write_u32(&mut self, offset: usize, value: u32) -> Result<(), Error> {
        let p = self.aligned::<u32>(offset)?;
        // SAFETY: in bounds and aligned (checked); `&mut self` excludes our other writers.
        unsafe { p.write_volatile(value.to_le()) };
        Ok(())
    }

    /// Writes `value` little-endian at `offset` (8-byte aligned) with one volatile store.
    pub fn write_u64(&mut self, offset: usize, value: u64) -> Result<(), Error> {
        let p = self.aligned::<u64>(offset)?;
        // SAFETY: in bounds and aligned (checked); `&mut self` excludes our other writers.
        unsafe { p.write_volatile(value.to_le()) };
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    fn aligned<T>(&self, offset: usize) -> Result<*mut T, Error> {
        let width = std::mem::size_of::<T>();
        self.check(offset, width)?;
        let p = self.as_ptr().wrapping_add(offset);
        if (p as usize) % width != 0 {
            return Err(Error::Misaligned { offset, width });
        }
        Ok(p.cast())
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        self.region.release(self.offset, self.reserved);
    }
}
