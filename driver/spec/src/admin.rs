//! Admin commands: builders for the driver and decoders for the controller
//! (NVMe Base Specification 2.0, section 5).
//!
//! Each command is a small struct of its parameters with `to_sqe` (encode)
//! and `from_sqe` (decode), so every field's position is written once, in
//! the command-dword bitfields below. Sizes are counts on this side; the 0's
//! based wire encodings stay in here. The driver sets the command identifier
//! (and, for commands with a data buffer, the PRPs) on the returned entry.

use bitfield_struct::bitfield;

use crate::command::{AdminOpcode, SubmissionEntry};
use crate::features::{
    Arbitration, FeatureId, InterruptCoalescing, NumberOfQueues, Select, VolatileWriteCache,
};
use crate::identify::Cns;
use crate::log::LogPageId;
use crate::Error;

/// Smallest I/O queue, in entries (QSIZE 0, one entry, is invalid).
pub const MIN_QUEUE_ENTRIES: u32 = 2;
/// Largest I/O queue the 16-bit, 0's based QSIZE can express, in entries.
pub const MAX_QUEUE_ENTRIES: u32 = 1 << 16;

/// CDW10 of Create and Delete I/O Submission and Completion Queue.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct QueueCdw10 {
    /// Queue Identifier.
    pub qid: u16,
    /// Queue Size in entries, 0's based (unused by the delete commands).
    pub qsize: u16,
}

/// CDW11 of Create I/O Completion Queue.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct CreateCqCdw11 {
    /// Physically Contiguous.
    pub pc: bool,
    /// Interrupts Enabled.
    pub ien: bool,
    #[bits(14)]
    __: u16,
    /// Interrupt Vector.
    pub iv: u16,
}

/// Priority of an I/O submission queue under weighted round robin arbitration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum QueuePriority {
    /// Urgent.
    Urgent = 0,
    /// High.
    High = 1,
    /// Medium (the value to use under plain round robin).
    Medium = 2,
    /// Low.
    Low = 3,
}

impl QueuePriority {
    /// Decodes the 2-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Urgent,
            1 => Self::High,
            2 => Self::Medium,
            _ => Self::Low,
        }
    }

    /// Encodes the 2-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// CDW11 of Create I/O Submission Queue.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct CreateSqCdw11 {
    /// Physically Contiguous.
    pub pc: bool,
    /// Queue Priority.
    #[bits(2)]
    pub qprio: QueuePriority,
    #[bits(13)]
    __: u16,
    /// Completion Queue Identifier the submission queue posts to.
    pub cqid: u16,
}

/// CDW10 of Identify.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct IdentifyCdw10 {
    /// Controller or Namespace Structure.
    pub cns: u8,
    #[bits(8)]
    __: u8,
    /// Controller Identifier.
    pub cntid: u16,
}

/// CDW11 of Identify.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct IdentifyCdw11 {
    /// CNS Specific Identifier.
    pub cns_specific_id: u16,
    #[bits(8)]
    __: u8,
    /// Command Set Identifier.
    pub csi: u8,
}

/// CDW10 of Get Features.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct GetFeaturesCdw10 {
    /// Feature Identifier.
    pub fid: u8,
    /// Select.
    #[bits(3)]
    pub sel: Select,
    #[bits(21)]
    __: u32,
}

/// CDW10 of Set Features.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct SetFeaturesCdw10 {
    /// Feature Identifier.
    pub fid: u8,
    #[bits(23)]
    __: u32,
    /// Save: keep the value across power and reset events.
    pub sv: bool,
}

/// CDW10 of Get Log Page.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct GetLogPageCdw10 {
    /// Log Page Identifier.
    pub lid: u8,
    /// Log Specific Parameter.
    #[bits(7)]
    pub lsp: u8,
    /// Retain Asynchronous Event.
    pub rae: bool,
    /// Number of Dwords, lower 16 bits (0's based).
    pub numdl: u16,
}

/// CDW11 of Get Log Page.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct GetLogPageCdw11 {
    /// Number of Dwords, upper 16 bits.
    pub numdu: u16,
    /// Log Specific Identifier.
    pub lsi: u16,
}

