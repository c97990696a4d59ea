//! The metadata model: files with block maps, the allocator, the journal's
//! records and the one function that applies a record, used both live and
//! during replay, so the image in memory and the one on disk cannot drift.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::codec::{Dec, Enc};
use crate::extent::{Extent, ExtentMap};

/// Longest file name in bytes.
pub const MAX_NAME: usize = 255;

/// One file's metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileMeta {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub flags: u32,
    /// The block map, as extents.
    pub blocks: ExtentMap,
    /// Copy-on-write destinations staged for shared blocks (memory only: a
    /// crash leaves them free).
    pub cow: BTreeMap<u64, u64>,
    /// The journal position of the last record that changed data-relevant metadata.
    pub data_lsn: u64,
    /// The journal position of the last record of any kind.
    pub meta_lsn: u64,
    /// Times changed since they were last journaled.
    pub times_dirty: bool,
    /// The file was unlinked.
    pub gone: bool,
}

/// Free space and shared-block reference counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Alloc {
    /// Data blocks in the data area.
    pub total: u64,
    /// Free runs: start -> length.
    pub free: BTreeMap<u64, u64>,
    pub free_blocks: u64,
    /// References of data blocks referenced more than once.
    pub refs: HashMap<u64, u32>,
    /// Blocks freed by records not yet durable, with those records' positions:
    /// reused only once the free is on disk, so a crash never leaves a block
    /// both in its old file and holding a new file's data.
    pub busy: Vec<(u64, u64)>,
    /// Blocks whose sharing ended by records not yet durable, with those
    /// records' positions: still written by copy on write until the record is
    /// on disk, since after a crash the other file may still hold them.
    pub unsharing: Vec<(u64, u64)>,
    /// Whether `busy` may be non-empty, readable without the allocator's lock
    /// (shared by clones of this allocator; false only when `busy` is empty).
    pub busy_hint: Arc<AtomicBool>,
}

/// Whether a record is applied as it happens or replayed from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Replaying durable records: frees are immediate.
    Replay,
    /// Live at journal position `lsn`: frees wait for it to be durable.
    Live(u64),
}

impl Alloc {
    /// An allocator whose whole data area of `total` blocks is free.
    pub(crate) fn new(total: u64) -> Self {
        let mut a = Alloc {
            total,
            ..Alloc::default()
        };
        if total > 0 {
            a.free.insert(0, total);
            a.free_blocks = total;
        }
        a
    }

