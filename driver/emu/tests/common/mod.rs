//! A raw test harness: drives the emulated controller through register writes and
//! hand-built queue entries, with no driver in between.
#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hugepages::{DmaMapper, VolatileSlice};
use memmap2::{MmapMut, MmapRaw};
use nvme_emu::EmuController;
use nvme_spec::registers::offset;
use nvme_spec::{CompletionEntry, Status, SubmissionEntry};

pub const PAGE: usize = 4096;

/// Page-aligned host memory, zeroed, unmapped on drop. Accessed only through its
/// `VolatileSlice`; an access outside it panics.
pub struct HostMem {
    // Field order is drop order: `mem` points into `map`.
    mem: VolatileSlice<'static>,
    map: MmapRaw,
}

impl HostMem {
    pub fn new(len: usize) -> Self {
        let len = len.div_ceil(PAGE).max(1) * PAGE;
        let map = MmapRaw::from(MmapMut::map_anon(len).expect("anonymous memory"));
        let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap returned NULL");
        // SAFETY: `map` is `len` readable and writable bytes that live as long as `mem`
        // (both fields of this value); nothing creates a reference into them.
        let mem = unsafe { VolatileSlice::new(ptr, map.len()) };
        Self { mem, map }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn ptr(&self) -> *mut u8 {
        self.mem.as_ptr()
    }

    pub fn write(&self, at: usize, data: &[u8]) {
        self.mem.write(at, data).unwrap();
    }

    pub fn read(&self, at: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.read_into(at, &mut v);
        v
    }

    /// Copies `dst.len()` bytes at `at` into `dst` (no allocation).
    pub fn read_into(&self, at: usize, dst: &mut [u8]) {
        self.mem.read(at, dst).unwrap();
    }

    pub fn fill(&self, at: usize, len: usize, byte: u8) {
        self.mem.fill(at, len, byte).unwrap();
    }

    pub fn write_u64(&self, at: usize, v: u64) {
        self.write(at, &v.to_le_bytes());
    }

    /// Stores `v` atomically; the device accesses it atomically too.
    pub fn store_u32(&self, at: usize, v: u32) {
        self.mem.store_u32(at, v, Ordering::Release).unwrap();
    }

    /// Loads atomically; the device writes it atomically.
    pub fn load_u32(&self, at: usize) -> u32 {
        self.mem.load_u32(at, Ordering::Acquire).unwrap()
    }
}

/// Host memory mapped at an IOVA.
pub struct DmaBuf {
    pub mem: HostMem,
    pub iova: u64,
}

impl std::ops::Deref for DmaBuf {
    type Target = HostMem;
    fn deref(&self) -> &HostMem {
        &self.mem
    }
}

/// One submission/completion queue pair as the host sees it.
pub struct Queue {
    pub qid: u16,
    pub sq: DmaBuf,
    pub cq: DmaBuf,
    pub size: u32,
    pub cq_size: u32,
    pub tail: u32,
    pub head: u32,
    pub phase: bool,
}

pub struct Harness {
    pub ctrl: EmuController,
    pub mapper: Arc<dyn DmaMapper>,
    next_iova: u64,
    pub queues: Vec<Option<Queue>>,
    next_cid: u16,
    pub dstrd: u8,
    /// Memory kept alive for the harness' lifetime (mapped buffers must outlive maps).
    keep: Vec<DmaBuf>,
}

pub fn sqe(opcode: u8) -> SubmissionEntry {
    SubmissionEntry::new(opcode)
}

pub fn rw(opcode: u8, nsid: u32, slba: u64, nlb: u32, prp1: u64, prp2: u64) -> SubmissionEntry {
    let mut e = sqe(opcode);
    e.nsid = nsid;
    e.cdw10 = slba as u32;
    e.cdw11 = (slba >> 32) as u32;
    e.cdw12 = nlb - 1;
    e.set_prp(prp1, prp2);
    e
}

pub fn code(status: Status) -> (u8, u8) {
    (status.sct().into_bits(), status.sc())
}

impl Harness {
    /// A controller from `name`, not yet enabled.
    pub fn raw(name: &str) -> Self {
        let ctrl = EmuController::from_name(name).expect("valid device string");
        let dstrd = ctrl.config().dstrd;
        Self {
            mapper: ctrl.dma_mapper(),
            ctrl,
            next_iova: 0x10_0000,
            queues: (0..=64).map(|_| None).collect(),
            next_cid: 1,
            dstrd,
            keep: Vec::new(),
        }
    }

