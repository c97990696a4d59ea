//! The store's operations, their persistence and their command counts on the
//! emulated controller.

mod common;

use common::*;
use dio::KiocbFlags;
use store::{Store, StoreError};

#[test]
fn format_then_open_finds_an_empty_clean_store() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    assert!(s.list().is_empty());
    assert_clean(&mut io, &s);
    let uuid = s.uuid();
    drop(s);
    let s = Store::open(&mut r.io(), REGION).unwrap();
    assert_eq!(s.uuid(), uuid);
    assert!(s.list().is_empty());
}

#[test]
fn every_operation_persists_across_close_and_reopen() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let a = s.create(&mut io, "a").unwrap();
    put(&r, &mut io, &s, &a, 0, &[1; 16384], KiocbFlags::empty());
    let b = s.create(&mut io, "b").unwrap();
    put(&r, &mut io, &s, &b, 0, &[2; 8192], KiocbFlags::empty());
    s.clone_range(&mut io, &a, 0, &b, 8192, 8192).unwrap();
    s.preallocate(&mut io, &a, 16384, 8192).unwrap();
    s.punch_hole(&mut io, &a, 4096, 4096).unwrap();
    s.truncate(&mut io, &b, 12000).unwrap();
    let c = s.create(&mut io, "c").unwrap();
    put(&r, &mut io, &s, &c, 0, &[3; 4096], KiocbFlags::empty());
    s.rename(&mut io, "c", "d").unwrap();
    let e = s.create(&mut io, "e").unwrap();
    s.unlink(&mut io, "e").unwrap();
    drop(e);
    // Copy on write: b's shared blocks get new blocks; a keeps its data.
    put(&r, &mut io, &s, &b, 8192, &[4; 4096], KiocbFlags::empty());
    s.fsync(&mut io, &a).unwrap();
    assert!(
        get(&r, &mut io, &s, &a, 0, 4096) == vec![1; 4096],
        "a's data before reopen"
    );
    assert_clean(&mut io, &s);
    let before: Vec<_> = s.list();
    drop((a, b, c, s));

    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    let after = s.list();
    let strip = |v: &[store::FileStat]| -> Vec<(String, u64, u64)> {
        v.iter()
            .map(|f| (f.name.clone(), f.size, f.blocks))
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
    let names: Vec<_> = after.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    let a = s.open_file("a").unwrap();
    let b = s.open_file("b").unwrap();
    let d = s.open_file("d").unwrap();
    let mut want_a = vec![1u8; 16384];
    want_a[4096..8192].fill(0);
    want_a.extend([0; 8192]);
    assert!(get(&r, &mut io, &s, &a, 0, 24576) == want_a, "a's data");
    assert_eq!(s.stat(&a).unwrap().size, 24576);
    let mut want_b = vec![2u8; 8192];
    want_b.extend([4; 4096]);
    want_b.resize(16384, 0);
    let got_b = get(&r, &mut io, &s, &b, 0, 16384);
    let diff = got_b.iter().zip(&want_b).position(|(x, y)| x != y);
    assert!(
        diff.is_none(),
        "b differs at {diff:?}: {:?}",
        diff.map(|d| got_b[d])
    );
    // Truncated to 12000, then extended by the copy-on-write write to 12288.
    assert_eq!(s.stat(&b).unwrap().size, 12288);
    assert_eq!(get(&r, &mut io, &s, &d, 0, 4096), vec![3; 4096]);
    assert!(matches!(s.open_file("e"), Err(StoreError::NotFound { .. })));
    assert!(matches!(s.open_file("c"), Err(StoreError::NotFound { .. })));
    let ext = s.extents(&a).unwrap();
    assert!(ext.iter().any(|e| e.unwritten), "{ext:?}");
    assert_clean(&mut io, &s);
}

#[test]
fn dsync_pure_overwrite_is_exactly_one_fua_write_and_no_journal_io() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    put(&r, &mut io, &s, &f, 0, &[1; 8192], KiocbFlags::DSYNC);
    r.log();
    let commits = s.counters().journal_commits;
    put(&r, &mut io, &s, &f, 4096, &[9; 4096], KiocbFlags::DSYNC);
    assert_eq!(ops(&r.log()), vec![(WRITE, true)]);
    assert_eq!(s.counters().journal_commits, commits);
    assert_clean(&mut io, &s);
}

