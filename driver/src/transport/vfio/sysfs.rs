//! What sysfs says about a PCI function: its IOMMU group, the group's other members and
//! their drivers. Every function takes the sysfs root so tests can point it at a fake tree.

use std::fs;
use std::path::{Path, PathBuf};

use crate::device::PciAddress;
use crate::Error;

/// Where the kernel exposes devices and IOMMU groups.
pub const SYSFS_ROOT: &str = "/sys";

/// A PCI function's directory, such as `/sys/bus/pci/devices/0000:00:04.0`.
pub fn device_dir(root: &Path, addr: PciAddress) -> PathBuf {
    root.join("bus/pci/devices").join(addr.to_string())
}

/// The driver a device is bound to (the last component of its `driver` link), if any.
pub fn bound_driver(device_dir: &Path) -> Option<String> {
    let link = fs::read_link(device_dir.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The IOMMU group number of `addr`, from its `iommu_group` link.
pub fn iommu_group(root: &Path, addr: PciAddress) -> Result<u32, Error> {
    let dir = device_dir(root, addr);
    if !dir.exists() {
        return Err(Error::PciDeviceNotFound {
            device: addr.to_string(),
        });
    }
    let link = fs::read_link(dir.join("iommu_group")).map_err(|_| Error::NoIommuGroup {
        device: addr.to_string(),
    })?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::NoIommuGroup {
            device: addr.to_string(),
        })
}

/// One member of an IOMMU group and the driver it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's PCI address as sysfs spells it.
    pub device: String,
    /// Its driver, or `None` when unbound.
    pub driver: Option<String>,
}

/// Every device in IOMMU group `group`, sorted by address.
pub fn group_members(root: &Path, group: u32) -> Vec<GroupMember> {
    let dir = root
        .join("kernel/iommu_groups")
        .join(group.to_string())
        .join("devices");
    let mut members: Vec<GroupMember> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| GroupMember {
                    device: e.file_name().to_string_lossy().into_owned(),
                    driver: bound_driver(&e.path()),
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort_by(|a, b| a.device.cmp(&b.device));
    members
}

/// Drivers that leave a group viable (VFIO's own, the PCI bridge stub, or none).
fn driver_is_vfio_compatible(driver: Option<&str>) -> bool {
    matches!(
        driver,
        None | Some("vfio-pci") | Some("pci-stub") | Some("pcieport")
    )
}

/// The group members other than `addr` that keep the group from being viable,
/// formatted as `0000:00:05.0 (e1000e)`.
pub fn blocking_members(root: &Path, group: u32, addr: PciAddress) -> Vec<String> {
    let me = addr.to_string();
    group_members(root, group)
        .into_iter()
        .filter(|m| m.device != me && !driver_is_vfio_compatible(m.driver.as_deref()))
        .map(|m| format!("{} ({})", m.device, m.driver.unwrap_or_default()))
        .collect()
}

/// Checks that `addr` is bound to `vfio-pci`.
pub fn check_bound_to_vfio(root: &Path, addr: PciAddress) -> Result<(), Error> {
    match bound_driver(&device_dir(root, addr)) {
        Some(d) if d == "vfio-pci" => Ok(()),
        driver => Err(Error::NotBoundToVfio {
            device: addr.to_string(),
            driver,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Builds a fake sysfs with one group holding the given (device, driver) pairs.
    fn fake_sysfs(group: u32, members: &[(&str, Option<&str>)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let group_dir = r.join(format!("kernel/iommu_groups/{group}"));
        fs::create_dir_all(group_dir.join("devices")).unwrap();
        for (dev, driver) in members {
            let dev_dir = r.join("devices/pci0000:00").join(dev);
            fs::create_dir_all(&dev_dir).unwrap();
            symlink(&group_dir, dev_dir.join("iommu_group")).unwrap();
            if let Some(driver) = driver {
                let drv_dir = r.join("bus/pci/drivers").join(driver);
                fs::create_dir_all(&drv_dir).unwrap();
                symlink(&drv_dir, dev_dir.join("driver")).unwrap();
            }
            fs::create_dir_all(r.join("bus/pci/devices")).unwrap();
            symlink(&dev_dir, r.join("bus/pci/devices").join(dev)).unwrap();
            symlink(&dev_dir, group_dir.join("devices").join(dev)).unwrap();
        }
        root
    }

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn group_number_comes_from_the_iommu_group_link() {
        let root = fake_sysfs(17, &[("0000:00:04.0", Some("vfio-pci"))]);
        assert_eq!(iommu_group(root.path(), addr("0000:00:04.0")).unwrap(), 17);
        check_bound_to_vfio(root.path(), addr("0000:00:04.0")).unwrap();
    }

    #[test]
    fn missing_device_and_missing_group_are_distinct_errors() {
        let root = fake_sysfs(3, &[("0000:00:04.0", Some("vfio-pci"))]);
        let err = iommu_group(root.path(), addr("0000:00:05.0")).unwrap_err();
        assert!(matches!(err, Error::PciDeviceNotFound { .. }), "{err}");
        fs::remove_file(
            root.path()
                .join("devices/pci0000:00/0000:00:04.0/iommu_group"),
        )
        .unwrap();
        let err = iommu_group(root.path(), addr("0000:00:04.0")).unwrap_err();
        assert!(matches!(err, Error::NoIommuGroup { .. }), "{err}");
    }

    #[test]
    fn device_bound_to_nvme_is_reported_with_its_driver() {
        let root = fake_sysfs(3, &[("0000:00:04.0", Some("nvme"))]);
        let err = check_bound_to_vfio(root.path(), addr("0000:00:04.0")).unwrap_err();
        assert!(
            matches!(&err, Error::NotBoundToVfio { driver: Some(d), .. } if d == "nvme"),
            "{err}"
        );
    }

    #[test]
    fn group_blockers_name_the_other_bound_devices() {
        let root = fake_sysfs(
            9,
            &[
                ("0000:00:04.0", Some("vfio-pci")),
                ("0000:00:04.1", Some("e1000e")),
                ("0000:00:04.2", None),
                ("0000:00:04.3", Some("vfio-pci")),
            ],
        );
        assert_eq!(
            blocking_members(root.path(), 9, addr("0000:00:04.0")),
            vec!["0000:00:04.1 (e1000e)".to_string()]
        );
    }
}
