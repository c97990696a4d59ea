//! The benches' store: an inline emulated controller with a RAM namespace
//! (a store needs its metadata back; a null namespace returns nothing), one
//! polled queue pair, one dio engine, and a raw region beside the store's.

#![allow(dead_code)]

use std::sync::Arc;

use dio::nvme_qp::{IoBuffer, NvmeQueue};
use dio::providers::RawNamespace;
use dio::{IovIter, Kiocb, KiocbFlags, NoHooks};
use nvme::transport::emu::EmuTransport;
use nvme::{CompletionMode, Controller, Options, QueuePairOptions};
use nvme_emu::EmuController;
use store::{File, FormatOptions, Region, Store, StoreIo};

/// RAM namespace, volatile write cache on (so O_DSYNC needs FUA or a flush).
pub const DEVICE: &str = "emu:size=256M,lba=512,vwc=on,mode=inline";
/// The store's region: 1 MiB to 129 MiB.
pub const REGION: Region = Region {
    offset: 1 << 20,
    len: 128 << 20,
};
/// Where the raw side writes: past the store's region.
pub const RAW_BASE: u64 = 160 << 20;
/// Overwrites rotate over this many 4 KiB blocks (on both sides).
pub const OVERWRITE_BLOCKS: u64 = 1024;

/// The engine type of the benches.
pub type Io = StoreIo<NvmeQueue<EmuTransport>, IoBuffer>;

/// A controller, one thread's engine and a formatted store.
pub struct Rig {
    pub emu: EmuController,
    pub ctrl: Arc<Controller<EmuTransport>>,
    pub io: Io,
    pub store: Arc<Store>,
    pub raw: RawNamespace,
}

impl Rig {
    pub fn new() -> Rig {
        let t = EmuTransport::from_name(DEVICE).expect("the emulated controller");
        let emu = t.emu().clone();
        let options = Options {
            io_queues: 2,
            ..Options::default()
        };
        let ctrl = Arc::new(Controller::new(t, options).expect("controller bring-up"));
        let qp = ctrl
            .create_io_queue_pair(QueuePairOptions {
                depth: 64,
                mode: CompletionMode::Polled,
                ..QueuePairOptions::default()
            })
            .expect("a queue pair");
        let q = NvmeQueue::new(&ctrl, qp, 1).expect("namespace 1");
        let zero = buffer(&ctrl, 4096);
        let dio = dio::Dio::new(q, Some(zero), 32).expect("the engine");
        let raw = RawNamespace::new(dio.caps());
        let c = Arc::clone(&ctrl);
        let mut io = StoreIo::new(dio, move |len| {
            Some(IoBuffer::new(c.allocator().alloc(len, 4096).ok()?))
        });
        let store = Store::format(&mut io, REGION, &FormatOptions::default()).expect("format");
        Rig {
            emu,
            ctrl,
            io,
            store,
            raw,
        }
    }

    /// A zeroed DMA buffer of `len` bytes filled with `byte`.
    pub fn buf(&self, len: usize, byte: u8) -> IoBuffer {
        let b = buffer(&self.ctrl, len);
        b.write(0, &vec![byte; len]).expect("fill");
        b
    }

    /// A file of `blocks` written 4 KiB blocks, made durable.
    pub fn written_file(&mut self, name: &str, blocks: u64) -> File {
        let f = self.store.create(&mut self.io, name).expect("create");
        let mut it = IovIter::new(vec![self.buf(4096, 0x5a)]);
        for i in 0..blocks {
            it.reset();
            self.store
                .write(
                    &mut self.io,
                    &f,
                    &mut Kiocb::new(i * 4096, KiocbFlags::empty()),
                    &mut it,
                )
                .expect("write");
        }
        self.store.fsync(&mut self.io, &f).expect("fsync");
        f
    }

    /// One 4 KiB O_DSYNC overwrite of file block `i` through the store.
    #[inline(never)]
    pub fn store_overwrite(&mut self, f: &File, it: &mut IovIter<IoBuffer>, i: u64) {
        it.reset();
        let mut iocb = Kiocb::new(i * 4096, KiocbFlags::DSYNC | KiocbFlags::HIPRI);
        let n = self
            .store
            .write(&mut self.io, f, &mut iocb, it)
            .expect("store overwrite");
        assert_eq!(n, 4096);
    }

    /// One 4 KiB O_DSYNC write of block `i` of the raw region, same engine.
    #[inline(never)]
    pub fn raw_overwrite(&mut self, it: &mut IovIter<IoBuffer>, i: u64) {
        it.reset();
        let mut iocb = Kiocb::new(RAW_BASE + i * 4096, KiocbFlags::DSYNC | KiocbFlags::HIPRI);
        let n = self
            .io
            .dio()
            .write(&mut iocb, it, &self.raw, &NoHooks)
            .expect("raw overwrite");
        assert_eq!(n, 4096);
    }
}

fn buffer(ctrl: &Controller<EmuTransport>, len: usize) -> IoBuffer {
    let mut b = ctrl.allocator().alloc(len, 4096).expect("a DMA buffer");
    b.fill(0, len, 0).expect("zero");
    IoBuffer::new(b)
}