#[test]
fn dsync_allocating_write_is_data_write_flush_and_one_fua_journal_write() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    s.fsync(&mut io, &f).unwrap();
    r.log();
    let c0 = s.counters();
    put(&r, &mut io, &s, &f, 0, &[5; 4096], KiocbFlags::DSYNC);
    // Three commands: the data (no FUA: new blocks), the layer's flush, the
    // journal commit with FUA (the flush already made the data durable).
    assert_eq!(
        ops(&r.log()),
        vec![(WRITE, false), (FLUSH, false), (WRITE, true)]
    );
    let c1 = s.counters();
    assert_eq!(c1.journal_commits, c0.journal_commits + 1);
    assert_eq!(c1.fua_commands, c0.fua_commands + 1);
    assert_eq!(c1.flush_commands, c0.flush_commands);
    // Durable: survives a power cut.
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    let f = s.open_file("f").unwrap();
    assert_eq!(get(&r, &mut io, &s, &f, 0, 4096), vec![5; 4096]);
    assert_clean(&mut io, &s);
}

#[test]
fn an_unconverted_write_reads_as_zeros_after_a_power_cut() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    s.preallocate(&mut io, &f, 0, 8192).unwrap();
    s.fsync(&mut io, &f).unwrap();
    // The data reaches the device (made durable by a raw flush), but the
    // conversion is never committed.
    put(&r, &mut io, &s, &f, 0, &[7; 8192], KiocbFlags::empty());
    io.dio().flush().unwrap();
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    let f = s.open_file("f").unwrap();
    assert_eq!(s.stat(&f).unwrap().size, 8192);
    assert_eq!(get(&r, &mut io, &s, &f, 0, 8192), vec![0; 8192]);
    assert!(s.extents(&f).unwrap().iter().all(|e| e.unwritten));
    assert_clean(&mut io, &s);
}

#[test]
fn a_freed_block_given_to_another_file_never_shows_the_old_data_after_a_power_cut() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let old = s.create(&mut io, "old").unwrap();
    put(&r, &mut io, &s, &old, 0, &[0xee; 4096], KiocbFlags::DSYNC);
    let addr = s.extents(&old).unwrap()[0].addr;
    s.unlink(&mut io, "old").unwrap();
    s.sync(&mut io).unwrap();
    let new = s.create(&mut io, "new").unwrap();
    s.preallocate(&mut io, &new, 0, 4096).unwrap();
    assert_eq!(
        s.extents(&new).unwrap()[0].addr,
        addr,
        "the freed block is reused"
    );
    s.fsync(&mut io, &new).unwrap();
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    let new = s.open_file("new").unwrap();
    assert_eq!(get(&r, &mut io, &s, &new, 0, 4096), vec![0; 4096]);
    assert_clean(&mut io, &s);
}

#[test]
fn a_block_freed_by_an_uncommitted_unlink_is_not_reused() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let old = s.create(&mut io, "old").unwrap();
    put(&r, &mut io, &s, &old, 0, &[0xee; 4096], KiocbFlags::DSYNC);
    let addr = s.extents(&old).unwrap()[0].addr;
    s.unlink(&mut io, "old").unwrap();
    let new = s.create(&mut io, "new").unwrap();
    put(&r, &mut io, &s, &new, 0, &[0x11; 4096], KiocbFlags::empty());
    assert_ne!(s.extents(&new).unwrap()[0].addr, addr);
    assert_clean(&mut io, &s);
}

#[test]
fn fdatasync_skips_a_commit_of_times_only_and_fsync_makes_it() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    put(&r, &mut io, &s, &f, 0, &[1; 4096], KiocbFlags::DSYNC);
    put(&r, &mut io, &s, &f, 0, &[2; 4096], KiocbFlags::empty());
    let c = s.counters().journal_commits;
    s.fdatasync(&mut io, &f).unwrap();
    assert_eq!(s.counters().journal_commits, c);
    s.fsync(&mut io, &f).unwrap();
    assert_eq!(s.counters().journal_commits, c + 1);
}

#[test]
fn names_are_checked_and_unique() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    s.create(&mut io, "x").unwrap();
    assert!(matches!(
        s.create(&mut io, "x"),
        Err(StoreError::Exists { .. })
    ));
    assert!(matches!(
        s.create(&mut io, ""),
        Err(StoreError::Invalid { .. })
    ));
    let long = "n".repeat(256);
    assert!(matches!(
        s.create(&mut io, &long),
        Err(StoreError::Invalid { .. })
    ));
    s.create(&mut io, &"n".repeat(255)).unwrap();
    s.create(&mut io, "y").unwrap();
    s.rename(&mut io, "y", "x").unwrap();
    assert_eq!(s.list().len(), 2);
    assert_clean(&mut io, &s);
}
