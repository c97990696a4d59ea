//! Namespaces: ranges of logical blocks over a backend, seen through the volatile write
//! cache, and the switch that enables that cache.

use std::fs::OpenOptions;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::{Backend, RamStore};
use crate::cache::WriteCache;
use crate::config::{BackendKind, EmuConfig, MetadataFormat};
use crate::error::EmuError;
use crate::iommu::HostSlice;
use crate::ranges::RangeLocks;

/// The controller's namespaces and its volatile write cache switch.
pub(crate) struct Storage {
    /// Namespace `nsid` at index `nsid - 1`.
    pub namespaces: Box<[Namespace]>,
    /// Whether the controller has a volatile write cache (Identify Controller VWC).
    pub write_cache_present: bool,
    /// Whether the cache is enabled (Set Features Volatile Write Cache): writes without
    /// FUA then complete before they are durable.
    pub write_cache: AtomicBool,
}

impl Storage {
    /// The namespaces `cfg` describes, on RAM, a file (opened, and grown to hold them
    /// all) or nothing.
    pub(crate) fn new(cfg: &EmuConfig) -> Result<Self, EmuError> {
        let blocks = cfg.blocks_per_namespace();
        let stored = cfg.stored_bytes_per_namespace();
        let file = match &cfg.backend {
            BackendKind::File(path) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?;
                let want = stored * u64::from(cfg.namespaces);
                let have = f
                    .metadata()
                    .map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if have < want {
                    f.set_len(want).map_err(|source| EmuError::File {
                        path: path.clone(),
                        source,
                    })?;
                }
                Some(Arc::new(f))
            }
            _ => None,
        };
        let namespaces = (1..=cfg.namespaces)
            .map(|nsid| {
                let backend = match (&cfg.backend, &file) {
                    (BackendKind::Null, _) => Backend::Null,
                    (BackendKind::File(_), Some(f)) => Backend::File {
                        file: f.clone(),
                        base: u64::from(nsid - 1) * stored,
                    },
                    _ => {
                        Backend::Ram(RamStore::new(stored).map_err(|source| EmuError::Memory {
                            bytes: stored,
                            source,
                        })?)
                    }
                };
                let mut ns = Namespace::new(nsid, cfg.lba_size, cfg.metadata, blocks, backend);
                ns.zones = cfg
                    .zoned
                    .map(|z| crate::zns::Zones::new(&z, cfg.lba_size, blocks));
                Ok(ns)
            })
            .collect::<Result<_, EmuError>>()?;
        Ok(Self {
            namespaces,
            write_cache_present: cfg.vwc,
            write_cache: AtomicBool::new(cfg.vwc),
        })
    }

    /// Namespace `nsid`, if it exists.
    #[inline]
    pub(crate) fn get(&self, nsid: u32) -> Option<&Namespace> {
        self.namespaces.get(nsid.checked_sub(1)? as usize)
    }

    /// Whether writes without FUA may complete from the cache.
    #[inline]
    pub(crate) fn write_cache_enabled(&self) -> bool {
        self.write_cache.load(Ordering::Acquire)
    }

    /// Enables or disables the write cache; disabling first makes every cached write
    /// durable (and fails, leaving the cache on, if that fails).
    pub(crate) fn set_write_cache(&self, enable: bool) -> io::Result<()> {
        if !enable {
            for ns in self.namespaces.iter() {
                ns.flush()?;
            }
        }
        self.write_cache.store(enable, Ordering::Release);
        Ok(())
    }

    /// Controller reset: the cache is enabled again if the controller has one.
    pub(crate) fn reset_write_cache(&self) {
        if !self.write_cache_enabled() && self.write_cache_present {
            self.write_cache.store(true, Ordering::Release);
        }
    }

    /// Controller reset: every open zone of a zoned namespace is closed.
    pub(crate) fn close_open_zones(&self) {
        for z in self.namespaces.iter().filter_map(|ns| ns.zones.as_ref()) {
            z.close_open_zones();
        }
    }

    /// Power loss: every write not yet durable is lost; returns how many blocks.
    pub(crate) fn power_cut(&self) -> usize {
        self.namespaces.iter().map(|ns| ns.power_cut()).sum()
    }

    /// Power loss while the cache destages: each write not yet durable is kept
    /// or lost block by block, as `cut` decides; returns the blocks kept and lost.
    pub(crate) fn power_cut_partial(&self, cut: &crate::power::PartialCut) -> (usize, usize) {
        self.namespaces
            .iter()
            .map(|ns| ns.power_cut_partial(cut))
            .fold((0, 0), |(k, l), (a, b)| (k + a, l + b))
    }
}

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
///
/// The backend and the cache hold each block's data followed by its metadata
/// (`stride` bytes a block), the layout an extended-LBA transfer has on the wire.
pub(crate) struct Namespace {
    pub nsid: u32,
    /// log2 of the data bytes per block.
    pub lba_shift: u32,
    pub metadata: MetadataFormat,
    /// Stored bytes per block: data plus metadata.
    pub stride: u64,
    pub blocks: u64,
    pub backend: Backend,
    pub cache: WriteCache,
    /// Held by commands that change blocks; a fused Compare and Write holds its blocks'
    /// exclusively.
    pub ranges: RangeLocks,
    /// The zones, when the namespace is zoned.
    pub zones: Option<crate::zns::Zones>,
}

