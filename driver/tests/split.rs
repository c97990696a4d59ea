//! Reads and writes larger than one command: split into child commands, one completion
//! for the caller, the first error wins, and a request that cannot be taken whole is
//! refused with nothing submitted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nvme::spec::status::GenericStatus;
use nvme::spec::Status;
use nvme::{
    commands_per_request, CommandDesc, DmaBuffer, DmaSegment, Error, IoFlags, IoKind, IoOptions,
    PrpRule, QueuePairOptions,
};
use nvme_emu::{CommandMatch, FaultAction, LogEntry};
use proptest::prelude::*;

const MIB: usize = 1 << 20;

fn qp(r: &Rig, depth: u16) -> Qp {
    r.ctrl
        .create_io_queue_pair(QueuePairOptions {
            depth,
            ..QueuePairOptions::default()
        })
        .unwrap()
}

/// Rings, waits until nothing is outstanding (at most 10 s), then polls a little
/// longer so a second completion for the same request would be seen; returns every
/// completion reported.
fn completions(q: &mut Qp) -> Vec<(u64, Result<(), Error>)> {
    let mut out = Vec::new();
    q.ring();
    let end = Instant::now() + Duration::from_secs(10);
    while q.outstanding() > 0 {
        assert!(Instant::now() < end, "requests did not complete");
        q.wait_completions(usize::MAX, Duration::from_millis(20), |c, r| {
            out.push((c, r))
        })
        .unwrap();
    }
    for _ in 0..100 {
        q.process_completions(usize::MAX, |c, r| out.push((c, r)));
    }
    out
}

/// Starting LBA, blocks and FUA of every Read (`0x02`) or Write (`0x01`) the
/// controller executed.
fn pieces(log: &[LogEntry], opcode: u8) -> Vec<(u64, u32, bool)> {
    log.iter()
        .filter(|e| e.opcode == opcode)
        .map(|e| (e.slba, e.blocks, e.fua))
        .collect()
}

/// The pieces `blocks` blocks at `slba` split into, `per` blocks each.
fn expected_pieces(slba: u64, blocks: u32, per: u32, fua: bool) -> Vec<(u64, u32, bool)> {
    (0..blocks.div_ceil(per))
        .map(|k| {
            let first = k * per;
            (slba + u64::from(first), per.min(blocks - first), fua)
        })
        .collect()
}

#[test]
fn a_1mib_write_and_read_on_an_8k_mdts_controller_each_complete_once() {
    let r = rig("size=8M,lba=512,mdts=1");
    let mut q = qp(&r, 256);
    assert_eq!(q.max_transfer_bytes(), 8192);
    let log = r.emu.command_log();
    log.enable();
    let src = patterned(&r.ctrl, MIB, 1);
    q.submit_write(1, 64, 2048, &[src.as_segment()], IoFlags::FUA, 41)
        .unwrap();
    assert_eq!(q.outstanding(), 1, "one request, however many commands");
    let got = completions(&mut q);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 41);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);

    let dst = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.submit_read(1, 64, 2048, &[dst.as_segment()], 42).unwrap();
    let got = completions(&mut q);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 42);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);
    assert!(contents(&dst) == contents(&src));

    let entries = log.io_entries();
    assert_eq!(
        pieces(&entries, 0x01),
        expected_pieces(64, 2048, 16, true),
        "128 writes of 8 KiB, FUA on every one"
    );
    assert_eq!(pieces(&entries, 0x02), expected_pieces(64, 2048, 16, false));
    assert_eq!(q.stats().submitted, 256);
}

#[test]
fn the_blocking_calls_take_transfers_above_mdts() {
    let r = rig("size=8M,lba=4096,mdts=1");
    let mut q = qp(&r, 256);
    let src = patterned(&r.ctrl, MIB, 2);
    q.write_sync(1, 8, 256, &src, IoFlags::empty()).unwrap();
    let mut dst = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.read_sync(1, 8, 256, &mut dst).unwrap();
    assert!(contents(&dst) == contents(&src));
}

