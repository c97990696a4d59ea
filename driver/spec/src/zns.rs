//! Zoned Namespace Command Set (NVMe Zoned Namespace Command Set Specification 1.1):
//! the Zone Management Send, Zone Management Receive and Zone Append builders and
//! decoders, the zone descriptor and report header, zone states and types, and the
//! ZNS-specific Identify Namespace (CNS 05h, CSI 02h) and Identify Controller
//! (CNS 06h, CSI 02h) pages.
//!
//! The opcodes are [`NvmOpcode::ZONE_MANAGEMENT_SEND`], [`NvmOpcode::ZONE_MANAGEMENT_RECEIVE`]
//! and [`NvmOpcode::ZONE_APPEND`]; the command set identifier is
//! [`CommandSetId::ZONED`]; the statuses (Zone Boundary Error B8h to Invalid Zone
//! State Transition BFh) are in [`crate::status::CommandSpecificStatus`].
//! A zone report comes from the device and is untrusted: [`ZoneReport::parse`]
//! bounds every count by the buffer and rejects reserved zone states.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

pub use crate::identify::CommandSetId;

use crate::command::{NvmOpcode, SubmissionEntry};
use crate::identify::{parse_page, IDENTIFY_DATA_SIZE, MAX_LBA_FORMATS};
use crate::nvm::RwCdw12;
use crate::Error;

/// Size of a zone descriptor and of the report header.
pub const ZONE_DESCRIPTOR_SIZE: usize = 64;

/// Largest Zone Management Receive transfer: NUMD is a 32-bit 0's based dword count.
pub const MAX_ZONE_REPORT_BYTES: u64 = (u32::MAX as u64 + 1) * 4;

/// Zone Send Action (ZSA), CDW13 bits 7:0 of Zone Management Send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ZoneSendAction {
    /// Close Zone: an open zone becomes Closed.
    Close = 0x01,
    /// Finish Zone: the zone becomes Full.
    Finish = 0x02,
    /// Open Zone: the zone becomes Explicitly Opened.
    Open = 0x03,
    /// Reset Zone: the zone becomes Empty and its data is deallocated.
    Reset = 0x04,
    /// Offline Zone: a Read Only zone becomes Offline.
    Offline = 0x05,
    /// Set Zone Descriptor Extension: the data buffer holds the extension.
    SetDescriptorExtension = 0x10,
}

impl ZoneSendAction {
    /// The action for ZSA value `zsa`, or `None` if reserved.
    pub const fn from_bits(zsa: u8) -> Option<Self> {
        Some(match zsa {
            0x01 => Self::Close,
            0x02 => Self::Finish,
            0x03 => Self::Open,
            0x04 => Self::Reset,
            0x05 => Self::Offline,
            0x10 => Self::SetDescriptorExtension,
            _ => return None,
        })
    }

    /// The specification's name for the action.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Close => "Close Zone",
            Self::Finish => "Finish Zone",
            Self::Open => "Open Zone",
            Self::Reset => "Reset Zone",
            Self::Offline => "Offline Zone",
            Self::SetDescriptorExtension => "Set Zone Descriptor Extension",
        }
    }
}

impl core::fmt::Display for ZoneSendAction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// CDW13 of Zone Management Send.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct ZoneSendCdw13 {
    /// Zone Send Action (see [`ZoneSendAction`]).
    pub zsa: u8,
    /// Select All: the action applies to every zone in a state it can leave; SLBA is ignored.
    pub select_all: bool,
    /// Zone Send Action Specific Option (Open with a zone random write area).
    pub zsaso: bool,
    #[bits(22)]
    __: u32,
}

/// Zone Receive Action (ZRA), CDW13 bits 7:0 of Zone Management Receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ZoneReceiveAction {
    /// Report Zones: 64-byte descriptors.
    ReportZones = 0x00,
    /// Extended Report Zones: each descriptor followed by its descriptor extension.
    ExtendedReportZones = 0x01,
}

impl ZoneReceiveAction {
    /// The action for ZRA value `zra`, or `None` if reserved.
    pub const fn from_bits(zra: u8) -> Option<Self> {
        match zra {
            0x00 => Some(Self::ReportZones),
            0x01 => Some(Self::ExtendedReportZones),
            _ => None,
        }
    }
}

