//! Zoned namespaces on the host side (NVMe Zoned Namespace Command Set 1.1): what the
//! driver keeps about a zoned namespace, the zones a report describes, and the zone
//! statuses decoded into [`crate::Error::Zone`].
//!
//! The device stays the authority on zones: the driver does not check a write against
//! a write pointer, it names the zone, the LBA and (from a report) the write pointer
//! when the device refuses one.

use crate::spec::status::{CommandSpecificStatus as Cs, StatusCode, StatusCodeType};
use crate::spec::zns::{IdentifyNamespaceZns, ZoneAttributes, ZoneReport, ZoneState, ZoneType};
use crate::spec::Status;

/// Whether `status` is one of the Zoned Namespace statuses a zone's state explains
/// (SCT 1h, SC B8h Zone Boundary Error ..= BFh Invalid Zone State Transition).
pub fn is_zone_status(status: Status) -> bool {
    status.sct() == StatusCodeType::CommandSpecific && (0xb8..=0xbf).contains(&status.sc())
}

/// What a person can do about a Zoned Namespace status.
pub(crate) fn advice(status: Status) -> &'static str {
    match status.code() {
        StatusCode::CommandSpecific(code) => match code {
            Cs::ZoneBoundaryError => {
                "a command may not cross a zone boundary: split it at the zone's end"
            }
            Cs::ZoneIsFull => "the zone is full: write to another zone, or reset this one first",
            Cs::ZoneIsReadOnly => "the zone is read only: its data can only be read",
            Cs::ZoneIsOffline => "the zone is offline: it can be neither read nor written",
            Cs::ZoneInvalidWrite => {
                "a write must start at the zone's write pointer: write there, or use Zone Append, which the device places itself"
            }
            Cs::TooManyActiveZones => {
                "the namespace's active zone limit is reached: finish or reset an open or closed zone first"
            }
            Cs::TooManyOpenZones => {
                "the namespace's open zone limit is reached: close or finish an open zone first"
            }
            Cs::InvalidZoneStateTransition => {
                "the zone cannot go from its state to the one asked for (a zone report shows its state)"
            }
            _ => GENERIC_ADVICE,
        },
        _ => GENERIC_ADVICE,
    }
}

const GENERIC_ADVICE: &str = "a zone report shows the zone's state and write pointer";

/// What the driver knows of a zoned namespace (Identify CNS 05h and 06h with CSI 02h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonedInfo {
    /// Logical blocks per zone (ZSZE of the in-use LBA format extension).
    pub zone_size_blocks: u64,
    /// Zones in the namespace (its size divided by the zone size).
    pub zones: u64,
    /// Most zones that may be active (open or closed) at once; `None`: no limit.
    pub max_active: Option<u32>,
    /// Most zones that may be open at once; `None`: no limit.
    pub max_open: Option<u32>,
    /// Largest Zone Append in bytes (ZASL); `None`: the largest transfer (MDTS).
    pub zasl_bytes: Option<u64>,
    /// Bytes of zone descriptor extension per zone (ZDES); 0 when there is none.
    pub zone_descriptor_extension_bytes: u32,
}

impl ZonedInfo {
    /// The zoned namespace of `namespace_blocks` blocks with zones of `zone_size_blocks`
    /// (refused when 0: the namespace cannot be addressed by zone); `zdes` is the
    /// descriptor extension size in 64-byte units, as the LBA format extension gives it.
    pub fn new(
        zone_size_blocks: u64,
        namespace_blocks: u64,
        max_active: Option<u32>,
        max_open: Option<u32>,
        zasl_bytes: Option<u64>,
        zdes: u8,
    ) -> Result<Self, String> {
        if zone_size_blocks == 0 {
            return Err("the zone size (ZSZE) of the namespace's format is 0".into());
        }
        Ok(ZonedInfo {
            zone_size_blocks,
            zones: namespace_blocks.div_ceil(zone_size_blocks),
            max_active,
            max_open,
            zasl_bytes,
            zone_descriptor_extension_bytes: u32::from(zdes) * 64,
        })
    }

    /// Decodes the ZNS Identify Namespace page for the namespace's in-use LBA format
    /// `format` and size `namespace_blocks`, with the controller's ZASL in bytes.
    pub fn from_identify(
        ns: &IdentifyNamespaceZns,
        format: u8,
        namespace_blocks: u64,
        zasl_bytes: Option<u64>,
    ) -> Result<Self, String> {
        let ext = ns.format(format).map_err(|e| e.to_string())?;
        Self::new(
            ext.zsze,
            namespace_blocks,
            ns.max_active_zones(),
            ns.max_open_zones(),
            zasl_bytes,
            ext.zdes,
        )
    }

