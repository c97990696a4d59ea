//! Every namespace format against every buffer size: a data command moves exactly the
//! blocks' data plus, for extended LBAs, their metadata, or is refused before it
//! reaches the controller.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use common::*;
use nvme::transport::emu::EmuTransport;
use nvme::{DmaBuffer, Error, IoFlags, IoQueuePair, PrpRule, QueuePairOptions};
use proptest::prelude::*;

/// Data bytes per block of each format the tests cover.
const DATA_SIZES: [u32; 2] = [512, 4096];
/// Metadata bytes per block of each format.
const METADATA_SIZES: [u16; 4] = [0, 8, 16, 64];
/// Most blocks one generated command covers.
const MAX_BLOCKS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Format {
    data: u32,
    metadata: u16,
    separate: bool,
}

impl Format {
    fn device_options(self) -> String {
        let mset = if self.separate { "sep" } else { "ext" };
        format!(
            "size=1M,lba={},ms={},mset={mset},log=on",
            self.data, self.metadata
        )
    }

    /// Bytes per block in the data buffer.
    fn transfer_block_size(self) -> usize {
        if self.separate {
            self.data as usize
        } else {
            (self.data + u32::from(self.metadata)) as usize
        }
    }

    fn needs_metadata_buffer(self) -> bool {
        self.separate && self.metadata != 0
    }
}

fn formats() -> Vec<Format> {
    let mut all = Vec::new();
    for data in DATA_SIZES {
        for metadata in METADATA_SIZES {
            for separate in [false, true] {
                all.push(Format {
                    data,
                    metadata,
                    separate,
                });
            }
        }
    }
    all
}

/// One controller per format with a queue pair and a buffer larger than any command.
struct Fixture {
    rig: Rig,
    qp: IoQueuePair<EmuTransport>,
    buf: DmaBuffer,
}

thread_local! {
    static FIXTURES: RefCell<HashMap<Format, Fixture>> = RefCell::new(HashMap::new());
}

fn with_fixture<R>(f: Format, test: impl FnOnce(&mut Fixture) -> R) -> R {
    FIXTURES.with(|all| {
        let mut all = all.borrow_mut();
        let fx = all.entry(f).or_insert_with(|| {
            let rig = rig(&f.device_options());
            let qp = rig
                .ctrl
                .create_io_queue_pair(QueuePairOptions::default())
                .unwrap();
            let len = MAX_BLOCKS as usize * 4160 + 8192;
            let buf = rig.ctrl.allocator().alloc(len, 4096).unwrap();
            Fixture { rig, qp, buf }
        });
        test(fx)
    })
}

