//! Where namespace data lives: sparse RAM, a file, or nowhere (null).
//!
//! Offsets are byte offsets within the backing store; callers check ranges first.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hugepages::VolatileSlice;
use memmap2::{MmapOptions, MmapRaw};

use crate::iommu::HostSlice;

/// Bytes one bit of a chunk's written-page map stands for (the kernel's page size).
const PAGE: usize = 4096;
/// Bytes of namespace one chunk covers: one mapping and its written-page map (128 KiB),
/// both made on the first write into the chunk's range.
const CHUNK_BYTES: usize = 1 << 32;

/// One chunk of a RAM store: a private anonymous mapping (without swap reservation),
/// whose pages the kernel hands out zeroed on first write, and a bitmap of the pages
/// written, so reads of the rest fill zeros without touching the mapping.
struct Chunk {
    // Field order is drop order: `mem` points into `_map`.
    /// The mapping's bytes.
    mem: VolatileSlice<'static>,
    /// The mapping, held for its `Drop`, which unmaps.
    _map: MmapRaw,
    /// Bit `p` set once a write reached page `p` of the chunk; clear bits read as zeros.
    written: Box<[AtomicU64]>,
}

impl Chunk {
    fn new(len: usize) -> io::Result<Self> {
        let map = MmapRaw::from(MmapOptions::new().len(len).no_reserve_swap().map_anon()?);
        let ptr = ptr::NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // SAFETY: `map` is `len` readable and writable bytes that live as long as `mem`
        // (both fields of this value, `mem` dropped first); nothing references them.
        // Concurrent commands on the same blocks race as they would on hardware.
        let mem = unsafe { VolatileSlice::new(ptr, len) };
        let written = (0..len.div_ceil(PAGE).div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Self {
            mem,
            _map: map,
            written,
        })
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

    /// Zeroes `o..o+len`: whole pages go back to the kernel and read as zeros again;
    /// written pages cut by the range are cleared in place.
    fn zero(&self, o: usize, len: usize) -> io::Result<()> {
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
            // SAFETY: `first..last` is page-aligned and inside the mapping this chunk
            // owns; MADV_DONTNEED on a private anonymous mapping frees the pages, which
            // read as zeros if touched again.
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

/// Sparse RAM in chunks of `CHUNK_BYTES`, each mapped on the first write into it: an
/// untouched namespace of any size costs only its chunk table (under 64 bytes per 4 GiB) and
/// no address space, and a write costs only the pages it touches. Finding a chunk is
/// one acquire load; no lock.
pub(crate) struct RamStore {
    /// Chunk `c` holds bytes `c * CHUNK_BYTES..`; an unset chunk reads as zeros.
    chunks: Box<[OnceLock<Chunk>]>,
    len: usize,
}

impl RamStore {
    /// A store of `size` bytes, all zeros.
    pub(crate) fn new(size: u64) -> io::Result<Self> {
        let len = usize::try_from(size).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "size exceeds the address space")
        })?;
        let chunks = (0..len.div_ceil(CHUNK_BYTES))
            .map(|_| OnceLock::new())
            .collect();
        Ok(Self { chunks, len })
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

    /// Calls `f(chunk, offset_in_chunk, offset_in_range, piece_len)` for each chunk
    /// piece of `o..o+len` (a range `check` accepted), stopping at the first error.
    fn pieces(
        &self,
        o: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, usize, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let pos = o + done;
            let n = (CHUNK_BYTES - pos % CHUNK_BYTES).min(len - done);
            f(pos / CHUNK_BYTES, pos % CHUNK_BYTES, done, n)?;
            done += n;
        }
        Ok(())
    }

    /// Chunk `c`, mapped now if no write reached it before.
    fn chunk_for_write(&self, c: usize) -> io::Result<&Chunk> {
        let cell = &self.chunks[c];
        if let Some(chunk) = cell.get() {
            return Ok(chunk);
        }
        let len = CHUNK_BYTES.min(self.len - c * CHUNK_BYTES);
        // A writer that loses the race to map the chunk drops (unmaps) its own.
        let _ = cell.set(Chunk::new(len)?);
        cell.get()
            .ok_or_else(|| io::Error::other("RAM namespace chunk not mapped"))
    }

    /// Copies `dst.len()` bytes at `off` to host memory; pages never written read as
    /// zeros.
    fn copy_out(&self, off: u64, dst: &VolatileSlice<'_>) -> io::Result<()> {
        let o = self.check(off, dst.len())?;
        self.pieces(o, dst.len(), |c, in_chunk, at, n| {
            let Some(chunk) = self.chunks[c].get() else {
                return dst.fill(at, n, 0).map_err(io::Error::other);
            };
            let mut r = Ok(());
            chunk.pages(in_chunk, n, |p, pn, written| {
                if r.is_ok() {
                    r = if written {
                        chunk.mem.copy_to(in_chunk + p, dst, at + p, pn)
                    } else {
                        dst.fill(at + p, pn, 0)
                    };
                }
            });
            r.map_err(io::Error::other)
        })
    }

