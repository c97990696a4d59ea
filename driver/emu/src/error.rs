//! The crate's error type.

use std::path::PathBuf;

/// Why an emulated controller could not be configured or created.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    /// A device string named an option this controller does not know.
    #[error("unknown emu option `{option}`; accepted options: {accepted}")]
    UnknownOption {
        /// The option as written.
        option: String,
        /// Every accepted option name, comma separated.
        accepted: &'static str,
    },
    /// An option had a value outside what it accepts.
    #[error("invalid value `{value}` for emu option `{option}`; expected {expected}")]
    InvalidValue {
        /// The option name.
        option: &'static str,
        /// The value as written.
        value: String,
        /// A description of the accepted values.
        expected: &'static str,
    },
    /// The device string does not start with `emu`.
    #[error("`{name}` is not an emulated device name; expected `emu` or `emu:OPTION=VALUE,...`")]
    NotEmu {
        /// The string as given.
        name: String,
    },
    /// Two options contradict each other.
    #[error("emu options conflict: {reason}")]
    Conflict {
        /// What conflicts and how to resolve it.
        reason: &'static str,
    },
    /// The backing file could not be opened or sized.
    #[error("cannot use backing file {path}: {source}")]
    File {
        /// The file path.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The address space for a RAM namespace could not be reserved.
    #[error("cannot reserve {bytes} bytes of memory for a RAM namespace: {source}; choose a smaller `size` or back it with `file=PATH`")]
    Memory {
        /// Bytes asked for.
        bytes: u64,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The device thread could not be started.
    #[error("cannot start the emulated controller's device thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Interrupt vectors could not be created.
    #[error("cannot create interrupt event notifier: {0}")]
    EventFd(#[source] std::io::Error),
    /// More interrupt vectors were requested than the controller has.
    #[error("{requested} interrupt vectors requested but the controller supports {supported}")]
    TooManyVectors {
        /// Vectors requested.
        requested: u16,
        /// Vectors the controller offers.
        supported: u16,
    },
    /// The NVMe/TCP target's configuration is inconsistent.
    #[error("NVMe/TCP target configuration: {reason}")]
    TcpConfig {
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The NVMe/TCP target could not use its socket or start a thread.
    #[error("NVMe/TCP target: cannot {action}: {source}")]
    TcpSocket {
        /// What the target was doing.
        action: &'static str,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The NVMe/TCP target could not get DMA memory for the emulated controller.
    #[error("NVMe/TCP target: cannot get DMA memory for the emulated controller: {0}")]
    TcpMemory(#[source] hugepages::Error),
}
