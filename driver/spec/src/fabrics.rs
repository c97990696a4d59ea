//! NVMe over Fabrics (NVMe Base Specification 2.0, section 6, and NVMe over Fabrics 1.1):
//! the Fabrics commands (Connect, Property Get and Set, Disconnect), their statuses, and
//! the Discovery log page.
//!
//! A Fabrics command is an SQE with opcode 7Fh whose byte 4 (where other commands keep
//! the NSID) holds the Fabrics Command Type; the command specific fields start at byte
//! 40 (CDW10). Data always goes by SGL, never PRP.

use crate::command::{Psdt, SubmissionEntry};
use crate::sgl::SglDescriptor;

/// The opcode of every Fabrics command.
pub const FABRICS_OPCODE: u8 = 0x7f;

/// The Keep Alive admin command's opcode.
pub const KEEP_ALIVE_OPCODE: u8 = 0x18;

/// The well-known NQN of a discovery controller.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// The Discovery log page identifier.
pub const DISCOVERY_LOG_PAGE: u8 = 0x70;

/// Bytes of the Connect command's data.
pub const CONNECT_DATA_SIZE: usize = 1024;

/// Longest NQN in bytes (without the terminating NUL).
pub const NQN_MAX: usize = 223;

/// The Controller ID a host asks for when any controller will do (dynamic model).
pub const CNTLID_DYNAMIC: u16 = 0xffff;

/// Fabrics Command Type (SQE byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FabricsType(pub u8);

impl FabricsType {
    /// Property Set.
    pub const PROPERTY_SET: Self = Self(0x00);
    /// Connect.
    pub const CONNECT: Self = Self(0x01);
    /// Property Get.
    pub const PROPERTY_GET: Self = Self(0x04);
    /// Authentication Send.
    pub const AUTH_SEND: Self = Self(0x05);
    /// Authentication Receive.
    pub const AUTH_RECEIVE: Self = Self(0x06);
    /// Disconnect (an I/O queue).
    pub const DISCONNECT: Self = Self(0x08);

    /// The command's name, or `None` for a reserved type.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "Property Set",
            0x01 => "Connect",
            0x04 => "Property Get",
            0x05 => "Authentication Send",
            0x06 => "Authentication Receive",
            0x08 => "Disconnect",
            _ => return None,
        })
    }
}

/// The Fabrics Command Type of `sqe`, when it is a Fabrics command.
pub const fn fabrics_type(sqe: &SubmissionEntry) -> Option<FabricsType> {
    if sqe.opcode() == FABRICS_OPCODE {
        Some(FabricsType(sqe.nsid as u8))
    } else {
        None
    }
}

fn fabrics_sqe(fctype: FabricsType) -> SubmissionEntry {
    let mut sqe = SubmissionEntry::new(FABRICS_OPCODE);
    sqe.nsid = u32::from(fctype.0);
    sqe
}

/// Connect attribute (CATTR bit 2): SQ flow control disabled, so the controller need
/// not report SQ head pointers and may end reads with a C2HData SUCCESS flag.
pub const CATTR_DISABLE_SQ_FLOW_CONTROL: u8 = 1 << 2;

/// A Connect command for queue `qid` with `sq_entries` entries (sent 0's based),
/// attributes `cattr` and a keep-alive timeout of `kato_ms` (admin queue only; 0
/// disables it). Its 1024 bytes of data ([`ConnectData`]) are described by `data`.
pub fn connect(
    qid: u16,
    sq_entries: u16,
    cattr: u8,
    kato_ms: u32,
    data: SglDescriptor,
) -> SubmissionEntry {
    let mut sqe = fabrics_sqe(FabricsType::CONNECT);
    // RECFMT 0 in bits 15:0, QID in bits 31:16.
    sqe.cdw10 = u32::from(qid) << 16;
    sqe.cdw11 = u32::from(sq_entries.saturating_sub(1)) | (u32::from(cattr) << 16);
    sqe.cdw12 = kato_ms;
    sqe.set_sgl(data, Psdt::SglMptrContiguous);
    sqe
}

