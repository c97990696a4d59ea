//! Telling the host: asynchronous events (completing outstanding Asynchronous Event
//! Requests) and interrupt vectors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use nvme_spec::{CompletionEntry, Status};
use vmm_sys_util::eventfd::EventFd;

use crate::controller::Ctrl;
use crate::error::EmuError;
use hugepages::sync::lock;

/// Asynchronous event: Error status, Write to Invalid Doorbell Register, Error log.
pub(crate) const AER_INVALID_DOORBELL: u32 = 0x01 << 16;
/// Asynchronous event: Error status, Invalid Doorbell Write Value, Error log.
pub(crate) const AER_INVALID_DOORBELL_VALUE: u32 = (0x01 << 16) | (0x01 << 8);

/// Asynchronous events raised and the Asynchronous Event Requests waiting for them.
#[derive(Default)]
pub(crate) struct AsyncEvents {
    /// A leaf lock.
    pub queue: Mutex<EventQueue>,
    /// Set when an event can complete an outstanding request: the next register write
    /// or device thread pass delivers it (outside every queue lock).
    pub pending: AtomicBool,
}

impl AsyncEvents {
    /// Controller reset: events and outstanding requests are dropped.
    pub(crate) fn reset(&self) {
        {
            let mut events = lock(&self.queue);
            events.requests.clear();
            events.raised.clear();
        }
        self.pending.store(false, Ordering::Release);
    }
}

/// Events not yet reported and the requests that will report them.
#[derive(Default)]
pub(crate) struct EventQueue {
    /// Completion dword 0 of each event raised and not yet reported, oldest first.
    pub raised: VecDeque<u32>,
    /// Command ids of outstanding Asynchronous Event Requests, oldest first.
    pub requests: Vec<u16>,
}

/// Interrupt vectors and the INTMS/INTMC mask.
#[derive(Default)]
pub(crate) struct Interrupts {
    /// The event notifier of each enabled vector; a leaf lock.
    pub vectors: Mutex<Vec<Arc<EventFd>>>,
    /// INTMS: vectors 0-31 masked by the host.
    pub mask: AtomicU32,
    /// Masked vectors signalled while masked, signalled when unmasked.
    pub pending: AtomicU32,
}

impl Interrupts {
    /// Controller reset: INTMS cleared, nothing pending (the vectors stay enabled).
    pub(crate) fn reset(&self) {
        self.mask.store(0, Ordering::Release);
        self.pending.store(0, Ordering::Release);
    }
}

impl Ctrl {
    /// Queues an asynchronous event; it completes an outstanding AER when one exists.
    pub(crate) fn raise_event(&self, dw0: u32) {
        let mut events = lock(&self.events.queue);
        if events.raised.len() < 64 {
            events.raised.push_back(dw0);
        }
        if !events.requests.is_empty() {
            self.events.pending.store(true, Ordering::Release);
        }
    }

    /// Completes outstanding AERs with queued events (called with no lock held).
    pub(crate) fn deliver_events(&self) {
        self.events.pending.store(false, Ordering::Release);
        let mut ready = Vec::new();
        {
            let mut events = lock(&self.events.queue);
            while !events.raised.is_empty() && !events.requests.is_empty() {
                let cid = events.requests.remove(0);
                let dw0 = events.raised.pop_front().unwrap_or(0);
                ready.push((cid, dw0));
            }
        }
        let head = lock(&self.queues.sqs[0])
            .q
            .as_ref()
            .map_or(0, |q| q.head as u16);
        for (cid, dw0) in ready {
            let cqe = CompletionEntry {
                dw0,
                dw1: 0,
                sq_head: head,
                sq_id: 0,
                cid,
                status: Status::SUCCESS,
            };
            self.post_async(0, cqe);
        }
    }

    /// Signals interrupt vector `iv` unless masked by INTMS.
    pub(crate) fn signal(&self, iv: u16) {
        if iv < 32 && self.irq.mask.load(Ordering::Acquire) & (1 << iv) != 0 {
            self.irq.pending.fetch_or(1 << iv, Ordering::AcqRel);
            return;
        }
        let fd = lock(&self.irq.vectors).get(usize::from(iv)).cloned();
        if let Some(fd) = fd {
            if let Err(e) = fd.write(1) {
                tracing::warn!("emu: interrupt vector {iv} signal failed: {e}");
            }
        }
    }

    pub(crate) fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, EmuError> {
        if count > self.cfg.vectors {
            return Err(EmuError::TooManyVectors {
                requested: count,
                supported: self.cfg.vectors,
            });
        }
        let fds = (0..count)
            .map(|_| {
                EventFd::new(libc::EFD_NONBLOCK)
                    .map(Arc::new)
                    .map_err(EmuError::EventFd)
            })
            .collect::<Result<Vec<_>, _>>()?;
        *lock(&self.irq.vectors) = fds.clone();
        Ok(fds)
    }

    pub(crate) fn disable_interrupts(&self) {
        lock(&self.irq.vectors).clear();
    }
}
