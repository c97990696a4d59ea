//! Log pages (NVMe Base Specification 2.0, section 5.16.1): identifiers, the
//! SMART / Health Information page and the Error Information entry, in wire
//! layout with parse and encode. The Get Log Page command is built in
//! [`crate::admin`].

use bitfield_struct::bitfield;
use zerocopy::little_endian::{U128, U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::status::Status;
use crate::Error;

/// A Log Page Identifier (LID): a newtype over the wire byte so unknown pages stay representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogPageId(pub u8);

impl LogPageId {
    /// Supported Log Pages.
    pub const SUPPORTED_LOG_PAGES: Self = Self(0x00);
    /// Error Information.
    pub const ERROR_INFORMATION: Self = Self(0x01);
    /// SMART / Health Information.
    pub const SMART_HEALTH: Self = Self(0x02);
    /// Firmware Slot Information.
    pub const FIRMWARE_SLOT: Self = Self(0x03);
    /// Changed Namespace List.
    pub const CHANGED_NAMESPACE_LIST: Self = Self(0x04);
    /// Commands Supported and Effects.
    pub const COMMANDS_SUPPORTED_AND_EFFECTS: Self = Self(0x05);
    /// Device Self-test.
    pub const DEVICE_SELF_TEST: Self = Self(0x06);
    /// Telemetry Host-Initiated.
    pub const TELEMETRY_HOST: Self = Self(0x07);
    /// Telemetry Controller-Initiated.
    pub const TELEMETRY_CONTROLLER: Self = Self(0x08);
    /// Asymmetric Namespace Access.
    pub const ANA: Self = Self(0x0c);
    /// Persistent Event Log.
    pub const PERSISTENT_EVENT: Self = Self(0x0d);
    /// Reservation Notification.
    pub const RESERVATION_NOTIFICATION: Self = Self(0x80);
    /// Sanitize Status.
    pub const SANITIZE_STATUS: Self = Self(0x81);
}

/// Size of the SMART / Health Information log page.
pub const SMART_LOG_SIZE: usize = 512;
/// Size of one Error Information log entry.
pub const ERROR_LOG_ENTRY_SIZE: usize = 64;

/// Critical Warning bits of the SMART / Health log.
#[bitfield(u8)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct CriticalWarning {
    /// Available spare capacity fell below the threshold.
    pub available_spare: bool,
    /// A temperature is above an over-temperature or below an under-temperature threshold.
    pub temperature: bool,
    /// Reliability is degraded by media errors or internal errors.
    pub reliability_degraded: bool,
    /// All media is read only.
    pub read_only: bool,
    /// The volatile memory backup device has failed.
    pub volatile_backup_failed: bool,
    /// The persistent memory region has become read only.
    pub pmr_read_only: bool,
    #[bits(2)]
    __: u8,
}

/// SMART / Health Information log page (LID 02h), 512 bytes, little endian.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct SmartLog {
    /// Critical Warning.
    pub critical_warning: CriticalWarning,
    /// Composite Temperature, kelvin.
    pub composite_temperature: U16,
    /// Available Spare, percent.
    pub available_spare: u8,
    /// Available Spare Threshold, percent.
    pub available_spare_threshold: u8,
    /// Percentage Used (may exceed 100).
    pub percentage_used: u8,
    /// Endurance Group Critical Warning Summary.
    pub endurance_group_critical_warning: u8,
    /// Reserved.
    pub rsvd7: [u8; 25],
    /// Data Units Read, in thousands of 512-byte units.
    pub data_units_read: U128,
    /// Data Units Written, in thousands of 512-byte units.
    pub data_units_written: U128,
    /// Host Read Commands completed.
    pub host_read_commands: U128,
    /// Host Write Commands completed.
    pub host_write_commands: U128,
    /// Controller Busy Time, minutes.
    pub controller_busy_time: U128,
    /// Power Cycles.
    pub power_cycles: U128,
    /// Power On Hours.
    pub power_on_hours: U128,
    /// Unsafe Shutdowns.
    pub unsafe_shutdowns: U128,
    /// Media and Data Integrity Errors.
    pub media_errors: U128,
    /// Number of Error Information Log Entries over the controller's life.
    pub error_log_entries: U128,
    /// Warning Composite Temperature Time, minutes.
    pub warning_temperature_time: U32,
    /// Critical Composite Temperature Time, minutes.
    pub critical_temperature_time: U32,
    /// Temperature Sensors 1 to 8, kelvin (0 = not implemented).
    pub temperature_sensors: [U16; 8],
    /// Thermal Management Temperature 1 Transition Count.
    pub thermal_transitions_1: U32,
    /// Thermal Management Temperature 2 Transition Count.
    pub thermal_transitions_2: U32,
    /// Total Time For Thermal Management Temperature 1, seconds.
    pub thermal_time_1: U32,
    /// Total Time For Thermal Management Temperature 2, seconds.
    pub thermal_time_2: U32,
    /// Reserved.
    pub rsvd232: [u8; 280],
}

