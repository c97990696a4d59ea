//! `nvme-zns` end to end on the emulated controller's zoned namespace.

mod common;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nvme-zns");
/// Eight zones of 1 MiB (2048 blocks of 512 bytes).
const DEV: &str = "emu:zoned,size=8M,zone_size=1M";
const ZONE: u64 = 2048;

fn run(args: &str) -> (i32, String, String) {
    let words: Vec<&str> = args.split_whitespace().collect();
    common::run_tool(BIN, &words)
}

/// Every JSON document `args` prints, in order (one per `report --json`; the lines
/// between them are the actions' confirmations).
fn reports(args: &str) -> Vec<Value> {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args}: {err}");
    let mut docs = Vec::new();
    let mut doc: Option<String> = None;
    for line in out.lines() {
        match (&mut doc, line) {
            (None, "{") => doc = Some("{".to_string()),
            (None, other) => assert!(
                other.ends_with("of namespace 1") || other.ends_with("it applies to"),
                "{other}"
            ),
            (Some(text), _) => {
                text.push_str(line);
                if line == "}" {
                    let v = serde_json::from_str(text)
                        .unwrap_or_else(|e| panic!("{args}: bad JSON {e}: {out}"));
                    docs.push(v);
                    doc = None;
                }
            }
        }
    }
    assert!(doc.is_none(), "{out}");
    docs
}

