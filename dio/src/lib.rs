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
//! Measured on 4 KiB reads at queue depth 1 on the emulated inline null
//! namespace, polled; both sides on the same queue pair and [`nvme_qp::IoBuffer`],
//! both checking every result (`dio/benches/read.rs`). Instructions, the
//! repeatable figure:
//!
//! ```text
//! cargo bench -p dio --bench read --no-run
//! valgrind --tool=callgrind --compress-strings=no --callgrind-out-file=OUT <bench binary> --bench <queue_pair|dio_raw> --profile-time 2
//! ```
//!
//! per read = inclusive count of `criterion::bencher::Bencher<M>::iter`
//! (`callgrind_annotate --inclusive=yes OUT`) divided by the calls of
//! `nvme_emu::namespace::Namespace::read` (the `calls=` lines under it in OUT).
//! The bare queue pair takes 1,147 instructions per read (emulator included) and
//! [`Dio::read`] on [`providers::RawNamespace`] with HIPRI 1,241: the layer adds
//! 94 (+8.2 %; 204, +18 %, before the changes below). What took the rest:
//! - the first completion reaped inline through [`DioQueue::poll_one`], with no
//!   closure over the engine's routing state and no idle timer unless the queue
//!   was empty (about 30);
//! - the tag kept ready for the reserved slot instead of bumping the slot's
//!   generation, and the command rebuilt on the rare refused path instead of kept
//!   live across the driver call (about 30);
//! - the provider's block size checked only for writes, the only requests it
//!   shapes (sub-block zeroing), and one-buffer iterators answering from their
//!   count (about 15);
//! - [`nvme_qp::IoBuffer`], whose device address needs no borrow of the buffer
//!   (about 10), and a smaller driver reap loop (device mistakes and errors
//!   reported out of line, only the context taken from the tracker), which the
//!   compiler inlines into the wait without spills.
//!
//! Single changes still move the count by 10 or more either way through inlining
//! and register allocation: the driver's generic queue-pair code is compiled into
//! each user, so a change on one side can move both.
//!
//! Time: `cargo bench -p dio --bench read_ab` interleaves both sides in one
//! process (30 rounds of 200,000 reads each) and prints the fastest and the median
//! round: 80.9 ns per read bare and 86.4 ns through the layer in the fastest
//! rounds (+6.9 %), 83.6 and 90.8 ns in the median ones (+8.5 %), on a 2-core
//! machine. Criterion's separate runs (`cargo bench -p dio --bench read`) move by
//! tens of percent when anything else runs; compare both sides of one run only.

#![forbid(unsafe_code)]

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
pub use engine::{AsyncDone, Dio, DioStats, Direction, Request, Submitted};
pub use error::{Cause, DioError};
pub use iomap::{
    CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind,
    NoHooks,
};
pub use iov::{Chunk, IovIter};
pub use kiocb::{Kiocb, KiocbFlags};
pub use queue::{CommandStatus, DeviceCaps, DioQueue, IoCommand, QueueError, Segment};
