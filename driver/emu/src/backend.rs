//! Where namespace data lives: sparse RAM, a file, or nowhere (null).
//!
//! Offsets are byte offsets within the backing store; callers check ranges first.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr;

use crate::iommu::HostSlice;

/// Sparse RAM: one private anonymous mapping reserved up front (without swap
/// reservation). The kernel hands out zeroed pages on first write, 4 KiB at a time, and
/// reads of pages never written see its shared zero page, so an untouched namespace
/// costs no memory and a write costs no more than the pages it touches.
pub(crate) struct RamStore {
    /// Start of the mapping (dangling when `len` is 0).
    base: *mut u8,
    len: usize,
}

// SAFETY: the store owns its mapping, which lives until drop; all access goes through
// raw copies into and out of it, as it would for a device's memory shared by its
// queues (concurrent commands on the same blocks race as they would on hardware).
unsafe impl Send for RamStore {}
// SAFETY: as above; `&self` methods only copy bytes in and out of the mapping.
unsafe impl Sync for RamStore {}

impl RamStore {
    /// Reserves `size` bytes of address space.
    pub(crate) fn new(size: u64) -> io::Result<Self> {
        let len = usize::try_from(size).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "size exceeds the address space")
        })?;
        if len == 0 {
            return Ok(Self {
                base: ptr::NonNull::dangling().as_ptr(),
                len,
            });
        }
        // SAFETY: an anonymous mapping at an address the kernel picks; no existing memory
        // is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: p.cast(),
            len,
        })
    }

    /// The address of `off..off+len` in the mapping, or an error past its end.
    fn at(&self, off: u64, len: usize) -> io::Result<*mut u8> {
        match usize::try_from(off) {
            Ok(o) if o.checked_add(len).is_some_and(|end| end <= self.len) => {
                Ok(self.base.wrapping_add(o))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range beyond the end of the RAM namespace",
            )),
        }
    }

    /// Zeroes `off..off+len`: whole pages go back to the kernel (they read as zeros and
    /// free their memory), partial pages at the ends are cleared in place.
    fn zero(&self, off: u64, len: usize) -> io::Result<()> {
        let start = self.at(off, len)?;
        let page = 4096usize;
        let first = (off as usize)
            .next_multiple_of(page)
            .min(off as usize + len);
        let last = ((off as usize + len) / page * page).max(first);
        // SAFETY: both partial pieces lie inside the checked range of the mapping.
        unsafe {
            ptr::write_bytes(start, 0, first - off as usize);
            ptr::write_bytes(self.base.add(last), 0, off as usize + len - last);
        }
        if last > first {
            // SAFETY: `first..last` is page-aligned and inside the mapping this store owns;
            // MADV_DONTNEED on a private anonymous mapping makes the pages read as zeros.
            let r = unsafe {
                libc::madvise(
                    self.base.add(first).cast(),
                    last - first,
                    libc::MADV_DONTNEED,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Drop for RamStore {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `base..base+len` is the mapping made in `new`, unmapped only here.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// Namespace data storage.
pub(crate) enum Backend {
    /// Sparse RAM.
    Ram(RamStore),
    /// A file region starting at `base`.
    File {
        /// The open file (shared by all namespaces of the controller).
        file: std::sync::Arc<File>,
        /// Byte offset of this namespace in the file.
        base: u64,
    },
    /// No data.
    Null,
}

impl Backend {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Backend::Null)
    }

    /// Copies `dst.len()` bytes at `off` into host memory.
    pub(crate) fn read_host(&self, off: u64, dst: HostSlice) -> io::Result<()> {
        match self {
            Backend::Ram(ram) => {
                let from = ram.at(off, dst.len())?;
                // SAFETY: `from` has `dst.len()` readable bytes (checked by `at`); the host
                // slice is valid for that many bytes per its invariant; DMA memory and the
                // store's mapping never overlap.
                unsafe { ptr::copy_nonoverlapping(from, dst.as_ptr(), dst.len()) };
                Ok(())
            }
            Backend::File { file, base } => {
                let mut done = 0;
                while done < dst.len() {
                    // SAFETY: the destination range is inside the host slice; `pread`
                    // writes at most `len - done` bytes there.
                    let r = unsafe {
                        libc::pread(
                            file.as_raw_fd(),
                            dst.as_ptr().add(done).cast(),
                            dst.len() - done,
                            (base + off + done as u64) as libc::off_t,
                        )
                    };
                    match r {
                        0 => {
                            // Beyond the end of a sparse file: zeros.
                            dst.copy_from(done, &ZEROS[..(dst.len() - done).min(ZEROS.len())]);
                            done += (dst.len() - done).min(ZEROS.len());
                        }
                        r if r > 0 => done += r as usize,
                        _ => {
                            let e = io::Error::last_os_error();
                            if e.kind() != io::ErrorKind::Interrupted {
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(())
            }
            Backend::Null => Ok(()),
        }
    }

    /// Copies `src.len()` bytes from host memory to `off`.
    pub(crate) fn write_host(&self, off: u64, src: HostSlice) -> io::Result<()> {
        match self {
            Backend::Ram(ram) => {
                let to = ram.at(off, src.len())?;
                // SAFETY: `to` has `src.len()` writable bytes (checked by `at`); the host
                // slice is valid for that many bytes; the two never overlap.
                unsafe { ptr::copy_nonoverlapping(src.as_ptr(), to, src.len()) };
                Ok(())
            }
            Backend::File { file, base } => {
                let mut done = 0;
                while done < src.len() {
                    // SAFETY: the source range is inside the host slice; `pwrite` only
                    // reads it.
                    let r = unsafe {
                        libc::pwrite(
                            file.as_raw_fd(),
                            src.as_ptr().add(done).cast(),
                            src.len() - done,
                            (base + off + done as u64) as libc::off_t,
                        )
                    };
                    if r > 0 {
                        done += r as usize;
                    } else {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
            Backend::Null => Ok(()),
        }
    }

    /// Reads into a device-side buffer.
    pub(crate) fn read_buf(&self, off: u64, dst: &mut [u8]) -> io::Result<()> {
        match self {
            Backend::Ram(ram) => {
                let from = ram.at(off, dst.len())?;
                // SAFETY: `from` has `dst.len()` readable bytes (checked by `at`) outside `dst`.
                unsafe { ptr::copy_nonoverlapping(from, dst.as_mut_ptr(), dst.len()) };
                Ok(())
            }
            Backend::File { file, base } => {
                let mut done = 0;
                while done < dst.len() {
                    match file.read_at(&mut dst[done..], base + off + done as u64) {
                        Ok(0) => {
                            dst[done..].fill(0);
                            break;
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Backend::Null => {
                dst.fill(0);
                Ok(())
            }
        }
    }

    /// Writes from a device-side buffer.
    pub(crate) fn write_buf(&self, off: u64, src: &[u8]) -> io::Result<()> {
        match self {
            Backend::Ram(ram) => {
                let to = ram.at(off, src.len())?;
                // SAFETY: `to` has `src.len()` writable bytes (checked by `at`) outside `src`.
                unsafe { ptr::copy_nonoverlapping(src.as_ptr(), to, src.len()) };
                Ok(())
            }
            Backend::File { file, base } => file.write_all_at(src, base + off),
            Backend::Null => Ok(()),
        }
    }

    /// Zeroes `len` bytes at `off` (Write Zeroes, deallocate).
    pub(crate) fn zero(&self, off: u64, len: u64) -> io::Result<()> {
        match self {
            Backend::Ram(ram) => {
                let len = usize::try_from(len).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "zero range exceeds the address space",
                    )
                })?;
                ram.zero(off, len)
            }
            Backend::File { file, base } => {
                // Punch a hole (reads return zeros); fall back to writing zeros where the
                // file system cannot.
                // SAFETY: plain system call on an open descriptor; no memory is passed.
                let punched = unsafe {
                    libc::fallocate(
                        file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        (base + off) as libc::off_t,
                        len as libc::off_t,
                    )
                } == 0;
                if punched {
                    return Ok(());
                }
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(ZEROS.len() as u64) as usize;
                    self.write_buf(off + done, &ZEROS[..n])?;
                    done += n as u64;
                }
                Ok(())
            }
            Backend::Null => Ok(()),
        }
    }

    /// Makes written data durable on the host (file backing only).
    pub(crate) fn sync(&self) -> io::Result<()> {
        match self {
            Backend::File { file, .. } => file.sync_data(),
            _ => Ok(()),
        }
    }
}

static ZEROS: [u8; 65536] = [0; 65536];
