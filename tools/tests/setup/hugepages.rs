use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake::FakeHost;

const NR_2M: &str = "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

#[test]
fn hugepages_count_writes_nr_hugepages_and_reports_what_the_kernel_holds() {
    let h = FakeHost::bare();
    h.hugepages(2048, 16, 16);
    let r = h.run(&["--json", "hugepages", "--count", "64"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.read_sys(NR_2M), "64");
    let j = r.json();
    assert_eq!(j["size_kib"], 2048);
    assert_eq!(j["previous"], 16);
    assert_eq!(j["requested"], 64);
    assert_eq!(j["given"], 64);
    assert_eq!(j["node"], json!(null));
    // No hugetlbfs in the fake mount table, and a fake tree is never mounted on.
    assert_eq!(
        j["mount"],
        json!({"state": "skipped", "path": h.root().join("dev/hugepages").to_str().unwrap()})
    );
}

#[test]
fn hugepages_node_and_size_select_the_per_node_pool() {
    let h = FakeHost::bare();
    h.node_hugepages(1, 1048576, 0, 0);
    let r = h.run(&["hugepages", "--count", "4", "--size", "1G", "--node", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        h.read_sys("devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages"),
        "4"
    );
    // The machine-wide pool is left to the kernel's accounting.
    assert_eq!(
        h.read_sys("kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"),
        "0"
    );
    assert!(
        r.stdout
            .starts_with("1G hugepages on node 1: 4 reserved (was 0, asked 4)\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("dev/hugepages-1G (fake tree)"),
        "{}",
        r.stdout
    );
}

#[test]
fn hugepages_reuse_an_existing_hugetlbfs_mount_of_the_same_size() {
    let h = FakeHost::bare();
    h.append(
        "proc/mounts",
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0",
    );
    let r = h.run(&["--json", "hugepages", "--count", "8"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["mount"],
        json!({"state": "already_mounted", "path": "/dev/hugepages"})
    );
}

#[test]
fn hugepages_mount_of_another_page_size_does_not_count() {
    let h = FakeHost::bare();
    h.append(
        "proc/mounts",
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0",
    );
    let r = h.run(&[
        "--json",
        "hugepages",
        "--count",
        "1",
        "--size",
        "1G",
        "--mount",
        "/mnt/huge1g",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["mount"],
        json!({"state": "skipped", "path": "/mnt/huge1g"})
    );
}

/// The kernel may reserve fewer pages than asked; a FIFO plays the kernel: it answers
/// the first read with the old count, takes the write, answers the read-back with 3,
/// then takes the write that restores the old count and confirms it.
#[test]
fn hugepages_fewer_than_requested_is_an_error_and_restores_the_old_pool() {
    let h = FakeHost::bare();
    let fifo = h.sys(NR_2M);
    std::fs::remove_file(&fifo).unwrap();
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let kernel = std::thread::spawn(move || {
        std::fs::File::create(&fifo)
            .unwrap()
            .write_all(b"0\n")
            .unwrap();
        let mut written = String::new();
        std::fs::File::open(&fifo)
            .unwrap()
            .read_to_string(&mut written)
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(b"3\n")
            .unwrap();
        let mut restored = String::new();
        std::fs::File::open(&fifo)
            .unwrap()
            .read_to_string(&mut restored)
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(restored.as_bytes())
            .unwrap();
        (written, restored)
    });
    let mut child = h
        .cmd()
        .args(["hugepages", "--count", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Guard against a hang if the tool ever opens the file in another order.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("nvme-setup hugepages did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (written, restored) = kernel.join().unwrap();
    assert_eq!(written, "64\n");
    assert_eq!(restored, "0\n", "the pool is set back to its old size");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "nvme-setup: error: asked for 64 x 2 MiB, kernel gave 3: memory is fragmented; reserve \
         at boot with hugepages=64; the pool is back at 0 pages\n"
    );
}

#[test]
fn hugepages_size_the_kernel_lacks_or_garbage_is_rejected_with_the_sizes_it_has() {
    let h = FakeHost::bare();
    std::fs::remove_dir_all(h.sys("kernel/mm/hugepages/hugepages-1048576kB")).unwrap();
    let r = h.run(&["hugepages", "--count", "1", "--size", "1G"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: the kernel offers no 1 GiB hugepages (sizes present: [2097152])\n"
    );
    let r = h.run(&["hugepages", "--count", "1", "--size", "huge"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: bad hugepage size 'huge': use 2M or 1G (this kernel offers 2M)\n"
    );
}

#[test]
fn hugepages_unknown_numa_node_is_rejected() {
    let h = FakeHost::bare();
    let r = h.run(&["hugepages", "--count", "1", "--node", "7"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: NUMA node 7 has no 2 MiB hugepage pool in sysfs (is the node online?)\n"
    );
    assert_eq!(h.read_sys(NR_2M), "0");
}
