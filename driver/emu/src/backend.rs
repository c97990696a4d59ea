//! Where namespace data lives: sparse RAM, a file, or nowhere (null).
//!
//! Offsets are byte offsets within the backing store; callers check ranges first.

use std::alloc::Layout;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::iommu::HostSlice;

/// Sparse RAM: fixed-size chunks allocated (zeroed) on first write.
pub(crate) struct RamStore {
    chunk_shift: u32,
    chunks: Box<[AtomicPtr<u8>]>,
}

impl RamStore {
    pub(crate) fn new(size: u64) -> Self {
        // 64 KiB chunks, larger for huge stores so the table stays at most 1M entries.
        let mut chunk_shift = 16;
        while size >> chunk_shift > 1 << 20 {
            chunk_shift += 1;
        }
        let count = size.div_ceil(1 << chunk_shift) as usize;
        let chunks = (0..count)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Self {
            chunk_shift,
            chunks,
        }
    }

    fn layout(&self) -> Layout {
        // Chunk sizes are powers of two between 64 KiB and 2^63, so this cannot fail.
        Layout::from_size_align(1 << self.chunk_shift, 4096).expect("valid chunk layout")
    }

    /// The chunk holding `index`, allocating it if `create`.
    fn chunk(&self, index: usize, create: bool) -> *mut u8 {
        let slot = &self.chunks[index];
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() || !create {
            return p;
        }
        // SAFETY: the layout has non-zero size.
        let fresh = unsafe { std::alloc::alloc_zeroed(self.layout()) };
        if fresh.is_null() {
            std::alloc::handle_alloc_error(self.layout());
        }
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `alloc_zeroed` with this layout and was never
                // published.
                unsafe { std::alloc::dealloc(fresh, self.layout()) };
                winner
            }
        }
    }

    /// Calls `f(chunk_ptr_or_null, offset_in_request, len)` for each chunk piece.
    fn walk(&self, off: u64, len: usize, create: bool, mut f: impl FnMut(*mut u8, usize, usize)) {
        let size = 1usize << self.chunk_shift;
        let mut done = 0;
        while done < len {
            let pos = off + done as u64;
            let index = (pos >> self.chunk_shift) as usize;
            let within = (pos as usize) & (size - 1);
            let n = (size - within).min(len - done);
            let chunk = self.chunk(index, create);
            let at = if chunk.is_null() {
                chunk
            } else {
                chunk.wrapping_add(within)
            };
            f(at, done, n);
            done += n;
        }
    }
}

impl Drop for RamStore {
    fn drop(&mut self) {
        let layout = self.layout();
        for slot in self.chunks.iter() {
            let p = slot.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: every non-null slot holds a pointer from `alloc_zeroed(layout)`.
                unsafe { std::alloc::dealloc(p, layout) };
            }
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
                ram.walk(off, dst.len(), false, |chunk, at, n| {
                    // SAFETY: `dst.as_ptr()+at..+n` is inside the host slice (valid per its
                    // invariant); a non-null `chunk` points at `n` readable bytes of one
                    // chunk allocation; DMA memory and chunks never overlap.
                    unsafe {
                        if chunk.is_null() {
                            ptr::write_bytes(dst.as_ptr().add(at), 0, n);
                        } else {
                            ptr::copy_nonoverlapping(chunk, dst.as_ptr().add(at), n);
                        }
                    }
                });
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
                ram.walk(off, src.len(), true, |chunk, at, n| {
                    // SAFETY: `chunk` is non-null (created) and has `n` writable bytes;
                    // the source range is inside the host slice.
                    unsafe { ptr::copy_nonoverlapping(src.as_ptr().add(at), chunk, n) };
                });
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
                let base = dst.as_mut_ptr();
                ram.walk(off, dst.len(), false, |chunk, at, n| {
                    // SAFETY: `base+at..+n` is inside `dst`; a non-null chunk has `n` bytes.
                    unsafe {
                        if chunk.is_null() {
                            ptr::write_bytes(base.add(at), 0, n);
                        } else {
                            ptr::copy_nonoverlapping(chunk, base.add(at), n);
                        }
                    }
                });
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
                ram.walk(off, src.len(), true, |chunk, at, n| {
                    // SAFETY: `chunk` is non-null and has `n` writable bytes; the source is
                    // inside `src`.
                    unsafe { ptr::copy_nonoverlapping(src.as_ptr().add(at), chunk, n) };
                });
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
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(1 << 30) as usize;
                    ram.walk(off + done, n, false, |chunk, _, n| {
                        if !chunk.is_null() {
                            // SAFETY: a non-null chunk piece has `n` writable bytes.
                            unsafe { ptr::write_bytes(chunk, 0, n) };
                        }
                    });
                    done += n as u64;
                }
                Ok(())
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
