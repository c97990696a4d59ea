//! One connection (one queue): the PDU loop, the Fabrics commands, data transfer in
//! capsules, R2T/H2CData and C2HData, and the commands run on the emulated
//! controller or answered by the discovery controller.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hugepages::sync::lock;
use hugepages::DmaBuffer;
use nvme_spec::command::Psdt;
use nvme_spec::fabrics::{
    fabrics_type, FabricsStatus, FabricsType, CNTLID_DYNAMIC, CONNECT_DATA_SIZE,
    DISCOVERY_LOG_PAGE, DISCOVERY_NQN, KEEP_ALIVE_OPCODE,
};
use nvme_spec::identify::{IdentifyController, Sgls};
use nvme_spec::registers::offset;
use nvme_spec::sgl::{SglSubType, SglType};
use nvme_spec::status::GenericStatus as G;
use nvme_spec::tcp::{
    flags, CommonHeader, FatalErrorStatus, IcReq, IcResp, PduType, TransferHeader,
    CAPSULE_CMD_HLEN, DIGEST_SIZE, IC_PDU_SIZE, SHORT_HLEN,
};
use nvme_spec::{CompletionEntry, Status, StatusCodeType, SubmissionEntry};

use super::assoc::{Assoc, PAGE};
use super::faults::ResponseFault;
use super::host::{data_buffer, HostQueue};
use super::wire::{self, Fatal, Filled, Framing, Pdu, Rx};
use super::{discovery, Shared, ADMIN_IN_CAPSULE_DATA};

/// Keep Alive Support reported in Identify Controller: 100 ms granularity.
pub(crate) const KAS: u16 = 1;
/// How often a connection looks at its timers while no PDU arrives.
const TICK: Duration = Duration::from_millis(20);
/// Largest transfer when the emulated controller has no MDTS.
const UNLIMITED_TRANSFER: usize = 4 << 20;
/// Entries of an emulated I/O queue: commands run one at a time.
const IO_ENTRIES: u32 = 32;
/// Bytes of termination request error data the target accepts from a host.
const TERM_REQ_MAX: usize = SHORT_HLEN + 152;

/// SGLS a fabrics controller reports: SGLs, the Offset sub type for in-capsule
/// data and the Transport SGL Data Block.
pub(crate) fn fabrics_sgls() -> Sgls {
    Sgls::new()
        .with_support(1)
        .with_address_as_offset(true)
        .with_transport_data_block(true)
}

/// The NVMe over Fabrics fields of Identify Controller: IOCCSZ and IORCSZ (16-byte
/// units), ICDOFF 0, the dynamic controller model, one SGL descriptor.
pub(crate) fn set_fabrics_fields(id: &mut IdentifyController, in_capsule: u32) {
    let ioccsz = (64 + in_capsule) / 16;
    id.fabrics[0..4].copy_from_slice(&ioccsz.to_le_bytes());
    id.fabrics[4..8].copy_from_slice(&1u32.to_le_bytes());
    id.fabrics[8..10].fill(0);
    id.fabrics[10] = 0;
    id.fabrics[11] = 1;
}

/// Why a connection ends.
enum End {
    /// Just close it.
    Close,
    /// Send a C2HTermReq first.
    Fatal(Fatal),
}

impl From<Fatal> for End {
    fn from(f: Fatal) -> Self {
        End::Fatal(f)
    }
}

/// A command on the emulated controller waiting for its completion.
struct Inflight {
    host_cid: u16,
    opcode: u8,
    cdw10: u32,
    buf: Option<DmaBuffer>,
    /// Bytes the host reads back (controller-to-host commands).
    c2h_len: usize,
}

/// A write whose data comes by H2CData after an R2T.
struct PendingWrite {
    sqe: SubmissionEntry,
    len: usize,
    data: Vec<u8>,
    digest_error: bool,
}

/// Where a command's data is.
enum Transfer {
    None,
    /// In the capsule, at this range of its data.
    InCapsule(std::ops::Range<usize>),
    /// Moved by R2T/H2CData or C2HData: this many bytes.
    Transport(usize),
}

struct Conn<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
    stream: TcpStream,
    rx: Rx,
    framing: Framing,
    ic_done: bool,
    hung: bool,
    assoc: Option<Arc<Assoc>>,
    qid: Option<u16>,
    /// The emulated controller's I/O queue behind this connection.
    io: Option<HostQueue>,
    sq_entries: u32,
    sqhd: u32,
    sqflow_disabled: bool,
    next_cid: u16,
    inflight: HashMap<u16, Inflight>,
    writes: HashMap<u16, PendingWrite>,
    next_ttag: u16,
}