    /// Up to `want` contiguous free blocks, not yet taken: (start, count).
    pub(crate) fn pick(&self, want: u64) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
        for (&s, &l) in &self.free {
            if l >= want {
                return Some((s, want));
            }
            if best.is_none_or(|(_, bl)| l > bl) {
                best = Some((s, l));
            }
        }
        best.filter(|&(_, l)| l > 0)
    }

    /// Takes the free run `[start, start + n)`.
    pub(crate) fn take(&mut self, start: u64, n: u64) -> Result<(), String> {
        let Some((&s, &l)) = self.free.range(..=start).next_back() else {
            return Err(format!("data blocks {start}+{n} are not free"));
        };
        if start + n > s + l {
            return Err(format!("data blocks {start}+{n} are not free"));
        }
        self.free.remove(&s);
        if start > s {
            self.free.insert(s, start - s);
        }
        if s + l > start + n {
            self.free.insert(start + n, s + l - start - n);
        }
        self.free_blocks -= n;
        Ok(())
    }

    /// Returns `[dev, dev + n)` to free space, merging with neighbours.
    pub(crate) fn release(&mut self, dev: u64, n: u64) {
        let mut start = dev;
        let mut len = n;
        if let Some((&ps, &pl)) = self.free.range(..dev).next_back() {
            if ps + pl == dev {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(dev + n)) {
            self.free.remove(&(dev + n));
            len += nl;
        }
        self.free.insert(start, len);
        self.free_blocks += n;
    }

    /// Drops one reference to `dev`, freeing it when none remain.
    pub(crate) fn put(&mut self, dev: u64, mode: Mode) {
        if let Some(r) = self.refs.get_mut(&dev) {
            *r -= 1;
            if *r <= 1 {
                self.refs.remove(&dev);
                if let Mode::Live(lsn) = mode {
                    self.unsharing.push((lsn, dev));
                }
            }
            return;
        }
        match mode {
            Mode::Replay => self.release(dev, 1),
            Mode::Live(lsn) => {
                self.busy.push((lsn, dev));
                self.busy_hint.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Makes the blocks freed by records up to `durable` allocatable.
    pub(crate) fn release_busy(&mut self, durable: u64) {
        self.unsharing.retain(|&(lsn, _)| lsn > durable);
        let busy = std::mem::take(&mut self.busy);
        for (lsn, dev) in busy {
            if lsn <= durable {
                self.release(dev, 1);
            } else {
                self.busy.push((lsn, dev));
            }
        }
        self.busy_hint
            .store(!self.busy.is_empty(), Ordering::Relaxed);
    }

    /// Whether `dev` is shared, or was until a record not yet durable.
    pub(crate) fn shared(&self, dev: u64) -> bool {
        self.refs.get(&dev).is_some_and(|&r| r > 1) || self.unsharing.iter().any(|&(_, d)| d == dev)
    }
}

/// A logical metadata change, as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Create {
        id: u64,
        name: String,
        time: u64,
    },
    Unlink {
        id: u64,
    },
    Rename {
        id: u64,
        name: String,
        time: u64,
    },
    SetSize {
        id: u64,
        size: u64,
        time: u64,
    },
    Times {
        id: u64,
        mtime: u64,
        ctime: u64,
    },
    /// Allocates `[dev, dev + n)` as unwritten blocks at file block `fb`.
    Alloc {
        id: u64,
        fb: u64,
        dev: u64,
        n: u64,
    },
    /// Marks file blocks `[fb, fb + n)` written.
    Convert {
        id: u64,
        fb: u64,
        n: u64,
    },
    /// Copy on write: `[dev, dev + n)` (written) replaces file blocks `[fb, fb + n)`.
    Remap {
        id: u64,
        fb: u64,
        dev: u64,
        n: u64,
    },
    /// Removes file blocks `[fb, fb + n)`.
    Punch {
        id: u64,
        fb: u64,
        n: u64,
    },
    /// File `dst` blocks `[dfb, dfb + n)` share `src` blocks `[sfb, sfb + n)`.
    Clone {
        src: u64,
        sfb: u64,
        dst: u64,
        dfb: u64,
        n: u64,
    },
}

impl Record {
    /// Whether the record only changes times (fdatasync need not commit it).
    pub(crate) fn times_only(&self) -> bool {
        matches!(self, Record::Times { .. })
    }

    pub(crate) fn encode(&self, e: &mut Enc) {
        match self {
            Record::Create { id, name, time } => {
                e.u8(1);
                e.u64(*id);
                e.bytes(name.as_bytes());
                e.u64(*time);
            }
            Record::Unlink { id } => {
                e.u8(2);
                e.u64(*id);
            }
            Record::Rename { id, name, time } => {
                e.u8(3);
                e.u64(*id);
                e.bytes(name.as_bytes());
                e.u64(*time);
            }
            Record::SetSize { id, size, time } => {
                e.u8(4);
                e.u64(*id);
                e.u64(*size);
                e.u64(*time);
            }
            Record::Times { id, mtime, ctime } => {
                e.u8(5);
                e.u64(*id);
                e.u64(*mtime);
                e.u64(*ctime);
            }
            Record::Alloc { id, fb, dev, n } | Record::Remap { id, fb, dev, n } => {
                e.u8(if matches!(self, Record::Alloc { .. }) {
                    6
                } else {
                    8
                });
                e.u64(*id);
                e.u64(*fb);
                e.u64(*dev);
                e.u64(*n);
            }
            Record::Convert { id, fb, n } | Record::Punch { id, fb, n } => {
                e.u8(if matches!(self, Record::Convert { .. }) {
                    7
                } else {
                    9
                });
                e.u64(*id);
                e.u64(*fb);
                e.u64(*n);
            }
            Record::Clone {
                src,
                sfb,
                dst,
                dfb,
                n,
            } => {
                e.u8(10);
                for v in [src, sfb, dst, dfb, n] {
                    e.u64(*v);
                }
            }
        }
    }

    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Record, &'static str> {
        let name = |d: &mut Dec<'_>| -> Result<String, &'static str> {
            let b = d.bytes()?;
            if b.is_empty() || b.len() > MAX_NAME {
                return Err("a journaled file name has a bad length");
            }
            String::from_utf8(b.to_vec()).map_err(|_| "a journaled file name is not UTF-8")
        };
        Ok(match d.u8()? {
            1 => Record::Create {
                id: d.u64()?,
                name: name(d)?,
                time: d.u64()?,
            },
            2 => Record::Unlink { id: d.u64()? },
            3 => Record::Rename {
                id: d.u64()?,
                name: name(d)?,
                time: d.u64()?,
            },
            4 => Record::SetSize {
                id: d.u64()?,
                size: d.u64()?,
                time: d.u64()?,
            },
            5 => Record::Times {
                id: d.u64()?,
                mtime: d.u64()?,
                ctime: d.u64()?,
            },
            6 => Record::Alloc {
                id: d.u64()?,
                fb: d.u64()?,
                dev: d.u64()?,
                n: d.u64()?,
            },
            7 => Record::Convert {
                id: d.u64()?,
                fb: d.u64()?,
                n: d.u64()?,
            },
            8 => Record::Remap {
                id: d.u64()?,
                fb: d.u64()?,
                dev: d.u64()?,
                n: d.u64()?,
            },
            9 => Record::Punch {
                id: d.u64()?,
                fb: d.u64()?,
                n: d.u64()?,
            },
            10 => Record::Clone {
                src: d.u64()?,
                sfb: d.u64()?,
                dst: d.u64()?,
                dfb: d.u64()?,
                n: d.u64()?,
            },
            _ => return Err("unknown journal record type"),
        })
    }
}

