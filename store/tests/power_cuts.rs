//! Power cuts taken while several threads run random mixed workloads, each
//! thread on its own queue pair, dio engine and `StoreIo`.
//!
//! A cutter thread waits for a random number of I/O commands, then cuts: from
//! that moment every I/O command fails without executing (the emulated
//! controller's fault injection), the threads stop at their next I/O, and once
//! they have stopped the controller loses its volatile write cache
//! (`power_cut`) and is reset (`function_reset`), as a power cycle does. So the
//! device holds exactly what the commands executed before the cut made durable,
//! and each operation that returned success before the cut was acknowledged.
//! Every third cut is partial (`power_cut_partial`, a random share kept): each
//! cached logical block independently reaches the medium or is lost, as when
//! the power goes while the drive destages. Every other fresh device runs
//! without FUA (each durable write, journal commits and checkpoints included,
//! is a write and a Flush), so a cut between the two, partial or not, tears
//! journal and checkpoint writes in any subset of their logical blocks.
//!
//! Each thread keeps a model of its own files (a pool of names only it uses,
//! and its own blocks of one file all threads write). After each cut the store
//! is opened (journal replay), `fsck` must be clean, and each thread's files
//! must equal the model after some prefix of the thread's operations that
//! includes every operation acknowledged durable (the journal is one sequence,
//! so what is durable is a prefix), each logical block (512 bytes, the unit
//! the device writes atomically) holding a value the file was given since it
//! was last made durable: every write carries unique per-block content, so
//! another file's data, a stale block or garbage is recognised.
//!
//! The state a cut leaves is the next round's start. `STORE_CRASH_CUTS` sets
//! the number of cuts (default 1000), `STORE_CRASH_SEED` the seed:
//! `STORE_CRASH_CUTS=100000 cargo test --release -p store --test power_cuts -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Io, Rig};
use dio::nvme_qp::IoBuffer;
use dio::{IovIter, Kiocb, KiocbFlags};
use nvme::spec::{Status, StatusCodeType};
use nvme::transport::emu::EmuTransport;
use nvme_emu::{CommandMatch, EmuController, FaultAction};
use store::{FormatOptions, Region, Store};

const BS: u64 = 4096;
/// The device's logical block: the unit a power cut keeps or loses whole.
const SECTOR: u64 = 512;
/// Logical blocks per store block.
const SPB: u64 = BS / SECTOR;
/// Blocks of each file the workload touches.
const BLOCKS: u64 = 10;
/// Blocks of the file all threads write (thread `t` owns blocks `b % threads == t`).
const SHARED_BLOCKS: u64 = 12;
/// Names each thread may use.
const POOL: usize = 3;
/// Most threads in a round.
const MAX_THREADS: usize = 3;
/// Operations each thread attempts per round.
const OPS: usize = 16;
/// A fresh device and format every this many cuts.
const FRESH_EVERY: u64 = 100;
/// Every this many cuts is partial (`power_cut_partial`): each cached logical
/// block independently reaches the medium or is lost.
const PARTIAL_EVERY: u64 = 3;

const REGION: Region = Region {
    offset: 1 << 20,
    len: 2 << 20,
};

/// Tiny xorshift generator: deterministic choices from a seed.
#[derive(Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn boot(emu: &EmuController, fua: bool) -> Rig {
    common::boot(emu, Duration::from_secs(5), fua)
}

/// A new device and store; `fua`: whether the store's engines use FUA (else
/// each durable write, journal commits included, is a write and a Flush, and
/// a cut between them can tear it).
fn fresh(fua: bool) -> (Rig, Arc<Store>) {
    let emu = EmuTransport::from_name("emu:size=4M,lba=512,vwc=on")
        .expect("emu config")
        .emu()
        .clone();
    let r = boot(&emu, fua);
    let mut io = r.io();
    let s = Store::format(&mut io, REGION, &FormatOptions::default()).unwrap();
    let f = s.create(&mut io, "shared").unwrap();
    s.preallocate(&mut io, &f, 0, SHARED_BLOCKS * BS).unwrap();
    s.sync(&mut io).unwrap();
    (r, s)
}

