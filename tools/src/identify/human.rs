//! The human-readable identify summary (in the spirit of SPDK's `identify`).

use std::fmt::Write;

use super::model::{IdentifyReport, NamespaceJson};

fn yes(b: bool) -> &'static str {
    if b {
        "Supported"
    } else {
        "Not Supported"
    }
}

fn size(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Renders the report as text.
pub fn render(r: &IdentifyReport) -> String {
    let c = &r.controller;
    let mut s = String::new();
    let row = |s: &mut String, k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(s, "  {k:<36} {v}");
    };
    let _ = writeln!(s, "NVMe controller {}", r.device);
    let _ = writeln!(s, "Controller");
    row(&mut s, "Vendor ID", &format_args!("{:04x}", c.vid));
    row(
        &mut s,
        "Subsystem Vendor ID",
        &format_args!("{:04x}", c.ssvid),
    );
    row(&mut s, "Serial Number", &c.sn);
    row(&mut s, "Model Number", &c.mn);
    row(&mut s, "Firmware Version", &c.fr);
    row(&mut s, "NVMe Version", &c.version);
    row(&mut s, "Controller ID", &c.cntlid);
    row(
        &mut s,
        "Maximum Queue Entries",
        &(u32::from(c.cap.mqes) + 1),
    );
    row(
        &mut s,
        "Contiguous Queues Required",
        &if c.cap.cqr { "Yes" } else { "No" },
    );
    row(
        &mut s,
        "Doorbell Stride (bytes)",
        &(4u32 << c.cap.dstrd.min(15)),
    );
    row(&mut s, "Ready Timeout (ms)", &c.cap.to_ms);
    row(
        &mut s,
        "Memory Page Size Minimum",
        &size(u128::from(c.cap.mpsmin_bytes)),
    );
    row(
        &mut s,
        "Memory Page Size Maximum",
        &size(u128::from(c.cap.mpsmax_bytes)),
    );
    let mdts = if c.mdts == 0 {
        "Unlimited".to_string()
    } else {
        // MDTS is in units of the minimum page size; bound the shift (untrusted value).
        size(u128::from(c.cap.mpsmin_bytes) << u32::from(c.mdts.min(32)))
    };
    row(&mut s, "Maximum Data Transfer Size", &mdts);
    let vwc = if c.vwc & 1 != 0 {
        "Present"
    } else {
        "Not Present"
    };
    row(&mut s, "Volatile Write Cache", &vwc);
    row(&mut s, "Number of Namespaces", &c.nn);
    row(&mut s, "Compare Command", &yes(c.oncs & (1 << 0) != 0));
    row(
        &mut s,
        "Dataset Management Command",
        &yes(c.oncs & (1 << 2) != 0),
    );
    row(&mut s, "Write Zeroes Command", &yes(c.oncs & (1 << 3) != 0));
    row(&mut s, "Verify Command", &yes(c.oncs & (1 << 7) != 0));
    row(&mut s, "SGL", &yes(c.sgls & 3 != 0));
    row(&mut s, "Abort Command Limit", &(u32::from(c.acl) + 1));
    row(
        &mut s,
        "Async Event Request Limit",
        &(u32::from(c.aerl) + 1),
    );
    if !c.subnqn.is_empty() {
        row(&mut s, "Subsystem NQN", &c.subnqn);
    }
    if r.namespaces.is_empty() {
        let _ = writeln!(s, "No active namespaces");
    }
    for ns in &r.namespaces {
        render_namespace(&mut s, ns);
    }
    s
}

