//! Partial power loss: the volatile write cache was part-way through destaging
//! when the power went, so some of its blocks reached the medium and others did
//! not, in no particular order.
//!
//! Each cached block survives or is lost on its own, decided by a hash of the
//! cut's seed, the namespace and the LBA: a multi-block write not yet durable
//! can come back as any subset of its blocks (not only a prefix), and the same
//! seed always tears the same way. The unit is one logical block, the atomic
//! write unit the controller reports (AWUPF 0: a single block), so a block is
//! always wholly old or wholly new.

/// How a partial power cut decides which cached blocks survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartialCut {
    /// Picks the subset; the same seed keeps the same blocks.
    pub seed: u64,
    /// Chance that a block survives, in thousandths (1000 or more keeps all).
    pub keep_permille: u16,
}

/// SplitMix64's finaliser: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PartialCut {
    /// Whether block `lba` of namespace `nsid` reached the medium.
    pub(crate) fn survives(&self, nsid: u32, lba: u64) -> bool {
        let h = mix(mix(self.seed) ^ lba ^ (u64::from(nsid) << 56));
        h % 1000 < u64::from(self.keep_permille)
    }
}

#[cfg(test)]
mod tests {
    use super::PartialCut;

    #[test]
    fn the_share_kept_follows_keep_permille_and_the_seed_picks_the_blocks() {
        let cut = |seed, keep_permille| PartialCut {
            seed,
            keep_permille,
        };
        let kept = |c: PartialCut| (0..10_000u64).filter(|&l| c.survives(1, l)).count();
        assert_eq!(kept(cut(7, 0)), 0);
        assert_eq!(kept(cut(7, 1000)), 10_000);
        let half = kept(cut(7, 500));
        assert!((4_700..5_300).contains(&half), "{half}");
        let tenth = kept(cut(7, 100));
        assert!((850..1_150).contains(&tenth), "{tenth}");
        let a: Vec<bool> = (0..64).map(|l| cut(1, 500).survives(1, l)).collect();
        let b: Vec<bool> = (0..64).map(|l| cut(2, 500).survives(1, l)).collect();
        let again: Vec<bool> = (0..64).map(|l| cut(1, 500).survives(1, l)).collect();
        assert_eq!(a, again);
        assert_ne!(a, b);
    }
}