const _: () = assert!(size_of::<SmartLog>() == SMART_LOG_SIZE);

impl Default for SmartLog {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// Bytes in one SMART "data unit" (1000 units of 512 bytes).
pub const DATA_UNIT_BYTES: u128 = 512_000;

impl SmartLog {
    /// Reads the page from the first 512 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::read_from_prefix(bytes)
            .map(|(log, _)| log)
            .map_err(|_| Error::BufferTooShort {
                structure: "SMART / Health Information log",
                needed: SMART_LOG_SIZE,
                actual: bytes.len(),
            })
    }

    /// The 512-byte page.
    pub fn encode(&self) -> [u8; SMART_LOG_SIZE] {
        let mut page = [0u8; SMART_LOG_SIZE];
        page.copy_from_slice(self.as_bytes());
        page
    }

    /// Composite temperature in degrees Celsius.
    pub fn temperature_celsius(&self) -> i32 {
        i32::from(self.composite_temperature.get()) - 273
    }

    /// Data units read, converted to bytes (saturating).
    pub fn bytes_read(&self) -> u128 {
        self.data_units_read.get().saturating_mul(DATA_UNIT_BYTES)
    }

    /// Data units written, converted to bytes (saturating).
    pub fn bytes_written(&self) -> u128 {
        self.data_units_written
            .get()
            .saturating_mul(DATA_UNIT_BYTES)
    }
}

/// Parameter Error Location of an Error Information entry.
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ParameterErrorLocation {
    /// Byte in the command that contained the error.
    pub byte: u8,
    /// Bit in that byte that contained the error.
    #[bits(3)]
    pub bit: u8,
    #[bits(5)]
    __: u8,
}

/// One Error Information log entry (LID 01h), 64 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ErrorLogEntry {
    /// Error Count: a unique, incrementing identifier; 0 marks an unused entry.
    pub error_count: u64,
    /// Submission Queue ID of the failed command (FFFFh if not specific).
    pub sqid: u16,
    /// Command ID of the failed command (FFFFh if not specific).
    pub cid: u16,
    /// Status Field of the completion (bit 0 is the phase tag).
    pub status: Status,
    /// Parameter Error Location (FFFFh if not specific).
    pub parameter_error_location: ParameterErrorLocation,
    /// First LBA that experienced the error.
    pub lba: u64,
    /// Namespace of the error.
    pub nsid: u32,
    /// Vendor Specific Information Available: log page id of more data, or 0.
    pub vendor_specific_info: u8,
    /// Transport Type.
    pub trtype: u8,
    /// Reserved.
    pub rsvd30: [u8; 2],
    /// Command Specific Information.
    pub command_specific_info: u64,
    /// Transport Type Specific Information.
    pub transport_specific_info: u16,
    /// Reserved.
    pub rsvd42: [u8; 22],
}

const _: () = assert!(size_of::<ErrorLogEntry>() == ERROR_LOG_ENTRY_SIZE);

impl Default for ErrorLogEntry {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl ErrorLogEntry {
    /// Reads one entry from the first 64 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::read_from_prefix(bytes)
            .map(|(entry, _)| entry)
            .map_err(|_| Error::BufferTooShort {
                structure: "Error Information log entry",
                needed: ERROR_LOG_ENTRY_SIZE,
                actual: bytes.len(),
            })
    }

    /// Every whole entry in `bytes`, skipping unused ones (error count 0).
    pub fn parse_list(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(ERROR_LOG_ENTRY_SIZE)
            .filter_map(|chunk| Self::read_from_bytes(chunk).ok())
            .filter(|entry| entry.error_count != 0)
            .collect()
    }

