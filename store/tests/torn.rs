//! Torn journal transactions: a power cut in the middle of a multi-block
//! journal write.
//!
//! On a device without FUA a commit is a plain write of the transaction's
//! blocks and then a Flush. Here the Flush fails (the power went before it
//! completed) and the emulated controller's partial power cut keeps any subset
//! of the transaction's logical blocks, so the journal holds a transaction
//! torn at 512-byte granularity: blocks missing in the middle, the commit
//! record there or not. Open must replay the transactions before it and
//! discard the torn one whole.

mod common;

use std::time::Duration;

use common::{boot, Io, FLUSH, WRITE};
use dio::{IovIter, Kiocb, KiocbFlags};
use nvme::spec::{Status, StatusCodeType};
use nvme::transport::emu::EmuTransport;
use nvme_emu::{CommandMatch, FaultAction};
use store::{FormatOptions, Region, Store, StoreError};

const REGION: Region = common::REGION;
const LBA: usize = 512;
/// Files created in the transaction that gets torn (several journal blocks).
const TORN_FILES: usize = 400;

fn name(i: usize) -> String {
    format!("torn-transaction-file-with-a-long-name-{i:04}")
}

/// How one torn commit came out, in logical blocks of the journal write.
#[derive(Debug)]
struct Tear {
    /// The first logical block of the transaction's last store block: the
    /// commit record's header.
    commit: usize,
    /// The logical blocks the write changed (unused tails of zeros did not).
    changed: Vec<usize>,
    /// Of those, the ones that reached the medium.
    kept: Vec<usize>,
}

/// Formats a store on a device without FUA, makes one transaction durable,
/// then commits `TORN_FILES` creates whose Flush fails and cuts the power
/// with `power_cut_partial(seed, keep_permille)`; checks what open recovers.
fn torn_commit(seed: u64, keep_permille: u16) -> Tear {
    let emu = EmuTransport::from_name("emu:size=16M,lba=512,vwc=on")
        .unwrap()
        .emu()
        .clone();
    let r = boot(&emu, Duration::from_secs(2), false);
    let mut io = r.io();
    let s = Store::format(&mut io, REGION, &FormatOptions::default()).unwrap();
    let g = s.geometry();
    let f = s.create(&mut io, "durable").unwrap();
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    let b = r.buf(data.len());
    b.write(0, &data).unwrap();
    let mut it = IovIter::new(vec![b]);
    s.write(&mut io, &f, &mut Kiocb::new(0, KiocbFlags::DSYNC), &mut it)
        .unwrap();
    s.fsync(&mut io, &f).unwrap();
    drop(f);
    assert_eq!(emu.cached_blocks(1), Some(0), "all durable so far");

    let journal_addr = g.addr(g.journal_start());
    let journal_len = g.journal_blocks as usize * g.block_size as usize;
    let old = r.raw(&mut io, journal_addr, journal_len);
    let replayed = Store::check(&mut io, REGION).unwrap().journal_transactions;
    assert!(replayed > 0, "the durable state is in the journal");
    for i in 0..TORN_FILES {
        s.create(&mut io, &name(i)).unwrap();
    }
    let log = emu.command_log();
    log.enable();
    let status = Status::from_parts(StatusCodeType::Generic, 0x06).with_dnr(true);
    emu.faults().inject(
        CommandMatch::io_opcode(FLUSH),
        FaultAction::Fail(status),
        None,
    );
    let e = s.sync(&mut io).unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");
    assert!(
        matches!(s.sync(&mut io), Err(StoreError::ShutDown)),
        "a failed commit shuts the store down"
    );
    let writes: Vec<_> = log
        .take()
        .into_iter()
        .filter(|e| e.qid != 0 && e.opcode == WRITE)
        .collect();
    assert_eq!(writes.len(), 1, "one journal write: {writes:?}");
    let w = writes[0];
    assert!(!w.fua, "no FUA on this device");
    let n = w.blocks as usize;
    assert!(n >= 4 * 8, "a multi-block transaction: {n} logical blocks");
    assert_eq!(
        emu.cached_blocks(1),
        Some(n),
        "only the journal write is cached"
    );
    // What the journal write put there (reads see the cache).
    let new = r.raw(&mut io, journal_addr, journal_len);
    // The power goes before the controller's shutdown would flush.
    let kept_count = emu.power_cut_partial(seed, keep_permille);
    drop(s);
    drop(io);
    drop(r);
    emu.faults().clear();
    emu.function_reset();
    let r = boot(&emu, Duration::from_secs(2), false);
    let mut io = r.io();
    let after = r.raw(&mut io, journal_addr, journal_len);
    let first = (w.slba - journal_addr / LBA as u64) as usize;
    let (mut changed, mut kept) = (Vec::new(), Vec::new());
    for k in 0..n {
        let at = (first + k) * LBA..(first + k + 1) * LBA;
        if new[at.clone()] == old[at.clone()] {
            assert_eq!(after[at.clone()], old[at]);
            continue;
        }
        changed.push(k);
        if after[at.clone()] == new[at.clone()] {
            kept.push(k);
        } else {
            assert_eq!(
                after[at.clone()],
                old[at],
                "journal LBA {k} is neither old nor new"
            );
        }
    }
    assert!(kept.len() <= kept_count);

    let rep = Store::check(&mut io, REGION).unwrap();
    assert!(rep.is_clean(), "seed {seed:#x}: {:?}", rep.problems);
    let whole = kept_count == n;
    assert_eq!(rep.journal_transactions, replayed + u64::from(whole));
    let s = Store::open(&mut io, REGION).unwrap();
    common_clean(&mut io, &s);
    let listed = s.list().len();
    if whole {
        // Nothing was lost: the transaction is whole and replays whole.
        assert_eq!(listed, TORN_FILES + 1);
    } else {
        // All or nothing: not one of the torn transaction's creates.
        assert_eq!(
            listed, 1,
            "seed {seed:#x}: the torn transaction was trusted (kept {kept:?} of {n})"
        );
        assert!(matches!(
            s.open_file(&name(0)),
            Err(StoreError::NotFound { .. })
        ));
    }
    // The durable transaction before it is intact, byte for byte.
    let f = s.open_file("durable").unwrap();
    let mut it = IovIter::new(vec![r.buf(data.len())]);
    s.read(
        &mut io,
        &f,
        &mut Kiocb::new(0, KiocbFlags::empty()),
        &mut it,
    )
    .unwrap();
    let mut got = vec![0; data.len()];
    it.buffers()[0].read(0, &mut got).unwrap();
    assert_eq!(got, data);
    // The store works on: a new transaction commits and survives a full cut.
    s.create(&mut io, "after").unwrap();
    s.sync(&mut io).unwrap();
    drop(s);
    emu.power_cut();
    let s = Store::open(&mut io, REGION).unwrap();
    assert!(s.open_file("after").is_ok());
    common_clean(&mut io, &s);
    let per_block = g.block_size as usize / LBA;
    Tear {
        commit: n - per_block,
        changed,
        kept,
    }
}

