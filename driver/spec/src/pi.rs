//! End-to-end protection information: the tuples carried in each block's metadata
//! and their guard checksums (NVM Command Set Specification 1.0, section 5.2).
//!
//! Protection information is big endian on the wire, unlike the rest of NVMe.
//! [`Pi8`] is the 8-byte tuple of the 16-bit guard format (CRC-16/T10-DIF);
//! [`Pi16`] is the 16-byte tuple of the 64-bit guard format (CRC-64/NVME). Which
//! one a format uses is its Protection Information Format, [`PiFormat`].

use crc::{Crc, Table};
use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of the 8-byte protection information tuple (16-bit guard).
pub const PI_TUPLE_SIZE: usize = 8;

/// Bytes of the 16-byte protection information tuple (64-bit guard).
pub const PI16_TUPLE_SIZE: usize = 16;

/// Application tag value that disables checking of a block (types 1 and 2; type 3
/// also needs an all-ones reference tag).
pub const APP_TAG_ESCAPE: u16 = 0xffff;

/// The guard CRC of the 16-bit guard format: CRC-16/T10-DIF (polynomial 8BB7h).
pub static GUARD16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&crc::CRC_16_T10_DIF);

/// The guard CRC of the 64-bit guard format: CRC-64/NVME (polynomial AD93D23594C93659h).
pub static GUARD64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&crc::CRC_64_NVME);

/// The 16-bit guard of `bytes` (a block's data, then any metadata before the tuple).
pub fn guard16(bytes: &[u8]) -> u16 {
    GUARD16.checksum(bytes)
}

/// The 64-bit guard of `bytes` (a block's data, then any metadata before the tuple).
pub fn guard64(bytes: &[u8]) -> u64 {
    GUARD64.checksum(bytes)
}

/// Protection Information Format of an LBA format (PIF in the extended LBA format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiFormat {
    /// 16-bit guard, 8-byte tuple ([`Pi8`]).
    Guard16,
    /// 32-bit guard, 16-byte tuple (not modelled here).
    Guard32,
    /// 64-bit guard, 16-byte tuple ([`Pi16`]).
    Guard64,
}

impl PiFormat {
    /// Decodes the 2-bit PIF field; 3 is reserved.
    pub const fn from_pif(pif: u8) -> Option<Self> {
        match pif {
            0 => Some(Self::Guard16),
            1 => Some(Self::Guard32),
            2 => Some(Self::Guard64),
            _ => None,
        }
    }

    /// Bytes of one tuple.
    pub const fn tuple_size(self) -> usize {
        match self {
            Self::Guard16 => PI_TUPLE_SIZE,
            Self::Guard32 | Self::Guard64 => PI16_TUPLE_SIZE,
        }
    }
}

/// The 8-byte protection information tuple (16-bit guard format).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Pi8 {
    /// Guard: CRC-16/T10-DIF of the block.
    pub guard: U16,
    /// Application tag.
    pub app_tag: U16,
    /// Reference tag.
    pub ref_tag: U32,
}

const _: () = assert!(size_of::<Pi8>() == PI_TUPLE_SIZE);

impl Pi8 {
    /// A tuple with the given fields.
    pub fn new(guard: u16, app_tag: u16, ref_tag: u32) -> Self {
        Self {
            guard: U16::new(guard),
            app_tag: U16::new(app_tag),
            ref_tag: U32::new(ref_tag),
        }
    }

    /// Reads a tuple from the first 8 bytes of `bytes`, if there are 8.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        Self::read_from_prefix(bytes).ok().map(|(pi, _)| pi)
    }
}

/// Bits of the combined storage and reference tag of the 64-bit guard format.
pub const PI16_STORAGE_REF_BITS: u32 = 48;

