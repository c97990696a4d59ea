//! What the direct-I/O layer needs from an NVMe I/O queue pair.
//!
//! The layer never names a concrete driver type: [`DioQueue`] is the seam. The
//! real driver implements it (see `nvme_qp`); tests use a fake.

use std::time::Duration;

use crate::error::Cause;

/// Device properties that decide how requests become commands (from Identify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Logical block (LBA data) size in bytes; a power of two.
    pub lba_size: u32,
    /// Namespace size in logical blocks.
    pub capacity_lbas: u64,
    /// The controller has a volatile write cache (Identify Controller VWC bit 0).
    pub volatile_write_cache: bool,
    /// Writes honour Force Unit Access (always true for NVMe writes).
    pub fua: bool,
    /// Largest data transfer of one command in bytes (from MDTS); 0 means unlimited.
    pub max_transfer: usize,
    /// The controller implements Write Zeroes (ONCS bit 3).
    pub write_zeroes: bool,
    /// Controller memory page size in bytes (CC.MPS); the PRP boundary.
    pub page_size: u32,
    /// Most DMA segments one command may carry.
    pub max_segments: usize,
}

/// One run of device-visible memory in a command's data pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// I/O virtual address of the first byte.
    pub iova: u64,
    /// Length in bytes.
    pub len: u32,
}

/// One NVM command the layer issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoCommand<'a> {
    /// Read `blocks` logical blocks at `lba` into `segments`.
    Read {
        /// First logical block.
        lba: u64,
        /// Number of logical blocks (at least 1).
        blocks: u32,
        /// Destination memory, in order; lengths add up to the transfer size.
        segments: &'a [Segment],
    },
    /// Write `blocks` logical blocks at `lba` from `segments`.
    Write {
        /// First logical block.
        lba: u64,
        /// Number of logical blocks (at least 1).
        blocks: u32,
        /// Source memory, in order; lengths add up to the transfer size.
        segments: &'a [Segment],
        /// Force Unit Access: the data is durable when the command completes.
        fua: bool,
    },
    /// Write Zeroes over `blocks` logical blocks at `lba`.
    WriteZeroes {
        /// First logical block.
        lba: u64,
        /// Number of logical blocks (at least 1).
        blocks: u32,
        /// Force Unit Access.
        fua: bool,
    },
    /// Flush the volatile write cache.
    Flush,
    /// Compare `blocks` logical blocks at `lba` with `segments`; a mismatch completes
    /// with Compare Failure.
    Compare {
        /// First logical block.
        lba: u64,
        /// Number of logical blocks (at least 1).
        blocks: u32,
        /// The expected contents, in order; lengths add up to the transfer size.
        segments: &'a [Segment],
    },
}

/// Why a queue pair did not accept or could not run a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The submission queue is full; reap completions and resubmit.
    #[error("submission queue is full")]
    Full,
    /// The command breaks a rule of the transfer (alignment, segment layout, size).
    #[error("command rejected: {0}")]
    Invalid(&'static str),
    /// The controller failed or the queue is unusable; the driver's error is the source.
    #[error("the queue pair failed")]
    Failed(#[source] Cause),
}

/// The status a completed command reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandStatus {
    /// Status field without the phase bit: SCT in bits 10:8, SC in bits 7:0 (0 is success).
    pub status: u16,
    /// Do Not Retry.
    pub dnr: bool,
}

impl CommandStatus {
    /// A successful completion.
    pub const SUCCESS: CommandStatus = CommandStatus {
        status: 0,
        dnr: false,
    };

    /// The queue pair failed the command itself, without a device status (it timed out
    /// and was aborted, a reset cut it short, the device is gone):
    /// [`DioQueue::take_cause`] has the queue's error. Bits 15:11 are set, which no
    /// device status has.
    pub const QUEUE_FAILED: CommandStatus = CommandStatus {
        status: u16::MAX,
        dnr: false,
    };

    /// Whether the command succeeded.
    #[inline]
    pub fn is_success(&self) -> bool {
        self.status == 0
    }
}

/// An I/O queue pair as the direct-I/O layer uses it.
///
/// Implementations must not allocate in `submit` or `poll`: both run once per command.
pub trait DioQueue {
    /// The device properties; constant for the life of the queue pair.
    fn caps(&self) -> DeviceCaps;

    /// Queues `cmd`; its completion reports `tag` unchanged.
    fn submit(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError>;

    /// Reaps up to `max` completions, calling `done(tag, status)` for each; returns how many.
    fn poll<F: FnMut(u64, CommandStatus)>(
        &mut self,
        max: usize,
        done: F,
    ) -> Result<usize, QueueError>;

    /// Reaps at most one completion: its tag and status, or `None` when none is
    /// ready (or the poll failed: [`poll`](Self::poll) reports why).
    #[inline(always)]
    fn poll_one(&mut self) -> Option<(u64, CommandStatus)> {
        let mut one = None;
        let _ = self.poll(1, |tag, status| one = Some((tag, status)));
        one
    }

    /// Sleeps until the queue's interrupt fires or `timeout` passes.
    fn wait_interrupt(&mut self, timeout: Duration) -> Result<(), QueueError>;

    /// The longest a command may stay outstanding, while the queue is polled, before
    /// the queue reports it (its own timeout, abort and reset included). Until then
    /// the device may still move data to or from the command's buffers, so the layer
    /// never gives up waiting for a command sooner.
    fn verdict_limit(&self) -> Duration;

    /// The error of the command tagged `tag` that completed with
    /// [`CommandStatus::QUEUE_FAILED`], handed over once (`None`: not kept).
    fn take_cause(&mut self, tag: u64) -> Option<Cause> {
        let _ = tag;
        None
    }
}
