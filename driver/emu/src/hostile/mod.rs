//! The hostile device: a seeded adversary behind every answer the controller gives.
//!
//! With `hostile=SEED` the controller still executes commands correctly, but each answer
//! it gives the driver passes through [`Hostile`], which (with probability
//! `hostile_rate` per mille, decided by a ChaCha8 generator seeded with `SEED`) replaces
//! it with a lie: completions ([`completion`]), Identify pages ([`identify`]), register
//! reads ([`registers`]), interrupts (spurious signals) and DMA (wild PRP walks,
//! [`dma`]). The same seed and the same sequence of driver actions give the same lies.
//!
//! Every answer that passes through a hook is counted as an event, and every lie as a
//! tampered event ([`HostileStats`]). The data segments each command's PRPs or SGLs
//! name are recorded ([`DataAccess`]) so a test can check that the driver directed the
//! device only at the buffers of the command in hand; the device's own wild reads are
//! not recorded there but counted in [`HostileStats`], and the IOMMU model refuses
//! those that leave mapped memory.

pub(crate) mod completion;
pub(crate) mod dma;
pub(crate) mod identify;
pub(crate) mod registers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hugepages::sync::lock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Default probability of a lie, per mille, when `hostile_rate` is not given.
pub const DEFAULT_HOSTILE_RATE: u16 = 50;

/// Most data accesses kept for [`crate::EmuController::take_data_accesses`]; later ones
/// are counted in [`HostileStats::accesses_dropped`] instead.
const MAX_RECORDED: usize = 1 << 20;

/// The seed and rate of the hostile mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostileConfig {
    /// Seed of the generator that picks every lie.
    pub seed: u64,
    /// Probability of a lie per answer, in 1/1000 (0: record only, 1000: always lie).
    pub rate_permille: u16,
}

impl HostileConfig {
    /// A hostile device with seed `seed` lying at the default rate.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rate_permille: DEFAULT_HOSTILE_RATE,
        }
    }
}

/// The data transfer of one command as the device performed it: a contiguous range of
/// host memory that the command's PRPs or SGLs named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataAccess {
    /// Submission queue the command came from (0: admin).
    pub qid: u16,
    /// Opcode of the command.
    pub opcode: u8,
    /// First LBA of an I/O command with an LBA range, else 0.
    pub slba: u64,
    /// IOVA of the first byte moved.
    pub iova: u64,
    /// Bytes moved.
    pub len: u64,
}

/// Counters of the hostile mode: answers seen (events) and lies told, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostileStats {
    /// Completions posted.
    pub completions: u64,
    /// Completions falsified (wrong phase, CID, SQ id, SQ head or status, duplicates,
    /// completions for idle slots).
    pub completions_tampered: u64,
    /// Register reads answered.
    pub register_reads: u64,
    /// Register reads falsified.
    pub register_reads_tampered: u64,
    /// Identify pages returned.
    pub identify_pages: u64,
    /// Identify pages falsified.
    pub identify_pages_tampered: u64,
    /// Interrupt decisions (one per completion batch).
    pub interrupts: u64,
    /// Spurious interrupts signalled with nothing behind them.
    pub interrupts_spurious: u64,
    /// Commands at which the device considered a wild DMA walk.
    pub dma_walks: u64,
    /// Wild DMA walks performed.
    pub dma_walks_wild: u64,
    /// Wild reads the IOMMU model allowed (inside mapped memory).
    pub wild_reads_allowed: u64,
    /// Wild reads the IOMMU model refused (outside mapped memory).
    pub wild_reads_refused: u64,
    /// Data accesses not recorded because the record was full.
    pub accesses_dropped: u64,
}

impl HostileStats {
    /// Every answer that passed through a hostile hook.
    pub fn events(&self) -> u64 {
        self.completions
            + self.register_reads
            + self.identify_pages
            + self.interrupts
            + self.dma_walks
    }

