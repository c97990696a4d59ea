//! NVMe/TCP (NVMe over Fabrics on TCP): a remote controller behind the same
//! [`Transport`] seam as a PCIe one.
//!
//! The driver above is unchanged: it programs registers, writes submission entries
//! into rings in host memory, rings doorbells and polls completion rings. This
//! transport speaks the fabric for it:
//!
//! - **Registers** are properties: CAP, VS, CC and CSTS reads and writes become
//!   Property Get and Set commands on the admin connection; AQA, ASQ and ACQ stay
//!   local (the rings are the driver's own memory). CC.EN going to 1 connects the
//!   admin queue again when its connection was lost (a new association).
//! - **Queues** are connections: Create I/O Submission Queue opens a TCP connection
//!   and sends Fabrics Connect for that queue; Delete I/O Submission Queue sends
//!   Disconnect and closes it. One connection per queue pair, owned by the thread
//!   that polls it.
//! - **Doorbells** move data: an SQ tail doorbell sends the new entries as Command
//!   Capsules (batched into one socket write); [`Transport::poll_queue`], called by
//!   the queue pair before it reads its CQ, receives PDUs and posts completions
//!   (`queue.rs`).
//! - **Keep Alive** goes out every half KATO from a background thread, which also
//!   notices a target that stopped answering.
//! - **Failures** (a connection closed or reset, a malformed PDU, a digest error, a
//!   keep-alive timeout) make CSTS read Controller Fatal Status, so the driver resets
//!   the controller: queues are connected again and commands retried within their
//!   budget. When the target cannot be reached again, CSTS reads all ones, the
//!   controller is unreachable, and [`Transport::failure`] says why.
//!
//! Memory need not be DMA memory: the allocator gets plain (unlocked) pages and a
//! mapper that only records where they are, so data can be copied to and from them.

mod conn;
mod discovery;
mod memory;
mod name;
mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hugepages::sync::lock;
use hugepages::DmaMapper;
use vmm_sys_util::eventfd::EventFd;

use crate::spec::fabrics::{self, ConnectData, FabricsStatus, InvalidParameter, PropertySize};
use crate::spec::registers::{offset, ShutdownNotification, ShutdownStatus};
use crate::spec::status::{GenericStatus, StatusCodeType};
use crate::spec::tcp::Digests;
use crate::spec::{Cc, CompletionEntry, Csts, Status, SubmissionEntry};
use crate::transport::Transport;
use crate::Error;

pub use self::discovery::{discover, DiscoveryLog};
pub use self::name::{HostIdentity, IdentitySources, TcpName, DEFAULT_KATO};

use self::conn::{Conn, ConnError};
use self::memory::{MemTable, MemView, TableMapper};
use self::queue::{QueueShim, Ring};

/// Queues a TCP controller may have: the admin queue and up to this many minus one
/// I/O queues.
const MAX_QUEUES: usize = 129;
/// Entries of the admin queue on the target (Linux `NVME_AQ_DEPTH`).
const ADMIN_WIRE_DEPTH: u16 = 32;
/// In-capsule data the admin queue accepts (Linux `NVME_TCP_ADMIN_CCSZ`).
const ADMIN_IN_CAPSULE: usize = 8192;
/// How long a Disconnect may take before the connection is closed anyway.
const DISCONNECT_WAIT: Duration = Duration::from_millis(200);

/// Register values kept on the host side.
#[derive(Debug, Default)]
struct Regs {
    cap: Option<u64>,
    vs: Option<u32>,
    cc: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    cntlid: u16,
    /// In-capsule data bytes of I/O queues (from Identify Controller IOCCSZ).
    io_in_capsule: Option<usize>,
}

struct Inner {
    name: TcpName,
    display: String,
    identity: HostIdentity,
    timeout: Duration,
    table: Arc<MemTable>,
    queues: Box<[Mutex<QueueShim>]>,
    regs: Mutex<Regs>,
    /// A connection failed: CSTS reads CFS until the next disable.
    fatal: AtomicBool,
    /// The controller cannot be reached again: CSTS reads all ones.
    gone: AtomicBool,
    /// CSTS.RDY was read as 1 since CC.EN was last set: while the connections are
    /// healthy and no shutdown is asked for, CSTS is answered without a round trip
    /// (Keep Alive watches the target, as on every fabric).
    ready_seen: AtomicBool,
    /// Why the last failure happened.
    failure: Mutex<Option<String>>,
    /// Keep Alive: the outstanding command and when it was sent.
    keep_alive: Mutex<Option<(u16, Instant)>>,
}