/// A block's content: its tag in every 8 bytes.
fn content(tag: u64) -> Vec<u8> {
    tag.to_le_bytes().repeat(BS as usize / 8)
}

/// The tag a logical block holds, or why it holds none.
fn tag_of(sector: &[u8]) -> Result<u64, String> {
    let w = &sector[..8];
    if sector.chunks(8).all(|c| c == w) {
        Ok(u64::from_le_bytes(w.try_into().unwrap()))
    } else {
        Err(format!(
            "a torn or garbage sector: {:02x?}...",
            &sector[..16]
        ))
    }
}

/// The model's entries (logical blocks) of store block `b`.
fn sectors(b: u64) -> std::ops::Range<usize> {
    (b * SPB) as usize..((b + 1) * SPB) as usize
}

/// One file block in the model.
#[derive(Clone, Debug)]
struct Blk {
    /// What a read returns now.
    latest: u64,
    /// What the block may hold after a cut (when its file is there).
    allowed: BTreeSet<u64>,
}

impl Blk {
    fn durable(v: u64) -> Self {
        Blk {
            latest: v,
            allowed: BTreeSet::from([v]),
        }
    }
    fn set(&mut self, v: u64) {
        self.latest = v;
        self.allowed.insert(v);
    }
    fn settle(&mut self) {
        self.allowed = BTreeSet::from([self.latest]);
    }
}

#[derive(Clone, Debug)]
struct Obj {
    size: u64,
    /// One entry per logical block (`SPB` per store block): a partial cut keeps
    /// or loses each on its own.
    blocks: Vec<Blk>,
}

/// Name -> (object, size): what a prefix of the operations leaves.
type Names = BTreeMap<String, (usize, u64)>;

/// What a file read back after a cut: size and each logical block's tag.
type Seen = BTreeMap<String, (u64, Vec<u64>)>;

/// One thread's model of its files.
#[derive(Clone, Debug)]
struct Model {
    t: usize,
    objs: Vec<Obj>,
    names: BTreeMap<String, usize>,
    /// The names after each operation (index 0: the round's start).
    steps: Vec<Names>,
    /// Operations up to this step are acknowledged durable.
    acked: usize,
    /// Per object, the last step that certainly journaled a record of it.
    touched: Vec<usize>,
    /// The shared file's blocks this thread owns, by block number (each as
    /// its logical blocks).
    shared: BTreeMap<u64, Vec<Blk>>,
    /// Operations that returned success, and those acknowledged durable.
    ok_ops: u64,
    durable_ops: u64,
    /// Each operation run, for a failure's message.
    log: Vec<String>,
}

fn pool_name(t: usize, k: usize) -> String {
    format!("t{t}-{k}")
}

impl Model {
    /// A model whose files are `seen` (all durable: read after recovery);
    /// with `threads` running, thread `t` owns the shared blocks `b % threads == t`
    /// (none when it is idle).
    fn from_seen(t: usize, seen: &Seen, shared: &[u64], threads: usize) -> Model {
        let mut m = Model {
            t,
            objs: Vec::new(),
            names: BTreeMap::new(),
            steps: Vec::new(),
            acked: 0,
            touched: Vec::new(),
            shared: BTreeMap::new(),
            ok_ops: 0,
            durable_ops: 0,
            log: Vec::new(),
        };
        for k in 0..POOL {
            let name = pool_name(t, k);
            if let Some((size, tags)) = seen.get(&name) {
                m.objs.push(Obj {
                    size: *size,
                    blocks: tags.iter().map(|&v| Blk::durable(v)).collect(),
                });
                m.touched.push(0);
                m.names.insert(name, m.objs.len() - 1);
            }
        }
        for b in (0..SHARED_BLOCKS).filter(|b| *b as usize % threads == t) {
            m.shared
                .insert(b, sectors(b).map(|s| Blk::durable(shared[s])).collect());
        }
        m.steps.push(m.snapshot());
        m
    }

    fn snapshot(&self) -> Names {
        self.names
            .iter()
            .map(|(n, &o)| (n.clone(), (o, self.objs[o].size)))
            .collect()
    }

