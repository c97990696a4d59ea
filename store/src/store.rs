//! The store: format, open (load the newest checkpoint, replay the journal),
//! the journal's commit and the checkpoint.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dio::{DioQueue, DmaBuf};

use crate::codec::{crc32c, Dec, Enc};
use crate::error::StoreError;
use crate::io::StoreIo;
use crate::layout::{CheckpointHeader, Geometry, JournalHeader, Superblock, JBLOCK_HEADER};
use crate::meta::{decode_snapshot, encode_snapshot, Alloc, FileMeta, Image, Record};

/// Where the store lives on the namespace, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First byte (a multiple of the store block size).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Choices made at format time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatOptions {
    /// Store block size: a power of two, at least the device's logical block.
    pub block_size: u32,
    /// Blocks of each checkpoint area; `None`: 1/64 of the region, at least 8.
    pub checkpoint_blocks: Option<u64>,
    /// Blocks of the journal; `None`: 1/32 of the region, between 16 and 4096.
    pub journal_blocks: Option<u64>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            block_size: 4096,
            checkpoint_blocks: None,
            journal_blocks: None,
        }
    }
}

/// Commands and events the store caused (all threads together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Journal transactions made durable.
    pub journal_commits: u64,
    /// Journal blocks written.
    pub journal_blocks: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Metadata writes the store issued with FUA.
    pub fua_commands: u64,
    /// Flush commands the store issued.
    pub flush_commands: u64,
}

#[derive(Debug, Default)]
struct Counters {
    journal_commits: AtomicU64,
    journal_blocks: AtomicU64,
    checkpoints: AtomicU64,
    fua_commands: AtomicU64,
    flush_commands: AtomicU64,
}

/// One file in memory.
#[derive(Debug)]
pub(crate) struct FileNode {
    pub id: u64,
    pub meta: Mutex<FileMeta>,
    /// `meta.size`, stored under `meta`'s lock wherever the size changes
    /// ([`FileNode::publish_size`]), so the dio layer's size query takes no lock.
    size: AtomicU64,
}

impl FileNode {
    /// A node for `meta`.
    pub(crate) fn new(meta: FileMeta) -> FileNode {
        FileNode {
            id: meta.id,
            size: AtomicU64::new(meta.size),
            meta: Mutex::new(meta),
        }
    }

    /// The size as last published: what a reader holding no lock may see.
    #[inline]
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Publishes `f.size`; the caller holds this node's lock (`f` is its guard).
    #[inline]
    pub(crate) fn publish_size(&self, f: &FileMeta) {
        debug_assert_eq!(f.id, self.id, "a size published to another file's node");
        self.size.store(f.size, Ordering::Release);
    }

    /// Checks (in debug builds) that the published size is `f.size`: every
    /// change of the size must be published before the lock is released.
    #[inline]
    pub(crate) fn check_size(&self, f: &FileMeta) {
        debug_assert_eq!(
            self.size(),
            f.size,
            "file {}: a size change was not published",
            self.id
        );
    }
}

/// Records appended but not yet committed.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub recs: Vec<Record>,
    /// Encoded size of `recs`.
    pub bytes: usize,
    /// Position of the last record appended.
    pub last_lsn: u64,
    /// Some record describes data whose write may still sit in the device's
    /// volatile cache: the commit flushes first.
    pub needs_flush: bool,
}

/// The journal's position on the device (held while committing).
#[derive(Debug)]
pub(crate) struct JournalIo {
    /// Next journal block to write (0-based in the journal).
    pub head: u64,
    /// Blocks written since the last checkpoint.
    pub used: u64,
    pub next_seq: u64,
    /// Area of the newest checkpoint.
    pub area: usize,
    pub epoch: u64,
}

/// A persistent extent store of named files. Share it between threads in an
/// `Arc`; each thread passes its own [`StoreIo`].
#[derive(Debug)]
pub struct Store {
    pub(crate) sb: Superblock,
    pub(crate) geo: Geometry,
    pub(crate) vwc: bool,
    pub(crate) names: Mutex<BTreeMap<String, Arc<FileNode>>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) alloc: Mutex<Alloc>,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) jio: Mutex<JournalIo>,
    /// Position of the last record known durable.
    pub(crate) durable: AtomicU64,
    /// The allocator's `busy_hint`: blocks may be waiting for a commit.
    pub(crate) busy_hint: Arc<AtomicBool>,
    counters: Counters,
    /// A journal or checkpoint write failed: records applied in memory may
    /// never reach the device, so nothing is committed or acknowledged again
    /// until the store is reopened (XFS's shutdown on a log I/O error).
    shut_down: std::sync::atomic::AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    hugepages::sync::lock(m)
}

