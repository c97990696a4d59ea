//! The layer's rules through the real driver on the emulated controller, checked
//! against the commands the controller actually executed (its command log).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::providers::{ExtentFs, FileHandle, RawNamespace};
use dio::*;
use nvme::spec::{Status, StatusCodeType};
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, Options, QueuePairOptions};
use nvme_emu::{CommandMatch, EmuController, FaultAction, LogEntry};

const FLUSH: u8 = 0x00;
const WRITE: u8 = 0x01;
const READ: u8 = 0x02;
const WRITE_ZEROES: u8 = 0x08;

type Buf = IoBuffer;
type EDio = Dio<NvmeQueue<EmuTransport>, Buf>;

struct Rig {
    emu: EmuController,
    ctrl: Controller<EmuTransport>,
}

fn rig(opts: &str) -> Rig {
    rig_with(opts, Options::default().command_retries)
}

/// A rig whose driver resubmits a failed command at most `retries` times.
fn rig_with(opts: &str, retries: u8) -> Rig {
    let t = EmuTransport::from_name(&format!("emu:{opts}")).expect("emu config");
    let emu = t.emu().clone();
    let options = Options {
        io_timeout: Duration::from_secs(1),
        abort_timeout: Duration::from_millis(500),
        command_retries: retries,
        ..Options::default()
    };
    let ctrl = Controller::new(t, options).expect("bring-up");
    emu.command_log().enable();
    Rig { emu, ctrl }
}

impl Rig {
    fn dio_mode(&self, mode: CompletionMode) -> EDio {
        let qp = self
            .ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 64,
                mode,
                ..QueuePairOptions::default()
            })
            .unwrap();
        let q = NvmeQueue::new(&self.ctrl, qp, 1).unwrap();
        Dio::new(q, Some(self.buf(4096, 0)), 128).unwrap()
    }

    fn dio(&self) -> EDio {
        self.dio_mode(CompletionMode::Polled)
    }

    fn buf(&self, len: usize, byte: u8) -> Buf {
        let mut b = self.ctrl.allocator().alloc(len, 4096).unwrap();
        b.fill(0, len, byte).unwrap();
        IoBuffer::new(b)
    }

    fn iter(&self, len: usize, byte: u8) -> IovIter<Buf> {
        IovIter::new(vec![self.buf(len, byte)])
    }

    /// I/O commands executed since the last call.
    fn log(&self) -> Vec<LogEntry> {
        self.emu
            .command_log()
            .take()
            .into_iter()
            .filter(|e| e.qid != 0)
            .collect()
    }
}

fn bytes(it: &IovIter<Buf>) -> Vec<u8> {
    let mut out = Vec::new();
    for b in it.buffers() {
        let b = b.buffer();
        let mut v = vec![0; b.len()];
        b.read(0, &mut v).unwrap();
        out.extend(v);
    }
    out
}

fn ops(log: &[LogEntry]) -> Vec<(u8, u64, u32, bool)> {
    log.iter()
        .map(|e| (e.opcode, e.slba, e.blocks, e.fua))
        .collect()
}

fn fs_file(r: &Rig, dio: &mut EDio, written: usize) -> (Arc<ExtentFs>, FileHandle) {
    let fs = ExtentFs::new(1 << 20, 8 << 20, 4096).unwrap();
    let f = fs.create();
    if written > 0 {
        let mut it = r.iter(written, 1);
        f.write(dio, &mut Kiocb::default(), &mut it, DioFlags::empty())
            .unwrap();
    }
    r.log();
    (fs, f)
}

const FS_LBA: u64 = (1 << 20) / 512;

#[test]
fn dsync_overwrite_is_one_fua_write_and_no_flush() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    r.log();
    let mut it = r.iter(8192, 2);
    let mut io = Kiocb::new(4096, KiocbFlags::DSYNC);
    assert_eq!(dio.write(&mut io, &mut it, &raw, &NoHooks), Ok(8192));
    assert_eq!(ops(&r.log()), vec![(WRITE, 8, 16, true)]);
    assert_eq!(io.pos, 12288);
}

#[test]
fn sync_write_is_not_fua_and_is_followed_by_a_flush() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    r.log();
    let mut it = r.iter(4096, 2);
    let mut io = Kiocb::new(0, KiocbFlags::DSYNC | KiocbFlags::SYNC);
    dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap();
    assert_eq!(
        ops(&r.log()),
        vec![(WRITE, 0, 8, false), (FLUSH, 0, 0, false)]
    );
}

#[test]
fn plain_write_is_neither_fua_nor_flushed() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    r.log();
    let mut it = r.iter(4096, 2);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert_eq!(ops(&r.log()), vec![(WRITE, 0, 8, false)]);
}

