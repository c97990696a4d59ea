//! Direct I/O with the semantics of Linux iomap direct I/O over NVMe queue pairs.
//!
//! A request ([`Kiocb`] plus an [`IovIter`] of DMA buffers) is mapped extent by
//! extent through a provider ([`IomapOps`]) and becomes NVMe commands on one
//! queue pair ([`DioQueue`]). The layer decides FUA versus a completion-time
//! flush, zeroes partial blocks of new and unwritten extents, applies the EOF
//! rules, and completes synchronously (sleeping or polling) or asynchronously.
//!
//! # Layout
//! - [`DioQueue`]: what the layer needs from a queue pair; [`nvme_qp::NvmeQueue`]
//!   implements it for the driver, so the core never names a driver type.
//! - [`Dio`]: the engine, one per thread and queue pair; [`Dio::rw`] (synchronous)
//!   and [`Dio::rw_async`] (callback) take a [`Request`] (direction, options,
//!   bytes done before), completions routed by a `u64` tag.
//! - [`providers`]: the raw namespace and an in-memory extent-mapped file layer.
//!
//! # Rules (after `fs/iomap/direct-io.c`)
//! - Zero length: `Ok(0)`, no I/O. Reads at or past EOF: `Ok(0)` before any check;
//!   reads crossing EOF are cut at EOF and the iterator reverted by the excess.
//! - `(pos | len)` not a multiple of the logical block, or buffers off the DMA rules
//!   (dword-aligned addresses, whole-block pieces): `Inval`, nothing issued.
//! - Hole and unwritten reads zero-fill in memory; writes into holes or delayed
//!   allocations are `Io` (the provider allocates first).
//! - DSYNC sets need-sync and, without SYNC, write-through. A write carries FUA only
//!   for a Mapped extent without NEW, SHARED or DIRTY on a device with FUA or without a
//!   volatile cache; any write without FUA clears write-through. Completion flushes
//!   when need-sync survives and the device has a volatile write cache.
//! - Sub-block zeroing (provider block larger than the logical block): head and tail
//!   of new or unwritten blocks, and the tail of writes ending at or past EOF, also
//!   when submission stops part-way.
//! - The first error wins, submission stops after it, and a failed request reports
//!   nothing written; PARTIAL turns a fault after some bytes into a short success.
//! - HIPRI polls only a request that became a single command.
//! - A provider with a write limit ([`IomapOps::write_limit`], the raw
//!   namespace's end) has writes cut there before mapping, as
//!   `blkdev_write_iter` does: a short write, then ENOSPC at the limit.
//!
//! # Cost
//! A synchronous request that is one buffer piece, one command and one plain
//! mapped extent, with no EOF cut and no zeroing, takes a single-command path
//! (`single.rs`): no mapping loop, no segment list, no slot record. Its tag is
//! the one the engine keeps for the reserved slot while that slot is free (the
//! slot sits outside the pool that [`Dio::new`] sizes, so the request never waits
//! for room); a polled wait reaps one completion inline and loops out of line
//! only if that was not its own. Only a flush to follow, a refused submission or
//! a timeout hand the request to the slot machinery. Everything else takes the
//! general path with the same rules.
//!
//! What the layer costs above the bare queue pair, and the commands that
//! measure it, are in `PERF.md` at the repository root.

#![forbid(unsafe_code)]

mod buf;
mod completion;
mod engine;
mod error;
mod extent_io;
mod flush;
mod iomap;
mod iov;
mod kiocb;
pub mod nvme_qp;
pub mod providers;
mod queue;
mod single;
mod slot;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use buf::DmaBuf;
pub use engine::{AsyncDone, Dio, DioStats, Direction, Request, Submitted};
pub use error::{Cause, DioError};
pub use iomap::{
    check_extent_write, CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping,
    MappingFlags, MappingKind, NoHooks,
};
pub use iov::{Chunk, IovIter};
pub use kiocb::{Kiocb, KiocbFlags};
pub use queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError, Segment};
