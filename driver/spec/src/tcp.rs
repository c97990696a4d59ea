//! The NVMe/TCP Transport Specification (1.0): PDU headers and digests.
//!
//! Every PDU starts with an 8-byte common header: PDU type, flags, header length
//! (HLEN), PDU data offset (PDO) and PDU length (PLEN, the whole PDU). The PDU specific
//! header follows up to HLEN; then, when enabled, a 4-byte header digest (CRC-32C of
//! the header); then padding up to PDO, the data, and a 4-byte data digest.

use crate::Error;

/// The TCP port NVMe/TCP listens on by default (IANA).
pub const DEFAULT_PORT: u16 = 4420;
/// The TCP port of a discovery controller by default (8009 is the IANA port, but
/// Linux nvmet and nvme-cli use 4420 for both).
pub const DEFAULT_DISCOVERY_PORT: u16 = 4420;

/// Bytes of the common header.
pub const COMMON_HEADER_SIZE: usize = 8;
/// HLEN (and PLEN) of ICReq and ICResp.
pub const IC_PDU_SIZE: usize = 128;
/// HLEN of a Command Capsule: common header and the 64-byte SQE.
pub const CAPSULE_CMD_HLEN: usize = 72;
/// HLEN of a Response Capsule: common header and the 16-byte CQE.
pub const CAPSULE_RESP_HLEN: usize = 24;
/// HLEN of H2CData, C2HData, R2T and the termination requests.
pub const SHORT_HLEN: usize = 24;
/// Bytes of a header or data digest.
pub const DIGEST_SIZE: usize = 4;
/// Largest PDU header with its digest: what a receiver must buffer before data.
pub const MAX_HEADER_SIZE: usize = IC_PDU_SIZE + DIGEST_SIZE;

/// PDU type (common header byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PduType(pub u8);

impl PduType {
    /// Initialize Connection Request (host to controller).
    pub const IC_REQ: Self = Self(0x00);
    /// Initialize Connection Response.
    pub const IC_RESP: Self = Self(0x01);
    /// Host to controller termination request.
    pub const H2C_TERM_REQ: Self = Self(0x02);
    /// Controller to host termination request.
    pub const C2H_TERM_REQ: Self = Self(0x03);
    /// Command Capsule.
    pub const CAPSULE_CMD: Self = Self(0x04);
    /// Response Capsule.
    pub const CAPSULE_RESP: Self = Self(0x05);
    /// Host to controller data.
    pub const H2C_DATA: Self = Self(0x06);
    /// Controller to host data.
    pub const C2H_DATA: Self = Self(0x07);
    /// Ready to Transfer: the controller asks for write data.
    pub const R2T: Self = Self(0x09);

    /// The type's name, for messages.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x00 => "ICReq",
            0x01 => "ICResp",
            0x02 => "H2CTermReq",
            0x03 => "C2HTermReq",
            0x04 => "CapsuleCmd",
            0x05 => "CapsuleResp",
            0x06 => "H2CData",
            0x07 => "C2HData",
            0x09 => "R2T",
            _ => "unknown",
        }
    }

    /// The HLEN every PDU of this type has, `None` for a reserved type.
    pub const fn hlen(self) -> Option<usize> {
        Some(match self.0 {
            0x00 | 0x01 => IC_PDU_SIZE,
            0x04 => CAPSULE_CMD_HLEN,
            0x05 => CAPSULE_RESP_HLEN,
            0x02 | 0x03 | 0x06 | 0x07 | 0x09 => SHORT_HLEN,
            _ => return None,
        })
    }

    /// Whether PDUs of this type may carry a header digest.
    const fn digests_header(self) -> bool {
        matches!(self.0, 0x04..=0x09)
    }
}

/// Common header flags (byte 1).
pub mod flags {
    /// A header digest follows the header.
    pub const HDGSTF: u8 = 1 << 0;
    /// A data digest follows the data.
    pub const DDGSTF: u8 = 1 << 1;
    /// The last data PDU of a transfer (H2CData, C2HData).
    pub const LAST_PDU: u8 = 1 << 2;
    /// C2HData only: the command succeeded and no Response Capsule follows.
    pub const SUCCESS: u8 = 1 << 3;
}