/// CDW10 of Abort.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct AbortCdw10 {
    /// Submission Queue Identifier of the command to abort.
    pub sqid: u16,
    /// Command Identifier of the command to abort.
    pub cid: u16,
}

fn queue_size(entries: u32) -> Result<u16, Error> {
    if !(MIN_QUEUE_ENTRIES..=MAX_QUEUE_ENTRIES).contains(&entries) {
        return Err(Error::InvalidQueueSize { entries });
    }
    Ok((entries - 1) as u16)
}

/// Identify (opcode 06h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identify {
    /// Which structure to return.
    pub cns: Cns,
    /// Namespace the structure is about (or the list starting point).
    pub nsid: u32,
    /// Controller Identifier, for the controller list structures.
    pub cntid: u16,
    /// Command Set Identifier, for the I/O command set specific structures.
    pub csi: u8,
}

impl Identify {
    /// Identify Controller.
    pub const fn controller() -> Self {
        Self {
            cns: Cns::CONTROLLER,
            nsid: 0,
            cntid: 0,
            csi: 0,
        }
    }

    /// Identify Namespace for `nsid`.
    pub const fn namespace(nsid: u32) -> Self {
        Self {
            cns: Cns::NAMESPACE,
            nsid,
            cntid: 0,
            csi: 0,
        }
    }

    /// Active Namespace ID list of the NSIDs greater than `after` (0 for the first page).
    pub const fn active_namespaces(after: u32) -> Self {
        Self {
            cns: Cns::ACTIVE_NAMESPACE_LIST,
            nsid: after,
            cntid: 0,
            csi: 0,
        }
    }

    /// The submission entry; the data buffer is one 4096-byte page.
    pub const fn to_sqe(&self) -> SubmissionEntry {
        let mut sqe = SubmissionEntry::new(AdminOpcode::IDENTIFY.0);
        sqe.nsid = self.nsid;
        sqe.cdw10 = IdentifyCdw10::new()
            .with_cns(self.cns.0)
            .with_cntid(self.cntid)
            .into_bits();
        sqe.cdw11 = IdentifyCdw11::new().with_csi(self.csi).into_bits();
        sqe
    }

    /// The parameters of an Identify entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = IdentifyCdw10::from_bits(sqe.cdw10);
        Self {
            cns: Cns(cdw10.cns()),
            nsid: sqe.nsid,
            cntid: cdw10.cntid(),
            csi: IdentifyCdw11::from_bits(sqe.cdw11).csi(),
        }
    }
}

/// Get Features (opcode 0Ah).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetFeatures {
    /// Feature to read.
    pub fid: FeatureId,
    /// Which value to read.
    pub select: Select,
    /// Namespace, for namespace specific features.
    pub nsid: u32,
    /// Feature specific CDW11 (e.g. the vector for Interrupt Vector Configuration).
    pub cdw11: u32,
}

impl GetFeatures {
    /// Reads the current value of `fid`.
    pub const fn current(fid: FeatureId) -> Self {
        Self {
            fid,
            select: Select::Current,
            nsid: 0,
            cdw11: 0,
        }
    }

    /// The submission entry.
    pub const fn to_sqe(&self) -> SubmissionEntry {
        let mut sqe = SubmissionEntry::new(AdminOpcode::GET_FEATURES.0);
        sqe.nsid = self.nsid;
        sqe.cdw10 = GetFeaturesCdw10::new()
            .with_fid(self.fid.0)
            .with_sel(self.select)
            .into_bits();
        sqe.cdw11 = self.cdw11;
        sqe
    }

    /// The parameters of a Get Features entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = GetFeaturesCdw10::from_bits(sqe.cdw10);
        Self {
            fid: FeatureId(cdw10.fid()),
            select: cdw10.sel(),
            nsid: sqe.nsid,
            cdw11: sqe.cdw11,
        }
    }
}

/// Set Features (opcode 09h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetFeatures {
    /// Feature to change.
    pub fid: FeatureId,
    /// Namespace, for namespace specific features.
    pub nsid: u32,
    /// Save the value across power and reset events.
    pub save: bool,
    /// The feature value (CDW11), e.g. a [`NumberOfQueues`] as `u32`.
    pub cdw11: u32,
}

