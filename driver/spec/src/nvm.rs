//! NVM Command Set I/O commands: builders for the driver and field decoders
//! for the controller (NVM Command Set Specification 1.0, section 3.2).
//!
//! Builders return a [`SubmissionEntry`] with the opcode, NSID and command
//! dwords set; the driver then sets the command identifier and data pointer
//! with [`SubmissionEntry::set_cid`] and [`SubmissionEntry::set_prp`]. Block
//! counts are counts (1..=65536); the 0's based NLB encoding stays in here.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::command::{NvmOpcode, SubmissionEntry};
use crate::Error;

/// Largest number of logical blocks one command can move (NLB is 16 bits, 0's based).
pub const MAX_BLOCKS_PER_COMMAND: u32 = 1 << 16;

/// Largest number of ranges in one Dataset Management command (NR is 8 bits, 0's based).
pub const MAX_DSM_RANGES: usize = 256;

/// CDW12 of Read, Write, Compare, Verify and Write Zeroes.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct RwCdw12 {
    /// Number of Logical Blocks, 0's based.
    pub nlb: u16,
    #[bits(8)]
    __: u8,
    /// Storage Tag Check.
    pub stc: bool,
    /// Deallocate (Write Zeroes only): the blocks may be deallocated.
    pub deac: bool,
    /// Protection Information field.
    #[bits(4)]
    pub prinfo: u8,
    /// Force Unit Access: the data is on non-volatile media before completion.
    pub fua: bool,
    /// Limited Retry: the controller applies limited error recovery.
    pub lr: bool,
}

/// CDW10 of Dataset Management.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct DsmCdw10 {
    /// Number of Ranges, 0's based.
    pub nr: u8,
    #[bits(24)]
    __: u32,
}

/// CDW11 of Dataset Management: the attributes applying to every range.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct DsmAttributes {
    /// Integral Dataset for Read.
    pub idr: bool,
    /// Integral Dataset for Write.
    pub idw: bool,
    /// Attribute - Deallocate: the ranges may be deallocated.
    pub ad: bool,
    #[bits(29)]
    __: u32,
}

/// A Dataset Management range (16 bytes; up to 256 in the command's data buffer).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DsmRange {
    /// Context Attributes.
    pub context_attributes: u32,
    /// Length in logical blocks (a count, not 0's based).
    pub length: u32,
    /// Starting LBA.
    pub slba: u64,
}

const _: () = assert!(size_of::<DsmRange>() == 16);

impl DsmRange {
    /// A range of `length` blocks starting at `slba`, with no context attributes.
    pub const fn new(slba: u64, length: u32) -> Self {
        Self {
            context_attributes: 0,
            length,
            slba,
        }
    }

    /// The ranges in a Dataset Management data buffer; a trailing partial range is ignored.
    pub fn parse_list(bytes: &[u8], count: usize) -> Result<Vec<DsmRange>, Error> {
        let needed = count.saturating_mul(size_of::<DsmRange>());
        if bytes.len() < needed {
            return Err(Error::BufferTooShort {
                structure: "Dataset Management range list",
                needed,
                actual: bytes.len(),
            });
        }
        Ok(bytes[..needed]
            .chunks_exact(size_of::<DsmRange>())
            .filter_map(|chunk| DsmRange::read_from_bytes(chunk).ok())
            .collect())
    }
}

fn nlb_for(count: u32) -> Result<u16, Error> {
    if count == 0 || count > MAX_BLOCKS_PER_COMMAND {
        return Err(Error::InvalidBlockCount { count });
    }
    Ok((count - 1) as u16)
}

fn lba_command(
    opcode: NvmOpcode,
    nsid: u32,
    slba: u64,
    blocks: u32,
) -> Result<SubmissionEntry, Error> {
    let mut sqe = SubmissionEntry::new(opcode.0);
    sqe.nsid = nsid;
    sqe.set_slba(slba);
    sqe.cdw12 = RwCdw12::new().with_nlb(nlb_for(blocks)?).into();
    Ok(sqe)
}

/// Read `blocks` (1..=65536) logical blocks starting at `slba`.
pub fn read(nsid: u32, slba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    lba_command(NvmOpcode::READ, nsid, slba, blocks)
}

/// Write `blocks` (1..=65536) logical blocks starting at `slba`.
pub fn write(nsid: u32, slba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    lba_command(NvmOpcode::WRITE, nsid, slba, blocks)
}

