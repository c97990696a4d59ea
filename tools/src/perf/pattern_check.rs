//! `nvme-perf --check-pattern`: reads the `--span` area once and checks that every
//! block is a whole block of the `--verify` pattern written for the LBA it sits at, of
//! any generation. After a writer was killed mid-run, each block must hold either its
//! old or its new contents, never a mix (a torn block), another block's data or
//! bytes nobody wrote.

use nvme::Transport;
use serde::Serialize;

use super::args::{PerfArgs, PiMode};
use super::engine::PerfQueue;
use super::pattern::{self, Found};
use super::run::{check_format, NvmeQueue, SlotLayout};
use crate::cli::ToolError;

/// How many bad blocks the report describes one by one.
const MAX_DESCRIBED: usize = 16;

/// CRC-64 of every block's (LBA, generation), in LBA order.
static DIGEST: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// What one block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// A whole block of the pattern for its own LBA, written by this generation.
    Whole {
        /// The write generation its header names.
        generation: u32,
    },
    /// A whole block of the pattern written for another LBA.
    Misplaced {
        /// The LBA the data was written for.
        lba: u64,
        /// Its write generation.
        generation: u32,
    },
    /// The header of a pattern block whose later bytes differ from it: parts of two
    /// writes, or corrupted data.
    Torn {
        /// Byte offset of the first differing 8-byte word within the block (data
        /// and interleaved metadata counted together).
        offset: usize,
    },
    /// Bytes that are not the pattern at all.
    Garbage,
}

/// Classifies `block` (data, then any metadata, `data_size` bytes of data), read
/// from `lba`.
pub fn classify(block: &[u8], lba: u64, data_size: usize) -> BlockState {
    let Some((found_lba, generation)) = pattern::header(block) else {
        return BlockState::Garbage;
    };
    match pattern::check(block, found_lba, block.len(), data_size, generation) {
        Ok(()) if found_lba == lba => BlockState::Whole { generation },
        Ok(()) => BlockState::Misplaced {
            lba: found_lba,
            generation,
        },
        Err(m) => BlockState::Torn {
            offset: match m.found {
                Found::CorruptAt { offset } => offset,
                Found::MetadataCorruptAt { offset } => data_size + offset,
                // The header is the one checked against: only later words differ.
                Found::Pattern { .. } | Found::Garbage => 0,
            },
        },
    }
}

/// What `--check-pattern` found (`--json` prints this).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatternCheckReport {
    /// The device as given.
    pub device: String,
    /// Namespace ID.
    pub nsid: u32,
    /// Blocks checked.
    pub blocks: u64,
    /// Whole blocks of the pattern for their own LBA.
    pub whole: u64,
    /// Blocks holding another LBA's pattern.
    pub misplaced: u64,
    /// Blocks whose header and later bytes come from different writes.
    pub torn: u64,
    /// Blocks holding bytes that are not the pattern.
    pub garbage: u64,
    /// Distinct write generations among the whole blocks.
    pub generations: u64,
    /// CRC-64/XZ over every whole block's LBA and generation (little-endian u64 and
    /// u32, in LBA order), as hex: two checks of an area give the same digest exactly
    /// when no block changed its generation in between.
    pub generations_digest: String,
    /// The first bad blocks, as sentences.
    pub bad_blocks: Vec<String>,
}

impl PatternCheckReport {
    /// Adds block `lba`'s state.
    pub fn add(&mut self, lba: u64, state: BlockState, digest: &mut crc::Digest<'_, u64>) {
        self.blocks += 1;
        let bad = match state {
            BlockState::Whole { generation } => {
                self.whole += 1;
                digest.update(&lba.to_le_bytes());
                digest.update(&generation.to_le_bytes());
                return;
            }
            BlockState::Misplaced {
                lba: other,
                generation,
            } => {
                self.misplaced += 1;
                format!("LBA {lba:#x}: holds the data written for LBA {other:#x} (generation {generation})")
            }
            BlockState::Torn { offset } => {
                self.torn += 1;
                format!(
                    "LBA {lba:#x}: torn: its bytes from offset {offset} on belong to another write"
                )
            }
            BlockState::Garbage => {
                self.garbage += 1;
                format!("LBA {lba:#x}: holds bytes that are not the pattern (never written with --verify?)")
            }
        };
        if self.bad_blocks.len() < MAX_DESCRIBED {
            self.bad_blocks.push(bad);
        }
    }