fn states(report: &Value) -> Vec<String> {
    report["zone_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn report_json_has_nvme_cli_fields_for_every_zone() {
    let (code, out, err) = run(&format!("{DEV} report --json"));
    assert_eq!(code, 0, "{err}");
    // nvme-cli's keys in nvme-cli's order.
    let first = &out[out.find("\"zone_list\"").unwrap()..];
    let at = |key: &str| first.find(&format!("\"{key}\":")).unwrap();
    let keys = ["slba", "wp", "cap", "state", "type", "attrs"];
    assert!(keys.windows(2).all(|w| at(w[0]) < at(w[1])), "{out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r.as_object().unwrap().keys().count(), 2, "{out}");
    assert_eq!(r["nr_zones"], 8);
    let zones = r["zone_list"].as_array().unwrap();
    assert_eq!(zones.len(), 8);
    for (i, z) in zones.iter().enumerate() {
        let slba = i as u64 * ZONE;
        assert_eq!(z.as_object().unwrap().len(), keys.len(), "{z}");
        assert_eq!(z["slba"], slba);
        assert_eq!(z["wp"], slba);
        assert_eq!(z["cap"], ZONE);
        assert_eq!(z["state"], "EMPTY");
        assert_eq!(z["type"], "SEQWRITE_REQ");
        assert_eq!(z["attrs"], 0);
    }
}

#[test]
fn report_shows_the_zone_capacity() {
    let r = &reports("emu:zoned,size=4M,zone_size=1M,zone_cap=768K report --json")[0];
    assert_eq!(r["nr_zones"], 4);
    assert!(r["zone_list"]
        .as_array()
        .unwrap()
        .iter()
        .all(|z| z["cap"] == 1536));
}

#[test]
fn each_action_shows_in_the_following_report() {
    let r = reports(&format!(
        "{DEV} open --zone 0 + report --json + close --zone 0 + finish --zone {} + report --json \
         + open --all + report --json + reset --zone 0 + report --json + finish --all + report --json \
         + reset --all + report --json",
        2 * ZONE
    ));
    assert_eq!(r.len(), 6);
    let empty = |n| vec!["EMPTY".to_string(); n];
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(states(&r[0])[0], "EXP_OPENED");
    assert_eq!(states(&r[0])[1..], empty(7)[..]);
    assert_eq!(states(&r[1])[..3], s(&["CLOSED", "EMPTY", "FULL"])[..]);
    // A finished zone's write pointer is at its capacity.
    assert_eq!(r[1]["zone_list"][2]["wp"], 3 * ZONE);
    // Open with select-all opens the closed zones.
    assert_eq!(states(&r[2])[..3], s(&["EXP_OPENED", "EMPTY", "FULL"])[..]);
    assert_eq!(states(&r[3])[..3], s(&["EMPTY", "EMPTY", "FULL"])[..]);
    // Finish with select-all applies to open and closed zones only: none are left.
    assert_eq!(states(&r[4])[..3], s(&["EMPTY", "EMPTY", "FULL"])[..]);
    assert_eq!(states(&r[5]), empty(8));
    assert_eq!(r[5]["zone_list"][2]["wp"], 2 * ZONE);
}

#[test]
fn the_state_filter_lists_and_counts_only_matching_zones() {
    let r = reports(&format!(
        "{DEV} open --zone {} + finish --zone {} + finish --zone {} + report --state full --json \
         + report --state exp_opened --json + report -S 1 --json + report --state closed --json",
        ZONE,
        3 * ZONE,
        5 * ZONE
    ));
    assert_eq!(r[0]["nr_zones"], 2);
    let slbas: Vec<_> = r[0]["zone_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["slba"].as_u64().unwrap())
        .collect();
    assert_eq!(slbas, [3 * ZONE, 5 * ZONE]);
    assert_eq!(r[1]["nr_zones"], 1);
    assert_eq!(r[1]["zone_list"][0]["slba"], ZONE);
    assert_eq!(r[2]["nr_zones"], 5);
    assert_eq!(states(&r[2]), vec!["EMPTY".to_string(); 5]);
    assert_eq!(r[3]["nr_zones"], 0);
    assert_eq!(r[3]["zone_list"].as_array().unwrap().len(), 0);
}

#[test]
fn a_partial_report_counts_the_zones_it_lists() {
    let r = reports(&format!(
        "{DEV} finish --zone 0 + report --partial --json + report --partial --state full --json"
    ));
    assert_eq!(r[0]["nr_zones"], 8);
    assert_eq!(r[0]["zone_list"].as_array().unwrap().len(), 8);
    assert_eq!(r[1]["nr_zones"], 1);
    assert_eq!(r[1]["zone_list"][0]["state"], "FULL");
}

#[test]
fn the_table_has_one_line_per_zone_in_hex() {
    let (code, out, err) = run(&format!("{DEV} open --zone {ZONE} + report"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Open Zone: the zone at LBA 0x800"),
        "{out}"
    );
    assert_eq!(lines[1], "nr_zones: 8");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["ZSLBA", "WP", "CAP", "STATE", "TYPE", "ZA", "ZAI"]
    );
    assert_eq!(lines.len(), 3 + 8);
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        [
            "0x800",
            "0x800",
            "0x800",
            "EXP_OPENED",
            "SEQWRITE_REQ",
            "0x0",
            "0x0"
        ]
    );
}

#[test]
fn a_namespace_that_is_not_zoned_is_refused_by_name() {
    for cmd in ["report", "reset --all"] {
        let (code, out, err) = run(&format!("emu {cmd}"));
        assert_eq!(code, 1, "{cmd}: {out}");
        assert!(
            err.starts_with("nvme-zns: error: namespace 1 of emu is not a zoned namespace"),
            "{err}"
        );
        assert!(err.contains("Zoned Namespace Command Set"), "{err}");
    }
    let (code, _, err) = run(&format!("{DEV} --ns 2 report"));
    assert_eq!(code, 1);
    assert!(err.contains("namespace 2 is not active"), "{err}");
}

#[test]
fn device_refusals_name_the_zone_and_the_status() {
    // Offline applies to Read Only zones only.
    let (code, _, err) = run(&format!("{DEV} offline --zone {ZONE}"));
    assert_eq!(code, 1);
    assert!(err.contains("Invalid Zone State Transition"), "{err}");
    assert!(
        err.contains("zone at LBA 0x800 (write pointer 0x800)"),
        "{err}"
    );
    // The open limit.
    let (code, out, err) = run(&format!(
        "emu:zoned,size=8M,zone_size=1M,max_open=1,max_active=2 open --zone 0 + open --zone {ZONE}"
    ));
    assert_eq!(code, 1);
    assert!(out.contains("Open Zone: the zone at LBA 0x0"), "{out}");
    assert!(err.contains("Too Many Open Zones"), "{err}");
}

#[test]
fn bad_targets_are_refused_before_any_command() {
    let (code, _, err) = run(&format!("{DEV} reset --zone 0x810"));
    assert_eq!(code, 1);
    assert!(
        err.contains("LBA 0x810 is not the start of a zone") && err.contains("starting at 0x800"),
        "{err}"
    );
    let (code, _, err) = run(&format!("{DEV} reset --zone 0x4000"));
    assert_eq!(code, 1);
    assert!(err.contains("past the end"), "{err}");
    for bad in [
        "open",
        "close --all --zone 0",
        "report --state opened",
        "report + frob",
    ] {
        let (code, _, err) = run(&format!("{DEV} {bad}"));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.starts_with("nvme-zns: error: "), "{bad}: {err}");
    }
}
