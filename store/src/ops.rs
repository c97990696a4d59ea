//! The file operations of a [`Store`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dio::{DioQueue, DmaBuf, IovIter, Kiocb, KiocbFlags, Request};

use crate::error::StoreError;
use crate::file::{File, FileOps};
use crate::io::StoreIo;
use crate::meta::{
    apply_clone, apply_file, clone_sources, new_file, FileMeta, Mode, Record, MAX_NAME,
};
use crate::store::{lock, now, FileNode, Store};

/// A file's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// The file's number.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last data change, nanoseconds since the Unix epoch.
    pub mtime: u64,
    /// Last attribute change, nanoseconds since the Unix epoch.
    pub ctime: u64,
    /// File flags (none defined yet; kept on disk).
    pub flags: u32,
    /// Store blocks allocated to the file (written or unwritten).
    pub blocks: u64,
}

/// A run of a file's blocks, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentInfo {
    /// File offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Device byte address.
    pub addr: u64,
    /// Allocated but unwritten (reads as zeros).
    pub unwritten: bool,
    /// Shared with another file block (a clone).
    pub shared: bool,
}

fn stale(f: &FileMeta) -> Result<(), StoreError> {
    if f.gone {
        return Err(StoreError::Stale { id: f.id });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
        return Err(StoreError::Invalid {
            reason: "a file name must be 1 to 255 bytes without NUL",
        });
    }
    Ok(())
}

fn refused(e: String) -> StoreError {
    StoreError::corrupt(e)
}

impl Store {
    /// Applies `recs` to `f` live and appends them; returns their position.
    fn apply_live(&self, f: &mut FileMeta, recs: Vec<Record>) -> Result<u64, StoreError> {
        let mut a = lock(&self.alloc);
        let lsn = self.next_lsn();
        for r in &recs {
            apply_file(r, f, &mut a, Mode::Live(lsn)).map_err(refused)?;
        }
        let data = recs.iter().any(|r| !r.times_only());
        let lsn = self.append(recs, false);
        drop(a);
        f.meta_lsn = lsn;
        if data {
            f.data_lsn = lsn;
        }
        Ok(lsn)
    }

