//! Submission and completion rings: index arithmetic, phase tags and doorbells, with
//! no knowledge of what the commands mean.

use crate::dma::DmaMem;
use crate::spec::registers::{cq_head_doorbell, shadow_cq_head, shadow_sq_tail, sq_tail_doorbell};
use crate::spec::{CompletionEntry, SubmissionEntry};
use crate::transport::Transport;

/// A submission queue: entries written by the host, consumed by the controller.
#[derive(Debug)]
pub struct SqRing {
    mem: DmaMem,
    entries: u16,
    /// Next slot the host writes.
    tail: u16,
    /// The controller's consumption point as last reported in a completion.
    head: u16,
    /// Tail value last written to the doorbell.
    rung_tail: u16,
}

impl SqRing {
    /// A ring of `entries` slots over `mem` (at least `entries * 64` bytes, zeroed).
    ///
    /// # Panics
    /// If `mem` is shorter than `entries * 64` bytes.
    pub fn new(mem: DmaMem, entries: u16) -> Self {
        assert!(
            mem.len() >= usize::from(entries) * 64,
            "SQ memory too short"
        );
        SqRing {
            mem,
            entries,
            tail: 0,
            head: 0,
            rung_tail: 0,
        }
    }

    /// The ring's base IOVA.
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Number of slots.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Whether one more entry fits (a ring of N slots holds N - 1 commands).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.advance(self.tail) == self.head
    }

    /// How many more entries fit before the ring is full.
    pub fn free(&self) -> usize {
        let n = usize::from(self.entries);
        let used = (usize::from(self.tail) + n - usize::from(self.head)) % n;
        n - 1 - used
    }

    /// The slot the next entry goes to.
    pub fn tail(&self) -> u16 {
        self.tail
    }

    /// Takes back every entry pushed since the tail was `tail`; only entries not yet
    /// written to the doorbell can be taken back (the controller has never seen them).
    pub fn rewind(&mut self, tail: u16) {
        debug_assert!(tail < self.entries);
        let n = u32::from(self.entries);
        let dist = |from: u16, to: u16| (u32::from(to) + n - u32::from(from)) % n;
        // `tail` must lie between the rung tail and the current tail.
        if tail < self.entries && dist(self.rung_tail, tail) <= dist(self.rung_tail, self.tail) {
            self.tail = tail;
        }
    }

    #[inline]
    fn advance(&self, i: u16) -> u16 {
        let n = i + 1;
        if n == self.entries {
            0
        } else {
            n
        }
    }

    /// Copies `sqe` into the tail slot and advances the tail (no doorbell).
    #[inline(always)]
    pub fn push(&mut self, sqe: &SubmissionEntry) {
        let off = usize::from(self.tail) * 64;
        // `tail < entries` and `new` checked the memory holds `entries` slots.
        if let Err(e) = self.mem.write_sqe(off, sqe) {
            unreachable!("{e}");
        }
        self.tail = self.advance(self.tail);
    }

    /// Entries that can still be pushed before the ring is full.
    #[inline]
    pub fn free_entries(&self) -> u16 {
        let used = if self.tail >= self.head {
            self.tail - self.head
        } else {
            self.entries - self.head + self.tail
        };
        self.entries - 1 - used
    }

    /// Takes back the entry pushed last, if the doorbell has not announced it yet;
    /// returns whether it did. The controller never sees a retracted entry.
    pub fn retract(&mut self) -> bool {
        if !self.has_unrung() {
            return false;
        }
        self.tail = if self.tail == 0 {
            self.entries - 1
        } else {
            self.tail - 1
        };
        true
    }

    /// Whether entries were pushed since the last doorbell.
    #[inline]
    pub fn has_unrung(&self) -> bool {
        self.tail != self.rung_tail
    }

    /// Marks the current tail as written to the doorbell.
    #[inline]
    pub fn mark_rung(&mut self) -> u16 {
        self.rung_tail = self.tail;
        self.tail
    }

    /// Records the SQ head a completion reported; returns false (and ignores it) when it
    /// lies outside the ring or outside the entries submitted and not yet consumed.
    #[inline]
    pub fn set_head(&mut self, head: u16) -> bool {
        if head >= self.entries {
            return false;
        }
        let n = u32::from(self.entries);
        // Ring distance without a division (this runs once per completion).
        let dist = |from: u16, to: u16| {
            let d = u32::from(to) + n - u32::from(from);
            if d >= n {
                d - n
            } else {
                d
            }
        };
        if dist(self.head, head) > dist(self.head, self.rung_tail) {
            return false;
        }
        self.head = head;
        true
    }

    /// Empties the ring and zeroes its memory (after a controller reset).
    pub fn reset(&mut self) {
        self.mem.zero();
        self.tail = 0;
        self.head = 0;
        self.rung_tail = 0;
    }
}

