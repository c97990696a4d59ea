//! The real-device transport: a PCI function bound to `vfio-pci`, reached through the
//! legacy VFIO container/group API (type1 IOMMU) of `vfio-ioctls`.
//!
//! Set-up order (each step checked, each failure a typed [`Error`]):
//! sysfs group lookup → container → device → IOMMU info (IOVA windows) → function reset
//! → bus mastering on (read back) → BAR0 mmap (region must offer mmap).

mod iommu_info;
mod mmio;
mod raw;
pub mod sysfs;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hugepages::{DmaMapper, IovaRange, MapError};
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use iommu_info::{parse as parse_iommu_info, IommuInfo};
pub use mmio::MappedBar;
pub use raw::memlock_limit;

use crate::device::PciAddress;
use crate::transport::Transport;
use crate::{Error, VfioCause};

/// The VFIO container node.
const VFIO_CONTAINER: &str = "/dev/vfio/vfio";
/// PCI config space: the command register and its bits.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Default IOVA windows when the kernel reports none: below 4 GiB minus the x86 interrupt
/// window, then up to 2^39 - 1 (the narrowest IOMMU address width in common use).
const DEFAULT_IOVA_RANGES: [IovaRange; 2] = [0..=0xfedf_ffff, 0xfef0_0000..=0x7f_ffff_ffff];

/// Options for opening a VFIO device.
#[derive(Debug, Clone)]
pub struct VfioOptions {
    /// Reset the function at open when the device offers a reset.
    pub reset: bool,
    /// DMA memory in bytes the caller expects to map, checked against RLIMIT_MEMLOCK.
    pub dma_bytes: u64,
}

impl Default for VfioOptions {
    fn default() -> Self {
        VfioOptions {
            reset: true,
            dma_bytes: 64 << 20,
        }
    }
}

/// Checks that `needed` bytes can be locked under `limit` (root bypasses the limit).
pub fn check_memlock(needed: u64, limit: u64, root: bool) -> Result<(), Error> {
    if root || needed <= limit {
        return Ok(());
    }
    Err(Error::MemlockTooLow { needed, limit })
}

/// Maps a vfio-ioctls error from opening the group, container or device to ours.
fn map_open_error(e: VfioError, addr: PciAddress, group: u32, sysfs_root: &Path) -> Error {
    let device = addr.to_string();
    match e {
        VfioError::OpenContainer(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            Error::VfioPermissionDenied {
                path: PathBuf::from(VFIO_CONTAINER),
            }
        }
        VfioError::OpenGroup(source, _) if source.kind() == io::ErrorKind::PermissionDenied => {
            Error::VfioPermissionDenied {
                path: PathBuf::from(format!("/dev/vfio/{group}")),
            }
        }
        VfioError::GroupViable => Error::GroupNotViable {
            device,
            group,
            others: sysfs::blocking_members(sysfs_root, group, addr),
        },
        other => Error::Vfio {
            device,
            op: "open",
            source: other.into(),
        },
    }
}

/// Whether `iova..iova + len` lies entirely inside one of `ranges` (and is not empty).
pub fn iova_inside(ranges: &[IovaRange], iova: u64, len: usize) -> bool {
    let Some(end) = (len as u64)
        .checked_sub(1)
        .and_then(|l| iova.checked_add(l))
    else {
        return false;
    };
    ranges.iter().any(|r| iova >= *r.start() && end <= *r.end())
}

/// Routes DMA mappings into the VFIO container, inside the IOMMU's IOVA windows.
///
/// It keeps the device open: closing the device detaches its group from the container,
/// after which unmaps fail, and DMA buffers may outlive the transport.
pub struct VfioMapper {
    container: Arc<VfioContainer>,
    _device: Arc<VfioDevice>,
    ranges: Vec<IovaRange>,
}

