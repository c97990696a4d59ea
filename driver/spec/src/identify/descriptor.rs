//! Namespace Identification Descriptor list (Identify CNS 03h; NVMe Base
//! Specification 2.0, section 5.17.2.3): EUI-64, NGUID, UUID and Command Set
//! Identifier of one namespace.
//!
//! Each descriptor is a 4-byte header (NIDT, NIDL, two reserved bytes) followed by
//! NIDL bytes of identifier; a header with NIDL 0 ends the list (as Linux's
//! `nvme_identify_ns_descs` reads it). The device is untrusted: every length and
//! offset is checked, and a malformed list is an [`Error`], never a panic.

use super::IDENTIFY_DATA_SIZE;
use crate::Error;

/// Namespace Identifier Type (NIDT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceIdType(pub u8);

impl NamespaceIdType {
    /// IEEE Extended Unique Identifier, 8 bytes.
    pub const EUI64: Self = Self(1);
    /// Namespace Globally Unique Identifier, 16 bytes.
    pub const NGUID: Self = Self(2);
    /// Namespace UUID, 16 bytes.
    pub const UUID: Self = Self(3);
    /// Command Set Identifier, 1 byte.
    pub const CSI: Self = Self(4);

    /// The NIDL the specification gives this type, if the type is known.
    pub const fn length(self) -> Option<u8> {
        match self.0 {
            1 => Some(8),
            2 | 3 => Some(16),
            4 => Some(1),
            _ => None,
        }
    }
}

/// Command Set Identifier (CSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandSetId(pub u8);

impl CommandSetId {
    /// NVM Command Set.
    pub const NVM: Self = Self(0);
    /// Key Value Command Set.
    pub const KEY_VALUE: Self = Self(1);
    /// Zoned Namespace Command Set.
    pub const ZONED: Self = Self(2);

    /// A short lowercase name: `nvm`, `key-value`, `zoned`, or `reserved`.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "nvm",
            1 => "key-value",
            2 => "zoned",
            _ => "reserved",
        }
    }
}

impl core::fmt::Display for CommandSetId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Size of a descriptor header.
const HEADER: usize = 4;

/// The identifiers of one namespace, as its descriptor list reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceIds {
    /// IEEE Extended Unique Identifier.
    pub eui64: Option<[u8; 8]>,
    /// Namespace Globally Unique Identifier.
    pub nguid: Option<[u8; 16]>,
    /// Namespace UUID.
    pub uuid: Option<[u8; 16]>,
    /// Command Set Identifier.
    pub csi: Option<CommandSetId>,
}

impl NamespaceIds {
    /// Parses a descriptor list (at most the first 4096 bytes of `bytes` are read).
    ///
    /// Unknown types are skipped by their NIDL; a descriptor that runs past the end,
    /// a known type with the wrong NIDL, or a type given twice is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let list = &bytes[..bytes.len().min(IDENTIFY_DATA_SIZE)];
        let mut ids = Self::default();
        let mut pos = 0usize;
        while let Some(header) = list.get(pos..pos + HEADER) {
            let (nidt, nidl) = (header[0], header[1]);
            if nidl == 0 {
                break;
            }
            let start = pos + HEADER;
            let end = start + usize::from(nidl);
            let Some(id) = list.get(start..end) else {
                return Err(Error::DescriptorOverrun {
                    offset: pos,
                    nidl,
                    len: list.len(),
                });
            };
            let kind = NamespaceIdType(nidt);
            if let Some(expected) = kind.length() {
                if nidl != expected {
                    return Err(Error::DescriptorLength {
                        offset: pos,
                        nidt,
                        nidl,
                        expected,
                    });
                }
            }
            let duplicate = match kind {
                NamespaceIdType::EUI64 => ids.eui64.replace(array(id)).is_some(),
                NamespaceIdType::NGUID => ids.nguid.replace(array(id)).is_some(),
                NamespaceIdType::UUID => ids.uuid.replace(array(id)).is_some(),
                NamespaceIdType::CSI => ids.csi.replace(CommandSetId(id[0])).is_some(),
                _ => false,
            };
            if duplicate {
                return Err(Error::DuplicateDescriptor { offset: pos, nidt });
            }
            pos = end;
        }
        Ok(ids)
    }

    /// The 4096-byte descriptor list: EUI-64, NGUID, UUID, then CSI, each if present.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        let mut pos = 0;
        let mut put = |kind: NamespaceIdType, id: &[u8]| {
            page[pos] = kind.0;
            page[pos + 1] = id.len() as u8;
            page[pos + HEADER..pos + HEADER + id.len()].copy_from_slice(id);
            pos += HEADER + id.len();
        };
        if let Some(eui64) = &self.eui64 {
            put(NamespaceIdType::EUI64, eui64);
        }
        if let Some(nguid) = &self.nguid {
            put(NamespaceIdType::NGUID, nguid);
        }
        if let Some(uuid) = &self.uuid {
            put(NamespaceIdType::UUID, uuid);
        }
        if let Some(csi) = self.csi {
            put(NamespaceIdType::CSI, &[csi.0]);
        }
        page
    }
}