/// Zone Receive Action Specific Field of Report Zones (ZRASF): which zones to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ZoneReportFilter {
    /// Every zone.
    All = 0x00,
    /// Zones in the Empty state.
    Empty = 0x01,
    /// Zones in the Implicitly Opened state.
    ImplicitlyOpened = 0x02,
    /// Zones in the Explicitly Opened state.
    ExplicitlyOpened = 0x03,
    /// Zones in the Closed state.
    Closed = 0x04,
    /// Zones in the Full state.
    Full = 0x05,
    /// Zones in the Read Only state.
    ReadOnly = 0x06,
    /// Zones in the Offline state.
    Offline = 0x07,
}

impl ZoneReportFilter {
    /// The filter for ZRASF value `zrasf`, or `None` if reserved.
    pub const fn from_bits(zrasf: u8) -> Option<Self> {
        Some(match zrasf {
            0x00 => Self::All,
            0x01 => Self::Empty,
            0x02 => Self::ImplicitlyOpened,
            0x03 => Self::ExplicitlyOpened,
            0x04 => Self::Closed,
            0x05 => Self::Full,
            0x06 => Self::ReadOnly,
            0x07 => Self::Offline,
            _ => return None,
        })
    }

    /// Whether a zone in `state` is listed under this filter.
    pub const fn matches(self, state: ZoneState) -> bool {
        match self {
            Self::All => true,
            Self::Empty => matches!(state, ZoneState::Empty),
            Self::ImplicitlyOpened => matches!(state, ZoneState::ImplicitlyOpened),
            Self::ExplicitlyOpened => matches!(state, ZoneState::ExplicitlyOpened),
            Self::Closed => matches!(state, ZoneState::Closed),
            Self::Full => matches!(state, ZoneState::Full),
            Self::ReadOnly => matches!(state, ZoneState::ReadOnly),
            Self::Offline => matches!(state, ZoneState::Offline),
        }
    }
}

/// CDW13 of Zone Management Receive.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct ZoneReceiveCdw13 {
    /// Zone Receive Action (see [`ZoneReceiveAction`]).
    pub zra: u8,
    /// Zone Receive Action Specific Field (see [`ZoneReportFilter`]).
    pub zrasf: u8,
    /// Partial Report: the header counts only the descriptors that fit in the buffer.
    pub partial: bool,
    #[bits(15)]
    __: u16,
}

/// Zone Type (ZT), descriptor byte 0 bits 3:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ZoneType {
    /// Sequential Write Required, the only type the specification defines.
    SequentialWriteRequired = 0x2,
}

/// Zone State (ZS), descriptor byte 1 bits 7:4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ZoneState {
    /// ZSE: no data written; write pointer at the zone start.
    Empty = 0x1,
    /// ZSIO: opened by a write.
    ImplicitlyOpened = 0x2,
    /// ZSEO: opened by an Open Zone action.
    ExplicitlyOpened = 0x3,
    /// ZSC: active but not open; holds data.
    Closed = 0x4,
    /// ZSRO: readable, not writable.
    ReadOnly = 0xd,
    /// ZSF: written to capacity or finished.
    Full = 0xe,
    /// ZSO: neither readable nor writable.
    Offline = 0xf,
}

impl ZoneState {
    /// The state for ZS value `zs` (4 bits), or `None` if reserved.
    pub const fn from_bits(zs: u8) -> Option<Self> {
        Some(match zs {
            0x1 => Self::Empty,
            0x2 => Self::ImplicitlyOpened,
            0x3 => Self::ExplicitlyOpened,
            0x4 => Self::Closed,
            0xd => Self::ReadOnly,
            0xe => Self::Full,
            0xf => Self::Offline,
            _ => return None,
        })
    }

    /// Whether the zone counts against Maximum Open Resources.
    pub const fn is_open(self) -> bool {
        matches!(self, Self::ImplicitlyOpened | Self::ExplicitlyOpened)
    }

    /// Whether the zone counts against Maximum Active Resources (opened or closed).
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            Self::ImplicitlyOpened | Self::ExplicitlyOpened | Self::Closed
        )
    }

    /// The specification's name for the state.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::ImplicitlyOpened => "Implicitly Opened",
            Self::ExplicitlyOpened => "Explicitly Opened",
            Self::Closed => "Closed",
            Self::ReadOnly => "Read Only",
            Self::Full => "Full",
            Self::Offline => "Offline",
        }
    }
}

