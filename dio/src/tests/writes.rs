//! Writes: extent kinds a write may meet, OVERWRITE_ONLY and NOWAIT, splitting
//! into commands, copy-on-write and the raw namespace's write limit.

use super::*;

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
        let mut io = at(0);
        let e = dio
            .write(&mut io, &mut it, &FixedMap(kind), &NoHooks)
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{kind:?}");
        assert_eq!(io.pos, 0);
    }
    assert!(dev.log().is_empty());
}

#[test]
fn overwrite_only_is_eagain_unless_the_range_is_a_pure_overwrite() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 8192, 1);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.preallocate(8192, 4096).unwrap();
    dev.clear_log();
    let ow = DioFlags::OVERWRITE_ONLY;
    // Past EOF.
    let mut it = iter(&dev, 4096, 2);
    let e = f.write(&mut dio, &mut at(8192 + 4096), &mut it, ow);
    assert_eq!(e.unwrap_err().errno(), libc::EAGAIN);
    // Into an unwritten extent inside the file.
    let mut it = iter(&dev, 4096, 2);
    let e = f.write(&mut dio, &mut at(8192), &mut it, ow);
    assert_eq!(e.unwrap_err().errno(), libc::EAGAIN);
    assert!(dev.log().is_empty());
    // A pure overwrite proceeds.
    let mut it = iter(&dev, 4096, 2);
    assert_eq!(f.write(&mut dio, &mut at(4096), &mut it, ow), Ok(4096));
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

#[test]
fn nowait_request_meeting_a_full_queue_is_eagain_instead_of_waiting() {
    let (dev, mut dio, raw) = raw_setup();
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
fn request_larger_than_the_command_limit_becomes_several_commands() {
    let (dev, mut dio, raw) = raw_setup();
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
    assert_eq!(log[7], write_cmd(112, 16));
}

#[test]
fn buffers_breaking_the_page_rule_start_a_new_command() {
    let (dev, mut dio, raw) = raw_setup();
    // 512 bytes that end mid-page cannot be followed by another segment.
    let mut it = IovIter::new(vec![dev.buf(512), dev.buf(4096), dev.buf(4096)]);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(dev.log(), vec![write_cmd(0, 1), write_cmd(1, 16)]);
}

#[test]
fn copy_on_write_leaves_the_source_intact_and_unshares_the_clone() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 8192).unwrap();
    assert!(clone.extents().iter().all(|e| e.shared));
    let mut it = iter(&dev, 4096, 0x77);
    clone
        .write(&mut dio, &mut at(4096), &mut it, DioFlags::empty())
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
fn copy_on_write_of_a_partial_block_is_einval() {
    let (dev, mut dio, _fs, f) = overwrite_setup(true);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 4096).unwrap();
    let mut it = iter(&dev, 512, 0x77);
    let e = clone.write(&mut dio, &mut Kiocb::default(), &mut it, DioFlags::empty());
    assert_eq!(e.unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn raw_write_crossing_the_namespace_end_is_cut_at_the_end_before_any_io() {
    let (dev, mut dio, raw) = raw_setup();
    let end = raw.size();
    // One buffer (the single-command path) and two (the general path).
    for mut it in [
        iter(&dev, 8192, 1),
        IovIter::new(vec![dev.buf(4096), dev.buf(4096)]),
    ] {
        dev.clear_log();
        let mut io = at(end - 4096);
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
fn file_ranges_past_the_largest_file_size_are_refused_before_any_io() {
    let (dev, mut dio, _fs, f) = file_setup();
    // The last block below 2^64 would end at 2^64; a block ending past 2^63 - 1 is refused too.
    for pos in [!4095u64, crate::providers::MAX_FILE_BYTES & !4095] {
        let mut it = iter(&dev, 4096, 1);
        let e = f.write(&mut dio, &mut at(pos), &mut it, DioFlags::empty());
        assert!(
            matches!(e, Err(DioError::InvalidRequest { .. })),
            "{pos:#x}: {e:?}"
        );
    }
    assert!(matches!(
        f.preallocate(crate::providers::MAX_FILE_BYTES, 4096),
        Err(DioError::InvalidRequest { .. })
    ));
    assert!(dev.log().is_empty());
    assert_eq!(f.size(), 0);
}
