//! The whole namespace as one file: a single mapped extent.

use crate::error::DioError;
use crate::iomap::{DioOps, IomapFlags, IomapOps, Mapping, MappingFlags, MappingKind};
use crate::queue::DeviceCaps;

/// A namespace used as a block device: byte `n` of the "file" is byte `n` of the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawNamespace {
    size: u64,
    block: u32,
}

impl RawNamespace {
    /// The namespace described by `caps`.
    pub fn new(caps: &DeviceCaps) -> Self {
        RawNamespace {
            size: caps.capacity_lbas * u64::from(caps.lba_size),
            block: caps.lba_size,
        }
    }
}

impl IomapOps for RawNamespace {
    #[inline]
    fn size(&self) -> u64 {
        self.size
    }

    #[inline]
    fn block_size(&self) -> u32 {
        self.block
    }

    /// The namespace's end: writes are cut there, as on a block device.
    #[inline]
    fn write_limit(&self) -> Option<u64> {
        Some(self.size)
    }

    #[inline]
    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError> {
        if pos >= self.size {
            if !flags.contains(IomapFlags::WRITE) {
                // Past the end reads as a hole; the result is cut at the end anyway.
                return Ok(Mapping {
                    kind: MappingKind::Hole,
                    flags: MappingFlags::empty(),
                    offset: pos,
                    length: len.max(1),
                    addr: 0,
                });
            }
            return Err(DioError::NoSpace {
                needed: len,
                free: 0,
            });
        }
        Ok(Mapping {
            kind: MappingKind::Mapped,
            flags: MappingFlags::empty(),
            offset: 0,
            length: self.size,
            addr: 0,
        })
    }
}

impl DioOps for RawNamespace {}
