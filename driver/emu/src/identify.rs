//! Identify data and log pages as this controller reports them, built with the
//! `nvme-spec` structures.

use nvme_spec::identify::{
    CommandSetId, Dlfeat, Dpc, Dps, Flbas, Frmw, Fuses, Lpa, Mc, NamespaceIds, Oacs, Oncs,
    QueueEntrySize, Sgls, Vwc,
};
use nvme_spec::log::ErrorLogEntry;
use nvme_spec::{IdentifyController, IdentifyNamespace, LbaFormat, SmartLog, Status, Version};
use zerocopy::little_endian::{U128, U16};

use crate::config::{EmuConfig, MetadataFormat};

/// Model number reported by Identify Controller.
pub const MODEL: &str = "Rust Emulated NVMe Controller";
/// Firmware revision reported by Identify Controller.
pub const FIRMWARE: &str = "1.0";
/// PCI vendor id reported (the one QEMU's emulated controller uses).
pub const VENDOR_ID: u16 = 0x1b36;
/// Error Log Page Entries (zero based): 64 entries.
pub(crate) const ELPE: u8 = 63;
/// Abort Command Limit (zero based): 4 concurrent Aborts.
const ACL: u8 = 3;

/// Identify Controller (CNS 01h).
pub(crate) fn controller(cfg: &EmuConfig, vwc_present: bool) -> [u8; 4096] {
    let mut id = IdentifyController {
        vid: VENDOR_ID,
        ssvid: VENDOR_ID,
        ..Default::default()
    };
    id.set_serial_number(&cfg.serial);
    id.set_model_number(MODEL);
    id.set_firmware_revision(FIRMWARE);
    id.rab = 6;
    id.ieee = [0x00, 0x54, 0x52];
    id.mdts = cfg.mdts;
    [id.crdt1, id.crdt2, id.crdt3] = cfg.crdt;
    id.cntlid = 1;
    id.ver = Version::V1_4;
    id.oaes = 1 << 8; // namespace attribute notices
                      // Extended LBA formats: each format's guard size in Identify CNS 05h.
    id.ctratt = nvme_spec::identify::CTRATT_ELBAS;
    id.cntrltype = 1; // I/O controller
    id.oacs = Oacs::new().with_doorbell_buffer_config(true);
    id.acl = ACL;
    id.aerl = cfg.aerl;
    id.frmw = Frmw::new().with_slots(1).with_slot1_read_only(true);
    id.lpa = Lpa::new().with_extended_data(true);
    id.elpe = ELPE;
    id.sqes = QueueEntrySize::new().with_required(6).with_maximum(6);
    id.cqes = QueueEntrySize::new().with_required(4).with_maximum(4);
    id.maxcmd = cfg.mqes.saturating_add(1);
    id.nn = cfg.namespaces;
    id.oncs = Oncs::new()
        .with_compare(true)
        .with_dataset_management(true)
        .with_write_zeroes(true)
        .with_verify(true);
    id.fuses = Fuses::new().with_compare_and_write(cfg.fuses);
    // Flush with NSID FFFFFFFFh applies to every namespace (flush_broadcast = 11b).
    id.vwc = if vwc_present {
        Vwc::new().with_present(true).with_flush_broadcast(0b11)
    } else {
        Vwc::new()
    };
    // SGLs without an alignment rule, and metadata SGLs through MPTR (PSDT 10b).
    id.sgls = if cfg.sgl {
        Sgls::new().with_support(1).with_mptr_sgl(true)
    } else {
        Sgls::new()
    };
    let nqn = format!("nqn.2014-08.org.nvmexpress:emu:{}", cfg.serial);
    let n = nqn.len().min(id.subnqn.len() - 1);
    id.subnqn[..n].copy_from_slice(&nqn.as_bytes()[..n]);
    id.psd[..2].copy_from_slice(&2500u16.to_le_bytes()); // PSD0 max power: 25 W
    id.encode()
}

/// IEEE Extended Unique Identifier of namespace `nsid`: `RUST` then the NSID.
fn eui64(nsid: u32) -> [u8; 8] {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(b"RUST");
    id[4..].copy_from_slice(&nsid.to_be_bytes());
    id
}

/// Namespace Globally Unique Identifier of namespace `nsid` of the controller with
/// serial number `serial`: the serial's 64-bit FNV-1a hash, `RUST`, then the NSID,
/// so namespaces of controllers with different serials differ.
fn nguid(serial: &str, nsid: u32) -> [u8; 16] {
    let hash = serial.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hash.to_be_bytes());
    id[8..12].copy_from_slice(b"RUST");
    id[12..].copy_from_slice(&nsid.to_be_bytes());
    id
}

/// Namespace Identification Descriptor list (CNS 03h): the same EUI-64 and NGUID as
/// Identify Namespace, and the command set identifier (NVM, or Zoned with `zoned`).
pub(crate) fn namespace_descriptors(serial: &str, nsid: u32, zoned: bool) -> [u8; 4096] {
    NamespaceIds {
        eui64: Some(eui64(nsid)),
        nguid: Some(nguid(serial, nsid)),
        uuid: None,
        csi: Some(if zoned {
            CommandSetId::ZONED
        } else {
            CommandSetId::NVM
        }),
    }
    .encode()
}

