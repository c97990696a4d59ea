//! Identify Namespace data structure for the NVM Command Set (CNS 00h; NVM
//! Command Set Specification 1.0, figure 97), its LBA format table and bit fields.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::{parse_page, IDENTIFY_DATA_SIZE, MAX_LBA_FORMATS};
use crate::Error;

/// Namespace Features (NSFEAT).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Nsfeat {
    /// Thin provisioning: NCAP may be less than NSZE.
    pub thin_provisioning: bool,
    /// NAWUN, NAWUPF and NACWU are defined for this namespace.
    pub namespace_atomics: bool,
    /// The Deallocated or Unwritten Logical Block error is supported.
    pub deallocated_error: bool,
    /// The NGUID and EUI64 are never reused.
    pub uid_reuse: bool,
    /// NPWG, NPWA, NPDG, NPDA and NOWS are defined.
    pub optimal_performance: bool,
    #[bits(3)]
    __: u8,
}

/// Formatted LBA Size (FLBAS).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Flbas {
    /// Format index, bits 3:0.
    #[bits(4)]
    pub index_low: u8,
    /// Metadata is transferred at the end of each block (extended LBA).
    pub extended_metadata: bool,
    /// Format index, bits 5:4.
    #[bits(2)]
    pub index_high: u8,
    #[bits(1)]
    __: u8,
}

impl Flbas {
    /// The selected LBA format index (0..=63).
    pub const fn index(&self) -> u8 {
        self.index_low() | (self.index_high() << 4)
    }

    /// The same value selecting LBA format `index` (0..=63; higher bits are dropped).
    pub const fn with_index(self, index: u8) -> Self {
        self.with_index_low(index & 0xf)
            .with_index_high((index >> 4) & 3)
    }
}

/// Metadata Capabilities (MC).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Mc {
    /// Metadata may be transferred as part of an extended LBA.
    pub extended: bool,
    /// Metadata may be transferred in a separate buffer.
    pub separate: bool,
    #[bits(6)]
    __: u8,
}

/// End-to-end Data Protection Capabilities (DPC).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dpc {
    /// Protection Information Type 1.
    pub type1: bool,
    /// Protection Information Type 2.
    pub type2: bool,
    /// Protection Information Type 3.
    pub type3: bool,
    /// Protection information in the first bytes of metadata.
    pub first: bool,
    /// Protection information in the last bytes of metadata.
    pub last: bool,
    #[bits(3)]
    __: u8,
}

/// End-to-end Data Protection Type Settings (DPS).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dps {
    /// Protection Information Type enabled (0: none).
    #[bits(3)]
    pub pit: u8,
    /// Protection information is the first bytes of metadata.
    pub first: bool,
    #[bits(4)]
    __: u8,
}

/// Deallocate Logical Block Features (DLFEAT).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dlfeat {
    /// Read of a deallocated block: 0 not reported, 1 all zeroes, 2 all ones.
    #[bits(3)]
    pub read_behavior: u8,
    /// Write Zeroes supports the Deallocate bit.
    pub write_zeroes_deallocate: bool,
    /// The guard field of deallocated blocks holds the CRC of the data.
    pub guard_crc: bool,
    #[bits(3)]
    __: u8,
}

/// An LBA Format entry.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct LbaFormat {
    /// Metadata Size per block, bytes.
    pub ms: u16,
    /// LBA Data Size: `2 ^ lbads` bytes; below 9 means unsupported.
    pub lbads: u8,
    /// Relative Performance (0 best .. 3 degraded).
    #[bits(2)]
    pub rp: u8,
    #[bits(6)]
    __: u8,
}

impl LbaFormat {
    /// A format of `2 ^ lbads`-byte blocks with `ms` metadata bytes each.
    pub const fn with_sizes(lbads: u8, ms: u16) -> Self {
        Self::new().with_lbads(lbads).with_ms(ms)
    }

    /// Bytes per block, if LBADS lies in 9..=31.
    pub const fn data_size(&self) -> Result<u32, Error> {
        let lbads = self.lbads();
        if lbads < 9 || lbads > 31 {
            return Err(Error::LbaSizeOutOfRange { lbads });
        }
        Ok(1 << lbads)
    }
}

