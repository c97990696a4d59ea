//! The overwrite path: pure O_DSYNC overwrites stay one FUA write each, and
//! an overwrite of blocks whose metadata is not yet durable still commits it.

mod common;

use common::*;
use dio::{IovIter, Kiocb, KiocbFlags};
use store::Store;

#[test]
fn many_dsync_overwrites_are_one_fua_write_each_and_update_mtime() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    put(&r, &mut io, &s, &f, 0, &[1; 65536], KiocbFlags::DSYNC);
    let mtime = s.stat(&f).unwrap().mtime;
    r.log();
    let commits = s.counters().journal_commits;
    for i in 0..64u64 {
        let pos = (i % 16) * 4096;
        put(
            &r,
            &mut io,
            &s,
            &f,
            pos,
            &[i as u8 + 2; 4096],
            KiocbFlags::DSYNC,
        );
    }
    assert_eq!(ops(&r.log()), vec![(WRITE, true); 64]);
    assert_eq!(s.counters().journal_commits, commits);
    assert!(s.stat(&f).unwrap().mtime >= mtime);
    // A 64 KiB overwrite of one extent is one command too.
    put(&r, &mut io, &s, &f, 0, &[7; 65536], KiocbFlags::DSYNC);
    assert_eq!(ops(&r.log()), vec![(WRITE, true)]);
    assert_eq!(s.counters().journal_commits, commits);
    assert_clean(&mut io, &s);
}

#[test]
fn a_dsync_overwrite_of_uncommitted_blocks_commits_them_and_survives_reopen() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    // Allocated and converted, but nothing committed yet.
    put(&r, &mut io, &s, &f, 0, &[1; 8192], KiocbFlags::empty());
    let commits = s.counters().journal_commits;
    put(&r, &mut io, &s, &f, 4096, &[5; 4096], KiocbFlags::DSYNC);
    assert!(s.counters().journal_commits > commits, "no journal commit");
    drop((f, s));
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    let f = s.open_file("f").unwrap();
    let got = get(&r, &mut io, &s, &f, 4096, 4096);
    assert!(got == vec![5; 4096], "the O_DSYNC overwrite is not there");
    assert_clean(&mut io, &s);
}

/// Bytes a read of `len` at `pos` returns (the read stops at EOF).
fn read_len(r: &Rig, io: &mut Io, s: &Store, f: &store::File, pos: u64, len: usize) -> usize {
    let mut it = IovIter::new(vec![r.buf(len)]);
    s.read(io, f, &mut Kiocb::new(pos, KiocbFlags::empty()), &mut it)
        .unwrap()
}

#[test]
fn reads_stop_at_each_new_size_at_once() {
    // The data path reads the size without the file's lock: every size change
    // (extending write, preallocate, truncate, clone) must be seen by the next read.
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    assert_eq!(read_len(&r, &mut io, &s, &f, 0, 65536), 0);
    put(&r, &mut io, &s, &f, 0, &[1; 8192], KiocbFlags::DSYNC);
    assert_eq!(read_len(&r, &mut io, &s, &f, 0, 65536), 8192);
    put(&r, &mut io, &s, &f, 8192, &[2; 4096], KiocbFlags::empty());
    assert_eq!(read_len(&r, &mut io, &s, &f, 0, 65536), 12288);
    s.preallocate(&mut io, &f, 0, 20480).unwrap();
    assert_eq!(read_len(&r, &mut io, &s, &f, 0, 65536), 20480);
    s.truncate(&mut io, &f, 6144).unwrap();
    assert_eq!(read_len(&r, &mut io, &s, &f, 0, 65536), 6144);
    assert_eq!(s.stat(&f).unwrap().size, 6144);
    let g = s.create(&mut io, "g").unwrap();
    s.clone_range(&mut io, &f, 0, &g, 8192, 4096).unwrap();
    assert_eq!(read_len(&r, &mut io, &s, &g, 0, 65536), 12288);
    assert_eq!(get(&r, &mut io, &s, &g, 8192, 4096), vec![1; 4096]);
    assert_clean(&mut io, &s);
}