impl Namespace {
    pub(crate) fn new(
        nsid: u32,
        lba_size: u32,
        metadata: MetadataFormat,
        blocks: u64,
        backend: Backend,
    ) -> Self {
        let stride = u64::from(lba_size) + u64::from(metadata.size);
        Self {
            nsid,
            lba_shift: lba_size.trailing_zeros(),
            metadata,
            stride,
            blocks,
            backend,
            cache: WriteCache::new(stride as usize),
            ranges: RangeLocks::default(),
            zones: None,
        }
    }

    /// Bytes per block in a command's data buffer: data plus metadata for extended
    /// LBAs, data alone when metadata is separate.
    #[inline]
    pub(crate) fn transfer_block_size(&self) -> u64 {
        if self.metadata.separate {
            1 << self.lba_shift
        } else {
            self.stride
        }
    }

    /// Metadata bytes per block in a separate (MPTR) buffer.
    #[inline]
    pub(crate) fn separate_metadata_size(&self) -> usize {
        if self.metadata.separate {
            usize::from(self.metadata.size)
        } else {
            0
        }
    }

    /// Whether blocks `slba..slba+nlb` all lie in the namespace (without overflow).
    pub(crate) fn holds(&self, slba: u64, nlb: u64) -> bool {
        slba.checked_add(nlb).is_some_and(|end| end <= self.blocks)
    }

    /// Stored bytes per block (data and metadata).
    pub(crate) fn block_size(&self) -> usize {
        self.stride as usize
    }

    /// Reads blocks from `slba` into host memory (the transfer length is the segments').
    pub(crate) fn read(&self, slba: u64, segs: &[HostSlice]) -> io::Result<()> {
        if self.backend.is_null() {
            return Ok(());
        }
        let total: usize = segs.iter().map(|s| s.len()).sum();
        let nlb = total as u64 / self.stride;
        loop {
            let generation = self.cache.generation();
            let mut off = slba * self.stride;
            for s in segs {
                self.backend.read_host(off, *s)?;
                off += s.len() as u64;
            }
            if !self.cache.is_empty() {
                for lba in slba..slba + nlb {
                    let at = ((lba - slba) * self.stride) as usize;
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
            self.backend.read_buf(slba * self.stride, dst)?;
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
        let nlb = total as u64 / self.stride;
        if cached {
            self.cache.put_blocks(slba, nlb, &self.backend, |i, buf| {
                sg_copy_to(segs, (i * self.stride) as usize, buf)
            })?;
        } else {
            // A write-back running meanwhile may put older cached data of these
            // blocks on the medium after ours: write again if one ran.
            loop {
                let generation = self.cache.generation();
                let mut off = slba * self.stride;
                for s in segs {
                    self.backend.write_host(off, *s)?;
                    off += s.len() as u64;
                }
                self.cache.invalidate(slba, nlb);
                if self.cache.generation() == generation {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Writes whole stored blocks (data then metadata each) from a device-side buffer
    /// at `slba`: into the cache when `cached`, else durably.
    pub(crate) fn write_buf(&self, slba: u64, src: &[u8], cached: bool) -> io::Result<()> {
        if self.backend.is_null() {
            return Ok(());
        }
        let nlb = src.len() as u64 / self.stride;
        let bs = self.block_size();
        if cached {
            self.cache.put_blocks(slba, nlb, &self.backend, |i, buf| {
                let at = i as usize * bs;
                buf.copy_from_slice(&src[at..at + bs]);
            })?;
        } else {
            // As in `write`: redo the write if a write-back ran meanwhile.
            loop {
                let generation = self.cache.generation();
                self.backend.write_buf(slba * self.stride, src)?;
                self.cache.invalidate(slba, nlb);
                if self.cache.generation() == generation {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Zeroes (and deallocates) `nlb` blocks from `slba`, durably.
    pub(crate) fn zero(&self, slba: u64, nlb: u64) -> io::Result<()> {
        self.backend.zero(slba * self.stride, nlb * self.stride)?;
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
        let Some(zones) = &self.zones else {
            return self.cache.discard();
        };
        // A zone's write pointer keeps only durable data: it goes back to the first
        // block the cache loses, and what lies beyond it reads as deallocated.
        let lost_lbas = self.cache.lbas();
        let lost = self.cache.discard();
        for (slba, nlb) in zones.power_cut(&lost_lbas) {
            // Best effort: a backend that cannot zero keeps stale data past the pointer.
            let _ = self.zero(slba, nlb);
        }
        lost
    }

    /// Loses each write not yet durable or keeps it, block by block, as
    /// `cut` decides (see [`crate::power::PartialCut`]); returns the blocks
    /// kept and lost.
    pub(crate) fn power_cut_partial(&self, cut: &crate::power::PartialCut) -> (usize, usize) {
        let (kept, lost) = self
            .cache
            .discard_partial(&self.backend, |lba| cut.survives(self.nsid, lba));
        if let Some(zones) = &self.zones {
            // The write pointer keeps only durable data up to the first lost block.
            for (slba, nlb) in zones.power_cut(&lost) {
                let _ = self.zero(slba, nlb);
            }
        }
        (kept.len(), lost.len())
    }
}