/// A bound on run lengths in records, so a damaged record cannot make replay loop for ages.
fn check_run(a: &Alloc, fb: u64, n: u64) -> Result<(), String> {
    if n == 0 || n > a.total || fb.checked_add(n).is_none() {
        return Err(format!(
            "a record's run of {n} blocks at {fb} is out of range"
        ));
    }
    Ok(())
}

/// Applies a record that concerns the one file `f` (every kind but Create and Clone).
pub(crate) fn apply_file(
    rec: &Record,
    f: &mut FileMeta,
    a: &mut Alloc,
    mode: Mode,
) -> Result<(), String> {
    match *rec {
        Record::Create { .. } | Record::Clone { .. } => {
            return Err("create and clone records need the file table".into())
        }
        Record::Unlink { .. } => {
            for (_, e) in f.blocks.take() {
                for dev in e.dev..e.dev + e.len {
                    a.put(dev, mode);
                }
            }
            for &dev in std::mem::take(&mut f.cow).values() {
                a.release(dev, 1);
            }
            f.gone = true;
        }
        Record::Rename { ref name, time, .. } => {
            f.name = name.clone();
            f.ctime = time;
        }
        Record::SetSize { size, time, .. } => {
            f.size = size;
            f.mtime = time;
            f.ctime = time;
        }
        Record::Times { mtime, ctime, .. } => {
            f.mtime = mtime;
            f.ctime = ctime;
        }
        Record::Alloc { fb, dev, n, .. } => {
            check_run(a, fb, n)?;
            if f.blocks.any_in(fb, n) {
                return Err(format!("file {} block {fb} allocated twice", f.id));
            }
            a.take(dev, n)?;
            f.blocks.insert(
                fb,
                Extent {
                    len: n,
                    dev,
                    unwritten: true,
                    shared: false,
                },
            );
        }
        Record::Convert { fb, n, .. } => {
            check_run(a, fb, n)?;
            if let Err(hole) = f.blocks.update(fb, n, |e| e.unwritten = false) {
                return Err(format!("file {} block {hole} converted but unmapped", f.id));
            }
        }
        Record::Remap { fb, dev, n, .. } => {
            check_run(a, fb, n)?;
            for i in 0..n {
                if f.cow.get(&(fb + i)) == Some(&(dev + i)) {
                    f.cow.remove(&(fb + i));
                } else {
                    a.take(dev + i, 1)?;
                }
            }
            for (_, old) in f.blocks.remove(fb, n) {
                for d in old.dev..old.dev + old.len {
                    a.put(d, mode);
                }
            }
            f.blocks.insert(
                fb,
                Extent {
                    len: n,
                    dev,
                    unwritten: false,
                    shared: false,
                },
            );
        }
        Record::Punch { fb, n, .. } => {
            check_run(a, fb, n)?;
            for (_, e) in f.blocks.remove(fb, n) {
                for dev in e.dev..e.dev + e.len {
                    a.put(dev, mode);
                }
            }
            let staged: Vec<u64> = f.cow.range(fb..fb + n).map(|(&k, _)| k).collect();
            for k in staged {
                if let Some(dev) = f.cow.remove(&k) {
                    a.release(dev, 1);
                }
            }
        }
    }
    Ok(())
}