impl SetFeatures {
    /// Sets `fid` to `value` without saving it.
    pub const fn new(fid: FeatureId, value: u32) -> Self {
        Self {
            fid,
            nsid: 0,
            save: false,
            cdw11: value,
        }
    }

    /// Requests `sq` I/O submission and `cq` I/O completion queues (each 1..=65535).
    pub fn number_of_queues(sq: u32, cq: u32) -> Result<Self, Error> {
        Ok(Self::new(
            FeatureId::NUMBER_OF_QUEUES,
            NumberOfQueues::from_counts(sq, cq)?.into(),
        ))
    }

    /// Enables or disables the volatile write cache.
    pub const fn volatile_write_cache(enable: bool) -> Self {
        Self::new(
            FeatureId::VOLATILE_WRITE_CACHE,
            VolatileWriteCache::new().with_wce(enable).into_bits(),
        )
    }

    /// Sets the arbitration burst and weights.
    pub const fn arbitration(value: Arbitration) -> Self {
        Self::new(FeatureId::ARBITRATION, value.into_bits())
    }

    /// Sets interrupt coalescing.
    pub const fn interrupt_coalescing(value: InterruptCoalescing) -> Self {
        Self::new(FeatureId::INTERRUPT_COALESCING, value.into_bits())
    }

    /// The submission entry.
    pub const fn to_sqe(&self) -> SubmissionEntry {
        let mut sqe = SubmissionEntry::new(AdminOpcode::SET_FEATURES.0);
        sqe.nsid = self.nsid;
        sqe.cdw10 = SetFeaturesCdw10::new()
            .with_fid(self.fid.0)
            .with_sv(self.save)
            .into_bits();
        sqe.cdw11 = self.cdw11;
        sqe
    }

    /// The parameters of a Set Features entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = SetFeaturesCdw10::from_bits(sqe.cdw10);
        Self {
            fid: FeatureId(cdw10.fid()),
            nsid: sqe.nsid,
            save: cdw10.sv(),
            cdw11: sqe.cdw11,
        }
    }
}

/// Create I/O Completion Queue (opcode 05h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateIoCq {
    /// Queue identifier (1 or more; 0 is the admin queue).
    pub qid: u16,
    /// Queue size in entries (2..=65536, and at most CAP.MQES + 1).
    pub entries: u32,
    /// Address of the queue memory (PRP1), or of its PRP list if not contiguous.
    pub prp1: u64,
    /// Whether the queue memory is physically contiguous.
    pub contiguous: bool,
    /// Interrupt vector to signal, or `None` for a polled queue.
    pub interrupt_vector: Option<u16>,
}

impl CreateIoCq {
    /// The submission entry, or an error for a queue size outside 2..=65536.
    pub fn to_sqe(&self) -> Result<SubmissionEntry, Error> {
        let mut sqe = SubmissionEntry::new(AdminOpcode::CREATE_IO_CQ.0);
        sqe.prp1 = self.prp1;
        sqe.cdw10 = QueueCdw10::new()
            .with_qid(self.qid)
            .with_qsize(queue_size(self.entries)?)
            .into();
        sqe.cdw11 = CreateCqCdw11::new()
            .with_pc(self.contiguous)
            .with_ien(self.interrupt_vector.is_some())
            .with_iv(self.interrupt_vector.unwrap_or(0))
            .into();
        Ok(sqe)
    }

    /// The parameters of a Create I/O CQ entry; `entries` may be 1 (invalid) as sent.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = QueueCdw10::from_bits(sqe.cdw10);
        let cdw11 = CreateCqCdw11::from_bits(sqe.cdw11);
        Self {
            qid: cdw10.qid(),
            entries: cdw10.qsize() as u32 + 1,
            prp1: sqe.prp1,
            contiguous: cdw11.pc(),
            interrupt_vector: if cdw11.ien() { Some(cdw11.iv()) } else { None },
        }
    }
}

