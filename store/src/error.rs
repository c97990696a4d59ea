//! The crate's one error type.

use dio::DioError;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The device (or the dio layer) failed an I/O.
    #[error("store I/O failed while {during}: {source}")]
    Io {
        /// What the store was doing.
        during: &'static str,
        /// The dio layer's error.
        #[source]
        source: DioError,
    },
    /// An argument is unusable.
    #[error("invalid argument: {reason}")]
    Invalid {
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The superblock is missing or damaged: not a store, or a corrupted one.
    #[error("no valid store superblock at the region's start: {reason} (format the region, or check the offset)")]
    BadSuperblock {
        /// What failed to validate.
        reason: &'static str,
    },
    /// Neither checkpoint area holds a valid checkpoint.
    #[error("both checkpoint areas are damaged (A: {a}; B: {b}); the store cannot be opened")]
    NoCheckpoint {
        /// Why checkpoint A was rejected.
        a: &'static str,
        /// Why checkpoint B was rejected.
        b: &'static str,
    },
    /// Metadata that passed its checksums describes an impossible state.
    #[error("the store's metadata is inconsistent: {reason} (run fsck)")]
    Corrupt {
        /// What contradicts what.
        reason: String,
    },
    /// No file has the name.
    #[error("no file named {name:?}")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// A file with the name already exists.
    #[error("a file named {name:?} already exists")]
    Exists {
        /// The name.
        name: String,
    },
    /// The file was unlinked while a handle to it was still used.
    #[error("file {id} no longer exists (unlinked)")]
    Stale {
        /// The file's number.
        id: u64,
    },
    /// The data area has no room left.
    #[error("no space: {needed} blocks needed, {free} free")]
    NoSpace {
        /// Blocks the operation needs.
        needed: u64,
        /// Free blocks.
        free: u64,
    },
    /// The metadata no longer fits in a checkpoint area.
    #[error("the metadata ({bytes} bytes) does not fit a checkpoint area of {room} bytes; format with larger checkpoint areas")]
    MetadataFull {
        /// Encoded metadata size.
        bytes: usize,
        /// Room in one checkpoint area.
        room: usize,
    },
    /// The caller's buffer source gave no buffer.
    #[error("no DMA buffer of {len} bytes available for store metadata I/O")]
    NoBuffer {
        /// Bytes asked for.
        len: usize,
    },
    /// An earlier journal or checkpoint write failed, so metadata changed in
    /// memory may never reach the device: the store commits nothing more.
    #[error("the store is shut down after a failed metadata write; reopen it (the journal replays what was durable)")]
    ShutDown,
}

impl StoreError {
    pub(crate) fn io(during: &'static str) -> impl FnOnce(DioError) -> StoreError {
        move |source| StoreError::Io { during, source }
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            reason: reason.into(),
        }
    }
}
