//! Power cuts, torn and corrupted metadata, and threads.

mod common;

use std::collections::BTreeSet;

use common::*;
use dio::providers::RawNamespace;
use dio::{IovIter, Kiocb, KiocbFlags, NoHooks};
use store::{Store, StoreError};

/// Overwrites `len` bytes at namespace byte `addr` with `byte`, durably.
fn smash(r: &Rig, io: &mut Io, addr: u64, len: usize, byte: u8) {
    let b = r.buf(len);
    b.fill(0, len, byte).unwrap();
    let raw = RawNamespace::new(io.dio().caps());
    let mut it = IovIter::new(vec![b]);
    io.dio()
        .write(
            &mut Kiocb::new(addr, KiocbFlags::DSYNC),
            &mut it,
            &raw,
            &NoHooks,
        )
        .unwrap();
}

#[test]
fn a_corrupted_journal_is_ignored_and_the_checkpoint_state_opens_clean() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    put(&r, &mut io, &s, &f, 0, &[1; 4096], KiocbFlags::DSYNC);
    assert!(s.counters().journal_commits > 0);
    let g = s.geometry();
    drop((f, s));
    // Flip every journal block's last byte: each block's checksum fails.
    for i in 0..g.journal_blocks {
        let addr = g.addr(g.journal_start() + i) + u64::from(g.block_size) - 512;
        smash(&r, &mut io, addr, 512, 0x5a);
    }
    let rep = Store::check(&mut io, REGION).unwrap();
    assert_eq!(rep.journal_transactions, 0);
    assert!(rep.is_clean(), "{:?}", rep.problems);
    let s = Store::open(&mut io, REGION).unwrap();
    assert!(matches!(s.open_file("f"), Err(StoreError::NotFound { .. })));
    assert_clean(&mut io, &s);
}

#[test]
fn a_torn_transaction_tail_is_discarded() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    // One transaction of several blocks: many creates, then a commit.
    for i in 0..200 {
        s.create(&mut io, &format!("file-with-a-long-name-{i:04}"))
            .unwrap();
    }
    s.sync(&mut io).unwrap();
    let g = s.geometry();
    drop(s);
    let rep = Store::check(&mut io, REGION).unwrap();
    assert!(rep.journal_transactions >= 1);
    // Tear it: its last (commit) block is lost. Find the transaction's blocks
    // by trying each journal block until replay changes.
    let mut torn = false;
    for i in (0..g.journal_blocks).rev() {
        let addr = g.addr(g.journal_start() + i);
        let before = Store::check(&mut io, REGION).unwrap().journal_transactions;
        let raw = RawNamespace::new(io.dio().caps());
        let mut save = IovIter::new(vec![r.buf(4096)]);
        io.dio()
            .read(
                &mut Kiocb::new(addr, KiocbFlags::empty()),
                &mut save,
                &raw,
                &NoHooks,
            )
            .unwrap();
        smash(&r, &mut io, addr, 4096, 0);
        let after = Store::check(&mut io, REGION).unwrap();
        if after.journal_transactions < before {
            assert!(after.is_clean());
            torn = true;
            break;
        }
    }
    assert!(torn, "no journal block mattered");
    let s = Store::open(&mut io, REGION).unwrap();
    // All or nothing: the torn transaction's creates are all gone.
    assert!(
        s.list().is_empty() || s.list().len() == 200,
        "{}",
        s.list().len()
    );
    assert!(s.list().is_empty());
    assert_clean(&mut io, &s);
}

#[test]
fn a_corrupted_superblock_or_both_checkpoints_are_refused_with_typed_errors() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let g = s.geometry();
    drop(s);
    smash(&r, &mut io, g.addr(g.checkpoint_start(0)), 512, 0x77);
    // One bad checkpoint: the other opens.
    let s = Store::open(&mut io, REGION).unwrap();
    drop(s);
    smash(&r, &mut io, g.addr(g.checkpoint_start(0)), 512, 0x77);
    smash(&r, &mut io, g.addr(g.checkpoint_start(1)), 512, 0x77);
    assert!(matches!(
        Store::open(&mut io, REGION),
        Err(StoreError::NoCheckpoint { .. })
    ));
    smash(&r, &mut io, g.addr(0), 512, 0x33);
    let e = Store::open(&mut io, REGION).unwrap_err();
    assert!(matches!(e, StoreError::BadSuperblock { .. }), "{e}");
}

