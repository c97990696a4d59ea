//! The identify report: controller and namespaces with nvme-cli's JSON field names
//! (`nvme id-ctrl -o json`, `nvme id-ns -o json`), numbers as numbers, strings trimmed.

use nvme::spec::identify::{
    CommandSetId, IdentifyController, IdentifyNamespace, IdentifyNamespaceNvm, NamespaceIds,
    PiLocation,
};
use nvme::spec::{Cap, Version};
use serde::Serialize;

/// Everything `nvme-identify` prints.
#[derive(Debug, Clone, Serialize)]
pub struct IdentifyReport {
    /// The device name as given.
    #[serde(skip)]
    pub device: String,
    /// The controller.
    pub controller: ControllerJson,
    /// Active namespaces, by ascending NSID.
    pub namespaces: Vec<NamespaceJson>,
}

/// Identify Controller plus the decoded CAP and VS registers.
#[derive(Debug, Clone, Serialize)]
pub struct ControllerJson {
    /// PCI Vendor ID.
    pub vid: u16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: u16,
    /// Serial Number.
    pub sn: String,
    /// Model Number.
    pub mn: String,
    /// Firmware Revision.
    pub fr: String,
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI Identifier (24-bit number, as nvme-cli prints it).
    pub ieee: u32,
    /// Multi-path I/O and Namespace Sharing Capabilities.
    pub cmic: u8,
    /// Maximum Data Transfer Size (power of two of the minimum page size; 0: no limit).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version (raw VS value from Identify).
    pub ver: u32,
    /// RTD3 Resume Latency.
    pub rtd3r: u32,
    /// RTD3 Entry Latency.
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported.
    pub oaes: u32,
    /// Controller Attributes.
    pub ctratt: u32,
    /// Controller Type.
    pub cntrltype: u8,
    /// Optional Admin Command Support.
    pub oacs: u16,
    /// Abort Command Limit.
    pub acl: u8,
    /// Asynchronous Event Request Limit.
    pub aerl: u8,
    /// Firmware Updates.
    pub frmw: u8,
    /// Log Page Attributes.
    pub lpa: u8,
    /// Error Log Page Entries.
    pub elpe: u8,
    /// Number of Power States Support.
    pub npss: u8,
    /// Warning Composite Temperature Threshold.
    pub wctemp: u16,
    /// Critical Composite Temperature Threshold.
    pub cctemp: u16,
    /// Total NVM Capacity, bytes.
    pub tnvmcap: u128,
    /// Unallocated NVM Capacity, bytes.
    pub unvmcap: u128,
    /// Submission Queue Entry Size.
    pub sqes: u8,
    /// Completion Queue Entry Size.
    pub cqes: u8,
    /// Maximum Outstanding Commands.
    pub maxcmd: u16,
    /// Number of Namespaces.
    pub nn: u32,
    /// Optional NVM Command Support.
    pub oncs: u16,
    /// Fused Operation Support.
    pub fuses: u16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Volatile Write Cache.
    pub vwc: u8,
    /// Atomic Write Unit Normal.
    pub awun: u16,
    /// Atomic Write Unit Power Fail.
    pub awupf: u16,
    /// SGL Support.
    pub sgls: u32,
    /// NVM Subsystem NVMe Qualified Name.
    pub subnqn: String,
    /// I/O Queue Command Capsule Supported Size (fabrics; 0 on PCIe).
    pub ioccsz: u32,
    /// I/O Queue Response Capsule Supported Size (fabrics; 0 on PCIe).
    pub iorcsz: u32,
    /// In Capsule Data Offset (fabrics).
    pub icdoff: u16,
    /// Fabrics Controller Attributes.
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors (fabrics).
    pub msdbd: u8,
    /// Optional Fabric Commands Support.
    pub ofcs: u16,
    /// The controller's version as `major.minor.tertiary` (from the VS register).
    pub version: String,
    /// Decoded Controller Capabilities (CAP register).
    pub cap: CapJson,
}