/// The 8-byte common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// PDU type.
    pub pdu_type: PduType,
    /// Flags ([`flags`]).
    pub flags: u8,
    /// Header length.
    pub hlen: u8,
    /// PDU data offset (0 when the PDU carries no data).
    pub pdo: u8,
    /// PDU length, header to last digest.
    pub plen: u32,
}

impl CommonHeader {
    /// Decodes the first 8 bytes of a PDU.
    pub fn parse(b: &[u8; COMMON_HEADER_SIZE]) -> Self {
        Self {
            pdu_type: PduType(b[0]),
            flags: b[1],
            hlen: b[2],
            pdo: b[3],
            plen: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The 8 wire bytes.
    pub fn to_bytes(self) -> [u8; COMMON_HEADER_SIZE] {
        let p = self.plen.to_le_bytes();
        [
            self.pdu_type.0,
            self.flags,
            self.hlen,
            self.pdo,
            p[0],
            p[1],
            p[2],
            p[3],
        ]
    }

    /// Whether a header digest follows the header.
    pub const fn has_header_digest(&self) -> bool {
        self.flags & flags::HDGSTF != 0
    }

    /// Whether a data digest follows the data.
    pub const fn has_data_digest(&self) -> bool {
        self.flags & flags::DDGSTF != 0
    }

    /// Bytes of header plus header digest: where padding or data begins.
    pub const fn header_bytes(&self) -> usize {
        self.hlen as usize
            + if self.has_header_digest() {
                DIGEST_SIZE
            } else {
                0
            }
    }

    /// Bytes of data the PDU carries (0 without data).
    pub fn data_len(&self) -> usize {
        if self.pdo == 0 {
            return 0;
        }
        let digest = if self.has_data_digest() {
            DIGEST_SIZE
        } else {
            0
        };
        (self.plen as usize).saturating_sub(self.pdo as usize + digest)
    }

    /// Checks a received header against the transport rules before anything else of
    /// the PDU is read: a known type, its fixed HLEN, digests exactly as negotiated,
    /// a PDO (when data is present) past the header, and a PLEN that covers it all and
    /// stays within `max_plen`.
    pub fn validate(&self, digests: Digests, max_plen: usize) -> Result<(), Error> {
        let name = self.pdu_type.name();
        let bad = |detail: String| Error::InvalidPdu { pdu: name, detail };
        let Some(hlen) = self.pdu_type.hlen() else {
            return Err(bad(format!(
                "PDU type {:#04x} is reserved",
                self.pdu_type.0
            )));
        };
        if usize::from(self.hlen) != hlen {
            return Err(bad(format!("HLEN is {}, not {hlen}", self.hlen)));
        }
        let want_hdgst = digests.header && self.pdu_type.digests_header();
        if self.has_header_digest() != want_hdgst {
            return Err(bad(format!(
                "the header digest flag is {}, but header digests were negotiated {}",
                self.has_header_digest(),
                if digests.header { "on" } else { "off" }
            )));
        }
        let carries_data = matches!(self.pdu_type, PduType::C2H_DATA | PduType::H2C_DATA);
        if carries_data && self.has_data_digest() != digests.data {
            return Err(bad(format!(
                "the data digest flag is {}, but data digests were negotiated {}",
                self.has_data_digest(),
                if digests.data { "on" } else { "off" }
            )));
        }
        let plen = self.plen as usize;
        if plen > max_plen {
            return Err(bad(format!(
                "PLEN {plen} exceeds the {max_plen} bytes allowed"
            )));
        }
        let header = self.header_bytes();
        if self.pdo == 0 {
            let terminating =
                matches!(self.pdu_type, PduType::C2H_TERM_REQ | PduType::H2C_TERM_REQ);
            if carries_data || (!terminating && plen != header) {
                return Err(bad(format!(
                    "PLEN {plen} with no data (PDO 0) should be {header}"
                )));
            }
            if plen < header {
                return Err(bad(format!("PLEN {plen} is shorter than the header")));
            }
            return Ok(());
        }
        let digest = if self.has_data_digest() {
            DIGEST_SIZE
        } else {
            0
        };
        if usize::from(self.pdo) < header || plen < usize::from(self.pdo) + digest {
            return Err(bad(format!(
                "PDO {} and PLEN {plen} do not fit a {header}-byte header",
                self.pdo
            )));
        }
        Ok(())
    }
}

/// Which digests a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    /// Header digests (HDGST).
    pub header: bool,
    /// Data digests (DDGST).
    pub data: bool,
}

impl Digests {
    const fn to_bits(self) -> u8 {
        (self.header as u8) | ((self.data as u8) << 1)
    }

