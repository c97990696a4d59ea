//! Compares: mapped blocks by the device, holes and unwritten extents against zeros.

use super::*;

#[test]
fn compare_of_written_data_matches_and_issues_compare_commands() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 8192, 0x5a);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    dev.clear_log();
    let mut same = iter(&dev, 8192, 0x5a);
    let mut io = at(0);
    assert_eq!(f.compare(&mut dio, &mut io, &mut same), Ok(8192));
    assert_eq!(io.pos, 8192);
    let log = dev.log();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|l| matches!(l, Logged::Compare { .. })),
        "{log:?}"
    );
    assert_eq!(
        bytes(&same),
        vec![0x5a; 8192],
        "a compare never writes the buffer"
    );
}

#[test]
fn a_difference_is_a_miscompare_and_the_position_stays() {
    let (dev, mut dio, _fs, f) = file_setup();
    let mut w = iter(&dev, 8192, 0x5a);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    let mut other = iter(&dev, 8192, 0x5b);
    let mut io = at(0);
    let e = f.compare(&mut dio, &mut io, &mut other).unwrap_err();
    assert_eq!(e, DioError::Miscompare);
    assert_eq!(e.errno(), libc::EILSEQ);
    assert_eq!(io.pos, 0);
}

#[test]
fn holes_and_unwritten_extents_compare_against_zeros_without_device_io() {
    let (dev, mut dio, _fs, f) = file_setup();
    f.set_size(8192).unwrap(); // block 0 a hole
    f.preallocate(4096, 4096).unwrap(); // block 1 unwritten
    dev.set_media(0, &vec![0xee; 8 << 20]);
    dev.clear_log();
    let mut zeros = iter(&dev, 8192, 0);
    assert_eq!(f.compare(&mut dio, &mut at(0), &mut zeros), Ok(8192));
    assert!(dev.log().is_empty());
    let mut stale = iter(&dev, 8192, 0xee);
    assert_eq!(
        f.compare(&mut dio, &mut at(0), &mut stale),
        Err(DioError::Miscompare)
    );
}