    fn step(&self) -> usize {
        self.steps.len() - 1
    }

    fn existing(&self, rng: &mut Rng) -> Option<String> {
        let v: Vec<&String> = self.names.keys().collect();
        (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize].clone())
    }

    /// Checks the files of this thread's pool and its shared blocks after a cut.
    fn verify(&self, seen: &Seen) -> Result<(), String> {
        let shared = &seen["shared"].1;
        for (b, blks) in &self.shared {
            for (s, blk) in sectors(*b).zip(blks) {
                let v = shared[s];
                if !blk.allowed.contains(&v) {
                    return Err(format!(
                        "shared block {b} sector {s} holds {v:#x}, allowed {:x?}",
                        blk.allowed
                    ));
                }
            }
        }
        let mine: BTreeMap<&String, &(u64, Vec<u64>)> = seen
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("t{}-", self.t)))
            .collect();
        let mut why = Vec::new();
        'steps: for k in self.acked..self.steps.len() {
            let names = &self.steps[k];
            if names.len() != mine.len() || names.keys().zip(mine.keys()).any(|(a, b)| a != *b) {
                why.push(format!("step {k}: names {:?}", names.keys()));
                continue;
            }
            for (name, &(o, size)) in names {
                let (got_size, tags) = mine[name];
                if *got_size != size {
                    why.push(format!("step {k}: {name} size {size}, read {got_size}"));
                    continue 'steps;
                }
                for (s, &v) in tags.iter().enumerate() {
                    let ok = if (s as u64 / SPB) * BS < size {
                        self.objs[o].blocks[s].allowed.contains(&v)
                    } else {
                        v == 0
                    };
                    if !ok {
                        why.push(format!(
                            "step {k}: {name} sector {s} holds {v:#x}, allowed {:x?}",
                            self.objs[o].blocks[s].allowed
                        ));
                        continue 'steps;
                    }
                }
            }
            return Ok(());
        }
        Err(format!(
            "thread {}: no prefix of its operations from the acknowledged step {} of {} matches the store: read {:x?}; {}; operations: {}",
            self.t,
            self.acked,
            self.step(),
            mine,
            why.join("; "),
            self.log.join("; ")
        ))
    }
}

/// What a worker thread shares with the cutter.
struct Round<'a> {
    store: &'a Store,
    rig: &'a Rig,
    cut: &'a AtomicBool,
    /// Unique tag prefix of this round.
    round: u64,
}

fn flags_of(rng: &mut Rng) -> KiocbFlags {
    match rng.below(4) {
        0 => KiocbFlags::DSYNC,
        1 => KiocbFlags::DSYNC | KiocbFlags::SYNC,
        _ => KiocbFlags::empty(),
    }
}

fn write_blocks(
    rd: &Round<'_>,
    io: &mut Io,
    name: &str,
    blk: u64,
    tags: &[u64],
    flags: KiocbFlags,
) -> Result<(), String> {
    let f = rd.store.open_file(name).map_err(|e| e.to_string())?;
    let b: IoBuffer = rd.rig.buf(tags.len() * BS as usize);
    for (i, &t) in tags.iter().enumerate() {
        b.write(i * BS as usize, &content(t)).unwrap();
    }
    let mut it = IovIter::new(vec![b]);
    let n = rd
        .store
        .write(io, &f, &mut Kiocb::new(blk * BS, flags), &mut it)
        .map_err(|e| e.to_string())?;
    if n != tags.len() * BS as usize {
        return Err(format!("short write: {n} bytes"));
    }
    Ok(())
}