impl DmaMapper for VfioMapper {
    fn iova_ranges(&self) -> Vec<IovaRange> {
        self.ranges.clone()
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError> {
        if !iova_inside(&self.ranges, iova, len) {
            return Err(MapError::OutOfRange { iova, len });
        }
        // SAFETY: the caller upholds `DmaMapper::map`'s contract, which is the contract of
        // `vfio_dma_map` (memory stays valid and is only accessed through raw pointers).
        let res = unsafe { self.container.vfio_dma_map(iova, len, vaddr) };
        res.map_err(|e| match e {
            VfioError::IommuDmaMap(errno) if errno.errno() == libc::EEXIST => {
                MapError::Overlap { iova, len }
            }
            VfioError::IommuDmaMap(errno) => MapError::Os {
                op: "VFIO_IOMMU_MAP_DMA",
                iova,
                len,
                source: io::Error::from_raw_os_error(errno.errno()),
            },
            other => MapError::Os {
                op: "VFIO_IOMMU_MAP_DMA",
                iova,
                len,
                source: io::Error::other(other.to_string()),
            },
        })
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError> {
        self.container
            .vfio_dma_unmap(iova, len)
            .map_err(|e| match e {
                VfioError::InvalidDmaUnmapSize => MapError::NotMapped { iova, len },
                other => MapError::Os {
                    op: "VFIO_IOMMU_UNMAP_DMA",
                    iova,
                    len,
                    source: io::Error::other(other.to_string()),
                },
            })
    }
}

/// An NVMe controller behind `vfio-pci`.
pub struct VfioTransport {
    // Field order is drop order: the BAR mapping goes before the device fd closes.
    bar: MappedBar,
    device_file: File,
    device: Arc<VfioDevice>,
    mapper: Arc<VfioMapper>,
    addr: PciAddress,
    config_offset: u64,
    can_reset: bool,
    vectors: Mutex<Vec<Arc<EventFd>>>,
    iommu: IommuInfo,
}

impl std::fmt::Debug for VfioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioTransport")
            .field("addr", &self.addr)
            .field("bar_len", &self.bar.len())
            .field("iommu", &self.iommu)
            .finish_non_exhaustive()
    }
}

impl VfioTransport {
    /// Opens `addr` with the real sysfs and `/dev/vfio`.
    pub fn open(addr: PciAddress, options: &VfioOptions) -> Result<Self, Error> {
        Self::open_with_root(addr, options, Path::new(sysfs::SYSFS_ROOT))
    }