#[test]
fn without_volatile_write_cache_no_flush_is_issued() {
    let r = rig("size=16M,lba=512,vwc=off");
    let mut dio = r.dio();
    assert!(!dio.caps().volatile_write_cache);
    let (_fs, f) = fs_file(&r, &mut dio, 8192);
    for (pos, flags) in [
        (0, KiocbFlags::DSYNC),
        (0, KiocbFlags::DSYNC | KiocbFlags::SYNC),
        (65536, KiocbFlags::DSYNC),
    ] {
        let mut it = r.iter(4096, 3);
        f.write(
            &mut dio,
            &mut Kiocb::new(pos, flags),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    }
    let log = r.log();
    assert!(log.iter().all(|e| e.opcode != FLUSH), "{:?}", ops(&log));
    assert!(log[0].fua, "DSYNC overwrite goes out write-through");
}

#[test]
fn dsync_write_to_new_blocks_flushes_instead_of_fua() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 0);
    let mut it = r.iter(4096, 3);
    f.write(
        &mut dio,
        &mut Kiocb::new(0, KiocbFlags::DSYNC),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        ops(&r.log()),
        vec![(WRITE, FS_LBA, 8, false), (FLUSH, 0, 0, false)]
    );
}

#[test]
fn sub_block_write_into_a_new_block_zeroes_head_and_tail() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    assert!(dio.caps().write_zeroes);
    let (_fs, f) = fs_file(&r, &mut dio, 0);
    let mut it = r.iter(512, 3);
    f.write(
        &mut dio,
        &mut Kiocb::new(1024, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        ops(&r.log()),
        vec![
            (WRITE_ZEROES, FS_LBA, 2, false),
            (WRITE, FS_LBA + 2, 1, false),
            (WRITE_ZEROES, FS_LBA + 3, 5, false),
        ]
    );
    let mut back = r.iter(4096, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut back), Ok(1536));
    let got = bytes(&back);
    assert_eq!(&got[..1024], &[0; 1024][..]);
    assert_eq!(&got[1024..1536], &[3; 512][..]);
}

#[test]
fn hole_and_unwritten_reads_issue_no_commands() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 0);
    f.set_size(4096).unwrap();
    f.preallocate(4096, 4096).unwrap();
    let mut it = r.iter(8192, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(8192));
    assert!(bytes(&it).iter().all(|&b| b == 0));
    assert!(r.log().is_empty());
}

#[test]
fn request_above_mdts_becomes_several_commands() {
    let r = rig("size=16M,lba=512,vwc=on,mdts=3");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    assert_eq!(dio.max_command_bytes(), 32 << 10);
    r.log();
    let mut it = r.iter(128 << 10, 9);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    let log = r.log();
    assert_eq!(
        ops(&log),
        (0..4)
            .map(|i| (WRITE, i * 64, 64, false))
            .collect::<Vec<_>>()
    );
    let mut back = r.iter(128 << 10, 0);
    dio.read(&mut Kiocb::default(), &mut back, &raw, &NoHooks)
        .unwrap();
    assert!(bytes(&back).iter().all(|&b| b == 9));
}

#[test]
fn misaligned_request_is_einval_and_issues_nothing() {
    let r = rig("size=16M,lba=4096,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    r.log();
    let mut it = r.iter(4096, 1);
    let e = dio
        .write(
            &mut Kiocb::new(512, KiocbFlags::empty()),
            &mut it,
            &raw,
            &NoHooks,
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("4096"), "{e}");
    assert!(r.log().is_empty());
}

#[test]
fn device_write_error_fails_the_request_without_moving_the_position() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    let status = Status::from_parts(StatusCodeType::MediaAndDataIntegrity, 0x80).with_dnr(true);
    r.emu.faults().inject(
        CommandMatch::io_opcode(WRITE),
        FaultAction::Fail(status),
        Some(1),
    );
    let mut it = r.iter(4096, 1);
    let mut io = Kiocb::new(8192, KiocbFlags::DSYNC | KiocbFlags::SYNC);
    let e = dio.write(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
    assert!(
        matches!(
            e,
            DioError::Device {
                op: "write",
                status: 0x280,
                dnr: true
            }
        ),
        "{e}"
    );
    assert_eq!(io.pos, 8192);
    assert!(
        r.log().iter().all(|e| e.opcode != FLUSH),
        "no flush after a failed write"
    );
}

#[test]
fn generic_250_failed_write_into_unwritten_extent_never_exposes_old_data() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    // Stale data where the file's blocks will be.
    let mut stale = r.iter(64 << 10, 0xee);
    dio.write(
        &mut Kiocb::new(1 << 20, KiocbFlags::empty()),
        &mut stale,
        &raw,
        &NoHooks,
    )
    .unwrap();
    let (_fs, f) = fs_file(&r, &mut dio, 0);
    f.preallocate(0, 16384).unwrap();
    let status = Status::from_parts(StatusCodeType::MediaAndDataIntegrity, 0x80);
    r.emu.faults().inject(
        CommandMatch::io_opcode(WRITE),
        FaultAction::Fail(status),
        Some(1),
    );
    let mut it = r.iter(8192, 5);
    let e = f.write(
        &mut dio,
        &mut Kiocb::new(4096, KiocbFlags::empty()),
        &mut it,
        DioFlags::empty(),
    );
    assert!(matches!(e, Err(DioError::Device { .. })), "{e:?}");
    let mut back = r.iter(16384, 0xff);
    assert_eq!(
        f.read(&mut dio, &mut Kiocb::default(), &mut back),
        Ok(16384)
    );
    assert!(bytes(&back).iter().all(|&b| b == 0));
}

