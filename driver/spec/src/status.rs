//! Completion status (NVMe Base Specification 2.0, section 4.6.1; NVM Command
//! Set Specification 1.0, section 4.1.1).
//!
//! [`Status`] is the 16-bit status field of a completion queue entry, phase
//! tag included, stored unchanged: any value the device posts, defined or not,
//! round-trips through [`Status::from_raw`] and [`Status::raw`]. Decoding into
//! named codes happens on demand with [`Status::code`].

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Status Code Type (SCT), status field bits 11:9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatusCodeType {
    /// Generic Command Status.
    Generic = 0,
    /// Command Specific Status.
    CommandSpecific = 1,
    /// Media and Data Integrity Errors.
    MediaAndDataIntegrity = 2,
    /// Path Related Status.
    PathRelated = 3,
    /// Reserved value 4h.
    Reserved4 = 4,
    /// Reserved value 5h.
    Reserved5 = 5,
    /// Reserved value 6h.
    Reserved6 = 6,
    /// Vendor Specific.
    VendorSpecific = 7,
}

impl StatusCodeType {
    /// Decodes the 3-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Generic,
            1 => Self::CommandSpecific,
            2 => Self::MediaAndDataIntegrity,
            3 => Self::PathRelated,
            4 => Self::Reserved4,
            5 => Self::Reserved5,
            6 => Self::Reserved6,
            _ => Self::VendorSpecific,
        }
    }

    /// Encodes the 3-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }

    /// The specification's name for the status code type.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Generic => "Generic Command Status",
            Self::CommandSpecific => "Command Specific Status",
            Self::MediaAndDataIntegrity => "Media and Data Integrity Errors",
            Self::PathRelated => "Path Related Status",
            Self::Reserved4 | Self::Reserved5 | Self::Reserved6 => "Reserved",
            Self::VendorSpecific => "Vendor Specific",
        }
    }
}

impl core::fmt::Display for StatusCodeType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The status field of a completion queue entry (16 bits, bit 0 is the phase tag).
#[bitfield(u16, debug = false)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Status {
    /// Phase Tag.
    pub phase: bool,
    /// Status Code, interpreted according to `sct`.
    pub sc: u8,
    /// Status Code Type.
    #[bits(3)]
    pub sct: StatusCodeType,
    /// Command Retry Delay: which CRDT field of Identify Controller to wait before retrying.
    #[bits(2)]
    pub crd: u8,
    /// More: extra information is available in the Error Information log page.
    pub more: bool,
    /// Do Not Retry: the same command is expected to fail if resubmitted.
    pub dnr: bool,
}

impl Status {
    /// Successful Completion, phase 0.
    pub const SUCCESS: Self = Self::new();

    /// The status field exactly as posted in a completion.
    pub const fn from_raw(raw: u16) -> Self {
        Self::from_bits(raw)
    }

    /// The status field exactly as it would be posted in a completion.
    pub const fn raw(self) -> u16 {
        self.into_bits()
    }

    /// A status with the given type and code; phase, CRD, More and DNR clear.
    pub const fn from_parts(sct: StatusCodeType, sc: u8) -> Self {
        Self::new().with_sct(sct).with_sc(sc)
    }

    /// A Generic Command Status.
    pub const fn generic(code: GenericStatus) -> Self {
        Self::from_parts(StatusCodeType::Generic, code as u8)
    }

    /// A Command Specific Status.
    pub const fn command_specific(code: CommandSpecificStatus) -> Self {
        Self::from_parts(StatusCodeType::CommandSpecific, code as u8)
    }

    /// A Media and Data Integrity Error.
    pub const fn media(code: MediaStatus) -> Self {
        Self::from_parts(StatusCodeType::MediaAndDataIntegrity, code as u8)
    }

    /// A Path Related Status.
    pub const fn path(code: PathStatus) -> Self {
        Self::from_parts(StatusCodeType::PathRelated, code as u8)
    }

