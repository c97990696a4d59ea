//! A store on the emulated controller, with the controller's command log.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::{Dio, IovIter, Kiocb, KiocbFlags};
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, Options, QueuePairOptions};
use nvme_emu::{EmuController, LogEntry};
use store::{FormatOptions, Region, Store, StoreIo};

pub const FLUSH: u8 = 0x00;
pub const WRITE: u8 = 0x01;

pub type Io = StoreIo<NvmeQueue<EmuTransport>, IoBuffer>;

pub struct Rig {
    pub emu: EmuController,
    pub ctrl: Arc<Controller<EmuTransport>>,
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
    Rig { emu, ctrl }
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
        let q = NvmeQueue::new(&self.ctrl, qp, 1).unwrap();
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