#[test]
fn hipri_single_command_read_completes_by_polling_on_an_interrupt_queue() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio_mode(CompletionMode::Interrupt);
    let raw = RawNamespace::new(dio.caps());
    let mut w = r.iter(4096, 0x42);
    dio.write(&mut Kiocb::default(), &mut w, &raw, &NoHooks)
        .unwrap();
    let mut it = r.iter(4096, 0);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    assert_eq!(dio.read(&mut io, &mut it, &raw, &NoHooks), Ok(4096));
    assert!(io.flags.contains(KiocbFlags::HIPRI));
    assert!(bytes(&it).iter().all(|&b| b == 0x42));
    // Two commands: the request loses HIPRI and sleeps on the interrupt instead.
    dio.set_max_command_bytes(2048);
    let mut io = Kiocb::new(0, KiocbFlags::HIPRI);
    let mut it = r.iter(4096, 0);
    assert_eq!(dio.read(&mut io, &mut it, &raw, &NoHooks), Ok(4096));
    assert!(!io.flags.contains(KiocbFlags::HIPRI));
}

#[test]
fn asynchronous_writes_complete_through_callbacks_with_many_in_flight() {
    let r = rig("size=16M,lba=512,vwc=on,mode=threaded");
    let mut dio = r.dio();
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut model = vec![0u8; 2 << 20];
    for i in 0..256u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = ((seed % 8) + 1) as usize * 512;
        let pos = i * 8192;
        let byte = (seed >> 32) as u8 | 1;
        model[pos as usize..pos as usize + len].fill(byte);
        let res = results.clone();
        let flags = if i % 3 == 0 {
            KiocbFlags::DSYNC
        } else {
            KiocbFlags::empty()
        };
        loop {
            let it = r.iter(len, byte);
            let res = res.clone();
            match dio.rw_async(
                Request::write(),
                Kiocb::new(pos, flags),
                it,
                &*raw,
                raw.clone(),
                Box::new(move |d| res.lock().unwrap().push(d.result)),
            ) {
                Submitted::Queued => break,
                Submitted::Done(d) if matches!(d.result, Err(DioError::Busy { .. })) => {
                    dio.poll_completions().unwrap();
                }
                Submitted::Done(d) => {
                    results.lock().unwrap().push(d.result);
                    break;
                }
            }
        }
    }
    while dio.in_flight() > 0 {
        dio.poll_completions().unwrap();
    }
    let res = results.lock().unwrap();
    assert_eq!(res.len(), 256);
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    let mut back = r.iter(2 << 20, 0);
    dio.read(&mut Kiocb::default(), &mut back, &*raw, &NoHooks)
        .unwrap();
    assert!(bytes(&back) == model);
}

#[test]
fn generic_391_two_threads_write_non_overlapping_ranges_of_one_extent() {
    let r = rig("size=16M,lba=512,vwc=on,mode=threaded");
    let fs = ExtentFs::new(1 << 20, 8 << 20, 4096).unwrap();
    let f = fs.create();
    f.preallocate(0, 1 << 20).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let (r, f) = (&r, f.clone());
            s.spawn(move || {
                let mut dio = r.dio();
                for i in 0..64u64 {
                    let pos = (i * 2 + u64::from(t)) * 8192;
                    let mut it = r.iter(8192, t + 1);
                    let mut io = Kiocb::new(pos, KiocbFlags::DSYNC);
                    assert_eq!(
                        f.write(&mut dio, &mut io, &mut it, DioFlags::empty()),
                        Ok(8192)
                    );
                }
            });
        }
    });
    let mut dio = r.dio();
    let mut back = r.iter(1 << 20, 0);
    f.read(&mut dio, &mut Kiocb::default(), &mut back).unwrap();
    for (i, chunk) in bytes(&back).chunks(8192).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 2) as u8 + 1), "chunk {i}");
    }
}

