//! The I/O path: every command, data verification across queue wraps, PRP edge cases,
//! several queue pairs on several threads.

mod common;

use common::*;
use nvme::{DmaSegment, Error, IoFlags, PrpRule, QueuePairOptions};
use rand::{Rng, SeedableRng};

fn qp_opts(depth: u16) -> QueuePairOptions {
    QueuePairOptions {
        depth,
        ..QueuePairOptions::default()
    }
}

#[test]
fn written_blocks_read_back_identical() {
    let r = rig("size=16M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(16)).unwrap();
    let src = patterned(&r.ctrl, 4096, 7);
    qp.write_sync(1, 100, 8, &src, IoFlags::empty()).unwrap();
    let mut dst = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    qp.read_sync(1, 100, 8, &mut dst).unwrap();
    assert_eq!(contents(&dst), contents(&src));
}

#[test]
fn random_writes_verify_across_many_queue_wraps() {
    // Depth 8 (7 outstanding) and thousands of I/Os: the rings wrap hundreds of times.
    let r = rig("size=4M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let blocks_total = (4u64 << 20) / 512;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // Shadow copy of what the namespace should hold, per 4 KiB slot (8 blocks).
    let slots = (blocks_total / 8) as usize;
    let mut expect: Vec<Option<u64>> = vec![None; slots];
    let mut bufs: Vec<_> = (0..7)
        .map(|_| r.ctrl.allocator().alloc(4096, 4096).unwrap())
        .collect();
    let mut busy = [false; 7];
    let mut seed = 1u64;
    let mut done = 0usize;
    let total = 4000usize;
    let mut submitted = 0usize;
    while done < total {
        while submitted < total {
            let Some(i) = busy.iter().position(|b| !b) else {
                break;
            };
            let slot = rng.gen_range(0..slots);
            seed += 1;
            let bytes: Vec<u8> = (0..4096).map(|k| pattern_byte(seed, k)).collect();
            bufs[i].write(0, &bytes).unwrap();
            let seg = bufs[i].as_segment();
            qp.submit_write(1, slot as u64 * 8, 8, &[seg], IoFlags::empty(), i as u64)
                .unwrap();
            expect[slot] = Some(seed);
            busy[i] = true;
            submitted += 1;
        }
        qp.process_completions(usize::MAX, |ctx, res| {
            res.unwrap();
            busy[ctx as usize] = false;
            done += 1;
        });
    }
    assert_eq!(qp.outstanding(), 0);
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    for (slot, seed) in expect.iter().enumerate() {
        if let Some(seed) = seed {
            qp.read_sync(1, slot as u64 * 8, 8, &mut rd).unwrap();
            let want: Vec<u8> = (0..4096).map(|k| pattern_byte(*seed, k)).collect();
            assert!(contents(&rd) == want, "slot {slot} holds the wrong data");
        }
    }
    assert!(qp.stats().submitted >= 4000);
    assert_eq!(qp.stats().unknown_cid, 0);
}

#[test]
fn several_queue_pairs_on_several_threads_keep_their_data_apart() {
    let r = rig_with(
        "size=16M,lba=512",
        nvme::Options {
            io_queues: 4,
            ..fast_options()
        },
    );
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ctrl = &r.ctrl;
            s.spawn(move || {
                let mut qp = ctrl.create_io_queue_pair(qp_opts(32)).unwrap();
                let base = t * 4096; // each thread owns 4096 blocks
                let mut rd = ctrl.allocator().alloc(4096, 4096).unwrap();
                for k in 0..200u64 {
                    let src = patterned(ctrl, 4096, t * 1000 + k);
                    let lba = base + (k % 512) * 8;
                    qp.write_sync(1, lba, 8, &src, IoFlags::empty()).unwrap();
                    qp.read_sync(1, lba, 8, &mut rd).unwrap();
                    assert_eq!(contents(&rd), contents(&src));
                }
            });
        }
    });
}