/// Submits a read or write of `blocks` blocks over the first `len` bytes of the
/// fixture's buffer; returns the result, whether the queue pair submitted anything and
/// whether the controller executed any I/O command.
fn submit(
    fx: &mut Fixture,
    write: bool,
    blocks: u32,
    len: usize,
) -> (Result<(), Error>, bool, bool) {
    let log = fx.rig.emu.command_log();
    log.clear();
    let before = fx.qp.stats().submitted;
    let seg = fx.buf.segment(0, len).unwrap();
    let r = if write {
        fx.qp
            .submit_write(1, 0, blocks, &[seg], IoFlags::empty(), 0)
    } else {
        fx.qp.submit_read(1, 0, blocks, &[seg], 0)
    };
    fx.qp.ring();
    let mut status = Ok(());
    if r.is_ok() {
        while fx.qp.outstanding() > 0 {
            fx.qp
                .wait_completions(8, Duration::from_secs(2), |_, s| {
                    if s.is_err() {
                        status = s;
                    }
                })
                .unwrap();
        }
        assert!(status.is_ok(), "{status:?}");
    }
    let submitted = fx.qp.stats().submitted != before;
    (r, submitted, !log.io_entries().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_buffer_that_is_not_exactly_the_blocks_transfer_is_refused_before_submission(
        fi in 0..16usize,
        blocks in 1..=MAX_BLOCKS,
        delta in prop_oneof![Just(0i64), -4200i64..0, 1i64..4200],
        write in any::<bool>(),
    ) {
        let f = formats()[fi];
        let exact = blocks as usize * f.transfer_block_size();
        let len = (exact as i64 + delta).max(1) as usize;
        with_fixture(f, |fx| {
            let (r, submitted, executed) = submit(fx, write, blocks, len);
            if f.needs_metadata_buffer() {
                prop_assert!(
                    matches!(
                        r,
                        Err(Error::MetadataBufferRequired { nsid: 1, metadata_bytes })
                            if metadata_bytes == f.metadata
                    ),
                    "{f:?}: {r:?}"
                );
                prop_assert!(!submitted && !executed);
            } else if len != exact {
                prop_assert!(
                    matches!(
                        r,
                        Err(Error::BadSegment { rule: PrpRule::LengthMismatch, .. })
                    ),
                    "{f:?} {len} of {exact}: {r:?}"
                );
                prop_assert!(!submitted && !executed);
            } else {
                prop_assert!(r.is_ok(), "{f:?}: {r:?}");
                prop_assert!(submitted && executed);
            }
            Ok(())
        })?;
    }

    #[test]
    fn exact_buffers_on_extended_formats_round_trip_data_and_metadata(
        fi in 0..16usize,
        blocks in 1..=MAX_BLOCKS,
        slba in 0u64..64,
        seed in any::<u64>(),
    ) {
        let f = formats()[fi];
        prop_assume!(!f.needs_metadata_buffer());
        let len = blocks as usize * f.transfer_block_size();
        with_fixture(f, |fx| {
            let src = patterned(&fx.rig.ctrl, len, seed);
            let mut dst = fx.rig.ctrl.allocator().alloc(len + 4096, 4096).unwrap();
            dst.fill(0, len + 4096, 0xee).unwrap();
            fx.qp.write_sync(1, slba, blocks, &src, IoFlags::empty()).unwrap();
            fx.qp.read_sync(1, slba, blocks, &mut dst).unwrap();
            let got = contents(&dst);
            prop_assert_eq!(&got[..len], &contents(&src)[..]);
            // Nothing beyond the blocks' transfer was touched.
            prop_assert!(got[len..].iter().all(|&b| b == 0xee));
            Ok(())
        })?;
    }
}

#[test]
fn a_separate_metadata_namespace_refuses_plain_reads_and_writes() {
    let r = rig("size=1M,lba=4096,ms=64,mset=sep,log=on");
    let mut qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let mut buf = r.ctrl.allocator().alloc(8192, 4096).unwrap();
    let e = qp.write_sync(1, 0, 2, &buf, IoFlags::FUA).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MetadataBufferRequired {
                nsid: 1,
                metadata_bytes: 64
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "namespace 1 is formatted with 64 bytes of separate metadata per block and the \
         command carried no metadata buffer; format it without metadata or with extended LBAs"
    );
    let e = qp.read_sync(1, 0, 2, &mut buf).unwrap_err();
    assert!(matches!(e, Error::MetadataBufferRequired { .. }), "{e:?}");
    assert_eq!(qp.stats().submitted, 0);
    assert!(r.emu.command_log().io_entries().is_empty());
    // Commands that move no data are unaffected.
    qp.flush_sync(1).unwrap();
}

#[test]
fn protection_only_metadata_with_pract_needs_no_metadata_buffer_and_others_still_do() {
    let r = rig("size=1M,lba=512,ms=8,mset=sep,pi=1");
    let mut qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let buf = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let seg = buf.segment(0, 512).unwrap();
    assert!(matches!(
        qp.submit_write(1, 0, 1, &[seg], IoFlags::empty(), 0),
        Err(Error::MetadataBufferRequired { .. })
    ));
    qp.submit_write(1, 0, 1, &[seg], IoFlags::PRACT, 0).unwrap();
    qp.ring();
    while qp.outstanding() > 0 {
        qp.wait_completions(8, Duration::from_secs(2), |_, s| s.unwrap())
            .unwrap();
    }
    let r16 = rig("size=1M,lba=512,ms=16,mset=sep,pi=1");
    let mut qp16 = r16
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    assert!(matches!(
        qp16.submit_write(1, 0, 1, &[seg], IoFlags::PRACT, 0),
        Err(Error::MetadataBufferRequired {
            metadata_bytes: 16,
            ..
        })
    ));
}

#[test]
fn transfer_limit_counts_metadata_of_extended_blocks() {
    // mdts=1: 8 KiB per command; 16 blocks of 512 fit, 16 blocks of 520 do not and
    // are split at whole extended blocks.
    let r = rig("size=1M,lba=512,ms=8,mset=ext,mdts=1,log=on");
    let mut qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let buf = r.ctrl.allocator().alloc(16 * 520, 4096).unwrap();
    let seg = buf.segment(0, 16 * 520).unwrap();
    qp.submit_read(1, 0, 16, &[seg], 0).unwrap();
    drain(&mut qp).unwrap();
    let pieces: Vec<_> = r
        .emu
        .command_log()
        .io_entries()
        .iter()
        .map(|e| (e.slba, e.blocks))
        .collect();
    assert_eq!(pieces, vec![(0, 15), (15, 1)]);
}

/// Writes `blocks` blocks at `slba` from `src` and reads them back into `dst`, both with
/// `flags`, waiting for each.
fn write_then_read(
    qp: &mut IoQueuePair<EmuTransport>,
    slba: u64,
    blocks: u32,
    src: &DmaBuffer,
    dst: &DmaBuffer,
    flags: IoFlags,
) {
    let mut status = Ok(());
    let mut wait = |qp: &mut IoQueuePair<EmuTransport>| {
        qp.ring();
        while qp.outstanding() > 0 {
            qp.wait_completions(8, Duration::from_secs(2), |_, s| {
                if s.is_err() {
                    status = s;
                }
            })
            .unwrap();
        }
    };
    let seg = src.segment(0, src.len()).unwrap();
    qp.submit_write(1, slba, blocks, &[seg], flags, 0).unwrap();
    wait(qp);
    let seg = dst.segment(0, dst.len()).unwrap();
    qp.submit_read_with_flags(1, slba, blocks, &[seg], flags, 0)
        .unwrap();
    wait(qp);
    status.unwrap();
}

#[test]
fn pract_moves_data_only_and_the_controller_keeps_the_protection_information() {
    for mset in ["ext", "sep"] {
        let r = rig(&format!("size=1M,lba=512,ms=8,mset={mset},pi=1"));
        let mut qp = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions::default())
            .unwrap();
        let src = patterned(&r.ctrl, 4 * 512, 3);
        let dst = r.ctrl.allocator().alloc(4 * 512, 4096).unwrap();
        write_then_read(&mut qp, 20, 4, &src, &dst, IoFlags::PRACT);
        assert_eq!(contents(&dst), contents(&src), "mset={mset}");
        if mset == "ext" {
            // Without PRACT the blocks come back with the tuples the controller made.
            let ext = r.ctrl.allocator().alloc(4 * 520, 4096).unwrap();
            let seg = ext.segment(0, 4 * 520).unwrap();
            qp.submit_read(1, 20, 4, &[seg], 0).unwrap();
            qp.ring();
            while qp.outstanding() > 0 {
                qp.wait_completions(8, Duration::from_secs(2), |_, s| s.unwrap())
                    .unwrap();
            }
            let got = contents(&ext);
            let data = contents(&src);
            for (i, block) in got.chunks(520).enumerate() {
                assert_eq!(&block[..512], &data[i * 512..(i + 1) * 512]);
                let pi = nvme::spec::pi::Pi8::read(&block[512..]).unwrap();
                assert_eq!(pi.guard.get(), nvme::spec::pi::guard16(&block[..512]));
                assert_eq!(pi.ref_tag.get(), 20 + i as u32);
            }
        }
    }
}

