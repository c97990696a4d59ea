//! Scatter Gather List descriptors (NVMe Base Specification 2.0, section 4.1.2).
//!
//! An SGL describes a buffer as a chain of segments, each an array of 16-byte
//! descriptors in host memory. The command's DPTR holds the first descriptor: a Data
//! Block (the whole buffer is one piece) or a (Last) Segment descriptor pointing at the
//! first segment. Only the last descriptor of a segment may point on to the next
//! segment; a Last Segment descriptor says the segment it points to ends the chain.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of one SGL descriptor in bytes.
pub const SGL_DESCRIPTOR_SIZE: usize = 16;

/// SGL Descriptor Type (SGL Identifier bits 7:4), NVMe Base 2.0 Figure 117. An open
/// type, so a value read from the wire is always representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SglType(pub u8);

impl SglType {
    /// SGL Data Block: a piece of the buffer.
    pub const DATA_BLOCK: Self = Self(0x0);
    /// SGL Bit Bucket: data the host does not want (reads only).
    pub const BIT_BUCKET: Self = Self(0x1);
    /// SGL Segment: points to the next segment, which is not the last.
    pub const SEGMENT: Self = Self(0x2);
    /// SGL Last Segment: points to the last segment.
    pub const LAST_SEGMENT: Self = Self(0x3);
    /// Keyed SGL Data Block (fabrics).
    pub const KEYED_DATA_BLOCK: Self = Self(0x4);
    /// Transport SGL Data Block (fabrics).
    pub const TRANSPORT_DATA_BLOCK: Self = Self(0x5);
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: Self = Self(0xf);

    /// Decodes the 4-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 0xf)
    }

    /// Encodes the 4-bit field.
    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// SGL Descriptor Sub Type (SGL Identifier bits 3:0), NVMe Base 2.0 Figure 118.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SglSubType(pub u8);

impl SglSubType {
    /// The Address field is a memory address.
    pub const ADDRESS: Self = Self(0x0);
    /// The Address field is an offset (SGLS bit 20).
    pub const OFFSET: Self = Self(0x1);
    /// Transport specific.
    pub const TRANSPORT_SPECIFIC: Self = Self(0xa);

    /// Decodes the 4-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & 0xf)
    }

    /// Encodes the 4-bit field.
    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// SGL Identifier: descriptor byte 15.
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SglIdentifier {
    /// Descriptor Sub Type.
    #[bits(4)]
    pub sub_type: SglSubType,
    /// Descriptor Type.
    #[bits(4)]
    pub kind: SglType,
}

/// One 16-byte SGL descriptor in its wire layout: Address (bytes 7:0), Length (bytes
/// 11:8), reserved bytes 14:12, SGL Identifier (byte 15).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SglDescriptor {
    /// Memory address of the data block or of the next segment.
    pub address: u64,
    /// Bytes of the data block, or of the next segment (16 per descriptor).
    pub length: u32,
    /// Reserved for the descriptor types this crate builds.
    pub reserved: [u8; 3],
    /// Type and sub type.
    pub identifier: SglIdentifier,
}

const _: () = assert!(size_of::<SglDescriptor>() == SGL_DESCRIPTOR_SIZE);

impl SglDescriptor {
    /// A descriptor of `kind` with an address sub type.
    pub const fn new(kind: SglType, address: u64, length: u32) -> Self {
        Self {
            address,
            length,
            reserved: [0; 3],
            identifier: SglIdentifier::new()
                .with_kind(kind)
                .with_sub_type(SglSubType::ADDRESS),
        }
    }

    /// A Data Block descriptor for `length` bytes at `address`.
    pub const fn data_block(address: u64, length: u32) -> Self {
        Self::new(SglType::DATA_BLOCK, address, length)
    }

    /// A Data Block descriptor with the offset sub type for `length` bytes at offset 0:
    /// data carried in the command capsule (NVMe over Fabrics).
    pub const fn in_capsule(length: u32) -> Self {
        Self {
            address: 0,
            length,
            reserved: [0; 3],
            identifier: SglIdentifier::new()
                .with_kind(SglType::DATA_BLOCK)
                .with_sub_type(SglSubType::OFFSET),
        }
    }