/// Serves one connection until it closes.
pub(crate) fn run(shared: &Arc<Shared>, stream: TcpStream, id: u64) {
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        shared,
        id,
        stream,
        rx: Rx::default(),
        framing: Framing::default(),
        ic_done: false,
        hung: false,
        assoc: None,
        qid: None,
        io: None,
        sq_entries: 0,
        sqhd: 0,
        sqflow_disabled: false,
        next_cid: 0,
        inflight: HashMap::new(),
        writes: HashMap::new(),
        next_ttag: 0,
    };
    if let Err(End::Fatal(f)) = c.serve() {
        if !c.hung {
            let _ = c.stream.write_all(&wire::term_req(f));
        }
    }
    let _ = c.stream.shutdown(Shutdown::Both);
    c.finish();
}

fn generic(g: G) -> Status {
    Status::generic(g).with_dnr(true)
}

fn fabrics_status(s: FabricsStatus) -> Status {
    Status::from_parts(StatusCodeType::CommandSpecific, s.0).with_dnr(true)
}

/// Connect Invalid Parameters pointing at byte `at` of the command or its data.
fn invalid_param(in_data: bool, at: u16) -> (Status, u32) {
    (
        fabrics_status(FabricsStatus::CONNECT_INVALID_PARAMETERS),
        u32::from(at) | (u32::from(in_data) << 16),
    )
}