    /// The 64-byte entry.
    pub fn encode(&self) -> [u8; ERROR_LOG_ENTRY_SIZE] {
        let mut out = [0u8; ERROR_LOG_ENTRY_SIZE];
        out.copy_from_slice(self.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{GenericStatus, MediaStatus};
    use core::mem::offset_of;

    #[test]
    fn smart_fields_sit_at_spec_offsets() {
        assert_eq!(offset_of!(SmartLog, composite_temperature), 1);
        assert_eq!(offset_of!(SmartLog, available_spare), 3);
        assert_eq!(offset_of!(SmartLog, percentage_used), 5);
        assert_eq!(offset_of!(SmartLog, data_units_read), 32);
        assert_eq!(offset_of!(SmartLog, data_units_written), 48);
        assert_eq!(offset_of!(SmartLog, host_read_commands), 64);
        assert_eq!(offset_of!(SmartLog, host_write_commands), 80);
        assert_eq!(offset_of!(SmartLog, controller_busy_time), 96);
        assert_eq!(offset_of!(SmartLog, power_cycles), 112);
        assert_eq!(offset_of!(SmartLog, power_on_hours), 128);
        assert_eq!(offset_of!(SmartLog, unsafe_shutdowns), 144);
        assert_eq!(offset_of!(SmartLog, media_errors), 160);
        assert_eq!(offset_of!(SmartLog, error_log_entries), 176);
        assert_eq!(offset_of!(SmartLog, warning_temperature_time), 192);
        assert_eq!(offset_of!(SmartLog, temperature_sensors), 200);
        assert_eq!(offset_of!(SmartLog, thermal_transitions_1), 216);
        assert_eq!(offset_of!(SmartLog, thermal_time_2), 228);
    }

    #[test]
    fn smart_log_encodes_little_endian_and_round_trips() {
        let log = SmartLog {
            critical_warning: CriticalWarning::new()
                .with_temperature(true)
                .with_read_only(true),
            composite_temperature: 310.into(),
            available_spare: 100,
            available_spare_threshold: 10,
            percentage_used: 3,
            data_units_read: (u128::from(u64::MAX) + 5).into(),
            data_units_written: 7.into(),
            host_read_commands: 11.into(),
            host_write_commands: 13.into(),
            power_cycles: 2.into(),
            power_on_hours: 1000.into(),
            unsafe_shutdowns: 1.into(),
            media_errors: 4.into(),
            error_log_entries: 9.into(),
            ..Default::default()
        };
        let page = log.encode();
        assert_eq!(page[0], 0b1010);
        assert_eq!(&page[1..3], &310u16.to_le_bytes());
        assert_eq!(page[3], 100);
        assert_eq!(page[5], 3);
        assert_eq!(&page[32..48], &(u128::from(u64::MAX) + 5).to_le_bytes());
        assert_eq!(&page[48..64], &7u128.to_le_bytes());
        assert_eq!(&page[128..144], &1000u128.to_le_bytes());
        assert_eq!(&page[160..176], &4u128.to_le_bytes());
        let back = SmartLog::parse(&page).unwrap();
        assert_eq!(back, log);
        assert_eq!(back.temperature_celsius(), 37);
        assert_eq!(back.bytes_written(), 7 * 512_000);
        assert_eq!(
            SmartLog {
                data_units_read: u128::MAX.into(),
                ..log
            }
            .bytes_read(),
            u128::MAX
        );
    }

    #[test]
    fn short_log_buffers_are_typed_errors() {
        assert_eq!(
            SmartLog::parse(&[0u8; 511]),
            Err(Error::BufferTooShort {
                structure: "SMART / Health Information log",
                needed: 512,
                actual: 511
            })
        );
        assert!(matches!(
            ErrorLogEntry::parse(&[0u8; 63]),
            Err(Error::BufferTooShort {
                needed: 64,
                actual: 63,
                ..
            })
        ));
    }

    #[test]
    fn error_entry_encodes_spec_offsets_and_round_trips() {
        let entry = ErrorLogEntry {
            error_count: 42,
            sqid: 1,
            cid: 0x77,
            status: Status::media(MediaStatus::UnrecoveredReadError).with_dnr(true),
            parameter_error_location: ParameterErrorLocation::new().with_byte(48).with_bit(2),
            lba: 0x1234_5678,
            nsid: 1,
            command_specific_info: 0xabcd,
            ..Default::default()
        };
        let b = entry.encode();
        assert_eq!(&b[0..8], &42u64.to_le_bytes());
        assert_eq!(&b[8..10], &1u16.to_le_bytes());
        assert_eq!(&b[10..12], &0x77u16.to_le_bytes());
        assert_eq!(
            u16::from_le_bytes([b[12], b[13]]),
            0x8000 | (2 << 9) | (0x81 << 1)
        );
        assert_eq!(u16::from_le_bytes([b[14], b[15]]), (2 << 8) | 48);
        assert_eq!(&b[16..24], &0x1234_5678u64.to_le_bytes());
        assert_eq!(&b[24..28], &1u32.to_le_bytes());
        assert_eq!(&b[32..40], &0xabcdu64.to_le_bytes());
        assert_eq!(ErrorLogEntry::parse(&b).unwrap(), entry);
    }

    #[test]
    fn error_list_skips_unused_entries_and_partial_tails() {
        let used = ErrorLogEntry {
            error_count: 1,
            status: Status::generic(GenericStatus::InvalidFieldInCommand),
            ..Default::default()
        };
        let mut buf = Vec::new();
        buf.extend_from_slice(&used.encode());
        buf.extend_from_slice(&ErrorLogEntry::default().encode());
        buf.extend_from_slice(&[0xff; 10]);
        assert_eq!(ErrorLogEntry::parse_list(&buf), vec![used]);
    }
}
