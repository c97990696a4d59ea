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
}