/// A controller reached over NVMe/TCP.
pub struct TcpTransport {
    inner: Arc<Inner>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    keep_alive: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("target", &self.inner.display)
            .finish_non_exhaustive()
    }
}

fn queue_name(qid: u16) -> String {
    if qid == 0 {
        "the admin queue".into()
    } else {
        format!("I/O queue {qid}")
    }
}

impl TcpTransport {
    /// Connects the admin queue of the controller `name` names (Fabrics Connect with
    /// the host's identity) and starts Keep Alive. `timeout` bounds each connection
    /// attempt and each command the transport sends itself.
    pub fn connect(name: &TcpName, timeout: Duration) -> Result<Self, Error> {
        Self::connect_with(name, &IdentitySources::default(), timeout)
    }

    /// [`TcpTransport::connect`] with the host identity read from `sources`.
    pub fn connect_with(
        name: &TcpName,
        sources: &IdentitySources,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let identity = HostIdentity::resolve(name, sources);
        let table = Arc::new(MemTable::new());
        let queues: Box<[Mutex<QueueShim>]> = (0..MAX_QUEUES)
            .map(|q| Mutex::new(QueueShim::new(q as u16, MemView::new(table.snapshot()))))
            .collect();
        let inner = Arc::new(Inner {
            display: name.to_string(),
            name: name.clone(),
            identity,
            timeout,
            table,
            queues,
            regs: Mutex::new(Regs::default()),
            fatal: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            ready_seen: AtomicBool::new(false),
            failure: Mutex::new(None),
            keep_alive: Mutex::new(None),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner.table.set_refresh(Box::new(move |regions| {
            if let Some(inner) = weak.upgrade() {
                for q in inner.queues.iter() {
                    lock(q).core.mem.refresh(regions);
                }
            }
        }));
        inner.connect_admin()?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let keep_alive = if name.kato.is_zero() {
            None
        } else {
            let inner = inner.clone();
            let stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("nvme-tcp-keepalive".into())
                    .spawn(move || keep_alive_loop(&inner, &stop))
                    .map_err(|e| Error::TcpConnect {
                        target: name.to_string(),
                        queue: "the admin queue".into(),
                        reason: format!("cannot start the keep-alive thread: {e}"),
                    })?,
            )
        };
        Ok(TcpTransport {
            inner,
            stop,
            keep_alive,
        })
    }

    /// The controller ID the target gave the admin queue's association.
    pub fn cntlid(&self) -> u16 {
        lock(&self.inner.regs).cntlid
    }

    /// The host NQN and host ID this transport connects with.
    pub fn identity(&self) -> &HostIdentity {
        &self.inner.identity
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        if let Some(t) = self.keep_alive.take() {
            let _ = t.join();
        }
        for q in self.inner.queues.iter().rev() {
            lock(q).disconnect();
        }
    }
}

impl Inner {
    fn record_failure(&self, what: String) {
        tracing::error!(target = %self.display, "{what}");
        *lock(&self.failure) = Some(what);
    }

    /// A connection failed: close it and make CSTS report a fatal status.
    ///
    /// The first failure of an incident is the one kept for [`Transport::failure`]:
    /// what follows from it (the other connections of the association closing) is
    /// only logged.
    fn conn_failed(&self, shim: &mut QueueShim, qid: u16, e: &ConnError) {
        shim.disconnect();
        let what = format!("{} of {}: {e}", queue_name(qid), self.display);
        if self.fatal.swap(true, Ordering::AcqRel) {
            tracing::warn!(target = %self.display, "{what}");
        } else {
            self.record_failure(what);
        }
    }

