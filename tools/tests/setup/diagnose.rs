use crate::fake::{FakeHost, NVME_CLASS};

const A: &str = "0000:01:00.0";

/// The `FAIL` line and its `fix:` line for check `name`, or a panic showing the output.
fn failure(out: &str, name: &str) -> (String, String) {
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("FAIL ") && l.contains(&format!("{name}: ")) {
            let fix = lines.next().unwrap_or("");
            let fix = fix
                .trim()
                .strip_prefix("fix: ")
                .unwrap_or_else(|| panic!("{out}"));
            return (l.to_string(), fix.to_string());
        }
    }
    panic!("no failed check {name} in:\n{out}");
}

fn only_failure(h: &FakeHost, args: &[&str], name: &str) -> (String, String) {
    let r = h.run(args);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.matches("FAIL ").count(), 1, "{}", r.stdout);
    failure(&r.stdout, name)
}

#[test]
fn diagnose_passes_every_check_on_a_ready_host_and_exits_zero() {
    let h = FakeHost::ready();
    let r = h.run(&["diagnose", A]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
    assert!(r.stdout.ends_with("all 8 checks passed\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("ok   0000:01:00.0 bound: bound to vfio-pci\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn diagnose_without_address_checks_the_controllers_on_vfio() {
    let h = FakeHost::ready();
    h.pci("0000:02:00.0", NVME_CLASS, Some("nvme"), Some(6));
    let r = h.run(&["diagnose"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("ok   0000:01:00.0 group-node"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("0000:02:00.0"), "{}", r.stdout);
}

#[test]
fn diagnose_iommu_off_says_to_set_it_on_the_kernel_command_line() {
    let h = FakeHost::ready();
    std::fs::remove_dir_all(h.sys("class/iommu/dmar0")).unwrap();
    std::fs::remove_dir_all(h.sys("kernel/iommu_groups/5")).unwrap();
    let r = h.run(&["diagnose"]);
    assert_eq!(r.code, 1);
    let (_, fix) = failure(&r.stdout, "iommu");
    assert_eq!(
        fix,
        "add intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot"
    );
}

#[test]
fn diagnose_iommu_requested_but_absent_points_at_the_firmware() {
    let h = FakeHost::bare();
    h.write("proc/cmdline", "root=/dev/sda1 intel_iommu=on\n");
    let r = h.run(&["diagnose"]);
    assert_eq!(r.code, 1);
    let (line, fix) = failure(&r.stdout, "iommu");
    assert!(
        line.contains("although the kernel command line has intel_iommu=on"),
        "{line}"
    );
    assert_eq!(
        fix,
        "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup and reboot"
    );
}

#[test]
fn diagnose_missing_vfio_driver_and_node_say_to_load_the_module() {
    let h = FakeHost::ready();
    std::fs::remove_dir_all(h.sys("bus/pci/drivers/vfio-pci")).unwrap();
    std::fs::remove_file(h.root().join("dev/vfio/vfio")).unwrap();
    let r = h.run(&["diagnose", A]);
    assert_eq!(r.code, 1);
    let (_, fix) = failure(&r.stdout, "vfio-driver");
    assert_eq!(
        fix,
        "sudo modprobe vfio-pci (nvme-setup bind also loads it)"
    );
    let (line, fix) = failure(&r.stdout, "vfio-dev");
    assert!(line.ends_with("dev/vfio/vfio missing"), "{line}");
    assert_eq!(fix, "sudo modprobe vfio-pci (it creates /dev/vfio/vfio)");
}

#[test]
fn diagnose_controller_on_nvme_says_to_bind_it() {
    let h = FakeHost::ready();
    h.pci("0000:02:00.0", NVME_CLASS, Some("nvme"), Some(6));
    h.vfio_node(6, 0o600);
    let (line, fix) = only_failure(&h, &["diagnose", "0000:02:00.0"], "bound");
    assert!(line.contains("bound to nvme, not vfio-pci"), "{line}");
    assert_eq!(fix, "sudo nvme-setup bind 0000:02:00.0");
}

#[test]
fn diagnose_controller_in_use_says_to_stop_using_it_first() {
    let h = FakeHost::ready();
    h.pci("0000:02:00.0", NVME_CLASS, Some("nvme"), Some(6));
    h.vfio_node(6, 0o600);
    h.namespace("0000:02:00.0", "nvme1n1", "259:3", &[]);
    h.append("proc/mounts", "/dev/nvme1n1 /srv xfs rw 0 0");
    let (_, fix) = only_failure(&h, &["diagnose", "0000:02:00.0"], "bound");
    assert_eq!(
        fix,
        "it is in use (nvme1n1 mounted on /srv): stop using it, then sudo nvme-setup bind \
         0000:02:00.0"
    );
}

#[test]
fn diagnose_no_controller_on_vfio_names_one_to_bind() {
    let h = FakeHost::ready();
    h.pci(A, NVME_CLASS, Some("nvme"), Some(5));
    let (line, fix) = only_failure(&h, &["diagnose"], "controller");
    assert!(
        line.contains("no NVMe controller on vfio-pci (found 0000:01:00.0)"),
        "{line}"
    );
    assert_eq!(fix, "sudo nvme-setup bind 0000:01:00.0");
}

#[test]
fn diagnose_non_viable_group_names_the_devices_and_how_to_release_them() {
    let h = FakeHost::ready();
    h.pci("0000:01:00.1", 0x0c0330, Some("xhci_hcd"), Some(5));
    let (line, fix) = only_failure(&h, &["diagnose", A], "group-viable");
    assert!(
        line.contains("IOMMU group 5 not viable: 0000:01:00.1 [8086:0953] on xhci_hcd"),
        "{line}"
    );
    assert_eq!(
        fix,
        "release them from their drivers (echo 0000:01:00.1 > \
         /sys/bus/pci/devices/0000:01:00.1/driver/unbind) or move the controller to a slot with \
         its own IOMMU group"
    );
}

#[test]
fn diagnose_missing_group_node_says_to_bind() {
    let h = FakeHost::ready();
    std::fs::remove_file(h.root().join("dev/vfio/5")).unwrap();
    let (line, fix) = only_failure(&h, &["diagnose", A], "group-node");
    assert!(line.ends_with("dev/vfio/5 missing"), "{line}");
    assert_eq!(
        fix,
        "sudo nvme-setup bind 0000:01:00.0 (the node appears once it is bound)"
    );
}

#[test]
fn diagnose_group_node_the_user_cannot_open_says_to_hand_it_over() {
    let h = FakeHost::ready();
    let (line, fix) = only_failure(&h, &["diagnose", A, "--user", "4242"], "group-node");
    assert!(line.contains("(mode 0600, uid"), "{line}");
    assert!(
        line.ends_with("does not open read-write for user 4242"),
        "{line}"
    );
    let node = h.root().join("dev/vfio/5");
    assert_eq!(
        fix,
        format!(
            "sudo nvme-setup bind 0000:01:00.0 --user 4242 (or sudo chown 4242 {})",
            node.display()
        )
    );
    // A world-writable node opens for anyone.
    h.chmod("dev/vfio/5", 0o666);
    let r = h.run(&["diagnose", A, "--user", "4242"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn diagnose_no_free_hugepages_says_to_reserve_some() {
    let h = FakeHost::ready();
    h.hugepages(2048, 0, 0);
    let (line, fix) = only_failure(&h, &["diagnose", A], "hugepages");
    assert!(line.ends_with("no hugepages reserved"), "{line}");
    assert_eq!(fix, "sudo nvme-setup hugepages --count 64");
    h.hugepages(2048, 64, 0);
    let (line, _) = only_failure(&h, &["diagnose", A], "hugepages");
    assert!(
        line.ends_with("all reserved hugepages are in use"),
        "{line}"
    );
}

#[test]
fn diagnose_memlock_below_the_reserved_hugepages_gives_the_kib_needed() {
    let h = FakeHost::ready();
    // 64 x 2 MiB reserved = 131072 KiB; the limit is 64 MiB. The limit binds only
    // users without CAP_IPC_LOCK, so diagnose for an ordinary one.
    h.memlock(Some(64 << 20));
    h.chmod("dev/vfio/5", 0o666);
    let (line, fix) = only_failure(&h, &["diagnose", A, "--user", "4242"], "memlock");
    assert!(
        line.contains(
            "locked-memory limit 65536 KiB is below the 131072 KiB of hugepages reserved"
        ),
        "{line}"
    );
    assert_eq!(
        fix,
        "raise it to at least 131072 KiB: `ulimit -l unlimited` (or `ulimit -l 131072`) in the \
         shell that starts the application, or add `<user> - memlock unlimited` to \
         /etc/security/limits.conf and log in again"
    );
    h.memlock(Some(128 << 20));
    assert_eq!(h.run(&["diagnose", A, "--user", "4242"]).code, 0);
}

#[test]
fn diagnose_memlock_does_not_bind_root() {
    let h = FakeHost::ready();
    h.memlock(Some(64 << 10));
    let r = h.run(&["diagnose", A, "--user", "0"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "ok   memlock: root has CAP_IPC_LOCK, so the locked-memory limit does not apply\n"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn diagnose_memlock_passes_when_the_process_has_cap_ipc_lock() {
    let h = FakeHost::ready();
    h.memlock(Some(64 << 10));
    h.chmod("dev/vfio/5", 0o666);
    // Every capability but CAP_IPC_LOCK (bit 14): the limit binds.
    h.cap_eff(0x1ff_ffff_ffff & !(1 << 14));
    let (line, _) = only_failure(&h, &["diagnose", A, "--user", "4242"], "memlock");
    assert!(line.contains("is below the 131072 KiB"), "{line}");
    // CAP_IPC_LOCK alone: the limit does not apply, whoever the user is.
    h.cap_eff(1 << 14);
    let r = h.run(&["diagnose", A, "--user", "4242"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "ok   memlock: this process has CAP_IPC_LOCK (CapEff bit 14 in /proc/self/status), \
             so the locked-memory limit does not apply\n"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn diagnose_rejects_an_unreadable_capability_mask() {
    let h = FakeHost::ready();
    h.write("proc/self/status", "Name:\tx\nCapEff:\tnot-hex\n");
    let r = h.run(&["diagnose", A]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("CapEff: <hexadecimal capability mask>"),
        "{}",
        r.stderr
    );
}

#[test]
fn diagnose_json_lists_checks_with_their_fixes() {
    let h = FakeHost::ready();
    h.hugepages(2048, 0, 0);
    let r = h.run(&["--json", "diagnose", A]);
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["ok"], false);
    let checks = j["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 8);
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "iommu",
            "vfio-driver",
            "vfio-dev",
            "bound",
            "group-viable",
            "group-node",
            "hugepages",
            "memlock"
        ]
    );
    let huge = checks.iter().find(|c| c["name"] == "hugepages").unwrap();
    assert_eq!(huge["ok"], false);
    assert_eq!(huge["fix"], "sudo nvme-setup hugepages --count 64");
    assert_eq!(checks[3]["device"], A);
}

#[test]
fn diagnose_unknown_device_is_an_error() {
    let h = FakeHost::ready();
    let r = h.run(&["diagnose", "0000:09:00.0"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("nvme-setup: error: no PCI device 0000:09:00.0 in "),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1);
}

#[test]
fn diagnose_a_device_that_is_not_nvme_says_so() {
    let h = FakeHost::ready();
    h.pci("0000:00:1f.3", 0x040300, Some("snd_hda_intel"), Some(11));
    let (line, fix) = only_failure(&h, &["diagnose", "0000:00:1f.3"], "nvme");
    assert!(
        line.contains("class 0x040300 is not an NVMe controller (0x010802)"),
        "{line}"
    );
    assert_eq!(
        fix,
        "name an NVMe controller; `nvme-setup status` lists them"
    );
}

#[test]
fn diagnose_container_node_the_user_cannot_open_says_to_restore_its_mode() {
    let h = FakeHost::ready();
    h.chmod("dev/vfio/vfio", 0o600);
    h.chmod("dev/vfio/5", 0o666);
    let (line, fix) = only_failure(&h, &["diagnose", A, "--user", "4242"], "vfio-dev");
    assert!(
        line.ends_with("does not open read-write for user 4242"),
        "{line}"
    );
    assert_eq!(
        fix,
        format!(
            "sudo chmod 0666 {} (the kernel's default)",
            h.root().join("dev/vfio/vfio").display()
        )
    );
}