    /// Every lie told.
    pub fn tampered(&self) -> u64 {
        self.completions_tampered
            + self.register_reads_tampered
            + self.identify_pages_tampered
            + self.interrupts_spurious
            + self.dma_walks_wild
    }
}

#[derive(Default)]
struct Counters {
    completions: AtomicU64,
    completions_tampered: AtomicU64,
    register_reads: AtomicU64,
    register_reads_tampered: AtomicU64,
    identify_pages: AtomicU64,
    identify_pages_tampered: AtomicU64,
    interrupts: AtomicU64,
    interrupts_spurious: AtomicU64,
    dma_walks: AtomicU64,
    dma_walks_wild: AtomicU64,
    wild_reads_allowed: AtomicU64,
    wild_reads_refused: AtomicU64,
    accesses_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The adversary: the generator, the rate and the counters. `rng` and `accesses` are
/// leaf locks.
pub(crate) struct Hostile {
    rate: u16,
    rng: Mutex<ChaCha8Rng>,
    counters: Counters,
    accesses: Mutex<Vec<DataAccess>>,
}

impl Hostile {
    pub(crate) fn new(cfg: HostileConfig) -> Self {
        Self {
            rate: cfg.rate_permille.min(1000),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed)),
            counters: Counters::default(),
            accesses: Mutex::new(Vec::new()),
        }
    }

    /// Counts an event in `seen` and, with the configured probability, runs `lie` with
    /// the generator and counts it in `tampered`.
    fn maybe<R>(
        &self,
        seen: &AtomicU64,
        tampered: &AtomicU64,
        lie: impl FnOnce(&mut ChaCha8Rng) -> R,
    ) -> Option<R> {
        bump(seen);
        let mut rng = lock(&self.rng);
        if rng.gen_range(0..1000) >= self.rate {
            return None;
        }
        bump(tampered);
        Some(lie(&mut rng))
    }

    /// The vector of a spurious interrupt to signal after a completion batch, if any.
    pub(crate) fn spurious_vector(&self, vectors: u16) -> Option<u16> {
        let c = &self.counters;
        self.maybe(&c.interrupts, &c.interrupts_spurious, |rng| {
            rng.gen_range(0..vectors.max(1))
        })
    }

    /// Records the data segments a command's PRPs or SGLs named.
    pub(crate) fn record(&self, qid: u16, opcode: u8, slba: u64, segments: &[(u64, u64)]) {
        if segments.is_empty() {
            return;
        }
        let mut log = lock(&self.accesses);
        for &(iova, len) in segments {
            if log.len() >= MAX_RECORDED {
                bump(&self.counters.accesses_dropped);
                continue;
            }
            log.push(DataAccess {
                qid,
                opcode,
                slba,
                iova,
                len,
            });
        }
    }

    /// Takes the recorded data accesses.
    pub(crate) fn take_accesses(&self) -> Vec<DataAccess> {
        std::mem::take(&mut *lock(&self.accesses))
    }

    pub(crate) fn stats(&self) -> HostileStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HostileStats {
            completions: r(&c.completions),
            completions_tampered: r(&c.completions_tampered),
            register_reads: r(&c.register_reads),
            register_reads_tampered: r(&c.register_reads_tampered),
            identify_pages: r(&c.identify_pages),
            identify_pages_tampered: r(&c.identify_pages_tampered),
            interrupts: r(&c.interrupts),
            interrupts_spurious: r(&c.interrupts_spurious),
            dma_walks: r(&c.dma_walks),
            dma_walks_wild: r(&c.dma_walks_wild),
            wild_reads_allowed: r(&c.wild_reads_allowed),
            wild_reads_refused: r(&c.wild_reads_refused),
            accesses_dropped: r(&c.accesses_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::Iommu;
    use crate::EmuController;
    use nvme_spec::registers::offset;

    fn regs(name: &str) -> Vec<u32> {
        let emu = EmuController::from_name(name).unwrap();
        (0..64).map(|_| emu.read32(offset::CSTS)).collect()
    }

    #[test]
    fn options_parse_and_the_rate_needs_a_seed() {
        let cfg: crate::EmuConfig = "emu:hostile=42,hostile_rate=1000".parse().unwrap();
        assert_eq!(
            cfg.hostile,
            Some(HostileConfig {
                seed: 42,
                rate_permille: 1000
            })
        );
        let cfg: crate::EmuConfig = "emu:hostile=7".parse().unwrap();
        assert_eq!(cfg.hostile.unwrap().rate_permille, DEFAULT_HOSTILE_RATE);
        assert!("emu:hostile_rate=10".parse::<crate::EmuConfig>().is_err());
        assert!("emu:hostile=1,hostile_rate=1001"
            .parse::<crate::EmuConfig>()
            .is_err());
        assert!("emu:hostile=x".parse::<crate::EmuConfig>().is_err());
    }

    #[test]
    fn the_same_seed_tells_the_same_lies_and_rate_zero_tells_none() {
        let a = regs("emu:hostile=9,hostile_rate=500");
        assert_eq!(a, regs("emu:hostile=9,hostile_rate=500"));
        assert_ne!(a, regs("emu:hostile=10,hostile_rate=500"));
        assert!(regs("emu:hostile=9,hostile_rate=0").iter().all(|&v| v == 0));
        let emu = EmuController::from_name("emu:hostile=9,hostile_rate=500").unwrap();
        for _ in 0..100 {
            emu.read32(offset::CSTS);
        }
        let s = emu.hostile_stats().unwrap();
        assert_eq!(s.register_reads, 100);
        assert!(s.register_reads_tampered > 20 && s.register_reads_tampered < 80);
        assert!(EmuController::from_name("emu")
            .unwrap()
            .hostile_stats()
            .is_none());
    }

    #[test]
    fn wild_reads_outside_mapped_memory_are_refused_and_counted() {
        let h = Hostile::new(HostileConfig {
            seed: 1,
            rate_permille: 1000,
        });
        let iommu = Iommu::new();
        let mut view = iommu.view();
        view.record_segments();
        for _ in 0..50 {
            h.wild_walk(&mut view, 0x1000, 0x2000);
        }
        let s = h.stats();
        assert_eq!(s.dma_walks, 50);
        assert_eq!(s.dma_walks_wild, 50);
        assert_eq!(s.wild_reads_allowed, 0);
        assert!(s.wild_reads_refused >= 50);
        let (accesses, refused) = view.counts();
        assert_eq!(refused, s.wild_reads_refused);
        assert_eq!(accesses, refused);
    }

    #[test]
    fn completion_lies_break_the_fields_they_name() {
        let h = Hostile::new(HostileConfig {
            seed: 3,
            rate_permille: 1000,
        });
        let honest = nvme_spec::CompletionEntry {
            dw0: 0,
            dw1: 0,
            sq_head: 5,
            sq_id: 1,
            cid: 9,
            status: nvme_spec::Status::SUCCESS,
        };
        let mut kinds = std::collections::HashSet::new();
        for _ in 0..400 {
            let mut cqe = honest;
            let lie = h.completion(&mut cqe, 16);
            if let completion::CqeLie::IdleSlot(cid) = lie {
                assert!(cid < 16);
            }
            if cqe.sq_head != honest.sq_head {
                assert!(cqe.sq_head >= 16, "an SQ head lie lands outside the queue");
            }
            kinds.insert(format!("{lie:?}").split('(').next().unwrap().to_string());
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(h.stats().completions_tampered, 400);
    }

    #[test]
    fn identify_lies_write_absurd_values() {
        let h = Hostile::new(HostileConfig {
            seed: 5,
            rate_permille: 1000,
        });
        let mut nn = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut page = [0u8; 4096];
            page[516..520].copy_from_slice(&1u32.to_le_bytes());
            h.identify(0x01, &mut page);
            nn.insert(u32::from_le_bytes(page[516..520].try_into().unwrap()));
        }
        assert!(nn.contains(&0) && nn.contains(&u32::MAX));
        assert_eq!(h.stats().identify_pages_tampered, 200);
    }
}