    /// Connects a TCP connection for `qid` and sends Fabrics Connect; returns the
    /// connection attached to `shim` and the Connect completion's dword 0.
    fn connect_queue(
        &self,
        shim: &mut QueueShim,
        qid: u16,
        sq_entries: u16,
        kato: Duration,
        cntlid: u16,
    ) -> Result<u32, Error> {
        let queue = queue_name(qid);
        let digests = Digests {
            header: self.name.header_digest,
            data: self.name.data_digest,
        };
        let conn = Conn::connect(&self.name.address(), digests, self.timeout).map_err(|e| {
            Error::TcpConnect {
                target: self.display.clone(),
                queue: queue.clone(),
                reason: e.to_string(),
            }
        })?;
        shim.disconnect();
        shim.attach(conn, 1, 0);
        let data = ConnectData {
            host_id: self.identity.id,
            cntlid,
            subnqn: self.name.subsystem().to_string(),
            hostnqn: self.identity.nqn.clone(),
        }
        .to_bytes()
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let kato_ms = u32::try_from(kato.as_millis()).unwrap_or(u32::MAX);
        let cattr = if qid != 0 && self.name.disable_sqflow {
            fabrics::CATTR_DISABLE_SQ_FLOW_CONTROL
        } else {
            0
        };
        let sqe = fabrics::connect(qid, sq_entries, cattr, kato_ms, Default::default());
        let result = self.exec_on(shim, qid, sqe, &data, 0);
        let cqe = match result {
            Ok((cqe, _)) => cqe,
            Err(reason) => {
                shim.disconnect();
                return Err(Error::TcpConnect {
                    target: self.display.clone(),
                    queue,
                    reason,
                });
            }
        };
        let status = cqe.status.without_phase();
        if !status.is_success() {
            shim.disconnect();
            return Err(Error::ConnectRejected {
                target: self.display.clone(),
                queue,
                reason: connect_status_reason(status, cqe.dw0, &self.name, &self.identity),
                status,
            });
        }
        Ok(cqe.dw0)
    }

    /// Connects the admin queue (a new association) and reads CAP.
    fn connect_admin(&self) -> Result<(), Error> {
        let mut shim = lock(&self.queues[0]);
        let dw0 = self.connect_queue(
            &mut shim,
            0,
            ADMIN_WIRE_DEPTH,
            self.name.kato,
            fabrics::CNTLID_DYNAMIC,
        )?;
        shim.core.wire_limit = ADMIN_WIRE_DEPTH - 1;
        shim.core.in_capsule = ADMIN_IN_CAPSULE;
        drop(shim);
        let mut regs = lock(&self.regs);
        regs.cntlid = dw0 as u16;
        regs.io_in_capsule = None;
        drop(regs);
        *lock(&self.keep_alive) = None;
        self.fatal.store(false, Ordering::Release);
        self.gone.store(false, Ordering::Release);
        tracing::debug!(target = %self.display, cntlid = dw0 as u16, "admin queue connected");
        Ok(())
    }

    /// Sends one of the transport's own commands on `shim` and waits for it (polling
    /// the connection, which also delivers the driver's completions). A lost
    /// connection or no answer within the transport's timeout is a failure of `qid`.
    fn exec_on(
        &self,
        shim: &mut QueueShim,
        qid: u16,
        sqe: SubmissionEntry,
        out: &[u8],
        want: usize,
    ) -> Result<(CompletionEntry, Vec<u8>), String> {
        self.exec_within(shim, qid, sqe, out, want, self.timeout, true)
    }

    /// [`Inner::exec_on`] waiting at most `limit`; with `fail` false, trouble on the
    /// connection (one that is being closed anyway) is reported but recorded as no
    /// failure.
    #[allow(clippy::too_many_arguments)]
    fn exec_within(
        &self,
        shim: &mut QueueShim,
        qid: u16,
        sqe: SubmissionEntry,
        out: &[u8],
        want: usize,
        limit: Duration,
        fail: bool,
    ) -> Result<(CompletionEntry, Vec<u8>), String> {
        let Some(cid) = shim.send_internal(sqe, out, want) else {
            return Err(if shim.conn.is_none() {
                format!("{} is not connected", queue_name(qid))
            } else {
                "too many transport commands outstanding".into()
            });
        };
        let trouble = |shim: &mut QueueShim, e: ConnError| {
            let what = e.to_string();
            if fail {
                self.conn_failed(shim, qid, &e);
            }
            what
        };
        let start = Instant::now();
        let mut backoff = crate::backoff::Backoff::new();
        loop {
            if let Err(e) = shim.flush().and_then(|()| shim.pump().map(|_| ())) {
                return Err(trouble(shim, e));
            }
            if let Some(done) = shim.take_internal(cid) {
                return Ok(done);
            }
            if qid == 0 {
                if let Err(e) = self.check_keep_alive(shim) {
                    return Err(trouble(shim, e));
                }
            }
            if !shim.internal_pending(cid) {
                return Err(format!("{} was closed", queue_name(qid)));
            }
            if start.elapsed() > limit {
                shim.abandon_internal(cid);
                let e = ConnError::Protocol(format!(
                    "no answer to a {} command within {limit:?}",
                    fabrics::fabrics_type(&sqe)
                        .and_then(|t| t.name())
                        .unwrap_or("transport"),
                ));
                return Err(trouble(shim, e));
            }
            backoff.wait();
        }
    }

