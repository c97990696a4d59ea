//! Compare and the fused Compare and Write through the queue pair.

mod common;

use std::time::Duration;

use common::*;
use nvme::spec::status::{GenericStatus as G, MediaStatus as M};
use nvme::spec::Status;
use nvme::transport::emu::EmuTransport;
use nvme::{
    CompareAndWrite, DmaBuffer, Error, IoFlags, IoOptions, IoQueuePair, PrpRule, QueuePairOptions,
};

fn queue(rig: &Rig, depth: u16) -> IoQueuePair<EmuTransport> {
    rig.ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth,
            ..QueuePairOptions::default()
        })
        .unwrap()
}

/// Waits for every outstanding command; returns each completion's context and result.
fn drain(qp: &mut IoQueuePair<EmuTransport>) -> Vec<(u64, Result<(), Error>)> {
    let mut out = Vec::new();
    while qp.outstanding() > 0 {
        qp.wait_completions(16, Duration::from_secs(2), |ctx, r| out.push((ctx, r)))
            .unwrap();
    }
    out.sort_by_key(|(ctx, _)| *ctx);
    out
}

fn write(qp: &mut IoQueuePair<EmuTransport>, slba: u64, buf: &DmaBuffer, blocks: u32) {
    qp.write_sync(1, slba, blocks, buf, IoFlags::empty())
        .unwrap();
}

fn code(s: Status) -> (u8, u8) {
    (s.sct().into_bits(), s.sc())
}

#[test]
fn compare_matches_the_written_blocks_and_names_a_mismatch() {
    let rig = rig("size=1M");
    let mut qp = queue(&rig, 16);
    let data = patterned(&rig.ctrl, 4 * 512, 3);
    write(&mut qp, 20, &data, 4);
    qp.compare_sync(1, 20, 4, &data, &IoOptions::default())
        .unwrap();
    let mut other = patterned(&rig.ctrl, 4 * 512, 3);
    other.write(1500, &[!pattern_byte(3, 1500)]).unwrap();
    let err = qp
        .compare_sync(1, 20, 4, &other, &IoOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::CompareFailure { .. }), "{err:?}");
    assert_eq!(
        err.status().map(code),
        Some(code(Status::media(M::CompareFailure)))
    );
    assert_eq!(
        err.to_string(),
        "compare of 4 blocks at LBA 0x14 on namespace 1: the blocks on the device differ \
         from the buffer (Compare Failure (SCT 0x2, SC 0x85))"
    );
}

