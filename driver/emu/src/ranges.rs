//! A namespace's LBA range locks: what makes a fused Compare and Write atomic.
//!
//! Commands that change blocks (Write, Write Zeroes, Dataset Management) hold the
//! stripes their blocks fall in shared, so they never wait for each other; a fused
//! Compare and Write holds its stripes exclusively from the Compare to the end of the
//! Write, so no change to its blocks lands in between (NVMe Base 2.0 §3.4.2: the
//! controller behaves as though no other operation ran between the two commands).
//! Reads need no lock: they see the blocks before or after the pair, as with any write.
//!
//! Stripes are taken in ascending order, so two commands never wait for each other in
//! a cycle. They are held while the write cache's shard locks are taken, never the
//! other way round.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of stripes per namespace.
const STRIPES: usize = 16;
/// log2 of the blocks in one stripe's run (stripes repeat every `STRIPES` runs).
const RUN_SHIFT: u32 = 7;

/// The range locks of one namespace.
#[derive(Default)]
pub(crate) struct RangeLocks {
    stripes: [RwLock<()>; STRIPES],
}

/// Stripes held shared; released on drop.
pub(crate) struct SharedRange<'a> {
    _guards: [Option<RwLockReadGuard<'a, ()>>; STRIPES],
}

/// Stripes held exclusively; released on drop.
pub(crate) struct ExclusiveRange<'a> {
    _guards: [Option<RwLockWriteGuard<'a, ()>>; STRIPES],
}

/// The stripes blocks `slba..slba + nlb` fall in, one bit each.
fn stripe_mask(slba: u64, nlb: u64) -> u32 {
    let first = slba >> RUN_SHIFT;
    let last = slba.saturating_add(nlb.max(1) - 1) >> RUN_SHIFT;
    if last - first >= STRIPES as u64 - 1 {
        return u32::MAX >> (32 - STRIPES);
    }
    (first..=last).fold(0, |m, run| m | 1 << (run % STRIPES as u64))
}

impl RangeLocks {
    /// Holds the stripes of blocks `slba..slba + nlb` shared.
    pub(crate) fn shared(&self, slba: u64, nlb: u64) -> SharedRange<'_> {
        let mask = stripe_mask(slba, nlb);
        // `from_fn` visits the stripes in ascending order.
        SharedRange {
            _guards: std::array::from_fn(|i| {
                (mask & 1 << i != 0).then(|| {
                    self.stripes[i]
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                })
            }),
        }
    }

    /// Holds every stripe shared (a command whose blocks are spread over a list).
    pub(crate) fn shared_all(&self) -> SharedRange<'_> {
        self.shared(0, (STRIPES as u64) << RUN_SHIFT)
    }

    /// Holds the stripes of blocks `slba..slba + nlb` exclusively.
    pub(crate) fn exclusive(&self, slba: u64, nlb: u64) -> ExclusiveRange<'_> {
        let mask = stripe_mask(slba, nlb);
        ExclusiveRange {
            _guards: std::array::from_fn(|i| {
                (mask & 1 << i != 0).then(|| {
                    self.stripes[i]
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_cover_the_runs_a_range_touches() {
        assert_eq!(stripe_mask(0, 1), 1);
        assert_eq!(stripe_mask(127, 2), 0b11);
        assert_eq!(stripe_mask(16 << RUN_SHIFT, 1), 1, "stripes repeat");
        assert_eq!(stripe_mask((15 << RUN_SHIFT) + 5, 200), 1 << 15 | 1);
        assert_eq!(stripe_mask(3, 16 << RUN_SHIFT), 0xffff);
        assert_eq!(
            stripe_mask(u64::MAX - 1, 1000),
            stripe_mask(u64::MAX - 1, 1)
        );
    }

    #[test]
    fn an_exclusive_range_waits_for_shared_holders_of_its_stripes_only() {
        let locks = RangeLocks::default();
        let held = locks.shared(0, 8);
        assert!(locks.stripes[0].try_write().is_err());
        assert!(locks.stripes[1].try_write().is_ok());
        drop(held);
        let x = locks.exclusive(0, 8);
        assert!(locks.stripes[0].try_read().is_err());
        drop(x);
        assert!(locks.stripes[0].try_read().is_ok());
    }
}
