//! The one error type of `nvme-setup`: every variant reads as a sentence with the fix.

use std::io;
use std::path::PathBuf;

use super::PciAddress;

/// Why an `nvme-setup` operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A command-line PCI address is malformed.
    #[error(transparent)]
    BadPciAddress(#[from] nvme::PciAddressError),
    /// No such PCI device in sysfs.
    #[error("no PCI device {addr} in {root}; `nvme-setup status` lists the NVMe controllers")]
    UnknownDevice {
        /// The address asked for.
        addr: PciAddress,
        /// The sysfs directory searched.
        root: PathBuf,
    },
    /// The device is not an NVMe controller (class 0x010802).
    #[error("{addr} is not an NVMe controller (PCI class {class:#08x}, NVMe is 0x010802)")]
    NotNvme {
        /// The device.
        addr: PciAddress,
        /// Its PCI class code.
        class: u32,
    },
    /// A sysfs or device file could not be written for lack of privilege.
    #[error("permission denied writing {path}: run nvme-setup as root (sudo)")]
    NotRoot {
        /// The file that could not be written.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A sysfs attribute could not be written.
    #[error("cannot write '{value}' to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was being written.
        value: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file held something other than the kernel's format.
    #[error("unexpected content '{content}' in {path}: expected {expected}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held (trimmed).
        content: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The controller backs mounted filesystems, swap or stacked block devices.
    #[error("{addr} is in use ({uses}); stop using it first or pass --force to take it anyway")]
    InUse {
        /// The controller.
        addr: PciAddress,
        /// What uses it, comma-separated.
        uses: String,
    },
    /// Another device of the IOMMU group keeps the group from becoming viable for VFIO.
    #[error(
        "IOMMU group {group} of {addr} cannot become viable: {blockers}; unbind them from their \
         drivers (echo ADDR > /sys/bus/pci/devices/ADDR/driver/unbind) or move {addr} to a slot \
         with its own IOMMU group"
    )]
    GroupNotViable {
        /// The controller.
        addr: PciAddress,
        /// Its IOMMU group.
        group: u32,
        /// The devices in the way with their drivers, comma-separated.
        blockers: String,
    },
    /// The device has no IOMMU group, so VFIO cannot take it.
    #[error(
        "{addr} has no IOMMU group because the IOMMU is off: add intel_iommu=on (Intel) or \
         amd_iommu=on (AMD) to the kernel command line and reboot"
    )]
    NoIommuGroup {
        /// The controller.
        addr: PciAddress,
    },
    /// An external command (modprobe, mount) could not be started.
    #[error("`{command}` failed: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// An external command (modprobe, mount) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status or stderr.
        detail: String,
    },
    /// After loading a module its PCI driver still does not exist.
    #[error(
        "the {driver} driver is missing ({path} does not exist) even after `modprobe {driver}`"
    )]
    DriverMissing {
        /// The driver name.
        driver: String,
        /// The sysfs directory that should exist.
        path: PathBuf,
    },
    /// The kernel did not attach the wanted driver after `drivers_probe`.
    #[error("the kernel left {addr} on {actual} instead of {wanted}; `dmesg | tail` says why")]
    BindFailed {
        /// The device.
        addr: PciAddress,
        /// The driver asked for.
        wanted: String,
        /// The driver it has (or "no driver").
        actual: String,
    },
    /// A `--user` name is not in the password database.
    #[error("unknown user '{name}': not in /etc/passwd (give a user name or a numeric uid)")]
    UnknownUser {
        /// The name given.
        name: String,
    },
    /// The group node could not be handed to the user.
    #[error("cannot change the owner of {path} to uid {uid}: {source}")]
    Chown {
        /// The device node.
        path: PathBuf,
        /// The new owner.
        uid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `/dev/vfio/<group>` did not appear after binding.
    #[error("{path} does not exist after binding {addr} to vfio-pci; check `dmesg | tail`")]
    GroupNodeMissing {
        /// The expected device node.
        path: PathBuf,
        /// The device that was bound.
        addr: PciAddress,
    },
    /// A hugepage size was not understood.
    #[error("bad hugepage size '{input}': use 2M or 1G (this kernel offers {available})")]
    BadHugepageSize {
        /// The size given.
        input: String,
        /// The sizes in /sys/kernel/mm/hugepages.
        available: String,
    },
    /// The kernel reserved fewer hugepages than asked for.
    #[error(
        "{source}; {}",
        if *restored { format!("the pool is back at {previous} pages") }
        else { format!("setting the pool back to {previous} pages failed too") }
    )]
    HugepagesShort {
        /// The shortfall as the hugepages crate reports it.
        #[source]
        source: hugepages::Error,
        /// The pool size before the attempt.
        previous: u64,
        /// Whether the pool was set back to `previous`.
        restored: bool,
    },
    /// Reading or reserving hugepages failed.
    #[error(transparent)]
    Hugepages(#[from] hugepages::Error),
    /// The report could not be encoded as JSON.
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Nothing matched what a command should act on.
    #[error("{0}")]
    NothingToDo(String),
}

impl SetupError {
    /// Wraps a write failure, turning a permission error into the "run as root" advice.
    pub(crate) fn write(path: PathBuf, value: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            SetupError::NotRoot { path }
        } else {
            SetupError::Write {
                path,
                value: value.trim_end().to_string(),
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn wrapped_errors_keep_their_cause() {
        let e = SetupError::Spawn {
            command: "modprobe vfio-pci".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(
            e.source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
        let e: SetupError = "0:01:00.0".parse::<PciAddress>().unwrap_err().into();
        assert!(e.source().is_none(), "transparent: {e}");
        assert_eq!(
            e.to_string(),
            "bad PCI address '0:01:00.0': expected DOMAIN:BUS:DEVICE.FUNCTION in hex, e.g. 0000:01:00.0"
        );
    }

    #[test]
    fn permission_denied_on_write_advises_running_as_root() {
        let e = SetupError::write(
            PathBuf::from("/sys/bus/pci/drivers_probe"),
            "0000:01:00.0\n",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            e.to_string(),
            "permission denied writing /sys/bus/pci/drivers_probe: run nvme-setup as root (sudo)"
        );
    }
}