impl core::fmt::Display for ZoneState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Zone Attributes (ZA), descriptor byte 2.
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ZoneAttributes {
    /// Zone Finished by Controller (ZFC).
    pub zfc: bool,
    /// Finish Zone Recommended (FZR).
    pub fzr: bool,
    /// Reset Zone Recommended (RZR).
    pub rzr: bool,
    /// Zone Random Write Area Valid (ZRWAV).
    pub zrwav: bool,
    #[bits(3)]
    __: u8,
    /// Zone Descriptor Extension Valid (ZDEV).
    pub zdev: bool,
}

/// Zone Descriptor (64 bytes), one per zone in a report.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ZoneDescriptor {
    /// Zone Type in bits 3:0 (see [`ZoneType`]).
    pub zt: u8,
    /// Zone State in bits 7:4 (see [`ZoneState`]).
    pub zs: u8,
    /// Zone Attributes.
    pub za: ZoneAttributes,
    /// Zone Attributes Information.
    pub zai: u8,
    /// Reserved.
    pub rsvd4: [u8; 4],
    /// Zone Capacity: writable logical blocks from the zone start.
    pub zcap: u64,
    /// Zone Start Logical Block Address.
    pub zslba: u64,
    /// Write Pointer: the next LBA a write to the zone must start at.
    pub wp: u64,
    /// Reserved.
    pub rsvd32: [u8; 32],
}

const _: () = assert!(size_of::<ZoneDescriptor>() == ZONE_DESCRIPTOR_SIZE);

impl ZoneDescriptor {
    /// A sequential-write-required zone descriptor with no attributes.
    pub fn new(state: ZoneState, zslba: u64, zcap: u64, wp: u64) -> Self {
        let mut d = Self::new_zeroed();
        d.zt = ZoneType::SequentialWriteRequired as u8;
        d.zs = (state as u8) << 4;
        d.zslba = zslba;
        d.zcap = zcap;
        d.wp = wp;
        d
    }

    /// The Zone State field (bits 7:4 of byte 1).
    pub const fn zs_bits(&self) -> u8 {
        self.zs >> 4
    }

    /// The Zone State, or `None` if the device reports a reserved value.
    pub const fn state(&self) -> Option<ZoneState> {
        ZoneState::from_bits(self.zs_bits())
    }

    /// The Zone Type field (bits 3:0 of byte 0).
    pub const fn zt_bits(&self) -> u8 {
        self.zt & 0xf
    }
}

/// Zone report header (64 bytes) at the start of a Zone Management Receive buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ZoneReportHeader {
    /// Number of Zones: matching zones from SLBA on, or with Partial Report set,
    /// the number of descriptors in the buffer.
    pub nr_zones: u64,
    /// Reserved.
    pub rsvd8: [u8; 56],
}

const _: () = assert!(size_of::<ZoneReportHeader>() == ZONE_DESCRIPTOR_SIZE);

impl ZoneReportHeader {
    /// A header reporting `nr_zones`.
    pub fn new(nr_zones: u64) -> Self {
        let mut h = Self::new_zeroed();
        h.nr_zones = nr_zones;
        h
    }
}

/// A decoded zone report: the header's count and the descriptors the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneReport {
    /// Number of Zones as the header reports it (may exceed `zones.len()` without
    /// Partial Report).
    pub nr_zones: u64,
    /// The descriptors present in the buffer, at most `nr_zones`.
    pub zones: Vec<ZoneDescriptor>,
}