    const fn from_bits(b: u8) -> Self {
        Self {
            header: b & 1 != 0,
            data: b & 2 != 0,
        }
    }
}

/// Initialize Connection Request: the host's first PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcReq {
    /// PDU format version (0).
    pub pfv: u16,
    /// Host PDU data alignment, in dwords 0's based: where the host wants data in
    /// controller-to-host PDUs to start.
    pub hpda: u8,
    /// Digests the host asks for.
    pub digests: Digests,
    /// Most outstanding R2Ts per command, 0's based.
    pub maxr2t: u32,
}

impl IcReq {
    /// The 128 wire bytes.
    pub fn to_bytes(&self) -> [u8; IC_PDU_SIZE] {
        IcFields {
            pfv: self.pfv,
            pda: self.hpda,
            digests: self.digests,
            value: self.maxr2t,
        }
        .to_bytes(PduType::IC_REQ)
    }

    /// Decodes the 128 bytes of an ICReq (for a target).
    pub fn parse(b: &[u8; IC_PDU_SIZE]) -> Result<Self, Error> {
        let f = IcFields::parse(b, PduType::IC_REQ)?;
        Ok(Self {
            pfv: f.pfv,
            hpda: f.pda,
            digests: f.digests,
            maxr2t: f.value,
        })
    }
}

/// Initialize Connection Response: the controller's answer to [`IcReq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcResp {
    /// PDU format version (0).
    pub pfv: u16,
    /// Controller PDU data alignment, in dwords 0's based: where data in host-to-
    /// controller PDUs must start.
    pub cpda: u8,
    /// Digests the controller enabled.
    pub digests: Digests,
    /// Most data bytes in one H2CData PDU.
    pub maxh2cdata: u32,
}

impl IcResp {
    /// The 128 wire bytes (for a target).
    pub fn to_bytes(&self) -> [u8; IC_PDU_SIZE] {
        IcFields {
            pfv: self.pfv,
            pda: self.cpda,
            digests: self.digests,
            value: self.maxh2cdata,
        }
        .to_bytes(PduType::IC_RESP)
    }

    /// Decodes an ICResp, checking its header, version and MAXH2CDATA (at least 4 KiB
    /// and a dword multiple, as the specification requires).
    pub fn parse(b: &[u8; IC_PDU_SIZE]) -> Result<Self, Error> {
        let f = IcFields::parse(b, PduType::IC_RESP)?;
        let r = Self {
            pfv: f.pfv,
            cpda: f.pda,
            digests: f.digests,
            maxh2cdata: f.value,
        };
        let bad = |detail: String| Error::InvalidPdu {
            pdu: "ICResp",
            detail,
        };
        if r.pfv != 0 {
            return Err(bad(format!("PDU format version {} is not 0", r.pfv)));
        }
        if r.maxh2cdata < 4096 || r.maxh2cdata % 4 != 0 {
            return Err(bad(format!(
                "MAXH2CDATA {} is not a dword multiple of at least 4096",
                r.maxh2cdata
            )));
        }
        if r.cpda > 31 {
            return Err(bad(format!("CPDA {} is above 31", r.cpda)));
        }
        Ok(r)
    }
}

/// The fields ICReq and ICResp share the layout of: PFV (bytes 8-9), a PDU data
/// alignment (byte 10), the digests (byte 11) and MAXR2T or MAXH2CDATA (bytes 12-15).
struct IcFields {
    pfv: u16,
    pda: u8,
    digests: Digests,
    value: u32,
}