/// Property size of a Property Get or Set (ATTRIB bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertySize {
    /// A 4-byte property.
    Four,
    /// An 8-byte property (CAP, ASQ, ACQ).
    Eight,
}

impl PropertySize {
    const fn attrib(self) -> u32 {
        match self {
            PropertySize::Four => 0,
            PropertySize::Eight => 1,
        }
    }
}

/// A Property Get of the property at register offset `offset`.
pub fn property_get(offset: u32, size: PropertySize) -> SubmissionEntry {
    let mut sqe = fabrics_sqe(FabricsType::PROPERTY_GET);
    sqe.cdw10 = size.attrib();
    sqe.cdw11 = offset;
    sqe
}

/// A Property Set of the property at register offset `offset` to `value`.
pub fn property_set(offset: u32, size: PropertySize, value: u64) -> SubmissionEntry {
    let mut sqe = fabrics_sqe(FabricsType::PROPERTY_SET);
    sqe.cdw10 = size.attrib();
    sqe.cdw11 = offset;
    sqe.cdw12 = value as u32;
    sqe.cdw13 = (value >> 32) as u32;
    sqe
}

/// A Disconnect of the queue the command is sent on.
pub fn disconnect() -> SubmissionEntry {
    fabrics_sqe(FabricsType::DISCONNECT)
}

/// A Keep Alive admin command.
pub fn keep_alive() -> SubmissionEntry {
    SubmissionEntry::new(KEEP_ALIVE_OPCODE)
}

/// The data of a Connect command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectData {
    /// The host identifier (a UUID).
    pub host_id: [u8; 16],
    /// The controller asked for: [`CNTLID_DYNAMIC`] for the admin queue, the
    /// controller the admin queue was given for an I/O queue.
    pub cntlid: u16,
    /// The subsystem's NQN.
    pub subnqn: String,
    /// The host's NQN.
    pub hostnqn: String,
}

impl ConnectData {
    /// The 1024 wire bytes. NQNs longer than [`NQN_MAX`] are refused.
    pub fn to_bytes(&self) -> Result<[u8; CONNECT_DATA_SIZE], crate::Error> {
        let mut b = [0u8; CONNECT_DATA_SIZE];
        b[..16].copy_from_slice(&self.host_id);
        b[16..18].copy_from_slice(&self.cntlid.to_le_bytes());
        for (nqn, at, what) in [
            (&self.subnqn, 256, "subsystem NQN"),
            (&self.hostnqn, 512, "host NQN"),
        ] {
            let bytes = nqn.as_bytes();
            if bytes.is_empty() || bytes.len() > NQN_MAX || bytes.contains(&0) {
                return Err(crate::Error::InvalidNqn {
                    what,
                    len: bytes.len(),
                });
            }
            b[at..at + bytes.len()].copy_from_slice(bytes);
        }
        Ok(b)
    }
}

/// Connect's command specific status codes (SCT 1), NVMe Base 2.0 Figure 523.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FabricsStatus(pub u8);

impl FabricsStatus {
    /// Incompatible Format: RECFMT not supported.
    pub const INCOMPATIBLE_FORMAT: Self = Self(0x80);
    /// Controller Busy: the controller is not ready to accept the queue.
    pub const CONTROLLER_BUSY: Self = Self(0x81);
    /// Connect Invalid Parameters: see the IATTR and IPO of the completion.
    pub const CONNECT_INVALID_PARAMETERS: Self = Self(0x82);
    /// Connect Restart Discovery: the subsystem moved.
    pub const CONNECT_RESTART_DISCOVERY: Self = Self(0x83);
    /// Connect Invalid Host: the host is not allowed on this subsystem.
    pub const CONNECT_INVALID_HOST: Self = Self(0x84);
    /// Invalid Queue Type.
    pub const INVALID_QUEUE_TYPE: Self = Self(0x85);
    /// Discover Restart: the discovery log changed while read.
    pub const DISCOVER_RESTART: Self = Self(0x90);
    /// Authentication Required.
    pub const AUTH_REQUIRED: Self = Self(0x91);
}

