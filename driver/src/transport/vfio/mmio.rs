//! BAR0 mapped into this process: the only place that touches device registers.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// A BAR mapped with `mmap` on the VFIO device fd, accessed with volatile loads and stores.
///
/// Invariant: `ptr..ptr + len` is a live shared mapping of device memory for the whole
/// life of the value (unmapped only in `Drop`), and `ptr` is page aligned.
#[derive(Debug)]
pub struct MappedBar {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain device memory reached by volatile accesses; it has no
// thread affinity, and concurrent 32-bit register accesses are what the device expects.
unsafe impl Send for MappedBar {}
// SAFETY: as above; `&MappedBar` only offers volatile loads and stores.
unsafe impl Sync for MappedBar {}

impl MappedBar {
    /// Maps `len` bytes of the device fd at file offset `offset` (a region's offset).
    pub fn map(fd: RawFd, offset: u64, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty BAR"));
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BAR offset too large"))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL) aliases no Rust
        // object; failure is reported as MAP_FAILED and checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(MappedBar { ptr, len })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for a mapped BAR).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn in_bounds(&self, offset: usize) -> bool {
        offset % 4 == 0 && offset.checked_add(4).is_some_and(|end| end <= self.len)
    }

    /// Reads the register at `offset`; an out-of-range or misaligned offset reads all ones,
    /// as a vanished device would.
    #[inline]
    pub fn read32(&self, offset: usize) -> u32 {
        if !self.in_bounds(offset) {
            return u32::MAX;
        }
        // SAFETY: `offset + 4 <= len` and `offset` is 4-aligned, so the access lies inside
        // the live mapping (type invariant) and is aligned for u32.
        unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() }
    }

    /// Writes the register at `offset`; an out-of-range or misaligned offset is ignored.
    #[inline]
    pub fn write32(&self, offset: usize, value: u32) {
        if !self.in_bounds(offset) {
            tracing::warn!(offset, "register write outside BAR0 ignored");
            return;
        }
        // SAFETY: as in `read32`: in bounds of the live mapping and aligned.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value)
        }
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr + len` is the mapping created in `map`, and no access can
        // follow because this value is being dropped.
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "munmap of BAR0 failed");
        }
    }
}
