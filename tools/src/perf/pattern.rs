//! The data pattern `--verify` writes: every logical block says which LBA it belongs to
//! and which write (generation) put it there, so a read can tell stale data, misplaced
//! data and garbage apart.
//!
//! Block layout, little-endian 64-bit words: word 0 is the LBA, word 1 is
//! `MAGIC << 32 | generation`, and every further word is a mix of (LBA, generation,
//! word index). On an extended-LBA format the block is the whole transfer block, so
//! the metadata after the data carries the same mix, and a mismatch there is told
//! apart from one in the data.

/// Marks word 1 of a block written by this tool.
const MAGIC: u64 = 0x4e56_4d45; // "NVME"

fn mix(lba: u64, generation: u32, word: u64) -> u64 {
    // splitmix64 finaliser over the three inputs.
    let mut z = lba
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(generation) << 40)
        .wrapping_add(word.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn word(lba: u64, generation: u32, index: u64) -> u64 {
    match index {
        0 => lba,
        1 => (MAGIC << 32) | u64::from(generation),
        i => mix(lba, generation, i),
    }
}

/// Fills `buf` (whole blocks of `block_size` bytes: data, then any interleaved
/// metadata) with the pattern for blocks `first_lba..` at `generation`.
pub fn fill(buf: &mut [u8], first_lba: u64, block_size: usize, generation: u32) {
    for (b, block) in buf.chunks_exact_mut(block_size).enumerate() {
        let lba = first_lba + b as u64;
        for (i, w) in block.chunks_mut(8).enumerate() {
            let bytes = word(lba, generation, i as u64).to_le_bytes();
            w.copy_from_slice(&bytes[..w.len()]);
        }
    }
}

/// Writes into `dst` the pattern bytes that [`fill`] puts at byte `start..` of block
/// `lba` at `generation` (for any `start`, aligned to a word or not).
pub fn fill_range(dst: &mut [u8], lba: u64, generation: u32, start: usize) {
    for (k, byte) in dst.iter_mut().enumerate() {
        let at = start + k;
        *byte = word(lba, generation, (at / 8) as u64).to_le_bytes()[at % 8];
    }
}

/// The LBA and generation a block's header names, `None` when the block does not
/// start with this tool's header.
pub fn header(block: &[u8]) -> Option<(u64, u32)> {
    if block.len() < 16 {
        return None;
    }
    let (w0, w1) = (read_word(block, 0), read_word(block, 1));
    (w1 >> 32 == MAGIC).then_some((w0, w1 as u32))
}

/// What a block held instead of the expected pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The block that was read.
    pub lba: u64,
    /// The generation this run last wrote there.
    pub expected_generation: u32,
    /// What was found.
    pub found: Found,
}

/// The contents of a mismatching block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// This run's pattern for another block or generation (misplaced or stale data).
    Pattern {
        /// The LBA the data was written for.
        lba: u64,
        /// The generation that wrote it.
        generation: u32,
    },
    /// The right header, but the byte at `offset` (within the block) differs.
    CorruptAt {
        /// Byte offset of the first differing 8-byte word.
        offset: usize,
    },
    /// The data is intact, but the interleaved metadata differs at `offset`.
    MetadataCorruptAt {
        /// Byte offset of the first differing word within the block's metadata.
        offset: usize,
    },
    /// Bytes that are not this tool's pattern at all.
    Garbage,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LBA {:#x}: expected the data of write generation {}, ",
            self.lba, self.expected_generation
        )?;
        match self.found {
            Found::Pattern { lba, generation } if lba == self.lba => {
                write!(f, "found the older generation {generation} (a lost write)")
            }
            Found::Pattern { lba, generation } => write!(
                f,
                "found the data written for LBA {lba:#x} (generation {generation})"
            ),
            Found::CorruptAt { offset } => {
                write!(
                    f,
                    "found corrupted bytes at offset {offset} within the block"
                )
            }
            Found::MetadataCorruptAt { offset } => write!(
                f,
                "the data is intact but the metadata differs at offset {offset} within the block's metadata"
            ),
            Found::Garbage => f.write_str("found bytes this run never wrote"),
        }
    }
}

/// Checks `buf` (whole blocks of `block_size` bytes, the first `data_size` of each
/// being data) against the pattern for `first_lba..` at `generation`; returns the
/// first mismatching block.
pub fn check(
    buf: &[u8],
    first_lba: u64,
    block_size: usize,
    data_size: usize,
    generation: u32,
) -> Result<(), Mismatch> {
    for (b, block) in buf.chunks_exact(block_size).enumerate() {
        let lba = first_lba + b as u64;
        check_block(block, lba, data_size, generation)?;
    }
    Ok(())
}

/// Word `i` of `block`; a short last word reads as if zero-extended.
fn read_word(block: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let part = &block[i * 8..block.len().min(i * 8 + 8)];
    w[..part.len()].copy_from_slice(part);
    u64::from_le_bytes(w)
}

