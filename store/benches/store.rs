//! The store's data and metadata paths on the emulated controller (inline RAM
//! namespace, volatile write cache on, polled queue pair):
//!
//! - `overwrite_dsync_4k/{raw,store}`: 4 KiB O_DSYNC overwrites through the
//!   same dio engine on the same namespace, by `dio::providers::RawNamespace`
//!   and by a store file (every block written and durable, so each is a pure
//!   overwrite: one FUA write);
//! - `append_dsync_4k/store`: 4 KiB O_DSYNC writes at end of file (allocation,
//!   conversion and size change journaled before each returns);
//! - `read_128k/fragmented`: 128 KiB reads of a file made of 4 KiB extents
//!   interleaved with another file's (32 extents, 32 commands per read), and
//!   `read_128k/contiguous`: the same reads of a file that is one extent (one
//!   command per read);
//! - `metadata/create_write_fsync_unlink`: one 4 KiB file's life.
//!
//! Before measuring, the commands each appending write and each metadata
//! operation issue are counted from the emulated controller's command log and
//! printed. Run with `cargo bench -p store --bench store`.

// criterion_group! generates undocumented public items.
#![allow(missing_docs)]

mod rig;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dio::{IovIter, Kiocb, KiocbFlags};
use nvme_emu::LogEntry;
use rig::{Rig, OVERWRITE_BLOCKS};

const FLUSH: u8 = 0x00;
const WRITE: u8 = 0x01;
const READ: u8 = 0x02;

/// Appending writes restart from an empty file after this many blocks.
const APPEND_BLOCKS: u64 = 1024;
/// Blocks of the fragmented file (and of the file interleaved with it).
const FRAGMENTED_BLOCKS: u64 = 1024;
/// Bytes per fragmented read: 32 extents.
const FRAGMENTED_READ: usize = 128 << 10;

/// I/O commands logged since the last call: (writes, of which FUA, flushes, reads).
fn commands(r: &Rig) -> (u64, u64, u64, u64) {
    let log: Vec<LogEntry> = r.emu.command_log().take();
    let io = log.iter().filter(|e| e.qid != 0);
    let mut c = (0, 0, 0, 0);
    for e in io {
        match e.opcode {
            WRITE => {
                c.0 += 1;
                c.1 += u64::from(e.fua);
            }
            FLUSH => c.2 += 1,
            READ => c.3 += 1,
            _ => {}
        }
    }
    c
}

fn print_commands(what: &str, n: u64, c: (u64, u64, u64, u64)) {
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "{what}: {:.3} commands each over {n}: {:.3} writes ({:.3} with FUA), {:.3} flushes, {:.3} reads",
        per(c.0 + c.2 + c.3),
        per(c.0),
        per(c.1),
        per(c.2),
        per(c.3)
    );
}

fn overwrites(c: &mut Criterion) {
    let mut r = Rig::new();
    let f = r.written_file("overwritten", OVERWRITE_BLOCKS);
    let mut it = IovIter::new(vec![r.buf(4096, 0xa5)]);
    let mut g = c.benchmark_group("overwrite_dsync_4k");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("raw", |b| {
        b.iter(|| {
            r.raw_overwrite(&mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        })
    });
    g.bench_function("store", |b| {
        b.iter(|| {
            r.store_overwrite(&f, &mut it, i);
            i = (i + 1) % OVERWRITE_BLOCKS;
        })
    });
    g.finish();
}

/// One 4 KiB O_DSYNC append.
fn append(r: &mut Rig, f: &store::File, it: &mut IovIter<dio::nvme_qp::IoBuffer>, block: u64) {
    it.reset();
    let mut iocb = Kiocb::new(block * 4096, KiocbFlags::DSYNC | KiocbFlags::HIPRI);
    let n = r
        .store
        .write(&mut r.io, f, &mut iocb, it)
        .expect("appending write");
    assert_eq!(n, 4096);
}

fn appends(c: &mut Criterion) {
    let mut r = Rig::new();
    let f = r.store.create(&mut r.io, "appended").expect("create");
    r.store.fsync(&mut r.io, &f).expect("fsync");
    let mut it = IovIter::new(vec![r.buf(4096, 0x3c)]);
    // Commands per appending write, checkpoints included (one every few
    // hundred commits, when the journal is half full).
    r.emu.command_log().enable();
    let _ = commands(&r);
    let c0 = r.store.counters();
    for i in 0..APPEND_BLOCKS {
        append(&mut r, &f, &mut it, i);
    }
    let c1 = r.store.counters();
    print_commands("O_DSYNC 4 KiB append", APPEND_BLOCKS, commands(&r));
    println!(
        "  journal commits {}, journal blocks {}, checkpoints {}",
        c1.journal_commits - c0.journal_commits,
        c1.journal_blocks - c0.journal_blocks,
        c1.checkpoints - c0.checkpoints
    );
    r.emu.command_log().disable();
    r.store.truncate(&mut r.io, &f, 0).expect("truncate");
    r.store.fsync(&mut r.io, &f).expect("fsync");

    let mut g = c.benchmark_group("append_dsync_4k");
    g.throughput(Throughput::Elements(1));
    let mut next = 0;
    g.bench_function("store", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(APPEND_BLOCKS - next);
                let t0 = Instant::now();
                for _ in 0..n {
                    append(&mut r, &f, &mut it, next);
                    next += 1;
                }
                spent += t0.elapsed();
                left -= n;
                if next == APPEND_BLOCKS {
                    r.store.truncate(&mut r.io, &f, 0).expect("truncate");
                    r.store.fsync(&mut r.io, &f).expect("fsync");
                    next = 0;
                }
            }
            spent
        })
    });
    g.finish();
}

