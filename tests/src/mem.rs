//! The probe's raw memory: BAR0 mapped from the VFIO device fd, one DMA page,
//! and the `VFIO_IOMMU_GET_INFO` ioctl that `vfio-ioctls` does not wrap.
//! Every access goes through `hugepages::VolatileSlice` (volatile and bounds-checked;
//! an out-of-range access panics in debug builds and is an error in release builds).

use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use hugepages::VolatileSlice;
use memmap2::{MmapOptions, MmapRaw};

use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_TYPE,
};
use vfio_ioctls::{VfioContainer, VfioDevice};

use crate::Error;

vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE as u32, VFIO_BASE + 12);

/// A writable mapping, reached only through its [`VolatileSlice`]; unmapped on drop.
struct Mapping {
    // Field order is drop order: `mem` points into `map`.
    mem: VolatileSlice<'static>,
    /// Held for its `Drop`, which unmaps.
    _map: MmapRaw,
}

impl Mapping {
    /// Takes ownership of `map`, which nothing has referenced.
    fn new(map: MmapRaw) -> std::io::Result<Self> {
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFAULT))?;
        // SAFETY: `map` is a live, readable and writable mapping of `map.len()` bytes
        // that lives as long as `mem` (both fields of this value); nothing creates a
        // reference into it.
        let mem = unsafe { VolatileSlice::new(ptr, map.len()) };
        Ok(Self { mem, _map: map })
    }

    /// A shared mapping of `len` bytes of `fd` at `offset`.
    fn file(fd: libc::c_int, offset: u64, len: usize) -> std::io::Result<Self> {
        Self::new(MmapOptions::new().offset(offset).len(len).map_raw(fd)?)
    }

    /// `len` bytes of private anonymous memory, populated, a hugepage if `huge`.
    fn anon(len: usize, huge: bool) -> std::io::Result<Self> {
        let mut options = MmapOptions::new();
        options.len(len).populate();
        if huge {
            options.huge(Some(0));
        }
        Self::new(MmapRaw::from(options.map_anon()?))
    }
}

fn access(e: hugepages::AccessError) -> Error {
    Error::Probe(format!("mapped memory: {e}"))
}

/// BAR0 of a VFIO device, mapped through the device fd.
pub struct Bar(Mapping);

impl Bar {
    /// Maps the region at `offset` (from `get_region_offset`) of `size` bytes.
    pub fn map(device: &VfioDevice, offset: u64, size: u64) -> Result<Self, Error> {
        let len = usize::try_from(size)
            .map_err(|_| Error::Probe(format!("BAR0 size {size:#x} does not fit")))?;
        if len < 0x1008 {
            return Err(Error::Probe(format!(
                "BAR0 is {len:#x} bytes, too small for an NVMe controller"
            )));
        }
        Mapping::file(device.as_raw_fd(), offset, len)
            .map(Self)
            .map_err(|source| Error::Io {
                what: format!("mmap BAR0 ({len:#x} bytes at device fd offset {offset:#x})"),
                source,
            })
    }

    /// Reads a 32-bit register.
    pub fn read32(&self, off: usize) -> Result<u32, Error> {
        self.0.mem.read_u32(off).map_err(access)
    }

    /// Reads a 64-bit register as two 32-bit reads, low half first.
    pub fn read64(&self, off: usize) -> Result<u64, Error> {
        let lo = self.read32(off)?;
        let hi = self.read32(off + 4)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Writes a 32-bit register.
    pub fn write32(&self, off: usize, v: u32) -> Result<(), Error> {
        self.0.mem.write_u32(off, v).map_err(access)
    }

    /// Writes a 64-bit register as two 32-bit writes, low half first.
    pub fn write64(&self, off: usize, v: u64) -> Result<(), Error> {
        self.write32(off, v as u32)?;
        self.write32(off + 4, (v >> 32) as u32)
    }
}

/// 2 MiB of anonymous memory for DMA, a hugepage when the system has one.
pub struct DmaPage {
    map: Mapping,
    huge: bool,
}

/// Size of the probe's DMA page.
const DMA_LEN: usize = 2 << 20;

impl DmaPage {
    /// Allocates and populates the page.
    pub fn new() -> Result<Self, Error> {
        match Mapping::anon(DMA_LEN, true) {
            Ok(map) => Ok(Self { map, huge: true }),
            Err(_) => Mapping::anon(DMA_LEN, false)
                .map(|map| Self { map, huge: false })
                .map_err(|source| Error::Io {
                    what: "allocate 2 MiB for DMA".into(),
                    source,
                }),
        }
    }

    /// Whether the page is a 2 MiB hugepage.
    pub fn is_hugepage(&self) -> bool {
        self.huge
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.mem.len()
    }

    /// Maps the page for device DMA at `iova`.
    pub fn map(&self, container: &VfioContainer, iova: u64) -> Result<(), Error> {
        // SAFETY: the page stays mapped until `self` drops, and the probe
        // unmaps the IOVA before that; the CPU touches it only with volatile
        // accesses, never through references.
        unsafe { container.vfio_dma_map(iova, self.map.mem.len(), self.map.mem.as_ptr()) }
            .map_err(|e| Error::vfio("map the DMA page", e))
    }

    /// Zeroes `len` bytes at `off`.
    pub fn zero(&self, off: usize, len: usize) -> Result<(), Error> {
        (off..off + len)
            .step_by(4)
            .try_for_each(|o| self.write32(o, 0))
    }

    /// Reads a little-endian 32-bit word.
    pub fn read32(&self, off: usize) -> Result<u32, Error> {
        self.map.mem.read_u32(off).map_err(access)
    }