#[test]
fn prp_offset_into_first_page_transfers_the_right_bytes() {
    let r = rig("size=8M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let src = patterned(&r.ctrl, 3 * 4096, 3);
    // 4 KiB starting 512 bytes into the first page: spans two pages (PRP1 + PRP2).
    let seg = src.segment(512, 4096).unwrap();
    let mut got = None;
    qp.submit_write(1, 0, 8, &[seg], IoFlags::empty(), 0)
        .unwrap();
    while got.is_none() {
        qp.process_completions(8, |_, r| got = Some(r));
    }
    got.unwrap().unwrap();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    qp.read_sync(1, 0, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&src)[512..512 + 4096].to_vec());
}

fn run_one(
    qp: &mut nvme::IoQueuePair<nvme::transport::emu::EmuTransport>,
    submit: impl FnOnce(&mut nvme::IoQueuePair<nvme::transport::emu::EmuTransport>) -> Result<(), Error>,
) -> Result<(), Error> {
    submit(qp)?;
    let mut got = None;
    while got.is_none() {
        qp.wait_completions(8, std::time::Duration::from_secs(5), |_, r| got = Some(r))
            .unwrap();
    }
    got.unwrap()
}

#[test]
fn exactly_two_pages_and_a_chained_list_round_trip() {
    let r = rig("size=64M,lba=512,mdts=0");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    for len in [8192usize, 2 << 20] {
        let src = patterned(&r.ctrl, len, len as u64);
        let blocks = (len / 512) as u32;
        run_one(&mut qp, |q| {
            q.submit_write(1, 64, blocks, &[src.as_segment()], IoFlags::empty(), 0)
        })
        .unwrap();
        let rd = r.ctrl.allocator().alloc(len, 4096).unwrap();
        run_one(&mut qp, |q| {
            q.submit_read(1, 64, blocks, &[rd.as_segment()], 0)
        })
        .unwrap();
        assert!(contents(&rd) == contents(&src), "{len} bytes differ");
    }
}

#[test]
fn list_chaining_across_list_pages_with_an_unaligned_start() {
    // 2 MiB + 3 KiB starting 1 KiB into a page: 515 PRP entries, 514 in the list,
    // so the list chains from its first page into a second.
    let r = rig_with(
        "size=64M,lba=512,mdts=0",
        nvme::Options {
            max_transfer_bytes: 4 << 20,
            ..fast_options()
        },
    );
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    let len = (2 << 20) + 3072;
    let src = patterned(&r.ctrl, len + 4096, 9);
    let seg = src.segment(1024, len).unwrap();
    let blocks = (len / 512) as u32;
    run_one(&mut qp, |q| {
        q.submit_write(1, 0, blocks, &[seg], IoFlags::empty(), 0)
    })
    .unwrap();
    let rd = r.ctrl.allocator().alloc(len, 4096).unwrap();
    run_one(&mut qp, |q| {
        q.submit_read(1, 0, blocks, &[rd.as_segment()], 0)
    })
    .unwrap();
    assert!(contents(&rd) == contents(&src)[1024..1024 + len].to_vec());
}

