//! `nvme-setup status`: everything the other commands look at, in one report.

use std::fmt;

use serde::Serialize;

use super::hugepages::{pools, size_label, HugepagePool};
use super::iommu::{memlock, IommuState, Limit, VfioState};
use super::usage::{block_device_names, uses, Use};
use super::{Host, PciDevice, SetupError};

/// An NVMe controller and what surrounds it.
#[derive(Clone, Debug, Serialize)]
pub struct Controller {
    /// The PCI function.
    #[serde(flatten)]
    pub pci: PciDevice,
    /// The other devices of its IOMMU group.
    pub group_peers: Vec<PciDevice>,
    /// Its namespaces and partitions as kernel block devices.
    pub block_devices: Vec<String>,
    /// What makes it busy; empty when free.
    pub in_use: Vec<Use>,
}

impl Controller {
    /// Gathers the controller report for `pci`.
    pub fn read(host: &Host, pci: PciDevice) -> Result<Self, SetupError> {
        Ok(Controller {
            group_peers: host.sys.group_peers(&pci)?,
            block_devices: block_device_names(&host.sys, pci.addr)?,
            in_use: uses(host, pci.addr)?,
            pci,
        })
    }
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Every NVMe controller.
    pub controllers: Vec<Controller>,
    /// Hugepage pools.
    pub hugepages: Vec<HugepagePool>,
    /// This process's locked-memory limit, if `/proc` reports it.
    pub memlock: Option<Limit>,
    /// IOMMU state.
    pub iommu: IommuState,
    /// VFIO state.
    pub vfio: VfioState,
}

impl Status {
    /// Reads the status of `host`.
    pub fn read(host: &Host) -> Result<Self, SetupError> {
        let controllers = host
            .sys
            .nvme_controllers()?
            .into_iter()
            .map(|c| Controller::read(host, c))
            .collect::<Result<_, _>>()?;
        Ok(Status {
            controllers,
            hugepages: pools(host)?,
            memlock: memlock(host)?,
            iommu: IommuState::read(host)?,
            vfio: VfioState::read(host)?,
        })
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "NVMe controllers:")?;
        if self.controllers.is_empty() {
            writeln!(f, "  none found")?;
        }
        for c in &self.controllers {
            let p = &c.pci;
            let numa = p.numa_node.map_or("-".into(), |n| n.to_string());
            let driver = p.driver.as_deref().unwrap_or("none");
            let group = match p.iommu_group {
                None => "none".to_string(),
                Some(g) if c.group_peers.is_empty() => format!("{g} (alone)"),
                Some(g) => format!(
                    "{g} (with {})",
                    c.group_peers
                        .iter()
                        .map(PciDevice::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let state = if c.in_use.is_empty() {
                "free".to_string()
            } else {
                format!("in use: {}", list(&c.in_use))
            };
            writeln!(
                f,
                "  {}  {}  driver={driver}  numa={numa}  iommu_group={group}  {state}",
                p.addr,
                p.id()
            )?;
            if !c.block_devices.is_empty() {
                writeln!(f, "      block devices: {}", c.block_devices.join(", "))?;
            }
        }
        writeln!(f, "Hugepages:")?;
        if self.hugepages.is_empty() {
            writeln!(f, "  no hugepage sizes offered by the kernel")?;
        }
        for h in &self.hugepages {
            write!(
                f,
                "  {:>4}: {} total, {} free",
                size_label(h.size_kib),
                h.total,
                h.free
            )?;
            if !h.nodes.is_empty() {
                let per: Vec<String> = h
                    .nodes
                    .iter()
                    .map(|n| format!("node{} {}/{}", n.node, n.total, n.free))
                    .collect();
                write!(f, " (total/free {})", per.join(", "))?;
            }
            writeln!(f)?;
        }
        match self.memlock {
            Some(l) => writeln!(f, "Locked-memory limit (ulimit -l): {l}")?,
            None => writeln!(f, "Locked-memory limit (ulimit -l): unknown")?,
        }
        let i = &self.iommu;
        if i.active {
            write!(f, "IOMMU: active, {} IOMMU group(s)", i.groups)?;
            if !i.units.is_empty() {
                write!(f, ", units {}", i.units.join(", "))?;
            }
        } else {
            write!(f, "IOMMU: off")?;
        }
        if !i.cmdline.is_empty() {
            write!(f, " (kernel command line: {})", i.cmdline.join(" "))?;
        }
        writeln!(f)?;
        let v = &self.vfio;
        writeln!(
            f,
            "VFIO: vfio-pci driver {}{}",
            if v.driver_loaded {
                "loaded"
            } else {
                "not loaded"
            },
            if v.noiommu {
                ", unsafe no-IOMMU mode on"
            } else {
                ""
            }
        )?;
        match &v.container {
            Some(n) => writeln!(f, "  container {n}")?,
            None => writeln!(f, "  container /dev/vfio/vfio missing")?,
        }
        for g in &v.groups {
            writeln!(f, "  group {g}")?;
        }
        Ok(())
    }
}
