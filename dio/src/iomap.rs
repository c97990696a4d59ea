//! The extent model and the two traits a file system implements: the mapping
//! provider ([`IomapOps`], Linux's `struct iomap_ops`) and the completion hooks
//! ([`DioOps`], Linux's `struct iomap_dio_ops`).

use crate::error::DioError;
use crate::kiocb::Kiocb;

/// What backs a range of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingKind {
    /// No blocks: reads see zeros, writes need allocation first.
    Hole,
    /// Reserved but not yet allocated blocks (delayed allocation).
    Delalloc,
    /// Allocated, written blocks at a device address.
    Mapped,
    /// Allocated blocks whose contents must read as zeros until written.
    Unwritten,
    /// Data kept in the file system's metadata, not in device blocks.
    Inline,
}

bitflags::bitflags! {
    /// Properties of a mapping.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct MappingFlags: u32 {
        /// Blocks allocated by this request: contents are stale until written.
        const NEW = 1 << 0;
        /// Blocks shared with another file: the write goes to copy-on-write blocks.
        const SHARED = 1 << 1;
        /// Metadata must change at completion (such as the file size).
        const DIRTY = 1 << 2;
    }
}

bitflags::bitflags! {
    /// What the layer asks of the provider in [`IomapOps::begin`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IomapFlags: u32 {
        /// The request writes; the provider allocates what it must.
        const WRITE = 1 << 0;
        /// Direct I/O (always set by this layer).
        const DIRECT = 1 << 1;
        /// Answer `Again` instead of blocking (allocation, lock waits).
        const NOWAIT = 1 << 2;
        /// Answer `Again` unless the range is a pure overwrite.
        const OVERWRITE_ONLY = 1 << 3;
    }
}

bitflags::bitflags! {
    /// Caller options for one request (the `dio_flags` of Linux's `iomap_dio_rw`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DioFlags: u32 {
        /// Fail with `Again` unless the write only overwrites allocated, written blocks.
        const OVERWRITE_ONLY = 1 << 0;
        /// A fault after some bytes becomes a short success.
        const PARTIAL = 1 << 1;
        /// Wait for completion even for an asynchronous request.
        const FORCE_WAIT = 1 << 2;
    }
}

bitflags::bitflags! {
    /// What happened during a request, passed to [`DioOps::end_io`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CompletionFlags: u32 {
        /// The request wrote.
        const WRITE = 1 << 0;
        /// Some of it went to unwritten extents, which must be converted.
        const UNWRITTEN = 1 << 1;
        /// Some of it went to copy-on-write blocks, which must be remapped.
        const COW = 1 << 2;
        /// Data durability was required (DSYNC or SYNC).
        const NEED_SYNC = 1 << 3;
        /// Every write was issued with FUA (or the device has no volatile cache).
        const WRITE_THROUGH = 1 << 4;
    }
}

/// How a range of the file maps onto the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// What backs the range.
    pub kind: MappingKind,
    /// Properties of the range.
    pub flags: MappingFlags,
    /// File offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Device byte address of the first byte (meaningful for Mapped and Unwritten).
    pub addr: u64,
}

impl Mapping {
    /// The device byte address of file position `pos` inside this mapping.
    #[inline]
    pub fn device_addr(&self, pos: u64) -> u64 {
        self.addr + (pos - self.offset)
    }
}

/// Checks a write of `[pos, pos + len)` that lands on an allocated extent against
/// the layer's rules, for providers: with [`IomapFlags::OVERWRITE_ONLY`] it must be a
/// pure overwrite (not unwritten, not shared); a write to shared, written blocks goes
/// to copy-on-write blocks, so it must cover whole blocks of `block` bytes
/// (`whole_blocks` is the refusal's reason) and cannot be done under
/// [`IomapFlags::NOWAIT`]. Returns whether the write needs copy-on-write blocks.
#[inline]
pub fn check_extent_write(
    flags: IomapFlags,
    pos: u64,
    len: u64,
    block: u64,
    unwritten: bool,
    shared: bool,
    whole_blocks: &'static str,
) -> Result<bool, DioError> {
    if flags.contains(IomapFlags::OVERWRITE_ONLY) && (unwritten || shared) {
        return Err(DioError::Again {
            reason: "the write needs extent conversion or copy-on-write",
        });
    }
    if !shared || unwritten {
        return Ok(false);
    }
    if (pos | len) % block != 0 {
        return Err(DioError::InvalidRequest {
            reason: whole_blocks,
        });
    }
    if flags.contains(IomapFlags::NOWAIT) {
        return Err(DioError::Again {
            reason: "the write needs copy-on-write allocation",
        });
    }
    Ok(true)
}

/// Maps file ranges onto device extents.
pub trait IomapOps {
    /// The file size in bytes.
    fn size(&self) -> u64;

    /// The file system block size in bytes: a power of two, at least the device's
    /// logical block size. Sub-block zeroing works in these units.
    fn block_size(&self) -> u32;

    /// Maps the range starting at `pos` of at most `len` bytes.
    ///
    /// The answer covers `pos` and may be shorter than `len`, never longer.
    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError>;

    /// Ends the use of `mapping`; `written` bytes from `pos` were processed.
    #[inline]
    fn end(
        &self,
        pos: u64,
        len: u64,
        written: u64,
        flags: IomapFlags,
        mapping: &Mapping,
    ) -> Result<(), DioError> {
        let _ = (pos, len, written, flags, mapping);
        Ok(())
    }

    /// Where writes must end: a write reaching past this offset is cut short
    /// there and one starting at or past it fails with ENOSPC, before anything is
    /// mapped (a block device, whose size writes cannot change). `None`, the
    /// default: writes may extend the file.
    #[inline]
    fn write_limit(&self) -> Option<u64> {
        None
    }

    /// Copies inline data at `pos` into `dst` (for [`MappingKind::Inline`]).
    fn read_inline(&self, pos: u64, dst: &mut [u8]) -> Result<(), DioError> {
        let _ = (pos, dst);
        Err(DioError::Io {
            reason: "the provider returned an inline mapping but stores no inline data",
        })
    }

    /// Stores `src` as inline data at `pos` (for [`MappingKind::Inline`]).
    fn write_inline(&self, pos: u64, src: &[u8]) -> Result<(), DioError> {
        let _ = (pos, src);
        Err(DioError::Io {
            reason: "the provider returned an inline mapping but stores no inline data",
        })
    }
}

/// Completion hooks: where a file system finishes a request.
pub trait DioOps {
    /// Called once all commands of a request completed, before the result is reported.
    ///
    /// `size` bytes were transferred from `iocb.pos`; `error` is the request's first
    /// error, if any. Converts unwritten extents, remaps copy-on-write extents and
    /// updates the file size. An error returned here fails a request that had none.
    fn end_io(
        &self,
        iocb: &Kiocb,
        size: u64,
        error: Option<&DioError>,
        flags: CompletionFlags,
    ) -> Result<(), DioError> {
        let _ = (iocb, size, error, flags);
        Ok(())
    }
}

/// Completion hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl DioOps for NoHooks {}
