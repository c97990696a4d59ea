//! A minimal VFIO probe of an NVMe controller bound to `vfio-pci`.
//!
//! It exercises, with `vfio-ioctls`, every step the driver's vfio transport
//! needs, in the order that works: container, group and device; the IOMMU's
//! IOVA windows; BAR0 mapped with `mmap` on the device fd; bus mastering in
//! config space; MSI-X to an eventfd; a hugepage mapped for DMA; and one admin
//! Identify Controller through that DMA memory. It is a test tool, not a
//! driver: no queue logic beyond a single admin command.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};
use vfio_ioctls::{VfioContainer, VfioDevice};
use vmm_sys_util::eventfd::EventFd;

use crate::mem::{Bar, DmaPage};
use crate::Error;

/// IOVA at which the probe maps its DMA page: inside the emulated IOMMU's
/// 39-bit window and below its interrupt range.
pub const PROBE_IOVA: u64 = 0x1000_0000;

/// What the probe found; printed as `key=value` lines by [`ProbeReport::render`].
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// sysfs path of the device.
    pub device: PathBuf,
    /// IOMMU group number.
    pub group: u32,
    /// Time to open the container and the device.
    pub open_time: Duration,
    /// Usable IOVA ranges (inclusive) reported by `VFIO_IOMMU_GET_INFO`.
    pub iova_ranges: Vec<(u64, u64)>,
    /// IOMMU page sizes bitmap from `VFIO_IOMMU_GET_INFO`.
    pub iova_pgsizes: u64,
    /// DMA mappings still available, when the kernel reports it.
    pub dma_avail: Option<u32>,
    /// BAR0 region size, flags and offset in the device fd.
    pub bar0_size: u64,
    /// BAR0 region flags (`VFIO_REGION_INFO_FLAG_*`).
    pub bar0_flags: u32,
    /// BAR0 offset in the device fd (the mmap offset).
    pub bar0_offset: u64,
    /// CAP read through the BAR0 mapping.
    pub cap: u64,
    /// VS read through the BAR0 mapping.
    pub vs: u32,
    /// CAP read with `pread` on the device fd (`region_read`), for comparison.
    pub cap_pread: u64,
    /// PCI COMMAND before and after enabling memory space and bus mastering.
    pub command_before: u16,
    /// PCI COMMAND after the write.
    pub command_after: u16,
    /// MSI-X vectors VFIO offers.
    pub msix_count: u32,
    /// Time `vfio_dma_map` of the 2 MiB page took.
    pub dma_map_time: Duration,
    /// Whether the DMA page is a hugepage (else 4 KiB pages).
    pub dma_hugepage: bool,
    /// Serial number from Identify Controller, read by DMA.
    pub serial: String,
    /// Model number from Identify Controller.
    pub model: String,
    /// Whether the Identify completion raised the MSI-X vector 0 eventfd.
    pub msix_fired: bool,
}

impl ProbeReport {
    /// The report as `key=value` lines, one fact each.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let ranges: Vec<String> = self
            .iova_ranges
            .iter()
            .map(|(a, b)| format!("{a:#x}-{b:#x}"))
            .collect();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "device={}\ngroup={}\nopen_ms={}\niova_ranges={}\niova_pgsizes={:#x}\ndma_avail={}\n\
             bar0_size={:#x}\nbar0_flags={:#x}\nbar0_offset={:#x}\ncap={:#018x}\ncap_pread={:#018x}\n\
             vs={:#010x}\ncommand_before={:#06x}\ncommand_after={:#06x}\nmsix_count={}\n\
             dma_iova={:#x}\ndma_hugepage={}\ndma_map_us={}\nserial={}\nmodel={}\nmsix_fired={}\n",
            self.device.display(),
            self.group,
            self.open_time.as_millis(),
            ranges.join(","),
            self.iova_pgsizes,
            self.dma_avail.map_or("unknown".into(), |v| v.to_string()),
            self.bar0_size,
            self.bar0_flags,
            self.bar0_offset,
            self.cap,
            self.cap_pread,
            self.vs,
            self.command_before,
            self.command_after,
            self.msix_count,
            PROBE_IOVA,
            self.dma_hugepage,
            self.dma_map_time.as_micros(),
            self.serial,
            self.model,
            self.msix_fired,
        );
        s
    }
}

// Controller registers (NVMe Base Specification 2.0, section 3.1.4).
const REG_CAP: usize = 0x00;
const REG_VS: usize = 0x08;
const REG_INTMS: usize = 0x0c;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;
const REG_SQ0TDBL: usize = 0x1000;