    /// Clears an answered Keep Alive; an error once one went unanswered for KATO.
    fn check_keep_alive(&self, admin: &mut QueueShim) -> Result<(), ConnError> {
        let mut ka = lock(&self.keep_alive);
        let Some((cid, sent)) = *ka else {
            return Ok(());
        };
        if admin.take_internal(cid).is_some() {
            *ka = None;
        } else if sent.elapsed() > self.name.kato {
            *ka = None;
            admin.abandon_internal(cid);
            return Err(ConnError::Protocol(format!(
                "no answer to Keep Alive within the {:?} keep-alive timeout",
                self.name.kato
            )));
        }
        Ok(())
    }

    /// Runs one command of the transport's own on the admin queue.
    fn admin_exec(
        &self,
        sqe: SubmissionEntry,
        out: &[u8],
        want: usize,
    ) -> Result<(CompletionEntry, Vec<u8>), String> {
        let mut shim = lock(&self.queues[0]);
        self.exec_on(&mut shim, 0, sqe, out, want)
    }

    fn property_get(&self, off: u32, size: PropertySize) -> Option<u64> {
        if self.gone.load(Ordering::Acquire) {
            return None;
        }
        match self.admin_exec(fabrics::property_get(off, size), &[], 0) {
            Ok((cqe, _)) if cqe.status.is_success() => {
                Some(u64::from(cqe.dw0) | (u64::from(cqe.dw1) << 32))
            }
            Ok((cqe, _)) => {
                tracing::warn!(target = %self.display, off, status = %cqe.status.without_phase(), "Property Get failed");
                None
            }
            Err(e) => {
                tracing::debug!(target = %self.display, off, error = %e, "Property Get failed");
                None
            }
        }
    }

    fn property_set(&self, off: u32, size: PropertySize, value: u64) -> bool {
        match self.admin_exec(fabrics::property_set(off, size, value), &[], 0) {
            Ok((cqe, _)) if cqe.status.is_success() => true,
            Ok((cqe, _)) => {
                self.record_failure(format!(
                    "Property Set of offset {off:#x} to {value:#x} failed: {}",
                    cqe.status.without_phase()
                ));
                false
            }
            Err(e) => {
                tracing::debug!(target = %self.display, off, error = %e, "Property Set failed");
                false
            }
        }
    }

    fn admin_connected(&self) -> bool {
        lock(&self.queues[0]).conn.is_some()
    }

    fn cap(&self) -> u64 {
        if let Some(c) = lock(&self.regs).cap {
            return c;
        }
        match self.property_get(offset::CAP as u32, PropertySize::Eight) {
            // Doorbells are the transport's: their stride is 4 bytes.
            Some(c) => {
                let c = c & !(0xf << 32);
                lock(&self.regs).cap = Some(c);
                c
            }
            None => u64::MAX,
        }
    }

