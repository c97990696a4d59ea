//! A persistent, crash-consistent extent store of named files on an NVMe
//! namespace (or a region of one), under the dio layer.
//!
//! Each file is a map from file blocks to data blocks, written or unwritten,
//! possibly shared with other files (clones, copy on write). The store
//! implements the dio layer's mapping provider and completion hooks
//! ([`dio::IomapOps`], [`dio::DioOps`]), so every data and metadata I/O goes
//! through the caller's [`dio::Dio`] and follows its FUA and flush rules. A
//! [`Store`] is shared by threads in an `Arc`; each thread passes its own
//! [`StoreIo`] (its dio engine on its own queue pair, and a DMA buffer source).
//!
//! # On-disk format (version 1)
//!
//! ```text
//!  region start                                                     region end
//!  ┌────┬──────────────────┬──────────────────┬──────────────┬───────────────────┐
//!  │ SB │ checkpoint A     │ checkpoint B     │ journal      │ data blocks       │
//!  │ 1  │ C blocks         │ C blocks         │ J blocks     │ the rest          │
//!  └────┴──────────────────┴──────────────────┴──────────────┴───────────────────┘
//!   SB: magic "NVMSTORE", version, block size, UUID, region offset, area sizes, CRC-32C
//!
//!  checkpoint area:  ┌──────────────────────────┬──────────────────────────────┐
//!                    │ header: magic, version,  │ payload: next file number,   │
//!                    │ format id, epoch, seq,   │ files (number, name, size,   │
//!                    │ journal head, payload    │ times, flags, block runs with│
//!                    │ length + CRC, header CRC │ unwritten bit), reference    │
//!                    │                          │ counts, free runs            │
//!                    └──────────────────────────┴──────────────────────────────┘
//!  journal (circular), one transaction = `count` consecutive blocks:
//!   ┌────────────────────────────────────────────────────┬──────────────────┐
//!   │ magic, version, epoch, seq, index, count, bytes,   │ records (create, │
//!   │ CRC of the transaction's payload, CRC of the block │ unlink, rename,  │
//!   └────────────────────────────────────────────────────┤ size, times,     │
//!                                                        │ alloc unwritten, │
//!    the last block of a transaction is its commit record│ convert, remap,  │
//!                                                        │ punch, clone)    │
//!                                                        └──────────────────┘
//! ```
//!
//! All integers are little endian; every structure carries the format version
//! and a CRC-32C. The superblock is written once, at format, with FUA. The two
//! checkpoint areas are written alternately; each holds a full snapshot and the
//! journal position where replay starts (kept in the checkpoint rather than the
//! superblock, so the superblock is never rewritten and cannot be torn).
//!
//! # Crash consistency
//! - **Open** reads the superblock (a damaged one is [`StoreError::BadSuperblock`]),
//!   loads the newest checkpoint whose checksums hold (both bad:
//!   [`StoreError::NoCheckpoint`]), and replays the transactions after it in
//!   sequence order, stopping at the first block with a bad checksum, another
//!   epoch, a wrong sequence number or a missing commit block: a torn tail is
//!   discarded, never trusted. Open then writes a checkpoint with a new random
//!   epoch, so blocks left by an earlier mount can never pass for new ones.
//! - **Records are applied by one function** both live and during replay, so the
//!   image in memory is the image replay rebuilds.
//! - **Stale data is never exposed**: a write into a hole allocates unwritten
//!   blocks (journaled), the data goes out, and end_io journals the conversion.
//!   A commit holding a conversion whose data may still be in the volatile
//!   cache issues a Flush first (XFS's log write with PREFLUSH). Blocks freed
//!   by a record are reused only once that record is durable, so after any
//!   crash a block is never both in its old file and holding a new file's data.
//! - **A commit** is one durable write of the transaction's blocks (FUA, or a
//!   write and a Flush without FUA), two where it wraps; the journal is
//!   checkpointed once more than half full, or when a transaction does not fit.
//!   A commit cut before it is durable may leave any subset of its logical
//!   blocks on the medium: every journal block carries its own checksum, the
//!   sequence number, its index and the whole transaction's checksum, so replay
//!   takes a transaction only when all its blocks are there, and stops at it.
//!
//! # Durability (the dio layer's rules)
//! - An O_DSYNC pure overwrite (written, unshared blocks, no size change, no
//!   uncommitted metadata for the file) is one FUA write and no journal I/O.
//! - An O_DSYNC write that allocated, converted or extended the file (the
//!   mapping had NEW or DIRTY) returns after the layer's flush and a journal
//!   commit: data write, Flush, one FUA journal write.
//! - [`Store::fsync`] commits the file's metadata (times too) and flushes;
//!   [`Store::fdatasync`] skips a commit that would only change times.
//!
//! - The journal is one sequence: a commit carries every record appended
//!   before it, so an operation made durable makes every operation that
//!   preceded it (in any thread) durable too. An operation's metadata is
//!   durable once a later fsync or fdatasync of the file it changed returns
//!   (create, rename, preallocate, punch, truncate: the file; clone: the
//!   destination; a write: its file, also by its own O_DSYNC), or a
//!   [`Store::sync`] returns (unlink has no file left: sync, or the fsync of
//!   a file changed after it).
//! - A journal or checkpoint write that fails shuts the store down
//!   ([`StoreError::ShutDown`]): the records it carried are applied in memory
//!   but not on disk, so no later commit may report them durable. Reopen.
//!
//! # Atomicity
//! Each metadata operation (create, unlink, rename (with the unlink of the
//! name it replaces), preallocate, punch, truncate, clone, and each write's
//! allocation and completion) is wholly there or wholly absent after a crash,
//! and what is there is a prefix of the operations in journal order. A write's
//! data is not atomic: a write not acknowledged as durable may show some of its
//! new blocks and not others, each of the device's logical blocks (its atomic
//! write unit: a store block spans several when they are smaller) holding
//! either the new data, data the same file held there since it was last made
//! durable, or zeros; never another file's data or a freed block's. A block whose sharing ended
//! by a record not yet durable is still written by copy on write.
//! Times are journaled only by fsync (and held by every checkpoint).
//!
//! # Times
//! File times are the realtime clock as of the last timer tick
//! (`CLOCK_REALTIME_COARSE`, a few milliseconds' resolution), as Linux stamps
//! inode times: several writes within one tick get the same mtime, and times
//! never go backwards unless the system clock does. A write's mtime is set
//! when the write is mapped (a pure overwrite) or completes (anything else).
//!
//! # Crash tests
//! `tests/power_cuts.rs` takes 1000 power cuts (the emulated controller's
//! volatile cache lost, then a controller reset) while two or three threads run
//! random writes (with and without O_DSYNC/O_SYNC, allocating, overwriting,
//! copy on write), preallocate, punch, truncate, clone, create, rename, unlink,
//! fsync, fdatasync and sync, and after each checks replay, `fsck` and every
//! thread's files against a model of what was acknowledged. Every third cut
//! is partial (each cached logical block kept or lost on its own), and every
//! other fresh device is driven without FUA, so journal commits and
//! checkpoints are a write and a Flush that a cut can tear. `tests/torn.rs`
//! tears one large commit in chosen ways (commit record kept with blocks
//! before it lost, lost blocks not a tail) and checks it is discarded whole;
//! `tests/crash.rs` corrupts checksums. A longer run:
//! `STORE_CRASH_CUTS=20000 cargo test --release -p store --test power_cuts -- --nocapture`
//! (`STORE_CRASH_SEED` picks another workload) took 20000 cuts (6666 partial,
//! 3333 of those on devices without FUA) in 142 s on two shared cores: 559454
//! operations succeeded, 232213 of them acknowledged durable, 1021527 commands
//! executed before the cuts, every check passed.
//!
//! # Concurrency
//! Per-file locks guard the block maps; the allocator lock guards free space
//! and reference counts and orders the journal's records; the journal lock
//! serialises commits (one commit carries every pending record: group commit).
//! The pure-overwrite path takes only its file's lock, once: the file size
//! the dio layer asks for is a copy published under that lock wherever the
//! size changes, read without it.

#![forbid(unsafe_code)]

mod codec;
mod error;
mod extent;
mod file;
mod fsck;
mod io;
mod layout;
mod meta;
mod ops;
mod store;

pub use error::StoreError;
pub use file::File;
pub use fsck::FsckReport;
pub use io::StoreIo;
pub use layout::{Geometry, Superblock, FORMAT_VERSION};
pub use meta::MAX_NAME;
pub use ops::{ExtentInfo, FileStat};
pub use store::{FormatOptions, Region, Store, StoreCounters};
