//! `nvme-dio` end to end on the emulated controller.

mod common;

use std::path::Path;

use common::run_tool;
use serde_json::Value;

fn dio(args: &[&str]) -> (i32, String, String) {
    run_tool(env!("CARGO_BIN_EXE_nvme-dio"), args)
}

fn dio_json(args: &[&str]) -> Value {
    let (code, stdout, stderr) = dio(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"))
}

/// Bytes that differ from block to block, so a misplaced block shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 512) as u8 ^ (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn data_written_in_one_run_reads_back_in_the_next_with_a_file_backed_emu() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let data = pattern(12 * 1024, 7);
    std::fs::write(&input, &data).unwrap();
    let device = format!("emu:file={},size=8M", s(&disk));

    let w = dio_json(&[
        &device,
        "--json",
        "write",
        "--offset",
        "64k",
        "--input",
        s(&input),
        "--dsync",
    ]);
    assert_eq!(w["bytes"], data.len() as u64);
    let r = dio_json(&[
        &device,
        "--json",
        "read",
        "--offset",
        "64k",
        "--length",
        "12k",
        "--output",
        s(&output),
    ]);
    assert_eq!(r["bytes"], data.len() as u64);
    assert_eq!(
        std::fs::read(&output).unwrap(),
        data,
        "read back differs from what was written"
    );
}

#[test]
fn dsync_overwrite_of_the_raw_namespace_uses_fua_and_no_flush() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, pattern(8192, 1)).unwrap();
    let j = dio_json(&[
        "--json",
        "emu:size=8M",
        "write",
        "--offset",
        "0",
        "--input",
        s(&input),
        "--dsync",
    ]);
    for key in [
        "bytes",
        "commands",
        "fua_commands",
        "flush_commands",
        "zeroed_bytes",
    ] {
        assert!(j[key].is_u64(), "{key} missing: {j}");
    }
    assert!(j["fua_commands"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["flush_commands"], 0, "{j}");
}

#[test]
fn dsync_write_of_new_file_blocks_flushes_and_the_overwrite_uses_fua() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let data = pattern(8192, 3);
    std::fs::write(&input, &data).unwrap();
    let j = dio_json(&[
        "--json",
        "emu:size=8M",
        "write",
        "--file",
        "f",
        "--offset",
        "0",
        "--input",
        s(&input),
        "--dsync",
        "+",
        "write",
        "--file",
        "f",
        "--offset",
        "0",
        "--input",
        s(&input),
        "--dsync",
        "+",
        "read",
        "--file",
        "f",
        "--offset",
        "0",
        "--length",
        "8192",
        "--output",
        s(&output),
    ]);
    let steps = j["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    // New blocks need their allocation made durable: a flush, not FUA.
    assert!(
        steps[0]["flush_commands"].as_u64().unwrap() > 0,
        "{}",
        steps[0]
    );
    assert_eq!(steps[0]["fua_commands"], 0, "{}", steps[0]);
    // Overwriting written blocks: FUA on the write, no flush.
    assert!(
        steps[1]["fua_commands"].as_u64().unwrap() > 0,
        "{}",
        steps[1]
    );
    assert_eq!(steps[1]["flush_commands"], 0, "{}", steps[1]);
    assert_eq!(std::fs::read(&output).unwrap(), data);
    let total: u64 = steps.iter().map(|s| s["commands"].as_u64().unwrap()).sum();
    assert_eq!(j["commands"], total, "totals add up the steps");
}

#[test]
fn a_sub_block_write_to_a_new_file_zeroes_the_rest_of_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let data = pattern(512, 9);
    std::fs::write(&input, &data).unwrap();
    let j = dio_json(&[
        "--json",
        "emu:size=8M",
        "write",
        "--file",
        "f",
        "--offset",
        "512",
        "--input",
        s(&input),
        "+",
        "read",
        "--file",
        "f",
        "--offset",
        "0",
        "--length",
        "1024",
        "--output",
        s(&output),
    ]);
    // The extent layer's blocks are 4 KiB: the other 3.5 KiB of the new block are zeroed.
    assert_eq!(j["steps"][0]["zeroed_bytes"], 4096 - 512, "{j}");
    let back = std::fs::read(&output).unwrap();
    assert_eq!(
        &back[..512],
        &[0u8; 512][..],
        "bytes before the write read as zeros"
    );
    assert_eq!(&back[512..], &data[..]);
}

