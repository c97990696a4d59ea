//! Pinned, zeroed memory for DMA, backed by hugepages when the kernel has them.
//!
//! A [`DmaRegion`] is one `mmap` of hugetlb pages (anonymous, or a `memfd` when it must
//! be shareable), faulted in when it is created so that no access can ever fault later.
//! Hugetlb mappings are made without `MAP_NORESERVE`: the kernel then reserves the pages
//! at `mmap` time and fails with `ENOMEM` instead of delivering `SIGBUS` on first touch.
//! The pages are faulted in with `MADV_POPULATE_WRITE`, which reports failure as an
//! error code too. Hugetlb pages are never swapped; small-page regions are `mlock`ed.
//!
//! When no hugepages are free, a region falls back to small pages (if the options allow)
//! and says so in [`DmaRegion::backing`] and in a `tracing` warning.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use crate::pagemap::Pagemap;
use crate::sysfs::Sysfs;
use crate::{Error, PageSize, VolatileSlice};

/// What kind of pages back a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Hugetlb pages of this size: physically contiguous within each page.
    HugePages(PageSize),
    /// Ordinary base pages (4 KiB on x86-64), locked in memory.
    SmallPages,
    /// Ordinary base pages, not locked: memory for a transport that copies data
    /// instead of handing addresses to a device ([`RegionOptions::pinned`] false).
    Plain,
}

/// How to back a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionOptions {
    /// The page size wanted. [`PageSize::SIZE_2M`] by default; the base page size asks
    /// for small pages outright (no warning).
    pub page_size: PageSize,
    /// Whether to fall back to small pages when no hugepages of `page_size` are free.
    /// When false, that case fails with [`Error::NoFreeHugepages`].
    pub allow_fallback: bool,
    /// Back the region with a `memfd` (see [`DmaRegion::fd`]) so another process can map
    /// it, instead of private anonymous memory.
    pub shared: bool,
    /// Lock the pages in memory (true by default): a device reaches them by address.
    /// A transport that copies data (NVMe/TCP) needs no locked pages; with `false` the
    /// region is ordinary base pages ([`Backing::Plain`]) whatever `page_size` says.
    pub pinned: bool,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions {
            page_size: PageSize::SIZE_2M,
            allow_fallback: true,
            shared: false,
            pinned: true,
        }
    }
}

/// A mapping of pinned, zero-initialised memory that stays resident until dropped.
///
/// The region never hands out references to its bytes: a device may write them at any
/// time, so all access goes through [`DmaRegion::mem`] (volatile accessors) or raw pointers.
#[derive(Debug)]
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    page_size: PageSize,
    backing: Backing,
    fd: Option<OwnedFd>,
}

