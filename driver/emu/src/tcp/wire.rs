//! PDUs on the wire: receiving them whole from a byte stream, checking their headers
//! and digests, and building the target's PDUs.

use std::io::{self, Read};
use std::net::TcpStream;

use nvme_spec::tcp::{
    data_padding, digest, flags, CommonHeader, Digests, FatalErrorStatus, PduType, TermReq,
    COMMON_HEADER_SIZE, DIGEST_SIZE, SHORT_HLEN,
};

use super::faults::MalformedPdu;

/// A fatal transport error found in what the host sent: answered with a C2HTermReq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fatal {
    pub fes: FatalErrorStatus,
    /// Fatal Error Information: the byte offset of the bad field for a header error.
    pub fei: u32,
}

impl Fatal {
    pub(crate) const fn header_field(offset: u32) -> Self {
        Self {
            fes: FatalErrorStatus::INVALID_HEADER_FIELD,
            fei: offset,
        }
    }

    pub(crate) const fn sequence() -> Self {
        Self {
            fes: FatalErrorStatus::SEQUENCE_ERROR,
            fei: 0,
        }
    }
}

/// One received PDU, digests checked.
pub(crate) struct Pdu {
    pub ch: CommonHeader,
    /// The whole PDU.
    bytes: Vec<u8>,
    /// Where its data lies in `bytes` (empty when it carries none).
    data: std::ops::Range<usize>,
    /// The data digest did not match (the header was fine).
    pub data_digest_error: bool,
}

impl Pdu {
    /// The header, common header included (HLEN bytes).
    pub(crate) fn header(&self) -> &[u8] {
        &self.bytes[..usize::from(self.ch.hlen)]
    }

    /// The data.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.data.clone()]
    }
}

/// Bytes received and not yet consumed.
#[derive(Default)]
pub(crate) struct Rx {
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

/// What a read attempt gave.
pub(crate) enum Filled {
    /// Bytes arrived.
    Data,
    /// The read timed out: nothing arrived.
    Idle,
    /// The peer closed the connection or it failed.
    Closed,
}

impl Rx {
    /// Reads what the socket has (waiting at most its read timeout).
    pub(crate) fn fill(&mut self, stream: &mut TcpStream) -> Filled {
        if self.chunk.is_empty() {
            self.chunk = vec![0u8; 64 << 10];
        }
        match stream.read(&mut self.chunk) {
            Ok(0) => Filled::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Filled::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Filled::Idle
            }
            Err(_) => Filled::Closed,
        }
    }

    /// Drops everything buffered (a hung connection ignores its input).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
    }

    /// The next whole PDU, once it has arrived. `max_plen` bounds the PDU of each type.
    pub(crate) fn next(
        &mut self,
        digests: Digests,
        max_plen: impl Fn(PduType) -> usize,
    ) -> Result<Option<Pdu>, Fatal> {
        let Some(head) = self.buf.get(..COMMON_HEADER_SIZE) else {
            return Ok(None);
        };
        let ch = CommonHeader::parse(head.try_into().expect("8 bytes"));
        let limit = max_plen(ch.pdu_type);
        if let Err(_why) = ch.validate(digests, limit) {
            return Err(header_error(ch, digests, limit));
        }
        let plen = ch.plen as usize;
        if self.buf.len() < plen {
            return Ok(None);
        }
        let rest = self.buf.split_off(plen);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let hlen = usize::from(ch.hlen);
        if ch.has_header_digest() {
            let got = u32::from_le_bytes(bytes[hlen..hlen + DIGEST_SIZE].try_into().expect("4"));
            if got != digest(&bytes[..hlen]) {
                return Err(Fatal {
                    fes: FatalErrorStatus::HEADER_DIGEST_ERROR,
                    fei: 0,
                });
            }
        }
        let (data, data_digest_error) = if ch.pdo == 0 {
            (0..0, false)
        } else {
            let start = usize::from(ch.pdo);
            let end = if ch.has_data_digest() {
                plen - DIGEST_SIZE
            } else {
                plen
            };
            let bad = ch.has_data_digest()
                && u32::from_le_bytes(bytes[end..plen].try_into().expect("4"))
                    != digest(&bytes[start..end]);
            (start..end, bad)
        };
        Ok(Some(Pdu {
            ch,
            bytes,
            data,
            data_digest_error,
        }))
    }
}

/// The byte offset of the header field that broke a rule, for the C2HTermReq.
fn header_error(ch: CommonHeader, digests: Digests, limit: usize) -> Fatal {
    let Some(hlen) = ch.pdu_type.hlen() else {
        return Fatal::header_field(0);
    };
    if usize::from(ch.hlen) != hlen {
        return Fatal::header_field(2);
    }
    let want_header_digest = digests.header && matches!(ch.pdu_type.0, 0x04..=0x09);
    let carries_data = matches!(ch.pdu_type, PduType::C2H_DATA | PduType::H2C_DATA);
    if ch.has_header_digest() != want_header_digest
        || (carries_data && ch.has_data_digest() != digests.data)
    {
        return Fatal::header_field(1);
    }
    if ch.plen as usize > limit {
        return Fatal {
            fes: FatalErrorStatus::DATA_OUT_OF_RANGE,
            fei: 4,
        };
    }
    if ch.pdo != 0 {
        return Fatal::header_field(3);
    }
    Fatal::header_field(4)
}

/// How the target frames its PDUs on one connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Framing {
    pub digests: Digests,
    /// Host PDU data alignment (HPDA) from the ICReq.
    pub hpda: u8,
}

