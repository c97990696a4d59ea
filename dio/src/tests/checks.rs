//! Request checks made before any I/O: length, alignment, DMA rules, overflow,
//! the provider's block size.

use super::*;

#[test]
fn zero_length_returns_zero_without_io() {
    let (dev, mut dio, raw) = raw_setup();
    let mut it = IovIter::<FakeBuf>::new(vec![]);
    let mut io = Kiocb::new(4096, KiocbFlags::DSYNC);
    assert_eq!(dio.write(&mut io, &mut it, &raw, &NoHooks), Ok(0));
    assert_eq!(dio.read(&mut io, &mut it, &raw, &NoHooks), Ok(0));
    assert!(dev.log().is_empty());
    assert_eq!(io.pos, 4096);
}

#[test]
fn misaligned_position_or_length_is_einval_naming_the_alignment_without_io() {
    let (dev, mut dio, raw) = raw_setup();
    for (pos, len) in [(256u64, 4096usize), (0, 1000)] {
        let mut it = iter(&dev, len, 1);
        let mut io = at(pos);
        let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("multiple of 512 bytes"), "{e}");
        assert_eq!(io.pos, pos);
    }
    assert!(dev.log().is_empty());
}

#[test]
fn buffer_breaking_dma_rules_is_einval_without_io() {
    let (dev, mut dio, raw) = raw_setup();
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

#[test]
fn position_plus_length_overflowing_is_einval_without_io() {
    let (dev, mut dio) = setup(512, true, true);
    // A provider without a write limit (the raw namespace's would answer ENOSPC).
    let file = Recording {
        inner: RawNamespace::new(dio.caps()),
        seen: Mutex::new(vec![]),
    };
    let mut it = iter(&dev, 4096, 1);
    let mut io = at(u64::MAX - 511);
    let e = dio.write(&mut io, &mut it, &file, &NoHooks).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(dev.log().is_empty());
    assert!(file.seen.lock().unwrap().is_empty());
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
