//! The NVMe/TCP target against a raw client: blocking sockets and the specification
//! crate's PDU types, no driver in between.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nvme_emu::tcp::{MalformedPdu, TcpTarget, TcpTargetConfig};
use nvme_spec::command::Psdt;
use nvme_spec::fabrics::{
    self, discovery_entries, ConnectData, DiscoveryHeader, PropertySize, CNTLID_DYNAMIC,
    DISCOVERY_NQN,
};
use nvme_spec::identify::IdentifyController;
use nvme_spec::registers::offset;
use nvme_spec::sgl::SglDescriptor;
use nvme_spec::tcp::{
    digest, flags, CommonHeader, Digests, FatalErrorStatus, IcReq, IcResp, PduType, TermReq,
    TransferHeader, DIGEST_SIZE, IC_PDU_SIZE,
};
use nvme_spec::{CompletionEntry, StatusCodeType, SubmissionEntry};

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
const BOTH: Digests = Digests {
    header: true,
    data: true,
};

fn target(tweak: impl FnOnce(&mut TcpTargetConfig)) -> TcpTarget {
    let mut cfg = TcpTargetConfig::with_emu("emu:size=64M").unwrap();
    cfg.maxh2cdata = 16 << 10;
    tweak(&mut cfg);
    TcpTarget::start(cfg).unwrap()
}

/// A received PDU.
struct Rx {
    ch: CommonHeader,
    header: Vec<u8>,
    data: Vec<u8>,
}

struct Client {
    s: TcpStream,
    digests: Digests,
    maxh2cdata: usize,
    cid: u16,
}

