//! SGL transfers through the queue pair on the emulated controller: every SglMode on
//! plain, extended-LBA and separate-metadata formats, buffers only an SGL can describe,
//! and buffers nothing can describe refused before submission.

mod common;

use std::time::Duration;

use common::*;
use nvme::spec::command::Psdt;
use nvme::transport::emu::EmuTransport;
use nvme::{
    DmaBuffer, DmaSegment, Error, IoFlags, IoOptions, IoQueuePair, PrpRule, QueuePairOptions,
    SglMode, SglRule,
};
use proptest::prelude::*;

fn pair(r: &Rig, sgl: SglMode) -> Result<IoQueuePair<EmuTransport>, Error> {
    r.ctrl.create_io_queue_pair(QueuePairOptions {
        depth: 16,
        sgl,
        ..QueuePairOptions::default()
    })
}

fn drain(qp: &mut IoQueuePair<EmuTransport>) -> Result<(), Error> {
    let mut status = Ok(());
    while qp.outstanding() > 0 {
        qp.wait_completions(16, Duration::from_secs(2), |_, s| {
            if s.is_err() && status.is_ok() {
                status = s;
            }
        })?;
    }
    status
}

/// Pieces of `len` bytes carved from `buf` at odd offsets with gaps between them, so
/// no piece after the first starts on a page and PRPs cannot describe the list.
fn odd_pieces(buf: &DmaBuffer, len: usize, piece: usize) -> Vec<DmaSegment> {
    let mut out = Vec::new();
    let (mut at, mut left) = (4usize, len);
    while left > 0 {
        let n = piece.min(left);
        out.push(buf.segment(at, n).unwrap());
        at += n + 12;
        left -= n;
    }
    out
}

fn read_pieces(buf: &DmaBuffer, pieces: &[DmaSegment]) -> Vec<u8> {
    let base = buf.as_segment().iova;
    let all = contents(buf);
    pieces
        .iter()
        .flat_map(|s| {
            let at = (s.iova - base) as usize;
            all[at..at + s.len].to_vec()
        })
        .collect()
}

/// Writes `blocks` blocks from odd pieces and reads them back into other odd pieces on
/// a queue pair with `mode`; returns the PSDT each command carried.
fn round_trip(device: &str, lba: usize, ms: usize, separate: bool, mode: SglMode) -> Vec<Psdt> {
    let r = rig(&format!("{device},log=on"));
    let mut qp = pair(&r, mode).unwrap();
    let blocks = 5u32;
    let block = if separate { lba } else { lba + ms };
    let len = blocks as usize * block;
    let src = patterned(&r.ctrl, len + 8192, 21);
    let mut dst = r.ctrl.allocator().alloc(len + 8192, 4096).unwrap();
    dst.fill(0, len + 8192, 0xee).unwrap();
    let md_len = blocks as usize * ms;
    let md_src = patterned(&r.ctrl, 4096, 33);
    let mut md_dst = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    md_dst.fill(0, 4096, 0xee).unwrap();
    let opts = |m: &DmaBuffer| IoOptions {
        metadata: separate.then(|| m.segment(0, md_len).unwrap()),
        ..IoOptions::default()
    };
    let out = odd_pieces(&src, len, 700);
    qp.submit_write_ext(1, 9, blocks, &out, &opts(&md_src), 0)
        .unwrap();
    drain(&mut qp).unwrap();
    let back = odd_pieces(&dst, len, 1100);
    qp.submit_read_ext(1, 9, blocks, &back, &opts(&md_dst), 0)
        .unwrap();
    drain(&mut qp).unwrap();
    assert_eq!(
        read_pieces(&dst, &back),
        read_pieces(&src, &out),
        "{device}"
    );
    if separate {
        let md = contents(&md_dst);
        assert_eq!(&md[..md_len], &contents(&md_src)[..md_len], "{device}");
        assert!(md[md_len..].iter().all(|&b| b == 0xee), "past the metadata");
    }
    // Nothing outside the pieces was written.
    let mut untouched = contents(&dst);
    for s in &back {
        let at = (s.iova - dst.as_segment().iova) as usize;
        untouched[at..at + s.len].fill(0xee);
    }
    assert!(
        untouched.iter().all(|&b| b == 0xee),
        "{device}: outside the pieces"
    );
    r.emu
        .command_log()
        .io_entries()
        .iter()
        .map(|e| e.psdt)
        .collect()
}

