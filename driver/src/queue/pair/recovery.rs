//! Command deadlines (abort, then reset) and catching up with a controller reset.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::controller::ControllerState;
use crate::health::check_csts;
use crate::transport::Transport;
use crate::Error;

use super::lifecycle::create_hw_queues_after_resets;
use super::retry::Disposition;
use super::IoQueuePair;

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    /// Reads the clock, stamps commands submitted since the last reading, and enforces
    /// deadlines at most every quarter timeout.
    pub(super) fn tick(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        if self.slots.outstanding() == 0 {
            return 0;
        }
        let now = self.clock.refresh();
        self.tick_at(now, f)
    }

    /// [`IoQueuePair::tick`] with a clock reading (`now_ns` in the queue's clock) the
    /// caller already has.
    pub(super) fn tick_at(
        &mut self,
        now_ns: u64,
        f: &mut impl FnMut(C, Result<(), Error>),
    ) -> usize {
        self.clock.now_ns = now_ns;
        self.slots.stamp(now_ns);
        if let Some(n) = self.watch_removal(now_ns, f) {
            return n;
        }
        if now_ns < self.clock.next_check_ns {
            return 0;
        }
        let interval = (self.timeout / 4).max(Duration::from_millis(1));
        self.clock.next_check_ns = now_ns + interval.as_nanos() as u64;
        self.check_deadlines(f)
    }
    /// Reports every command a reset cut short.
    pub(super) fn deliver_failed(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        let state = self.shared.state.load(Ordering::Acquire);
        let down = match state {
            // Resetting: another reset began; the next catch-up re-creates the queues.
            ControllerState::Live | ControllerState::Resetting => None,
            ControllerState::ShutDown => Some("was shut down"),
            _ => Some("failed and could not be reset"),
        };
        let cids: Vec<u16> = self
            .slots
            .outstanding_cids()
            .filter(|&c| self.slots.get(c).is_some_and(|s| s.failed))
            .collect();
        let mut n = 0;
        for cid in cids {
            // A live controller re-created the queues: retry what may be retried.
            let disposition = match down {
                None => self.retry_after_reset(cid),
                Some(_) => Disposition::Complete,
            };
            if disposition == Disposition::Retried {
                continue;
            }
            if let Some(slot) = self.slots.release(cid) {
                let err = match down {
                    _ if slot.aborted => Error::CommandTimedOut {
                        command: slot.desc,
                        timeout: self.timeout,
                    },
                    Some(_) if state == ControllerState::Gone => Error::DeviceGone {
                        device: self.shared.name.clone(),
                        during: "I/O",
                        reason: self.shared.t.failure(),
                    },
                    Some(reason) => Error::ControllerDown {
                        command: slot.desc,
                        device: self.shared.name.clone(),
                        reason,
                    },
                    None => Error::ControllerReset { command: slot.desc },
                };
                let err = match disposition {
                    Disposition::Exhausted(retries) => self.retries_exhausted(cid, retries, err),
                    _ => err,
                };
                n += self.report(slot.parent, slot.ctx, Err(err), f);
            }
        }
        self.failed_pending = 0;
        n
    }

    /// Aborts the oldest command past its deadline; resets the controller when the abort
    /// does not bring it back. Also notices a fatal or vanished controller.
    fn check_deadlines(&mut self, f: &mut impl FnMut(C, Result<(), Error>)) -> usize {
        if let Err(e) = check_csts(&self.shared.t, &self.shared.name, "I/O") {
            if matches!(e, Error::DeviceGone { .. }) {
                return self.device_gone(f);
            }
            tracing::error!(qid = self.qid, error = %e, "controller failed; resetting");
            let _ = self.shared.reset_unless_past(Some(self.epoch));
            let _ = self.recover();
            return self.deliver_failed(f);
        }
        let Some((cid, slot)) = self.slots.oldest().map(|(c, s)| (c, *s)) else {
            return 0;
        };
        if slot.failed || slot.aborted {
            return 0;
        }
        let age = Duration::from_nanos(self.clock.now_ns.saturating_sub(slot.submitted_ns));
        if age < self.timeout {
            return 0;
        }
        self.stats.timeouts += 1;
        self.slots.mark_aborted(cid);
        tracing::warn!(qid = self.qid, cid, command = %slot.desc, ?age, "command timed out; aborting");
        self.stats.aborts += 1;
        if let Err(e) = self.shared.abort(self.qid, cid) {
            tracing::warn!(qid = self.qid, cid, error = %e, "Abort failed");
        }
        let end = Instant::now() + self.shared.options.abort_timeout;
        let mut n = 0;
        let mut backoff = Backoff::new();
        while self.slots.get(cid).is_some_and(|s| s.aborted) && Instant::now() < end {
            self.shared.t.poll_queue(self.qid);
            n += self.reap(usize::MAX, f);
            backoff.wait();
        }
        if self.slots.get(cid).is_some_and(|s| s.aborted) {
            tracing::error!(
                qid = self.qid,
                cid,
                "aborted command did not complete; resetting the controller"
            );
            let _ = self.shared.reset_unless_past(Some(self.epoch));
            let _ = self.recover();
            n += self.deliver_failed(f);
        }
        n
    }

    /// [`Self::recover`] from the completion path, which has no caller to return an
    /// error to: a failure to re-create the queues of a live controller is logged; a
    /// controller that is down or gone is not (every command reports it, and the pair
    /// would otherwise log it on every poll).
    #[cold]
    pub(super) fn catch_up(&mut self) {
        if let Err(e) = self.recover() {
            if self.shared.state.load(Ordering::Acquire) == ControllerState::Live {
                tracing::warn!(qid = self.qid, error = %e, "queue recovery failed");
            } else {
                tracing::debug!(qid = self.qid, error = %e, "controller is down");
            }
        }
    }

    /// Catches up with a controller reset or shutdown: outstanding commands are marked
    /// failed (reported by the next `process_completions`), the rings emptied and the
    /// queues re-created (again, if another reset overlaps their creation).
    pub(super) fn recover(&mut self) -> Result<(), Error> {
        // Wait for a reset in progress to finish.
        drop(hugepages::sync::lock(&self.shared.reset_lock));
        let cids: Vec<u16> = self.slots.outstanding_cids().collect();
        for cid in cids {
            if let Some(s) = self.slots.get_mut(cid) {
                if !s.failed {
                    s.failed = true;
                    self.failed_pending += 1;
                }
            }
        }
        let state = self.shared.state.load(Ordering::Acquire);
        if !matches!(state, ControllerState::Live | ControllerState::Resetting) {
            // Shut down or failed: keep our epoch stale so every call reports it.
            return self.shared.check_live("I/O");
        }
        self.sq.reset();
        self.cq.reset();
        self.cq_unrung = 0;
        if let (Some(d), Some(s)) = (self.shared.dbbuf.as_ref(), self.shadow) {
            d.shadow.write_u32(s.sq, 0)?;
            d.shadow.write_u32(s.cq, 0)?;
        }
        let iv = self.irq.as_ref().map(|_| self.vector);
        let r = create_hw_queues_after_resets(
            &self.shared,
            self.qid,
            self.sq.iova(),
            self.cq.iova(),
            (self.sq.entries(), self.cq.entries()),
            iv,
        );
        let epoch = r?;
        self.epoch = epoch;
        self.stats.resets += 1;
        Ok(())
    }
}
