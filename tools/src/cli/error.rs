//! The one error type of `nvme-identify`, `nvme-perf` and `nvme-dio`.

use crate::dio_cmd::script::StepError;

/// Why a tool run failed; printed as `TOOL: error: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The driver failed (bring-up, queue creation, a command).
    #[error(transparent)]
    Driver(#[from] nvme::Error),
    /// The namespace asked for is not active on the controller.
    #[error("namespace {nsid} is not active on {device} (active: {active}); pick one with --ns")]
    NoNamespace {
        /// Device name.
        device: String,
        /// The NSID asked for.
        nsid: u32,
        /// The active NSIDs, listed.
        active: String,
    },
    /// An option does not fit the device.
    #[error("{0}")]
    Invalid(String),
    /// A DMA buffer could not be allocated.
    #[error("cannot allocate {bytes} bytes of DMA memory: {source}")]
    Memory {
        /// Bytes asked for.
        bytes: usize,
        /// The allocator's error.
        #[source]
        source: hugepages::Error,
    },
    /// A direct-I/O step failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// The direct-I/O engine could not be set up.
    #[error("cannot set up direct I/O: {0}")]
    Dio(#[from] dio::DioError),
    /// An I/O thread could not be started.
    #[error("I/O thread failed: {0}")]
    Spawn(#[source] std::io::Error),
    /// An I/O thread panicked.
    #[error("I/O thread failed: an I/O thread panicked")]
    Panicked,
}
