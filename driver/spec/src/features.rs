//! Feature identifiers and the values of the features the driver uses
//! (NVMe Base Specification 2.0, section 5.27.1).
//!
//! The Get and Set Features commands themselves are built in [`crate::admin`].

use bitfield_struct::bitfield;

/// A Feature Identifier (FID): a newtype over the wire byte so unknown ids stay representable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureId(pub u8);

impl FeatureId {
    /// Arbitration.
    pub const ARBITRATION: Self = Self(0x01);
    /// Power Management.
    pub const POWER_MANAGEMENT: Self = Self(0x02);
    /// LBA Range Type.
    pub const LBA_RANGE_TYPE: Self = Self(0x03);
    /// Temperature Threshold.
    pub const TEMPERATURE_THRESHOLD: Self = Self(0x04);
    /// Error Recovery.
    pub const ERROR_RECOVERY: Self = Self(0x05);
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: Self = Self(0x06);
    /// Number of Queues.
    pub const NUMBER_OF_QUEUES: Self = Self(0x07);
    /// Interrupt Coalescing.
    pub const INTERRUPT_COALESCING: Self = Self(0x08);
    /// Interrupt Vector Configuration.
    pub const INTERRUPT_VECTOR_CONFIG: Self = Self(0x09);
    /// Write Atomicity Normal.
    pub const WRITE_ATOMICITY_NORMAL: Self = Self(0x0a);
    /// Asynchronous Event Configuration.
    pub const ASYNC_EVENT_CONFIG: Self = Self(0x0b);
    /// Autonomous Power State Transition.
    pub const AUTONOMOUS_POWER_STATE_TRANSITION: Self = Self(0x0c);
    /// Host Memory Buffer.
    pub const HOST_MEMORY_BUFFER: Self = Self(0x0d);
    /// Timestamp.
    pub const TIMESTAMP: Self = Self(0x0e);
    /// Keep Alive Timer.
    pub const KEEP_ALIVE_TIMER: Self = Self(0x0f);
    /// I/O Command Set Profile: the index of the enabled I/O command set combination.
    pub const IO_COMMAND_SET_PROFILE: Self = Self(0x19);

    /// The specification's name for the feature, or `None` if unknown here.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "Arbitration",
            0x02 => "Power Management",
            0x03 => "LBA Range Type",
            0x04 => "Temperature Threshold",
            0x05 => "Error Recovery",
            0x06 => "Volatile Write Cache",
            0x07 => "Number of Queues",
            0x08 => "Interrupt Coalescing",
            0x09 => "Interrupt Vector Configuration",
            0x0a => "Write Atomicity Normal",
            0x0b => "Asynchronous Event Configuration",
            0x0c => "Autonomous Power State Transition",
            0x0d => "Host Memory Buffer",
            0x0e => "Timestamp",
            0x0f => "Keep Alive Timer",
            0x19 => "I/O Command Set Profile",
            _ => return None,
        })
    }
}

impl core::fmt::Debug for FeatureId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}({:#04x})", name, self.0),
            None => write!(f, "FeatureId({:#04x})", self.0),
        }
    }
}

impl core::fmt::Display for FeatureId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "feature {:#04x}", self.0),
        }
    }
}

/// Which value Get Features returns (CDW10.SEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Select {
    /// The current operating value.
    Current = 0,
    /// The default value.
    Default = 1,
    /// The last saved value.
    Saved = 2,
    /// The capabilities of the feature (saveable, namespace specific, changeable) in dword 0.
    SupportedCapabilities = 3,
    /// Reserved value 4h.
    Reserved4 = 4,
    /// Reserved value 5h.
    Reserved5 = 5,
    /// Reserved value 6h.
    Reserved6 = 6,
    /// Reserved value 7h.
    Reserved7 = 7,
}

impl Select {
    /// Decodes the 3-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Current,
            1 => Self::Default,
            2 => Self::Saved,
            3 => Self::SupportedCapabilities,
            4 => Self::Reserved4,
            5 => Self::Reserved5,
            6 => Self::Reserved6,
            _ => Self::Reserved7,
        }
    }

    /// Encodes the 3-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Number of Queues (FID 07h): CDW11 of Set Features and dword 0 of its completion.
///
/// Both counts are 0's based on the wire; use [`NumberOfQueues::from_counts`]
/// and [`NumberOfQueues::sq_count`] / [`NumberOfQueues::cq_count`] for counts.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct NumberOfQueues {
    /// Number of I/O Submission Queues, 0's based (NSQR requested / NSQA allocated).
    pub nsq: u16,
    /// Number of I/O Completion Queues, 0's based (NCQR requested / NCQA allocated).
    pub ncq: u16,
}

impl NumberOfQueues {
    /// The value requesting `sq` submission and `cq` completion queues (each 1..=65535).
    pub fn from_counts(sq: u32, cq: u32) -> Result<Self, crate::Error> {
        if !(1..=65535).contains(&sq) || !(1..=65535).contains(&cq) {
            return Err(crate::Error::InvalidQueueCount { sq, cq });
        }
        Ok(Self::new()
            .with_nsq((sq - 1) as u16)
            .with_ncq((cq - 1) as u16))
    }