fn render_namespace(s: &mut String, ns: &NamespaceJson) {
    let _ = writeln!(s, "Namespace {}", ns.nsid);
    let lba = ns.lba_bytes.map(u128::from);
    let with_bytes = |blocks: u64| match lba {
        Some(l) => format!("{blocks} ({})", size(u128::from(blocks) * l)),
        None => blocks.to_string(),
    };
    let _ = writeln!(s, "  {:<36} {}", "Size (LBAs)", with_bytes(ns.nsze));
    let _ = writeln!(s, "  {:<36} {}", "Capacity (LBAs)", with_bytes(ns.ncap));
    let _ = writeln!(s, "  {:<36} {}", "Utilization (LBAs)", with_bytes(ns.nuse));
    let idx = (ns.flbas & 0xf) | ((ns.flbas >> 1) & 0x30);
    let _ = writeln!(s, "  {:<36} #{idx:02}", "Current LBA Format");
    let _ = writeln!(s, "  {:<36} {}", "Block Format", format_line(ns));
    if let Some(d) = &ns.descriptors {
        let id = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_string());
        let _ = writeln!(s, "  {:<36} {}", "EUI-64", id(&d.eui64));
        let _ = writeln!(s, "  {:<36} {}", "NGUID", id(&d.nguid));
        if let Some(uuid) = &d.uuid {
            let _ = writeln!(s, "  {:<36} {uuid}", "UUID");
        }
    }
    if let Some(cs) = ns.command_set {
        let _ = writeln!(s, "  {:<36} {cs}", "Command Set");
    }
    if let Some(z) = &ns.zoned {
        let limit = |v: Option<u32>| v.map_or_else(|| "no limit".to_string(), |n| n.to_string());
        let _ = writeln!(
            s,
            "  {:<36} {}",
            "Zone Size (LBAs)",
            with_bytes(z.zone_size_blocks)
        );
        let _ = writeln!(s, "  {:<36} {}", "Zones", z.zones);
        let _ = writeln!(s, "  {:<36} {}", "Max Active Zones", limit(z.max_active));
        let _ = writeln!(s, "  {:<36} {}", "Max Open Zones", limit(z.max_open));
        let zasl = z.zasl_bytes.map_or_else(
            || "the largest transfer (MDTS)".to_string(),
            |b| size(u128::from(b)),
        );
        let _ = writeln!(s, "  {:<36} {zasl}", "Zone Append Size Limit");
    }
    for (i, f) in ns.lbafs.iter().enumerate() {
        let ds = if (9..=31).contains(&f.ds) {
            (1u64 << f.ds).to_string()
        } else {
            "invalid".to_string()
        };
        let _ = writeln!(
            s,
            "  LBA Format #{i:02}: Data Size: {ds:>5}  Metadata Size: {:>3}  Relative Performance: {}",
            f.ms, f.rp
        );
    }
}

/// One namespace's lines, for the model's tests.
#[cfg(test)]
pub(super) fn render_namespace_for_test(ns: &NamespaceJson) -> String {
    let mut s = String::new();
    render_namespace(&mut s, ns);
    s
}

/// The in-use format in one line: data and metadata sizes, where the metadata
/// travels, and the protection information.
fn format_line(ns: &NamespaceJson) -> String {
    let (Some(l), Some(m)) = (ns.lba_bytes, ns.metadata_bytes) else {
        return "invalid (FLBAS selects no valid format)".to_string();
    };
    let mut line = format!("{l} B data");
    if m > 0 {
        let _ = write!(line, " + {m} B metadata");
        match (ns.extended_lba, ns.transfer_block_bytes) {
            (Some(true), Some(t)) => {
                let _ = write!(line, ", extended LBA ({t} B per block)");
            }
            (Some(false), _) => line.push_str(", separate buffer"),
            _ => {}
        }
    }
    match (ns.pi_type, ns.pi_location) {
        (Some(0), _) => line.push_str(", no protection information"),
        (Some(t), Some(at)) => {
            let _ = write!(line, ", protection information type {t} in the {at} bytes");
        }
        _ => line.push_str(", protection information reserved (DPS)"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::spec::identify::{Dps, Flbas, IdentifyNamespace, LbaFormat};

    fn line(ms: u16, extended: bool, dps: Dps) -> String {
        let mut ns = IdentifyNamespace {
            nsze: 8,
            flbas: Flbas::new().with_extended_metadata(extended),
            dps,
            ..IdentifyNamespace::default()
        };
        ns.lbaf[0] = LbaFormat::with_sizes(9, ms);
        format_line(&NamespaceJson::new(1, &ns, None))
    }

    #[test]
    fn the_format_line_names_sizes_placement_and_protection() {
        assert_eq!(
            line(8, true, Dps::new().with_pit(1).with_first(true)),
            "512 B data + 8 B metadata, extended LBA (520 B per block), \
             protection information type 1 in the first bytes"
        );
        assert_eq!(
            line(64, false, Dps::new().with_pit(3)),
            "512 B data + 64 B metadata, separate buffer, \
             protection information type 3 in the last bytes"
        );
        assert_eq!(
            line(0, false, Dps::new()),
            "512 B data, no protection information"
        );
        assert_eq!(
            line(8, false, Dps::new().with_pit(6)),
            "512 B data + 8 B metadata, separate buffer, protection information reserved (DPS)"
        );
    }
}