/// A random 64-bit value (format identities and mount epochs).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Nanoseconds since the Unix epoch as of the last timer tick (a few
/// milliseconds' resolution): the time every file time is stamped with.
pub(crate) fn now() -> u64 {
    // CLOCK_REALTIME_COARSE, as Linux stamps inode times (`current_time`):
    // the vDSO answers from memory, so the overwrite path can afford it.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    match (u64::try_from(ts.tv_sec), u64::try_from(ts.tv_nsec)) {
        (Ok(s), Ok(ns)) => s.saturating_mul(1_000_000_000).saturating_add(ns),
        _ => 0,
    }
}

/// What reading the device's metadata found.
pub(crate) struct Loaded {
    pub image: Image,
    pub head: u64,
    pub used: u64,
    pub next_seq: u64,
    pub area: usize,
    pub transactions: u64,
    pub checkpoint_seq: u64,
    pub rejected: [Option<&'static str>; 2],
}

impl Store {
    /// Formats `region` as an empty store and opens it.
    pub fn format<Q: DioQueue, B: DmaBuf>(
        io: &mut StoreIo<Q, B>,
        region: Region,
        opts: &FormatOptions,
    ) -> Result<Arc<Store>, StoreError> {
        let bs = opts.block_size;
        let lba = io.dio().caps().lba_size;
        if !bs.is_power_of_two() || bs < lba || !(512..=65536).contains(&bs) {
            return Err(StoreError::Invalid {
                reason: "the block size must be a power of two in 512..=65536 and at least the device's logical block",
            });
        }
        let b = u64::from(bs);
        let ns = io.dio().caps().capacity_lbas * u64::from(lba);
        if region.offset % b != 0 || region.offset.checked_add(region.len).is_none_or(|e| e > ns) {
            return Err(StoreError::Invalid {
                reason: "the region must start on a block boundary and end inside the namespace",
            });
        }
        let total = region.len / b;
        let c = opts.checkpoint_blocks.unwrap_or((total / 64).max(8));
        let j = opts.journal_blocks.unwrap_or((total / 32).clamp(16, 4096));
        let meta = 1 + 2 * c + j;
        if c < 2 || j < 2 || meta >= total {
            return Err(StoreError::Invalid {
                reason: "the region is too small for the superblock, two checkpoint areas, the journal and data",
            });
        }
        let mut uuid = [0; 16];
        uuid[..8].copy_from_slice(&random_u64().to_le_bytes());
        uuid[8..].copy_from_slice(&random_u64().to_le_bytes());
        let sb = Superblock {
            geo: Geometry {
                base: region.offset,
                block_size: bs,
                total_blocks: total,
                checkpoint_blocks: c,
                journal_blocks: j,
                data_blocks: total - meta,
            },
            uuid,
        };
        let img = Image::empty(sb.geo.data_blocks);
        let payload = encode_snapshot(img.files.values(), &img.alloc, img.next_id);
        // The first checkpoint, then the superblock that makes the region a store.
        write_checkpoint(io, &sb, 0, random_u64(), 0, 0, &payload)?;
        let mut block = sb.encode();
        block.resize(bs as usize, 0);
        io.write_raw(sb.geo.addr(0), &block, true)?;
        Store::open(io, region)
    }

