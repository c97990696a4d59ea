//! What the layer needs from an I/O buffer: where the device sees it, and a way
//! to zero it without the device (hole reads).

use std::sync::Arc;

/// Memory the device reaches by DMA.
pub trait DmaBuf {
    /// Length in bytes.
    fn len(&self) -> usize;

    /// Whether the buffer has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device address of byte `offset`, or `None` if that byte is not (or no
    /// longer) reachable by the device.
    fn iova_at(&self, offset: usize) -> Option<u64>;

    /// Writes zeros to `len` bytes from `offset`; false if the range is out of bounds.
    fn zero(&self, offset: usize, len: usize) -> bool;

    /// Copies `dst.len()` bytes from `offset` into `dst`; false if out of bounds.
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool;

    /// Copies `src` into the buffer at `offset`; false if out of bounds.
    fn write_at(&self, offset: usize, src: &[u8]) -> bool;
}

impl<T: DmaBuf + ?Sized> DmaBuf for &T {
    #[inline]
    fn len(&self) -> usize {
        (**self).len()
    }
    #[inline]
    fn iova_at(&self, offset: usize) -> Option<u64> {
        (**self).iova_at(offset)
    }
    fn zero(&self, offset: usize, len: usize) -> bool {
        (**self).zero(offset, len)
    }
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        (**self).read_at(offset, dst)
    }
    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        (**self).write_at(offset, src)
    }
}

impl<T: DmaBuf + ?Sized> DmaBuf for Arc<T> {
    #[inline]
    fn len(&self) -> usize {
        (**self).len()
    }
    #[inline]
    fn iova_at(&self, offset: usize) -> Option<u64> {
        (**self).iova_at(offset)
    }
    fn zero(&self, offset: usize, len: usize) -> bool {
        (**self).zero(offset, len)
    }
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        (**self).read_at(offset, dst)
    }
    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        (**self).write_at(offset, src)
    }
}
