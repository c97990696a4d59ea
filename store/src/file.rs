//! One file as the dio layer sees it: the mapping provider ([`IomapOps`]) and
//! the completion hooks ([`DioOps`]), after XFS's `xfs_direct_write_iomap_begin`
//! and `xfs_dio_write_end_io`.

use std::cell::Cell;
use std::sync::Arc;

use dio::{
    CompletionFlags, DioError, DioOps, IomapFlags, IomapOps, Kiocb, Mapping, MappingFlags,
    MappingKind,
};

use crate::meta::{apply_file, FileMeta, Mode, Record};
use crate::store::{lock, now, FileNode, Store};

/// An open file of a [`Store`]: cheap to clone, valid until the file is unlinked.
#[derive(Debug, Clone)]
pub struct File {
    pub(crate) node: Arc<FileNode>,
}

impl File {
    /// The file's number (stable for its life).
    pub fn id(&self) -> u64 {
        self.node.id
    }
}

/// The provider for one request on one file.
pub(crate) struct FileOps<'a> {
    pub store: &'a Store,
    pub node: &'a FileNode,
    /// Some mapping of the request needs work at end_io (allocation,
    /// conversion, copy on write, a size change).
    needs_end_io: Cell<bool>,
    /// Some mapping was IOMAP_F_DIRTY: O_DSYNC must commit the journal.
    dirty: Cell<bool>,
}

impl<'a> FileOps<'a> {
    pub(crate) fn new(store: &'a Store, node: &'a FileNode) -> Self {
        FileOps {
            store,
            node,
            needs_end_io: Cell::new(false),
            dirty: Cell::new(false),
        }
    }

    /// Whether every mapping of the request was a pure overwrite of metadata
    /// already durable: O_DSYNC needs nothing past the data's FUA.
    pub(crate) fn pure_overwrite(&self) -> bool {
        !self.needs_end_io.get() && !self.dirty.get()
    }
}

fn gone(id: u64) -> DioError {
    DioError::NoEntry { file: id }
}

impl FileOps<'_> {
    fn block(&self) -> u64 {
        u64::from(self.store.geo.block_size)
    }

    /// Maps a hole: for reads the run of absent blocks; for writes newly
    /// allocated, journaled unwritten blocks.
    fn map_hole(
        &self,
        f: &mut FileMeta,
        fb: u64,
        end_fb: u64,
        flags: IomapFlags,
    ) -> Result<Mapping, DioError> {
        let b = self.block();
        let next = f.blocks.next_mapped(fb).map_or(end_fb, |k| k.min(end_fb));
        if !flags.contains(IomapFlags::WRITE) {
            return Ok(Mapping {
                kind: MappingKind::Hole,
                flags: MappingFlags::empty(),
                offset: fb * b,
                length: (next - fb) * b,
                addr: 0,
            });
        }
        if flags.intersects(IomapFlags::NOWAIT | IomapFlags::OVERWRITE_ONLY) {
            return Err(DioError::Again {
                reason: "the write needs block allocation",
            });
        }
        self.needs_end_io.set(true);
        self.dirty.set(true);
        let mut a = lock(&self.store.alloc);
        let Some((dev, n)) = a.pick(next - fb) else {
            return Err(DioError::NoSpace {
                needed: (next - fb) * b,
                free: 0,
            });
        };
        let rec = Record::Alloc {
            id: f.id,
            fb,
            dev,
            n,
        };
        apply_file(&rec, f, &mut a, Mode::Replay).map_err(|_| DioError::Io {
            reason: "the store's allocator handed out a block that is not free",
        })?;
        let lsn = self.store.append(vec![rec], false);
        drop(a);
        f.data_lsn = lsn;
        f.meta_lsn = lsn;
        // The blocks read as zeros until end_io converts them: stale data never shows.
        let mut mflags = MappingFlags::NEW;
        if (fb + n) * b > f.size {
            mflags |= MappingFlags::DIRTY;
        }
        Ok(Mapping {
            kind: MappingKind::Mapped,
            flags: mflags,
            offset: fb * b,
            length: n * b,
            addr: self.store.geo.data_addr(dev),
        })
    }
}

impl FileOps<'_> {
    /// Stages (or reuses) copy-on-write blocks for up to `n` shared file
    /// blocks from `fb`; returns (first data block, blocks). Out of line: an
    /// overwrite of unshared blocks never comes here.
    #[inline(never)]
    fn stage_cow(&self, f: &mut FileMeta, fb: u64, n: u64) -> Result<(u64, u64), DioError> {
        let b = self.block();
        // Stage (or reuse) copy-on-write blocks, in memory only: end_io
        // journals the remap; a crash before it leaves them free.
        match f.cow.get(&fb).copied() {
            Some(d) => {
                let mut k = 1;
                while k < n && f.cow.get(&(fb + k)) == Some(&(d + k)) {
                    k += 1;
                }
                Ok((d, k))
            }
            None => {
                let mut a = lock(&self.store.alloc);
                let Some((d, k)) = a.pick(n) else {
                    return Err(DioError::NoSpace {
                        needed: n * b,
                        free: 0,
                    });
                };
                a.take(d, k).map_err(|_| DioError::Io {
                    reason: "the store's allocator handed out a block that is not free",
                })?;
                for i in 0..k {
                    f.cow.insert(fb + i, d + i);
                }
                Ok((d, k))
            }
        }
    }
}

