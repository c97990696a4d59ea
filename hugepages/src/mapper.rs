//! The IOVA mapping hook: how a device comes to see host memory.
//!
//! The memory layer knows nothing of VFIO or of any device. A transport implements
//! [`DmaMapper`]; the allocator calls it for every region it adds and removes.

use std::ops::RangeInclusive;

/// An inclusive window of I/O virtual addresses a device accepts.
pub type IovaRange = RangeInclusive<u64>;

/// Why a mapping or unmapping failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The requested IOVA range overlaps an existing mapping.
    #[error("IOVA range {iova:#x}+{len:#x} overlaps an existing DMA mapping")]
    Overlap {
        /// First IOVA of the request.
        iova: u64,
        /// Length in bytes of the request.
        len: usize,
    },
    /// The requested IOVA range lies outside every window the device accepts.
    #[error("IOVA range {iova:#x}+{len:#x} is outside the IOVA windows the IOMMU accepts")]
    OutOfRange {
        /// First IOVA of the request.
        iova: u64,
        /// Length in bytes of the request.
        len: usize,
    },
    /// An unmap named a range that is not mapped exactly.
    #[error("IOVA range {iova:#x}+{len:#x} is not a current DMA mapping")]
    NotMapped {
        /// First IOVA of the request.
        iova: u64,
        /// Length in bytes of the request.
        len: usize,
    },
    /// Address or length not aligned to the mapper's page size.
    #[error("DMA mapping {iova:#x}+{len:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// First IOVA of the request.
        iova: u64,
        /// Length in bytes of the request.
        len: usize,
        /// Required alignment in bytes.
        align: usize,
    },
    /// The operating system refused the mapping.
    #[error("{op} failed for IOVA {iova:#x}+{len:#x}: {source}")]
    Os {
        /// The operation that failed, such as `VFIO_IOMMU_MAP_DMA`.
        op: &'static str,
        /// First IOVA of the request.
        iova: u64,
        /// Length in bytes of the request.
        len: usize,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
}

/// Makes host memory visible to a device at chosen I/O virtual addresses.
///
/// Implemented by transports (VFIO's type1 IOMMU, the emulated controller's IOMMU
/// model). Mappings are page granular; the allocator only passes page-aligned ranges.
pub trait DmaMapper: Send + Sync {
    /// IOVA windows the device accepts, sorted ascending and non-overlapping.
    fn iova_ranges(&self) -> Vec<IovaRange>;

    /// Maps `len` bytes of host memory at `vaddr` so the device reaches them at `iova`.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be valid, allocated memory that stays allocated and is
    /// not reused for anything else until [`DmaMapper::unmap`] of the same range has
    /// returned. While mapped, the device may read or write it at any time, so callers
    /// must access it only through raw pointers (volatile or atomic), never through a
    /// long-lived reference.
    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError>;

    /// Removes the mapping created by a `map` of exactly this `iova` and `len`.
    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError>;
}
