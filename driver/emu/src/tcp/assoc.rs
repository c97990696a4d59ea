//! A controller association: what an admin queue's Connect creates and every queue
//! of that controller shares: the CNTLID, the keep-alive timer, the properties
//! (registers), and, for the NVM subsystem, the emulated controller's admin queue.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hugepages::sync::lock;
use nvme_spec::registers::offset;
use nvme_spec::status::GenericStatus as G;
use nvme_spec::{CompletionEntry, Status, SubmissionEntry};

use super::discovery;
use super::host::HostQueue;
use super::Shared;

/// Entries of the emulated controller's admin queue. Commands run one at a time, so
/// only outstanding Asynchronous Event Requests stay in it, and they leave the SQ.
const ADMIN_ENTRIES: u32 = 32;

/// The emulated controller's admin queue and the completions reaped from it that no
/// one has taken yet (the admin connection and I/O connections creating their queues
/// both submit to it).
pub(crate) struct AdminRing {
    pub q: Option<HostQueue>,
    next_cid: u16,
    done: HashMap<u16, CompletionEntry>,
}

impl AdminRing {
    /// A command identifier for the emulated controller's admin queue.
    pub(crate) fn cid(&mut self) -> u16 {
        self.next_cid = self.next_cid.wrapping_add(1);
        self.next_cid
    }

    /// Submits `sqe` and collects what completed; false if the ring is full or gone.
    pub(crate) fn submit(&mut self, shared: &Shared, sqe: &SubmissionEntry) -> bool {
        let Some(q) = self.q.as_mut() else {
            return false;
        };
        let ok = q.submit(&shared.emu, sqe);
        self.collect(shared);
        ok
    }

    /// Moves posted completions into the done table.
    pub(crate) fn collect(&mut self, shared: &Shared) {
        let Some(q) = self.q.as_mut() else { return };
        let mut out = Vec::new();
        q.reap(&shared.emu, &mut out);
        for c in out {
            self.done.insert(c.cid, c);
        }
    }

    /// The completion of command `cid`, once posted.
    pub(crate) fn take(&mut self, cid: u16) -> Option<CompletionEntry> {
        self.done.remove(&cid)
    }
}

/// One controller association.
pub(crate) struct Assoc {
    pub cntlid: u16,
    /// The discovery controller rather than the NVM subsystem's.
    pub discovery: bool,
    /// The host NQN the admin queue connected with.
    pub hostnqn: String,
    /// Keep-alive timeout in milliseconds; 0 disables the timer.
    pub kato_ms: u32,
    /// When the last command arrived, in milliseconds since the target started.
    last_ms: AtomicU64,
    /// False once the association has ended. Held shared while a command runs on the
    /// emulated controller, so ending waits for it and nothing runs after.
    pub live: RwLock<bool>,
    pub admin: Mutex<AdminRing>,
    /// I/O queues connected now.
    pub io_qids: Mutex<BTreeSet<u16>>,
    /// The discovery controller's CC (the NVM subsystem's is the emulated controller's).
    disc_cc: AtomicU32,
}

impl Assoc {
    /// A new association; for the NVM subsystem, with the rings of the emulated
    /// controller's admin queue.
    pub(crate) fn new(
        shared: &Shared,
        discovery: bool,
        hostnqn: String,
        kato_ms: u32,
    ) -> Result<Arc<Self>, hugepages::Error> {
        let q = if discovery {
            None
        } else {
            Some(HostQueue::new(
                &shared.alloc,
                &shared.emu,
                0,
                ADMIN_ENTRIES,
                PAGE,
            )?)
        };
        Ok(Arc::new(Self {
            cntlid: shared.allocate_cntlid(),
            discovery,
            hostnqn,
            kato_ms,
            last_ms: AtomicU64::new(shared.now_ms()),
            live: RwLock::new(true),
            admin: Mutex::new(AdminRing {
                q,
                next_cid: 0,
                done: HashMap::new(),
            }),
            io_qids: Mutex::new(BTreeSet::new()),
            disc_cc: AtomicU32::new(0),
        }))
    }

    /// A command arrived: restart the keep-alive timer (traffic counts as keep-alive).
    pub(crate) fn touch(&self, shared: &Shared) {
        self.last_ms.store(shared.now_ms(), Ordering::Relaxed);
    }