#[test]
fn separate_metadata_is_cut_with_its_blocks() {
    let r = rig("size=8M,lba=512,ms=8,mset=sep,mdts=1,log=on");
    let mut q = qp(&r, 256);
    let data = patterned(&r.ctrl, MIB, 3);
    let meta = patterned(&r.ctrl, 2048 * 8, 4);
    let opts = IoOptions {
        metadata: Some(meta.as_segment()),
        ..IoOptions::default()
    };
    q.submit_write_ext(1, 0, 2048, &[data.as_segment()], &opts, 1)
        .unwrap();
    let got = completions(&mut q);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.is_ok(), "{:?}", got[0].1);

    // Read back in single commands, so the check does not rely on the split.
    let back = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    let back_meta = r.ctrl.allocator().alloc(2048 * 8, 4096).unwrap();
    for k in 0..128usize {
        let opts = IoOptions {
            metadata: Some(back_meta.segment(k * 128, 128).unwrap()),
            ..IoOptions::default()
        };
        let seg = back.segment(k * 8192, 8192).unwrap();
        q.submit_read_ext(1, k as u64 * 16, 16, &[seg], &opts, 2)
            .unwrap();
        let got = completions(&mut q);
        assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    }
    assert!(contents(&back) == contents(&data));
    assert!(contents(&back_meta) == contents(&meta));
    let writes = pieces(&r.emu.command_log().io_entries(), 0x01);
    assert_eq!(writes, expected_pieces(0, 2048, 16, false));
}

#[test]
fn extended_blocks_that_do_not_divide_mdts_are_split_at_whole_blocks() {
    // 520-byte blocks: 15 per 8 KiB command, 137 commands for 2048 blocks.
    let r = rig("size=8M,lba=512,ms=8,mset=ext,mdts=1,log=on");
    let mut q = qp(&r, 256);
    let len = 2048 * 520;
    let src = patterned(&r.ctrl, len, 5);
    assert_eq!(
        commands_per_request(q.max_transfer_bytes(), 4096, 520, 0, 2048),
        Some(137)
    );
    q.submit_write(1, 0, 2048, &[src.as_segment()], IoFlags::empty(), 7)
        .unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    let dst = r.ctrl.allocator().alloc(len, 4096).unwrap();
    q.submit_read(1, 0, 2048, &[dst.as_segment()], 8).unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    assert!(contents(&dst) == contents(&src));
    let entries = r.emu.command_log().io_entries();
    assert_eq!(pieces(&entries, 0x01), expected_pieces(0, 2048, 15, false));
    assert_eq!(pieces(&entries, 0x02), expected_pieces(0, 2048, 15, false));
}

fn io_at(lbas: std::ops::Range<u64>) -> CommandMatch {
    CommandMatch {
        lbas: Some(lbas),
        ..CommandMatch::io()
    }
}

#[test]
fn the_first_failing_child_decides_the_result_and_the_request_completes_once() {
    let r = rig("size=8M,lba=512,mdts=1");
    let mut q = qp(&r, 256);
    let first = Status::generic(GenericStatus::InternalError);
    let second = Status::generic(GenericStatus::DataTransferError);
    // Children are 16 blocks: child 32 starts at LBA 512, child 40 at 640.
    r.emu
        .faults()
        .inject(io_at(512..513), FaultAction::Fail(first), Some(1));
    r.emu
        .faults()
        .inject(io_at(640..641), FaultAction::Fail(second), Some(1));
    let buf = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.submit_read(1, 0, 2048, &[buf.as_segment()], 9).unwrap();
    let got = completions(&mut q);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 9);
    match &got[0].1 {
        Err(Error::CommandFailed { command, status }) => {
            assert_eq!(status.code_only(), first.code_only());
            assert_eq!(
                *command,
                CommandDesc::Io {
                    kind: IoKind::Read,
                    nsid: 1,
                    slba: 512,
                    blocks: 16
                },
                "the error names the child that failed"
            );
        }
        other => panic!("expected the first child's status, got {other:?}"),
    }
    assert_eq!(q.outstanding(), 0);
    assert_eq!(q.stats().completed, 128, "every child completed");
}