    /// Commits first when an allocation of `blocks` could only be met by
    /// blocks whose free is not yet durable.
    fn ensure_space<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        blocks: u64,
    ) -> Result<(), StoreError> {
        // No block waits for a commit (the usual case): nothing to lock.
        if !self.busy_hint.load(Ordering::Relaxed) {
            return Ok(());
        }
        let wait = {
            let a = lock(&self.alloc);
            a.free_blocks < blocks && !a.busy.is_empty()
        };
        if wait {
            self.sync(io)?;
        }
        Ok(())
    }

    /// Creates an empty file named `name` (durable at the next fsync or commit).
    pub fn create<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        name: &str,
    ) -> Result<File, StoreError> {
        check_name(name)?;
        let node = {
            let mut names = lock(&self.names);
            if names.contains_key(name) {
                return Err(StoreError::Exists { name: name.into() });
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let t = now();
            let mut meta = new_file(id, name.into(), t);
            let a = lock(&self.alloc);
            let lsn = self.append(
                vec![Record::Create {
                    id,
                    name: name.into(),
                    time: t,
                }],
                false,
            );
            drop(a);
            meta.data_lsn = lsn;
            meta.meta_lsn = lsn;
            let node = Arc::new(FileNode::new(meta));
            names.insert(name.into(), Arc::clone(&node));
            node
        };
        self.maybe_commit(io)?;
        Ok(File { node })
    }

    /// Opens the file named `name`.
    pub fn open_file(&self, name: &str) -> Result<File, StoreError> {
        lock(&self.names)
            .get(name)
            .map(|n| File {
                node: Arc::clone(n),
            })
            .ok_or_else(|| StoreError::NotFound { name: name.into() })
    }

    /// Removes the file named `name` and frees its blocks (shared blocks lose one reference).
    pub fn unlink<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        name: &str,
    ) -> Result<(), StoreError> {
        {
            let mut names = lock(&self.names);
            let node = names
                .get(name)
                .cloned()
                .ok_or_else(|| StoreError::NotFound { name: name.into() })?;
            let mut f = lock(&node.meta);
            self.apply_live(&mut f, vec![Record::Unlink { id: node.id }])?;
            names.remove(name);
        }
        self.maybe_commit(io)
    }

    /// Renames `from` to `to`, replacing (unlinking) a file named `to`.
    pub fn rename<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        check_name(to)?;
        {
            let mut names = lock(&self.names);
            let node = names
                .get(from)
                .cloned()
                .ok_or_else(|| StoreError::NotFound { name: from.into() })?;
            if from == to {
                return Ok(());
            }
            let t = now();
            if let Some(target) = names.get(to).cloned() {
                // Lock order: files by number.
                let (mut ft, mut fs);
                if target.id < node.id {
                    ft = lock(&target.meta);
                    fs = lock(&node.meta);
                } else {
                    fs = lock(&node.meta);
                    ft = lock(&target.meta);
                }
                // One append, so one transaction: the replaced file's unlink
                // and the rename are durable together or not at all.
                let rec = Record::Rename {
                    id: node.id,
                    name: to.into(),
                    time: t,
                };
                let mut a = lock(&self.alloc);
                let lsn = self.next_lsn();
                apply_file(
                    &Record::Unlink { id: target.id },
                    &mut ft,
                    &mut a,
                    Mode::Live(lsn),
                )
                .map_err(refused)?;
                apply_file(&rec, &mut fs, &mut a, Mode::Live(lsn)).map_err(refused)?;
                let lsn = self.append(vec![Record::Unlink { id: target.id }, rec], false);
                drop(a);
                ft.meta_lsn = lsn;
                ft.data_lsn = lsn;
                fs.meta_lsn = lsn;
                fs.data_lsn = lsn;
                drop(ft);
            } else {
                let mut fs = lock(&node.meta);
                let rec = Record::Rename {
                    id: node.id,
                    name: to.into(),
                    time: t,
                };
                self.apply_live(&mut fs, vec![rec])?;
            }
            names.remove(from);
            names.insert(to.into(), node);
        }
        self.maybe_commit(io)
    }

    /// Writes `iter` at `iocb.pos` through the caller's dio engine. Holes are
    /// allocated unwritten and converted when the data is written; with DSYNC
    /// the write returns once data and the metadata it needs are durable (a pure
    /// overwrite: one FUA write); with SYNC times are committed too.
    pub fn write<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
    ) -> Result<usize, StoreError> {
        let b = u64::from(self.geo.block_size);
        self.ensure_space(io, (iter.count() as u64).div_ceil(b) + 1)?;
        let ops = FileOps::new(self, &file.node);
        let n = io
            .dio()
            .rw(Request::write(), iocb, iter, &ops, &ops)
            .map_err(StoreError::io("writing file data"))?;
        // The layer made the data durable (FUA or its flush); what remains is
        // the metadata the write needs (none for a pure overwrite of durable
        // metadata), or with SYNC all of it.
        if iocb.flags.contains(KiocbFlags::SYNC) {
            self.sync_file(io, file, false, false)?;
        } else if iocb.flags.contains(KiocbFlags::DSYNC) && !ops.pure_overwrite() {
            self.sync_file(io, file, true, false)?;
        }
        Ok(n)
    }

    /// Reads from `iocb.pos` into `iter`; holes and unwritten blocks read as zeros.
    pub fn read<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
    ) -> Result<usize, StoreError> {
        let ops = FileOps::new(self, &file.node);
        io.dio()
            .rw(Request::read(), iocb, iter, &ops, &ops)
            .map_err(StoreError::io("reading file data"))
    }

    /// Allocates unwritten blocks for the holes of `[offset, offset + len)`;
    /// the size grows to cover the range (as `fallocate` mode 0).
    pub fn preallocate<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        offset: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        let b = u64::from(self.geo.block_size);
        let end = offset.checked_add(len).ok_or(StoreError::Invalid {
            reason: "offset + length overflows a 64-bit offset",
        })?;
        self.ensure_space(io, len.div_ceil(b) + 1)?;
        {
            let mut f = lock(&file.node.meta);
            stale(&f)?;
            let mut recs = Vec::new();
            let mut fb = offset / b;
            let end_fb = end.div_ceil(b);
            let mut a = lock(&self.alloc);
            let lsn = self.next_lsn();
            while fb < end_fb {
                if let Some((s, e)) = f.blocks.find(fb) {
                    fb = s + e.len;
                    continue;
                }
                let next = f.blocks.next_mapped(fb).map_or(end_fb, |k| k.min(end_fb));
                let Some((dev, n)) = a.pick(next - fb) else {
                    // What was allocated so far stays (journaled); report the shortfall.
                    let free = a.free_blocks;
                    if !recs.is_empty() {
                        let l = self.append(recs, false);
                        f.data_lsn = l;
                        f.meta_lsn = l;
                    }
                    return Err(StoreError::NoSpace {
                        needed: end_fb - fb,
                        free,
                    });
                };
                let rec = Record::Alloc {
                    id: f.id,
                    fb,
                    dev,
                    n,
                };
                apply_file(&rec, &mut f, &mut a, Mode::Live(lsn)).map_err(refused)?;
                recs.push(rec);
                fb += n;
            }
            if end > f.size {
                let rec = Record::SetSize {
                    id: f.id,
                    size: end,
                    time: now(),
                };
                apply_file(&rec, &mut f, &mut a, Mode::Live(lsn)).map_err(refused)?;
                file.node.publish_size(&f);
                recs.push(rec);
            }
            if !recs.is_empty() {
                let l = self.append(recs, false);
                f.data_lsn = l;
                f.meta_lsn = l;
            }
        }
        self.maybe_commit(io)
    }

    /// Frees the blocks of `[offset, offset + len)` (whole store blocks); the
    /// range reads as zeros, the size is unchanged.
    pub fn punch_hole<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        offset: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        let b = u64::from(self.geo.block_size);
        if (offset | len) % b != 0 || offset.checked_add(len).is_none() {
            return Err(StoreError::Invalid {
                reason: "a punched range must be whole store blocks",
            });
        }
        if len > 0 {
            let mut f = lock(&file.node.meta);
            stale(&f)?;
            let rec = Record::Punch {
                id: f.id,
                fb: offset / b,
                n: len / b,
            };
            self.apply_live(&mut f, vec![rec])?;
            f.mtime = now();
            f.times_dirty = true;
        }
        self.maybe_commit(io)
    }

    /// Sets the size to `size`, freeing blocks wholly past it; the rest of the
    /// last block is zeroed on the device first, so a later extension reads zeros.
    pub fn truncate<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        size: u64,
    ) -> Result<(), StoreError> {
        let b = u64::from(self.geo.block_size);
        let (old, tail_written) = {
            let f = lock(&file.node.meta);
            stale(&f)?;
            let tail = f.blocks.find(size / b).is_some_and(|(_, x)| !x.unwritten);
            (f.size, tail)
        };
        if size < old && size % b != 0 && tail_written {
            // Read the last block, zero its end, write it back durably (copy on
            // write if shared) before the new size can be committed.
            let start = size / b * b;
            let buf = io.buffer(b as usize)?;
            let mut it = IovIter::new(vec![buf]);
            self.read(
                io,
                file,
                &mut Kiocb::new(start, KiocbFlags::empty()),
                &mut it,
            )?;
            let buf = it.into_buffers().remove(0);
            if !buf.zero((size - start) as usize, (b - (size - start)) as usize) {
                return Err(StoreError::NoBuffer { len: b as usize });
            }
            let mut it = IovIter::new(vec![buf]);
            self.write(io, file, &mut Kiocb::new(start, KiocbFlags::DSYNC), &mut it)?;
        }
        {
            let mut f = lock(&file.node.meta);
            stale(&f)?;
            let first = size.div_ceil(b);
            let mut recs = Vec::new();
            if let Some(last) = f.blocks.last_block() {
                if last >= first {
                    recs.push(Record::Punch {
                        id: f.id,
                        fb: first,
                        n: last + 1 - first,
                    });
                }
            }
            if let Some((&last, _)) = f.cow.iter().next_back() {
                if last >= first && recs.is_empty() {
                    recs.push(Record::Punch {
                        id: f.id,
                        fb: first,
                        n: last + 1 - first,
                    });
                }
            }
            recs.push(Record::SetSize {
                id: f.id,
                size,
                time: now(),
            });
            let applied = self.apply_live(&mut f, recs);
            // apply_file may have set the size before refusing a later record.
            file.node.publish_size(&f);
            applied?;
        }
        self.maybe_commit(io)
    }

    /// Makes `[dst_off, dst_off + len)` of `dst` share the blocks of
    /// `[src_off, src_off + len)` of `src` (whole store blocks; within one file
    /// the ranges must not overlap). Writes to shared blocks go to new blocks
    /// (copy on write). Unwritten source blocks become holes in `dst`.
    pub fn clone_range<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        src: &File,
        src_off: u64,
        dst: &File,
        dst_off: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        let b = u64::from(self.geo.block_size);
        if (src_off | dst_off | len) % b != 0
            || src_off.checked_add(len).is_none()
            || dst_off.checked_add(len).is_none()
        {
            return Err(StoreError::Invalid {
                reason: "clone ranges must be whole store blocks",
            });
        }
        let same = src.id() == dst.id();
        if same && src_off < dst_off + len && dst_off < src_off + len {
            return Err(StoreError::Invalid {
                reason: "clone ranges within one file must not overlap",
            });
        }
        if len == 0 {
            return Ok(());
        }
        let (sfb, dfb, n) = (src_off / b, dst_off / b, len / b);
        let run = |s: &mut FileMeta, d: Option<&mut FileMeta>| -> Result<(), StoreError> {
            stale(s)?;
            let shared = clone_sources(s, sfb, n);
            let mut a = lock(&self.alloc);
            let lsn = self.next_lsn();
            let t = now();
            let rec = Record::Clone {
                src: s.id,
                sfb,
                dst: d.as_ref().map_or(s.id, |d| d.id),
                dfb,
                n,
            };
            let mut recs = vec![rec];
            {
                let d: &mut FileMeta = match d {
                    Some(d) => d,
                    None => &mut *s,
                };
                stale(d)?;
                apply_clone(&shared, d, dfb, n, &mut a, Mode::Live(lsn)).map_err(refused)?;
                if dst_off + len > d.size {
                    let r = Record::SetSize {
                        id: d.id,
                        size: dst_off + len,
                        time: t,
                    };
                    apply_file(&r, d, &mut a, Mode::Live(lsn)).map_err(refused)?;
                    dst.node.publish_size(d);
                    recs.push(r);
                }
                let l = self.append(recs, false);
                d.data_lsn = l;
                d.meta_lsn = l;
            }
            for (off, _) in shared {
                // The source block is mapped (clone_sources found it).
                let _ = s.blocks.update(sfb + off, 1, |x| x.shared = true);
            }
            Ok(())
        };
        if same {
            let mut s = lock(&src.node.meta);
            run(&mut s, None)?;
        } else if src.id() < dst.id() {
            let mut s = lock(&src.node.meta);
            let mut d = lock(&dst.node.meta);
            run(&mut s, Some(&mut d))?;
        } else {
            let mut d = lock(&dst.node.meta);
            let mut s = lock(&src.node.meta);
            run(&mut s, Some(&mut d))?;
        }
        self.maybe_commit(io)
    }

    /// Makes the file's data and all its metadata (times too) durable.
    pub fn fsync<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
    ) -> Result<(), StoreError> {
        self.sync_file(io, file, false, true)
    }

    /// Makes the file's data and the metadata needed to read it durable
    /// (skips a commit that would only change times).
    pub fn fdatasync<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
    ) -> Result<(), StoreError> {
        self.sync_file(io, file, true, true)
    }

    /// fsync (`datasync` false) or fdatasync; `flush_data`: data written
    /// without a sync may still sit in the device's cache.
    fn sync_file<Q: DioQueue, B: DmaBuf>(
        &self,
        io: &mut StoreIo<Q, B>,
        file: &File,
        datasync: bool,
        flush_data: bool,
    ) -> Result<(), StoreError> {
        let lsn = {
            let mut f = lock(&file.node.meta);
            stale(&f)?;
            if !datasync && f.times_dirty {
                f.times_dirty = false;
                let rec = Record::Times {
                    id: f.id,
                    mtime: f.mtime,
                    ctime: f.ctime,
                };
                self.apply_live(&mut f, vec![rec])?;
            }
            if datasync {
                f.data_lsn
            } else {
                f.meta_lsn
            }
        };
        self.commit(io, lsn, flush_data)
    }

    /// The file's attributes.
    pub fn stat(&self, file: &File) -> Result<FileStat, StoreError> {
        let f = lock(&file.node.meta);
        stale(&f)?;
        file.node.check_size(&f);
        Ok(stat_of(&f))
    }

    /// Every file's attributes, by name.
    pub fn list(&self) -> Vec<FileStat> {
        let names = lock(&self.names);
        names.values().map(|n| stat_of(&lock(&n.meta))).collect()
    }

    /// The file's runs of blocks, merged where contiguous and alike.
    pub fn extents(&self, file: &File) -> Result<Vec<ExtentInfo>, StoreError> {
        let b = u64::from(self.geo.block_size);
        let f = lock(&file.node.meta);
        stale(&f)?;
        let a = lock(&self.alloc);
        let mut out: Vec<ExtentInfo> = Vec::new();
        let blocks = f
            .blocks
            .iter()
            .flat_map(|(k, e)| (0..e.len).map(move |i| (k + i, e.dev + i, e.unwritten)));
        for (fb, dev, unwritten) in blocks {
            let info = ExtentInfo {
                offset: fb * b,
                length: b,
                addr: self.geo.data_addr(dev),
                unwritten,
                shared: a.shared(dev),
            };
            match out.last_mut() {
                Some(l)
                    if l.offset + l.length == info.offset
                        && l.addr + l.length == info.addr
                        && l.unwritten == info.unwritten
                        && l.shared == info.shared =>
                {
                    l.length += b
                }
                _ => out.push(info),
            }
        }
        Ok(out)
    }
}

fn stat_of(f: &FileMeta) -> FileStat {
    FileStat {
        id: f.id,
        name: f.name.clone(),
        size: f.size,
        mtime: f.mtime,
        ctime: f.ctime,
        flags: f.flags,
        blocks: f.blocks.blocks(),
    }
}