/// Create I/O Submission Queue (opcode 01h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateIoSq {
    /// Queue identifier (1 or more; 0 is the admin queue).
    pub qid: u16,
    /// Queue size in entries (2..=65536, and at most CAP.MQES + 1).
    pub entries: u32,
    /// Address of the queue memory (PRP1), or of its PRP list if not contiguous.
    pub prp1: u64,
    /// Whether the queue memory is physically contiguous.
    pub contiguous: bool,
    /// Completion queue this queue posts to (must already exist).
    pub cqid: u16,
    /// Priority under weighted round robin arbitration.
    pub priority: QueuePriority,
}

impl CreateIoSq {
    /// The submission entry, or an error for a queue size outside 2..=65536.
    pub fn to_sqe(&self) -> Result<SubmissionEntry, Error> {
        let mut sqe = SubmissionEntry::new(AdminOpcode::CREATE_IO_SQ.0);
        sqe.prp1 = self.prp1;
        sqe.cdw10 = QueueCdw10::new()
            .with_qid(self.qid)
            .with_qsize(queue_size(self.entries)?)
            .into();
        sqe.cdw11 = CreateSqCdw11::new()
            .with_pc(self.contiguous)
            .with_qprio(self.priority)
            .with_cqid(self.cqid)
            .into();
        Ok(sqe)
    }

    /// The parameters of a Create I/O SQ entry; `entries` may be 1 (invalid) as sent.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = QueueCdw10::from_bits(sqe.cdw10);
        let cdw11 = CreateSqCdw11::from_bits(sqe.cdw11);
        Self {
            qid: cdw10.qid(),
            entries: cdw10.qsize() as u32 + 1,
            prp1: sqe.prp1,
            contiguous: cdw11.pc(),
            cqid: cdw11.cqid(),
            priority: cdw11.qprio(),
        }
    }
}

/// Delete I/O Submission Queue (opcode 00h) for queue `qid`.
pub const fn delete_io_sq(qid: u16) -> SubmissionEntry {
    let mut sqe = SubmissionEntry::new(AdminOpcode::DELETE_IO_SQ.0);
    sqe.cdw10 = QueueCdw10::new().with_qid(qid).into_bits();
    sqe
}

/// Delete I/O Completion Queue (opcode 04h) for queue `qid`.
pub const fn delete_io_cq(qid: u16) -> SubmissionEntry {
    let mut sqe = SubmissionEntry::new(AdminOpcode::DELETE_IO_CQ.0);
    sqe.cdw10 = QueueCdw10::new().with_qid(qid).into_bits();
    sqe
}

/// The queue identifier of a Delete I/O SQ or CQ entry.
pub const fn deleted_qid(sqe: &SubmissionEntry) -> u16 {
    QueueCdw10::from_bits(sqe.cdw10).qid()
}

/// Get Log Page (opcode 02h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPage {
    /// Log page to read.
    pub lid: LogPageId,
    /// Namespace, or [`crate::command::NSID_ALL`] for the controller-wide page.
    pub nsid: u32,
    /// Bytes to read: a multiple of 4 from 4 to 16 GiB.
    pub len_bytes: u64,
    /// Byte offset into the log page: a multiple of 4.
    pub offset: u64,
    /// Retain Asynchronous Event: do not clear the event that pointed at this page.
    pub rae: bool,
    /// Log Specific Parameter.
    pub lsp: u8,
}

impl GetLogPage {
    /// Reads `len_bytes` of page `lid` from its start, controller wide.
    pub const fn new(lid: LogPageId, len_bytes: u64) -> Self {
        Self {
            lid,
            nsid: crate::command::NSID_ALL,
            len_bytes,
            offset: 0,
            rae: false,
            lsp: 0,
        }
    }

