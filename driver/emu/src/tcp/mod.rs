//! An NVMe/TCP target serving the emulated controller on a TCP socket, built for fault
//! injection on the wire (NVMe/TCP Transport Specification 1.0, NVMe Base 2.0 section
//! 6 for the Fabrics commands).
//!
//! [`TcpTarget::start`] listens (on `127.0.0.1:0` unless told otherwise) and serves
//! one NVM subsystem whose controller is an [`EmuController`] built from
//! [`TcpTargetConfig::emu`] (always in `mode=inline`), and, when
//! [`TcpTargetConfig::discovery`] is set, the discovery subsystem
//! ([`nvme_spec::fabrics::DISCOVERY_NQN`]) whose log page lists the NVM subsystem.
//! Each connection is one queue and has its own thread.
//!
//! Per connection: ICReq and ICResp (digests as the host asks, PFV 0, CPDA 0,
//! MAXH2CDATA from the configuration), then a Fabrics Connect. The admin queue's
//! Connect (QID 0) creates a controller association with a CNTLID and the keep-alive
//! timeout (KATO, in milliseconds; no command within it and the association ends and
//! its connections close, as Linux nvmet does); an I/O queue's Connect names that
//! CNTLID. The target serves one association with the NVM subsystem at a time: a new
//! admin Connect ends the one before it. Statuses follow Linux nvmet: an unknown
//! subsystem NQN is Connect Invalid Parameters (IATTR 1, IPO 256), a host not on
//! [`TcpTargetConfig::allowed_hosts`] Connect Invalid Host.
//!
//! Commands: Property Get and Set of CAP, VS, CC and CSTS (the emulated controller's
//! registers; the target programs the admin queue registers itself), Keep Alive, and
//! every other admin and I/O command passed to the emulated controller (Identify
//! Controller gets the fabrics fields: CNTLID, SGLS, IOCCSZ, IORCSZ, MAXCMD, SUBNQN,
//! CNTRLTYPE 1, KAS). Data: in-capsule (SGL Data Block, Offset sub type) up to
//! [`TcpTargetConfig::in_capsule_data`] on I/O queues and 8 KiB on the admin queue,
//! otherwise a Transport SGL Data Block: one R2T for the whole write, answered by
//! H2CData PDUs of at most MAXH2CDATA bytes each; reads come back as C2HData PDUs of
//! at most MAXH2CDATA bytes, the last one with LAST_PDU (and SUCCESS, in place of the
//! Response Capsule, when [`TcpTargetConfig::c2h_success`] is set and the queue was
//! connected with SQ flow control disabled, as nvmet does).
//!
//! Transport errors in what the host sends (a bad header field, a header digest
//! error, a PDU out of sequence, data beyond the transfer) end the connection with a
//! C2HTermReq; a data digest error fails its command with Transient Transport Error.
//! An H2CTermReq closes the connection.
//!
//! [`TcpTarget::faults`] breaks the wire on purpose: see [`TcpFaults`].

mod assoc;
mod conn;
mod discovery;
mod faults;
mod host;
mod wire;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hugepages::sync::lock;
use hugepages::{AllocatorOptions, DmaAllocator, PageSize, RegionOptions};
use nvme_spec::fabrics::NQN_MAX;

use crate::config::ExecMode;
use crate::{EmuConfig, EmuController, EmuError};

pub use faults::{MalformedPdu, TcpFaultCounts, TcpFaults};

use assoc::Assoc;
use faults::FaultState;

/// The subsystem NQN a target serves unless configured otherwise.
pub const DEFAULT_SUBSYSTEM_NQN: &str = "nqn.2026-12.io.nvme-emu:target";

/// In-capsule data the admin queue always accepts (the transport specification's
/// minimum for it).
pub const ADMIN_IN_CAPSULE_DATA: u32 = 8192;

