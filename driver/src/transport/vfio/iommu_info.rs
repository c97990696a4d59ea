//! `VFIO_IOMMU_GET_INFO`: the IOVA windows and page sizes the type1 IOMMU accepts.
//!
//! vfio-ioctls does not wrap this ioctl; the raw call lives in [`get_info`] and the
//! capability-chain parsing is a pure function over the returned bytes.

use std::os::fd::RawFd;

use hugepages::IovaRange;
use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    VFIO_TYPE,
};

/// Capability id of `vfio_iommu_type1_info_dma_avail`.
const CAP_DMA_AVAIL: u16 = 3;
/// Size of the fixed part of `struct vfio_iommu_type1_info`.
const INFO_SIZE: usize = 24;

/// What the IOMMU reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IommuInfo {
    /// Supported IOMMU page sizes as a bit mask (bit n set: 2^n bytes).
    pub page_sizes: u64,
    /// IOVA windows, sorted ascending; empty when the kernel gave no IOVA-range capability.
    pub iova_ranges: Vec<IovaRange>,
    /// How many more DMA mappings the container accepts, when reported.
    pub dma_mappings_available: Option<u32>,
}

/// Why the bytes returned by the kernel could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed VFIO_IOMMU_GET_INFO reply: {0}")]
pub struct ParseError(pub &'static str);

fn u16_at(buf: &[u8], off: usize) -> Result<u16, ParseError> {
    buf.get(off..off + 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or(ParseError("field past the end of the buffer"))
}

fn u32_at(buf: &[u8], off: usize) -> Result<u32, ParseError> {
    buf.get(off..off + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
        .ok_or(ParseError("field past the end of the buffer"))
}

fn u64_at(buf: &[u8], off: usize) -> Result<u64, ParseError> {
    buf.get(off..off + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
        .ok_or(ParseError("field past the end of the buffer"))
}

/// Parses a complete `vfio_iommu_type1_info` reply with its capability chain.
pub fn parse(buf: &[u8]) -> Result<IommuInfo, ParseError> {
    let flags = u32_at(buf, 4)?;
    let mut info = IommuInfo {
        page_sizes: if flags & VFIO_IOMMU_INFO_PGSIZES != 0 {
            u64_at(buf, 8)?
        } else {
            0
        },
        ..IommuInfo::default()
    };
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return Ok(info);
    }
    let mut off = u32_at(buf, 16)? as usize;
    // Every hop must move forward, so the walk ends even on a looping chain.
    let mut last = 0usize;
    while off != 0 {
        if off <= last || off < INFO_SIZE {
            return Err(ParseError("capability chain does not move forward"));
        }
        last = off;
        let id = u16_at(buf, off)?;
        let next = u32_at(buf, off + 4)? as usize;
        match id {
            id if u32::from(id) == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                let count = u32_at(buf, off + 8)? as usize;
                for i in 0..count {
                    let at = off + 16 + i * 16;
                    let start = u64_at(buf, at)?;
                    let end = u64_at(buf, at + 8)?;
                    if end < start {
                        return Err(ParseError("IOVA range ends before it starts"));
                    }
                    info.iova_ranges.push(start..=end);
                }
            }
            CAP_DMA_AVAIL => info.dma_mappings_available = Some(u32_at(buf, off + 8)?),
            _ => {}
        }
        off = next;
    }
    info.iova_ranges.sort_by_key(|r| *r.start());
    Ok(info)
}

/// Issues `VFIO_IOMMU_GET_INFO` on a container whose IOMMU type is set, and parses it.
pub fn get_info(container_fd: RawFd) -> Result<IommuInfo, std::io::Error> {
    let request = vmm_sys_util::ioctl::ioctl_expr(
        vmm_sys_util::ioctl::_IOC_NONE,
        u32::from(VFIO_TYPE),
        VFIO_BASE + 12,
        0,
    );
    let mut argsz = INFO_SIZE;
    // The first call reports the size needed for the capability chain; the second fills it.
    for _ in 0..2 {
        // u64 storage keeps the buffer 8-byte aligned, as the kernel structure requires.
        let mut buf = vec![0u64; argsz.div_ceil(8)];
        let bytes_len = buf.len() * 8;
        buf[0] = argsz as u64; // argsz in the low 32 bits (little endian), flags 0
                               // SAFETY: `buf` is a writable, 8-byte aligned buffer of `bytes_len` >= argsz bytes,
                               // which is all the kernel writes for VFIO_IOMMU_GET_INFO; the fd is only borrowed.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ptr(
                &BorrowedRaw(container_fd),
                request,
                buf.as_mut_ptr().cast::<u8>(),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let needed = u32_at(&bytes, 0).unwrap_or(0) as usize;
        if needed <= bytes_len {
            return parse(&bytes[..bytes_len])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        argsz = needed;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "VFIO_IOMMU_GET_INFO kept asking for a larger buffer",
    ))
}

/// A raw fd borrowed for one ioctl.
struct BorrowedRaw(RawFd);

impl std::os::fd::AsRawFd for BorrowedRaw {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the kernel's reply: header, then an IOVA-range cap, then a DMA-avail cap.
    fn reply(ranges: &[(u64, u64)], avail: u32) -> Vec<u8> {
        let mut b = Vec::new();
        let iova_cap_off = INFO_SIZE as u32;
        let iova_cap_len = 16 + 16 * ranges.len() as u32;
        let avail_off = iova_cap_off + iova_cap_len;
        let total = avail_off + 12;
        b.extend_from_slice(&total.to_ne_bytes());
        b.extend_from_slice(&(VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS).to_ne_bytes());
        b.extend_from_slice(&0x4020_1000u64.to_ne_bytes());
        b.extend_from_slice(&iova_cap_off.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        // IOVA-range capability.
        b.extend_from_slice(&(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16).to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&avail_off.to_ne_bytes());
        b.extend_from_slice(&(ranges.len() as u32).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for (s, e) in ranges {
            b.extend_from_slice(&s.to_ne_bytes());
            b.extend_from_slice(&e.to_ne_bytes());
        }
        // DMA-avail capability, end of chain.
        b.extend_from_slice(&CAP_DMA_AVAIL.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&avail.to_ne_bytes());
        b
    }

    #[test]
    fn qemu_intel_iommu_windows_are_parsed() {
        let buf = reply(&[(0xfef0_0000, 0x7f_ffff_ffff), (0, 0xfedf_ffff)], 65535);
        let info = parse(&buf).unwrap();
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(
            info.iova_ranges,
            vec![0..=0xfedf_ffff, 0xfef0_0000..=0x7f_ffff_ffff]
        );
        assert_eq!(info.dma_mappings_available, Some(65535));
    }

    #[test]
    fn truncated_capability_is_an_error_not_a_panic() {
        let buf = reply(&[(0, 0xffff)], 1);
        assert!(parse(&buf[..INFO_SIZE + 20]).is_err());
    }

    #[test]
    fn looping_capability_chain_is_rejected() {
        let mut buf = reply(&[(0, 0xffff)], 1);
        let avail_off = INFO_SIZE + 32;
        buf[avail_off + 4..avail_off + 8].copy_from_slice(&(INFO_SIZE as u32).to_ne_bytes());
        assert!(parse(&buf).is_err());
    }

    #[test]
    fn reply_without_caps_has_no_ranges() {
        let mut buf = reply(&[], 0);
        buf[4..8].copy_from_slice(&VFIO_IOMMU_INFO_PGSIZES.to_ne_bytes());
        let info = parse(&buf).unwrap();
        assert!(info.iova_ranges.is_empty());
        assert_eq!(info.dma_mappings_available, None);
    }
}