    /// Number of I/O submission queues (NSQ + 1).
    pub const fn sq_count(&self) -> u32 {
        self.nsq() as u32 + 1
    }

    /// Number of I/O completion queues (NCQ + 1).
    pub const fn cq_count(&self) -> u32 {
        self.ncq() as u32 + 1
    }
}

/// Volatile Write Cache (FID 06h), CDW11.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct VolatileWriteCache {
    /// Volatile Write Cache Enable.
    pub wce: bool,
    #[bits(31)]
    __: u32,
}

/// Arbitration (FID 01h), CDW11.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Arbitration {
    /// Arbitration Burst: `2 ^ ab` commands per queue per round; 7 means no limit.
    #[bits(3)]
    pub ab: u8,
    #[bits(5)]
    __: u8,
    /// Low Priority Weight, 0's based.
    pub lpw: u8,
    /// Medium Priority Weight, 0's based.
    pub mpw: u8,
    /// High Priority Weight, 0's based.
    pub hpw: u8,
}

/// Interrupt Coalescing (FID 08h), CDW11.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct InterruptCoalescing {
    /// Aggregation Threshold: completions per interrupt, 0's based.
    pub thr: u8,
    /// Aggregation Time, in 100 microsecond units.
    pub time: u8,
    #[bits(16)]
    __: u16,
}

/// Interrupt Vector Configuration (FID 09h), CDW11.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct InterruptVectorConfig {
    /// Interrupt Vector this configuration applies to.
    pub iv: u16,
    /// Coalescing Disable for this vector.
    pub cd: bool,
    #[bits(15)]
    __: u16,
}

/// Asynchronous Event Configuration (FID 0Bh), CDW11.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct AsyncEventConfig {
    /// SMART / Health Critical Warnings that raise an event (one bit per warning).
    pub smart_critical_warnings: u8,
    /// Namespace Attribute Notices.
    pub namespace_attribute: bool,
    /// Firmware Activation Notices.
    pub firmware_activation: bool,
    /// Telemetry Log Notices.
    pub telemetry_log: bool,
    /// Asymmetric Namespace Access Change Notices.
    pub ana_change: bool,
    /// Predictable Latency Event Aggregate Log Change Notices.
    pub predictable_latency: bool,
    /// LBA Status Information Notices.
    pub lba_status: bool,
    /// Endurance Group Event Aggregate Log Change Notices.
    pub endurance_group: bool,
    /// Normal NVM Subsystem Shutdown Notices.
    pub normal_shutdown: bool,
    #[bits(16)]
    __: u16,
}

/// Get Features with SEL = Supported Capabilities: dword 0 of the completion.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct FeatureCapabilities {
    /// The feature can be saved across power cycles.
    pub saveable: bool,
    /// The feature is namespace specific.
    pub namespace_specific: bool,
    /// The feature can be changed.
    pub changeable: bool,
    #[bits(29)]
    __: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_of_queues_encodes_zero_based_counts() {
        let n = NumberOfQueues::from_counts(4, 2).unwrap();
        assert_eq!(u32::from(n), (1 << 16) | 3);
        assert_eq!(n.sq_count(), 4);
        assert_eq!(n.cq_count(), 2);
        let max = NumberOfQueues::from(u32::MAX);
        assert_eq!((max.sq_count(), max.cq_count()), (65536, 65536));
    }

    #[test]
    fn number_of_queues_rejects_zero_and_65536() {
        assert_eq!(
            NumberOfQueues::from_counts(0, 1),
            Err(crate::Error::InvalidQueueCount { sq: 0, cq: 1 })
        );
        assert!(NumberOfQueues::from_counts(1, 65536).is_err());
        assert!(NumberOfQueues::from_counts(65535, 65535).is_ok());
    }

    #[test]
    fn feature_values_sit_at_spec_bits() {
        assert_eq!(u32::from(VolatileWriteCache::new().with_wce(true)), 1);
        let arb = Arbitration::new()
            .with_ab(7)
            .with_lpw(1)
            .with_mpw(2)
            .with_hpw(3);
        assert_eq!(u32::from(arb), 0x0302_0107);
        let ic = InterruptCoalescing::new().with_thr(9).with_time(10);
        assert_eq!(u32::from(ic), 0x0a09);
        let iv = InterruptVectorConfig::new().with_iv(5).with_cd(true);
        assert_eq!(u32::from(iv), 0x1_0005);
        assert_eq!(FeatureId::NUMBER_OF_QUEUES.0, 0x07);
        assert_eq!(FeatureId::VOLATILE_WRITE_CACHE.0, 0x06);
        assert_eq!(FeatureId::ARBITRATION.0, 0x01);
        assert_eq!(FeatureId::INTERRUPT_COALESCING.0, 0x08);
        assert_eq!(FeatureId(0x42).to_string(), "feature 0x42");
    }
}
