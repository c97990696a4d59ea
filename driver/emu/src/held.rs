//! Completions held back by fault injection: holding, releasing, and the timer that
//! releases delayed ones.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use nvme_spec::CompletionEntry;

use crate::controller::Ctrl;
use hugepages::sync::lock;

/// A completion the controller is holding back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub cqid: u16,
    pub cqe: CompletionEntry,
    pub deadline: Option<Instant>,
    /// [`HeldCompletions::epoch`] when it was held: posted only into the same queues.
    pub epoch: u64,
}

/// Completions held back, and whether the timer thread that releases delayed ones runs.
#[derive(Default)]
pub(crate) struct HeldCompletions {
    /// A leaf lock.
    pub list: Mutex<Vec<Held>>,
    pub timer_running: AtomicBool,
    /// Bumped by every controller reset: a completion held before it belongs to
    /// queues that are gone, even when the host has created new ones with the same ids.
    pub epoch: AtomicU64,
}

impl HeldCompletions {
    /// Forgets every held completion (controller reset: their queues are gone).
    /// Returns how many there were.
    pub(crate) fn clear(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut held = lock(&self.list);
        let n = held.len();
        held.clear();
        n
    }

    /// Removes and returns every held completion for which `which` is true, in order.
    pub(crate) fn take(&self, which: impl Fn(&Held) -> bool) -> Vec<Held> {
        let mut held = lock(&self.list);
        let (go, stay) = held.drain(..).partition(|h| which(h));
        *held = stay;
        go
    }

    /// Removes and returns the first held completion for which `which` is true.
    pub(crate) fn take_first(&self, which: impl Fn(&Held) -> bool) -> Option<Held> {
        let mut held = lock(&self.list);
        let i = held.iter().position(which)?;
        Some(held.remove(i))
    }
}

impl Ctrl {
    /// Keeps `cqe` back (until released, aborted, or `delay` passes).
    pub(crate) fn hold(&self, cqid: u16, cqe: CompletionEntry, delay: Option<Duration>) {
        let deadline = delay.map(|d| Instant::now() + d);
        lock(&self.faults.held.list).push(Held {
            cqid,
            cqe,
            deadline,
            epoch: self.faults.held.epoch.load(Ordering::Acquire),
        });
        if delay.is_some() && !self.faults.held.timer_running.swap(true, Ordering::AcqRel) {
            let Some(weak) = self.weak.get().cloned() else {
                return;
            };
            let spawned = std::thread::Builder::new()
                .name("emu-delay".into())
                .spawn(move || timer_loop(weak));
            if let Err(e) = spawned {
                // Called with queue locks held, so the completion cannot be posted here;
                // it stays held for `FaultControl::release_held`.
                self.faults
                    .held
                    .timer_running
                    .store(false, Ordering::Release);
                tracing::warn!("emu: cannot start the delay timer ({e}); completion stays held");
            }
        }
    }

    /// The earliest deadline among held completions, if any has one.
    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.faults.held.list)
            .iter()
            .filter_map(|h| h.deadline)
            .min()
    }

    /// Posts every held completion for which `which` is true; returns how many.
    pub(crate) fn release_held(&self, which: impl Fn(&Held) -> bool) -> usize {
        let released = self.faults.held.take(which);
        let mut posted = 0;
        for h in &released {
            // A completion carries the SQ head as it is when posted, not when the command
            // ran: a stale head would point behind the host's. The SQ lock is taken before
            // the CQ's, in the order the device path takes them.
            let sq = self
                .queues
                .sqs
                .get(usize::from(h.cqe.sq_id))
                .map(|s| lock(s));
            let mut cqe = h.cqe;
            if let Some(q) = sq.as_ref().and_then(|s| s.q.as_ref()) {
                cqe.sq_head = q.head as u16;
            }
            let Some(cq_slot) = self.queues.cqs.get(usize::from(h.cqid)) else {
                continue;
            };
            let mut slot = lock(cq_slot);
            // A reset since it was held (checked under the CQ lock, which a reset takes
            // to drop the queues): the queues it belonged to are gone, even if the host
            // has created new ones with the same ids.
            if self.faults.held.epoch.load(Ordering::Acquire) != h.epoch {
                continue;
            }
            let crate::queue::CqSlot { view, q } = &mut *slot;
            let Some(cq) = q.as_mut() else { continue };
            cq.overflow.push_back(cqe);
            self.drain_held(h.cqid, cq, view);
            posted += 1;
        }
        self.faults.count_released(posted);
        self.faults.count_discarded(released.len() - posted);
        posted
    }
}

/// Releases delayed completions when due; runs while any held completion has a deadline.
fn timer_loop(weak: Weak<Ctrl>) {
    loop {
        let Some(ctrl) = weak.upgrade() else { return };
        match ctrl.next_deadline() {
            Some(t) => {
                let now = Instant::now();
                if t <= now {
                    ctrl.release_held(|h| h.deadline.is_some_and(|d| d <= now));
                } else {
                    drop(ctrl);
                    std::thread::sleep((t - now).min(Duration::from_millis(10)));
                }
            }
            None => {
                ctrl.faults
                    .held
                    .timer_running
                    .store(false, Ordering::Release);
                // A delay may have been added after the check: keep going if so and no
                // other timer took over.
                if ctrl.next_deadline().is_none()
                    || ctrl.faults.held.timer_running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        }
    }
}
