//! The layer's rules, one test each, on the fake queue pair.

use std::sync::{Arc, Mutex};

use crate::fake::{caps, FakeBuf, FakeDev, FakeQueue, Logged};
use crate::providers::{ExtentFs, FileHandle, RawNamespace};
use crate::*;

type TDio = Dio<FakeQueue, FakeBuf>;

fn setup(lba: u32, vwc: bool, wz: bool) -> (FakeDev, TDio) {
    let dev = FakeDev::new(caps(lba, vwc, wz));
    let zero = dev.buf(4096);
    let dio = Dio::new(dev.queue(), Some(zero), 64).unwrap();
    (dev, dio)
}

fn iter(dev: &FakeDev, len: usize, byte: u8) -> IovIter<FakeBuf> {
    let b = dev.buf(len);
    b.fill(byte);
    IovIter::new(vec![b])
}

fn bytes(it: &IovIter<FakeBuf>) -> Vec<u8> {
    it.buffers().iter().flat_map(|b| b.bytes()).collect()
}

fn fs_file(block: u32) -> (Arc<ExtentFs>, FileHandle) {
    let fs = ExtentFs::new(1 << 20, 8 << 20, block).unwrap();
    let f = fs.create();
    (fs, f)
}

fn writes(log: &[Logged]) -> Vec<Logged> {
    log.iter()
        .copied()
        .filter(|l| !matches!(l, Logged::Read { .. }))
        .collect()
}

fn dsync() -> Kiocb {
    Kiocb::new(0, KiocbFlags::DSYNC)
}

// ---- request checks ----

#[test]
fn zero_length_returns_zero_without_io() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let mut it = IovIter::<FakeBuf>::new(vec![]);
    let mut io = Kiocb::new(4096, KiocbFlags::DSYNC);
    assert_eq!(dio.write(&mut io, &mut it, &raw, &NoHooks), Ok(0));
    assert_eq!(dio.read(&mut io, &mut it, &raw, &NoHooks), Ok(0));
    assert!(dev.log().is_empty());
    assert_eq!(io.pos, 4096);
}

#[test]
fn read_at_or_past_eof_returns_zero_before_alignment_checks() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    f.set_size(8192).unwrap();
    for pos in [8192, 8193, 1 << 20] {
        let mut it = iter(&dev, 100, 0xaa);
        let mut io = Kiocb::new(pos, KiocbFlags::empty());
        assert_eq!(f.read(&mut dio, &mut io, &mut it), Ok(0), "pos {pos}");
        assert_eq!(it.count(), 100);
    }
    assert!(dev.log().is_empty());
}

#[test]
fn read_crossing_eof_is_truncated_and_iterator_reverted() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let mut w = iter(&dev, 8192, 0x5a);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.set_size(5000).unwrap();
    let mut it = iter(&dev, 16384, 0xff);
    let mut io = Kiocb::new(0, KiocbFlags::empty());
    assert_eq!(f.read(&mut dio, &mut io, &mut it), Ok(5000));
    assert_eq!(io.pos, 5000);
    assert_eq!(it.consumed(), 5000);
    assert_eq!(it.count(), 16384 - 5000);
}

#[test]
fn misaligned_position_or_length_is_einval_naming_the_alignment_without_io() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    for (pos, len) in [(256u64, 4096usize), (0, 1000)] {
        let mut it = iter(&dev, len, 1);
        let mut io = Kiocb::new(pos, KiocbFlags::empty());
        let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("multiple of 512 bytes"), "{e}");
        assert_eq!(io.pos, pos);
    }
    assert!(dev.log().is_empty());
}

#[test]
fn buffer_breaking_dma_rules_is_einval_without_io() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    // Device address not dword aligned.
    let mut it = IovIter::new(vec![dev.buf_at(4096, 2)]);
    let e = dio
        .read(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DioError::Inval {
                what: "buffer device address",
                align: 4,
                ..
            }
        ),
        "{e}"
    );
    // Two buffers whose lengths are not whole blocks, though the total is.
    let mut it = IovIter::new(vec![dev.buf(256), dev.buf(256)]);
    let e = dio
        .write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DioError::Inval {
                what: "buffer length",
                align: 512,
                ..
            }
        ),
        "{e}"
    );
    assert!(dev.log().is_empty());
}

// ---- extent kinds ----

#[test]
fn hole_and_unwritten_reads_zero_fill_without_device_io() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    f.set_size(8192).unwrap(); // block 0 a hole
    f.preallocate(4096, 4096).unwrap(); // block 1 unwritten
    let stale = vec![0xee; 8 << 20];
    dev.set_media(0, &stale); // stale data everywhere on the device
    let mut it = iter(&dev, 8192, 0x11);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(8192));
    assert_eq!(bytes(&it), vec![0; 8192]);
    assert!(dev.log().is_empty());
    assert_eq!(dio.stats().hole_bytes, 8192);
}

struct FixedMap(MappingKind);
impl IomapOps for FixedMap {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn block_size(&self) -> u32 {
        512
    }
    fn begin(&self, _pos: u64, _len: u64, _f: IomapFlags) -> Result<Mapping, DioError> {
        Ok(Mapping {
            kind: self.0,
            flags: MappingFlags::empty(),
            offset: 0,
            length: 1 << 20,
            addr: 0,
        })
    }
}

