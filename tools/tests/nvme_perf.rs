//! `nvme-perf` end to end on the emulated controller (short runs).

mod common;

use common::run_tool;
use serde_json::Value;

fn perf(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-perf"), args)
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn json_report_has_every_key_and_consistent_statistics() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=64M",
        "-q",
        "8",
        "-o",
        "4096",
        "-w",
        "randread",
        "-t",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let j = json(&stdout);
    let ios = f(&j, "ios");
    assert!(ios > 0.0, "{j}");
    assert!(f(&j, "iops") > 0.0);
    assert!(f(&j, "mib_per_s") > 0.0);
    assert!(f(&j, "cpu_ns_per_io") > 0.0);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["verify_failures"], 0);
    assert_eq!(f(&j, "reads"), ios, "randread does only reads");
    let l = &j["latency_us"];
    let order = ["min", "p50", "p90", "p99", "p99_9", "p99_99", "max"];
    let values: Vec<f64> = order.iter().map(|k| f(l, k)).collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {l}"
    );
    let avg = f(l, "avg");
    assert!(
        values[0] <= avg && avg <= values[6],
        "average outside min..max: {l}"
    );
    assert!(values[0] > 0.0);
    // Throughput follows from IOPS and the I/O size.
    let mib = f(&j, "iops") * 4096.0 / 1048576.0;
    assert!(
        (f(&j, "mib_per_s") - mib).abs() < 1e-6 * mib.max(1.0),
        "{j}"
    );
}

#[test]
fn shadow_doorbells_are_used_when_offered_unless_turned_off() {
    for (extra, used) in [(None, true), (Some("--no-shadow-doorbells"), false)] {
        let mut args = vec!["emu:size=16M", "-q", "4", "-t", "1", "--json"];
        args.extend(extra);
        let (code, stdout, stderr) = perf(&args);
        assert_eq!(code, 0, "stderr: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["config"]["shadow_doorbells"], used, "{extra:?}: {j}");
        assert!(f(&j, "ios") > 0.0, "{j}");
    }
}

#[test]
fn verify_passes_on_a_healthy_device_and_checks_reads_of_written_blocks() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M",
        "-w",
        "randrw",
        "-M",
        "50",
        "-q",
        "8",
        "--span",
        "1M",
        "--verify",
        "-t",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let j = json(&stdout);
    assert!(f(&j, "reads") > 0.0 && f(&j, "writes") > 0.0, "{j}");
    assert!(
        f(&j, "verified_blocks") > 0.0,
        "no read hit a block this run wrote: {j}"
    );
    assert_eq!(j["verify_failures"], 0);
    assert_eq!(j["config"]["verify"], true);
}

#[test]
fn verify_catches_data_corrupted_by_the_device() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M",
        "-w",
        "randrw",
        "-q",
        "8",
        "--span",
        "256k",
        "--verify",
        "-t",
        "1",
        "--json",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1, "a mismatch must fail the run; stderr: {stderr}");
    let j = json(&stdout);
    assert!(f(&j, "verify_failures") > 0.0, "{j}");
    let first = j["mismatches"][0].as_str().expect("mismatch list");
    assert!(
        first.starts_with("LBA 0x"),
        "a mismatch names its LBA: {first}"
    );
    assert!(
        stderr.starts_with("nvme-perf: error: ") && stderr.contains("failed verification"),
        "{stderr}"
    );
}

#[test]
fn two_queue_pairs_in_interrupt_mode_complete_writes() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M",
        "-w",
        "write",
        "-o",
        "8k",
        "-q",
        "4",
        "--qpairs",
        "2",
        "--mode",
        "interrupt",
        "-t",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let j = json(&stdout);
    assert_eq!(j["config"]["qpairs"], 2);
    assert_eq!(j["config"]["mode"], "interrupt");
    assert!(f(&j, "writes") > 0.0);
    assert_eq!(f(&j, "reads"), 0.0);
}