    fn csts(&self) -> u32 {
        if self.gone.load(Ordering::Acquire) {
            return u32::MAX;
        }
        let cc = Cc::from_bits(lock(&self.regs).cc);
        let shutting_down = cc.shn() != ShutdownNotification::None;
        // What the host knows without asking: RDY follows CC.EN, CFS while a failure
        // awaits a reset.
        let local = Csts::new().with_rdy(cc.en()).with_cfs(cc.en());
        if self.fatal.load(Ordering::Acquire) || !self.admin_connected() {
            // A shutdown of a controller that is not there is complete at once.
            let shst = if shutting_down {
                ShutdownStatus::Complete
            } else {
                ShutdownStatus::Normal
            };
            return local.with_shst(shst).into_bits();
        }
        if cc.en() && !shutting_down && self.ready_seen.load(Ordering::Acquire) {
            return Csts::new().with_rdy(true).into_bits();
        }
        match self.property_get(offset::CSTS as u32, PropertySize::Four) {
            Some(v) => {
                let csts = Csts::from_bits(v as u32);
                if cc.en() && csts.rdy() && !csts.cfs() {
                    self.ready_seen.store(true, Ordering::Release);
                }
                csts.into_bits()
            }
            None if self.gone.load(Ordering::Acquire) => u32::MAX,
            None => local.into_bits(),
        }
    }

    fn write_cc(&self, value: u32) {
        let old = {
            let mut regs = lock(&self.regs);
            std::mem::replace(&mut regs.cc, value)
        };
        let (was, now) = (Cc::from_bits(old).en(), Cc::from_bits(value).en());
        self.ready_seen.store(false, Ordering::Release);
        if was && !now {
            self.disable(value);
        } else if !was && now {
            self.enable(value);
        } else if self.admin_connected() {
            self.property_set(offset::CC as u32, PropertySize::Four, u64::from(value));
        }
    }

    fn disable(&self, cc: u32) {
        for q in self.queues.iter().skip(1) {
            let mut shim = lock(q);
            shim.disconnect();
            shim.core.sq = None;
            shim.core.cq = None;
        }
        if self.admin_connected() && !self.fatal.load(Ordering::Acquire) {
            self.property_set(offset::CC as u32, PropertySize::Four, u64::from(cc));
        } else {
            lock(&self.queues[0]).disconnect();
        }
        self.fatal.store(false, Ordering::Release);
    }

    fn enable(&self, cc: u32) {
        if !self.admin_connected() {
            if let Err(e) = self.connect_admin() {
                let before = lock(&self.failure).take();
                self.record_failure(match before {
                    Some(b) => format!("{b}; reconnecting failed: {e}"),
                    None => format!("reconnecting failed: {e}"),
                });
                self.gone.store(true, Ordering::Release);
                return;
            }
        }
        let (aqa, asq, acq) = {
            let r = lock(&self.regs);
            (r.aqa, r.asq, r.acq)
        };
        let sq_entries = (aqa & 0xfff) as u16 + 1;
        let cq_entries = ((aqa >> 16) & 0xfff) as u16 + 1;
        lock(&self.queues[0]).set_rings(
            Some(Ring {
                iova: asq,
                entries: sq_entries,
            }),
            Some(Ring {
                iova: acq,
                entries: cq_entries,
            }),
        );
        self.property_set(offset::CC as u32, PropertySize::Four, u64::from(cc));
    }

    fn sq_doorbell(&self, qid: u16, tail: u16) {
        let Some(q) = self.queues.get(usize::from(qid)) else {
            tracing::warn!(qid, "doorbell of a queue beyond the transport's limit");
            return;
        };
        let mut shim = lock(q);
        match shim.core.sq.as_mut() {
            Some(sq) if tail < sq.ring.entries => sq.tail = tail,
            _ => {
                tracing::warn!(
                    qid,
                    tail,
                    "SQ tail doorbell for no queue or beyond its size"
                );
                return;
            }
        }
        if let Err(e) = self.send_queued(&mut shim, qid) {
            self.conn_failed(&mut shim, qid, &e);
        }
    }

    /// Sends the submission entries the driver queued on `qid`.
    fn send_queued(&self, shim: &mut QueueShim, qid: u16) -> Result<(), ConnError> {
        while let Some(sqe) = shim.next_entry() {
            if qid == 0 && self.intercept(shim, &sqe) {
                continue;
            }
            shim.send_command(&sqe)?;
        }
        shim.flush()
    }