#[test]
fn write_into_hole_or_delalloc_is_eio() {
    let (dev, mut dio) = setup(512, true, true);
    for kind in [MappingKind::Hole, MappingKind::Delalloc] {
        let mut it = iter(&dev, 4096, 1);
        let mut io = Kiocb::new(0, KiocbFlags::empty());
        let e = dio
            .write(&mut io, &mut it, &FixedMap(kind), &NoHooks)
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{kind:?}");
        assert_eq!(io.pos, 0);
    }
    assert!(dev.log().is_empty());
}

// ---- OVERWRITE_ONLY and NOWAIT ----

#[test]
fn overwrite_only_is_eagain_unless_the_range_is_a_pure_overwrite() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let mut w = iter(&dev, 8192, 1);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.preallocate(8192, 4096).unwrap();
    dev.clear_log();
    let ow = DioFlags::OVERWRITE_ONLY;
    // Past EOF.
    let mut it = iter(&dev, 4096, 2);
    let e = f.write(
        &mut dio,
        &mut Kiocb::new(8192 + 4096, KiocbFlags::empty()),
        &mut it,
        ow,
    );
    assert_eq!(e.unwrap_err().errno(), libc::EAGAIN);
    // Into an unwritten extent inside the file.
    let mut it = iter(&dev, 4096, 2);
    let e = f.write(
        &mut dio,
        &mut Kiocb::new(8192, KiocbFlags::empty()),
        &mut it,
        ow,
    );
    assert_eq!(e.unwrap_err().errno(), libc::EAGAIN);
    assert!(dev.log().is_empty());
    // A pure overwrite proceeds.
    let mut it = iter(&dev, 4096, 2);
    assert_eq!(
        f.write(
            &mut dio,
            &mut Kiocb::new(4096, KiocbFlags::empty()),
            &mut it,
            ow
        ),
        Ok(4096)
    );
}

#[test]
fn overwrite_only_rejects_new_or_shared_mappings_from_any_provider() {
    let (dev, mut dio) = setup(512, true, true);
    struct NewMap;
    impl IomapOps for NewMap {
        fn size(&self) -> u64 {
            1 << 20
        }
        fn block_size(&self) -> u32 {
            512
        }
        fn begin(&self, _p: u64, _l: u64, _f: IomapFlags) -> Result<Mapping, DioError> {
            Ok(Mapping {
                kind: MappingKind::Mapped,
                flags: MappingFlags::NEW,
                offset: 0,
                length: 1 << 20,
                addr: 0,
            })
        }
    }
    let mut it = iter(&dev, 4096, 2);
    let e = dio.rw(
        Request::write().flags(DioFlags::OVERWRITE_ONLY),
        &mut Kiocb::default(),
        &mut it,
        &NewMap,
        &NoHooks,
    );
    assert_eq!(e.unwrap_err().errno(), libc::EAGAIN);
    assert!(dev.log().is_empty());
}

struct Recording {
    inner: RawNamespace,
    seen: Mutex<Vec<IomapFlags>>,
}
impl IomapOps for Recording {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError> {
        self.seen.lock().unwrap().push(flags);
        self.inner.begin(pos, len, flags)
    }
}

#[test]
fn nowait_reaches_the_provider_which_may_answer_eagain() {
    let (dev, mut dio) = setup(512, true, true);
    let rec = Recording {
        inner: RawNamespace::new(dio.caps()),
        seen: Mutex::new(vec![]),
    };
    let mut it = iter(&dev, 4096, 2);
    dio.write(
        &mut Kiocb::new(0, KiocbFlags::NOWAIT),
        &mut it,
        &rec,
        &NoHooks,
    )
    .unwrap();
    assert!(rec.seen.lock().unwrap()[0].contains(IomapFlags::NOWAIT | IomapFlags::WRITE));
    // The extent layer refuses to allocate under NOWAIT.
    let (_fs, f) = fs_file(4096);
    let mut it = iter(&dev, 4096, 2);
    let mut io = Kiocb::new(0, KiocbFlags::NOWAIT);
    let e = f
        .write(&mut dio, &mut io, &mut it, DioFlags::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EAGAIN);
    assert_eq!(f.size(), 0);
}

// ---- FUA and flush ----

fn overwrite_setup(vwc: bool) -> (FakeDev, TDio, Arc<ExtentFs>, FileHandle) {
    let (dev, mut dio) = setup(512, vwc, true);
    let (fs, f) = fs_file(4096);
    let mut w = iter(&dev, 16384, 1);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    dev.clear_log();
    (dev, dio, fs, f)
}

#[test]
fn dsync_overwrite_uses_fua_and_no_flush() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 8192, 2);
    assert_eq!(
        f.write(&mut dio, &mut dsync(), &mut it, DioFlags::empty()),
        Ok(8192)
    );
    let base = (1 << 20) / 512;
    assert_eq!(
        dev.log(),
        vec![Logged::Write {
            lba: base,
            blocks: 16,
            fua: true
        }]
    );
    assert_eq!(dio.stats().fua_commands, 1);
    assert_eq!(dio.stats().flush_commands, 0);
}

