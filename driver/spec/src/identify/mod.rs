//! Identify data structures (NVMe Base Specification 2.0, section 5.17.2;
//! NVM Command Set Specification 1.0, section 4.1.5).
//!
//! [`IdentifyController`] and [`IdentifyNamespace`] are the 4096-byte pages
//! in wire layout: fields are public under their specification names, bit
//! fields are typed, and [`IdentifyController::parse`] / [`IdentifyController::encode`]
//! convert from and to the page with bounds checks. [`NamespaceFormat`] is a
//! namespace's in-use format decoded and checked; [`NamespaceIds`] is the
//! Namespace Identification Descriptor list. The Identify command is built in
//! [`crate::admin`].

mod controller;
mod descriptor;
mod format;
mod namespace;
mod nvm_namespace;

pub use controller::*;
pub use descriptor::*;
pub use format::*;
pub use namespace::*;
pub use nvm_namespace::*;

use zerocopy::FromBytes;

use crate::Error;

/// Size of every Identify data structure.
pub const IDENTIFY_DATA_SIZE: usize = 4096;

/// Most NSIDs one namespace list page holds.
pub const NAMESPACE_LIST_CAPACITY: usize = IDENTIFY_DATA_SIZE / 4;

/// Most LBA formats a namespace can report (NLBAF is at most 63).
pub const MAX_LBA_FORMATS: usize = 64;

/// Controller or Namespace Structure (CNS) value of the Identify command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cns(pub u8);

impl Cns {
    /// Identify Namespace data structure for the NSID.
    pub const NAMESPACE: Self = Self(0x00);
    /// Identify Controller data structure.
    pub const CONTROLLER: Self = Self(0x01);
    /// Active Namespace ID list: NSIDs greater than the command's NSID.
    pub const ACTIVE_NAMESPACE_LIST: Self = Self(0x02);
    /// Namespace Identification Descriptor list for the NSID.
    pub const NAMESPACE_DESCRIPTOR_LIST: Self = Self(0x03);
    /// I/O Command Set specific Identify Namespace data structure.
    pub const IO_COMMAND_SET_NAMESPACE: Self = Self(0x05);
    /// I/O Command Set specific Identify Controller data structure.
    pub const IO_COMMAND_SET_CONTROLLER: Self = Self(0x06);
    /// Active Namespace ID list for the command's I/O Command Set.
    pub const IO_COMMAND_SET_ACTIVE_NAMESPACE_LIST: Self = Self(0x07);
    /// I/O Command Set Independent Identify Namespace data structure.
    pub const IO_COMMAND_SET_INDEPENDENT_NAMESPACE: Self = Self(0x08);
    /// Allocated Namespace ID list.
    pub const ALLOCATED_NAMESPACE_LIST: Self = Self(0x10);
    /// Identify Namespace data structure for an allocated NSID.
    pub const ALLOCATED_NAMESPACE: Self = Self(0x11);
    /// Controller list of controllers attached to the NSID.
    pub const ATTACHED_CONTROLLER_LIST: Self = Self(0x12);
    /// Controller list of controllers in the NVM subsystem.
    pub const CONTROLLER_LIST: Self = Self(0x13);
    /// I/O Command Set data structure.
    pub const IO_COMMAND_SET: Self = Self(0x1c);
}

/// Reads a `T` from the start of `bytes`, or reports that `bytes` is too short.
pub(crate) fn parse_page<T: FromBytes>(bytes: &[u8], structure: &'static str) -> Result<T, Error> {
    match T::read_from_prefix(bytes) {
        Ok((value, _)) => Ok(value),
        Err(_) => Err(Error::BufferTooShort {
            structure,
            needed: size_of::<T>(),
            actual: bytes.len(),
        }),
    }
}

/// The NSIDs of a namespace list page (CNS 02h): entries up to the first zero.
///
/// The device is not trusted: an entry that is FFFFFFFFh or not greater than
/// the one before is an error rather than a list the driver would mishandle.
pub fn parse_namespace_list(bytes: &[u8]) -> Result<Vec<u32>, Error> {
    if bytes.len() < IDENTIFY_DATA_SIZE {
        return Err(Error::BufferTooShort {
            structure: "namespace list",
            needed: IDENTIFY_DATA_SIZE,
            actual: bytes.len(),
        });
    }
    let mut list = Vec::new();
    for (index, chunk) in bytes[..IDENTIFY_DATA_SIZE].chunks_exact(4).enumerate() {
        let nsid = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if nsid == 0 {
            break;
        }
        if nsid == crate::command::NSID_ALL || list.last().is_some_and(|&prev| nsid <= prev) {
            return Err(Error::InvalidNamespaceList { index, nsid });
        }
        list.push(nsid);
    }
    Ok(list)
}

/// The namespace list page holding `nsids` (at most 1024, strictly increasing, nonzero).
pub fn encode_namespace_list(nsids: &[u32]) -> Result<[u8; IDENTIFY_DATA_SIZE], Error> {
    if nsids.len() > NAMESPACE_LIST_CAPACITY {
        return Err(Error::NamespaceListTooLong { count: nsids.len() });
    }
    let mut page = [0u8; IDENTIFY_DATA_SIZE];
    let mut prev = 0u32;
    for (index, (&nsid, slot)) in nsids.iter().zip(page.chunks_exact_mut(4)).enumerate() {
        if nsid == 0 || nsid == crate::command::NSID_ALL || nsid <= prev {
            return Err(Error::InvalidNamespaceList { index, nsid });
        }
        slot.copy_from_slice(&nsid.to_le_bytes());
        prev = nsid;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_list_stops_at_zero_and_round_trips() {
        let page = encode_namespace_list(&[1, 2, 7]).unwrap();
        assert_eq!(&page[..12], &[1, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(parse_namespace_list(&page).unwrap(), vec![1, 2, 7]);
        assert_eq!(
            parse_namespace_list(&[0u8; 4096]).unwrap(),
            Vec::<u32>::new()
        );
        let full: Vec<u32> = (1..=1024).collect();
        let page = encode_namespace_list(&full).unwrap();
        assert_eq!(parse_namespace_list(&page).unwrap(), full);
    }

    #[test]
    fn namespace_list_rejects_untrusted_or_oversized_input() {
        let mut page = [0u8; 4096];
        page[..8].copy_from_slice(&[5, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(
            parse_namespace_list(&page),
            Err(Error::InvalidNamespaceList { index: 1, nsid: 5 })
        );
        page[..8].copy_from_slice(&[0xff; 8]);
        assert_eq!(
            parse_namespace_list(&page),
            Err(Error::InvalidNamespaceList {
                index: 0,
                nsid: u32::MAX
            })
        );
        assert!(matches!(
            parse_namespace_list(&page[..100]),
            Err(Error::BufferTooShort { .. })
        ));
        assert_eq!(
            encode_namespace_list(&[3, 2]),
            Err(Error::InvalidNamespaceList { index: 1, nsid: 2 })
        );
        let too_many: Vec<u32> = (1..=1025).collect();
        assert_eq!(
            encode_namespace_list(&too_many),
            Err(Error::NamespaceListTooLong { count: 1025 })
        );
    }
}
