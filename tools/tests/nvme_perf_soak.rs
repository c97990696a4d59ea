//! `nvme-perf --inject-faults`: a short soak under every fault kind on the threaded
//! emulated controller, and proof that its checks fail when something is wrong.

mod common;

use common::run_tool;
use serde_json::Value;

fn perf(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-perf"), args)
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"))
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing or not a count in {v}"))
}

/// Four queue pairs of random reads and writes with `--verify` under media errors,
/// dropped and delayed completions and a reset about every second.
const SOAK: &[&str] = &[
    "emu:mode=threaded,size=64M",
    "--qpairs",
    "4",
    "-q",
    "16",
    "-w",
    "randrw",
    "--span",
    "8M",
    "--verify",
    "-t",
    "3",
    "--seed",
    "7",
    "--io-timeout",
    "0.4",
    "--abort-timeout",
    "0.1",
    "--inject-faults",
    "media=5,drop=2,delay=20:10ms,reset=1",
    "--json",
];

#[test]
fn a_soak_under_every_fault_kind_verifies_clean_and_accounts_for_every_fault() {
    let (code, stdout, stderr) = perf(SOAK);
    let v = json(&stdout);
    let soak = &v["soak"];
    assert_eq!(soak["problems"], Value::Array(vec![]), "{stderr}");
    assert_eq!(soak["accounted"], true);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(n(&v, &["verify_failures"]), 0, "{}", v["mismatches"]);
    // Every kind was injected, and the host saw each kind that can show.
    for kind in ["media", "dropped", "delayed", "resets"] {
        assert!(n(soak, &[kind, "injected"]) > 0, "no {kind} faults: {soak}");
    }
    assert!(n(soak, &["media", "seen"]) > 0, "{soak}");
    assert!(
        n(soak, &["dropped", "seen"]) > 0,
        "no drop timed out: {soak}"
    );
    assert!(n(soak, &["delayed", "completed_late"]) > 0, "{soak}");
    assert!(n(soak, &["resets", "controller"]) >= n(soak, &["resets", "injected"]));
    // The driver resubmitted what the resets cut short, so no write failed.
    assert!(n(soak, &["cut_short"]) > 0, "{soak}");
    assert!(n(&v, &["errors"]) >= n(soak, &["media", "seen"]));
    // Every unit written was read back after the faults stopped; most were
    // acknowledged writes, which must read back exactly.
    let rb = &soak["read_back"];
    assert_eq!(n(rb, &["errors"]), 0, "{rb}");
    assert!(n(rb, &["acknowledged_units"]) > 100, "{rb}");
    assert!(n(rb, &["units"]) >= n(rb, &["acknowledged_units"]));
    assert!(n(&v, &["verified_blocks"]) >= 8 * n(rb, &["units"]));
    assert_eq!(n(soak, &["unexpected_errors"]), 0);
    assert_eq!(n(soak, &["seed"]), 7);
}

#[test]
fn without_driver_retries_failed_writes_leave_old_or_new_blocks_and_every_fault_is_accounted() {
    let mut args = SOAK.to_vec();
    args.extend(["--retries", "0"]);
    let (code, stdout, stderr) = perf(&args);
    let v = json(&stdout);
    let soak = &v["soak"];
    assert_eq!(soak["problems"], Value::Array(vec![]), "{stderr}");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(n(&v, &["verify_failures"]), 0, "{}", v["mismatches"]);
    // Writes failed (cut short by resets, timed out), and their blocks were checked
    // as old-or-new.
    assert!(n(soak, &["read_back", "failed_writes"]) > 0, "{soak}");
    assert!(n(soak, &["uncertain_blocks"]) > 0, "{soak}");
    assert_eq!(n(soak, &["read_back", "errors"]), 0, "{soak}");
}

#[test]
fn a_soak_whose_reads_come_back_corrupted_reports_mismatches_and_fails() {
    let mut args = SOAK.to_vec();
    args.push("--inject-read-corruption");
    let (code, stdout, stderr) = perf(&args);
    let v = json(&stdout);
    assert_ne!(code, 0, "{stdout}");
    assert!(n(&v, &["verify_failures"]) > 0, "{stdout}");
    assert!(stderr.contains("failed verification"), "{stderr}");
}

#[test]
fn the_text_report_says_whether_every_fault_is_accounted_for() {
    let args: Vec<&str> = SOAK.iter().copied().filter(|a| *a != "--json").collect();
    let (code, stdout, _) = perf(&args);
    assert_eq!(code, 0, "{stdout}");
    for line in [
        "media errors",
        "dropped",
        "delayed",
        "resets",
        "cut short by resets",
        "read-back",
        "every injected fault is accounted for",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
}

#[test]
fn fault_injection_needs_a_delay_below_half_the_io_timeout() {
    let (code, _, stderr) = perf(&[
        "emu:size=16M",
        "-t",
        "1",
        "--io-timeout",
        "0.1",
        "--inject-faults",
        "delay=10:60ms",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("under half the I/O timeout"), "{stderr}");
    let (code, _, stderr) = perf(&["emu", "--inject-faults", "media=2000"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("0..=1000"), "{stderr}");
}
