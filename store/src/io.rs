//! A thread's access to the device: its dio engine and a source of DMA buffers
//! for the store's own metadata I/O.

use dio::providers::RawNamespace;
use dio::{Dio, DioQueue, DioStats, DmaBuf, IovIter, Kiocb, KiocbFlags, NoHooks};

use crate::error::StoreError;

/// One thread's engine: the dio engine on its queue pair, and where the store
/// gets DMA buffers for metadata (superblock, checkpoints, journal).
pub struct StoreIo<Q: DioQueue, B: DmaBuf> {
    dio: Dio<Q, B>,
    buffers: Box<dyn FnMut(usize) -> Option<B>>,
}

impl<Q: DioQueue, B: DmaBuf> StoreIo<Q, B> {
    /// Wraps `dio`; `buffers(len)` returns a DMA buffer of exactly `len` bytes
    /// (page aligned), or `None` when there is no memory.
    pub fn new(dio: Dio<Q, B>, buffers: impl FnMut(usize) -> Option<B> + 'static) -> Self {
        StoreIo {
            dio,
            buffers: Box::new(buffers),
        }
    }

    /// The dio engine.
    pub fn dio(&mut self) -> &mut Dio<Q, B> {
        &mut self.dio
    }

    /// The dio engine's counters.
    pub fn stats(&self) -> DioStats {
        self.dio.stats()
    }

    /// A DMA buffer of `len` bytes, zeroed.
    pub fn buffer(&mut self, len: usize) -> Result<B, StoreError> {
        let b = (self.buffers)(len).ok_or(StoreError::NoBuffer { len })?;
        if b.len() != len || !b.zero(0, len) {
            return Err(StoreError::NoBuffer { len });
        }
        Ok(b)
    }

    /// Unwraps the dio engine.
    pub fn into_dio(self) -> Dio<Q, B> {
        self.dio
    }

    /// Reads `len` bytes of the namespace at byte `addr`.
    pub(crate) fn read_raw(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let buf = self.buffer(len)?;
        let raw = RawNamespace::new(self.dio.caps());
        let mut it = IovIter::new(vec![buf]);
        let n = self
            .dio
            .read(
                &mut Kiocb::new(addr, KiocbFlags::empty()),
                &mut it,
                &raw,
                &NoHooks,
            )
            .map_err(StoreError::io("reading metadata"))?;
        if n != len {
            return Err(StoreError::Invalid {
                reason: "the store's region reaches past the namespace's end",
            });
        }
        let mut out = vec![0; len];
        if !it.buffers()[0].read_at(0, &mut out) {
            return Err(StoreError::NoBuffer { len });
        }
        Ok(out)
    }

    /// Writes `data` at byte `addr`; `durable`: the write is durable when this
    /// returns (FUA, or a flush without FUA), as an O_DSYNC overwrite.
    pub(crate) fn write_raw(
        &mut self,
        addr: u64,
        data: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        let buf = self.buffer(data.len())?;
        if !buf.write_at(0, data) {
            return Err(StoreError::NoBuffer { len: data.len() });
        }
        let raw = RawNamespace::new(self.dio.caps());
        let flags = if durable {
            KiocbFlags::DSYNC
        } else {
            KiocbFlags::empty()
        };
        let mut it = IovIter::new(vec![buf]);
        let n = self
            .dio
            .write(&mut Kiocb::new(addr, flags), &mut it, &raw, &NoHooks)
            .map_err(StoreError::io("writing metadata"))?;
        if n != data.len() {
            return Err(StoreError::Invalid {
                reason: "the store's region reaches past the namespace's end",
            });
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.dio
            .flush()
            .map_err(StoreError::io("flushing the write cache"))
    }
}
