//! Telling the host: asynchronous events (completing outstanding Asynchronous Event
//! Requests) and interrupt vectors.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nvme_spec::{CompletionEntry, Status};
use vmm_sys_util::eventfd::EventFd;

use crate::controller::{lock, Ctrl};
use crate::error::EmuError;

impl Ctrl {
    /// Queues an asynchronous event; it completes an outstanding AER when one exists.
    pub(crate) fn raise_event(&self, dw0: u32) {
        let mut admin = lock(&self.admin);
        if admin.events.len() < 64 {
            admin.events.push_back(dw0);
        }
        if !admin.aer_cids.is_empty() {
            self.events_pending.store(true, Ordering::Release);
        }
    }

    /// Completes outstanding AERs with queued events (called with no lock held).
    pub(crate) fn deliver_events(&self) {
        self.events_pending.store(false, Ordering::Release);
        let mut ready = Vec::new();
        {
            let mut admin = lock(&self.admin);
            while !admin.events.is_empty() && !admin.aer_cids.is_empty() {
                let cid = admin.aer_cids.remove(0);
                let dw0 = admin.events.pop_front().unwrap_or(0);
                ready.push((cid, dw0));
            }
        }
        let head = lock(&self.sqs[0]).q.as_ref().map_or(0, |q| q.head as u16);
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
        if iv < 32 && self.intms.load(Ordering::Acquire) & (1 << iv) != 0 {
            self.irq_pending.fetch_or(1 << iv, Ordering::AcqRel);
            return;
        }
        let fd = lock(&self.vectors).get(usize::from(iv)).cloned();
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
        *lock(&self.vectors) = fds.clone();
        Ok(fds)
    }

    pub(crate) fn disable_interrupts(&self) {
        lock(&self.vectors).clear();
    }
}
