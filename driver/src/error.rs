//! The driver's one error type.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::spec::Status;

/// The kind of an I/O command, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// Read.
    Read,
    /// Write (FUA or not).
    Write,
    /// Flush.
    Flush,
    /// Write Zeroes.
    WriteZeroes,
    /// Dataset Management (deallocate).
    DatasetManagement,
    /// Verify.
    Verify,
    /// Compare.
    Compare,
    /// Zone Append (`slba` is the zone's start LBA).
    ZoneAppend,
    /// Zone Management Receive (report zones from `slba`; `blocks` is 0).
    ZoneReport,
    /// Zone Management Send, Open Zone (`blocks` 1: the zone at `slba`; 0: every zone).
    ZoneOpen,
    /// Zone Management Send, Close Zone (`blocks` as for [`IoKind::ZoneOpen`]).
    ZoneClose,
    /// Zone Management Send, Finish Zone (`blocks` as for [`IoKind::ZoneOpen`]).
    ZoneFinish,
    /// Zone Management Send, Reset Zone (`blocks` as for [`IoKind::ZoneOpen`]).
    ZoneReset,
    /// Zone Management Send, Offline Zone (`blocks` as for [`IoKind::ZoneOpen`]).
    ZoneOffline,
}

impl IoKind {
    fn noun(self) -> &'static str {
        match self {
            IoKind::Read => "read",
            IoKind::Write => "write",
            IoKind::Flush => "flush",
            IoKind::WriteZeroes => "write zeroes",
            IoKind::DatasetManagement => "dataset management",
            IoKind::Verify => "verify",
            IoKind::Compare => "compare",
            IoKind::ZoneAppend => "zone append",
            IoKind::ZoneReport => "zone report",
            IoKind::ZoneOpen => "zone open",
            IoKind::ZoneClose => "zone close",
            IoKind::ZoneFinish => "zone finish",
            IoKind::ZoneReset => "zone reset",
            IoKind::ZoneOffline => "zone offline",
        }
    }
}

/// What a failed command was, so an error can say it in a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandDesc {
    /// An I/O command on a namespace.
    Io {
        /// Which command.
        kind: IoKind,
        /// Namespace ID.
        nsid: u32,
        /// Starting LBA (0 where the command has none).
        slba: u64,
        /// Number of logical blocks (0 where the command has none).
        blocks: u32,
    },
    /// An admin command.
    Admin {
        /// The command's name, such as `Identify`.
        name: &'static str,
        /// Its opcode.
        opcode: u8,
    },
}

impl fmt::Display for CommandDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CommandDesc::Io {
                kind: kind @ (IoKind::Flush | IoKind::DatasetManagement),
                nsid,
                ..
            } => write!(f, "{} on namespace {nsid}", kind.noun()),
            CommandDesc::Io {
                kind: IoKind::ZoneReport,
                nsid,
                slba,
                ..
            } => write!(f, "zone report from LBA {slba:#x} on namespace {nsid}"),
            CommandDesc::Io {
                kind:
                    kind @ (IoKind::ZoneOpen
                    | IoKind::ZoneClose
                    | IoKind::ZoneFinish
                    | IoKind::ZoneReset
                    | IoKind::ZoneOffline),
                nsid,
                slba,
                blocks,
            } => match blocks {
                0 => write!(f, "{} of every zone on namespace {nsid}", kind.noun()),
                _ => write!(
                    f,
                    "{} of the zone at LBA {slba:#x} on namespace {nsid}",
                    kind.noun()
                ),
            },
            CommandDesc::Io {
                kind,
                nsid,
                slba,
                blocks,
            } => write!(
                f,
                "{} of {blocks} block{} at LBA {slba:#x} on namespace {nsid}",
                kind.noun(),
                if blocks == 1 { "" } else { "s" }
            ),
            CommandDesc::Admin { name, opcode } => {
                write!(f, "admin command {name} (opcode {opcode:#04x})")
            }
        }
    }
}