/// Decoded CAP register.
#[derive(Debug, Clone, Serialize)]
pub struct CapJson {
    /// Maximum Queue Entries Supported (0's based).
    pub mqes: u16,
    /// Contiguous Queues Required.
    pub cqr: bool,
    /// Arbitration Mechanisms Supported.
    pub ams: u8,
    /// Ready timeout in milliseconds (`TO * 500`).
    pub to_ms: u64,
    /// Doorbell Stride (doorbells are `4 << dstrd` bytes apart).
    pub dstrd: u8,
    /// NVM Subsystem Reset Supported.
    pub nssrs: bool,
    /// Command Sets Supported.
    pub css: u8,
    /// Boot Partition Support.
    pub bps: bool,
    /// Smallest memory page size in bytes.
    pub mpsmin_bytes: u64,
    /// Largest memory page size in bytes.
    pub mpsmax_bytes: u64,
    /// Persistent Memory Region Supported.
    pub pmrs: bool,
    /// Controller Memory Buffer Supported.
    pub cmbs: bool,
}

/// One LBA format.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LbafJson {
    /// Metadata size, bytes.
    pub ms: u16,
    /// LBA data size, log2 bytes.
    pub ds: u8,
    /// Relative performance.
    pub rp: u8,
}

/// One extended LBA format (NVM Command Set Identify Namespace), as `nvme nvm-id-ns -o
/// json` names it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ElbafJson {
    /// Storage Tag Size, bits.
    pub sts: u8,
    /// Protection Information Format (0: 16-bit guard, 1: 32-bit, 2: 64-bit).
    pub pif: u8,
}

/// The namespace identification descriptors (Identify CNS 03h), formatted as
/// `nvme ns-descs -o json` formats them; an absent descriptor is `null`.
#[derive(Debug, Clone, Serialize)]
pub struct DescriptorsJson {
    /// IEEE Extended Unique Identifier (lowercase hex of the raw bytes).
    pub eui64: Option<String>,
    /// Namespace Globally Unique Identifier (lowercase hex of the raw bytes).
    pub nguid: Option<String>,
    /// Namespace UUID (`8-4-4-4-12` lowercase hex).
    pub uuid: Option<String>,
    /// Command Set Identifier.
    pub csi: Option<u8>,
}

/// Identify Namespace plus the decoded block sizes.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceJson {
    /// Namespace ID.
    pub nsid: u32,
    /// Namespace Size, blocks.
    pub nsze: u64,
    /// Namespace Capacity, blocks.
    pub ncap: u64,
    /// Namespace Utilization, blocks.
    pub nuse: u64,
    /// Namespace Features.
    pub nsfeat: u8,
    /// Number of LBA Formats (0's based).
    pub nlbaf: u8,
    /// Formatted LBA Size.
    pub flbas: u8,
    /// Metadata Capabilities.
    pub mc: u8,
    /// End-to-end Data Protection Capabilities.
    pub dpc: u8,
    /// End-to-end Data Protection Type Settings.
    pub dps: u8,
    /// Multi-path I/O and Namespace Sharing Capabilities.
    pub nmic: u8,
    /// Reservation Capabilities.
    pub rescap: u8,
    /// Deallocate Logical Block Features.
    pub dlfeat: u8,
    /// Namespace Atomic Write Unit Normal.
    pub nawun: u16,
    /// Namespace Atomic Write Unit Power Fail.
    pub nawupf: u16,
    /// Namespace Optimal I/O Boundary.
    pub noiob: u16,
    /// NVM Capacity, bytes.
    pub nvmcap: u128,
    /// Namespace Globally Unique Identifier (hex).
    pub nguid: String,
    /// IEEE Extended Unique Identifier (hex).
    pub eui64: String,
    /// The LBA formats.
    pub lbafs: Vec<LbafJson>,
    /// Bytes per block of the active format (`null` if the device reports nonsense).
    pub lba_bytes: Option<u32>,
    /// Metadata bytes per block of the active format.
    pub metadata_bytes: Option<u16>,
    /// Whether metadata is transferred with each block's data (extended LBA; FLBAS
    /// bit 4), `null` when the format has no metadata or is invalid.
    pub extended_lba: Option<bool>,
    /// Bytes per block in the data buffer: data plus metadata for extended LBAs.
    pub transfer_block_bytes: Option<u32>,
    /// Protection information type in use (0: none; `null` if DPS is reserved).
    pub pi_type: Option<u8>,
    /// Where protection information sits in the metadata: `first` or `last`
    /// (`null` without protection information).
    pub pi_location: Option<&'static str>,
    /// The I/O command set the namespace is used with (`nvm`, `key-value`, `zoned`,
    /// `reserved`): the descriptor list's Command Set Identifier, `nvm` when the
    /// controller reports none.
    pub command_set: Option<&'static str>,
    /// The namespace identification descriptors; `null` if the controller does not
    /// answer Identify CNS 03h.
    pub descriptors: Option<DescriptorsJson>,
    /// Logical Block Storage Tag Mask (NVM Command Set Identify Namespace, CNS 05h;
    /// `null` when the controller does not report it: CTRATT.ELBAS clear).
    pub lbstm: Option<u64>,
    /// Protection Information Capabilities (CNS 05h).
    pub pic: Option<u8>,
    /// The extended LBA formats, one per entry of `lbafs` (CNS 05h).
    pub elbafs: Option<Vec<ElbafJson>>,
    /// Guard bits of the protection information in use (16, 32 or 64; `null` without
    /// protection information or for a reserved format).
    pub pi_guard_bits: Option<u8>,
    /// Zone geometry and limits of a zoned namespace (`command_set` `zoned`); `null`
    /// otherwise, or when the zone data could not be read.
    pub zoned: Option<ZonedJson>,
}

