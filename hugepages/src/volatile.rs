//! [`VolatileSlice`]: the one way this stack reads and writes memory that a device (or
//! another thread acting as one) may change at any moment: DMA buffers, queue rings,
//! doorbell buffers, mapped device registers.
//!
//! # Why not `vm-memory`
//!
//! `vm-memory`'s `VolatileSlice` solves the same problem for guest memory, but its typed
//! accessors take its own `ByteValued` trait instead of zerocopy's, every access goes
//! through a dirty-bitmap parameter, and an out-of-range access is always a runtime
//! error. The driver's hot path (one SQE store, one CQE load, one doorbell store per
//! I/O) wants accessors that inline to the same few volatile instructions as hand-written
//! pointer code, over the zerocopy types `nvme-spec` already derives. This type is that,
//! in about as many lines as a wrapper around `vm-memory` would take.
//!
//! # Rules
//!
//! * **No reference.** Memory a device may write is never reached through `&[u8]` or
//!   `&mut [u8]`, whose contract says it cannot change underneath. Every access here is a
//!   volatile (or atomic) load or store through a raw pointer, or a raw `copy` for bulk
//!   data; what is read is copied out into ordinary memory.
//! * **Drop order.** A slice borrows memory it does not own. Whoever creates one (with
//!   the `unsafe` [`VolatileSlice::new`]) keeps the memory allocated, mapped into this
//!   process and, for DMA, mapped for the device for as long as the slice's lifetime
//!   says; owners keep the slice in a private field and hand out copies bounded by
//!   `&self`. Memory mapped for a device is unmapped from the device before it is freed
//!   (see [`DmaMapper`](crate::DmaMapper)).
//! * **Out of range is a bug.** Every accessor checks `offset..offset + size` against the
//!   slice, and the alignment its access needs. A failed check is a bug in the caller:
//!   it panics in debug builds (`debug_assert!`) and returns [`AccessError`] in release
//!   builds, where nothing is read or written. No access is ever clamped or silently
//!   dropped.
//! * **Little-endian.** Integer accessors read and write little-endian values, as NVMe
//!   and PCI define them.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An access outside a [`VolatileSlice`], or not aligned as it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// `offset..offset + len` does not lie inside the memory.
    #[error(
        "an access of {len:#x} bytes at offset {offset:#x} is outside memory of {size:#x} bytes"
    )]
    OutOfBounds {
        /// Offset of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the memory.
        size: usize,
    },
    /// A volatile or atomic integer access at an address not aligned to its width.
    #[error("a {width}-byte access at offset {offset:#x} is not aligned to {width} bytes")]
    Misaligned {
        /// Offset of the access.
        offset: usize,
        /// Width in bytes of the integer.
        width: usize,
    },
}

/// A window of `len` bytes of memory that a device may read or write at any time.
///
/// `Copy`, and `Send + Sync`: like a shared reference to `[AtomicU8]`, copies may be used
/// from several threads; callers keep concurrent writers of the same bytes apart (the
/// device aside). See the module documentation for the no-reference, drop-order and
/// out-of-range rules.
#[derive(Clone, Copy)]
pub struct VolatileSlice<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a [AtomicU32]>,
}

impl std::fmt::Debug for VolatileSlice<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolatileSlice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the slice is a pointer and a length; all access is volatile or atomic through
// the pointer, never a reference, and `new`'s contract makes the memory valid from any
// thread for `'a`.
unsafe impl Send for VolatileSlice<'_> {}
// SAFETY: as for `Send`; `&VolatileSlice` offers nothing a copy would not.
unsafe impl Sync for VolatileSlice<'_> {}

