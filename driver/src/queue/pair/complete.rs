//! Reaping completions: the hot loop and the CQ head doorbell.

use std::sync::atomic::Ordering;

use crate::queue::tracker::{Released, NO_PARENT};
use crate::spec::Status;
use crate::transport::Transport;
use crate::Error;

use super::clock::CLOCK_POLLS;
use super::retry::Disposition;
use super::IoQueuePair;

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Reaps up to `max` completions, calls `f(context, result)` for each, and returns
    /// how many it reported. Rings the SQ doorbell first if submissions are waiting, and
    /// the CQ head doorbell once at the end. Also enforces command deadlines.
    #[inline]
    pub fn process_completions(
        &mut self,
        max: usize,
        mut f: impl FnMut(C, Result<(), Error>),
    ) -> usize {
        if self.epoch != self.shared.epoch.load(Ordering::Acquire) {
            self.catch_up();
        }
        let mut n = 0;
        if self.failed_pending > 0 {
            n += self.deliver_failed(&mut f);
        }
        if self.retry.waiting() {
            self.resubmit_due();
        }
        self.ring();
        self.shared.t.poll_queue(self.qid);
        n += self.reap(max.saturating_sub(n), &mut f);
        self.clock.countdown -= 1;
        if self.clock.countdown == 0 {
            self.clock.countdown = CLOCK_POLLS;
            n += self.tick(&mut f);
        }
        n
    }
    /// [`Self::process_completions`] that also hands `f` the completion's command
    /// specific result, dwords 0 and 1 as one value (dword 0 in the low half): the LBA
    /// a Zone Append wrote, for example. A request split into child commands, or one
    /// that did not reach the device, reports 0.
    pub fn process_completions_with_result(
        &mut self,
        max: usize,
        mut f: impl FnMut(C, Result<u64, Error>),
    ) -> usize {
        if self.epoch != self.shared.epoch.load(Ordering::Acquire) {
            self.catch_up();
        }
        let mut n = 0;
        if self.failed_pending > 0 {
            n += self.deliver_failed(&mut |c, r: Result<(), Error>| f(c, r.map(|()| 0)));
        }
        if self.retry.waiting() {
            self.resubmit_due();
        }
        self.ring();
        self.shared.t.poll_queue(self.qid);
        n += self.reap_with_result(max.saturating_sub(n), &mut |c, r, dw| f(c, r.map(|()| dw)));
        self.clock.countdown -= 1;
        if self.clock.countdown == 0 {
            self.clock.countdown = CLOCK_POLLS;
            n += self.tick(&mut |c, r: Result<(), Error>| f(c, r.map(|()| 0)));
        }
        n
    }

    #[inline]
    pub(super) fn reap(&mut self, max: usize, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        self.reap_with_result(max, &mut |c, r, _| f(c, r))
    }

    /// The reap loop; `f` also gets completion dwords 0 and 1 (dword 0 low).
    #[inline(always)]
    fn reap_with_result(
        &mut self,
        max: usize,
        f: &mut impl FnMut(C, Result<(), Error>, u64),
    ) -> usize {
        let mut n = 0;
        let mut consumed: u16 = 0;
        while n < max {
            let Some(cqe) = self.cq.pop() else { break };
            consumed = consumed.saturating_add(1);
            if cqe.sq_id != self.qid {
                self.stats.wrong_sq_id += 1;
                warn_wrong_sq_id(self.qid, cqe.sq_id, cqe.cid);
                continue;
            }
            if !self.sq.set_head(cqe.sq_head) {
                self.stats.bad_sq_head += 1;
                warn_bad_sq_head(self.qid, cqe.sq_head);
            }
            let status = cqe.status.without_phase();
            if !status.is_success() {
                n += self.failed_cqe(cqe.cid, status, f);
                continue;
            }
            let Some(slot) = self.slots.release_context(cqe.cid) else {
                self.stats.unknown_cid += 1;
                warn_unknown_cid(self.qid, cqe.cid);
                continue;
            };
            self.stats.completed += 1;
            if slot.parent != NO_PARENT {
                n += self.child_cqe(cqe.cid, slot, status, &mut |c, r| f(c, r, 0));
                continue;
            }
            let result = if !slot.failed {
                Ok(())
            } else {
                Err(self.completion_error(cqe.cid, slot, status))
            };
            f(
                slot.ctx,
                result,
                u64::from(cqe.dw0) | u64::from(cqe.dw1) << 32,
            );
            n += 1;
        }
        self.cq_unrung = self.cq_unrung.saturating_add(consumed);
        if self.cq_unrung > self.cq_slack {
            self.cq_unrung = 0;
            let head = self.cq.head();
            if self.shadow_update(false, head) {
                self.db.ring_cq(&self.shared.t, head);
                self.stats.doorbell_writes += 1;
            } else {
                self.stats.doorbell_writes_skipped += 1;
            }
        }
        n
    }

    /// A completion with a failure status: the command is retried when its status and
    /// budget allow, otherwise its error is reported; returns the requests reported.
    /// Out of line, so the reap loop keeps the shape it has for successes.
    #[cold]
    #[inline(never)]
    fn failed_cqe(
        &mut self,
        cid: u16,
        status: Status,
        f: &mut impl FnMut(C, Result<(), Error>, u64),
    ) -> usize {
        let exhausted = match self.retry_after_status(cid, status) {
            Disposition::Retried => return 0,
            Disposition::Exhausted(r) => Some(r),
            Disposition::Complete => None,
        };
        let Some(slot) = self.slots.release_context(cid) else {
            self.stats.unknown_cid += 1;
            warn_unknown_cid(self.qid, cid);
            return 0;
        };
        self.stats.completed += 1;
        let e = self.completion_error(cid, slot, status);
        let e = match exhausted {
            Some(retries) => self.retries_exhausted(cid, retries, e),
            None => e,
        };
        self.report(slot.parent, slot.ctx, Err(e), &mut |c, r| f(c, r, 0))
    }

    /// Reports the completion of a child of a split request to its parent (and the
    /// request to `f` when it was the last child); out of line, so the loop above
    /// keeps the shape it has for commands that are requests of their own.
    #[inline(never)]
    fn child_cqe(
        &mut self,
        cid: u16,
        slot: Released<C>,
        status: Status,
        f: &mut impl FnMut(C, Result<(), Error>),
    ) -> usize {
        let result = if !slot.failed && status.is_success() {
            Ok(())
        } else {
            Err(self.completion_error(cid, slot, status))
        };
        self.child_completed(slot.parent, result, f)
    }

    /// The error of a completion that did not succeed, or of a command a reset cut
    /// short (still reported as cut short); out of line, as completions nearly
    /// always succeed.
    #[cold]
    #[inline(never)]
    fn completion_error(&mut self, cid: u16, slot: Released<C>, status: Status) -> Error {
        let command = self.slots.desc(cid);
        if slot.failed {
            self.failed_pending = self.failed_pending.saturating_sub(1);
            Error::ControllerReset { command }
        } else if slot.aborted {
            Error::CommandTimedOut {
                command,
                timeout: self.timeout,
            }
        } else {
            self.zone_error(crate::pi::command_error(command, status, self.qid, cid))
        }
    }
}

// The device's mistakes are reported out of line: the reap loop stays small.

#[cold]
#[inline(never)]
fn warn_wrong_sq_id(qid: u16, sq_id: u16, cid: u16) {
    tracing::warn!(
        qid,
        sq_id,
        cid,
        "completion names another submission queue; ignored"
    );
}

#[cold]
#[inline(never)]
fn warn_bad_sq_head(qid: u16, sq_head: u16) {
    tracing::warn!(
        qid,
        sq_head,
        "completion reports an SQ head outside the queue; ignored"
    );
}

#[cold]
#[inline(never)]
fn warn_unknown_cid(qid: u16, cid: u16) {
    tracing::warn!(
        qid,
        cid,
        "completion for a command that is not outstanding; ignored"
    );
}
