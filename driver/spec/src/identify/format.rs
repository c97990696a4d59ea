//! A namespace's in-use format decoded from Identify Namespace: block and metadata
//! sizes, where metadata travels, and end-to-end protection settings (NVM Command Set
//! Specification 1.0, sections 4.1.5.1 and 5.2).

use super::{Dps, IdentifyNamespace, LbaFormat};
use crate::pi::PI_TUPLE_SIZE;
use crate::Error;

/// Where a namespace's per-block metadata travels (FLBAS bit 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataPlacement {
    /// The format has no metadata.
    None,
    /// Metadata follows each block's data in the data buffer (extended LBA).
    Extended,
    /// Metadata travels in a separate buffer (MPTR).
    Separate,
}

/// End-to-end protection information type (DPS bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtectionType {
    /// Protection information is not enabled.
    None = 0,
    /// Type 1: the reference tag is the low bits of the LBA.
    Type1 = 1,
    /// Type 2: the reference tag starts at the command's initial reference tag.
    Type2 = 2,
    /// Type 3: the reference tag is not checked.
    Type3 = 3,
}

impl ProtectionType {
    /// Decodes DPS's PIT field; 4 to 7 are reserved.
    pub const fn from_pit(pit: u8) -> Result<Self, Error> {
        match pit {
            0 => Ok(Self::None),
            1 => Ok(Self::Type1),
            2 => Ok(Self::Type2),
            3 => Ok(Self::Type3),
            _ => Err(Error::InvalidProtectionType { pit }),
        }
    }

    /// The PIT field value (0 to 3).
    pub const fn pit(self) -> u8 {
        self as u8
    }

    /// Whether protection information is enabled.
    pub const fn is_enabled(self) -> bool {
        !matches!(self, Self::None)
    }
}

/// Where the protection information tuple sits in a block's metadata (DPS bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiLocation {
    /// The first bytes of the metadata.
    First,
    /// The last bytes of the metadata.
    Last,
}

impl Dps {
    /// The protection information type, or an error for a reserved value.
    pub const fn protection_type(&self) -> Result<ProtectionType, Error> {
        ProtectionType::from_pit(self.pit())
    }

    /// Where the protection information sits in the metadata.
    pub const fn pi_location(&self) -> PiLocation {
        if self.first() {
            PiLocation::First
        } else {
            PiLocation::Last
        }
    }
}

impl LbaFormat {
    /// Relative Performance (0 best, 3 degraded).
    pub const fn relative_performance(&self) -> u8 {
        self.rp()
    }
}

/// The format a namespace is in: what a command's buffers must hold per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamespaceFormat {
    /// The LBA format index FLBAS selects (0 to 63).
    pub index: u8,
    /// Data bytes per block.
    pub data_size: u32,
    /// Metadata bytes per block.
    pub metadata_size: u16,
    /// Where the metadata travels.
    pub placement: MetadataPlacement,
    /// The protection information type.
    pub protection: ProtectionType,
    /// Where the protection information sits in the metadata (meaningful when
    /// protection is enabled).
    pub pi_location: PiLocation,
    /// Relative Performance of the format (0 best, 3 degraded).
    pub relative_performance: u8,
}

impl NamespaceFormat {
    /// Bytes per block in the data buffer: data plus metadata for extended LBAs,
    /// data alone otherwise. This is the size transfers are measured in.
    pub const fn transfer_block_size(&self) -> u32 {
        match self.placement {
            // At most 2^31 + 65535: no overflow.
            MetadataPlacement::Extended => self.data_size + self.metadata_size as u32,
            MetadataPlacement::None | MetadataPlacement::Separate => self.data_size,
        }
    }

    /// Bytes per block in a separate metadata buffer (0 unless metadata is separate).
    pub const fn separate_metadata_size(&self) -> u16 {
        match self.placement {
            MetadataPlacement::Separate => self.metadata_size,
            MetadataPlacement::None | MetadataPlacement::Extended => 0,
        }
    }

    /// Whether metadata is interleaved with data (extended LBA).
    pub const fn is_extended(&self) -> bool {
        matches!(self.placement, MetadataPlacement::Extended)
    }

    /// Byte offset of a `tuple_size`-byte protection information tuple within a
    /// block's metadata, or `None` when protection is off or the metadata is too small.
    pub const fn pi_offset(&self, tuple_size: u16) -> Option<u16> {
        if !self.protection.is_enabled() || self.metadata_size < tuple_size {
            return None;
        }
        match self.pi_location {
            PiLocation::First => Some(0),
            PiLocation::Last => Some(self.metadata_size - tuple_size),
        }
    }
}

