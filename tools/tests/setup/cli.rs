use crate::fake::{FakeHost, NVME_CLASS};

#[test]
fn help_shows_examples_and_exit_codes() {
    let h = FakeHost::bare();
    let r = h.run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("sudo nvme-setup bind 0000:01:00.0 --user alice"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Exit status: 0 success, 1 failure"),
        "{}",
        r.stdout
    );
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_code_2() {
    let h = FakeHost::bare();
    let r = h.run(&["bind", "--frobnicate"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("nvme-setup: error: "), "{}", r.stderr);
    assert!(r.stderr.contains("--frobnicate"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let r = h.run(&["hugepages"]);
    assert_eq!(r.code, 2, "--count is required");
    let r = h.run(&["hugepages", "--count", "lots"]);
    assert_eq!(r.code, 2);
}

#[test]
fn malformed_pci_address_is_a_one_line_usage_error() {
    let h = FakeHost::bare();
    for cmd in ["bind", "unbind", "diagnose"] {
        let r = h.run(&[cmd, "0000:01:00"]);
        assert_eq!(r.code, 2, "{cmd}");
        assert_eq!(
            r.stderr,
            "nvme-setup: error: bad PCI address '0000:01:00': expected \
             DOMAIN:BUS:DEVICE.FUNCTION in hex, e.g. 0000:01:00.0\n",
            "{cmd}"
        );
    }
}

#[test]
fn unknown_pci_address_is_a_one_line_error_pointing_at_status() {
    let h = FakeHost::bare();
    let r = h.run(&["bind", "0000:42:00.0"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "nvme-setup: error: no PCI device 0000:42:00.0 in {}; `nvme-setup status` lists the \
             NVMe controllers\n",
            h.sys("bus/pci/devices").display()
        )
    );
}

#[test]
fn json_errors_are_also_json_on_stdout() {
    let h = FakeHost::bare();
    let r = h.run(&["--json", "bind", "0000:42:00.0"]);
    assert_eq!(r.code, 1);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("no PCI device 0000:42:00.0"),
        "{}",
        r.stdout
    );
}

#[test]
fn garbage_in_sysfs_is_reported_not_panicked_on() {
    let h = FakeHost::bare();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), Some(5));
    h.write("sys/bus/pci/devices/0000:01:00.0/class", "banana\n");
    let r = h.run(&["status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("nvme-setup: error: unexpected content 'banana' in "),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn rust_log_sends_logging_to_stderr_only() {
    let h = FakeHost::bare();
    h.enable_iommu();
    h.load_vfio();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), Some(5));
    let out = h
        .cmd()
        .env("RUST_LOG", "info")
        .args(["--json", "bind", "0000:01:00.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sysfs write"), "{stderr}");
    // stdout stays pure JSON.
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_without_a_panic() {
    use std::process::Stdio;
    let h = FakeHost::ready();
    let mut child = h
        .cmd()
        .args(["--json", "status"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child writes its report.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_failed_sysfs_write_is_a_one_line_error_naming_the_file() {
    let h = FakeHost::bare();
    h.enable_iommu();
    h.load_vfio();
    h.pci("0000:01:00.0", NVME_CLASS, Some("nvme"), Some(5));
    // A kernel without driver_override: the tool must not create the attribute.
    let attr = h.sys("bus/pci/devices/0000:01:00.0/driver_override");
    std::fs::remove_file(&attr).unwrap();
    let r = h.run(&["bind", "0000:01:00.0"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "nvme-setup: error: cannot write 'vfio-pci' to {}: No such file or directory (os \
             error 2)\n",
            attr.display()
        )
    );
    assert!(!attr.exists());
    assert_eq!(h.read_sys("bus/pci/drivers_probe"), "");
}
