//! `nvme-setup`: prepare a Linux host for user-space NVMe (SPDK's `setup.sh` in Rust).
//!
//! Everything reads and writes through [`Host`], whose `/sys`, `/proc` and `/dev` roots can
//! point at a fake tree: there, writes land in plain files and are reported in the
//! [`Action`] log, and what only a live kernel does (modprobe, mount, rebinding a device,
//! creating `/dev/vfio/<group>`) is skipped or left unchecked.

mod bind;
mod devices;
mod diagnose;
mod error;
pub mod hugepages;
mod iommu;
mod pci;
mod status;
mod sysfs;
mod usage;
mod users;

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

pub use bind::{
    bind, unbind, BindOptions, BindReport, BindResult, Outcome, KERNEL_DRIVER, VFIO_DRIVER,
};
pub use devices::{PciDevice, NVME_CLASS};
pub use diagnose::{diagnose, Check, Diagnosis, IOMMU_FIX};
pub use error::SetupError;
pub use hugepages::{HugepagePool, MountOutcome, NodePool, Reservation};
pub use iommu::{memlock, IommuState, Limit, Node, VfioState};
pub use pci::PciAddr;
pub use status::{Controller, Status};
pub use sysfs::{Host, ProcRoot, SysfsRoot};
pub use usage::{Mount, Use};
pub use users::{effective_uid, User};

/// A change the tool made (or, on a fake tree, would have needed the kernel for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Wrote `value` to a sysfs attribute.
    Write {
        /// The attribute.
        path: PathBuf,
        /// The value, without the trailing newline.
        value: String,
    },
    /// Ran a command.
    Run {
        /// The command line.
        command: String,
    },
    /// Changed the owner of a device node.
    Chown {
        /// The node.
        path: PathBuf,
        /// New owner.
        uid: u32,
        /// New group, if changed.
        gid: Option<u32>,
    },
    /// A step left out.
    Skipped {
        /// The step.
        what: String,
        /// Why.
        why: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write { path, value } => write!(f, "wrote '{value}' to {}", path.display()),
            Action::Run { command } => write!(f, "ran {command}"),
            Action::Chown { path, uid, gid } => match gid {
                Some(g) => write!(f, "chown {uid}:{g} {}", path.display()),
                None => write!(f, "chown {uid} {}", path.display()),
            },
            Action::Skipped { what, why } => write!(f, "skipped {what} ({why})"),
        }
    }
}

/// Runs `command` (modprobe, mount), failing with its stderr, and logs it.
pub(crate) fn run_command(
    command: &mut Command,
    actions: &mut Vec<Action>,
) -> Result<(), SetupError> {
    let line = format!("{command:?}").replace('"', "");
    tracing::info!(command = %line, "running");
    let out = command.output().map_err(|e| SetupError::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(SetupError::Command {
            command: line,
            detail: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        });
    }
    actions.push(Action::Run { command: line });
    Ok(())
}