/// A zoned namespace's zones (Zoned Namespace Command Set Identify Namespace and
/// Controller, CNS 05h/06h with CSI 02h).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZonedJson {
    /// Logical blocks per zone (ZSZE of the in-use format).
    pub zone_size_blocks: u64,
    /// Zones in the namespace.
    pub zones: u64,
    /// Most active (open or closed) zones at once; `null`: no limit (MAR FFFFFFFFh).
    pub max_active: Option<u32>,
    /// Most open zones at once; `null`: no limit (MOR FFFFFFFFh).
    pub max_open: Option<u32>,
    /// Largest Zone Append in bytes (ZASL); `null`: the largest transfer (MDTS).
    pub zasl_bytes: Option<u64>,
    /// Zone descriptor extension bytes per zone (ZDES x 64).
    pub zone_descriptor_extension_bytes: u32,
}

impl ZonedJson {
    /// Formats what the driver read of a zoned namespace.
    pub fn new(z: &nvme::ZonedInfo) -> Self {
        Self {
            zone_size_blocks: z.zone_size_blocks,
            zones: z.zones,
            max_active: z.max_active,
            max_open: z.max_open,
            zasl_bytes: z.zasl_bytes,
            zone_descriptor_extension_bytes: z.zone_descriptor_extension_bytes,
        }
    }
}

/// Trims the spec's space padding (and any NULs) from an ASCII field; other bytes are
/// replaced, never trusted.
pub fn ascii_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .trim_start()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID as `8-4-4-4-12` lowercase hex, the way nvme-cli prints one.
fn uuid_string(u: &[u8; 16]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(&u[..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..])
    )
}

impl DescriptorsJson {
    /// Formats a parsed descriptor list.
    pub fn new(ids: &NamespaceIds) -> Self {
        Self {
            eui64: ids.eui64.as_ref().map(|v| hex(v)),
            nguid: ids.nguid.as_ref().map(|v| hex(v)),
            uuid: ids.uuid.as_ref().map(uuid_string),
            csi: ids.csi.map(|c| c.0),
        }
    }
}

fn version_string(v: Version) -> String {
    format!("{}.{}.{}", v.major(), v.minor(), v.tertiary())
}

impl CapJson {
    /// Decodes CAP.
    pub fn new(cap: Cap) -> Self {
        Self {
            mqes: cap.mqes(),
            cqr: cap.cqr(),
            ams: cap.ams(),
            to_ms: cap.timeout().as_millis() as u64,
            dstrd: cap.dstrd(),
            nssrs: cap.nssrs(),
            css: cap.css(),
            bps: cap.bps(),
            mpsmin_bytes: cap.min_page_size(),
            mpsmax_bytes: cap.max_page_size(),
            pmrs: cap.pmrs(),
            cmbs: cap.cmbs(),
        }
    }
}

