//! Command trackers: one per command slot, the command id is the slot index.
//!
//! The free list is a fixed array used as a stack, so taking and returning a slot
//! allocates nothing and costs a few instructions.

use crate::error::CommandDesc;

/// What the driver remembers about an outstanding command.
#[derive(Debug, Clone, Copy)]
pub struct Slot<C> {
    /// The caller's context, handed back with the completion.
    pub ctx: C,
    /// What the command is, for error messages.
    pub desc: CommandDesc,
    /// The queue clock's first reading after submission (nanoseconds since queue
    /// creation), or [`UNSTAMPED`] before it: a deadline never starts before the command.
    pub submitted_ns: u64,
    /// Whether the command is outstanding.
    pub in_use: bool,
    /// Whether an Abort has been sent for it.
    pub aborted: bool,
    /// Whether a controller reset cut it short (its completion is still to be reported).
    pub failed: bool,
    /// The split request this command is a child of, or [`NO_PARENT`].
    pub parent: u16,
    /// Times the command has been resubmitted after a failure.
    pub retries: u8,
    /// Whether the caller asked for its first error, without retries.
    pub no_retry: bool,
}

/// What the completion path needs of a released slot: a few words, cheap to move.
/// The command's description stays readable with [`TrackerPool::desc`] until the
/// slot is taken again.
#[derive(Debug, Clone, Copy)]
pub struct Released<C> {
    /// The caller's context.
    pub ctx: C,
    /// Whether an Abort had been sent for the command.
    pub aborted: bool,
    /// Whether a controller reset cut the command short.
    pub failed: bool,
    /// The split request the command is a child of, or [`NO_PARENT`].
    pub parent: u16,
}

/// `Slot::submitted_ns` of a command the clock has not been read for since submission.
pub const UNSTAMPED: u64 = u64::MAX;

/// `Slot::parent` of a command that is a request of its own, not a child of a split one.
pub const NO_PARENT: u16 = u16::MAX;

/// A fixed pool of command slots; CID = slot index.
#[derive(Debug)]
pub struct TrackerPool<C> {
    slots: Box<[Slot<C>]>,
    free: Box<[u16]>,
    free_len: usize,
    /// Whether a slot may still be [`UNSTAMPED`].
    unstamped: bool,
}

impl<C: Copy> TrackerPool<C> {
    /// A pool of `count` slots (at most 65535), all free; `fill` initialises unused contexts.
    pub fn new(count: u16, fill: C) -> Self {
        let blank = Slot {
            ctx: fill,
            desc: CommandDesc::Admin {
                name: "none",
                opcode: 0,
            },
            submitted_ns: 0,
            in_use: false,
            aborted: false,
            failed: false,
            parent: NO_PARENT,
            retries: 0,
            no_retry: false,
        };
        let slots = vec![blank; usize::from(count)].into_boxed_slice();
        // Reverse order so that CID 0 is handed out first.
        let free: Box<[u16]> = (0..count).rev().collect();
        TrackerPool {
            slots,
            free_len: free.len(),
            free,
            unstamped: false,
        }
    }