/// Writes 64 non-overlapping 4 KiB pieces with random flags, cuts power after a
/// random number of them, and checks what survived.
fn power_cut_run(opts: &str, seed: u64) {
    let r = rig(opts);
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let cut = (next() % 64) as usize;
    let mut acked = Vec::new();
    for i in 0..64u64 {
        if i as usize == cut {
            break;
        }
        let flags = match next() % 3 {
            0 => KiocbFlags::DSYNC,
            1 => KiocbFlags::DSYNC | KiocbFlags::SYNC,
            _ => KiocbFlags::empty(),
        };
        let byte = (i as u8) | 0x80;
        let mut it = r.iter(4096, byte);
        dio.write(&mut Kiocb::new(i * 4096, flags), &mut it, &raw, &NoHooks)
            .unwrap();
        acked.push((i, byte, flags));
    }
    r.emu.power_cut();
    let vwc = dio.caps().volatile_write_cache;
    let mut back = r.iter(64 * 4096, 0);
    dio.read(&mut Kiocb::default(), &mut back, &raw, &NoHooks)
        .unwrap();
    let got = bytes(&back);
    for (i, byte, flags) in acked {
        let piece = &got[i as usize * 4096..(i as usize + 1) * 4096];
        if flags.contains(KiocbFlags::DSYNC) || !vwc {
            assert!(
                piece.iter().all(|&b| b == byte),
                "seed {seed}: write {i} ({flags:?}) lost"
            );
        } else {
            // A plain write may be lost, but never torn into something else.
            assert!(
                piece.iter().all(|&b| b == byte || b == 0),
                "seed {seed}: write {i} corrupt"
            );
        }
    }
}

#[test]
fn dsync_writes_survive_a_power_cut_at_a_random_point() {
    for seed in [1, 7, 42, 1234, 99991] {
        power_cut_run("size=16M,lba=512,vwc=on", seed);
    }
}

#[test]
fn without_volatile_write_cache_every_acknowledged_write_survives_without_flushes() {
    for seed in [3, 8, 77] {
        power_cut_run("size=16M,lba=512,vwc=off", seed);
    }
    let r = rig("size=16M,lba=512,vwc=off");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    let mut it = r.iter(4096, 1);
    dio.write(
        &mut Kiocb::new(0, KiocbFlags::SYNC),
        &mut it,
        &raw,
        &NoHooks,
    )
    .unwrap();
    assert!(r.log().iter().all(|e| e.opcode != FLUSH));
}

#[test]
fn plain_writes_are_lost_by_a_power_cut_with_the_cache_on() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = RawNamespace::new(dio.caps());
    let mut it = r.iter(4096, 0x33);
    dio.write(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
        .unwrap();
    assert!(r.emu.cached_blocks(1).unwrap() > 0);
    r.emu.power_cut();
    let mut back = r.iter(4096, 0xff);
    dio.read(&mut Kiocb::default(), &mut back, &raw, &NoHooks)
        .unwrap();
    assert!(bytes(&back).iter().all(|&b| b == 0));
    assert!(r.log().iter().any(|e| e.opcode == READ));
}

#[test]
fn zero_length_and_reads_at_or_past_eof_issue_nothing() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 4096);
    let mut empty = IovIter::<Buf>::new(vec![]);
    let mut io = Kiocb::new(0, KiocbFlags::DSYNC);
    assert_eq!(
        f.write(&mut dio, &mut io, &mut empty, DioFlags::empty()),
        Ok(0)
    );
    for pos in [4096, 4097, 1 << 30] {
        let mut it = r.iter(4096, 0);
        assert_eq!(
            f.read(&mut dio, &mut Kiocb::new(pos, KiocbFlags::empty()), &mut it),
            Ok(0)
        );
    }
    assert!(r.log().is_empty());
}

#[test]
fn generic_450_and_210_reads_crossing_eof_are_short_and_revert_the_iterator() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 8192);
    f.set_size(5000).unwrap();
    let mut it = r.iter(16384, 0xff);
    let mut io = Kiocb::default();
    assert_eq!(f.read(&mut dio, &mut io, &mut it), Ok(5000));
    assert_eq!(
        (io.pos, it.consumed(), it.count()),
        (5000, 5000, 16384 - 5000)
    );
    assert!(bytes(&it)[..5000].iter().all(|&b| b == 1));
    // Only the blocks holding data were read from the device.
    assert_eq!(ops(&r.log()), vec![(READ, FS_LBA, 16, false)]);
}

