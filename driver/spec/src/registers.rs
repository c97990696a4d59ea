//! Controller registers (NVMe Base Specification 2.0, section 3.1.3).
//!
//! Each register is a bitfield type that converts to and from its raw value:
//! the emulated controller builds them with `with_*`, the driver decodes them
//! with the field accessors, e.g. `Cap::from(raw).mqes()`.

use bitfield_struct::bitfield;
use core::time::Duration;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Byte offsets of the controller registers in BAR0.
pub mod offset {
    /// Controller Capabilities (64 bit).
    pub const CAP: usize = 0x00;
    /// Version.
    pub const VS: usize = 0x08;
    /// Interrupt Mask Set.
    pub const INTMS: usize = 0x0c;
    /// Interrupt Mask Clear.
    pub const INTMC: usize = 0x10;
    /// Controller Configuration.
    pub const CC: usize = 0x14;
    /// Controller Status.
    pub const CSTS: usize = 0x1c;
    /// NVM Subsystem Reset.
    pub const NSSR: usize = 0x20;
    /// Admin Queue Attributes.
    pub const AQA: usize = 0x24;
    /// Admin Submission Queue Base Address (64 bit).
    pub const ASQ: usize = 0x28;
    /// Admin Completion Queue Base Address (64 bit).
    pub const ACQ: usize = 0x30;
    /// Controller Memory Buffer Location.
    pub const CMBLOC: usize = 0x38;
    /// Controller Memory Buffer Size.
    pub const CMBSZ: usize = 0x3c;
    /// First doorbell register (Submission Queue 0 Tail Doorbell).
    pub const DOORBELL_BASE: usize = 0x1000;
}

/// The value written to NSSR to start an NVM Subsystem Reset ("NVMe" in ASCII).
pub const NSSR_RESET_VALUE: u32 = 0x4e56_4d65;

/// Byte distance between consecutive doorbell registers: `4 << CAP.DSTRD`.
pub const fn doorbell_stride(dstrd: u8) -> usize {
    4usize << (dstrd & 0xf)
}

/// Offset of the Submission Queue `qid` Tail Doorbell: `0x1000 + (2*qid) * (4 << dstrd)`.
pub const fn sq_tail_doorbell(qid: u16, dstrd: u8) -> usize {
    offset::DOORBELL_BASE + (2 * qid as usize) * doorbell_stride(dstrd)
}

/// Offset of the Completion Queue `qid` Head Doorbell: `0x1000 + (2*qid+1) * (4 << dstrd)`.
pub const fn cq_head_doorbell(qid: u16, dstrd: u8) -> usize {
    offset::DOORBELL_BASE + (2 * qid as usize + 1) * doorbell_stride(dstrd)
}

/// The queue and kind a doorbell offset addresses (the inverse of
/// [`sq_tail_doorbell`] and [`cq_head_doorbell`]), or `None` if `offset` is
/// below the doorbells, not on a doorbell boundary, or beyond queue id 65535.
pub const fn decode_doorbell(offset: usize, dstrd: u8) -> Option<Doorbell> {
    if offset < offset::DOORBELL_BASE {
        return None;
    }
    let rel = offset - offset::DOORBELL_BASE;
    let stride = doorbell_stride(dstrd);
    if rel % stride != 0 {
        return None;
    }
    let index = rel / stride;
    let qid = index / 2;
    if qid > u16::MAX as usize {
        return None;
    }
    if index % 2 == 0 {
        Some(Doorbell::SqTail(qid as u16))
    } else {
        Some(Doorbell::CqHead(qid as u16))
    }
}

/// Byte offset of queue `qid`'s submission tail in the shadow doorbell and
/// EventIdx buffers of Doorbell Buffer Config: the register layout, starting at 0.
pub const fn shadow_sq_tail(qid: u16, dstrd: u8) -> usize {
    sq_tail_doorbell(qid, dstrd) - offset::DOORBELL_BASE
}

/// Byte offset of queue `qid`'s completion head in the shadow doorbell and
/// EventIdx buffers of Doorbell Buffer Config: the register layout, starting at 0.
pub const fn shadow_cq_head(qid: u16, dstrd: u8) -> usize {
    cq_head_doorbell(qid, dstrd) - offset::DOORBELL_BASE
}