    /// Handles the admin commands that are about queues, which the fabric replaces by
    /// connections; returns whether `sqe` was one.
    fn intercept(&self, admin: &mut QueueShim, sqe: &SubmissionEntry) -> bool {
        let cid = sqe.cid();
        let status = match sqe.opcode() {
            // Create I/O Completion Queue.
            0x05 => {
                let qid = sqe.cdw10 as u16;
                match (
                    self.queues.get(usize::from(qid)).filter(|_| qid != 0),
                    queue_entries(sqe.cdw10),
                ) {
                    (_, None) => invalid_queue_size(),
                    (Some(q), Some(entries)) => {
                        lock(q).set_rings(
                            None,
                            Some(Ring {
                                iova: sqe.prp1,
                                entries,
                            }),
                        );
                        Status::SUCCESS
                    }
                    (None, _) => {
                        Status::from_parts(StatusCodeType::CommandSpecific, 0x01).with_dnr(true)
                    }
                }
            }
            // Create I/O Submission Queue: a new connection.
            0x01 => {
                let qid = sqe.cdw10 as u16;
                match queue_entries(sqe.cdw10) {
                    Some(entries) => self.create_io_queue(admin, qid, entries, sqe.prp1),
                    None => invalid_queue_size(),
                }
            }
            // Delete I/O Submission Queue.
            0x00 => {
                let qid = sqe.cdw10 as u16;
                if let Some(q) = self.queues.get(usize::from(qid)).filter(|_| qid != 0) {
                    let mut shim = lock(q);
                    if shim.conn.is_some() {
                        // Briefly: the connection is closed either way.
                        let disconnect = fabrics::disconnect();
                        if let Err(e) = self.exec_within(
                            &mut shim,
                            qid,
                            disconnect,
                            &[],
                            0,
                            DISCONNECT_WAIT,
                            false,
                        ) {
                            tracing::debug!(qid, error = %e, "Disconnect not answered; closing the connection");
                        }
                    }
                    shim.disconnect();
                    shim.core.sq = None;
                }
                Status::SUCCESS
            }
            // Delete I/O Completion Queue.
            0x04 => {
                let qid = sqe.cdw10 as u16;
                if let Some(q) = self.queues.get(usize::from(qid)).filter(|_| qid != 0) {
                    lock(q).core.cq = None;
                }
                Status::SUCCESS
            }
            // Doorbell Buffer Config: there are no doorbells on a fabric.
            0x7c => Status::generic(GenericStatus::InvalidCommandOpcode).with_dnr(true),
            _ => return false,
        };
        admin.core.post_local(cid, status, 0);
        true
    }

    fn create_io_queue(
        &self,
        admin: &mut QueueShim,
        qid: u16,
        entries: u16,
        sq_iova: u64,
    ) -> Status {
        let invalid_qid = Status::from_parts(StatusCodeType::CommandSpecific, 0x01).with_dnr(true);
        let Some(q) = self.queues.get(usize::from(qid)).filter(|_| qid != 0) else {
            return invalid_qid;
        };
        let in_capsule = match self.io_in_capsule(admin) {
            Ok(n) => n,
            Err(e) => {
                self.record_failure(format!("Identify Controller for IOCCSZ: {e}"));
                return Status::generic(GenericStatus::InternalError);
            }
        };
        let cntlid = lock(&self.regs).cntlid;
        let mut shim = lock(q);
        if shim.core.cq.is_none() {
            return invalid_qid;
        }
        match self.connect_queue(&mut shim, qid, entries, Duration::ZERO, cntlid) {
            Ok(_) => {
                shim.core.wire_limit = entries.saturating_sub(1).max(1);
                shim.core.in_capsule = in_capsule;
                shim.set_rings(
                    Some(Ring {
                        iova: sq_iova,
                        entries,
                    }),
                    None,
                );
                Status::SUCCESS
            }
            Err(e) => {
                self.record_failure(e.to_string());
                match e {
                    Error::ConnectRejected { status, .. } => status,
                    _ => Status::generic(GenericStatus::InternalError),
                }
            }
        }
    }