#[test]
fn sgl_data_round_trips_on_plain_extended_and_separate_metadata_formats() {
    let cases = [
        ("size=1M,lba=512,sgl=on", 512, 0, false),
        ("size=1M,lba=512,ms=8,mset=ext,sgl=on", 512, 8, false),
        ("size=1M,lba=512,ms=8,mset=sep,sgl=on", 512, 8, true),
        ("size=4M,lba=4096,ms=64,mset=sep,sgl=on", 4096, 64, true),
        ("size=4M,lba=4096,ms=16,mset=ext,sgl=on", 4096, 16, false),
    ];
    for (opts, lba, ms, separate) in cases {
        for mode in [SglMode::Always, SglMode::Auto] {
            let psdt = round_trip(opts, lba, ms, separate, mode);
            // The emulated controller takes metadata SGLs, so separate metadata goes
            // through an MPTR SGL (PSDT 10b); otherwise MPTR is unused or contiguous.
            let want = if separate {
                Psdt::SglMptrSgl
            } else {
                Psdt::SglMptrContiguous
            };
            assert_eq!(psdt, vec![want, want], "{opts} {mode:?}");
        }
    }
}

#[test]
fn auto_uses_prps_for_what_prps_describe_and_always_uses_sgls() {
    for (mode, want) in [
        (SglMode::Auto, Psdt::Prp),
        (SglMode::Never, Psdt::Prp),
        (SglMode::Always, Psdt::SglMptrContiguous),
    ] {
        let r = rig("size=1M,log=on");
        let mut qp = pair(&r, mode).unwrap();
        assert_eq!(qp.sgl_mode(), mode);
        let mut buf = r.ctrl.allocator().alloc(16384, 4096).unwrap();
        qp.write_sync(1, 0, 32, &buf, IoFlags::empty()).unwrap();
        qp.read_sync(1, 0, 32, &mut buf).unwrap();
        let log = r.emu.command_log().io_entries();
        assert!(log.iter().all(|e| e.psdt == want), "{mode:?}: {log:?}");
    }
}