/// Copies an identifier whose length was checked against its type.
fn array<const N: usize>(id: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&id[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NamespaceIds {
        NamespaceIds {
            eui64: Some(*b"RUST\0\0\0\x01"),
            nguid: Some([0x11; 16]),
            uuid: Some([0x22; 16]),
            csi: Some(CommandSetId::ZONED),
        }
    }

    #[test]
    fn descriptor_list_encodes_spec_bytes_and_round_trips() {
        let page = sample().encode();
        assert_eq!(&page[..4], &[1, 8, 0, 0]);
        assert_eq!(&page[4..12], b"RUST\0\0\0\x01");
        assert_eq!(&page[12..16], &[2, 16, 0, 0]);
        assert_eq!(&page[32..36], &[3, 16, 0, 0]);
        assert_eq!(&page[52..57], &[4, 1, 0, 0, 2]);
        assert!(page[57..].iter().all(|&b| b == 0));
        assert_eq!(NamespaceIds::parse(&page), Ok(sample()));
        assert_eq!(
            NamespaceIds::parse(&[0u8; 4096]),
            Ok(NamespaceIds::default())
        );
    }

    #[test]
    fn unknown_types_are_skipped_by_their_length() {
        let mut page = [0u8; 4096];
        page[..4].copy_from_slice(&[9, 3, 0, 0]);
        page[7..11].copy_from_slice(&[4, 1, 0, 0]);
        page[11] = 0;
        let ids = NamespaceIds::parse(&page).unwrap();
        assert_eq!(ids.csi, Some(CommandSetId::NVM));
        assert_eq!(ids.eui64, None);
    }

    #[test]
    fn a_descriptor_past_the_end_is_an_error() {
        let mut page = [0u8; 4096];
        // Unknown descriptors of 259 bytes each, the last one crossing the end.
        let mut pos = 0;
        while pos + 259 + 4 <= 4092 {
            page[pos..pos + 2].copy_from_slice(&[0x80, 255]);
            pos += 259;
        }
        page[pos..pos + 2].copy_from_slice(&[0x80, 255]);
        assert_eq!(
            NamespaceIds::parse(&page),
            Err(Error::DescriptorOverrun {
                offset: pos,
                nidl: 255,
                len: 4096
            })
        );
        // A short buffer bounds the list too.
        assert_eq!(
            NamespaceIds::parse(&[1, 8, 0, 0, 1, 2]),
            Err(Error::DescriptorOverrun {
                offset: 0,
                nidl: 8,
                len: 6
            })
        );
    }

    #[test]
    fn a_known_type_with_the_wrong_length_is_an_error() {
        let mut page = [0u8; 4096];
        page[..4].copy_from_slice(&[2, 8, 0, 0]);
        assert_eq!(
            NamespaceIds::parse(&page),
            Err(Error::DescriptorLength {
                offset: 0,
                nidt: 2,
                nidl: 8,
                expected: 16
            })
        );
    }

    #[test]
    fn a_repeated_type_is_an_error() {
        let mut page = [0u8; 4096];
        page[..5].copy_from_slice(&[4, 1, 0, 0, 0]);
        page[5..10].copy_from_slice(&[4, 1, 0, 0, 2]);
        assert_eq!(
            NamespaceIds::parse(&page),
            Err(Error::DuplicateDescriptor { offset: 5, nidt: 4 })
        );
    }

    #[test]
    fn command_set_names() {
        assert_eq!(CommandSetId::NVM.to_string(), "nvm");
        assert_eq!(CommandSetId(2).name(), "zoned");
        assert_eq!(CommandSetId(9).name(), "reserved");
    }
}
