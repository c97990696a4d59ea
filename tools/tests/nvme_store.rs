//! `nvme-store` end to end on the emulated controller: files written by one
//! process are read back by the next from a file-backed namespace.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::run_tool;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nvme-store");

fn store(args: &[&str]) -> (i32, String, String) {
    run_tool(BIN, args)
}

/// Runs with `--json`, expects success and returns the parsed report.
fn store_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = store(&all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {stdout}"))
}

/// Expects exit status `code` and a one-line error containing `needle`.
fn store_fails(args: &[&str], code: i32, needle: &str) -> String {
    let (got, stdout, stderr) = store(args);
    assert_eq!(got, code, "{args:?}: stdout {stdout}, stderr {stderr}");
    assert!(stderr.starts_with("nvme-store: error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    stderr
}

/// Bytes that differ from block to block, so a misplaced block shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 4096) as u8 ^ (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The counters every report carries, as `nvme-dio` names them, plus the journal's.
fn counters(j: &Value) -> [u64; 5] {
    [
        "commands",
        "fua_commands",
        "flush_commands",
        "journal_commits",
        "checkpoints",
    ]
    .map(|k| {
        j[k].as_u64()
            .unwrap_or_else(|| panic!("no counter {k} in {j}"))
    })
}

#[test]
fn files_put_in_one_run_are_read_moved_cloned_and_removed_by_later_runs() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let dev = format!("emu:file={},size=32M", s(&disk));
    let a = pattern(3 * 1024 * 1024 + 1000, 1);
    let b = pattern(12 * 4096, 2);
    std::fs::write(dir.path().join("a.bin"), &a).unwrap();
    std::fs::write(dir.path().join("b.bin"), &b).unwrap();

    let m = store_json(&[&dev, "mkfs"]);
    assert_eq!(m["op"], "mkfs");
    assert_eq!(m["block_size"], 4096);
    assert_eq!(m["total_blocks"], 8192);
    assert_eq!(m["uuid"].as_str().unwrap().len(), 32);
    assert!(m["data_blocks"].as_u64().unwrap() > 7000, "{m}");
    assert!(
        counters(&m)[1] >= 1,
        "the superblock is written with FUA: {m}"
    );

    let pa = store_json(&[&dev, "put", s(&dir.path().join("a.bin")), "a"]);
    assert_eq!(pa["size"], a.len() as u64);
    assert_eq!(pa["dsync"], false);
    assert_eq!(pa["writes"], 4, "1 MiB chunks: {pa}");
    assert!(pa["journal_commits"].as_u64().unwrap() >= 1, "{pa}");
    let pb = store_json(&[&dev, "put", s(&dir.path().join("b.bin")), "b", "--dsync"]);
    assert_eq!(pb["dsync"], true);
    let [_, fua, flush, commits, _] = counters(&pb);
    // A DSYNC write into new blocks: data, a flush, a FUA journal commit.
    assert!(fua >= 1 && flush >= 1 && commits >= 1, "{pb}");

    let ls = store_json(&[&dev, "ls"]);
    let files = ls["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(files[0]["size"], a.len() as u64);
    assert_eq!(files[0]["blocks"], (a.len() as u64).div_ceil(4096));
    assert_eq!(files[1]["size"], b.len() as u64);
    assert_eq!(
        counters(&ls),
        [0; 5],
        "ls reads nothing after the open: {ls}"
    );

    let st = store_json(&[&dev, "stat", "b"]);
    assert_eq!(st["file"]["name"], "b");
    assert_eq!(st["file"]["size"], b.len() as u64);
    let extents = st["extents"].as_array().unwrap();
    let mapped: u64 = extents.iter().map(|e| e["length"].as_u64().unwrap()).sum();
    assert_eq!(mapped, b.len() as u64, "{st}");
    assert!(extents
        .iter()
        .all(|e| e["unwritten"] == false && e["shared"] == false));

    // A second process reads identical bytes, to a file and to stdout.
    let out = dir.path().join("a.out");
    let g = store_json(&[&dev, "get", "a", s(&out)]);
    assert_eq!(g["size"], a.len() as u64);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        a,
        "get a differs from what was put"
    );
    let got = Command::new(BIN)
        .args([&dev, "get", "b", "-"])
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, b, "get b - differs from what was put");

    let c = store_json(&[&dev, "clone", "a", "a.snap"]);
    assert_eq!(c["size"], a.len() as u64);
    // Every whole block is shared; the partial last block was copied on truncate.
    assert_eq!(c["shared_blocks"], a.len() as u64 / 4096, "{c}");
    let st = store_json(&[&dev, "stat", "a"]);
    assert!(st["extents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["shared"] == true));

    let mv = store_json(&[&dev, "mv", "b", "c"]);
    assert_eq!(
        (mv["from"].as_str(), mv["to"].as_str()),
        (Some("b"), Some("c"))
    );
    assert_eq!(mv["replaced"], false);
    store_json(&[&dev, "rm", "a"]);
    let names: Vec<String> = store_json(&[&dev, "ls"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a.snap", "c"]);
    store_json(&[&dev, "get", "a.snap", s(&out)]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        a,
        "the clone outlives its source"
    );
    store_json(&[&dev, "get", "c", s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), b);

    let f = store_json(&[&dev, "fsck"]);
    assert_eq!(f["clean"], true, "{f}");
    assert_eq!(f["files"], 2);
    assert_eq!(f["problems"], Value::Array(vec![]));
    assert_eq!(f["shared_blocks"], 0, "the source is gone: {f}");
    let (code, text, _) = store(&[&dev, "fsck"]);
    assert_eq!(code, 0);
    assert!(text.starts_with("fsck: clean: 2 files"), "{text}");
    assert!(text.contains("commands: "), "{text}");
}

#[test]
fn dsync_put_reports_each_durable_write() {
    let dir = tempfile::tempdir().unwrap();
    let dev = format!("emu:file={},size=16M", s(&dir.path().join("d.img")));
    let data = pattern(5 * 65536 + 4096, 3);
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    store_json(&[&dev, "mkfs"]);
    let (code, stdout, stderr) = store(&[
        &dev,
        "put",
        s(&input),
        "f",
        "--dsync",
        "--chunk",
        "64k",
        "--report-writes",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    for (k, l) in lines.iter().enumerate() {
        let off = k * 65536;
        let end = (off + 65536).min(data.len());
        assert_eq!(l["name"], "f");
        assert_eq!(l["offset"], off as u64);
        assert_eq!(l["length"], (end - off) as u64);
        assert_eq!(l["dsync"], true);
        assert_eq!(l["crc32"], crc.checksum(&data[off..end]));
    }
    assert!(
        stdout.contains("put f: 331776 bytes in 6 writes (O_DSYNC)"),
        "{stdout}"
    );
}

#[test]
fn a_put_killed_mid_copy_leaves_a_clean_store_and_every_acknowledged_write() {
    // The emulated controller's volatile cache dies with the process: a kill
    // is a power cut for everything not made durable.
    let dir = tempfile::tempdir().unwrap();
    let dev = format!("emu:file={},size=64M", s(&dir.path().join("k.img")));
    let data = pattern(24 << 20, 4);
    let input = dir.path().join("big.bin");
    std::fs::write(&input, &data).unwrap();
    store_json(&[&dev, "mkfs"]);
    let mut child = Command::new(BIN)
        .args([
            &dev,
            "put",
            s(&input),
            "big",
            "--dsync",
            "--chunk",
            "64k",
            "--report-writes",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 8 {
        let line = lines.next().expect("put ended before 8 writes").unwrap();
        acked.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for l in lines.map_while(Result::ok) {
        acked.push(serde_json::from_str(&l).unwrap());
    }
    assert!(acked.len() < 384, "the put finished before the kill");

    let f = store_json(&[&dev, "fsck"]);
    assert_eq!(f["clean"], true, "{f}");
    let out = dir.path().join("back.bin");
    store_json(&[&dev, "get", "big", s(&out)]);
    let back = std::fs::read(&out).unwrap();
    let durable = acked.len() * 65536;
    assert!(
        back.len() >= durable,
        "{} bytes back, {durable} acknowledged",
        back.len()
    );
    assert_eq!(
        back[..],
        data[..back.len()],
        "the file holds bytes it was never given"
    );
    let f = store_json(&[&dev, "fsck"]);
    assert_eq!(f["clean"], true, "{f}");
}

#[test]
fn errors_name_the_problem_and_leave_the_store_clean() {
    let dir = tempfile::tempdir().unwrap();
    let dev = format!("emu:file={},size=8M", s(&dir.path().join("e.img")));
    let small = dir.path().join("small.bin");
    std::fs::write(&small, pattern(8192, 5)).unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, pattern(9 << 20, 6)).unwrap();

    store_fails(&[&dev, "ls"], 1, "run 'nvme-store");
    store_fails(&[&dev, "fsck"], 1, "holds no store");
    store_fails(&["nvme0", "ls"], 2, "expected emu[:options], a PCI address");
    store_fails(&[&dev], 2, "");
    store_fails(&[&dev, "--region", "1M", "ls"], 2, "START:LEN");

    store_json(&[&dev, "mkfs"]);
    store_fails(&[&dev, "mkfs"], 1, "pass --force");
    store_json(&[&dev, "put", s(&small), "f"]);
    store_fails(&[&dev, "put", s(&small), "f"], 1, "already exists");
    store_fails(&[&dev, "get", "nope", "-"], 1, "no file named \"nope\"");
    store_fails(&[&dev, "rm", "nope"], 1, "no file named \"nope\"");
    store_fails(&[&dev, "mv", "nope", "x"], 1, "no file named \"nope\"");
    store_fails(&[&dev, "clone", "nope", "x"], 1, "no file named \"nope\"");
    let long = "n".repeat(256);
    store_fails(
        &[&dev, "put", s(&small), &long],
        1,
        "is 256 bytes; a store file name is 1 to 255",
    );
    store_fails(&[&dev, "mv", "f", &long], 1, "1 to 255");
    store_fails(&[&dev, "put", s(&big), "big"], 1, "no space in the store");
    store_fails(
        &[&dev, "put", s(&dir.path().join("missing")), "m"],
        1,
        "missing",
    );
    store_fails(
        &[&dev, "put", s(&small), "g", "--chunk", "1000"],
        1,
        "--chunk 1000",
    );
    store_fails(&[&dev, "--ns", "2", "ls"], 1, "namespace 2 is not active");

    let ls = store_json(&[&dev, "ls"]);
    assert_eq!(ls["files"].as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(store_json(&[&dev, "fsck"])["clean"], true);
    // --force formats an existing store.
    let m = store_json(&[&dev, "mkfs", "--force"]);
    assert_eq!(m["op"], "mkfs");
    assert_eq!(store_json(&[&dev, "ls"])["files"], Value::Array(vec![]));
}

#[test]
fn a_store_in_a_region_is_found_only_with_that_region() {
    let dir = tempfile::tempdir().unwrap();
    let dev = format!("emu:file={},size=16M", s(&dir.path().join("r.img")));
    let input = dir.path().join("in.bin");
    let data = pattern(20000, 7);
    std::fs::write(&input, &data).unwrap();
    let m = store_json(&[&dev, "--region", "4M:8M", "mkfs"]);
    assert_eq!(m["region_offset"], 4 << 20);
    assert_eq!(m["total_blocks"], 2048);
    store_json(&[&dev, "--region", "4M:8M", "put", s(&input), "f"]);
    store_fails(&[&dev, "ls"], 1, "holds no store at bytes 0..16777216");
    let out = dir.path().join("out.bin");
    store_json(&[&dev, "--region", "4M:8M", "get", "f", s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    store_fails(
        &[&dev, "--region", "12M:8M", "mkfs"],
        1,
        "end inside the namespace",
    );
}

#[test]
fn damage_to_the_superblock_is_reported_by_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("c.img");
    let dev = format!("emu:file={},size=8M", s(&img));
    store_json(&[&dev, "mkfs"]);
    let mut bytes = std::fs::read(&img).unwrap();
    // A byte of the UUID: the superblock's checksum no longer holds.
    bytes[20] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    store_fails(&[&dev, "fsck"], 1, "holds no store");
}