fn rw(opcode: u8, slba: u64, blocks: u32) -> SubmissionEntry {
    let mut e = SubmissionEntry::new(opcode);
    e.nsid = 1;
    e.cdw10 = slba as u32;
    e.cdw11 = (slba >> 32) as u32;
    e.cdw12 = blocks - 1;
    e
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

impl Client {
    fn open(port: u16, digests: Digests) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut c = Self {
            s,
            digests: Digests::default(),
            maxh2cdata: 0,
            cid: 0,
        };
        let req = IcReq {
            pfv: 0,
            hpda: 0,
            digests,
            maxr2t: 0,
        };
        c.s.write_all(&req.to_bytes()).unwrap();
        let mut b = [0u8; IC_PDU_SIZE];
        c.s.read_exact(&mut b).unwrap();
        let resp = IcResp::parse(&b).unwrap();
        assert_eq!(
            resp.digests, digests,
            "the target honours the requested digests"
        );
        assert_eq!((resp.pfv, resp.cpda), (0, 0));
        c.digests = digests;
        c.maxh2cdata = resp.maxh2cdata as usize;
        c
    }

    fn pdu(&self, ty: PduType, mut fl: u8, psh: &[u8], data: &[u8]) -> Vec<u8> {
        let hlen = 8 + psh.len();
        let hd = self.digests.header;
        let dd = self.digests.data && !data.is_empty();
        let hb = hlen + if hd { 4 } else { 0 };
        let (pdo, plen) = if data.is_empty() {
            (0, hb)
        } else {
            (hb, hb + data.len() + if dd { 4 } else { 0 })
        };
        if hd {
            fl |= flags::HDGSTF;
        }
        if dd {
            fl |= flags::DDGSTF;
        }
        let ch = CommonHeader {
            pdu_type: ty,
            flags: fl,
            hlen: hlen as u8,
            pdo: pdo as u8,
            plen: plen as u32,
        };
        let mut out = ch.to_bytes().to_vec();
        out.extend_from_slice(psh);
        if hd {
            let d = digest(&out);
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(data);
        if dd {
            out.extend_from_slice(&digest(data).to_le_bytes());
        }
        out
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn capsule(&mut self, mut sqe: SubmissionEntry, data: &[u8]) -> u16 {
        self.cid = self.cid.wrapping_add(1);
        sqe.set_cid(self.cid);
        let b = self.pdu(PduType::CAPSULE_CMD, 0, &sqe.to_bytes(), data);
        self.send(&b);
        self.cid
    }

    /// The next PDU, its digests checked.
    fn recv(&mut self) -> Rx {
        let mut chb = [0u8; 8];
        self.s.read_exact(&mut chb).unwrap();
        let ch = CommonHeader::parse(&chb);
        ch.validate(self.digests, 1 << 24)
            .unwrap_or_else(|e| panic!("target sent a bad PDU: {e}"));
        let mut rest = vec![0u8; ch.plen as usize - 8];
        self.s.read_exact(&mut rest).unwrap();
        let mut all = chb.to_vec();
        all.extend_from_slice(&rest);
        let hlen = ch.hlen as usize;
        if ch.has_header_digest() {
            let got = u32::from_le_bytes(all[hlen..hlen + 4].try_into().unwrap());
            assert_eq!(got, digest(&all[..hlen]), "header digest");
        }
        let data = if ch.pdo == 0 {
            Vec::new()
        } else {
            let end = all.len() - if ch.has_data_digest() { DIGEST_SIZE } else { 0 };
            let d = all[ch.pdo as usize..end].to_vec();
            if ch.has_data_digest() {
                let got = u32::from_le_bytes(all[end..].try_into().unwrap());
                assert_eq!(got, digest(&d), "data digest");
            }
            d
        };
        Rx {
            ch,
            header: all[..hlen].to_vec(),
            data,
        }
    }

    fn response(&mut self) -> CompletionEntry {
        let p = self.recv();
        assert_eq!(p.ch.pdu_type, PduType::CAPSULE_RESP, "expected a response");
        CompletionEntry::from_bytes(p.header[8..24].try_into().unwrap())
    }

    /// Sends a command moving no data or `write` (in the capsule when `inline`,
    /// else by R2T/H2CData), or reading `read` bytes; returns its completion and data.
    fn exec(
        &mut self,
        mut sqe: SubmissionEntry,
        write: &[u8],
        inline: bool,
        read: usize,
    ) -> (CompletionEntry, Vec<u8>) {
        let len = write.len().max(read) as u32;
        let desc = if inline {
            SglDescriptor::in_capsule(len)
        } else {
            SglDescriptor::transport(len)
        };
        sqe.set_sgl(desc, Psdt::SglMptrContiguous);
        let cid = self.capsule(sqe, if inline { write } else { &[] });
        if !write.is_empty() && !inline {
            let r2t = self.recv();
            assert_eq!(r2t.ch.pdu_type, PduType::R2T);
            let t = TransferHeader::parse(&r2t.header).unwrap();
            assert_eq!((t.cccid, t.offset, t.length), (cid, 0, write.len() as u32));
            let mut at = 0;
            while at < write.len() {
                let end = (at + self.maxh2cdata).min(write.len());
                let last = end == write.len();
                let psh = TransferHeader {
                    cccid: cid,
                    ttag: t.ttag,
                    offset: at as u32,
                    length: (end - at) as u32,
                }
                .to_bytes(CommonHeader {
                    pdu_type: PduType::H2C_DATA,
                    flags: 0,
                    hlen: 24,
                    pdo: 0,
                    plen: 0,
                });
                let fl = if last { flags::LAST_PDU } else { 0 };
                let b = self.pdu(PduType::H2C_DATA, fl, &psh[8..], &write[at..end]);
                self.send(&b);
                at = end;
            }
        }
        let mut data = Vec::new();
        if read > 0 {
            loop {
                let p = self.recv();
                if p.ch.pdu_type == PduType::CAPSULE_RESP {
                    let c = CompletionEntry::from_bytes(p.header[8..24].try_into().unwrap());
                    return (c, data);
                }
                assert_eq!(p.ch.pdu_type, PduType::C2H_DATA);
                let t = TransferHeader::parse(&p.header).unwrap();
                assert_eq!((t.cccid, t.offset as usize), (cid, data.len()));
                assert!(p.data.len() <= self.maxh2cdata);
                data.extend_from_slice(&p.data);
                if p.ch.flags & flags::SUCCESS != 0 {
                    assert!(p.ch.flags & flags::LAST_PDU != 0);
                    let c = CompletionEntry {
                        dw0: 0,
                        dw1: 0,
                        sq_head: 0,
                        sq_id: 0,
                        cid,
                        status: nvme_spec::Status::SUCCESS,
                    };
                    return (c, data);
                }
                if p.ch.flags & flags::LAST_PDU != 0 {
                    break;
                }
            }
        }
        let c = self.response();
        assert_eq!(c.cid, cid);
        (c, data)
    }

    fn connect_with(
        &mut self,
        qid: u16,
        kato: u32,
        cntlid: u16,
        subnqn: &str,
        hostnqn: &str,
        cattr: u32,
    ) -> CompletionEntry {
        let data = ConnectData {
            host_id: [1; 16],
            cntlid,
            subnqn: subnqn.into(),
            hostnqn: hostnqn.into(),
        }
        .to_bytes()
        .unwrap();
        let sqe = fabrics::connect(qid, 32, cattr as u8, kato, SglDescriptor::in_capsule(1024));
        self.exec(sqe, &data, true, 0).0
    }

    fn prop_get(&mut self, at: usize, size: PropertySize) -> u64 {
        let (c, _) = self.exec(fabrics::property_get(at as u32, size), &[], true, 0);
        assert!(c.status.is_success(), "{:?}", c.status);
        u64::from(c.dw0) | (u64::from(c.dw1) << 32)
    }

    fn prop_set(&mut self, at: usize, value: u32) {
        let (c, _) = self.exec(
            fabrics::property_set(at as u32, PropertySize::Four, u64::from(value)),
            &[],
            true,
            0,
        );
        assert!(c.status.is_success(), "{:?}", c.status);
    }

    /// Expects the target to close the connection (after whatever it still sends).
    fn expect_closed(&mut self) {
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("connection still open: {e}"),
            }
        }
    }
}