    /// Number of outstanding commands.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free_len
    }

    /// Number of free slots.
    pub fn free(&self) -> usize {
        self.free_len
    }

    /// Total number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Takes a free slot, or `None` when all are in use.
    #[inline]
    pub fn take(&mut self, ctx: C, desc: CommandDesc) -> Option<u16> {
        if self.free_len == 0 {
            return None;
        }
        self.free_len -= 1;
        let cid = self.free[self.free_len];
        let slot = &mut self.slots[usize::from(cid)];
        *slot = Slot {
            ctx,
            desc,
            submitted_ns: UNSTAMPED,
            in_use: true,
            aborted: false,
            failed: false,
            parent: NO_PARENT,
            retries: 0,
            no_retry: false,
        };
        self.unstamped = true;
        Some(cid)
    }

    /// The CID the next [`take`](Self::take) hands out, or `None` when all are in use.
    #[inline]
    pub fn next_cid(&self) -> Option<u16> {
        self.free_len.checked_sub(1).map(|i| self.free[i])
    }

    /// Number of free slots.
    #[inline]
    pub fn available(&self) -> usize {
        self.free_len
    }

    /// Gives every outstanding command not yet stamped the submission time `now_ns`.
    pub fn stamp(&mut self, now_ns: u64) {
        if !self.unstamped {
            return;
        }
        self.unstamped = false;
        for s in self.slots.iter_mut() {
            if s.in_use && s.submitted_ns == UNSTAMPED {
                s.submitted_ns = now_ns;
            }
        }
    }

    /// Returns slot `cid` to the free list and hands back its contents; `None` when the
    /// CID is out of range or not outstanding (an unknown or duplicate completion).
    #[inline]
    pub fn release(&mut self, cid: u16) -> Option<Slot<C>> {
        let slot = self.slots.get_mut(usize::from(cid))?;
        if !slot.in_use {
            return None;
        }
        slot.in_use = false;
        let out = *slot;
        // Cannot overflow: every in-use slot is absent from the free list.
        self.free[self.free_len] = cid;
        self.free_len += 1;
        Some(out)
    }

    /// [`release`](Self::release) handing back only what completing the command needs.
    #[inline]
    pub fn release_context(&mut self, cid: u16) -> Option<Released<C>> {
        let slot = self.slots.get_mut(usize::from(cid))?;
        if !slot.in_use {
            return None;
        }
        slot.in_use = false;
        let out = Released {
            ctx: slot.ctx,
            aborted: slot.aborted,
            failed: slot.failed,
            parent: slot.parent,
        };
        // Cannot overflow: every in-use slot is absent from the free list.
        self.free[self.free_len] = cid;
        self.free_len += 1;
        Some(out)
    }

    /// The description of the last command in slot `cid`, outstanding or released
    /// (until the slot is taken again).
    pub fn desc(&self, cid: u16) -> CommandDesc {
        self.slots.get(usize::from(cid)).map_or(
            CommandDesc::Admin {
                name: "unknown",
                opcode: 0,
            },
            |s| s.desc,
        )
    }

    /// Resubmissions of the last command in slot `cid`, outstanding or released (until
    /// the slot is taken again).
    pub fn retries(&self, cid: u16) -> u8 {
        self.slots.get(usize::from(cid)).map_or(0, |s| s.retries)
    }

    /// Readies the outstanding command `cid` for its resubmission: one more retry,
    /// neither aborted nor failed, its deadline restarting at the next clock reading.
    pub fn restart(&mut self, cid: u16) {
        if let Some(slot) = self.get_mut(cid) {
            slot.retries = slot.retries.saturating_add(1);
            slot.aborted = false;
            slot.failed = false;
            slot.submitted_ns = UNSTAMPED;
            self.unstamped = true;
        }
    }

    /// Puts back a slot that was taken but never submitted.
    pub fn undo_take(&mut self, cid: u16) {
        let _ = self.release(cid);
    }

    /// The slot `cid` when it is outstanding.
    pub fn get(&self, cid: u16) -> Option<&Slot<C>> {
        self.slots.get(usize::from(cid)).filter(|s| s.in_use)
    }

    /// The slot `cid` when it is outstanding, mutably.
    pub fn get_mut(&mut self, cid: u16) -> Option<&mut Slot<C>> {
        self.slots.get_mut(usize::from(cid)).filter(|s| s.in_use)
    }

    /// Makes the outstanding command `cid` a child of split request `parent`.
    pub fn set_parent(&mut self, cid: u16, parent: u16) {
        if let Some(slot) = self.get_mut(cid) {
            slot.parent = parent;
        }
    }

    /// The slots taken since [`free`](Self::free) returned `free_before`, when none has
    /// been released since (most recent first).
    pub fn taken_since(&self, free_before: usize) -> &[u16] {
        self.free
            .get(self.free_len..free_before)
            .unwrap_or_default()
    }

    /// Marks `cid` as aborted.
    pub fn mark_aborted(&mut self, cid: u16) {
        if let Some(slot) = self.slots.get_mut(usize::from(cid)) {
            slot.aborted = true;
        }
    }

    /// The outstanding command submitted earliest, with its CID.
    pub fn oldest(&self) -> Option<(u16, &Slot<C>)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_use)
            .min_by_key(|(_, s)| s.submitted_ns)
            .map(|(i, s)| (i as u16, s))
    }

    /// CIDs of all outstanding commands, in CID order.
    pub fn outstanding_cids(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_use)
            .map(|(i, _)| i as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IoKind;

    fn desc() -> CommandDesc {
        CommandDesc::Admin {
            name: "test",
            opcode: 0,
        }
    }

    #[test]
    fn cids_are_slot_indexes_and_come_back_after_release() {
        let mut pool = TrackerPool::new(3, 0u64);
        let a = pool.take(10, desc()).unwrap();
        let b = pool.take(11, desc()).unwrap();
        let c = pool.take(12, desc()).unwrap();
        assert_eq!((a, b, c), (0, 1, 2));
        assert!(pool.take(13, desc()).is_none());
        assert_eq!(pool.release(b).unwrap().ctx, 11);
        assert_eq!(pool.take(14, desc()), Some(1));
        assert_eq!(pool.outstanding(), 3);
    }

    #[test]
    fn unknown_and_duplicate_cids_are_refused() {
        let mut pool = TrackerPool::new(2, 0u64);
        let a = pool.take(1, desc()).unwrap();
        assert!(pool.release(a).is_some());
        assert!(pool.release(a).is_none(), "duplicate completion");
        assert!(pool.release(7).is_none(), "CID outside the pool");
        assert!(pool.release(1).is_none(), "CID never submitted");
        assert_eq!(pool.outstanding(), 0);
    }

    #[test]
    fn release_context_frees_the_slot_and_leaves_its_description_readable() {
        let mut pool = TrackerPool::new(2, 0u64);
        let io = CommandDesc::Io {
            kind: IoKind::Read,
            nsid: 1,
            slba: 8,
            blocks: 8,
        };
        let a = pool.take(42, io).unwrap();
        pool.get_mut(a).unwrap().aborted = true;
        let r = pool.release_context(a).unwrap();
        assert_eq!((r.ctx, r.aborted, r.failed), (42, true, false));
        assert_eq!(pool.outstanding(), 0);
        assert!(matches!(pool.desc(a), CommandDesc::Io { slba: 8, .. }));
        assert!(pool.release_context(a).is_none(), "duplicate completion");
        assert!(pool.release_context(9).is_none(), "CID outside the pool");
        assert!(matches!(
            pool.desc(9),
            CommandDesc::Admin {
                name: "unknown",
                ..
            }
        ));
    }

    #[test]
    fn a_child_keeps_its_parent_until_released_and_a_new_take_has_none() {
        let mut pool = TrackerPool::new(2, 0u64);
        let a = pool.take(5, desc()).unwrap();
        assert_eq!(pool.get(a).unwrap().parent, NO_PARENT);
        pool.set_parent(a, 3);
        assert_eq!(pool.release_context(a).unwrap().parent, 3);
        let b = pool.take(6, desc()).unwrap();
        assert_eq!(b, a, "the same slot");
        assert_eq!(pool.get(b).unwrap().parent, NO_PARENT);
        pool.set_parent(1, 3);
        assert!(pool.get(1).is_none(), "a free slot is left alone");
    }

    #[test]
    fn slots_taken_since_a_free_count_are_listed_most_recent_first() {
        let mut pool = TrackerPool::new(4, 0u64);
        pool.take(0, desc()).unwrap();
        let before = pool.free();
        let b = pool.take(0, desc()).unwrap();
        let c = pool.take(0, desc()).unwrap();
        assert_eq!(pool.taken_since(before), &[c, b]);
        pool.undo_take(c);
        pool.undo_take(b);
        assert_eq!(pool.free(), before);
        assert!(pool.taken_since(before).is_empty());
        assert_eq!(pool.take(0, desc()), Some(b), "the free list is as it was");
        assert!(pool.taken_since(9).is_empty(), "out of range");
    }

    #[test]
    fn oldest_is_the_earliest_stamped_submission() {
        let mut pool = TrackerPool::new(4, 0u64);
        pool.take(0, desc()).unwrap();
        pool.stamp(50);
        pool.take(0, desc()).unwrap();
        pool.take(0, desc()).unwrap();
        pool.stamp(20);
        pool.stamp(99);
        let stamps: Vec<u64> = (0..3).map(|c| pool.get(c).unwrap().submitted_ns).collect();
        assert_eq!(stamps, vec![50, 20, 20], "a stamp is never moved later");
        pool.release(1).unwrap();
        pool.release(2).unwrap();
        pool.take(0, desc()).unwrap();
        assert_eq!(pool.oldest().map(|(cid, _)| cid), Some(0));
    }

    #[test]
    fn commands_are_unstamped_until_the_next_clock_reading() {
        let mut pool = TrackerPool::new(2, 0u64);
        let a = pool.take(0, desc()).unwrap();
        assert_eq!(pool.get(a).unwrap().submitted_ns, UNSTAMPED);
        pool.stamp(7);
        assert_eq!(pool.get(a).unwrap().submitted_ns, 7);
    }
}