#[test]
fn a_buffer_prps_refuse_goes_by_sgl_in_auto_and_is_refused_by_never() {
    let r = rig("size=1M,log=on");
    let src = patterned(&r.ctrl, 8192, 3);
    // The first piece does not end on a page boundary: PRPs cannot chain it.
    let segs = [
        src.segment(0, 512).unwrap(),
        src.segment(4096 + 512, 512).unwrap(),
    ];
    let mut never = pair(&r, SglMode::Never).unwrap();
    let e = never
        .submit_write(1, 0, 2, &segs, IoFlags::empty(), 0)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadSegment {
                rule: PrpRule::MiddleEndNotPageAligned,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!((never.stats().submitted, never.outstanding()), (0, 0));
    drop(never);
    let mut auto = pair(&r, SglMode::Auto).unwrap();
    auto.submit_write(1, 0, 2, &segs, IoFlags::empty(), 0)
        .unwrap();
    drain(&mut auto).unwrap();
    let mut back = r.ctrl.allocator().alloc(1024, 4096).unwrap();
    auto.read_sync(1, 0, 2, &mut back).unwrap();
    let mut want = contents(&src)[..512].to_vec();
    want.extend_from_slice(&contents(&src)[4608..5120]);
    assert_eq!(contents(&back), want);
    let psdt: Vec<_> = r
        .emu
        .command_log()
        .io_entries()
        .iter()
        .map(|e| e.psdt)
        .collect();
    assert_eq!(psdt, vec![Psdt::SglMptrContiguous, Psdt::Prp]);
}

#[test]
fn on_a_controller_without_sgls_always_is_refused_and_auto_keeps_the_prp_error() {
    let r = rig("size=1M,sgl=off");
    match pair(&r, SglMode::Always) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("SGL"), "{what}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let mut auto = pair(&r, SglMode::Auto).unwrap();
    let src = patterned(&r.ctrl, 8192, 3);
    let segs = [
        src.segment(0, 512).unwrap(),
        src.segment(4096 + 512, 512).unwrap(),
    ];
    let e = auto
        .submit_write(1, 0, 2, &segs, IoFlags::empty(), 0)
        .unwrap_err();
    assert!(matches!(e, Error::BadSegment { .. }), "{e:?}");
    assert_eq!(auto.stats().submitted, 0);
}

#[test]
fn more_segments_than_the_slot_holds_are_refused_with_a_typed_error() {
    let r = rig("size=1M,log=on");
    let mut qp = pair(&r, SglMode::Always).unwrap();
    let buf = r.ctrl.allocator().alloc(1 << 20, 4096).unwrap();
    // 2048 blocks of 512 bytes... in 4-byte pieces is far more than the list pages hold.
    let segs: Vec<_> = (0..4096).map(|i| buf.segment(i * 8, 4).unwrap()).collect();
    let e = qp.submit_read(1, 0, 32, &segs, 0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadSglSegment {
                rule: SglRule::TooManyDescriptors,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!((qp.stats().submitted, qp.outstanding()), (0, 0));
    assert!(r.emu.command_log().io_entries().is_empty());
    // The slot is free again: a good command still goes through.
    let mut one = r.ctrl.allocator().alloc(512, 4096).unwrap();
    qp.read_sync(1, 0, 1, &mut one).unwrap();
}

/// Pieces of `buf` that together hold `total` bytes: cut at `cuts` (offsets into the
/// transfer), each placed after the previous one with a gap from `gaps` (any size, so
/// pieces start and end anywhere), the first at `start`.
fn pieces_of(
    buf: &DmaBuffer,
    total: usize,
    cuts: &[usize],
    gaps: &[usize],
    start: usize,
) -> Vec<DmaSegment> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (total + 1)).collect();
    ends.push(total);
    ends.sort_unstable();
    let (mut at, mut from) = (start, 0);
    let mut out = Vec::new();
    for (i, end) in ends.into_iter().enumerate() {
        out.push(buf.segment(at, end - from).unwrap());
        at += end - from + gaps.get(i).copied().unwrap_or(0);
        from = end;
    }
    out
}

/// The pattern the property test's namespace holds at LBA 0 onwards (data, metadata).
const DATA_SEED: u64 = 77;
const META_SEED: u64 = 78;

thread_local! {
    static PROP_RIG: (Rig, std::cell::RefCell<Vec<IoQueuePair<EmuTransport>>>, DmaBuffer) = {
        let r = rig("size=1M,lba=512,ms=8,mset=sep,log=on");
        let mut pairs: Vec<_> = [SglMode::Auto, SglMode::Never, SglMode::Always]
            .into_iter()
            .map(|m| pair(&r, m).unwrap())
            .collect();
        let data = patterned(&r.ctrl, 8 * 512, DATA_SEED);
        let md = patterned(&r.ctrl, 64, META_SEED);
        let opts = IoOptions {
            metadata: Some(md.as_segment()),
            ..IoOptions::default()
        };
        pairs[0].submit_write_ext(1, 0, 8, &[data.as_segment()], &opts, 0).unwrap();
        drain(&mut pairs[0]).unwrap();
        let buf = r.ctrl.allocator().alloc(64 << 10, 4096).unwrap();
        (r, std::cell::RefCell::new(pairs), buf)
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Through the whole submission path: a random segment list either moves exactly
    /// the command's bytes into exactly its pieces, or is refused with a typed error and
    /// nothing reaches the controller.
    #[test]
    fn every_segment_list_is_described_exactly_or_refused_before_submission(
        mode in 0usize..3,
        blocks in 1u32..=8,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        gaps in prop::collection::vec(prop_oneof![Just(0usize), 0usize..5000], 12),
        start in prop_oneof![Just(0usize), 0usize..4096],
        delta in prop_oneof![6 => Just(0i64), 1 => -600i64..600],
        md_at in prop_oneof![Just(0usize), Just(8), Just(2)],
    ) {
        PROP_RIG.with(|(r, pairs, buf)| {
            let mut pairs = pairs.borrow_mut();
            let qp = &mut pairs[mode];
            let exact = blocks as usize * 512;
            let total = (exact as i64 + delta).max(1) as usize;
            let segs = pieces_of(buf, total, &cuts, &gaps, start);
            let md = r.ctrl.allocator().alloc(4096, 4096).unwrap();
            let opts = IoOptions {
                metadata: Some(md.segment(md_at, blocks as usize * 8).unwrap()),
                ..IoOptions::default()
            };
            let log = r.emu.command_log();
            log.clear();
            let before = qp.stats().submitted;
            let res = qp.submit_read_ext(1, 0, blocks, &segs, &opts, 0);
            match res {
                Ok(()) => {
                    prop_assert_eq!(total, exact);
                    prop_assert!(md_at % 4 == 0);
                    prop_assert!(drain(qp).is_ok());
                    prop_assert_eq!(log.io_entries().len(), 1);
                    let want = (0..total).map(|i| pattern_byte(DATA_SEED, i)).collect::<Vec<_>>();
                    prop_assert_eq!(read_pieces(buf, &segs), want);
                    let got_md = contents(&md);
                    let want_md = (0..blocks as usize * 8).map(|i| pattern_byte(META_SEED, i));
                    prop_assert!(got_md[md_at..].iter().copied().take(blocks as usize * 8).eq(want_md));
                }
                Err(e) => {
                    let typed = matches!(
                        e,
                        Error::BadSegment { .. } | Error::BadSglSegment { .. }
                    );
                    prop_assert!(typed, "{:?}", e);
                    prop_assert_eq!(qp.stats().submitted, before);
                    prop_assert_eq!(qp.outstanding(), 0);
                    prop_assert!(log.io_entries().is_empty());
                    if total == exact && md_at % 4 == 0 && mode != 1 {
                        // Auto and Always describe every such list with an SGL.
                        prop_assert!(false, "refused {:?}: {}", segs, e);
                    }
                }
            }
            Ok(())
        })?;
    }
}
