//! `nvme-identify` end to end on the emulated controller.

mod common;

use common::run_tool;
use serde_json::Value;

fn identify(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-identify"), args)
}

fn identify_json(device: &str) -> Value {
    let (code, stdout, stderr) = identify(&[device, "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    serde_json::from_str(&stdout).expect("identify prints valid JSON")
}

#[test]
fn json_namespaces_follow_the_emu_configuration() {
    let j = identify_json("emu:ns=2,lba=4096,size=64M");
    let ns = j["namespaces"].as_array().expect("namespaces array");
    assert_eq!(ns.len(), 2);
    for (i, n) in ns.iter().enumerate() {
        assert_eq!(n["nsid"], (i + 1) as u64);
        assert_eq!(n["lba_bytes"], 4096);
        assert_eq!(n["metadata_bytes"], 0);
        assert_eq!(n["nsze"], (64u64 << 20) / 4096);
        assert!(
            n["ncap"].is_u64() && n["nuse"].is_u64() && n["flbas"].is_u64(),
            "{n}"
        );
    }
    assert_eq!(j["controller"]["nn"], 2);
}

#[test]
fn json_namespaces_carry_formats_protection_and_identifiers() {
    let j = identify_json("emu:ns=2,serial=IDS1");
    for n in j["namespaces"].as_array().expect("namespaces array") {
        let lbafs = n["lbafs"].as_array().expect("lbafs array");
        assert_eq!(lbafs.len() as u64, n["nlbaf"].as_u64().unwrap() + 1);
        assert_eq!(lbafs[0], serde_json::json!({"ms": 0, "ds": 9, "rp": 0}));
        for key in ["flbas", "mc", "dpc", "dps"] {
            assert!(n[key].is_u64(), "{key} should be a number: {n}");
        }
        assert!(n["extended_lba"].is_null(), "no metadata: {n}");
        assert_eq!(n["transfer_block_bytes"], 512);
        assert_eq!(n["pi_type"], 0);
        assert!(n["pi_location"].is_null());
        assert_eq!(n["command_set"], "nvm");
        // nvme-cli's format: lowercase hex of the raw bytes.
        let nsid = n["nsid"].as_u64().unwrap();
        let eui64 = format!("52555354{nsid:08x}");
        assert_eq!(n["eui64"], eui64.as_str());
        let nguid = n["nguid"].as_str().unwrap();
        assert_eq!(nguid.len(), 32);
        assert!(nguid.ends_with(&format!("52555354{nsid:08x}")), "{nguid}");
        let d = &n["descriptors"];
        assert_eq!(d["eui64"], n["eui64"], "descriptor and Identify agree");
        assert_eq!(d["nguid"], n["nguid"], "descriptor and Identify agree");
        assert!(d["uuid"].is_null());
        assert_eq!(d["csi"], 0);
    }
}

#[test]
fn json_controller_uses_nvme_cli_names_numbers_and_trimmed_strings() {
    let j = identify_json("emu:serial=SN42,mdts=3,mqes=255,vwc=off");
    let c = &j["controller"];
    for key in [
        "vid", "ssvid", "mdts", "nn", "vwc", "oncs", "sgls", "ver", "cntlid",
    ] {
        assert!(c[key].is_u64(), "controller.{key} should be a number: {c}");
    }
    assert_eq!(
        c["sn"], "SN42",
        "serial numbers lose the spec's space padding"
    );
    assert_eq!(c["mdts"], 3);
    assert_eq!(
        c["vwc"].as_u64().unwrap() & 1,
        0,
        "vwc=off clears VWC bit 0"
    );
    assert!(!c["mn"].as_str().unwrap().ends_with(' '));
    assert!(!c["fr"].as_str().unwrap().ends_with(' '));
    let version = c["version"].as_str().unwrap();
    assert_eq!(
        version.split('.').count(),
        3,
        "version is major.minor.tertiary: {version}"
    );
    let cap = &c["cap"];
    assert_eq!(cap["mqes"], 255);
    assert_eq!(cap["mpsmin_bytes"], 4096);
    for key in ["cqr", "to_ms", "dstrd", "css", "mpsmax_bytes"] {
        assert!(!cap[key].is_null(), "cap.{key} missing: {cap}");
    }
}

#[test]
fn human_summary_lists_the_controller_and_every_namespace() {
    let (code, stdout, stderr) = identify(&["emu:ns=3,serial=HUMAN1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("Serial Number") && stdout.contains("HUMAN1"),
        "{stdout}"
    );
    for n in 1..=3 {
        assert!(stdout.contains(&format!("Namespace {n}")), "{stdout}");
    }
    assert!(
        stdout.contains("512 B data, no protection information"),
        "the format is one readable line: {stdout}"
    );
    assert!(
        stdout.contains("Command Set") && stdout.contains("nvm"),
        "{stdout}"
    );
}

#[test]
fn a_bad_device_name_is_a_one_line_usage_error() {
    let (code, stdout, stderr) = identify(&["nvme0n1"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("nvme-identify: error: "), "{stderr}");
    assert!(stderr.contains("emu[:options]"), "{stderr}");
}

#[test]
fn an_unknown_flag_is_a_one_line_usage_error() {
    let (code, stdout, stderr) = identify(&["emu", "--jsn"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nvme-identify: error: ") && stderr.contains("--jsn"),
        "{stderr}"
    );
}

#[test]
fn a_bad_emu_option_fails_with_the_option_named() {
    let (code, _, stderr) = identify(&["emu:lba=1000"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nvme-identify: error: ") && stderr.contains("lba"),
        "{stderr}"
    );
}

#[test]
fn help_shows_examples_and_exits_zero() {
    let (code, stdout, _) = identify(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Examples:") && stdout.contains("--json"),
        "{stdout}"
    );
}

#[test]
fn json_reports_extended_lba_formats_with_nvme_cli_names() {
    let j = identify_json("emu:ms=16,pi=1,guard=crc64");
    assert_eq!(
        j["controller"]["ctratt"].as_u64().unwrap() & (1 << 15),
        1 << 15
    );
    let n = &j["namespaces"][0];
    assert_eq!(
        n["elbafs"],
        serde_json::json!([{"sts": 0, "pif": 2}]),
        "{n}"
    );
    assert_eq!(n["pic"], 0);
    assert_eq!(n["lbstm"], 0);
    assert_eq!(n["pi_guard_bits"], 64);
    let j = identify_json("emu:ms=8,pi=3");
    let n = &j["namespaces"][0];
    assert_eq!(
        n["elbafs"],
        serde_json::json!([{"sts": 0, "pif": 0}]),
        "{n}"
    );
    assert_eq!(n["pi_guard_bits"], 16);
}

#[test]
fn json_reports_the_command_set_and_zones_of_a_zoned_namespace() {
    let j = identify_json("emu:zoned,size=64M,lba=4096,zone_size=4M,max_open=4,max_active=6");
    let ns = &j["namespaces"][0];
    assert_eq!(ns["command_set"], "zoned");
    let z = &ns["zoned"];
    assert_eq!(z["zone_size_blocks"], 1024);
    assert_eq!(z["zones"], 16);
    assert_eq!(z["max_open"], 4);
    assert_eq!(z["max_active"], 6);
    assert!(z.get("zasl_bytes").is_some(), "{z}");
    let (code, stdout, _) = identify(&["emu:zoned,size=64M,lba=4096,zone_size=4M"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Command Set                          zoned"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Max Open Zones                       no limit"),
        "{stdout}"
    );
    // An NVM namespace says so, and has no zones.
    let j = identify_json("emu:size=16M");
    assert_eq!(j["namespaces"][0]["command_set"], "nvm");
    assert!(j["namespaces"][0]["zoned"].is_null());
}