/// The 16-byte protection information tuple (64-bit guard format).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Pi16 {
    /// Guard: CRC-64/NVME of the block.
    pub guard: U64,
    /// Application tag.
    pub app_tag: U16,
    /// Storage tag (upper STS bits) and reference tag (lower bits), 48 bits big endian.
    pub storage_ref_tag: [u8; 6],
}

const _: () = assert!(size_of::<Pi16>() == PI16_TUPLE_SIZE);

impl Pi16 {
    /// A tuple with the given fields; `storage_ref_tag` keeps its low 48 bits.
    pub fn new(guard: u64, app_tag: u16, storage_ref_tag: u64) -> Self {
        let wide = storage_ref_tag.to_be_bytes();
        let mut tag = [0u8; 6];
        tag.copy_from_slice(&wide[2..]);
        Self {
            guard: U64::new(guard),
            app_tag: U16::new(app_tag),
            storage_ref_tag: tag,
        }
    }

    /// Reads a tuple from the first 16 bytes of `bytes`, if there are 16.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        Self::read_from_prefix(bytes).ok().map(|(pi, _)| pi)
    }

    /// The 48-bit storage and reference tag field.
    pub fn storage_ref(&self) -> u64 {
        let mut wide = [0u8; 8];
        wide[2..].copy_from_slice(&self.storage_ref_tag);
        u64::from_be_bytes(wide)
    }

    /// The reference tag: the low `48 - sts` bits, where `sts` is the storage tag size.
    pub fn reference_tag(&self, sts: u8) -> u64 {
        let bits = PI16_STORAGE_REF_BITS.saturating_sub(u32::from(sts));
        self.storage_ref() & ((1u64 << bits) - 1)
    }
}

/// PRINFO (CDW12 bits 29:26 of Read, Write, Compare and Verify) bit 3: Protection
/// Information Action.
pub const PRINFO_PRACT: u8 = 0b1000;
/// PRINFO bit 2: check the guard.
pub const PRINFO_PRCHK_GUARD: u8 = 0b0100;
/// PRINFO bit 1: check the application tag.
pub const PRINFO_PRCHK_APP: u8 = 0b0010;
/// PRINFO bit 0: check the reference tag.
pub const PRINFO_PRCHK_REF: u8 = 0b0001;

/// The protection information fields of Read, Write, Compare and Verify (NVM Command
/// Set Specification 1.0, section 3.2): the expected initial logical block reference
/// tag (CDW14, with bits 47:32 in CDW3 for the 16-byte tuple) and the expected
/// application tag and its mask (CDW15).
impl crate::SubmissionEntry {
    /// Sets the initial reference tag: the low 32 bits in CDW14 and, for the 16-byte
    /// tuple's 48-bit tag, bits 47:32 in CDW3 bits 15:0.
    pub const fn set_initial_ref_tag(&mut self, tag: u64) {
        self.cdw14 = tag as u32;
        self.cdw3 = ((tag >> 32) & 0xffff) as u32;
    }

    /// The initial reference tag (CDW14, and CDW3 bits 15:0 as bits 47:32).
    pub const fn initial_ref_tag(&self) -> u64 {
        self.cdw14 as u64 | (((self.cdw3 & 0xffff) as u64) << 32)
    }

    /// Sets the application tag (CDW15 bits 15:0) and its mask (bits 31:16).
    pub const fn set_app_tag(&mut self, tag: u16, mask: u16) {
        self.cdw15 = tag as u32 | ((mask as u32) << 16);
    }

    /// The application tag (CDW15 bits 15:0).
    pub const fn app_tag(&self) -> u16 {
        self.cdw15 as u16
    }

