//! A namespace: a range of logical blocks over a backend, seen through the write cache.

use std::io;

use crate::backend::Backend;
use crate::cache::WriteCache;
use crate::iommu::HostSlice;

/// Copies `src` into the scatter list `segs` starting at byte `at` of the transfer.
pub(crate) fn sg_copy_from(segs: &[HostSlice], mut at: usize, mut src: &[u8]) {
    for s in segs {
        if src.is_empty() {
            return;
        }
        if at >= s.len() {
            at -= s.len();
            continue;
        }
        let n = (s.len() - at).min(src.len());
        s.copy_from(at, &src[..n]);
        src = &src[n..];
        at = 0;
    }
}

/// Copies from the scatter list `segs`, starting at byte `at` of the transfer, into `dst`.
pub(crate) fn sg_copy_to(segs: &[HostSlice], mut at: usize, mut dst: &mut [u8]) {
    for s in segs {
        if dst.is_empty() {
            return;
        }
        if at >= s.len() {
            at -= s.len();
            continue;
        }
        let n = (s.len() - at).min(dst.len());
        s.copy_to(at, &mut dst[..n]);
        dst = &mut dst[n..];
        at = 0;
    }
}

/// One namespace of the controller.
pub(crate) struct Namespace {
    pub nsid: u32,
    pub lba_shift: u32,
    pub blocks: u64,
    pub backend: Backend,
    pub cache: WriteCache,
}

impl Namespace {
    pub(crate) fn new(nsid: u32, lba_size: u32, blocks: u64, backend: Backend) -> Self {
        Self {
            nsid,
            lba_shift: lba_size.trailing_zeros(),
            blocks,
            backend,
            cache: WriteCache::new(lba_size as usize),
        }
    }

    /// Whether blocks `slba..slba+nlb` all lie in the namespace (without overflow).
    pub(crate) fn holds(&self, slba: u64, nlb: u64) -> bool {
        slba.checked_add(nlb).is_some_and(|end| end <= self.blocks)
    }

    pub(crate) fn block_size(&self) -> usize {
        1 << self.lba_shift
    }

    /// Reads blocks from `slba` into host memory (the transfer length is the segments').
    pub(crate) fn read(&self, slba: u64, segs: &[HostSlice]) -> io::Result<()> {
        if self.backend.is_null() {
            return Ok(());
        }
        let total: usize = segs.iter().map(|s| s.len()).sum();
        let nlb = (total >> self.lba_shift) as u64;
        loop {
            let generation = self.cache.generation();
            let mut off = slba << self.lba_shift;
            for s in segs {
                self.backend.read_host(off, *s)?;
                off += s.len() as u64;
            }
            if !self.cache.is_empty() {
                for lba in slba..slba + nlb {
                    let at = ((lba - slba) << self.lba_shift) as usize;
                    self.cache.with(lba, |data| sg_copy_from(segs, at, data));
                }
            }
            if self.cache.generation() == generation {
                return Ok(());
            }
        }
    }

    /// Reads blocks from `slba` into a device-side buffer (Compare).
    pub(crate) fn read_buf(&self, slba: u64, dst: &mut [u8]) -> io::Result<()> {
        let bs = self.block_size();
        loop {
            let generation = self.cache.generation();
            self.backend.read_buf(slba << self.lba_shift, dst)?;
            if !self.cache.is_empty() {
                for (i, block) in dst.chunks_mut(bs).enumerate() {
                    self.cache
                        .with(slba + i as u64, |data| block.copy_from_slice(data));
                }
            }
            if self.cache.generation() == generation {
                return Ok(());
            }
        }
    }

    /// Writes host data at `slba`: into the cache when `cached`, else durably.
    pub(crate) fn write(&self, slba: u64, segs: &[HostSlice], cached: bool) -> io::Result<()> {
        if self.backend.is_null() {
            return Ok(());
        }
        let total: usize = segs.iter().map(|s| s.len()).sum();
        let nlb = (total >> self.lba_shift) as u64;
        if cached {
            self.cache.put_blocks(slba, nlb, &self.backend, |i, buf| {
                sg_copy_to(segs, (i as usize) << self.lba_shift, buf)
            })?;
        } else {
            let mut off = slba << self.lba_shift;
            for s in segs {
                self.backend.write_host(off, *s)?;
                off += s.len() as u64;
            }
            self.cache.invalidate(slba, nlb);
        }
        Ok(())
    }

    /// Zeroes (and deallocates) `nlb` blocks from `slba`, durably.
    pub(crate) fn zero(&self, slba: u64, nlb: u64) -> io::Result<()> {
        self.backend
            .zero(slba << self.lba_shift, nlb << self.lba_shift)?;
        self.cache.invalidate(slba, nlb);
        Ok(())
    }

    /// Makes every completed write durable.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.cache.write_back(&self.backend)?;
        self.backend.sync()
    }

    /// Loses every write not yet durable; returns the number of blocks lost.
    pub(crate) fn power_cut(&self) -> usize {
        self.cache.discard()
    }
}
