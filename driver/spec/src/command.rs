//! Queue entries: the 64-byte submission queue entry, the 16-byte completion
//! queue entry, and the admin and NVM opcodes (NVMe Base Specification 2.0,
//! sections 4.2, 4.6 and 5; NVM Command Set Specification 1.0, section 3).
//!
//! Command builders and field decoders for particular commands live in
//! the `admin` and `nvm` modules; this module holds only the common layout.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sgl::SglDescriptor;
use crate::status::Status;

/// Size of a submission queue entry in bytes (CC.IOSQES = 6).
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry in bytes (CC.IOCQES = 4).
pub const CQE_SIZE: usize = 16;
/// log2 of [`SQE_SIZE`], the value for CC.IOSQES.
pub const SQE_SIZE_SHIFT: u8 = 6;
/// log2 of [`CQE_SIZE`], the value for CC.IOCQES.
pub const CQE_SIZE_SHIFT: u8 = 4;

/// The NSID meaning "all namespaces" (or "no particular namespace" for some commands).
pub const NSID_ALL: u32 = 0xffff_ffff;

/// Fused operation field (CDW0.FUSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fuse {
    /// Normal operation.
    Normal = 0,
    /// First command of a fused operation.
    First = 1,
    /// Second command of a fused operation.
    Second = 2,
    /// Reserved value 11b.
    Reserved = 3,
}

impl Fuse {
    /// Decodes the 2-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Normal,
            1 => Self::First,
            2 => Self::Second,
            _ => Self::Reserved,
        }
    }

    /// Encodes the 2-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// PRP or SGL for Data Transfer (CDW0.PSDT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Psdt {
    /// PRPs are used for this transfer.
    Prp = 0,
    /// SGLs are used; MPTR holds the metadata buffer address.
    SglMptrContiguous = 1,
    /// SGLs are used; MPTR holds the address of an SGL segment for metadata.
    SglMptrSgl = 2,
    /// Reserved value 11b.
    Reserved = 3,
}

impl Psdt {
    /// Decodes the 2-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Prp,
            1 => Self::SglMptrContiguous,
            2 => Self::SglMptrSgl,
            _ => Self::Reserved,
        }
    }

    /// Encodes the 2-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Command Dword 0, common to every command.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Cdw0 {
    /// Opcode.
    pub opcode: u8,
    /// Fused Operation.
    #[bits(2)]
    pub fuse: Fuse,
    #[bits(4)]
    __: u8,
    /// PRP or SGL for Data Transfer.
    #[bits(2)]
    pub psdt: Psdt,
    /// Command Identifier, echoed in the completion.
    pub cid: u16,
}

/// A submission queue entry (64 bytes, little endian on the wire).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SubmissionEntry {
    /// Command Dword 0: opcode, fuse, PSDT, command identifier.
    pub cdw0: Cdw0,
    /// Namespace Identifier.
    pub nsid: u32,
    /// Command Dword 2 (command specific).
    pub cdw2: u32,
    /// Command Dword 3 (command specific).
    pub cdw3: u32,
    /// Metadata Pointer.
    pub mptr: u64,
    /// Data Pointer, first PRP entry.
    pub prp1: u64,
    /// Data Pointer, second PRP entry or PRP list pointer.
    pub prp2: u64,
    /// Command Dword 10.
    pub cdw10: u32,
    /// Command Dword 11.
    pub cdw11: u32,
    /// Command Dword 12.
    pub cdw12: u32,
    /// Command Dword 13.
    pub cdw13: u32,
    /// Command Dword 14.
    pub cdw14: u32,
    /// Command Dword 15.
    pub cdw15: u32,
}

const _: () = assert!(size_of::<SubmissionEntry>() == SQE_SIZE);
const _: () = assert!(size_of::<Cdw0>() == 4);

impl SubmissionEntry {
    /// An all-zero entry carrying `opcode`.
    pub const fn new(opcode: u8) -> Self {
        Self {
            cdw0: Cdw0::new().with_opcode(opcode),
            nsid: 0,
            cdw2: 0,
            cdw3: 0,
            mptr: 0,
            prp1: 0,
            prp2: 0,
            cdw10: 0,
            cdw11: 0,
            cdw12: 0,
            cdw13: 0,
            cdw14: 0,
            cdw15: 0,
        }
    }

    /// The opcode byte (CDW0 bits 7:0).
    pub const fn opcode(&self) -> u8 {
        self.cdw0.opcode()
    }

    /// The opcode read as an admin command.
    pub const fn admin_opcode(&self) -> AdminOpcode {
        AdminOpcode(self.cdw0.opcode())
    }

