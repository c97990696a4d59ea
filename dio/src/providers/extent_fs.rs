//! An extent-mapped file layer kept in memory: files are maps from file blocks
//! to device blocks, with allocation on write, preallocation (unwritten
//! extents), range cloning (shared blocks, copy on write) and a file size.
//!
//! The metadata lives in memory only; the data lives on the device.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::buf::DmaBuf;
use crate::engine::{Dio, Request};
use crate::error::DioError;
use crate::iomap::{
    check_extent_write, CompletionFlags, DioFlags, DioOps, IomapFlags, IomapOps, Mapping,
    MappingFlags, MappingKind,
};
use crate::iov::IovIter;
use crate::kiocb::Kiocb;
use crate::queue::DioQueue;

/// One file block's backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    /// Device block number (in file system blocks from the layer's base).
    dev: u64,
    /// Allocated but not yet written: reads see zeros.
    unwritten: bool,
}

#[derive(Debug, Default)]
struct FileState {
    size: u64,
    blocks: BTreeMap<u64, Block>,
    /// Copy-on-write destinations staged for shared blocks, by file block.
    cow: BTreeMap<u64, u64>,
}

#[derive(Debug)]
struct State {
    /// Free device blocks: start -> length.
    free: BTreeMap<u64, u64>,
    free_blocks: u64,
    /// Owners of device blocks referenced by more than one file block.
    refs: HashMap<u64, u32>,
    files: HashMap<u64, FileState>,
    next_id: u64,
}

/// A run of a file as the layer stores it, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentInfo {
    /// File offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Device byte address.
    pub addr: u64,
    /// Allocated but unwritten.
    pub unwritten: bool,
    /// Shared with another file block.
    pub shared: bool,
}

/// The largest file size, Linux's `MAX_LFS_FILESIZE` on 64-bit (`i64::MAX`): the end of
/// every block of a file then fits in 64 bits.
pub const MAX_FILE_BYTES: u64 = i64::MAX as u64;

/// Refuses a range that ends past [`MAX_FILE_BYTES`] (Linux's `EFBIG`).
fn check_file_range(offset: u64, len: u64) -> Result<(), DioError> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_BYTES => Ok(()),
        _ => Err(DioError::InvalidRequest {
            reason: "the range ends past the largest file size (2^63 - 1 bytes)",
        }),
    }
}

/// An in-memory extent-mapped file layer over a region of a namespace.
#[derive(Debug)]
pub struct ExtentFs {
    base: u64,
    block: u64,
    state: Mutex<State>,
}

/// One file of an [`ExtentFs`]; implements the mapping provider and the
/// completion hooks for it.
#[derive(Debug, Clone)]
pub struct FileHandle {
    fs: Arc<ExtentFs>,
    id: u64,
}

