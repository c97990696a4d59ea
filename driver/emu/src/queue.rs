//! Submission and completion queue state, owned by per-queue slots, and the doorbells.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use nvme_spec::CompletionEntry;

use crate::iommu::{DmaFault, HostSlice, Iommu, MemView, Region};
use crate::stats::QueueCounters;
use hugepages::sync::lock;

/// Every queue id's slots and doorbells (index 0: the admin queue pair). Each entry
/// has its own cache line, so queue pairs driven from different threads share none.
pub(crate) struct Queues {
    /// Submission queue slots, locked for a whole batch of commands.
    pub sqs: Box<[CachePadded<Mutex<SqSlot>>]>,
    /// Completion queue slots.
    pub cqs: Box<[CachePadded<Mutex<CqSlot>>]>,
    /// Doorbell values and the sizes they are checked against.
    pub doorbells: Box<[CachePadded<Doorbells>]>,
}

/// One queue id's doorbell registers and the sizes they are checked against (0: no queue).
#[derive(Default)]
pub(crate) struct Doorbells {
    pub sq_tail: AtomicU32,
    pub cq_head: AtomicU32,
    pub sq_size: AtomicU32,
    pub cq_size: AtomicU32,
    /// Set while the CQ has completions waiting for room: its head doorbell resumes it.
    pub cq_stalled: AtomicBool,
}

impl Queues {
    /// `n` queue ids with no queue, their views on `iommu`'s current mappings.
    pub(crate) fn new(n: usize, iommu: &Iommu) -> Self {
        Self {
            sqs: (0..n)
                .map(|_| {
                    CachePadded::new(Mutex::new(SqSlot {
                        view: iommu.view(),
                        q: None,
                        counters: QueueCounters::default(),
                        scratch: Scratch::default(),
                    }))
                })
                .collect(),
            cqs: (0..n)
                .map(|_| {
                    CachePadded::new(Mutex::new(CqSlot {
                        view: iommu.view(),
                        q: None,
                    }))
                })
                .collect(),
            doorbells: (0..n)
                .map(|_| CachePadded::new(Doorbells::default()))
                .collect(),
        }
    }

    /// Gives every slot's view the new mappings, one slot lock at a time.
    pub(crate) fn refresh_views(&self, regions: &Arc<[Region]>) {
        for slot in self.sqs.iter() {
            lock(slot).view.refresh(regions);
        }
        for slot in self.cqs.iter() {
            lock(slot).view.refresh(regions);
        }
    }

    /// Creates the admin queue pair (CC.EN 0 to 1): SQ at `asq`, CQ at `acq`.
    pub(crate) fn create_admin(&self, asq: u64, sq_entries: u32, acq: u64, cq_entries: u32) {
        {
            let mut cq = lock(&self.cqs[0]);
            let mut state = CqState::new(acq, cq_entries, true, 0);
            state.sqs.push(0);
            cq.q = Some(state);
        }
        lock(&self.sqs[0]).q = Some(SqState {
            base: asq,
            size: sq_entries,
            head: 0,
            tail: 0,
            cqid: 0,
            shadow: None,
            aborts: Vec::new(),
        });
        let db = &self.doorbells[0];
        db.sq_tail.store(0, Ordering::Release);
        db.cq_head.store(0, Ordering::Release);
        db.sq_size.store(sq_entries, Ordering::Release);
        db.cq_size.store(cq_entries, Ordering::Release);
    }

    /// The counters of every I/O queue summed (the admin slot, which the caller may
    /// hold, is not locked).
    pub(crate) fn io_counters(&self) -> QueueCounters {
        let mut c = QueueCounters::default();
        for slot in self.sqs.iter().skip(1) {
            c.add(&lock(slot).counters);
        }
        c
    }

    /// DMA translations asked for and refused, summed over every queue's view.
    pub(crate) fn dma_counts(&self) -> (u64, u64) {
        let mut sum = (0, 0);
        for view in self.sqs.iter().map(|s| lock(s)).map(|s| s.view.counts()) {
            sum = (sum.0 + view.0, sum.1 + view.1);
        }
        for view in self.cqs.iter().map(|s| lock(s)).map(|s| s.view.counts()) {
            sum = (sum.0 + view.0, sum.1 + view.1);
        }
        sum
    }

    /// Makes every submission queue's view count its translations and record the data
    /// segments it hands out.
    pub(crate) fn record_segments(&self) {
        for slot in self.sqs.iter() {
            lock(slot).view.record_segments();
        }
        for slot in self.cqs.iter() {
            lock(slot).view.record_segments();
        }
    }