fn fragmented_reads(crit: &mut Criterion) {
    let mut r = Rig::new();
    let a = r.store.create(&mut r.io, "fragmented").expect("create");
    let b = r.store.create(&mut r.io, "interleaved").expect("create");
    let mut it = IovIter::new(vec![r.buf(4096, 0x11)]);
    for i in 0..FRAGMENTED_BLOCKS {
        for f in [&a, &b] {
            it.reset();
            r.store
                .write(
                    &mut r.io,
                    f,
                    &mut Kiocb::new(i * 4096, KiocbFlags::empty()),
                    &mut it,
                )
                .expect("write");
        }
    }
    // The contiguous file: written alone, so its allocations follow each other.
    let c = r.store.create(&mut r.io, "contiguous").expect("create");
    for i in 0..FRAGMENTED_BLOCKS {
        it.reset();
        r.store
            .write(
                &mut r.io,
                &c,
                &mut Kiocb::new(i * 4096, KiocbFlags::empty()),
                &mut it,
            )
            .expect("write");
    }
    for f in [&a, &b, &c] {
        r.store.fsync(&mut r.io, f).expect("fsync");
    }
    let extents = r.store.extents(&a).expect("extents").len() as u64;
    assert_eq!(extents, FRAGMENTED_BLOCKS, "every block its own extent");
    let extents = r.store.extents(&c).expect("extents").len();
    assert_eq!(extents, 1, "the contiguous file is one extent");
    let mut rd = IovIter::new(vec![r.buf(FRAGMENTED_READ, 0)]);
    let reads = FRAGMENTED_BLOCKS * 4096 / FRAGMENTED_READ as u64;
    let mut g = crit.benchmark_group("read_128k");
    g.throughput(Throughput::Bytes(FRAGMENTED_READ as u64));
    for (name, f) in [("fragmented", &a), ("contiguous", &c)] {
        let mut i = 0;
        g.bench_function(name, |bch| {
            bch.iter(|| {
                rd.reset();
                let mut iocb = Kiocb::new(i * FRAGMENTED_READ as u64, KiocbFlags::HIPRI);
                let n = r
                    .store
                    .read(&mut r.io, f, &mut iocb, &mut rd)
                    .expect("read");
                assert_eq!(n, FRAGMENTED_READ);
                i = (i + 1) % reads;
            })
        });
    }
    g.finish();
}

/// create + 4 KiB write + fsync + unlink.
fn file_life(r: &mut Rig, it: &mut IovIter<dio::nvme_qp::IoBuffer>) {
    let f = r.store.create(&mut r.io, "short-lived").expect("create");
    it.reset();
    r.store
        .write(&mut r.io, &f, &mut Kiocb::new(0, KiocbFlags::HIPRI), it)
        .expect("write");
    r.store.fsync(&mut r.io, &f).expect("fsync");
    r.store.unlink(&mut r.io, "short-lived").expect("unlink");
}

fn metadata(c: &mut Criterion) {
    let mut r = Rig::new();
    let mut it = IovIter::new(vec![r.buf(4096, 0x77)]);
    r.emu.command_log().enable();
    let _ = commands(&r);
    for _ in 0..256 {
        file_life(&mut r, &mut it);
    }
    print_commands("create + 4 KiB write + fsync + unlink", 256, commands(&r));
    r.emu.command_log().disable();
    let mut g = c.benchmark_group("metadata");
    g.throughput(Throughput::Elements(1));
    g.bench_function("create_write_fsync_unlink", |b| {
        b.iter(|| file_life(&mut r, &mut it))
    });
    g.finish();
}

criterion_group!(benches, overwrites, appends, fragmented_reads, metadata);
criterion_main!(benches);