impl IomapOps for FileOps<'_> {
    fn size(&self) -> u64 {
        self.node.size()
    }

    fn block_size(&self) -> u32 {
        self.store.geo.block_size
    }

    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError> {
        let b = self.block();
        let mut f = lock(&self.node.meta);
        if f.gone {
            return Err(gone(f.id));
        }
        self.node.check_size(&f);
        let fb = pos / b;
        let end_fb = (pos + len).div_ceil(b);
        let write = flags.contains(IomapFlags::WRITE);
        let Some((mut start, mut ext)) = f.blocks.find(fb) else {
            return self.map_hole(&mut f, fb, end_fb, flags);
        };
        // The allocator is asked only for blocks a clone may have shared.
        if ext.shared && !lock(&self.store.alloc).shared(ext.dev + (fb - start)) {
            // The block is mapped: the update cannot fail.
            let _ = f.blocks.update(fb, 1, |x| x.shared = false);
            if let Some(found) = f.blocks.find(fb) {
                (start, ext) = found;
            }
        }
        let first_shared = ext.shared;
        let n = (start + ext.len).min(end_fb) - fb;
        let first_dev = ext.dev + (fb - start);
        let mut map = Mapping {
            kind: if ext.unwritten {
                MappingKind::Unwritten
            } else {
                MappingKind::Mapped
            },
            flags: MappingFlags::empty(),
            offset: fb * b,
            length: n * b,
            addr: self.store.geo.data_addr(first_dev),
        };
        if !write {
            if first_shared {
                map.flags |= MappingFlags::SHARED;
            }
            return Ok(map);
        }
        let cow = dio::check_extent_write(
            flags,
            pos,
            len,
            b,
            ext.unwritten,
            first_shared,
            "a write to shared blocks must cover whole store blocks",
        )?;
        if cow {
            let (dev, k) = self.stage_cow(&mut f, fb, n)?;
            map.flags |= MappingFlags::SHARED;
            map.addr = self.store.geo.data_addr(dev);
            map.length = k * b;
        }
        // IOMAP_F_DIRTY: the size changes, or metadata that O_DSYNC must make
        // durable is still in the journal's memory.
        let extends = (pos + len).min(map.offset + map.length) > f.size;
        if extends || !self.store.is_durable(f.data_lsn) {
            map.flags |= MappingFlags::DIRTY;
            self.dirty.set(true);
        }
        if extends || ext.unwritten || first_shared {
            self.needs_end_io.set(true);
        } else {
            // A pure overwrite: end_io has nothing to journal, so the times
            // change here, before the data moves (as Linux's file_modified).
            f.mtime = now();
            f.times_dirty = true;
        }
        Ok(map)
    }
}

impl DioOps for FileOps<'_> {
    fn end_io(
        &self,
        iocb: &Kiocb,
        size: u64,
        error: Option<&DioError>,
        flags: CompletionFlags,
    ) -> Result<(), DioError> {
        if !flags.contains(CompletionFlags::WRITE)
            || error.is_some()
            || size == 0
            || !self.needs_end_io.get()
        {
            return Ok(());
        }
        self.complete_write(iocb, size, flags)
    }
}

impl FileOps<'_> {
    /// end_io's work for a write that allocated, converted, copied on write
    /// or extended: journals it. Out of line, so a pure overwrite's end_io
    /// stays a few tests.
    #[inline(never)]
    fn complete_write(
        &self,
        iocb: &Kiocb,
        size: u64,
        flags: CompletionFlags,
    ) -> Result<(), DioError> {
        let b = self.block();
        let mut f = lock(&self.node.meta);
        if f.gone {
            return Err(gone(f.id));
        }
        let first = iocb.pos / b;
        let end = (iocb.pos + size).div_ceil(b);
        let mut recs = Vec::new();
        let mut fb = first;
        while fb < end {
            if let Some(&dev) = f.cow.get(&fb) {
                let mut k = 1;
                while fb + k < end && f.cow.get(&(fb + k)) == Some(&(dev + k)) {
                    k += 1;
                }
                recs.push(Record::Remap {
                    id: f.id,
                    fb,
                    dev,
                    n: k,
                });
                fb += k;
            } else if let Some((s, e)) = f.blocks.find(fb) {
                let run_end = (s + e.len).min(end);
                let mut k = 1;
                while fb + k < run_end && !f.cow.contains_key(&(fb + k)) {
                    k += 1;
                }
                if e.unwritten {
                    recs.push(Record::Convert { id: f.id, fb, n: k });
                }
                fb += k;
            } else {
                fb += 1;
            }
        }
        let t = now();
        if iocb.pos + size > f.size {
            recs.push(Record::SetSize {
                id: f.id,
                size: iocb.pos + size,
                time: t,
            });
        }
        f.mtime = t;
        f.times_dirty = true;
        if recs.is_empty() {
            return Ok(());
        }
        // Whether the data is already durable (write-through, or flushed by the
        // layer for O_DSYNC): if not, committing these records needs a flush first.
        let durable = !self.store.vwc
            || flags.intersects(CompletionFlags::NEED_SYNC | CompletionFlags::WRITE_THROUGH);
        let mut a = lock(&self.store.alloc);
        let lsn = self.store.next_lsn();
        for r in &recs {
            let applied = apply_file(r, &mut f, &mut a, Mode::Live(lsn));
            self.node.publish_size(&f);
            applied.map_err(|_| DioError::Io {
                reason: "the store's metadata refused a completion update (run fsck)",
            })?;
        }
        let lsn = self.store.append(recs, !durable);
        drop(a);
        f.data_lsn = lsn;
        f.meta_lsn = lsn;
        Ok(())
    }
}