impl IdentifyNamespace {
    /// The in-use format: FLBAS's index (both parts) into the LBA format table, the
    /// metadata placement and the protection settings, checked against each other.
    ///
    /// The data is untrusted: an index beyond NLBAF, a data size outside 512 B to
    /// 2 GiB, a reserved protection type, or protection without room for an 8-byte
    /// tuple in the metadata is an error.
    pub fn format(&self) -> Result<NamespaceFormat, Error> {
        let lbaf = self.active_lba_format()?;
        let data_size = lbaf.data_size()?;
        let metadata_size = lbaf.ms();
        let protection = self.dps.protection_type()?;
        if protection.is_enabled() && usize::from(metadata_size) < PI_TUPLE_SIZE {
            return Err(Error::ProtectionWithoutMetadata {
                pit: protection.pit(),
                ms: metadata_size,
            });
        }
        let placement = match (metadata_size, self.flbas.extended_metadata()) {
            (0, _) => MetadataPlacement::None,
            (_, true) => MetadataPlacement::Extended,
            (_, false) => MetadataPlacement::Separate,
        };
        Ok(NamespaceFormat {
            index: self.flbas.index(),
            data_size,
            metadata_size,
            placement,
            protection,
            pi_location: self.dps.pi_location(),
            relative_performance: lbaf.relative_performance(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::Flbas;

    fn namespace(lbads: u8, ms: u16, extended: bool, dps: Dps) -> IdentifyNamespace {
        let mut ns = IdentifyNamespace {
            nsze: 1024,
            nlbaf: 1,
            flbas: Flbas::new().with_index(1).with_extended_metadata(extended),
            dps,
            ..Default::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, 0);
        ns.lbaf[1] = LbaFormat::with_sizes(lbads, ms).with_rp(2);
        ns
    }

    #[test]
    fn extended_lba_transfers_data_and_metadata_per_block() {
        let f = namespace(9, 8, true, Dps::new()).format().unwrap();
        assert_eq!(f.placement, MetadataPlacement::Extended);
        assert_eq!(f.transfer_block_size(), 520);
        assert_eq!(f.separate_metadata_size(), 0);
        assert_eq!(f.relative_performance, 2);
        assert_eq!(f.index, 1);
    }

    #[test]
    fn separate_metadata_keeps_the_data_block_size() {
        let f = namespace(12, 64, false, Dps::new()).format().unwrap();
        assert_eq!(f.placement, MetadataPlacement::Separate);
        assert_eq!(f.transfer_block_size(), 4096);
        assert_eq!(f.separate_metadata_size(), 64);
        assert!(!f.is_extended());
    }

    #[test]
    fn no_metadata_ignores_the_extended_bit() {
        let f = namespace(12, 0, true, Dps::new()).format().unwrap();
        assert_eq!(f.placement, MetadataPlacement::None);
        assert_eq!(f.transfer_block_size(), 4096);
    }

    #[test]
    fn protection_type_and_location_come_from_dps() {
        let first = namespace(9, 16, true, Dps::new().with_pit(1).with_first(true));
        let f = first.format().unwrap();
        assert_eq!(f.protection, ProtectionType::Type1);
        assert_eq!(f.pi_location, PiLocation::First);
        assert_eq!(f.pi_offset(8), Some(0));
        let last = namespace(9, 16, false, Dps::new().with_pit(3));
        let f = last.format().unwrap();
        assert_eq!(f.protection, ProtectionType::Type3);
        assert_eq!(f.pi_location, PiLocation::Last);
        assert_eq!(f.pi_offset(8), Some(8));
        assert_eq!(f.pi_offset(16), Some(0));
        assert_eq!(f.pi_offset(32), None);
        let off = namespace(9, 16, false, Dps::new()).format().unwrap();
        assert_eq!(off.pi_offset(8), None);
    }

    #[test]
    fn reserved_protection_type_or_pi_without_room_is_an_error() {
        let ns = namespace(9, 8, true, Dps::new().with_pit(5));
        assert_eq!(ns.format(), Err(Error::InvalidProtectionType { pit: 5 }));
        let ns = namespace(9, 0, false, Dps::new().with_pit(2));
        assert_eq!(
            ns.format(),
            Err(Error::ProtectionWithoutMetadata { pit: 2, ms: 0 })
        );
    }

    #[test]
    fn flbas_upper_index_bits_select_formats_past_sixteen() {
        let mut ns = namespace(9, 0, false, Dps::new());
        ns.nlbaf = 39;
        ns.lbaf[37] = LbaFormat::with_sizes(12, 8);
        ns.flbas = Flbas::from_bits(0b0100_0101).with_extended_metadata(true);
        let f = ns.format().unwrap();
        assert_eq!(f.index, 37);
        assert_eq!(f.transfer_block_size(), 4104);
        ns.nlbaf = 36;
        assert_eq!(
            ns.format(),
            Err(Error::LbaFormatOutOfRange {
                index: 37,
                nlbaf: 36
            })
        );
    }
}