/// Zoned Namespace Command Set Identify Namespace (CNS 05h, CSI 02h): the resource
/// limits and the zone size of the one LBA format; no zone descriptor extension, no
/// reads across zone boundaries.
pub(crate) fn namespace_zns(zones: &crate::zns::Zones) -> [u8; 4096] {
    let mut id = nvme_spec::zns::IdentifyNamespaceZns::default();
    id.set_max_active_zones(Some(zones.max_active));
    id.set_max_open_zones(Some(zones.max_open));
    id.lbafe[0].zsze = zones.zone_blocks;
    id.encode()
}

/// Identify Namespace (CNS 00h) for a namespace of `blocks` blocks of `1 << lba_shift`
/// data bytes and `md` metadata on the controller with serial number `serial`.
pub(crate) fn namespace(
    serial: &str,
    nsid: u32,
    blocks: u64,
    lba_shift: u32,
    md: MetadataFormat,
) -> [u8; 4096] {
    let mut id = IdentifyNamespace {
        nsze: blocks,
        ncap: blocks,
        nuse: blocks,
        ..Default::default()
    };
    // Deallocated blocks read as zeros; Write Zeroes may deallocate.
    id.dlfeat = Dlfeat::new()
        .with_read_behavior(1)
        .with_write_zeroes_deallocate(true);
    id.eui64 = eui64(nsid);
    id.nguid = nguid(serial, nsid);
    id.lbaf[0] = LbaFormat::with_sizes(lba_shift as u8, md.size);
    if md.size != 0 {
        id.flbas = Flbas::new().with_extended_metadata(!md.separate);
        id.mc = Mc::new()
            .with_extended(!md.separate)
            .with_separate(md.separate);
    }
    if md.pi != 0 {
        id.dpc = Dpc::new()
            .with_type1(md.pi == 1)
            .with_type2(md.pi == 2)
            .with_type3(md.pi == 3)
            .with_first(md.pi_first)
            .with_last(!md.pi_first);
        id.dps = Dps::new().with_pit(md.pi).with_first(md.pi_first);
    }
    id.encode()
}

/// NVM Command Set Identify Namespace (CNS 05h, CSI 00h): the one LBA format's
/// protection information format.
pub(crate) fn namespace_nvm(md: MetadataFormat) -> [u8; 4096] {
    let mut id = nvme_spec::identify::IdentifyNamespaceNvm::default();
    id.elbaf[0] = nvme_spec::identify::ElbaFormat::with_format(if md.guard64 {
        nvme_spec::pi::PiFormat::Guard64
    } else {
        nvme_spec::pi::PiFormat::Guard16
    });
    id.encode()
}

/// Active Namespace ID list (CNS 02h): NSIDs above `after`, ascending.
pub(crate) fn active_ns_list(count: u32, after: u32) -> [u8; 4096] {
    let nsids: Vec<u32> = (after.saturating_add(1)..=count).take(1024).collect();
    nvme_spec::identify::encode_namespace_list(&nsids).unwrap_or([0; 4096])
}

/// Values for the SMART / Health Information log page.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Smart {
    pub read_units: u64,
    pub write_units: u64,
    pub host_reads: u64,
    pub host_writes: u64,
    pub power_cycles: u64,
    pub unsafe_shutdowns: u64,
    pub media_errors: u64,
    pub error_entries: u64,
}

/// SMART / Health Information log page (02h). Data units are thousands of 512-byte
/// units, rounded up.
pub(crate) fn smart(s: &Smart) -> [u8; 512] {
    let big = |v: u64| U128::new(u128::from(v));
    let log = SmartLog {
        composite_temperature: U16::new(313), // 40 C
        available_spare: 100,
        available_spare_threshold: 10,
        data_units_read: big(s.read_units.div_ceil(1000)),
        data_units_written: big(s.write_units.div_ceil(1000)),
        host_read_commands: big(s.host_reads),
        host_write_commands: big(s.host_writes),
        power_cycles: big(s.power_cycles),
        unsafe_shutdowns: big(s.unsafe_shutdowns),
        media_errors: big(s.media_errors),
        error_log_entries: big(s.error_entries),
        ..Default::default()
    };
    log.encode()
}

/// One Error Information log entry as the controller records it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ErrorEntry {
    pub count: u64,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
    pub lba: u64,
    pub nsid: u32,
}

/// Error Information log page (01h), newest entry first, `ELPE + 1` entries of 64 bytes.
pub(crate) fn error_log(entries: &[ErrorEntry]) -> Vec<u8> {
    let mut page = Vec::with_capacity((usize::from(ELPE) + 1) * 64);
    for e in entries.iter().rev().take(usize::from(ELPE) + 1) {
        let mut entry = ErrorLogEntry {
            error_count: e.count,
            sqid: e.sqid,
            cid: e.cid,
            status: e.status.without_phase(),
            lba: e.lba,
            nsid: e.nsid,
            ..Default::default()
        };
        entry.parameter_error_location = nvme_spec::log::ParameterErrorLocation::from_bits(0xffff);
        page.extend_from_slice(&entry.encode());
    }
    page.resize((usize::from(ELPE) + 1) * 64, 0);
    page
}