    /// A controller from `name`, enabled with a 32-entry admin queue.
    pub fn new(name: &str) -> Self {
        let mut h = Self::raw(name);
        h.setup_admin(32, 32);
        h.enable_default();
        assert!(h.csts() & 1 == 1, "controller did not become ready");
        h
    }

    /// Enabled controller with one I/O queue pair (qid 1, `size` entries).
    pub fn with_io(name: &str, size: u32) -> Self {
        let mut h = Self::new(name);
        h.create_io_pair(1, size);
        h
    }

    pub fn alloc(&mut self, len: usize) -> DmaBuf {
        let mem = HostMem::new(len);
        let iova = self.next_iova;
        // Leave an unmapped guard gap and keep IOVAs 64 KiB aligned (any MPS works).
        self.next_iova += (mem.len() as u64 + PAGE as u64).next_multiple_of(0x1_0000);
        // SAFETY: `mem` stays allocated until after it is unmapped (`Harness::drop`
        // unmaps everything before the buffers are freed, or `unmap` is called).
        unsafe { self.mapper.map(mem.ptr(), mem.len(), iova) }.expect("map");
        DmaBuf { mem, iova }
    }

    /// Keeps `buf` alive (and mapped) until the harness is dropped.
    pub fn keep(&mut self, buf: DmaBuf) {
        self.keep.push(buf);
    }

    pub fn unmap(&self, buf: &DmaBuf) {
        self.mapper.unmap(buf.iova, buf.mem.len()).expect("unmap");
    }

    /// An IOVA nothing is mapped at.
    pub fn unmapped_iova(&mut self) -> u64 {
        let iova = self.next_iova;
        self.next_iova += 16 * PAGE as u64;
        iova
    }

    pub fn csts(&self) -> u32 {
        self.ctrl.read32(offset::CSTS)
    }

    pub fn cfs(&self) -> bool {
        self.csts() & 2 != 0
    }

    pub fn ready(&self) -> bool {
        self.csts() & 1 != 0
    }

    /// Maps admin rings and programs AQA/ASQ/ACQ.
    pub fn setup_admin(&mut self, sq_size: u32, cq_size: u32) {
        let sq = self.alloc(sq_size as usize * 64);
        let cq = self.alloc(cq_size as usize * 16);
        self.ctrl
            .write32(offset::AQA, (sq_size - 1) | ((cq_size - 1) << 16));
        self.ctrl.write64(offset::ASQ, sq.iova);
        self.ctrl.write64(offset::ACQ, cq.iova);
        self.queues[0] = Some(Queue {
            qid: 0,
            sq,
            cq,
            size: sq_size,
            cq_size,
            tail: 0,
            head: 0,
            phase: true,
        });
    }

    pub fn cc_value(mps: u32, iosqes: u32, iocqes: u32) -> u32 {
        1 | (mps << 7) | (iosqes << 16) | (iocqes << 20)
    }

    pub fn enable_default(&self) {
        self.ctrl.write32(offset::CC, Self::cc_value(0, 6, 4));
    }

    pub fn disable(&mut self) {
        self.ctrl.write32(offset::CC, 0);
        for q in self.queues.iter_mut().skip(1) {
            *q = None;
        }
        if let Some(q) = self.queues[0].as_mut() {
            q.tail = 0;
            q.head = 0;
            q.phase = true;
        }
    }

    pub fn sq_doorbell(&self, qid: u16) -> usize {
        0x1000 + (2 * qid as usize) * (4 << self.dstrd)
    }

    pub fn cq_doorbell(&self, qid: u16) -> usize {
        0x1000 + (2 * qid as usize + 1) * (4 << self.dstrd)
    }

    /// Places `e` in queue `qid` (assigning a fresh CID unless `keep_cid`) without
    /// ringing; returns the CID.
    pub fn place(&mut self, qid: u16, mut e: SubmissionEntry, keep_cid: bool) -> u16 {
        if !keep_cid {
            e.set_cid(self.next_cid);
            self.next_cid = self.next_cid.wrapping_add(1).max(1);
        }
        let q = self.queues[qid as usize].as_mut().expect("queue exists");
        q.sq.write(q.tail as usize * 64, &e.to_bytes());
        q.tail = (q.tail + 1) % q.size;
        e.cid()
    }

    pub fn ring(&self, qid: u16) {
        let q = self.queues[qid as usize].as_ref().expect("queue exists");
        self.ctrl.write32(self.sq_doorbell(qid), q.tail);
    }