impl ExtentFs {
    /// A layer using `len` bytes of the namespace from byte `base`, in blocks of
    /// `block_size` bytes (a power of two, at least the device's logical block).
    pub fn new(base: u64, len: u64, block_size: u32) -> Result<Arc<Self>, DioError> {
        let block = u64::from(block_size);
        if !block.is_power_of_two() || block < 512 || base % block != 0 {
            return Err(DioError::InvalidRequest {
                reason:
                    "the block size must be a power of two of at least 512 that divides the base",
            });
        }
        let blocks = len / block;
        let mut free = BTreeMap::new();
        if blocks > 0 {
            free.insert(0, blocks);
        }
        Ok(Arc::new(ExtentFs {
            base,
            block,
            state: Mutex::new(State {
                free,
                free_blocks: blocks,
                refs: HashMap::new(),
                files: HashMap::new(),
                next_id: 1,
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        hugepages::sync::lock(&self.state)
    }

    fn lock_nowait(&self, nowait: bool) -> Result<MutexGuard<'_, State>, DioError> {
        if !nowait {
            return Ok(self.lock());
        }
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(DioError::Again {
                reason: "the extent map is locked",
            }),
        }
    }

    /// Creates an empty file.
    pub fn create(self: &Arc<Self>) -> FileHandle {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.files.insert(id, FileState::default());
        FileHandle {
            fs: Arc::clone(self),
            id,
        }
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block as u32
    }

    /// Free space in bytes.
    pub fn free_bytes(&self) -> u64 {
        self.lock().free_blocks * self.block
    }
}

impl State {
    /// Takes up to `want` contiguous free blocks; returns (start, count).
    fn alloc(&mut self, want: u64, block: u64) -> Result<(u64, u64), DioError> {
        let Some((&start, &len)) = self.free.iter().next() else {
            return Err(DioError::NoSpace {
                needed: want * block,
                free: 0,
            });
        };
        let take = len.min(want);
        self.free.remove(&start);
        if take < len {
            self.free.insert(start + take, len - take);
        }
        self.free_blocks -= take;
        Ok((start, take))
    }

    /// Drops one reference to device block `dev`, freeing it when none remain.
    fn put(&mut self, dev: u64) {
        if let Some(r) = self.refs.get_mut(&dev) {
            *r -= 1;
            if *r <= 1 {
                self.refs.remove(&dev);
            }
            return;
        }
        self.free_blocks += 1;
        // Merge with neighbours so later allocations stay contiguous.
        let mut start = dev;
        let mut len = 1;
        if let Some((&ps, &pl)) = self.free.range(..dev).next_back() {
            if ps + pl == dev {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(dev + 1)) {
            self.free.remove(&(dev + 1));
            len += nl;
        }
        self.free.insert(start, len);
    }

    fn shared(&self, dev: u64) -> bool {
        self.refs.get(&dev).is_some_and(|&r| r > 1)
    }

    fn file(&mut self, id: u64) -> Result<&mut FileState, DioError> {
        self.files
            .get_mut(&id)
            .ok_or(DioError::NoEntry { file: id })
    }
}

impl FileHandle {
    /// The file's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        IomapOps::size(self)
    }

    /// The layer the file lives in.
    pub fn fs(&self) -> &Arc<ExtentFs> {
        &self.fs
    }

    /// Sets the file size without allocating or freeing blocks beyond it.
    pub fn set_size(&self, size: u64) -> Result<(), DioError> {
        let mut st = self.fs.lock();
        st.file(self.id)?.size = size;
        Ok(())
    }

    /// Allocates unwritten blocks for `[offset, offset + len)` (holes only);
    /// the file size grows to cover the range.
    pub fn preallocate(&self, offset: u64, len: u64) -> Result<(), DioError> {
        let b = self.fs.block;
        check_file_range(offset, len)?;
        let mut st = self.fs.lock();
        st.file(self.id)?;
        let mut fb = offset / b;
        let end = (offset + len).div_ceil(b);
        while fb < end {
            if st.file(self.id)?.blocks.contains_key(&fb) {
                fb += 1;
                continue;
            }
            let (dev, n) = st.alloc(1, b)?;
            debug_assert_eq!(n, 1);
            st.file(self.id)?.blocks.insert(
                fb,
                Block {
                    dev,
                    unwritten: true,
                },
            );
            fb += 1;
        }
        let f = st.file(self.id)?;
        f.size = f.size.max(offset + len);
        Ok(())
    }

    /// Makes `[dst_off, dst_off + len)` of this file share the blocks of
    /// `[src_off, src_off + len)` of `src`; offsets and length must be whole blocks.
    pub fn clone_range(
        &self,
        src: &FileHandle,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<(), DioError> {
        let b = self.fs.block;
        if (src_off | dst_off | len) % b != 0
            || !Arc::ptr_eq(&self.fs, &src.fs)
            || src_off.checked_add(len).is_none()
            || dst_off.checked_add(len).is_none()
        {
            return Err(DioError::InvalidRequest {
                reason: "clone ranges must be whole blocks of the same layer",
            });
        }
        let mut st = self.fs.lock();
        for i in 0..len / b {
            let sblk = st.file(src.id)?.blocks.get(&(src_off / b + i)).copied();
            let old = st.file(self.id)?.blocks.remove(&(dst_off / b + i));
            if let Some(old) = old {
                st.put(old.dev);
            }
            if let Some(sb) = sblk {
                *st.refs.entry(sb.dev).or_insert(1) += 1;
                st.file(self.id)?.blocks.insert(dst_off / b + i, sb);
            }
        }
        let f = st.file(self.id)?;
        f.size = f.size.max(dst_off + len);
        Ok(())
    }

    /// The file's runs of blocks, merged where contiguous and alike.
    pub fn extents(&self) -> Vec<ExtentInfo> {
        let b = self.fs.block;
        let st = self.fs.lock();
        let mut out: Vec<ExtentInfo> = Vec::new();
        let Some(f) = st.files.get(&self.id) else {
            return out;
        };
        for (&fb, blk) in &f.blocks {
            let info = ExtentInfo {
                offset: fb * b,
                length: b,
                addr: self.fs.base + blk.dev * b,
                unwritten: blk.unwritten,
                shared: st.shared(blk.dev),
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
        out
    }

    /// Reads at `iocb.pos` through `dio`, waiting for completion.
    pub fn read<Q: DioQueue, B: DmaBuf>(
        &self,
        dio: &mut Dio<Q, B>,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
    ) -> Result<usize, DioError> {
        dio.rw(Request::read(), iocb, iter, self, self)
    }

    /// Compares the file's data at `iocb.pos` with `iter` through `dio` (see
    /// [`Dio::compare`]), waiting for completion.
    pub fn compare<Q: DioQueue, B: DmaBuf>(
        &self,
        dio: &mut Dio<Q, B>,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
    ) -> Result<usize, DioError> {
        dio.rw(Request::compare(), iocb, iter, self, self)
    }

    /// Writes at `iocb.pos` through `dio` with `flags`, waiting for completion.
    pub fn write<Q: DioQueue, B: DmaBuf>(
        &self,
        dio: &mut Dio<Q, B>,
        iocb: &mut Kiocb,
        iter: &mut IovIter<B>,
        flags: DioFlags,
    ) -> Result<usize, DioError> {
        dio.rw(Request::write().flags(flags), iocb, iter, self, self)
    }

    /// Maps a hole: for reads the run of absent blocks, for writes newly
    /// allocated blocks (unwritten until the write completes).
    fn map_hole(
        &self,
        st: &mut State,
        fb: u64,
        end_fb: u64,
        flags: IomapFlags,
        size: u64,
    ) -> Result<Mapping, DioError> {
        let b = self.fs.block;
        let next = st
            .file(self.id)?
            .blocks
            .range(fb..)
            .next()
            .map_or(end_fb, |(&k, _)| k)
            .min(end_fb);
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
        let (dev, n) = st.alloc(next - fb, b)?;
        let f = st.file(self.id)?;
        for i in 0..n {
            f.blocks.insert(
                fb + i,
                Block {
                    dev: dev + i,
                    unwritten: true,
                },
            );
        }
        let mut mflags = MappingFlags::NEW;
        // Blocks ending past the size (or past 2^64, at the last block of the offset
        // space) extend the file.
        if (fb + n).checked_mul(b).is_none_or(|end| end > size) {
            mflags |= MappingFlags::DIRTY;
        }
        Ok(Mapping {
            kind: MappingKind::Mapped,
            flags: mflags,
            offset: fb * b,
            length: n * b,
            addr: self.fs.base + dev * b,
        })
    }
}

impl IomapOps for FileHandle {
    fn size(&self) -> u64 {
        self.fs.lock().files.get(&self.id).map_or(0, |f| f.size)
    }

    fn block_size(&self) -> u32 {
        self.fs.block as u32
    }

    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError> {
        let b = self.fs.block;
        check_file_range(pos, len)?;
        let mut guard = self.fs.lock_nowait(flags.contains(IomapFlags::NOWAIT))?;
        let st = &mut *guard;
        let size = st.file(self.id)?.size;
        let fb = pos / b;
        let end_fb = (pos + len).div_ceil(b);
        let write = flags.contains(IomapFlags::WRITE);
        let Some(first) = st.file(self.id)?.blocks.get(&fb).copied() else {
            return self.map_hole(st, fb, end_fb, flags, size);
        };
        let first_shared = st.shared(first.dev);
        // Extend over blocks alike in state and contiguous on the device.
        let mut n = 1;
        while fb + n < end_fb {
            let f = st
                .files
                .get(&self.id)
                .ok_or(DioError::NoEntry { file: self.id })?;
            match f.blocks.get(&(fb + n)) {
                Some(x)
                    if x.dev == first.dev + n
                        && x.unwritten == first.unwritten
                        && st.shared(x.dev) == first_shared =>
                {
                    n += 1
                }
                _ => break,
            }
        }
        let mut map = Mapping {
            kind: if first.unwritten {
                MappingKind::Unwritten
            } else {
                MappingKind::Mapped
            },
            flags: MappingFlags::empty(),
            offset: fb * b,
            length: n * b,
            addr: self.fs.base + first.dev * b,
        };
        if !write {
            if first_shared {
                map.flags |= MappingFlags::SHARED;
            }
            return Ok(map);
        }
        let cow = check_extent_write(
            flags,
            pos,
            len,
            b,
            first.unwritten,
            first_shared,
            "a write to shared blocks must cover whole file system blocks",
        )?;
        if cow {
            // Stage (or reuse) copy-on-write blocks; end_io swaps them in.
            let staged = st.file(self.id)?.cow.get(&fb).copied();
            let (dev, n) = match staged {
                Some(d) => {
                    let f = st.file(self.id)?;
                    let mut k = 1;
                    while k < n && f.cow.get(&(fb + k)) == Some(&(d + k)) {
                        k += 1;
                    }
                    (d, k)
                }
                None => {
                    let (d, k) = st.alloc(n, b)?;
                    let f = st.file(self.id)?;
                    for i in 0..k {
                        f.cow.insert(fb + i, d + i);
                    }
                    (d, k)
                }
            };
            map.flags |= MappingFlags::SHARED;
            map.addr = self.fs.base + dev * b;
            map.length = n * b;
        }
        if (pos + len).min(map.offset + map.length) > size {
            map.flags |= MappingFlags::DIRTY;
        }
        Ok(map)
    }
}

impl DioOps for FileHandle {
    fn end_io(
        &self,
        iocb: &Kiocb,
        size: u64,
        error: Option<&DioError>,
        flags: CompletionFlags,
    ) -> Result<(), DioError> {
        if !flags.contains(CompletionFlags::WRITE) || error.is_some() || size == 0 {
            return Ok(());
        }
        let b = self.fs.block;
        let mut st = self.fs.lock();
        let first = iocb.pos / b;
        let end = (iocb.pos + size).div_ceil(b);
        for fb in first..end {
            // Copy-on-write: the new block replaces the shared one.
            let staged = st.file(self.id)?.cow.remove(&fb);
            if let Some(new) = staged {
                let old = st.file(self.id)?.blocks.insert(
                    fb,
                    Block {
                        dev: new,
                        unwritten: false,
                    },
                );
                if let Some(old) = old {
                    st.put(old.dev);
                }
            } else if let Some(blk) = st.file(self.id)?.blocks.get_mut(&fb) {
                blk.unwritten = false;
            }
        }
        let f = st.file(self.id)?;
        f.size = f.size.max(iocb.pos + size);
        Ok(())
    }
}