#[test]
fn fsck_is_clean_and_counts_the_shared_blocks_of_a_clone() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let f = s.create(&mut io, "f").unwrap();
    put(&r, &mut io, &s, &f, 0, &[1; 4096], KiocbFlags::DSYNC);
    assert_clean(&mut io, &s);
    let a = s.create(&mut io, "g").unwrap();
    let b = s.create(&mut io, "h").unwrap();
    put(&r, &mut io, &s, &a, 0, &[2; 4096], KiocbFlags::empty());
    s.clone_range(&mut io, &a, 0, &b, 0, 4096).unwrap();
    let rep = s.fsck(&mut io).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.shared_blocks, 1);
    assert_eq!(rep.files, 3);
}

#[test]
fn two_threads_write_different_files_and_one_file_at_different_ranges() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let shared = s.create(&mut io, "shared").unwrap();
    std::thread::scope(|sc| {
        for t in 0..2u8 {
            let (r, s, shared) = (&r, &s, &shared);
            sc.spawn(move || {
                let mut io = r.io();
                let own = s.create(&mut io, &format!("own{t}")).unwrap();
                for i in 0..32u64 {
                    let flags = if i % 3 == 0 {
                        KiocbFlags::DSYNC
                    } else {
                        KiocbFlags::empty()
                    };
                    put(r, &mut io, s, &own, i * 4096, &[t + 1; 4096], flags);
                    put(
                        r,
                        &mut io,
                        s,
                        shared,
                        (i * 2 + u64::from(t)) * 4096,
                        &[t + 10; 4096],
                        flags,
                    );
                }
                s.fsync(&mut io, &own).unwrap();
            });
        }
    });
    s.fsync(&mut io, &shared).unwrap();
    drop(s);
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    for t in 0..2u8 {
        let own = s.open_file(&format!("own{t}")).unwrap();
        assert!(get(&r, &mut io, &s, &own, 0, 32 * 4096) == vec![t + 1; 32 * 4096]);
    }
    let sh = s.open_file("shared").unwrap();
    let got = get(&r, &mut io, &s, &sh, 0, 64 * 4096);
    for (i, blk) in got.chunks(4096).enumerate() {
        assert!(blk.iter().all(|&x| x == 10 + (i % 2) as u8), "block {i}");
    }
    assert_clean(&mut io, &s);
}

/// Tiny xorshift generator: deterministic workloads from a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const BLOCKS: u64 = 16;

/// One random single-thread workload cut at a random point; checks that every
/// block acknowledged durable reads back byte for byte and that no block shows
/// a value its file was never given.
fn crash_run(seed: u64) {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let mut rng = Rng(seed);
    let files: Vec<_> = (0..2)
        .map(|i| s.create(&mut io, &format!("f{i}")).unwrap())
        .collect();
    for f in &files {
        s.fsync(&mut io, f).unwrap();
    }
    // Per file and block: the values the block may hold after a crash, and
    // the latest value written.
    let mut ok: Vec<Vec<BTreeSet<u8>>> = vec![vec![BTreeSet::from([0]); BLOCKS as usize]; 2];
    let mut latest = vec![vec![0u8; BLOCKS as usize]; 2];
    let cut = rng.below(40);
    for op in 0..cut {
        let fi = rng.below(2) as usize;
        let f = &files[fi];
        match rng.below(10) {
            0..=6 => {
                let blk = rng.below(BLOCKS);
                let v = (seed as u8).wrapping_mul(31).wrapping_add(op as u8) | 1;
                let flags = match rng.below(3) {
                    0 => KiocbFlags::DSYNC,
                    1 => KiocbFlags::DSYNC | KiocbFlags::SYNC,
                    _ => KiocbFlags::empty(),
                };
                put(&r, &mut io, &s, f, blk * 4096, &[v; 4096], flags);
                let b = blk as usize;
                latest[fi][b] = v;
                if flags.is_empty() {
                    ok[fi][b].insert(v);
                } else {
                    ok[fi][b] = BTreeSet::from([v]);
                }
            }
            7 => {
                s.fsync(&mut io, f).unwrap();
                for b in 0..BLOCKS as usize {
                    ok[fi][b] = BTreeSet::from([latest[fi][b]]);
                }
            }
            _ => {
                // Punch a block: it may read zeros or its old contents until durable.
                let blk = rng.below(BLOCKS) as usize;
                s.punch_hole(&mut io, f, blk as u64 * 4096, 4096).unwrap();
                latest[fi][blk] = 0;
                ok[fi][blk].insert(0);
            }
        }
    }
    drop(s);
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let rep = s.fsck(&mut io).unwrap();
    assert!(rep.is_clean(), "seed {seed}: {:?}", rep.problems);
    for (fi, allowed) in ok.iter().enumerate() {
        let f = s.open_file(&format!("f{fi}")).unwrap();
        let got = get(&r, &mut io, &s, &f, 0, (BLOCKS * 4096) as usize);
        for (b, blk) in got.chunks(4096).enumerate() {
            let v = blk[0];
            assert!(
                blk.iter().all(|&x| x == v),
                "seed {seed}: file {fi} block {b} is torn"
            );
            assert!(
                allowed[b].contains(&v),
                "seed {seed}: file {fi} block {b} holds {v:#x}, allowed {:?}",
                allowed[b]
            );
        }
    }
}

