//! Why an `nvme-store` run failed.

use store::StoreError;

use crate::cli::ToolError;

/// What went wrong; printed as `nvme-store: error: <message>` (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum StoreCmdError {
    /// Opening the device, its namespace or a DMA buffer failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The region holds no store (or its superblock is damaged).
    #[error("{device} namespace {nsid} holds no store at bytes {start}..{end} ({reason}); run 'nvme-store {device} mkfs' to create one (with the same --ns and --region)")]
    NotFormatted {
        /// Device name.
        device: String,
        /// Namespace.
        nsid: u32,
        /// First byte of the region.
        start: u64,
        /// End of the region (exclusive).
        end: u64,
        /// What the superblock check found.
        reason: &'static str,
    },
    /// `mkfs` on a region that already holds a store.
    #[error("{device} namespace {nsid} already holds a store with {files} file(s) at bytes {start}..{end}; pass --force to format it anyway (its files are lost)")]
    AlreadyFormatted {
        /// Device name.
        device: String,
        /// Namespace.
        nsid: u32,
        /// First byte of the region.
        start: u64,
        /// End of the region (exclusive).
        end: u64,
        /// Files it holds.
        files: u64,
    },
    /// No file has the name.
    #[error("no file named {name:?} in the store ('nvme-store DEVICE ls' lists the files)")]
    NoFile {
        /// The name looked up.
        name: String,
    },
    /// A file with the name already exists.
    #[error("a file named {name:?} already exists in the store; remove it with 'rm' or pick another name")]
    Exists {
        /// The name.
        name: String,
    },
    /// The name is empty, too long or holds a NUL byte.
    #[error(
        "the file name {name:?} is {len} bytes; a store file name is 1 to {max} bytes without NUL"
    )]
    BadName {
        /// The name (shortened when long).
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The longest name allowed.
        max: usize,
    },
    /// The store has too few free blocks.
    #[error("no space in the store: {needed} blocks needed, {free} free (remove files, or mkfs a larger region)")]
    NoSpace {
        /// Blocks needed.
        needed: u64,
        /// Blocks free.
        free: u64,
    },
    /// A host file could not be read or written.
    #[error("{path}: {source}")]
    HostFile {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A chunk size the device cannot take.
    #[error("--chunk {chunk} must be a nonzero multiple of the store's {block_size}-byte block, at most {max} bytes")]
    BadChunk {
        /// The value given.
        chunk: u64,
        /// The store's block size.
        block_size: u32,
        /// The largest chunk.
        max: u64,
    },
    /// The store refused or failed the operation.
    #[error("{op}: {source}")]
    Store {
        /// The subcommand.
        op: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The store moved fewer bytes than asked for.
    #[error("{op}: the store {moved} {got} bytes at offset {offset} of {name:?} where {want} were expected (run fsck)")]
    Short {
        /// The subcommand.
        op: &'static str,
        /// `wrote` or `read`.
        moved: &'static str,
        /// The file.
        name: String,
        /// Offset of the request.
        offset: u64,
        /// Bytes expected.
        want: u64,
        /// Bytes returned.
        got: u64,
    },
}

/// Shortens `name` for a message (a 10 000-byte name should not fill the screen).
pub(crate) fn shown_name(name: &str) -> String {
    const SHOWN: usize = 64;
    if name.len() <= SHOWN {
        return name.to_string();
    }
    let mut end = SHOWN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}
