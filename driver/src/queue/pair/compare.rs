//! Compare, and the fused Compare and Write.
//!
//! A Compare (NVM Command Set 1.0 §3.2.1) reads blocks and compares them with the data
//! buffer (and, on a format with metadata, with the metadata the buffers carry); a
//! mismatch completes with Compare Failure, reported as [`Error::CompareFailure`]. Its
//! buffers follow the rules of a read's: exactly `blocks` times the namespace's
//! data-buffer block size, checked where the transfer is built.
//!
//! The fused Compare and Write (NVMe Base 2.0 §3.4.2) writes the blocks only if the
//! Compare matched, with no other command on the namespace executed in between. The two
//! entries go into adjacent submission queue slots (the slot after the last is slot 0)
//! and are announced by one doorbell write: both are queued by one call, which rings
//! nothing, so no ring can fall between them. Each command completes on its own, with
//! its own context, as SPDK reports them: when the Compare fails the Write completes with
//! [`Error::FusedCommandAborted`] and the blocks are unchanged.

use crate::error::{CommandDesc, IoKind};
use crate::queue::prp::Segment;
use crate::queue::IoOptions;
use crate::spec::command::Fuse;
use crate::spec::identify::IdentifyController;
use crate::spec::{nvm, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;
use hugepages::DmaBuffer;

use super::submit::{Blocks, Transfer, MAX_BLOCKS};
use super::IoQueuePair;

/// The optional commands of this module the controller implements.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CommandSupport {
    /// Compare (ONCS bit 0).
    compare: bool,
    /// The Compare and Write fused operation (FUSES bit 0).
    compare_and_write: bool,
}

impl CommandSupport {
    pub(crate) fn of(id: &IdentifyController) -> Self {
        CommandSupport {
            compare: id.oncs.compare(),
            compare_and_write: id.fuses.compare_and_write(),
        }
    }
}

/// A fused Compare and Write of `blocks` blocks at `slba`: the blocks are replaced by
/// `write` only if they hold what `compare` holds.
///
/// Each buffer follows the rules of a read's or write's: exactly `blocks` times the
/// namespace's data-buffer block size, and the separate metadata buffer in its options
/// when the format needs one. The controller guarantees atomicity for up to
/// Identify Controller ACWU + 1 blocks.
#[derive(Debug, Clone, Copy)]
pub struct CompareAndWrite<'a> {
    /// Namespace ID.
    pub nsid: u32,
    /// First block.
    pub slba: u64,
    /// Number of blocks.
    pub blocks: u32,
    /// The contents the blocks must have for the write to happen.
    pub compare: &'a [Segment],
    /// Flags and metadata buffer of the Compare.
    pub compare_options: IoOptions,
    /// The new contents.
    pub write: &'a [Segment],
    /// Flags (such as FUA) and metadata buffer of the Write.
    pub write_options: IoOptions,
}