/// The blocks a clone shares: written blocks of the source range (unwritten
/// ones read as zeros, like holes, and are not shared).
pub(crate) fn clone_sources(src: &FileMeta, sfb: u64, n: u64) -> Vec<(u64, u64)> {
    src.blocks
        .range(sfb, n)
        .into_iter()
        .filter(|(_, e)| !e.unwritten)
        .flat_map(|(k, e)| (0..e.len).map(move |i| (k + i - sfb, e.dev + i)))
        .collect()
}

/// Applies a Clone record to its destination, given the shared blocks.
pub(crate) fn apply_clone(
    shared: &[(u64, u64)],
    dst: &mut FileMeta,
    dfb: u64,
    n: u64,
    a: &mut Alloc,
    mode: Mode,
) -> Result<(), String> {
    check_run(a, dfb, n)?;
    apply_file(
        &Record::Punch {
            id: dst.id,
            fb: dfb,
            n,
        },
        dst,
        a,
        mode,
    )?;
    for &(off, dev) in shared {
        if dev >= a.total {
            return Err(format!("clone source block {dev} is outside the data area"));
        }
        *a.refs.entry(dev).or_insert(1) += 1;
        dst.blocks.insert(
            dfb + off,
            Extent {
                len: 1,
                dev,
                unwritten: false,
                shared: true,
            },
        );
    }
    Ok(())
}

/// The whole metadata of a store as one value: what a checkpoint holds and
/// what replay rebuilds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    pub files: BTreeMap<u64, FileMeta>,
    pub alloc: Alloc,
    pub next_id: u64,
}

impl Image {
    /// An empty store of `data_blocks` data blocks.
    pub(crate) fn empty(data_blocks: u64) -> Self {
        Image {
            files: BTreeMap::new(),
            alloc: Alloc::new(data_blocks),
            next_id: 1,
        }
    }

