//! One NVMe/TCP connection: the ICReq/ICResp exchange, PDUs out through a send buffer
//! written with as few system calls as the socket allows, and PDUs in through a
//! receive buffer parsed as a stream (data is handed over as it arrives, however large
//! the PDU).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

use crate::spec::tcp::{
    data_padding, flags, CommonHeader, Digests, IcReq, IcResp, PduType, TermReq, TransferHeader,
    COMMON_HEADER_SIZE, DIGEST_SIZE, IC_PDU_SIZE,
};
use crate::spec::CompletionEntry;

/// CRC-32C for digests computed piece by piece.
static CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Bytes of the receive buffer.
const RX_BUFFER: usize = 256 << 10;
/// The longest PDU accepted from a controller (data PDUs stream through the buffer).
const MAX_PLEN: usize = 1 << 30;

/// Why a connection stopped working.
#[derive(Debug)]
pub(super) enum ConnError {
    /// The peer closed the connection.
    Closed,
    /// A socket call failed.
    Io(std::io::Error),
    /// The peer broke the protocol: a malformed PDU, a digest mismatch, a PDU out of
    /// sequence.
    Protocol(String),
    /// The controller ended the connection with a termination request.
    Terminated(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => f.write_str("the connection was closed by the target"),
            ConnError::Io(e) => write!(f, "connection error: {e}"),
            ConnError::Protocol(m) => write!(f, "protocol error: {m}"),
            ConnError::Terminated(m) => write!(f, "the target terminated the connection: {m}"),
        }
    }
}

/// What the receive side hands to the queue.
pub(super) trait PduSink {
    /// A Response Capsule.
    fn response(&mut self, cqe: CompletionEntry) -> Result<(), String>;
    /// The header of a C2HData PDU: checks that it fits an outstanding read.
    fn c2h_begin(&mut self, h: &TransferHeader) -> Result<(), String>;
    /// Data for command `cid` at byte `offset` of its transfer.
    fn c2h_data(&mut self, cid: u16, offset: u32, data: &[u8]) -> Result<(), String>;
    /// The end of a C2HData PDU; `success` when it carried the SUCCESS flag (the
    /// command is complete, no Response Capsule follows).
    fn c2h_end(&mut self, cid: u16, last: bool, success: bool) -> Result<(), String>;
    /// An R2T: the controller wants write data.
    fn r2t(&mut self, h: &TransferHeader) -> Result<(), String>;
}

struct DataState {
    cid: u16,
    offset: u32,
    remaining: u32,
    last: bool,
    success: bool,
    crc: Option<crc::Digest<'static, u32>>,
}

#[derive(Default)]
enum RxState {
    #[default]
    Header,
    Pad {
        left: usize,
        then: DataState,
    },
    Data(DataState),
    Digest {
        have: usize,
        buf: [u8; DIGEST_SIZE],
        then: DataState,
    },
}