    /// Opens the store in `region`: validates the superblock, loads the newest
    /// valid checkpoint, replays the journal's committed transactions, and writes
    /// a fresh checkpoint so a torn tail can never be mistaken for a later one.
    pub fn open<Q: DioQueue, B: DmaBuf>(
        io: &mut StoreIo<Q, B>,
        region: Region,
    ) -> Result<Arc<Store>, StoreError> {
        let sb = read_superblock(io, region)?;
        let loaded = load(io, &sb)?;
        let mut image = loaded.image;
        image.mark_shared();
        let names = image
            .files
            .values()
            .map(|f| (f.name.clone(), Arc::new(FileNode::new(f.clone()))))
            .collect();
        let store = Arc::new(Store {
            sb,
            geo: sb.geo,
            vwc: io.dio().caps().volatile_write_cache,
            names: Mutex::new(names),
            next_id: AtomicU64::new(image.next_id),
            busy_hint: Arc::clone(&image.alloc.busy_hint),
            alloc: Mutex::new(image.alloc),
            pending: Mutex::new(Pending::default()),
            jio: Mutex::new(JournalIo {
                head: loaded.head,
                used: loaded.used,
                next_seq: loaded.next_seq,
                area: loaded.area,
                epoch: 0,
            }),
            durable: AtomicU64::new(0),
            counters: Counters::default(),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        });
        let mut j = lock(&store.jio);
        j.epoch = random_u64();
        store.checkpoint(io, &mut j)?;
        drop(j);
        Ok(store)
    }

    /// The layout.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The format's identity.
    pub fn uuid(&self) -> [u8; 16] {
        self.sb.uuid
    }

    /// The store's command counters.
    pub fn counters(&self) -> StoreCounters {
        let c = &self.counters;
        StoreCounters {
            journal_commits: c.journal_commits.load(Ordering::Relaxed),
            journal_blocks: c.journal_blocks.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            fua_commands: c.fua_commands.load(Ordering::Relaxed),
            flush_commands: c.flush_commands.load(Ordering::Relaxed),
        }
    }

    /// Free data blocks (blocks whose free is not yet durable not counted).
    pub fn free_blocks(&self) -> u64 {
        lock(&self.alloc).free_blocks
    }

    /// Appends records to the journal's pending transaction; call with the
    /// allocator locked (it orders records that share blocks). Returns their position.
    pub(crate) fn append(&self, recs: Vec<Record>, needs_flush: bool) -> u64 {
        let mut p = lock(&self.pending);
        let mut e = Enc::default();
        for r in &recs {
            r.encode(&mut e);
        }
        p.bytes += e.0.len();
        p.recs.extend(recs);
        p.last_lsn += 1;
        p.needs_flush |= needs_flush;
        p.last_lsn
    }

    /// The position the next [`append`](Self::append) returns; call with the
    /// allocator locked.
    pub(crate) fn next_lsn(&self) -> u64 {
        lock(&self.pending).last_lsn + 1
    }

    /// Whether the records up to `lsn` are durable.
    pub(crate) fn is_durable(&self, lsn: u64) -> bool {
        self.durable.load(Ordering::Acquire) >= lsn
    }

    /// Commits everything appended so far.
    pub fn sync<Q: DioQueue, B: DmaBuf>(&self, io: &mut StoreIo<Q, B>) -> Result<(), StoreError> {
        let last = lock(&self.pending).last_lsn;
        self.commit_to(io, last)
    }

    /// Commits when the pending transaction grows large, so memory and the
    /// next commit stay bounded.
    pub(crate) fn maybe_commit<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
    ) -> Result<(), StoreError> {
        let room = self.payload_per_block() * (self.geo.journal_blocks as usize / 4).max(1);
        let (bytes, last) = {
            let p = lock(&self.pending);
            (p.bytes, p.last_lsn)
        };
        if bytes > room {
            self.commit_to(io, last)?;
        }
        Ok(())
    }

    fn payload_per_block(&self) -> usize {
        self.geo.block_size as usize - JBLOCK_HEADER
    }