#[test]
fn sync_write_uses_no_fua_and_flushes_before_success() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 8192, 2);
    let mut io = Kiocb::new(0, KiocbFlags::DSYNC | KiocbFlags::SYNC);
    assert_eq!(
        f.write(&mut dio, &mut io, &mut it, DioFlags::empty()),
        Ok(8192)
    );
    let base = (1 << 20) / 512;
    assert_eq!(
        dev.log(),
        vec![
            Logged::Write {
                lba: base,
                blocks: 16,
                fua: false
            },
            Logged::Flush
        ]
    );
}

#[test]
fn dsync_write_needing_metadata_is_not_fua_and_flushes() {
    // New blocks, copy-on-write blocks and size-changing writes all need a flush.
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 4096).unwrap();
    let cases: [(&FileHandle, u64); 3] = [(&f, 65536), (&clone, 0), (&f, 16384)];
    for (file, pos) in cases {
        dev.clear_log();
        let mut it = iter(&dev, 4096, 3);
        let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
        file.write(&mut dio, &mut io, &mut it, DioFlags::empty())
            .unwrap();
        let log = dev.log();
        assert!(
            log.iter()
                .all(|l| !matches!(l, Logged::Write { fua: true, .. })),
            "{pos}: {log:?}"
        );
        assert_eq!(log.last(), Some(&Logged::Flush), "{pos}");
    }
}

#[test]
fn plain_write_has_no_fua_and_no_flush() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let mut it = iter(&dev, 4096, 2);
    f.write(&mut dio, &mut Kiocb::default(), &mut it, DioFlags::empty())
        .unwrap();
    assert_eq!(
        dev.log(),
        vec![Logged::Write {
            lba: 2048,
            blocks: 8,
            fua: false
        }]
    );
}

