//! Direct I/O with the semantics of Linux iomap direct I/O over NVMe queue pairs.
//!
//! A request ([`Kiocb`] plus an [`IovIter`] of DMA buffers) is mapped extent by
//! extent through a provider ([`IomapOps`]) and becomes NVMe commands on one
//! queue pair ([`DioQueue`]). The layer decides FUA versus a completion-time
//! flush, zeroes partial blocks of new and unwritten extents, applies the EOF
//! rules, and completes synchronously (sleeping or polling) or asynchronously.

mod buf;
mod completion;
mod engine;
mod error;
mod iomap;
mod iov;
mod kiocb;
pub mod nvme_qp;
pub mod providers;
mod queue;
mod slot;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use buf::DmaBuf;
pub use engine::{AsyncDone, Dio, DioStats, Direction, Submitted};
pub use error::DioError;
pub use iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
    NoHooks,
};
pub use iov::{Chunk, IovIter};
pub use kiocb::{Kiocb, KiocbFlags};
pub use queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError, Segment};