/// The NUL-terminated text of a Connect data field.
fn nqn_field(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Conn<'_> {
    fn serve(&mut self) -> Result<(), End> {
        loop {
            if self
                .shared
                .stopping
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Err(End::Close);
            }
            if !self.hung
                && self
                    .shared
                    .faults
                    .hung
                    .load(std::sync::atomic::Ordering::Acquire)
            {
                self.hung = true;
                self.shared
                    .faults
                    .hung_count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if self.hung {
                match self.rx.fill(&mut self.stream) {
                    Filled::Closed => return Err(End::Close),
                    _ => self.rx.discard(),
                }
                continue;
            }
            self.tick()?;
            match self.rx.fill(&mut self.stream) {
                Filled::Closed => return Err(End::Close),
                Filled::Idle => continue,
                Filled::Data => {}
            }
            // A hang asked for while this thread waited for input covers that input.
            if self
                .shared
                .faults
                .hung
                .load(std::sync::atomic::Ordering::Acquire)
            {
                continue;
            }
            loop {
                let digests = self.framing.digests;
                let limits = self.limits();
                let Some(pdu) = self.rx.next(digests, |t| limits.max_plen(t))? else {
                    break;
                };
                self.handle(pdu)?;
                if self.hung {
                    break;
                }
            }
        }
    }

    /// Timers and completions that arrive without a PDU from the host.
    fn tick(&mut self) -> Result<(), End> {
        let Some(assoc) = self.assoc.clone() else {
            return Ok(());
        };
        if !assoc.is_live() {
            return Err(End::Close);
        }
        if assoc.expired(self.shared) {
            tracing::debug!(
                "nvme-tcp target: controller {} missed its keep-alive timeout",
                assoc.cntlid
            );
            assoc.end(self.shared);
            return Err(End::Close);
        }
        if !self.inflight.is_empty() {
            self.reap()?;
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        let in_capsule = match self.qid {
            Some(0) => ADMIN_IN_CAPSULE_DATA,
            Some(_) => self.shared.cfg.in_capsule_data,
            None => ADMIN_IN_CAPSULE_DATA.max(self.shared.cfg.in_capsule_data),
        } as usize;
        Limits {
            capsule: CAPSULE_CMD_HLEN + 2 * DIGEST_SIZE + in_capsule,
            h2c: SHORT_HLEN + 2 * DIGEST_SIZE + self.shared.cfg.maxh2cdata as usize,
        }
    }

    fn handle(&mut self, pdu: Pdu) -> Result<(), End> {
        match pdu.ch.pdu_type {
            PduType::IC_REQ if !self.ic_done => self.icreq(&pdu),
            _ if !self.ic_done => Err(Fatal::sequence().into()),
            PduType::IC_REQ => Err(Fatal::sequence().into()),
            PduType::H2C_TERM_REQ => Err(End::Close),
            PduType::CAPSULE_CMD => self.capsule(&pdu),
            PduType::H2C_DATA => self.h2c_data(&pdu),
            _ => Err(Fatal::header_field(0).into()),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream.write_all(bytes).map_err(|_| End::Close)
    }

    fn icreq(&mut self, pdu: &Pdu) -> Result<(), End> {
        let b: &[u8; IC_PDU_SIZE] = pdu
            .header()
            .try_into()
            .map_err(|_| Fatal::header_field(2))?;
        let req = IcReq::parse(b).map_err(|_| Fatal::header_field(0))?;
        if req.pfv != 0 {
            return Err(Fatal::header_field(8).into());
        }
        if req.hpda > 31 {
            return Err(Fatal::header_field(10).into());
        }
        let resp = IcResp {
            pfv: 0,
            cpda: 0,
            digests: req.digests,
            maxh2cdata: self.shared.cfg.maxh2cdata,
        };
        self.send(&resp.to_bytes())?;
        self.framing = Framing {
            digests: req.digests,
            hpda: req.hpda,
        };
        self.ic_done = true;
        Ok(())
    }

    fn capsule(&mut self, pdu: &Pdu) -> Result<(), End> {
        let sqe = SubmissionEntry::from_bytes(
            pdu.header()[8..CAPSULE_CMD_HLEN]
                .try_into()
                .expect("64-byte SQE"),
        );
        if let Some(a) = &self.assoc {
            a.touch(self.shared);
        }
        if let Some(qid) = self.qid {
            if self.shared.faults.drop_now(qid) {
                tracing::debug!("nvme-tcp target: fault injection drops queue {qid}");
                return Err(End::Close);
            }
        }
        if self.sq_entries != 0 {
            self.sqhd = (self.sqhd + 1) % self.sq_entries;
        }
        let cid = sqe.cid();
        if pdu.data_digest_error {
            return self.answer(cid, generic(G::TransientTransportError), 0, 0, None);
        }
        let fabrics = fabrics_type(&sqe).is_some();
        let direction = if fabrics {
            if fabrics_type(&sqe) == Some(FabricsType::CONNECT) {
                1
            } else {
                0
            }
        } else {
            sqe.opcode() & 3
        };
        let transfer = match self.transfer(&sqe, pdu.data().len(), direction) {
            Ok(t) => t,
            Err(status) => return self.answer(cid, status, 0, 0, None),
        };
        match transfer {
            Transfer::None => self.dispatch(sqe, Vec::new(), 0),
            Transfer::InCapsule(r) => self.dispatch(sqe, pdu.data()[r].to_vec(), 0),
            Transfer::Transport(len) if direction == 2 => self.dispatch(sqe, Vec::new(), len),
            Transfer::Transport(len) => self.request_data(sqe, len),
        }
    }

    /// Decodes SGL Entry 1 of a command moving data in `direction` (opcode bits 1:0).
    fn transfer(
        &self,
        sqe: &SubmissionEntry,
        in_capsule: usize,
        direction: u8,
    ) -> Result<Transfer, Status> {
        if sqe.cdw0.psdt() != Psdt::SglMptrContiguous {
            return Err(generic(G::InvalidFieldInCommand));
        }
        let d = sqe.sgl1();
        let len = d.length as usize;
        if len == 0 {
            return Ok(Transfer::None);
        }
        if direction != 1 && direction != 2 {
            return Err(generic(G::InvalidFieldInCommand));
        }
        let limit = self
            .shared
            .emu
            .config()
            .max_transfer_bytes()
            .map_or(UNLIMITED_TRANSFER, |m| m as usize);
        if len > limit.max(CONNECT_DATA_SIZE) {
            return Err(generic(G::InvalidFieldInCommand));
        }
        let id = d.identifier;
        match (id.kind(), id.sub_type()) {
            (SglType::DATA_BLOCK, SglSubType::OFFSET) => {
                if direction != 1 {
                    return Err(generic(G::InvalidFieldInCommand));
                }
                let start = usize::try_from(d.address).unwrap_or(usize::MAX);
                if start > in_capsule {
                    return Err(generic(G::SglOffsetInvalid));
                }
                if start + len > in_capsule {
                    return Err(generic(G::DataSglLengthInvalid));
                }
                Ok(Transfer::InCapsule(start..start + len))
            }
            (SglType::TRANSPORT_DATA_BLOCK, SglSubType::TRANSPORT_SPECIFIC) => {
                Ok(Transfer::Transport(len))
            }
            _ => Err(generic(G::SglDescriptorTypeInvalid)),
        }
    }

    /// Asks for a write's data with one R2T for all of it.
    fn request_data(&mut self, sqe: SubmissionEntry, len: usize) -> Result<(), End> {
        if self.writes.len() >= 1024 {
            return self.answer(sqe.cid(), generic(G::InternalError), 0, 0, None);
        }
        let ttag = self.next_ttag;
        self.next_ttag = self.next_ttag.wrapping_add(1);
        self.writes.insert(
            ttag,
            PendingWrite {
                sqe,
                len,
                data: Vec::with_capacity(len),
                digest_error: false,
            },
        );
        let psh = transfer_psh(TransferHeader {
            cccid: sqe.cid(),
            ttag,
            offset: 0,
            length: len as u32,
        });
        let bytes = self.frame(PduType::R2T, 0, &psh, &[]);
        self.send(&bytes)
    }

    fn h2c_data(&mut self, pdu: &Pdu) -> Result<(), End> {
        let t = TransferHeader::parse(pdu.header()).ok_or(Fatal::header_field(2))?;
        let maxh2c = self.shared.cfg.maxh2cdata as usize;
        let w = self
            .writes
            .get_mut(&t.ttag)
            .ok_or(Fatal::header_field(10))?;
        if t.cccid != w.sqe.cid() {
            return Err(Fatal::header_field(8).into());
        }
        let len = t.length as usize;
        if len != pdu.data().len() || len == 0 || len > maxh2c {
            return Err(Fatal::header_field(16).into());
        }
        if t.offset as usize != w.data.len() {
            return Err(Fatal::header_field(12).into());
        }
        if w.data.len() + len > w.len {
            return Err(Fatal {
                fes: FatalErrorStatus::DATA_OUT_OF_RANGE,
                fei: 0,
            }
            .into());
        }
        w.data.extend_from_slice(pdu.data());
        w.digest_error |= pdu.data_digest_error;
        let complete = w.data.len() == w.len;
        if complete != (pdu.ch.flags & flags::LAST_PDU != 0) {
            return Err(Fatal::header_field(1).into());
        }
        if !complete {
            return Ok(());
        }
        let w = self.writes.remove(&t.ttag).expect("present");
        if w.digest_error {
            return self.answer(w.sqe.cid(), generic(G::TransientTransportError), 0, 0, None);
        }
        self.dispatch(w.sqe, w.data, 0)
    }

    fn dispatch(&mut self, sqe: SubmissionEntry, data: Vec<u8>, c2h_len: usize) -> Result<(), End> {
        let cid = sqe.cid();
        if let Some(t) = fabrics_type(&sqe) {
            return self.fabrics(t, sqe, &data);
        }
        let Some(assoc) = self.assoc.clone() else {
            return self.answer(cid, generic(G::CommandSequenceError), 0, 0, None);
        };
        if self.qid == Some(0) && sqe.opcode() == KEEP_ALIVE_OPCODE {
            return self.answer(cid, Status::SUCCESS, 0, 0, None);
        }
        if assoc.discovery {
            return self.discovery_command(&assoc, sqe, c2h_len);
        }
        self.emu_command(&assoc, sqe, &data, c2h_len)
    }

    fn fabrics(&mut self, t: FabricsType, sqe: SubmissionEntry, data: &[u8]) -> Result<(), End> {
        let cid = sqe.cid();
        if t == FabricsType::CONNECT {
            let (status, dw0) = match self.connect(&sqe, data) {
                Ok(dw0) => (Status::SUCCESS, dw0),
                Err(e) => e,
            };
            return self.answer(cid, status, dw0, 0, None);
        }
        let Some(assoc) = self.assoc.clone() else {
            return self.answer(cid, generic(G::CommandSequenceError), 0, 0, None);
        };
        let eight = sqe.cdw10 & 7 == 1;
        match t {
            FabricsType::PROPERTY_GET | FabricsType::PROPERTY_SET if self.qid != Some(0) => {
                self.answer(cid, generic(G::InvalidCommandOpcode), 0, 0, None)
            }
            FabricsType::PROPERTY_GET => match assoc.property_get(self.shared, sqe.cdw11, eight) {
                Ok(v) => self.answer(cid, Status::SUCCESS, v as u32, (v >> 32) as u32, None),
                Err(s) => self.answer(cid, s, 0, 0, None),
            },
            FabricsType::PROPERTY_SET => {
                let value = u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32);
                let status = match assoc.property_set(self.shared, sqe.cdw11, eight, value) {
                    Ok(()) => Status::SUCCESS,
                    Err(s) => s,
                };
                self.answer(cid, status, 0, 0, None)
            }
            FabricsType::DISCONNECT => {
                self.answer(cid, Status::SUCCESS, 0, 0, None)?;
                Err(End::Close)
            }
            _ => self.answer(cid, generic(G::InvalidCommandOpcode), 0, 0, None),
        }
    }

    /// Fabrics Connect: the checks and statuses of Linux nvmet
    /// (`nvmet_execute_admin_connect`, `nvmet_execute_io_connect`).
    fn connect(&mut self, sqe: &SubmissionEntry, data: &[u8]) -> Result<u32, (Status, u32)> {
        let shared = self.shared;
        if self.qid.is_some() {
            return Err((generic(G::CommandSequenceError), 0));
        }
        if data.len() < CONNECT_DATA_SIZE {
            return Err((generic(G::DataSglLengthInvalid), 0));
        }
        if sqe.cdw10 & 0xffff != 0 {
            return Err((fabrics_status(FabricsStatus::INCOMPATIBLE_FORMAT), 0));
        }
        let qid = (sqe.cdw10 >> 16) as u16;
        let sqsize = sqe.cdw11 & 0xffff;
        let cattr = (sqe.cdw11 >> 16) & 0xff;
        let kato_ms = sqe.cdw12;
        let cntlid = u16::from_le_bytes([data[16], data[17]]);
        let subnqn = nqn_field(&data[256..512]);
        let hostnqn = nqn_field(&data[512..768]);
        let discovery = shared.cfg.discovery && subnqn == DISCOVERY_NQN;
        if !discovery && subnqn != shared.cfg.subsystem_nqn {
            tracing::debug!("nvme-tcp target: connect for unknown subsystem {subnqn}");
            return Err(invalid_param(true, 256));
        }
        let cfg = &shared.cfg;
        if !discovery && !cfg.allowed_hosts.is_empty() && !cfg.allowed_hosts.contains(&hostnqn) {
            return Err((
                fabrics_status(FabricsStatus::CONNECT_INVALID_HOST),
                512 | (1 << 16),
            ));
        }
        let mqes = if discovery {
            31
        } else {
            u32::from(shared.emu.config().mqes)
        };
        if sqsize == 0 || sqsize > mqes {
            return Err(invalid_param(false, 44));
        }
        if qid == 0 {
            if cntlid != CNTLID_DYNAMIC {
                return Err(invalid_param(true, 16));
            }
            if !discovery {
                let old: Vec<_> = lock(&shared.assocs)
                    .iter()
                    .filter(|a| !a.discovery)
                    .cloned()
                    .collect();
                for a in old {
                    a.end(shared);
                }
            }
            let assoc = Assoc::new(shared, discovery, hostnqn, kato_ms)
                .map_err(|_| (generic(G::InternalError), 0))?;
            lock(&shared.assocs).push(assoc.clone());
            shared.bind_connection(self.id, assoc.cntlid, 0);
            let id = assoc.cntlid;
            self.attach(assoc, 0, sqsize + 1, cattr);
            return Ok(u32::from(id));
        }
        if discovery {
            return Err(invalid_param(false, 42));
        }
        let assoc = lock(&shared.assocs)
            .iter()
            .find(|a| a.cntlid == cntlid && !a.discovery)
            .cloned()
            .filter(|a| a.is_live())
            .ok_or(invalid_param(true, 16))?;
        if assoc.hostnqn != hostnqn {
            return Err(invalid_param(true, 512));
        }
        if qid > shared.emu.config().qpairs {
            return Err(invalid_param(false, 42));
        }
        let live = assoc.live.read().unwrap_or_else(|e| e.into_inner());
        if !*live {
            return Err(invalid_param(true, 16));
        }
        if shared.emu.read32(offset::CSTS) & 1 == 0 {
            return Err((generic(G::CommandSequenceError), 0));
        }
        if !lock(&assoc.io_qids).insert(qid) {
            return Err((fabrics_status(FabricsStatus::CONTROLLER_BUSY), 0));
        }
        let q = match assoc.create_io_queue(shared, qid, IO_ENTRIES) {
            Ok(q) => q,
            Err(status) => {
                lock(&assoc.io_qids).remove(&qid);
                tracing::debug!("nvme-tcp target: creating queue {qid} failed: {status:?}");
                return Err(invalid_param(false, 42));
            }
        };
        drop(live);
        shared.bind_connection(self.id, assoc.cntlid, qid);
        let id = assoc.cntlid;
        self.io = Some(q);
        self.attach(assoc, qid, sqsize + 1, cattr);
        Ok(u32::from(id))
    }

    fn attach(&mut self, assoc: Arc<Assoc>, qid: u16, sq_entries: u32, cattr: u32) {
        self.assoc = Some(assoc);
        self.qid = Some(qid);
        self.sq_entries = sq_entries;
        self.sqhd = 1 % sq_entries;
        // CATTR bit 2: the host disabled SQ flow control.
        self.sqflow_disabled = cattr & 4 != 0;
    }

    fn discovery_command(
        &mut self,
        assoc: &Assoc,
        sqe: SubmissionEntry,
        c2h_len: usize,
    ) -> Result<(), End> {
        let cid = sqe.cid();
        let fid = sqe.cdw10 & 0xff;
        match sqe.opcode() {
            0x06 if sqe.cdw10 & 0xff == 1 => {
                let page = discovery::identify(self.shared, assoc.cntlid);
                self.answer_data(cid, &page, c2h_len)
            }
            0x02 => {
                let lid = (sqe.cdw10 & 0xff) as u8;
                let numd = ((sqe.cdw10 >> 16) | ((sqe.cdw11 & 0xffff) << 16)) as usize + 1;
                let at = u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32);
                let page = discovery::log_page(self.shared);
                if lid != DISCOVERY_LOG_PAGE || at % 4 != 0 || at > page.len() as u64 {
                    return self.answer(cid, generic(G::InvalidFieldInCommand), 0, 0, None);
                }
                if numd * 4 != c2h_len {
                    return self.answer(cid, generic(G::DataSglLengthInvalid), 0, 0, None);
                }
                self.answer_data(cid, &page[at as usize..], c2h_len)
            }
            // Set Features: Asynchronous Event Configuration and Keep Alive Timer.
            0x09 if fid == 0x0b || fid == 0x0f => self.answer(cid, Status::SUCCESS, 0, 0, None),
            0x0a if fid == 0x0b => self.answer(cid, Status::SUCCESS, 0, 0, None),
            0x0a if fid == 0x0f => self.answer(cid, Status::SUCCESS, assoc.kato_ms, 0, None),
            // Asynchronous Event Request: no event ever comes.
            0x0c => Ok(()),
            0x06 | 0x09 | 0x0a => self.answer(cid, generic(G::InvalidFieldInCommand), 0, 0, None),
            _ => self.answer(cid, generic(G::InvalidCommandOpcode), 0, 0, None),
        }
    }

    /// Answers a read-like command with `page`, cut or zero padded to `len` bytes.
    fn answer_data(&mut self, cid: u16, page: &[u8], len: usize) -> Result<(), End> {
        let mut data = vec![0u8; len];
        let n = len.min(page.len());
        data[..n].copy_from_slice(&page[..n]);
        self.answer(cid, Status::SUCCESS, 0, 0, Some(data))
    }

    /// Runs a command on the emulated controller through this queue's rings.
    fn emu_command(
        &mut self,
        assoc: &Assoc,
        mut sqe: SubmissionEntry,
        data: &[u8],
        c2h_len: usize,
    ) -> Result<(), End> {
        let shared = self.shared;
        let host_cid = sqe.cid();
        let qid = self.qid.unwrap_or(0);
        let live = assoc.live.read().unwrap_or_else(|e| e.into_inner());
        if !*live {
            return Err(End::Close);
        }
        let len = data.len().max(c2h_len);
        let buf = if len > 0 {
            let Ok(b) = data_buffer(&shared.alloc, len, PAGE) else {
                drop(live);
                return self.answer(host_cid, generic(G::InternalError), 0, 0, None);
            };
            if !data.is_empty() && b.buf.mem().write(0, data).is_err() {
                drop(live);
                return self.answer(host_cid, generic(G::InternalError), 0, 0, None);
            }
            sqe.set_prp(b.prp1, b.prp2);
            Some(b.buf)
        } else {
            sqe.set_prp(0, 0);
            None
        };
        sqe.mptr = 0;
        if qid == 0 && sqe.opcode() == 0x08 && sqe.cdw10 & 0xffff == 0 {
            // Abort of an admin command: name it by the controller's command id.
            let target = (sqe.cdw10 >> 16) as u16;
            if let Some((&ecid, _)) = self.inflight.iter().find(|(_, f)| f.host_cid == target) {
                sqe.cdw10 = u32::from(ecid) << 16;
            }
        }
        let submitted = if qid == 0 {
            let mut admin = lock(&assoc.admin);
            let cid = admin.cid();
            sqe.set_cid(cid);
            self.track(cid, host_cid, &sqe, buf, c2h_len);
            admin.submit(shared, &sqe)
        } else {
            self.next_cid = self.next_cid.wrapping_add(1);
            let cid = self.next_cid;
            sqe.set_cid(cid);
            self.track(cid, host_cid, &sqe, buf, c2h_len);
            match self.io.as_mut() {
                Some(q) => q.submit(&shared.emu, &sqe),
                None => false,
            }
        };
        drop(live);
        if !submitted {
            self.inflight.remove(&sqe.cid());
            return self.answer(host_cid, generic(G::InternalError), 0, 0, None);
        }
        self.reap()
    }

    fn track(
        &mut self,
        cid: u16,
        host_cid: u16,
        sqe: &SubmissionEntry,
        buf: Option<DmaBuffer>,
        c2h_len: usize,
    ) {
        self.inflight.insert(
            cid,
            Inflight {
                host_cid,
                opcode: sqe.opcode(),
                cdw10: sqe.cdw10,
                buf,
                c2h_len,
            },
        );
    }

    /// Answers every command of this queue the emulated controller has completed.
    fn reap(&mut self) -> Result<(), End> {
        let Some(assoc) = self.assoc.clone() else {
            return Ok(());
        };
        let mut done = Vec::new();
        {
            let live = assoc.live.read().unwrap_or_else(|e| e.into_inner());
            if !*live {
                return Err(End::Close);
            }
            if self.qid == Some(0) {
                let mut admin = lock(&assoc.admin);
                admin.collect(self.shared);
                for &cid in self.inflight.keys() {
                    if let Some(c) = admin.take(cid) {
                        done.push(c);
                    }
                }
            } else if let Some(q) = self.io.as_mut() {
                q.reap(&self.shared.emu, &mut done);
            }
        }
        for c in done {
            if let Some(f) = self.inflight.remove(&c.cid) {
                self.complete(&assoc, f, c)?;
            }
        }
        Ok(())
    }

    fn complete(&mut self, assoc: &Assoc, f: Inflight, c: CompletionEntry) -> Result<(), End> {
        let status = c.status.without_phase();
        if !status.is_success() || f.c2h_len == 0 {
            return self.answer(f.host_cid, status, c.dw0, c.dw1, None);
        }
        let mut data = vec![0u8; f.c2h_len];
        if let Some(b) = &f.buf {
            if b.mem().read(0, &mut data).is_err() {
                return self.answer(f.host_cid, generic(G::InternalError), 0, 0, None);
            }
        }
        if self.qid == Some(0) && f.opcode == 0x06 && f.cdw10 & 0xff == 1 && data.len() >= 4096 {
            self.patch_identify(assoc, &mut data);
        }
        self.answer(f.host_cid, status, c.dw0, c.dw1, Some(data))
    }

    /// Identify Controller of the NVM subsystem's controller over fabrics.
    fn patch_identify(&self, assoc: &Assoc, data: &mut [u8]) {
        let Ok(mut id) = IdentifyController::parse(data) else {
            return;
        };
        let cfg = &self.shared.cfg;
        id.cntlid = assoc.cntlid;
        id.cntrltype = 1;
        id.sgls = fabrics_sgls();
        id.kas = KAS;
        id.maxcmd = (self.shared.emu.config().mqes.saturating_add(1)).min(1024);
        if id.mdts == 0 {
            let min_page = 4096usize << self.shared.emu.config().mpsmin;
            id.mdts = (UNLIMITED_TRANSFER / min_page).ilog2() as u8;
        }
        id.subnqn = [0; 256];
        let nqn = cfg.subsystem_nqn.as_bytes();
        id.subnqn[..nqn.len()].copy_from_slice(nqn);
        set_fabrics_fields(&mut id, cfg.in_capsule_data);
        data[..4096].copy_from_slice(&id.encode());
    }

    /// Frames a PDU on this connection, corrupting its digests when a fault says so.
    fn frame(&self, pdu_type: PduType, pdu_flags: u8, psh: &[u8], data: &[u8]) -> Vec<u8> {
        let faults = &self.shared.faults;
        let header = self.framing.digests.header && faults.corrupt_header(self.qid);
        let data_bad =
            self.framing.digests.data && !data.is_empty() && faults.corrupt_data(self.qid);
        wire::build(
            self.framing,
            pdu_type,
            pdu_flags,
            psh,
            data,
            header,
            data_bad,
        )
    }

    /// Sends a command's answer: its data (C2HData PDUs) and its Response Capsule,
    /// unless the last C2HData says SUCCESS, or a fault replaces them.
    fn answer(
        &mut self,
        cid: u16,
        status: Status,
        dw0: u32,
        dw1: u32,
        data: Option<Vec<u8>>,
    ) -> Result<(), End> {
        match self.shared.faults.response(self.qid) {
            Some(ResponseFault::Malformed(kind)) => return self.send(&wire::malformed(kind)),
            Some(ResponseFault::Terminate(fes)) => {
                return Err(End::Fatal(Fatal { fes, fei: 0 }));
            }
            None => {}
        }
        let mut skip_response = false;
        if let Some(data) = data {
            let success =
                self.shared.cfg.c2h_success && self.sqflow_disabled && status.is_success();
            let chunk = self.shared.cfg.maxh2cdata as usize;
            let mut at = 0;
            while at < data.len() {
                let end = (at + chunk).min(data.len());
                let last = end == data.len();
                let mut pdu_flags = 0;
                if last {
                    pdu_flags |= flags::LAST_PDU;
                    if success {
                        pdu_flags |= flags::SUCCESS;
                    }
                }
                let psh = transfer_psh(TransferHeader {
                    cccid: cid,
                    ttag: 0,
                    offset: at as u32,
                    length: (end - at) as u32,
                });
                let bytes = self.frame(PduType::C2H_DATA, pdu_flags, &psh, &data[at..end]);
                self.send(&bytes)?;
                at = end;
            }
            skip_response = success;
        }
        if skip_response {
            return Ok(());
        }
        let cqe = CompletionEntry {
            dw0,
            dw1,
            sq_head: self.sqhd as u16,
            sq_id: self.qid.unwrap_or(0),
            cid,
            status,
        };
        let bytes = self.frame(PduType::CAPSULE_RESP, 0, &cqe.to_bytes(), &[]);
        self.send(&bytes)
    }

    /// The connection closed: free its queue on the emulated controller, or end the
    /// association if it was the admin queue.
    fn finish(&mut self) {
        let Some(assoc) = self.assoc.take() else {
            return;
        };
        match self.qid {
            Some(0) => assoc.end(self.shared),
            Some(qid) => {
                let live = assoc.live.read().unwrap_or_else(|e| e.into_inner());
                if *live && lock(&assoc.io_qids).remove(&qid) {
                    assoc.delete_io_queue(self.shared, qid);
                }
            }
            None => {}
        }
        self.io = None;
        self.inflight.clear();
    }
}

/// Most bytes a PDU of each type may have on this connection.
#[derive(Clone, Copy)]
struct Limits {
    capsule: usize,
    h2c: usize,
}

impl Limits {
    fn max_plen(self, t: PduType) -> usize {
        match t {
            PduType::CAPSULE_CMD => self.capsule,
            PduType::H2C_DATA => self.h2c,
            PduType::H2C_TERM_REQ => TERM_REQ_MAX,
            _ => IC_PDU_SIZE,
        }
    }
}

/// Bytes 8 to 23 of an R2T, H2CData or C2HData header.
fn transfer_psh(t: TransferHeader) -> [u8; SHORT_HLEN - 8] {
    let ch = CommonHeader {
        pdu_type: PduType::C2H_DATA,
        flags: 0,
        hlen: SHORT_HLEN as u8,
        pdo: 0,
        plen: 0,
    };
    t.to_bytes(ch)[8..].try_into().expect("16 bytes")
}
