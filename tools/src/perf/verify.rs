//! What this run last wrote where: the per-thread record `--verify` checks reads against.
//!
//! One entry per I/O unit of the thread's slice (all I/Os are unit aligned, so every
//! block of a unit carries the same generation). Two I/Os to the same unit are never in
//! flight together, so a read never races a write whose outcome it cannot know.
//!
//! A write that completes with an error may or may not have reached the media (a
//! controller reset or a lost completion tells nothing), but never tears a block: until
//! the next successful write, each block of its unit holds the last acknowledged
//! generation or one of the failed ones.

use std::collections::HashMap;

use super::pattern::{self, Found, Mismatch};
use super::stats::ThreadStats;

/// Generation value for "never written by this run".
const NEVER: u32 = 0;
/// Reserved: never handed out as a generation.
const UNKNOWN: u32 = u32::MAX;

/// The per-unit write record of one thread.
#[derive(Debug)]
pub struct WriteLog {
    generation: Vec<u32>,
    busy: Vec<bool>,
    next_generation: u32,
    /// Units whose writes since the last acknowledged one failed: those generations.
    failed: HashMap<usize, Vec<u32>>,
    failed_writes: u64,
}

/// What a read of a unit should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing to check: never written by this run.
    Nothing,
    /// The pattern of this generation.
    Generation(u32),
    /// Per block, the last acknowledged generation (if any) or one of the failed
    /// writes since ([`WriteLog::failed_since`]).
    Uncertain,
}

impl WriteLog {
    /// A record for `units` I/O units, none written yet.
    pub fn new(units: usize) -> Self {
        Self {
            generation: vec![NEVER; units],
            busy: vec![false; units],
            next_generation: 1,
            failed: HashMap::new(),
            failed_writes: 0,
        }
    }

    /// Marks `unit` as having an I/O in flight; false if it already has one.
    pub fn try_begin(&mut self, unit: usize) -> bool {
        match self.busy.get_mut(unit) {
            Some(b) if !*b => {
                *b = true;
                true
            }
            _ => false,
        }
    }