#[test]
fn compare_buffers_follow_the_read_rules_and_a_wrong_size_submits_nothing() {
    let rig = rig("size=1M,ms=8,mset=ext");
    let mut qp = queue(&rig, 16);
    let data = patterned(&rig.ctrl, 2 * 520, 5);
    write(&mut qp, 0, &data, 2);
    // Extended LBAs: data and metadata are both compared.
    qp.compare_sync(1, 0, 2, &data, &IoOptions::default())
        .unwrap();
    let mut md_differs = patterned(&rig.ctrl, 2 * 520, 5);
    md_differs.write(1035, &[!pattern_byte(5, 1035)]).unwrap();
    let err = qp
        .compare_sync(1, 0, 2, &md_differs, &IoOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::CompareFailure { .. }), "{err:?}");
    let before = qp.stats().submitted;
    let seg = data.segment(0, 2 * 512).unwrap();
    let err = qp
        .submit_compare(1, 0, 2, &[seg], &IoOptions::default(), 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSegment {
                rule: PrpRule::LengthMismatch,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(qp.stats().submitted, before);
    assert_eq!(qp.outstanding(), 0);
}

#[test]
fn compare_with_pract_on_a_pi_namespace_takes_data_only() {
    for pi in 1..=3 {
        let rig = rig(&format!("size=1M,ms=8,mset=sep,pi={pi}"));
        let mut qp = queue(&rig, 16);
        let pract = IoOptions {
            flags: IoFlags::PRACT,
            ..IoOptions::default()
        };
        let data = patterned(&rig.ctrl, 3 * 512, 7);
        qp.write_sync(1, 9, 3, &data, IoFlags::PRACT).unwrap();
        qp.compare_sync(1, 9, 3, &data, &pract).unwrap();
        let mut other = patterned(&rig.ctrl, 3 * 512, 7);
        other.write(0, &[!pattern_byte(7, 0)]).unwrap();
        let err = qp.compare_sync(1, 9, 3, &other, &pract).unwrap_err();
        assert!(
            matches!(err, Error::CompareFailure { .. }),
            "pi={pi}: {err:?}"
        );
    }
}

/// Queues a Compare and Write of `blocks` blocks at `slba` (contexts 1 and 2).
fn submit_pair(
    qp: &mut IoQueuePair<EmuTransport>,
    slba: u64,
    blocks: u32,
    expected: &DmaBuffer,
    new: &DmaBuffer,
) -> Result<(), Error> {
    let (e, n) = (expected.as_segment(), new.as_segment());
    let op = CompareAndWrite {
        nsid: 1,
        slba,
        blocks,
        compare: &[e],
        compare_options: IoOptions::default(),
        write: &[n],
        write_options: IoOptions::default(),
    };
    qp.submit_compare_and_write(&op, 1, 2)
}

#[test]
fn compare_and_write_replaces_matching_blocks() {
    let rig = rig("size=1M");
    let mut qp = queue(&rig, 16);
    let old = patterned(&rig.ctrl, 2 * 512, 1);
    let new = patterned(&rig.ctrl, 2 * 512, 2);
    write(&mut qp, 4, &old, 2);
    submit_pair(&mut qp, 4, 2, &old, &new).unwrap();
    let done = drain(&mut qp);
    assert_eq!(done.len(), 2, "one completion per command");
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
    let mut back = rig.ctrl.allocator().alloc(2 * 512, 4096).unwrap();
    qp.read_sync(1, 4, 2, &mut back).unwrap();
    assert_eq!(contents(&back), contents(&new));
}

#[test]
fn failed_compare_aborts_the_write_with_typed_errors_and_keeps_the_data() {
    let rig = rig("size=1M");
    let mut qp = queue(&rig, 16);
    let old = patterned(&rig.ctrl, 512, 1);
    let stale = patterned(&rig.ctrl, 512, 9);
    let new = patterned(&rig.ctrl, 512, 2);
    write(&mut qp, 0, &old, 1);
    submit_pair(&mut qp, 0, 1, &stale, &new).unwrap();
    let done = drain(&mut qp);
    let (compare, write) = (&done[0], &done[1]);
    assert!(
        matches!(compare, (1, Err(Error::CompareFailure { .. }))),
        "{compare:?}"
    );
    let Err(e) = &write.1 else {
        panic!("the write must fail")
    };
    assert!(matches!(e, Error::FusedCommandAborted { .. }), "{e:?}");
    assert_eq!(
        e.status().map(code),
        Some(code(Status::generic(G::CommandAbortedFailedFused)))
    );
    assert!(e.to_string().starts_with("write of 1 block at LBA 0x0 on namespace 1 was not executed: Command Aborted due to Failed Fused Command"), "{e}");
    let mut back = rig.ctrl.allocator().alloc(512, 4096).unwrap();
    qp.read_sync(1, 0, 1, &mut back).unwrap();
    assert_eq!(contents(&back), contents(&old));
}

#[test]
fn without_fuses_the_pair_is_refused_and_nothing_is_submitted() {
    let rig = rig("size=1M,fuses=off");
    let mut qp = queue(&rig, 16);
    let a = patterned(&rig.ctrl, 512, 1);
    let err = submit_pair(&mut qp, 0, 1, &a, &a).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("FUSES"), "{err}");
    assert_eq!((qp.stats().submitted, qp.outstanding()), (0, 0));
    // Compare alone is still offered.
    qp.compare_sync(
        1,
        0,
        1,
        &rig.ctrl.allocator().alloc(512, 4096).unwrap(),
        &IoOptions::default(),
    )
    .unwrap();
}

#[test]
fn a_pair_needs_two_free_slots_and_a_refused_pair_submits_nothing() {
    let rig = rig("size=1M,log=on");
    let mut qp = queue(&rig, 4); // 3 commands at most
    let a = patterned(&rig.ctrl, 512, 1);
    let seg = a.as_segment();
    let scratch = rig.ctrl.allocator().alloc(512, 4096).unwrap();
    qp.submit_read(1, 0, 1, &[scratch.as_segment()], 7).unwrap();
    qp.submit_read(1, 1, 1, &[scratch.as_segment()], 8).unwrap();
    let err = submit_pair(&mut qp, 0, 1, &a, &a).unwrap_err();
    assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    assert_eq!(qp.outstanding(), 2);
    drain(&mut qp);
    // A second half that does not fit its command takes the first back with it.
    let short = a.segment(0, 256).unwrap();
    let op = CompareAndWrite {
        nsid: 1,
        slba: 0,
        blocks: 1,
        compare: &[seg],
        compare_options: IoOptions::default(),
        write: &[short],
        write_options: IoOptions::default(),
    };
    let log = rig.emu.command_log();
    log.clear();
    let before = qp.stats().submitted;
    let err = qp.submit_compare_and_write(&op, 1, 2).unwrap_err();
    assert!(matches!(err, Error::BadSegment { .. }), "{err:?}");
    assert_eq!((qp.stats().submitted, qp.outstanding()), (before, 0));
    qp.ring();
    // The queue carries on with nothing half-submitted.
    qp.compare_sync(1, 0, 1, &a, &IoOptions::default())
        .unwrap_err();
    assert_eq!(
        log.io_entries().len(),
        1,
        "only the Compare after the refusal ran"
    );
}