#[test]
fn zeroing_of_a_new_block_clears_old_device_data_and_counts_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    // Old data under the whole region the extent layer allocates from first.
    std::fs::write(&junk, pattern(64 * 1024, 0x5a)).unwrap();
    let data = pattern(512, 9);
    std::fs::write(&input, &data).unwrap();
    let j = dio_json(&[
        "--json",
        "emu:size=8M",
        "write",
        "--offset",
        "0",
        "--input",
        s(&junk),
        "+",
        "write",
        "--file",
        "f",
        "--offset",
        "512",
        "--input",
        s(&input),
        "+",
        "read",
        "--offset",
        "0",
        "--length",
        "64k",
        "--output",
        s(&output),
    ]);
    let step = &j["steps"][1];
    assert_eq!(step["zeroed_bytes"], 4096 - 512, "{step}");
    // Zero the head (512 bytes), write the data, zero the tail (3 KiB): three commands.
    assert_eq!(step["commands"], 3, "{step}");
    // The raw namespace shows the file's new block: zeros around the data, no old bytes.
    let raw = std::fs::read(&output).unwrap();
    let block = raw
        .chunks(4096)
        .find(|b| b[512..1024] == data[..])
        .expect("the file's block lies in the first 64 KiB");
    assert!(block[..512].iter().all(|&b| b == 0), "head keeps old data");
    assert!(block[1024..].iter().all(|&b| b == 0), "tail keeps old data");
}