    /// The generation for a new write (never [`NEVER`] nor [`UNKNOWN`]).
    pub fn new_generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = match g.wrapping_add(1) {
            NEVER | UNKNOWN => 1,
            n => n,
        };
        g
    }

    /// Ends the I/O on `unit`; a write records `generation` on success, and on failure
    /// adds it to the generations the unit may hold.
    pub fn end_write(&mut self, unit: usize, generation: u32, ok: bool) {
        if let Some(g) = self.generation.get_mut(unit) {
            if ok {
                *g = generation;
                self.failed.remove(&unit);
            } else {
                self.failed.entry(unit).or_default().push(generation);
                self.failed_writes += 1;
            }
        }
        self.end(unit);
    }

    /// The generations of the failed writes to `unit` since its last acknowledged one.
    pub fn failed_since(&self, unit: usize) -> &[u32] {
        self.failed.get(&unit).map_or(&[], Vec::as_slice)
    }

    /// Writes that completed with an error.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes
    }

    /// Units that hold data this run wrote (acknowledged or not), in order.
    pub fn written_units(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.generation.len()).filter(|&u| self.expect(u) != Expect::Nothing)
    }

    /// Ends a read on `unit`.
    pub fn end(&mut self, unit: usize) {
        if let Some(b) = self.busy.get_mut(unit) {
            *b = false;
        }
    }

    /// What a read of `unit` should find.
    pub fn expect(&self, unit: usize) -> Expect {
        // Checked first only when some write failed: the usual read pays no lookup.
        if !self.failed.is_empty() && self.failed.contains_key(&unit) {
            return Expect::Uncertain;
        }
        match self.generation.get(unit).copied() {
            None | Some(NEVER) | Some(UNKNOWN) => Expect::Nothing,
            Some(g) => Expect::Generation(g),
        }
    }

    /// Checks `data`, a read of `unit` whose first block is `first_lba` (blocks of
    /// `block_bytes`, `lba_size` of them data), against what the unit should hold;
    /// records checked blocks and mismatches in `stats`.
    pub fn check_read(
        &self,
        unit: usize,
        data: &[u8],
        first_lba: u64,
        (block_bytes, lba_size): (usize, usize),
        stats: &mut ThreadStats,
    ) {
        let expect = self.expect(unit);
        let acked = self.generation.get(unit).copied().unwrap_or(NEVER);
        let failed = self.failed_since(unit);
        for (b, block) in data.chunks_exact(block_bytes).enumerate() {
            let lba = first_lba + b as u64;
            let result = match expect {
                Expect::Nothing => continue,
                Expect::Generation(g) => pattern::check(block, lba, block_bytes, lba_size, g),
                Expect::Uncertain => match pattern::header(block) {
                    Some((l, g)) if l == lba && (g == acked || failed.contains(&g)) => {
                        stats.uncertain_blocks += 1;
                        if g != acked {
                            stats.uncertain_blocks_new += 1;
                        }
                        pattern::check(block, lba, block_bytes, lba_size, g)
                    }
                    // Never acknowledged here and untouched by the failed writes.
                    None if acked == NEVER => continue,
                    found => Err(Mismatch {
                        lba,
                        expected_generation: failed.last().copied().unwrap_or(acked),
                        found: match found {
                            Some((lba, generation)) => Found::Pattern { lba, generation },
                            None => Found::Garbage,
                        },
                    }),
                },
            };
            stats.verified_blocks += 1;
            if let Err(m) = result {
                stats.record_mismatch(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successful_writes_are_expected_back() {
        let mut log = WriteLog::new(4);
        assert_eq!(log.expect(0), Expect::Nothing);
        assert!(log.try_begin(0));
        let g = log.new_generation();
        log.end_write(0, g, true);
        assert_eq!(log.expect(0), Expect::Generation(g));
        assert!(log.try_begin(0));
        let g2 = log.new_generation();
        assert_ne!(g, g2);
        log.end_write(0, g2, false);
        assert_eq!(log.expect(0), Expect::Uncertain);
        assert_eq!(log.failed_since(0), &[g2]);
        let g3 = log.new_generation();
        log.end_write(0, g3, true);
        assert_eq!(log.expect(0), Expect::Generation(g3));
        assert_eq!(log.failed_since(0), &[] as &[u32]);
    }

    fn block(lba: u64, generation: u32) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        pattern::fill(&mut b, lba, 512, generation);
        b
    }

    #[test]
    fn after_a_failed_write_each_block_may_hold_the_old_or_the_new_generation_but_nothing_else() {
        let mut log = WriteLog::new(1);
        let old = log.new_generation();
        log.end_write(0, old, true);
        let new = log.new_generation();
        log.end_write(0, new, false);
        let other = log.new_generation();
        // Block 8 old, block 9 new: both fine, one of each counted.
        let mut data = [block(8, old), block(9, new)].concat();
        let mut s = ThreadStats::new();
        log.check_read(0, &data, 8, (512, 512), &mut s);
        assert_eq!(
            (
                s.verified_blocks,
                s.verify_failures,
                s.uncertain_blocks,
                s.uncertain_blocks_new
            ),
            (2, 0, 2, 1)
        );
        // A generation nobody wrote there, zeros, and a torn block are mismatches.
        for bad in [
            block(9, other),
            vec![0; 512],
            [&block(9, new)[..256], &block(9, old)[256..]].concat(),
        ] {
            data[512..].copy_from_slice(&bad);
            let mut s = ThreadStats::new();
            log.check_read(0, &data, 8, (512, 512), &mut s);
            assert_eq!(s.verify_failures, 1, "{:?}", s.mismatches);
            assert_eq!(s.mismatches[0].lba, 9);
        }
    }

    #[test]
    fn a_failed_first_write_accepts_untouched_blocks_but_not_torn_ones() {
        let mut log = WriteLog::new(1);
        let g = log.new_generation();
        log.end_write(0, g, false);
        let mut s = ThreadStats::new();
        let data = [vec![0u8; 512], block(1, g)].concat();
        log.check_read(0, &data, 0, (512, 512), &mut s);
        assert_eq!((s.verified_blocks, s.verify_failures), (1, 0));
        let mut torn = block(1, g);
        torn[300] ^= 1;
        log.check_read(0, &[vec![0u8; 512], torn].concat(), 0, (512, 512), &mut s);
        assert_eq!(s.verify_failures, 1);
    }

    #[test]
    fn a_unit_takes_one_io_at_a_time() {
        let mut log = WriteLog::new(2);
        assert!(log.try_begin(1));
        assert!(!log.try_begin(1));
        log.end(1);
        assert!(log.try_begin(1));
        assert!(!log.try_begin(2), "out of range units are never free");
    }

    #[test]
    fn generations_skip_the_reserved_values() {
        let mut log = WriteLog::new(1);
        log.next_generation = UNKNOWN - 1;
        assert_eq!(log.new_generation(), UNKNOWN - 1);
        assert_eq!(log.new_generation(), 1);
    }
}
