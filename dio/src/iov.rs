//! [`IovIter`]: a cursor over a request's DMA buffers (Linux's `struct iov_iter`).

use crate::buf::DmaBuf;
use crate::error::DioError;

/// A cursor over one or more DMA buffers, consumed front to back.
///
/// `count` is how many bytes the cursor may still consume; it can be limited
/// ([`truncate`](Self::truncate)) and restored ([`reexpand`](Self::reexpand)) while
/// the layer works on one extent, and the cursor can step back
/// ([`revert`](Self::revert)) when bytes are given back.
#[derive(Debug)]
pub struct IovIter<B> {
    bufs: Vec<B>,
    total: usize,
    consumed: usize,
    count: usize,
    idx: usize,
    off: usize,
}

/// One contiguous piece of a buffer, as yielded by [`IovIter::chunks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the buffer in the iterator.
    pub index: usize,
    /// Byte offset inside that buffer.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl<B: DmaBuf> IovIter<B> {
    /// An iterator over all bytes of `bufs`, in order.
    pub fn new(bufs: Vec<B>) -> Self {
        let total = bufs.iter().map(DmaBuf::len).sum();
        IovIter {
            bufs,
            total,
            consumed: 0,
            count: total,
            idx: 0,
            off: 0,
        }
    }

    /// Bytes the cursor may still consume.
    #[inline]
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The buffers.
    #[inline]
    pub fn buffers(&self) -> &[B] {
        &self.bufs
    }

    /// Gives the buffers back.
    pub fn into_buffers(self) -> Vec<B> {
        self.bufs
    }

    /// Moves the cursor back to the start and makes every byte available again.
    #[inline]
    pub fn reset(&mut self) {
        self.consumed = 0;
        self.count = self.total;
        self.idx = 0;
        self.off = 0;
    }

    /// Consumes `n` bytes (at most [`count`](Self::count)).
    #[inline(always)]
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.count);
        self.consumed += n;
        self.count -= n;
        if self.consumed == self.total {
            // Everything consumed: the cursor rests past the last buffer.
            self.idx = self.bufs.len();
            self.off = 0;
            return;
        }
        self.step(n);
    }

    /// Moves the cursor `n` bytes forward over the buffers.
    /// [`advance`](Self::advance) by the whole remaining count.
    #[inline(always)]
    pub(crate) fn advance_all(&mut self) {
        let n = self.count;
        self.consumed += n;
        self.count = 0;
        if self.consumed == self.total {
            self.idx = self.bufs.len();
            self.off = 0;
            return;
        }
        self.step(n);
    }

    fn step(&mut self, mut n: usize) {
        while n > 0 && self.idx < self.bufs.len() {
            let avail = self.bufs[self.idx].len() - self.off;
            if n < avail {
                self.off += n;
                n = 0;
            } else {
                n -= avail;
                self.idx += 1;
                self.off = 0;
            }
        }
    }

    /// Steps back over `n` consumed bytes (at most [`consumed`](Self::consumed)).
    pub fn revert(&mut self, n: usize) {
        let mut n = n.min(self.consumed);
        self.consumed -= n;
        self.count += n;
        while n > 0 {
            if self.off >= n {
                self.off -= n;
                n = 0;
            } else {
                n -= self.off;
                self.idx -= 1;
                self.off = self.bufs[self.idx].len();
            }
        }
    }

    /// Limits the bytes still available to at most `n`.
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        self.count = self.count.min(n);
    }

    /// Makes `n` bytes available again after a [`truncate`](Self::truncate), bounded
    /// by what the buffers hold past the cursor.
    #[inline]
    pub fn reexpand(&mut self, n: usize) {
        self.count = n.min(self.total - self.consumed);
    }

    /// The pieces of buffer from the cursor up to [`count`](Self::count) bytes.
    pub fn chunks(&self) -> impl Iterator<Item = Chunk> + '_ {
        let mut left = self.count;
        let mut off = self.off;
        self.bufs[self.idx.min(self.bufs.len())..]
            .iter()
            .enumerate()
            .filter_map(move |(i, b)| {
                let start = std::mem::take(&mut off);
                let len = (b.len() - start.min(b.len())).min(left);
                left -= len;
                (len > 0).then_some(Chunk {
                    index: self.idx + i,
                    offset: start,
                    len,
                })
            })
    }

    /// The available bytes as one piece, when they all lie in the current buffer:
    /// the buffer and the offset of the cursor in it.
    #[inline]
    pub(crate) fn single(&self) -> Option<(&B, usize)> {
        if let [b] = &self.bufs[..] {
            // One buffer: `count <= total - consumed`, so bytes left mean the
            // cursor is in it, at `off` (= `consumed`).
            return (self.count > 0).then_some((b, self.off));
        }
        let b = self.bufs.get(self.idx)?;
        (self.count > 0 && b.len() - self.off >= self.count).then_some((b, self.off))
    }

    /// Checks the DMA rules for the available bytes: every piece starts on a
    /// `dma_align` boundary and its length is a multiple of `block` (both powers of two).
    #[inline]
    pub fn check_dma_rules(&self, block: u32, dma_align: u32) -> Result<(), DioError> {
        if let Some((b, off)) = self.single() {
            return check_piece(b.iova_at(off), self.count, block, dma_align);
        }
        for c in self.chunks() {
            check_piece(
                self.bufs[c.index].iova_at(c.offset),
                c.len,
                block,
                dma_align,
            )?;
        }
        Ok(())
    }

    /// Writes zeros to the next `n` available bytes and consumes them.
    pub fn zero_fill(&mut self, n: usize) -> Result<(), DioError> {
        let mut left = n.min(self.count);
        let mut done = 0;
        for c in self.chunks() {
            if left == 0 {
                break;
            }
            let len = c.len.min(left);
            if !self.bufs[c.index].zero(c.offset, len) {
                return Err(DioError::Fault {
                    index: c.index,
                    offset: c.offset,
                });
            }
            left -= len;
            done += len;
        }
        self.advance(done);
        Ok(())
    }

    /// Copies the next `dst.len()` available bytes into `dst` and consumes them.
    pub fn copy_out(&mut self, dst: &mut [u8]) -> Result<(), DioError> {
        let mut at = 0;
        for c in self.chunks() {
            if at == dst.len() {
                break;
            }
            let len = c.len.min(dst.len() - at);
            if !self.bufs[c.index].read_at(c.offset, &mut dst[at..at + len]) {
                return Err(DioError::Fault {
                    index: c.index,
                    offset: c.offset,
                });
            }
            at += len;
        }
        self.advance(at);
        Ok(())
    }

    /// Copies `src` into the next available bytes and consumes them.
    pub fn copy_in(&mut self, src: &[u8]) -> Result<(), DioError> {
        let mut at = 0;
        for c in self.chunks() {
            if at == src.len() {
                break;
            }
            let len = c.len.min(src.len() - at);
            if !self.bufs[c.index].write_at(c.offset, &src[at..at + len]) {
                return Err(DioError::Fault {
                    index: c.index,
                    offset: c.offset,
                });
            }
            at += len;
        }
        self.advance(at);
        Ok(())
    }
}

/// One piece of buffer against the DMA rules (`iova` is `None` when the device
/// cannot reach it; that is a fault found when the command is built).
#[inline]
fn check_piece(iova: Option<u64>, len: usize, block: u32, dma_align: u32) -> Result<(), DioError> {
    if let Some(iova) = iova {
        if iova & u64::from(dma_align - 1) != 0 {
            return Err(DioError::Inval {
                what: "buffer device address",
                value: iova,
                align: u64::from(dma_align),
            });
        }
    }
    if len & (block as usize - 1) != 0 {
        return Err(DioError::Inval {
            what: "buffer length",
            value: len as u64,
            align: u64::from(block),
        });
    }
    Ok(())
}