/// An admin queue connected and the controller enabled; returns the client and CNTLID.
fn admin(t: &TcpTarget, digests: Digests, kato: u32) -> (Client, u16) {
    let mut a = Client::open(t.port(), digests);
    let c = a.connect_with(0, kato, CNTLID_DYNAMIC, t.subsystem_nqn(), HOST, 0);
    assert!(c.status.is_success(), "{:?}", c.status);
    let cntlid = c.dw0 as u16;
    assert_ne!(cntlid, 0);
    a.prop_set(offset::CC, 1 | (6 << 16) | (4 << 20));
    assert_eq!(
        a.prop_get(offset::CSTS, PropertySize::Four) & 1,
        1,
        "CSTS.RDY"
    );
    (a, cntlid)
}

fn io(t: &TcpTarget, digests: Digests, cntlid: u16, qid: u16, cattr: u32) -> Client {
    let mut q = Client::open(t.port(), digests);
    let c = q.connect_with(qid, 0, cntlid, t.subsystem_nqn(), HOST, cattr);
    assert!(c.status.is_success(), "I/O connect: {:?}", c.status);
    assert_eq!(c.dw0 as u16, cntlid);
    q
}

fn write_read_round_trip(q: &mut Client) {
    let small = pattern(8192, 1);
    let (c, _) = q.exec(rw(0x01, 0, 16), &small, true, 0);
    assert!(c.status.is_success(), "in-capsule write: {:?}", c.status);
    let big = pattern(64 << 10, 2);
    let (c, _) = q.exec(rw(0x01, 100, 128), &big, false, 0);
    assert!(c.status.is_success(), "R2T write: {:?}", c.status);
    let (c, got) = q.exec(rw(0x02, 0, 16), &[], false, 8192);
    assert!(c.status.is_success());
    assert_eq!(got, small);
    let (c, got) = q.exec(rw(0x02, 100, 128), &[], false, 64 << 10);
    assert!(c.status.is_success());
    assert_eq!(got, big);
}

