//! Identify Controller data structure (CNS 01h; NVMe Base Specification 2.0,
//! figure 275) and its bit fields.

use std::borrow::Cow;

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::{parse_page, IDENTIFY_DATA_SIZE};
use crate::registers::Version;
use crate::Error;

/// Controller Multi-Path I/O and Namespace Sharing Capabilities (CMIC).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Cmic {
    /// The NVM subsystem may have more than one port.
    pub multiple_ports: bool,
    /// The NVM subsystem may have more than one controller.
    pub multiple_controllers: bool,
    /// The controller is associated with an SR-IOV virtual function.
    pub sriov: bool,
    /// Asymmetric Namespace Access reporting is supported.
    pub ana_reporting: bool,
    #[bits(4)]
    __: u8,
}

/// Optional Admin Command Support (OACS).
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Oacs {
    /// Security Send and Security Receive.
    pub security: bool,
    /// Format NVM.
    pub format_nvm: bool,
    /// Firmware Commit and Firmware Image Download.
    pub firmware: bool,
    /// Namespace Management.
    pub namespace_management: bool,
    /// Device Self-test.
    pub device_self_test: bool,
    /// Directives.
    pub directives: bool,
    /// NVMe-MI Send and NVMe-MI Receive.
    pub nvme_mi: bool,
    /// Virtualization Management.
    pub virtualization_management: bool,
    /// Doorbell Buffer Config.
    pub doorbell_buffer_config: bool,
    /// Get LBA Status.
    pub get_lba_status: bool,
    /// Command and Feature Lockdown.
    pub lockdown: bool,
    #[bits(5)]
    __: u8,
}

/// Firmware Updates (FRMW).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Frmw {
    /// Firmware slot 1 is read only.
    pub slot1_read_only: bool,
    /// Number of firmware slots (1..=7).
    #[bits(3)]
    pub slots: u8,
    /// Firmware activation without a reset is supported.
    pub activation_without_reset: bool,
    /// Multiple Update Detection Support.
    pub multiple_update_detection: bool,
    #[bits(2)]
    __: u8,
}

/// Log Page Attributes (LPA).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Lpa {
    /// The SMART / Health log page is available per namespace.
    pub smart_per_namespace: bool,
    /// The Commands Supported and Effects log page is supported.
    pub commands_effects: bool,
    /// Get Log Page supports extended data (NUMDU, offset).
    pub extended_data: bool,
    /// Telemetry Host-Initiated and Controller-Initiated log pages are supported.
    pub telemetry: bool,
    /// The Persistent Event log is supported.
    pub persistent_event: bool,
    #[bits(3)]
    __: u8,
}

/// Queue Entry Size (SQES and CQES): required and maximum entry sizes as powers of two.
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct QueueEntrySize {
    /// Required (minimum) entry size, log2 bytes.
    #[bits(4)]
    pub required: u8,
    /// Maximum entry size, log2 bytes.
    #[bits(4)]
    pub maximum: u8,
}

/// Optional NVM Command Support (ONCS).
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Oncs {
    /// Compare.
    pub compare: bool,
    /// Write Uncorrectable.
    pub write_uncorrectable: bool,
    /// Dataset Management.
    pub dataset_management: bool,
    /// Write Zeroes.
    pub write_zeroes: bool,
    /// The Save field of Set Features and Select field of Get Features.
    pub save_select: bool,
    /// Reservations.
    pub reservations: bool,
    /// The Timestamp feature.
    pub timestamp: bool,
    /// Verify.
    pub verify: bool,
    /// Copy.
    pub copy: bool,
    #[bits(7)]
    __: u8,
}

/// Fused Operation Support (FUSES).
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Fuses {
    /// The Compare and Write fused operation.
    pub compare_and_write: bool,
    #[bits(15)]
    __: u16,
}

/// Format NVM Attributes (FNA).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Fna {
    /// A format applies to all namespaces.
    pub format_all_namespaces: bool,
    /// A secure erase applies to all namespaces.
    pub erase_all_namespaces: bool,
    /// Cryptographic erase is supported.
    pub crypto_erase: bool,
    /// Format NVM with NSID FFFFFFFFh is not supported.
    pub no_broadcast_format: bool,
    #[bits(4)]
    __: u8,
}