    pub fn submit(&mut self, qid: u16, e: SubmissionEntry) -> u16 {
        let cid = self.place(qid, e, false);
        self.ring(qid);
        cid
    }

    /// The next completion of queue `qid`'s CQ, if posted (does not ring the CQ doorbell).
    pub fn peek(&mut self, qid: u16) -> Option<CompletionEntry> {
        let q = self.queues[qid as usize].as_mut().expect("queue exists");
        let at = q.head as usize * 16;
        let dw3 = q.cq.load_u32(at + 12);
        if (dw3 >> 16) & 1 != q.phase as u32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        q.cq.read_into(at, &mut bytes);
        q.head += 1;
        if q.head == q.cq_size {
            q.head = 0;
            q.phase = !q.phase;
        }
        Some(CompletionEntry::from_bytes(&bytes))
    }

    pub fn ring_cq(&self, qid: u16) {
        let q = self.queues[qid as usize].as_ref().expect("queue exists");
        self.ctrl.write32(self.cq_doorbell(qid), q.head);
    }

    /// Waits (up to 5 s, for threaded mode) for the next completion and rings the CQ
    /// head doorbell.
    pub fn wait(&mut self, qid: u16) -> CompletionEntry {
        self.wait_then(qid, |_, _| {})
    }

    /// Waits (up to 5 s) for the next completion, calls `consumed(self, qid)` and rings
    /// the CQ head doorbell.
    fn wait_then(&mut self, qid: u16, consumed: impl Fn(&Self, u16)) -> CompletionEntry {
        let start = Instant::now();
        loop {
            if let Some(c) = self.peek(qid) {
                consumed(self, qid);
                self.ring_cq(qid);
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no completion on queue {qid}"
            );
            std::thread::yield_now();
        }
    }

    /// Submits and waits for the completion (asserting it belongs to this command).
    pub fn exec(&mut self, qid: u16, e: SubmissionEntry) -> CompletionEntry {
        let cid = self.submit(qid, e);
        let c = self.wait(qid);
        assert_eq!(c.cid, cid, "completion for another command");
        assert_eq!(c.sq_id, qid);
        c
    }

    pub fn admin(&mut self, e: SubmissionEntry) -> CompletionEntry {
        self.exec(0, e)
    }

    /// Create I/O CQ with raw fields.
    pub fn create_cq_raw(
        &mut self,
        qid: u16,
        size: u32,
        iova: u64,
        flags: u32,
        iv: u16,
    ) -> CompletionEntry {
        self.create_queue_raw(0x05, qid, size, iova, flags, iv)
    }

    /// Create I/O SQ with raw fields.
    pub fn create_sq_raw(
        &mut self,
        qid: u16,
        size: u32,
        iova: u64,
        flags: u32,
        cqid: u16,
    ) -> CompletionEntry {
        self.create_queue_raw(0x01, qid, size, iova, flags, cqid)
    }

    /// Create I/O CQ or SQ: CDW11 bits 31:16 are the CQ's vector or the SQ's CQ.
    fn create_queue_raw(
        &mut self,
        opcode: u8,
        qid: u16,
        size: u32,
        iova: u64,
        flags: u32,
        upper: u16,
    ) -> CompletionEntry {
        let mut e = sqe(opcode);
        e.prp1 = iova;
        e.cdw10 = u32::from(qid) | ((size.wrapping_sub(1)) << 16);
        e.cdw11 = flags | (u32::from(upper) << 16);
        self.admin(e)
    }

    /// Creates I/O queue pair `qid` with `size` entries (polled, contiguous).
    pub fn create_io_pair(&mut self, qid: u16, size: u32) {
        self.create_io_pair_with(qid, size, size, None);
    }

    pub fn create_io_pair_irq(&mut self, qid: u16, size: u32, iv: Option<u16>) {
        self.create_io_pair_with(qid, size, size, iv);
    }

    /// Creates I/O queue pair `qid` with an `sq_size`-entry SQ feeding a `cq_size`-entry
    /// CQ (interrupts on vector `iv` if given, else polled).
    pub fn create_io_pair_with(&mut self, qid: u16, sq_size: u32, cq_size: u32, iv: Option<u16>) {
        let cq = self.alloc(cq_size as usize * 16);
        let sq = self.alloc(sq_size as usize * 64);
        let flags = 1 | if iv.is_some() { 2 } else { 0 };
        let c = self.create_cq_raw(qid, cq_size, cq.iova, flags, iv.unwrap_or(0));
        assert!(c.status.is_success(), "create cq: {:?}", c.status);
        let c = self.create_sq_raw(qid, sq_size, sq.iova, 1, qid);
        assert!(c.status.is_success(), "create sq: {:?}", c.status);
        self.queues[qid as usize] = Some(Queue {
            qid,
            sq,
            cq,
            size: sq_size,
            cq_size,
            tail: 0,
            head: 0,
            phase: true,
        });
    }