/// Opens the device at `sysfs` (bound to vfio-pci), reads its registers and
/// runs one admin Identify Controller by DMA, leaving the controller disabled.
pub fn probe(sysfs: &Path) -> Result<ProbeReport, Error> {
    let mut r = ProbeReport {
        device: sysfs.to_path_buf(),
        group: iommu_group(sysfs)?,
        ..Default::default()
    };

    let t = Instant::now();
    let container =
        Arc::new(VfioContainer::new(None).map_err(|e| Error::vfio("open /dev/vfio/vfio", e))?);
    // Opening the device adds its group to the container and sets the IOMMU type.
    let device = VfioDevice::new(sysfs, container.clone(), false)
        .map_err(|e| Error::vfio("open the device through its group", e))?;
    r.open_time = t.elapsed();

    let info = crate::mem::iommu_info(&container)?;
    r.iova_pgsizes = info.pgsizes;
    r.iova_ranges = info.ranges;
    r.dma_avail = info.dma_avail;

    let bar = VFIO_PCI_BAR0_REGION_INDEX;
    r.bar0_size = device.get_region_size(bar);
    r.bar0_flags = device.get_region_flags(bar);
    r.bar0_offset = device.get_region_offset(bar);
    let bar0 = Bar::map(&device, r.bar0_offset, r.bar0_size)?;
    r.cap = bar0.read64(REG_CAP)?;
    r.vs = bar0.read32(REG_VS)?;
    let mut buf = [0u8; 8];
    device.region_read(bar, &mut buf, REG_CAP as u64);
    r.cap_pread = u64::from_le_bytes(buf);

    // Memory space (bit 1) and bus master (bit 2) in the PCI COMMAND register.
    let cfg = VFIO_PCI_CONFIG_REGION_INDEX;
    let mut cmd = [0u8; 2];
    device.region_read(cfg, &mut cmd, 4);
    r.command_before = u16::from_le_bytes(cmd);
    device.region_write(cfg, &(r.command_before | 0x6).to_le_bytes(), 4);
    device.region_read(cfg, &mut cmd, 4);
    r.command_after = u16::from_le_bytes(cmd);

    r.msix_count = device
        .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
        .map_or(0, |i| i.count);
    let event = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Io {
        what: "create an eventfd".into(),
        source: e,
    })?;
    // MSI-X is enabled before CC.EN: QEMU's controller raises no admin interrupt otherwise.
    device
        .enable_msix(vec![&event])
        .map_err(|e| Error::vfio("enable MSI-X", e))?;

    let page = DmaPage::new()?;
    r.dma_hugepage = page.is_hugepage();
    let t = Instant::now();
    page.map(&container, PROBE_IOVA)?;
    r.dma_map_time = t.elapsed();

    let identify = identify_controller(&bar0, &page, r.cap);
    r.msix_fired = event.read().is_ok();
    let _ = device.disable_msix();
    let unmap = container.vfio_dma_unmap(PROBE_IOVA, page.len());
    let id = identify?;
    unmap.map_err(|e| Error::vfio("unmap the DMA page", e))?;
    r.serial = ascii_field(&id[4..24]);
    r.model = ascii_field(&id[24..64]);
    Ok(r)
}

/// IOMMU group number of the PCI device at `sysfs`.
fn iommu_group(sysfs: &Path) -> Result<u32, Error> {
    let link = sysfs.join("iommu_group");
    let target = std::fs::read_link(&link).map_err(|e| Error::Io {
        what: format!("read {}", link.display()),
        source: e,
    })?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Probe(format!("{} does not name a group", link.display())))
}

/// Trims an Identify ASCII field.
fn ascii_field(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// Brings up the admin queue in `page` (SQ at +0, CQ at +4 KiB, data at
/// +8 KiB), runs Identify Controller (CNS 1), and disables the controller.
fn identify_controller(bar0: &Bar, page: &DmaPage, cap: u64) -> Result<Vec<u8>, Error> {
    let timeout = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1));
    let wait_rdy = |want: u32| -> Result<(), Error> {
        let t = Instant::now();
        loop {
            let csts = bar0.read32(REG_CSTS)?;
            if csts & 2 != 0 {
                return Err(Error::Probe(format!(
                    "controller fatal status, CSTS={csts:#x}"
                )));
            }
            if csts & 1 == want {
                return Ok(());
            }
            if t.elapsed() > timeout {
                return Err(Error::Probe(format!(
                    "CSTS.RDY did not become {want} within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (sq, cq, data) = (0usize, 4096usize, 8192usize);
    let entries = 2u32;

    bar0.write32(REG_CC, 0)?;
    wait_rdy(0)?;
    page.zero(0, 3 * 4096)?;
    bar0.write32(REG_AQA, ((entries - 1) << 16) | (entries - 1))?;
    bar0.write64(REG_ASQ, PROBE_IOVA + sq as u64)?;
    bar0.write64(REG_ACQ, PROBE_IOVA + cq as u64)?;
    bar0.write32(REG_INTMS, 0)?;
    // CC: EN, CSS=NVM, MPS=4 KiB, IOSQES=6 (64 B), IOCQES=4 (16 B).
    bar0.write32(REG_CC, 1 | (6 << 16) | (4 << 20))?;
    wait_rdy(1)?;

    // Identify: opcode 0x06, CID 1, PRP1 = data page, CDW10.CNS = 1.
    let mut sqe = [0u32; 16];
    sqe[0] = 0x06 | (1 << 16);
    sqe[6] = (PROBE_IOVA + data as u64) as u32;
    sqe[7] = ((PROBE_IOVA + data as u64) >> 32) as u32;
    sqe[10] = 1;
    for (i, dw) in sqe.iter().enumerate() {
        page.write32(sq + 4 * i, *dw)?;
    }
    bar0.write32(REG_SQ0TDBL, 1)?;

    let t = Instant::now();
    let dw3 = loop {
        let dw3 = page.read32(cq + 12)?;
        if dw3 & (1 << 16) != 0 {
            break dw3;
        }
        if t.elapsed() > Duration::from_secs(5) {
            return Err(Error::Probe("no admin completion within 5 s".into()));
        }
        std::hint::spin_loop();
    };
    let status = dw3 >> 17;
    let cid = dw3 & 0xffff;
    let mut id = vec![0u8; 4096];
    page.read(data, &mut id)?;

    // Orderly shutdown is not needed for an empty controller: disable it.
    bar0.write32(REG_CC, 0)?;
    wait_rdy(0)?;
    if status != 0 || cid != 1 {
        return Err(Error::Probe(format!(
            "Identify completed with status {status:#x} (SCT {}, SC {:#x}) and CID {cid}",
            (status >> 8) & 7,
            status & 0xff
        )));
    }
    Ok(id)
}