/// Volatile Write Cache (VWC).
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Vwc {
    /// A volatile write cache is present.
    pub present: bool,
    /// Flush with NSID FFFFFFFFh: 0 not indicated, 2 not supported, 3 supported.
    #[bits(2)]
    pub flush_broadcast: u8,
    #[bits(5)]
    __: u8,
}

/// SGL Support (SGLS), NVMe Base 2.0 Figure 275.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Sgls {
    /// 0: SGLs not supported; 1: supported, no alignment; 2: supported, dword alignment
    /// and granularity of Data Blocks (see [`Sgls::supported`], [`Sgls::dword_aligned`]).
    #[bits(2)]
    pub support: u8,
    /// Keyed SGL Data Block descriptor.
    pub keyed: bool,
    #[bits(13)]
    __: u16,
    /// SGL Bit Bucket descriptor.
    pub bit_bucket: bool,
    /// With PSDT 01b, MPTR may be byte aligned (otherwise it is dword aligned).
    pub byte_aligned_metadata: bool,
    /// The SGL's Data Block lengths may add up to more than the data to transfer.
    pub length_larger_than_data: bool,
    /// PSDT 10b: MPTR may hold the address of an SGL segment of exactly one descriptor,
    /// so metadata is described by an SGL.
    pub mptr_sgl: bool,
    /// The Address field may be an offset.
    pub address_as_offset: bool,
    /// Transport SGL Data Block descriptor.
    pub transport_data_block: bool,
    #[bits(10)]
    __: u16,
}

impl Sgls {
    /// SGLs are supported for the NVM Command Set (SGL Support is 01b or 10b).
    pub const fn supported(&self) -> bool {
        matches!(self.support(), 1 | 2)
    }

    /// Data Block descriptors (data and metadata) need addresses and lengths with their
    /// low two bits clear (SGL Support 10b).
    pub const fn dword_aligned(&self) -> bool {
        self.support() == 2
    }
}

