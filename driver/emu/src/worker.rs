//! The device thread of `mode=threaded`: doorbell writes set a pending bit and wake it;
//! it spins briefly, then parks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;
use std::time::Duration;

use crate::controller::Ctrl;
use crate::error::EmuError;

/// Handle to the device thread and its wake-up state.
pub(crate) struct Worker {
    thread: Thread,
    pub sq_pending: Box<[AtomicU64]>,
    pub cq_pending: Box<[AtomicU64]>,
    sleeping: AtomicBool,
}

impl Ctrl {
    pub(crate) fn start_worker(self: &Arc<Self>) -> Result<(), EmuError> {
        let words = self.queues.sqs.len().div_ceil(64);
        let weak = Arc::downgrade(self);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("emu-device".into())
            .spawn(move || {
                let _ = rx.recv();
                worker_loop(weak);
            })
            .map_err(EmuError::Thread)?;
        let bits = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let _ = self.worker.set(Worker {
            thread: handle.thread().clone(),
            sq_pending: bits(words),
            cq_pending: bits(words),
            sleeping: AtomicBool::new(false),
        });
        let _ = tx.send(());
        Ok(())
    }

    pub(crate) fn kick(&self, w: &Worker, bits: &[AtomicU64], qid: u16) {
        let q = usize::from(qid);
        bits[q / 64].fetch_or(1 << (q % 64), Ordering::SeqCst);
        if w.sleeping.load(Ordering::SeqCst) {
            w.thread.unpark();
        }
    }

    /// One pass over pending doorbells; returns whether there was work.
    fn run_pending(&self, w: &Worker) -> bool {
        let mut any = false;
        for (word, bits) in w.cq_pending.iter().enumerate() {
            let mut set = bits.swap(0, Ordering::AcqRel);
            while set != 0 {
                let bit = set.trailing_zeros() as usize;
                set &= set - 1;
                any = true;
                self.resume_cq((word * 64 + bit) as u16);
            }
        }
        for (word, bits) in w.sq_pending.iter().enumerate() {
            let mut set = bits.swap(0, Ordering::AcqRel);
            while set != 0 {
                let bit = set.trailing_zeros() as usize;
                set &= set - 1;
                any = true;
                self.process_sq((word * 64 + bit) as u16);
            }
        }
        if any && self.events.pending.load(Ordering::Relaxed) {
            self.deliver_events();
        }
        any
    }
}

fn worker_loop(weak: Weak<Ctrl>) {
    const SPIN: u32 = 2000;
    let mut idle = 0u32;
    loop {
        let Some(ctrl) = weak.upgrade() else { return };
        let Some(w) = ctrl.worker.get() else { return };
        if ctrl.run_pending(w) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < SPIN {
            std::hint::spin_loop();
            continue;
        }
        w.sleeping.store(true, Ordering::SeqCst);
        let pending = w
            .sq_pending
            .iter()
            .chain(w.cq_pending.iter())
            .any(|b| b.load(Ordering::SeqCst) != 0);
        drop(ctrl);
        if !pending {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        if let Some(ctrl) = weak.upgrade() {
            if let Some(w) = ctrl.worker.get() {
                w.sleeping.store(false, Ordering::SeqCst);
            }
        }
        idle = 0;
    }
}