    /// A Transport SGL Data Block descriptor (5Ah) for `length` bytes: data moved by
    /// the transport's own data PDUs (NVMe/TCP C2HData, R2T and H2CData).
    pub const fn transport(length: u32) -> Self {
        Self {
            address: 0,
            length,
            reserved: [0; 3],
            identifier: SglIdentifier::new()
                .with_kind(SglType::TRANSPORT_DATA_BLOCK)
                .with_sub_type(SglSubType::TRANSPORT_SPECIFIC),
        }
    }

    /// A Segment descriptor for a (not last) segment of `descriptors` descriptors.
    pub const fn segment(address: u64, descriptors: u32) -> Self {
        Self::new(
            SglType::SEGMENT,
            address,
            descriptors * SGL_DESCRIPTOR_SIZE as u32,
        )
    }

    /// A Last Segment descriptor for the last segment, of `descriptors` descriptors.
    pub const fn last_segment(address: u64, descriptors: u32) -> Self {
        Self::new(
            SglType::LAST_SEGMENT,
            address,
            descriptors * SGL_DESCRIPTOR_SIZE as u32,
        )
    }

    /// The descriptor type.
    pub const fn kind(&self) -> SglType {
        self.identifier.kind()
    }

    /// The descriptor sub type.
    pub const fn sub_type(&self) -> SglSubType {
        self.identifier.sub_type()
    }

    /// The descriptor as two little-endian quadwords (bytes 7:0 and 15:8): how it is
    /// stored in the SQE's DPTR and in DMA memory.
    pub const fn to_qwords(self) -> [u64; 2] {
        zerocopy::transmute!(self)
    }

    /// The descriptor read from its two quadwords.
    pub const fn from_qwords(qwords: [u64; 2]) -> Self {
        zerocopy::transmute!(qwords)
    }

    /// The descriptor as its 16 wire bytes.
    pub const fn to_bytes(self) -> [u8; SGL_DESCRIPTOR_SIZE] {
        zerocopy::transmute!(self)
    }

    /// The descriptor read from its 16 wire bytes.
    pub const fn from_bytes(bytes: [u8; SGL_DESCRIPTOR_SIZE]) -> Self {
        zerocopy::transmute!(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_block_wire_bytes_follow_the_spec_layout() {
        let d = SglDescriptor::data_block(0x1122_3344_5566_7788, 0x200);
        let b = d.to_bytes();
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[8..12], &0x200u32.to_le_bytes());
        assert_eq!(&b[12..15], &[0, 0, 0]);
        assert_eq!(b[15], 0x00);
        assert_eq!(SglDescriptor::from_bytes(b), d);
    }

    #[test]
    fn segment_types_sit_in_the_identifier_high_nibble() {
        let s = SglDescriptor::segment(0x1000, 3);
        assert_eq!(s.length, 48);
        assert_eq!(s.to_bytes()[15], 0x20);
        let l = SglDescriptor::last_segment(0x2000, 2);
        assert_eq!(l.to_bytes()[15], 0x30);
        assert_eq!(l.kind(), SglType::LAST_SEGMENT);
        assert_eq!(l.sub_type(), SglSubType::ADDRESS);
        let [lo, hi] = l.to_qwords();
        assert_eq!(lo, 0x2000);
        assert_eq!(hi, 32 | (0x30u64 << 56));
        assert_eq!(SglDescriptor::from_qwords([lo, hi]), l);
    }

    #[test]
    fn fabrics_descriptors_carry_their_identifier_bytes() {
        let c = SglDescriptor::in_capsule(4096).to_bytes();
        assert_eq!((c[15], &c[8..12]), (0x01, &4096u32.to_le_bytes()[..]));
        let t = SglDescriptor::transport(512).to_bytes();
        assert_eq!((t[15], &t[0..8]), (0x5a, &[0u8; 8][..]));
    }

    #[test]
    fn offset_sub_type_decodes_from_the_low_nibble() {
        let mut b = [0u8; 16];
        b[15] = 0x01;
        let d = SglDescriptor::from_bytes(b);
        assert_eq!(d.kind(), SglType::DATA_BLOCK);
        assert_eq!(d.sub_type(), SglSubType::OFFSET);
    }
}