    /// Writes a little-endian 32-bit word.
    pub fn write32(&self, off: usize, v: u32) -> Result<(), Error> {
        self.map.mem.write_u32(off, v).map_err(access)
    }

    /// Copies `out.len()` bytes from `off`.
    pub fn read(&self, off: usize, out: &mut [u8]) -> Result<(), Error> {
        self.map.mem.read(off, out).map_err(access)
    }
}

/// What `VFIO_IOMMU_GET_INFO` reports for a type1 container.
pub struct IommuInfo {
    /// Supported IOMMU page sizes (bit n set: 2^n bytes).
    pub pgsizes: u64,
    /// Usable IOVA ranges, inclusive.
    pub ranges: Vec<(u64, u64)>,
    /// DMA mappings still available.
    pub dma_avail: Option<u32>,
}

/// Queries the container's IOMMU (valid once a device has been opened, which
/// sets the IOMMU type).
pub fn iommu_info(container: &VfioContainer) -> Result<IommuInfo, Error> {
    // struct vfio_iommu_type1_info { argsz, flags: u32; iova_pgsizes: u64;
    // cap_offset: u32; pad: u32 } followed by the capability chain.
    let mut buf = vec![0u64; 512];
    let len = buf.len() * 8;
    buf[0] = len as u64; // argsz in the low half (little endian), flags 0.
                         // SAFETY: the fd is the container's; the kernel writes at most `argsz`
                         // bytes into `buf`, which is that long and stays alive for the call.
    let rc = unsafe {
        vmm_sys_util::ioctl::ioctl_with_mut_ptr(container, VFIO_IOMMU_GET_INFO(), buf.as_mut_ptr())
    };
    if rc < 0 {
        return Err(Error::Io {
            what: "VFIO_IOMMU_GET_INFO".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
    Ok(parse_iommu_info(&bytes))
}

/// Decodes a `struct vfio_iommu_type1_info` and its capability chain; offsets
/// outside `bytes` end the walk instead of being followed.
fn parse_iommu_info(bytes: &[u8]) -> IommuInfo {
    let u32_at = |o: usize| {
        let b = bytes.get(o..o.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    };
    let u64_at = |o: usize| {
        let b = bytes.get(o..o.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    let flags = u32_at(4).unwrap_or(0);
    let mut info = IommuInfo {
        pgsizes: u64_at(8).unwrap_or(0),
        ranges: Vec::new(),
        dma_avail: None,
    };
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return info;
    }
    // Capability chain: { id: u16, version: u16, next: u32 } headers.
    let mut off = u32_at(16).unwrap_or(0) as usize;
    let mut hops = 0;
    while off != 0 && hops < 16 {
        hops += 1;
        let Some(head) = u32_at(off) else { break };
        let id = head & 0xffff;
        if id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let n = u32_at(off + 8).unwrap_or(0) as usize;
            for i in 0..n.min(64) {
                let base = off + 16 + 16 * i;
                if let (Some(a), Some(b)) = (u64_at(base), u64_at(base + 8)) {
                    info.ranges.push((a, b));
                }
            }
        } else if id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL {
            info.dma_avail = u32_at(off + 8);
        }
        off = u32_at(off + 4).unwrap_or(0) as usize;
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// What the emulated Intel IOMMU reports: two windows around the
    /// interrupt range, then the DMA mapping count.
    fn qemu_info() -> Vec<u8> {
        let mut b = vec![0u8; 256];
        put32(&mut b, 4, VFIO_IOMMU_INFO_CAPS);
        put64(&mut b, 8, 0x4020_1000);
        put32(&mut b, 16, 24);
        put32(&mut b, 24, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE | 1 << 16);
        put32(&mut b, 28, 80);
        put32(&mut b, 32, 2);
        put64(&mut b, 40, 0);
        put64(&mut b, 48, 0xfedf_ffff);
        put64(&mut b, 56, 0xfef0_0000);
        put64(&mut b, 64, 0x7f_ffff_ffff);
        put32(&mut b, 80, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL | 1 << 16);
        put32(&mut b, 88, 65535);
        b
    }

    #[test]
    fn dma_page_reads_back_little_endian_words_and_zeroes() {
        let page = DmaPage::new().unwrap();
        assert_eq!(page.len(), DMA_LEN);
        page.write32(8, 0x0403_0201).unwrap();
        let mut b = [0u8; 4];
        page.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(page.read32(8).unwrap(), 0x0403_0201);
        page.zero(0, 16).unwrap();
        assert_eq!(page.read32(8).unwrap(), 0);
    }

    #[test]
    fn iommu_info_lists_iova_windows_and_dma_mappings_available() {
        let info = parse_iommu_info(&qemu_info());
        assert_eq!(info.pgsizes, 0x4020_1000);
        assert_eq!(
            info.ranges,
            vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]
        );
        assert_eq!(info.dma_avail, Some(65535));
    }

    #[test]
    fn iommu_info_stops_at_capability_offsets_outside_the_buffer() {
        let mut b = qemu_info();
        put32(&mut b, 28, 0xffff_fff0);
        let info = parse_iommu_info(&b);
        assert_eq!(info.ranges.len(), 2);
        assert_eq!(info.dma_avail, None);
    }

    #[test]
    fn iommu_info_without_capabilities_has_no_windows() {
        let mut b = qemu_info();
        put32(&mut b, 4, 0);
        let info = parse_iommu_info(&b);
        assert!(info.ranges.is_empty());
        assert_eq!(info.pgsizes, 0x4020_1000);
    }
}