/// A connected, initialised NVMe/TCP connection.
pub(super) struct Conn {
    stream: TcpStream,
    /// Digests in use.
    pub(super) digests: Digests,
    /// The controller's PDU data alignment.
    pub(super) cpda: u8,
    /// Most data bytes per H2CData PDU.
    pub(super) maxh2cdata: u32,
    tx: Vec<u8>,
    tx_pos: usize,
    rx: Box<[u8]>,
    rx_start: usize,
    rx_end: usize,
    state: RxState,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.stream.peer_addr().ok())
            .field("digests", &self.digests)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to `addr`, exchanges ICReq/ICResp asking for `digests`, and leaves the
    /// socket non-blocking. Fails with the socket's error (connection refused, timed
    /// out) or a protocol error.
    pub(super) fn connect(
        addr: &str,
        digests: Digests,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let addrs: Vec<_> = addr.to_socket_addrs().map_err(ConnError::Io)?.collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            return Err(ConnError::Io(last.unwrap_or_else(|| {
                std::io::Error::new(ErrorKind::NotFound, "the host name resolves to no address")
            })));
        };
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .map_err(ConnError::Io)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ConnError::Io)?;
        let req = IcReq {
            pfv: 0,
            hpda: 0,
            digests,
            maxr2t: 0,
        };
        stream.write_all(&req.to_bytes()).map_err(ConnError::Io)?;
        let mut resp = [0u8; IC_PDU_SIZE];
        stream.read_exact(&mut resp).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => ConnError::Closed,
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                ConnError::Protocol(format!("no ICResp within {timeout:?}"))
            }
            _ => ConnError::Io(e),
        })?;
        if resp[0] == PduType::C2H_TERM_REQ.0 {
            let t = TermReq::parse(&resp)
                .map(|t| t.fes.describe())
                .unwrap_or("?");
            return Err(ConnError::Terminated(format!("ICReq refused: {t}")));
        }
        let resp = IcResp::parse(&resp).map_err(|e| ConnError::Protocol(e.to_string()))?;
        if resp.digests != digests {
            return Err(ConnError::Protocol(format!(
                "digests asked for {digests:?} but the target enabled {:?}",
                resp.digests
            )));
        }
        stream.set_nonblocking(true).map_err(ConnError::Io)?;
        Ok(Conn {
            stream,
            digests,
            cpda: resp.cpda,
            maxh2cdata: resp.maxh2cdata,
            tx: Vec::with_capacity(64 << 10),
            tx_pos: 0,
            rx: vec![0u8; RX_BUFFER].into_boxed_slice(),
            rx_start: 0,
            rx_end: 0,
            state: RxState::Header,
        })
    }

    /// Appends a PDU of `pdu_type` whose header after the common header is `specific`,
    /// with room for `data_len` bytes of data; returns where the data goes in the send
    /// buffer. Call [`Conn::finish_pdu`] once the data is written.
    pub(super) fn begin_pdu(
        &mut self,
        pdu_type: PduType,
        extra_flags: u8,
        specific: &[u8],
        data_len: usize,
    ) -> Range<usize> {
        let hlen = COMMON_HEADER_SIZE + specific.len();
        let mut fl = extra_flags;
        let hdgst = self.digests.header;
        if hdgst {
            fl |= flags::HDGSTF;
        }
        let ddgst = self.digests.data && data_len > 0;
        if ddgst {
            fl |= flags::DDGSTF;
        }
        let header_bytes = hlen + if hdgst { DIGEST_SIZE } else { 0 };
        let pad = if data_len > 0 {
            data_padding(header_bytes, self.cpda)
        } else {
            0
        };
        let pdo = if data_len > 0 { header_bytes + pad } else { 0 };
        let plen = header_bytes + pad + data_len + if ddgst { DIGEST_SIZE } else { 0 };
        let start = self.tx.len();
        let ch = CommonHeader {
            pdu_type,
            flags: fl,
            hlen: hlen as u8,
            pdo: pdo as u8,
            plen: plen as u32,
        };
        self.tx.extend_from_slice(&ch.to_bytes());
        self.tx.extend_from_slice(specific);
        if hdgst {
            let d = CRC32C.checksum(&self.tx[start..start + hlen]);
            self.tx.extend_from_slice(&d.to_le_bytes());
        }
        let data_start = self.tx.len() + pad;
        self.tx.resize(data_start + data_len, 0);
        data_start..data_start + data_len
    }

    /// The send buffer's bytes at `range` (from [`Conn::begin_pdu`]), to fill with data.
    pub(super) fn tx_slice(&mut self, range: Range<usize>) -> &mut [u8] {
        &mut self.tx[range]
    }

    /// Appends the data digest of the data at `data` when data digests are on.
    pub(super) fn finish_pdu(&mut self, data: Range<usize>) {
        if self.digests.data && !data.is_empty() {
            let d = CRC32C.checksum(&self.tx[data]);
            self.tx.extend_from_slice(&d.to_le_bytes());
        }
    }

    /// Appends a Command Capsule for `sqe` with `data_len` bytes of in-capsule data;
    /// returns where the data goes.
    pub(super) fn begin_capsule(&mut self, sqe: &[u8; 64], data_len: usize) -> Range<usize> {
        self.begin_pdu(PduType::CAPSULE_CMD, 0, sqe, data_len)
    }

    /// Whether bytes wait to be sent.
    pub(super) fn tx_pending(&self) -> bool {
        self.tx_pos < self.tx.len()
    }

    /// Sends as much of the send buffer as the socket takes without blocking.
    pub(super) fn flush(&mut self) -> Result<(), ConnError> {
        while self.tx_pos < self.tx.len() {
            match self.stream.write(&self.tx[self.tx_pos..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.tx_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.tx.clear();
        self.tx_pos = 0;
        Ok(())
    }

    /// Receives what the socket holds and hands each PDU's parts to `sink`; returns
    /// whether anything arrived.
    pub(super) fn receive(&mut self, sink: &mut impl PduSink) -> Result<bool, ConnError> {
        let mut got = false;
        loop {
            if self.rx_start == self.rx_end {
                self.rx_start = 0;
                self.rx_end = 0;
            } else if self.rx_start > 0 && self.rx.len() - self.rx_end < IC_PDU_SIZE * 2 {
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end -= self.rx_start;
                self.rx_start = 0;
            }
            let space = self.rx.len() - self.rx_end;
            match self.stream.read(&mut self.rx[self.rx_end..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => {
                    got = true;
                    self.rx_end += n;
                    self.process(sink)?;
                    if n < space {
                        return Ok(got);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(got),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// Parses the buffered bytes.
    fn process(&mut self, sink: &mut impl PduSink) -> Result<(), ConnError> {
        let proto = |m: String| ConnError::Protocol(m);
        loop {
            let avail = self.rx_end - self.rx_start;
            match std::mem::take(&mut self.state) {
                RxState::Header => {
                    if avail < COMMON_HEADER_SIZE {
                        return Ok(());
                    }
                    let at = self.rx_start;
                    let ch = CommonHeader::parse(
                        self.rx[at..at + COMMON_HEADER_SIZE]
                            .try_into()
                            .expect("8 bytes"),
                    );
                    ch.validate(self.digests, MAX_PLEN)
                        .map_err(|e| proto(e.to_string()))?;
                    let hb = ch.header_bytes();
                    if avail < hb {
                        return Ok(());
                    }
                    let hlen = usize::from(ch.hlen);
                    let header = &self.rx[at..at + hlen];
                    if ch.has_header_digest() {
                        let want = CRC32C.checksum(header);
                        let got = u32::from_le_bytes(
                            self.rx[at + hlen..at + hlen + DIGEST_SIZE]
                                .try_into()
                                .expect("4 bytes"),
                        );
                        if want != got {
                            return Err(proto(format!(
                                "header digest mismatch on a {} PDU ({got:#010x}, computed {want:#010x})",
                                ch.pdu_type.name()
                            )));
                        }
                    }
                    match ch.pdu_type {
                        PduType::CAPSULE_RESP => {
                            let cqe = CompletionEntry::from_bytes(
                                header[8..24].try_into().expect("16 bytes"),
                            );
                            self.rx_start += hb;
                            sink.response(cqe).map_err(proto)?;
                        }
                        PduType::C2H_DATA => {
                            let th = TransferHeader::parse(header).expect("24-byte header");
                            if ch.data_len() != th.length as usize {
                                return Err(proto(format!(
                                    "C2HData DATAL {} disagrees with its PDU length ({} data bytes)",
                                    th.length,
                                    ch.data_len()
                                )));
                            }
                            if th.length == 0 {
                                return Err(proto("C2HData with no data".into()));
                            }
                            sink.c2h_begin(&th).map_err(proto)?;
                            self.rx_start += hb;
                            let d = DataState {
                                cid: th.cccid,
                                offset: th.offset,
                                remaining: th.length,
                                last: ch.flags & flags::LAST_PDU != 0,
                                success: ch.flags & flags::SUCCESS != 0,
                                crc: ch.has_data_digest().then(|| CRC32C.digest()),
                            };
                            if d.success && !d.last {
                                return Err(proto(
                                    "C2HData has SUCCESS set without LAST_PDU".into(),
                                ));
                            }
                            self.state = RxState::Pad {
                                left: usize::from(ch.pdo) - hb,
                                then: d,
                            };
                        }
                        PduType::R2T => {
                            let th = TransferHeader::parse(header).expect("24-byte header");
                            self.rx_start += hb;
                            sink.r2t(&th).map_err(proto)?;
                        }
                        PduType::C2H_TERM_REQ => {
                            let t = TermReq::parse(header).expect("24-byte header");
                            return Err(ConnError::Terminated(format!(
                                "{} (FES {:#x}, FEI {:#x})",
                                t.fes.describe(),
                                t.fes.0,
                                t.fei
                            )));
                        }
                        other => {
                            return Err(proto(format!(
                            "a controller sent a {} PDU (type {:#04x}), which only a host sends",
                            other.name(),
                            other.0
                        )))
                        }
                    }
                }
                RxState::Pad { left, then } => {
                    let n = left.min(avail);
                    self.rx_start += n;
                    if n < left {
                        self.state = RxState::Pad {
                            left: left - n,
                            then,
                        };
                        return Ok(());
                    }
                    self.state = RxState::Data(then);
                }
                RxState::Data(mut d) => {
                    if avail == 0 {
                        self.state = RxState::Data(d);
                        return Ok(());
                    }
                    let n = avail.min(d.remaining as usize);
                    let bytes = &self.rx[self.rx_start..self.rx_start + n];
                    if let Some(c) = d.crc.as_mut() {
                        c.update(bytes);
                    }
                    sink.c2h_data(d.cid, d.offset, bytes).map_err(proto)?;
                    self.rx_start += n;
                    d.offset += n as u32;
                    d.remaining -= n as u32;
                    if d.remaining > 0 {
                        self.state = RxState::Data(d);
                        return Ok(());
                    }
                    if d.crc.is_some() {
                        self.state = RxState::Digest {
                            have: 0,
                            buf: [0; DIGEST_SIZE],
                            then: d,
                        };
                    } else {
                        sink.c2h_end(d.cid, d.last, d.success).map_err(proto)?;
                    }
                }
                RxState::Digest {
                    mut have,
                    mut buf,
                    then,
                } => {
                    let n = (DIGEST_SIZE - have).min(avail);
                    buf[have..have + n].copy_from_slice(&self.rx[self.rx_start..self.rx_start + n]);
                    self.rx_start += n;
                    have += n;
                    if have < DIGEST_SIZE {
                        self.state = RxState::Digest { have, buf, then };
                        return Ok(());
                    }
                    let got = u32::from_le_bytes(buf);
                    let want = then.crc.expect("digest state has a CRC").finalize();
                    if got != want {
                        return Err(proto(format!(
                            "data digest mismatch for command {} ({got:#010x}, computed {want:#010x})",
                            then.cid
                        )));
                    }
                    sink.c2h_end(then.cid, then.last, then.success)
                        .map_err(proto)?;
                }
            }
        }
    }

    /// Closes both directions.
    pub(super) fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
