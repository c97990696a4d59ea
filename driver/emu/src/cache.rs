//! The volatile write cache model: blocks written but not yet durable.
//!
//! With the cache enabled, a write without FUA lands here; reads check here first;
//! Flush (or a full cache) writes entries back to the backend; a power cut discards
//! them. Sharded by LBA so queues writing different ranges rarely meet on a lock.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::Backend;

const SHARDS: usize = 64;
/// Blocks held before the cache writes itself back (bounds memory use).
const CAPACITY_BLOCKS: usize = 1 << 16;

fn shard_of(lba: u64) -> usize {
    ((lba >> 4) as usize) % SHARDS
}

/// Cached blocks of one shard, by LBA.
type Shard = Mutex<HashMap<u64, Box<[u8]>>>;

/// Not-yet-durable blocks of one namespace.
pub(crate) struct WriteCache {
    shards: Box<[Shard]>,
    dirty: AtomicUsize,
    /// Bumped whenever entries leave the cache other than by invalidation, so a reader
    /// that raced with a write-back can tell and read again.
    generation: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WriteCache {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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

    /// Stores one block, filled by `fill` (which receives the block buffer).
    pub(crate) fn put(&self, lba: u64, block_size: usize, fill: impl FnOnce(&mut [u8])) {
        let mut shard = lock(&self.shards[shard_of(lba)]);
        let entry = shard.entry(lba).or_insert_with(|| {
            self.dirty.fetch_add(1, Ordering::AcqRel);
            vec![0u8; block_size].into_boxed_slice()
        });
        fill(entry);
    }

    /// Calls `f` with the cached block at `lba`, if any; returns whether there was one.
    pub(crate) fn with(&self, lba: u64, f: impl FnOnce(&[u8])) -> bool {
        let shard = lock(&self.shards[shard_of(lba)]);
        match shard.get(&lba) {
            Some(block) => {
                f(block);
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
                if lock(&self.shards[shard_of(l)]).remove(&l).is_some() {
                    self.dirty.fetch_sub(1, Ordering::AcqRel);
                }
            }
        } else {
            for shard in self.shards.iter() {
                let mut s = lock(shard);
                let before = s.len();
                s.retain(|l, _| !(lba..lba + count).contains(l));
                self.dirty.fetch_sub(before - s.len(), Ordering::AcqRel);
            }
        }
    }

    /// Writes every cached block back to `backend` and empties the cache. Entries stay
    /// visible until the backend holds them, so a concurrent reader never sees old data.
    pub(crate) fn write_back(&self, backend: &Backend, block_size: u64) -> io::Result<()> {
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            for (lba, data) in s.iter() {
                backend.write_buf(lba * block_size, data)?;
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.dirty.fetch_sub(s.len(), Ordering::AcqRel);
            s.clear();
        }
        Ok(())
    }

    /// Whether the cache has grown past its capacity and should be written back.
    pub(crate) fn over_capacity(&self) -> bool {
        self.len() > CAPACITY_BLOCKS
    }

    /// Discards everything (power loss); returns how many blocks were lost.
    pub(crate) fn discard(&self) -> usize {
        let mut lost = 0;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            lost += s.len();
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.dirty.fetch_sub(s.len(), Ordering::AcqRel);
            s.clear();
        }
        lost
    }
}
