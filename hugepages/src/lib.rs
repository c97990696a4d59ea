//! DMA memory for userspace drivers: hugepage reservation, pinned regions,
//! IOVA/physical translation and an allocator for queues, PRP lists and I/O buffers.
//!
//! # The model
//!
//! * **Pools.** The kernel keeps pools of hugepages per size and per NUMA node.
//!   [`Sysfs`] reads their counters and grows or shrinks them (as root); a fake sysfs
//!   root makes the same code testable. [`hugetlbfs_mounts`] finds hugetlbfs mounts.
//! * **Regions.** A [`DmaRegion`] is one mapping of zeroed memory, faulted in and
//!   pinned when created: 2 MiB (or 1 GiB) hugepages when free, else, if
//!   [`RegionOptions::allow_fallback`] permits, 4 KiB pages (with a `tracing` warning,
//!   and [`DmaRegion::backing`] saying so). A hugepage is physically contiguous, which
//!   is what lets a device walk it with few PRP entries and lets [`virt_to_phys`] give
//!   useful answers without an IOMMU.
//! * **IOVAs.** A device does not see host virtual addresses. A transport implements
//!   [`DmaMapper`], and the [`DmaAllocator`] maps each region it adds at an I/O virtual
//!   address it chooses inside [`DmaMapper::iova_ranges`]: ascending, aligned to the
//!   page size, never the zero page nor the x86 MSI window
//!   ([`RESERVED_IOVA_RANGES`]).
//! * **Buffers.** The allocator carves [`DmaBuffer`]s out of regions. A buffer never
//!   spans two regions, so its IOVAs are contiguous; requests larger than a region get a
//!   region of their own. Dropping a buffer returns its bytes to the region; regions are
//!   unmapped (then freed) when the allocator and all their buffers are gone.
//!
//! # The no-reference rule
//!
//! [`DmaMapper::map`] is `unsafe` because, once mapped, a device may write the memory
//! at any time, behind the compiler's back. Mapped memory must therefore stay allocated
//! until unmapped, and must never be reached through a Rust reference (`&[u8]` or
//! `&mut [u8]`), whose contract says it cannot change underneath. This crate keeps the
//! rule: regions are unmapped before they are freed (and leaked if unmapping fails), and
//! all access goes through [`VolatileSlice`], the one volatile-memory type of the stack
//! (copying, volatile and atomic accessors; an out-of-range access is a bug, see there).
//!
//! ```no_run
//! use std::sync::Arc;
//! use hugepages::{AllocatorOptions, DmaAllocator, NullMapper};
//!
//! let alloc = DmaAllocator::new(Arc::new(NullMapper::new()), AllocatorOptions::default())?;
//! let mut ring = alloc.alloc_pages(4096)?;
//! ring.write_u32(0, 0xdead_beef)?;
//! assert_eq!(ring.iova() % 4096, 0);
//! # Ok::<(), hugepages::Error>(())
//! ```

mod allocator;
mod buffer;
mod error;
mod iova;
mod mapper;
mod mounts;
mod null_mapper;
mod page_size;
mod pagemap;
mod region;
pub mod sync;
mod sysfs;
#[cfg(feature = "test-utils")]
pub mod test_utils;
mod tsc;
mod volatile;

pub use allocator::{AllocatorOptions, AllocatorStats, DmaAllocator, RegionInfo, MIN_ALIGN};
pub use buffer::{DmaBuffer, DmaSegment};
pub use error::Error;
pub use iova::RESERVED_IOVA_RANGES;
pub use mapper::{DmaMapper, IovaRange, MapError};
pub use mounts::{
    hugetlbfs_mounts, hugetlbfs_mounts_in, parse_hugetlbfs_mounts, unescape_mount_field,
    HugetlbfsMount,
};
pub use null_mapper::NullMapper;
pub use page_size::{parse_size, PageSize};
pub use pagemap::{virt_to_phys, Pagemap};
pub use region::{Backing, DmaRegion, RegionOptions};
pub use sysfs::{list_dir, NodePoolStats, PoolStats, Sysfs};
pub use tsc::tsc;
pub use volatile::{AccessError, VolatileSlice};