impl ZoneReport {
    /// Decodes a report buffer; `extension_bytes` is the descriptor extension size
    /// (ZDES x 64) for an Extended Report Zones, 0 for Report Zones.
    ///
    /// The count is bounded by the buffer; a descriptor with a reserved Zone State
    /// is an error naming its index.
    pub fn parse(bytes: &[u8], extension_bytes: usize) -> Result<Self, Error> {
        let header: ZoneReportHeader = parse_page(bytes, "zone report header")?;
        let stride = ZONE_DESCRIPTOR_SIZE.saturating_add(extension_bytes);
        let body = &bytes[ZONE_DESCRIPTOR_SIZE..];
        let fits = body.len() / stride;
        let count = usize::try_from(header.nr_zones).map_or(fits, |n| n.min(fits));
        let mut zones = Vec::with_capacity(count);
        for index in 0..count {
            let start = index * stride;
            let chunk = &body[start..start + ZONE_DESCRIPTOR_SIZE];
            let d = ZoneDescriptor::read_from_bytes(chunk).map_err(|_| Error::BufferTooShort {
                structure: "zone descriptor",
                needed: ZONE_DESCRIPTOR_SIZE,
                actual: chunk.len(),
            })?;
            if d.state().is_none() {
                return Err(Error::InvalidZoneState {
                    index,
                    zs: d.zs_bits(),
                });
            }
            zones.push(d);
        }
        Ok(Self {
            nr_zones: header.nr_zones,
            zones,
        })
    }
}

/// Zone Management Send of `action` on the zone starting at `zslba`, or on every
/// zone with `select_all` (SLBA is then ignored by the controller).
pub fn zone_management_send(
    nsid: u32,
    zslba: u64,
    action: ZoneSendAction,
    select_all: bool,
) -> SubmissionEntry {
    let mut sqe = SubmissionEntry::new(NvmOpcode::ZONE_MANAGEMENT_SEND.0);
    sqe.nsid = nsid;
    sqe.set_slba(zslba);
    sqe.cdw13 = ZoneSendCdw13::new()
        .with_zsa(action as u8)
        .with_select_all(select_all)
        .into_bits();
    sqe
}

/// Zone Management Receive into a buffer of `buffer_bytes` (a multiple of 4, at
/// least one 64-byte header, at most 16 GiB), listing zones from `slba` on that
/// match `filter`; with `partial` the header counts only what fits.
pub fn zone_management_receive(
    nsid: u32,
    slba: u64,
    action: ZoneReceiveAction,
    filter: ZoneReportFilter,
    partial: bool,
    buffer_bytes: u64,
) -> Result<SubmissionEntry, Error> {
    if buffer_bytes < ZONE_DESCRIPTOR_SIZE as u64
        || buffer_bytes > MAX_ZONE_REPORT_BYTES
        || buffer_bytes % 4 != 0
    {
        return Err(Error::InvalidZoneReportLength {
            bytes: buffer_bytes,
        });
    }
    let mut sqe = SubmissionEntry::new(NvmOpcode::ZONE_MANAGEMENT_RECEIVE.0);
    sqe.nsid = nsid;
    sqe.set_slba(slba);
    sqe.cdw12 = (buffer_bytes / 4 - 1) as u32;
    sqe.cdw13 = ZoneReceiveCdw13::new()
        .with_zra(action as u8)
        .with_zrasf(filter as u8)
        .with_partial(partial)
        .into_bits();
    Ok(sqe)
}

/// Zone Append of `blocks` (1..=65536) logical blocks to the zone starting at
/// `zslba`; the controller returns the LBA it wrote in completion dwords 0 and 1.
pub fn zone_append(nsid: u32, zslba: u64, blocks: u32) -> Result<SubmissionEntry, Error> {
    if blocks == 0 || blocks > crate::nvm::MAX_BLOCKS_PER_COMMAND {
        return Err(Error::InvalidBlockCount { count: blocks });
    }
    let mut sqe = SubmissionEntry::new(NvmOpcode::ZONE_APPEND.0);
    sqe.nsid = nsid;
    sqe.set_slba(zslba);
    sqe.cdw12 = RwCdw12::new().with_nlb((blocks - 1) as u16).into_bits();
    Ok(sqe)
}

/// Field access for Zone Management Send and Receive (Zone Append reads like a
/// Write: [`SubmissionEntry::slba`], [`SubmissionEntry::block_count`]).
impl SubmissionEntry {
    /// CDW13 of Zone Management Send.
    pub const fn zone_send_cdw13(&self) -> ZoneSendCdw13 {
        ZoneSendCdw13::from_bits(self.cdw13)
    }

    /// CDW13 of Zone Management Receive.
    pub const fn zone_receive_cdw13(&self) -> ZoneReceiveCdw13 {
        ZoneReceiveCdw13::from_bits(self.cdw13)
    }