    /// The submission entry, or an error for a bad length or offset.
    pub fn to_sqe(&self) -> Result<SubmissionEntry, Error> {
        if self.len_bytes == 0 || self.len_bytes % 4 != 0 || self.len_bytes > (1u64 << 34) {
            return Err(Error::InvalidLogLength {
                bytes: self.len_bytes,
            });
        }
        if self.offset % 4 != 0 {
            return Err(Error::UnalignedLogOffset {
                offset: self.offset,
            });
        }
        let numd = (self.len_bytes / 4 - 1) as u32;
        let mut sqe = SubmissionEntry::new(AdminOpcode::GET_LOG_PAGE.0);
        sqe.nsid = self.nsid;
        sqe.cdw10 = GetLogPageCdw10::new()
            .with_lid(self.lid.0)
            .with_lsp(self.lsp)
            .with_rae(self.rae)
            .with_numdl(numd as u16)
            .into();
        sqe.cdw11 = GetLogPageCdw11::new()
            .with_numdu((numd >> 16) as u16)
            .into();
        sqe.cdw12 = self.offset as u32;
        sqe.cdw13 = (self.offset >> 32) as u32;
        Ok(sqe)
    }

    /// The parameters of a Get Log Page entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = GetLogPageCdw10::from_bits(sqe.cdw10);
        let cdw11 = GetLogPageCdw11::from_bits(sqe.cdw11);
        let numd = (cdw11.numdu() as u64) << 16 | cdw10.numdl() as u64;
        Self {
            lid: LogPageId(cdw10.lid()),
            nsid: sqe.nsid,
            len_bytes: (numd + 1) * 4,
            offset: (sqe.cdw13 as u64) << 32 | sqe.cdw12 as u64,
            rae: cdw10.rae(),
            lsp: cdw10.lsp(),
        }
    }
}

/// Abort (opcode 08h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// Submission queue of the command to abort.
    pub sqid: u16,
    /// Command identifier of the command to abort.
    pub cid: u16,
}

impl Abort {
    /// The submission entry.
    pub const fn to_sqe(&self) -> SubmissionEntry {
        let mut sqe = SubmissionEntry::new(AdminOpcode::ABORT.0);
        sqe.cdw10 = AbortCdw10::new()
            .with_sqid(self.sqid)
            .with_cid(self.cid)
            .into_bits();
        sqe
    }

    /// The parameters of an Abort entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        let cdw10 = AbortCdw10::from_bits(sqe.cdw10);
        Self {
            sqid: cdw10.sqid(),
            cid: cdw10.cid(),
        }
    }

    /// Whether the completion's dword 0 says the command was aborted (bit 0 clear).
    pub const fn aborted(dw0: u32) -> bool {
        dw0 & 1 == 0
    }
}

/// Asynchronous Event Request (opcode 0Ch); completes when an event occurs.
pub const fn async_event_request() -> SubmissionEntry {
    SubmissionEntry::new(AdminOpcode::ASYNC_EVENT_REQUEST.0)
}

/// Asynchronous Event Type in an event's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AsyncEventType {
    /// Error status.
    Error = 0,
    /// SMART / Health status.
    SmartHealth = 1,
    /// Notice.
    Notice = 2,
    /// Immediate.
    Immediate = 3,
    /// One-Shot.
    OneShot = 4,
    /// Reserved value 5h.
    Reserved5 = 5,
    /// I/O Command Set specific status.
    IoCommandSetSpecific = 6,
    /// Vendor specific.
    VendorSpecific = 7,
}

impl AsyncEventType {
    /// Decodes the 3-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Error,
            1 => Self::SmartHealth,
            2 => Self::Notice,
            3 => Self::Immediate,
            4 => Self::OneShot,
            5 => Self::Reserved5,
            6 => Self::IoCommandSetSpecific,
            _ => Self::VendorSpecific,
        }
    }

    /// Encodes the 3-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Dword 0 of an Asynchronous Event Request completion.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct AsyncEvent {
    /// Asynchronous Event Type.
    #[bits(3)]
    pub event_type: AsyncEventType,
    #[bits(5)]
    __: u8,
    /// Asynchronous Event Information (meaning depends on the type).
    pub info: u8,
    /// Log page to read for details (and to clear the event).
    pub lid: u8,
    #[bits(8)]
    __: u8,
}

/// Doorbell Buffer Config (opcode 7Ch): shadow doorbells for emulated controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorbellBufferConfig {
    /// Page holding the shadow doorbell buffer (PRP1).
    pub shadow: u64,
    /// Page holding the EventIdx buffer (PRP2).
    pub eventidx: u64,
}