#[test]
fn iovec_of_several_segments_lands_in_order() {
    let r = rig("size=8M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    let a = patterned(&r.ctrl, 4096, 1);
    let b = patterned(&r.ctrl, 8192, 2);
    let c = patterned(&r.ctrl, 4096, 3);
    let segs = [
        a.segment(2048, 2048).unwrap(),
        b.as_segment(),
        c.segment(0, 1024).unwrap(),
    ];
    let blocks = ((2048 + 8192 + 1024) / 512) as u32;
    run_one(&mut qp, |q| {
        q.submit_write(1, 0, blocks, &segs, IoFlags::empty(), 0)
    })
    .unwrap();
    let rd = r.ctrl.allocator().alloc(11264, 4096).unwrap();
    run_one(&mut qp, |q| {
        q.submit_read(1, 0, blocks, &[rd.as_segment()], 0)
    })
    .unwrap();
    let mut want = contents(&a)[2048..].to_vec();
    want.extend(contents(&b));
    want.extend(&contents(&c)[..1024]);
    assert!(contents(&rd) == want);
}

#[test]
fn segments_breaking_prp_rules_are_refused_before_submission() {
    // Without SGL support nothing else can describe them (see tests/sgl.rs for SGLs).
    let r = rig("size=8M,lba=512,sgl=off");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    let a = patterned(&r.ctrl, 8192, 1);
    let segs = [a.segment(0, 1024).unwrap(), a.segment(4096, 1024).unwrap()];
    let err = qp
        .submit_write(1, 0, 4, &segs, IoFlags::empty(), 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSegment {
                index: 0,
                rule: PrpRule::MiddleEndNotPageAligned,
                ..
            }
        ),
        "{err}"
    );
    let odd = DmaSegment {
        iova: a.iova() + 2,
        len: 512,
        ptr: a.as_ptr(),
    };
    let err = qp.submit_read(1, 0, 1, &[odd], 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSegment {
                rule: PrpRule::NotDwordAligned,
                ..
            }
        ),
        "{err}"
    );
    let err = qp
        .submit_read(1, 0, 2, &[a.segment(0, 512).unwrap()], 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadSegment {
                rule: PrpRule::LengthMismatch,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(qp.outstanding(), 0, "nothing was submitted");
    assert_eq!(qp.stats().submitted, 0);
}

#[test]
fn commands_above_mdts_are_split_into_fitting_pieces_in_one_call() {
    // mdts=2: 16 KiB per command.
    let r = rig("size=8M,lba=512,mdts=2");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(16)).unwrap();
    assert_eq!(qp.max_transfer_bytes(), 16384);
    let log = r.emu.command_log();
    log.enable();
    let src = patterned(&r.ctrl, 65536, 5);
    qp.write_sync(1, 0, 128, &src, IoFlags::empty()).unwrap();
    let mut rd = r.ctrl.allocator().alloc(65536, 4096).unwrap();
    qp.read_sync(1, 0, 128, &mut rd).unwrap();
    assert!(contents(&rd) == contents(&src));
    let got: Vec<_> = log
        .io_entries()
        .iter()
        .map(|e| (e.opcode, e.slba, e.blocks))
        .collect();
    let pieces = |op| (0..4).map(move |k| (op, k * 32, 32));
    let want: Vec<_> = pieces(0x01).chain(pieces(0x02)).collect();
    assert_eq!(got, want);
}

#[test]
fn write_zeroes_deallocate_verify_and_flush_complete() {
    let r = rig("size=8M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let src = patterned(&r.ctrl, 4096, 11);
    qp.write_sync(1, 0, 8, &src, IoFlags::FUA).unwrap();
    run_one(&mut qp, |q| q.submit_verify(1, 0, 8, 0)).unwrap();
    run_one(&mut qp, |q| q.submit_write_zeroes(1, 0, 4, false, 0)).unwrap();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    qp.read_sync(1, 0, 8, &mut rd).unwrap();
    let got = contents(&rd);
    assert!(got[..2048].iter().all(|&b| b == 0), "first 4 blocks zeroed");
    assert_eq!(&got[2048..], &contents(&src)[2048..]);
    run_one(&mut qp, |q| q.submit_deallocate(1, &[(4, 4), (100, 8)], 0)).unwrap();
    run_one(&mut qp, |q| q.submit_write_zeroes(1, 200, 8, true, 0)).unwrap();
    qp.flush_sync(1).unwrap();
}

#[test]
fn queue_full_is_a_typed_error() {
    let r = rig("size=8M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    let buf = patterned(&r.ctrl, 512, 1);
    for i in 0..3 {
        qp.submit_write(1, i, 1, &[buf.as_segment()], IoFlags::empty(), i)
            .unwrap();
    }
    let err = qp
        .submit_write(1, 3, 1, &[buf.as_segment()], IoFlags::empty(), 3)
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { depth: 4, .. }), "{err}");
    let mut n = 0;
    while n < 3 {
        n += qp.process_completions(8, |_, r| r.unwrap());
    }
    qp.submit_write(1, 3, 1, &[buf.as_segment()], IoFlags::empty(), 3)
        .unwrap();
}