    /// Deletes every queue and clears the doorbells (counters and views stay).
    pub(crate) fn reset(&self) {
        for (slot, db) in self.sqs.iter().zip(self.doorbells.iter()) {
            lock(slot).q = None;
            db.sq_size.store(0, Ordering::Release);
            db.sq_tail.store(0, Ordering::Release);
        }
        for (slot, db) in self.cqs.iter().zip(self.doorbells.iter()) {
            lock(slot).q = None;
            db.cq_size.store(0, Ordering::Release);
            db.cq_head.store(0, Ordering::Release);
            db.cq_stalled.store(false, Ordering::Release);
        }
    }
}

/// Shadow doorbell and EventIdx addresses of one queue (Doorbell Buffer Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shadow {
    pub db: u64,
    pub ei: u64,
}

/// Reusable buffers of one submission queue, so the hot path does not allocate.
#[derive(Default)]
pub(crate) struct Scratch {
    pub segs: Vec<HostSlice>,
    /// The separate metadata buffer (MPTR) of the command being executed.
    pub md: Vec<HostSlice>,
    pub a: Vec<u8>,
    pub b: Vec<u8>,
    /// The LBA a failed protection information check names, for the Error
    /// Information log entry of the command being executed.
    pub error_lba: Option<u64>,
    /// Completion dword 1 of the command being executed (Zone Append's LBA, high half).
    pub dw1: u32,
}

/// An I/O or admin submission queue.
pub(crate) struct SqState {
    pub base: u64,
    pub size: u32,
    pub head: u32,
    pub tail: u32,
    pub cqid: u16,
    pub shadow: Option<Shadow>,
    /// Command ids of not-yet-fetched commands an Abort asked to abort.
    pub aborts: Vec<u16>,
}

/// A submission queue id's slot: the view and buffers outlive queue creation/deletion.
pub(crate) struct SqSlot {
    pub view: MemView,
    pub q: Option<SqState>,
    pub counters: QueueCounters,
    pub scratch: Scratch,
}

/// An I/O or admin completion queue.
pub(crate) struct CqState {
    pub base: u64,
    pub size: u32,
    pub head: u32,
    pub tail: u32,
    pub phase: bool,
    pub ien: bool,
    pub iv: u16,
    /// Submission queues completing here.
    pub sqs: Vec<u16>,
    pub shadow: Option<Shadow>,
    /// Completions that found the queue full (held or aborted ones); posted when room.
    pub overflow: VecDeque<CompletionEntry>,
}

/// A completion queue id's slot.
pub(crate) struct CqSlot {
    pub view: MemView,
    pub q: Option<CqState>,
}

impl CqState {
    pub(crate) fn new(base: u64, size: u32, ien: bool, iv: u16) -> Self {
        Self {
            base,
            size,
            head: 0,
            tail: 0,
            phase: true,
            ien,
            iv,
            sqs: Vec::new(),
            shadow: None,
            overflow: VecDeque::new(),
        }
    }

    /// Re-reads the head the host last reported (MMIO doorbell or shadow doorbell).
    pub(crate) fn refresh_head(&mut self, view: &mut MemView, db: &AtomicU32) {
        let head = match self.shadow {
            Some(sh) => match view.load_u32(sh.db) {
                Ok(h) => {
                    let _ = view.store_u32(sh.ei, h);
                    h
                }
                Err(_) => db.load(Ordering::Acquire),
            },
            None => db.load(Ordering::Acquire),
        };
        // The doorbell handler rejects out-of-range MMIO values; a shadow value is
        // host memory, so bound it here too.
        if head < self.size {
            self.head = head;
        }
    }

    /// Whether one more entry fits, re-reading the head if it looks full.
    #[inline]
    pub(crate) fn has_room(&mut self, view: &mut MemView, db: &AtomicU32) -> bool {
        let next = if self.tail + 1 == self.size {
            0
        } else {
            self.tail + 1
        };
        if next != self.head {
            return true;
        }
        self.refresh_head(view, db);
        next != self.head
    }

    /// Writes `cqe` (phase set here) at the tail and advances it. The caller checked room.
    #[inline]
    pub(crate) fn post(
        &mut self,
        view: &mut MemView,
        mut cqe: CompletionEntry,
    ) -> Result<(), DmaFault> {
        cqe.status = cqe.status.with_phase(self.phase);
        view.write_cqe(
            self.base.wrapping_add(u64::from(self.tail) * 16),
            &cqe.to_bytes(),
        )?;
        self.tail += 1;
        if self.tail == self.size {
            self.tail = 0;
            self.phase = !self.phase;
        }
        Ok(())
    }

    /// Posts queued overflow entries while there is room; returns how many.
    pub(crate) fn drain_overflow(
        &mut self,
        view: &mut MemView,
        db: &AtomicU32,
    ) -> Result<usize, DmaFault> {
        let mut n = 0;
        while !self.overflow.is_empty() && self.has_room(view, db) {
            if let Some(cqe) = self.overflow.pop_front() {
                self.post(view, cqe)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
