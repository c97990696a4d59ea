//! What this run last wrote where: the per-thread record `--verify` checks reads against.
//!
//! One entry per I/O unit of the thread's slice (all I/Os are unit aligned, so every
//! block of a unit carries the same generation). Two I/Os to the same unit are never in
//! flight together, so a read never races a write whose outcome it cannot know.

/// Generation value for "never written by this run".
const NEVER: u32 = 0;
/// Generation value for "a write failed here; the contents are unknown".
const UNKNOWN: u32 = u32::MAX;

/// The per-unit write record of one thread.
#[derive(Debug)]
pub struct WriteLog {
    generation: Vec<u32>,
    busy: Vec<bool>,
    next_generation: u32,
}

/// What a read of a unit should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing to check: never written by this run, or its last write failed.
    Nothing,
    /// The pattern of this generation.
    Generation(u32),
}

impl WriteLog {
    /// A record for `units` I/O units, none written yet.
    pub fn new(units: usize) -> Self {
        Self {
            generation: vec![NEVER; units],
            busy: vec![false; units],
            next_generation: 1,
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

    /// Ends the I/O on `unit`; a write records `generation` on success, and makes the
    /// unit unverifiable on failure.
    pub fn end_write(&mut self, unit: usize, generation: u32, ok: bool) {
        if let Some(g) = self.generation.get_mut(unit) {
            *g = if ok { generation } else { UNKNOWN };
        }
        self.end(unit);
    }

    /// Ends a read on `unit`.
    pub fn end(&mut self, unit: usize) {
        if let Some(b) = self.busy.get_mut(unit) {
            *b = false;
        }
    }

    /// What a read of `unit` should find.
    pub fn expect(&self, unit: usize) -> Expect {
        match self.generation.get(unit).copied() {
            None | Some(NEVER) | Some(UNKNOWN) => Expect::Nothing,
            Some(g) => Expect::Generation(g),
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
        assert_eq!(log.expect(0), Expect::Nothing);
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
