//! Reads: EOF rules, holes and unwritten extents, the namespace end.

use super::*;

#[test]
fn read_at_or_past_eof_returns_zero_before_alignment_checks() {
    let (dev, mut dio, _fs, f) = file_setup();
    f.set_size(8192).unwrap();
    for pos in [8192, 8193, 1 << 20] {
        let mut it = iter(&dev, 100, 0xaa);
        let mut io = at(pos);
        assert_eq!(f.read(&mut dio, &mut io, &mut it), Ok(0), "pos {pos}");
        assert_eq!(it.count(), 100);
    }
    assert!(dev.log().is_empty());
}

#[test]
fn read_crossing_eof_is_truncated_and_iterator_reverted() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 8192, 0x5a);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.set_size(5000).unwrap();
    let mut it = iter(&dev, 16384, 0xff);
    let mut io = at(0);
    assert_eq!(f.read(&mut dio, &mut io, &mut it), Ok(5000));
    assert_eq!(io.pos, 5000);
    assert_eq!(it.consumed(), 5000);
    assert_eq!(it.count(), 16384 - 5000);
}

#[test]
fn hole_and_unwritten_reads_zero_fill_without_device_io() {
    let (dev, mut dio, _fs, f) = file_setup();
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

#[test]
fn raw_read_crossing_the_namespace_end_is_cut_at_the_end() {
    let (dev, mut dio, raw) = raw_setup();
    let end = raw.size();
    let mut it = iter(&dev, 8192, 0xff);
    let mut io = at(end - 4096);
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
    let e = dio.write(&mut at(end), &mut it, &raw, &NoHooks);
    assert_eq!(e.unwrap_err().errno(), libc::ENOSPC);
}

#[test]
fn generic_450_reads_at_and_past_eof_return_only_the_bytes_before_eof() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 4096, 3);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    for (pos, want) in [(0, 4096), (2048, 2048), (4096, 0), (8192, 0)] {
        let mut it = iter(&dev, 8192, 0);
        assert_eq!(f.read(&mut dio, &mut at(pos), &mut it), Ok(want), "{pos}");
    }
}

#[test]
fn generic_210_read_of_a_partial_last_block_is_short_at_eof() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 4096, 3);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    f.set_size(1000).unwrap();
    let mut it = iter(&dev, 4096, 0);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(1000));
    assert_eq!(&bytes(&it)[..1000], &[3; 1000][..]);
}