    /// The opcode read as an NVM I/O command.
    pub const fn nvm_opcode(&self) -> NvmOpcode {
        NvmOpcode(self.cdw0.opcode())
    }

    /// The command identifier (CDW0 bits 31:16).
    pub const fn cid(&self) -> u16 {
        self.cdw0.cid()
    }

    /// Sets the command identifier.
    pub const fn set_cid(&mut self, cid: u16) {
        self.cdw0.set_cid(cid);
    }

    /// Sets the data pointer to the PRP entries `prp1` and `prp2`, and PSDT to PRP.
    pub const fn set_prp(&mut self, prp1: u64, prp2: u64) {
        self.cdw0.set_psdt(Psdt::Prp);
        self.prp1 = prp1;
        self.prp2 = prp2;
    }

    /// Sets the data pointer to the SGL descriptor `sgl1` and PSDT to `psdt`
    /// ([`Psdt::SglMptrContiguous`] or [`Psdt::SglMptrSgl`], which says what MPTR holds).
    pub const fn set_sgl(&mut self, sgl1: SglDescriptor, psdt: Psdt) {
        self.cdw0.set_psdt(psdt);
        let [address, rest] = sgl1.to_qwords();
        self.prp1 = address;
        self.prp2 = rest;
    }

    /// The data pointer read as SGL Entry 1 (meaningful when PSDT selects SGLs).
    pub const fn sgl1(&self) -> SglDescriptor {
        SglDescriptor::from_qwords([self.prp1, self.prp2])
    }

    /// Sets the namespace identifier.
    pub const fn set_nsid(&mut self, nsid: u32) {
        self.nsid = nsid;
    }

    /// The command as its 64 wire bytes.
    pub const fn to_bytes(&self) -> [u8; SQE_SIZE] {
        zerocopy::transmute!(*self)
    }