#[test]
fn generic_240_unaligned_writes_into_holes_do_not_zero_neighbours() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 0);
    for (i, pos) in [0u64, 512, 1536].into_iter().enumerate() {
        let mut it = r.iter(512, 10 + i as u8);
        f.write(
            &mut dio,
            &mut Kiocb::new(pos, KiocbFlags::empty()),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    }
    let mut it = r.iter(4096, 0xff);
    assert_eq!(f.read(&mut dio, &mut Kiocb::default(), &mut it), Ok(2048));
    let got = bytes(&it);
    assert!(got[..512].iter().all(|&b| b == 10));
    assert!(got[512..1024].iter().all(|&b| b == 11));
    assert!(got[1024..1536].iter().all(|&b| b == 0));
    assert!(got[1536..2048].iter().all(|&b| b == 12));
}

#[test]
fn overwrite_only_is_eagain_unless_pure_overwrite() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 8192);
    f.preallocate(8192, 4096).unwrap();
    for pos in [8192u64, 12288] {
        let mut it = r.iter(4096, 2);
        let e = f.write(
            &mut dio,
            &mut Kiocb::new(pos, KiocbFlags::empty()),
            &mut it,
            DioFlags::OVERWRITE_ONLY,
        );
        assert_eq!(e.unwrap_err().errno(), libc::EAGAIN, "{pos}");
    }
    assert!(r.log().is_empty());
    let mut it = r.iter(4096, 2);
    let mut io = Kiocb::new(4096, KiocbFlags::DSYNC);
    assert_eq!(
        f.write(&mut dio, &mut io, &mut it, DioFlags::OVERWRITE_ONLY),
        Ok(4096)
    );
    assert_eq!(ops(&r.log()), vec![(WRITE, FS_LBA + 8, 8, true)]);
}

/// A buffer the device cannot reach (as after an unmap): every access faults.
struct Unreachable(usize);

impl DmaBuf for Unreachable {
    fn len(&self) -> usize {
        self.0
    }
    fn iova_at(&self, _offset: usize) -> Option<u64> {
        None
    }
    fn zero(&self, _offset: usize, _len: usize) -> bool {
        false
    }
    fn read_at(&self, _offset: usize, _dst: &mut [u8]) -> bool {
        false
    }
    fn write_at(&self, _offset: usize, _src: &[u8]) -> bool {
        false
    }
}

enum Either {
    Good(Buf),
    Bad(Unreachable),
}

impl DmaBuf for Either {
    fn len(&self) -> usize {
        match self {
            Either::Good(b) => b.len(),
            Either::Bad(b) => b.len(),
        }
    }
    fn iova_at(&self, offset: usize) -> Option<u64> {
        match self {
            Either::Good(b) => b.iova_at(offset),
            Either::Bad(b) => b.iova_at(offset),
        }
    }
    fn zero(&self, offset: usize, len: usize) -> bool {
        match self {
            Either::Good(b) => b.zero(offset, len),
            Either::Bad(b) => b.zero(offset, len),
        }
    }
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        match self {
            Either::Good(b) => b.read_at(offset, dst),
            Either::Bad(b) => b.read_at(offset, dst),
        }
    }
    fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        match self {
            Either::Good(b) => b.write_at(offset, src),
            Either::Bad(b) => b.write_at(offset, src),
        }
    }
}

#[test]
fn partial_fault_is_a_short_success_and_the_tail_block_is_still_zeroed() {
    let r = rig("size=16M,lba=512,vwc=on");
    let qp = r
        .ctrl
        .create_io_queue_pair(QueuePairOptions::default())
        .unwrap();
    let q = NvmeQueue::new(&r.ctrl, qp, 1).unwrap();
    let mut dio: Dio<_, Either> = Dio::new(q, None, 8).unwrap();
    let fs = ExtentFs::new(1 << 20, 8 << 20, 4096).unwrap();
    let f = fs.create();
    r.log();
    let bufs = vec![Either::Good(r.buf(1024, 4)), Either::Bad(Unreachable(1024))];
    let mut it = IovIter::new(bufs);
    let mut io = Kiocb::default();
    let res = dio.rw(
        Request::write().flags(DioFlags::PARTIAL),
        &mut io,
        &mut it,
        &f,
        &f,
    );
    assert_eq!(res, Ok(1024));
    assert_eq!((io.pos, f.size()), (1024, 1024));
    assert_eq!(
        ops(&r.log()),
        vec![
            (WRITE, FS_LBA, 2, false),
            (WRITE_ZEROES, FS_LBA + 2, 6, false)
        ]
    );
    // Without PARTIAL the same fault fails the request and moves nothing.
    let g = fs.create();
    let bufs = vec![Either::Good(r.buf(1024, 4)), Either::Bad(Unreachable(1024))];
    let mut it = IovIter::new(bufs);
    let mut io = Kiocb::default();
    let res = dio.rw(Request::write(), &mut io, &mut it, &g, &g);
    assert_eq!(res.unwrap_err().errno(), libc::EFAULT);
    assert_eq!((io.pos, g.size()), (0, 0));
}

