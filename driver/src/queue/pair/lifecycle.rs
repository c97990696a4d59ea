//! Creating a queue pair's queues on the controller, and deleting them on drop.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::admin::QueueStats;
use crate::controller::{Controller, ControllerState, Shared};
use crate::dma::DmaMem;
use crate::options::{CompletionMode, QueuePairOptions, SglMode};
use crate::queue::prp;
use crate::queue::ring::{CqRing, Doorbells, SqRing};
use crate::queue::sgl::SglPolicy;
use crate::queue::tracker::TrackerPool;
use crate::spec::admin::{delete_io_cq, delete_io_sq, CreateIoCq, CreateIoSq, QueuePriority};
use crate::transport::Transport;
use crate::Error;

use super::clock::Clock;
use super::retry::Retries;
use super::split::Splits;
use super::{IoQueuePair, POLLED_CQ_SLACK};

/// Creates the CQ then the SQ of `qid` on the controller (CQ deleted again if the SQ fails).
pub(super) fn create_hw_queues<T: Transport>(
    shared: &Shared<T>,
    qid: u16,
    sq_iova: u64,
    cq_iova: u64,
    (sq_depth, cq_depth): (u16, u16),
    vector: Option<u16>,
) -> Result<(), Error> {
    let timeout = shared.options.admin_timeout;
    let bad = |e: crate::spec::Error| Error::InvalidRequest(e.to_string());
    let cq = CreateIoCq {
        qid,
        entries: u32::from(cq_depth),
        prp1: cq_iova,
        contiguous: true,
        interrupt_vector: vector,
    }
    .to_sqe()
    .map_err(bad)?;
    let sq = CreateIoSq {
        qid,
        entries: u32::from(sq_depth),
        prp1: sq_iova,
        contiguous: true,
        cqid: qid,
        priority: QueuePriority::Urgent,
    }
    .to_sqe()
    .map_err(bad)?;
    shared.admin_exec(cq, timeout)?;
    if let Err(e) = shared.admin_exec(sq, timeout) {
        let _ = shared.admin_exec(delete_io_cq(qid), timeout);
        return Err(e);
    }
    Ok(())
}

/// [`create_hw_queues`] on the controller as it is once any reset in progress is
/// over; returns the reset epoch the queues belong to. A reset that starts during the
/// creation (another pair timing out, a caller's [`Controller::reset`]) fails it or
/// takes the new queues away: the creation is repeated on the controller that reset
/// leaves, after deleting what may already exist there.
pub(super) fn create_hw_queues_after_resets<T: Transport>(
    shared: &Shared<T>,
    qid: u16,
    sq_iova: u64,
    cq_iova: u64,
    depths: (u16, u16),
    vector: Option<u16>,
) -> Result<u64, Error> {
    loop {
        drop(hugepages::sync::lock(&shared.reset_lock));
        let epoch = shared.epoch.load(Ordering::Acquire);
        let r = create_hw_queues(shared, qid, sq_iova, cq_iova, depths, vector);
        if r.is_err() {
            // A reset that failed it may not have moved the epoch yet: let it finish.
            drop(hugepages::sync::lock(&shared.reset_lock));
        }
        if shared.epoch.load(Ordering::Acquire) == epoch {
            return r.map(|()| epoch);
        }
        let timeout = shared.options.admin_timeout;
        let _ = shared.admin_exec(delete_io_sq(qid), timeout);
        let _ = shared.admin_exec(delete_io_cq(qid), timeout);
    }
}

impl<T: Transport> Controller<T> {
    /// Creates an I/O queue pair with `u64` command contexts.
    pub fn create_io_queue_pair(
        &self,
        options: QueuePairOptions,
    ) -> Result<IoQueuePair<T, u64>, Error> {
        self.create_io_queue_pair_with_context(options)
    }

    /// Creates an I/O queue pair whose commands carry a context of type `C`.
    pub fn create_io_queue_pair_with_context<C: Copy + Default>(
        &self,
        options: QueuePairOptions,
    ) -> Result<IoQueuePair<T, C>, Error> {
        IoQueuePair::new(self.shared.clone(), options)
    }
}

impl<T: Transport, C: Copy + Default> IoQueuePair<T, C> {
    fn new(shared: Arc<Shared<T>>, options: QueuePairOptions) -> Result<Self, Error> {
        // A reset in progress is waited for when the queues are created.
        if shared.state.load(Ordering::Acquire) != ControllerState::Resetting {
            shared.check_live("creating an I/O queue pair")?;
        }
        let info = shared.info();
        let qid = {
            let mut qids = hugepages::sync::lock(&shared.qids);
            let free = (1..qids.len()).find(|&q| !qids[q]);
            let Some(q) = free else {
                return Err(Error::NoFreeQueue {
                    device: shared.name.clone(),
                    granted: info.io_queues,
                });
            };
            qids[q] = true;
            q as u16
        };
        let release_qid = |shared: &Shared<T>| {
            let mut qids = hugepages::sync::lock(&shared.qids);
            qids[usize::from(qid)] = false;
        };
        let result = Self::build(shared.clone(), options, qid);
        if result.is_err() {
            release_qid(&shared);
        }
        result
    }