    /// The command read from its 64 wire bytes.
    pub const fn from_bytes(bytes: &[u8; SQE_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// A completion queue entry (16 bytes, little endian on the wire).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CompletionEntry {
    /// Dword 0: command specific result.
    pub dw0: u32,
    /// Dword 1: command specific result.
    pub dw1: u32,
    /// SQ Head Pointer: how far the controller has consumed the submission queue.
    pub sq_head: u16,
    /// SQ Identifier of the queue the command came from.
    pub sq_id: u16,
    /// Command Identifier of the completed command.
    pub cid: u16,
    /// Status field; bit 0 is the phase tag.
    pub status: Status,
}

const _: () = assert!(size_of::<CompletionEntry>() == CQE_SIZE);

impl CompletionEntry {
    /// The phase tag (status bit 0), which flips on each pass through the queue.
    pub const fn phase(&self) -> bool {
        self.status.phase()
    }

    /// The entry as its 16 wire bytes.
    pub const fn to_bytes(&self) -> [u8; CQE_SIZE] {
        zerocopy::transmute!(*self)
    }

    /// The entry read from its 16 wire bytes.
    pub const fn from_bytes(bytes: &[u8; CQE_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// Declares an open opcode type: a newtype over the wire byte with named
/// constants, so unknown opcodes from the wire stay representable.
macro_rules! opcodes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $konst:ident = $value:expr => $text:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$vmeta])* pub const $konst: Self = Self($value);)*

            /// Every opcode with a name, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$konst),*];

            /// The specification's name for the command, or `None` if unknown.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}({:#04x})", name, self.0),
                    None => write!(f, "{}({:#04x})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "opcode {:#04x}", self.0),
                }
            }
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                Self(value)
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

opcodes! {
    /// Admin command opcodes (NVMe Base Specification 2.0, figure 141).
    AdminOpcode {
        /// Delete I/O Submission Queue.
        DELETE_IO_SQ = 0x00 => "Delete I/O Submission Queue",
        /// Create I/O Submission Queue.
        CREATE_IO_SQ = 0x01 => "Create I/O Submission Queue",
        /// Get Log Page.
        GET_LOG_PAGE = 0x02 => "Get Log Page",
        /// Delete I/O Completion Queue.
        DELETE_IO_CQ = 0x04 => "Delete I/O Completion Queue",
        /// Create I/O Completion Queue.
        CREATE_IO_CQ = 0x05 => "Create I/O Completion Queue",
        /// Identify.
        IDENTIFY = 0x06 => "Identify",
        /// Abort.
        ABORT = 0x08 => "Abort",
        /// Set Features.
        SET_FEATURES = 0x09 => "Set Features",
        /// Get Features.
        GET_FEATURES = 0x0a => "Get Features",
        /// Asynchronous Event Request.
        ASYNC_EVENT_REQUEST = 0x0c => "Asynchronous Event Request",
        /// Namespace Management.
        NAMESPACE_MANAGEMENT = 0x0d => "Namespace Management",
        /// Firmware Commit.
        FIRMWARE_COMMIT = 0x10 => "Firmware Commit",
        /// Firmware Image Download.
        FIRMWARE_IMAGE_DOWNLOAD = 0x11 => "Firmware Image Download",
        /// Device Self-test.
        DEVICE_SELF_TEST = 0x14 => "Device Self-test",
        /// Namespace Attachment.
        NAMESPACE_ATTACHMENT = 0x15 => "Namespace Attachment",
        /// Keep Alive.
        KEEP_ALIVE = 0x18 => "Keep Alive",
        /// Directive Send.
        DIRECTIVE_SEND = 0x19 => "Directive Send",
        /// Directive Receive.
        DIRECTIVE_RECEIVE = 0x1a => "Directive Receive",
        /// Virtualization Management.
        VIRTUALIZATION_MANAGEMENT = 0x1c => "Virtualization Management",
        /// NVMe-MI Send.
        NVME_MI_SEND = 0x1d => "NVMe-MI Send",
        /// NVMe-MI Receive.
        NVME_MI_RECEIVE = 0x1e => "NVMe-MI Receive",
        /// Capacity Management.
        CAPACITY_MANAGEMENT = 0x20 => "Capacity Management",
        /// Lockdown.
        LOCKDOWN = 0x24 => "Lockdown",
        /// Doorbell Buffer Config.
        DOORBELL_BUFFER_CONFIG = 0x7c => "Doorbell Buffer Config",
        /// Format NVM.
        FORMAT_NVM = 0x80 => "Format NVM",
        /// Security Send.
        SECURITY_SEND = 0x81 => "Security Send",
        /// Security Receive.
        SECURITY_RECEIVE = 0x82 => "Security Receive",
        /// Sanitize.
        SANITIZE = 0x84 => "Sanitize",
        /// Get LBA Status.
        GET_LBA_STATUS = 0x86 => "Get LBA Status",
    }
}

opcodes! {
    /// NVM Command Set I/O opcodes (NVM Command Set Specification 1.0, figure 18).
    NvmOpcode {
        /// Flush.
        FLUSH = 0x00 => "Flush",
        /// Write.
        WRITE = 0x01 => "Write",
        /// Read.
        READ = 0x02 => "Read",
        /// Write Uncorrectable.
        WRITE_UNCORRECTABLE = 0x04 => "Write Uncorrectable",
        /// Compare.
        COMPARE = 0x05 => "Compare",
        /// Write Zeroes.
        WRITE_ZEROES = 0x08 => "Write Zeroes",
        /// Dataset Management.
        DATASET_MANAGEMENT = 0x09 => "Dataset Management",
        /// Verify.
        VERIFY = 0x0c => "Verify",
        /// Reservation Register.
        RESERVATION_REGISTER = 0x0d => "Reservation Register",
        /// Reservation Report.
        RESERVATION_REPORT = 0x0e => "Reservation Report",
        /// Reservation Acquire.
        RESERVATION_ACQUIRE = 0x11 => "Reservation Acquire",
        /// Reservation Release.
        RESERVATION_RELEASE = 0x15 => "Reservation Release",
        /// Copy.
        COPY = 0x19 => "Copy",
        /// Zone Management Send (Zoned Namespace Command Set Specification 1.1, section 3.4.3).
        ZONE_MANAGEMENT_SEND = 0x79 => "Zone Management Send",
        /// Zone Management Receive (Zoned Namespace Command Set Specification 1.1, section 3.4.2).
        ZONE_MANAGEMENT_RECEIVE = 0x7a => "Zone Management Receive",
        /// Zone Append (Zoned Namespace Command Set Specification 1.1, section 3.4.1).
        ZONE_APPEND = 0x7d => "Zone Append",
    }
}

impl NvmOpcode {
    /// Whether the command transfers data from host to controller (opcode bits 1:0 = 01b).
    pub const fn is_host_to_controller(self) -> bool {
        self.0 & 3 == 1
    }

    /// Whether the command transfers data from controller to host (opcode bits 1:0 = 10b).
    pub const fn is_controller_to_host(self) -> bool {
        self.0 & 3 == 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::GenericStatus;

    #[test]
    fn sqe_fields_sit_at_spec_byte_offsets() {
        let mut sqe = SubmissionEntry::new(NvmOpcode::READ.0);
        sqe.set_cid(0xbeef);
        sqe.nsid = 0x0102_0304;
        sqe.mptr = 0x1111_2222_3333_4444;
        sqe.set_prp(0xaaaa_0000_1000, 0xbbbb_0000_2000);
        sqe.cdw10 = 10;
        sqe.cdw15 = 15;
        let b = sqe.to_bytes();
        assert_eq!(b[0], 0x02);
        assert_eq!(&b[2..4], &0xbeefu16.to_le_bytes());
        assert_eq!(&b[4..8], &0x0102_0304u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x1111_2222_3333_4444u64.to_le_bytes());
        assert_eq!(&b[24..32], &0xaaaa_0000_1000u64.to_le_bytes());
        assert_eq!(&b[32..40], &0xbbbb_0000_2000u64.to_le_bytes());
        assert_eq!(&b[40..44], &10u32.to_le_bytes());
        assert_eq!(&b[60..64], &15u32.to_le_bytes());
        assert_eq!(SubmissionEntry::from_bytes(&b), sqe);
    }

    #[test]
    fn sgl1_occupies_the_data_pointer_and_sets_psdt() {
        let mut sqe = SubmissionEntry::new(0x02);
        let d = SglDescriptor::last_segment(0xabc000, 4);
        sqe.set_sgl(d, Psdt::SglMptrSgl);
        assert_eq!(sqe.cdw0.psdt(), Psdt::SglMptrSgl);
        let bytes = sqe.to_bytes();
        assert_eq!(&bytes[24..40], &d.to_bytes());
        assert_eq!(sqe.sgl1(), d);
        sqe.set_prp(0x1000, 0);
        assert_eq!(sqe.cdw0.psdt(), Psdt::Prp);
    }

    #[test]
    fn cdw0_packs_opcode_fuse_psdt_and_cid() {
        let cdw0 = Cdw0::new()
            .with_opcode(0x7c)
            .with_fuse(Fuse::Second)
            .with_psdt(Psdt::SglMptrSgl)
            .with_cid(0x1234);
        assert_eq!(u32::from(cdw0), 0x1234_0000 | (2 << 14) | (2 << 8) | 0x7c);
        assert_eq!(Cdw0::from(u32::from(cdw0)).fuse(), Fuse::Second);
    }

    #[test]
    fn set_prp_selects_prp_transfer() {
        let mut sqe = SubmissionEntry::default();
        sqe.cdw0.set_psdt(Psdt::SglMptrContiguous);
        sqe.set_prp(0x1000, 0);
        assert_eq!(sqe.cdw0.psdt(), Psdt::Prp);
    }

    #[test]
    fn cqe_fields_sit_at_spec_byte_offsets_and_phase_is_status_bit_0() {
        let cqe = CompletionEntry {
            dw0: 0xdead_beef,
            dw1: 7,
            sq_head: 0x12,
            sq_id: 3,
            cid: 0x4455,
            status: Status::generic(GenericStatus::LbaOutOfRange).with_phase(true),
        };
        let b = cqe.to_bytes();
        assert_eq!(&b[0..4], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&b[8..10], &0x12u16.to_le_bytes());
        assert_eq!(&b[10..12], &3u16.to_le_bytes());
        assert_eq!(&b[12..14], &0x4455u16.to_le_bytes());
        assert_eq!(u16::from_le_bytes([b[14], b[15]]), (0x80 << 1) | 1);
        assert!(cqe.phase());
        assert_eq!(CompletionEntry::from_bytes(&b), cqe);
    }

    #[test]
    fn opcodes_carry_spec_values_and_names() {
        assert_eq!(AdminOpcode::IDENTIFY.0, 0x06);
        assert_eq!(AdminOpcode::DOORBELL_BUFFER_CONFIG.0, 0x7c);
        assert_eq!(
            AdminOpcode::CREATE_IO_CQ.to_string(),
            "Create I/O Completion Queue"
        );
        assert_eq!(NvmOpcode::WRITE_ZEROES.0, 0x08);
        assert_eq!(
            NvmOpcode::DATASET_MANAGEMENT.name(),
            Some("Dataset Management")
        );
        assert_eq!(NvmOpcode(0x7f).name(), None);
        assert_eq!(NvmOpcode(0x7f).to_string(), "opcode 0x7f");
        assert!(NvmOpcode::WRITE.is_host_to_controller());
        assert!(NvmOpcode::READ.is_controller_to_host());
        assert!(!NvmOpcode::FLUSH.is_host_to_controller());
    }
}