/// One data command of this module, built and sized but not queued.
struct Built<'a> {
    sqe: SubmissionEntry,
    desc: CommandDesc,
    transfer: Transfer<'a>,
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Builds a Compare or Write of `blocks` blocks at `slba` over `data`, sized on the
    /// namespace's format as a read or write is.
    fn build_data_command<'a>(
        &self,
        kind: IoKind,
        (nsid, slba, blocks): (u32, u64, u32),
        data: &'a [Segment],
        opts: &IoOptions,
    ) -> Result<Built<'a>, Error> {
        let sizes = self.block_sizes(nsid, opts.flags, opts.metadata.is_some())?;
        let block_bytes = sizes.0;
        let desc = CommandDesc::Io {
            kind,
            nsid,
            slba,
            blocks,
        };
        if blocks == 0 {
            return Err(Error::InvalidRequest(format!("{desc}: zero blocks")));
        }
        let bytes = u64::from(blocks) * u64::from(block_bytes);
        // Neither half of a fused operation may be split, so neither is split here.
        if blocks > MAX_BLOCKS || bytes > self.max_transfer {
            return Err(Error::ExceedsMdts {
                command: desc,
                bytes,
                max: self
                    .max_transfer
                    .min(u64::from(MAX_BLOCKS) * u64::from(block_bytes)),
            });
        }
        let sqe = match kind {
            IoKind::Compare => nvm::compare(nsid, slba, blocks),
            _ => nvm::write(nsid, slba, blocks),
        };
        let sqe = sqe.map_err(|e| Error::InvalidRequest(format!("{desc}: {e}")))?;
        let at = Blocks { nsid, slba, blocks };
        let (sqe, transfer) = self.data_command(sqe, at, data, opts, sizes)?;
        Ok(Built {
            sqe,
            desc,
            transfer,
        })
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            device: self.shared.name.clone(),
            what: what.to_string(),
        }
    }

    /// Queues a Compare of `blocks` blocks at `slba` with `data` (and the separate
    /// metadata buffer in `opts` on a format that needs one).
    ///
    /// A mismatch completes with [`Error::CompareFailure`]. `data` holds exactly
    /// `blocks` times the namespace's data-buffer block size and must stay allocated
    /// until the completion is reported. A compare larger than one command is split as
    /// [`Self::submit_read`] describes and completes once. Refused with
    /// [`Error::Unsupported`] when the controller does not implement Compare (Identify
    /// Controller ONCS bit 0).
    pub fn submit_compare(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        data: &[Segment],
        opts: &IoOptions,
        ctx: C,
    ) -> Result<(), Error> {
        if !self.support.compare {
            return Err(self.unsupported("the Compare command (Identify Controller ONCS bit 0)"));
        }
        // Checked, built and, above one command's limit, split as a read is.
        let at = Blocks { nsid, slba, blocks };
        self.rw(IoKind::Compare, at, data, opts, ctx)
    }

    /// Queues the fused Compare and Write `op`: two entries in adjacent slots, announced
    /// by the next doorbell write together. `compare_ctx` and `write_ctx` come back with
    /// the two completions. When the Compare fails it completes with
    /// [`Error::CompareFailure`] and the Write with [`Error::FusedCommandAborted`], and
    /// the blocks are unchanged.
    ///
    /// Refused before anything is queued with [`Error::Unsupported`] when the controller
    /// does not offer the operation (Identify Controller FUSES bit 0), with
    /// [`Error::QueueFull`] when fewer than two slots are free, and with the error of a
    /// read or write for a buffer that does not fit the command.
    pub fn submit_compare_and_write(
        &mut self,
        op: &CompareAndWrite<'_>,
        compare_ctx: C,
        write_ctx: C,
    ) -> Result<(), Error> {
        if !self.support.compare_and_write {
            return Err(self.unsupported(
                "the fused Compare and Write operation (Identify Controller FUSES bit 0)",
            ));
        }
        let at = (op.nsid, op.slba, op.blocks);
        let mut first =
            self.build_data_command(IoKind::Compare, at, op.compare, &op.compare_options)?;
        let mut second = self.build_data_command(IoKind::Write, at, op.write, &op.write_options)?;
        first.sqe.cdw0.set_fuse(Fuse::First);
        second.sqe.cdw0.set_fuse(Fuse::Second);
        if self.sq.free_entries() < 2 || self.slots.available() < 2 {
            return Err(self.queue_full());
        }
        let Some(first_cid) = self.slots.next_cid() else {
            return Err(self.queue_full());
        };
        self.submit(first.sqe, first.desc, Some(first.transfer), compare_ctx)?;
        // Nothing rings between the two pushes, so they share the next doorbell write.
        // A controller reset by another thread in between recovers this pair's queue
        // inside the second `submit`; the lone Write then reaches the controller without
        // its Compare and is aborted (Missing Fused Command), never executed.
        if let Err(e) = self.submit(second.sqe, second.desc, Some(second.transfer), write_ctx) {
            // The Compare was queued but not announced: take it back, so the
            // controller never sees half of the pair.
            if self.sq.retract() {
                self.slots.undo_take(first_cid);
                self.stats.submitted -= 1;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Compares `blocks` blocks at `slba` with the start of `buf` and waits: `Ok` when
    /// they match, [`Error::CompareFailure`] when they differ.
    pub fn compare_sync(
        &mut self,
        nsid: u32,
        slba: u64,
        blocks: u32,
        buf: &DmaBuffer,
        opts: &IoOptions,
    ) -> Result<(), Error> {
        let block_bytes = self
            .block_sizes(nsid, opts.flags, opts.metadata.is_some())?
            .0;
        let bytes = (u64::from(blocks) * u64::from(block_bytes)) as usize;
        let seg = buf
            .segment(0, bytes)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.sync(|q| q.submit_compare(nsid, slba, blocks, &[seg], opts, C::default()))
    }
}