#[test]
fn bring_up_identify_and_data_through_capsules_r2t_and_c2h_data() {
    let t = target(|_| {});
    let (mut a, cntlid) = admin(&t, Digests::default(), 0);
    let cap = a.prop_get(offset::CAP, PropertySize::Eight);
    assert_eq!(cap & 0xffff, 1023, "CAP.MQES of the emulated controller");
    assert_eq!(a.prop_get(offset::VS, PropertySize::Four) >> 16, 1);
    // CAP is an 8-byte property: a 4-byte Property Get of it is Invalid Field.
    let (c, _) = a.exec(fabrics::property_get(0, PropertySize::Four), &[], true, 0);
    assert_eq!(
        (c.status.sct(), c.status.sc()),
        (StatusCodeType::Generic, 0x02)
    );

    let mut identify = SubmissionEntry::new(0x06);
    identify.cdw10 = 1;
    let (c, page) = a.exec(identify, &[], false, 4096);
    assert!(c.status.is_success());
    let id = IdentifyController::parse(&page).unwrap();
    assert_eq!(id.subsystem_nqn(), t.subsystem_nqn());
    assert_eq!(id.cntlid, cntlid);
    assert_eq!(id.cntrltype, 1);
    assert!(id.sgls.supported() && id.sgls.address_as_offset() && id.sgls.transport_data_block());
    let ioccsz = u32::from_le_bytes(id.fabrics[0..4].try_into().unwrap());
    assert_eq!(ioccsz, (64 + 8192) / 16);
    assert_eq!(u32::from_le_bytes(id.fabrics[4..8].try_into().unwrap()), 1);

    let mut nq = SubmissionEntry::new(0x09);
    nq.cdw10 = 0x07;
    nq.cdw11 = 3 | (3 << 16);
    assert!(a.exec(nq, &[], true, 0).0.status.is_success());

    let mut q = io(&t, Digests::default(), cntlid, 1, 0);
    write_read_round_trip(&mut q);
    // Keep Alive on the admin queue.
    let (c, _) = a.exec(fabrics::keep_alive(), &[], true, 0);
    assert!(c.status.is_success());
    // The same queue cannot be connected twice: Controller Busy.
    let mut again = Client::open(t.port(), Digests::default());
    let c = again.connect_with(1, 0, cntlid, t.subsystem_nqn(), HOST, 0);
    assert_eq!(
        (c.status.sct(), c.status.sc()),
        (StatusCodeType::CommandSpecific, 0x81)
    );
    // An unknown controller ID on an I/O connect is Invalid Parameters at CNTLID.
    let c = again.connect_with(2, 0, cntlid + 7, t.subsystem_nqn(), HOST, 0);
    assert_eq!((c.status.sc(), c.dw0), (0x82, (1 << 16) | 16));
}

#[test]
fn unknown_subsystem_is_connect_invalid_parameters() {
    let t = target(|_| {});
    let mut a = Client::open(t.port(), Digests::default());
    let c = a.connect_with(0, 0, CNTLID_DYNAMIC, "nqn.2026-12.io.nowhere:none", HOST, 0);
    assert_eq!(c.status.sct(), StatusCodeType::CommandSpecific);
    assert_eq!(c.status.sc(), 0x82);
    assert!(c.status.dnr());
    let p = fabrics::InvalidParameter::from_dw0(c.dw0);
    assert!(p.in_data);
    assert_eq!((p.offset, p.field()), (256, "SUBNQN"));
}

#[test]
fn disallowed_host_is_connect_invalid_host() {
    let t = target(|c| c.allowed_hosts = vec!["nqn.2026-12.io.test:allowed".into()]);
    let mut a = Client::open(t.port(), Digests::default());
    let c = a.connect_with(0, 0, CNTLID_DYNAMIC, t.subsystem_nqn(), HOST, 0);
    assert_eq!(
        (c.status.sct(), c.status.sc()),
        (StatusCodeType::CommandSpecific, 0x84)
    );
    let c = a.connect_with(
        0,
        0,
        CNTLID_DYNAMIC,
        t.subsystem_nqn(),
        "nqn.2026-12.io.test:allowed",
        0,
    );
    assert!(c.status.is_success(), "{:?}", c.status);
}

