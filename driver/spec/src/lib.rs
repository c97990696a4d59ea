//! The NVMe specification as plain data: registers, queue entries, command
//! builders and decoders, identify structures, log pages, protection information,
//! status codes and the Zoned Namespace Command Set.
//! No I/O and no `unsafe`.
//!
//! All multi-byte fields are little endian on the wire; the fixed-layout types
//! here map them onto native integers, so the crate supports little-endian
//! targets only.
#![forbid(unsafe_code)]

#[cfg(target_endian = "big")]
compile_error!("nvme-spec maps little-endian wire structures onto native integers");

pub mod admin;
pub mod command;
mod error;
pub mod fabrics;
pub mod features;
pub mod identify;
pub mod log;
pub mod nvm;
pub mod pi;
pub mod registers;
pub mod sgl;
pub mod status;
pub mod tcp;
pub mod zns;

pub use command::{AdminOpcode, CompletionEntry, NvmOpcode, SubmissionEntry};
pub use error::Error;
pub use identify::{IdentifyController, IdentifyNamespace, LbaFormat};
pub use log::{ErrorLogEntry, SmartLog};
pub use nvm::DsmRange;
pub use registers::{Aqa, Cap, Cc, Csts, Version};
pub use status::{Status, StatusCode, StatusCodeType};
pub use zns::{ZoneDescriptor, ZoneState};