#[test]
fn misaligned_offsets_and_lengths_name_the_required_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, pattern(4096, 0)).unwrap();
    let out = dir.path().join("out.bin");
    let cases: [&[&str]; 3] = [
        &[
            "emu:lba=4096,size=8M",
            "write",
            "--offset",
            "512",
            "--input",
            s(&input),
        ],
        &[
            "emu:size=8M",
            "read",
            "--offset",
            "0",
            "--length",
            "1000",
            "--output",
            s(&out),
        ],
        &[
            "emu:lba=4096,size=8M",
            "write",
            "--file",
            "f",
            "--offset",
            "0",
            "--input",
            s(&input),
            "+",
            "read",
            "--file",
            "f",
            "--offset",
            "2048",
            "--length",
            "4096",
            "--output",
            s(&out),
        ],
    ];
    for (args, align) in cases.iter().zip(["4096", "512", "4096"]) {
        let (code, stdout, stderr) = dio(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("nvme-dio: error: step "), "{stderr}");
        assert!(
            stderr.contains(&format!("multiple of the {align}-byte")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn reading_a_file_no_step_created_says_files_live_for_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    let (code, _, stderr) = dio(&[
        "emu",
        "read",
        "--file",
        "f",
        "--offset",
        "0",
        "--length",
        "512",
        "--output",
        s(&out),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("'f' does not exist") && stderr.contains("same run"),
        "{stderr}"
    );
}

#[test]
fn bad_steps_flags_and_device_names_are_one_line_usage_errors() {
    let cases: [&[&str]; 5] = [
        &["emu", "write", "--offset", "0"],
        &["emu", "erase", "--offset", "0"],
        &[
            "emu", "read", "--offset", "0", "--length", "512", "--output", "x", "+",
        ],
        &[
            "sda", "read", "--offset", "0", "--length", "512", "--output", "x",
        ],
        &["emu"],
    ];
    for args in cases {
        let (code, stdout, stderr) = dio(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("nvme-dio: error: "), "{stderr}");
    }
}

#[test]
fn reads_beyond_the_namespace_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    let (code, _, stderr) = dio(&[
        "emu:size=1M",
        "read",
        "--offset",
        "1M",
        "--length",
        "512",
        "--output",
        s(&out),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("beyond the end"), "{stderr}");
}

#[test]
fn hipri_reads_poll_and_return_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let out = dir.path().join("out.bin");
    let data = pattern(4096, 5);
    std::fs::write(&input, &data).unwrap();
    let j = dio_json(&[
        "emu:size=8M",
        "--json",
        "write",
        "--offset",
        "8k",
        "--input",
        s(&input),
        "--hipri",
        "+",
        "read",
        "--offset",
        "8k",
        "--length",
        "4k",
        "--output",
        s(&out),
        "--hipri",
    ]);
    assert_eq!(j["bytes"], 8192);
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn help_lists_the_steps_with_examples() {
    let (code, stdout, _) = dio(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("fallocate") && stdout.contains("Examples:"),
        "{stdout}"
    );
}

#[test]
fn inputs_larger_than_one_request_are_streamed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let data = pattern(3 << 20 | 512, 11);
    std::fs::write(&input, &data).unwrap();
    let j = dio_json(&[
        "--json",
        "emu:size=16M",
        "write",
        "--offset",
        "1M",
        "--input",
        s(&input),
        "+",
        "read",
        "--offset",
        "1M",
        "--length",
        &data.len().to_string(),
        "--output",
        s(&output),
    ]);
    assert_eq!(j["steps"][0]["bytes"], data.len() as u64);
    assert!(j["steps"][0]["commands"].as_u64().unwrap() > 1, "{j}");
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

#[test]
fn compare_matches_what_was_written_and_fails_on_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let other = dir.path().join("other.bin");
    let data = pattern(8192, 3);
    std::fs::write(&input, &data).unwrap();
    let mut changed = data.clone();
    changed[5000] ^= 1;
    std::fs::write(&other, &changed).unwrap();
    for target in [&[][..], &["--file", "a"][..]] {
        let write: Vec<&str> = [
            &["write", "--offset", "4k", "--input", s(&input)][..],
            target,
        ]
        .concat();
        let same: Vec<&str> = [
            &["compare", "--offset", "4k", "--input", s(&input)][..],
            target,
        ]
        .concat();
        let differs: Vec<&str> = [
            &["compare", "--offset", "4k", "--input", s(&other)][..],
            target,
        ]
        .concat();
        let mut args = vec!["emu:size=8M,vwc=off", "--json"];
        args.extend(&write);
        args.push("+");
        args.extend(&same);
        let report = dio_json(&args);
        assert_eq!(report["steps"][1]["op"], "compare", "{report}");
        assert_eq!(report["steps"][1]["bytes"], 8192, "{report}");
        let mut args = vec!["emu:size=8M,vwc=off"];
        args.extend(&write);
        args.push("+");
        args.extend(&differs);
        let (code, stdout, stderr) = dio(&args);
        assert_eq!(code, 1, "{target:?}: {stdout}");
        assert_eq!(
            stderr.trim(),
            "nvme-dio: error: step 2 (compare): the data at bytes 4096..12288 differs from the expected contents",
            "{target:?}"
        );
    }
}

#[test]
fn compare_with_a_pattern_expects_zeros_in_unwritten_extents() {
    let report = dio_json(&[
        "emu:size=8M",
        "--json",
        "fallocate",
        "--file",
        "a",
        "--offset",
        "0",
        "--length",
        "64k",
        "+",
        "compare",
        "--file",
        "a",
        "--offset",
        "0",
        "--pattern",
        "0",
        "--length",
        "64k",
    ]);
    assert_eq!(report["steps"][1]["bytes"], 65536, "{report}");
    assert_eq!(report["steps"][1]["commands"], 0, "{report}");
    let (code, _, stderr) = dio(&[
        "emu:size=8M",
        "compare",
        "--offset",
        "0",
        "--pattern",
        "7",
        "--length",
        "4k",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("step 1 (compare): the data at bytes 0..4096 differs"),
        "{stderr}"
    );
}

#[test]
fn zoned_writes_off_the_write_pointer_are_refused_before_any_io_and_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, pattern(8192, 7)).unwrap();
    let back = dir.path().join("back.bin");
    let dev = "emu:zoned,size=8M,zone_size=1M";
    // At the write pointers (the zone start, then where the first write ended, then a
    // second zone), and the data reads back.
    let (code, _, err) = dio(&[
        dev,
        "write",
        "--offset",
        "0",
        "--input",
        s(&data),
        "+",
        "write",
        "--offset",
        "8192",
        "--input",
        s(&data),
        "+",
        "write",
        "--offset",
        "1M",
        "--input",
        s(&data),
        "+",
        "read",
        "--offset",
        "8192",
        "--length",
        "8192",
        "--output",
        s(&back),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&back).unwrap(), pattern(8192, 7));
    // A later step off the write pointer fails the script before its first step runs:
    // the read's output is never created.
    let never = dir.path().join("never.bin");
    let (code, out, err) = dio(&[
        dev,
        "read",
        "--offset",
        "0",
        "--length",
        "4096",
        "--output",
        s(&never),
        "+",
        "write",
        "--offset",
        "0",
        "--input",
        s(&data),
        "+",
        "write",
        "--offset",
        "4096",
        "--input",
        s(&data),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.starts_with("nvme-dio: error: step 3 (write) at LBA 0x8 (offset 4096): it is not at the write pointer of the zone at LBA 0x0, which is at LBA 0x10 (offset 8192)"),
        "{err}"
    );
    assert!(err.contains("nvme-zns"), "{err}");
    assert!(!never.exists());
    // Extent-layer files cannot keep to write pointers.
    let (code, _, err) = dio(&[
        dev,
        "write",
        "--file",
        "a",
        "--offset",
        "0",
        "--input",
        s(&data),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("without --file"), "{err}");
}