/// A completion queue: entries posted by the controller, consumed by the host.
#[derive(Debug)]
pub struct CqRing {
    mem: DmaMem,
    entries: u16,
    head: u16,
    phase: bool,
}

impl CqRing {
    /// A ring of `entries` slots over `mem` (at least `entries * 16` bytes, zeroed).
    ///
    /// # Panics
    /// If `mem` is shorter than `entries * 16` bytes.
    pub fn new(mem: DmaMem, entries: u16) -> Self {
        assert!(
            mem.len() >= usize::from(entries) * 16,
            "CQ memory too short"
        );
        CqRing {
            mem,
            entries,
            head: 0,
            phase: true,
        }
    }

    /// The ring's base IOVA.
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Number of slots.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Current head.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The next new entry, consuming it, or `None` when the controller posted nothing.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<CompletionEntry> {
        // `head < entries` and `new` checked the memory holds `entries` slots.
        let cqe = match self.mem.read_cqe(usize::from(self.head) * 16, self.phase) {
            Ok(cqe) => cqe?,
            Err(e) => unreachable!("{e}"),
        };
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
        Some(cqe)
    }

    /// Empties the ring and zeroes its memory (after a controller reset).
    pub fn reset(&mut self) {
        self.mem.zero();
        self.head = 0;
        self.phase = true;
    }
}

/// Shadow doorbell and EventIdx slots of one queue pair (Doorbell Buffer Config).
#[derive(Debug, Clone, Copy)]
pub struct ShadowSlots {
    /// Byte offset of the SQ tail slot in both the shadow and the EventIdx buffers.
    pub sq: usize,
    /// Byte offset of the CQ head slot in both buffers.
    pub cq: usize,
}

/// Doorbell register offsets of one queue pair.
#[derive(Debug, Clone, Copy)]
pub struct Doorbells {
    sq_tail: usize,
    cq_head: usize,
}

impl Doorbells {
    /// The doorbells of queue `qid` with stride `4 << dstrd`.
    pub fn new(qid: u16, dstrd: u8) -> Self {
        Doorbells {
            sq_tail: sq_tail_doorbell(qid, dstrd),
            cq_head: cq_head_doorbell(qid, dstrd),
        }
    }

    /// Shadow buffer slots for queue `qid` (same layout as the registers, from 0).
    pub fn shadow_slots(qid: u16, dstrd: u8) -> ShadowSlots {
        ShadowSlots {
            sq: shadow_sq_tail(qid, dstrd),
            cq: shadow_cq_head(qid, dstrd),
        }
    }

    /// Writes the SQ tail doorbell.
    #[inline]
    pub fn ring_sq<T: Transport>(&self, t: &T, tail: u16) {
        t.write32(self.sq_tail, u32::from(tail));
    }

