//! The layer's rules, one test each, on the fake queue pair; one file per topic.

use std::sync::{Arc, Mutex};

use crate::fake::{caps, FakeBuf, FakeDev, FakeQueue, Logged};
use crate::providers::{ExtentFs, FileHandle, RawNamespace};
use crate::*;

mod checks;
mod compare;
mod completion;
mod errors;
mod fua_flush;
mod iov;
mod reads;
mod writes;
mod zeroing;

type TDio = Dio<FakeQueue, FakeBuf>;

/// A fake device with `lba`-byte blocks, a volatile write cache if `vwc`, Write
/// Zeroes if `wz`, and an engine over it with a zero buffer and 64 slots.
fn setup(lba: u32, vwc: bool, wz: bool) -> (FakeDev, TDio) {
    let dev = FakeDev::new(caps(lba, vwc, wz));
    let zero = dev.buf(4096);
    let dio = Dio::new(dev.queue(), Some(zero), 64).unwrap();
    (dev, dio)
}

/// The common device (512-byte blocks, volatile write cache, Write Zeroes) and
/// the raw namespace on it.
fn raw_setup() -> (FakeDev, TDio, RawNamespace) {
    let (dev, dio) = setup(512, true, true);
    let raw = RawNamespace::new(dio.caps());
    (dev, dio, raw)
}

/// The common device and an empty file with 4 KiB blocks.
fn file_setup() -> (FakeDev, TDio, Arc<ExtentFs>, FileHandle) {
    let (dev, dio) = setup(512, true, true);
    let (fs, f) = fs_file(4096);
    (dev, dio, fs, f)
}

/// A file whose first 16 KiB are written (bytes of 1) and a cleared command log.
fn overwrite_setup(vwc: bool) -> (FakeDev, TDio, Arc<ExtentFs>, FileHandle) {
    let (dev, mut dio) = setup(512, vwc, true);
    let (fs, f) = fs_file(4096);
    let mut w = iter(&dev, 16384, 1);
    f.write(&mut dio, &mut Kiocb::default(), &mut w, DioFlags::empty())
        .unwrap();
    dev.clear_log();
    (dev, dio, fs, f)
}

/// One buffer of `len` bytes, each `byte`.
fn iter(dev: &FakeDev, len: usize, byte: u8) -> IovIter<FakeBuf> {
    let b = dev.buf(len);
    b.fill(byte);
    IovIter::new(vec![b])
}

/// The bytes of every buffer of `it`, in order.
fn bytes(it: &IovIter<FakeBuf>) -> Vec<u8> {
    it.buffers().iter().flat_map(|b| b.bytes()).collect()
}

/// A file system of 8 MiB at device byte 1 MiB with `block`-byte blocks, and one file.
fn fs_file(block: u32) -> (Arc<ExtentFs>, FileHandle) {
    let fs = ExtentFs::new(1 << 20, 8 << 20, block).unwrap();
    let f = fs.create();
    (fs, f)
}

/// A request at `pos` without flags.
fn at(pos: u64) -> Kiocb {
    Kiocb::new(pos, KiocbFlags::empty())
}

/// A DSYNC request at 0.
fn dsync() -> Kiocb {
    Kiocb::new(0, KiocbFlags::DSYNC)
}

/// Completes every request in flight.
fn drain(dio: &mut TDio) {
    while dio.in_flight() > 0 {
        dio.poll_completions().unwrap();
    }
}

/// The commands of `log` but reads.
fn writes(log: &[Logged]) -> Vec<Logged> {
    log.iter()
        .copied()
        .filter(|l| !matches!(l, Logged::Read { .. }))
        .collect()
}

/// A logged Write without FUA.
fn write_cmd(lba: u64, blocks: u32) -> Logged {
    Logged::Write {
        lba,
        blocks,
        fua: false,
    }
}

/// A logged Write with FUA.
fn fua_write_cmd(lba: u64, blocks: u32) -> Logged {
    Logged::Write {
        lba,
        blocks,
        fua: true,
    }
}

/// A logged Write Zeroes.
fn zeroes_cmd(lba: u64, blocks: u32) -> Logged {
    Logged::WriteZeroes { lba, blocks }
}

/// The one command of a write cut to the last 4 KiB before `end` (512-byte blocks).
fn write_of_the_last_4k(end: u64) -> Vec<Logged> {
    vec![write_cmd(end / 512 - 8, 8)]
}

/// The raw namespace, recording the flags of every mapping asked for.
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