#[test]
fn digests_round_trip_and_a_bad_client_digest_is_handled() {
    let t = target(|_| {});
    let (_a, cntlid) = admin(&t, BOTH, 0);
    let mut q = io(&t, BOTH, cntlid, 1, 0);
    write_read_round_trip(&mut q);

    // A bad data digest on in-capsule data fails the command, the queue lives on.
    let mut sqe = rw(0x01, 0, 1);
    sqe.set_sgl(SglDescriptor::in_capsule(512), Psdt::SglMptrContiguous);
    sqe.set_cid(900);
    let mut b = q.pdu(PduType::CAPSULE_CMD, 0, &sqe.to_bytes(), &[7; 512]);
    let n = b.len();
    b[n - 1] ^= 0xff;
    q.send(&b);
    let c = q.response();
    assert_eq!(
        (c.cid, c.status.sc()),
        (900, 0x22),
        "Transient Transport Error"
    );
    let (c, got) = q.exec(rw(0x02, 0, 16), &[], false, 8192);
    assert!(c.status.is_success());
    assert_eq!(got, pattern(8192, 1), "the failed write changed nothing");

    // A bad header digest ends the connection with a C2HTermReq.
    let mut sqe = rw(0x02, 0, 1);
    sqe.set_sgl(SglDescriptor::transport(512), Psdt::SglMptrContiguous);
    let mut b = q.pdu(PduType::CAPSULE_CMD, 0, &sqe.to_bytes(), &[]);
    b[72] ^= 1;
    q.send(&b);
    q.digests = Digests::default();
    let p = q.recv();
    assert_eq!(p.ch.pdu_type, PduType::C2H_TERM_REQ);
    let term = TermReq::parse(&p.header).unwrap();
    assert_eq!(term.fes, FatalErrorStatus::HEADER_DIGEST_ERROR);
    q.expect_closed();
}

#[test]
fn keep_alive_timeout_ends_the_association() {
    let t = target(|_| {});
    let (mut a, cntlid) = admin(&t, Digests::default(), 300);
    let mut q = io(&t, Digests::default(), cntlid, 1, 0);
    // Commands keep it alive.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        assert!(a
            .exec(fabrics::keep_alive(), &[], true, 0)
            .0
            .status
            .is_success());
    }
    assert_eq!(t.associations(), vec![cntlid]);
    let start = Instant::now();
    a.expect_closed();
    q.expect_closed();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert!(t.associations().is_empty());
}

#[test]
fn discovery_log_lists_the_subsystem() {
    let t = target(|_| {});
    let mut d = Client::open(t.port(), Digests::default());
    let c = d.connect_with(0, 0, CNTLID_DYNAMIC, DISCOVERY_NQN, HOST, 0);
    assert!(c.status.is_success(), "{:?}", c.status);
    d.prop_set(offset::CC, 1 | (6 << 16) | (4 << 20));
    assert_eq!(d.prop_get(offset::CSTS, PropertySize::Four) & 1, 1);
    let mut identify = SubmissionEntry::new(0x06);
    identify.cdw10 = 1;
    let (_, page) = d.exec(identify, &[], false, 4096);
    let id = IdentifyController::parse(&page).unwrap();
    assert_eq!((id.cntrltype, &*id.subsystem_nqn()), (2, DISCOVERY_NQN));
    let mut log = SubmissionEntry::new(0x02);
    let len = 2048u32;
    log.cdw10 = 0x70 | ((len / 4 - 1) << 16);
    let (c, page) = d.exec(log, &[], false, len as usize);
    assert!(c.status.is_success(), "{:?}", c.status);
    let h = DiscoveryHeader::parse(&page).unwrap();
    assert_eq!(h.numrec, 1);
    let e = &discovery_entries(&page, h.numrec)[0];
    assert_eq!((e.trtype, e.adrfam, e.subtype), (3, 1, 2));
    assert_eq!(e.traddr, "127.0.0.1");
    assert_eq!(e.trsvcid, t.port().to_string());
    assert_eq!(e.subnqn, t.subsystem_nqn());
    // The discovery controller has no I/O queues.
    let mut q = Client::open(t.port(), Digests::default());
    let c = q.connect_with(1, 0, c.dw0 as u16, DISCOVERY_NQN, HOST, 0);
    assert_eq!(c.status.sc(), 0x82);
}

