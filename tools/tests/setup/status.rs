use crate::fake::{FakeHost, NVME_CLASS};

#[test]
fn status_lists_each_nvme_controller_with_ids_driver_numa_and_group() {
    let h = FakeHost::bare();
    h.enable_iommu();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), Some(5));
    h.pci("0000:02:00.0", NVME_CLASS, None, Some(6));
    h.pci("0000:02:00.1", 0x020000, Some("igb"), Some(6));
    let r = h.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "  0000:01:00.0  8086:0953  driver=nvme  numa=0  iommu_group=5 (alone)  free\n"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "  0000:02:00.0  8086:0953  driver=none  numa=0  \
             iommu_group=6 (with 0000:02:00.1 [8086:0953] on igb)  free\n"
        ),
        "{}",
        r.stdout
    );
    // The network function is not an NVMe controller, so it gets no line of its own.
    assert!(!r.stdout.contains("  0000:02:00.1  "), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("IOMMU: active, 2 IOMMU group(s), units dmar0"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("VFIO: vfio-pci driver not loaded"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("Locked-memory limit (ulimit -l): 8192 KiB"),
        "{}",
        r.stdout
    );
}

#[test]
fn status_names_the_mount_that_makes_a_controller_busy() {
    let h = FakeHost::bare();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), None);
    h.namespace(
        "0000:01:00.0",
        "nvme0n1",
        "259:0",
        &[("nvme0n1p1", "259:1")],
    );
    h.append("proc/mounts", "/dev/nvme0n1p1 /data xfs rw 0 0");
    let r = h.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("iommu_group=none  in use: nvme0n1p1 mounted on /data"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("block devices: nvme0n1, nvme0n1p1"),
        "{}",
        r.stdout
    );
}

#[test]
fn status_json_reports_controllers_use_hugepages_memlock_iommu_and_vfio() {
    let h = FakeHost::ready();
    h.pci("0000:03:00.0", NVME_CLASS, Some("nvme"), Some(9));
    h.namespace(
        "0000:03:00.0",
        "nvme1n1",
        "259:4",
        &[("nvme1n1p2", "259:6")],
    );
    h.append("proc/swaps", "/dev/nvme1n1p2 partition 8388604 0 -2");
    h.holder("nvme1n1", "dm-0");
    h.node_hugepages(1, 2048, 8, 2);
    let r = h.run(&["--json", "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    let c = &j["controllers"];
    assert_eq!(c.as_array().unwrap().len(), 2);
    assert_eq!(c[0]["addr"], "0000:01:00.0");
    assert_eq!(c[0]["driver"], "vfio-pci");
    assert_eq!(c[0]["iommu_group"], 5);
    assert_eq!(c[0]["numa_node"], 0);
    assert_eq!(c[0]["vendor"], 0x8086);
    assert_eq!(c[0]["in_use"], serde_json::json!([]));
    assert_eq!(c[1]["addr"], "0000:03:00.0");
    assert_eq!(
        c[1]["in_use"],
        serde_json::json!([
            {"kind": "holder", "device": "nvme1n1", "holder": "dm-0"},
            {"kind": "swap", "device": "nvme1n1p2"},
        ])
    );
    let two_m = &j["hugepages"][0];
    assert_eq!(two_m["size_kib"], 2048);
    assert_eq!(two_m["total"], 64);
    assert_eq!(two_m["free"], 64);
    assert_eq!(
        two_m["nodes"],
        serde_json::json!([
            {"node": 0, "total": 64, "free": 64},
            {"node": 1, "total": 8, "free": 2},
        ])
    );
    assert_eq!(j["hugepages"][1]["size_kib"], 1048576);
    assert_eq!(j["memlock"], "unlimited");
    assert_eq!(j["iommu"]["active"], true);
    assert_eq!(j["iommu"]["units"], serde_json::json!(["dmar0"]));
    assert_eq!(j["vfio"]["driver_loaded"], true);
    assert_eq!(j["vfio"]["container"]["mode"], "0666");
    assert_eq!(j["vfio"]["groups"][0]["mode"], "0600");
}

#[test]
fn status_matches_mountinfo_by_device_number() {
    let h = FakeHost::bare();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), None);
    h.namespace("0000:01:00.0", "nvme0n1", "259:0", &[]);
    // A mount through a /dev/disk/by-id alias still carries the device number.
    h.write(
        "proc/self/mountinfo",
        "29 1 259:0 / / rw,relatime shared:1 - ext4 /dev/disk/by-id/nvme-x rw\n",
    );
    let r = h.run(&["--json", "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["controllers"][0]["in_use"],
        serde_json::json!([{"kind": "mounted", "device": "nvme0n1", "mount_point": "/"}])
    );
}

#[test]
fn iommu_is_reported_off_without_units_or_groups_even_if_requested() {
    let h = FakeHost::bare();
    h.write("proc/cmdline", "root=/dev/sda1 intel_iommu=on iommu=pt\n");
    let r = h.run(&["--json", "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["iommu"]["active"], false);
    assert_eq!(
        j["iommu"]["cmdline"],
        serde_json::json!(["intel_iommu=on", "iommu=pt"])
    );
    assert_eq!(j["controllers"], serde_json::json!([]));
}

#[test]
fn status_finds_a_native_multipath_disk_through_its_controller_path() {
    let h = FakeHost::bare();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), None);
    // With nvme_core.multipath=Y the disk hangs under the subsystem; only its
    // multipath/ links lead to the controller's hidden path device.
    let disk = "sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
    h.write(&format!("{disk}/dev"), "259:0\n");
    std::fs::create_dir_all(h.root().join(format!("{disk}/holders"))).unwrap();
    std::fs::create_dir_all(h.sys("bus/pci/devices/0000:01:00.0/nvme/nvme0/nvme0c0n1")).unwrap();
    h.link(
        &format!("{disk}/multipath/nvme0c0n1"),
        "../../../../../../bus/pci/devices/0000:01:00.0/nvme/nvme0/nvme0c0n1",
    );
    h.link(
        "sys/block/nvme0n1",
        "../devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1",
    );
    h.append("proc/mounts", "/dev/nvme0n1 /var ext4 rw 0 0");
    let r = h.run(&["--json", "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = &r.json()["controllers"][0];
    assert_eq!(c["block_devices"], serde_json::json!(["nvme0n1"]));
    assert_eq!(c["in_use"][0]["mount_point"], "/var");
}
