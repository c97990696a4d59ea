//! Where namespace data lives: sparse RAM, a file, or nowhere (null).
//!
//! Offsets are byte offsets within the backing store; callers check ranges first.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use hugepages::VolatileSlice;
use memmap2::{MmapOptions, MmapRaw};

use crate::iommu::HostSlice;

/// Bytes one bit of the written-page map stands for (the kernel's page size).
const PAGE: usize = 4096;

/// Sparse RAM: one private anonymous mapping reserved up front (without swap
/// reservation). The kernel hands out zeroed pages on first write, a page at a time, so
/// an untouched namespace costs no memory and a write costs only the pages it touches.
/// A bitmap of written pages lets reads of the rest fill zeros without touching the
/// mapping at all.
pub(crate) struct RamStore {
    // Field order is drop order: `mem` points into `map`.
    /// The mapping's bytes (empty when the store is).
    mem: VolatileSlice<'static>,
    /// The mapping; `None` when the store is empty. Held for its `Drop`, which unmaps.
    _map: Option<MmapRaw>,
    len: usize,
    /// Bit `p` set once a write reached page `p`; clear bits read as zeros.
    written: Box<[AtomicU64]>,
}

impl RamStore {
    /// Reserves `size` bytes of address space.
    pub(crate) fn new(size: u64) -> io::Result<Self> {
        let len = usize::try_from(size).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "size exceeds the address space")
        })?;
        let written = (0..len.div_ceil(PAGE).div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        if len == 0 {
            return Ok(Self {
                mem: VolatileSlice::empty(),
                _map: None,
                len,
                written,
            });
        }
        let map = MmapRaw::from(MmapOptions::new().len(len).no_reserve_swap().map_anon()?);
        let ptr = ptr::NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // SAFETY: `map` is `len` readable and writable bytes that live as long as `mem`
        // (both fields of this value, `mem` dropped first); nothing references them.
        // Concurrent commands on the same blocks race as they would on hardware.
        let mem = unsafe { VolatileSlice::new(ptr, len) };
        Ok(Self {
            mem,
            _map: Some(map),
            len,
            written,
        })
    }

    /// Checks that `off..off+len` lies inside the store; returns `off` as an index.
    fn check(&self, off: u64, len: usize) -> io::Result<usize> {
        match usize::try_from(off) {
            Ok(o) if o.checked_add(len).is_some_and(|end| end <= self.len) => Ok(o),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range beyond the end of the RAM namespace",
            )),
        }
    }

    fn is_written(&self, page: usize) -> bool {
        self.written[page / 64].load(Ordering::Acquire) & (1 << (page % 64)) != 0
    }

    /// Calls `f(offset_in_range, piece_len, written)` for each page piece of `off..off+len`.
    fn pages(&self, off: usize, len: usize, mut f: impl FnMut(usize, usize, bool)) {
        let mut done = 0;
        while done < len {
            let pos = off + done;
            let n = (PAGE - pos % PAGE).min(len - done);
            f(done, n, self.is_written(pos / PAGE));
            done += n;
        }
    }

    /// Copies `dst.len()` bytes at `off` to host memory; pages never written read as
    /// zeros.
    fn copy_out(&self, off: u64, dst: &VolatileSlice<'_>) -> io::Result<()> {
        let o = self.check(off, dst.len())?;
        let mut r = Ok(());
        self.pages(o, dst.len(), |at, n, written| {
            if r.is_ok() {
                r = if written {
                    self.mem.copy_to(o + at, dst, at, n)
                } else {
                    dst.fill(at, n, 0)
                };
            }
        });
        r.map_err(io::Error::other)
    }

    /// Copies `dst.len()` bytes at `off` into `dst`; pages never written read as zeros.
    fn read_into(&self, off: u64, dst: &mut [u8]) -> io::Result<()> {
        let o = self.check(off, dst.len())?;
        let mut r = Ok(());
        self.pages(o, dst.len(), |at, n, written| {
            if written && r.is_ok() {
                r = self.mem.read(o + at, &mut dst[at..at + n]);
            } else {
                dst[at..at + n].fill(0);
            }
        });
        r.map_err(io::Error::other)
    }

    /// Copies `src.len()` bytes from host memory to `off`.
    fn copy_in(&self, off: u64, src: &VolatileSlice<'_>) -> io::Result<()> {
        let o = self.check(off, src.len())?;
        src.copy_to(0, &self.mem, o, src.len())
            .map_err(io::Error::other)?;
        self.mark_written(o, src.len());
        Ok(())
    }

    /// Copies `src` to `off`.
    fn write_from(&self, off: u64, src: &[u8]) -> io::Result<()> {
        let o = self.check(off, src.len())?;
        self.mem.write(o, src).map_err(io::Error::other)?;
        self.mark_written(o, src.len());
        Ok(())
    }

    /// Marks the pages of `o..o+len` written, after the copy, so a reader that sees the
    /// bit sees the data.
    fn mark_written(&self, o: usize, len: usize) {
        if len > 0 {
            for page in o / PAGE..=(o + len - 1) / PAGE {
                let bit = 1 << (page % 64);
                let word = &self.written[page / 64];
                if word.load(Ordering::Relaxed) & bit == 0 {
                    word.fetch_or(bit, Ordering::Release);
                }
            }
        }
    }

    /// Zeroes `off..off+len`: whole pages go back to the kernel and read as zeros
    /// again; written pages cut by the range are cleared in place.
    fn zero(&self, off: u64, len: usize) -> io::Result<()> {
        let o = self.check(off, len)?;
        let first = o.next_multiple_of(PAGE).min(o + len);
        let last = ((o + len) / PAGE * PAGE).max(first);
        for (from, to) in [(o, first), (last, o + len)] {
            if from < to && self.is_written(from / PAGE) {
                self.mem
                    .fill(from, to - from, 0)
                    .map_err(io::Error::other)?;
            }
        }
        if last > first {
            for page in first / PAGE..last / PAGE {
                self.written[page / 64].fetch_and(!(1 << (page % 64)), Ordering::AcqRel);
            }
            // SAFETY: `first..last` is page-aligned and inside the mapping this store owns;
            // MADV_DONTNEED on a private anonymous mapping frees the pages, which read as
            // zeros if touched again.
            let r = unsafe {
                libc::madvise(
                    self.mem.as_ptr().add(first).cast(),
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
            Backend::Ram(ram) => ram.copy_out(off, &dst.mem()),
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
            Backend::Ram(ram) => ram.copy_in(off, &src.mem()),
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
            Backend::Ram(ram) => ram.read_into(off, dst),
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
            Backend::Ram(ram) => ram.write_from(off, src),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &Backend, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0xee; len];
        b.read_buf(off, &mut v).unwrap();
        v
    }

    #[test]
    fn ram_reads_zeros_where_nothing_was_written_and_data_where_it_was() {
        let b = Backend::Ram(RamStore::new(64 * 1024).unwrap());
        assert_eq!(read(&b, 0, 16384), vec![0; 16384]);
        // A write straddling a page boundary marks both pages.
        b.write_buf(4000, &[7; 200]).unwrap();
        let got = read(&b, 0, 8192);
        assert!(got[..4000].iter().all(|&x| x == 0));
        assert!(got[4000..4200].iter().all(|&x| x == 7));
        assert!(got[4200..].iter().all(|&x| x == 0));
    }

    #[test]
    fn ram_zero_clears_partial_and_whole_pages_and_keeps_neighbours() {
        let b = Backend::Ram(RamStore::new(64 * 1024).unwrap());
        b.write_buf(0, &[9; 5 * 4096]).unwrap();
        b.zero(1000, 3 * 4096).unwrap();
        let got = read(&b, 0, 5 * 4096);
        assert!(got[..1000].iter().all(|&x| x == 9));
        assert!(got[1000..1000 + 3 * 4096].iter().all(|&x| x == 0));
        assert!(got[1000 + 3 * 4096..].iter().all(|&x| x == 9));
        // A page given back reads as zeros and takes new data.
        b.write_buf(4096, &[3; 512]).unwrap();
        assert_eq!(read(&b, 4096, 512), vec![3; 512]);
    }

    #[test]
    fn ram_access_past_the_end_is_an_error_not_a_fault() {
        let b = Backend::Ram(RamStore::new(8192).unwrap());
        let mut buf = [0u8; 512];
        assert!(b.read_buf(8192 - 256, &mut buf).is_err());
        assert!(b.write_buf(u64::MAX - 10, &buf).is_err());
        assert!(b.zero(8192, 1).is_err());
    }
}