#[test]
fn success_flag_replaces_the_response_when_sq_flow_control_is_off() {
    let t = target(|c| c.c2h_success = true);
    let (_a, cntlid) = admin(&t, Digests::default(), 0);
    let mut q = io(&t, Digests::default(), cntlid, 1, 4);
    let data = pattern(4096, 3);
    assert!(q.exec(rw(0x01, 8, 8), &data, true, 0).0.status.is_success());
    let mut sqe = rw(0x02, 8, 8);
    sqe.set_sgl(SglDescriptor::transport(4096), Psdt::SglMptrContiguous);
    q.capsule(sqe, &[]);
    let p = q.recv();
    assert_eq!(p.ch.pdu_type, PduType::C2H_DATA);
    assert_eq!(
        p.ch.flags & (flags::LAST_PDU | flags::SUCCESS),
        flags::LAST_PDU | flags::SUCCESS
    );
    assert_eq!(p.data, data);
    // No Response Capsule follows: the next PDU answers the next command.
    let cid = q.capsule(fabrics::keep_alive(), &[]);
    let c = q.response();
    assert_eq!(c.cid, cid);
    // With SQ flow control on, the same read gets a Response Capsule.
    let mut plain = io(&t, Digests::default(), cntlid, 2, 0);
    let (c, got) = plain.exec(rw(0x02, 8, 8), &[], false, 4096);
    assert!(c.status.is_success());
    assert_eq!(got, data);
}