    /// Whether every block was whole.
    pub fn passed(&self) -> bool {
        self.whole == self.blocks
    }

    /// The human-readable summary.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} namespace {}: {} blocks checked: {} whole ({} generations, digest {}), {} torn, {} misplaced, {} garbage",
            self.device,
            self.nsid,
            self.blocks,
            self.whole,
            self.generations,
            self.generations_digest,
            self.torn,
            self.misplaced,
            self.garbage
        );
        for b in &self.bad_blocks {
            s.push_str("\n  ");
            s.push_str(b);
        }
        s
    }
}

/// Opens the device and checks the `--span` area (`-o` bytes per read, one at a time).
pub fn run(args: &PerfArgs) -> Result<PatternCheckReport, ToolError> {
    let device = args.device.to_string();
    let ctrl = nvme::open(
        &device,
        nvme::Options {
            io_queues: 1,
            ..nvme::Options::default()
        },
    )?;
    let ns = ctrl
        .namespace(args.nsid)
        .ok_or_else(|| ToolError::NoNamespace {
            device: device.clone(),
            nsid: args.nsid,
            active: crate::cli::active_namespaces(&ctrl),
        })?;
    if args.pi != PiMode::Off {
        return Err(ToolError::Invalid(
            "--check-pattern reads the pattern with --pi off only".into(),
        ));
    }
    let format = ns.identify.format().map_err(|e| {
        ToolError::Invalid(format!(
            "namespace {}: its format cannot be used: {e}",
            args.nsid
        ))
    })?;
    let format = check_format(args.nsid, &format, None, PiMode::Off)?;
    let lba = u64::from(format.lba_bytes);
    let io = args.io_size;
    if io == 0 || io % lba != 0 {
        return Err(ToolError::Invalid(format!(
            "-o {io}: the I/O size must be a non-zero multiple of namespace {}'s {lba}-byte logical block size",
            args.nsid
        )));
    }
    if io > ctrl.max_transfer_bytes() {
        return Err(ToolError::Invalid(format!(
            "-o {io}: --check-pattern reads with one command each; the controller transfers at most {} bytes per command",
            ctrl.max_transfer_bytes()
        )));
    }
    let capacity = ns.capacity_bytes();
    let span = args.span.unwrap_or(capacity);
    if span > capacity || span % io != 0 {
        return Err(ToolError::Invalid(format!(
            "--span {span}: must be a multiple of -o {io} within namespace {}'s {capacity} bytes",
            args.nsid
        )));
    }
    let buffer_block = format.block_bytes - u32::from(format.separate_metadata);
    let layout = SlotLayout {
        data_bytes: (io / lba * u64::from(buffer_block)) as usize,
        block_bytes: buffer_block as usize,
        metadata_bytes: usize::from(format.separate_metadata),
    };
    let qp = ctrl.create_io_queue_pair(nvme::QueuePairOptions::default())?;
    let mut q = NvmeQueue::new(&ctrl, qp, args.nsid, format.flags, 1, layout)?;
    let mut report = PatternCheckReport {
        device,
        nsid: args.nsid,
        ..PatternCheckReport::default()
    };
    check_area(&mut q, span / lba, (io / lba) as u32, &format, &mut report)?;
    Ok(report)
}

