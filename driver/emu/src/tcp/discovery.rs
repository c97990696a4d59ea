//! The discovery controller: its registers, its Identify Controller page and the
//! Discovery log page (Get Log Page 70h) that lists the NVM subsystem.

use nvme_spec::fabrics::{
    DiscoveryEntry, DISCOVERY_ENTRY_SIZE, DISCOVERY_HEADER_SIZE, DISCOVERY_NQN,
};
use nvme_spec::identify::IdentifyController;
use nvme_spec::registers::offset;
use nvme_spec::status::GenericStatus as G;
use nvme_spec::Status;

use super::Shared;

/// CAP: MQES 31 (32 entries), CQR, TO 15 (7.5 s), CSS bit 37 (NVM command set).
const CAP: u64 = 31 | (1 << 16) | (15 << 24) | (1 << 37);
/// VS: 1.3.0.
const VS: u32 = 0x0001_0300;

/// Property Get on the discovery controller, whose CC is `cc`.
pub(crate) fn property_get(cc: u32, at: usize, eight: bool) -> Result<u64, Status> {
    let shn = (cc >> 14) & 3;
    let csts = (cc & 1) | if shn != 0 { 2 << 2 } else { 0 };
    match (at, eight) {
        (offset::CAP, true) => Ok(CAP),
        (offset::VS, false) => Ok(u64::from(VS)),
        (offset::CC, false) => Ok(u64::from(cc)),
        (offset::CSTS, false) => Ok(u64::from(csts)),
        _ => Err(Status::generic(G::InvalidFieldInCommand).with_dnr(true)),
    }
}

/// The discovery controller's Identify Controller page.
pub(crate) fn identify(shared: &Shared, cntlid: u16) -> Vec<u8> {
    let mut id = IdentifyController::default();
    id.set_serial_number(&shared.emu.config().serial);
    id.set_model_number("nvme-emu NVMe/TCP discovery");
    id.cntlid = cntlid;
    id.ver = nvme_spec::Version::from_bits(VS);
    id.cntrltype = 2;
    // Log Page Attributes bit 2: extended data (offsets) for Get Log Page.
    id.lpa = nvme_spec::identify::Lpa::from_bits(1 << 2);
    id.kas = super::conn::KAS;
    id.maxcmd = 32;
    id.sgls = super::conn::fabrics_sgls();
    let nqn = DISCOVERY_NQN.as_bytes();
    id.subnqn[..nqn.len()].copy_from_slice(nqn);
    super::conn::set_fabrics_fields(&mut id, super::ADMIN_IN_CAPSULE_DATA);
    id.encode().to_vec()
}

/// The Discovery log page: one entry, the NVM subsystem on this port.
pub(crate) fn log_page(shared: &Shared) -> Vec<u8> {
    let entry = DiscoveryEntry {
        trtype: 3,
        adrfam: if shared.local.is_ipv4() { 1 } else { 2 },
        subtype: 2,
        // Secure channel not required; SQ flow control disable supported.
        treq: 2 | 4,
        portid: 1,
        cntlid: nvme_spec::fabrics::CNTLID_DYNAMIC,
        asqsz: 32,
        eflags: 0,
        trsvcid: shared.local.port().to_string(),
        subnqn: shared.cfg.subsystem_nqn.clone(),
        traddr: shared.local.ip().to_string(),
        tsas: [0; 256],
    };
    let mut page = vec![0u8; DISCOVERY_HEADER_SIZE + DISCOVERY_ENTRY_SIZE];
    page[0..8].copy_from_slice(&1u64.to_le_bytes());
    page[8..16].copy_from_slice(&1u64.to_le_bytes());
    page[DISCOVERY_HEADER_SIZE..].copy_from_slice(&entry.to_bytes());
    page
}