impl IcFields {
    fn to_bytes(&self, pdu_type: PduType) -> [u8; IC_PDU_SIZE] {
        let mut b = [0u8; IC_PDU_SIZE];
        b[..8].copy_from_slice(
            &CommonHeader {
                pdu_type,
                flags: 0,
                hlen: IC_PDU_SIZE as u8,
                pdo: 0,
                plen: IC_PDU_SIZE as u32,
            }
            .to_bytes(),
        );
        b[8..10].copy_from_slice(&self.pfv.to_le_bytes());
        b[10] = self.pda;
        b[11] = self.digests.to_bits();
        b[12..16].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    fn parse(b: &[u8; IC_PDU_SIZE], want: PduType) -> Result<Self, Error> {
        let ch = CommonHeader::parse(b[..8].try_into().expect("8 bytes"));
        check_ic(ch, want)?;
        Ok(Self {
            pfv: u16::from_le_bytes([b[8], b[9]]),
            pda: b[10],
            digests: Digests::from_bits(b[11]),
            value: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

fn check_ic(ch: CommonHeader, want: PduType) -> Result<(), Error> {
    let bad = |detail: String| Error::InvalidPdu {
        pdu: want.name(),
        detail,
    };
    if ch.pdu_type != want {
        return Err(bad(format!(
            "expected {} but got PDU type {:#04x} ({})",
            want.name(),
            ch.pdu_type.0,
            ch.pdu_type.name()
        )));
    }
    if usize::from(ch.hlen) != IC_PDU_SIZE || ch.plen as usize != IC_PDU_SIZE || ch.pdo != 0 {
        return Err(bad(format!(
            "HLEN {}, PDO {}, PLEN {}: all must be 128, 0, 128",
            ch.hlen, ch.pdo, ch.plen
        )));
    }
    Ok(())
}

/// The PDU specific header of H2CData, C2HData and R2T (bytes 8 to 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferHeader {
    /// Command Capsule CID: the command the data belongs to.
    pub cccid: u16,
    /// Transfer tag (R2T and H2CData; reserved in C2HData).
    pub ttag: u16,
    /// Offset of the data in the command's transfer (DATAO, R2TO).
    pub offset: u32,
    /// Bytes of data (DATAL, R2TL).
    pub length: u32,
}

impl TransferHeader {
    /// Decodes bytes 8 to 23 of a [`SHORT_HLEN`] header.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(8..20)?;
        Some(Self {
            cccid: u16::from_le_bytes([b[0], b[1]]),
            ttag: u16::from_le_bytes([b[2], b[3]]),
            offset: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// A whole header of type `pdu_type` with common header `ch` and these fields.
    pub fn to_bytes(&self, ch: CommonHeader) -> [u8; SHORT_HLEN] {
        let mut b = [0u8; SHORT_HLEN];
        b[..8].copy_from_slice(&ch.to_bytes());
        b[8..10].copy_from_slice(&self.cccid.to_le_bytes());
        b[10..12].copy_from_slice(&self.ttag.to_le_bytes());
        b[12..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.length.to_le_bytes());
        b
    }
}

/// Fatal Error Status of a termination request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FatalErrorStatus(pub u16);

impl FatalErrorStatus {
    /// Invalid PDU Header Field.
    pub const INVALID_HEADER_FIELD: Self = Self(0x01);
    /// PDU Sequence Error.
    pub const SEQUENCE_ERROR: Self = Self(0x02);
    /// Header Digest Error.
    pub const HEADER_DIGEST_ERROR: Self = Self(0x03);
    /// Data Transfer Out of Range.
    pub const DATA_OUT_OF_RANGE: Self = Self(0x04);
    /// R2T Limit Exceeded.
    pub const R2T_LIMIT_EXCEEDED: Self = Self(0x05);
    /// Unsupported Parameter.
    pub const UNSUPPORTED_PARAMETER: Self = Self(0x06);

    /// The status as a phrase.
    pub const fn describe(self) -> &'static str {
        match self.0 {
            0x01 => "invalid PDU header field",
            0x02 => "PDU sequence error",
            0x03 => "header digest error",
            0x04 => "data transfer out of range",
            0x05 => "R2T limit exceeded",
            0x06 => "unsupported parameter",
            _ => "reserved fatal error status",
        }
    }
}

/// A termination request's fields (bytes 8 to 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermReq {
    /// Fatal error status.
    pub fes: FatalErrorStatus,
    /// Fatal error information (for a header field error, the field's byte offset).
    pub fei: u32,
}

impl TermReq {
    /// Decodes bytes 8 to 13 of a termination request header.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(8..14)?;
        Some(Self {
            fes: FatalErrorStatus(u16::from_le_bytes([b[0], b[1]])),
            fei: u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
        })
    }

    /// A termination request header of `pdu_type` (H2C or C2H) with no error data.
    pub fn to_bytes(&self, pdu_type: PduType) -> [u8; SHORT_HLEN] {
        let mut b = [0u8; SHORT_HLEN];
        b[..8].copy_from_slice(
            &CommonHeader {
                pdu_type,
                flags: 0,
                hlen: SHORT_HLEN as u8,
                pdo: 0,
                plen: SHORT_HLEN as u32,
            }
            .to_bytes(),
        );
        b[8..10].copy_from_slice(&self.fes.0.to_le_bytes());
        b[10..14].copy_from_slice(&self.fei.to_le_bytes());
        b
    }
}

/// CRC-32C (Castagnoli), the header and data digest.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The digest of `bytes`.
pub fn digest(bytes: &[u8]) -> u32 {
    CRC32C.checksum(bytes)
}

/// Bytes of padding after a header of `header_bytes` so data starts at a multiple of
/// `(pda + 1) * 4` (PDA from ICReq/ICResp).
pub const fn data_padding(header_bytes: usize, pda: u8) -> usize {
    let align = (pda as usize + 1) * 4;
    header_bytes.next_multiple_of(align) - header_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icreq_layout() {
        let b = IcReq {
            pfv: 0,
            hpda: 0,
            digests: Digests {
                header: true,
                data: false,
            },
            maxr2t: 0,
        }
        .to_bytes();
        assert_eq!(&b[..8], &[0, 0, 128, 0, 128, 0, 0, 0]);
        assert_eq!(b[11], 1);
        assert!(IcReq::parse(&b).unwrap().digests.header);
    }

    #[test]
    fn icresp_checks_its_fields() {
        let r = IcResp {
            pfv: 0,
            cpda: 0,
            digests: Digests::default(),
            maxh2cdata: 131072,
        };
        assert_eq!(IcResp::parse(&r.to_bytes()).unwrap(), r);
        let small = IcResp {
            maxh2cdata: 100,
            ..r
        };
        assert!(IcResp::parse(&small.to_bytes()).is_err());
        let mut wrong = r.to_bytes();
        wrong[0] = 5;
        let e = IcResp::parse(&wrong).unwrap_err().to_string();
        assert!(e.contains("expected ICResp"), "{e}");
    }

    #[test]
    fn header_validation_catches_each_rule() {
        let d = Digests::default();
        let ok = CommonHeader {
            pdu_type: PduType::C2H_DATA,
            flags: flags::LAST_PDU,
            hlen: 24,
            pdo: 24,
            plen: 24 + 4096,
        };
        ok.validate(d, 1 << 20).unwrap();
        assert_eq!(ok.data_len(), 4096);
        let cases = [
            CommonHeader { hlen: 72, ..ok },
            CommonHeader {
                pdu_type: PduType(0x0a),
                ..ok
            },
            CommonHeader { pdo: 8, ..ok },
            CommonHeader { plen: 10, ..ok },
            CommonHeader {
                flags: flags::HDGSTF,
                ..ok
            },
            CommonHeader {
                plen: 2 << 20,
                ..ok
            },
            CommonHeader { pdo: 0, ..ok },
        ];
        for c in cases {
            assert!(c.validate(d, 1 << 20).is_err(), "{c:?} passed");
        }
        let resp = CommonHeader {
            pdu_type: PduType::CAPSULE_RESP,
            flags: flags::HDGSTF,
            hlen: 24,
            pdo: 0,
            plen: 28,
        };
        resp.validate(
            Digests {
                header: true,
                data: false,
            },
            1 << 20,
        )
        .unwrap();
        assert!(resp.validate(d, 1 << 20).is_err());
    }

    #[test]
    fn crc32c_matches_the_rfc_3720_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(digest(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(digest(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn padding_aligns_data() {
        assert_eq!(data_padding(72, 0), 0);
        assert_eq!(data_padding(76, 3), 4);
        assert_eq!(data_padding(24, 7), 8);
    }

    #[test]
    fn transfer_header_round_trips() {
        let t = TransferHeader {
            cccid: 7,
            ttag: 9,
            offset: 4096,
            length: 8192,
        };
        let ch = CommonHeader {
            pdu_type: PduType::H2C_DATA,
            flags: flags::LAST_PDU,
            hlen: 24,
            pdo: 24,
            plen: 24 + 8192,
        };
        let b = t.to_bytes(ch);
        assert_eq!(TransferHeader::parse(&b), Some(t));
        assert_eq!(CommonHeader::parse(b[..8].try_into().unwrap()), ch);
    }
}