    /// Makes the records up to `lsn` durable (group commit: one transaction
    /// carries every record pending when it is written).
    pub(crate) fn commit_to<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        lsn: u64,
    ) -> Result<(), StoreError> {
        self.commit(io, lsn, false)
    }

    /// [`commit_to`](Self::commit_to); with `flush_data`, every write completed
    /// before the call is durable too (a flush even when nothing is to commit).
    pub(crate) fn commit<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        lsn: u64,
        flush_data: bool,
    ) -> Result<(), StoreError> {
        let flush_only = |io: &mut StoreIo<Q, B>| -> Result<(), StoreError> {
            if flush_data {
                let before = io.stats();
                io.flush()?;
                self.count_io(io, before);
            }
            Ok(())
        };
        if self.is_durable(lsn) {
            return flush_only(io);
        }
        let mut j = lock(&self.jio);
        if self.is_durable(lsn) {
            drop(j);
            return flush_only(io);
        }
        self.check_live()?;
        let r = self.commit_locked(io, &mut j, flush_data);
        self.stop_on_error(r)
    }

    /// Refuses to commit after a failed metadata write.
    fn check_live(&self) -> Result<(), StoreError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(StoreError::ShutDown);
        }
        Ok(())
    }

    /// Shuts the store down when a commit or checkpoint failed: the records
    /// it took are lost from the pending transaction, so no later commit may
    /// claim them durable.
    fn stop_on_error<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.shut_down.store(true, Ordering::Release);
        }
        r
    }

    /// The body of [`commit`](Self::commit), with the journal locked.
    fn commit_locked<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        j: &mut JournalIo,
        flush_data: bool,
    ) -> Result<(), StoreError> {
        let flush_only = |io: &mut StoreIo<Q, B>| -> Result<(), StoreError> {
            if flush_data {
                let before = io.stats();
                io.flush()?;
                self.count_io(io, before);
            }
            Ok(())
        };
        let (recs, last, needs_flush) = {
            let mut p = lock(&self.pending);
            let recs = std::mem::take(&mut p.recs);
            p.bytes = 0;
            let nf = std::mem::take(&mut p.needs_flush);
            (recs, p.last_lsn, nf)
        };
        if recs.is_empty() {
            self.set_durable(last);
            return flush_only(io);
        }
        let mut e = Enc::default();
        for r in &recs {
            r.encode(&mut e);
        }
        let payload = e.0;
        let per = self.payload_per_block();
        let count = payload.len().div_ceil(per) as u64;
        let jblocks = self.geo.journal_blocks;
        if j.used + count > jblocks {
            // No room: the checkpoint holds these records (they are applied in memory).
            return self.checkpoint(io, j);
        }
        let bs = self.geo.block_size as usize;
        let total_crc = crc32c(&payload);
        let mut blocks = vec![0u8; count as usize * bs];
        for (i, chunk) in payload.chunks(per).enumerate() {
            let block = &mut blocks[i * bs..(i + 1) * bs];
            block[JBLOCK_HEADER..JBLOCK_HEADER + chunk.len()].copy_from_slice(chunk);
            JournalHeader {
                epoch: j.epoch,
                seq: j.next_seq,
                index: i as u32,
                count: count as u32,
                used: chunk.len() as u32,
                total_crc,
            }
            .seal(block);
        }
        let before = io.stats();
        if needs_flush || flush_data {
            io.flush()?;
        }
        // The transaction in one durable write (two where it wraps): its last
        // block is the commit record, and every block carries the sequence
        // number and the whole transaction's checksum, so a torn write is
        // never replayed.
        let first = (jblocks - j.head).min(count) as usize;
        let start = self.geo.journal_start();
        io.write_raw(self.geo.addr(start + j.head), &blocks[..first * bs], true)?;
        if first < count as usize {
            io.write_raw(self.geo.addr(start), &blocks[first * bs..], true)?;
        }
        self.count_io(io, before);
        j.head = (j.head + count) % jblocks;
        j.used += count;
        j.next_seq += 1;
        self.counters
            .journal_commits
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .journal_blocks
            .fetch_add(count, Ordering::Relaxed);
        self.set_durable(last);
        if j.used > jblocks / 2 {
            self.checkpoint(io, j)?;
        }
        Ok(())
    }

    fn set_durable(&self, lsn: u64) {
        self.durable.fetch_max(lsn, Ordering::AcqRel);
        lock(&self.alloc).release_busy(self.durable.load(Ordering::Acquire));
    }

    pub(crate) fn count_io<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &StoreIo<Q, B>,
        before: dio::DioStats,
    ) {
        let after = io.stats();
        self.counters
            .fua_commands
            .fetch_add(after.fua_commands - before.fua_commands, Ordering::Relaxed);
        self.counters.flush_commands.fetch_add(
            after.flush_commands - before.flush_commands,
            Ordering::Relaxed,
        );
    }

    /// Locks the whole metadata in order (file table, files by number,
    /// allocator, pending records) and encodes it.
    pub(crate) fn snapshot(&self) -> (Vec<u8>, u64, Image) {
        self.lock_all(true)
    }

    /// The metadata in memory as one image (staged copy-on-write blocks left out).
    pub(crate) fn live_image(&self) -> Image {
        self.lock_all(false).2
    }

    /// Locks everything, encodes a checkpoint payload and copies the image;
    /// `absorb`: the pending records are dropped (the checkpoint holds them).
    fn lock_all(&self, absorb: bool) -> (Vec<u8>, u64, Image) {
        let names = lock(&self.names);
        let mut nodes: Vec<&Arc<FileNode>> = names.values().collect();
        nodes.sort_by_key(|n| n.id);
        let metas: Vec<MutexGuard<'_, FileMeta>> = nodes.iter().map(|n| lock(&n.meta)).collect();
        let alloc = lock(&self.alloc);
        let mut p = lock(&self.pending);
        if absorb {
            p.recs.clear();
            p.bytes = 0;
            p.needs_flush = false;
        }
        let lsn = p.last_lsn;
        let next_id = self.next_id.load(Ordering::Relaxed);
        let payload = encode_snapshot(metas.iter().map(|g| &**g), &alloc, next_id);
        let mut image = Image {
            files: metas.iter().map(|g| (g.id, (**g).clone())).collect(),
            alloc: (*alloc).clone(),
            next_id,
        };
        for f in image.files.values_mut() {
            f.cow.clear();
        }
        (payload, lsn, image)
    }

    /// Writes a checkpoint of the whole metadata to the other area and
    /// restarts the journal after it.
    pub(crate) fn checkpoint<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        j: &mut JournalIo,
    ) -> Result<(), StoreError> {
        self.check_live()?;
        let r = self.checkpoint_locked(io, j);
        self.stop_on_error(r)
    }

    /// The body of [`checkpoint`](Self::checkpoint).
    fn checkpoint_locked<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        j: &mut JournalIo,
    ) -> Result<(), StoreError> {
        let (payload, lsn, _) = self.snapshot();
        let before = io.stats();
        // Data the snapshot describes as written must be durable first.
        io.flush()?;
        let area = 1 - j.area;
        let seq = j.next_seq;
        write_checkpoint(io, &self.sb, area, j.epoch, seq, j.head, &payload)?;
        self.count_io(io, before);
        j.area = area;
        j.used = 0;
        j.next_seq = seq + 1;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.set_durable(lsn);
        Ok(())
    }
}

