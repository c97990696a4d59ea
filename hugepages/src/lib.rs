//! DMA memory for userspace drivers: hugepage reservation, pinned regions,
//! IOVA/physical translation and an allocator for queues, PRP lists and I/O buffers.

mod mapper;

pub use mapper::{DmaMapper, IovaRange, MapError};
