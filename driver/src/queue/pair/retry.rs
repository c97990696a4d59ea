//! Resubmitting commands: after a controller reset, and after a transient status
//! (NVMe Base 2.0 §3.3.3.2.1 and the Command Retry Delay of §5.15.2.1).
//!
//! As Linux's `nvme_decide_disposition` (`drivers/nvme/host/core.c`): a command
//! whose failure allows a retry (no DNR, not marked [`IoFlags::NO_RETRY`], not one
//! half of a fused operation) is resubmitted, up to
//! [`crate::Options::command_retries`] times, and the caller sees only the outcome of
//! the last attempt; when the budget runs out the error is
//! [`Error::RetriesExhausted`] with the last attempt's error as its source.
//!
//! What allows a retry: being cut short by a controller reset (also after a timeout
//! and an Abort, as Linux requeues a cancelled request), and the transient statuses
//! Namespace Not Ready, Command Interrupted, Command Abort Requested and Command
//! Aborted due to SQ Deletion without DNR. A transient status waits the Command
//! Retry Delay its CRD field names (CRDT1..3 of Identify Controller, in 100 ms
//! units; the controller sets CRD only once the host enabled ACRE) before the command
//! is resubmitted, from [`IoQueuePair::process_completions`], never by sleeping.
//!
//! Nothing is allocated per command: each command slot keeps a copy of its last
//! submission entry, and its PRP or SGL list pages stay the slot's while the command
//! is outstanding, so the copy is the whole command. Commands waiting for their
//! delay sit in a list with one entry per slot.
//!
//! [`IoFlags::NO_RETRY`]: crate::IoFlags::NO_RETRY

use std::time::Duration;