#[test]
fn copy_on_write_goes_to_new_blocks_and_leaves_the_source_intact() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let (_fs, f) = fs_file(&r, &mut dio, 8192);
    let clone = f.fs().create();
    clone.clone_range(&f, 0, 0, 8192).unwrap();
    let mut it = r.iter(4096, 0x77);
    clone
        .write(
            &mut dio,
            &mut Kiocb::new(4096, KiocbFlags::DSYNC),
            &mut it,
            DioFlags::empty(),
        )
        .unwrap();
    let log = r.log();
    // Shared extent: not write-through, so a flush follows; the data lands outside
    // the source's blocks.
    assert_eq!(log.len(), 2, "{:?}", ops(&log));
    assert!(!log[0].fua && log[0].opcode == WRITE && log[0].slba >= FS_LBA + 16);
    assert_eq!(log[1].opcode, FLUSH);
    let mut a = r.iter(8192, 0);
    f.read(&mut dio, &mut Kiocb::default(), &mut a).unwrap();
    assert!(bytes(&a).iter().all(|&b| b == 1));
    let mut b = r.iter(8192, 0);
    clone.read(&mut dio, &mut Kiocb::default(), &mut b).unwrap();
    let got = bytes(&b);
    assert!(got[..4096].iter().all(|&x| x == 1) && got[4096..].iter().all(|&x| x == 0x77));
}

#[test]
fn asynchronous_sync_write_flushes_from_completion_before_the_callback() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    let raw = Arc::new(RawNamespace::new(dio.caps()));
    r.log();
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    let sub = dio.rw_async(
        Request::write(),
        Kiocb::new(4096, KiocbFlags::SYNC),
        r.iter(4096, 5),
        &*raw,
        raw.clone(),
        Box::new(move |d| *d2.lock().unwrap() = Some((d.result, d.iocb.pos))),
    );
    assert!(matches!(sub, Submitted::Queued));
    while dio.in_flight() > 0 {
        dio.poll_completions().unwrap();
    }
    assert_eq!(*done.lock().unwrap(), Some((Ok(4096), 8192)));
    assert_eq!(
        ops(&r.log()),
        vec![(WRITE, 8, 8, false), (FLUSH, 0, 0, false)]
    );
}

#[test]
fn a_dropped_completion_is_retried_by_the_driver_and_the_request_succeeds() {
    let r = rig("size=16M,lba=512,vwc=on");
    let mut dio = r.dio();
    // Far below the driver's 1 s I/O timeout: the layer waits for the driver, which
    // aborts, resets the controller and resubmits the read.
    dio.set_timeout(Duration::from_millis(200));
    let raw = RawNamespace::new(dio.caps());
    let mut it = r.iter(4096, 0x5a);
    let mut io = Kiocb::new(0, KiocbFlags::SYNC);
    assert_eq!(dio.write(&mut io, &mut it, &raw, &NoHooks), Ok(4096));
    r.emu.faults().drop_next(1);
    let mut it = r.iter(4096, 0xee);
    let start = Instant::now();
    assert_eq!(
        dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks),
        Ok(4096)
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(bytes(&it), vec![0x5a; 4096]);
    assert_eq!(dio.in_flight(), 0);
}

#[test]
fn a_device_that_never_completes_keeps_the_buffer_until_the_driver_reports_the_timeout() {
    let r = rig_with("size=16M,lba=512,vwc=on", 0);
    let mut dio = r.dio();
    // Far below the driver's 1 s I/O timeout: the layer still waits for its verdict.
    dio.set_timeout(Duration::from_millis(200));
    let raw = RawNamespace::new(dio.caps());
    r.emu.faults().drop_next(1);
    let mut it = r.iter(4096, 0);
    let mut io = Kiocb::default();
    let start = Instant::now();
    let e = dio.read(&mut io, &mut it, &raw, &NoHooks).unwrap_err();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(driver_cause(&e), nvme::Error::CommandTimedOut { .. }),
        "{e}"
    );
    assert!(e.to_string().starts_with("driver failed the read: "), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(io.pos, 0);
    // Nothing was given up: no command of the request is left in flight.
    assert_eq!(dio.in_flight(), 0);
    let mut it = r.iter(4096, 0);
    assert_eq!(
        dio.read(&mut Kiocb::default(), &mut it, &raw, &NoHooks),
        Ok(4096)
    );
}