    /// Whether no command arrived within KATO.
    pub(crate) fn expired(&self, shared: &Shared) -> bool {
        self.kato_ms != 0
            && shared
                .now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed))
                > u64::from(self.kato_ms)
    }

    pub(crate) fn is_live(&self) -> bool {
        *self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the association: the emulated controller is disabled (queues gone, data
    /// kept) and every connection of this controller is shut down. Idempotent.
    pub(crate) fn end(&self, shared: &Shared) {
        {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            if !*live {
                return;
            }
            *live = false;
            if !self.discovery {
                shared.emu.write32(offset::CC, 0);
            }
        }
        lock(&shared.assocs).retain(|a| a.cntlid != self.cntlid);
        shared.close_connections(|c| c.cntlid == Some(self.cntlid));
    }

    /// Property Get: 8-byte CAP, 4-byte VS, CC and CSTS (as nvmet).
    pub(crate) fn property_get(
        &self,
        shared: &Shared,
        at: u32,
        eight: bool,
    ) -> Result<u64, Status> {
        let at = at as usize;
        if self.discovery {
            return discovery::property_get(self.disc_cc.load(Ordering::Acquire), at, eight);
        }
        let emu = &shared.emu;
        match (at, eight) {
            (offset::CAP, true) => Ok(emu.read64(offset::CAP)),
            (offset::VS | offset::CC | offset::CSTS, false) => Ok(u64::from(emu.read32(at))),
            _ => Err(Status::generic(G::InvalidFieldInCommand).with_dnr(true)),
        }
    }

    /// Property Set: 4-byte CC only (as nvmet). Enabling the emulated controller
    /// programs its admin queue first; disabling it ends the I/O queues.
    pub(crate) fn property_set(
        &self,
        shared: &Shared,
        at: u32,
        eight: bool,
        value: u64,
    ) -> Result<(), Status> {
        if eight || at as usize != offset::CC {
            return Err(Status::generic(G::InvalidFieldInCommand).with_dnr(true));
        }
        let value = value as u32;
        if (value >> 7) & 0xf != 0 {
            // CC.MPS other than 4 KiB (see `PAGE`).
            return Err(Status::generic(G::InvalidFieldInCommand).with_dnr(true));
        }
        if self.discovery {
            self.disc_cc.store(value, Ordering::Release);
            return Ok(());
        }
        let emu = &shared.emu;
        let mut admin = lock(&self.admin);
        let was_enabled = emu.read32(offset::CC) & 1 != 0;
        let enable = value & 1 != 0;
        if !was_enabled && enable {
            if let Some(q) = admin.q.as_mut() {
                q.reset();
                let n = q.size() - 1;
                emu.write32(offset::AQA, n | (n << 16));
                emu.write64(offset::ASQ, q.sq_iova());
                emu.write64(offset::ACQ, q.cq_iova());
            }
        }
        emu.write32(offset::CC, value);
        if was_enabled && !enable {
            if let Some(q) = admin.q.as_mut() {
                q.reset();
            }
            admin.done.clear();
            drop(admin);
            lock(&self.io_qids).clear();
            shared.close_connections(|c| c.cntlid == Some(self.cntlid) && c.qid != Some(0));
        }
        Ok(())
    }

    /// Runs one admin command of the target's own (queue management) on the emulated
    /// controller and waits for its completion.
    fn admin_sync(&self, shared: &Shared, mut sqe: SubmissionEntry) -> Option<CompletionEntry> {
        let cid = {
            let mut admin = lock(&self.admin);
            let cid = admin.cid();
            sqe.set_cid(cid);
            if !admin.submit(shared, &sqe) {
                return None;
            }
            if let Some(c) = admin.take(cid) {
                return Some(c);
            }
            cid
        };
        // Inline mode completes in the doorbell write; a completion the emulated
        // controller's own fault injection holds back may take a while.
        for _ in 0..500 {
            std::thread::sleep(Duration::from_millis(2));
            let mut admin = lock(&self.admin);
            admin.collect(shared);
            if let Some(c) = admin.take(cid) {
                return Some(c);
            }
        }
        None
    }

    /// Creates I/O queue pair `qid` of `entries` entries on the emulated controller.
    pub(crate) fn create_io_queue(
        &self,
        shared: &Shared,
        qid: u16,
        entries: u32,
    ) -> Result<HostQueue, Status> {
        let q = HostQueue::new(&shared.alloc, &shared.emu, qid, entries, PAGE)
            .map_err(|_| Status::generic(G::InternalError))?;
        let size = (entries - 1) << 16;
        let mut cq = SubmissionEntry::new(0x05);
        cq.prp1 = q.cq_iova();
        cq.cdw10 = u32::from(qid) | size;
        cq.cdw11 = 1; // physically contiguous, no interrupts
        let c = self
            .admin_sync(shared, cq)
            .ok_or(Status::generic(G::InternalError))?;
        if !c.status.is_success() {
            return Err(c.status);
        }
        let mut sq = SubmissionEntry::new(0x01);
        sq.prp1 = q.sq_iova();
        sq.cdw10 = u32::from(qid) | size;
        sq.cdw11 = 1 | (u32::from(qid) << 16);
        let c = self
            .admin_sync(shared, sq)
            .ok_or(Status::generic(G::InternalError))?;
        if !c.status.is_success() {
            self.delete_cq(shared, qid);
            return Err(c.status);
        }
        Ok(q)
    }

    fn delete_cq(&self, shared: &Shared, qid: u16) {
        let mut cq = SubmissionEntry::new(0x04);
        cq.cdw10 = u32::from(qid);
        let _ = self.admin_sync(shared, cq);
    }

    /// Deletes I/O queue pair `qid` from the emulated controller.
    pub(crate) fn delete_io_queue(&self, shared: &Shared, qid: u16) {
        let mut sq = SubmissionEntry::new(0x00);
        sq.cdw10 = u32::from(qid);
        let _ = self.admin_sync(shared, sq);
        self.delete_cq(shared, qid);
    }
}

/// The memory page size of the emulated controller's side: the target's DMA memory
/// comes in 4 KiB pages, so CC.MPS must select 4 KiB (as Linux and SPDK hosts do
/// over fabrics).
pub(crate) const PAGE: usize = 4096;
