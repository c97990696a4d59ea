use serde_json::json;

use crate::fake::{FakeHost, NVME_CLASS};

const A: &str = "0000:01:00.0";

/// IOMMU on, vfio-pci loaded, controller A on nvme alone in group 5.
fn host() -> FakeHost {
    let h = FakeHost::bare();
    h.enable_iommu();
    h.load_vfio();
    h.pci(A, NVME_CLASS, Some("nvme"), Some(5));
    h
}

fn write(h: &FakeHost, rel: &str, value: &str) -> serde_json::Value {
    json!({"action": "write", "path": h.sys(rel).to_str().unwrap(), "value": value})
}

#[test]
fn bind_writes_override_then_unbind_then_probe() {
    let h = host();
    let r = h.run(&["--json", "bind", A]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(
        j["actions"],
        json!([
            write(
                &h,
                &format!("bus/pci/devices/{A}/driver_override"),
                "vfio-pci"
            ),
            write(&h, "bus/pci/drivers/nvme/unbind", A),
            write(&h, "bus/pci/drivers_probe", A),
        ])
    );
    assert_eq!(
        j["devices"],
        json!([{"addr": A, "from": "nvme", "to": "vfio-pci", "result": "written", "reason": null}])
    );
    assert_eq!(
        h.read_sys(&format!("bus/pci/devices/{A}/driver_override")),
        "vfio-pci"
    );
    assert_eq!(h.read_sys("bus/pci/drivers/nvme/unbind"), A);
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), A);
}

#[test]
fn bind_accepts_the_short_address_form() {
    let h = host();
    let r = h.run(&["bind", "01:00.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("0000:01:00.0: nvme -> vfio-pci"),
        "{}",
        r.stdout
    );
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), A);
}

#[test]
fn bind_refuses_a_controller_with_a_mounted_partition_and_writes_nothing() {
    let h = host();
    h.namespace(A, "nvme0n1", "259:0", &[("nvme0n1p1", "259:1")]);
    h.append("proc/mounts", "/dev/nvme0n1p1 /home ext4 rw 0 0");
    let r = h.run(&["bind", A]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: 0000:01:00.0 is in use (nvme0n1p1 mounted on /home); stop using it \
         first or pass --force to take it anyway\n"
    );
    assert_eq!(
        h.read_sys(&format!("bus/pci/devices/{A}/driver_override")),
        "(null)"
    );
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), "");
}

#[test]
fn bind_refuses_a_controller_under_device_mapper_or_swap() {
    let h = host();
    h.namespace(
        A,
        "nvme0n1",
        "259:0",
        &[("nvme0n1p1", "259:1"), ("nvme0n1p2", "259:2")],
    );
    h.holder("nvme0n1/nvme0n1p1", "dm-0");
    h.append("proc/swaps", "/dev/nvme0n1p2 partition 1048572 0 -2");
    let r = h.run(&["bind", A]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("is in use (nvme0n1p1 held by dm-0, nvme0n1p2 is swap)"),
        "{}",
        r.stderr
    );
}

#[test]
fn bind_force_takes_a_controller_in_use() {
    let h = host();
    h.namespace(A, "nvme0n1", "259:0", &[]);
    h.append("proc/mounts", "/dev/nvme0n1 /scratch ext4 rw 0 0");
    let r = h.run(&["bind", "--force", A]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        h.read_sys(&format!("bus/pci/devices/{A}/driver_override")),
        "vfio-pci"
    );
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), A);
}