    /// Bytes a Zone Management Receive may transfer ((NUMD + 1) x 4).
    pub const fn zone_receive_bytes(&self) -> u64 {
        (self.cdw12 as u64 + 1) * 4
    }
}

/// The LBA a Zone Append wrote, from completion dwords 0 (low) and 1 (high).
pub const fn appended_lba(dw0: u32, dw1: u32) -> u64 {
    (dw1 as u64) << 32 | dw0 as u64
}

/// Zone Operation Characteristics (ZOC).
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ZoneOperationCharacteristics {
    /// Variable Zone Capacity (VZCAP): a reset may change a zone's capacity.
    pub vzcap: bool,
    /// Zone Active Excursions (ZAE): the controller may finish active zones itself.
    pub zae: bool,
    #[bits(14)]
    __: u16,
}

/// Optional Zoned Command Support (OZCS).
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct OptionalZonedCommandSupport {
    /// Read Across Zone Boundaries (RAZB).
    pub razb: bool,
    /// Zone Random Write Area Support (ZRWASUP).
    pub zrwasup: bool,
    #[bits(14)]
    __: u16,
}

/// LBA Format Extension (16 bytes), beside the LBA format of the same index.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct LbaFormatExtension {
    /// Zone Size in logical blocks.
    pub zsze: u64,
    /// Zone Descriptor Extension Size in 64-byte units.
    pub zdes: u8,
    /// Reserved.
    pub rsvd9: [u8; 7],
}

const _: () = assert!(size_of::<LbaFormatExtension>() == 16);

/// MAR/MOR value meaning no limit.
pub const NO_RESOURCE_LIMIT: u32 = u32::MAX;

/// Zoned Namespace Command Set Identify Namespace (CNS 05h, CSI 02h), 4096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IdentifyNamespaceZns {
    /// Zone Operation Characteristics.
    pub zoc: ZoneOperationCharacteristics,
    /// Optional Zoned Command Support.
    pub ozcs: OptionalZonedCommandSupport,
    /// Maximum Active Resources, 0's based; FFFFFFFFh for no limit.
    pub mar: u32,
    /// Maximum Open Resources, 0's based; FFFFFFFFh for no limit.
    pub mor: u32,
    /// Reset Recommended Limit, seconds.
    pub rrl: u32,
    /// Finish Recommended Limit, seconds.
    pub frl: u32,
    /// Reset Recommended Limit 1.
    pub rrl1: u32,
    /// Reset Recommended Limit 2.
    pub rrl2: u32,
    /// Reset Recommended Limit 3.
    pub rrl3: u32,
    /// Finish Recommended Limit 1.
    pub frl1: u32,
    /// Finish Recommended Limit 2.
    pub frl2: u32,
    /// Finish Recommended Limit 3.
    pub frl3: u32,
    /// Number of ZRWA Resources, 0's based.
    pub numzrwa: u32,
    /// ZRWA Flush Granularity, logical blocks.
    pub zrwafg: u16,
    /// ZRWA Size, logical blocks.
    pub zrwas: u16,
    /// ZRWA Capability.
    pub zrwacap: u8,
    /// Reserved.
    pub rsvd53: [u8; 2763],
    /// LBA Format Extensions, one per entry of Identify Namespace's LBA format table.
    pub lbafe: [LbaFormatExtension; MAX_LBA_FORMATS],
    /// Vendor Specific.
    pub vs: [u8; 256],
}

const _: () = assert!(size_of::<IdentifyNamespaceZns>() == IDENTIFY_DATA_SIZE);

impl Default for IdentifyNamespaceZns {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// A 0's based resource count as a limit: `None` for FFFFFFFFh (no limit).
const fn resource_limit(value: u32) -> Option<u32> {
    if value == NO_RESOURCE_LIMIT {
        None
    } else {
        Some(value + 1)
    }
}

/// A resource limit as its 0's based field: `None` or `Some(0)` for no limit.
const fn resource_field(limit: Option<u32>) -> u32 {
    match limit {
        Some(n) if n > 0 => n - 1,
        _ => NO_RESOURCE_LIMIT,
    }
}

impl IdentifyNamespaceZns {
    /// Reads the structure from the first 4096 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse_page(bytes, "Zoned Namespace Command Set Identify Namespace data")
    }