/// Where a Connect Invalid Parameters status points (completion dword 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidParameter {
    /// Whether the offset is into the Connect data (`true`) or the SQE.
    pub in_data: bool,
    /// The byte offset of the invalid field.
    pub offset: u16,
}

impl InvalidParameter {
    /// Decodes completion dword 0 (IPO bits 15:0, IATTR bits 23:16).
    pub const fn from_dw0(dw0: u32) -> Self {
        Self {
            in_data: (dw0 >> 16) & 1 == 1,
            offset: dw0 as u16,
        }
    }

    /// The field named by the offset, for messages.
    pub const fn field(&self) -> &'static str {
        if !self.in_data {
            return match self.offset {
                40..=41 => "RECFMT",
                42..=43 => "QID",
                44..=45 => "SQSIZE",
                46 => "CATTR",
                48..=51 => "KATO",
                _ => "a command field",
            };
        }
        match self.offset {
            0..=15 => "HOSTID",
            16..=17 => "CNTLID",
            256..=511 => "SUBNQN",
            512..=767 => "HOSTNQN",
            _ => "a data field",
        }
    }
}

/// Bytes of the Discovery log page header; entries follow.
pub const DISCOVERY_HEADER_SIZE: usize = 1024;
/// Bytes of one Discovery log page entry.
pub const DISCOVERY_ENTRY_SIZE: usize = 1024;

/// The header of the Discovery log page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryHeader {
    /// Generation counter: changes whenever the log changes.
    pub genctr: u64,
    /// Number of records.
    pub numrec: u64,
    /// Record format (0).
    pub recfmt: u16,
}

impl DiscoveryHeader {
    /// Decodes the first [`DISCOVERY_HEADER_SIZE`] bytes of the page (`None` if short).
    pub fn parse(page: &[u8]) -> Option<Self> {
        let b = page.get(..18)?;
        Some(Self {
            genctr: u64::from_le_bytes(b[0..8].try_into().ok()?),
            numrec: u64::from_le_bytes(b[8..16].try_into().ok()?),
            recfmt: u16::from_le_bytes([b[16], b[17]]),
        })
    }
}

/// One Discovery log page entry: how to reach one subsystem (or another discovery
/// controller) through one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryEntry {
    /// Transport type (TRTYPE): 1 RDMA, 2 Fibre Channel, 3 TCP, 254 loop.
    pub trtype: u8,
    /// Address family (ADRFAM): 1 IPv4, 2 IPv6, 3 InfiniBand, 4 Fibre Channel, 254 intra host.
    pub adrfam: u8,
    /// Subsystem type (SUBTYPE): 1 discovery referral, 2 NVM subsystem, 3 current discovery.
    pub subtype: u8,
    /// Transport requirements (TREQ): secure channel in bits 1:0, bit 2 SQ flow control
    /// disable supported.
    pub treq: u8,
    /// Port ID.
    pub portid: u16,
    /// Controller ID (FFFFh: dynamic).
    pub cntlid: u16,
    /// Admin queue size the controller supports at most.
    pub asqsz: u16,
    /// Entry flags (EFLAGS).
    pub eflags: u16,
    /// Transport service identifier (for TCP the port number, as text).
    pub trsvcid: String,
    /// The subsystem's NQN.
    pub subnqn: String,
    /// Transport address (for TCP an IP address, as text).
    pub traddr: String,
    /// Transport specific address subtype (for TCP byte 0 is SECTYPE).
    pub tsas: [u8; 256],
}

/// Reads a space- or NUL-padded ASCII field as text (invalid bytes replaced).
fn ascii_field(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_string()
}

