//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::{MapError, PageSize};

/// Everything that can go wrong while reserving, allocating or translating DMA memory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sysfs or procfs file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// A sysfs or procfs file held something other than what the kernel writes there.
    #[error("unexpected contents {contents:?} in {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held (trimmed).
        contents: String,
    },
    /// The kernel does not offer this hugepage size.
    #[error("the kernel offers no {size} hugepages (sizes present: {present:?})")]
    UnsupportedPageSize {
        /// The size asked for.
        size: PageSize,
        /// The sizes present under `kernel/mm/hugepages`, in bytes.
        present: Vec<u64>,
    },
    /// The NUMA node has no hugepage directory in sysfs.
    #[error("NUMA node {node} has no {size} hugepage pool in sysfs (is the node online?)")]
    UnknownNode {
        /// The node asked for.
        node: u32,
        /// The page size asked for.
        size: PageSize,
    },
    /// Changing the hugepage pool was not permitted.
    #[error(
        "cannot write {path}: {source}; run as root or reserve hugepages at boot \
         ({cmdline} on the kernel command line)"
    )]
    NotPermitted {
        /// The sysfs file.
        path: PathBuf,
        /// The kernel command line option that would reserve the pages instead.
        cmdline: String,
        /// The error the kernel returned (EACCES, EPERM or EROFS).
        #[source]
        source: io::Error,
    },
    /// Writing a sysfs file failed for a reason other than permissions.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The sysfs file.
        path: PathBuf,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The kernel reserved fewer hugepages than asked for.
    #[error(
        "asked for {requested} x {size}{on_node}, kernel gave {got}: memory is fragmented; \
         reserve at boot with {cmdline}",
        on_node = match node { Some(n) => format!(" on node {n}"), None => String::new() }
    )]
    ReservationShort {
        /// The page size.
        size: PageSize,
        /// The NUMA node, if the reservation named one.
        node: Option<u32>,
        /// The pool size asked for.
        requested: u64,
        /// The pool size the kernel reports afterwards.
        got: u64,
        /// The kernel command line option that reserves the pages at boot.
        cmdline: String,
    },
    /// Hugepages are needed, none (or too few) are free, and the fallback is forbidden.
    #[error(
        "no free {size} hugepages (need {needed}, {free} free): reserve some with \
         `nvme-setup hugepages --count {suggested}{size_flag}` or {echo}",
        size_flag = if *size == PageSize::SIZE_2M { String::new() } else { format!(" --size {}", size.short_name()) },
        echo = if *size == PageSize::SIZE_2M {
            format!("echo {suggested} > /proc/sys/vm/nr_hugepages")
        } else {
            format!("echo {suggested} > /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages", size.kib())
        }
    )]
    NoFreeHugepages {
        /// The page size.
        size: PageSize,
        /// Pages the region needs.
        needed: u64,
        /// Pages free and unreserved when the region was requested.
        free: u64,
        /// A pool size that would satisfy the request.
        suggested: u64,
    },
    /// `mmap` or `memfd_create` failed.
    #[error("cannot map {len} bytes of {page_size} pages ({op}): {source}")]
    Mmap {
        /// The call that failed.
        op: &'static str,
        /// Bytes requested.
        len: usize,
        /// Page size requested.
        page_size: PageSize,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The pages of a new region could not be faulted in.
    #[error("cannot populate {len} bytes of {page_size} pages: {source}")]
    Populate {
        /// Bytes requested.
        len: usize,
        /// Page size requested.
        page_size: PageSize,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The pages of a new region could not be locked in memory.
    #[error(
        "cannot lock {len} bytes in memory: {source}; raise the locked-memory limit \
         (ulimit -l, LimitMEMLOCK=) or run with CAP_IPC_LOCK"
    )]
    Lock {
        /// Bytes requested.
        len: usize,
        /// The error the kernel returned.
        #[source]
        source: io::Error,
    },
    /// A zero length, or a length that overflows when rounded up to the page size.
    #[error("invalid DMA length {len}")]
    InvalidLength {
        /// The length asked for.
        len: usize,
    },
    /// An alignment that is not a power of two or exceeds what a region can honour.
    #[error("invalid DMA alignment {align}: must be a power of two no larger than {max}")]
    InvalidAlignment {
        /// The alignment asked for.
        align: usize,
        /// The largest alignment the allocator supports.
        max: usize,
    },
    /// Allocator options that cannot work together.
    #[error("invalid allocator options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// `/proc/self/pagemap` shows the page but hides its frame number.
    #[error(
        "/proc/self/pagemap hides the physical address of {vaddr:#x} (PFN reads as 0): \
         physical addresses need CAP_SYS_ADMIN; run as root"
    )]
    PhysicalAddressHidden {
        /// The virtual address looked up.
        vaddr: usize,
    },
    /// The page is not resident, so it has no physical address.
    #[error("virtual address {vaddr:#x} is not backed by a resident page")]
    NotResident {
        /// The virtual address looked up.
        vaddr: usize,
    },
    /// The allocator's byte limit would be exceeded.
    #[error(
        "DMA memory limit reached: {requested} more bytes would exceed max_bytes {max_bytes} \
         ({in_use} bytes already in regions)"
    )]
    LimitExceeded {
        /// Bytes the new region needs.
        requested: usize,
        /// Bytes already held in regions.
        in_use: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// No free IOVA range of the needed size remains in the mapper's windows.
    #[error(
        "no free IOVA range of {len:#x} bytes aligned to {align:#x} in the device's IOVA windows"
    )]
    IovaExhausted {
        /// Bytes needed.
        len: usize,
        /// Alignment needed.
        align: u64,
    },
    /// The mapper refused to map a new region.
    #[error("cannot map a new DMA region for the device: {0}")]
    Map(#[from] MapError),
    /// An access outside a buffer.
    #[error("access {offset:#x}+{len:#x} is outside a DMA buffer of {size:#x} bytes")]
    OutOfBounds {
        /// Offset of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the buffer.
        size: usize,
    },
    /// A volatile integer access at an address not aligned to the integer's size.
    #[error("{width}-byte access at offset {offset:#x} is not naturally aligned")]
    Misaligned {
        /// Offset of the access.
        offset: usize,
        /// Size in bytes of the integer.
        width: usize,
    },
}

impl From<crate::AccessError> for Error {
    fn from(e: crate::AccessError) -> Self {
        match e {
            crate::AccessError::OutOfBounds { offset, len, size } => {
                Error::OutOfBounds { offset, len, size }
            }
            crate::AccessError::Misaligned { offset, width } => Error::Misaligned { offset, width },
        }
    }
}
