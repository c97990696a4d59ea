//! The target's side of the emulated controller: it drives the controller as a small
//! PCIe host would, with submission and completion rings and data buffers in DMA
//! memory mapped through the controller's IOMMU, and PRPs describing the buffers.
//! In `mode=inline` a doorbell write executes the command in the calling thread.

use std::sync::atomic::Ordering;

use hugepages::{DmaAllocator, DmaBuffer};
use nvme_spec::registers::{cq_head_doorbell, sq_tail_doorbell};
use nvme_spec::{CompletionEntry, SubmissionEntry};

use crate::EmuController;

/// Bytes of a submission queue entry and a completion queue entry.
const SQE: usize = 64;
const CQE: usize = 16;

/// One submission/completion queue pair of the emulated controller, as its host sees it.
pub(crate) struct HostQueue {
    qid: u16,
    sq: DmaBuffer,
    cq: DmaBuffer,
    size: u32,
    tail: u32,
    head: u32,
    phase: bool,
    /// SQ head the controller last reported.
    sq_head: u32,
    dstrd: u8,
}

impl HostQueue {
    /// Rings of `size` entries for queue `qid`, aligned to `align` bytes.
    pub(crate) fn new(
        alloc: &DmaAllocator,
        emu: &EmuController,
        qid: u16,
        size: u32,
        align: usize,
    ) -> Result<Self, hugepages::Error> {
        let sq = alloc.alloc(size as usize * SQE, align)?;
        let cq = alloc.alloc(size as usize * CQE, align)?;
        let mut q = Self {
            qid,
            sq,
            cq,
            size,
            tail: 0,
            head: 0,
            phase: true,
            sq_head: 0,
            dstrd: emu.config().dstrd,
        };
        q.reset();
        Ok(q)
    }

    /// Back to the state after creation (the controller was reset): the completion
    /// ring is zeroed so no stale entry carries the expected phase.
    pub(crate) fn reset(&mut self) {
        self.tail = 0;
        self.head = 0;
        self.phase = true;
        self.sq_head = 0;
        self.cq.mem().zero();
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    pub(crate) fn sq_iova(&self) -> u64 {
        self.sq.iova()
    }

    pub(crate) fn cq_iova(&self) -> u64 {
        self.cq.iova()
    }

    /// Places `sqe` and rings the tail doorbell; false if the ring is full.
    pub(crate) fn submit(&mut self, emu: &EmuController, sqe: &SubmissionEntry) -> bool {
        let next = (self.tail + 1) % self.size;
        if next == self.sq_head {
            return false;
        }
        if self
            .sq
            .mem()
            .write(self.tail as usize * SQE, &sqe.to_bytes())
            .is_err()
        {
            return false;
        }
        self.tail = next;
        emu.write32(sq_tail_doorbell(self.qid, self.dstrd), self.tail);
        true
    }

    /// Moves every posted completion to `out` and rings the head doorbell.
    pub(crate) fn reap(&mut self, emu: &EmuController, out: &mut Vec<CompletionEntry>) {
        let mem = self.cq.mem();
        let mut any = false;
        loop {
            let at = self.head as usize * CQE;
            let Ok(dw3) = mem.load_u32(at + 12, Ordering::Acquire) else {
                break;
            };
            if (dw3 >> 16) & 1 != u32::from(self.phase) {
                break;
            }
            let mut bytes = [0u8; CQE];
            if mem.read(at, &mut bytes).is_err() {
                break;
            }
            let cqe = CompletionEntry::from_bytes(&bytes);
            self.sq_head = u32::from(cqe.sq_head) % self.size;
            out.push(cqe);
            any = true;
            self.head += 1;
            if self.head == self.size {
                self.head = 0;
                self.phase = !self.phase;
            }
        }
        if any {
            emu.write32(cq_head_doorbell(self.qid, self.dstrd), self.head);
        }
    }
}

/// A data buffer for one command and the PRP entries that describe it.
pub(crate) struct DataBuffer {
    pub buf: DmaBuffer,
    pub prp1: u64,
    pub prp2: u64,
}

/// A buffer of `len` bytes (more than 0) laid out for PRPs of `page` bytes: the data
/// pages, then the PRP list pages when the data spans more than two pages.
pub(crate) fn data_buffer(
    alloc: &DmaAllocator,
    len: usize,
    page: usize,
) -> Result<DataBuffer, hugepages::Error> {
    let pages = len.div_ceil(page);
    let per_list = page / 8;
    let list_pages = if pages <= 2 {
        0
    } else {
        // Each list page but the last gives its final entry to the next list page.
        (pages - 1).saturating_sub(1).div_ceil(per_list - 1).max(1)
    };
    let buf = alloc.alloc((pages + list_pages) * page, page)?;
    let iova = buf.iova();
    let page_iova = |i: usize| iova + (i * page) as u64;
    let prp2 = match pages {
        0 | 1 => 0,
        2 => page_iova(1),
        _ => {
            let mem = buf.mem();
            let mut next = 1;
            for list in 0..list_pages {
                let base = (pages + list) * page;
                let left = pages - next;
                let last = list + 1 == list_pages;
                let n = if last { left } else { per_list - 1 };
                for k in 0..n {
                    mem.write_u64(base + 8 * k, page_iova(next + k))
                        .map_err(hugepages::Error::from)?;
                }
                next += n;
                if !last {
                    mem.write_u64(base + 8 * n, page_iova(pages + list + 1))
                        .map_err(hugepages::Error::from)?;
                }
            }
            page_iova(pages)
        }
    };
    Ok(DataBuffer {
        prp1: iova,
        prp2,
        buf,
    })
}
