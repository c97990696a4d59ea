//! The volatile write cache model: blocks written but not yet durable.
//!
//! With the cache enabled, a write without FUA lands here; reads check here first;
//! Flush writes every entry back to the backend; a power cut discards them. The cache
//! is bounded like a device's: a shard that is full writes its oldest block back to
//! make room (a drive destages in the background), so a stream of cached writes
//! costs the same per block however long it runs. Sharded by LBA so queues writing
//! different ranges rarely meet on a lock.

use hugepages::sync::lock;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::backend::Backend;

const SHARDS: usize = 64;
/// Blocks held in all (bounds memory use: 32 MiB of 512-byte blocks, 256 MiB of 4 KiB ones).
const CAPACITY_BLOCKS: usize = 1 << 16;
/// Blocks one shard holds before it writes back its oldest.
const SHARD_CAPACITY: usize = CAPACITY_BLOCKS / SHARDS;

fn shard_of(lba: u64) -> usize {
    ((lba >> 4) as usize) % SHARDS
}

/// Hashes an LBA with one folded 128-bit multiply: every input bit reaches the low
/// bits the table indexes by (the shard choice fixes some LBA bits, so the identity
/// or a plain multiply would crowd a few buckets).
#[derive(Default)]
struct LbaHasher(u64);

impl Hasher for LbaHasher {
    fn finish(&self) -> u64 {
        let m = u128::from(self.0) * 0x9e37_79b9_7f4a_7c15;
        (m as u64) ^ ((m >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// An LBA no namespace has: marks a ring slot whose block left the cache early.
const DEAD: u64 = u64::MAX;

/// Cached blocks of one shard: a ring of slots in the order their blocks entered
/// (oldest at `head`), with the data of slot `i` at `data[i * block_size..]`.
#[derive(Default)]
struct Shard {
    /// Slot of each cached LBA.
    map: HashMap<u64, usize, BuildHasherDefault<LbaHasher>>,
    /// LBA of each slot, `DEAD` once invalidated.
    lbas: Vec<u64>,
    /// Block data, grown slot by slot up to the shard's capacity and then reused.
    data: Vec<u8>,
    head: usize,
    /// Slots in use from `head`, dead ones included.
    used: usize,
}

impl Shard {
    fn block(&self, slot: usize, bs: usize) -> &[u8] {
        &self.data[slot * bs..(slot + 1) * bs]
    }

    /// Removes `lba`'s entry; returns whether there was one.
    fn remove(&mut self, lba: u64) -> bool {
        match self.map.remove(&lba) {
            Some(slot) => {
                self.lbas[slot] = DEAD;
                true
            }
            None => false,
        }
    }

    /// Empties the shard, keeping its memory; returns how many blocks it held.
    fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        self.head = 0;
        self.used = 0;
        n
    }
}

/// Not-yet-durable blocks of one namespace.
pub(crate) struct WriteCache {
    shards: Box<[Mutex<Shard>]>,
    block_size: usize,
    dirty: AtomicUsize,
    /// Bumped whenever entries leave the cache other than by invalidation, so a reader
    /// that raced with a write-back can tell and read again.
    generation: AtomicUsize,
}

impl WriteCache {
    /// An empty cache for blocks of `block_size` bytes.
    pub(crate) fn new(block_size: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            block_size,
            dirty: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Whether no block is cached (the fast path for reads).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.dirty.load(Ordering::Acquire) == 0
    }

    /// The write-back generation (see the field).
    #[inline]
    pub(crate) fn generation(&self) -> usize {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of cached blocks.
    pub(crate) fn len(&self) -> usize {
        self.dirty.load(Ordering::Acquire)
    }

    /// Stores blocks `slba..slba+nlb`, block `i` of them filled by `fill(i, buffer)`
    /// (which must write the whole buffer). A full shard first writes its oldest block
    /// back to `backend`. Each run of blocks in one shard takes its lock once.
    pub(crate) fn put_blocks(
        &self,
        slba: u64,
        nlb: u64,
        backend: &Backend,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> io::Result<()> {
        let mut i = 0;
        while i < nlb {
            let lba = slba + i;
            // Blocks left in this LBA's group of 16, which share a shard.
            let run = (16 - (lba & 15)).min(nlb - i);
            let mut shard = lock(&self.shards[shard_of(lba)]);
            for k in 0..run {
                self.put_locked(&mut shard, lba + k, backend, |buf| fill(i + k, buf))?;
            }
            i += run;
        }
        Ok(())
    }

    /// Stores one block in `shard` (locked), filled by `fill`.
    fn put_locked(
        &self,
        shard: &mut Shard,
        lba: u64,
        backend: &Backend,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        let bs = self.block_size;
        if shard.used == SHARD_CAPACITY {
            self.write_back_oldest(shard, backend)?;
        }
        let slot = match shard.map.entry(lba) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let slot = (shard.head + shard.used) % SHARD_CAPACITY;
                shard.used += 1;
                if shard.lbas.len() <= slot {
                    shard.lbas.resize(slot + 1, DEAD);
                    shard.data.resize((slot + 1) * bs, 0);
                }
                shard.lbas[slot] = lba;
                e.insert(slot);
                self.dirty.fetch_add(1, Ordering::AcqRel);
                slot
            }
        };
        fill(&mut shard.data[slot * bs..(slot + 1) * bs]);
        Ok(())
    }

    /// Frees the oldest slot of `shard`, writing its block back to `backend` if it is
    /// still cached.
    fn write_back_oldest(&self, shard: &mut Shard, backend: &Backend) -> io::Result<()> {
        let bs = self.block_size;
        let slot = shard.head;
        let lba = shard.lbas[slot];
        if lba != DEAD {
            backend.write_buf(lba * bs as u64, shard.block(slot, bs))?;
            // Bumped before the entry goes, under the shard lock: a reader that misses
            // the entry also sees the new generation and reads again.
            self.generation.fetch_add(1, Ordering::AcqRel);
            shard.remove(lba);
            self.dirty.fetch_sub(1, Ordering::AcqRel);
        }
        shard.head = (slot + 1) % SHARD_CAPACITY;
        shard.used -= 1;
        Ok(())
    }

    /// Calls `f` with the cached block at `lba`, if any; returns whether there was one.
    pub(crate) fn with(&self, lba: u64, f: impl FnOnce(&[u8])) -> bool {
        let shard = lock(&self.shards[shard_of(lba)]);
        match shard.map.get(&lba) {
            Some(&slot) => {
                f(shard.block(slot, self.block_size));
                true
            }
            None => false,
        }
    }

    /// Drops cached copies of `lba..lba+count` (newer data went straight to the backend).
    pub(crate) fn invalidate(&self, lba: u64, count: u64) {
        if self.is_empty() {
            return;
        }
        if count <= 4 * SHARDS as u64 {
            for l in lba..lba + count {
                if lock(&self.shards[shard_of(l)]).remove(l) {
                    self.dirty.fetch_sub(1, Ordering::AcqRel);
                }
            }
        } else {
            for shard in self.shards.iter() {
                let mut s = lock(shard);
                let Shard { map, lbas, .. } = &mut *s;
                let before = map.len();
                map.retain(|l, slot| {
                    let keep = !(lba..lba + count).contains(l);
                    if !keep {
                        lbas[*slot] = DEAD;
                    }
                    keep
                });
                self.dirty.fetch_sub(before - map.len(), Ordering::AcqRel);
            }
        }
    }

    /// Writes every cached block back to `backend`, oldest first, and empties the cache.
    /// Entries stay visible until the backend holds them, so a concurrent reader never
    /// sees old data.
    pub(crate) fn write_back(&self, backend: &Backend) -> io::Result<()> {
        let bs = self.block_size;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            for i in 0..s.used {
                let slot = (s.head + i) % SHARD_CAPACITY;
                let lba = s.lbas[slot];
                if lba != DEAD {
                    backend.write_buf(lba * bs as u64, s.block(slot, bs))?;
                }
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            let n = s.clear();
            self.dirty.fetch_sub(n, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The LBAs of every cached block.
    pub(crate) fn lbas(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(lock(shard).map.keys().copied());
        }
        out
    }

    /// Power loss part-way through destaging: each cached block for which
    /// `survives(lba)` holds is written back to `backend`, every other one is lost,
    /// and the cache is emptied. Returns the LBAs kept and the LBAs lost (a block
    /// whose write-back fails is lost).
    pub(crate) fn discard_partial(
        &self,
        backend: &Backend,
        mut survives: impl FnMut(u64) -> bool,
    ) -> (Vec<u64>, Vec<u64>) {
        let bs = self.block_size;
        let (mut kept, mut lost) = (Vec::new(), Vec::new());
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            for i in 0..s.used {
                let slot = (s.head + i) % SHARD_CAPACITY;
                let lba = s.lbas[slot];
                if lba == DEAD {
                    continue;
                }
                if survives(lba)
                    && backend
                        .write_buf(lba * bs as u64, s.block(slot, bs))
                        .is_ok()
                {
                    kept.push(lba);
                } else {
                    lost.push(lba);
                }
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            let n = s.clear();
            self.dirty.fetch_sub(n, Ordering::AcqRel);
        }
        (kept, lost)
    }

    /// Discards everything (power loss); returns how many blocks were lost.
    pub(crate) fn discard(&self) -> usize {
        let mut lost = 0;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            self.generation.fetch_add(1, Ordering::AcqRel);
            let n = s.clear();
            self.dirty.fetch_sub(n, Ordering::AcqRel);
            lost += n;
        }
        lost
    }
}