    /// Turns on shadow doorbells (Doorbell Buffer Config); returns the doorbell and
    /// EventIdx buffers.
    pub fn enable_shadow_doorbells(&mut self) -> (DmaBuf, DmaBuf) {
        let db = self.alloc(PAGE);
        let ei = self.alloc(PAGE);
        let mut e = sqe(0x7c);
        e.prp1 = db.iova;
        e.prp2 = ei.iova;
        let c = self.admin(e);
        assert!(
            c.status.is_success(),
            "doorbell buffer config: {:?}",
            c.status
        );
        (db, ei)
    }

    /// Checks that a controller with CSTS.CFS set clears it on reset and then enables.
    pub fn assert_reset_clears_cfs(&mut self) {
        assert!(self.cfs());
        self.disable();
        assert!(!self.cfs());
        self.enable_default();
        assert!(self.ready());
    }

    /// Issues a data command with a freshly allocated buffer; returns (completion, buffer).
    pub fn io_with_buf(
        &mut self,
        opcode: u8,
        nsid: u32,
        slba: u64,
        nlb: u32,
        data: Option<&[u8]>,
        cdw12_extra: u32,
    ) -> (CompletionEntry, DmaBuf) {
        let bs = self.ctrl.config().lba_size as usize;
        let len = nlb as usize * bs;
        let buf = self.alloc(len.max(PAGE));
        if let Some(d) = data {
            buf.write(0, d);
        }
        let (prp1, prp2) = self.prps_for(&buf, len);
        let mut e = rw(opcode, nsid, slba, nlb, prp1, prp2);
        e.cdw12 |= cdw12_extra;
        let c = self.exec(1, e);
        (c, buf)
    }

    /// PRP1/PRP2 for a page-aligned buffer of `len` bytes, building a list if needed.
    pub fn prps_for(&mut self, buf: &DmaBuf, len: usize) -> (u64, u64) {
        let pages = len.div_ceil(PAGE);
        match pages {
            0 | 1 => (buf.iova, 0),
            2 => (buf.iova, buf.iova + PAGE as u64),
            n => {
                // Entries for pages 1..n, 512 per list page; when more remain than fit,
                // the last slot of a page chains to the next list page.
                let entries: Vec<u64> = (1..n).map(|i| buf.iova + (i * PAGE) as u64).collect();
                let pages = entries.len().div_ceil(511).max(1);
                let lists: Vec<DmaBuf> = (0..pages).map(|_| self.alloc(PAGE)).collect();
                let mut rest = &entries[..];
                for (k, list) in lists.iter().enumerate() {
                    if rest.len() <= 512 {
                        for (i, e) in rest.iter().enumerate() {
                            list.write_u64(i * 8, *e);
                        }
                        break;
                    }
                    for (i, e) in rest[..511].iter().enumerate() {
                        list.write_u64(i * 8, *e);
                    }
                    list.write_u64(511 * 8, lists[k + 1].iova);
                    rest = &rest[511..];
                }
                let first = lists[0].iova;
                for l in lists {
                    self.keep(l);
                }
                (buf.iova, first)
            }
        }
    }

    pub fn write_blocks(
        &mut self,
        nsid: u32,
        slba: u64,
        data: &[u8],
        fua: bool,
    ) -> CompletionEntry {
        let bs = self.ctrl.config().lba_size as usize;
        let nlb = (data.len() / bs) as u32;
        let (c, buf) = self.io_with_buf(
            0x01,
            nsid,
            slba,
            nlb,
            Some(data),
            if fua { 1 << 30 } else { 0 },
        );
        self.keep(buf);
        c
    }

    pub fn read_blocks(&mut self, nsid: u32, slba: u64, nlb: u32) -> (CompletionEntry, Vec<u8>) {
        let bs = self.ctrl.config().lba_size as usize;
        let (c, buf) = self.io_with_buf(0x02, nsid, slba, nlb, None, 0);
        let data = buf.read(0, nlb as usize * bs);
        self.keep(buf);
        (c, data)
    }

    pub fn flush(&mut self, nsid: u32) -> CompletionEntry {
        let mut e = sqe(0x00);
        e.nsid = nsid;
        self.exec(1, e)
    }