    /// Applies a replayed record.
    pub(crate) fn replay(&mut self, rec: &Record) -> Result<(), String> {
        match rec {
            Record::Create { id, name, time } => {
                if self.files.contains_key(id) || self.files.values().any(|f| &f.name == name) {
                    return Err(format!("file {id} ({name:?}) created twice"));
                }
                self.files.insert(*id, new_file(*id, name.clone(), *time));
                self.next_id = self.next_id.max(id + 1);
            }
            Record::Clone {
                src,
                sfb,
                dst,
                dfb,
                n,
            } => {
                let s = self
                    .files
                    .get(src)
                    .ok_or_else(|| format!("clone from unknown file {src}"))?;
                let shared = clone_sources(s, *sfb, *n);
                let d = self
                    .files
                    .get_mut(dst)
                    .ok_or_else(|| format!("clone into unknown file {dst}"))?;
                apply_clone(&shared, d, *dfb, *n, &mut self.alloc, Mode::Replay)?;
            }
            other => {
                let id = record_file(other);
                if let Record::Rename { name, .. } = other {
                    if self.files.values().any(|f| &f.name == name && f.id != id) {
                        return Err(format!("rename of file {id} onto existing name {name:?}"));
                    }
                }
                let f = self
                    .files
                    .get_mut(&id)
                    .ok_or_else(|| format!("record for unknown file {id}"))?;
                apply_file(other, f, &mut self.alloc, Mode::Replay)?;
                if f.gone {
                    self.files.remove(&id);
                }
            }
        }
        Ok(())
    }
}

impl Image {
    /// Sets every block's sharing hint from the reference counts.
    pub(crate) fn mark_shared(&mut self) {
        for f in self.files.values_mut() {
            let shared: Vec<(u64, bool)> = f
                .blocks
                .iter()
                .flat_map(|(s, e)| (0..e.len).map(move |i| (s + i, e.dev + i)))
                .map(|(fb, dev)| (fb, self.alloc.shared(dev)))
                .filter(|&(_, shared)| shared)
                .collect();
            for (fb, _) in shared {
                // Every block of the run is mapped: the update cannot fail.
                let _ = f.blocks.update(fb, 1, |e| e.shared = true);
            }
        }
    }
}

/// A new, empty file.
pub(crate) fn new_file(id: u64, name: String, time: u64) -> FileMeta {
    FileMeta {
        id,
        name,
        mtime: time,
        ctime: time,
        ..FileMeta::default()
    }
}

/// The file a single-file record concerns.
pub(crate) fn record_file(rec: &Record) -> u64 {
    match *rec {
        Record::Create { id, .. }
        | Record::Unlink { id }
        | Record::Rename { id, .. }
        | Record::SetSize { id, .. }
        | Record::Times { id, .. }
        | Record::Alloc { id, .. }
        | Record::Convert { id, .. }
        | Record::Remap { id, .. }
        | Record::Punch { id, .. } => id,
        Record::Clone { dst, .. } => dst,
    }
}

/// Encodes a checkpoint payload: the files, their block runs, the reference
/// counts, and the free runs (the complement of every referenced block, so
/// staged copy-on-write blocks and frees waiting for the journal count as free).
pub(crate) fn encode_snapshot<'a>(
    files: impl Iterator<Item = &'a FileMeta>,
    alloc: &Alloc,
    next_id: u64,
) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(next_id);
    let files: Vec<&FileMeta> = files.collect();
    e.u64(files.len() as u64);
    let mut used = vec![false; alloc.total as usize];
    for f in &files {
        e.u64(f.id);
        e.bytes(f.name.as_bytes());
        e.u64(f.size);
        e.u64(f.mtime);
        e.u64(f.ctime);
        e.u32(f.flags);
        let runs = runs(&f.blocks);
        e.u64(runs.len() as u64);
        for (fb, dev, n, unwritten) in runs {
            e.u64(fb);
            e.u64(dev);
            e.u64(n);
            e.u8(u8::from(unwritten));
            for d in dev..dev + n {
                if let Some(u) = used.get_mut(d as usize) {
                    *u = true;
                }
            }
        }
    }
    let mut refs: Vec<(u64, u32)> = alloc.refs.iter().map(|(&d, &r)| (d, r)).collect();
    refs.sort_unstable();
    e.u64(refs.len() as u64);
    for (d, r) in refs {
        e.u64(d);
        e.u32(r);
    }
    let mut free = Vec::new();
    let mut i = 0;
    while i < used.len() {
        if used[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < used.len() && !used[i] {
            i += 1;
        }
        free.push((s as u64, (i - s) as u64));
    }
    e.u64(free.len() as u64);
    for (s, l) in free {
        e.u64(s);
        e.u64(l);
    }
    e.0
}