#[test]
fn a_pair_at_the_end_of_the_queue_wraps_to_slot_0_and_is_rung_once() {
    let rig = rig("size=1M,log=on");
    let mut qp = queue(&rig, 4);
    let old = patterned(&rig.ctrl, 512, 1);
    let new = patterned(&rig.ctrl, 512, 2);
    // Three commands leave the tail at slot 3, the last.
    write(&mut qp, 0, &old, 1);
    write(&mut qp, 0, &old, 1);
    write(&mut qp, 0, &old, 1);
    let rings = qp.stats().doorbell_writes;
    submit_pair(&mut qp, 0, 1, &old, &new).unwrap();
    qp.ring();
    assert_eq!(
        qp.stats().doorbell_writes,
        rings + 1,
        "one doorbell write for the pair"
    );
    let done = drain(&mut qp);
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
    let mut pair: Vec<_> = rig
        .emu
        .command_log()
        .entries()
        .into_iter()
        .filter(|e| e.fuse != 0)
        .collect();
    pair.sort_by_key(|e| e.fuse);
    assert_eq!(
        pair.iter()
            .map(|e| (e.opcode, e.fuse, e.sq_slot))
            .collect::<Vec<_>>(),
        vec![(0x05, 1, 3), (0x01, 2, 0)]
    );
}

#[test]
fn a_fused_pair_described_by_sgls_runs_like_one_described_by_prps() {
    let rig = rig("size=1M,log=on");
    let mut qp = rig
        .ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth: 16,
            sgl: nvme::SglMode::Always,
            ..QueuePairOptions::default()
        })
        .unwrap();
    let old = patterned(&rig.ctrl, 2 * 512, 1);
    let new = patterned(&rig.ctrl, 2 * 512, 2);
    write(&mut qp, 8, &old, 2);
    submit_pair(&mut qp, 8, 2, &old, &new).unwrap();
    let done = drain(&mut qp);
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
    let entries = rig.emu.command_log().io_entries();
    assert!(
        entries
            .iter()
            .rev()
            .take(2)
            .all(|e| e.psdt != nvme::spec::command::Psdt::Prp),
        "{entries:?}"
    );
    let mut back = rig.ctrl.allocator().alloc(2 * 512, 4096).unwrap();
    qp.read_sync(1, 8, 2, &mut back).unwrap();
    assert_eq!(contents(&back), contents(&new));
}

#[test]
fn a_compare_above_mdts_is_split_and_completes_once() {
    // mdts=1: 8 KiB per command, so a 256 KiB compare is 32 children.
    let rig = rig("size=4M,mdts=1,log=on");
    let mut qp = queue(&rig, 64);
    let data = patterned(&rig.ctrl, 512 * 512, 4);
    qp.write_sync(1, 64, 512, &data, IoFlags::empty()).unwrap();
    rig.emu.command_log().clear();
    qp.compare_sync(1, 64, 512, &data, &IoOptions::default())
        .unwrap();
    let compares = rig
        .emu
        .command_log()
        .io_entries()
        .iter()
        .filter(|e| e.opcode == 0x05)
        .count();
    assert_eq!(compares, 32);
    // One differing block in the 20th child: one completion, the Compare Failure.
    let mut other = patterned(&rig.ctrl, 512 * 512, 4);
    other.write(19 * 8192 + 100, &[0x5a]).unwrap();
    qp.submit_compare(1, 64, 512, &[other.as_segment()], &IoOptions::default(), 7)
        .unwrap();
    qp.ring();
    let done = drain(&mut qp);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        matches!(done[0], (7, Err(Error::CompareFailure { .. }))),
        "{done:?}"
    );
}

#[test]
fn the_fused_write_with_pract_stores_the_reference_tags_of_its_lbas() {
    let rig = rig("size=1M,lba=512,ms=8,mset=ext,pi=1");
    let mut qp = queue(&rig, 16);
    let old = patterned(&rig.ctrl, 2 * 512, 1);
    let new = patterned(&rig.ctrl, 2 * 512, 2);
    qp.write_sync(1, 40, 2, &old, IoFlags::PRACT).unwrap();
    let pract = IoOptions {
        flags: IoFlags::PRACT,
        ..IoOptions::default()
    };
    let (e, n) = (old.as_segment(), new.as_segment());
    let op = CompareAndWrite {
        nsid: 1,
        slba: 40,
        blocks: 2,
        compare: &[e],
        compare_options: pract,
        write: &[n],
        write_options: pract,
    };
    qp.submit_compare_and_write(&op, 1, 2).unwrap();
    qp.ring();
    let done = drain(&mut qp);
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
    // Read back with the tuples: the controller inserted the LBAs' reference tags.
    let mut back = rig.ctrl.allocator().alloc(2 * 520, 4096).unwrap();
    qp.read_sync(1, 40, 2, &mut back).unwrap();
    let got = contents(&back);
    for (i, block) in got.chunks(520).enumerate() {
        assert_eq!(&block[..512], &contents(&new)[i * 512..(i + 1) * 512]);
        let pi = nvme::spec::pi::Pi8::read(&block[512..]).unwrap();
        assert_eq!(pi.ref_tag.get(), 40 + i as u32, "block {i}");
    }
}
