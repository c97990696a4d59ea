//! Fused operations (NVMe Base 2.0 §3.4.2): the Compare and Write pair.
//!
//! The first command (FUSE 01b) must be a Compare and the entry right after it in the
//! same submission queue (slot 0 after the last slot) its Write (FUSE 10b), announced by
//! the same doorbell write, on the same namespace and blocks. The pair runs with the
//! blocks' range locks held exclusively, so no other change to them lands between the
//! Compare and the Write. Statuses:
//! - the Compare fails: it completes with its error (Compare Failure) and the Write with
//!   Command Aborted due to Failed Fused Command, not executed;
//! - a first command without a second after it, or a second without a first before it:
//!   Command Aborted due to Missing Fused Command;
//! - `fuses=off`, a fused admin command, FUSE 11b, a pair other than Compare then Write,
//!   or two commands on different namespaces or blocks: Invalid Field in Command (both
//!   commands of a pair).
//!
//! The second command's completion is posted after the first's; the command log records
//! the second when it executes, before the first's completion is recorded.

use nvme_spec::command::Fuse;
use nvme_spec::status::GenericStatus as G;
use nvme_spec::{CompletionEntry, NvmOpcode as Op, Status, SubmissionEntry};

use crate::controller::{generic, log_entry, Ctrl, Ctx, Outcome};
use crate::queue::SqState;

fn done(status: Status) -> Outcome {
    Outcome::Done(0, status)
}

/// The status of a command that completes at once (Compare and Write always do).
fn status_of(outcome: Outcome) -> Status {
    match outcome {
        Outcome::Done(_, status) => status,
        Outcome::Deferred => generic(G::InternalError),
    }
}

impl Ctrl {
    /// Executes `first`, a command whose FUSE field is not 00b, fetched from slot
    /// `slot` of I/O or admin queue `qid`. For a complete pair the second command is
    /// fetched from `sq` here, executed, and its completion queued in `ctx.extra`; the
    /// returned outcome is `first`'s.
    pub(crate) fn exec_fused(
        &self,
        ctx: &mut Ctx<'_>,
        sq: &mut SqState,
        qid: u16,
        first: &SubmissionEntry,
        ps: u64,
    ) -> Outcome {
        let fuse = first.cdw0.fuse();
        if qid == 0 || !self.cfg.fuses || fuse == Fuse::Reserved {
            return done(generic(G::InvalidFieldInCommand));
        }
        if fuse == Fuse::Second {
            return done(generic(G::CommandAbortedMissingFused));
        }
        // The second command must already be announced, in the next slot.
        if sq.head == sq.tail {
            return done(generic(G::CommandAbortedMissingFused));
        }
        let slot = sq.head;
        let Ok(raw) = ctx
            .view
            .read_sqe(sq.base.wrapping_add(u64::from(slot) * 64))
        else {
            ctx.counters.dma_errors += 1;
            return done(generic(G::DataTransferError));
        };
        let second = SubmissionEntry::from_bytes(&raw);
        if second.cdw0.fuse() != Fuse::Second {
            // Left in the queue: it runs next as the command it is.
            return done(generic(G::CommandAbortedMissingFused));
        }
        sq.head = if slot + 1 == sq.size { 0 } else { slot + 1 };
        ctx.counters.commands += 1;
        let (first_status, second_status) = self.compare_and_write(ctx, first, &second, ps);
        if !second_status.is_success() {
            ctx.counters.failed += 1;
            // The Write ran only if the Compare passed; then any failing LBA is its own.
            let lba = if first_status.is_success() {
                ctx.scratch.error_lba.take()
            } else {
                None
            };
            self.record_error(qid, &second, second_status, lba);
        }
        if self.log.enabled() {
            self.log.push(log_entry(qid, slot, &second, second_status));
        }
        ctx.extra.push(CompletionEntry {
            dw0: 0,
            dw1: 0,
            sq_head: sq.head as u16,
            sq_id: qid,
            cid: second.cid(),
            status: second_status,
        });
        done(first_status)
    }

    /// Runs a fused pair: `first` must be a Compare and `second` a Write of the same
    /// blocks. Returns both statuses.
    fn compare_and_write(
        &self,
        ctx: &mut Ctx<'_>,
        first: &SubmissionEntry,
        second: &SubmissionEntry,
        ps: u64,
    ) -> (Status, Status) {
        let invalid = generic(G::InvalidFieldInCommand);
        let same_blocks = first.nsid == second.nsid
            && first.slba() == second.slba()
            && first.block_count() == second.block_count();
        if first.nvm_opcode() != Op::COMPARE
            || second.nvm_opcode() != Op::WRITE
            || !same_blocks
            || self.check_psdt(first).is_err()
            || self.check_psdt(second).is_err()
        {
            return (invalid, invalid);
        }
        let Some(ns) = self.storage.get(first.nsid) else {
            let s = generic(G::InvalidNamespaceOrFormat);
            return (s, s);
        };
        ctx.counters.other_io += 1;
        ctx.counters.writes += 1;
        let (slba, nlb) = (first.slba(), u64::from(first.block_count()));
        let _range = ns.ranges.exclusive(slba, nlb);
        let compared = status_of(self.compare(ctx, ns, first, ps));
        if !compared.is_success() {
            return (compared, generic(G::CommandAbortedFailedFused));
        }
        (compared, status_of(self.write(ctx, ns, second, ps)))
    }
}