    /// Whether the command succeeded (SCT 0, SC 0), whatever the phase and DNR bits say.
    pub const fn is_success(self) -> bool {
        self.sc() == 0 && matches!(self.sct(), StatusCodeType::Generic)
    }

    /// The same status with the phase tag cleared, for comparing codes.
    pub const fn without_phase(self) -> Self {
        self.with_phase(false)
    }

    /// The same status with phase, CRD, More and DNR cleared: only SCT and SC.
    pub const fn code_only(self) -> Self {
        Self::from_parts(self.sct(), self.sc())
    }

    /// The status code decoded by type; unknown codes are kept as numbers.
    pub const fn code(self) -> StatusCode {
        let sc = self.sc();
        let sct = self.sct();
        let decoded = match sct {
            StatusCodeType::Generic => match GenericStatus::from_code(sc) {
                Some(c) => Some(StatusCode::Generic(c)),
                None => None,
            },
            StatusCodeType::CommandSpecific => match CommandSpecificStatus::from_code(sc) {
                Some(c) => Some(StatusCode::CommandSpecific(c)),
                None => None,
            },
            StatusCodeType::MediaAndDataIntegrity => match MediaStatus::from_code(sc) {
                Some(c) => Some(StatusCode::Media(c)),
                None => None,
            },
            StatusCodeType::PathRelated => match PathStatus::from_code(sc) {
                Some(c) => Some(StatusCode::Path(c)),
                None => None,
            },
            StatusCodeType::VendorSpecific => Some(StatusCode::Vendor(sc)),
            StatusCodeType::Reserved4 | StatusCodeType::Reserved5 | StatusCodeType::Reserved6 => {
                None
            }
        };
        match decoded {
            Some(code) => code,
            None => StatusCode::Unknown {
                sct: sct.into_bits(),
                sc,
            },
        }
    }
}

impl core::fmt::Debug for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Status")
            .field("code", &self.code())
            .field("sct", &self.sct().into_bits())
            .field("sc", &self.sc())
            .field("crd", &self.crd())
            .field("more", &self.more())
            .field("dnr", &self.dnr())
            .field("phase", &self.phase())
            .finish()
    }
}

/// Prints the code's name then its numbers, e.g.
/// `LBA Out of Range (SCT 0x0, SC 0x80, DNR)`.
impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let code = self.code();
        if matches!(code, StatusCode::Unknown { .. }) {
            f.write_str("Unknown status")?;
        } else {
            write!(f, "{code}")?;
        }
        write!(
            f,
            " (SCT {:#x}, SC {:#04x}",
            self.sct().into_bits(),
            self.sc()
        )?;
        if self.dnr() {
            f.write_str(", DNR")?;
        }
        if self.more() {
            f.write_str(", More")?;
        }
        f.write_str(")")
    }
}

/// A status code decoded by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// A Generic Command Status the specification defines.
    Generic(GenericStatus),
    /// A Command Specific Status the specification defines.
    CommandSpecific(CommandSpecificStatus),
    /// A Media and Data Integrity Error the specification defines.
    Media(MediaStatus),
    /// A Path Related Status the specification defines.
    Path(PathStatus),
    /// A Vendor Specific status code.
    Vendor(u8),
    /// A code the specification does not define (or reserves) for its type.
    Unknown {
        /// Status Code Type value.
        sct: u8,
        /// Status Code value.
        sc: u8,
    },
}

impl core::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Generic(c) => write!(f, "{c}"),
            Self::CommandSpecific(c) => write!(f, "{c}"),
            Self::Media(c) => write!(f, "{c}"),
            Self::Path(c) => write!(f, "{c}"),
            Self::Vendor(sc) => write!(f, "Vendor Specific status {sc:#04x}"),
            Self::Unknown { sct, sc } => write!(f, "Unknown status (SCT {sct:#x}, SC {sc:#04x})"),
        }
    }
}