#[test]
fn without_volatile_write_cache_no_flush_is_ever_issued() {
    let (dev, mut dio, _fs, f) = overwrite_setup(false);
    for (pos, flags) in [
        (0, KiocbFlags::DSYNC),
        (0, KiocbFlags::DSYNC | KiocbFlags::SYNC),
        (1 << 20, KiocbFlags::DSYNC),
    ] {
        let mut it = iter(&dev, 4096, 2);
        f.write(
            &mut dio,
            &mut Kiocb::new(pos, flags),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    }
    assert!(!dev.log().contains(&Logged::Flush));
    assert_eq!(dio.stats().flush_commands, 0);
    // The DSYNC overwrite still went out as write-through.
    assert_eq!(
        dev.log()[0],
        Logged::Write {
            lba: 2048,
            blocks: 8,
            fua: true
        }
    );
}

// ---- sub-block zeroing ----

#[test]
fn write_into_new_block_zeroes_head_and_tail_with_write_zeroes() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let mut it = iter(&dev, 512, 7);
    f.write(
        &mut dio,
        &mut Kiocb::new(1024, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    let b = 2048;
    assert_eq!(
        dev.log(),
        vec![
            Logged::WriteZeroes { lba: b, blocks: 2 },
            Logged::Write {
                lba: b + 2,
                blocks: 1,
                fua: false
            },
            Logged::WriteZeroes {
                lba: b + 3,
                blocks: 5
            },
        ]
    );
    assert_eq!(dio.stats().zeroed_bytes, 3584);
    assert_eq!(f.size(), 1536);
}

#[test]
fn zeroing_without_write_zeroes_writes_the_zero_buffer() {
    let (dev, mut dio) = setup(512, true, false);
    let (_fs, f) = fs_file(4096);
    dev.set_media(1 << 20, &[0xee; 4096]);
    let mut it = iter(&dev, 512, 7);
    f.write(
        &mut dio,
        &mut Kiocb::new(0, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        dev.log(),
        vec![
            Logged::Write {
                lba: 2048,
                blocks: 1,
                fua: false
            },
            Logged::Write {
                lba: 2049,
                blocks: 7,
                fua: false
            },
        ]
    );
    let mut expect = vec![7u8; 512];
    expect.resize(4096, 0);
    assert_eq!(dev.media(1 << 20, 4096), expect);
}

#[test]
fn unwritten_extent_write_zeroes_head_and_tail_then_converts() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    f.preallocate(0, 8192).unwrap();
    let mut it = iter(&dev, 1024, 7);
    f.write(
        &mut dio,
        &mut Kiocb::new(4096 + 512, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    let b = 2048 + 8;
    assert_eq!(
        writes(&dev.log()),
        vec![
            Logged::WriteZeroes { lba: b, blocks: 1 },
            Logged::Write {
                lba: b + 1,
                blocks: 2,
                fua: false
            },
            Logged::WriteZeroes {
                lba: b + 3,
                blocks: 5
            },
        ]
    );
    let ext = f.extents();
    assert_eq!(ext.len(), 2);
    assert!(ext[0].unwritten && !ext[1].unwritten, "{ext:?}");
}

#[test]
fn write_ending_past_eof_zeroes_the_tail_but_not_the_head() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    f.set_size(8192).unwrap();
    let mut it = iter(&dev, 512, 9);
    f.write(
        &mut dio,
        &mut Kiocb::new(8192 + 1024, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    let b = 2048 + 16;
    assert_eq!(
        dev.log(),
        vec![
            Logged::Write {
                lba: b + 2,
                blocks: 1,
                fua: false
            },
            Logged::WriteZeroes {
                lba: b + 3,
                blocks: 5
            },
        ]
    );
}

#[test]
fn tail_zeroing_runs_when_submission_stops_part_way() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let good = dev.buf(1024);
    good.fill(4);
    let mut bad = dev.buf(1024);
    bad.poisoned = true;
    let mut it = IovIter::new(vec![good, bad]);
    let mut io = Kiocb::default();
    let r = f.write(&mut dio, &mut io, &mut it, DioFlags::PARTIAL);
    assert_eq!(r, Ok(1024));
    assert_eq!(io.pos, 1024);
    assert_eq!(
        dev.log(),
        vec![
            Logged::Write {
                lba: 2048,
                blocks: 2,
                fua: false
            },
            Logged::WriteZeroes {
                lba: 2050,
                blocks: 6
            },
        ]
    );
    assert_eq!(f.size(), 1024);
}

#[test]
fn fault_without_partial_fails_and_reports_nothing_written() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let good = dev.buf(1024);
    let mut bad = dev.buf(1024);
    bad.poisoned = true;
    let mut it = IovIter::new(vec![good, bad]);
    let mut io = Kiocb::new(0, KiocbFlags::empty());
    let e = f
        .write(&mut dio, &mut io, &mut it, DioFlags::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT);
    assert_eq!(io.pos, 0);
    assert_eq!(f.size(), 0);
    assert!(f.extents().iter().all(|e| e.unwritten));
}

// ---- splitting ----

#[test]
fn request_larger_than_the_command_limit_becomes_several_commands() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    assert_eq!(dio.max_command_bytes(), 128 << 10); // MDTS
    let mut it = iter(&dev, 512 << 10, 1);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(dev.log().len(), 4);
    dev.clear_log();
    dio.set_max_command_bytes(8192);
    let mut it = iter(&dev, 65536, 1);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    let log = dev.log();
    assert_eq!(log.len(), 8);
    assert_eq!(
        log[7],
        Logged::Write {
            lba: 112,
            blocks: 16,
            fua: false
        }
    );
}

#[test]
fn buffers_breaking_the_page_rule_start_a_new_command() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    // 512 bytes that end mid-page cannot be followed by another segment.
    let mut it = IovIter::new(vec![dev.buf(512), dev.buf(4096), dev.buf(4096)]);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(
        dev.log(),
        vec![
            Logged::Write {
                lba: 0,
                blocks: 1,
                fua: false
            },
            Logged::Write {
                lba: 1,
                blocks: 16,
                fua: false
            },
        ]
    );
}

// ---- errors ----

#[test]
fn device_error_fails_the_request_stops_submission_and_keeps_the_position() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    dio.set_max_command_bytes(4096);
    dio.queue_mut().depth = 2;
    dev.st().fail_write_lba = Some(8);
    let mut it = iter(&dev, 64 << 10, 1);
    let mut io = Kiocb::new(0, KiocbFlags::DSYNC | KiocbFlags::SYNC);
    let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
    assert!(
        matches!(
            e,
            DioError::Device {
                op: "write",
                status: 0x281,
                dnr: true
            }
        ),
        "{e}"
    );
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(io.pos, 0);
    let log = dev.log();
    assert!(
        log.len() < 16,
        "submission went on after the error: {log:?}"
    );
    assert!(!log.contains(&Logged::Flush));
    assert_eq!(dio.stats().bytes, 0);
}

#[test]
fn first_error_wins() {
    let (dev, mut dio) = setup(512, true, true);
    let mut it = iter(&dev, 4096, 1);
    struct Hooks;
    impl DioOps for Hooks {
        fn end_io(
            &self,
            _: &Kiocb,
            _: u64,
            e: Option<&DioError>,
            _: CompletionFlags,
        ) -> Result<(), DioError> {
            assert!(e.is_some());
            Err(DioError::Io { reason: "later" })
        }
    }
    dev.st().fail_write_lba = Some(0);
    let raw = RawNamespace::new(dio.caps());
    let e = dio
        .write(&mut Kiocb::default(), &mut it, &raw, &Hooks)
        .unwrap_err();
    assert!(matches!(e, DioError::Device { .. }), "{e}");
}

// ---- completion ----

#[test]
fn hipri_polls_only_a_request_that_became_a_single_command() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    dio.read(&mut io, &mut it, &raw, &NoHooks).unwrap();
    assert_eq!(dio.queue().waits, 0);
    assert!(io.flags.contains(KiocbFlags::HIPRI));
    dio.set_max_command_bytes(2048);
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    dio.read(&mut io, &mut it, &raw, &NoHooks).unwrap();
    assert!(dio.queue().waits > 0);
    assert!(!io.flags.contains(KiocbFlags::HIPRI));
}