    /// Identify with CNS `cns` into a fresh page; returns (completion, 4096 bytes).
    pub fn identify(&mut self, cns: u32, nsid: u32) -> (CompletionEntry, Vec<u8>) {
        let buf = self.alloc(PAGE);
        let mut e = sqe(0x06);
        e.nsid = nsid;
        e.cdw10 = cns;
        e.prp1 = buf.iova;
        let c = self.admin(e);
        let data = buf.read(0, PAGE);
        self.keep(buf);
        (c, data)
    }

    pub fn get_log(&mut self, lid: u8, len: usize) -> (CompletionEntry, Vec<u8>) {
        let buf = self.alloc(len.max(PAGE));
        let mut e = sqe(0x02);
        e.nsid = 0xffff_ffff;
        let numd = (len / 4 - 1) as u32;
        e.cdw10 = u32::from(lid) | ((numd & 0xffff) << 16);
        e.cdw11 = numd >> 16;
        e.prp1 = buf.iova;
        if len > PAGE {
            e.prp2 = buf.iova + PAGE as u64;
        }
        let c = self.admin(e);
        let data = buf.read(0, len);
        self.keep(buf);
        (c, data)
    }

    pub fn set_feature(&mut self, fid: u8, dw11: u32) -> CompletionEntry {
        let mut e = sqe(0x09);
        e.cdw10 = u32::from(fid);
        e.cdw11 = dw11;
        self.admin(e)
    }

    pub fn get_feature(&mut self, fid: u8) -> CompletionEntry {
        let mut e = sqe(0x0a);
        e.cdw10 = u32::from(fid);
        self.admin(e)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Stop the device first so nothing touches memory while it is freed.
        self.ctrl.function_reset();
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl Queue {
    /// Submits `e` with `cid` and rings the doorbell (for use off the harness, one
    /// queue per thread).
    pub fn submit(&mut self, ctrl: &EmuController, dstrd: u8, mut e: SubmissionEntry, cid: u16) {
        e.set_cid(cid);
        self.sq.write(self.tail as usize * 64, &e.to_bytes());
        self.tail = (self.tail + 1) % self.size;
        ctrl.write32(0x1000 + (2 * self.qid as usize) * (4 << dstrd), self.tail);
    }

    /// Waits up to 5 s for the next completion and rings the CQ head doorbell.
    pub fn wait(&mut self, ctrl: &EmuController, dstrd: u8) -> CompletionEntry {
        let start = Instant::now();
        loop {
            let at = self.head as usize * 16;
            let dw3 = self.cq.load_u32(at + 12);
            if (dw3 >> 16) & 1 == self.phase as u32 {
                let bytes: [u8; 16] = self.cq.read(at, 16).try_into().unwrap();
                self.head += 1;
                if self.head == self.cq_size {
                    self.head = 0;
                    self.phase = !self.phase;
                }
                ctrl.write32(
                    0x1000 + (2 * self.qid as usize + 1) * (4 << dstrd),
                    self.head,
                );
                return CompletionEntry::from_bytes(&bytes);
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no completion on queue {}",
                self.qid
            );
            std::thread::yield_now();
        }
    }
}

impl Harness {
    /// Like [`Harness::wait`], but publishes the CQ head in the shadow doorbell buffer
    /// `db` (as a driver using Doorbell Buffer Config does) before the MMIO write.
    pub fn wait_shadow(&mut self, qid: u16, db: &DmaBuf) -> CompletionEntry {
        // Publish the new CQ head in the shadow doorbell before the MMIO write.
        self.wait_then(qid, |h, qid| {
            let head = h.queues[qid as usize].as_ref().unwrap().head;
            db.store_u32((2 * qid as usize + 1) * (4 << h.dstrd), head);
        })
    }
}

/// A two-party (or n-party) barrier that panics instead of waiting forever, so a test
/// whose other thread failed ends instead of hanging.
pub struct Rendezvous {
    parties: u32,
    state: std::sync::Mutex<(u64, u32)>,
    cv: std::sync::Condvar,
}

impl Rendezvous {
    pub fn new(parties: u32) -> Self {
        Self {
            parties,
            state: std::sync::Mutex::new((0, 0)),
            cv: std::sync::Condvar::new(),
        }
    }

    pub fn wait(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = s.0;
        s.1 += 1;
        if s.1 == self.parties {
            s.0 += 1;
            s.1 = 0;
            self.cv.notify_all();
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.0 == generation {
            let now = Instant::now();
            assert!(now < deadline, "the other thread never arrived");
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