/// Reads blocks `0..blocks`, `per_read` at a time, and adds each to `report`.
fn check_area<T: Transport>(
    q: &mut NvmeQueue<T>,
    blocks: u64,
    per_read: u32,
    format: &super::run::BufferFormat,
    report: &mut PatternCheckReport,
) -> Result<(), ToolError> {
    let block_bytes = format.block_bytes as usize;
    let data_size = format.lba_bytes as usize;
    let mut buf = vec![0u8; per_read as usize * block_bytes];
    let mut digest = DIGEST.digest();
    let mut generations = std::collections::BTreeSet::new();
    let mut lba = 0;
    while lba < blocks {
        q.read_slot_sync(0, lba, per_read).map_err(|e| {
            ToolError::Invalid(format!(
                "--check-pattern: the read at LBA {lba:#x} failed: {e}"
            ))
        })?;
        q.fetch(0, &mut buf);
        for (i, block) in buf.chunks_exact(block_bytes).enumerate() {
            let at = lba + i as u64;
            let state = classify(block, at, data_size);
            if let BlockState::Whole { generation } = state {
                generations.insert(generation);
            }
            report.add(at, state, &mut digest);
        }
        lba += u64::from(per_read);
    }
    report.generations = generations.len() as u64;
    report.generations_digest = format!("{:016x}", digest.finalize());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_blocks_of_any_generation_pass_and_name_it() {
        let mut buf = vec![0u8; 2 * 512];
        pattern::fill(&mut buf[..512], 10, 512, 3);
        pattern::fill(&mut buf[512..], 11, 512, 900);
        assert_eq!(
            classify(&buf[..512], 10, 512),
            BlockState::Whole { generation: 3 }
        );
        assert_eq!(
            classify(&buf[512..], 11, 512),
            BlockState::Whole { generation: 900 }
        );
    }

    #[test]
    fn a_block_of_two_writes_is_torn_at_the_first_word_of_the_second() {
        let mut old = vec![0u8; 512];
        let mut new = vec![0u8; 512];
        pattern::fill(&mut old, 7, 512, 1);
        pattern::fill(&mut new, 7, 512, 2);
        let mut mixed = new.clone();
        mixed[256..].copy_from_slice(&old[256..]);
        assert_eq!(classify(&mixed, 7, 512), BlockState::Torn { offset: 256 });
        // Old header, new tail: torn too.
        let mut mixed = old.clone();
        mixed[504..].copy_from_slice(&new[504..]);
        assert_eq!(classify(&mixed, 7, 512), BlockState::Torn { offset: 504 });
    }

    #[test]
    fn a_torn_metadata_area_counts_from_the_block_start() {
        let mut old = vec![0u8; 520];
        let mut new = vec![0u8; 520];
        pattern::fill(&mut old, 7, 520, 1);
        pattern::fill(&mut new, 7, 520, 2);
        new[512..].copy_from_slice(&old[512..]);
        assert_eq!(classify(&new, 7, 512), BlockState::Torn { offset: 512 });
    }

    #[test]
    fn another_lbas_block_is_misplaced_and_zeros_are_garbage() {
        let mut b = vec![0u8; 4096];
        pattern::fill(&mut b, 99, 4096, 5);
        assert_eq!(
            classify(&b, 98, 4096),
            BlockState::Misplaced {
                lba: 99,
                generation: 5
            }
        );
        assert_eq!(classify(&[0u8; 4096], 98, 4096), BlockState::Garbage);
    }

    #[test]
    fn the_report_counts_each_outcome_and_fails_on_any_bad_block() {
        let mut r = PatternCheckReport::default();
        let mut d = DIGEST.digest();
        r.add(0, BlockState::Whole { generation: 1 }, &mut d);
        assert!(r.passed());
        r.add(1, BlockState::Torn { offset: 8 }, &mut d);
        r.add(
            2,
            BlockState::Misplaced {
                lba: 5,
                generation: 1,
            },
            &mut d,
        );
        r.add(3, BlockState::Garbage, &mut d);
        assert_eq!(
            (r.blocks, r.whole, r.torn, r.misplaced, r.garbage),
            (4, 1, 1, 1, 1)
        );
        assert!(!r.passed());
        assert_eq!(r.bad_blocks.len(), 3);
        assert!(
            r.bad_blocks[0].starts_with("LBA 0x1: torn"),
            "{:?}",
            r.bad_blocks
        );
    }

    #[test]
    fn the_digest_changes_when_a_block_changes_generation() {
        let digest_of = |gens: &[u32]| {
            let mut r = PatternCheckReport::default();
            let mut d = DIGEST.digest();
            for (lba, &g) in gens.iter().enumerate() {
                r.add(lba as u64, BlockState::Whole { generation: g }, &mut d);
            }
            d.finalize()
        };
        assert_eq!(digest_of(&[1, 2, 3]), digest_of(&[1, 2, 3]));
        assert_ne!(digest_of(&[1, 2, 3]), digest_of(&[1, 4, 3]));
    }
}