/// Identify Controller data structure (CNS 01h), 4096 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: u16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: u16,
    /// Serial Number (ASCII, space padded).
    pub sn: [u8; 20],
    /// Model Number (ASCII, space padded).
    pub mn: [u8; 40],
    /// Firmware Revision (ASCII, space padded).
    pub fr: [u8; 8],
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI Identifier.
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities.
    pub cmic: Cmic,
    /// Maximum Data Transfer Size: `2 ^ mdts` minimum pages; 0 means no limit.
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version.
    pub ver: Version,
    /// RTD3 Resume Latency, microseconds.
    pub rtd3r: u32,
    /// RTD3 Entry Latency, microseconds.
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported.
    pub oaes: u32,
    /// Controller Attributes.
    pub ctratt: u32,
    /// Read Recovery Levels Supported.
    pub rrls: u16,
    /// Reserved.
    pub rsvd102: [u8; 9],
    /// Controller Type (1: I/O, 2: discovery, 3: administrative).
    pub cntrltype: u8,
    /// FRU Globally Unique Identifier.
    pub fguid: [u8; 16],
    /// Command Retry Delay Time 1, 100 ms units.
    pub crdt1: u16,
    /// Command Retry Delay Time 2, 100 ms units.
    pub crdt2: u16,
    /// Command Retry Delay Time 3, 100 ms units.
    pub crdt3: u16,
    /// Reserved.
    pub rsvd134: [u8; 119],
    /// NVM Subsystem Report.
    pub nvmsr: u8,
    /// VPD Write Cycle Information.
    pub vwci: u8,
    /// Management Endpoint Capabilities.
    pub mec: u8,
    /// Optional Admin Command Support.
    pub oacs: Oacs,
    /// Abort Command Limit, 0's based.
    pub acl: u8,
    /// Asynchronous Event Request Limit, 0's based.
    pub aerl: u8,
    /// Firmware Updates.
    pub frmw: Frmw,
    /// Log Page Attributes.
    pub lpa: Lpa,
    /// Error Log Page Entries, 0's based.
    pub elpe: u8,
    /// Number of Power States Support, 0's based.
    pub npss: u8,
    /// Admin Vendor Specific Command Configuration.
    pub avscc: u8,
    /// Autonomous Power State Transition Attributes.
    pub apsta: u8,
    /// Warning Composite Temperature Threshold, kelvin.
    pub wctemp: u16,
    /// Critical Composite Temperature Threshold, kelvin.
    pub cctemp: u16,
    /// Maximum Time for Firmware Activation, 100 ms units.
    pub mtfa: u16,
    /// Host Memory Buffer Preferred Size, 4 KiB units.
    pub hmpre: u32,
    /// Host Memory Buffer Minimum Size, 4 KiB units.
    pub hmmin: u32,
    /// Total NVM Capacity, bytes (128-bit little endian).
    pub tnvmcap: [u8; 16],
    /// Unallocated NVM Capacity, bytes (128-bit little endian).
    pub unvmcap: [u8; 16],
    /// Replay Protected Memory Block Support.
    pub rpmbs: u32,
    /// Extended Device Self-test Time, minutes.
    pub edstt: u16,
    /// Device Self-test Options.
    pub dsto: u8,
    /// Firmware Update Granularity, 4 KiB units.
    pub fwug: u8,
    /// Keep Alive Support, 100 ms units.
    pub kas: u16,
    /// Host Controlled Thermal Management Attributes.
    pub hctma: u16,
    /// Minimum Thermal Management Temperature, kelvin.
    pub mntmt: u16,
    /// Maximum Thermal Management Temperature, kelvin.
    pub mxtmt: u16,
    /// Sanitize Capabilities.
    pub sanicap: u32,
    /// Host Memory Buffer Minimum Descriptor Entry Size, 4 KiB units.
    pub hmminds: u32,
    /// Host Memory Maximum Descriptors Entries.
    pub hmmaxd: u16,
    /// NVM Set Identifier Maximum.
    pub nsetidmax: u16,
    /// Endurance Group Identifier Maximum.
    pub endgidmax: u16,
    /// ANA Transition Time, seconds.
    pub anatt: u8,
    /// Asymmetric Namespace Access Capabilities.
    pub anacap: u8,
    /// ANA Group Identifier Maximum.
    pub anagrpmax: u32,
    /// Number of ANA Group Identifiers.
    pub nanagrpid: u32,
    /// Persistent Event Log Size, 64 KiB units.
    pub pels: u32,
    /// Domain Identifier.
    pub domainid: u16,
    /// Reserved.
    pub rsvd358: [u8; 10],
    /// Max Endurance Group Capacity (128-bit little endian).
    pub megcap: [u8; 16],
    /// Reserved.
    pub rsvd384: [u8; 128],
    /// Submission Queue Entry Size.
    pub sqes: QueueEntrySize,
    /// Completion Queue Entry Size.
    pub cqes: QueueEntrySize,
    /// Maximum Outstanding Commands (fabrics).
    pub maxcmd: u16,
    /// Number of Namespaces: the largest valid NSID.
    pub nn: u32,
    /// Optional NVM Command Support.
    pub oncs: Oncs,
    /// Fused Operation Support.
    pub fuses: Fuses,
    /// Format NVM Attributes.
    pub fna: Fna,
    /// Volatile Write Cache.
    pub vwc: Vwc,
    /// Atomic Write Unit Normal, blocks, 0's based.
    pub awun: u16,
    /// Atomic Write Unit Power Fail, blocks, 0's based.
    pub awupf: u16,
    /// I/O Command Set Vendor Specific Command Configuration.
    pub icsvscc: u8,
    /// Namespace Write Protection Capabilities.
    pub nwpc: u8,
    /// Atomic Compare & Write Unit, blocks, 0's based.
    pub acwu: u16,
    /// Optional Copy Formats Supported.
    pub ocfs: u16,
    /// SGL Support.
    pub sgls: Sgls,
    /// Maximum Number of Allowed Namespaces.
    pub mnan: u32,
    /// Maximum Domain Namespace Attachments (128-bit little endian).
    pub maxdna: [u8; 16],
    /// Maximum I/O Controller Namespace Attachments.
    pub maxcna: u32,
    /// Reserved.
    pub rsvd564: [u8; 204],
    /// NVM Subsystem NVMe Qualified Name (UTF-8, NUL terminated).
    pub subnqn: [u8; 256],
    /// Reserved.
    pub rsvd1024: [u8; 768],
    /// NVMe over Fabrics attributes.
    pub fabrics: [u8; 256],
    /// Power State Descriptors, 32 bytes each.
    pub psd: [u8; 1024],
    /// Vendor Specific.
    pub vs: [u8; 1024],
}

