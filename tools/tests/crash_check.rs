//! What a test that kills a writer needs: `nvme-perf --check-pattern` and
//! `nvme-dio --report-writes`, on the emulated controller backed by a file.

mod common;

use std::os::unix::fs::FileExt;

use common::run_tool;
use serde_json::Value;

fn perf(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-perf"), args)
}

fn dio(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-dio"), args)
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"))
}

/// Counts (blocks, whole, torn, misplaced, garbage) of a `--check-pattern --json` report.
fn counts(j: &Value) -> [u64; 5] {
    ["blocks", "whole", "torn", "misplaced", "garbage"].map(|k| j[k].as_u64().unwrap())
}

#[test]
fn check_pattern_passes_a_prefilled_area_and_counts_torn_misplaced_and_foreign_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ns.img");
    let device = format!("emu:file={},size=4M", img.display());
    let (code, _, stderr) = perf(&[
        &device, "-w", "write", "-o", "4k", "--span", "256k", "-d", "64", "-t", "30", "--verify",
    ]);
    assert_eq!(code, 0, "pre-fill: {stderr}");
    let check = || {
        perf(&[
            &device,
            "--check-pattern",
            "--span",
            "256k",
            "-o",
            "16k",
            "--json",
        ])
    };
    let (code, stdout, stderr) = check();
    assert_eq!(code, 0, "{stderr}");
    let clean = json(&stdout);
    assert_eq!(counts(&clean), [512, 512, 0, 0, 0], "{clean}");
    assert_eq!(
        clean["generations"], 64,
        "one generation per 4 KiB write: {clean}"
    );

    // LBA 3 torn from byte 296 on, LBA 5 zeroed, LBA 7 holding LBA 6's block.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 3 * 512 + 300).unwrap();
    f.write_all_at(&[!byte[0]], 3 * 512 + 300).unwrap();
    f.write_all_at(&[0u8; 512], 5 * 512).unwrap();
    let mut six = [0u8; 512];
    f.read_exact_at(&mut six, 6 * 512).unwrap();
    f.write_all_at(&six, 7 * 512).unwrap();
    drop(f);
    let (code, stdout, stderr) = check();
    assert_eq!(code, 1, "{stdout}");
    let j = json(&stdout);
    assert_eq!(counts(&j), [512, 509, 1, 1, 1], "{j}");
    let bad: Vec<&str> = j["bad_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(bad.len(), 3, "{j}");
    assert!(
        bad[0].starts_with("LBA 0x3: torn") && bad[0].contains("offset 296"),
        "{bad:?}"
    );
    assert!(
        bad[2].contains("LBA 0x7: holds the data written for LBA 0x6"),
        "{bad:?}"
    );
    assert!(stderr.contains("3 of 512 blocks are not whole"), "{stderr}");
    assert_ne!(j["generations_digest"], clean["generations_digest"]);
}

#[test]
fn check_pattern_digest_changes_only_when_a_block_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let device = format!("emu:file={},size=4M", dir.path().join("ns.img").display());
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = perf(&[&[device.as_str()], args].concat());
        assert_eq!(code, 0, "{args:?}: {stderr}");
        stdout
    };
    run(&[
        "-w", "write", "-o", "4k", "--span", "128k", "-d", "32", "-t", "30", "--verify",
    ]);
    let digest = || {
        json(&run(&[
            "--check-pattern",
            "--span",
            "128k",
            "-o",
            "4k",
            "--json",
        ]))["generations_digest"]
            .clone()
    };
    let first = digest();
    assert_eq!(digest(), first, "reading does not change the digest");
    run(&[
        "-w",
        "randwrite",
        "-o",
        "4k",
        "--span",
        "128k",
        "-d",
        "8",
        "-t",
        "30",
        "--verify",
    ]);
    assert_ne!(digest(), first, "rewritten blocks change the digest");
}

#[test]
fn check_pattern_refuses_a_span_off_the_read_size() {
    let (code, _, stderr) = perf(&["emu:size=1M", "--check-pattern", "--span", "6k", "-o", "4k"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--span 6144: must be a multiple of -o 4096"),
        "{stderr}"
    );
}

#[test]
fn report_writes_prints_each_completed_write_with_its_crc_before_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let data_a: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 1) as u8).collect();
    let data_b: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 5) as u8).collect();
    std::fs::write(&a, &data_a).unwrap();
    std::fs::write(&b, &data_b).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, stdout, stderr) = dio(&[
        "emu:size=4M",
        "--report-writes",
        "write",
        "--offset",
        "0",
        "--input",
        a,
        "--dsync",
        "+",
        "write",
        "--offset",
        "64k",
        "--input",
        b,
        "--dsync",
        "--file",
        "f",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        json(lines[0]),
        serde_json::json!({"step": 1, "file": null, "offset": 0, "length": 8192, "crc32": crc.checksum(&data_a)})
    );
    assert_eq!(
        json(lines[1]),
        serde_json::json!({"step": 2, "file": "f", "offset": 65536, "length": 4096, "crc32": crc.checksum(&data_b)})
    );
    assert!(lines[2].starts_with("step 1 write"), "{stdout}");
    // Without the flag there are no such lines.
    let (_, stdout, _) = dio(&["emu:size=4M", "write", "--offset", "0", "--input", a]);
    assert!(stdout.starts_with("step 1 write"), "{stdout}");
}