/// Runs of a block map: (file block, data block, count, unwritten).
pub(crate) fn runs(blocks: &ExtentMap) -> Vec<(u64, u64, u64, bool)> {
    let mut out: Vec<(u64, u64, u64, bool)> = Vec::new();
    for (fb, e) in blocks.iter() {
        match out.last_mut() {
            // Extents that differ only in the sharing hint are one run on disk.
            Some(l) if l.0 + l.2 == fb && l.1 + l.2 == e.dev && l.3 == e.unwritten => l.2 += e.len,
            _ => out.push((fb, e.dev, e.len, e.unwritten)),
        }
    }
    out
}

/// Decodes a checkpoint payload for a data area of `total` blocks.
pub(crate) fn decode_snapshot(b: &[u8], total: u64) -> Result<Image, String> {
    let mut d = Dec::new(b);
    let s = |e: &'static str| e.to_string();
    let next_id = d.u64().map_err(s)?;
    let nfiles = d.u64().map_err(s)?;
    let mut img = Image {
        files: BTreeMap::new(),
        alloc: Alloc {
            total,
            ..Alloc::default()
        },
        next_id,
    };
    for _ in 0..nfiles {
        let id = d.u64().map_err(s)?;
        let name = d.bytes().map_err(s)?;
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(format!("file {id} has a name of {} bytes", name.len()));
        }
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| format!("file {id}'s name is not UTF-8"))?;
        let mut f = new_file(id, name, 0);
        f.size = d.u64().map_err(s)?;
        f.mtime = d.u64().map_err(s)?;
        f.ctime = d.u64().map_err(s)?;
        f.flags = d.u32().map_err(s)?;
        let nruns = d.u64().map_err(s)?;
        for _ in 0..nruns {
            let fb = d.u64().map_err(s)?;
            let dev = d.u64().map_err(s)?;
            let n = d.u64().map_err(s)?;
            let unwritten = d.u8().map_err(s)? != 0;
            if n == 0 || dev.checked_add(n).is_none_or(|e| e > total) || fb.checked_add(n).is_none()
            {
                return Err(format!(
                    "file {id} has a run of {n} blocks at data block {dev} outside the data area"
                ));
            }
            if let Some(twice) = f.blocks.next_mapped(fb).filter(|&k| k - fb < n) {
                return Err(format!("file {id} maps block {twice} twice"));
            }
            f.blocks.insert(
                fb,
                Extent {
                    len: n,
                    dev,
                    unwritten,
                    shared: false,
                },
            );
        }
        if img.files.insert(id, f).is_some() {
            return Err(format!("file {id} appears twice"));
        }
    }
    let nrefs = d.u64().map_err(s)?;
    for _ in 0..nrefs {
        let dev = d.u64().map_err(s)?;
        let r = d.u32().map_err(s)?;
        img.alloc.refs.insert(dev, r);
    }
    let nfree = d.u64().map_err(s)?;
    for _ in 0..nfree {
        let st = d.u64().map_err(s)?;
        let l = d.u64().map_err(s)?;
        if l == 0 || st.checked_add(l).is_none_or(|e| e > total) {
            return Err(format!("free run {st}+{l} is outside the data area"));
        }
        img.alloc.free.insert(st, l);
        img.alloc.free_blocks += l;
    }
    if !d.done() {
        return Err("checkpoint payload has trailing bytes".into());
    }
    Ok(img)
}