/// Writes a checkpoint (header block and payload) to `area`, durably.
fn write_checkpoint<Q: DioQueue, B: DmaBuf>(
    io: &mut StoreIo<Q, B>,
    sb: &Superblock,
    area: usize,
    epoch: u64,
    seq: u64,
    journal_head: u64,
    payload: &[u8],
) -> Result<(), StoreError> {
    let bs = sb.geo.block_size as usize;
    let room = (sb.geo.checkpoint_blocks as usize - 1) * bs;
    if payload.len() > room {
        return Err(StoreError::MetadataFull {
            bytes: payload.len(),
            room,
        });
    }
    let header = CheckpointHeader {
        format_id: sb.format_id(),
        epoch,
        seq,
        journal_head,
        payload_len: payload.len() as u64,
        payload_crc: crc32c(payload),
    };
    let mut buf = header.encode();
    buf.resize(bs, 0);
    buf.extend_from_slice(payload);
    buf.resize(bs + payload.len().div_ceil(bs) * bs, 0);
    io.write_raw(sb.geo.addr(sb.geo.checkpoint_start(area)), &buf, true)
}

/// Reads and validates the superblock of `region`.
pub(crate) fn read_superblock<Q: DioQueue, B: DmaBuf>(
    io: &mut StoreIo<Q, B>,
    region: Region,
) -> Result<Superblock, StoreError> {
    let lba = io.dio().caps().lba_size as usize;
    let block = io.read_raw(region.offset, lba.max(512))?;
    let sb = Superblock::decode(&block, region.offset)?;
    if sb.geo.total_blocks * u64::from(sb.geo.block_size) > region.len {
        return Err(StoreError::BadSuperblock {
            reason: "it describes a region larger than the one given",
        });
    }
    if sb.geo.block_size < io.dio().caps().lba_size {
        return Err(StoreError::BadSuperblock {
            reason: "its block size is smaller than the device's logical block",
        });
    }
    Ok(sb)
}

