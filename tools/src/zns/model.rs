//! The zone report as nvme-cli prints it: JSON and a table.

use nvme::spec::zns::ZoneState;
use nvme::zns::Zone;
use serde::Serialize;

/// A zone report: `nvme zns report-zones -o json`'s object (nvme-cli 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneReportJson {
    /// Zones matching the state filter in the namespace (nvme-cli takes it from a
    /// report that is not partial); with `--partial`, the zones listed.
    pub nr_zones: u64,
    /// The zones, in LBA order.
    pub zone_list: Vec<ZoneJson>,
}

/// One zone as nvme-cli 2.3 prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneJson {
    /// Zone Start LBA.
    pub slba: u64,
    /// Write pointer.
    pub wp: u64,
    /// Zone capacity in blocks.
    pub cap: u64,
    /// Zone state, nvme-cli's name (`EMPTY`, `IMP_OPENED`, ...).
    pub state: &'static str,
    /// Zone type, nvme-cli's name (`SEQWRITE_REQ`).
    #[serde(rename = "type")]
    pub zone_type: &'static str,
    /// nvme-cli 2.3 writes the key `attrs` twice, the Zone Attributes then the Zone
    /// Attributes Information, and the second replaces the first: this is ZAI.
    pub attrs: u8,
}

/// nvme-cli's name for a zone state.
pub fn state_name(state: ZoneState) -> &'static str {
    match state {
        ZoneState::Empty => "EMPTY",
        ZoneState::ImplicitlyOpened => "IMP_OPENED",
        ZoneState::ExplicitlyOpened => "EXP_OPENED",
        ZoneState::Closed => "CLOSED",
        ZoneState::ReadOnly => "READONLY",
        ZoneState::Full => "FULL",
        ZoneState::Offline => "OFFLINE",
    }
}

/// nvme-cli's name for a zone type.
pub fn type_name(zone: &Zone) -> &'static str {
    if zone.is_sequential_write_required() {
        "SEQWRITE_REQ"
    } else {
        "Unknown"
    }
}

impl ZoneReportJson {
    /// The report of `zones` with the header count `nr_zones`.
    pub fn new(nr_zones: u64, zones: &[Zone]) -> Self {
        ZoneReportJson {
            nr_zones,
            zone_list: zones
                .iter()
                .map(|z| ZoneJson {
                    slba: z.zslba,
                    wp: z.wp,
                    cap: z.zcap,
                    state: state_name(z.state),
                    zone_type: type_name(z),
                    attrs: z.attrs_info,
                })
                .collect(),
        }
    }
}

/// `v` in `0x` hexadecimal.
fn hex(v: impl std::fmt::LowerHex) -> String {
    format!("{v:#x}")
}

/// The report as a table: one line per zone, LBAs in hexadecimal, the zone
/// attributes (ZA) and their information byte (ZAI) each in their own column.
pub fn render(nr_zones: u64, zones: &[Zone]) -> String {
    let mut out = format!("nr_zones: {nr_zones}\n");
    let mut line = |text: String| {
        out += text.trim_end();
        out.push('\n');
    };
    line(format!(
        "{:<18} {:<18} {:<12} {:<11} {:<13} {:<5} {}",
        "ZSLBA", "WP", "CAP", "STATE", "TYPE", "ZA", "ZAI"
    ));
    for z in zones {
        line(format!(
            "{:<18} {:<18} {:<12} {:<11} {:<13} {:<5} {}",
            hex(z.zslba),
            hex(z.wp),
            hex(z.zcap),
            state_name(z.state),
            type_name(z),
            hex(z.attrs.into_bits()),
            hex(z.attrs_info),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::spec::zns::ZoneAttributes;

    fn zone(zslba: u64, state: ZoneState) -> Zone {
        Zone {
            zslba,
            wp: zslba + 8,
            zcap: 0x100,
            state,
            zone_type: 2,
            attrs: ZoneAttributes::new().with_zfc(true),
            attrs_info: 0x3,
        }
    }

    #[test]
    fn json_has_nvme_cli_names_and_decimal_numbers() {
        let r = ZoneReportJson::new(
            2,
            &[zone(0, ZoneState::Empty), zone(0x100, ZoneState::Full)],
        );
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"nr_zones":2,"zone_list":[{"slba":0,"wp":8,"cap":256,"state":"EMPTY","type":"SEQWRITE_REQ","attrs":3},{"slba":256,"wp":264,"cap":256,"state":"FULL","type":"SEQWRITE_REQ","attrs":3}]}"#
        );
        let mut other = zone(0, ZoneState::Offline);
        other.zone_type = 5;
        let r = ZoneReportJson::new(1, &[other]);
        assert_eq!(r.zone_list[0].zone_type, "Unknown");
        assert_eq!(r.zone_list[0].state, "OFFLINE");
    }

    #[test]
    fn every_state_has_nvme_cli_name() {
        let names: Vec<_> = [
            ZoneState::Empty,
            ZoneState::ImplicitlyOpened,
            ZoneState::ExplicitlyOpened,
            ZoneState::Closed,
            ZoneState::ReadOnly,
            ZoneState::Full,
            ZoneState::Offline,
        ]
        .into_iter()
        .map(state_name)
        .collect();
        assert_eq!(
            names,
            [
                "EMPTY",
                "IMP_OPENED",
                "EXP_OPENED",
                "CLOSED",
                "READONLY",
                "FULL",
                "OFFLINE"
            ]
        );
    }

    #[test]
    fn the_table_shows_both_attribute_bytes() {
        let text = render(1, &[zone(0x200, ZoneState::Closed)]);
        let line = text.lines().nth(2).unwrap();
        let cols: Vec<_> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "0x200",
                "0x208",
                "0x100",
                "CLOSED",
                "SEQWRITE_REQ",
                "0x1",
                "0x3"
            ]
        );
        assert!(text.starts_with("nr_zones: 1\n"));
    }
}