const _: () = assert!(size_of::<IdentifyController>() == IDENTIFY_DATA_SIZE);

impl Default for IdentifyController {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// The text of a space-padded ASCII field, padding and NULs trimmed.
fn ascii_field(bytes: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim_matches(|c| c == ' ' || c == '\0')),
        Cow::Owned(s) => Cow::Owned(s.trim_matches(|c| c == ' ' || c == '\0').to_owned()),
    }
}

/// Fills a space-padded ASCII field; text beyond the field is cut and non-ASCII becomes `?`.
fn set_ascii_field(field: &mut [u8], text: &str) {
    field.fill(b' ');
    for (dst, src) in field.iter_mut().zip(text.bytes()) {
        *dst = if src.is_ascii() { src } else { b'?' };
    }
}

impl IdentifyController {
    /// Reads the structure from the first 4096 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse_page(bytes, "Identify Controller data")
    }

    /// The NVMe over Fabrics fields (bytes 1792 to 2047; zero on PCIe).
    pub fn fabrics_fields(&self) -> FabricsFields {
        let f = &self.fabrics;
        FabricsFields {
            ioccsz: u32::from_le_bytes([f[0], f[1], f[2], f[3]]),
            iorcsz: u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
            icdoff: u16::from_le_bytes([f[8], f[9]]),
            fcatt: f[10],
            msdbd: f[11],
            ofcs: u16::from_le_bytes([f[12], f[13]]),
        }
    }

    /// The 4096-byte page.
    pub fn encode(&self) -> [u8; IDENTIFY_DATA_SIZE] {
        let mut page = [0u8; IDENTIFY_DATA_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// Serial Number with its padding trimmed.
    pub fn serial_number(&self) -> Cow<'_, str> {
        ascii_field(&self.sn)
    }

    /// Model Number with its padding trimmed.
    pub fn model_number(&self) -> Cow<'_, str> {
        ascii_field(&self.mn)
    }

    /// Firmware Revision with its padding trimmed.
    pub fn firmware_revision(&self) -> Cow<'_, str> {
        ascii_field(&self.fr)
    }

    /// NVM Subsystem NQN up to its NUL terminator.
    pub fn subsystem_nqn(&self) -> Cow<'_, str> {
        let end = self
            .subnqn
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.subnqn.len());
        String::from_utf8_lossy(&self.subnqn[..end])
    }

    /// Sets the Serial Number, space padded to 20 bytes.
    pub fn set_serial_number(&mut self, text: &str) {
        set_ascii_field(&mut self.sn, text);
    }

    /// Sets the Model Number, space padded to 40 bytes.
    pub fn set_model_number(&mut self, text: &str) {
        set_ascii_field(&mut self.mn, text);
    }

    /// Sets the Firmware Revision, space padded to 8 bytes.
    pub fn set_firmware_revision(&mut self, text: &str) {
        set_ascii_field(&mut self.fr, text);
    }

    /// Largest transfer of one command in bytes, or `None` when MDTS reports no limit.
    ///
    /// `min_page_size` is CAP.MPSMIN in bytes ([`crate::Cap::min_page_size`]).
    pub fn max_transfer_bytes(&self, min_page_size: u64) -> Option<u64> {
        if self.mdts == 0 {
            return None;
        }
        let bytes = u128::from(min_page_size) << self.mdts.min(64);
        Some(u64::try_from(bytes).unwrap_or(u64::MAX))
    }

    /// Whether the controller supports Doorbell Buffer Config (OACS bit 8).
    pub const fn supports_doorbell_buffer_config(&self) -> bool {
        self.oacs.doorbell_buffer_config()
    }

    /// Whether a volatile write cache is present (VWC bit 0).
    pub const fn has_volatile_write_cache(&self) -> bool {
        self.vwc.present()
    }

    /// Number of Error Information log entries kept (ELPE + 1).
    pub const fn error_log_entries(&self) -> u16 {
        self.elpe as u16 + 1
    }

    /// Most Abort commands outstanding at once (ACL + 1).
    pub const fn abort_limit(&self) -> u16 {
        self.acl as u16 + 1
    }

    /// Most Asynchronous Event Requests outstanding at once (AERL + 1).
    pub const fn async_event_limit(&self) -> u16 {
        self.aerl as u16 + 1
    }

    /// Total NVM Capacity in bytes.
    pub const fn total_capacity(&self) -> u128 {
        u128::from_le_bytes(self.tnvmcap)
    }

    /// Unallocated NVM Capacity in bytes.
    pub const fn unallocated_capacity(&self) -> u128 {
        u128::from_le_bytes(self.unvmcap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn controller_fields_sit_at_spec_offsets() {
        assert_eq!(offset_of!(IdentifyController, sn), 4);
        assert_eq!(offset_of!(IdentifyController, mn), 24);
        assert_eq!(offset_of!(IdentifyController, fr), 64);
        assert_eq!(offset_of!(IdentifyController, rab), 72);
        assert_eq!(offset_of!(IdentifyController, ieee), 73);
        assert_eq!(offset_of!(IdentifyController, mdts), 77);
        assert_eq!(offset_of!(IdentifyController, cntlid), 78);
        assert_eq!(offset_of!(IdentifyController, ver), 80);
        assert_eq!(offset_of!(IdentifyController, ctratt), 96);
        assert_eq!(offset_of!(IdentifyController, cntrltype), 111);
        assert_eq!(offset_of!(IdentifyController, crdt1), 128);
        assert_eq!(offset_of!(IdentifyController, oacs), 256);
        assert_eq!(offset_of!(IdentifyController, elpe), 262);
        assert_eq!(offset_of!(IdentifyController, wctemp), 266);
        assert_eq!(offset_of!(IdentifyController, tnvmcap), 280);
        assert_eq!(offset_of!(IdentifyController, kas), 320);
        assert_eq!(offset_of!(IdentifyController, sanicap), 328);
        assert_eq!(offset_of!(IdentifyController, pels), 352);
        assert_eq!(offset_of!(IdentifyController, megcap), 368);
        assert_eq!(offset_of!(IdentifyController, sqes), 512);
        assert_eq!(offset_of!(IdentifyController, maxcmd), 514);
        assert_eq!(offset_of!(IdentifyController, nn), 516);
        assert_eq!(offset_of!(IdentifyController, oncs), 520);
        assert_eq!(offset_of!(IdentifyController, fna), 524);
        assert_eq!(offset_of!(IdentifyController, vwc), 525);
        assert_eq!(offset_of!(IdentifyController, awun), 526);
        assert_eq!(offset_of!(IdentifyController, sgls), 536);
        assert_eq!(offset_of!(IdentifyController, maxcna), 560);
        assert_eq!(offset_of!(IdentifyController, subnqn), 768);
        assert_eq!(offset_of!(IdentifyController, psd), 2048);
        assert_eq!(offset_of!(IdentifyController, vs), 3072);
    }

    fn sample_controller() -> IdentifyController {
        let mut c = IdentifyController {
            vid: 0x1b36,
            ssvid: 0x1af4,
            ieee: [0x00, 0x54, 0x52],
            mdts: 7,
            cntlid: 1,
            ver: Version::V1_4,
            oacs: Oacs::new()
                .with_format_nvm(true)
                .with_doorbell_buffer_config(true),
            acl: 3,
            aerl: 3,
            elpe: 63,
            sqes: QueueEntrySize::new().with_required(6).with_maximum(6),
            cqes: QueueEntrySize::new().with_required(4).with_maximum(4),
            nn: 256,
            oncs: Oncs::new()
                .with_compare(true)
                .with_dataset_management(true)
                .with_write_zeroes(true)
                .with_verify(true),
            vwc: Vwc::new().with_present(true).with_flush_broadcast(3),
            sgls: Sgls::new().with_support(1),
            tnvmcap: (1u128 << 40).to_le_bytes(),
            ..Default::default()
        };
        c.set_serial_number("deadbeef");
        c.set_model_number("QEMU NVMe Ctrl");
        c.set_firmware_revision("7.2.0");
        c
    }

    #[test]
    fn sgls_decodes_support_alignment_and_metadata_bits() {
        let none = Sgls::from_bits(0);
        assert!(!none.supported());
        let qemu = Sgls::from_bits(0x1 | (1 << 19));
        assert!(qemu.supported() && !qemu.dword_aligned() && qemu.mptr_sgl());
        let dword = Sgls::from_bits(0x2 | (1 << 17) | (1 << 18));
        assert!(dword.supported() && dword.dword_aligned());
        assert!(dword.byte_aligned_metadata() && dword.length_larger_than_data());
        assert!(!dword.mptr_sgl());
        assert!(!Sgls::from_bits(0x3).supported(), "11b is reserved");
    }

    #[test]
    fn controller_encodes_spec_bytes_and_round_trips() {
        let c = sample_controller();
        let page = c.encode();
        assert_eq!(&page[0..2], &0x1b36u16.to_le_bytes());
        assert_eq!(&page[4..24], b"deadbeef            ");
        assert_eq!(&page[24..38], b"QEMU NVMe Ctrl");
        assert_eq!(page[38], b' ');
        assert_eq!(page[77], 7);
        assert_eq!(&page[80..84], &0x0001_0400u32.to_le_bytes());
        assert_eq!(
            u16::from_le_bytes([page[256], page[257]]),
            (1 << 8) | (1 << 1)
        );
        assert_eq!(page[512], 0x66);
        assert_eq!(page[513], 0x44);
        assert_eq!(&page[516..520], &256u32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([page[520], page[521]]), 0b1000_1101);
        assert_eq!(page[525], 0b111);
        let back = IdentifyController::parse(&page).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.serial_number(), "deadbeef");
        assert_eq!(back.model_number(), "QEMU NVMe Ctrl");
        assert_eq!(back.firmware_revision(), "7.2.0");
        assert!(back.oncs.write_zeroes() && back.oncs.dataset_management());
        assert!(back.oncs.verify() && back.oncs.compare());
        assert!(!back.oncs.write_uncorrectable());
        assert!(back.supports_doorbell_buffer_config());
        assert!(back.has_volatile_write_cache());
        assert_eq!(back.error_log_entries(), 64);
        assert_eq!(back.total_capacity(), 1 << 40);
    }

    #[test]
    fn max_transfer_is_min_page_shifted_by_mdts_and_zero_means_unlimited() {
        let mut c = sample_controller();
        assert_eq!(c.max_transfer_bytes(4096), Some(512 * 1024));
        c.mdts = 0;
        assert_eq!(c.max_transfer_bytes(4096), None);
        c.mdts = 255;
        assert_eq!(c.max_transfer_bytes(4096), Some(u64::MAX));
    }

    #[test]
    fn string_fields_trim_padding_and_nuls_and_survive_bad_utf8() {
        let mut c = IdentifyController {
            sn: *b"  S3EVNX0K123456\0\0\0\0",
            ..Default::default()
        };
        assert_eq!(c.serial_number(), "S3EVNX0K123456");
        c.fr[..3].copy_from_slice(&[0xff, b'1', b'2']);
        assert_eq!(c.firmware_revision(), "\u{fffd}12");
        c.set_model_number(&"x".repeat(50));
        assert_eq!(c.model_number().len(), 40);
        c.set_firmware_revision("é");
        assert_eq!(c.firmware_revision(), "??");
    }

    #[test]
    fn short_buffer_is_a_typed_error() {
        assert_eq!(
            IdentifyController::parse(&[0u8; 4095]),
            Err(Error::BufferTooShort {
                structure: "Identify Controller data",
                needed: 4096,
                actual: 4095
            })
        );
        assert!(matches!(
            crate::identify::IdentifyNamespace::parse(&[]),
            Err(Error::BufferTooShort {
                needed: 4096,
                actual: 0,
                ..
            })
        ));
        let mut long = vec![0u8; 8192];
        long[0] = 0x34;
        assert_eq!(IdentifyController::parse(&long).unwrap().vid, 0x34);
    }
}

/// Identify Controller's NVMe over Fabrics fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FabricsFields {
    /// I/O Queue Command Capsule Supported Size, in 16-byte units.
    pub ioccsz: u32,
    /// I/O Queue Response Capsule Supported Size, in 16-byte units.
    pub iorcsz: u32,
    /// In Capsule Data Offset, in 16-byte units.
    pub icdoff: u16,
    /// Fabrics Controller Attributes.
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors.
    pub msdbd: u8,
    /// Optional Fabric Commands Support.
    pub ofcs: u16,
}