#[test]
fn fault_drop_after_closes_the_queue_after_k_commands() {
    let t = target(|_| {});
    let (mut a, cntlid) = admin(&t, Digests::default(), 0);
    let mut q = io(&t, Digests::default(), cntlid, 1, 0);
    t.faults().drop_after(1, 2);
    for _ in 0..2 {
        assert!(q
            .exec(rw(0x02, 0, 1), &[], false, 512)
            .0
            .status
            .is_success());
    }
    let mut sqe = rw(0x02, 0, 1);
    sqe.set_sgl(SglDescriptor::transport(512), Psdt::SglMptrContiguous);
    q.capsule(sqe, &[]);
    q.expect_closed();
    assert_eq!(t.faults().counts().dropped, 1);
    // The admin queue is untouched and the queue can be connected again.
    assert!(a
        .exec(fabrics::keep_alive(), &[], true, 0)
        .0
        .status
        .is_success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut q = loop {
        let mut q = Client::open(t.port(), Digests::default());
        let c = q.connect_with(1, 0, cntlid, t.subsystem_nqn(), HOST, 0);
        if c.status.is_success() {
            break q;
        }
        assert!(
            Instant::now() < deadline,
            "queue 1 never freed: {:?}",
            c.status
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(q
        .exec(rw(0x02, 0, 1), &[], false, 512)
        .0
        .status
        .is_success());
}

#[test]
fn fault_corrupted_digests_reach_the_host() {
    let t = target(|_| {});
    let (mut a, _) = admin(&t, BOTH, 0);
    t.faults().corrupt_header_digest(Some(0));
    a.capsule(fabrics::keep_alive(), &[]);
    let mut b = vec![0u8; 28];
    a.s.read_exact(&mut b).unwrap();
    assert_eq!(b[0], PduType::CAPSULE_RESP.0);
    let got = u32::from_le_bytes(b[24..28].try_into().unwrap());
    assert_ne!(got, digest(&b[..24]), "header digest corrupted");

    t.faults().corrupt_data_digest(None);
    let mut identify = SubmissionEntry::new(0x06);
    identify.cdw10 = 1;
    identify.set_sgl(SglDescriptor::transport(4096), Psdt::SglMptrContiguous);
    a.capsule(identify, &[]);
    let mut ch = [0u8; 8];
    a.s.read_exact(&mut ch).unwrap();
    let ch = CommonHeader::parse(&ch);
    assert_eq!(ch.pdu_type, PduType::C2H_DATA);
    let mut rest = vec![0u8; ch.plen as usize - 8];
    a.s.read_exact(&mut rest).unwrap();
    let n = rest.len();
    let data = &rest[ch.pdo as usize - 8..n - 4];
    let got = u32::from_le_bytes(rest[n - 4..].try_into().unwrap());
    assert_ne!(got, digest(data), "data digest corrupted");
    let counts = t.faults().counts();
    assert_eq!((counts.header_digests, counts.data_digests), (1, 1));
}

#[test]
fn fault_malformed_pdus_replace_the_response() {
    let t = target(|_| {});
    let (_a, cntlid) = admin(&t, Digests::default(), 0);
    let kinds = [
        (MalformedPdu::WrongType, 0x0a, 24),
        (MalformedPdu::WrongHlen, 0x05, 30),
        (MalformedPdu::PlenTooLarge, 0x05, 24),
    ];
    for (i, (kind, ty, hlen)) in kinds.into_iter().enumerate() {
        let qid = i as u16 + 1;
        let mut q = io(&t, Digests::default(), cntlid, qid, 0);
        t.faults().malformed_response(Some(qid), kind);
        q.capsule(fabrics::keep_alive(), &[]);
        let mut b = [0u8; 8];
        q.s.read_exact(&mut b).unwrap();
        let ch = CommonHeader::parse(&b);
        assert_eq!((ch.pdu_type.0, ch.hlen), (ty, hlen), "{kind:?}");
        assert!(
            ch.validate(Digests::default(), 1 << 20).is_err(),
            "{kind:?}"
        );
    }
    assert_eq!(t.faults().counts().malformed, 3);
}

#[test]
fn fault_terminate_sends_c2h_term_req_and_closes() {
    let t = target(|_| {});
    let (mut a, _) = admin(&t, Digests::default(), 0);
    t.faults()
        .terminate(Some(0), FatalErrorStatus::UNSUPPORTED_PARAMETER);
    a.capsule(fabrics::keep_alive(), &[]);
    let p = a.recv();
    assert_eq!(p.ch.pdu_type, PduType::C2H_TERM_REQ);
    assert_eq!(
        TermReq::parse(&p.header).unwrap().fes,
        FatalErrorStatus::UNSUPPORTED_PARAMETER
    );
    a.expect_closed();
    assert_eq!(t.faults().counts().terminations, 1);
}

#[test]
fn fault_hang_accepts_bytes_and_answers_nothing() {
    let t = target(|_| {});
    let (mut a, _) = admin(&t, Digests::default(), 200);
    t.faults().hang();
    a.capsule(fabrics::keep_alive(), &[]);
    a.s.set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let mut b = [0u8; 8];
    let e = a.s.read(&mut b).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert!(t.faults().counts().hung >= 1);
    // A hung target does not run its keep-alive timer either.
    assert_eq!(t.associations().len(), 1);
    t.faults().clear();
    let (mut b2, _) = admin(&t, Digests::default(), 0);
    assert!(b2
        .exec(fabrics::keep_alive(), &[], true, 0)
        .0
        .status
        .is_success());
}

#[test]
fn fault_refused_and_dropped_connections() {
    let t = target(|_| {});
    let (mut a, _) = admin(&t, Digests::default(), 0);
    t.faults().refuse_connections();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", t.port())) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "listener still open");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Open connections still work until they are dropped.
    assert!(a
        .exec(fabrics::keep_alive(), &[], true, 0)
        .0
        .status
        .is_success());
    t.faults().drop_connections();
    a.expect_closed();
}

#[test]
fn h2c_term_req_and_out_of_sequence_pdus_close_the_connection() {
    let t = target(|_| {});
    let (mut a, _) = admin(&t, Digests::default(), 0);
    let term = TermReq {
        fes: FatalErrorStatus::SEQUENCE_ERROR,
        fei: 0,
    }
    .to_bytes(PduType::H2C_TERM_REQ);
    a.send(&term);
    a.expect_closed();
    // H2CData for a transfer the target never asked for.
    let (mut b, _) = admin(&t, Digests::default(), 0);
    let psh = TransferHeader {
        cccid: 1,
        ttag: 77,
        offset: 0,
        length: 4,
    }
    .to_bytes(CommonHeader {
        pdu_type: PduType::H2C_DATA,
        flags: 0,
        hlen: 24,
        pdo: 0,
        plen: 0,
    });
    let bytes = b.pdu(PduType::H2C_DATA, flags::LAST_PDU, &psh[8..], &[0; 4]);
    b.send(&bytes);
    let p = b.recv();
    assert_eq!(p.ch.pdu_type, PduType::C2H_TERM_REQ);
    let term = TermReq::parse(&p.header).unwrap();
    assert_eq!(
        (term.fes, term.fei),
        (FatalErrorStatus::INVALID_HEADER_FIELD, 10)
    );
    b.expect_closed();
}

#[test]
fn stop_closes_connections_and_frees_the_port() {
    let mut t = target(|_| {});
    let port = t.port();
    let (mut a, _) = admin(&t, Digests::default(), 0);
    assert_eq!(t.connections(), 1);
    t.stop();
    a.expect_closed();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