fn common_clean(io: &mut Io, s: &Store) {
    let rep = s.fsck(io).unwrap();
    assert!(rep.is_clean(), "fsck: {:?}", rep.problems);
}

#[test]
fn a_journal_write_torn_in_any_subset_of_its_blocks_is_discarded_whole() {
    let mut tears = Vec::new();
    for (i, keep) in [100u16, 300, 500, 700, 900, 980].iter().enumerate() {
        for k in 0..4u64 {
            tears.push(torn_commit(0x7042_0000 + (i as u64) * 16 + k, *keep));
        }
    }
    // The seeds cover the cases that matter: the commit record (last block)
    // kept with blocks before it lost, the commit record lost with blocks
    // after a lost one kept, and nothing kept.
    let commit_kept_middle_lost = tears.iter().any(|t| {
        t.kept.contains(&t.commit)
            && t.changed
                .iter()
                .any(|c| c < &t.commit && !t.kept.contains(c))
    });
    let commit_lost_not_a_prefix = tears.iter().any(|t| {
        !t.kept.contains(&t.commit)
            && t.changed
                .iter()
                .any(|c| !t.kept.contains(c) && t.kept.iter().any(|k| k > c))
    });
    assert!(commit_kept_middle_lost, "{tears:?}");
    assert!(commit_lost_not_a_prefix, "{tears:?}");
}

#[test]
fn a_journal_write_cut_before_its_flush_with_nothing_kept_leaves_the_durable_state() {
    let t = torn_commit(1, 0);
    assert!(t.kept.is_empty());
}

#[test]
fn a_journal_write_kept_whole_by_the_cut_replays_whole() {
    let t = torn_commit(1, 1000);
    assert_eq!(t.kept, t.changed);
}