#[test]
fn acknowledged_data_survives_a_hundred_random_power_cuts() {
    for seed in 1..=100u64 {
        crash_run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

#[test]
fn a_failed_journal_write_shuts_the_store_down_instead_of_acknowledging_lost_records() {
    use nvme::spec::{Status, StatusCodeType};
    use nvme_emu::{CommandMatch, FaultAction};
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let g = s.geometry();
    s.create(&mut io, "f").unwrap();
    let lba = |b: u64| g.addr(b) / 512;
    let status = Status::from_parts(StatusCodeType::MediaAndDataIntegrity, 0x80).with_dnr(true);
    r.emu.faults().inject(
        CommandMatch {
            lbas: Some(lba(g.journal_start())..lba(g.data_start())),
            ..CommandMatch::io_opcode(WRITE)
        },
        FaultAction::Fail(status),
        None,
    );
    assert!(matches!(s.sync(&mut io), Err(StoreError::Io { .. })));
    r.emu.faults().clear();
    // The create's record was taken by the failed commit: a later sync must
    // not report it durable.
    assert!(matches!(s.sync(&mut io), Err(StoreError::ShutDown)));
    let f = s.open_file("f").unwrap();
    assert!(matches!(s.fsync(&mut io, &f), Err(StoreError::ShutDown)));
    drop((f, s));
    r.emu.power_cut();
    let s = Store::open(&mut io, REGION).unwrap();
    assert!(s.list().is_empty());
    assert_clean(&mut io, &s);
}

#[test]
fn a_block_unshared_by_an_unlink_not_yet_durable_is_still_copied_on_write() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut io = r.io();
    let s = r.format(&mut io);
    let a = s.create(&mut io, "a").unwrap();
    let b = s.create(&mut io, "b").unwrap();
    put(&r, &mut io, &s, &a, 0, &[1; 4096], KiocbFlags::DSYNC);
    s.clone_range(&mut io, &a, 0, &b, 0, 4096).unwrap();
    s.sync(&mut io).unwrap();
    s.unlink(&mut io, "a").unwrap();
    // b's block is no longer shared in memory, but a still holds it on disk.
    put(&r, &mut io, &s, &b, 0, &[2; 4096], KiocbFlags::DSYNC);
    drop((a, b, s));
    r.emu.power_cut();
    let mut io = r.io();
    let s = Store::open(&mut io, REGION).unwrap();
    // Either the unlink is durable, or a keeps its own data (never b's).
    if let Ok(a) = s.open_file("a") {
        assert_eq!(get(&r, &mut io, &s, &a, 0, 4096), vec![1; 4096]);
    }
    let b = s.open_file("b").unwrap();
    assert_eq!(get(&r, &mut io, &s, &b, 0, 4096), vec![2; 4096]);
    assert_clean(&mut io, &s);
}