/// Runs one thread's random operations until done or the cut; each operation
/// is applied to the model first (its effect is a candidate state), then run,
/// then its durability acknowledged if it succeeded.
fn worker(rd: &Round<'_>, m: &mut Model, rng: &mut Rng) {
    let mut io = rd.rig.io();
    let t = m.t;
    let mut seq = 0u64;
    let mut tag = || {
        seq += 1;
        (rd.round << 24) | ((t as u64) << 20) | seq
    };
    let s = rd.store;
    for _ in 0..OPS {
        let step = m.step() + 1;
        let choice = rng.below(100);
        let res: Result<(), String> = match choice {
            0..=34 => {
                let Some(name) = m.existing(rng) else {
                    continue;
                };
                let o = m.names[&name];
                let blk = rng.below(BLOCKS);
                let n = 1 + rng.below(3.min(BLOCKS - blk));
                let flags = flags_of(rng);
                let tags: Vec<u64> = (0..n).map(|_| tag()).collect();
                let obj = &mut m.objs[o];
                for (i, &v) in tags.iter().enumerate() {
                    obj.blocks[sectors(blk + i as u64)]
                        .iter_mut()
                        .for_each(|b| b.set(v));
                }
                if (blk + n) * BS > obj.size {
                    obj.size = (blk + n) * BS;
                    m.touched[o] = step;
                }
                m.steps.push(m.snapshot());
                m.log.push(format!(
                    "{step}: write {name} {blk}+{n} {flags:?} {tags:x?}"
                ));
                let r = write_blocks(rd, &mut io, &name, blk, &tags, flags);
                if r.is_ok() && flags.contains(KiocbFlags::DSYNC) {
                    for (i, &v) in tags.iter().enumerate() {
                        m.objs[o].blocks[sectors(blk + i as u64)].fill(Blk::durable(v));
                    }
                    m.acked = m.acked.max(m.touched[o]);
                    m.durable_ops += 1;
                }
                r
            }
            35..=46 => {
                let own: Vec<u64> = m.shared.keys().copied().collect();
                let blk = own[rng.below(own.len() as u64) as usize];
                let flags = flags_of(rng);
                let v = tag();
                m.shared
                    .get_mut(&blk)
                    .unwrap()
                    .iter_mut()
                    .for_each(|b| b.set(v));
                m.steps.push(m.snapshot());
                m.log
                    .push(format!("{step}: write shared {blk} {flags:?} {v:x}"));
                let r = write_blocks(rd, &mut io, "shared", blk, &[v], flags);
                if r.is_ok() && flags.contains(KiocbFlags::DSYNC) {
                    m.shared.get_mut(&blk).unwrap().fill(Blk::durable(v));
                    m.durable_ops += 1;
                }
                r
            }
            47..=53 => {
                let name = pool_name(t, rng.below(POOL as u64) as usize);
                if m.names.contains_key(&name) {
                    continue;
                }
                m.objs.push(Obj {
                    size: 0,
                    blocks: vec![Blk::durable(0); (BLOCKS * SPB) as usize],
                });
                m.touched.push(step);
                m.names.insert(name.clone(), m.objs.len() - 1);
                m.steps.push(m.snapshot());
                m.log.push(format!("{step}: create {name}"));
                s.create(&mut io, &name)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            54..=58 => {
                let Some(name) = m.existing(rng) else {
                    continue;
                };
                m.names.remove(&name);
                m.steps.push(m.snapshot());
                m.log.push(format!("{step}: unlink {name}"));
                s.unlink(&mut io, &name).map_err(|e| e.to_string())
            }
            59..=64 => {
                let Some(from) = m.existing(rng) else {
                    continue;
                };
                let to = pool_name(t, rng.below(POOL as u64) as usize);
                if to == from {
                    continue;
                }
                let o = m.names.remove(&from).unwrap();
                m.names.insert(to.clone(), o);
                m.touched[o] = step;
                m.steps.push(m.snapshot());
                m.log.push(format!("{step}: rename {from} {to}"));
                s.rename(&mut io, &from, &to).map_err(|e| e.to_string())
            }
            65..=69 => {
                let Some(name) = m.existing(rng) else {
                    continue;
                };
                let o = m.names[&name];
                let blk = rng.below(BLOCKS);
                let n = 1 + rng.below(BLOCKS - blk);
                if (blk + n) * BS > m.objs[o].size {
                    m.objs[o].size = (blk + n) * BS;
                    m.touched[o] = step;
                }
                m.steps.push(m.snapshot());
                let f = s.open_file(&name).unwrap();
                m.log.push(format!("{step}: preallocate {name} {blk}+{n}"));
                s.preallocate(&mut io, &f, blk * BS, n * BS)
                    .map_err(|e| e.to_string())
            }
            70..=75 => {
                let Some(name) = m.existing(rng) else {
                    continue;
                };
                let o = m.names[&name];
                let blk = rng.below(BLOCKS);
                let n = 1 + rng.below(BLOCKS - blk);
                for b in blk..blk + n {
                    m.objs[o].blocks[sectors(b)]
                        .iter_mut()
                        .for_each(|b| b.set(0));
                }
                m.touched[o] = step;
                m.steps.push(m.snapshot());
                let f = s.open_file(&name).unwrap();
                m.log.push(format!("{step}: punch {name} {blk}+{n}"));
                s.punch_hole(&mut io, &f, blk * BS, n * BS)
                    .map_err(|e| e.to_string())
            }
            76..=80 => {
                let Some(name) = m.existing(rng) else {
                    continue;
                };
                let o = m.names[&name];
                let keep = rng.below(BLOCKS + 1);
                for b in keep..BLOCKS {
                    m.objs[o].blocks[sectors(b)]
                        .iter_mut()
                        .for_each(|b| b.set(0));
                }
                m.objs[o].size = keep * BS;
                m.touched[o] = step;
                m.steps.push(m.snapshot());
                let f = s.open_file(&name).unwrap();
                m.log.push(format!("{step}: truncate {name} {keep}"));
                s.truncate(&mut io, &f, keep * BS)
                    .map_err(|e| e.to_string())
            }
            81..=86 => {
                let (Some(src), Some(dst)) = (m.existing(rng), m.existing(rng)) else {
                    continue;
                };
                if src == dst {
                    continue;
                }
                let (so, d) = (m.names[&src], m.names[&dst]);
                let sblk = rng.below(BLOCKS);
                let dblk = rng.below(BLOCKS);
                let n = 1 + rng.below(BLOCKS - sblk.max(dblk));
                for i in 0..n {
                    for (fs, ts) in sectors(sblk + i).zip(sectors(dblk + i)) {
                        let from = m.objs[so].blocks[fs].clone();
                        let to = &mut m.objs[d].blocks[ts];
                        to.latest = from.latest;
                        to.allowed.extend(from.allowed);
                        to.allowed.insert(from.latest);
                    }
                }
                if (dblk + n) * BS > m.objs[d].size {
                    m.objs[d].size = (dblk + n) * BS;
                }
                m.touched[d] = step;
                m.steps.push(m.snapshot());
                let (fs, fd) = (s.open_file(&src).unwrap(), s.open_file(&dst).unwrap());
                m.log
                    .push(format!("{step}: clone {src} {sblk} {dst} {dblk}+{n}"));
                s.clone_range(&mut io, &fs, sblk * BS, &fd, dblk * BS, n * BS)
                    .map_err(|e| e.to_string())
            }
            87..=96 => {
                let data = choice >= 93;
                m.steps.push(m.snapshot());
                if rng.below(3) == 0 {
                    m.log.push(format!("{step}: fsync shared data={data}"));
                    let f = s.open_file("shared").unwrap();
                    let r = if data {
                        s.fdatasync(&mut io, &f)
                    } else {
                        s.fsync(&mut io, &f)
                    };
                    if r.is_ok() {
                        m.shared.values_mut().flatten().for_each(Blk::settle);
                        m.durable_ops += 1;
                    }
                    r.map_err(|e| e.to_string())
                } else {
                    let Some(name) = m.existing(rng) else {
                        m.steps.pop();
                        continue;
                    };
                    let o = m.names[&name];
                    m.log.push(format!("{step}: fsync {name} data={data}"));
                    let f = s.open_file(&name).unwrap();
                    let r = if data {
                        s.fdatasync(&mut io, &f)
                    } else {
                        s.fsync(&mut io, &f)
                    };
                    if r.is_ok() {
                        m.objs[o].blocks.iter_mut().for_each(Blk::settle);
                        m.acked = m.acked.max(m.touched[o]);
                        m.durable_ops += 1;
                    }
                    r.map_err(|e| e.to_string())
                }
            }
            _ => {
                m.steps.push(m.snapshot());
                m.log.push(format!("{step}: sync"));
                let r = s.sync(&mut io).map_err(|e| e.to_string());
                if r.is_ok() {
                    m.acked = m.step();
                    m.durable_ops += 1;
                }
                r
            }
        };
        if let Some(l) = m.log.last_mut() {
            l.push_str(if res.is_ok() { " ok" } else { " failed" });
            if l.contains(" ok") {
                l.push_str(&format!(" (acked {})", m.acked));
            }
        }
        match res {
            Ok(()) => m.ok_ops += 1,
            Err(e) => {
                assert!(
                    rd.cut.load(Ordering::Acquire),
                    "thread {t}: an operation failed before the cut: {e}"
                );
                break;
            }
        }
    }
}

/// Reads every file back: size and each block's tag.
fn observe(r: &Rig, io: &mut Io, s: &Store) -> Result<Seen, String> {
    let mut seen = Seen::new();
    for st in s.list() {
        let f = s.open_file(&st.name).unwrap();
        let blocks = if st.name == "shared" {
            SHARED_BLOCKS
        } else {
            BLOCKS
        };
        let len = (blocks * BS) as usize;
        let mut it = IovIter::new(vec![r.buf(len)]);
        s.read(io, &f, &mut Kiocb::new(0, KiocbFlags::empty()), &mut it)
            .map_err(|e| format!("reading {}: {e}", st.name))?;
        let mut out = vec![0; len];
        it.buffers()[0].read(0, &mut out).unwrap();
        if st.size > len as u64 {
            return Err(format!(
                "{} has size {} past the workload's range",
                st.name, st.size
            ));
        }
        let mut tags = Vec::new();
        for (s, sector) in out.chunks(SECTOR as usize).enumerate() {
            tags.push(tag_of(sector).map_err(|e| format!("{} sector {s}: {e}", st.name))?);
        }
        seen.insert(st.name.clone(), (st.size, tags));
    }
    if !seen.contains_key("shared") {
        return Err("the shared file is gone".into());
    }
    Ok(seen)
}

/// Figures of a run.
#[derive(Debug, Default)]
struct Figures {
    cuts: u64,
    ops: u64,
    durable_ops: u64,
    commands_before_cut: u64,
    partial_cuts: u64,
    /// Of those, cuts on a device used without FUA.
    partial_without_fua: u64,
    /// Cached logical blocks the partial cuts kept.
    kept_blocks: u64,
}

fn run(cuts: u64, seed: u64) -> Figures {
    let mut rng = Rng(seed | 1);
    let mut fig = Figures::default();
    // Every other fresh device is used without FUA.
    let (mut r, mut s) = fresh(true);
    let status = Status::from_parts(StatusCodeType::MediaAndDataIntegrity, 0x80).with_dnr(true);
    let mut seen = observe(&r, &mut r.io(), &s).unwrap();
    for cut in 0..cuts {
        if cut > 0 && cut % FRESH_EVERY == 0 {
            drop(s);
            (r, s) = fresh(cut / FRESH_EVERY % 2 == 0);
            seen = observe(&r, &mut r.io(), &s).unwrap();
        }
        let threads = 2 + rng.below(MAX_THREADS as u64 - 1) as usize;
        let shared = seen["shared"].1.clone();
        let mut models: Vec<Model> = (0..MAX_THREADS)
            .map(|t| Model::from_seen(t, &seen, &shared, threads))
            .collect();
        let cut_flag = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        let start = r.emu.stats().commands;
        let budget = 1 + rng.below(140);
        let cmds = AtomicU64::new(0);
        let rd = Round {
            store: &s,
            rig: &r,
            cut: &cut_flag,
            round: cut + 1,
        };
        let mut rngs: Vec<Rng> = (0..threads).map(|_| Rng(rng.next() | 1)).collect();
        std::thread::scope(|sc| {
            let (rd, done) = (&rd, &done);
            for (m, trng) in models.iter_mut().take(threads).zip(rngs.iter_mut()) {
                sc.spawn(move || {
                    worker(rd, m, trng);
                    done.fetch_add(1, Ordering::AcqRel);
                });
            }
            let (emu, cut_flag, cmds) = (&r.emu, &cut_flag, &cmds);
            sc.spawn(move || {
                while done.load(Ordering::Acquire) < threads
                    && emu.stats().commands < start + budget
                {
                    std::thread::sleep(Duration::from_micros(30));
                }
                cut_flag.store(true, Ordering::Release);
                emu.faults()
                    .inject(CommandMatch::io(), FaultAction::Fail(status), None);
                cmds.store(emu.stats().commands - start, Ordering::Relaxed);
            });
        });
        fig.commands_before_cut += cmds.load(Ordering::Relaxed);
        let counters = s.counters();
        // Every thread has stopped: the cache is lost (or, on a partial cut,
        // each cached logical block kept or lost on its own), the controller reset.
        let partial = cut % PARTIAL_EVERY == PARTIAL_EVERY - 1;
        if partial && !r.fua {
            fig.partial_without_fua += 1;
        }
        if partial {
            let keep_permille = rng.below(1001) as u16;
            fig.kept_blocks += r.emu.power_cut_partial(rng.next(), keep_permille) as u64;
            fig.partial_cuts += 1;
        } else {
            r.emu.power_cut();
        }
        drop(s);
        let (emu, fua) = (r.emu.clone(), r.fua);
        drop(r);
        emu.faults().clear();
        emu.function_reset();
        r = boot(&emu, fua);
        let mut io = r.io();
        let pre = Store::check(&mut io, REGION);
        s = Store::open(&mut io, REGION)
            .unwrap_or_else(|e| panic!("seed {seed:#x} cut {cut}: open after the cut: {e}"));
        let rep = s.fsck(&mut io).unwrap();
        assert!(
            rep.is_clean(),
            "seed {seed:#x} cut {cut}: fsck: {:?}",
            rep.problems
        );
        seen = observe(&r, &mut io, &s).unwrap_or_else(|e| panic!("seed {seed:#x} cut {cut}: {e}"));
        for m in &models {
            if let Err(e) = m.verify(&seen) {
                panic!("seed {seed:#x} cut {cut} ({threads} threads, partial {partial}): {e}; before open: {pre:?}; counters before the cut: {counters:?}");
            }
            fig.ops += m.ok_ops;
            fig.durable_ops += m.durable_ops;
        }
        // Names outside every pool: only the shared file.
        for name in seen.keys() {
            assert!(
                name == "shared" || (0..MAX_THREADS).any(|t| name.starts_with(&format!("t{t}-"))),
                "seed {seed:#x} cut {cut}: unknown file {name:?}"
            );
        }
        fig.cuts += 1;
    }
    fig
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(default)
}

#[test]
fn acknowledged_operations_survive_power_cuts_taken_while_threads_run() {
    let cuts = env_u64("STORE_CRASH_CUTS", 1000);
    let seed = env_u64("STORE_CRASH_SEED", 0x5eed_c0ff_ee00_0017);
    let t0 = Instant::now();
    let fig = run(cuts, seed);
    eprintln!(
        "{} power cuts ({} partial, {} of them without FUA, keeping {} cached blocks) in {:.1?} (seed {seed:#x}): {} operations succeeded, {} acknowledged durable, {} commands executed before the cuts",
        fig.cuts,
        fig.partial_cuts,
        fig.partial_without_fua,
        fig.kept_blocks,
        t0.elapsed(),
        fig.ops,
        fig.durable_ops,
        fig.commands_before_cut
    );
    assert_eq!(fig.cuts, cuts);
    assert_eq!(fig.partial_cuts, cuts / PARTIAL_EVERY);
    assert!(
        cuts < 30 || fig.kept_blocks > 0,
        "the partial cuts kept nothing"
    );
    assert!(cuts <= FRESH_EVERY || fig.partial_without_fua > 0);
    assert!(fig.durable_ops > 0 && fig.ops > fig.durable_ops);
}