    /// Copies `dst.len()` bytes at `off` into `dst`; pages never written read as zeros.
    fn read_into(&self, off: u64, dst: &mut [u8]) -> io::Result<()> {
        let o = self.check(off, dst.len())?;
        self.pieces(o, dst.len(), |c, in_chunk, at, n| {
            let dst = &mut dst[at..at + n];
            let Some(chunk) = self.chunks[c].get() else {
                dst.fill(0);
                return Ok(());
            };
            let mut r = Ok(());
            chunk.pages(in_chunk, n, |p, pn, written| {
                if written && r.is_ok() {
                    r = chunk.mem.read(in_chunk + p, &mut dst[p..p + pn]);
                } else {
                    dst[p..p + pn].fill(0);
                }
            });
            r.map_err(io::Error::other)
        })
    }

    /// Copies `src.len()` bytes from host memory to `off`.
    fn copy_in(&self, off: u64, src: &VolatileSlice<'_>) -> io::Result<()> {
        let o = self.check(off, src.len())?;
        self.pieces(o, src.len(), |c, in_chunk, at, n| {
            let chunk = self.chunk_for_write(c)?;
            src.copy_to(at, &chunk.mem, in_chunk, n)
                .map_err(io::Error::other)?;
            chunk.mark_written(in_chunk, n);
            Ok(())
        })
    }

    /// Copies `src` to `off`.
    fn write_from(&self, off: u64, src: &[u8]) -> io::Result<()> {
        let o = self.check(off, src.len())?;
        self.pieces(o, src.len(), |c, in_chunk, at, n| {
            let chunk = self.chunk_for_write(c)?;
            chunk
                .mem
                .write(in_chunk, &src[at..at + n])
                .map_err(io::Error::other)?;
            chunk.mark_written(in_chunk, n);
            Ok(())
        })
    }

    /// Zeroes `off..off+len`; chunks never written are zeros already.
    fn zero(&self, off: u64, len: usize) -> io::Result<()> {
        let o = self.check(off, len)?;
        self.pieces(o, len, |c, in_chunk, _, n| match self.chunks[c].get() {
            Some(chunk) => chunk.zero(in_chunk, n),
            None => Ok(()),
        })
    }

    /// Heap bytes the store's bookkeeping holds: the chunk table and the written-page
    /// maps of the chunks mapped so far.
    #[cfg(test)]
    fn bookkeeping_bytes(&self) -> usize {
        let table = std::mem::size_of_val::<[OnceLock<Chunk>]>(&self.chunks);
        let maps: usize = self
            .chunks
            .iter()
            .filter_map(OnceLock::get)
            .map(|c| std::mem::size_of_val::<[AtomicU64]>(&c.written))
            .sum();
        table + maps
    }

    /// Chunks mapped so far.
    #[cfg(test)]
    fn mapped_chunks(&self) -> usize {
        self.chunks.iter().filter_map(OnceLock::get).count()
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

    #[test]
    fn a_100_tib_ram_store_maps_and_tracks_only_the_chunks_written() {
        let size = 100u64 << 40;
        let ram = RamStore::new(size).unwrap();
        let table = ram.bookkeeping_bytes();
        // One table entry per 4 GiB (1.4 MB); no mapping, no bit of a written-page map yet.
        assert!(table <= 2 << 20, "{table} bytes before any write");
        assert_eq!(ram.mapped_chunks(), 0);
        let b = Backend::Ram(ram);
        let end = size - 4096;
        assert_eq!(read(&b, end, 4096), vec![0; 4096]);
        assert_eq!(read(&b, 0, 512), vec![0; 512]);
        b.write_buf(end + 512, &[5; 1024]).unwrap();
        let got = read(&b, end, 4096);
        assert!(got[..512].iter().all(|&x| x == 0));
        assert!(got[512..1536].iter().all(|&x| x == 5));
        assert!(got[1536..].iter().all(|&x| x == 0));
        // The write mapped the one chunk covering the last 4 GiB.
        let Backend::Ram(ram) = &b else {
            unreachable!()
        };
        assert_eq!(ram.mapped_chunks(), 1);
        let grown = ram.bookkeeping_bytes() - table;
        assert_eq!(grown, CHUNK_BYTES / PAGE / 8);
        // Zeroing the whole namespace skips the chunks never written.
        b.zero(0, size).unwrap();
        assert_eq!(read(&b, end, 4096), vec![0; 4096]);
    }

    #[test]
    fn reads_and_writes_across_a_chunk_boundary_split_and_the_last_chunk_is_the_rest() {
        // One whole chunk and five pages after it.
        let size = CHUNK_BYTES as u64 + 5 * 4096;
        let b = Backend::Ram(RamStore::new(size).unwrap());
        let at = CHUNK_BYTES as u64 - 1024;
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        b.write_buf(at, &data).unwrap();
        assert_eq!(read(&b, at, 8192), data);
        assert_eq!(read(&b, at - 4096, 4096), vec![0; 4096]);
        b.zero(at + 512, 1024).unwrap();
        let got = read(&b, at, 8192);
        assert_eq!(&got[..512], &data[..512]);
        assert_eq!(&got[512..1536], &[0; 1024][..]);
        assert_eq!(&got[1536..], &data[1536..]);
        let Backend::Ram(ram) = &b else {
            unreachable!()
        };
        assert_eq!(ram.mapped_chunks(), 2);
        let table = 2 * std::mem::size_of::<OnceLock<Chunk>>();
        assert_eq!(
            ram.bookkeeping_bytes(),
            table + (CHUNK_BYTES / PAGE / 8) + 8
        );
    }
}