#[test]
fn a_child_past_its_deadline_is_aborted_and_the_request_completes_once_timed_out() {
    // Retries off: the error a child reports is what is checked here.
    let r = rig_with(
        "size=8M,lba=512,mdts=1",
        nvme::Options {
            command_retries: 0,
            ..fast_options()
        },
    );
    let mut q = qp(&r, 256);
    r.emu
        .faults()
        .inject(io_at(800..801), FaultAction::Hold, Some(1));
    let buf = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.submit_read(1, 0, 2048, &[buf.as_segment()], 3).unwrap();
    let got = completions(&mut q);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 3);
    match &got[0].1 {
        Err(Error::CommandTimedOut { command, .. }) => {
            assert!(
                matches!(command, CommandDesc::Io { slba: 800, .. }),
                "{command}"
            )
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!((q.stats().timeouts, q.stats().aborts), (1, 1));
    assert_eq!(r.ctrl.admin_stats().resets, 0);
}

#[test]
fn a_reset_cutting_children_short_completes_the_request_once_and_the_queue_works_after() {
    // Retries off: the error a child reports is what is checked here.
    let r = rig_with(
        "size=8M,lba=512,mdts=1",
        nvme::Options {
            command_retries: 0,
            ..fast_options()
        },
    );
    let mut q = qp(&r, 256);
    // Child 10 never completes (its abort fails too, so the controller is reset);
    // child 20 is held, so the reset cuts it short.
    r.emu
        .faults()
        .inject(io_at(160..161), FaultAction::Drop, Some(1));
    r.emu
        .faults()
        .inject(io_at(320..321), FaultAction::Hold, Some(1));
    let buf = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.submit_read(1, 0, 2048, &[buf.as_segment()], 5).unwrap();
    let got = completions(&mut q);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 5);
    assert!(
        matches!(
            got[0].1,
            Err(Error::CommandTimedOut { .. }) | Err(Error::ControllerReset { .. })
        ),
        "{:?}",
        got[0].1
    );
    assert_eq!(r.ctrl.admin_stats().resets, 1);
    assert_eq!(q.outstanding(), 0);

    let src = patterned(&r.ctrl, MIB, 6);
    q.submit_write(1, 0, 2048, &[src.as_segment()], IoFlags::empty(), 6)
        .unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    q.submit_read(1, 0, 2048, &[buf.as_segment()], 7).unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    assert!(contents(&buf) == contents(&src));
}

#[test]
fn too_few_free_slots_is_queue_full_with_nothing_submitted() {
    let r = rig("size=8M,lba=512,mdts=1,log=on");
    // 129 commands at once; two are taken, 127 are left for a request needing 128.
    let mut q = qp(&r, 130);
    let small = r.ctrl.allocator().alloc(8192, 4096).unwrap();
    q.submit_read(1, 0, 8, &[small.segment(0, 4096).unwrap()], 1)
        .unwrap();
    q.submit_read(1, 8, 8, &[small.segment(4096, 4096).unwrap()], 2)
        .unwrap();
    let big = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    let err = q
        .submit_read(1, 64, 2048, &[big.as_segment()], 3)
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { .. }), "{err}");
    assert_eq!(q.outstanding(), 2);
    assert_eq!(q.stats().submitted, 2);
    let got = completions(&mut q);
    let mut ctxs: Vec<_> = got.iter().map(|g| g.0).collect();
    ctxs.sort();
    assert_eq!(ctxs, vec![1, 2]);
    let reads = pieces(&r.emu.command_log().io_entries(), 0x02);
    assert_eq!(reads, vec![(0, 8, false), (8, 8, false)]);

    // With the slots back, the same request goes through.
    q.submit_read(1, 64, 2048, &[big.as_segment()], 3).unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
}

#[test]
fn a_request_needing_more_commands_than_the_queue_holds_is_refused_with_its_size() {
    let r = rig("size=8M,lba=512,mdts=1,log=on");
    let mut q = qp(&r, 64);
    let big = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    let err = q
        .submit_read(1, 0, 2048, &[big.as_segment()], 3)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RequestTooLarge {
                commands: 128,
                per_command: 8192,
                queue_commands: 63,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("a depth of at least 129"), "{err}");
    assert_eq!((q.outstanding(), q.stats().submitted), (0, 0));
    assert!(completions(&mut q).is_empty());
    assert!(r.emu.command_log().io_entries().is_empty());
}