    /// Start LBA of the zone holding `lba`.
    pub fn zone_start(&self, lba: u64) -> u64 {
        lba - lba % self.zone_size_blocks
    }
}

/// One zone as a report describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// Zone Start LBA.
    pub zslba: u64,
    /// Write pointer: where the next write to the zone must start (meaningless in the
    /// Full, Read Only and Offline states).
    pub wp: u64,
    /// Zone capacity: writable blocks from the zone start.
    pub zcap: u64,
    /// Zone state.
    pub state: ZoneState,
    /// Zone type (ZT; 2h is Sequential Write Required, [`ZoneType`]).
    pub zone_type: u8,
    /// Zone attributes.
    pub attrs: ZoneAttributes,
    /// Zone Attributes Information (ZAI: the reset and finish recommended limits).
    pub attrs_info: u8,
}

impl Zone {
    /// Whether the zone's type is Sequential Write Required.
    pub fn is_sequential_write_required(&self) -> bool {
        self.zone_type == ZoneType::SequentialWriteRequired as u8
    }
}

/// A decoded Zone Management Receive (Report Zones) buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneReportPage {
    /// Number of Zones from the header: matching zones from the report's start LBA on,
    /// or with a partial report the descriptors in the buffer.
    pub nr_zones: u64,
    /// The zones the buffer holds (at most `nr_zones`, at most what fits), in order.
    pub zones: Vec<Zone>,
}

