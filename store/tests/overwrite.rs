//! The overwrite path: pure O_DSYNC overwrites stay one FUA write each, and
//! an overwrite of blocks whose metadata is not yet durable still commits it.

mod common;

use common::*;
use dio::KiocbFlags;
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