/// Why a data buffer cannot be described with PRPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrpRule {
    /// The buffer is empty.
    Empty,
    /// A segment's address is not dword aligned.
    NotDwordAligned,
    /// A segment after the first does not start on a memory page boundary.
    MiddleStartNotPageAligned,
    /// A segment before the last does not end on a memory page boundary.
    MiddleEndNotPageAligned,
    /// The buffer needs more PRP entries than the command's PRP list pages hold.
    TooManyPages,
    /// The buffer length does not match the command's transfer length.
    LengthMismatch,
}

impl fmt::Display for PrpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrpRule::Empty => "the buffer is empty",
            PrpRule::NotDwordAligned => "its address is not 4-byte aligned",
            PrpRule::MiddleStartNotPageAligned => {
                "it follows another segment but does not start on a page boundary"
            }
            PrpRule::MiddleEndNotPageAligned => {
                "another segment follows it but it does not end on a page boundary"
            }
            PrpRule::TooManyPages => "the transfer needs more PRP entries than fit the list pages",
            PrpRule::LengthMismatch => "the buffer length differs from the transfer length",
        })
    }
}

/// Why a data buffer cannot be described with an SGL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SglRule {
    /// The buffer is empty.
    Empty,
    /// The controller needs dword-aligned Data Blocks (SGLS 10b) and a segment's
    /// address or length is not a multiple of 4.
    NotDwordAligned,
    /// A segment is longer than one Data Block descriptor's 32-bit length.
    LongerThanDataBlock,
    /// A segment runs past the end of the 64-bit address space.
    WrapsAddressSpace,
    /// The buffer needs more descriptors than fit the command's list pages.
    TooManyDescriptors,
}

impl fmt::Display for SglRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SglRule::Empty => "the buffer is empty",
            SglRule::NotDwordAligned => {
                "the controller requires 4-byte aligned addresses and lengths in SGLs"
            }
            SglRule::LongerThanDataBlock => "it is longer than 4 GiB - 1 bytes",
            SglRule::WrapsAddressSpace => "it runs past the end of the address space",
            SglRule::TooManyDescriptors => {
                "the buffer has more segments than fit the command's SGL list pages; use fewer, larger segments"
            }
        })
    }
}

/// Why a VFIO step failed: the cause of [`Error::Vfio`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VfioCause {
    /// vfio-ioctls reported an error.
    #[error(transparent)]
    Ioctl(#[from] vfio_ioctls::VfioError),
    /// A system call failed.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// A device node is missing.
    #[error("{} does not exist", .0.display())]
    MissingNode(PathBuf),
    /// More interrupt vectors were asked for than the device offers.
    #[error("{requested} vectors requested, the device offers {offered}")]
    TooManyVectors {
        /// Vectors asked for.
        requested: u16,
        /// Vectors the device offers.
        offered: u16,
    },
}