#[test]
fn unknown_namespace_is_refused() {
    let r = rig("size=8M");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(4)).unwrap();
    let buf = patterned(&r.ctrl, 512, 1);
    let err = qp.submit_read(7, 0, 1, &[buf.as_segment()], 0).unwrap_err();
    assert!(
        matches!(err, Error::NoSuchNamespace { nsid: 7, .. }),
        "{err}"
    );
}

#[test]
fn fua_write_survives_a_power_cut_and_a_cached_write_does_not() {
    let r = rig("size=1M,lba=512,vwc=on");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let old = patterned(&r.ctrl, 4096, 1);
    let new = patterned(&r.ctrl, 4096, 2);
    // Durable baseline in both places.
    qp.write_sync(1, 0, 8, &old, IoFlags::empty()).unwrap();
    qp.write_sync(1, 8, 8, &old, IoFlags::empty()).unwrap();
    qp.flush_sync(1).unwrap();
    qp.write_sync(1, 0, 8, &new, IoFlags::FUA).unwrap(); // FUA
    qp.write_sync(1, 8, 8, &new, IoFlags::empty()).unwrap(); // cached only
    r.emu.power_cut();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    qp.read_sync(1, 0, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&new), "FUA write was lost");
    qp.read_sync(1, 8, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&old), "unflushed write survived");
}

#[test]
fn flushed_write_survives_a_power_cut() {
    let r = rig("size=1M,lba=512,vwc=on");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let data = patterned(&r.ctrl, 4096, 3);
    qp.write_sync(1, 16, 8, &data, IoFlags::empty()).unwrap();
    qp.flush_sync(1).unwrap();
    r.emu.power_cut();
    let mut rd = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    qp.read_sync(1, 16, 8, &mut rd).unwrap();
    assert_eq!(contents(&rd), contents(&data));
}

#[test]
fn queue_pairs_can_move_between_threads() {
    fn assert_send<X: Send>(_: &X) {}
    let r = rig("size=1M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    assert_send(&qp);
    let data = patterned(&r.ctrl, 4096, 3);
    std::thread::scope(|s| {
        s.spawn(|| qp.write_sync(1, 0, 8, &data, IoFlags::empty()).unwrap());
    });
    qp.flush_sync(1).unwrap();
}

#[test]
fn each_command_reaches_the_controller_with_its_fields() {
    let r = rig("size=8M,lba=512");
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(8)).unwrap();
    let qid = qp.qid();
    let buf = patterned(&r.ctrl, 4096, 1);
    let log = r.emu.command_log();
    log.enable();
    run_one(&mut qp, |q| {
        q.submit_write(1, 10, 8, &[buf.as_segment()], IoFlags::FUA, 0)
    })
    .unwrap();
    run_one(&mut qp, |q| q.submit_read(1, 10, 8, &[buf.as_segment()], 0)).unwrap();
    run_one(&mut qp, |q| q.submit_flush(1, 0)).unwrap();
    run_one(&mut qp, |q| q.submit_write_zeroes(1, 30, 4, true, 0)).unwrap();
    run_one(&mut qp, |q| q.submit_deallocate(1, &[(40, 8)], 0)).unwrap();
    run_one(&mut qp, |q| q.submit_verify(1, 10, 8, 0)).unwrap();
    let got: Vec<_> = log
        .io_entries()
        .iter()
        .map(|e| (e.qid, e.opcode, e.nsid, e.slba, e.blocks, e.fua, e.deac))
        .collect();
    assert_eq!(
        got,
        vec![
            (qid, 0x01, 1, 10, 8, true, false),
            (qid, 0x02, 1, 10, 8, false, false),
            (qid, 0x00, 1, 0, 0, false, false),
            (qid, 0x08, 1, 30, 4, false, true),
            (qid, 0x09, 1, 0, 0, false, true),
            (qid, 0x0c, 1, 10, 8, false, false),
        ]
    );
}