    /// In-capsule data bytes of I/O queues, from Identify Controller (IOCCSZ),
    /// asked once per association.
    fn io_in_capsule(&self, admin: &mut QueueShim) -> Result<usize, String> {
        if let Some(n) = lock(&self.regs).io_in_capsule {
            return Ok(n);
        }
        let sqe = crate::spec::admin::Identify {
            cns: crate::spec::identify::Cns::CONTROLLER,
            nsid: 0,
            cntid: 0,
            csi: 0,
        }
        .to_sqe();
        let (cqe, page) = self.exec_on(admin, 0, sqe, &[], 4096)?;
        if !cqe.status.is_success() {
            return Err(format!("status {}", cqe.status.without_phase()));
        }
        let ioccsz = u32::from_le_bytes(page[1792..1796].try_into().expect("4 bytes"));
        let n = (ioccsz as usize * 16).saturating_sub(64);
        lock(&self.regs).io_in_capsule = Some(n);
        Ok(n)
    }
}

/// The entries of a Create I/O queue command (QSIZE, 0's based), when 2 to 65535.
fn queue_entries(cdw10: u32) -> Option<u16> {
    u16::try_from((cdw10 >> 16) + 1).ok().filter(|&n| n >= 2)
}

/// Invalid Queue Size (a command specific status of Create I/O queue commands).
fn invalid_queue_size() -> Status {
    Status::from_parts(StatusCodeType::CommandSpecific, 0x02).with_dnr(true)
}

/// Explains a refused Connect as nvme-cli and Linux do.
fn connect_status_reason(status: Status, dw0: u32, name: &TcpName, id: &HostIdentity) -> String {
    if status.sct() != StatusCodeType::CommandSpecific {
        return status.to_string();
    }
    match FabricsStatus(status.sc()) {
        FabricsStatus::CONNECT_INVALID_PARAMETERS => {
            let p = InvalidParameter::from_dw0(dw0);
            match p.field() {
                "SUBNQN" => format!("the target has no subsystem '{}'", name.subsystem()),
                "HOSTNQN" => format!("the target does not accept host NQN '{}'", id.nqn),
                f => format!("invalid parameter {f}"),
            }
        }
        FabricsStatus::CONNECT_INVALID_HOST => format!(
            "host '{}' is not allowed to use subsystem '{}' (add it to the subsystem's allowed hosts)",
            id.nqn,
            name.subsystem()
        ),
        FabricsStatus::CONTROLLER_BUSY => "the controller is busy".into(),
        FabricsStatus::INCOMPATIBLE_FORMAT => "incompatible Connect record format".into(),
        FabricsStatus::CONNECT_RESTART_DISCOVERY => "the subsystem moved: discover it again".into(),
        FabricsStatus::AUTH_REQUIRED => "the subsystem requires authentication, which this host does not do".into(),
        _ => status.to_string(),
    }
}

fn keep_alive_loop(inner: &Inner, stop: &(Mutex<bool>, Condvar)) {
    let kato = inner.name.kato;
    let period = kato / 2;
    let tick = (kato / 8).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut last_sent = Instant::now();
    loop {
        {
            let (m, cv) = stop;
            let guard = lock(m);
            if *guard {
                return;
            }
            let (guard, _) = cv
                .wait_timeout(guard, tick)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *guard {
                return;
            }
        }
        let enabled = Cc::from_bits(lock(&inner.regs).cc).en();
        let mut shim = lock(&inner.queues[0]);
        if shim.conn.is_none() || !enabled {
            *lock(&inner.keep_alive) = None;
            continue;
        }
        if let Err(e) = shim.pump() {
            inner.conn_failed(&mut shim, 0, &e);
            continue;
        }
        if let Err(e) = inner.check_keep_alive(&mut shim) {
            inner.conn_failed(&mut shim, 0, &e);
            continue;
        }
        let mut ka = lock(&inner.keep_alive);
        if ka.is_none() && last_sent.elapsed() >= period {
            if let Some(cid) = shim.send_internal(fabrics::keep_alive(), &[], 0) {
                *ka = Some((cid, Instant::now()));
                last_sent = Instant::now();
            }
            drop(ka);
            if let Err(e) = shim.flush() {
                inner.conn_failed(&mut shim, 0, &e);
            }
        }
    }
}

impl Transport for TcpTransport {
    fn read32(&self, off: usize) -> u32 {
        let inner = &self.inner;
        match off {
            offset::CAP => inner.cap() as u32,
            o if o == offset::CAP + 4 => (inner.cap() >> 32) as u32,
            offset::VS => {
                if let Some(v) = lock(&inner.regs).vs {
                    return v;
                }
                match inner.property_get(offset::VS as u32, PropertySize::Four) {
                    Some(v) => {
                        lock(&inner.regs).vs = Some(v as u32);
                        v as u32
                    }
                    None => u32::MAX,
                }
            }
            offset::CC => lock(&inner.regs).cc,
            offset::CSTS => inner.csts(),
            offset::AQA => lock(&inner.regs).aqa,
            offset::ASQ => lock(&inner.regs).asq as u32,
            o if o == offset::ASQ + 4 => (lock(&inner.regs).asq >> 32) as u32,
            offset::ACQ => lock(&inner.regs).acq as u32,
            o if o == offset::ACQ + 4 => (lock(&inner.regs).acq >> 32) as u32,
            _ => 0,
        }
    }

