//! An I/O queue pair: one per thread, no lock and no allocation per command.
//!
//! Submissions are queued with `submit_*` and reach the controller at the next
//! [`IoQueuePair::ring`] (or [`IoQueuePair::process_completions`], which rings first): one
//! doorbell write per batch. Completions are handed to a closure with the context the
//! caller gave at submission. A polled pair's CQ is [`POLLED_CQ_SLACK`] entries larger than
//! its SQ, so its head doorbell is written once per that many completions, not per poll.
//!
//! One module per job: [`lifecycle`] creates and deletes the controller's queues,
//! [`submit`] builds and queues commands, [`complete`] reaps completions (the hot loop),
//! [`recovery`] enforces deadlines and catches up with resets, [`wait`] blocks until
//! commands finish, [`split`] turns a read or write larger than one command into child
//! commands, [`zns`] sends zone commands, [`retry`] resubmits commands after a reset
//! or a transient status, [`gone`] notices a device that disappeared; [`clock`] is the
//! coarse clock deadlines are measured with.

mod clock;
mod compare;
mod complete;
mod gone;
mod lifecycle;
mod pi;
mod recovery;
mod retry;
mod split;
mod submit;
mod wait;
mod zns;

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::epoll::Epoll;
use vmm_sys_util::eventfd::EventFd;

use crate::admin::QueueStats;
use crate::controller::Shared;
use crate::dma::DmaMem;
use crate::namespace::{NsGeometry, NsTable};
use crate::options::{CompletionMode, SglMode};
use crate::queue::ring::{CqRing, Doorbells, ShadowSlots, SqRing};
use crate::queue::sgl::SglPolicy;
use crate::queue::tracker::TrackerPool;
use crate::queue::IoFlags;
use crate::transport::Transport;
use crate::Error;

use self::clock::Clock;
pub use self::compare::CompareAndWrite;
pub use self::split::commands_per_request;
use self::split::Splits;

/// Completion queue entries a polled queue pair adds beyond its submission queue's; its
/// CQ head doorbell is written only once more than this many consumed entries await it.
const POLLED_CQ_SLACK: u16 = 64;

/// An I/O submission/completion queue pair owned by one thread.
///
/// `C` is the per-command context handed back on completion (`u64` by default; any
/// `Copy + Default` type). The pair is `Send` but not `Sync`.
pub struct IoQueuePair<T: Transport, C: Copy + Default = u64> {
    qid: u16,
    sq: SqRing,
    cq: CqRing,
    /// Completions consumed since the CQ head doorbell was last written.
    cq_unrung: u16,
    /// Most completions the CQ head doorbell may lag by (CQ entries minus SQ entries).
    cq_slack: u16,
    db: Doorbells,
    shadow: Option<ShadowSlots>,
    slots: TrackerPool<C>,
    splits: Splits<C>,
    lists: DmaMem,
    list_pages: usize,
    page_size: u64,
    max_transfer: u64,
    ns: Arc<NsTable>,
    mode: CompletionMode,
    vector: u16,
    irq: Option<(Arc<EventFd>, Epoll)>,
    epoch: u64,
    failed_pending: usize,
    stats: QueueStats,
    clock: Clock,
    removal: gone::RemovalWatch,
    timeout: Duration,
    sgl_mode: SglMode,
    sgl: SglPolicy,
    _not_sync: PhantomData<Cell<()>>,
    /// Compare and fused Compare and Write support, from Identify Controller.
    support: compare::CommandSupport,
    /// Saved submission entries and delayed retries.
    retry: retry::Retries,
    // Last: the rings and lists above are unmapped while the transport (possibly owned
    // only through this Arc) still exists.
    shared: Arc<Shared<T>>,
}

impl<T: Transport, C: Copy + Default> std::fmt::Debug for IoQueuePair<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoQueuePair")
            .field("qid", &self.qid)
            .field("depth", &self.sq.entries())
            .field("outstanding", &self.outstanding())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// The queue ID.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Queue entries; at most `depth() - 1` commands are outstanding at once.
    pub fn depth(&self) -> u16 {
        self.sq.entries()
    }

    /// Requests submitted and not yet reported (a request split into child commands
    /// counts once).
    pub fn outstanding(&self) -> usize {
        self.slots.outstanding() - self.splits.children() + self.splits.requests()
    }

    /// The completion mode.
    pub fn mode(&self) -> CompletionMode {
        self.mode
    }

    /// Counters, including device misbehaviour seen on this queue.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The eventfd signalled by this queue's interrupt vector (interrupt mode only), for
    /// callers that wait in their own event loop.
    pub fn interrupt_fd(&self) -> Option<&EventFd> {
        self.irq.as_ref().map(|(fd, _)| fd.as_ref())
    }

    /// How this pair describes data buffers (PRPs, SGLs, or PRPs with SGLs for buffers
    /// PRPs cannot describe).
    pub fn sgl_mode(&self) -> SglMode {
        self.sgl_mode
    }

    /// The largest transfer of one command in bytes; larger reads and writes are split
    /// into several commands (see [`commands_per_request`]).
    pub fn max_transfer_bytes(&self) -> u64 {
        self.max_transfer
    }

    fn ns_shift(&self, nsid: u32) -> Result<u32, Error> {
        let g = self.ns_geometry(nsid)?;
        if g.unusable_set {
            return Err(unusable(g));
        }
        Ok(g.lba_shift)
    }

    #[inline]
    fn ns_geometry(&self, nsid: u32) -> Result<&NsGeometry, Error> {
        self.ns.get(nsid).ok_or_else(|| Error::NoSuchNamespace {
            device: self.shared.name.clone(),
            nsid,
        })
    }

    /// Data-buffer and separate-metadata bytes per block of a data command on `nsid`
    /// with `flags`, once the namespace's format is known to be one the command can
    /// carry: data plus metadata for extended LBAs, data alone when [`IoFlags::PRACT`]
    /// strips an 8-byte PI. A format with separate metadata needs `has_metadata`.
    #[inline]
    fn block_sizes(
        &self,
        nsid: u32,
        flags: IoFlags,
        has_metadata: bool,
    ) -> Result<(u32, u16), Error> {
        let g = self.ns_geometry(nsid)?;
        if g.bad_format {
            return Err(unusable(g));
        }
        let pract = flags.contains(IoFlags::PRACT);
        let metadata_bytes = g.metadata_block_bytes(pract);
        if metadata_bytes != 0 && !has_metadata {
            return Err(Error::MetadataBufferRequired {
                nsid,
                metadata_bytes,
            });
        }
        Ok((g.data_block_bytes(pract), metadata_bytes))
    }

    /// Data-buffer bytes per block of a data command without a metadata buffer (see
    /// [`Self::block_sizes`]).
    #[inline]
    fn data_block_bytes(&self, nsid: u32, flags: IoFlags) -> Result<u32, Error> {
        self.block_sizes(nsid, flags, false).map(|(b, _)| b)
    }
}

/// Why I/O to a namespace marked unusable is refused: its command set, or its format.
#[cold]
#[inline(never)]
fn unusable(g: &NsGeometry) -> Error {
    if g.unusable_set {
        Error::UnsupportedCommandSet {
            nsid: g.nsid,
            csi: g.command_set,
        }
    } else {
        Error::UnusableFormat { nsid: g.nsid }
    }
}