#[test]
fn synchronous_caller_without_hipri_sleeps_on_the_interrupt() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let mut it = iter(&dev, 4096, 1);
    dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(dio.queue().waits, 1);
}

#[test]
fn asynchronous_request_is_queued_and_completes_through_the_callback() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    dio.queue_mut().hold = true;
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    let it = iter(&dev, 4096, 6);
    let r = dio.rw_async(
        Request::write().done_before(100),
        Kiocb::new(16384, KiocbFlags::DSYNC),
        it,
        &f,
        Arc::new(f.clone()),
        Box::new(move |d| *d2.lock().unwrap() = Some((d.iocb.pos, d.result))),
    );
    assert!(matches!(r, Submitted::Queued));
    assert_eq!(dio.in_flight(), 1);
    assert_eq!(f.size(), 16384); // end_io has not run
    assert!(done.lock().unwrap().is_none());
    dio.queue_mut().hold = false;
    while dio.in_flight() > 0 {
        dio.poll_completions().unwrap();
    }
    assert_eq!(*done.lock().unwrap(), Some((20480, Ok(4196))));
    assert_eq!(f.size(), 20480);
    // Size-changing DSYNC write: no FUA, flushed before the callback.
    assert_eq!(dev.log().last(), Some(&Logged::Flush));
}

#[test]
fn force_wait_completes_an_asynchronous_request_before_returning() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let it = iter(&dev, 4096, 6);
    let r = dio.rw_async(
        Request::write().flags(DioFlags::FORCE_WAIT),
        Kiocb::default(),
        it,
        &*raw,
        raw.clone(),
        Box::new(|_| panic!("callback must not run")),
    );
    let Submitted::Done(d) = r else {
        panic!("queued")
    };
    assert_eq!(d.result, Ok(4096));
    assert_eq!(d.iocb.pos, 4096);
}

#[test]
fn completion_with_an_unknown_tag_is_counted_and_ignored() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    dio.queue_mut()
        .submit(&IoCommand::Flush, 0xdead_beef_0000_0003)
        .unwrap();
    dio.poll_completions().unwrap();
    assert_eq!(dio.stray_completions(), 1);
    let mut it = iter(&dev, 4096, 1);
    assert_eq!(
        dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks),
        Ok(4096)
    );
}

#[test]
fn done_before_is_added_and_the_position_advances() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(8192, KiocbFlags::empty());
    let r = dio.rw(
        Request::write().done_before(512),
        &mut io,
        &mut it,
        &raw,
        &NoHooks,
    );
    assert_eq!(r, Ok(4608));
    assert_eq!(io.pos, 12288);
}

// ---- the extent layer ----

#[test]
fn copy_on_write_leaves_the_source_intact_and_unshares_the_clone() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 8192).unwrap();
    assert!(clone.extents().iter().all(|e| e.shared));
    let mut it = iter(&dev, 4096, 0x77);
    clone
        .write(
            &mut dio,
            &mut Kiocb::new(4096, KiocbFlags::empty()),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    let mut a = iter(&dev, 8192, 0);
    f.read(&mut dio, &mut Kiocb::default(), &mut a).unwrap();
    assert_eq!(bytes(&a), vec![1; 8192]);
    let mut b = iter(&dev, 8192, 0);
    clone.read(&mut dio, &mut Kiocb::default(), &mut b).unwrap();
    let mut expect = vec![1u8; 4096];
    expect.extend(vec![0x77; 4096]);
    assert_eq!(bytes(&b), expect);
    let ext = clone.extents();
    assert!(ext[0].shared && !ext[1].shared, "{ext:?}");
}

#[test]
fn copy_on_write_of_a_partial_block_is_rejected() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 4096).unwrap();
    let mut it = iter(&dev, 512, 0x77);
    let e = clone.write(&mut dio, &mut Kiocb::default(), &mut it, DioFlags::empty());
    assert_eq!(e.unwrap_err().errno(), libc::EINVAL);
}

// ---- xfstests-style black-box cases ----

#[test]
fn generic_450_reads_at_and_past_eof() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let mut w = iter(&dev, 4096, 3);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    for (pos, want) in [(0, 4096), (2048, 2048), (4096, 0), (8192, 0)] {
        let mut it = iter(&dev, 8192, 0);
        assert_eq!(
            f.read(&mut dio, &mut Kiocb::new(pos, KiocbFlags::empty()), &mut it),
            Ok(want),
            "{pos}"
        );
    }
}

#[test]
fn generic_210_short_read_of_a_partial_last_block() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    let mut w = iter(&dev, 4096, 3);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.set_size(1000).unwrap();
    let mut it = iter(&dev, 4096, 0);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(1000));
    assert_eq!(&bytes(&it)[..1000], &[3; 1000][..]);
}

