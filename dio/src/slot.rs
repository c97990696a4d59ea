//! Per-request state kept while commands are in flight, and the command tag
//! that routes a completion back to it.

use std::sync::Arc;

use crate::error::DioError;
use crate::iomap::{CompletionFlags, DioOps};
use crate::iov::IovIter;
use crate::kiocb::Kiocb;

/// Which command a tag belongs to (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read = 0,
    Write = 1,
    WriteZeroes = 2,
    Flush = 3,
    Compare = 4,
}

impl Op {
    fn name(bits: u64) -> &'static str {
        match bits & 7 {
            0 => "read",
            1 => "write",
            2 => "write zeroes",
            3 => "flush",
            _ => "compare",
        }
    }
}

/// Media and Data Integrity Errors (SCT 2h), Compare Failure (SC 85h), as
/// [`crate::CommandStatus::status`] holds it.
const COMPARE_FAILURE: u16 = 0x285;

const INDEX_BITS: u32 = 20;
const OP_SHIFT: u32 = INDEX_BITS;
const GEN_SHIFT: u32 = INDEX_BITS + 3;
/// Generations wrap within the bits a tag leaves them.
pub(crate) const GEN_MASK: u64 = (1 << 40) - 1;
/// Most request slots one [`crate::Dio`] can have.
pub(crate) const MAX_SLOTS: usize = 1 << INDEX_BITS;

/// Builds the tag of a command issued for slot `index` at generation `gen`.
#[inline]
pub(crate) fn make_tag(index: usize, gen: u64, op: Op) -> u64 {
    (gen << GEN_SHIFT) | ((op as u64) << OP_SHIFT) | index as u64
}

/// `tag` (built for [`Op::Read`]) for the command kind `op`.
#[inline]
pub(crate) fn with_op(tag: u64, op: Op) -> u64 {
    tag | ((op as u64) << OP_SHIFT)
}

/// Splits a tag into slot index and generation.
#[inline]
pub(crate) fn split_tag(tag: u64) -> (usize, u64) {
    ((tag & ((1 << INDEX_BITS) - 1)) as usize, tag >> GEN_SHIFT)
}

/// The name of the command a tag belongs to.
pub(crate) fn tag_op_name(tag: u64) -> &'static str {
    Op::name(tag >> OP_SHIFT)
}

/// What finishing an asynchronous request needs once its commands completed.
pub(crate) struct AsyncCtx<B> {
    pub iocb: Kiocb,
    pub iter: IovIter<B>,
    pub dops: Arc<dyn DioOps + Send + Sync>,
    pub i_size: u64,
    pub done_before: usize,
    pub callback: Box<dyn FnOnce(crate::AsyncDone<B>) + Send>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Free,
    Active,
    /// The waiter gave up (timeout); late completions only release the slot.
    Abandoned,
}

/// One request's in-flight state (Linux's `struct iomap_dio` in `fs/iomap/direct-io.c`).
pub(crate) struct Slot<B> {
    pub gen: u64,
    pub state: SlotState,
    /// Commands issued and not yet completed.
    pub outstanding: u32,
    /// Submission still running: the submitter holds a reference.
    pub submitting: bool,
    /// All commands, the flush included, have completed.
    pub finished: bool,
    pub flush_issued: bool,
    pub write: bool,
    pub flags: CompletionFlags,
    /// Bytes issued to the device or zero-filled.
    pub size: u64,
    /// First error; later ones are dropped.
    pub error: Option<DioError>,
    /// The tag of the command whose failure without a device status is `error`: the
    /// queue holds its cause ([`crate::DioQueue::take_cause`]).
    pub queue_failed: Option<u64>,
    pub ctx: Option<AsyncCtx<B>>,
}

impl<B> Slot<B> {
    pub(crate) fn new() -> Self {
        Slot {
            gen: 0,
            state: SlotState::Free,
            outstanding: 0,
            submitting: false,
            finished: false,
            flush_issued: false,
            write: false,
            flags: CompletionFlags::empty(),
            size: 0,
            error: None,
            queue_failed: None,
            ctx: None,
        }
    }

    /// Drops an asynchronous request's context (out of line: synchronous requests have none).
    #[cold]
    #[inline(never)]
    pub(crate) fn drop_ctx(&mut self) {
        self.ctx = None;
    }

    /// Whether the request's commands are done but its data still needs a cache
    /// flush (`vwc`: the device has a volatile write cache).
    #[inline]
    pub(crate) fn needs_flush(&self, vwc: bool) -> bool {
        self.write
            && vwc
            && !self.flush_issued
            && self.error.is_none()
            && self.flags.contains(CompletionFlags::NEED_SYNC)
    }

    /// Records a failed command's status as the request's error (out of line:
    /// completions are nearly always successful).
    #[cold]
    #[inline(never)]
    pub(crate) fn device_error(&mut self, tag: u64, status: u16, dnr: bool) {
        if status == COMPARE_FAILURE {
            return self.set_error(DioError::Miscompare);
        }
        if status == crate::CommandStatus::QUEUE_FAILED.status {
            if self.error.is_none() {
                self.queue_failed = Some(tag);
            }
            return self.set_error(DioError::Io {
                reason: "the driver failed a command without a device status",
            });
        }
        self.set_error(DioError::Device {
            op: tag_op_name(tag),
            status,
            dnr,
        });
    }

    /// Records `e` unless an earlier error is already recorded.
    #[inline]
    pub(crate) fn set_error(&mut self, e: DioError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}