    fn open_with_root(
        addr: PciAddress,
        options: &VfioOptions,
        sysfs_root: &Path,
    ) -> Result<Self, Error> {
        let device = addr.to_string();
        if !Path::new(VFIO_CONTAINER).exists() {
            return Err(Error::NoVfio);
        }
        let group = sysfs::iommu_group(sysfs_root, addr)?;
        sysfs::check_bound_to_vfio(sysfs_root, addr)?;
        let group_node = PathBuf::from(format!("/dev/vfio/{group}"));
        if !group_node.exists() {
            return Err(Error::Vfio {
                device,
                op: "find the group node",
                source: VfioCause::MissingNode(group_node),
            });
        }
        let limit = raw::memlock_limit().unwrap_or(u64::MAX);
        check_memlock(options.dma_bytes, limit, raw::is_root())?;

        let container = Arc::new(
            VfioContainer::new(None).map_err(|e| map_open_error(e, addr, group, sysfs_root))?,
        );
        let sysfs_dir = sysfs::device_dir(sysfs_root, addr);
        let vfio_device = VfioDevice::new(&sysfs_dir, container.clone(), false)
            .map_err(|e| map_open_error(e, addr, group, sysfs_root))?;
        let device_file = raw::dup_fd(vfio_device.as_raw_fd()).map_err(|e| Error::Vfio {
            device: device.clone(),
            op: "duplicate the device fd",
            source: e.into(),
        })?;

        // The IOMMU type is set by the first device open; only now can it be queried.
        let iommu = match iommu_info::get_info(container.as_raw_fd()) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(device = %addr, error = %e, "VFIO_IOMMU_GET_INFO failed; using default IOVA windows");
                IommuInfo::default()
            }
        };
        let ranges = if iommu.iova_ranges.is_empty() {
            DEFAULT_IOVA_RANGES.to_vec()
        } else {
            iommu.iova_ranges.clone()
        };
        tracing::debug!(device = %addr, ?ranges, "IOVA windows");

        let flags = raw::device_flags(&device_file).map_err(|e| Error::Vfio {
            device: device.clone(),
            op: "VFIO_DEVICE_GET_INFO",
            source: e.into(),
        })?;
        let can_reset = flags & VFIO_DEVICE_FLAGS_RESET != 0;
        if options.reset && can_reset {
            raw::reset_device(&device_file).map_err(|source| Error::ResetFailed {
                device: device.clone(),
                source,
            })?;
        }

        let region = |index: u32, what: &'static str| {
            raw::region_info(&device_file, index).map_err(|e| Error::Vfio {
                device: device.clone(),
                op: what,
                source: e.into(),
            })
        };
        let (_, _, config_offset) = region(
            VFIO_PCI_CONFIG_REGION_INDEX,
            "read config-space region info",
        )?;
        let (bar_flags, bar_size, bar_offset) =
            region(VFIO_PCI_BAR0_REGION_INDEX, "read BAR0 region info")?;
        if bar_flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || bar_size < 0x2000 {
            return Err(Error::BarNotMappable {
                device,
                flags: bar_flags,
                size: bar_size,
            });
        }
        let bar = MappedBar::map(device_file.as_raw_fd(), bar_offset, bar_size as usize).map_err(
            |e| Error::Vfio {
                device: device.clone(),
                op: "mmap BAR0",
                source: e.into(),
            },
        )?;

        let vfio_device = Arc::new(vfio_device);
        let transport = VfioTransport {
            bar,
            device_file,
            mapper: Arc::new(VfioMapper {
                container,
                _device: vfio_device.clone(),
                ranges,
            }),
            device: vfio_device,
            addr,
            config_offset,
            can_reset,
            vectors: Mutex::new(Vec::new()),
            iommu,
        };
        transport.enable_bus_master()?;
        Ok(transport)
    }

    /// What the IOMMU reported at open.
    pub fn iommu_info(&self) -> &IommuInfo {
        &self.iommu
    }

    fn config_read16(&self, offset: u64) -> Result<u16, Error> {
        let mut b = [0u8; 2];
        self.device_file
            .read_exact_at(&mut b, self.config_offset + offset)
            .map_err(|source| Error::ConfigSpace {
                device: self.addr.to_string(),
                offset,
                source,
            })?;
        Ok(u16::from_le_bytes(b))
    }

    fn config_write16(&self, offset: u64, value: u16) -> Result<(), Error> {
        self.device_file
            .write_all_at(&value.to_le_bytes(), self.config_offset + offset)
            .map_err(|source| Error::ConfigSpace {
                device: self.addr.to_string(),
                offset,
                source,
            })
    }

    /// Turns on memory decoding and bus mastering, then reads the register back.
    fn enable_bus_master(&self) -> Result<(), Error> {
        let cmd = self.config_read16(PCI_COMMAND)?;
        let want = cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        self.config_write16(PCI_COMMAND, want)?;
        let got = self.config_read16(PCI_COMMAND)?;
        if got & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
            != (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
        {
            return Err(Error::ConfigSpaceReadBack {
                device: self.addr.to_string(),
                offset: PCI_COMMAND,
                wrote: want,
                read: got,
            });
        }
        Ok(())
    }
}