#[test]
fn generic_240_unaligned_writes_into_holes_do_not_zero_neighbours() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    for (i, pos) in [0u64, 512, 1536].into_iter().enumerate() {
        let mut it = iter(&dev, 512, 10 + i as u8);
        f.write(
            &mut dio,
            &mut Kiocb::new(pos, KiocbFlags::empty()),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    }
    let mut it = iter(&dev, 4096, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(2048));
    let got = bytes(&it);
    assert_eq!(&got[..512], &[10; 512][..]);
    assert_eq!(&got[512..1024], &[11; 512][..]);
    assert_eq!(&got[1024..1536], &[0; 512][..]);
    assert_eq!(&got[1536..2048], &[12; 512][..]);
}

#[test]
fn generic_250_failed_write_into_unwritten_extent_never_exposes_old_data() {
    let (dev, mut dio) = setup(512, true, true);
    let (_fs, f) = fs_file(4096);
    dev.set_media(1 << 20, &[0xee; 16384]);
    f.preallocate(0, 16384).unwrap();
    dev.st().fail_write_lba = Some(2048 + 9);
    let mut it = iter(&dev, 8192, 5);
    let e = f.write(
        &mut dio,
        &mut Kiocb::new(4096, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    );
    assert_eq!(e.unwrap_err().errno(), libc::EIO);
    let mut r = iter(&dev, 16384, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut r), Ok(16384));
    assert!(bytes(&r).iter().all(|&b| b == 0));
}

#[test]
fn generic_391_two_threads_write_non_overlapping_ranges_of_one_extent() {
    let dev = FakeDev::new(caps(512, true, true));
    let (_fs, f) = fs_file(4096);
    f.preallocate(0, 1 << 20).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let (dev, f) = (dev.clone(), f.clone());
            s.spawn(move || {
                let mut dio: TDio = Dio::new(dev.queue(), None, 8).unwrap();
                for i in 0..64u64 {
                    let pos = (i * 2 + u64::from(t)) * 8192;
                    let mut it = iter(&dev, 8192, t + 1);
                    let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
                    assert_eq!(
                        f.write(&mut dio, &mut io, &mut it, DioFlags::empty()),
                        Ok(8192)
                    );
                }
            });
        }
    });
    let (_, mut dio) = (0, Dio::new(dev.queue(), None, 8).unwrap());
    let mut r = iter(&dev, 1 << 20, 0);
    f.read(&mut dio, &mut Kiocb::default(), &mut r).unwrap();
    let got = bytes(&r);
    for (i, chunk) in got.chunks(8192).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 2) as u8 + 1), "chunk {i}");
    }
}

#[test]
fn random_verified_io_with_many_requests_in_flight() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let mut model = vec![0u8; 1 << 20];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let errors = Arc::new(Mutex::new(0));
    for round in 0..8 {
        dio.queue_mut().hold = true;
        // Non-overlapping slots per round so the model is exact.
        let mut used = std::collections::HashSet::new();
        for _ in 0..32 {
            let slot = rnd() % 128;
            if !used.insert(slot) {
                continue;
            }
            let len = ((rnd() % 16) + 1) as usize * 512;
            let pos = slot * 8192;
            let byte = (rnd() % 250) as u8 + 1;
            model[pos as usize..pos as usize + len].fill(byte);
            let errs = errors.clone();
            let r = dio.rw_async(
                Request::write(),
                Kiocb::new(
                    pos,
                    if round % 2 == 0 {
                        KiocbFlags::DSYNC
                    } else {
                        KiocbFlags::empty()
                    },
                ),
                iter(&dev, len, byte),
                &*raw,
                raw.clone(),
                Box::new(move |d| {
                    if d.result != Ok(d.iter.buffers()[0].len()) {
                        *errs.lock().unwrap() += 1;
                    }
                }),
            );
            assert!(matches!(r, Submitted::Queued));
        }
        assert!(dio.in_flight() > 10);
        dio.queue_mut().hold = false;
        while dio.in_flight() > 0 {
            dio.poll_completions().unwrap();
        }
    }
    assert_eq!(*errors.lock().unwrap(), 0);
    let mut r = iter(&dev, 1 << 20, 0);
    dio.read(&mut Kiocb::default(), &mut r, &*raw, &NoHooks)
        .unwrap();
    assert!(bytes(&r) == model);
}

// ---- durability ----

#[test]
fn dsync_writes_survive_a_power_cut_and_plain_writes_may_not() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    {
        let mut st = dev.st();
        st.durable = st.data.clone();
    }
    let mut a = iter(&dev, 4096, 0xa1);
    f.write(
        &mut dio,
        &mut Kiocb::new(0, KiocbFlags::DSYNC),
        &mut a,
        DioFlags::empty(),
    )
    .unwrap();
    let mut b = iter(&dev, 4096, 0xb2);
    f.write(
        &mut dio,
        &mut Kiocb::new(4096, KiocbFlags::empty()),
        &mut b,
        DioFlags::empty(),
    )
    .unwrap();
    let mut c = iter(&dev, 4096, 0xc3);
    f.write(
        &mut dio,
        &mut Kiocb::new(8192, KiocbFlags::SYNC),
        &mut c,
        DioFlags::empty(),
    )
    .unwrap();
    // The SYNC write's flush also made the plain write durable; write another.
    let mut d = iter(&dev, 4096, 0xd4);
    f.write(
        &mut dio,
        &mut Kiocb::new(12288, KiocbFlags::empty()),
        &mut d,
        DioFlags::empty(),
    )
    .unwrap();
    dev.power_cut();
    let media = dev.media(1 << 20, 16384);
    assert!(media[..4096].iter().all(|&x| x == 0xa1));
    assert!(media[8192..12288].iter().all(|&x| x == 0xc3));
    assert!(media[12288..].iter().all(|&x| x == 1), "plain write lost");
}