    fn build(shared: Arc<Shared<T>>, options: QueuePairOptions, qid: u16) -> Result<Self, Error> {
        let info = shared.info();
        let max_entries = shared.cap.max_queue_entries().min(65535) as u16;
        let depth = options.depth.max(2).min(max_entries);
        // A polled CQ larger than the SQ never fills while its head doorbell lags by up to
        // the difference (at most `depth - 1` commands are outstanding), so that doorbell
        // is written once per batch of completions instead of once per poll. With
        // interrupts the head is reported at once, as the controller may use it to
        // decide on the next interrupt.
        let cq_depth = match options.mode {
            CompletionMode::Polled => depth.saturating_add(POLLED_CQ_SLACK).min(max_entries),
            CompletionMode::Interrupt => depth,
        };
        // A fabric carries SGLs only: every data command describes its buffers with one.
        let sgl_mode = if shared.t.sgl_only() {
            SglMode::Always
        } else {
            options.sgl
        };
        let Some(sgl) = SglPolicy::new(sgl_mode, info.identify.sgls) else {
            return Err(Error::Unsupported {
                device: shared.name.clone(),
                what: "SGLs (Identify SGLS is 0), which a queue pair with SglMode::Always needs"
                    .into(),
            });
        };
        let ps = shared.page_size as usize;
        let sq_mem = DmaMem::alloc(&shared.alloc, usize::from(depth) * 64, ps, "an I/O SQ")?;
        let cq_mem = DmaMem::alloc(&shared.alloc, usize::from(cq_depth) * 16, ps, "an I/O CQ")?;
        // Entries for the largest transfer, plus one when the buffer starts mid-page.
        let entries = (info.max_transfer / shared.page_size) as usize + 1;
        let list_pages = prp::list_pages_needed(entries - 1, ps / 8).max(1);
        let slots = depth - 1;
        let lists = DmaMem::alloc(
            &shared.alloc,
            usize::from(slots) * list_pages * ps,
            ps,
            "PRP lists",
        )?;
        let (vector, irq) = match options.mode {
            CompletionMode::Polled => (0, None),
            CompletionMode::Interrupt => {
                let Some(fd) = shared.vectors.get(usize::from(qid)) else {
                    return Err(Error::Unsupported {
                        device: shared.name.clone(),
                        what: format!(
                            "an interrupt vector for queue {qid} ({} vectors enabled)",
                            shared.vectors.len()
                        ),
                    });
                };
                let epoll = Epoll::new().map_err(|source| Error::Interrupt {
                    vector: qid,
                    source,
                })?;
                epoll
                    .ctl(
                        ControlOperation::Add,
                        std::os::fd::AsRawFd::as_raw_fd(fd.as_ref()),
                        EpollEvent::new(EventSet::IN, u64::from(qid)),
                    )
                    .map_err(|source| Error::Interrupt {
                        vector: qid,
                        source,
                    })?;
                (qid, Some((fd.clone(), epoll)))
            }
        };
        let iv = irq.as_ref().map(|_| vector);
        let epoch = create_hw_queues_after_resets(
            &shared,
            qid,
            sq_mem.iova(),
            cq_mem.iova(),
            (depth, cq_depth),
            iv,
        )?;
        let dstrd = shared.cap.dstrd();
        let now = Instant::now();
        Ok(IoQueuePair {
            qid,
            sq: SqRing::new(sq_mem, depth),
            cq: CqRing::new(cq_mem, cq_depth),
            cq_unrung: 0,
            cq_slack: cq_depth - depth,
            db: Doorbells::new(qid, dstrd),
            shadow: shared
                .dbbuf
                .as_ref()
                .map(|_| Doorbells::shadow_slots(qid, dstrd)),
            slots: TrackerPool::new(slots, C::default()),
            // A child's segments each touch at least one page of its transfer.
            splits: Splits::new(slots, entries + 1, C::default()),
            lists,
            list_pages,
            page_size: shared.page_size,
            max_transfer: info.max_transfer,
            ns: info.ns_table.clone(),
            mode: options.mode,
            vector,
            irq,
            epoch,
            failed_pending: 0,
            stats: QueueStats::default(),
            clock: Clock::new(now),
            removal: Default::default(),
            timeout: shared.options.io_timeout,
            sgl_mode,
            sgl,
            _not_sync: PhantomData,
            support: super::compare::CommandSupport::of(&info.identify),
            retry: Retries::new(slots, shared.options.command_retries, &info.identify),
            shared,
        })
    }
}

impl<T: Transport, C: Copy + Default> Drop for IoQueuePair<T, C> {
    fn drop(&mut self) {
        if self.slots.outstanding() > 0
            && self.shared.state.load(Ordering::Acquire) == ControllerState::Live
        {
            // The device may still be moving data for these: let them finish (bounded).
            if let Err(e) = self.wait_idle(|_, _| {}) {
                tracing::warn!(qid = self.qid, error = %e, "queue pair dropped with commands outstanding");
            }
        }
        let shared = &self.shared;
        if shared.state.load(Ordering::Acquire) == ControllerState::Live
            && self.epoch == shared.epoch.load(Ordering::Acquire)
        {
            let timeout = shared.options.admin_timeout;
            if let Err(e) = shared
                .admin_exec(delete_io_sq(self.qid), timeout)
                .and_then(|_| shared.admin_exec(delete_io_cq(self.qid), timeout))
            {
                tracing::warn!(qid = self.qid, error = %e, "deleting I/O queues failed");
            }
        }
        let mut qids = hugepages::sync::lock(&shared.qids);
        if let Some(q) = qids.get_mut(usize::from(self.qid)) {
            *q = false;
        }
    }
}