impl<'a> VolatileSlice<'a> {
    /// A slice over `len` bytes at `ptr`.
    ///
    /// # Safety
    /// For all of `'a`, `ptr..ptr + len` must be allocated, readable and writable by this
    /// process, and never reached through a Rust reference (`&`/`&mut` to those bytes).
    #[inline]
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        VolatileSlice {
            ptr,
            len,
            _memory: PhantomData,
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of byte 0; access through it only with raw pointers.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Checks `offset..offset + len` and returns a pointer to `offset`.
    #[inline]
    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, AccessError> {
        let ok = offset.checked_add(len).is_some_and(|end| end <= self.len);
        debug_assert!(
            ok,
            "an access of {len:#x} bytes at offset {offset:#x} is outside memory of {:#x} bytes",
            self.len
        );
        if !ok {
            return Err(AccessError::OutOfBounds {
                offset,
                len,
                size: self.len,
            });
        }
        // In bounds: the result points into the slice.
        Ok(self.ptr.as_ptr().wrapping_add(offset))
    }

    /// As `range`, for one `T` that must be naturally aligned.
    #[inline]
    fn aligned<T>(&self, offset: usize) -> Result<*mut T, AccessError> {
        let width = size_of::<T>();
        let p = self.range(offset, width)?;
        let ok = p as usize % align_of::<T>() == 0;
        debug_assert!(
            ok,
            "a {width}-byte access at offset {offset:#x} is misaligned"
        );
        if !ok {
            return Err(AccessError::Misaligned { offset, width });
        }
        Ok(p.cast())
    }

    /// The `len` bytes at `offset`, as a slice of the same memory.
    #[inline]
    pub fn subslice(&self, offset: usize, len: usize) -> Result<VolatileSlice<'a>, AccessError> {
        let p = self.range(offset, len)?;
        // SAFETY: a sub-range of memory valid for `'a` (checked), under the same contract.
        Ok(unsafe { VolatileSlice::new(NonNull::new_unchecked(p), len) })
    }