#[test]
fn queue_depth_is_capped_by_mqes() {
    let r = rig("size=1M,mqes=15");
    let qp = r.ctrl.create_io_queue_pair(qp_opts(256)).unwrap();
    assert_eq!(qp.depth(), 16);
}

#[test]
fn split_iovec_pieces_keep_prp_rules_and_data_order() {
    let r = rig("size=8M,lba=512,mdts=2"); // 16 KiB per command
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(16)).unwrap();
    let a = patterned(&r.ctrl, 4096, 1);
    let b = patterned(&r.ctrl, 32768, 2);
    let c = patterned(&r.ctrl, 8192, 3);
    let segs = [
        a.segment(2048, 2048).unwrap(),
        b.as_segment(),
        c.segment(0, 6144).unwrap(),
    ];
    let log = r.emu.command_log();
    log.enable();
    run_one(&mut qp, |q| {
        q.submit_write(1, 100, 80, &segs, IoFlags::empty(), 0)
    })
    .unwrap();
    assert_eq!(
        log.io_entries()
            .iter()
            .map(|e| (e.slba, e.blocks))
            .collect::<Vec<_>>(),
        vec![(100, 32), (132, 32), (164, 16)]
    );
    let mut rd = r.ctrl.allocator().alloc(40960, 4096).unwrap();
    qp.read_sync(1, 100, 80, &mut rd).unwrap();
    let mut want = contents(&a)[2048..].to_vec();
    want.extend(contents(&b));
    want.extend(&contents(&c)[..6144]);
    assert!(contents(&rd) == want);
}

/// Resident memory of this process in bytes (`/proc/self/statm`, second field).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_100_tib_ram_namespace_opens_with_little_memory_and_its_last_blocks_work() {
    let before = resident_bytes();
    let r = rig("size=100T,lba=4096");
    let opened = resident_bytes().saturating_sub(before);
    // One tracking bit per 4 KiB up front would be 3.3 GB; the sparse store is ~1.4 MB.
    assert!(opened < 256 << 20, "opening took {opened} bytes of memory");
    let blocks = (100u64 << 40) / 4096;
    let mut qp = r.ctrl.create_io_queue_pair(qp_opts(16)).unwrap();
    let mut dst = r.ctrl.allocator().alloc(8192, 4096).unwrap();
    dst.write(0, &[0xa5; 8192]).unwrap();
    qp.read_sync(1, blocks - 2, 2, &mut dst).unwrap();
    assert_eq!(
        contents(&dst),
        vec![0; 8192],
        "unwritten blocks read as zeros"
    );
    let src = patterned(&r.ctrl, 4096, 11);
    qp.write_sync(1, blocks - 1, 1, &src, IoFlags::empty())
        .unwrap();
    qp.read_sync(1, blocks - 2, 2, &mut dst).unwrap();
    let got = contents(&dst);
    assert_eq!(&got[..4096], &[0; 4096][..]);
    assert_eq!(&got[4096..], &contents(&src)[..]);
    let past_end = qp.read_sync(1, blocks - 1, 2, &mut dst).unwrap_err();
    assert_eq!(
        past_end.status().map(|s| s.code_only()),
        Some(nvme::spec::Status::generic(
            nvme::spec::status::GenericStatus::LbaOutOfRange
        ))
    );
    let used = resident_bytes().saturating_sub(before);
    assert!(
        used < 256 << 20,
        "I/O near the end took {used} bytes of memory"
    );
}