/// What a [`TcpTarget`] serves and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTargetConfig {
    /// Where to listen; port 0 picks a free port ([`TcpTarget::local_addr`] tells it).
    pub address: SocketAddr,
    /// The NVM subsystem's NQN.
    pub subsystem_nqn: String,
    /// Host NQNs allowed to connect to the NVM subsystem; empty allows any host.
    pub allowed_hosts: Vec<String>,
    /// The emulated controller behind the subsystem (its `mode` is forced to inline).
    pub emu: EmuConfig,
    /// MAXH2CDATA: most data bytes in one H2CData PDU (a multiple of 4, at least 4096);
    /// C2HData PDUs carry at most as many.
    pub maxh2cdata: u32,
    /// In-capsule data bytes an I/O queue's command may carry (IOCCSZ is this plus the
    /// 64-byte command, in 16-byte units); a multiple of 16.
    pub in_capsule_data: u32,
    /// Also serve the discovery subsystem.
    pub discovery: bool,
    /// Set SUCCESS on the last C2HData PDU of a successful read and send no Response
    /// Capsule, on queues connected with SQ flow control disabled.
    pub c2h_success: bool,
}

impl Default for TcpTargetConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            subsystem_nqn: DEFAULT_SUBSYSTEM_NQN.to_string(),
            allowed_hosts: Vec::new(),
            emu: EmuConfig::default(),
            maxh2cdata: 128 << 10,
            in_capsule_data: 8192,
            discovery: true,
            c2h_success: false,
        }
    }
}

impl TcpTargetConfig {
    /// The default configuration serving an emulated controller built from `emu`
    /// (a device string such as `emu:size=64M`).
    pub fn with_emu(emu: &str) -> Result<Self, EmuError> {
        Ok(Self {
            emu: emu.parse()?,
            ..Self::default()
        })
    }

    fn validate(&self) -> Result<(), EmuError> {
        let bad = |reason: String| Err(EmuError::TcpConfig { reason });
        if self.maxh2cdata < 4096 || self.maxh2cdata % 4 != 0 {
            return bad(format!(
                "MAXH2CDATA {} must be a multiple of 4 of at least 4096",
                self.maxh2cdata
            ));
        }
        if self.in_capsule_data % 16 != 0 || self.in_capsule_data > 1 << 20 {
            return bad(format!(
                "in-capsule data size {} must be a multiple of 16 of at most 1 MiB",
                self.in_capsule_data
            ));
        }
        for nqn in std::iter::once(&self.subsystem_nqn).chain(&self.allowed_hosts) {
            if nqn.is_empty() || nqn.len() > NQN_MAX || nqn.contains('\0') {
                return bad(format!(
                    "NQN `{nqn}` must have 1 to {NQN_MAX} bytes and no NUL"
                ));
            }
        }
        Ok(())
    }
}

/// One open connection, as the target tracks it.
pub(crate) struct ConnEntry {
    id: u64,
    /// A handle to the socket, for shutting it down from another thread.
    stream: TcpStream,
    /// The association and queue once connected.
    pub cntlid: Option<u16>,
    pub qid: Option<u16>,
}

/// State shared by the target's threads and handles.
pub(crate) struct Shared {
    pub cfg: TcpTargetConfig,
    pub local: SocketAddr,
    pub emu: EmuController,
    pub alloc: DmaAllocator,
    pub faults: FaultState,
    pub stopping: AtomicBool,
    pub epoch: Instant,
    /// Live associations (the NVM subsystem's, at most one, and discovery ones).
    pub assocs: Mutex<Vec<Arc<Assoc>>>,
    next_cntlid: Mutex<u16>,
    conns: Mutex<Vec<ConnEntry>>,
    next_conn: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Milliseconds since the target started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next controller ID (1 to FFEFh, wrapping).
    pub(crate) fn allocate_cntlid(&self) -> u16 {
        let mut next = lock(&self.next_cntlid);
        let id = *next;
        *next = if id >= 0xffef { 1 } else { id + 1 };
        id
    }