/// Whether moving a shadow doorbell from `old` to `new` passes the
/// controller's `event_idx`, so the MMIO doorbell must be written too. The
/// arithmetic wraps like the 16-bit queue indices it compares.
pub const fn shadow_doorbell_needs_mmio(event_idx: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event_idx).wrapping_sub(1) < new.wrapping_sub(old)
}

/// A doorbell register identified by its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doorbell {
    /// Submission Queue Tail Doorbell of the given queue id.
    SqTail(u16),
    /// Completion Queue Head Doorbell of the given queue id.
    CqHead(u16),
}

/// CAP.CSS bit 0: the NVM Command Set is supported.
pub const CAP_CSS_NVM: u8 = 1 << 0;
/// CAP.CSS bit 6: one or more I/O Command Sets are supported.
pub const CAP_CSS_IO_COMMAND_SETS: u8 = 1 << 6;
/// CAP.CSS bit 7: only the Admin Command Set is supported.
pub const CAP_CSS_ADMIN_ONLY: u8 = 1 << 7;

/// Controller Capabilities (CAP, offset 0h).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct Cap {
    /// Maximum Queue Entries Supported, 0's based.
    pub mqes: u16,
    /// Contiguous Queues Required.
    pub cqr: bool,
    /// Arbitration Mechanism Supported (bit 0: weighted round robin, bit 1: vendor specific).
    #[bits(2)]
    pub ams: u8,
    #[bits(5)]
    __: u8,
    /// Timeout: worst-case time to wait for CSTS.RDY to change, in 500 ms units.
    pub to: u8,
    /// Doorbell Stride: doorbells are `4 << dstrd` bytes apart.
    #[bits(4)]
    pub dstrd: u8,
    /// NVM Subsystem Reset Supported.
    pub nssrs: bool,
    /// Command Sets Supported (bit 0: NVM, bit 6: I/O command sets, bit 7: admin only).
    pub css: u8,
    /// Boot Partition Support.
    pub bps: bool,
    /// Controller Power Scope.
    #[bits(2)]
    pub cps: u8,
    /// Memory Page Size Minimum: `2 ^ (12 + mpsmin)` bytes.
    #[bits(4)]
    pub mpsmin: u8,
    /// Memory Page Size Maximum: `2 ^ (12 + mpsmax)` bytes.
    #[bits(4)]
    pub mpsmax: u8,
    /// Persistent Memory Region Supported.
    pub pmrs: bool,
    /// Controller Memory Buffer Supported.
    pub cmbs: bool,
    /// NVM Subsystem Shutdown Supported.
    pub nsss: bool,
    /// Controller Ready Modes Supported (bit 0: with media, bit 1: independent of media).
    #[bits(2)]
    pub crms: u8,
    #[bits(3)]
    __: u8,
}

impl Cap {
    /// Largest number of entries an I/O queue may have (`MQES + 1`).
    pub const fn max_queue_entries(&self) -> u32 {
        self.mqes() as u32 + 1
    }

    /// Worst-case time to wait for CSTS.RDY to change after toggling CC.EN (`TO * 500 ms`).
    pub const fn timeout(&self) -> Duration {
        Duration::from_millis(self.to() as u64 * 500)
    }

    /// Smallest memory page size the controller supports, in bytes.
    pub const fn min_page_size(&self) -> u64 {
        1u64 << (12 + self.mpsmin() as u32)
    }

    /// Largest memory page size the controller supports, in bytes.
    pub const fn max_page_size(&self) -> u64 {
        1u64 << (12 + self.mpsmax() as u32)
    }

    /// Byte distance between consecutive doorbell registers.
    pub const fn doorbell_stride(&self) -> usize {
        doorbell_stride(self.dstrd())
    }

    /// Whether the NVM Command Set is supported (CSS bit 0).
    pub const fn supports_nvm_command_set(&self) -> bool {
        self.css() & CAP_CSS_NVM != 0
    }
}