impl Transport for VfioTransport {
    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        self.bar.read32(offset)
    }

    #[inline]
    fn write32(&self, offset: usize, value: u32) {
        self.bar.write32(offset, value)
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.mapper.clone()
    }

    fn max_interrupts(&self) -> u16 {
        self.device
            .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map(|irq| irq.count.min(u32::from(u16::MAX)) as u16)
            .unwrap_or(0)
    }

    fn enable_interrupts(&self, count: u16) -> Result<Vec<Arc<EventFd>>, Error> {
        let device = self.addr.to_string();
        let max = self.max_interrupts();
        if count == 0 || count > max {
            return Err(Error::Vfio {
                device,
                op: "enable MSI-X",
                source: VfioCause::TooManyVectors {
                    requested: count,
                    offered: max,
                },
            });
        }
        let fds = (0..count)
            .map(|_| EventFd::new(EFD_NONBLOCK).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Vfio {
                device: device.clone(),
                op: "create eventfd",
                source: e.into(),
            })?;
        let mut vectors = hugepages::sync::lock(&self.vectors);
        if !vectors.is_empty() {
            // The count can only change by disabling and re-enabling.
            let _ = self.device.disable_msix();
        }
        self.device
            .enable_msix(fds.iter().map(|f| f.as_ref()).collect())
            .map_err(|e| Error::Vfio {
                device,
                op: "enable MSI-X",
                source: e.into(),
            })?;
        *vectors = fds.clone();
        Ok(fds)
    }

    fn disable_interrupts(&self) -> Result<(), Error> {
        let mut vectors = hugepages::sync::lock(&self.vectors);
        if vectors.is_empty() {
            return Ok(());
        }
        vectors.clear();
        self.device.disable_msix().map_err(|e| Error::Vfio {
            device: self.addr.to_string(),
            op: "disable MSI-X",
            source: e.into(),
        })
    }

    fn function_reset(&self) -> Result<bool, Error> {
        if !self.can_reset {
            return Ok(false);
        }
        raw::reset_device(&self.device_file).map_err(|source| Error::ResetFailed {
            device: self.addr.to_string(),
            source,
        })?;
        // A function reset clears the command register; DMA needs bus mastering back.
        self.enable_bus_master()?;
        Ok(true)
    }

    fn name(&self) -> String {
        self.addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_below_need_names_both_numbers() {
        let err = check_memlock(64 << 20, 8 << 20, false).unwrap_err();
        assert!(
            matches!(err, Error::MemlockTooLow { needed, limit } if needed == 64 << 20 && limit == 8 << 20)
        );
        let msg = err.to_string();
        assert!(msg.contains("67108864"), "{msg}");
        assert!(msg.contains("ulimit -l"), "{msg}");
    }

    #[test]
    fn root_and_sufficient_limits_pass_the_memlock_check() {
        check_memlock(64 << 20, 8 << 20, true).unwrap();
        check_memlock(8 << 20, 8 << 20, false).unwrap();
    }

    #[test]
    fn non_viable_group_error_lists_the_bound_neighbours() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let group_dir = r.join("kernel/iommu_groups/5/devices");
        std::fs::create_dir_all(&group_dir).unwrap();
        for (dev, drv) in [
            ("0000:00:04.0", "vfio-pci"),
            ("0000:00:04.1", "snd_hda_intel"),
        ] {
            let d = r.join("devices").join(dev);
            std::fs::create_dir_all(&d).unwrap();
            let drv_dir = r.join("drivers").join(drv);
            std::fs::create_dir_all(&drv_dir).unwrap();
            std::os::unix::fs::symlink(&drv_dir, d.join("driver")).unwrap();
            std::os::unix::fs::symlink(&d, group_dir.join(dev)).unwrap();
        }
        let addr: PciAddress = "0000:00:04.0".parse().unwrap();
        let err = map_open_error(VfioError::GroupViable, addr, 5, r);
        let msg = err.to_string();
        assert!(msg.contains("0000:00:04.1 (snd_hda_intel)"), "{msg}");
        assert!(matches!(err, Error::GroupNotViable { group: 5, .. }));
    }

    #[test]
    fn permission_denied_on_the_group_node_is_its_own_error() {
        let addr: PciAddress = "0000:00:04.0".parse().unwrap();
        let e = VfioError::OpenGroup(io::Error::from_raw_os_error(libc::EACCES), "12".to_string());
        let err = map_open_error(e, addr, 12, Path::new("/nonexistent"));
        assert!(
            matches!(&err, Error::VfioPermissionDenied { path } if path == Path::new("/dev/vfio/12")),
            "{err}"
        );
    }

    #[test]
    fn iovas_outside_the_reported_windows_are_refused() {
        let windows = DEFAULT_IOVA_RANGES.to_vec();
        assert!(iova_inside(&windows, 0x1000, 0x1000));
        assert!(iova_inside(&windows, 0x7f_ffff_f000, 0x1000));
        assert!(!iova_inside(&windows, 0xfee0_0000, 0x1000));
        assert!(!iova_inside(&windows, 0xfedf_f000, 0x2000));
        assert!(!iova_inside(&windows, 0x80_0000_0000, 0x1000));
        assert!(!iova_inside(&windows, 0x1000, 0));
        assert!(!iova_inside(&windows, u64::MAX, 2));
    }
}