    /// Wakes the accept loop so it sees a stop or refuse request.
    pub(crate) fn wake_acceptor(&self) {
        let mut to = self.local;
        if to.ip().is_unspecified() {
            to.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
    }

    /// Shuts down every connection `which` selects.
    pub(crate) fn close_connections(&self, which: impl Fn(&ConnEntry) -> bool) {
        for c in lock(&self.conns).iter().filter(|c| which(c)) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Records which association and queue connection `id` serves.
    pub(crate) fn bind_connection(&self, id: u64, cntlid: u16, qid: u16) {
        if let Some(c) = lock(&self.conns).iter_mut().find(|c| c.id == id) {
            c.cntlid = Some(cntlid);
            c.qid = Some(qid);
        }
    }

    fn spawn_connection(self: &Arc<Self>, stream: TcpStream) {
        let Ok(handle) = stream.try_clone() else {
            return;
        };
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).push(ConnEntry {
            id,
            stream: handle,
            cntlid: None,
            qid: None,
        });
        let shared = self.clone();
        let spawned = std::thread::Builder::new()
            .name("nvme-tcp-conn".into())
            .spawn(move || {
                conn::run(&shared, stream, id);
                lock(&shared.conns).retain(|c| c.id != id);
            });
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => lock(&self.conns).retain(|c| c.id != id),
        }
    }
}

/// An NVMe/TCP target serving an emulated controller; stopped when dropped.
pub struct TcpTarget {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTarget")
            .field("local_addr", &self.shared.local)
            .field("subsystem_nqn", &self.shared.cfg.subsystem_nqn)
            .finish_non_exhaustive()
    }
}

impl TcpTarget {
    /// Builds the emulated controller, binds the listening socket and starts the
    /// accept thread.
    pub fn start(config: TcpTargetConfig) -> Result<Self, EmuError> {
        config.validate()?;
        let mut emu_cfg = config.emu.clone();
        emu_cfg.mode = ExecMode::Inline;
        let emu = EmuController::new(emu_cfg)?;
        let alloc = DmaAllocator::new(
            emu.dma_mapper(),
            AllocatorOptions {
                region: RegionOptions {
                    page_size: PageSize::SIZE_4K,
                    ..RegionOptions::default()
                },
                ..AllocatorOptions::default()
            },
        )
        .map_err(EmuError::TcpMemory)?;
        let listener = TcpListener::bind(config.address).map_err(|source| EmuError::TcpSocket {
            action: "listen",
            source,
        })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmuError::TcpSocket {
                action: "read the bound address",
                source,
            })?;
        let shared = Arc::new(Shared {
            cfg: config,
            local,
            emu,
            alloc,
            faults: FaultState::default(),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            assocs: Mutex::new(Vec::new()),
            next_cntlid: Mutex::new(1),
            conns: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let accept_shared = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("nvme-tcp-accept".into())
            .spawn(move || accept_loop(&accept_shared, listener))
            .map_err(|source| EmuError::TcpSocket {
                action: "start the accept thread",
                source,
            })?;
        Ok(Self {
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address the target listens on (with the port it was given).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The port the target listens on.
    pub fn port(&self) -> u16 {
        self.shared.local.port()
    }

    /// The NVM subsystem's NQN.
    pub fn subsystem_nqn(&self) -> &str {
        &self.shared.cfg.subsystem_nqn
    }

    /// The emulated controller behind the subsystem (for its own fault injection,
    /// counters and power cuts).
    pub fn controller(&self) -> &EmuController {
        &self.shared.emu
    }

    /// The wire fault injection handle.
    pub fn faults(&self) -> TcpFaults {
        TcpFaults {
            shared: self.shared.clone(),
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Controller IDs of the live associations (the NVM subsystem's and discovery ones).
    pub fn associations(&self) -> Vec<u16> {
        lock(&self.shared.assocs).iter().map(|a| a.cntlid).collect()
    }

    /// Stops listening, closes every connection and joins every thread. Idempotent.
    pub fn stop(&mut self) {
        let s = &self.shared;
        s.stopping.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            s.wake_acceptor();
            let _ = acceptor.join();
        }
        loop {
            s.close_connections(|_| true);
            let threads = std::mem::take(&mut *lock(&s.threads));
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
        let assocs = std::mem::take(&mut *lock(&s.assocs));
        for a in assocs {
            a.end(s);
        }
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) || shared.faults.refused.load(Ordering::Acquire)
        {
            break;
        }
        match stream {
            Ok(s) => shared.spawn_connection(s),
            Err(e) => {
                tracing::debug!("nvme-tcp target: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