/// Version (VS, offset 8h; also the VER field of Identify Controller).
#[bitfield(u32)]
#[derive(PartialEq, Eq, PartialOrd, Ord, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Version {
    /// Tertiary Version Number.
    pub tertiary: u8,
    /// Minor Version Number.
    pub minor: u8,
    /// Major Version Number.
    pub major: u16,
}

impl Version {
    /// NVMe 1.0.
    pub const V1_0: Self = Self::from_parts(1, 0, 0);
    /// NVMe 1.2.
    pub const V1_2: Self = Self::from_parts(1, 2, 0);
    /// NVMe 1.3.
    pub const V1_3: Self = Self::from_parts(1, 3, 0);
    /// NVMe 1.4.
    pub const V1_4: Self = Self::from_parts(1, 4, 0);
    /// NVMe 2.0.
    pub const V2_0: Self = Self::from_parts(2, 0, 0);

    /// The version `major.minor.tertiary`.
    pub const fn from_parts(major: u16, minor: u8, tertiary: u8) -> Self {
        Self::new()
            .with_major(major)
            .with_minor(minor)
            .with_tertiary(tertiary)
    }
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.tertiary())
    }
}

/// CC.SHN / CSTS-independent shutdown notification values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownNotification {
    /// No notification; no effect.
    None = 0,
    /// Normal shutdown notification.
    Normal = 1,
    /// Abrupt shutdown notification.
    Abrupt = 2,
    /// Reserved value 11b.
    Reserved = 3,
}

impl ShutdownNotification {
    /// Decodes the 2-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::None,
            1 => Self::Normal,
            2 => Self::Abrupt,
            _ => Self::Reserved,
        }
    }

    /// Encodes the 2-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// CC.CSS value selecting the NVM Command Set.
pub const CC_CSS_NVM: u8 = 0b000;
/// CC.CSS value selecting all supported I/O Command Sets.
pub const CC_CSS_ALL_IO: u8 = 0b110;
/// CC.CSS value selecting the Admin Command Set only.
pub const CC_CSS_ADMIN_ONLY: u8 = 0b111;

/// Controller Configuration (CC, offset 14h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Cc {
    /// Enable.
    pub en: bool,
    #[bits(3)]
    __: u8,
    /// I/O Command Set Selected (see `CC_CSS_*`).
    #[bits(3)]
    pub css: u8,
    /// Memory Page Size: `2 ^ (12 + mps)` bytes.
    #[bits(4)]
    pub mps: u8,
    /// Arbitration Mechanism Selected (0: round robin, 1: weighted round robin, 7: vendor).
    #[bits(3)]
    pub ams: u8,
    /// Shutdown Notification.
    #[bits(2)]
    pub shn: ShutdownNotification,
    /// I/O Submission Queue Entry Size: `2 ^ iosqes` bytes (6 for 64 bytes).
    #[bits(4)]
    pub iosqes: u8,
    /// I/O Completion Queue Entry Size: `2 ^ iocqes` bytes (4 for 16 bytes).
    #[bits(4)]
    pub iocqes: u8,
    /// Controller Ready Independent of Media Enable.
    pub crime: bool,
    #[bits(7)]
    __: u8,
}

impl Cc {
    /// Memory page size selected by MPS, in bytes.
    pub const fn page_size(&self) -> u64 {
        1u64 << (12 + self.mps() as u32)
    }
}

/// CSTS.SHST: shutdown status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownStatus {
    /// Normal operation (no shutdown requested).
    Normal = 0,
    /// Shutdown processing occurring.
    Occurring = 1,
    /// Shutdown processing complete.
    Complete = 2,
    /// Reserved value 11b.
    Reserved = 3,
}

impl ShutdownStatus {
    /// Decodes the 2-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Normal,
            1 => Self::Occurring,
            2 => Self::Complete,
            _ => Self::Reserved,
        }
    }

    /// Encodes the 2-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Controller Status (CSTS, offset 1Ch).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Csts {
    /// Ready.
    pub rdy: bool,
    /// Controller Fatal Status.
    pub cfs: bool,
    /// Shutdown Status.
    #[bits(2)]
    pub shst: ShutdownStatus,
    /// NVM Subsystem Reset Occurred.
    pub nssro: bool,
    /// Processing Paused.
    pub pp: bool,
    /// Shutdown Type (1: NVM subsystem shutdown).
    pub st: bool,
    #[bits(25)]
    __: u32,
}

