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
//!   and [`Dio::rw_async`] (callback), completions routed by a `u64` tag.
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
//!
//! # Cost
//! A synchronous request that is one buffer piece, one command and one plain
//! mapped extent, with no EOF cut and no zeroing, takes a single-command path
//! (`single.rs`): no mapping loop, no segment list. It runs in a slot reserved for
//! it (outside the pool that [`Dio::new`] sizes, so it never waits for a free
//! slot), waits for its command by tag and finishes without writing the slot
//! record; only a flush to follow, a refused submission or a timeout hand it to
//! the slot machinery. Everything else takes the general path with the same rules.
//!
//! Measured on 4 KiB reads at queue depth 1 on the emulated inline null namespace,
//! polled; both sides on the same queue pair and buffer, both checking every
//! result (`dio/benches/read.rs`). Instructions, the repeatable figure:
//!
//! ```text
//! cargo bench -p dio --bench read --no-run
//! valgrind --tool=callgrind --callgrind-out-file=OUT <bench binary> --bench <queue_pair|dio_raw> --profile-time 2
//! ```
//!
//! per read = inclusive count of `criterion::bencher::Bencher<M>::iter`
//! (`callgrind_annotate --inclusive=yes OUT`) divided by the calls of
//! `nvme_emu::namespace::Namespace::read` (`callgrind_annotate --tree=calling OUT`).
//! The bare queue pair takes 1,139 instructions per read (emulator included) and
//! [`Dio::read`] on [`providers::RawNamespace`] with HIPRI 1,343: the layer adds
//! about 204 (+18 %; 217 before the adapter's poll kept its stash out of line and
//! the tag wait counted its command after the poll, 408, +36 %, before the
//! reserved slot and the tag wait). The 10 % target is not met. What remains: the
//! shape and provider checks and the command build (about 55), the wait loop and
//! its completion closure (about 40), the iterator (about 20, plus the
//! benchmark's reset), the queue adapter (about 15), and about 25 more in the
//! driver's own reap code (the same source, compiled with more spills inside the
//! layer's wait than in the bare loop). Tried without gain: `#[inline]` on the
//! driver's `submit_read`, a constant batch of one, an out-of-line wait, a reap
//! that hands the adapter its status directly instead of a `Result` (1,345 to
//! 1,372, depending on the closure's form and on where the error is built), and
//! one combined alignment test in the single-command path (1,344).
//! Single changes move the count by up to 25 either way through register
//! allocation alone, so gains below that need a structural change.
//!
//! Time, `cargo bench -p dio --bench read` on a loaded 2-core machine: about 102 ns
//! per read bare and 118 ns through the layer (+15 %; 148 ns, +45 %, before).
//! Criterion means move by tens of percent under load; compare both sides of one
//! run only.

mod buf;
mod completion;
mod engine;
mod error;
mod extent_io;
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
pub use engine::{AsyncDone, Dio, DioStats, Direction, Submitted};
pub use error::DioError;
pub use iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
    NoHooks,
};
pub use iov::{Chunk, IovIter};
pub use kiocb::{Kiocb, KiocbFlags};
pub use queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError, Segment};