/// Builds a PDU of `pdu_type`: common header, `psh` (the rest of the header), digests
/// as negotiated (a digest is flipped when `corrupt_*` asks), padding and `data`.
pub(crate) fn build(
    framing: Framing,
    pdu_type: PduType,
    mut pdu_flags: u8,
    psh: &[u8],
    data: &[u8],
    corrupt_header: bool,
    corrupt_data: bool,
) -> Vec<u8> {
    let hlen = COMMON_HEADER_SIZE + psh.len();
    let hd = framing.digests.header && matches!(pdu_type.0, 0x04..=0x09);
    let dd = framing.digests.data && !data.is_empty();
    let header_bytes = hlen + if hd { DIGEST_SIZE } else { 0 };
    let (pdo, plen) = if data.is_empty() {
        (0, header_bytes)
    } else {
        let pdo = header_bytes + data_padding(header_bytes, framing.hpda);
        (pdo, pdo + data.len() + if dd { DIGEST_SIZE } else { 0 })
    };
    if hd {
        pdu_flags |= flags::HDGSTF;
    }
    if dd {
        pdu_flags |= flags::DDGSTF;
    }
    let ch = CommonHeader {
        pdu_type,
        flags: pdu_flags,
        hlen: hlen as u8,
        pdo: pdo as u8,
        plen: plen as u32,
    };
    let mut out = Vec::with_capacity(plen);
    out.extend_from_slice(&ch.to_bytes());
    out.extend_from_slice(psh);
    if hd {
        let mut d = digest(&out[..hlen]);
        if corrupt_header {
            d ^= 1;
        }
        out.extend_from_slice(&d.to_le_bytes());
    }
    if !data.is_empty() {
        out.resize(pdo, 0);
        out.extend_from_slice(data);
        if dd {
            let mut d = digest(data);
            if corrupt_data {
                d ^= 1;
            }
            out.extend_from_slice(&d.to_le_bytes());
        }
    }
    out
}

/// A C2HTermReq carrying `fatal`.
pub(crate) fn term_req(fatal: Fatal) -> [u8; SHORT_HLEN] {
    TermReq {
        fes: fatal.fes,
        fei: fatal.fei,
    }
    .to_bytes(PduType::C2H_TERM_REQ)
}

/// A malformed PDU of `kind`.
pub(crate) fn malformed(kind: MalformedPdu) -> Vec<u8> {
    let mut b = vec![0u8; SHORT_HLEN];
    let ch = match kind {
        MalformedPdu::WrongType => CommonHeader {
            pdu_type: PduType(0x0a),
            flags: 0,
            hlen: SHORT_HLEN as u8,
            pdo: 0,
            plen: SHORT_HLEN as u32,
        },
        MalformedPdu::WrongHlen => {
            b.resize(30, 0);
            CommonHeader {
                pdu_type: PduType::CAPSULE_RESP,
                flags: 0,
                hlen: 30,
                pdo: 0,
                plen: 30,
            }
        }
        MalformedPdu::PlenTooLarge => CommonHeader {
            pdu_type: PduType::CAPSULE_RESP,
            flags: 0,
            hlen: SHORT_HLEN as u8,
            pdo: 0,
            plen: 1 << 31,
        },
    };
    b[..COMMON_HEADER_SIZE].copy_from_slice(&ch.to_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_pdus_pass_the_spec_checks_and_digests_verify() {
        let framing = Framing {
            digests: Digests {
                header: true,
                data: true,
            },
            hpda: 3,
        };
        let data = vec![0x5a; 100];
        let b = build(
            framing,
            PduType::C2H_DATA,
            flags::LAST_PDU,
            &[0; 16],
            &data,
            false,
            false,
        );
        let mut rx = Rx {
            buf: b,
            ..Rx::default()
        };
        let pdu = rx.next(framing.digests, |_| 1 << 20).unwrap().unwrap();
        assert_eq!(
            pdu.ch.pdo, 32,
            "28 header bytes padded to 16-byte alignment"
        );
        assert_eq!(pdu.data(), &data[..]);
        assert!(!pdu.data_digest_error);
        let bad = build(
            framing,
            PduType::C2H_DATA,
            flags::LAST_PDU,
            &[0; 16],
            &data,
            false,
            true,
        );
        rx.buf = bad;
        assert!(
            rx.next(framing.digests, |_| 1 << 20)
                .unwrap()
                .unwrap()
                .data_digest_error
        );
        let bad = build(
            framing,
            PduType::C2H_DATA,
            flags::LAST_PDU,
            &[0; 16],
            &data,
            true,
            false,
        );
        rx.buf = bad;
        assert_eq!(
            rx.next(framing.digests, |_| 1 << 20).err().unwrap().fes,
            FatalErrorStatus::HEADER_DIGEST_ERROR
        );
    }

    #[test]
    fn malformed_pdus_fail_validation() {
        for kind in [
            MalformedPdu::WrongType,
            MalformedPdu::WrongHlen,
            MalformedPdu::PlenTooLarge,
        ] {
            let b = malformed(kind);
            let ch = CommonHeader::parse(b[..8].try_into().unwrap());
            assert!(
                ch.validate(Digests::default(), 1 << 20).is_err(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn header_errors_name_the_field() {
        let ok = CommonHeader {
            pdu_type: PduType::CAPSULE_CMD,
            flags: 0,
            hlen: 72,
            pdo: 0,
            plen: 72,
        };
        let d = Digests::default();
        let at = |ch: CommonHeader| header_error(ch, d, 8192).fei;
        assert_eq!(
            at(CommonHeader {
                pdu_type: PduType(0x0b),
                ..ok
            }),
            0
        );
        assert_eq!(at(CommonHeader { hlen: 24, ..ok }), 2);
        assert_eq!(
            at(CommonHeader {
                plen: 1 << 20,
                ..ok
            }),
            4
        );
        assert_eq!(
            at(CommonHeader {
                flags: flags::HDGSTF,
                ..ok
            }),
            1
        );
    }
}