    fn read64(&self, off: usize) -> u64 {
        if off == offset::CAP {
            return self.inner.cap();
        }
        u64::from(self.read32(off)) | (u64::from(self.read32(off + 4)) << 32)
    }

    fn write32(&self, off: usize, value: u32) {
        let inner = &self.inner;
        if off >= 0x1000 {
            let index = (off - 0x1000) / 4;
            let Ok(qid) = u16::try_from(index / 2) else {
                return;
            };
            if index % 2 == 0 {
                inner.sq_doorbell(qid, value as u16);
            } else if let Some(q) = inner.queues.get(usize::from(qid)) {
                let mut shim = lock(q);
                if let Some(cq) = shim.core.cq.as_mut() {
                    if value < u32::from(cq.ring.entries) {
                        cq.head = value as u16;
                    }
                }
                shim.core.drain_overflow();
            }
            return;
        }
        let mut regs = lock(&inner.regs);
        match off {
            offset::CC => {
                drop(regs);
                inner.write_cc(value);
            }
            offset::AQA => regs.aqa = value,
            offset::ASQ => regs.asq = (regs.asq & !0xffff_ffff) | u64::from(value),
            o if o == offset::ASQ + 4 => {
                regs.asq = (regs.asq & 0xffff_ffff) | (u64::from(value) << 32)
            }
            offset::ACQ => regs.acq = (regs.acq & !0xffff_ffff) | u64::from(value),
            o if o == offset::ACQ + 4 => {
                regs.acq = (regs.acq & 0xffff_ffff) | (u64::from(value) << 32)
            }
            _ => {}
        }
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        Arc::new(TableMapper(self.inner.table.clone()))
    }

    /// Plain memory: small pages, not locked; the transport copies data.
    fn allocator_options(&self) -> hugepages::AllocatorOptions {
        hugepages::AllocatorOptions {
            region: hugepages::RegionOptions {
                page_size: hugepages::PageSize::SIZE_4K,
                pinned: false,
                ..hugepages::RegionOptions::default()
            },
            ..hugepages::AllocatorOptions::default()
        }
    }

    fn max_interrupts(&self) -> u16 {
        0
    }

    fn enable_interrupts(&self, _count: u16) -> Result<Vec<Arc<EventFd>>, Error> {
        Err(Error::Unsupported {
            device: self.inner.display.clone(),
            what: "interrupts (NVMe/TCP queue pairs poll their connection)".into(),
        })
    }

    fn disable_interrupts(&self) -> Result<(), Error> {
        Ok(())
    }

    /// A new association: every connection closed, the admin queue connected again.
    fn function_reset(&self) -> Result<bool, Error> {
        for q in self.inner.queues.iter().rev() {
            lock(q).disconnect();
        }
        lock(&self.inner.regs).cc = 0;
        self.inner.connect_admin()?;
        Ok(true)
    }

    fn name(&self) -> String {
        self.inner.display.clone()
    }

    #[inline]
    fn poll_queue(&self, qid: u16) {
        let Some(q) = self.inner.queues.get(usize::from(qid)) else {
            return;
        };
        let mut shim = lock(q);
        if shim.conn.is_none() {
            return;
        }
        if let Err(e) = shim.pump() {
            self.inner.conn_failed(&mut shim, qid, &e);
        }
    }

    fn sgl_only(&self) -> bool {
        true
    }

    fn failure(&self) -> Option<String> {
        lock(&self.inner.failure).clone()
    }
}