impl ControllerJson {
    /// Builds the controller part from Identify Controller and the CAP and VS registers.
    pub fn new(id: &IdentifyController, cap: Cap, vs: Version) -> Self {
        let fabrics = id.fabrics_fields();
        Self {
            vid: id.vid,
            ssvid: id.ssvid,
            sn: ascii_field(&id.sn),
            mn: ascii_field(&id.mn),
            fr: ascii_field(&id.fr),
            rab: id.rab,
            ieee: u32::from(id.ieee[0])
                | (u32::from(id.ieee[1]) << 8)
                | (u32::from(id.ieee[2]) << 16),
            cmic: id.cmic.into_bits(),
            mdts: id.mdts,
            cntlid: id.cntlid,
            ver: id.ver.into_bits(),
            rtd3r: id.rtd3r,
            rtd3e: id.rtd3e,
            oaes: id.oaes,
            ctratt: id.ctratt,
            cntrltype: id.cntrltype,
            oacs: id.oacs.into_bits(),
            acl: id.acl,
            aerl: id.aerl,
            frmw: id.frmw.into_bits(),
            lpa: id.lpa.into_bits(),
            elpe: id.elpe,
            npss: id.npss,
            wctemp: id.wctemp,
            cctemp: id.cctemp,
            tnvmcap: id.total_capacity(),
            unvmcap: id.unallocated_capacity(),
            sqes: id.sqes.into_bits(),
            cqes: id.cqes.into_bits(),
            maxcmd: id.maxcmd,
            nn: id.nn,
            oncs: id.oncs.into_bits(),
            fuses: id.fuses.into_bits(),
            fna: id.fna.into_bits(),
            vwc: id.vwc.into_bits(),
            awun: id.awun,
            awupf: id.awupf,
            sgls: id.sgls.into_bits(),
            subnqn: ascii_field(&id.subnqn),
            ioccsz: fabrics.ioccsz,
            iorcsz: fabrics.iorcsz,
            icdoff: fabrics.icdoff,
            fcatt: fabrics.fcatt,
            msdbd: fabrics.msdbd,
            ofcs: fabrics.ofcs,
            version: version_string(vs),
            cap: CapJson::new(cap),
        }
    }
}

impl NamespaceJson {
    /// Builds one namespace entry from Identify Namespace and, if the controller
    /// answered it, the namespace identification descriptor list.
    pub fn new(nsid: u32, ns: &IdentifyNamespace, ids: Option<&NamespaceIds>) -> Self {
        // Sizes come from FLBAS and the LBA format alone, so a reserved DPS value
        // (reported as a null pi_type) does not hide them.
        let lba = ns.lba_size().ok();
        let metadata = ns.metadata_size().ok().filter(|&m| m > 0);
        let pi_type = ns.dps.protection_type().ok().map(|t| t.pit());
        Self {
            nsid,
            nsze: ns.nsze,
            ncap: ns.ncap,
            nuse: ns.nuse,
            nsfeat: ns.nsfeat.into_bits(),
            nlbaf: ns.nlbaf,
            flbas: ns.flbas.into_bits(),
            mc: ns.mc.into_bits(),
            dpc: ns.dpc.into_bits(),
            dps: ns.dps.into_bits(),
            nmic: ns.nmic,
            rescap: ns.rescap,
            dlfeat: ns.dlfeat.into_bits(),
            nawun: ns.nawun,
            nawupf: ns.nawupf,
            noiob: ns.noiob,
            nvmcap: ns.nvm_capacity(),
            nguid: hex(&ns.nguid),
            eui64: hex(&ns.eui64),
            lbafs: ns
                .lba_formats()
                .iter()
                .map(|f| LbafJson {
                    ms: f.ms(),
                    ds: f.lbads(),
                    rp: f.rp(),
                })
                .collect(),
            lba_bytes: lba,
            metadata_bytes: ns.metadata_size().ok(),
            extended_lba: metadata.map(|_| ns.flbas.extended_metadata()),
            transfer_block_bytes: lba.map(|l| match metadata {
                Some(m) if ns.flbas.extended_metadata() => l + u32::from(m),
                _ => l,
            }),
            pi_type,
            pi_location: match pi_type {
                Some(1..) => Some(match ns.dps.pi_location() {
                    PiLocation::First => "first",
                    PiLocation::Last => "last",
                }),
                _ => None,
            },
            command_set: ids.and_then(|i| i.csi).map(|c| c.name()),
            descriptors: ids.map(DescriptorsJson::new),
            lbstm: None,
            pic: None,
            elbafs: None,
            // Without the NVM Command Set structure every format has the 16-bit guard.
            pi_guard_bits: pi_type.filter(|&t| t > 0).map(|_| 16),
            zoned: None,
        }
    }