use crate::spec::command::Fuse;
use crate::spec::identify::IdentifyController;
use crate::spec::status::{GenericStatus as G, StatusCode};
use crate::spec::{Status, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

use super::IoQueuePair;

/// Units of CRDT1..3 (Identify Controller): 100 milliseconds.
const CRDT_UNIT: Duration = Duration::from_millis(100);

/// The per-pair state of retries.
#[derive(Debug)]
pub(super) struct Retries {
    /// The last submission entry of each command slot, by CID.
    sqes: Box<[SubmissionEntry]>,
    /// Commands waiting for their retry: (CID, when it is due in the queue clock).
    due: Box<[(u16, u64)]>,
    due_len: usize,
    /// Resubmissions allowed per command.
    budget: u8,
    /// CRDT1..3 in nanoseconds.
    delays_ns: [u64; 3],
}

impl Retries {
    /// Room for `slots` commands; `budget` retries each; the delays of `id`.
    pub(super) fn new(slots: u16, budget: u8, id: &IdentifyController) -> Self {
        let crdt = [id.crdt1, id.crdt2, id.crdt3];
        Retries {
            sqes: vec![SubmissionEntry::default(); usize::from(slots)].into_boxed_slice(),
            due: vec![(0, 0); usize::from(slots)].into_boxed_slice(),
            due_len: 0,
            budget,
            delays_ns: crdt.map(|t| (CRDT_UNIT * u32::from(t)).as_nanos() as u64),
        }
    }

    /// Keeps `sqe`, the entry just queued for `cid`, for a resubmission.
    #[inline(always)]
    pub(super) fn save(&mut self, cid: u16, sqe: &SubmissionEntry) {
        if let Some(s) = self.sqes.get_mut(usize::from(cid)) {
            *s = *sqe;
        }
    }

    /// Whether commands wait for a delayed retry.
    #[inline(always)]
    pub(super) fn waiting(&self) -> bool {
        self.due_len > 0
    }

    /// The delay CRD `crd` names (0: none).
    fn delay_ns(&self, crd: u8) -> u64 {
        match crd {
            1..=3 => self.delays_ns[usize::from(crd - 1)],
            _ => 0,
        }
    }

    fn push_due(&mut self, cid: u16, at_ns: u64) {
        // One entry per slot at most: a command is listed once, and only while its
        // slot is held.
        if let Some(e) = self.due.get_mut(self.due_len) {
            *e = (cid, at_ns);
            self.due_len += 1;
        }
    }

    /// Takes `cid` off the list of delayed retries, if it is on it.
    fn remove_due(&mut self, cid: u16) {
        if let Some(i) = self.due[..self.due_len].iter().position(|e| e.0 == cid) {
            self.due_len -= 1;
            self.due.swap(i, self.due_len);
        }
    }
}

/// Whether `status` is one a command may be retried after: a transient condition
/// (the statuses a controller reset or an Abort produces, Namespace Not Ready,
/// Command Interrupted) without DNR.
pub(super) fn is_transient(status: Status) -> bool {
    !status.dnr()
        && matches!(
            status.code(),
            StatusCode::Generic(
                G::NamespaceNotReady
                    | G::CommandInterrupted
                    | G::CommandAbortRequested
                    | G::CommandAbortedSqDeletion
            )
        )
}

/// What becomes of a failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// It was resubmitted, or waits for its retry delay: nothing to report yet.
    Retried,
    /// It may not be retried: report its error.
    Complete,
    /// It could have been retried but its budget is spent: report
    /// [`Error::RetriesExhausted`] after this many retries.
    Exhausted(u8),
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Whether outstanding command `cid` may be retried at all, and how often it was.
    fn retry_allowed(&self, cid: u16) -> Option<(bool, u8)> {
        let slot = self.slots.get(cid)?;
        let fused = self
            .retry
            .sqes
            .get(usize::from(cid))
            .is_none_or(|s| s.cdw0.fuse() != Fuse::Normal);
        Some((!slot.no_retry && !fused, slot.retries))
    }

    /// Decides on command `cid`, which a controller reset cut short: resubmits it on
    /// the re-created queue when it may be retried.
    pub(super) fn retry_after_reset(&mut self, cid: u16) -> Disposition {
        self.retry.remove_due(cid);
        match self.retry_allowed(cid) {
            Some((true, n)) if n < self.retry.budget => {
                self.resubmit_or_defer(cid, 0);
                Disposition::Retried
            }
            Some((true, n)) if n > 0 => Disposition::Exhausted(n),
            _ => Disposition::Complete,
        }
    }

    /// Decides on outstanding command `cid`, completed with the failure `status`:
    /// a transient status is retried after its Command Retry Delay. Out of line, as
    /// completions nearly always succeed.
    #[cold]
    #[inline(never)]
    pub(super) fn retry_after_status(&mut self, cid: u16, status: Status) -> Disposition {
        if !is_transient(status) {
            return Disposition::Complete;
        }
        match self.retry_allowed(cid) {
            Some((true, n)) if n < self.retry.budget => {
                let delay = self.retry.delay_ns(status.crd());
                self.resubmit_or_defer(cid, delay);
                Disposition::Retried
            }
            Some((true, n)) if n > 0 => Disposition::Exhausted(n),
            _ => Disposition::Complete,
        }
    }

    /// Resubmits `cid` now (`delay_ns` 0 and room in the SQ), or lists it for
    /// [`Self::resubmit_due`].
    fn resubmit_or_defer(&mut self, cid: u16, delay_ns: u64) {
        if delay_ns == 0 && self.resubmit(cid) {
            return;
        }
        let due = self.clock.refresh().saturating_add(delay_ns);
        self.retry.push_due(cid, due);
        if let Some(s) = self.slots.get_mut(cid) {
            // Not on the device while it waits: its deadline starts when it is due.
            s.submitted_ns = due;
            s.aborted = false;
            s.failed = false;
        }
    }

    /// Queues the saved entry of `cid` again; false when the SQ is full.
    fn resubmit(&mut self, cid: u16) -> bool {
        if self.sq.is_full() {
            return false;
        }
        let Some(sqe) = self.retry.sqes.get(usize::from(cid)).copied() else {
            return false;
        };
        self.slots.restart(cid);
        self.sq.push(&sqe);
        self.stats.retries += 1;
        tracing::debug!(
            qid = self.qid,
            cid,
            retries = self.slots.retries(cid),
            "command resubmitted"
        );
        true
    }

    /// Resubmits the delayed commands whose time has come (the doorbell is rung by
    /// the caller).
    #[cold]
    #[inline(never)]
    pub(super) fn resubmit_due(&mut self) {
        let now = self.clock.refresh();
        let mut i = 0;
        while i < self.retry.due_len {
            let (cid, at) = self.retry.due[i];
            if at <= now && (self.slots.get(cid).is_none() || self.resubmit(cid)) {
                self.retry.due_len -= 1;
                self.retry.due.swap(i, self.retry.due_len);
            } else {
                i += 1;
            }
        }
    }

    /// The error of a command that could have been retried after `error` but has
    /// spent its budget of `retries`.
    #[cold]
    pub(super) fn retries_exhausted(&self, cid: u16, retries: u8, error: Error) -> Error {
        Error::RetriesExhausted {
            command: self.slots.desc(cid),
            retries,
            source: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_without_dnr_are_retryable() {
        for code in [
            G::NamespaceNotReady,
            G::CommandInterrupted,
            G::CommandAbortRequested,
            G::CommandAbortedSqDeletion,
        ] {
            let s = Status::generic(code);
            assert!(is_transient(s), "{s}");
            assert!(is_transient(s.with_crd(2)), "{s} with CRD");
            assert!(!is_transient(s.with_dnr(true)), "{s} with DNR");
        }
        assert!(!is_transient(Status::generic(G::LbaOutOfRange)));
        assert!(!is_transient(Status::generic(G::InternalError)));
    }

    #[test]
    fn crd_selects_crdt_in_units_of_100_ms() {
        let id = IdentifyController {
            crdt1: 1,
            crdt2: 5,
            crdt3: 10,
            ..IdentifyController::default()
        };
        let r = Retries::new(4, 5, &id);
        let ms = |crd| r.delay_ns(crd) / 1_000_000;
        assert_eq!([ms(0), ms(1), ms(2), ms(3)], [0, 100, 500, 1000]);
    }

    #[test]
    fn the_delay_list_takes_one_entry_per_slot_and_removes_by_cid() {
        let mut r = Retries::new(2, 5, &IdentifyController::default());
        r.push_due(1, 10);
        r.push_due(0, 20);
        r.push_due(7, 30); // no room: a third slot does not exist
        assert_eq!(r.due_len, 2);
        r.remove_due(1);
        assert_eq!(&r.due[..r.due_len], &[(0, 20)]);
        r.remove_due(9);
        assert_eq!(r.due_len, 1);
    }
}