/// Errors reported by the driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- opening a device ----
    /// The device name could not be parsed.
    #[error(transparent)]
    DeviceName(#[from] crate::device::DeviceNameError),
    /// The emulated controller refused its configuration or a request.
    #[cfg(feature = "emu")]
    #[error("emulated controller: {0}")]
    Emu(#[source] nvme_emu::EmuError),
    /// The device name asks for the emulated controller, which this build leaves out.
    #[error("{name}: this build has no emulated controller (the nvme crate was built without its `emu` feature); use a PCI address or rebuild with the feature")]
    NoEmulatedController {
        /// The device name given.
        name: String,
    },
    /// `/dev/vfio/vfio` is missing.
    #[error("/dev/vfio/vfio does not exist: load the vfio-pci module (modprobe vfio-pci) on a kernel with VFIO and an IOMMU enabled")]
    NoVfio,
    /// sysfs has no such PCI function.
    #[error("no PCI device {device} in /sys/bus/pci/devices")]
    PciDeviceNotFound {
        /// PCI address.
        device: String,
    },
    /// The function has no IOMMU group.
    #[error("PCI device {device} has no IOMMU group: enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line)")]
    NoIommuGroup {
        /// PCI address.
        device: String,
    },
    /// The function is not bound to `vfio-pci`.
    #[error("PCI device {device} is bound to {}, not vfio-pci: unbind it and bind it to vfio-pci (driver_override)", driver.as_deref().unwrap_or("no driver"))]
    NotBoundToVfio {
        /// PCI address.
        device: String,
        /// Its current driver.
        driver: Option<String>,
    },
    /// Another device in the IOMMU group is still bound to a host driver.
    #[error("IOMMU group {group} of {device} is not viable: {} still bound to a host driver; bind every device of the group to vfio-pci or unbind it", if others.is_empty() { "another device is".to_string() } else { others.join(", ") + " is" })]
    GroupNotViable {
        /// PCI address.
        device: String,
        /// IOMMU group number.
        group: u32,
        /// The other members still bound, as `ADDRESS (driver)`.
        others: Vec<String>,
    },
    /// Opening a VFIO node was refused.
    #[error("permission denied opening {}: run as root or give this user the device node", path.display())]
    VfioPermissionDenied {
        /// The node.
        path: PathBuf,
    },
    /// RLIMIT_MEMLOCK is below the DMA memory the driver maps.
    #[error("locked-memory limit is {limit} bytes but DMA mapping needs {needed} bytes: raise it (ulimit -l {}, LimitMEMLOCK= in a systemd unit, or memlock in /etc/security/limits.conf) or run as root", needed.div_ceil(1024))]
    MemlockTooLow {
        /// Bytes the driver maps.
        needed: u64,
        /// The current soft limit in bytes.
        limit: u64,
    },
    /// BAR0 cannot be mapped.
    #[error("BAR0 of {device} cannot be memory-mapped (region flags {flags:#x}, size {size:#x})")]
    BarNotMappable {
        /// PCI address.
        device: String,
        /// VFIO region flags.
        flags: u32,
        /// Region size.
        size: u64,
    },
    /// A PCI config-space access failed.
    #[error("config space access at {offset:#x} on {device} failed: {source}")]
    ConfigSpace {
        /// PCI address.
        device: String,
        /// Config-space offset.
        offset: u64,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// A PCI config-space write did not stick.
    #[error("config space write at {offset:#x} on {device} did not stick: wrote {wrote:#06x} but read back {read:#06x}")]
    ConfigSpaceReadBack {
        /// PCI address.
        device: String,
        /// Config-space offset.
        offset: u64,
        /// The value written.
        wrote: u16,
        /// The value read back.
        read: u16,
    },
    /// The function reset failed.
    #[error("function reset of {device} failed: {source}")]
    ResetFailed {
        /// PCI address.
        device: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// Another VFIO step failed.
    #[error("VFIO: {op} for {device} failed: {source}")]
    Vfio {
        /// PCI address.
        device: String,
        /// The step.
        op: &'static str,
        /// Why.
        #[source]
        source: VfioCause,
    },
    /// DMA memory could not be allocated or mapped.
    #[error("DMA memory for {what}: {source}")]
    Dma {
        /// What the memory was for.
        what: &'static str,
        /// The allocator's error.
        #[source]
        source: hugepages::Error,
    },
    /// An access outside the driver's own DMA memory: a bug in the driver.
    #[error("driver bug: {0}")]
    MemoryAccess(#[from] hugepages::AccessError),

    // ---- controller state ----
    /// CSTS.CFS is set.
    #[error("controller {device} reports a fatal status (CSTS.CFS) during {during}; reset it")]
    ControllerFatal {
        /// Device name.
        device: String,
        /// The step in progress.
        during: &'static str,
    },
    /// Registers read all ones: the device is gone.
    #[error("controller {device} is gone ({}) during {during}", reason.as_deref().unwrap_or("registers read all ones"))]
    DeviceGone {
        /// Device name.
        device: String,
        /// The step in progress.
        during: &'static str,
        /// What the transport knows of why (a refused reconnect, a lost connection);
        /// `None` when only the registers tell.
        reason: Option<String>,
    },
    /// The controller was shut down (its `Controller` dropped or `shutdown` called).
    #[error("controller {device} has been shut down; {during} needs a controller that is up")]
    ShutDown {
        /// Device name.
        device: String,
        /// What was attempted.
        during: &'static str,
    },
    /// A bounded wait ran out.
    #[error("controller {device} did not {what} within {waited:?}")]
    Timeout {
        /// Device name.
        device: String,
        /// What was awaited, as a verb phrase ("become ready").
        what: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// The controller lacks something the driver needs.
    #[error("controller {device} does not support {what}")]
    Unsupported {
        /// Device name.
        device: String,
        /// The missing feature.
        what: String,
    },
    /// The controller returned data the driver cannot use.
    #[error("controller {device} returned invalid data: {detail}")]
    BadDeviceData {
        /// Device name.
        device: String,
        /// What was wrong.
        detail: String,
    },

    // ---- commands ----
    /// The controller completed a command with an error status.
    #[error("{command} failed: {status}")]
    CommandFailed {
        /// The command.
        command: CommandDesc,
        /// The completion status.
        status: Status,
    },
    /// A command was outstanding past its deadline and was aborted.
    #[error("{command} timed out after {timeout:?} and was aborted")]
    CommandTimedOut {
        /// The command.
        command: CommandDesc,
        /// The deadline it missed.
        timeout: Duration,
    },
    /// A command was cut short by a controller reset.
    #[error("{command} was outstanding when the controller was reset; it did not complete")]
    ControllerReset {
        /// The command.
        command: CommandDesc,
    },
    /// The controller stopped working (shut down, gone, or failed beyond reset) while the
    /// command was outstanding.
    #[error("{command} did not complete: controller {device} {reason}")]
    ControllerDown {
        /// The command.
        command: CommandDesc,
        /// Device name.
        device: String,
        /// What happened to the controller.
        reason: &'static str,
    },
    /// Every command slot of the queue is in use.
    #[error("queue {qid} is full ({depth} commands outstanding); process completions and retry")]
    QueueFull {
        /// Queue ID.
        qid: u16,
        /// Commands the queue holds.
        depth: u16,
    },
    /// One block (with its interleaved metadata) is larger than one command may
    /// transfer, so the request cannot be split into commands.
    #[error("{command} cannot be split into commands: one block takes {bytes} bytes of buffer, more than the controller's limit of {max} bytes per command (MDTS)")]
    ExceedsMdts {
        /// The command.
        command: CommandDesc,
        /// Buffer bytes of one block.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A data buffer breaks the PRP rules.
    #[error("data segment {index} ({iova:#x}+{len:#x}) cannot be described with PRPs: {rule}")]
    BadSegment {
        /// Segment index within the buffer.
        index: usize,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: usize,
        /// The rule it breaks.
        rule: PrpRule,
    },
    /// The namespace does not exist or is inactive.
    #[error("namespace {nsid} is not an active namespace of {device}")]
    NoSuchNamespace {
        /// Device name.
        device: String,
        /// Namespace ID.
        nsid: u32,
    },
    /// The namespace keeps metadata in a separate buffer and the command has none.
    #[error("namespace {nsid} is formatted with {metadata_bytes} bytes of separate metadata per block and the command carried no metadata buffer; format it without metadata or with extended LBAs")]
    MetadataBufferRequired {
        /// Namespace ID.
        nsid: u32,
        /// Separate metadata bytes per block.
        metadata_bytes: u16,
    },
    /// A command's separate metadata buffer does not hold exactly the metadata the
    /// command moves (or the namespace's format has no separate metadata).
    #[error("{command}: the metadata buffer holds {given} bytes and the command moves {expected} bytes of separate metadata")]
    MetadataLengthMismatch {
        /// The command.
        command: CommandDesc,
        /// Separate metadata bytes the command moves (0: the format has none).
        expected: u64,
        /// Bytes in the buffer given.
        given: u64,
    },
    /// The namespace's in-use format is reserved or inconsistent, so the size of a
    /// transfer cannot be known.
    #[error("namespace {nsid} reports a reserved or inconsistent format (LBA format, metadata or protection settings); I/O to it is refused so no transfer can outgrow its buffers")]
    UnusableFormat {
        /// Namespace ID.
        nsid: u32,
    },
    /// A request is out of range for the namespace or buffer.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No more I/O queues can be created.
    #[error("controller {device} has no free I/O queue ({granted} granted, all in use)")]
    NoFreeQueue {
        /// Device name.
        device: String,
        /// Queues granted by Set Features Number of Queues.
        granted: u16,
    },
    /// Waiting for an interrupt failed.
    #[error("waiting for interrupt vector {vector} failed: {source}")]
    Interrupt {
        /// Vector.
        vector: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Compare found the blocks on the device different from the buffer (Media and
    /// Data Integrity Errors, Compare Failure).
    #[error("{command}: the blocks on the device differ from the buffer ({status})")]
    CompareFailure {
        /// The Compare.
        command: CommandDesc,
        /// The completion status.
        status: Status,
    },
    /// The controller did not execute one command of a fused operation because the
    /// other failed or was missing (Command Aborted due to Failed Fused Command, or due
    /// to Missing Fused Command).
    #[error("{command} was not executed: {status} (the other command of its fused operation failed or was missing)")]
    FusedCommandAborted {
        /// The command that was not executed.
        command: CommandDesc,
        /// The completion status.
        status: Status,
    },
    /// A data buffer cannot be described with an SGL (on a queue pair that uses SGLs
    /// for every command, or whose buffer PRPs could not describe either).
    #[error("data segment {index} ({iova:#x}+{len:#x}) cannot be described with an SGL: {rule}")]
    BadSglSegment {
        /// Segment index within the buffer.
        index: usize,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: usize,
        /// The rule it breaks.
        rule: SglRule,
    },
    /// The controller failed a command's end-to-end protection information check
    /// (SCT 2h, SC 82h guard, 83h application tag, 84h reference tag).
    #[error("{command} failed the end-to-end {check} check {} ({status}); {}", match lba { Some(l) => format!("at LBA {l:#x}"), None => "in one of its blocks (IoQueuePair::locate_end_to_end_error reads the LBA from the Error Information log)".to_string() }, check.advice())]
    EndToEnd {
        /// The command.
        command: CommandDesc,
        /// Which field failed.
        check: crate::pi::PiCheck,
        /// The completion status.
        status: Status,
        /// The failing LBA, once read from the controller's Error Information log
        /// (the blocking calls read it; otherwise `None`).
        lba: Option<u64>,
        /// Submission queue of the command (to find its Error Information entry).
        qid: u16,
        /// Command identifier of the command.
        cid: u16,
    },
    /// A protection information tuple checked by the host does not match.
    #[error("protection information of LBA {lba:#x}: the {check} is {found:#x}, expected {expected:#x}; {}", check.advice())]
    PiMismatch {
        /// The block whose tuple failed.
        lba: u64,
        /// Which field failed.
        check: crate::pi::PiCheck,
        /// The value expected (the application tag under the mask).
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// A buffer given for host protection information does not fit the namespace's
    /// layout.
    #[error("the {buffer} buffer holds {len} bytes, not a non-zero multiple of {expected} bytes per block that the namespace's protection information layout needs")]
    PiBufferLength {
        /// `data` or `metadata`.
        buffer: &'static str,
        /// Its length.
        len: usize,
        /// Bytes per block it must hold (0: the layout has no such buffer).
        expected: usize,
    },
    /// The namespace's protection information format is one this driver cannot
    /// generate or check.
    #[error("namespace {nsid} uses {detail}, which host protection information does not support; use PRACT or reformat the namespace")]
    UnsupportedProtection {
        /// Namespace ID.
        nsid: u32,
        /// What is unsupported.
        detail: &'static str,
    },
    /// A read or write needs more commands than the queue pair can hold at once.
    #[error("{command} needs {commands} commands of at most {per_command} bytes each (MDTS) and the queue pair holds at most {queue_commands} commands: create it with a depth of at least {} or submit smaller requests", *commands as u64 + 1)]
    RequestTooLarge {
        /// The request.
        command: CommandDesc,
        /// Commands it is split into.
        commands: u32,
        /// Largest buffer bytes of one command.
        per_command: u64,
        /// Commands the queue pair holds at once (its depth minus one).
        queue_commands: usize,
    },
    /// The namespace uses an I/O command set this driver does not implement (or is
    /// zoned with zone data that could not be read); it is listed, but I/O to it is
    /// refused rather than sent as NVM commands.
    #[error("namespace {nsid} uses the {csi} command set (CSI {:#04x}), which this driver cannot use (a command set it does not implement, or zone data it could not read at start-up); its I/O is refused", csi.0)]
    UnsupportedCommandSet {
        /// Namespace ID.
        nsid: u32,
        /// Its Command Set Identifier.
        csi: crate::spec::identify::CommandSetId,
    },
    /// A zone command was sent to a namespace that is not zoned.
    #[error("{command}: namespace {nsid} is not a zoned namespace (zone commands need the Zoned Namespace Command Set)")]
    NotZoned {
        /// The command.
        command: CommandDesc,
        /// Namespace ID.
        nsid: u32,
    },
    /// The controller refused a command with a Zoned Namespace status (SCT 1h, SC
    /// B8h..BFh): the zone and the LBA named, with the zone's write pointer where the
    /// driver read it.
    #[error("{command} failed in the zone at LBA {zone_start:#x}{}: {status}; {}", match write_pointer { Some(wp) => format!(" (write pointer {wp:#x})"), None => String::new() }, crate::zns::advice(*status))]
    Zone {
        /// The command.
        command: CommandDesc,
        /// The completion status.
        status: Status,
        /// Start LBA of the zone the command addressed.
        zone_start: u64,
        /// The zone's write pointer, once read with a zone report (the blocking calls
        /// read it; otherwise `None`).
        write_pointer: Option<u64>,
        /// The LBA the command addressed (its SLBA).
        lba: u64,
    },
    /// A command failed on every attempt: it was resubmitted after each failure that
    /// allowed a retry (a controller reset, a transient status without DNR) until the
    /// retry budget ([`crate::Options::command_retries`]) ran out. `source` is the
    /// last attempt's error.
    #[error("{command} retried {retries} times without success; the last attempt: {source}")]
    RetriesExhausted {
        /// The command.
        command: CommandDesc,
        /// Resubmissions made after the first attempt.
        retries: u8,
        /// The error of the last attempt.
        #[source]
        source: Box<Error>,
    },
    // ---- NVMe/TCP ----
    /// A `tcp://` device name could not be parsed.
    #[error("bad NVMe/TCP device name '{name}': {reason}; expected tcp://HOST[:PORT][/SUBSYSTEM-NQN][,hostnqn=NQN][,hostid=UUID][,kato=MS][,hdgst=on][,ddgst=on][,disable_sqflow=on]")]
    BadTcpName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made, or the connection failed while it was being
    /// initialised (ICReq/ICResp).
    #[error("cannot connect to NVMe/TCP target {target} ({queue}): {reason}")]
    TcpConnect {
        /// The target (`tcp://HOST:PORT/NQN`).
        target: String,
        /// Which queue was connecting.
        queue: String,
        /// The socket's or the protocol's error.
        reason: String,
    },
    /// The target refused a Fabrics Connect (unknown subsystem NQN, host not allowed,
    /// bad queue size) with this status.
    #[error("NVMe/TCP target {target} refused to connect {queue}: {reason} ({status})")]
    ConnectRejected {
        /// The target.
        target: String,
        /// Which queue was connecting.
        queue: String,
        /// The status explained.
        reason: String,
        /// The Connect command's status.
        status: Status,
    },
    /// A controller that went away stays unreachable: the transport says why (a lost
    /// connection, a refused reconnect, a keep-alive timeout).
    #[error("controller {device} is unreachable during {during}: {reason}")]
    Unreachable {
        /// Device name.
        device: String,
        /// The step in progress.
        during: &'static str,
        /// What the transport saw.
        reason: String,
    },
}

impl Error {
    /// The NVMe status of a failed command, when the controller reported one.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::CommandFailed { status, .. }
            | Error::CompareFailure { status, .. }
            | Error::FusedCommandAborted { status, .. }
            | Error::EndToEnd { status, .. }
            | Error::Zone { status, .. } => Some(*status),
            Error::RetriesExhausted { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The error of `command` completed with the failure `status`: the statuses a
    /// caller handles by kind get their own variant, the rest are
    /// [`Error::CommandFailed`].
    pub(crate) fn command_failed(command: CommandDesc, status: Status) -> Error {
        use crate::spec::status::{GenericStatus as G, MediaStatus as M, StatusCode};
        match status.code() {
            StatusCode::Media(M::CompareFailure) => Error::CompareFailure { command, status },
            StatusCode::Generic(G::CommandAbortedFailedFused | G::CommandAbortedMissingFused) => {
                Error::FusedCommandAborted { command, status }
            }
            _ => Error::CommandFailed { command, status },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::status::GenericStatus;

    #[test]
    fn failed_read_prints_as_a_sentence_with_spec_status() {
        let err = Error::CommandFailed {
            command: CommandDesc::Io {
                kind: IoKind::Read,
                nsid: 1,
                slba: 0x100,
                blocks: 8,
            },
            status: Status::generic(GenericStatus::LbaOutOfRange).with_dnr(true),
        };
        assert_eq!(
            err.to_string(),
            "read of 8 blocks at LBA 0x100 on namespace 1 failed: LBA Out of Range (SCT 0x0, SC 0x80, DNR)"
        );
    }

    #[test]
    fn dma_error_keeps_the_allocator_error_as_its_source() {
        let err = Error::Dma {
            what: "an I/O SQ",
            source: hugepages::Error::InvalidLength { len: 0 },
        };
        assert_eq!(
            err.to_string(),
            "DMA memory for an I/O SQ: invalid DMA length 0"
        );
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.downcast_ref::<hugepages::Error>().is_some());
    }

    #[test]
    fn vfio_error_keeps_the_os_error_as_its_source() {
        let err = Error::Vfio {
            device: "0000:01:00.0".into(),
            op: "create eventfd",
            source: std::io::Error::from_raw_os_error(libc::EMFILE).into(),
        };
        assert!(
            err.to_string()
                .starts_with("VFIO: create eventfd for 0000:01:00.0 failed: "),
            "{err}"
        );
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.downcast_ref::<VfioCause>().is_some());
    }

    #[test]
    fn compare_and_fused_statuses_decode_into_their_own_variants() {
        use crate::spec::status::MediaStatus;
        let command = CommandDesc::Io {
            kind: IoKind::Compare,
            nsid: 1,
            slba: 0,
            blocks: 1,
        };
        let failed = |s: Status| Error::command_failed(command, s);
        assert!(matches!(
            failed(Status::media(MediaStatus::CompareFailure)),
            Error::CompareFailure { .. }
        ));
        for g in [
            GenericStatus::CommandAbortedFailedFused,
            GenericStatus::CommandAbortedMissingFused,
        ] {
            let e = failed(Status::generic(g));
            assert!(matches!(e, Error::FusedCommandAborted { .. }), "{e:?}");
            assert_eq!(e.status(), Some(Status::generic(g)));
        }
        assert!(matches!(
            failed(Status::media(MediaStatus::UnrecoveredReadError)),
            Error::CommandFailed { .. }
        ));
    }

    #[test]
    fn flush_names_only_the_namespace() {
        let d = CommandDesc::Io {
            kind: IoKind::Flush,
            nsid: 2,
            slba: 0,
            blocks: 0,
        };
        assert_eq!(d.to_string(), "flush on namespace 2");
    }
}