/// Reads checkpoint `area`: its header and decoded image.
fn read_checkpoint<Q: DioQueue, B: DmaBuf>(
    io: &mut StoreIo<Q, B>,
    sb: &Superblock,
    area: usize,
) -> Result<Result<(CheckpointHeader, Image), &'static str>, StoreError> {
    let bs = sb.geo.block_size as usize;
    let start = sb.geo.addr(sb.geo.checkpoint_start(area));
    let head = io.read_raw(start, bs)?;
    let h = match CheckpointHeader::decode(&head, sb.format_id()) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let room = (sb.geo.checkpoint_blocks as usize - 1) * bs;
    if h.payload_len as usize > room {
        return Ok(Err("payload longer than the area"));
    }
    let len = (h.payload_len as usize).div_ceil(bs) * bs;
    let body = if len == 0 {
        Vec::new()
    } else {
        io.read_raw(start + bs as u64, len)?
    };
    let payload = &body[..h.payload_len as usize];
    if crc32c(payload) != h.payload_crc {
        return Ok(Err("payload checksum mismatch"));
    }
    match decode_snapshot(payload, sb.geo.data_blocks) {
        Ok(img) => Ok(Ok((h, img))),
        Err(_) => Ok(Err("payload does not decode")),
    }
}

/// Loads the newest valid checkpoint and replays the journal after it.
pub(crate) fn load<Q: DioQueue, B: DmaBuf>(
    io: &mut StoreIo<Q, B>,
    sb: &Superblock,
) -> Result<Loaded, StoreError> {
    let a = read_checkpoint(io, sb, 0)?;
    let b = read_checkpoint(io, sb, 1)?;
    let rejected = [a.as_ref().err().copied(), b.as_ref().err().copied()];
    let (area, (h, mut image)) = match (a, b) {
        (Ok(a), Ok(b)) => {
            if b.0.seq > a.0.seq {
                (1, b)
            } else {
                (0, a)
            }
        }
        (Ok(a), Err(_)) => (0, a),
        (Err(_), Ok(b)) => (1, b),
        (Err(ea), Err(eb)) => return Err(StoreError::NoCheckpoint { a: ea, b: eb }),
    };
    let geo = sb.geo;
    let bs = geo.block_size as usize;
    let jb = geo.journal_blocks;
    if h.journal_head >= jb {
        return Err(StoreError::corrupt(
            "the checkpoint's journal position is outside the journal",
        ));
    }
    let journal = io.read_raw(geo.addr(geo.journal_start()), jb as usize * bs)?;
    let block = |i: u64| &journal[(i % jb) as usize * bs..((i % jb) as usize + 1) * bs];
    let mut pos = h.journal_head;
    let mut used = 0u64;
    let mut seq = h.seq + 1;
    let mut transactions = 0;
    'txns: while used < jb {
        let Ok(first) = JournalHeader::open(block(pos), h.epoch) else {
            break;
        };
        if first.seq != seq || first.index != 0 || u64::from(first.count) + used > jb {
            break;
        }
        let mut payload = Vec::new();
        for i in 0..u64::from(first.count) {
            let blk = block(pos + i);
            let Ok(x) = JournalHeader::open(blk, h.epoch) else {
                break 'txns;
            };
            if x.seq != seq
                || u64::from(x.index) != i
                || x.count != first.count
                || x.total_crc != first.total_crc
            {
                break 'txns;
            }
            payload.extend_from_slice(&blk[JBLOCK_HEADER..JBLOCK_HEADER + x.used as usize]);
        }
        if crc32c(&payload) != first.total_crc {
            break;
        }
        // A transaction whose checksums hold is the store's own: a record that
        // does not apply is corruption, not a torn tail.
        let mut d = Dec::new(&payload);
        while !d.done() {
            let rec = Record::decode(&mut d).map_err(StoreError::corrupt)?;
            image
                .replay(&rec)
                .map_err(|e| StoreError::corrupt(format!("journal transaction {seq}: {e}")))?;
        }
        pos = (pos + u64::from(first.count)) % jb;
        used += u64::from(first.count);
        seq += 1;
        transactions += 1;
    }
    Ok(Loaded {
        image,
        head: pos,
        used,
        next_seq: seq,
        area,
        transactions,
        checkpoint_seq: h.seq,
        rejected,
    })
}
