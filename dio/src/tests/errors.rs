//! Failed commands and failed requests: the first error wins and nothing is
//! reported written.

use super::*;

#[test]
fn device_error_fails_the_request_stops_submission_and_keeps_the_position() {
    let (dev, mut dio, raw) = raw_setup();
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
fn first_error_wins_over_a_later_end_io_error() {
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

#[test]
fn fault_without_partial_fails_and_reports_nothing_written() {
    let (dev, mut dio, _fs, f) = file_setup();
    let good = dev.buf(1024);
    let mut bad = dev.buf(1024);
    bad.poisoned = true;
    let mut it = IovIter::new(vec![good, bad]);
    let mut io = at(0);
    let e = f
        .write(&mut dio, &mut io, &mut it, DioFlags::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT);
    assert_eq!(io.pos, 0);
    assert_eq!(f.size(), 0);
    assert!(f.extents().iter().all(|e| e.unwritten));
}
