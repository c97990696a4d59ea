//! PCI devices as sysfs shows them: identity, bound driver, IOMMU group and NUMA node.

use std::path::PathBuf;

use serde::Serialize;

use super::{PciAddress, SetupError, SysfsRoot};

/// PCI class code of an NVM Express controller (mass storage, NVM, NVMe interface).
pub const NVME_CLASS: u32 = 0x01_08_02;

/// Drivers that do not keep an IOMMU group from being used through VFIO (they are
/// VFIO itself or take no DMA ownership: `driver_managed_dma` in the kernel).
const GROUP_FRIENDLY_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

/// One PCI function.
#[derive(Clone, Debug, Serialize)]
pub struct PciDevice {
    /// Its address.
    #[serde(serialize_with = "super::serialize_display")]
    pub addr: PciAddress,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 24-bit PCI class code.
    pub class: u32,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// The driver forced by `driver_override`, if set.
    pub driver_override: Option<String>,
    /// The IOMMU group, if the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// The NUMA node, if the platform reports one.
    pub numa_node: Option<u32>,
}

impl PciDevice {
    /// Whether this is an NVMe controller.
    pub fn is_nvme(&self) -> bool {
        self.class == NVME_CLASS
    }

    /// Whether it is a PCI-to-PCI bridge (a root or switch port), which VFIO tolerates
    /// in a group whatever its driver.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class >> 8, 0x0604 | 0x0609)
    }

    /// Whether it is bound to a VFIO driver.
    pub fn on_vfio(&self) -> bool {
        self.driver
            .as_deref()
            .is_some_and(|d| d.starts_with("vfio"))
    }

    /// Whether this device, as it is now, lets its IOMMU group be opened through VFIO.
    pub fn group_friendly(&self) -> bool {
        match &self.driver {
            None => true,
            Some(d) => {
                self.is_bridge() || d.starts_with("vfio") || GROUP_FRIENDLY_DRIVERS.contains(&&**d)
            }
        }
    }

    /// `vendor:device` in hex, as lspci prints it.
    pub fn id(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor, self.device)
    }

    /// Short description for messages: `0000:00:1f.3 [8086:a348] on snd_hda_intel`.
    pub fn describe(&self) -> String {
        match &self.driver {
            Some(d) => format!("{} [{}] on {d}", self.addr, self.id()),
            None => format!("{} [{}] without a driver", self.addr, self.id()),
        }
    }
}

fn dev_rel(addr: PciAddress) -> PathBuf {
    PathBuf::from(format!("bus/pci/devices/{addr}"))
}

impl SysfsRoot {
    /// Every PCI function under `bus/pci/devices`, in address order.
    pub fn pci_addresses(&self) -> Result<Vec<PciAddress>, SetupError> {
        let mut addrs: Vec<PciAddress> = self
            .list("bus/pci/devices")?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        addrs.sort();
        Ok(addrs)
    }

    /// The device at `addr`, or [`SetupError::UnknownDevice`].
    pub fn pci_device(&self, addr: PciAddress) -> Result<PciDevice, SetupError> {
        let dir = dev_rel(addr);
        if !self.exists(&dir) {
            return Err(SetupError::UnknownDevice {
                addr,
                root: self.path("bus/pci/devices"),
            });
        }
        let hex = |attr: &str| -> Result<u32, SetupError> {
            Ok(self.read_hex(dir.join(attr))?.unwrap_or(0))
        };
        let group = match self.link_name(dir.join("iommu_group"))? {
            Some(name) => Some(name.parse().map_err(|_| SetupError::Parse {
                path: self.path(dir.join("iommu_group")),
                content: name,
                expected: "a link to kernel/iommu_groups/<number>",
            })?),
            None => None,
        };
        // numa_node is -1 when the platform does not say.
        let numa_node = self
            .read(dir.join("numa_node"))?
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        let driver_override = self
            .read(dir.join("driver_override"))?
            .filter(|s| !s.is_empty() && s != "(null)");
        Ok(PciDevice {
            addr,
            vendor: hex("vendor")? as u16,
            device: hex("device")? as u16,
            class: hex("class")?,
            driver: self.link_name(dir.join("driver"))?,
            driver_override,
            iommu_group: group,
            numa_node,
        })
    }

    /// Every NVMe controller, in address order.
    pub fn nvme_controllers(&self) -> Result<Vec<PciDevice>, SetupError> {
        let mut out = Vec::new();
        for addr in self.pci_addresses()? {
            let dev = self.pci_device(addr)?;
            if dev.is_nvme() {
                out.push(dev);
            }
        }
        Ok(out)
    }

    /// The devices of IOMMU group `group`, in address order.
    pub fn iommu_group_devices(&self, group: u32) -> Result<Vec<PciDevice>, SetupError> {
        let mut out = Vec::new();
        for name in self.list(format!("kernel/iommu_groups/{group}/devices"))? {
            // Groups can hold non-PCI devices; only PCI functions matter here.
            let Ok(addr) = name.parse::<PciAddress>() else {
                continue;
            };
            if self.exists(dev_rel(addr)) {
                out.push(self.pci_device(addr)?);
            }
        }
        Ok(out)
    }

    /// The group peers of `dev` (the other devices in its IOMMU group).
    pub fn group_peers(&self, dev: &PciDevice) -> Result<Vec<PciDevice>, SetupError> {
        let Some(group) = dev.iommu_group else {
            return Ok(Vec::new());
        };
        Ok(self
            .iommu_group_devices(group)?
            .into_iter()
            .filter(|p| p.addr != dev.addr)
            .collect())
    }

    /// Whether the PCI driver `name` is registered (its module is loaded).
    pub fn driver_loaded(&self, name: &str) -> bool {
        self.exists(format!("bus/pci/drivers/{name}"))
    }
}
