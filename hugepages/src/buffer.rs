//! Buffers carved out of mapped regions, and safe access to their bytes.
//!
//! The device may read or write a buffer at any moment, so no `&[u8]` or `&mut [u8]` to
//! its memory is ever created: every access goes through the buffer's
//! [`VolatileSlice`], whose out-of-range rule (a bug: a panic in debug builds, an error
//! in release builds) the accessors here share.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::allocator::MappedRegion;
use crate::{Backing, Error, PageSize, VolatileSlice};

/// A range of DMA memory handed out by a [`DmaAllocator`](crate::DmaAllocator).
///
/// The memory is contiguous in IOVA space and zeroed when allocated. Dropping the
/// buffer returns the range to its region for reuse; the region itself lives on while
/// any buffer of it exists, and is unmapped from the device before it is freed.
///
/// Writes through the buffer's own methods take `&mut self`; [`DmaBuffer::mem`] gives
/// volatile access through `&self` for memory shared with the device or other threads.
pub struct DmaBuffer {
    region: Arc<MappedRegion>,
    /// The buffer's bytes; valid while `region` lives.
    mem: VolatileSlice<'static>,
    offset: usize,
    /// Bytes taken from the region (`len` rounded up to the allocation granule).
    reserved: usize,
}

impl std::fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("iova", &format_args!("{:#x}", self.iova()))
            .field("len", &self.len())
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

impl DmaBuffer {
    pub(crate) fn new(
        region: Arc<MappedRegion>,
        offset: usize,
        len: usize,
        reserved: usize,
    ) -> DmaBuffer {
        let all = region.region().mem();
        let mem = all
            .subslice(offset, len)
            .expect("a buffer lies inside its region");
        // SAFETY: the bytes stay mapped while `region` lives, and this buffer keeps it
        // alive; `mem` is private and handed out only bounded by `&self`.
        let mem = unsafe { VolatileSlice::new(NonNull::new_unchecked(mem.as_ptr()), len) };
        DmaBuffer {
            region,
            mem,
            offset,
            reserved,
        }
    }

    /// The buffer's bytes, for volatile access.
    #[inline]
    pub fn mem(&self) -> VolatileSlice<'_> {
        self.mem
    }

    /// The device address of the first byte.
    #[inline]
    pub fn iova(&self) -> u64 {
        self.region.iova() + self.offset as u64
    }

    /// Length in bytes, as requested.
    #[inline]
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Always false: buffers have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Host address of the first byte. Access it only through raw pointers (volatile or
    /// atomic), never through a long-lived reference.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.mem.as_ptr()
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
        if offset >= self.len() {
            return Err(Error::OutOfBounds {
                offset,
                len: 1,
                size: self.len(),
            });
        }
        self.region.region().phys_addr(self.offset + offset)
    }

    /// The sub-range `offset..offset + len` as a [`DmaSegment`].
    pub fn segment(&self, offset: usize, len: usize) -> Result<DmaSegment, Error> {
        let mem = self.mem.subslice(offset, len)?;
        Ok(DmaSegment {
            iova: self.iova() + offset as u64,
            len,
            ptr: mem.as_ptr(),
        })
    }

    /// The whole buffer as a [`DmaSegment`].
    pub fn as_segment(&self) -> DmaSegment {
        DmaSegment {
            iova: self.iova(),
            len: self.len(),
            ptr: self.as_ptr(),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Error> {
        Ok(self.mem.read(offset, dst)?)
    }

    /// Copies `src` into the buffer at `offset`.
    #[inline]
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), Error> {
        Ok(self.mem.write(offset, src)?)
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) -> Result<(), Error> {
        Ok(self.mem.fill(offset, len, byte)?)
    }

    /// Whether the bytes at `offset` equal `expected`.
    pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<bool, Error> {
        self.mem.subslice(offset, expected.len())?;
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
    #[inline]
    pub fn read_u32(&self, offset: usize) -> Result<u32, Error> {
        Ok(self.mem.read_u32(offset)?)
    }

    /// Reads a little-endian `u64` at `offset` (8-byte aligned) with one volatile load.
    #[inline]
    pub fn read_u64(&self, offset: usize) -> Result<u64, Error> {
        Ok(self.mem.read_u64(offset)?)
    }

    /// Writes `value` little-endian at `offset` (4-byte aligned) with one volatile store.
    #[inline]
    pub fn write_u32(&mut self, offset: usize, value: u32) -> Result<(), Error> {
        Ok(self.mem.write_u32(offset, value)?)
    }

    /// Writes `value` little-endian at `offset` (8-byte aligned) with one volatile store.
    #[inline]
    pub fn write_u64(&mut self, offset: usize, value: u64) -> Result<(), Error> {
        Ok(self.mem.write_u64(offset, value)?)
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        self.region.release(self.offset, self.reserved);
    }
}