#[test]
fn human_output_names_the_measurements() {
    let (code, stdout, stderr) = perf(&["emu:size=16M", "-q", "4", "-t", "1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    for word in ["IOPS", "MiB/s", "p99.99", "CPU ns/IO", "errors"] {
        assert!(stdout.contains(word), "{word} missing: {stdout}");
    }
}

#[test]
fn an_io_size_off_the_block_size_is_refused_with_the_block_size() {
    let (code, stdout, stderr) = perf(&["emu:lba=4096,size=16M", "-o", "512", "-t", "1"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("4096-byte logical block"), "{stderr}");
}

#[test]
fn a_missing_namespace_is_refused_with_the_active_ones() {
    let (code, _, stderr) = perf(&["emu:size=16M", "--ns", "2", "-t", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("nvme-perf: error: namespace 2") && stderr.contains("--ns"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_and_device_names_are_one_line_usage_errors() {
    for args in [
        &["emu", "--queue-depht", "4"][..],
        &["emu", "-w", "trim"],
        &["emu", "-q", "0"],
        &["/dev/nvme0n1"],
        &[],
    ] {
        let (code, stdout, stderr) = perf(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("nvme-perf: error: "),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn help_shows_examples() {
    let (code, stdout, _) = perf(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Examples:") && stdout.contains("-w randread"),
        "{stdout}"
    );
}

#[test]
fn verify_holds_across_queue_pairs_on_a_threaded_controller() {
    let (code, stdout, stderr) = perf(&[
        "emu:mode=threaded,size=16M",
        "-w",
        "randrw",
        "-q",
        "16",
        "--qpairs",
        "2",
        "--span",
        "4M",
        "--verify",
        "-t",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let j = json(&stdout);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["verify_failures"], 0);
    assert!(f(&j, "verified_blocks") > 0.0, "{j}");
}

#[test]
fn verify_runs_clean_on_extended_lba_formats_and_reports_the_format() {
    for (device, lba, ms) in [
        ("emu:size=16M,ms=8,mset=ext", 512, 8),
        ("emu:size=16M,lba=4096,ms=64,mset=ext", 4096, 64),
    ] {
        let io = (2 * lba).to_string();
        let (code, stdout, stderr) = perf(&[
            device, "-w", "randrw", "-o", &io, "-q", "8", "--span", "256k", "--verify", "-t", "1",
            "--json",
        ]);
        assert_eq!(code, 0, "{device}: stderr: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["errors"], 0, "{device}: {j}");
        assert_eq!(j["verify_failures"], 0, "{device}: {j}");
        assert!(f(&j, "verified_blocks") > 0.0, "{device}: {j}");
        assert!(
            f(&j, "reads") > 0.0 && f(&j, "writes") > 0.0,
            "{device}: {j}"
        );
        let c = &j["config"];
        assert_eq!(c["io_size"], 2 * lba, "-o counts data bytes: {j}");
        assert_eq!(c["lba_bytes"], lba, "{j}");
        assert_eq!(c["metadata_bytes"], ms, "{j}");
        assert_eq!(c["extended_lba"], true, "{j}");
        // Throughput counts data bytes: MiB/s is IOPS times the data size.
        let expect = f(&j, "ios") * (2 * lba) as f64 / f(&j, "seconds") / (1024.0 * 1024.0);
        let mib = f(&j, "mib_per_s");
        assert!(
            (mib - expect).abs() <= expect * 1e-9 + 1e-9,
            "{mib} vs {expect}: {j}"
        );
    }
}

#[test]
fn the_summary_line_names_an_extended_format() {
    let (code, stdout, stderr) = perf(&["emu:size=16M,ms=8,mset=ext", "-q", "4", "-t", "1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.contains("512+8 B extended LBAs"), "{stdout}");
}

#[test]
fn verify_catches_corruption_on_an_extended_format() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M,ms=8,mset=ext",
        "-w",
        "randrw",
        "-q",
        "8",
        "--span",
        "256k",
        "--verify",
        "-t",
        "1",
        "--json",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1, "a mismatch must fail the run; stderr: {stderr}");
    let j = json(&stdout);
    assert!(f(&j, "verify_failures") > 0.0, "{j}");
    let first = j["mismatches"][0].as_str().expect("mismatch list");
    assert!(first.starts_with("LBA 0x"), "{first}");
}

/// Runs a short verified random read/write mix on `device` with `extra` flags and
/// returns the JSON report after checking that it ran clean.
fn verified_run(device: &str, io: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        device, "-w", "randrw", "-o", io, "-q", "8", "--span", "256k", "--verify", "-t", "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = perf(&args);
    assert_eq!(code, 0, "{device} {extra:?}: stderr: {stderr}");
    let j = json(&stdout);
    assert_eq!(j["errors"], 0, "{device}: {j}");
    assert_eq!(j["verify_failures"], 0, "{device}: {j}");
    assert!(f(&j, "verified_blocks") > 0.0, "{device}: {j}");
    assert!(
        f(&j, "reads") > 0.0 && f(&j, "writes") > 0.0,
        "{device}: {j}"
    );
    j
}

#[test]
fn verify_runs_clean_on_separate_metadata_formats() {
    for (device, lba, ms) in [
        ("emu:size=16M,ms=8,mset=sep", 512, 8),
        ("emu:size=16M,ms=16,mset=sep,pi=1", 512, 16),
        ("emu:size=16M,lba=4096,ms=64,mset=sep", 4096, 64),
    ] {
        let j = verified_run(device, &(2 * lba).to_string(), &[]);
        let c = &j["config"];
        assert_eq!(c["io_size"], 2 * lba, "-o counts data bytes: {j}");
        assert_eq!(c["metadata_bytes"], ms, "{j}");
        assert_eq!(c["extended_lba"], false, "{j}");
        assert_eq!(c["transfer"], "prp", "{j}");
    }
    let (code, stdout, stderr) = perf(&["emu:size=16M,ms=8,mset=sep", "-q", "4", "-t", "1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("512+8 B blocks, separate metadata") && first.contains("PRP transfers"),
        "{stdout}"
    );
}

#[test]
fn verify_catches_corruption_on_a_separate_metadata_format() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M,ms=8,mset=sep",
        "-w",
        "randrw",
        "-q",
        "8",
        "--span",
        "256k",
        "--verify",
        "-t",
        "1",
        "--json",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1, "a mismatch must fail the run; stderr: {stderr}");
    let j = json(&stdout);
    assert!(f(&j, "verify_failures") > 0.0, "{j}");
}

#[test]
fn sgl_verify_runs_clean_on_plain_extended_and_separate_metadata_formats() {
    for (device, io) in [
        ("emu:size=16M", "4096"),
        ("emu:size=16M,ms=8,mset=ext", "1024"),
        ("emu:size=16M,ms=8,mset=sep", "1024"),
        ("emu:size=16M,lba=4096,ms=64,mset=sep", "8192"),
    ] {
        let j = verified_run(device, io, &["--sgl"]);
        assert_eq!(j["config"]["transfer"], "sgl", "{device}: {j}");
    }
    let (code, stdout, stderr) = perf(&["emu:size=16M", "--sgl", "-q", "4", "-t", "1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("SGL transfers"),
        "{stdout}"
    );
}

#[test]
fn sgl_on_a_controller_without_sgl_support_is_an_error_that_says_so() {
    let (code, stdout, stderr) = perf(&["emu:size=16M,sgl=off", "--sgl", "-t", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("nvme-perf: error: --sgl: controller")
            && stderr.contains("does not support SGLs"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn pract_runs_clean_where_the_metadata_is_only_protection_information() {
    for device in [
        "emu:size=16M,ms=8,mset=sep,pi=1",
        "emu:size=16M,ms=8,mset=ext,pi=3",
    ] {
        let (code, stdout, stderr) = perf(&[
            device, "-w", "randrw", "-q", "8", "--span", "256k", "--verify", "--pi", "pract", "-t",
            "1", "--json",
        ]);
        assert_eq!(code, 0, "{device}: stderr: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["errors"], 0, "{device}: {j}");
        assert_eq!(j["verify_failures"], 0, "{device}: {j}");
        assert!(f(&j, "verified_blocks") > 0.0, "{device}: {j}");
        assert_eq!(j["config"]["pi"], "pract", "{j}");
    }
    for device in ["emu:size=16M", "emu:size=16M,ms=16,mset=sep"] {
        let (code, _, stderr) = perf(&[device, "--pi", "pract", "-t", "1"]);
        assert_eq!(code, 1, "{device}: {stderr}");
        assert!(
            stderr.starts_with("nvme-perf: error: --pi pract: namespace 1")
                && stderr.contains("needs a format with protection information"),
            "{device}: {stderr}"
        );
    }
}

#[test]
fn host_pi_runs_clean_and_verify_checks_the_tuples_read_back() {
    for device in [
        "emu:size=16M,ms=8,mset=ext,pi=1",
        "emu:size=16M,lba=4096,ms=64,mset=ext,pi=3,pil=first",
        "emu:size=16M,ms=16,mset=ext,pi=2,guard=crc64",
    ] {
        let (code, stdout, stderr) = perf(&[
            device, "-w", "randrw", "-q", "8", "--span", "256k", "--verify", "--pi", "host", "-t",
            "1", "--json",
        ]);
        assert_eq!(code, 0, "{device}: stderr: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["errors"], 0, "{device}: {j}");
        assert_eq!(j["verify_failures"], 0, "{device}: {j}");
        assert!(f(&j, "verified_blocks") > 0.0, "{device}: {j}");
        assert_eq!(j["config"]["pi"], "host", "{j}");
    }
    // Blocks changed after the controller checked them fail the host's own check of
    // the guard, named by LBA, and the run.
    let (code, _, stderr) = perf(&[
        "emu:size=16M,ms=8,mset=ext,pi=1",
        "-w",
        "randrw",
        "--span",
        "256k",
        "--verify",
        "--pi",
        "host",
        "-t",
        "1",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--pi host: protection information of LBA 0x")
            && stderr.contains("the guard is"),
        "{stderr}"
    );
    // A namespace without protection information is refused before any I/O.
    let (code, _, stderr) = perf(&["emu:size=16M,ms=8,mset=ext", "--pi", "host", "-t", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("nvme-perf: error: --pi host: namespace 1")
            && stderr.contains("needs a format with protection information"),
        "{stderr}"
    );
}

#[test]
fn number_ios_ends_the_run_after_that_many_ios_per_queue_pair() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=16M",
        "-w",
        "randrw",
        "-q",
        "4",
        "--qpairs",
        "2",
        "-d",
        "300",
        "-t",
        "60",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let j = json(&stdout);
    assert_eq!(j["ios"], 600, "{j}");
    assert_eq!(j["config"]["number_ios"], 300, "{j}");
    let seconds = f(&j, "seconds");
    assert!(seconds > 0.0 && seconds < 60.0, "{j}");
    assert!(
        (f(&j, "iops") - 600.0 / seconds).abs() < 1e-6 * f(&j, "iops"),
        "IOPS over the time the I/Os took, not -t: {j}"
    );
}

/// Every protection information format of the emulated controller: metadata of 8, 16
/// and 64 bytes, extended or separate, types 1 to 3, the tuple first or last, the
/// 8-byte (CRC-16) and, where the metadata holds it, the 16-byte (CRC-64) tuple; and two
/// with 4096-byte blocks.
fn pi_formats() -> Vec<(String, u64)> {
    let mut formats = Vec::new();
    for ms in [8, 16, 64] {
        for mset in ["ext", "sep"] {
            for pi in 1..=3 {
                for pil in ["first", "last"] {
                    for guard in ["crc16", "crc64"] {
                        if guard == "crc64" && ms < 16 {
                            continue;
                        }
                        formats.push((
                            format!(
                                "emu:size=1M,ms={ms},mset={mset},pi={pi},pil={pil},guard={guard}"
                            ),
                            512,
                        ));
                    }
                }
            }
        }
    }
    formats.push(("emu:size=1M,lba=4096,ms=8,mset=ext,pi=1".into(), 4096));
    formats.push((
        "emu:size=1M,lba=4096,ms=64,mset=sep,pi=2,pil=first,guard=crc64".into(),
        4096,
    ));
    formats
}

/// Runs 200 I/Os of a verified random read/write mix of two-block I/Os over 16 units on
/// every protection information format with `--pi mode`, and checks that each ran
/// clean and verified blocks. A fixed I/O count, not a time, keeps a loaded machine
/// from shortening the runs.
fn verify_every_pi_format(mode: &str) {
    let formats = pi_formats();
    assert_eq!(formats.len(), 62);
    for (device, lba) in &formats {
        let (io, span) = ((2 * lba).to_string(), (32 * lba).to_string());
        let (code, stdout, stderr) = perf(&[
            device, "-w", "randrw", "-o", &io, "-q", "4", "--span", &span, "--verify", "--pi",
            mode, "-d", "200", "-t", "60", "--json",
        ]);
        assert_eq!(code, 0, "{device} --pi {mode}: stderr: {stderr}");
        assert!(!stderr.contains("WARN"), "{device} --pi {mode}: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["ios"], 200, "{device} --pi {mode}: {j}");
        assert_eq!(j["errors"], 0, "{device} --pi {mode}: {j}");
        assert_eq!(j["verify_failures"], 0, "{device} --pi {mode}: {j}");
        assert!(f(&j, "verified_blocks") > 0.0, "{device} --pi {mode}: {j}");
        let c = &j["config"];
        assert_eq!(c["pi"], mode, "{j}");
        assert_eq!(c["extended_lba"], device.contains("mset=ext"), "{j}");
        let ms = device
            .split(',')
            .find_map(|o| o.strip_prefix("ms="))
            .unwrap();
        assert_eq!(c["metadata_bytes"].to_string(), ms, "{j}");
    }
}

#[test]
fn pract_verifies_clean_on_every_protection_information_format() {
    verify_every_pi_format("pract");
}

#[test]
fn host_pi_verifies_clean_on_every_protection_information_format() {
    verify_every_pi_format("host");
}

#[test]
fn host_pi_on_a_separate_format_catches_data_changed_after_the_controllers_check() {
    let (code, stdout, stderr) = perf(&[
        "emu:size=1M,ms=16,mset=sep,pi=2,guard=crc64",
        "-w",
        "randrw",
        "-o",
        "1024",
        "-q",
        "4",
        "--span",
        "16k",
        "--verify",
        "--pi",
        "host",
        "-d",
        "200",
        "-t",
        "60",
        "--json",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1, "a mismatch must fail the run; stderr: {stderr}");
    let j = json(&stdout);
    assert_eq!(
        j["errors"], 0,
        "the controller checked before the corruption: {j}"
    );
    assert!(f(&j, "verify_failures") > 0.0, "{j}");
    assert_eq!(
        j["verify_failures"], j["verified_blocks"],
        "every block is corrupted: {j}"
    );
    // The host's check of the tuples in the metadata buffer names the block and field.
    assert!(
        stderr.contains("--pi host: protection information of LBA 0x")
            && stderr.contains("the guard is"),
        "{stderr}"
    );
}

#[test]
fn io_sizes_above_mdts_are_split_by_the_driver_and_verify_clean() {
    // mdts=1: 8 KiB per command, so each 1 MiB I/O is 128 commands (137 with 520-byte
    // extended blocks).
    for device in ["emu:size=64M,mdts=1", "emu:size=64M,ms=8,mset=ext,mdts=1"] {
        let (code, stdout, stderr) = perf(&[
            // A fixed number of I/Os, not a time: a loaded machine must not make the run
            // too short to read back what it wrote.
            device, "-w", "randrw", "-o", "1M", "-q", "4", "--span", "4M", "--verify", "-d", "64",
            "-t", "120", "--json",
        ]);
        assert_eq!(code, 0, "{device}: stderr: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["errors"], 0, "{device}: {j}");
        assert_eq!(j["verify_failures"], 0, "{device}: {j}");
        assert!(
            f(&j, "reads") > 0.0 && f(&j, "writes") > 0.0,
            "{device}: {j}"
        );
        assert!(f(&j, "verified_blocks") > 0.0, "{device}: {j}");
        assert_eq!(j["config"]["io_size"], 1 << 20, "{j}");
    }
}

#[test]
fn an_io_size_needing_more_commands_than_a_queue_holds_is_refused() {
    // 128 commands of 8 KiB per I/O; the controller's queues hold 63.
    let (code, stdout, stderr) = perf(&[
        "emu:size=64M,mdts=1,mqes=63",
        "-o",
        "1M",
        "-q",
        "1",
        "-t",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("split into 128 commands of at most 8192 bytes")
            && stderr.contains("hold at most 63 commands"),
        "{stderr}"
    );
}

const ZONED: &str = "emu:zoned,size=16M,zone_size=1M";

#[test]
fn zoned_random_and_mixed_writes_are_refused_with_what_to_use() {
    for w in ["randwrite", "randrw", "rw"] {
        let (code, stdout, stderr) = perf(&[ZONED, "-w", w, "-t", "1"]);
        assert_eq!(code, 1, "{w}: {stdout}");
        assert!(
            stderr.starts_with(&format!("nvme-perf: error: -w {w}: namespace 1 is zoned")),
            "{stderr}"
        );
        assert!(
            stderr.contains("-w write")
                && stderr.contains("-w append")
                && stderr.contains("write pointer"),
            "{stderr}"
        );
        // Refused before any I/O: no report.
        assert!(stdout.is_empty(), "{stdout}");
    }
    let (code, _, stderr) = perf(&["emu", "-w", "append", "-t", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("-w append: namespace 1 is not zoned"),
        "{stderr}"
    );
}

#[test]
fn zoned_appends_at_queue_depth_verify_clean_where_the_device_put_them() {
    let (code, stdout, stderr) = perf(&[
        ZONED, "-w", "append", "-q", "16", "-d", "1000", "--verify", "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let j = json(&stdout);
    assert_eq!(f(&j, "ios"), 1000.0, "{j}");
    assert_eq!(f(&j, "errors"), 0.0, "{j}");
    assert_eq!(f(&j, "verify_failures"), 0.0, "{j}");
    // Every appended block was read back: 1000 appends of 8 blocks.
    assert_eq!(f(&j, "verified_blocks"), 8000.0, "{j}");
    assert_eq!(j["config"]["workload"], "append", "{j}");
    // And a corrupting device is caught.
    let (code, stdout, _) = perf(&[
        ZONED,
        "-w",
        "append",
        "-q",
        "4",
        "-d",
        "100",
        "--verify",
        "--json",
        "--inject-read-corruption",
    ]);
    assert_eq!(code, 1);
    assert_eq!(f(&json(&stdout), "verify_failures"), 800.0);
}

#[test]
fn zoned_writes_stay_within_the_open_and_active_zone_limits() {
    // 16 zones, at most 2 open and 3 active: writing every zone of the span at once
    // would meet Too Many Active/Open Zones from the device.
    let limited = "emu:zoned,size=16M,zone_size=1M,max_open=2,max_active=3";
    for w in ["append", "write"] {
        let (code, stdout, stderr) = perf(&[limited, "-w", w, "-q", "8", "-d", "200", "--json"]);
        assert_eq!(code, 0, "-w {w}: {stderr}");
        let j = json(&stdout);
        assert_eq!(f(&j, "errors"), 0.0, "-w {w}: {j}");
        assert_eq!(f(&j, "ios"), 200.0, "-w {w}: {j}");
    }
    let (code, _, stderr) = perf(&[limited, "-w", "append", "--qpairs", "3", "-t", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the namespace lets 2 zones be open and active at once"),
        "{stderr}"
    );
}

#[test]
fn zoned_sequential_writes_keep_to_the_write_pointers_then_reads_go_anywhere() {
    // Two queue pairs, each with its own zones, four writers each: the device
    // refuses any write off a write pointer, so no error means every write was at one.
    let (code, stdout, stderr) = perf(&[
        ZONED, "-w", "write", "-q", "4", "--qpairs", "2", "-d", "1500", "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let j = json(&stdout);
    assert_eq!(f(&j, "ios"), 3000.0, "{j}");
    assert_eq!(f(&j, "errors"), 0.0, "{j}");
    for w in ["read", "randread"] {
        let (code, stdout, stderr) = perf(&[ZONED, "-w", w, "-q", "8", "-d", "500", "--json"]);
        assert_eq!(code, 0, "{w}: {stderr}");
        assert_eq!(f(&json(&stdout), "errors"), 0.0);
    }
    // A span with fewer whole zones than writing queue pairs.
    let (code, _, stderr) = perf(&[
        ZONED, "-w", "write", "--span", "1M", "--qpairs", "2", "-t", "1",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("1 whole zones"), "{stderr}");
}