// SAFETY: the region owns its mapping; it is plain memory not tied to any thread, and it
// hands out only raw pointers, whose users take responsibility for synchronisation.
unsafe impl Send for DmaRegion {}
// SAFETY: no method of `&DmaRegion` reads or writes the memory; see `Send`.
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// Maps at least `len` bytes (rounded up to the page size) as `options` ask.
    pub fn new(len: usize, options: &RegionOptions) -> Result<DmaRegion, Error> {
        DmaRegion::with_sysfs(len, options, &Sysfs::default())
    }

    /// As [`DmaRegion::new`], reading hugepage counters from `sysfs`.
    pub(crate) fn with_sysfs(
        len: usize,
        options: &RegionOptions,
        sysfs: &Sysfs,
    ) -> Result<DmaRegion, Error> {
        if len == 0 {
            return Err(Error::InvalidLength { len });
        }
        let base = PageSize::base();
        if !options.pinned {
            let len = base.round_up(len).ok_or(Error::InvalidLength { len })?;
            return map_small_with(len, base, options.shared, false);
        }
        let size = options.page_size.max(base);
        if size == base {
            let len = base.round_up(len).ok_or(Error::InvalidLength { len })?;
            return map_small(len, base, options.shared);
        }
        let huge_len = size.round_up(len).ok_or(Error::InvalidLength { len })?;
        let needed = (huge_len / size.as_usize()) as u64;
        let shortage = match sysfs.pool(size) {
            Ok(pool) if pool.available() >= needed => {
                match map_huge(huge_len, size, options.shared) {
                    Ok(region) => return Ok(region),
                    Err(Unavailable::Kernel(e)) => {
                        tracing::debug!(%size, needed, error = %e, "hugepage mapping failed");
                        // Re-read: the pool may have changed since the first look.
                        let pool = sysfs.pool(size).unwrap_or(pool);
                        no_free(size, needed, pool.unreserved_free(), pool.total)
                    }
                    Err(Unavailable::Fatal(e)) => return Err(e),
                }
            }
            Ok(pool) => no_free(size, needed, pool.unreserved_free(), pool.total),
            Err(e @ Error::UnsupportedPageSize { .. }) => e,
            Err(e) => return Err(e),
        };
        if !options.allow_fallback {
            return Err(shortage);
        }
        tracing::warn!(
            %size,
            len,
            reason = %shortage,
            "DMA region falls back to {base} pages: no physical contiguity beyond one page"
        );
        let len = base.round_up(len).ok_or(Error::InvalidLength { len })?;
        map_small(len, size, options.shared)
    }

    /// Start of the mapping, aligned to at least the requested page size.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes, a multiple of [`DmaRegion::page_size`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size of the pages backing the region.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// Which pages back the region.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The memfd backing a shared region; `None` for private regions. Mapping it
    /// elsewhere shares the same physical pages.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The physical address of the byte at `offset` (needs `CAP_SYS_ADMIN`).
    pub fn phys_addr(&self, offset: usize) -> Result<u64, Error> {
        if offset >= self.len {
            return Err(Error::OutOfBounds {
                offset,
                len: 1,
                size: self.len,
            });
        }
        Pagemap::open()?.virt_to_phys(self.as_ptr().wrapping_add(offset))
    }

    /// The region's bytes, for volatile access.
    #[inline]
    pub fn mem(&self) -> VolatileSlice<'_> {
        // SAFETY: the mapping is readable and writable and stays mapped until `self`
        // drops; the region never creates a reference to its bytes.
        unsafe { VolatileSlice::new(self.ptr, self.len) }
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr + len` is exactly the mapping this region created and owns;
        // nothing else refers to it once the region is dropped.
        if unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) } != 0 {
            tracing::error!(error = %io::Error::last_os_error(), "munmap of a DMA region failed");
        }
    }
}

fn no_free(size: PageSize, needed: u64, free: u64, total: u64) -> Error {
    Error::NoFreeHugepages {
        size,
        needed,
        free,
        suggested: total + needed.saturating_sub(free),
    }
}

/// Why a hugepage mapping could not be made.
enum Unavailable {
    /// The kernel had no pages to give (ENOMEM, or EFAULT while populating).
    Kernel(io::Error),
    /// Anything else: reported to the caller as is.
    Fatal(Error),
}

/// An mmap owned until `into_region`, unmapped on early return.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// # Safety
    /// Arguments as for `mmap(2)`; the result is owned by the returned value.
    unsafe fn new(
        addr: *mut libc::c_void,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: RawFd,
    ) -> io::Result<Mapping> {
        // SAFETY: forwarded to the caller.
        let p = unsafe { libc::mmap(addr, len, prot, flags, fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?,
            len,
        })
    }

    fn madvise(&self, advice: libc::c_int) -> io::Result<()> {
        // SAFETY: the range is our own mapping; advice values used here do not discard
        // contents.
        if unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, advice) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn into_region(self, page_size: PageSize, backing: Backing, fd: Option<OwnedFd>) -> DmaRegion {
        let region = DmaRegion {
            ptr: self.ptr,
            len: self.len,
            page_size,
            backing,
            fd,
        };
        std::mem::forget(self);
        region
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and nothing refers to it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn memfd(flags: libc::c_uint) -> io::Result<OwnedFd> {
    const NAME: &CStr = c"dma-region";
    // SAFETY: NAME is NUL-terminated; the flags are plain bits.
    let fd = unsafe { libc::memfd_create(NAME.as_ptr(), flags | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_len(fd: &OwnedFd, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: ftruncate on a descriptor we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn map_huge(len: usize, size: PageSize, shared: bool) -> Result<DmaRegion, Unavailable> {
    let fatal = |op, source| {
        Unavailable::Fatal(Error::Mmap {
            op,
            len,
            page_size: size,
            source,
        })
    };
    let kernel_or = |op, e: io::Error| match e.raw_os_error() {
        Some(libc::ENOMEM) => Unavailable::Kernel(e),
        _ => fatal(op, e),
    };
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let (mapping, fd) = if shared {
        let flags = libc::MFD_HUGETLB | (size.shift() << libc::MFD_HUGE_SHIFT);
        let fd = memfd(flags).map_err(|e| kernel_or("memfd_create", e))?;
        set_len(&fd, len).map_err(|e| fatal("ftruncate", e))?;
        let raw = fd.as_raw_fd();
        // SAFETY: a fresh shared mapping of our own memfd at a kernel-chosen address.
        let m = unsafe { Mapping::new(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, raw) };
        (m.map_err(|e| kernel_or("mmap", e))?, Some(fd))
    } else {
        // No MAP_NORESERVE: the kernel must reserve every page now or fail with ENOMEM.
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | libc::MAP_HUGETLB
            | ((size.shift() as libc::c_int) << libc::MAP_HUGE_SHIFT);
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
        let m = unsafe { Mapping::new(std::ptr::null_mut(), len, prot, flags, -1) };
        (m.map_err(|e| kernel_or("mmap", e))?, None)
    };
    if (mapping.ptr.as_ptr() as usize) % size.as_usize() != 0 {
        return Err(fatal("mmap", io::Error::from_raw_os_error(libc::EINVAL)));
    }
    populate(&mapping).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOMEM | libc::EFAULT) => Unavailable::Kernel(e),
        _ => Unavailable::Fatal(Error::Populate {
            len,
            page_size: size,
            source: e,
        }),
    })?;
    dont_fork(&mapping);
    Ok(mapping.into_region(size, Backing::HugePages(size), fd))
}

/// Faults every page in, writable, so no later access can fault.
fn populate(mapping: &Mapping) -> io::Result<()> {
    match mapping.madvise(libc::MADV_POPULATE_WRITE) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Kernels before 5.14 lack MADV_POPULATE_WRITE. The pages were reserved at
            // mmap time (no MAP_NORESERVE), so touching them cannot fail.
            let page = PageSize::base().as_usize();
            for offset in (0..mapping.len).step_by(page) {
                // SAFETY: in bounds of our mapping, which nobody else sees yet.
                unsafe { mapping.ptr.as_ptr().add(offset).write_volatile(0) };
            }
            Ok(())
        }
        other => other,
    }
}

/// Keeps a forked child from sharing (or copy-on-write splitting) DMA pages.
fn dont_fork(mapping: &Mapping) {
    if let Err(e) = mapping.madvise(libc::MADV_DONTFORK) {
        tracing::debug!(error = %e, "MADV_DONTFORK failed on a DMA region");
    }
}

/// Maps `len` bytes of base pages at an address aligned to `align`, locked in memory.
fn map_small(len: usize, align: PageSize, shared: bool) -> Result<DmaRegion, Error> {
    map_small_with(len, align, shared, true)
}

/// Maps base pages aligned to `align`, locked in memory when `pinned`.
fn map_small_with(
    len: usize,
    align: PageSize,
    shared: bool,
    pinned: bool,
) -> Result<DmaRegion, Error> {
    let base = PageSize::base();
    let mmap_err = |op, source| Error::Mmap {
        op,
        len,
        page_size: base,
        source,
    };
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let fd = if shared {
        let fd = memfd(0).map_err(|e| mmap_err("memfd_create", e))?;
        set_len(&fd, len).map_err(|e| mmap_err("ftruncate", e))?;
        Some(fd)
    } else {
        None
    };
    // Reserve address space with slack, then map the real pages over its aligned part.
    let slack = align.as_usize() - base.as_usize();
    let span = len.checked_add(slack).ok_or(Error::InvalidLength { len })?;
    // SAFETY: a fresh inaccessible placeholder at a kernel-chosen address.
    let placeholder = unsafe {
        Mapping::new(
            std::ptr::null_mut(),
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
    }
    .map_err(|e| mmap_err("mmap", e))?;
    let start = placeholder.ptr.as_ptr() as usize;
    let aligned = start.next_multiple_of(align.as_usize());
    let (flags, raw) = match &fd {
        Some(fd) => (libc::MAP_SHARED | libc::MAP_FIXED, fd.as_raw_fd()),
        None => (
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
        ),
    };
    // SAFETY: `aligned..aligned + len` lies inside the placeholder we own, so MAP_FIXED
    // replaces only our own pages.
    let mapping = unsafe { Mapping::new(aligned as *mut libc::c_void, len, prot, flags, raw) }
        .map_err(|e| mmap_err("mmap", e))?;
    // The placeholder's head and tail stay ours until unmapped here; its middle now
    // belongs to `mapping`.
    let head = aligned - start;
    let tail = span - head - len;
    std::mem::forget(placeholder);
    // SAFETY: both ranges are the unused remainder of our placeholder.
    unsafe {
        if head > 0 {
            libc::munmap(start as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    // SAFETY: locking our own mapping; mlock also faults every page in.
    if pinned && unsafe { libc::mlock(mapping.ptr.as_ptr().cast(), len) } != 0 {
        return Err(Error::Lock {
            len,
            source: io::Error::last_os_error(),
        });
    }
    populate(&mapping).map_err(|source| Error::Populate {
        len,
        page_size: base,
        source,
    })?;
    dont_fork(&mapping);
    let backing = if pinned {
        Backing::SmallPages
    } else {
        Backing::Plain
    };
    Ok(mapping.into_region(base, backing, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::fake;

    fn strict(page_size: PageSize) -> RegionOptions {
        RegionOptions {
            page_size,
            allow_fallback: false,
            shared: false,
            pinned: true,
        }
    }

    #[test]
    fn no_free_hugepages_with_fallback_forbidden_says_how_to_reserve() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let err = DmaRegion::with_sysfs(3 << 20, &strict(PageSize::SIZE_2M), &sysfs).unwrap_err();
        assert!(matches!(
            err,
            Error::NoFreeHugepages {
                needed: 2,
                free: 0,
                suggested: 2,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "no free 2 MiB hugepages (need 2, 0 free): reserve some with \
             `nvme-setup hugepages --count 2` or echo 2 > /proc/sys/vm/nr_hugepages"
        );
    }

    #[test]
    fn reserved_pages_do_not_count_as_free() {
        let dir = tempfile::tempdir().unwrap();
        // 4 free, all 4 promised to other mappings.
        fake::pool(dir.path(), PageSize::SIZE_2M, 10, 4, 4);
        let sysfs = Sysfs::new(dir.path());
        let err = DmaRegion::with_sysfs(1, &strict(PageSize::SIZE_2M), &sysfs).unwrap_err();
        assert!(matches!(
            err,
            Error::NoFreeHugepages {
                needed: 1,
                free: 0,
                suggested: 11,
                ..
            }
        ));
    }

    /// Collects formatted log lines.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_free_hugepages_with_fallback_allowed_gives_small_pages_and_warns() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let options = RegionOptions::default();
        let log = Capture::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let region = tracing::subscriber::with_default(subscriber, || {
            DmaRegion::with_sysfs(5000, &options, &sysfs).unwrap()
        });
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("falls back to 4 KiB pages"), "{log}");
        assert!(log.contains("no free 2 MiB hugepages"), "{log}");
        assert_eq!(region.backing(), Backing::SmallPages);
        assert_eq!(region.page_size(), PageSize::base());
        assert_eq!(region.len(), 8192);
        assert_eq!(region.as_ptr() as usize % (2 << 20), 0);
    }

    #[test]
    fn kernel_refusing_pages_that_sysfs_shows_is_handled_not_a_sigbus() {
        // The fake tree claims free 1 GiB pages; unless the real pool has some, the
        // kernel refuses the mmap with ENOMEM and the region must report or fall back.
        if Sysfs::default()
            .pool(PageSize::SIZE_1G)
            .is_ok_and(|p| p.available() > 0)
        {
            eprintln!("SKIPPED: real 1 GiB hugepages are free; the refusal cannot be provoked");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_1G, 8, 8, 0);
        let sysfs = Sysfs::new(dir.path());
        let err = DmaRegion::with_sysfs(4096, &strict(PageSize::SIZE_1G), &sysfs).unwrap_err();
        assert!(
            matches!(err, Error::NoFreeHugepages { needed: 1, .. }),
            "{err}"
        );
        let shared = RegionOptions {
            shared: true,
            ..strict(PageSize::SIZE_1G)
        };
        let err = DmaRegion::with_sysfs(4096, &shared, &sysfs).unwrap_err();
        assert!(
            matches!(err, Error::NoFreeHugepages { needed: 1, .. }),
            "{err}"
        );
        let lenient = RegionOptions {
            allow_fallback: true,
            ..shared
        };
        let region = DmaRegion::with_sysfs(4096, &lenient, &sysfs).unwrap();
        assert_eq!(region.backing(), Backing::SmallPages);
        assert!(region.fd().is_some());
    }

    #[test]
    fn page_size_missing_from_sysfs_is_unsupported_unless_fallback_allowed() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let err = DmaRegion::with_sysfs(1, &strict(PageSize::SIZE_1G), &sysfs).unwrap_err();
        assert!(matches!(err, Error::UnsupportedPageSize { .. }), "{err}");
        let lenient = RegionOptions {
            allow_fallback: true,
            ..strict(PageSize::SIZE_1G)
        };
        let region = DmaRegion::with_sysfs(1, &lenient, &sysfs).unwrap();
        assert_eq!(region.backing(), Backing::SmallPages);
    }

    #[test]
    fn small_shared_region_is_a_memfd_of_the_rounded_length() {
        let options = RegionOptions {
            page_size: PageSize::SIZE_4K,
            allow_fallback: false,
            shared: true,
            pinned: true,
        };
        let region = DmaRegion::new(1, &options).unwrap();
        let file = std::fs::File::from(region.fd().unwrap().try_clone_to_owned().unwrap());
        assert_eq!(file.metadata().unwrap().len(), 4096);
        assert_eq!(region.len(), 4096);
    }

    #[test]
    fn unpinned_region_is_plain_small_pages_whatever_the_page_size() {
        let options = RegionOptions {
            page_size: PageSize::SIZE_2M,
            allow_fallback: false,
            shared: false,
            pinned: false,
        };
        let region = DmaRegion::new(5000, &options).unwrap();
        assert_eq!(region.backing(), Backing::Plain);
        assert_eq!(region.len(), 8192);
        region.mem().write(8191, &[7]).unwrap();
        let mut b = [0u8];
        region.mem().read(8191, &mut b).unwrap();
        assert_eq!(b, [7]);
    }
}