/// The driver's error a [`DioError::Driver`] carries as its source.
fn driver_cause(e: &DioError) -> &nvme::Error {
    assert!(matches!(e, DioError::Driver { .. }), "{e:?}");
    std::error::Error::source(e)
        .expect("a source")
        .downcast_ref::<nvme::Error>()
        .expect("the driver's error")
}

#[test]
fn a_completion_held_longer_than_the_layer_timeout_still_lands_in_the_request_buffer() {
    for (flags, mode) in [
        (KiocbFlags::HIPRI, CompletionMode::Polled),
        (KiocbFlags::empty(), CompletionMode::Polled),
        (KiocbFlags::empty(), CompletionMode::Interrupt),
    ] {
        let r = rig("size=16M,lba=512");
        let mut dio = r.dio_mode(mode);
        dio.set_timeout(Duration::from_millis(50));
        let raw = RawNamespace::new(dio.caps());
        let mut data = r.iter(8192, 0x5a);
        dio.write(&mut Kiocb::default(), &mut data, &raw, &NoHooks)
            .unwrap();
        r.emu.faults().hold_next(1);
        let mut it = r.iter(8192, 0);
        let got = std::thread::scope(|s| {
            let emu = &r.emu;
            s.spawn(move || {
                // Well past the layer's 50 ms, well inside the driver's 1 s.
                std::thread::sleep(Duration::from_millis(300));
                assert_eq!(emu.faults().release_held(), 1);
            });
            dio.read(&mut Kiocb::new(0, flags), &mut it, &raw, &NoHooks)
        });
        assert_eq!(got, Ok(8192), "{flags:?} {mode:?}");
        assert!(bytes(&it).iter().all(|&b| b == 0x5a), "{flags:?} {mode:?}");
        assert_eq!(dio.in_flight(), 0);
    }
}

#[test]
fn a_removed_device_fails_the_request_with_the_driver_device_gone_as_its_source() {
    for mode in [CompletionMode::Polled, CompletionMode::Interrupt] {
        let r = rig("size=16M,lba=512,mode=threaded");
        let mut dio = r.dio_mode(mode);
        let raw = RawNamespace::new(dio.caps());
        r.emu.faults().hold_next(1);
        let mut it = r.iter(4096, 0);
        let (e, waited) = std::thread::scope(|s| {
            let emu = &r.emu;
            let gone = s.spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                emu.faults().set_device_gone(true);
                Instant::now()
            });
            let e = dio
                .read(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
                .unwrap_err();
            (e, gone.join().unwrap().elapsed())
        });
        // The driver's I/O timeout is 1 s: this is the removal check, not a deadline.
        assert!(waited < Duration::from_millis(900), "{mode:?}: {waited:?}");
        assert!(
            matches!(driver_cause(&e), nvme::Error::DeviceGone { .. }),
            "{mode:?}: {e}"
        );
        assert!(e.to_string().contains("is gone"), "{e}");
        assert_eq!(e.errno(), 5, "EIO");
        assert_eq!(dio.in_flight(), 0);
        // Later requests fail at once with the same cause.
        let mut it = r.iter(4096, 0);
        let e = dio
            .read(&mut Kiocb::default(), &mut it, &raw, &NoHooks)
            .unwrap_err();
        assert!(
            matches!(driver_cause(&e), nvme::Error::DeviceGone { .. }),
            "{mode:?}: {e}"
        );
    }
}

