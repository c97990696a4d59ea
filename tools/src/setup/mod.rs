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
mod status;
mod sysfs;
mod usage;
mod users;

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

use serde::{Serialize, Serializer};

pub use bind::{
    bind, unbind, BindOptions, BindReport, BindResult, Outcome, KERNEL_DRIVER, VFIO_DRIVER,
};
pub use devices::{PciDevice, NVME_CLASS};
pub use diagnose::{diagnose, Check, Diagnosis, IOMMU_FIX};
pub use error::SetupError;
pub use hugepages::{HugepagePool, MountOutcome, NodePool, Reservation};
pub use iommu::{memlock, IommuState, Limit, Node, VfioState};
pub use nvme::PciAddress;
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

/// Serializes a value as its `Display` text (a PCI address as `0000:01:00.0`).
pub(crate) fn serialize_display<T: fmt::Display, S: Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// [`serialize_display`] for an optional value (`None` as `null`).
pub(crate) fn serialize_display_opt<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Runs `command` (modprobe, mount), failing with its stderr, and logs it.
pub(crate) fn run_command(
    command: &mut Command,
    actions: &mut Vec<Action>,
) -> Result<(), SetupError> {
    let line = format!("{command:?}").replace('"', "");
    tracing::info!(command = %line, "running");
    let out = command.output().map_err(|source| SetupError::Spawn {
        command: line.clone(),
        source,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_accepts_exactly_the_addresses_the_driver_opens() {
        for text in [
            "0000:01:00.0",
            "3D:1f.7",
            "10000:e1:00.0",
            "0:01:00.0",
            "00000:01:00.0",
            "0000:01:20.0",
            "nvme0",
        ] {
            let setup = text.parse::<PciAddress>().ok();
            let driver = match text.parse::<nvme::DeviceName>() {
                Ok(nvme::DeviceName::Pci(addr)) => Some(addr),
                _ => None,
            };
            assert_eq!(setup, driver, "{text}");
        }
        assert_eq!(
            "10000:e1:00.0".parse::<PciAddress>().unwrap().to_string(),
            "10000:e1:00.0"
        );
    }

    #[test]
    fn addresses_serialize_as_their_sysfs_names() {
        #[derive(Serialize)]
        struct Row {
            #[serde(serialize_with = "serialize_display")]
            addr: PciAddress,
            #[serde(serialize_with = "serialize_display_opt")]
            other: Option<PciAddress>,
        }
        let row = Row {
            addr: "3d:1f.7".parse().unwrap(),
            other: None,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"addr":"0000:3d:1f.7","other":null}"#
        );
    }
}
