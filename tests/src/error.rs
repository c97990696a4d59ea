//! The crate's error type.

use std::path::PathBuf;

/// Why a test guest or the VFIO probe could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host lacks what a guest needs and it cannot be installed here.
    #[error("QEMU test guests are unavailable on this host: {reason}")]
    Unavailable {
        /// What is missing and how to provide it.
        reason: String,
    },
    /// A harness script failed before the guest ran the command.
    #[error("{script} failed with exit status {status}: {stderr}")]
    Harness {
        /// The script that failed.
        script: PathBuf,
        /// Its exit status (-1 when killed by a signal).
        status: i32,
        /// Its standard error output.
        stderr: String,
    },
    /// The guest stopped or was killed without reporting the command's exit status.
    #[error("the guest did not finish its command (timeout or crash): {stderr}\n--- console tail ---\n{console_tail}")]
    GuestDidNotFinish {
        /// run-guest's standard error output.
        stderr: String,
        /// The last lines of the guest's console.
        console_tail: String,
    },
    /// An I/O operation on the host failed.
    #[error("could not {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A VFIO operation failed.
    #[error("VFIO: could not {what}: {source}")]
    Vfio {
        /// What was being done.
        what: String,
        /// The error from `vfio-ioctls`.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// The device did not behave as the probe expects.
    #[error("probe: {0}")]
    Probe(String),
}

impl Error {
    pub(crate) fn vfio(what: &str, source: vfio_ioctls::VfioError) -> Self {
        Self::Vfio {
            what: what.into(),
            source,
        }
    }
}