impl Csts {
    /// Whether a read returned all ones, as when the device has gone from the bus.
    pub const fn is_all_ones(&self) -> bool {
        self.0 == u32::MAX
    }
}

/// Admin Queue Attributes (AQA, offset 24h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Aqa {
    /// Admin Submission Queue Size, 0's based.
    #[bits(12)]
    pub asqs: u16,
    #[bits(4)]
    __: u8,
    /// Admin Completion Queue Size, 0's based.
    #[bits(12)]
    pub acqs: u16,
    #[bits(4)]
    __: u8,
}

impl Aqa {
    /// Largest admin queue, in entries (ASQS and ACQS are 12-bit, 0's based).
    pub const MAX_ENTRIES: u16 = 4096;

    /// The value for admin queues of `sq_entries` and `cq_entries` (each 2..=4096).
    pub fn from_entries(sq_entries: u32, cq_entries: u32) -> Result<Self, crate::Error> {
        for entries in [sq_entries, cq_entries] {
            if !(2..=u32::from(Self::MAX_ENTRIES)).contains(&entries) {
                return Err(crate::Error::InvalidAdminQueueSize { entries });
            }
        }
        Ok(Self::new()
            .with_asqs((sq_entries - 1) as u16)
            .with_acqs((cq_entries - 1) as u16))
    }

    /// Admin submission queue entries (`ASQS + 1`).
    pub const fn sq_entries(&self) -> u16 {
        self.asqs() + 1
    }

    /// Admin completion queue entries (`ACQS + 1`).
    pub const fn cq_entries(&self) -> u16 {
        self.acqs() + 1
    }
}

/// Controller Memory Buffer Location (CMBLOC, offset 38h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Cmbloc {
    /// Base Indicator Register: the BAR holding the controller memory buffer.
    #[bits(3)]
    pub bir: u8,
    /// CMB Queue Mixed Memory Support.
    pub cqmms: bool,
    /// CMB Queue Physically Discontiguous Support.
    pub cqpds: bool,
    /// CMB Data Pointer Mixed Locations Support.
    pub cdpmls: bool,
    /// CMB Data Pointer and Command Independent Locations Support.
    pub cdpcils: bool,
    /// CMB Data Metadata Mixed Memory Support.
    pub cdmmms: bool,
    /// CMB Queue Dword Alignment.
    pub cqda: bool,
    #[bits(3)]
    __: u8,
    /// Offset of the buffer in the BAR, in CMBSZ.SZU units.
    #[bits(20)]
    pub ofst: u32,
}

/// Controller Memory Buffer Size (CMBSZ, offset 3Ch).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Cmbsz {
    /// Submission Queue Support.
    pub sqs: bool,
    /// Completion Queue Support.
    pub cqs: bool,
    /// PRP SGL List Support.
    pub lists: bool,
    /// Read Data Support.
    pub rds: bool,
    /// Write Data Support.
    pub wds: bool,
    #[bits(3)]
    __: u8,
    /// Size Units: `4 KiB << (4 * szu)`.
    #[bits(4)]
    pub szu: u8,
    /// Size, in SZU units.
    #[bits(20)]
    pub sz: u32,
}

impl Cmbsz {
    /// Size of one SZU unit in bytes, or `None` for the reserved values (7h and above).
    pub const fn unit_bytes(&self) -> Option<u64> {
        if self.szu() > 6 {
            None
        } else {
            Some(4096u64 << (4 * self.szu() as u32))
        }
    }