/// Identify Namespace data structure for the NVM Command Set (CNS 00h), 4096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IdentifyNamespace {
    /// Namespace Size, logical blocks.
    pub nsze: u64,
    /// Namespace Capacity, logical blocks.
    pub ncap: u64,
    /// Namespace Utilization, logical blocks.
    pub nuse: u64,
    /// Namespace Features.
    pub nsfeat: Nsfeat,
    /// Number of LBA Formats, 0's based.
    pub nlbaf: u8,
    /// Formatted LBA Size.
    pub flbas: Flbas,
    /// Metadata Capabilities.
    pub mc: Mc,
    /// End-to-end Data Protection Capabilities.
    pub dpc: Dpc,
    /// End-to-end Data Protection Type Settings.
    pub dps: Dps,
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities.
    pub nmic: u8,
    /// Reservation Capabilities.
    pub rescap: u8,
    /// Format Progress Indicator.
    pub fpi: u8,
    /// Deallocate Logical Block Features.
    pub dlfeat: Dlfeat,
    /// Namespace Atomic Write Unit Normal, 0's based.
    pub nawun: u16,
    /// Namespace Atomic Write Unit Power Fail, 0's based.
    pub nawupf: u16,
    /// Namespace Atomic Compare & Write Unit, 0's based.
    pub nacwu: u16,
    /// Namespace Atomic Boundary Size Normal.
    pub nabsn: u16,
    /// Namespace Atomic Boundary Offset.
    pub nabo: u16,
    /// Namespace Atomic Boundary Size Power Fail.
    pub nabspf: u16,
    /// Namespace Optimal I/O Boundary, logical blocks.
    pub noiob: u16,
    /// NVM Capacity, bytes (128-bit little endian).
    pub nvmcap: [u8; 16],
    /// Namespace Preferred Write Granularity, 0's based.
    pub npwg: u16,
    /// Namespace Preferred Write Alignment, 0's based.
    pub npwa: u16,
    /// Namespace Preferred Deallocate Granularity, 0's based.
    pub npdg: u16,
    /// Namespace Preferred Deallocate Alignment, 0's based.
    pub npda: u16,
    /// Namespace Optimal Write Size, 0's based.
    pub nows: u16,
    /// Maximum Single Source Range Length (Copy).
    pub mssrl: u16,
    /// Maximum Copy Length.
    pub mcl: u32,
    /// Maximum Source Range Count, 0's based.
    pub msrc: u8,
    /// Reserved.
    pub rsvd81: [u8; 11],
    /// ANA Group Identifier.
    pub anagrpid: u32,
    /// Reserved.
    pub rsvd96: [u8; 3],
    /// Namespace Attributes (bit 0: write protected).
    pub nsattr: u8,
    /// NVM Set Identifier.
    pub nvmsetid: u16,
    /// Endurance Group Identifier.
    pub endgid: u16,
    /// Namespace Globally Unique Identifier.
    pub nguid: [u8; 16],
    /// IEEE Extended Unique Identifier.
    pub eui64: [u8; 8],
    /// LBA Format table; entries beyond NLBAF are not valid.
    pub lbaf: [LbaFormat; MAX_LBA_FORMATS],
    /// Reserved.
    pub rsvd384: [u8; 3328],
    /// Vendor Specific.
    pub vs: [u8; 384],
}

const _: () = assert!(size_of::<IdentifyNamespace>() == IDENTIFY_DATA_SIZE);

impl Default for IdentifyNamespace {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyNamespace {
    /// Reads the structure from the first 4096 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse_page(bytes, "Identify Namespace data")
    }

    /// The 4096-byte page.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// Whether the page describes no namespace (an inactive NSID reads as zeroes).
    pub const fn is_inactive(&self) -> bool {
        self.nsze == 0
    }

    /// The valid LBA formats (`NLBAF + 1` entries, at most 64).
    pub fn lba_formats(&self) -> &[LbaFormat] {
        let count = (self.nlbaf as usize + 1).min(MAX_LBA_FORMATS);
        &self.lbaf[..count]
    }

    /// The LBA format FLBAS selects, or an error if it is beyond NLBAF.
    pub fn active_lba_format(&self) -> Result<LbaFormat, Error> {
        let index = self.flbas.index();
        self.lba_formats()
            .get(index as usize)
            .copied()
            .ok_or(Error::LbaFormatOutOfRange {
                index,
                nlbaf: self.nlbaf,
            })
    }

    /// Bytes per logical block of the active format.
    pub fn lba_size(&self) -> Result<u32, Error> {
        self.active_lba_format()?.data_size()
    }

    /// Metadata bytes per logical block of the active format.
    pub fn metadata_size(&self) -> Result<u16, Error> {
        Ok(self.active_lba_format()?.ms())
    }

    /// Namespace size in bytes (NSZE times the block size).
    pub fn capacity_bytes(&self) -> Result<u64, Error> {
        let block_size = self.lba_size()?;
        self.nsze
            .checked_mul(u64::from(block_size))
            .ok_or(Error::CapacityOverflow {
                blocks: self.nsze,
                block_size,
            })
    }