    /// Copies `dst.len()` bytes at `offset` into `dst`.
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), AccessError> {
        let src = self.range(offset, dst.len())?;
        // SAFETY: in bounds (checked); `dst` is ordinary memory, so the two cannot
        // overlap (nothing holds a reference into this memory).
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the memory at `offset`.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), AccessError> {
        let dst = self.range(offset, src.len())?;
        // SAFETY: as in `read`, reversed.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    #[inline]
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), AccessError> {
        let dst = self.range(offset, len)?;
        // SAFETY: in bounds (checked).
        unsafe { std::ptr::write_bytes(dst, byte, len) };
        Ok(())
    }

    /// Copies `len` bytes at `offset` to `dst` at `dst_offset` (the two may overlap).
    #[inline]
    pub fn copy_to(
        &self,
        offset: usize,
        dst: &VolatileSlice<'_>,
        dst_offset: usize,
        len: usize,
    ) -> Result<(), AccessError> {
        let src = self.range(offset, len)?;
        let to = dst.range(dst_offset, len)?;
        // SAFETY: both ranges are in bounds (checked); `copy` allows overlap.
        unsafe { std::ptr::copy(src, to, len) };
        Ok(())
    }

    /// An empty slice, over no memory.
    pub const fn empty() -> VolatileSlice<'static> {
        VolatileSlice {
            ptr: NonNull::dangling(),
            len: 0,
            _memory: PhantomData,
        }
    }

    /// Sets every byte to zero.
    pub fn zero(&self) {
        // The whole slice: always in range.
        let _ = self.fill(0, self.len, 0);
    }

    /// Reads a `T` at `offset`.
    ///
    /// The copy is made with volatile loads of the widest of 8, 4 or 1 bytes that the
    /// address and `size_of::<T>()` allow, so a 64-byte entry at an 8-aligned offset is
    /// eight 8-byte loads, and no load tears an aligned field of that width.
    #[inline(always)]
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, AccessError> {
        let src = self.range(offset, size_of::<T>())?;
        let mut value = T::new_zeroed();
        let dst = value.as_mut_bytes();
        // SAFETY: `src..src + size_of::<T>()` is in bounds (checked) and `dst` is a local
        // of the same length.
        unsafe { copy_from_volatile(src, dst.as_mut_ptr(), dst.len()) };
        Ok(value)
    }

    /// Writes `value` at `offset`, with volatile stores chosen as in
    /// [`read_obj`](Self::read_obj).
    #[inline(always)]
    pub fn write_obj<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) -> Result<(), AccessError> {
        let src = value.as_bytes();
        let dst = self.range(offset, src.len())?;
        // SAFETY: `dst..dst + len` is in bounds (checked); `src` is ordinary memory.
        unsafe { copy_to_volatile(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// One volatile load of the naturally aligned `T` at `offset`.
    #[inline]
    fn load<T: FromBytes>(&self, offset: usize) -> Result<T, AccessError> {
        let p = self.aligned::<T>(offset)?;
        // SAFETY: in bounds and aligned (checked); any bit pattern is a valid `T`.
        Ok(unsafe { p.read_volatile() })
    }

    /// One volatile store of `value` to the naturally aligned `T` at `offset`.
    #[inline]
    fn store<T: IntoBytes>(&self, offset: usize, value: T) -> Result<(), AccessError> {
        let p = self.aligned::<T>(offset)?;
        // SAFETY: in bounds and aligned (checked).
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Reads the little-endian `u32` at `offset` (4-aligned) with one volatile load.
    #[inline]
    pub fn read_u32(&self, offset: usize) -> Result<u32, AccessError> {
        self.load(offset).map(u32::from_le)
    }

    /// Writes `value` little-endian at `offset` (4-aligned) with one volatile store.
    #[inline]
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<(), AccessError> {
        self.store(offset, value.to_le())
    }

    /// Reads the little-endian `u64` at `offset` (8-aligned) with one volatile load.
    #[inline]
    pub fn read_u64(&self, offset: usize) -> Result<u64, AccessError> {
        self.load(offset).map(u64::from_le)
    }

    /// Writes `value` little-endian at `offset` (8-aligned) with one volatile store.
    #[inline]
    pub fn write_u64(&self, offset: usize, value: u64) -> Result<(), AccessError> {
        self.store(offset, value.to_le())
    }

    /// The `u32` at `offset` (4-aligned) as an atomic, for memory the other side also
    /// accesses atomically (shadow doorbells, EventIdx, a completion's phase dword).
    #[inline]
    fn atomic_u32(&self, offset: usize) -> Result<&'a AtomicU32, AccessError> {
        let p = self.aligned::<u32>(offset)?;
        // SAFETY: in bounds and aligned (checked), valid for `'a`; an `AtomicU32` may
        // change underneath its reference, so this is not a reference to plain bytes.
        Ok(unsafe { AtomicU32::from_ptr(p) })
    }

    /// Atomically loads the little-endian `u32` at `offset` (4-aligned).
    #[inline]
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Result<u32, AccessError> {
        Ok(u32::from_le(self.atomic_u32(offset)?.load(order)))
    }

    /// Atomically stores `value` little-endian at `offset` (4-aligned).
    #[inline]
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) -> Result<(), AccessError> {
        self.atomic_u32(offset)?.store(value.to_le(), order);
        Ok(())
    }
}

/// Copies `len` bytes from memory at `src` with volatile loads into local `dst`, 8, 4
/// or 1 bytes at a time as the alignment of `src` and `len` allow.
///
/// # Safety
/// `src..src + len` must be readable and `dst..dst + len` writable, not overlapping.
#[inline(always)]
unsafe fn copy_from_volatile(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: every access below is at `i < len` (or `i + width <= len`) from `src` and
    // `dst`, in range by the caller's contract; volatile loads are aligned by the tests
    // on `src` (the local side is accessed unaligned).
    unsafe {
        // For a fixed `len` the width is picked by one alignment test of `src`.
        if src as usize % 8 == 0 && len % 8 == 0 {
            for i in (0..len).step_by(8) {
                let v = src.add(i).cast::<u64>().read_volatile();
                dst.add(i).cast::<u64>().write_unaligned(v);
            }
        } else if src as usize % 4 == 0 && len % 4 == 0 {
            for i in (0..len).step_by(4) {
                let v = src.add(i).cast::<u32>().read_volatile();
                dst.add(i).cast::<u32>().write_unaligned(v);
            }
        } else {
            for i in 0..len {
                dst.add(i).write(src.add(i).read_volatile());
            }
        }
    }
}

/// Copies `len` bytes from local `src` to memory at `dst` with volatile stores, chosen
/// as in [`copy_from_volatile`] by the alignment of `dst`.
///
/// # Safety
/// As for [`copy_from_volatile`].
#[inline(always)]
unsafe fn copy_to_volatile(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: as in `copy_from_volatile`, with the volatile side at `dst`.
    unsafe {
        if dst as usize % 8 == 0 && len % 8 == 0 {
            for i in (0..len).step_by(8) {
                let v = src.add(i).cast::<u64>().read_unaligned();
                dst.add(i).cast::<u64>().write_volatile(v);
            }
        } else if dst as usize % 4 == 0 && len % 4 == 0 {
            for i in (0..len).step_by(4) {
                let v = src.add(i).cast::<u32>().read_unaligned();
                dst.add(i).cast::<u32>().write_volatile(v);
            }
        } else {
            for i in 0..len {
                dst.add(i).write_volatile(src.add(i).read());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DmaRegion, PageSize, RegionOptions};

    fn region() -> DmaRegion {
        let options = RegionOptions {
            page_size: PageSize::SIZE_4K,
            allow_fallback: false,
            shared: false,
            pinned: true,
        };
        DmaRegion::new(4096, &options).unwrap()
    }

    #[test]
    fn typed_objects_round_trip_at_aligned_and_unaligned_offsets() {
        let region = region();
        let mem = region.mem();
        let entry: [u64; 8] = std::array::from_fn(|i| 0x0101_0101_0101_0101 * i as u64);
        mem.write_obj(64, &entry).unwrap();
        assert_eq!(mem.read_obj::<[u64; 8]>(64).unwrap(), entry);
        let odd: [u8; 7] = *b"volatil";
        mem.write_obj(3, &odd).unwrap();
        assert_eq!(mem.read_obj::<[u8; 7]>(3).unwrap(), odd);
        let words = [1u32, 2, 3];
        mem.write_obj(200, &words).unwrap();
        assert_eq!(mem.read_obj::<[u32; 3]>(200).unwrap(), words);
    }

    #[test]
    fn integers_are_little_endian_and_atomics_see_the_same_bytes() {
        let region = region();
        let mem = region.mem();
        mem.write_u64(8, 0x0807_0605_0403_0201).unwrap();
        let mut b = [0u8; 8];
        mem.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(mem.read_u32(12).unwrap(), 0x0807_0605);
        mem.store_u32(16, 7, Ordering::Release).unwrap();
        assert_eq!(mem.load_u32(16, Ordering::Acquire).unwrap(), 7);
        assert_eq!(mem.read_u32(16).unwrap(), 7);
        mem.zero();
        assert_eq!(mem.read_u64(8).unwrap(), 0);
    }

    #[test]
    fn an_access_outside_the_slice_panics_in_debug_and_is_an_error_in_release() {
        let region = region();
        let mem = region.mem().subslice(0, 100).unwrap();
        let r = std::panic::catch_unwind(|| mem.write_u32(100, 1));
        if cfg!(debug_assertions) {
            assert!(r.is_err());
        } else {
            assert_eq!(
                r.unwrap(),
                Err(AccessError::OutOfBounds {
                    offset: 100,
                    len: 4,
                    size: 100
                })
            );
        }
        let r = std::panic::catch_unwind(|| mem.read_u64(4));
        if cfg!(debug_assertions) {
            assert!(r.is_err());
        } else {
            assert_eq!(
                r.unwrap(),
                Err(AccessError::Misaligned {
                    offset: 4,
                    width: 8
                })
            );
        }
        assert_eq!(
            AccessError::OutOfBounds {
                offset: 0x60,
                len: 8,
                size: 0x64
            }
            .to_string(),
            "an access of 0x8 bytes at offset 0x60 is outside memory of 0x64 bytes"
        );
    }
}