/// Waits for everything queued on `qp`, returning the first error.
fn drain(qp: &mut IoQueuePair<EmuTransport>) -> Result<(), Error> {
    let mut status = Ok(());
    qp.ring();
    while qp.outstanding() > 0 {
        qp.wait_completions(8, Duration::from_secs(2), |_, s| {
            if status.is_ok() {
                status = s;
            }
        })
        .unwrap();
    }
    status
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn separate_metadata_buffers_must_hold_exactly_the_commands_metadata(
        fi in 0..16usize,
        blocks in 1..=MAX_BLOCKS,
        delta in prop_oneof![Just(0i64), -64i64..0, 1i64..64],
        write in any::<bool>(),
    ) {
        let f = formats()[fi];
        let data_len = blocks as usize * f.transfer_block_size();
        let exact = if f.needs_metadata_buffer() {
            blocks as usize * usize::from(f.metadata)
        } else {
            0
        };
        let md_len = (exact as i64 + delta).max(4) as usize;
        with_fixture(f, |fx| {
            let md_buf = fx.rig.ctrl.allocator().alloc(4096, 4096).unwrap();
            let log = fx.rig.emu.command_log();
            log.clear();
            let before = fx.qp.stats().submitted;
            let opts = nvme::IoOptions {
                metadata: Some(md_buf.segment(0, md_len).unwrap()),
                ..Default::default()
            };
            let seg = fx.buf.segment(0, data_len).unwrap();
            let r = if write {
                fx.qp.submit_write_ext(1, 0, blocks, &[seg], &opts, 0)
            } else {
                fx.qp.submit_read_ext(1, 0, blocks, &[seg], &opts, 0)
            };
            if md_len == exact {
                prop_assert!(r.is_ok(), "{f:?}: {r:?}");
                prop_assert!(drain(&mut fx.qp).is_ok());
                prop_assert_eq!(log.io_entries().len(), 1);
            } else {
                prop_assert!(
                    matches!(
                        r,
                        Err(Error::MetadataLengthMismatch { expected, given, .. })
                            if expected == exact as u64 && given == md_len as u64
                    ),
                    "{f:?} {md_len} of {exact}: {r:?}"
                );
                prop_assert_eq!(fx.qp.stats().submitted, before);
                prop_assert!(log.io_entries().is_empty());
            }
            Ok(())
        })?;
    }
}