// ---- the iterator ----

#[test]
fn iov_iter_advance_revert_truncate_and_reexpand_round_trip() {
    let dev = FakeDev::new(caps(512, true, true));
    let mut it = IovIter::new(vec![dev.buf(1024), dev.buf(0), dev.buf(2048)]);
    assert_eq!(it.count(), 3072);
    it.advance(1536);
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 2,
            offset: 512,
            len: 1536
        })
    );
    it.truncate(1024);
    assert_eq!(it.count(), 1024);
    assert_eq!(it.chunks().map(|c| c.len).sum::<usize>(), 1024);
    it.reexpand(1536);
    assert_eq!(it.count(), 1536);
    it.revert(1536);
    assert_eq!((it.consumed(), it.count()), (0, 3072));
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 0,
            offset: 0,
            len: 1024
        })
    );
    it.advance(1024);
    it.revert(512);
    assert_eq!(
        it.chunks().next(),
        Some(Chunk {
            index: 0,
            offset: 512,
            len: 512
        })
    );
    // Re-expanding never goes past the bytes the buffers hold.
    it.reexpand(1 << 20);
    assert_eq!(it.count(), 3072 - 512);
}

#[test]
fn raw_read_crossing_the_namespace_end_is_cut_at_the_end() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let end = raw.size();
    let mut it = iter(&dev, 8192, 0xff);
    let mut io = Kiocb::new(end - 4096, KiocbFlags::empty());
    assert_eq!(dio.read(&mut io, &mut it, &raw, &NoHooks), Ok(4096));
    assert_eq!((io.pos, it.count()), (end, 4096));
    assert_eq!(
        dev.log(),
        vec![Logged::Read {
            lba: end / 512 - 8,
            blocks: 8
        }]
    );
    // A write past the end has no space.
    let mut it = iter(&dev, 4096, 1);
    let e = dio.write(
        &mut Kiocb::new(end, KiocbFlags::empty()),
        &mut it,
        &raw,
        &NoHooks,
    );
    assert_eq!(e.unwrap_err().errno(), libc::ENOSPC);
}

/// The one command of a write cut to the last 4 KiB before `end` (512-byte blocks).
fn write_of_the_last_4k(end: u64) -> Vec<Logged> {
    vec![Logged::Write {
        lba: end / 512 - 8,
        blocks: 8,
        fua: false,
    }]
}

#[test]
fn raw_write_crossing_the_namespace_end_is_cut_at_the_end_before_any_io() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    let end = raw.size();
    // One buffer (the single-command path) and two (the general path).
    for mut it in [
        iter(&dev, 8192, 1),
        IovIter::new(vec![dev.buf(4096), dev.buf(4096)]),
    ] {
        dev.clear_log();
        let mut io = Kiocb::new(end - 4096, KiocbFlags::empty());
        assert_eq!(dio.write(&mut io, &mut it, &raw, &NoHooks), Ok(4096));
        // Short: the position is at the end and the iterator holds what was cut.
        assert_eq!((io.pos, it.count(), it.consumed()), (end, 4096, 4096));
        assert_eq!(dev.log(), write_of_the_last_4k(end));
        // The next write starts at the end: ENOSPC, nothing issued, nothing consumed.
        dev.clear_log();
        let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
        assert_eq!(e.errno(), libc::ENOSPC);
        assert_eq!((io.pos, it.count()), (end, 4096));
        assert!(dev.log().is_empty());
    }
}

#[test]
fn async_raw_write_crossing_the_end_is_cut_and_hands_back_the_whole_iterator() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let end = raw.size();
    let done = Arc::new(Mutex::new(None));
    let d = done.clone();
    let sub = dio.rw_async(
        Request::write(),
        Kiocb::new(end - 4096, KiocbFlags::empty()),
        iter(&dev, 8192, 3),
        &*raw,
        raw.clone(),
        Box::new(move |a: AsyncDone<FakeBuf>| {
            *d.lock().unwrap() = Some((a.result, a.iocb.pos, a.iter.count()));
        }),
    );
    let got = match sub {
        Submitted::Done(a) => Some((a.result, a.iocb.pos, a.iter.count())),
        Submitted::Queued => {
            while dio.in_flight() > 0 {
                dio.poll_completions().unwrap();
            }
            done.lock().unwrap().take()
        }
    };
    assert_eq!(got, Some((Ok(4096), end, 4096)));
    assert_eq!(dev.log(), write_of_the_last_4k(end));
    // At the end: ENOSPC at once.
    let sub = dio.rw_async(
        Request::write(),
        Kiocb::new(end, KiocbFlags::empty()),
        iter(&dev, 4096, 3),
        &*raw,
        raw.clone(),
        Box::new(|_| panic!("a request refused at submission has no callback")),
    );
    let Submitted::Done(a) = sub else {
        panic!("a write at the end must fail at submission")
    };
    assert_eq!(a.result.unwrap_err().errno(), libc::ENOSPC);
}

