//! The crate's one error type.

/// Errors from building commands or parsing data structures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A buffer is shorter than the structure read from it.
    #[error("{structure} needs {needed} bytes but the buffer holds only {actual}")]
    BufferTooShort {
        /// Name of the structure being parsed.
        structure: &'static str,
        /// Bytes the structure occupies.
        needed: usize,
        /// Bytes the buffer holds.
        actual: usize,
    },
    /// FLBAS selects an LBA format beyond the NLBAF count.
    #[error(
        "the namespace selects LBA format {index} (FLBAS) but NLBAF is {nlbaf}, \
         so the Identify Namespace data is inconsistent"
    )]
    LbaFormatOutOfRange {
        /// Format index selected by FLBAS.
        index: u8,
        /// Number of LBA formats, 0's based, as reported.
        nlbaf: u8,
    },
    /// An LBA format's data size is outside what a block device can use.
    #[error("LBA data size exponent {lbads} is outside 9..=31 (512 bytes to 2 GiB)")]
    LbaSizeOutOfRange {
        /// The LBADS exponent.
        lbads: u8,
    },
    /// A namespace size multiplied by its block size overflows 64 bits.
    #[error("namespace of {blocks} blocks of {block_size} bytes overflows a 64-bit byte count")]
    CapacityOverflow {
        /// Number of logical blocks.
        blocks: u64,
        /// Bytes per logical block.
        block_size: u32,
    },
    /// A command was asked to move no blocks or more than NLB can express.
    #[error("an NVM command moves 1 to 65536 logical blocks; {count} was requested")]
    InvalidBlockCount {
        /// The requested number of blocks.
        count: u32,
    },
    /// A queue size outside 2..=65536 entries.
    #[error("an I/O queue holds 2 to 65536 entries; {entries} was requested")]
    InvalidQueueSize {
        /// The requested number of entries.
        entries: u32,
    },
    /// An admin queue size outside 2..=4096 entries.
    #[error("an admin queue holds 2 to 4096 entries; {entries} was requested")]
    InvalidAdminQueueSize {
        /// The requested number of entries.
        entries: u32,
    },
    /// A number-of-queues request outside 1..=65535.
    #[error("the Number of Queues feature asks for 1 to 65535 queues of each kind; {sq} SQs and {cq} CQs were requested")]
    InvalidQueueCount {
        /// Submission queues requested.
        sq: u32,
        /// Completion queues requested.
        cq: u32,
    },
    /// A log page length that is zero, not dword-multiple, or too long.
    #[error("a log page read is a multiple of 4 bytes between 4 and 16 GiB; {bytes} bytes were requested")]
    InvalidLogLength {
        /// The requested length in bytes.
        bytes: u64,
    },
    /// A log page offset that is not a multiple of 4 bytes.
    #[error("a log page offset must be a multiple of 4 bytes; {offset} was requested")]
    UnalignedLogOffset {
        /// The requested offset in bytes.
        offset: u64,
    },
    /// A Dataset Management command with no ranges or more than 256.
    #[error("Dataset Management takes 1 to 256 ranges; {count} were requested")]
    InvalidRangeCount {
        /// The requested number of ranges.
        count: usize,
    },
    /// A namespace list entry that is not a valid, strictly increasing NSID.
    #[error("namespace list entry {index} holds NSID {nsid:#x}, which is not a valid NSID greater than the one before it")]
    InvalidNamespaceList {
        /// Position in the list.
        index: usize,
        /// The NSID found there.
        nsid: u32,
    },
    /// A namespace list with more entries than one page holds.
    #[error("a namespace list page holds at most 1024 NSIDs; {count} were given")]
    NamespaceListTooLong {
        /// The number of NSIDs given.
        count: usize,
    },
    /// DPS selects a protection information type the specification reserves.
    #[error("the namespace reports protection information type {pit} (DPS), which is reserved; types 0 to 3 exist")]
    InvalidProtectionType {
        /// The DPS protection information type field.
        pit: u8,
    },
    /// Protection information is enabled on a format with too little metadata to hold it.
    #[error("the namespace enables protection information type {pit} but its format has {ms} metadata bytes per block, fewer than the 8 a protection information tuple needs")]
    ProtectionWithoutMetadata {
        /// The DPS protection information type field.
        pit: u8,
        /// Metadata bytes per block of the active format.
        ms: u16,
    },
    /// A namespace identification descriptor runs past the end of its list.
    #[error("the namespace identification descriptor at byte {offset} claims {nidl} bytes of identifier, past the end of the {len}-byte list")]
    DescriptorOverrun {
        /// Byte offset of the descriptor's header in the list.
        offset: usize,
        /// Its Namespace Identifier Length.
        nidl: u8,
        /// Length of the list.
        len: usize,
    },
    /// A namespace identification descriptor whose length does not fit its type.
    #[error("the namespace identification descriptor at byte {offset} has type {nidt} and length {nidl}, but that type is {expected} bytes long")]
    DescriptorLength {
        /// Byte offset of the descriptor's header in the list.
        offset: usize,
        /// Its Namespace Identifier Type.
        nidt: u8,
        /// Its Namespace Identifier Length.
        nidl: u8,
        /// The length the specification gives that type.
        expected: u8,
    },
    /// A namespace identification descriptor type reported twice in one list.
    #[error("the namespace identification descriptor at byte {offset} repeats type {nidt}, which a list holds at most once")]
    DuplicateDescriptor {
        /// Byte offset of the second descriptor's header.
        offset: usize,
        /// The repeated Namespace Identifier Type.
        nidt: u8,
    },
    /// An extended LBA format reports the reserved protection information format 3.
    #[error("the namespace reports protection information format {pif} (ELBAF PIF), which is reserved; formats 0 (16-bit guard), 1 (32-bit guard) and 2 (64-bit guard) exist")]
    InvalidPiFormat {
        /// The PIF field.
        pif: u8,
    },
    /// A Zone Management Receive buffer size the NUMD field cannot express.
    #[error("a zone report is a multiple of 4 bytes between 64 (one header) and 16 GiB; {bytes} bytes were requested")]
    InvalidZoneReportLength {
        /// The requested buffer size in bytes.
        bytes: u64,
    },
    /// A zone descriptor holds a Zone State the specification reserves.
    #[error("zone descriptor {index} reports zone state {zs:#x}, which is reserved; states 1h-4h and Dh-Fh exist")]
    InvalidZoneState {
        /// Index of the descriptor in the report.
        index: usize,
        /// The ZS field.
        zs: u8,
    },
    /// An NQN that is empty, longer than 223 bytes or holds a NUL.
    #[error("the {what} is {len} bytes long; an NQN is 1 to 223 bytes without NUL")]
    InvalidNqn {
        /// Which NQN.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// An NVMe/TCP PDU whose header breaks the transport specification.
    #[error("malformed NVMe/TCP {pdu} PDU: {detail}")]
    InvalidPdu {
        /// The PDU type's name.
        pdu: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}