    /// The 4096-byte page.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// Most zones that may be active at once, or `None` for no limit.
    pub const fn max_active_zones(&self) -> Option<u32> {
        resource_limit(self.mar)
    }

    /// Most zones that may be open at once, or `None` for no limit.
    pub const fn max_open_zones(&self) -> Option<u32> {
        resource_limit(self.mor)
    }

    /// Sets MAR from a zone count (`None` or 0 for no limit).
    pub const fn set_max_active_zones(&mut self, limit: Option<u32>) {
        self.mar = resource_field(limit);
    }

    /// Sets MOR from a zone count (`None` or 0 for no limit).
    pub const fn set_max_open_zones(&mut self, limit: Option<u32>) {
        self.mor = resource_field(limit);
    }

    /// The LBA format extension of LBA format `index` (0..=63).
    pub fn format(&self, index: u8) -> Result<LbaFormatExtension, Error> {
        self.lbafe
            .get(usize::from(index))
            .copied()
            .ok_or(Error::LbaFormatOutOfRange {
                index,
                nlbaf: (MAX_LBA_FORMATS - 1) as u8,
            })
    }
}

/// Zoned Namespace Command Set Identify Controller (CNS 06h, CSI 02h), 4096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IdentifyControllerZns {
    /// Zone Append Size Limit: a power of two in units of the minimum memory page
    /// size (CAP.MPSMIN); 0 means MDTS applies.
    pub zasl: u8,
    /// Reserved.
    pub rsvd1: [u8; 4095],
}

const _: () = assert!(size_of::<IdentifyControllerZns>() == IDENTIFY_DATA_SIZE);