/// Declares a closed enum of status codes with the specification's names.
macro_rules! status_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr => $text:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every defined code, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The code for the Status Code value `sc`, or `None` if undefined.
            pub const fn from_code(sc: u8) -> Option<Self> {
                match sc {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The Status Code value.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The specification's name for the code.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

status_codes! {
    /// Generic Command Status values (SCT 0; Base Specification figure 100,
    /// NVM Command Set Specification figure 31 for 80h and above).
    GenericStatus {
        /// The command completed without error.
        SuccessfulCompletion = 0x00 => "Successful Completion",
        /// Reserved or unsupported opcode.
        InvalidCommandOpcode = 0x01 => "Invalid Command Opcode",
        /// Reserved or unsupported value in a field other than the opcode.
        InvalidFieldInCommand = 0x02 => "Invalid Field in Command",
        /// The command identifier is already in use.
        CommandIdConflict = 0x03 => "Command ID Conflict",
        /// Transferring the data or metadata had an error.
        DataTransferError = 0x04 => "Data Transfer Error",
        /// Aborted due to a power loss notification.
        CommandsAbortedPowerLoss = 0x05 => "Commands Aborted due to Power Loss Notification",
        /// Internal error.
        InternalError = 0x06 => "Internal Error",
        /// Aborted by an Abort command.
        CommandAbortRequested = 0x07 => "Command Abort Requested",
        /// Aborted because its submission queue was deleted.
        CommandAbortedSqDeletion = 0x08 => "Command Aborted due to SQ Deletion",
        /// Aborted because the other fused command failed.
        CommandAbortedFailedFused = 0x09 => "Command Aborted due to Failed Fused Command",
        /// Aborted because the other fused command is missing.
        CommandAbortedMissingFused = 0x0a => "Command Aborted due to Missing Fused Command",
        /// The namespace or its format is invalid.
        InvalidNamespaceOrFormat = 0x0b => "Invalid Namespace or Format",
        /// Protocol violation in a multi-command sequence.
        CommandSequenceError = 0x0c => "Command Sequence Error",
        /// Invalid SGL Last Segment or SGL Segment descriptor.
        InvalidSglSegmentDescriptor = 0x0d => "Invalid SGL Segment Descriptor",
        /// Invalid number of SGL descriptors.
        InvalidNumberOfSglDescriptors = 0x0e => "Invalid Number of SGL Descriptors",
        /// Data SGL length invalid.
        DataSglLengthInvalid = 0x0f => "Data SGL Length Invalid",
        /// Metadata SGL length invalid.
        MetadataSglLengthInvalid = 0x10 => "Metadata SGL Length Invalid",
        /// SGL descriptor type invalid.
        SglDescriptorTypeInvalid = 0x11 => "SGL Descriptor Type Invalid",
        /// Invalid use of the controller memory buffer.
        InvalidUseOfControllerMemoryBuffer = 0x12 => "Invalid Use of Controller Memory Buffer",
        /// A PRP entry's offset is invalid.
        PrpOffsetInvalid = 0x13 => "PRP Offset Invalid",
        /// The length exceeds the atomic write unit.
        AtomicWriteUnitExceeded = 0x14 => "Atomic Write Unit Exceeded",
        /// Denied for lack of access rights.
        OperationDenied = 0x15 => "Operation Denied",
        /// SGL offset invalid.
        SglOffsetInvalid = 0x16 => "SGL Offset Invalid",
        /// Mixed 64-bit and 128-bit host identifiers.
        HostIdentifierInconsistentFormat = 0x18 => "Host Identifier Inconsistent Format",
        /// The keep alive timer expired.
        KeepAliveTimerExpired = 0x19 => "Keep Alive Timer Expired",
        /// The keep alive timeout is invalid.
        KeepAliveTimeoutInvalid = 0x1a => "Keep Alive Timeout Invalid",
        /// Aborted by a Reservation Acquire preempt and abort.
        CommandAbortedPreemptAndAbort = 0x1b => "Command Aborted due to Preempt and Abort",
        /// The last sanitize operation failed.
        SanitizeFailed = 0x1c => "Sanitize Failed",
        /// Prohibited while a sanitize is in progress.
        SanitizeInProgress = 0x1d => "Sanitize In Progress",
        /// SGL data block address or length granularity invalid.
        SglDataBlockGranularityInvalid = 0x1e => "SGL Data Block Granularity Invalid",
        /// Not supported for a queue in the controller memory buffer.
        CommandNotSupportedForQueueInCmb = 0x1f => "Command Not Supported for Queue in CMB",
        /// The namespace is write protected.
        NamespaceIsWriteProtected = 0x20 => "Namespace is Write Protected",
        /// Processing was interrupted; the host should retry.
        CommandInterrupted = 0x21 => "Command Interrupted",
        /// A transient transport error was detected.
        TransientTransportError = 0x22 => "Transient Transport Error",
        /// Prohibited by Command and Feature Lockdown.
        CommandProhibitedByLockdown = 0x23 => "Command Prohibited by Command and Feature Lockdown",
        /// Admin command needs media that is not ready.
        AdminCommandMediaNotReady = 0x24 => "Admin Command Media Not Ready",
        /// The command references an LBA beyond the namespace.
        LbaOutOfRange = 0x80 => "LBA Out of Range",
        /// The namespace capacity was exceeded.
        CapacityExceeded = 0x81 => "Capacity Exceeded",
        /// The namespace is not ready.
        NamespaceNotReady = 0x82 => "Namespace Not Ready",
        /// Conflict with a reservation on the namespace.
        ReservationConflict = 0x83 => "Reservation Conflict",
        /// A Format NVM command is in progress.
        FormatInProgress = 0x84 => "Format In Progress",
    }
}

status_codes! {
    /// Command Specific Status values (SCT 1; Base Specification figure 101,
    /// NVM Command Set Specification figure 32 for 80h and above).
    CommandSpecificStatus {
        /// The completion queue named by Create I/O SQ does not exist.
        CompletionQueueInvalid = 0x00 => "Completion Queue Invalid",
        /// The queue identifier is in use or out of range.
        InvalidQueueIdentifier = 0x01 => "Invalid Queue Identifier",
        /// The queue size is zero or exceeds CAP.MQES.
        InvalidQueueSize = 0x02 => "Invalid Queue Size",
        /// Too many outstanding Abort commands.
        AbortCommandLimitExceeded = 0x03 => "Abort Command Limit Exceeded",
        /// Too many outstanding Asynchronous Event Requests.
        AsyncEventRequestLimitExceeded = 0x05 => "Asynchronous Event Request Limit Exceeded",
        /// Invalid firmware slot.
        InvalidFirmwareSlot = 0x06 => "Invalid Firmware Slot",
        /// Invalid firmware image.
        InvalidFirmwareImage = 0x07 => "Invalid Firmware Image",
        /// The interrupt vector is invalid.
        InvalidInterruptVector = 0x08 => "Invalid Interrupt Vector",
        /// The log page is invalid or unsupported.
        InvalidLogPage = 0x09 => "Invalid Log Page",
        /// The format is invalid.
        InvalidFormat = 0x0a => "Invalid Format",
        /// Firmware activation requires a conventional reset.
        FirmwareActivationRequiresConventionalReset = 0x0b => "Firmware Activation Requires Conventional Reset",
        /// The queue cannot be deleted (e.g. a CQ with SQs attached).
        InvalidQueueDeletion = 0x0c => "Invalid Queue Deletion",
        /// The feature identifier is not saveable.
        FeatureIdentifierNotSaveable = 0x0d => "Feature Identifier Not Saveable",
        /// The feature is not changeable.
        FeatureNotChangeable = 0x0e => "Feature Not Changeable",
        /// The feature is not namespace specific.
        FeatureNotNamespaceSpecific = 0x0f => "Feature Not Namespace Specific",
        /// Firmware activation requires an NVM subsystem reset.
        FirmwareActivationRequiresNvmSubsystemReset = 0x10 => "Firmware Activation Requires NVM Subsystem Reset",
        /// Firmware activation requires a controller level reset.
        FirmwareActivationRequiresControllerLevelReset = 0x11 => "Firmware Activation Requires Controller Level Reset",
        /// Firmware activation would exceed the maximum time.
        FirmwareActivationRequiresMaximumTimeViolation = 0x12 => "Firmware Activation Requires Maximum Time Violation",
        /// Firmware activation is prohibited.
        FirmwareActivationProhibited = 0x13 => "Firmware Activation Prohibited",
        /// Overlapping range.
        OverlappingRange = 0x14 => "Overlapping Range",
        /// Insufficient capacity for the namespace.
        NamespaceInsufficientCapacity = 0x15 => "Namespace Insufficient Capacity",
        /// No namespace identifier available.
        NamespaceIdentifierUnavailable = 0x16 => "Namespace Identifier Unavailable",
        /// The namespace is already attached.
        NamespaceAlreadyAttached = 0x18 => "Namespace Already Attached",
        /// The namespace is private.
        NamespaceIsPrivate = 0x19 => "Namespace Is Private",
        /// The namespace is not attached.
        NamespaceNotAttached = 0x1a => "Namespace Not Attached",
        /// Thin provisioning is not supported.
        ThinProvisioningNotSupported = 0x1b => "Thin Provisioning Not Supported",
        /// The controller list is invalid.
        ControllerListInvalid = 0x1c => "Controller List Invalid",
        /// A device self-test is in progress.
        DeviceSelfTestInProgress = 0x1d => "Device Self-test In Progress",
        /// Boot partition write is prohibited.
        BootPartitionWriteProhibited = 0x1e => "Boot Partition Write Prohibited",
        /// Invalid controller identifier.
        InvalidControllerIdentifier = 0x1f => "Invalid Controller Identifier",
        /// Invalid secondary controller state.
        InvalidSecondaryControllerState = 0x20 => "Invalid Secondary Controller State",
        /// Invalid number of controller resources.
        InvalidNumberOfControllerResources = 0x21 => "Invalid Number of Controller Resources",
        /// Invalid resource identifier.
        InvalidResourceIdentifier = 0x22 => "Invalid Resource Identifier",
        /// Sanitize prohibited while the persistent memory region is enabled.
        SanitizeProhibitedWhilePmrEnabled = 0x23 => "Sanitize Prohibited While Persistent Memory Region is Enabled",
        /// ANA group identifier invalid.
        AnaGroupIdentifierInvalid = 0x24 => "ANA Group Identifier Invalid",
        /// ANA attach failed.
        AnaAttachFailed = 0x25 => "ANA Attach Failed",
        /// Insufficient capacity.
        InsufficientCapacity = 0x26 => "Insufficient Capacity",
        /// Namespace attachment limit exceeded.
        NamespaceAttachmentLimitExceeded = 0x27 => "Namespace Attachment Limit Exceeded",
        /// Prohibition of command execution is not supported.
        ProhibitionOfCommandExecutionNotSupported = 0x28 => "Prohibition of Command Execution Not Supported",
        /// I/O command set not supported.
        IoCommandSetNotSupported = 0x29 => "I/O Command Set Not Supported",
        /// I/O command set not enabled.
        IoCommandSetNotEnabled = 0x2a => "I/O Command Set Not Enabled",
        /// I/O command set combination rejected.
        IoCommandSetCombinationRejected = 0x2b => "I/O Command Set Combination Rejected",
        /// Invalid I/O command set.
        InvalidIoCommandSet = 0x2c => "Invalid I/O Command Set",
        /// Identifier unavailable.
        IdentifierUnavailable = 0x2d => "Identifier Unavailable",
        /// Conflicting attributes (e.g. Dataset Management or Write Zeroes).
        ConflictingAttributes = 0x80 => "Conflicting Attributes",
        /// Invalid protection information.
        InvalidProtectionInformation = 0x81 => "Invalid Protection Information",
        /// Attempted write to a read only range.
        AttemptedWriteToReadOnlyRange = 0x82 => "Attempted Write to Read Only Range",
        /// Command size limit exceeded.
        CommandSizeLimitExceeded = 0x83 => "Command Size Limit Exceeded",
        /// The zone operation is not valid for the zone (Zoned Namespace Command Set).
        InvalidZoneOperationRequest = 0xb6 => "Invalid Zone Operation Request",
        /// No zone random write area resources are available (Zoned Namespace Command Set).
        ZrwaResourcesUnavailable = 0xb7 => "ZRWA Resources Unavailable",
        /// The command crosses a zone boundary (Zoned Namespace Command Set).
        ZoneBoundaryError = 0xb8 => "Zone Boundary Error",
        /// The zone is in the Full state (Zoned Namespace Command Set).
        ZoneIsFull = 0xb9 => "Zone Is Full",
        /// The zone is in the Read Only state (Zoned Namespace Command Set).
        ZoneIsReadOnly = 0xba => "Zone Is Read Only",
        /// The zone is in the Offline state (Zoned Namespace Command Set).
        ZoneIsOffline = 0xbb => "Zone Is Offline",
        /// The write does not start at the zone's write pointer (Zoned Namespace Command Set).
        ZoneInvalidWrite = 0xbc => "Zone Invalid Write",
        /// Activating the zone would exceed Maximum Active Resources (Zoned Namespace Command Set).
        TooManyActiveZones = 0xbd => "Too Many Active Zones",
        /// Opening the zone would exceed Maximum Open Resources (Zoned Namespace Command Set).
        TooManyOpenZones = 0xbe => "Too Many Open Zones",
        /// The zone cannot go from its state to the one requested (Zoned Namespace Command Set).
        InvalidZoneStateTransition = 0xbf => "Invalid Zone State Transition",
    }
}

status_codes! {
    /// Media and Data Integrity Errors (SCT 2; NVM Command Set Specification figure 33).
    MediaStatus {
        /// Write data could not be committed to the media.
        WriteFault = 0x80 => "Write Fault",
        /// Read data could not be recovered from the media.
        UnrecoveredReadError = 0x81 => "Unrecovered Read Error",
        /// End-to-end guard check failure.
        EndToEndGuardCheckError = 0x82 => "End-to-end Guard Check Error",
        /// End-to-end application tag check failure.
        EndToEndApplicationTagCheckError = 0x83 => "End-to-end Application Tag Check Error",
        /// End-to-end reference tag check failure.
        EndToEndReferenceTagCheckError = 0x84 => "End-to-end Reference Tag Check Error",
        /// Miscompare during a Compare command.
        CompareFailure = 0x85 => "Compare Failure",
        /// Access to the namespace or LBA range is denied.
        AccessDenied = 0x86 => "Access Denied",
        /// Read or verify of a deallocated or unwritten block.
        DeallocatedOrUnwrittenLogicalBlock = 0x87 => "Deallocated or Unwritten Logical Block",
        /// End-to-end storage tag check failure.
        EndToEndStorageTagCheckError = 0x88 => "End-to-End Storage Tag Check Error",
    }
}

status_codes! {
    /// Path Related Status values (SCT 3; Base Specification figure 103).
    PathStatus {
        /// Controller internal error specific to this path.
        InternalPathError = 0x00 => "Internal Path Error",
        /// The namespace is in the ANA Persistent Loss state.
        AsymmetricAccessPersistentLoss = 0x01 => "Asymmetric Access Persistent Loss",
        /// The namespace is in the ANA Inaccessible state.
        AsymmetricAccessInaccessible = 0x02 => "Asymmetric Access Inaccessible",
        /// The namespace is changing ANA state.
        AsymmetricAccessTransition = 0x03 => "Asymmetric Access Transition",
        /// Pathing error detected by the controller.
        ControllerPathingError = 0x60 => "Controller Pathing Error",
        /// Pathing error detected by the host.
        HostPathingError = 0x70 => "Host Pathing Error",
        /// Aborted as a result of host action.
        CommandAbortedByHost = 0x71 => "Command Aborted By Host",
    }
}

impl From<GenericStatus> for Status {
    fn from(code: GenericStatus) -> Self {
        Self::generic(code)
    }
}

impl From<CommandSpecificStatus> for Status {
    fn from(code: CommandSpecificStatus) -> Self {
        Self::command_specific(code)
    }
}

impl From<MediaStatus> for Status {
    fn from(code: MediaStatus) -> Self {
        Self::media(code)
    }
}

impl From<PathStatus> for Status {
    fn from(code: PathStatus) -> Self {
        Self::path(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_follow_spec_layout() {
        let s = Status::generic(GenericStatus::InvalidFieldInCommand)
            .with_dnr(true)
            .with_more(true)
            .with_crd(2)
            .with_phase(true);
        assert_eq!(s.raw(), 0x8000 | 0x4000 | (2 << 12) | (0x02 << 1) | 1);
        let media = Status::media(MediaStatus::UnrecoveredReadError);
        assert_eq!(media.raw(), (2 << 9) | (0x81 << 1));
        assert_eq!(media.sct(), StatusCodeType::MediaAndDataIntegrity);
        assert_eq!(media.sc(), 0x81);
    }

    #[test]
    fn every_raw_status_round_trips_and_decodes_without_panic() {
        for raw in 0..=u16::MAX {
            let s = Status::from_raw(raw);
            assert_eq!(s.raw(), raw);
            let _ = s.code();
            assert!(!s.to_string().is_empty());
        }
    }

    #[test]
    fn success_ignores_phase_and_requires_generic_zero() {
        assert!(Status::SUCCESS.is_success());
        assert!(Status::SUCCESS.with_phase(true).is_success());
        assert!(!Status::from_parts(StatusCodeType::CommandSpecific, 0).is_success());
        assert!(!Status::generic(GenericStatus::InternalError).is_success());
    }

    #[test]
    fn names_match_the_specification() {
        use CommandSpecificStatus as C;
        use GenericStatus as G;
        use MediaStatus as M;
        let cases: &[(Status, &str)] = &[
            (G::SuccessfulCompletion.into(), "Successful Completion"),
            (G::InvalidCommandOpcode.into(), "Invalid Command Opcode"),
            (G::InvalidFieldInCommand.into(), "Invalid Field in Command"),
            (G::CommandIdConflict.into(), "Command ID Conflict"),
            (G::DataTransferError.into(), "Data Transfer Error"),
            (
                G::CommandsAbortedPowerLoss.into(),
                "Commands Aborted due to Power Loss Notification",
            ),
            (G::InternalError.into(), "Internal Error"),
            (G::CommandAbortRequested.into(), "Command Abort Requested"),
            (
                G::CommandAbortedSqDeletion.into(),
                "Command Aborted due to SQ Deletion",
            ),
            (
                G::InvalidNamespaceOrFormat.into(),
                "Invalid Namespace or Format",
            ),
            (G::LbaOutOfRange.into(), "LBA Out of Range"),
            (G::CapacityExceeded.into(), "Capacity Exceeded"),
            (G::NamespaceNotReady.into(), "Namespace Not Ready"),
            (G::PrpOffsetInvalid.into(), "PRP Offset Invalid"),
            (
                G::InvalidSglSegmentDescriptor.into(),
                "Invalid SGL Segment Descriptor",
            ),
            (
                G::SglDataBlockGranularityInvalid.into(),
                "SGL Data Block Granularity Invalid",
            ),
            (C::CompletionQueueInvalid.into(), "Completion Queue Invalid"),
            (C::InvalidQueueIdentifier.into(), "Invalid Queue Identifier"),
            (C::InvalidQueueSize.into(), "Invalid Queue Size"),
            (
                C::AbortCommandLimitExceeded.into(),
                "Abort Command Limit Exceeded",
            ),
            (
                C::AsyncEventRequestLimitExceeded.into(),
                "Asynchronous Event Request Limit Exceeded",
            ),
            (C::InvalidLogPage.into(), "Invalid Log Page"),
            (C::InvalidInterruptVector.into(), "Invalid Interrupt Vector"),
            (C::InvalidQueueDeletion.into(), "Invalid Queue Deletion"),
            (
                C::FeatureIdentifierNotSaveable.into(),
                "Feature Identifier Not Saveable",
            ),
            (C::ConflictingAttributes.into(), "Conflicting Attributes"),
            (C::ZoneBoundaryError.into(), "Zone Boundary Error"),
            (C::ZoneIsFull.into(), "Zone Is Full"),
            (C::ZoneIsReadOnly.into(), "Zone Is Read Only"),
            (C::ZoneIsOffline.into(), "Zone Is Offline"),
            (C::ZoneInvalidWrite.into(), "Zone Invalid Write"),
            (C::TooManyActiveZones.into(), "Too Many Active Zones"),
            (C::TooManyOpenZones.into(), "Too Many Open Zones"),
            (
                C::InvalidZoneStateTransition.into(),
                "Invalid Zone State Transition",
            ),
            (M::WriteFault.into(), "Write Fault"),
            (M::UnrecoveredReadError.into(), "Unrecovered Read Error"),
            (
                M::EndToEndGuardCheckError.into(),
                "End-to-end Guard Check Error",
            ),
            (M::CompareFailure.into(), "Compare Failure"),
            (M::AccessDenied.into(), "Access Denied"),
            (
                M::DeallocatedOrUnwrittenLogicalBlock.into(),
                "Deallocated or Unwritten Logical Block",
            ),
            (PathStatus::InternalPathError.into(), "Internal Path Error"),
        ];
        for (status, name) in cases {
            assert_eq!(status.code().to_string(), *name);
        }
    }

    #[test]
    fn display_shows_name_numbers_and_dnr() {
        let s = Status::generic(GenericStatus::LbaOutOfRange).with_dnr(true);
        assert_eq!(s.to_string(), "LBA Out of Range (SCT 0x0, SC 0x80, DNR)");
        let c = Status::command_specific(CommandSpecificStatus::InvalidQueueSize).with_phase(true);
        assert_eq!(c.to_string(), "Invalid Queue Size (SCT 0x1, SC 0x02)");
        let z = Status::from_parts(StatusCodeType::CommandSpecific, 0xbc);
        assert_eq!(z.to_string(), "Zone Invalid Write (SCT 0x1, SC 0xbc)");
    }

    #[test]
    fn unknown_codes_stay_numeric() {
        let s = Status::from_parts(StatusCodeType::Generic, 0x7e);
        assert_eq!(s.code(), StatusCode::Unknown { sct: 0, sc: 0x7e });
        assert_eq!(s.to_string(), "Unknown status (SCT 0x0, SC 0x7e)");
        let r = Status::from_parts(StatusCodeType::Reserved5, 0x01);
        assert_eq!(r.code(), StatusCode::Unknown { sct: 5, sc: 1 });
        let v = Status::from_parts(StatusCodeType::VendorSpecific, 0xc3);
        assert_eq!(v.code(), StatusCode::Vendor(0xc3));
        assert_eq!(v.code().to_string(), "Vendor Specific status 0xc3");
    }

    #[test]
    fn defined_codes_decode_back_to_themselves() {
        for &g in GenericStatus::ALL {
            assert_eq!(Status::generic(g).code(), StatusCode::Generic(g));
        }
        for &c in CommandSpecificStatus::ALL {
            assert_eq!(
                Status::command_specific(c).code(),
                StatusCode::CommandSpecific(c)
            );
        }
        for &m in MediaStatus::ALL {
            assert_eq!(Status::media(m).code(), StatusCode::Media(m));
        }
        for &p in PathStatus::ALL {
            assert_eq!(Status::path(p).code(), StatusCode::Path(p));
        }
    }

    #[test]
    fn code_only_drops_phase_crd_more_and_dnr() {
        let s = Status::from_raw(0xffff);
        assert_eq!(s.code_only().raw(), 0x0ffe);
        assert_eq!(s.without_phase().raw(), 0xfffe);
    }
}