/// Decodes a report buffer of a zoned namespace of `namespace_blocks` blocks:
/// descriptors with `extension_bytes` of descriptor extension each (0 for Report
/// Zones). The device is untrusted: the count is bounded by the buffer, a reserved
/// zone state, a zone start at or past the namespace's end, or zones out of order is
/// an error rather than a report a caller would page through forever.
pub fn decode_report(
    bytes: &[u8],
    extension_bytes: usize,
    namespace_blocks: u64,
) -> Result<ZoneReportPage, String> {
    let report = ZoneReport::parse(bytes, extension_bytes).map_err(|e| e.to_string())?;
    let mut zones = Vec::with_capacity(report.zones.len());
    for (index, d) in report.zones.iter().enumerate() {
        let Some(state) = d.state() else {
            return Err(format!(
                "zone descriptor {index} has a reserved state {:#x}",
                d.zs_bits()
            ));
        };
        if d.zslba >= namespace_blocks {
            return Err(format!(
                "zone descriptor {index} starts at LBA {:#x}, past the namespace's {namespace_blocks:#x} blocks",
                d.zslba
            ));
        }
        if let Some(prev) = zones.last().map(|z: &Zone| z.zslba) {
            if d.zslba <= prev {
                return Err(format!(
                    "zone descriptor {index} starts at LBA {:#x}, not after the one before ({prev:#x})",
                    d.zslba
                ));
            }
        }
        zones.push(Zone {
            zslba: d.zslba,
            wp: d.wp,
            zcap: d.zcap,
            state,
            zone_type: d.zt_bits(),
            attrs: d.za,
            attrs_info: d.zai,
        });
    }
    Ok(ZoneReportPage {
        nr_zones: report.nr_zones,
        zones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::status::GenericStatus;
    use crate::spec::zns::{ZoneDescriptor, ZoneReportHeader};
    use zerocopy::IntoBytes;

    fn zns_page(mar: u32, mor: u32, format: usize, zsze: u64, zdes: u8) -> IdentifyNamespaceZns {
        let mut ns = IdentifyNamespaceZns {
            mar,
            mor,
            ..IdentifyNamespaceZns::default()
        };
        ns.lbafe[format].zsze = zsze;
        ns.lbafe[format].zdes = zdes;
        IdentifyNamespaceZns::parse(&ns.encode()).unwrap()
    }

    #[test]
    fn zoned_info_decodes_zero_based_limits_and_the_in_use_format() {
        let ns = zns_page(13, 11, 2, 0x4000, 2);
        let z = ZonedInfo::from_identify(&ns, 2, 0x10_0000, Some(128 * 1024)).unwrap();
        assert_eq!(z.zone_size_blocks, 0x4000);
        assert_eq!(z.zones, 64);
        assert_eq!(z.max_active, Some(14));
        assert_eq!(z.max_open, Some(12));
        assert_eq!(z.zasl_bytes, Some(128 * 1024));
        assert_eq!(z.zone_descriptor_extension_bytes, 128);
        assert_eq!(z.zone_start(0x4001), 0x4000);
        let none = zns_page(u32::MAX, u32::MAX, 0, 8, 0);
        let z = ZonedInfo::from_identify(&none, 0, 20, None).unwrap();
        assert_eq!((z.max_active, z.max_open, z.zasl_bytes), (None, None, None));
        // A last zone smaller than the others still counts.
        assert_eq!(z.zones, 3);
    }

    #[test]
    fn hostile_zone_geometry_is_refused_or_bounded() {
        // The in-use format has no zone size (another format has one).
        let ns = zns_page(0, 0, 1, 64, 0);
        let e = ZonedInfo::from_identify(&ns, 0, 1000, None).unwrap_err();
        assert!(e.contains("ZSZE"), "{e}");
        // A format index past the table.
        assert!(ZonedInfo::from_identify(&ns, 64, 1000, None).is_err());
        let ns = zns_page(0, 0, 0, u64::MAX, 255);
        let z = ZonedInfo::from_identify(&ns, 0, u64::MAX, None).unwrap();
        assert_eq!(z.zones, 1);
        assert_eq!(z.zone_descriptor_extension_bytes, 255 * 64);
        let z = ZonedInfo::new(1, u64::MAX, Some(1), Some(1), None, 0).unwrap();
        assert_eq!(z.zones, u64::MAX);
        assert_eq!(z.zone_start(u64::MAX), u64::MAX);
    }

    #[test]
    fn zone_statuses_are_recognised_and_explained() {
        for sc in 0xb8..=0xbf {
            let s = Status::from_parts(StatusCodeType::CommandSpecific, sc);
            assert!(is_zone_status(s));
            assert_ne!(advice(s), GENERIC_ADVICE, "{s}");
        }
        assert!(!is_zone_status(Status::from_parts(
            StatusCodeType::CommandSpecific,
            0xb7
        )));
        assert!(!is_zone_status(Status::generic(
            GenericStatus::LbaOutOfRange
        )));
        assert!(!is_zone_status(Status::from_parts(
            StatusCodeType::MediaAndDataIntegrity,
            0xbc
        )));
    }

    fn report(nr_zones: u64, zones: &[ZoneDescriptor], len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        buf[..64].copy_from_slice(ZoneReportHeader::new(nr_zones).as_bytes());
        for (i, z) in zones.iter().enumerate() {
            let at = 64 + i * 64;
            if at + 64 <= len {
                buf[at..at + 64].copy_from_slice(z.as_bytes());
            }
        }
        buf
    }

    #[test]
    fn report_decodes_every_field() {
        let mut d = ZoneDescriptor::new(ZoneState::ImplicitlyOpened, 0x100, 0xf0, 0x123);
        d.za = ZoneAttributes::new().with_rzr(true);
        d.zai = 0x4;
        let e = ZoneDescriptor::new(ZoneState::Full, 0x200, 0xf0, 0x2f0);
        let page = decode_report(&report(2, &[d, e], 4096), 0, 0x1000).unwrap();
        assert_eq!(page.nr_zones, 2);
        assert_eq!(
            page.zones[0],
            Zone {
                zslba: 0x100,
                wp: 0x123,
                zcap: 0xf0,
                state: ZoneState::ImplicitlyOpened,
                zone_type: 2,
                attrs: ZoneAttributes::new().with_rzr(true),
                attrs_info: 0x4,
            }
        );
        assert!(page.zones[0].is_sequential_write_required());
        assert_eq!(page.zones[1].state, ZoneState::Full);
    }

    #[test]
    fn hostile_report_counts_are_bounded_by_the_buffer() {
        let zones: Vec<_> = (0..3)
            .map(|i| ZoneDescriptor::new(ZoneState::Empty, i * 0x100, 0x100, i * 0x100))
            .collect();
        // The header claims far more zones than the buffer holds.
        let page = decode_report(&report(u64::MAX, &zones, 64 + 3 * 64), 0, 0x1000).unwrap();
        assert_eq!(page.nr_zones, u64::MAX);
        assert_eq!(page.zones.len(), 3);
        // A buffer that ends inside a descriptor holds only the whole ones.
        let page = decode_report(&report(3, &zones, 64 + 2 * 64 + 10), 0, 0x1000).unwrap();
        assert_eq!(page.zones.len(), 2);
        // Descriptor extensions widen the stride.
        let page = decode_report(&report(3, &zones, 64 + 3 * 64), 64, 0x1000).unwrap();
        assert_eq!(page.zones.len(), 1);
        // Fewer zones than the buffer holds: the header's count wins.
        let page = decode_report(&report(1, &zones, 4096), 0, 0x1000).unwrap();
        assert_eq!(page.zones.len(), 1);
        // No room even for the header.
        assert!(decode_report(&[0u8; 10], 0, 0x1000).is_err());
    }

    #[test]
    fn hostile_report_descriptors_are_errors() {
        let ok = ZoneDescriptor::new(ZoneState::Empty, 0x100, 0x100, 0x100);
        let mut reserved = ok;
        reserved.zs = 0x50;
        assert!(decode_report(&report(1, &[reserved], 4096), 0, 0x1000).is_err());
        let past_end = ZoneDescriptor::new(ZoneState::Empty, 0x1000, 0x100, 0x1000);
        assert!(decode_report(&report(1, &[past_end], 4096), 0, 0x1000)
            .unwrap_err()
            .contains("past the namespace"));
        let again = ZoneDescriptor::new(ZoneState::Empty, 0x100, 0x100, 0x100);
        assert!(decode_report(&report(2, &[ok, again], 4096), 0, 0x1000)
            .unwrap_err()
            .contains("not after"));
    }

    #[test]
    fn zone_errors_print_the_zone_the_write_pointer_and_what_to_do() {
        use crate::error::{CommandDesc, IoKind};
        use crate::spec::status::CommandSpecificStatus;
        let e = crate::Error::Zone {
            command: CommandDesc::Io {
                kind: IoKind::Write,
                nsid: 1,
                slba: 0x1010,
                blocks: 8,
            },
            status: Status::command_specific(CommandSpecificStatus::ZoneInvalidWrite),
            zone_start: 0x1000,
            write_pointer: Some(0x1008),
            lba: 0x1010,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("write of 8 blocks at LBA 0x1010 on namespace 1 failed in the zone at LBA 0x1000 (write pointer 0x1008): Zone Invalid Write"),
            "{text}"
        );
        assert!(text.contains("Zone Append"), "{text}");
        assert_eq!(
            e.status(),
            Some(Status::command_specific(
                CommandSpecificStatus::ZoneInvalidWrite
            ))
        );
        let reset_all = CommandDesc::Io {
            kind: IoKind::ZoneReset,
            nsid: 2,
            slba: 0,
            blocks: 0,
        };
        assert_eq!(
            reset_all.to_string(),
            "zone reset of every zone on namespace 2"
        );
        let e = crate::Error::UnsupportedCommandSet {
            nsid: 3,
            csi: crate::spec::identify::CommandSetId::KEY_VALUE,
        };
        assert!(
            e.to_string()
                .starts_with("namespace 3 uses the key-value command set (CSI 0x01)"),
            "{e}"
        );
    }

    #[test]
    fn a_namespace_the_driver_cannot_use_is_kept_but_marked_unusable() {
        use crate::namespace::{Namespace, NsTable};
        use crate::spec::identify::{CommandSetId, IdentifyNamespace, LbaFormat};
        let mut id = IdentifyNamespace {
            nsze: 4096,
            ..IdentifyNamespace::default()
        };
        id.lbaf[0] = LbaFormat::with_sizes(12, 0);
        let ns = |nsid, command_set, zoned| Namespace {
            nsid,
            lba_size: 4096,
            blocks: 4096,
            metadata_size: 0,
            identify: Box::new(id),
            nvm: None,
            command_set,
            zoned,
        };
        let zoned = ZonedInfo::new(256, 4096, None, None, None, 0).unwrap();
        let table = NsTable::new(&[
            ns(1, CommandSetId::NVM, None),
            ns(2, CommandSetId::ZONED, Some(zoned)),
            ns(3, CommandSetId::KEY_VALUE, None),
            ns(4, CommandSetId::ZONED, None),
        ]);
        let g = |nsid| *table.get(nsid).unwrap();
        assert!(!g(1).unusable_set && !g(1).bad_format && g(1).zone_blocks == 0);
        assert!(!g(2).unusable_set && !g(2).bad_format);
        assert_eq!((g(2).zone_blocks, g(2).zone_start(300)), (256, 256));
        // Key-value, and a zoned namespace whose zone data could not be read.
        for nsid in [3, 4] {
            assert!(
                g(nsid).unusable_set && g(nsid).bad_format,
                "namespace {nsid}"
            );
        }
    }
}
