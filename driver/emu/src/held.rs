//! Completions held back by fault injection: holding, releasing, and the timer that
//! releases delayed ones.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use nvme_spec::CompletionEntry;

use crate::controller::{lock, Ctrl};
use crate::fault::Held;

impl Ctrl {
    /// Keeps `cqe` back (until released, aborted, or `delay` passes).
    pub(crate) fn hold(&self, cqid: u16, cqe: CompletionEntry, delay: Option<Duration>) {
        let deadline = delay.map(|d| Instant::now() + d);
        lock(&self.faults.held).push(Held {
            cqid,
            cqe,
            deadline,
        });
        if delay.is_some() && !self.timer_running.swap(true, Ordering::AcqRel) {
            let Some(weak) = self.weak.get().cloned() else {
                return;
            };
            let spawned = std::thread::Builder::new()
                .name("emu-delay".into())
                .spawn(move || timer_loop(weak));
            if let Err(e) = spawned {
                // Called with queue locks held, so the completion cannot be posted here;
                // it stays held for `FaultControl::release_held`.
                self.timer_running.store(false, Ordering::Release);
                tracing::warn!("emu: cannot start the delay timer ({e}); completion stays held");
            }
        }
    }

    /// The earliest deadline among held completions, if any has one.
    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.faults.held)
            .iter()
            .filter_map(|h| h.deadline)
            .min()
    }

    /// Posts every held completion for which `which` is true; returns how many.
    pub(crate) fn release_held(&self, which: impl Fn(&Held) -> bool) -> usize {
        let released: Vec<Held> = {
            let mut held = lock(&self.faults.held);
            let (go, stay) = held.drain(..).partition(|h| which(h));
            *held = stay;
            go
        };
        for h in &released {
            self.post_async(h.cqid, h.cqe);
        }
        released.len()
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
                ctrl.timer_running.store(false, Ordering::Release);
                // A delay may have been added after the check: keep going if so and no
                // other timer took over.
                if ctrl.next_deadline().is_none() || ctrl.timer_running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        }
    }
}
