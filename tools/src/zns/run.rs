//! Opens the device and runs one `nvme-zns` command on a polled queue pair.

use nvme::spec::zns::ZoneSendAction;
use nvme::{AnyTransport, Controller, IoQueuePair, Namespace, QueuePairOptions, ZonedInfo};

use super::model::ZoneReportJson;
use super::ReportArgs;
use crate::cli::ToolError;

/// Bytes of the report buffer: the header and 1023 descriptors, 64 KiB (one command
/// of most controllers; the driver trims it to the largest transfer).
const REPORT_BUFFER_BYTES: usize = 64 * 1024;

/// A zone report: the header's zone count and the zones listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `nr_zones` as nvme-cli prints it.
    pub nr_zones: u64,
    /// The zones listed.
    pub zones: Vec<nvme::zns::Zone>,
}

impl Report {
    /// The JSON form.
    pub fn json(&self) -> ZoneReportJson {
        ZoneReportJson::new(self.nr_zones, &self.zones)
    }
}

/// An open controller, a queue pair and the zoned namespace the commands address.
pub struct Session {
    ctrl: Controller<AnyTransport>,
    qp: IoQueuePair<AnyTransport, u64>,
    nsid: u32,
    zoned: ZonedInfo,
    blocks: u64,
}

impl Session {
    /// Opens `device` and checks that namespace `nsid` is active and zoned.
    pub fn open(device: &str, nsid: u32) -> Result<Session, ToolError> {
        let ctrl = nvme::open(
            device,
            nvme::Options {
                io_queues: 1,
                interrupts: false,
                ..nvme::Options::default()
            },
        )?;
        let Some(ns) = ctrl.namespace(nsid) else {
            return Err(ToolError::NoNamespace {
                device: device.to_string(),
                nsid,
                active: crate::cli::active_namespaces(&ctrl),
            });
        };
        let zoned = require_zoned(device, &ns)?;
        let qp = ctrl.create_io_queue_pair(QueuePairOptions {
            depth: 16,
            ..QueuePairOptions::default()
        })?;
        Ok(Session {
            blocks: ns.blocks,
            ctrl,
            qp,
            nsid,
            zoned,
        })
    }

    /// Reports the zones that match `args.state`.
    pub fn report(&mut self, args: &ReportArgs) -> Result<Report, ToolError> {
        let nsid = self.nsid;
        let page = self.ctrl.page_size() as usize;
        let mut buf = self
            .ctrl
            .allocator()
            .alloc(REPORT_BUFFER_BYTES, page)
            .map_err(|source| ToolError::Memory {
                bytes: REPORT_BUFFER_BYTES,
                source,
            })?;
        if args.partial {
            let page = self.qp.report_zones(nsid, 0, args.state, true, &mut buf)?;
            return Ok(Report {
                nr_zones: page.nr_zones,
                zones: page.zones,
            });
        }
        // nvme-cli's count: the header of a report from LBA 0 that is not partial.
        let nr_zones = self
            .qp
            .report_zones(nsid, 0, args.state, false, &mut buf)?
            .nr_zones;
        let zones = self.qp.report_zones_all(nsid, args.state, &mut buf)?;
        Ok(Report { nr_zones, zones })
    }

    /// Sends `action` to the zone starting at `zone` or, when `None`, to every zone
    /// (the select-all bit); returns the line to print.
    pub fn action(
        &mut self,
        action: ZoneSendAction,
        zone: Option<u64>,
    ) -> Result<String, ToolError> {
        let nsid = self.nsid;
        match zone {
            Some(zslba) => {
                check_zone_start(&self.zoned, self.blocks, zslba)?;
                self.qp
                    .zone_action(nsid, zslba, action, false)
                    .map_err(|e| self.qp.locate_zone_error(e))?;
                Ok(format!(
                    "{action}: the zone at LBA {zslba:#x} of namespace {nsid}"
                ))
            }
            None => {
                self.qp.zone_action(nsid, 0, action, true)?;
                Ok(format!(
                    "{action}: every zone of namespace {nsid} it applies to"
                ))
            }
        }
    }
}

/// The zone geometry of `ns`, or an error that says the namespace is not zoned.
pub fn require_zoned(device: &str, ns: &Namespace) -> Result<ZonedInfo, ToolError> {
    ns.zoned.ok_or_else(|| {
        ToolError::Invalid(format!(
            "namespace {} of {device} is not a zoned namespace (its command set is {}): zone reports and zone actions need a namespace of the Zoned Namespace Command Set",
            ns.nsid, ns.command_set
        ))
    })
}

/// Refuses an LBA that is not the start of a zone of the namespace.
pub fn check_zone_start(zoned: &ZonedInfo, blocks: u64, zslba: u64) -> Result<(), ToolError> {
    if zslba >= blocks {
        return Err(ToolError::Invalid(format!(
            "LBA {zslba:#x} is past the end of the namespace ({blocks:#x} blocks)"
        )));
    }
    let start = zoned.zone_start(zslba);
    if start != zslba {
        return Err(ToolError::Invalid(format!(
            "LBA {zslba:#x} is not the start of a zone: zones are {:#x} blocks, and this LBA is in the zone starting at {start:#x}",
            zoned.zone_size_blocks
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_starts_are_checked_against_the_geometry() {
        let z = ZonedInfo::new(0x800, 0x4000, None, None, None, 0).unwrap();
        assert!(check_zone_start(&z, 0x4000, 0x800).is_ok());
        assert!(check_zone_start(&z, 0x4000, 0).is_ok());
        let e = check_zone_start(&z, 0x4000, 0x810).unwrap_err().to_string();
        assert!(e.contains("zone starting at 0x800"), "{e}");
        let e = check_zone_start(&z, 0x4000, 0x4000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("past the end"), "{e}");
    }
}
