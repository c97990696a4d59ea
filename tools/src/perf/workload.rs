//! Where the next I/O goes and whether it reads or writes.
//!
//! Offsets are counted in I/O units (`-o` bytes) so every I/O is aligned to its own
//! size, as in `spdk_nvme_perf`. Each thread owns a disjoint slice of units, which keeps
//! the per-thread verify records independent and lock-free.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A contiguous slice of I/O units owned by one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitRange {
    /// First unit (absolute, from the start of the namespace).
    pub first: u64,
    /// Number of units (at least 1).
    pub count: u64,
}

/// Splits `total_units` into `parts` nearly equal slices; `None` when there are fewer
/// units than parts.
pub fn split_units(total_units: u64, parts: u16) -> Option<Vec<UnitRange>> {
    let parts = u64::from(parts);
    if parts == 0 || total_units < parts {
        return None;
    }
    let base = total_units / parts;
    let extra = total_units % parts;
    let mut first = 0;
    Some(
        (0..parts)
            .map(|i| {
                let count = base + u64::from(i < extra);
                let r = UnitRange { first, count };
                first += count;
                r
            })
            .collect(),
    )
}

/// Generates offsets (sequential or uniform random) and the read/write choice.
#[derive(Debug)]
pub struct Generator {
    range: UnitRange,
    random: bool,
    read_percent: u8,
    next_seq: u64,
    rng: SmallRng,
}

impl Generator {
    /// A generator over `range`; `seed` makes runs reproducible per thread.
    pub fn new(range: UnitRange, random: bool, read_percent: u8, seed: u64) -> Self {
        Self {
            range,
            random,
            read_percent: read_percent.min(100),
            next_seq: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The slice this generator covers.
    pub fn range(&self) -> UnitRange {
        self.range
    }

    /// The next unit, relative to the start of the range (`0..range.count`).
    pub fn next_unit(&mut self) -> u64 {
        if self.random {
            self.rng.gen_range(0..self.range.count)
        } else {
            let u = self.next_seq;
            self.next_seq = if u + 1 >= self.range.count { 0 } else { u + 1 };
            u
        }
    }

    /// Whether the next I/O is a read.
    pub fn next_is_read(&mut self) -> bool {
        match self.read_percent {
            100 => true,
            0 => false,
            p => self.rng.gen_range(0..100u8) < p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_unit_once() {
        let parts = split_units(10, 3).unwrap();
        assert_eq!(
            parts,
            vec![
                UnitRange { first: 0, count: 4 },
                UnitRange { first: 4, count: 3 },
                UnitRange { first: 7, count: 3 }
            ]
        );
        assert_eq!(split_units(2, 3), None);
    }

    #[test]
    fn sequential_offsets_wrap_at_the_end_of_the_range() {
        let mut g = Generator::new(UnitRange { first: 8, count: 3 }, false, 100, 1);
        let got: Vec<u64> = (0..7).map(|_| g.next_unit()).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_offsets_stay_in_range() {
        let mut g = Generator::new(UnitRange { first: 0, count: 5 }, true, 50, 7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let u = g.next_unit();
            assert!(u < 5, "unit {u} out of range");
            seen[u as usize] = true;
        }
        assert_eq!(seen, [true; 5]);
    }

    #[test]
    fn read_share_follows_the_mix() {
        let mut g = Generator::new(UnitRange { first: 0, count: 1 }, true, 70, 3);
        let reads = (0..10_000).filter(|_| g.next_is_read()).count();
        assert!(
            (6_500..7_500).contains(&reads),
            "{reads} reads of 10000 at -M 70"
        );
        let mut all = Generator::new(UnitRange { first: 0, count: 1 }, true, 100, 3);
        assert!((0..100).all(|_| all.next_is_read()));
        let mut none = Generator::new(UnitRange { first: 0, count: 1 }, true, 0, 3);
        assert!((0..100).all(|_| !none.next_is_read()));
    }
}