    /// NVM Capacity in bytes.
    pub const fn nvm_capacity(&self) -> u128 {
        u128::from_le_bytes(self.nvmcap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn namespace_fields_sit_at_spec_offsets() {
        assert_eq!(offset_of!(IdentifyNamespace, ncap), 8);
        assert_eq!(offset_of!(IdentifyNamespace, nuse), 16);
        assert_eq!(offset_of!(IdentifyNamespace, nsfeat), 24);
        assert_eq!(offset_of!(IdentifyNamespace, nlbaf), 25);
        assert_eq!(offset_of!(IdentifyNamespace, flbas), 26);
        assert_eq!(offset_of!(IdentifyNamespace, mc), 27);
        assert_eq!(offset_of!(IdentifyNamespace, dpc), 28);
        assert_eq!(offset_of!(IdentifyNamespace, dlfeat), 33);
        assert_eq!(offset_of!(IdentifyNamespace, nawun), 34);
        assert_eq!(offset_of!(IdentifyNamespace, noiob), 46);
        assert_eq!(offset_of!(IdentifyNamespace, nvmcap), 48);
        assert_eq!(offset_of!(IdentifyNamespace, npwg), 64);
        assert_eq!(offset_of!(IdentifyNamespace, mcl), 76);
        assert_eq!(offset_of!(IdentifyNamespace, anagrpid), 92);
        assert_eq!(offset_of!(IdentifyNamespace, nsattr), 99);
        assert_eq!(offset_of!(IdentifyNamespace, nvmsetid), 100);
        assert_eq!(offset_of!(IdentifyNamespace, nguid), 104);
        assert_eq!(offset_of!(IdentifyNamespace, eui64), 120);
        assert_eq!(offset_of!(IdentifyNamespace, lbaf), 128);
        assert_eq!(offset_of!(IdentifyNamespace, vs), 3712);
    }

    fn sample_namespace() -> IdentifyNamespace {
        let mut ns = IdentifyNamespace {
            nsze: 0x20_0000,
            ncap: 0x20_0000,
            nuse: 0x1000,
            nlbaf: 1,
            flbas: Flbas::new().with_index(1),
            mc: Mc::new().with_separate(true),
            dlfeat: Dlfeat::new()
                .with_read_behavior(1)
                .with_write_zeroes_deallocate(true),
            ..Default::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, 0);
        ns.lbaf[1] = LbaFormat::with_sizes(12, 8);
        ns
    }

    #[test]
    fn namespace_helpers_use_the_active_lba_format() {
        let ns = sample_namespace();
        assert_eq!(ns.lba_formats().len(), 2);
        assert_eq!(ns.lba_size(), Ok(4096));
        assert_eq!(ns.metadata_size(), Ok(8));
        assert_eq!(ns.capacity_bytes(), Ok(0x20_0000 * 4096));
        assert!(!ns.is_inactive());
    }

    #[test]
    fn namespace_encodes_spec_bytes_and_round_trips() {
        let ns = sample_namespace();
        let page = ns.encode();
        assert_eq!(&page[0..8], &0x20_0000u64.to_le_bytes());
        assert_eq!(page[25], 1);
        assert_eq!(page[26], 1);
        assert_eq!(&page[128..132], &[0, 0, 9, 0]);
        assert_eq!(&page[132..136], &[8, 0, 12, 0]);
        assert_eq!(IdentifyNamespace::parse(&page).unwrap(), ns);
    }

    #[test]
    fn flbas_index_uses_bits_3_0_and_6_5() {
        let f = Flbas::new().with_index(0x2b).with_extended_metadata(true);
        assert_eq!(u8::from(f), 0b0101_1011);
        assert_eq!(f.index(), 0x2b);
    }

    #[test]
    fn flbas_beyond_nlbaf_is_an_error() {
        let mut ns = sample_namespace();
        ns.flbas = Flbas::new().with_index(2);
        assert_eq!(
            ns.lba_size(),
            Err(Error::LbaFormatOutOfRange { index: 2, nlbaf: 1 })
        );
        assert!(ns.capacity_bytes().is_err());
        ns.nlbaf = 255;
        ns.flbas = Flbas::new().with_index(63);
        assert_eq!(ns.lba_formats().len(), 64);
        assert_eq!(ns.lba_size(), Err(Error::LbaSizeOutOfRange { lbads: 0 }));
    }

    #[test]
    fn bad_lba_size_and_overflowing_capacity_are_errors() {
        let mut ns = sample_namespace();
        ns.lbaf[1] = LbaFormat::with_sizes(40, 0);
        assert_eq!(ns.lba_size(), Err(Error::LbaSizeOutOfRange { lbads: 40 }));
        ns.lbaf[1] = LbaFormat::with_sizes(12, 0);
        ns.nsze = u64::MAX;
        assert_eq!(
            ns.capacity_bytes(),
            Err(Error::CapacityOverflow {
                blocks: u64::MAX,
                block_size: 4096
            })
        );
        let inactive = IdentifyNamespace::default();
        assert!(inactive.is_inactive());
        assert!(inactive.lba_size().is_err());
    }
}