/// Word `i` of the pattern as it lands in a block of `len` bytes (a short last word
/// is truncated).
fn expected_word(len: usize, lba: u64, generation: u32, i: usize) -> u64 {
    let w = word(lba, generation, i as u64);
    let bytes = (len - i * 8).min(8);
    if bytes == 8 {
        w
    } else {
        w & ((1u64 << (bytes * 8)) - 1)
    }
}

fn check_block(block: &[u8], lba: u64, data_size: usize, generation: u32) -> Result<(), Mismatch> {
    let len = block.len();
    let words = len.div_ceil(8);
    let bad = (0..words).find(|&i| read_word(block, i) != expected_word(len, lba, generation, i));
    let Some(i) = bad else { return Ok(()) };
    if i * 8 >= data_size {
        return Err(Mismatch {
            lba,
            expected_generation: generation,
            found: Found::MetadataCorruptAt {
                offset: i * 8 - data_size,
            },
        });
    }
    let words = len / 8;
    let w0 = read_word(block, 0);
    let w1 = read_word(block, 1);
    let found = if w1 >> 32 == MAGIC {
        let (flba, fgen) = (w0, w1 as u32);
        let intact = (2..words).all(|j| read_word(block, j) == word(flba, fgen, j as u64));
        if (flba, fgen) != (lba, generation) && intact {
            Found::Pattern {
                lba: flba,
                generation: fgen,
            }
        } else {
            Found::CorruptAt { offset: i * 8 }
        }
    } else {
        Found::Garbage
    };
    Err(Mismatch {
        lba,
        expected_generation: generation,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_buffer_checks_clean() {
        let mut buf = vec![0u8; 4 * 512];
        fill(&mut buf, 100, 512, 7);
        assert_eq!(check(&buf, 100, 512, 512, 7), Ok(()));
    }

    #[test]
    fn a_flipped_byte_is_reported_with_its_lba_and_offset() {
        let mut buf = vec![0u8; 4 * 512];
        fill(&mut buf, 100, 512, 7);
        buf[2 * 512 + 77] ^= 0x10;
        let m = check(&buf, 100, 512, 512, 7).unwrap_err();
        assert_eq!(m.lba, 102);
        assert_eq!(m.found, Found::CorruptAt { offset: 72 });
    }

    #[test]
    fn stale_and_misplaced_data_are_told_apart() {
        let mut buf = vec![0u8; 512];
        fill(&mut buf, 5, 512, 3);
        let stale = check(&buf, 5, 512, 512, 4).unwrap_err();
        assert_eq!(
            stale.found,
            Found::Pattern {
                lba: 5,
                generation: 3
            }
        );
        assert!(stale.to_string().contains("lost write"), "{stale}");
        let misplaced = check(&buf, 6, 512, 512, 3).unwrap_err();
        assert_eq!(
            misplaced.found,
            Found::Pattern {
                lba: 5,
                generation: 3
            }
        );
    }

    #[test]
    fn extended_blocks_cover_the_metadata_and_name_it_on_a_mismatch() {
        for (block, data) in [(520, 512), (4160, 4096), (4104, 4096)] {
            let mut buf = vec![0u8; 3 * block];
            fill(&mut buf, 40, block, 9);
            assert_eq!(check(&buf, 40, block, data, 9), Ok(()));
            // The metadata carries the LBA and generation too: another block's or
            // another write's metadata does not match.
            let mut other = vec![0u8; block];
            fill(&mut other, 41, block, 9);
            assert_ne!(buf[data..block], other[data..]);
            fill(&mut other, 40, block, 8);
            assert_ne!(buf[data..block], other[data..]);
            buf[block + data + 3] ^= 1;
            let m = check(&buf, 40, block, data, 9).unwrap_err();
            assert_eq!(m.lba, 41);
            assert_eq!(m.found, Found::MetadataCorruptAt { offset: 0 });
            assert!(m.to_string().contains("metadata"), "{m}");
        }
    }

    #[test]
    fn a_short_last_word_is_filled_and_checked() {
        let mut buf = vec![0u8; 2 * 515];
        fill(&mut buf, 1, 515, 2);
        assert_eq!(check(&buf, 1, 515, 512, 2), Ok(()));
        buf[515 + 514] ^= 0x80;
        let m = check(&buf, 1, 515, 512, 2).unwrap_err();
        assert_eq!(
            (m.lba, m.found),
            (2, Found::MetadataCorruptAt { offset: 0 })
        );
    }

    #[test]
    fn a_filled_range_is_the_filled_blocks_bytes_and_the_header_names_the_block() {
        let mut block = vec![0u8; 528];
        fill(&mut block, 77, 528, 5);
        assert_eq!(header(&block), Some((77, 5)));
        for (start, len) in [(512, 8), (520, 8), (512, 16), (3, 13), (525, 3)] {
            let mut part = vec![0u8; len];
            fill_range(&mut part, 77, 5, start);
            assert_eq!(part, block[start..start + len], "{start}+{len}");
        }
        assert_eq!(header(&[0u8; 512]), None);
        assert_eq!(header(&block[..15]), None);
    }

    #[test]
    fn zeros_are_garbage() {
        let buf = vec![0u8; 512];
        let m = check(&buf, 0, 512, 512, 1).unwrap_err();
        assert_eq!(m.found, Found::Garbage);
    }
}