    /// Adds the command set the driver uses the namespace with and, for a zoned
    /// namespace, its zones.
    pub fn with_command_set(mut self, csi: CommandSetId, zoned: Option<&nvme::ZonedInfo>) -> Self {
        self.command_set = Some(csi.name());
        self.zoned = zoned.map(ZonedJson::new);
        self
    }

    /// Adds the NVM Command Set Identify Namespace (CNS 05h) the driver read at
    /// scan, if the controller reports one: one extended format per LBA format.
    pub fn with_nvm(mut self, ns: &IdentifyNamespace, nvm: Option<&IdentifyNamespaceNvm>) -> Self {
        let Some(nvm) = nvm else { return self };
        let count = ns.lba_formats().len();
        self.lbstm = Some(nvm.lbstm);
        self.pic = Some(nvm.pic.into_bits());
        self.elbafs = Some(
            nvm.elbaf[..count]
                .iter()
                .map(|e| ElbafJson {
                    sts: e.sts(),
                    pif: e.pif(),
                })
                .collect(),
        );
        if self.pi_guard_bits.is_some() {
            self.pi_guard_bits = nvm
                .format(ns.flbas.index())
                .ok()
                .and_then(|e| e.pi_format().ok())
                .map(|f| match f {
                    nvme::spec::pi::PiFormat::Guard16 => 16,
                    nvme::spec::pi::PiFormat::Guard32 => 32,
                    nvme::spec::pi::PiFormat::Guard64 => 64,
                });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::spec::identify::{CommandSetId, Dps, Flbas, LbaFormat};

    #[test]
    fn ascii_fields_lose_their_space_padding() {
        assert_eq!(ascii_field(b"EMU00001            "), "EMU00001");
        assert_eq!(ascii_field(b"  lead\0\0"), "lead");
        assert_eq!(ascii_field(b"        "), "");
    }

    #[test]
    fn namespace_reports_the_active_format_sizes() {
        let mut ns = IdentifyNamespace {
            nsze: 1000,
            ncap: 1000,
            nlbaf: 1,
            flbas: Flbas::new().with_index(1),
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, 0);
        ns.lbaf[1] = LbaFormat::with_sizes(12, 8);
        let j = NamespaceJson::new(2, &ns, None);
        assert_eq!(j.nsid, 2);
        assert_eq!(j.flbas, 1);
        assert_eq!(j.lba_bytes, Some(4096));
        assert_eq!(j.metadata_bytes, Some(8));
        assert_eq!(j.lbafs.len(), 2);
        assert_eq!(j.lbafs[1].ds, 12);
    }

    #[test]
    fn zoned_namespace_reports_its_command_set_and_zones() {
        let mut ns = IdentifyNamespace {
            nsze: 0x10000,
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(12, 0);
        let zoned = nvme::ZonedInfo::new(0x1000, 0x10000, Some(14), None, Some(65536), 0).unwrap();
        let j =
            NamespaceJson::new(1, &ns, None).with_command_set(CommandSetId::ZONED, Some(&zoned));
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["command_set"], "zoned");
        assert_eq!(v["zoned"]["zone_size_blocks"], 0x1000);
        assert_eq!(v["zoned"]["zones"], 16);
        assert_eq!(v["zoned"]["max_active"], 14);
        assert!(v["zoned"]["max_open"].is_null());
        assert_eq!(v["zoned"]["zasl_bytes"], 65536);
        let text = super::super::human::render_namespace_for_test(&j);
        assert!(
            text.contains("Zones                                16"),
            "{text}"
        );
        assert!(
            text.contains("Max Open Zones                       no limit"),
            "{text}"
        );
        // An NVM namespace says so, even when its descriptor list does not.
        let j = NamespaceJson::new(2, &ns, None).with_command_set(CommandSetId::NVM, None);
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["command_set"], "nvm");
        assert!(v["zoned"].is_null());
    }

    #[test]
    fn a_format_index_beyond_nlbaf_gives_null_sizes_not_a_panic() {
        let ns = IdentifyNamespace {
            nsze: 8,
            nlbaf: 0,
            flbas: Flbas::new().with_index(5),
            ..IdentifyNamespace::default()
        };
        let j = NamespaceJson::new(1, &ns, None);
        assert_eq!(j.lba_bytes, None);
        let text = serde_json::to_value(&j).unwrap();
        assert!(text["lba_bytes"].is_null());
    }

    #[test]
    fn namespace_reports_metadata_placement_protection_and_descriptors() {
        let mut ns = IdentifyNamespace {
            nsze: 1000,
            nlbaf: 1,
            flbas: Flbas::new().with_index(1).with_extended_metadata(true),
            dps: Dps::new().with_pit(1).with_first(true),
            eui64: [0xab, 0, 0, 0, 0, 0, 0, 1],
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, 0);
        ns.lbaf[1] = LbaFormat::with_sizes(9, 8).with_rp(2);
        let ids = NamespaceIds {
            eui64: Some(ns.eui64),
            nguid: None,
            uuid: Some(*b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef"),
            csi: Some(CommandSetId::NVM),
        };
        let j = serde_json::to_value(NamespaceJson::new(1, &ns, Some(&ids))).unwrap();
        assert_eq!(j["flbas"], 0x11);
        assert_eq!(j["dps"], 0x09);
        assert_eq!(
            j["lbafs"][1],
            serde_json::json!({"ms": 8, "ds": 9, "rp": 2})
        );
        assert_eq!(j["eui64"], "ab00000000000001");
        assert_eq!(j["nguid"], "00000000000000000000000000000000");
        assert_eq!(j["metadata_bytes"], 8);
        assert_eq!(j["extended_lba"], true);
        assert_eq!(j["transfer_block_bytes"], 520);
        assert_eq!(j["pi_type"], 1);
        assert_eq!(j["pi_location"], "first");
        assert_eq!(j["command_set"], "nvm");
        assert_eq!(j["descriptors"]["eui64"], "ab00000000000001");
        assert!(j["descriptors"]["nguid"].is_null());
        assert_eq!(
            j["descriptors"]["uuid"],
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(j["descriptors"]["csi"], 0);
    }

    #[test]
    fn no_metadata_no_protection_and_no_descriptors_are_null() {
        let mut ns = IdentifyNamespace {
            nsze: 8,
            dps: Dps::new().with_first(true),
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(12, 0);
        let j = serde_json::to_value(NamespaceJson::new(1, &ns, None)).unwrap();
        assert!(j["extended_lba"].is_null());
        assert_eq!(j["transfer_block_bytes"], 4096);
        assert_eq!(j["pi_type"], 0);
        assert!(j["pi_location"].is_null());
        assert!(j["command_set"].is_null());
        assert!(j["descriptors"].is_null());
    }

    #[test]
    fn extended_formats_use_nvme_cli_names_and_give_the_guard_size() {
        let mut ns = IdentifyNamespace {
            nsze: 8,
            nlbaf: 1,
            flbas: Flbas::new().with_index(1).with_extended_metadata(true),
            dps: Dps::new().with_pit(2),
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, 0);
        ns.lbaf[1] = LbaFormat::with_sizes(12, 16);
        let j = serde_json::to_value(NamespaceJson::new(1, &ns, None)).unwrap();
        assert!(j["elbafs"].is_null() && j["pic"].is_null());
        assert_eq!(j["pi_guard_bits"], 16);
        let mut nvm = IdentifyNamespaceNvm::default();
        nvm.elbaf[1] = nvme::spec::identify::ElbaFormat::new()
            .with_pif(2)
            .with_sts(8);
        let j = NamespaceJson::new(1, &ns, None).with_nvm(&ns, Some(&nvm));
        let j = serde_json::to_value(j).unwrap();
        assert_eq!(
            j["elbafs"],
            serde_json::json!([{"sts": 0, "pif": 0}, {"sts": 8, "pif": 2}])
        );
        assert_eq!(j["pic"], 0);
        assert_eq!(j["lbstm"], 0);
        assert_eq!(j["pi_guard_bits"], 64);
    }

    #[test]
    fn cap_decodes_page_sizes_and_timeout() {
        let cap = Cap::new()
            .with_mqes(1023)
            .with_to(20)
            .with_mpsmin(0)
            .with_mpsmax(4)
            .with_css(1);
        let c = CapJson::new(cap);
        assert_eq!(c.mqes, 1023);
        assert_eq!(c.to_ms, 10_000);
        assert_eq!(c.mpsmin_bytes, 4096);
        assert_eq!(c.mpsmax_bytes, 65536);
    }
}