#[test]
fn nowait_request_meeting_a_full_queue_is_eagain_instead_of_waiting() {
    let (dev, mut dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    dio.set_max_command_bytes(4096);
    dio.queue_mut().depth = 1;
    let mut it = iter(&dev, 8192, 1);
    let mut io = Kiocb::new(0, KiocbFlags::NOWAIT);
    let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
    assert_eq!(e.errno(), libc::EAGAIN);
    assert_eq!(io.pos, 0);
    assert_eq!(dev.log().len(), 1);
    assert_eq!(dio.in_flight(), 0);
    // Without NOWAIT the same request waits for room and succeeds.
    let mut it = iter(&dev, 8192, 1);
    assert_eq!(
        dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks),
        Ok(8192)
    );
}

#[test]
fn position_plus_length_overflowing_is_einval_without_io() {
    let (dev, mut dio) = setup(512, true, true);
    // A provider without a write limit (the raw namespace's would answer ENOSPC).
    let file = Recording {
        inner: RawNamespace::new(dio.caps()),
        seen: Mutex::new(vec![]),
    };
    let mut it = iter(&dev, 4096, 1);
    let mut io = Kiocb::new(u64::MAX - 511, KiocbFlags::empty());
    let e = dio.write(&mut io, &mut it, &file, &NoHooks).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(dev.log().is_empty());
    assert!(file.seen.lock().unwrap().is_empty());
}

#[test]
fn synchronous_read_runs_while_every_slot_holds_an_asynchronous_request() {
    let dev = FakeDev::new(caps(512, false, true));
    let mut dio: TDio = Dio::new(dev.queue(), None, 1).unwrap();
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    dev.set_media(8192, &[0x5a; 4096]);
    dio.queue_mut().hold = true;
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    let r = dio.rw_async(
        Request::write(),
        Kiocb::default(),
        iter(&dev, 4096, 6),
        &*raw,
        raw.clone(),
        Box::new(move |d| *d2.lock().unwrap() = Some(d.result)),
    );
    assert!(matches!(r, Submitted::Queued));
    assert_eq!(dio.in_flight(), 1);
    // The only pool slot is taken: a second asynchronous request is refused.
    let busy = dio.rw_async(
        Request::write(),
        Kiocb::new(4096, KiocbFlags::empty()),
        iter(&dev, 4096, 7),
        &*raw,
        raw.clone(),
        Box::new(|_| {}),
    );
    assert!(matches!(
        busy,
        Submitted::Done(AsyncDone {
            result: Err(DioError::Busy { slots: 1 }),
            ..
        })
    ));
    dio.queue_mut().hold = false;
    // A synchronous single-command read still runs, and the asynchronous
    // completion reaped while it waits finishes its own request.
    let mut it = iter(&dev, 4096, 0);
    let mut io = Kiocb::new(8192, KiocbFlags::HIPRI);
    assert_eq!(dio.read(&mut io, &mut it, &*raw, &NoHooks), Ok(4096));
    assert_eq!(bytes(&it), vec![0x5a; 4096]);
    assert_eq!(io.pos, 12288);
    while dio.in_flight() > 0 {
        dio.poll_completions().unwrap();
    }
    assert_eq!(*done.lock().unwrap(), Some(Ok(4096)));
    assert_eq!(dev.media(0, 4096), vec![6; 4096]);
}

/// The raw namespace with a block size no file system could have.
struct OddBlocks(RawNamespace);
impl IomapOps for OddBlocks {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn block_size(&self) -> u32 {
        768
    }
    fn begin(&self, pos: u64, len: u64, flags: IomapFlags) -> Result<Mapping, DioError> {
        self.0.begin(pos, len, flags)
    }
}

#[test]
fn provider_block_size_is_checked_for_writes_which_zero_by_it_not_for_reads() {
    let (dev, mut dio) = setup(512, true, true);
    let odd = OddBlocks(RawNamespace::new(dio.caps()));
    for flags in [KiocbFlags::HIPRI, KiocbFlags::empty()] {
        let mut it = iter(&dev, 4096, 0);
        assert_eq!(
            dio.read(&mut Kiocb::new(0, flags), &mut it, &odd, &NoHooks),
            Ok(4096)
        );
    }
    // Two buffers take the general path, one the single-command path: both refuse.
    for mut it in [
        iter(&dev, 4096, 1),
        IovIter::new(vec![dev.buf(2048), dev.buf(2048)]),
    ] {
        let e = dio
            .write(&mut Kiocb::default(), &mut it, &odd, &NoHooks)
            .unwrap_err();
        assert!(matches!(e, DioError::InvalidRequest { .. }), "{e}");
    }
    assert_eq!(
        dev.log(),
        vec![
            Logged::Read { lba: 0, blocks: 8 },
            Logged::Read { lba: 0, blocks: 8 }
        ]
    );
}