    /// Writes the CQ head doorbell.
    #[inline]
    pub fn ring_cq<T: Transport>(&self, t: &T, head: u16) {
        t.write32(self.cq_head, u32::from(head));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hugepages::{AllocatorOptions, DmaAllocator, NullMapper, PageSize, RegionOptions};

    use super::*;
    use crate::spec::Status;

    fn alloc() -> DmaAllocator {
        let options = AllocatorOptions {
            region_size: 64 << 10,
            region: RegionOptions {
                page_size: PageSize::SIZE_4K,
                ..RegionOptions::default()
            },
            ..AllocatorOptions::default()
        };
        DmaAllocator::new(Arc::new(NullMapper::new()), options).unwrap()
    }

    /// Writes a completion entry with `phase` and `cid` into slot `i` of `mem`.
    fn post(mem: &mut DmaMem, i: usize, cid: u16, phase: bool) {
        let cqe = CompletionEntry {
            cid,
            status: Status::SUCCESS.with_phase(phase),
            ..CompletionEntry::default()
        };
        let words: [u64; 2] = zerocopy::transmute!(cqe);
        mem.write_u64(i * 16, words[0]).unwrap();
        mem.write_u64(i * 16 + 8, words[1]).unwrap();
    }

    #[test]
    fn completion_ring_follows_the_phase_tag_across_a_wrap() {
        let a = alloc();
        let mem = DmaMem::alloc(&a, 4096, 4096, "test CQ").unwrap();
        let mut cq = CqRing::new(mem, 4);
        assert!(cq.pop().is_none(), "zeroed memory has phase 0: nothing new");
        for i in 0..4 {
            post(&mut cq.mem, i, i as u16, true);
        }
        let cids: Vec<u16> = std::iter::from_fn(|| cq.pop()).map(|c| c.cid).collect();
        assert_eq!(cids, vec![0, 1, 2, 3]);
        assert_eq!(cq.head(), 0);
        assert!(
            cq.pop().is_none(),
            "old phase-1 entries are not new after the wrap"
        );
        post(&mut cq.mem, 0, 9, false);
        assert_eq!(cq.pop().map(|c| c.cid), Some(9));
        assert!(cq.pop().is_none());
    }

    #[test]
    fn sq_head_outside_the_ring_or_past_the_tail_is_refused() {
        let a = alloc();
        let mem = DmaMem::alloc(&a, 8 * 64, 4096, "test SQ").unwrap();
        let mut sq = SqRing::new(mem, 8);
        let sqe = SubmissionEntry::default();
        for _ in 0..3 {
            sq.push(&sqe);
        }
        sq.mark_rung();
        assert!(!sq.set_head(8), "outside the ring");
        assert!(!sq.set_head(5), "past the rung tail");
        assert!(sq.set_head(2));
        assert!(!sq.set_head(1), "backwards");
        assert!(sq.set_head(3));
        for _ in 0..7 {
            if !sq.is_full() {
                sq.push(&sqe);
            }
        }
        assert!(sq.is_full(), "a ring of 8 holds 7");
    }

    #[test]
    fn free_entries_count_down_and_unrung_entries_can_be_taken_back() {
        let a = alloc();
        let mem = DmaMem::alloc(&a, 8 * 64, 4096, "test SQ").unwrap();
        let mut sq = SqRing::new(mem, 8);
        let sqe = SubmissionEntry::default();
        assert_eq!(sq.free(), 7);
        for _ in 0..6 {
            sq.push(&sqe);
        }
        sq.mark_rung();
        assert!(sq.set_head(6));
        assert_eq!(sq.free(), 7, "the controller consumed all six");
        let before = sq.tail();
        for _ in 0..4 {
            sq.push(&sqe);
        }
        assert_eq!((sq.tail(), sq.free()), (2, 3), "wrapped past the end");
        sq.rewind(before);
        assert_eq!((sq.tail(), sq.free()), (6, 7));
        assert!(!sq.has_unrung());
        sq.push(&sqe);
        sq.mark_rung();
        sq.rewind(before);
        assert_eq!(sq.tail(), 7, "rung entries are never taken back");
    }

    #[test]
    fn shadow_slots_follow_the_doorbell_layout() {
        let s = Doorbells::shadow_slots(3, 0);
        assert_eq!((s.sq, s.cq), (24, 28));
        let s = Doorbells::shadow_slots(1, 2);
        assert_eq!((s.sq, s.cq), (32, 48));
    }
}