#[test]
fn acknowledged_dsync_writes_survive_a_power_cut_while_others_are_in_flight() {
    for (seed, opts) in [
        (5u64, "size=16M,lba=512,vwc=on,mode=threaded"),
        (11, "size=16M,lba=512,vwc=on,mode=threaded"),
        (23, "size=16M,lba=512,vwc=off,mode=threaded"),
    ] {
        let r = rig(opts);
        let mut dio = r.dio();
        let vwc = dio.caps().volatile_write_cache;
        let raw = Arc::new(RawNamespace::new(dio.caps()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let cut_after = (next() % 48) as usize + 1;
        for i in 0..64u64 {
            let flags = match next() % 3 {
                0 => KiocbFlags::DSYNC,
                1 => KiocbFlags::SYNC,
                _ => KiocbFlags::empty(),
            };
            let durable = flags.intersects(KiocbFlags::DSYNC | KiocbFlags::SYNC) || !vwc;
            let a = acked.clone();
            let sub = dio.rw_async(
                Request::write(),
                Kiocb::new(i * 8192, flags),
                r.iter(8192, (i as u8) | 0x80),
                &*raw,
                raw.clone(),
                Box::new(move |d| {
                    assert_eq!(d.result, Ok(8192));
                    a.lock().unwrap().push((i, durable));
                }),
            );
            assert!(matches!(sub, Submitted::Queued));
        }
        while acked.lock().unwrap().len() < cut_after {
            dio.poll_completions().unwrap();
        }
        r.emu.power_cut();
        let survivors: Vec<_> = acked.lock().unwrap().clone();
        while dio.in_flight() > 0 {
            dio.poll_completions().unwrap();
        }
        let mut back = r.iter(64 * 8192, 0);
        dio.read(&mut Kiocb::default(), &mut back, &*raw, &NoHooks)
            .unwrap();
        let got = bytes(&back);
        for (i, durable) in survivors {
            let piece = &got[i as usize * 8192..(i as usize + 1) * 8192];
            let byte = (i as u8) | 0x80;
            if durable {
                assert!(
                    piece.iter().all(|&b| b == byte),
                    "{opts} seed {seed}: write {i} lost"
                );
            } else {
                assert!(
                    piece.iter().all(|&b| b == byte || b == 0),
                    "{opts}: write {i} torn"
                );
            }
        }
    }
}

#[test]
fn namespaces_with_per_block_metadata_are_refused_before_any_io() {
    for (opts, placement) in [
        ("size=16M,lba=512,ms=8,mset=ext", "extended LBAs"),
        (
            "size=16M,lba=4096,ms=64,mset=sep",
            "separate per-block metadata",
        ),
    ] {
        let r = rig(opts);
        let qp = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions::default())
            .unwrap();
        let Err(e) = NvmeQueue::new(&r.ctrl, qp, 1) else {
            panic!("{opts}: a queue on a metadata namespace was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains(placement) && text.contains("file data cannot carry per-block metadata"),
            "{opts}: {text}"
        );
        assert!(r.emu.command_log().io_entries().is_empty());
    }
}

#[test]
fn protection_information_namespaces_work_through_pract() {
    for mset in ["ext", "sep"] {
        for pi in 1..=3 {
            let opts = format!("size=16M,lba=512,ms=8,mset={mset},pi={pi}");
            let r = rig(&opts);
            let mut dio = r.dio();
            let raw = RawNamespace::new(dio.caps());
            let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 + i / 512) as u8).collect();
            let src = r.buf(8192, 0);
            src.write(0, &data).unwrap();
            let mut it = IovIter::new(vec![src]);
            let mut io = Kiocb::new(4096, KiocbFlags::DSYNC);
            assert_eq!(
                dio.write(&mut io, &mut it, &raw, &NoHooks),
                Ok(8192),
                "{opts}"
            );
            let mut back = r.iter(8192, 0xee);
            assert_eq!(
                dio.read(
                    &mut Kiocb::new(4096, KiocbFlags::empty()),
                    &mut back,
                    &raw,
                    &NoHooks
                ),
                Ok(8192),
                "{opts}"
            );
            assert_eq!(bytes(&back), data, "{opts}");
            assert_eq!(
                ops(&r.log()),
                vec![(WRITE, 8, 16, true), (READ, 8, 16, false)]
            );
            if mset == "ext" {
                // The controller generated each block's tuple: the guard covers the data.
                let qp = dio.queue_mut().queue_pair();
                let mut block = r.ctrl.allocator().alloc(520, 4096).unwrap();
                qp.read_sync(1, 9, 1, &mut block).unwrap();
                let mut stored = vec![0u8; 520];
                block.read(0, &mut stored).unwrap();
                assert_eq!(&stored[..512], &data[512..1024], "{opts}");
                let guard = u16::from_be_bytes([stored[512], stored[513]]);
                assert_eq!(guard, nvme::spec::pi::guard16(&stored[..512]), "{opts}");
            }
        }
    }
}

#[test]
fn metadata_beyond_protection_information_is_refused_before_any_io() {
    for (opts, placement) in [
        ("size=16M,lba=512,ms=8,mset=ext,pi=0", "extended LBAs"),
        ("size=16M,lba=512,ms=16,mset=ext,pi=1", "extended LBAs"),
        (
            "size=16M,lba=4096,ms=64,mset=sep,pi=2",
            "separate per-block metadata",
        ),
    ] {
        let r = rig(opts);
        let qp = r
            .ctrl
            .create_io_queue_pair(QueuePairOptions::default())
            .unwrap();
        let Err(e) = NvmeQueue::new(&r.ctrl, qp, 1) else {
            panic!("{opts}: a queue on a metadata namespace was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains(placement)
                && text.contains("not only protection information")
                && text.contains("file data cannot carry per-block metadata"),
            "{opts}: {text}"
        );
        assert!(r.emu.command_log().io_entries().is_empty());
    }
}
