//! Sub-block zeroing of new and unwritten blocks and of writes ending past EOF.

use super::*;

#[test]
fn write_into_new_block_zeroes_head_and_tail_with_write_zeroes() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut it = iter(&dev, 512, 7);
    f.write(&mut dio, &mut at(1024), &mut it, DioFlags::empty())
        .unwrap();
    let b = 2048;
    assert_eq!(
        dev.log(),
        vec![zeroes_cmd(b, 2), write_cmd(b + 2, 1), zeroes_cmd(b + 3, 5)]
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
    f.write(&mut dio, &mut at(0), &mut it, DioFlags::empty())
        .unwrap();
    assert_eq!(dev.log(), vec![write_cmd(2048, 1), write_cmd(2049, 7)]);
    let mut expect = vec![7u8; 512];
    expect.resize(4096, 0);
    assert_eq!(dev.media(1 << 20, 4096), expect);
}

#[test]
fn unwritten_extent_write_zeroes_head_and_tail_then_converts() {
    let (dev, mut dio, _fs, f) = file_setup();
    f.preallocate(0, 8192).unwrap();
    let mut it = iter(&dev, 1024, 7);
    f.write(&mut dio, &mut at(4096 + 512), &mut it, DioFlags::empty())
        .unwrap();
    let b = 2048 + 8;
    assert_eq!(
        writes(&dev.log()),
        vec![zeroes_cmd(b, 1), write_cmd(b + 1, 2), zeroes_cmd(b + 3, 5)]
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
    f.write(&mut dio, &mut at(8192 + 1024), &mut it, DioFlags::empty())
        .unwrap();
    let b = 2048 + 16;
    assert_eq!(dev.log(), vec![write_cmd(b + 2, 1), zeroes_cmd(b + 3, 5)]);
}

#[test]
fn tail_zeroing_runs_when_submission_stops_part_way() {
    let (dev, mut dio, _fs, f) = file_setup();
    let good = dev.buf(1024);
    good.fill(4);
    let mut bad = dev.buf(1024);
    bad.poisoned = true;
    let mut it = IovIter::new(vec![good, bad]);
    let mut io = Kiocb::default();
    let r = f.write(&mut dio, &mut io, &mut it, DioFlags::PARTIAL);
    assert_eq!(r, Ok(1024));
    assert_eq!(io.pos, 1024);
    assert_eq!(dev.log(), vec![write_cmd(2048, 2), zeroes_cmd(2050, 6)]);
    assert_eq!(f.size(), 1024);
}

#[test]
fn generic_240_unaligned_writes_into_holes_do_not_zero_neighbours() {
    let (dev, mut dio, _fs, f) = file_setup();
    for (i, pos) in [0u64, 512, 1536].into_iter().enumerate() {
        let mut it = iter(&dev, 512, 10 + i as u8);
        f.write(&mut dio, &mut at(pos), &mut it, DioFlags::empty())
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
    let (dev, mut dio, _fs, f) = file_setup();
    dev.set_media(1 << 20, &[0xee; 16384]);
    f.preallocate(0, 16384).unwrap();
    dev.st().fail_write_lba = Some(2048 + 9);
    let mut it = iter(&dev, 8192, 5);
    let e = f.write(&mut dio, &mut at(4096), &mut it, DioFlags::empty());
    assert_eq!(e.unwrap_err().errno(), libc::EIO);
    let mut r = iter(&dev, 16384, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut r), Ok(16384));
    assert!(bytes(&r).iter().all(|&b| b == 0));
}