impl DoorbellBufferConfig {
    /// The submission entry.
    pub const fn to_sqe(&self) -> SubmissionEntry {
        let mut sqe = SubmissionEntry::new(AdminOpcode::DOORBELL_BUFFER_CONFIG.0);
        sqe.prp1 = self.shadow;
        sqe.prp2 = self.eventidx;
        sqe
    }

    /// The parameters of a Doorbell Buffer Config entry.
    pub const fn from_sqe(sqe: &SubmissionEntry) -> Self {
        Self {
            shadow: sqe.prp1,
            eventidx: sqe.prp2,
        }
    }
}

/// An admin submission entry decoded by opcode, for a controller to dispatch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand {
    /// Delete I/O Submission Queue of the given id.
    DeleteIoSq(u16),
    /// Create I/O Submission Queue.
    CreateIoSq(CreateIoSq),
    /// Get Log Page.
    GetLogPage(GetLogPage),
    /// Delete I/O Completion Queue of the given id.
    DeleteIoCq(u16),
    /// Create I/O Completion Queue.
    CreateIoCq(CreateIoCq),
    /// Identify.
    Identify(Identify),
    /// Abort.
    Abort(Abort),
    /// Set Features.
    SetFeatures(SetFeatures),
    /// Get Features.
    GetFeatures(GetFeatures),
    /// Asynchronous Event Request.
    AsyncEventRequest,
    /// Doorbell Buffer Config.
    DoorbellBufferConfig(DoorbellBufferConfig),
    /// Any other opcode; the entry is kept whole.
    Other(AdminOpcode),
}