impl DiscoveryEntry {
    /// Decodes one entry (`None` if `b` is shorter than [`DISCOVERY_ENTRY_SIZE`]).
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..DISCOVERY_ENTRY_SIZE)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let mut tsas = [0u8; 256];
        tsas.copy_from_slice(&b[768..1024]);
        Some(Self {
            trtype: b[0],
            adrfam: b[1],
            subtype: b[2],
            treq: b[3],
            portid: u16_at(4),
            cntlid: u16_at(6),
            asqsz: u16_at(8),
            eflags: u16_at(10),
            trsvcid: ascii_field(&b[32..64]),
            subnqn: ascii_field(&b[256..512]),
            traddr: ascii_field(&b[512..768]),
            tsas,
        })
    }

    /// The entry's wire bytes (text fields truncated to their width).
    pub fn to_bytes(&self) -> [u8; DISCOVERY_ENTRY_SIZE] {
        let mut b = [0u8; DISCOVERY_ENTRY_SIZE];
        b[0] = self.trtype;
        b[1] = self.adrfam;
        b[2] = self.subtype;
        b[3] = self.treq;
        b[4..6].copy_from_slice(&self.portid.to_le_bytes());
        b[6..8].copy_from_slice(&self.cntlid.to_le_bytes());
        b[8..10].copy_from_slice(&self.asqsz.to_le_bytes());
        b[10..12].copy_from_slice(&self.eflags.to_le_bytes());
        for (text, range) in [
            (&self.trsvcid, 32..64),
            (&self.subnqn, 256..512),
            (&self.traddr, 512..768),
        ] {
            let t = text.as_bytes();
            let n = t.len().min(range.len());
            b[range.start..range.start + n].copy_from_slice(&t[..n]);
        }
        b[768..1024].copy_from_slice(&self.tsas);
        b
    }

    /// TRTYPE as nvme-cli prints it.
    pub fn trtype_name(&self) -> &'static str {
        match self.trtype {
            1 => "rdma",
            2 => "fc",
            3 => "tcp",
            254 => "loop",
            _ => "unrecognized",
        }
    }

    /// ADRFAM as nvme-cli prints it.
    pub fn adrfam_name(&self) -> &'static str {
        match self.adrfam {
            1 => "ipv4",
            2 => "ipv6",
            3 => "infiniband",
            4 => "fibre-channel",
            254 => "intra-host",
            _ => "unrecognized",
        }
    }

    /// SUBTYPE as nvme-cli prints it.
    pub fn subtype_name(&self) -> &'static str {
        match self.subtype {
            1 => "discovery subsystem referral",
            2 => "nvme subsystem",
            3 => "current discovery subsystem",
            _ => "unrecognized",
        }
    }

    /// TREQ as nvme-cli prints it.
    pub fn treq_name(&self) -> String {
        let channel = match self.treq & 3 {
            0 => "not specified",
            1 => "required",
            2 => "not required",
            _ => "reserved",
        };
        if self.treq & 4 != 0 {
            format!("{channel}, sq flow control disable supported")
        } else {
            channel.to_string()
        }
    }

    /// The TCP security type (TSAS byte 0) as nvme-cli prints it.
    pub fn sectype_name(&self) -> &'static str {
        match self.tsas[0] {
            0 => "none",
            1 => "tls12",
            2 => "tls13",
            _ => "reserved",
        }
    }
}