impl Default for IdentifyControllerZns {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyControllerZns {
    /// Reads the structure from the first 4096 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse_page(
            bytes,
            "Zoned Namespace Command Set Identify Controller data",
        )
    }

    /// The 4096-byte page.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// The largest Zone Append in bytes for a minimum page size of `mps_min_bytes`,
    /// or `None` when ZASL is 0 (MDTS applies) or the size overflows 64 bits.
    pub const fn zone_append_limit_bytes(&self, mps_min_bytes: u64) -> Option<u64> {
        if self.zasl == 0 || self.zasl >= 64 {
            return None;
        }
        mps_min_bytes.checked_mul(1 << self.zasl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts_match_the_specification() {
        assert_eq!(offset_of!(ZoneDescriptor, za), 2);
        assert_eq!(offset_of!(ZoneDescriptor, zcap), 8);
        assert_eq!(offset_of!(ZoneDescriptor, zslba), 16);
        assert_eq!(offset_of!(ZoneDescriptor, wp), 24);
        assert_eq!(offset_of!(IdentifyNamespaceZns, ozcs), 2);
        assert_eq!(offset_of!(IdentifyNamespaceZns, mar), 4);
        assert_eq!(offset_of!(IdentifyNamespaceZns, mor), 8);
        assert_eq!(offset_of!(IdentifyNamespaceZns, rrl), 12);
        assert_eq!(offset_of!(IdentifyNamespaceZns, frl), 16);
        assert_eq!(offset_of!(IdentifyNamespaceZns, numzrwa), 44);
        assert_eq!(offset_of!(IdentifyNamespaceZns, zrwacap), 52);
        assert_eq!(offset_of!(IdentifyNamespaceZns, lbafe), 2816);
        assert_eq!(offset_of!(IdentifyNamespaceZns, vs), 3840);
        assert_eq!(offset_of!(LbaFormatExtension, zdes), 8);
    }

    #[test]
    fn zone_send_sets_slba_action_and_select_all() {
        let sqe = zone_management_send(1, 0x1_0000_0800, ZoneSendAction::Reset, true);
        assert_eq!(sqe.opcode(), 0x79);
        assert_eq!((sqe.nsid, sqe.cdw10, sqe.cdw11), (1, 0x800, 1));
        assert_eq!(sqe.cdw13, 0x104);
        let c = sqe.zone_send_cdw13();
        assert_eq!(
            ZoneSendAction::from_bits(c.zsa()),
            Some(ZoneSendAction::Reset)
        );
        assert!(c.select_all());
        let open = zone_management_send(2, 0, ZoneSendAction::Open, false);
        assert_eq!(open.cdw13, 0x03);
        for (action, zsa) in [
            (ZoneSendAction::Close, 1),
            (ZoneSendAction::Finish, 2),
            (ZoneSendAction::Open, 3),
            (ZoneSendAction::Reset, 4),
            (ZoneSendAction::Offline, 5),
            (ZoneSendAction::SetDescriptorExtension, 0x10),
        ] {
            assert_eq!(action as u8, zsa);
            assert_eq!(ZoneSendAction::from_bits(zsa), Some(action));
        }
        assert_eq!(ZoneSendAction::from_bits(6), None);
    }

    #[test]
    fn zone_receive_encodes_numd_filter_and_partial() {
        let sqe = zone_management_receive(
            1,
            4096,
            ZoneReceiveAction::ReportZones,
            ZoneReportFilter::Full,
            true,
            4096,
        )
        .unwrap();
        assert_eq!(sqe.opcode(), 0x7a);
        assert_eq!(sqe.cdw10, 4096);
        assert_eq!(sqe.cdw12, 1023);
        assert_eq!(sqe.cdw13, (1 << 16) | (5 << 8));
        assert_eq!(sqe.zone_receive_bytes(), 4096);
        let c = sqe.zone_receive_cdw13();
        assert_eq!(
            ZoneReportFilter::from_bits(c.zrasf()),
            Some(ZoneReportFilter::Full)
        );
        assert!(c.partial());
        let ext = zone_management_receive(
            1,
            0,
            ZoneReceiveAction::ExtendedReportZones,
            ZoneReportFilter::All,
            false,
            64,
        )
        .unwrap();
        assert_eq!((ext.cdw12, ext.cdw13), (15, 1));
        for bad in [0, 60, 66, MAX_ZONE_REPORT_BYTES + 4] {
            assert_eq!(
                zone_management_receive(
                    1,
                    0,
                    ZoneReceiveAction::ReportZones,
                    ZoneReportFilter::All,
                    false,
                    bad
                ),
                Err(Error::InvalidZoneReportLength { bytes: bad })
            );
        }
        let max = zone_management_receive(
            1,
            0,
            ZoneReceiveAction::ReportZones,
            ZoneReportFilter::All,
            false,
            MAX_ZONE_REPORT_BYTES,
        )
        .unwrap();
        assert_eq!(max.cdw12, u32::MAX);
        assert_eq!(max.zone_receive_bytes(), MAX_ZONE_REPORT_BYTES);
    }

    #[test]
    fn zone_append_is_a_write_shaped_command_with_its_own_opcode() {
        let sqe = zone_append(3, 0x2000, 8).unwrap().with_fua(true);
        assert_eq!(sqe.opcode(), 0x7d);
        assert_eq!((sqe.nsid, sqe.slba(), sqe.block_count()), (3, 0x2000, 8));
        assert_eq!(sqe.cdw12, (1 << 30) | 7);
        assert!(NvmOpcode::ZONE_APPEND.is_host_to_controller());
        assert!(NvmOpcode::ZONE_MANAGEMENT_RECEIVE.is_controller_to_host());
        assert_eq!(NvmOpcode::ZONE_APPEND.name(), Some("Zone Append"));
        assert_eq!(
            zone_append(1, 0, 0),
            Err(Error::InvalidBlockCount { count: 0 })
        );
        assert_eq!(appended_lba(0x10, 0x2), 0x2_0000_0010);
    }

    #[test]
    fn descriptor_state_is_the_upper_nibble() {
        let d = ZoneDescriptor::new(ZoneState::Full, 0x400, 0x300, 0x800);
        let b = d.as_bytes();
        assert_eq!(b[0], 0x02);
        assert_eq!(b[1], 0xe0);
        assert_eq!(&b[8..16], &0x300u64.to_le_bytes());
        assert_eq!(&b[16..24], &0x400u64.to_le_bytes());
        assert_eq!(&b[24..32], &0x800u64.to_le_bytes());
        assert_eq!(d.state(), Some(ZoneState::Full));
        for zs in 0..16u8 {
            let known = ZoneState::from_bits(zs);
            assert_eq!(known.is_some(), matches!(zs, 1..=4 | 0xd..=0xf));
            if let Some(s) = known {
                assert_eq!(s as u8, zs);
            }
        }
        assert!(ZoneState::Closed.is_active() && !ZoneState::Closed.is_open());
        assert!(ZoneState::ImplicitlyOpened.is_open());
        assert!(!ZoneState::Full.is_active());
    }

    #[test]
    fn report_filter_matches_one_state_each() {
        let states = [
            ZoneState::Empty,
            ZoneState::ImplicitlyOpened,
            ZoneState::ExplicitlyOpened,
            ZoneState::Closed,
            ZoneState::Full,
            ZoneState::ReadOnly,
            ZoneState::Offline,
        ];
        for zrasf in 1..=7u8 {
            let f = ZoneReportFilter::from_bits(zrasf).unwrap();
            let hits: Vec<_> = states.iter().filter(|&&s| f.matches(s)).collect();
            assert_eq!(hits, vec![&states[usize::from(zrasf) - 1]]);
        }
        assert!(states.iter().all(|&s| ZoneReportFilter::All.matches(s)));
        assert_eq!(ZoneReportFilter::from_bits(8), None);
    }

    #[test]
    fn report_parse_is_bounded_by_the_buffer() {
        let mut buf = ZoneReportHeader::new(5).as_bytes().to_vec();
        buf.extend_from_slice(ZoneDescriptor::new(ZoneState::Empty, 0, 16, 0).as_bytes());
        buf.extend_from_slice(ZoneDescriptor::new(ZoneState::Closed, 16, 16, 20).as_bytes());
        let r = ZoneReport::parse(&buf, 0).unwrap();
        assert_eq!(r.nr_zones, 5);
        assert_eq!(r.zones.len(), 2);
        assert_eq!(r.zones[1].wp, 20);
        buf[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut huge = buf.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(ZoneReport::parse(&huge, 0).unwrap().zones.len(), 2);
        let one = ZoneReport::parse(&huge, 64).unwrap();
        assert_eq!(one.zones.len(), 1);
        huge[64 + 64 + 1] = 0x50;
        assert_eq!(
            ZoneReport::parse(&huge, 0),
            Err(Error::InvalidZoneState { index: 1, zs: 5 })
        );
        assert!(matches!(
            ZoneReport::parse(&buf[..10], 0),
            Err(Error::BufferTooShort { .. })
        ));
    }

    #[test]
    fn identify_zns_namespace_round_trips_limits_and_zone_size() {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page[0] = 0b11;
        page[2] = 1;
        page[4..8].copy_from_slice(&13u32.to_le_bytes());
        page[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        page[2816 + 16..2816 + 24].copy_from_slice(&0x800u64.to_le_bytes());
        page[2816 + 24] = 2;
        let id = IdentifyNamespaceZns::parse(&page).unwrap();
        assert!(id.zoc.vzcap() && id.zoc.zae() && id.ozcs.razb());
        assert_eq!(id.max_active_zones(), Some(14));
        assert_eq!(id.max_open_zones(), None);
        assert_eq!(id.format(1).unwrap().zsze, 0x800);
        assert_eq!(id.format(1).unwrap().zdes, 2);
        assert!(id.format(64).is_err());
        assert_eq!(id.encode(), page);
        let mut built = IdentifyNamespaceZns::default();
        built.set_max_active_zones(Some(14));
        built.set_max_open_zones(Some(0));
        assert_eq!((built.mar, built.mor), (13, u32::MAX));
        assert!(IdentifyNamespaceZns::parse(&page[..4000]).is_err());
    }

    #[test]
    fn identify_zns_controller_zasl_is_a_power_of_two_of_mpsmin() {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page[0] = 5;
        let id = IdentifyControllerZns::parse(&page).unwrap();
        assert_eq!(id.zone_append_limit_bytes(4096), Some(128 * 1024));
        assert_eq!(
            IdentifyControllerZns::default().zone_append_limit_bytes(4096),
            None
        );
        let mut big = id;
        big.zasl = 63;
        assert_eq!(big.zone_append_limit_bytes(4096), None);
        assert_eq!(id.encode(), page);
    }

    #[test]
    fn zoned_command_set_identifier_is_2() {
        assert_eq!(CommandSetId::ZONED.0, 2);
        assert_eq!(CommandSetId::NVM.0, 0);
    }
}