#[test]
fn bind_without_addresses_takes_only_controllers_not_in_use() {
    let h = host();
    h.pci("0000:02:00.0", NVME_CLASS, Some("nvme"), Some(6));
    h.namespace(A, "nvme0n1", "259:0", &[]);
    h.append("proc/mounts", "/dev/nvme0n1 / ext4 rw 0 0");
    let r = h.run(&["--json", "bind"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["devices"][0]["addr"], A);
    assert_eq!(j["devices"][0]["result"], "skipped");
    assert_eq!(
        j["devices"][0]["reason"],
        "in use (nvme0n1 mounted on /); name it and pass --force to take it"
    );
    assert_eq!(j["devices"][1]["addr"], "0000:02:00.0");
    assert_eq!(j["devices"][1]["result"], "written");
    assert_eq!(
        h.read_sys(&format!("bus/pci/devices/{A}/driver_override")),
        "(null)"
    );
    assert_eq!(
        h.read_sys("bus/pci/devices/0000:02:00.0/driver_override"),
        "vfio-pci"
    );
}

#[test]
fn bind_without_addresses_fails_when_every_controller_is_in_use() {
    let h = host();
    h.namespace(A, "nvme0n1", "259:0", &[]);
    h.append("proc/mounts", "/dev/nvme0n1 / ext4 rw 0 0");
    let r = h.run(&["bind"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(
            "nvme-setup: error: no NVMe controller can be bound: 0000:01:00.0: in use"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn bind_refuses_a_group_with_a_device_on_another_driver_and_names_it() {
    let h = host();
    h.pci("0000:01:00.1", 0x020000, Some("igb"), Some(5));
    let r = h.run(&["bind", A]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(
            "nvme-setup: error: IOMMU group 5 of 0000:01:00.0 cannot become viable: \
             0000:01:00.1 [8086:0953] on igb; unbind them"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), "");
}

#[test]
fn bind_force_does_not_override_a_non_viable_group() {
    let h = host();
    h.pci("0000:01:00.1", 0x020000, Some("igb"), Some(5));
    let r = h.run(&["bind", "--force", A]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot become viable"), "{}", r.stderr);
}

#[test]
fn bind_accepts_group_peers_that_are_bridges_stubs_or_driverless() {
    let h = host();
    h.pci("0000:00:01.0", 0x060400, Some("pcieport"), Some(5));
    h.pci("0000:00:01.1", 0x060400, Some("shpchp"), Some(5));
    h.pci("0000:01:00.1", 0x020000, Some("pci-stub"), Some(5));
    h.pci("0000:01:00.2", 0x020000, None, Some(5));
    let r = h.run(&["bind", A]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), A);
}

#[test]
fn binding_both_controllers_of_a_shared_group_makes_it_viable() {
    let h = host();
    h.pci("0000:01:00.1", NVME_CLASS, Some("nvme"), Some(5));
    let alone = h.run(&["bind", A]);
    assert_eq!(alone.code, 1);
    assert!(
        alone.stderr.contains("0000:01:00.1 [8086:0953] on nvme"),
        "{}",
        alone.stderr
    );
    let both = h.run(&["--json", "bind", A, "0000:01:00.1"]);
    assert_eq!(both.code, 0, "{}", both.stderr);
    let j = both.json();
    let probes: Vec<String> = j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["path"].as_str().unwrap().ends_with("drivers_probe"))
        .map(|a| a["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(probes, [A, "0000:01:00.1"]);
}

#[test]
fn bind_refuses_a_controller_without_an_iommu_group() {
    let h = host();
    h.pci("0000:04:00.0", NVME_CLASS, Some("nvme"), None);
    let r = h.run(&["bind", "0000:04:00.0"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "0000:04:00.0 has no IOMMU group because the IOMMU is off: add intel_iommu=on \
             (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn bind_on_a_fake_tree_records_but_skips_modprobe_when_vfio_is_not_loaded() {
    let h = FakeHost::bare();
    h.enable_iommu();
    h.pci(A, NVME_CLASS, Some("nvme"), Some(5));
    let r = h.run(&["--json", "bind", A]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["actions"][0],
        json!({"action": "skipped", "what": "modprobe vfio-pci", "why": "fake sysfs tree"})
    );
}

#[test]
fn bind_leaves_a_controller_already_on_vfio_alone() {
    let h = host();
    h.pci("0000:02:00.0", NVME_CLASS, Some("vfio-pci"), Some(6));
    let r = h.run(&["--json", "bind", "0000:02:00.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["devices"][0]["result"], "already");
    assert_eq!(j["actions"], json!([]));
}

#[test]
fn bind_user_hands_the_group_node_to_that_user() {
    let h = host();
    h.vfio_node(5, 0o600);
    let me = h.my_uid();
    // Only root may give a file away; anyone may "give" it to themselves.
    let target = if me == 0 { 4242 } else { me };
    let r = h.run(&["--json", "bind", A, "--user", &target.to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let node = h.root().join("dev/vfio/5");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&node).unwrap().uid(), target);
    let last = r.json()["actions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "chown");
    assert_eq!(last["path"], node.to_str().unwrap());
    assert_eq!(last["uid"], target);
}

#[test]
fn bind_user_fails_when_the_group_node_never_appears() {
    let h = host();
    let r = h.run(&["bind", A, "--user", "4242"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("dev/vfio/5 does not exist after binding 0000:01:00.0 to vfio-pci"),
        "{}",
        r.stderr
    );
}

#[test]
fn bind_rejects_an_unknown_user_name_before_writing() {
    let h = host();
    let r = h.run(&["bind", A, "--user", "no-such-user-xyz"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown user 'no-such-user-xyz'"),
        "{}",
        r.stderr
    );
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), "");
}

#[test]
fn bind_rejects_a_device_that_is_not_an_nvme_controller() {
    let h = host();
    h.pci("0000:00:1f.3", 0x040300, Some("snd_hda_intel"), Some(11));
    let r = h.run(&["bind", "0000:00:1f.3"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: 0000:00:1f.3 is not an NVMe controller (PCI class 0x040300, NVMe is \
         0x010802)\n"
    );
}

#[test]
fn unbind_clears_the_override_unbinds_vfio_and_reprobes() {
    let h = host();
    h.pci("0000:02:00.0", NVME_CLASS, Some("vfio-pci"), Some(6));
    h.write(
        "sys/bus/pci/devices/0000:02:00.0/driver_override",
        "vfio-pci\n",
    );
    let r = h.run(&["--json", "unbind", "0000:02:00.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["actions"],
        json!([
            write(&h, "bus/pci/devices/0000:02:00.0/driver_override", ""),
            write(&h, "bus/pci/drivers/vfio-pci/unbind", "0000:02:00.0"),
            write(&h, "bus/pci/drivers_probe", "0000:02:00.0"),
        ])
    );
    assert_eq!(
        h.read_sys("bus/pci/devices/0000:02:00.0/driver_override"),
        ""
    );
    assert_eq!(
        h.read_sys("bus/pci/drivers/vfio-pci/unbind"),
        "0000:02:00.0"
    );
}

#[test]
fn unbind_without_addresses_returns_every_controller_not_on_nvme() {
    let h = host();
    h.pci("0000:02:00.0", NVME_CLASS, Some("vfio-pci"), Some(6));
    h.pci("0000:03:00.0", NVME_CLASS, None, Some(7));
    let r = h.run(&["--json", "unbind"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    let addrs: Vec<&str> = j["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["addr"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["0000:02:00.0", "0000:03:00.0"]);
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), "0000:03:00.0");
    // The controller already on nvme was not touched.
    assert_eq!(
        h.read_sys(&format!("bus/pci/devices/{A}/driver_override")),
        "(null)"
    );
}

#[test]
fn unbind_with_nothing_off_nvme_says_so() {
    let h = host();
    let r = h.run(&["unbind"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "nvme-setup: error: no NVMe controller to return to the nvme driver: all are on it \
         already\n"
    );
}