#[test]
fn a_child_refused_mid_request_takes_the_whole_request_back() {
    // Without SGLs, which could describe the child PRPs refuse.
    let r = rig("size=8M,lba=512,mdts=1,log=on,sgl=off");
    let mut q = qp(&r, 256);
    let a = patterned(&r.ctrl, 32768, 1);
    let b = patterned(&r.ctrl, 65536, 2);
    // Children 0 and 1 fit; child 2 holds the end of the first segment, which stops
    // mid-page, followed by the second: no PRP list describes that.
    let segs = [a.segment(0, 22528).unwrap(), b.segment(0, 43008).unwrap()];
    let err = q
        .submit_write(1, 0, 128, &segs, IoFlags::empty(), 1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSegment {
                rule: PrpRule::MiddleEndNotPageAligned,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!((q.outstanding(), q.stats().submitted), (0, 0));
    assert!(completions(&mut q).is_empty());
    assert!(r.emu.command_log().io_entries().is_empty());

    // The ring and the command slots are as they were: a request goes through whole.
    let big = r.ctrl.allocator().alloc(MIB, 4096).unwrap();
    q.submit_read(1, 0, 2048, &[big.as_segment()], 2).unwrap();
    let got = completions(&mut q);
    assert!(got.len() == 1 && got[0].1.is_ok(), "{got:?}");
    let reads = pieces(&r.emu.command_log().io_entries(), 0x02);
    assert_eq!(reads, expected_pieces(0, 2048, 16, false));
}

#[test]
fn a_block_larger_than_one_command_is_refused() {
    // 4096+64 extended blocks on a controller with no MDTS, limited to 4 KiB per
    // command by the driver's options.
    let options = nvme::Options {
        max_transfer_bytes: 4096,
        ..fast_options()
    };
    let r = rig_with("size=8M,lba=4096,ms=64,mset=ext,mdts=0,log=on", options);
    let mut q = qp(&r, 16);
    assert_eq!(q.max_transfer_bytes(), 4096);
    let buf = r.ctrl.allocator().alloc(2 * 4160, 4096).unwrap();
    for blocks in [1, 2] {
        let seg = buf.segment(0, blocks * 4160).unwrap();
        let err = q.submit_read(1, 0, blocks as u32, &[seg], 1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ExceedsMdts {
                    bytes: 4160,
                    max: 4096,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(r.emu.command_log().io_entries().is_empty());
}

/// A request's buffers: the data in segments of one DMA buffer, cut at page boundaries
/// chosen by the test, starting `offset` bytes into it; and a separate metadata buffer.
struct Layout {
    data: DmaBuffer,
    segments: Vec<DmaSegment>,
    metadata: Option<(DmaBuffer, DmaSegment)>,
}

/// How a case breaks the request's buffers, if it does.
#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    /// The data segments hold 4 bytes fewer than the blocks.
    DataShort,
    /// The data segments hold 4 bytes more than the blocks.
    DataLong,
    /// The metadata buffer holds 8 bytes more than the blocks' metadata.
    MetadataLong,
}

fn layout(
    r: &Rig,
    bytes: usize,
    offset: usize,
    cuts: &[usize],
    metadata: Option<(usize, usize)>,
    seed: u64,
) -> Layout {
    let mut data = r
        .ctrl
        .allocator()
        .alloc((offset + bytes).next_multiple_of(4096), 4096)
        .unwrap();
    let fill: Vec<u8> = (0..data.len()).map(|i| pattern_byte(seed, i)).collect();
    data.write(0, &fill).unwrap();
    // Cut at the page boundaries picked by `cuts` (indexes into the pages spanned).
    let end = offset + bytes;
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| (c + 1) * 4096)
        .filter(|&b| b > offset && b < end)
        .collect();
    bounds.sort();
    bounds.dedup();
    let mut segments = Vec::new();
    let mut at = offset;
    for b in bounds.into_iter().chain([end]) {
        segments.push(data.segment(at, b - at).unwrap());
        at = b;
    }
    let metadata = metadata.map(|(len, moff)| {
        let mut m = r.ctrl.allocator().alloc(moff + len, 4096).unwrap();
        let fill: Vec<u8> = (0..m.len()).map(|i| pattern_byte(seed + 1, i)).collect();
        m.write(0, &fill).unwrap();
        let seg = m.segment(moff, len).unwrap();
        (m, seg)
    });
    Layout {
        data,
        segments,
        metadata,
    }
}

fn bytes_of(buf: &DmaBuffer, seg: &DmaSegment) -> Vec<u8> {
    let start = (seg.iova - buf.as_segment().iova) as usize;
    contents(buf)[start..start + seg.len].to_vec()
}

/// The formats the property runs on: (device options, buffer bytes per block,
/// separate metadata bytes per block).
const FORMATS: [(&str, usize, usize); 3] = [
    ("lba=512", 512, 0),
    ("lba=512,ms=8,mset=sep", 512, 8),
    ("lba=512,ms=8,mset=ext", 520, 0),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the size and the segment layout, the children cover exactly the
    /// request's blocks, data bytes and metadata bytes, in order; a request whose
    /// buffers do not hold exactly its bytes is refused with nothing submitted.
    #[test]
    fn children_cover_exactly_the_request_and_refusals_submit_nothing(
        format in 0..FORMATS.len(),
        blocks in 1u32..=300,
        slba in 0u64..1000,
        offset_dwords in 0usize..1024,
        cuts in proptest::collection::vec(0usize..40, 0..6),
        metadata_offset_dwords in 0usize..64,
        damage in prop_oneof![
            4 => Just(Damage::None),
            1 => Just(Damage::DataShort),
            1 => Just(Damage::DataLong),
            1 => Just(Damage::MetadataLong),
        ],
    ) {
        let (opts, block_bytes, md_bytes) = FORMATS[format];
        let r = rig(&format!("size=2M,{opts},mdts=1,log=on"));
        let mut q = qp(&r, 256);
        let bytes = blocks as usize * block_bytes;
        let mut data_bytes = bytes;
        let mut md_len = blocks as usize * md_bytes;
        match damage {
            Damage::None => {}
            Damage::DataShort => data_bytes -= 4,
            Damage::DataLong => data_bytes += 4,
            Damage::MetadataLong if md_bytes > 0 => md_len += 8,
            Damage::MetadataLong => {}
        }
        let damaged = data_bytes != bytes || md_len != blocks as usize * md_bytes;
        let l = layout(
            &r,
            data_bytes,
            offset_dwords * 4,
            &cuts,
            (md_bytes > 0).then_some((md_len, metadata_offset_dwords * 4)),
            u64::from(blocks) ^ slba,
        );
        let io = IoOptions {
            metadata: l.metadata.as_ref().map(|m| m.1),
            ..IoOptions::default()
        };
        let result = q.submit_write_ext(1, slba, blocks, &l.segments, &io, 77);
        if damaged {
            prop_assert!(result.is_err(), "damaged buffers were taken");
            prop_assert_eq!((q.outstanding(), q.stats().submitted), (0, 0));
            prop_assert!(completions(&mut q).is_empty());
            prop_assert!(r.emu.command_log().io_entries().is_empty());
            return Ok(());
        }
        prop_assert!(result.is_ok(), "{:?}", result);
        let got = completions(&mut q);
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got[0].0, 77);
        prop_assert!(got[0].1.is_ok(), "{:?}", got[0].1);

        // The children: contiguous, in order, each within one command's limit.
        let writes = pieces(&r.emu.command_log().io_entries(), 0x01);
        let per = (8192 / block_bytes) as u32;
        let want_count = commands_per_request(8192, 4096, block_bytes as u32, md_bytes as u16, u64::from(blocks));
        prop_assert_eq!(Some(writes.len() as u64), want_count);
        prop_assert_eq!(writes, expected_pieces(slba, blocks, per, false));

        // Read back one block at a time (never split) and compare every byte.
        let mut data: Vec<u8> = Vec::new();
        let mut meta: Vec<u8> = Vec::new();
        let one = r.ctrl.allocator().alloc(4096, 4096).unwrap();
        let one_md = r.ctrl.allocator().alloc(4096, 4096).unwrap();
        for b in 0..u64::from(blocks) {
            let io = IoOptions {
                metadata: (md_bytes > 0).then(|| one_md.segment(0, md_bytes).unwrap()),
                ..IoOptions::default()
            };
            let seg = one.segment(0, block_bytes).unwrap();
            q.submit_read_ext(1, slba + b, 1, &[seg], &io, 0).unwrap();
            let got = completions(&mut q);
            prop_assert!(got.len() == 1 && got[0].1.is_ok());
            data.extend(&contents(&one)[..block_bytes]);
            meta.extend(&contents(&one_md)[..md_bytes]);
        }
        let sent: Vec<u8> = l.segments.iter().flat_map(|s| bytes_of(&l.data, s)).collect();
        prop_assert!(data == sent, "data differs");
        if let Some((m, seg)) = &l.metadata {
            prop_assert!(meta == bytes_of(m, seg), "metadata differs");
        }
    }
}

#[test]
fn children_carry_the_protection_information_and_sgls_of_the_request() {
    // 8 KiB per command, 520-byte extended blocks with type 2 protection information:
    // a 64-block write is 5 children. The caller's initial reference tag advances with
    // each child's offset, so the controller's reference-tag check passes on every one.
    let r = rig("size=8M,lba=512,ms=8,mset=ext,pi=2,mdts=1,log=on");
    let p = r.ctrl.namespace(1).unwrap().protection().unwrap().unwrap();
    for sgl in [nvme::SglMode::Never, nvme::SglMode::Always] {
        let mut q = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 64,
                sgl,
                ..QueuePairOptions::default()
            })
            .unwrap();
        let blocks = 64u32;
        let src = patterned(&r.ctrl, blocks as usize * 520, 5);
        let opts = IoOptions {
            flags: IoFlags::PRCHK,
            app_tag: 0x1234,
            app_tag_mask: 0xffff,
            ref_tag: Some(0xabc0),
            ..IoOptions::default()
        };
        nvme::pi::generate(&p, 100, &opts, src.mem(), None).unwrap();
        q.submit_write_ext(1, 100, blocks, &[src.as_segment()], &opts, 1)
            .unwrap();
        let got = completions(&mut q);
        assert!(got.len() == 1 && got[0].1.is_ok(), "{sgl:?}: {got:?}");
        let dst = r
            .ctrl
            .allocator()
            .alloc(blocks as usize * 520, 4096)
            .unwrap();
        q.submit_read_ext(1, 100, blocks, &[dst.as_segment()], &opts, 2)
            .unwrap();
        let got = completions(&mut q);
        assert!(got.len() == 1 && got[0].1.is_ok(), "{sgl:?}: {got:?}");
        assert_eq!(contents(&dst), contents(&src), "{sgl:?}");
        nvme::pi::verify(&p, 100, &opts, dst.mem(), None).unwrap();
        // A wrong initial tag fails a child's check, and the request reports it once.
        let wrong = IoOptions {
            ref_tag: Some(0xabc1),
            ..opts
        };
        q.submit_read_ext(1, 100, blocks, &[dst.as_segment()], &wrong, 3)
            .unwrap();
        let got = completions(&mut q);
        assert!(
            got.len() == 1 && matches!(got[0].1, Err(Error::EndToEnd { .. })),
            "{sgl:?}: {got:?}"
        );
    }
    let psdts: Vec<_> = r
        .emu
        .command_log()
        .io_entries()
        .iter()
        .map(|e| e.psdt)
        .collect();
    assert!(psdts.contains(&nvme::spec::command::Psdt::Prp));
    assert!(psdts.iter().any(|p| *p != nvme::spec::command::Psdt::Prp));
}