    /// The application tag mask (CDW15 bits 31:16): the bits the check compares.
    pub const fn app_tag_mask(&self) -> u16 {
        (self.cdw15 >> 16) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(f: impl Fn(usize) -> u8) -> Vec<u8> {
        (0..4096).map(f).collect()
    }

    /// CRC-16/T10-DIF one bit at a time, straight from its definition (polynomial
    /// 8BB7h, initial value 0, no reflection, no final XOR).
    fn bitwise_t10dif(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in bytes {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x8bb7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn guard16_is_crc16_t10_dif() {
        // The catalogue's check value, then 4 KiB of 00h, FFh, incrementing and
        // decrementing bytes.
        assert_eq!(guard16(b"123456789"), 0xd0db);
        assert_eq!(guard16(&pattern(|_| 0x00)), 0x0000);
        assert_eq!(guard16(&pattern(|_| 0xff)), 0x8b5d);
        assert_eq!(guard16(&pattern(|i| i as u8)), 0x8f6d);
        assert_eq!(guard16(&pattern(|i| 0xff - i as u8)), 0x0430);
        for len in [0, 1, 7, 512, 520, 4096, 4104] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            assert_eq!(guard16(&data), bitwise_t10dif(&data), "{len} bytes");
        }
    }

    #[test]
    fn guard64_is_crc64_nvme() {
        assert_eq!(guard64(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(guard64(&pattern(|_| 0x00)), 0x6482_d367_eb22_b64e);
        assert_eq!(guard64(&pattern(|_| 0xff)), 0xc0dd_ba73_02ec_a3ac);
        assert_eq!(guard64(&pattern(|i| i as u8)), 0x3e72_9f5f_6750_449c);
        assert_eq!(guard64(&pattern(|i| 0xff - i as u8)), 0x9a2d_f64b_8e9e_517e);
    }

    #[test]
    fn guard_digest_over_pieces_equals_the_whole() {
        let data = pattern(|i| (i * 7) as u8);
        let mut d = GUARD16.digest();
        d.update(&data[..1000]);
        d.update(&data[1000..]);
        assert_eq!(d.finalize(), guard16(&data));
    }

    #[test]
    fn pi8_fields_are_big_endian() {
        let pi = Pi8::new(0x1234, 0x5678, 0x9abc_def0);
        assert_eq!(
            pi.as_bytes(),
            &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]
        );
        assert_eq!(Pi8::read(pi.as_bytes()), Some(pi));
        assert_eq!(Pi8::read(&[0; 7]), None);
        assert_eq!(pi.ref_tag.get(), 0x9abc_def0);
    }

    #[test]
    fn pi16_holds_a_64_bit_guard_and_a_48_bit_tag() {
        let pi = Pi16::new(0x0102_0304_0506_0708, 0x090a, 0xffff_0b0c_0d0e_0f10);
        assert_eq!(
            pi.as_bytes(),
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        );
        assert_eq!(pi.storage_ref(), 0x0b0c_0d0e_0f10);
        assert_eq!(pi.reference_tag(0), 0x0b0c_0d0e_0f10);
        assert_eq!(pi.reference_tag(16), 0x0d0e_0f10);
        assert_eq!(pi.reference_tag(48), 0);
        assert_eq!(Pi16::read(pi.as_bytes()), Some(pi));
    }

    #[test]
    fn command_tag_fields_sit_in_cdw3_cdw14_and_cdw15() {
        let mut sqe = crate::SubmissionEntry::default();
        sqe.set_initial_ref_tag(0xabcd_1234_5678);
        assert_eq!(sqe.cdw14, 0x1234_5678);
        assert_eq!(sqe.cdw3, 0xabcd);
        assert_eq!(sqe.initial_ref_tag(), 0xabcd_1234_5678);
        sqe.set_app_tag(0x1122, 0xff00);
        assert_eq!(sqe.cdw15, 0xff00_1122);
        assert_eq!((sqe.app_tag(), sqe.app_tag_mask()), (0x1122, 0xff00));
    }

    #[test]
    fn pi_format_sizes() {
        assert_eq!(PiFormat::from_pif(0), Some(PiFormat::Guard16));
        assert_eq!(PiFormat::from_pif(2).map(PiFormat::tuple_size), Some(16));
        assert_eq!(PiFormat::from_pif(3), None);
    }
}