#[test]
fn separate_metadata_round_trips_through_the_metadata_pointer() {
    for (lba, ms) in [(512usize, 8usize), (4096, 64)] {
        let r = rig(&format!("size=1M,lba={lba},ms={ms},mset=sep"));
        let mut qp = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions::default())
            .unwrap();
        let blocks = 4u32;
        let src = patterned(&r.ctrl, blocks as usize * lba, 7);
        let md_src = patterned(&r.ctrl, blocks as usize * ms, 9);
        let dst = r
            .ctrl
            .allocator()
            .alloc(blocks as usize * lba, 4096)
            .unwrap();
        let mut md_dst = r.ctrl.allocator().alloc(4096, 4096).unwrap();
        md_dst.fill(0, 4096, 0xee).unwrap();
        let opts = |m: &DmaBuffer| nvme::IoOptions {
            metadata: Some(m.segment(0, blocks as usize * ms).unwrap()),
            ..Default::default()
        };
        let seg = src.segment(0, src.len()).unwrap();
        qp.submit_write_ext(1, 3, blocks, &[seg], &opts(&md_src), 0)
            .unwrap();
        drain(&mut qp).unwrap();
        let seg = dst.segment(0, dst.len()).unwrap();
        qp.submit_read_ext(1, 3, blocks, &[seg], &opts(&md_dst), 0)
            .unwrap();
        drain(&mut qp).unwrap();
        assert_eq!(contents(&dst), contents(&src), "{lba}+{ms}");
        let md = contents(&md_dst);
        let md_len = blocks as usize * ms;
        assert_eq!(&md[..md_len], &contents(&md_src)[..], "{lba}+{ms}");
        // The controller wrote nothing past the metadata the command moves.
        assert!(md[md_len..].iter().all(|&b| b == 0xee));
    }
}

#[test]
fn a_misaligned_metadata_pointer_is_refused() {
    let r = rig("size=1M,lba=512,ms=8,mset=sep");
    let mut qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let data = r.ctrl.allocator().alloc(512, 4096).unwrap();
    let md = r.ctrl.allocator().alloc(4096, 4096).unwrap();
    let opts = nvme::IoOptions {
        metadata: Some(md.segment(2, 8).unwrap()),
        ..Default::default()
    };
    let seg = data.segment(0, 512).unwrap();
    let e = qp.submit_write_ext(1, 0, 1, &[seg], &opts, 0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadSegment {
                rule: PrpRule::NotDwordAligned,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(qp.stats().submitted, 0);
}
