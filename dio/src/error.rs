//! The errors of the direct-I/O layer, each with the errno a POSIX caller expects.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why a direct-I/O request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DioError {
    /// The request's position, length or buffers break the alignment rules.
    #[error("invalid direct I/O: {what} must be a multiple of {align} bytes (got {value:#x})")]
    Inval {
        /// What is misaligned, such as `position | length` or `buffer address`.
        what: &'static str,
        /// The value that broke the rule.
        value: u64,
        /// The required alignment in bytes.
        align: u64,
    },
    /// An argument is out of range or the provider refuses the request as malformed.
    #[error("invalid direct I/O: {reason}")]
    InvalidRequest {
        /// What was wrong, in words.
        reason: &'static str,
    },
    /// The device or the extent map failed the request.
    #[error("I/O error: {reason}")]
    Io {
        /// What failed, in words.
        reason: &'static str,
    },
    /// A device command completed with an error status.
    #[error("device failed a {op} command: {} (retry {})", status_text(*status), if *dnr { "not allowed" } else { "allowed" })]
    Device {
        /// The command, such as `read`, `write`, `flush` or `write zeroes`.
        op: &'static str,
        /// Status field: SCT in bits 10:8, SC in bits 7:0.
        status: u16,
        /// The Do Not Retry bit.
        dnr: bool,
    },
    /// The request would block or is not a pure overwrite; retry without NOWAIT or OVERWRITE_ONLY.
    #[error("operation would block: {reason}; retry without NOWAIT or OVERWRITE_ONLY")]
    Again {
        /// Why the request could not proceed without blocking.
        reason: &'static str,
    },
    /// A buffer is not reachable by the device at the offset the request needed.
    #[error("buffer {index} is not device-reachable at offset {offset:#x}")]
    Fault {
        /// Index of the buffer in the iterator.
        index: usize,
        /// Byte offset inside that buffer.
        offset: usize,
    },
    /// The file system has no free blocks for the write.
    #[error("no space left: {needed} bytes needed, {free} bytes free")]
    NoSpace {
        /// Bytes the write needed to allocate.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// The request's file does not exist.
    #[error("no such file: {file}")]
    NoEntry {
        /// The file handle that was asked for.
        file: u64,
    },
    /// Every request slot is in use; complete some requests first.
    #[error("all {slots} request slots are in use; reap completions and retry")]
    Busy {
        /// Number of request slots.
        slots: usize,
    },
    /// The device did not complete the request in time.
    #[error("device did not complete the request within {millis} ms")]
    Timeout {
        /// How long the caller waited, in milliseconds.
        millis: u64,
    },
    /// A compare found the file's data different from the buffers (the device's Compare
    /// Failure, or nonzero bytes compared with a hole or unwritten extent).
    #[error("miscompare: the data differs from the buffers")]
    Miscompare,
    /// The queue pair failed a command itself, without a device status: the driver's
    /// error says why (the command timed out and was aborted, a controller reset cut it
    /// short, the device is gone, its retries ran out) and is the [`source`]
    /// (`Error::source`), so a caller can downcast it to the driver's error type.
    ///
    /// [`source`]: std::error::Error::source
    #[error("driver failed the {op}: {cause}")]
    Driver {
        /// What failed: a command (`read`, `write`, `write zeroes`, `flush`, `compare`)
        /// or `request` (a submission or a wait the queue pair refused).
        op: &'static str,
        /// The driver's error.
        #[source]
        cause: Cause,
    },
}

impl DioError {
    /// The POSIX errno this error corresponds to.
    pub fn errno(&self) -> i32 {
        match self {
            DioError::Inval { .. } | DioError::InvalidRequest { .. } => libc::EINVAL,
            DioError::Io { .. } | DioError::Device { .. } | DioError::Driver { .. } => libc::EIO,
            DioError::Again { .. } | DioError::Busy { .. } => libc::EAGAIN,
            DioError::Fault { .. } => libc::EFAULT,
            DioError::NoSpace { .. } => libc::ENOSPC,
            DioError::NoEntry { .. } => libc::ENOENT,
            DioError::Timeout { .. } => libc::ETIMEDOUT,
            DioError::Miscompare => libc::EILSEQ,
        }
    }
}

/// A lower layer's error kept as the cause of a [`QueueError`](crate::QueueError) or a
/// [`DioError::Driver`]: it prints as that error, and as a `#[source]` field it is
/// that error (it dereferences to it), so `source()` downcasts to the driver's type.
/// Two causes are equal when they print the same.
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `e` as a cause.
    pub fn new(e: impl Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(e))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::ops::Deref for Cause {
    type Target = dyn Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// A status field as [`DioError::Device`] holds it (SCT in bits 10:8, SC in bits 7:0)
/// by its name in the specification and its numbers.
fn status_text(status: u16) -> String {
    let (sct, sc) = ((status >> 8) & 0x7, status & 0xff);
    nvme::spec::Status::from_raw(sct << 9 | sc << 1).to_string()
}

#[cfg(test)]
mod status_text_tests {
    use super::DioError;

    #[test]
    fn a_device_error_names_the_status_as_the_specification_does() {
        let e = DioError::Device {
            op: "compare",
            status: 0x0181,
            dnr: true,
        };
        assert_eq!(
            e.to_string(),
            "device failed a compare command: Invalid Protection Information (SCT 0x1, SC 0x81) (retry not allowed)"
        );
    }
}