/// The records of a Discovery log page: as many as `numrec` says and `page` holds.
pub fn discovery_entries(page: &[u8], numrec: u64) -> Vec<DiscoveryEntry> {
    page.get(DISCOVERY_HEADER_SIZE..)
        .unwrap_or(&[])
        .chunks_exact(DISCOVERY_ENTRY_SIZE)
        .take(usize::try_from(numrec).unwrap_or(usize::MAX))
        .filter_map(DiscoveryEntry::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgl::SglDescriptor;

    #[test]
    fn connect_fields_sit_at_their_byte_offsets() {
        let sqe = connect(3, 128, 4, 5000, SglDescriptor::data_block(0, 1024));
        let b = sqe.to_bytes();
        assert_eq!(b[0], 0x7f);
        assert_eq!(b[4], 0x01);
        assert_eq!(&b[40..42], &[0, 0]);
        assert_eq!(u16::from_le_bytes([b[42], b[43]]), 3);
        assert_eq!(u16::from_le_bytes([b[44], b[45]]), 127);
        assert_eq!(b[46], 4, "CATTR");
        assert_eq!(u32::from_le_bytes(b[48..52].try_into().unwrap()), 5000);
        assert_eq!(b[1] >> 6, 1, "PSDT selects SGL");
        assert_eq!(fabrics_type(&sqe), Some(FabricsType::CONNECT));
    }

    #[test]
    fn property_set_carries_offset_and_value() {
        let sqe = property_set(0x14, PropertySize::Four, 0x0046_0001);
        let b = sqe.to_bytes();
        assert_eq!(b[4], 0x00);
        assert_eq!(b[40], 0);
        assert_eq!(u32::from_le_bytes(b[44..48].try_into().unwrap()), 0x14);
        assert_eq!(
            u64::from_le_bytes(b[48..56].try_into().unwrap()),
            0x0046_0001
        );
        let get = property_get(0, PropertySize::Eight).to_bytes();
        assert_eq!((get[4], get[40]), (0x04, 1));
    }

    #[test]
    fn connect_data_places_ids_and_nqns() {
        let d = ConnectData {
            host_id: [7; 16],
            cntlid: 0xffff,
            subnqn: "nqn.2026-12.io.test:sub".into(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:1".into(),
        };
        let b = d.to_bytes().unwrap();
        assert_eq!(&b[..16], &[7; 16]);
        assert_eq!(&b[16..18], &[0xff, 0xff]);
        assert_eq!(&b[256..279], b"nqn.2026-12.io.test:sub");
        assert_eq!(b[279], 0);
        assert!(b[512..].starts_with(b"nqn.2014-08.org.nvmexpress:uuid:1"));
        let long = ConnectData {
            subnqn: "n".repeat(224),
            ..d
        };
        assert!(long.to_bytes().is_err());
    }

    #[test]
    fn invalid_parameter_names_the_field() {
        let p = InvalidParameter::from_dw0((1 << 16) | 256);
        assert!(p.in_data);
        assert_eq!(p.field(), "SUBNQN");
        assert_eq!(InvalidParameter::from_dw0(44).field(), "SQSIZE");
    }

    #[test]
    fn discovery_entry_round_trips_and_prints_nvme_cli_names() {
        let e = DiscoveryEntry {
            trtype: 3,
            adrfam: 1,
            subtype: 2,
            treq: 2 | 4,
            portid: 1,
            cntlid: 0xffff,
            asqsz: 32,
            eflags: 0,
            trsvcid: "4420".into(),
            subnqn: "nqn.2026-12.io.test:sub".into(),
            traddr: "127.0.0.1".into(),
            tsas: [0; 256],
        };
        let mut page = vec![0u8; DISCOVERY_HEADER_SIZE + DISCOVERY_ENTRY_SIZE];
        page[0..8].copy_from_slice(&9u64.to_le_bytes());
        page[8..16].copy_from_slice(&1u64.to_le_bytes());
        page[1024..].copy_from_slice(&e.to_bytes());
        let h = DiscoveryHeader::parse(&page).unwrap();
        assert_eq!((h.genctr, h.numrec), (9, 1));
        let got = discovery_entries(&page, h.numrec);
        assert_eq!(got, vec![e.clone()]);
        assert_eq!(e.trtype_name(), "tcp");
        assert_eq!(e.adrfam_name(), "ipv4");
        assert_eq!(e.subtype_name(), "nvme subsystem");
        assert_eq!(
            e.treq_name(),
            "not required, sq flow control disable supported"
        );
        assert_eq!(e.sectype_name(), "none");
        // A record count larger than the page holds is bounded by the page.
        assert_eq!(discovery_entries(&page, u64::MAX).len(), 1);
    }
}