impl AdminCommand {
    /// Decodes `sqe` by its opcode.
    pub const fn decode(sqe: &SubmissionEntry) -> Self {
        match sqe.admin_opcode() {
            AdminOpcode::DELETE_IO_SQ => Self::DeleteIoSq(deleted_qid(sqe)),
            AdminOpcode::CREATE_IO_SQ => Self::CreateIoSq(CreateIoSq::from_sqe(sqe)),
            AdminOpcode::GET_LOG_PAGE => Self::GetLogPage(GetLogPage::from_sqe(sqe)),
            AdminOpcode::DELETE_IO_CQ => Self::DeleteIoCq(deleted_qid(sqe)),
            AdminOpcode::CREATE_IO_CQ => Self::CreateIoCq(CreateIoCq::from_sqe(sqe)),
            AdminOpcode::IDENTIFY => Self::Identify(Identify::from_sqe(sqe)),
            AdminOpcode::ABORT => Self::Abort(Abort::from_sqe(sqe)),
            AdminOpcode::SET_FEATURES => Self::SetFeatures(SetFeatures::from_sqe(sqe)),
            AdminOpcode::GET_FEATURES => Self::GetFeatures(GetFeatures::from_sqe(sqe)),
            AdminOpcode::ASYNC_EVENT_REQUEST => Self::AsyncEventRequest,
            AdminOpcode::DOORBELL_BUFFER_CONFIG => {
                Self::DoorbellBufferConfig(DoorbellBufferConfig::from_sqe(sqe))
            }
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_builders_set_cns_and_nsid() {
        let c = Identify::controller().to_sqe();
        assert_eq!((c.opcode(), c.nsid, c.cdw10), (0x06, 0, 0x01));
        let n = Identify::namespace(5).to_sqe();
        assert_eq!((n.nsid, n.cdw10), (5, 0x00));
        let l = Identify::active_namespaces(0).to_sqe();
        assert_eq!((l.nsid, l.cdw10), (0, 0x02));
        let full = Identify {
            cns: Cns::IO_COMMAND_SET_NAMESPACE,
            nsid: 3,
            cntid: 0x1234,
            csi: 2,
        };
        let sqe = full.to_sqe();
        assert_eq!(sqe.cdw10, 0x1234_0005);
        assert_eq!(sqe.cdw11, 2 << 24);
        assert_eq!(Identify::from_sqe(&sqe), full);
    }

    #[test]
    fn create_io_cq_encodes_qid_zero_based_size_and_vector() {
        let cmd = CreateIoCq {
            qid: 3,
            entries: 1024,
            prp1: 0x10_0000,
            contiguous: true,
            interrupt_vector: Some(2),
        };
        let sqe = cmd.to_sqe().unwrap();
        assert_eq!(sqe.opcode(), 0x05);
        assert_eq!(sqe.prp1, 0x10_0000);
        assert_eq!(sqe.cdw10, (1023 << 16) | 3);
        assert_eq!(sqe.cdw11, (2 << 16) | 0b11);
        assert_eq!(CreateIoCq::from_sqe(&sqe), cmd);
        let polled = CreateIoCq {
            interrupt_vector: None,
            ..cmd
        };
        let sqe = polled.to_sqe().unwrap();
        assert_eq!(sqe.cdw11, 0b01);
        assert_eq!(CreateIoCq::from_sqe(&sqe).interrupt_vector, None);
    }

    #[test]
    fn create_io_sq_encodes_cqid_and_priority() {
        let cmd = CreateIoSq {
            qid: 3,
            entries: 65536,
            prp1: 0x20_0000,
            contiguous: true,
            cqid: 3,
            priority: QueuePriority::Medium,
        };
        let sqe = cmd.to_sqe().unwrap();
        assert_eq!(sqe.opcode(), 0x01);
        assert_eq!(sqe.cdw10, 0xffff_0003);
        assert_eq!(sqe.cdw11, (3 << 16) | (2 << 1) | 1);
        assert_eq!(CreateIoSq::from_sqe(&sqe), cmd);
    }

    #[test]
    fn queue_sizes_outside_2_to_65536_are_rejected() {
        let cq = CreateIoCq {
            qid: 1,
            entries: 1,
            prp1: 0,
            contiguous: true,
            interrupt_vector: None,
        };
        assert_eq!(cq.to_sqe(), Err(Error::InvalidQueueSize { entries: 1 }));
        let sq = CreateIoSq {
            qid: 1,
            entries: 65537,
            prp1: 0,
            contiguous: true,
            cqid: 1,
            priority: QueuePriority::Urgent,
        };
        assert_eq!(sq.to_sqe(), Err(Error::InvalidQueueSize { entries: 65537 }));
        let mut wire = sq.to_sqe().unwrap_or_default();
        wire.cdw10 = 1;
        assert_eq!(CreateIoSq::from_sqe(&wire).entries, 1);
    }

    #[test]
    fn delete_queues_carry_qid_in_cdw10() {
        let sq = delete_io_sq(7);
        assert_eq!((sq.opcode(), sq.cdw10), (0x00, 7));
        let cq = delete_io_cq(7);
        assert_eq!((cq.opcode(), cq.cdw10), (0x04, 7));
        assert_eq!(deleted_qid(&cq), 7);
    }

    #[test]
    fn set_features_number_of_queues_is_zero_based() {
        let sqe = SetFeatures::number_of_queues(8, 4).unwrap().to_sqe();
        assert_eq!(sqe.opcode(), 0x09);
        assert_eq!(sqe.cdw10, 0x07);
        assert_eq!(sqe.cdw11, (3 << 16) | 7);
        assert!(SetFeatures::number_of_queues(0, 4).is_err());
    }

    #[test]
    fn set_features_save_is_cdw10_bit_31() {
        let mut cmd = SetFeatures::volatile_write_cache(true);
        cmd.save = true;
        let sqe = cmd.to_sqe();
        assert_eq!(sqe.cdw10, (1 << 31) | 0x06);
        assert_eq!(sqe.cdw11, 1);
        assert_eq!(SetFeatures::from_sqe(&sqe), cmd);
        let arb = SetFeatures::arbitration(Arbitration::new().with_ab(3)).to_sqe();
        assert_eq!((arb.cdw10, arb.cdw11), (0x01, 3));
        let ic = SetFeatures::interrupt_coalescing(InterruptCoalescing::new().with_thr(4)).to_sqe();
        assert_eq!((ic.cdw10, ic.cdw11), (0x08, 4));
    }

    #[test]
    fn get_features_select_is_cdw10_bits_10_8() {
        let mut cmd = GetFeatures::current(FeatureId::VOLATILE_WRITE_CACHE);
        cmd.select = Select::SupportedCapabilities;
        let sqe = cmd.to_sqe();
        assert_eq!(sqe.opcode(), 0x0a);
        assert_eq!(sqe.cdw10, (3 << 8) | 0x06);
        assert_eq!(GetFeatures::from_sqe(&sqe), cmd);
    }

    #[test]
    fn get_log_page_splits_numd_and_offset() {
        let cmd = GetLogPage {
            lid: LogPageId::ERROR_INFORMATION,
            nsid: 0xffff_ffff,
            len_bytes: 0x4_0000 * 4,
            offset: 0x1_0000_0040,
            rae: true,
            lsp: 0,
        };
        let sqe = cmd.to_sqe().unwrap();
        assert_eq!(sqe.opcode(), 0x02);
        assert_eq!(sqe.cdw10, (0xffff << 16) | (1 << 15) | 0x01);
        assert_eq!(sqe.cdw11, 0x3);
        assert_eq!((sqe.cdw12, sqe.cdw13), (0x40, 1));
        assert_eq!(GetLogPage::from_sqe(&sqe), cmd);
        let smart = GetLogPage::new(LogPageId::SMART_HEALTH, 512)
            .to_sqe()
            .unwrap();
        assert_eq!(smart.cdw10, (127 << 16) | 0x02);
        assert_eq!(smart.cdw11, 0);
    }

    #[test]
    fn get_log_page_rejects_bad_lengths_and_offsets() {
        let mut cmd = GetLogPage::new(LogPageId::SMART_HEALTH, 0);
        assert_eq!(cmd.to_sqe(), Err(Error::InvalidLogLength { bytes: 0 }));
        cmd.len_bytes = 6;
        assert_eq!(cmd.to_sqe(), Err(Error::InvalidLogLength { bytes: 6 }));
        cmd.len_bytes = (1 << 34) + 4;
        assert!(cmd.to_sqe().is_err());
        cmd.len_bytes = 1 << 34;
        assert_eq!(
            GetLogPage::from_sqe(&cmd.to_sqe().unwrap()).len_bytes,
            1 << 34
        );
        cmd.offset = 2;
        assert_eq!(cmd.to_sqe(), Err(Error::UnalignedLogOffset { offset: 2 }));
    }

    #[test]
    fn abort_puts_sqid_low_and_cid_high() {
        let sqe = Abort { sqid: 2, cid: 0x99 }.to_sqe();
        assert_eq!((sqe.opcode(), sqe.cdw10), (0x08, (0x99 << 16) | 2));
        assert!(Abort::aborted(0));
        assert!(!Abort::aborted(1));
    }

    #[test]
    fn doorbell_buffer_config_uses_prp1_and_prp2() {
        let cmd = DoorbellBufferConfig {
            shadow: 0x1000,
            eventidx: 0x2000,
        };
        let sqe = cmd.to_sqe();
        assert_eq!((sqe.opcode(), sqe.prp1, sqe.prp2), (0x7c, 0x1000, 0x2000));
        assert_eq!(
            AdminCommand::decode(&sqe),
            AdminCommand::DoorbellBufferConfig(cmd)
        );
    }

    #[test]
    fn async_event_completion_decodes_type_info_and_log_page() {
        assert_eq!(async_event_request().opcode(), 0x0c);
        let ev = AsyncEvent::from(0x0002_0101);
        assert_eq!(ev.event_type(), AsyncEventType::SmartHealth);
        assert_eq!(ev.info(), 1);
        assert_eq!(ev.lid(), 2);
    }

    #[test]
    fn admin_command_decode_dispatches_by_opcode() {
        assert_eq!(
            AdminCommand::decode(&Identify::controller().to_sqe()),
            AdminCommand::Identify(Identify::controller())
        );
        assert_eq!(
            AdminCommand::decode(&delete_io_cq(4)),
            AdminCommand::DeleteIoCq(4)
        );
        assert_eq!(
            AdminCommand::decode(&SubmissionEntry::new(0x80)),
            AdminCommand::Other(AdminOpcode::FORMAT_NVM)
        );
        assert_eq!(
            AdminCommand::decode(&async_event_request()),
            AdminCommand::AsyncEventRequest
        );
    }
}