    /// Size of the controller memory buffer in bytes, or `None` for a reserved SZU.
    pub const fn size_bytes(&self) -> Option<u64> {
        match self.unit_bytes() {
            Some(unit) => Some(unit * self.sz() as u64),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_7_2_CAP: u64 = 0x0040_1820_0f01_07ff;

    #[test]
    fn qemu_cap_decodes_to_spec_fields() {
        let cap = Cap::from(QEMU_7_2_CAP);
        assert_eq!(cap.mqes(), 2047);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.cqr());
        assert_eq!(cap.ams(), 0);
        assert_eq!(cap.to(), 15);
        assert_eq!(cap.timeout(), Duration::from_millis(7500));
        assert_eq!(cap.dstrd(), 0);
        assert!(!cap.nssrs());
        assert!(cap.supports_nvm_command_set());
        assert_eq!(
            cap.css(),
            CAP_CSS_NVM | CAP_CSS_IO_COMMAND_SETS | CAP_CSS_ADMIN_ONLY
        );
        assert_eq!(cap.min_page_size(), 4096);
        assert_eq!(cap.max_page_size(), 64 * 1024);
        assert!(!cap.pmrs());
        assert!(!cap.cmbs());
        assert_eq!(u64::from(cap), QEMU_7_2_CAP);
    }

    #[test]
    fn cap_built_by_fields_encodes_spec_bit_positions() {
        let cap = Cap::new()
            .with_mqes(0x3ff)
            .with_cqr(true)
            .with_ams(0b01)
            .with_to(0x20)
            .with_dstrd(1)
            .with_nssrs(true)
            .with_css(1)
            .with_bps(true)
            .with_mpsmin(0)
            .with_mpsmax(4)
            .with_pmrs(true)
            .with_cmbs(true)
            .with_crms(0b11);
        let raw = u64::from(cap);
        assert_eq!(raw & 0xffff, 0x3ff);
        assert_eq!((raw >> 16) & 1, 1);
        assert_eq!((raw >> 17) & 3, 1);
        assert_eq!((raw >> 24) & 0xff, 0x20);
        assert_eq!((raw >> 32) & 0xf, 1);
        assert_eq!((raw >> 36) & 1, 1);
        assert_eq!((raw >> 37) & 0xff, 1);
        assert_eq!((raw >> 45) & 1, 1);
        assert_eq!((raw >> 52) & 0xf, 4);
        assert_eq!((raw >> 56) & 1, 1);
        assert_eq!((raw >> 57) & 1, 1);
        assert_eq!((raw >> 59) & 3, 3);
    }

    #[test]
    fn vs_0x00010400_is_1_4_0() {
        let vs = Version::from(0x0001_0400);
        assert_eq!((vs.major(), vs.minor(), vs.tertiary()), (1, 4, 0));
        assert_eq!(vs, Version::V1_4);
        assert_eq!(vs.to_string(), "1.4.0");
        assert!(Version::V2_0 > Version::V1_4);
    }

    #[test]
    fn cc_encodes_spec_bit_positions_and_round_trips() {
        let cc = Cc::new()
            .with_en(true)
            .with_css(CC_CSS_NVM)
            .with_mps(0)
            .with_ams(0)
            .with_shn(ShutdownNotification::Normal)
            .with_iosqes(6)
            .with_iocqes(4);
        let raw = u32::from(cc);
        assert_eq!(raw, 0x0046_4001);
        assert_eq!(Cc::from(raw), cc);
        assert_eq!(Cc::from(raw).shn(), ShutdownNotification::Normal);
        assert_eq!(Cc::from(raw).iosqes(), 6);
        assert_eq!(Cc::from(raw).iocqes(), 4);
        assert_eq!(Cc::from(0x0046_0001 | (2 << 7)).page_size(), 16384);
        assert_eq!(
            Cc::from(2 << 14).shn(),
            ShutdownNotification::Abrupt,
            "SHN lives in bits 15:14"
        );
    }

    #[test]
    fn csts_decodes_ready_fatal_and_shutdown_status() {
        let csts = Csts::from(0b10_1001);
        assert!(csts.rdy());
        assert!(!csts.cfs());
        assert_eq!(csts.shst(), ShutdownStatus::Complete);
        assert!(csts.pp());
        assert!(Csts::from(0b10).cfs());
        assert!(Csts::from(u32::MAX).is_all_ones());
        assert_eq!(u32::from(Csts::new().with_nssro(true)), 1 << 4);
    }

    #[test]
    fn aqa_sizes_are_zero_based_in_bits_11_0_and_27_16() {
        let aqa = Aqa::new().with_asqs(31).with_acqs(63);
        assert_eq!(u32::from(aqa), (63 << 16) | 31);
        assert_eq!(aqa.sq_entries(), 32);
        assert_eq!(aqa.cq_entries(), 64);
        assert_eq!(Aqa::from_entries(32, 64), Ok(aqa));
        assert_eq!(
            Aqa::from_entries(4096, 4096).map(u32::from),
            Ok(0x0fff_0fff)
        );
    }

    #[test]
    fn admin_queue_sizes_outside_2_to_4096_are_rejected() {
        assert_eq!(
            Aqa::from_entries(1, 32),
            Err(crate::Error::InvalidAdminQueueSize { entries: 1 })
        );
        assert_eq!(
            Aqa::from_entries(32, 4097),
            Err(crate::Error::InvalidAdminQueueSize { entries: 4097 })
        );
    }

    #[test]
    fn doorbell_offsets_follow_dstrd() {
        assert_eq!(sq_tail_doorbell(0, 0), 0x1000);
        assert_eq!(cq_head_doorbell(0, 0), 0x1004);
        assert_eq!(sq_tail_doorbell(1, 0), 0x1008);
        assert_eq!(cq_head_doorbell(1, 0), 0x100c);
        assert_eq!(sq_tail_doorbell(0, 1), 0x1000);
        assert_eq!(cq_head_doorbell(0, 1), 0x1008);
        assert_eq!(sq_tail_doorbell(1, 1), 0x1010);
        assert_eq!(cq_head_doorbell(1, 1), 0x1018);
        assert_eq!(cq_head_doorbell(u16::MAX, 15), 0x1000 + 131_071 * (4 << 15));
    }

    #[test]
    fn decode_doorbell_inverts_offsets_and_rejects_misaligned() {
        for dstrd in [0u8, 1, 3] {
            for qid in [0u16, 1, 7, u16::MAX] {
                assert_eq!(
                    decode_doorbell(sq_tail_doorbell(qid, dstrd), dstrd),
                    Some(Doorbell::SqTail(qid))
                );
                assert_eq!(
                    decode_doorbell(cq_head_doorbell(qid, dstrd), dstrd),
                    Some(Doorbell::CqHead(qid))
                );
            }
        }
        assert_eq!(decode_doorbell(0x1002, 0), None);
        assert_eq!(decode_doorbell(0x1004, 1), None);
        assert_eq!(decode_doorbell(offset::CC, 0), None);
        assert_eq!(decode_doorbell(cq_head_doorbell(u16::MAX, 0) + 4, 0), None);
    }

    #[test]
    fn shadow_doorbells_share_the_register_layout_from_zero() {
        assert_eq!(shadow_sq_tail(0, 0), 0);
        assert_eq!(shadow_cq_head(0, 0), 4);
        assert_eq!(shadow_sq_tail(3, 1), 48);
        assert_eq!(shadow_cq_head(3, 1), 56);
    }

    #[test]
    fn shadow_doorbell_needs_mmio_only_when_event_idx_is_passed() {
        // The controller asked to be told once the tail moves past 5.
        assert!(shadow_doorbell_needs_mmio(5, 6, 5));
        assert!(shadow_doorbell_needs_mmio(5, 9, 3));
        assert!(!shadow_doorbell_needs_mmio(5, 5, 3));
        assert!(!shadow_doorbell_needs_mmio(9, 8, 6));
        // Indices wrap at 16 bits.
        assert!(shadow_doorbell_needs_mmio(u16::MAX, 1, u16::MAX - 2));
        assert!(!shadow_doorbell_needs_mmio(3, 1, u16::MAX - 2));
    }

    #[test]
    fn cmbsz_size_uses_szu_units() {
        let cmbsz = Cmbsz::new().with_szu(1).with_sz(2).with_sqs(true);
        assert_eq!(cmbsz.size_bytes(), Some(2 * 64 * 1024));
        assert_eq!(Cmbsz::new().with_szu(7).size_bytes(), None);
        let cmbloc = Cmbloc::new().with_bir(2).with_ofst(5);
        assert_eq!(u32::from(cmbloc), (5 << 12) | 2);
    }
}
