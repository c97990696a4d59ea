//! I/O Command Set specific Identify Namespace data structure for the NVM Command Set
//! (CNS 05h, CSI 00h; NVM Command Set Specification 1.0, section 4.1.5.3): the storage
//! tag size and protection information format of each LBA format.
//!
//! A controller reports it when Identify Controller CTRATT.ELBAS is set; without it
//! every format uses the 16-bit guard with no storage tag.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::{parse_page, IdentifyController, IDENTIFY_DATA_SIZE, MAX_LBA_FORMATS};
use crate::pi::PiFormat;
use crate::Error;

/// Controller Attributes bit 15: Extended LBA Formats Supported (ELBAS).
pub const CTRATT_ELBAS: u32 = 1 << 15;

impl IdentifyController {
    /// Whether the controller reports extended LBA formats (CTRATT.ELBAS): the NVM
    /// Command Set Identify Namespace (CNS 05h) gives each format's guard size.
    pub const fn supports_extended_lba_formats(&self) -> bool {
        self.ctratt & CTRATT_ELBAS != 0
    }
}

/// Protection Information Capabilities (PIC).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Pic {
    /// 16b Guard Protection Information Storage Tag Support (16BPISTS).
    pub storage_tag_16b: bool,
    /// 16b Guard Protection Information Storage Tag Mask (16BPISTM).
    pub storage_tag_mask_16b: bool,
    /// Storage Tag Check Read Support (STCRS).
    pub storage_tag_check_read: bool,
    #[bits(5)]
    __: u8,
}

/// One Extended LBA Format entry (ELBAF), beside the LBA format of the same index.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ElbaFormat {
    /// Storage Tag Size: bits of the 48- or 80-bit storage and reference tag that
    /// hold the storage tag.
    #[bits(7)]
    pub sts: u8,
    /// Protection Information Format: 0 16-bit guard, 1 32-bit guard, 2 64-bit guard.
    #[bits(2)]
    pub pif: u8,
    #[bits(23)]
    __: u32,
}

impl ElbaFormat {
    /// The protection information format, or an error for the reserved value 3.
    pub const fn pi_format(&self) -> Result<PiFormat, Error> {
        match PiFormat::from_pif(self.pif()) {
            Some(f) => Ok(f),
            None => Err(Error::InvalidPiFormat { pif: self.pif() }),
        }
    }

    /// An entry with the given protection information format and no storage tag.
    pub const fn with_format(format: PiFormat) -> Self {
        Self::new().with_pif(match format {
            PiFormat::Guard16 => 0,
            PiFormat::Guard32 => 1,
            PiFormat::Guard64 => 2,
        })
    }
}

/// NVM Command Set Identify Namespace (CNS 05h, CSI 00h), 4096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IdentifyNamespaceNvm {
    /// Logical Block Storage Tag Mask.
    pub lbstm: u64,
    /// Protection Information Capabilities.
    pub pic: Pic,
    /// Reserved.
    pub rsvd9: [u8; 3],
    /// Extended LBA Formats, one per entry of Identify Namespace's LBA format table.
    pub elbaf: [ElbaFormat; MAX_LBA_FORMATS],
    /// Reserved.
    pub rsvd268: [u8; 3828],
}

const _: () = assert!(size_of::<IdentifyNamespaceNvm>() == IDENTIFY_DATA_SIZE);

impl Default for IdentifyNamespaceNvm {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyNamespaceNvm {
    /// Reads the structure from the first 4096 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse_page(bytes, "NVM Command Set Identify Namespace data")
    }

    /// The 4096-byte page.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// The extended LBA format of LBA format `index` (0..=63; a larger index is the
    /// same error Identify Namespace gives for a format beyond its table).
    pub fn format(&self, index: u8) -> Result<ElbaFormat, Error> {
        self.elbaf
            .get(usize::from(index))
            .copied()
            .ok_or(Error::LbaFormatOutOfRange {
                index,
                nlbaf: (MAX_LBA_FORMATS - 1) as u8,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layout_matches_the_specification() {
        assert_eq!(offset_of!(IdentifyNamespaceNvm, pic), 8);
        assert_eq!(offset_of!(IdentifyNamespaceNvm, elbaf), 12);
    }

    #[test]
    fn elbaf_holds_storage_tag_size_and_guard_format() {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        // ELBAF 1: STS 16, PIF 2 (64-bit guard): 0x0000_0110.
        page[16..20].copy_from_slice(&0x0000_0110u32.to_le_bytes());
        // ELBAF 2: PIF 3 (reserved).
        page[20..24].copy_from_slice(&0x0000_0180u32.to_le_bytes());
        page[8] = 0b101;
        let id = IdentifyNamespaceNvm::parse(&page).unwrap();
        assert_eq!(id.format(0).unwrap().pi_format(), Ok(PiFormat::Guard16));
        let f = id.format(1).unwrap();
        assert_eq!(f.sts(), 16);
        assert_eq!(f.pi_format(), Ok(PiFormat::Guard64));
        assert_eq!(
            id.format(2).unwrap().pi_format(),
            Err(Error::InvalidPiFormat { pif: 3 })
        );
        assert!(id.pic.storage_tag_16b() && id.pic.storage_tag_check_read());
        assert!(id.format(64).is_err());
        assert_eq!(IdentifyNamespaceNvm::parse(&id.encode()).unwrap(), id);
        assert_eq!(
            ElbaFormat::with_format(PiFormat::Guard64).into_bits(),
            0x100
        );
    }

    #[test]
    fn ctratt_bit_15_announces_extended_lba_formats() {
        let mut id = IdentifyController::default();
        assert!(!id.supports_extended_lba_formats());
        id.ctratt = CTRATT_ELBAS;
        assert!(id.supports_extended_lba_formats());
    }

    #[test]
    fn a_short_page_is_an_error() {
        assert!(matches!(
            IdentifyNamespaceNvm::parse(&[0u8; 100]),
            Err(Error::BufferTooShort { .. })
        ));
    }
}
