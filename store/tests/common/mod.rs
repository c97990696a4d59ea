//! A store on the emulated controller, with the controller's command log.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::{
    Cause, CommandStatus, DeviceCaps, Dio, DioQueue, IoCommand, IovIter, Kiocb, KiocbFlags,
    QueueError,
};
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, Options, QueuePairOptions};
use nvme_emu::{EmuController, LogEntry};
use store::{FormatOptions, Region, Store, StoreIo};

pub const FLUSH: u8 = 0x00;
pub const WRITE: u8 = 0x01;

pub type Io = StoreIo<DevQueue, IoBuffer>;

/// The driver's queue, optionally reporting a device whose writes ignore FUA
/// (every durable write is then a write and a Flush, as on a device without it).
pub struct DevQueue {
    q: NvmeQueue<EmuTransport>,
    fua: bool,
}

impl DioQueue for DevQueue {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            fua: self.fua,
            ..self.q.caps()
        }
    }

    fn submit(&mut self, cmd: &IoCommand<'_>, tag: u64) -> Result<(), QueueError> {
        self.q.submit(cmd, tag)
    }

    fn poll<F: FnMut(u64, CommandStatus)>(
        &mut self,
        max: usize,
        done: F,
    ) -> Result<usize, QueueError> {
        self.q.poll(max, done)
    }

    fn wait_interrupt(&mut self, timeout: Duration) -> Result<(), QueueError> {
        self.q.wait_interrupt(timeout)
    }

    fn verdict_limit(&self) -> Duration {
        self.q.verdict_limit()
    }

    fn take_cause(&mut self, tag: u64) -> Option<Cause> {
        self.q.take_cause(tag)
    }
}

pub struct Rig {
    pub emu: EmuController,
    pub ctrl: Arc<Controller<EmuTransport>>,
    /// Whether the store's engines use FUA (else a write and a Flush).
    pub fua: bool,
}

pub const REGION: Region = Region {
    offset: 1 << 20,
    len: 8 << 20,
};

pub fn rig(opts: &str) -> Rig {
    let t = EmuTransport::from_name(&format!("emu:{opts}")).expect("emu config");
    let emu = t.emu().clone();
    let options = Options {
        io_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let ctrl = Arc::new(Controller::new(t, options).expect("bring-up"));
    emu.command_log().enable();
    Rig {
        emu,
        ctrl,
        fua: true,
    }
}

/// A controller brought up on `emu` (after a power cut, a second boot);
/// `fua`: see [`Rig::fua`].
pub fn boot(emu: &EmuController, io_timeout: Duration, fua: bool) -> Rig {
    let options = Options {
        io_timeout,
        ..Options::default()
    };
    let ctrl =
        Arc::new(Controller::new(EmuTransport::new(emu.clone()), options).expect("bring-up"));
    Rig {
        emu: emu.clone(),
        ctrl,
        fua,
    }
}

impl Rig {
    pub fn io(&self) -> Io {
        let qp = self
            .ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 64,
                mode: CompletionMode::Polled,
                ..QueuePairOptions::default()
            })
            .unwrap();
        let q = DevQueue {
            q: NvmeQueue::new(&self.ctrl, qp, 1).unwrap(),
            fua: self.fua,
        };
        let zero = self.buf(4096);
        let dio = Dio::new(q, Some(zero), 32).unwrap();
        let ctrl = Arc::clone(&self.ctrl);
        StoreIo::new(dio, move |len| {
            let b = ctrl.allocator().alloc(len, 4096).ok()?;
            Some(IoBuffer::new(b))
        })
    }

    pub fn buf(&self, len: usize) -> IoBuffer {
        let mut b = self.ctrl.allocator().alloc(len, 4096).unwrap();
        b.fill(0, len, 0).unwrap();
        IoBuffer::new(b)
    }

    /// I/O commands executed since the last call.
    pub fn log(&self) -> Vec<LogEntry> {
        self.emu
            .command_log()
            .take()
            .into_iter()
            .filter(|e| e.qid != 0)
            .collect()
    }

    /// `len` bytes of the namespace at byte `addr`, as a read sees them.
    pub fn raw(&self, io: &mut Io, addr: u64, len: usize) -> Vec<u8> {
        let raw = dio::providers::RawNamespace::new(io.dio().caps());
        let mut it = IovIter::new(vec![self.buf(len)]);
        io.dio()
            .read(
                &mut Kiocb::new(addr, KiocbFlags::empty()),
                &mut it,
                &raw,
                &dio::NoHooks,
            )
            .unwrap();
        let mut out = vec![0; len];
        it.buffers()[0].read(0, &mut out).unwrap();
        out
    }

    pub fn format(&self, io: &mut Io) -> Arc<Store> {
        Store::format(io, REGION, &FormatOptions::default()).unwrap()
    }
}

pub fn ops(log: &[LogEntry]) -> Vec<(u8, bool)> {
    log.iter().map(|e| (e.opcode, e.fua)).collect()
}

/// Writes `data` at `pos` with `flags`.
pub fn put(
    r: &Rig,
    io: &mut Io,
    s: &Store,
    f: &store::File,
    pos: u64,
    data: &[u8],
    flags: KiocbFlags,
) {
    let b = r.buf(data.len());
    b.write(0, data).unwrap();
    let mut it = IovIter::new(vec![b]);
    let n = s
        .write(io, f, &mut Kiocb::new(pos, flags), &mut it)
        .unwrap();
    assert_eq!(n, data.len());
}

/// Reads `len` bytes at `pos` (zeros past EOF).
pub fn get(r: &Rig, io: &mut Io, s: &Store, f: &store::File, pos: u64, len: usize) -> Vec<u8> {
    let mut it = IovIter::new(vec![r.buf(len)]);
    s.read(io, f, &mut Kiocb::new(pos, KiocbFlags::empty()), &mut it)
        .unwrap();
    let mut out = vec![0; len];
    it.buffers()[0].read(0, &mut out).unwrap();
    out
}

pub fn assert_clean(io: &mut Io, s: &Store) {
    let rep = s.fsck(io).unwrap();
    assert!(rep.is_clean(), "fsck: {:?}", rep.problems);
}