/// Compare `blocks` (1..=65536) logical blocks starting at `slba` with the data buffer.
pub fn compare(nsid: u32, slba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    lba_command(NvmOpcode::COMPARE, nsid, slba, blocks)
}

/// Verify `blocks` (1..=65536) logical blocks starting at `slba`; no data transfer.
pub fn verify(nsid: u32, slba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    lba_command(NvmOpcode::VERIFY, nsid, slba, blocks)
}

/// Write zeroes to `blocks` (1..=65536) logical blocks starting at `slba`; no data transfer.
pub fn write_zeroes(nsid: u32, slba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    lba_command(NvmOpcode::WRITE_ZEROES, nsid, slba, blocks)
}

/// Flush the volatile write cache of namespace `nsid` (or of all with [`crate::command::NSID_ALL`]).
pub const fn flush(nsid: u32) -> SubmissionEntry {
    let mut sqe = SubmissionEntry::new(NvmOpcode::FLUSH.0);
    sqe.nsid = nsid;
    sqe
}

/// Dataset Management over `ranges` (1..=256) [`DsmRange`]s held in the data buffer.
pub fn dataset_management(
    nsid: u32,
    ranges: usize,
    attributes: DsmAttributes,
) -> Result<SubmissionEntry, Error> {
    if ranges == 0 || ranges > MAX_DSM_RANGES {
        return Err(Error::InvalidRangeCount { count: ranges });
    }
    let mut sqe = SubmissionEntry::new(NvmOpcode::DATASET_MANAGEMENT.0);
    sqe.nsid = nsid;
    sqe.cdw10 = DsmCdw10::new().with_nr((ranges - 1) as u8).into();
    sqe.cdw11 = attributes.into();
    Ok(sqe)
}

/// Dataset Management deallocating (trimming) `ranges` (1..=256) ranges.
pub fn deallocate(nsid: u32, ranges: usize) -> Result<SubmissionEntry, Error> {
    dataset_management(nsid, ranges, DsmAttributes::new().with_ad(true))
}

/// Field access for the LBA-addressed NVM commands (Read, Write, Compare,
/// Verify, Write Zeroes) and Dataset Management.
impl SubmissionEntry {
    /// Starting LBA (CDW11:CDW10).
    pub const fn slba(&self) -> u64 {
        (self.cdw11 as u64) << 32 | self.cdw10 as u64
    }

    /// Sets the starting LBA (CDW11:CDW10).
    pub const fn set_slba(&mut self, slba: u64) {
        self.cdw10 = slba as u32;
        self.cdw11 = (slba >> 32) as u32;
    }

    /// CDW12 of an LBA-addressed command.
    pub const fn rw_cdw12(&self) -> RwCdw12 {
        RwCdw12::from_bits(self.cdw12)
    }

    /// Number of logical blocks the command covers (NLB + 1, so 1..=65536).
    pub const fn block_count(&self) -> u32 {
        self.rw_cdw12().nlb() as u32 + 1
    }

    /// Force Unit Access (CDW12 bit 30).
    pub const fn fua(&self) -> bool {
        self.rw_cdw12().fua()
    }

    /// Limited Retry (CDW12 bit 31).
    pub const fn limited_retry(&self) -> bool {
        self.rw_cdw12().lr()
    }

    /// Deallocate, for Write Zeroes (CDW12 bit 25).
    pub const fn deac(&self) -> bool {
        self.rw_cdw12().deac()
    }

    /// Protection Information field (CDW12 bits 29:26).
    pub const fn prinfo(&self) -> u8 {
        self.rw_cdw12().prinfo()
    }

    /// The same command with Force Unit Access set or cleared.
    pub const fn with_fua(mut self, fua: bool) -> Self {
        self.cdw12 = self.rw_cdw12().with_fua(fua).into_bits();
        self
    }

    /// The same command with Limited Retry set or cleared.
    pub const fn with_limited_retry(mut self, lr: bool) -> Self {
        self.cdw12 = self.rw_cdw12().with_lr(lr).into_bits();
        self
    }

    /// The same command with Deallocate (Write Zeroes) set or cleared.
    pub const fn with_deac(mut self, deac: bool) -> Self {
        self.cdw12 = self.rw_cdw12().with_deac(deac).into_bits();
        self
    }

    /// Number of Dataset Management ranges (NR + 1, so 1..=256).
    pub const fn dsm_range_count(&self) -> usize {
        DsmCdw10::from_bits(self.cdw10).nr() as usize + 1
    }

    /// Dataset Management attributes (CDW11).
    pub const fn dsm_attributes(&self) -> DsmAttributes {
        DsmAttributes::from_bits(self.cdw11)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_of_8_blocks_at_high_lba_sets_spec_dwords() {
        let sqe = read(1, 0x1_0000_0002, 8).unwrap();
        assert_eq!(sqe.opcode(), 0x02);
        assert_eq!(sqe.nsid, 1);
        assert_eq!(sqe.cdw10, 2);
        assert_eq!(sqe.cdw11, 1);
        assert_eq!(sqe.cdw12, 7);
        assert_eq!((sqe.cdw13, sqe.cdw14, sqe.cdw15), (0, 0, 0));
        assert_eq!(sqe.slba(), 0x1_0000_0002);
        assert_eq!(sqe.block_count(), 8);
        assert!(!sqe.fua());
    }

    #[test]
    fn fua_is_cdw12_bit_30_and_limited_retry_bit_31() {
        let sqe = write(1, 0, 1).unwrap().with_fua(true);
        assert_eq!(sqe.opcode(), 0x01);
        assert_eq!(sqe.cdw12, 1 << 30);
        assert!(sqe.fua());
        let sqe = sqe.with_limited_retry(true);
        assert_eq!(sqe.cdw12, (1 << 31) | (1 << 30));
        assert!(sqe.limited_retry());
        assert_eq!(sqe.with_fua(false).cdw12, 1 << 31);
    }

    #[test]
    fn write_zeroes_deac_is_cdw12_bit_25() {
        let sqe = write_zeroes(3, 100, 65536)
            .unwrap()
            .with_deac(true)
            .with_fua(true);
        assert_eq!(sqe.opcode(), 0x08);
        assert_eq!(sqe.cdw12, (1 << 30) | (1 << 25) | 0xffff);
        assert!(sqe.deac());
        assert_eq!(sqe.block_count(), 65536);
    }

    #[test]
    fn block_count_outside_1_to_65536_is_rejected() {
        assert_eq!(read(1, 0, 0), Err(Error::InvalidBlockCount { count: 0 }));
        assert_eq!(
            write(1, 0, 65537),
            Err(Error::InvalidBlockCount { count: 65537 })
        );
    }

    #[test]
    fn compare_verify_and_flush_carry_their_opcodes() {
        assert_eq!(compare(1, 5, 2).unwrap().opcode(), 0x05);
        let v = verify(1, 5, 2).unwrap();
        assert_eq!((v.opcode(), v.cdw10, v.cdw12), (0x0c, 5, 1));
        let f = flush(7);
        assert_eq!((f.opcode(), f.nsid, f.cdw10, f.cdw12), (0x00, 7, 0, 0));
    }

    #[test]
    fn dataset_management_encodes_zero_based_range_count_and_deallocate() {
        let sqe = deallocate(1, 3).unwrap();
        assert_eq!(sqe.opcode(), 0x09);
        assert_eq!(sqe.cdw10, 2);
        assert_eq!(sqe.cdw11, 1 << 2);
        assert_eq!(sqe.dsm_range_count(), 3);
        assert!(sqe.dsm_attributes().ad());
        assert_eq!(deallocate(1, 256).unwrap().cdw10, 255);
        assert_eq!(deallocate(1, 0), Err(Error::InvalidRangeCount { count: 0 }));
        assert_eq!(
            deallocate(1, 257),
            Err(Error::InvalidRangeCount { count: 257 })
        );
    }

    #[test]
    fn dsm_range_is_16_bytes_in_spec_order() {
        let r = DsmRange {
            context_attributes: 0x0a0b_0c0d,
            length: 8,
            slba: 0x1122_3344_5566_7788,
        };
        let b = r.as_bytes();
        assert_eq!(&b[0..4], &0x0a0b_0c0du32.to_le_bytes());
        assert_eq!(&b[4..8], &8u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        let mut buf = b.to_vec();
        buf.extend_from_slice(DsmRange::new(9, 1).as_bytes());
        assert_eq!(
            DsmRange::parse_list(&buf, 2).unwrap(),
            vec![r, DsmRange::new(9, 1)]
        );
        assert_eq!(
            DsmRange::parse_list(&buf, 3),
            Err(Error::BufferTooShort {
                structure: "Dataset Management range list",
                needed: 48,
                actual: 32
            })
        );
    }
}
