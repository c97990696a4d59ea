//! The stack against a real NVMe controller behind real VFIO: QEMU's NVMe
//! controller in a guest with an emulated Intel IOMMU (see `tests/vm/`).
//!
//! The checks run in three boots (TCG emulation is slow): the general guest
//! ([`CHECKS`]), the formats guest ([`FORMAT_CHECKS`]: namespaces with
//! metadata and protection information, a small-MDTS controller and a zoned
//! namespace) and the NVMe/TCP guest ([`TCP_CHECKS`]: a Linux NVMe/TCP target
//! in the guest's kernel). Each test
//! function asserts the result of its own guest script,
//! `tests/vm/guest/checks/<name>.sh`. To add a check: write the script, add its
//! name to one of the lists and add a test function calling [`check`],
//! [`format_check`] or [`tcp_check`]. Tests run on parallel threads; the boots
//! take turns.
//!
//! Outside CI the tests are skipped, loudly, when the host cannot run QEMU
//! guests (packages missing and not root); with `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nvme_e2e::vm::{self, CheckReport, Controller, Guest, Namespace};

/// Serial number of controller 0 (checks read it from the guest's controller list).
const SERIAL: &str = "e2e-0001";

/// Checks run in the shared boot, in order, with the workspace packages whose
/// binaries each one runs (built before the boot). Checks may leave a
/// controller on either driver: each binds what it needs first.
const CHECKS: &[(&str, &[&str])] = &[
    ("kernel_driver_roundtrip", &[]),
    ("vfio_probe", &[]),
    ("kernel_reference_config", &[]),
    ("kernel_lba_out_of_range", &[]),
    ("setup_bind_unbind", &[TOOLS]),
    ("identify_matches_kernel", &[TOOLS]),
    ("data_crosscheck", &[TOOLS]),
    ("perf_mixed_verify", &[TOOLS]),
    ("perf_poll_and_interrupt", &[TOOLS]),
    ("namespaces_and_mdts", &[TOOLS]),
    ("reset_shutdown", &[]),
    ("read_past_end", &[]),
    ("perf_kill_verify", &[TOOLS]),
    ("dio_kill_dsync", &[TOOLS]),
    ("store_kill_put", &[TOOLS]),
    // The measurement last: alternating kernel and nvme-perf rounds.
    ("perf_vs_kernel", &[TOOLS]),
];

/// Checks run in the formats guest ([`formats_guest`]), in order.
const FORMAT_CHECKS: &[(&str, &[&str])] = &[
    ("formats_identify_matches_nvme_cli", &[TOOLS]),
    ("formats_perf_verify", &[TOOLS]),
    ("formats_kernel_reads_back", &[]),
    ("formats_transfer_above_mdts", &[TOOLS]),
    ("formats_dio_compare_and_pract", &[TOOLS]),
    ("zns_identify_matches_nvme_cli", &[TOOLS]),
    ("zns_kernel_reads_back", &[]),
    ("zns_report_matches_nvme_cli", &[TOOLS]),
    ("zns_perf_append", &[TOOLS]),
];

/// Checks run in the NVMe/TCP guest ([`tcp_guest`]), in order: each configures
/// the Linux target (nvmet, nvmet-tcp) and the kernel's nvme-tcp initiator it
/// needs (`tests/vm/guest/tcp.sh`), so any of them also runs alone.
const TCP_CHECKS: &[(&str, &[&str])] = &[
    ("tcp_identify_matches_nvme_cli", &[TOOLS]),
    ("tcp_discovery", &[TOOLS]),
    ("tcp_data_crosscheck", &[TOOLS]),
    ("tcp_perf_verify", &[TOOLS]),
    ("tcp_port_kill", &[TOOLS]),
    // The measurement last: alternating kernel and nvme-perf rounds.
    ("tcp_perf_vs_kernel", &[TOOLS]),
];

/// The package of nvme-identify, nvme-perf, nvme-dio and nvme-setup.
const TOOLS: &str = "nvme-tools";

/// Directory of this build's binaries (`<target>/<profile>`).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vfio-probe"))
        .parent()
        .expect("a binary path has a parent directory")
        .to_path_buf()
}

/// Directory of the optimised tools the measurement (`perf_vs_kernel`) runs
/// (`<target>/release`): an unoptimised `nvme-perf` would measure the build,
/// not the driver, beside a kernel that is always optimised.
fn release_bin_dir() -> PathBuf {
    let dir = bin_dir();
    dir.parent()
        .map(|target| target.join("release"))
        .unwrap_or(dir)
}

/// The guest every check runs in: controller 0 (namespace 2 with 4096-byte
/// LBAs) at 0000:00:04.0 and a small-MDTS controller 1 at 0000:00:05.0;
/// the kernel driver gets a polled queue for the comparisons. The timeout
/// covers the whole batch under slow emulation (about 5 minutes here, over 7
/// when the host's load doubles every check's time).
fn guest() -> Guest {
    let bin_dir = bin_dir();
    Guest::new()
        .controller(Controller::new(SERIAL).second_namespace(4096))
        .controller(Controller::new("e2e-mdts").mdts(2))
        .kernel_arg("nvme.poll_queues=1")
        .env("NVME_E2E_BIN", &bin_dir.to_string_lossy())
        .env("NVME_E2E_RELEASE_BIN", &release_bin_dir().to_string_lossy())
        .share(&bin_dir)
        .share(&release_bin_dir())
        .timeout(Duration::from_secs(600))
}

/// The formats guest: controller 0 at 0000:00:04.0 with a plain namespace 1 and
/// namespaces 2 to 9 in every metadata layout, protection type and guard format
/// (namespace 9: the 16-byte tuple with a 64-bit CRC guard) QEMU offers
/// (identifiers on some, for the descriptor comparison); controller 1 at
/// 0000:00:05.0 with MDTS 1 (8 KiB per command) and an extended-LBA namespace 2;
/// controller 2 at 0000:00:06.0 with a zoned namespace 2 (32 zones of 1 MiB in
/// 4096-byte blocks, at most 4 open and 6 active) and a Zone Append Size Limit of
/// 2^5 pages (128 KiB, below its MDTS).
fn formats_guest() -> Guest {
    let bin_dir = bin_dir();
    let ns = |nsid, lba| Namespace::new(nsid, lba).size_mib(16);
    let formats = Controller::new("e2e-fmt")
        .size_mib(16)
        .namespace(ns(2, 512).metadata(8, true))
        .namespace(ns(3, 512).metadata(8, false))
        .namespace(
            ns(4, 4096)
                .metadata(64, true)
                .prop("uuid", "6c2f0e4e-5f0a-4d8b-9a51-3c7e2b1d0f42"),
        )
        .namespace(
            ns(5, 4096)
                .metadata(8, false)
                .protection(1, false)
                .prop("eui64", "0x0011223344556677"),
        )
        .namespace(ns(6, 512).metadata(8, true).protection(1, false))
        .namespace(ns(7, 512).metadata(16, true).protection(2, true))
        .namespace(
            ns(8, 4096)
                .metadata(8, true)
                .protection(3, false)
                .prop("eui64", "0x525400000000e2e8")
                .prop("uuid", "0f9d2c4a-71b3-4e65-8d2e-a4c6b8e0f1d3"),
        )
        .namespace(
            ns(9, 4096)
                .metadata(16, true)
                .protection(1, false)
                .prop("pif", "2"),
        );
    let small_mdts = Controller::new("e2e-mdts1")
        .size_mib(32)
        .mdts(1)
        .namespace(ns(2, 512).metadata(8, true));
    let zoned = Controller::new("e2e-zns")
        .size_mib(16)
        .prop("zoned.zasl", "5")
        .namespace(ns(2, 4096).size_mib(32).zoned(1, 4, 6));
    Guest::new()
        .controller(formats)
        .controller(small_mdts)
        .controller(zoned)
        .env("NVME_E2E_BIN", &bin_dir.to_string_lossy())
        .share(&bin_dir)
        .timeout(Duration::from_secs(480))
}

/// The NVMe/TCP guest: no NVMe controller, a Linux NVMe/TCP target on the
/// loopback interface (set up by the checks through configfs) and the kernel's
/// NVMe/TCP initiator beside our transport. Each check gets up to 240 s (the
/// measurement takes about 90 s); the whole boot about 3 minutes here.
fn tcp_guest() -> Guest {
    let bin_dir = bin_dir();
    Guest::new()
        .env("NVME_E2E_BIN", &bin_dir.to_string_lossy())
        .env("NVME_E2E_RELEASE_BIN", &release_bin_dir().to_string_lossy())
        .env("CHECK_TIMEOUT", "240")
        .share(&bin_dir)
        .share(&release_bin_dir())
        .timeout(Duration::from_secs(600))
}

/// Whether guests can run here; `false` (after a loud message) only outside CI.
fn guests_available() -> bool {
    static UNAVAILABLE: OnceLock<Option<String>> = OnceLock::new();
    let unavailable = UNAVAILABLE.get_or_init(|| match vm::prepare() {
        Ok(_) => None,
        Err(e @ nvme_e2e::Error::Unavailable { .. }) if !vm::in_ci() => Some(e.to_string()),
        Err(e) => panic!("cannot prepare the QEMU guest: {e}"),
    });
    if let Some(reason) = unavailable {
        eprintln!("\n*** SKIPPED: QEMU/VFIO end-to-end checks need a host that can run them.\n*** {reason}\n*** (with CI=true this is a failure)\n");
        return false;
    }
    true
}

/// Builds what `checks` need (and the optimised tools when `release_tools`) and
/// boots `guest` once to run them. Boots take turns: each one keeps the host's
/// cores busy, and tests run on parallel threads.
fn boot(
    checks: &[(&str, &[&str])],
    guest: fn() -> Guest,
    release_tools: bool,
) -> Result<CheckReport, String> {
    static ONE_GUEST_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_GUEST_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut packages: Vec<&str> = checks.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    packages.sort_unstable();
    packages.dedup();
    vm::build_bins(&packages, &bin_dir()).map_err(|e| e.to_string())?;
    if release_tools && release_bin_dir() != bin_dir() {
        vm::build_bins(&[TOOLS], &release_bin_dir()).map_err(|e| e.to_string())?;
    }
    let names: Vec<&str> = checks.iter().map(|(name, _)| *name).collect();
    let r = guest().run_checks(&names).map_err(|e| e.to_string());
    if let Ok(r) = &r {
        eprintln!("{}", r.summary());
    }
    r
}

/// The general boot's report; `None` when guests are unavailable outside CI.
fn report() -> Option<&'static CheckReport> {
    static REPORT: OnceLock<Result<CheckReport, String>> = OnceLock::new();
    if !guests_available() {
        return None;
    }
    match REPORT.get_or_init(|| boot(CHECKS, guest, true)) {
        Ok(r) => Some(r),
        Err(e) => panic!("the QEMU guest did not run its checks: {e}"),
    }
}

/// The formats boot's report; `None` when guests are unavailable outside CI.
fn formats_report() -> Option<&'static CheckReport> {
    static REPORT: OnceLock<Result<CheckReport, String>> = OnceLock::new();
    if !guests_available() {
        return None;
    }
    match REPORT.get_or_init(|| boot(FORMAT_CHECKS, formats_guest, false)) {
        Ok(r) => Some(r),
        Err(e) => panic!("the QEMU formats guest did not run its checks: {e}"),
    }
}

/// The NVMe/TCP boot's report; `None` when guests are unavailable outside CI.
fn tcp_report() -> Option<&'static CheckReport> {
    static REPORT: OnceLock<Result<CheckReport, String>> = OnceLock::new();
    if !guests_available() {
        return None;
    }
    match REPORT.get_or_init(|| boot(TCP_CHECKS, tcp_guest, true)) {
        Ok(r) => Some(r),
        Err(e) => panic!("the QEMU NVMe/TCP guest did not run its checks: {e}"),
    }
}

/// Asserts that guest check `name` of the general boot passed; returns its log.
fn check(name: &str) -> Option<String> {
    assert_passed(report()?, name)
}

/// Asserts that guest check `name` of the formats boot passed; returns its log.
fn format_check(name: &str) -> Option<String> {
    assert_passed(formats_report()?, name)
}

/// Asserts that guest check `name` of the NVMe/TCP boot passed; returns its log.
fn tcp_check(name: &str) -> Option<String> {
    assert_passed(tcp_report()?, name)
}

/// Asserts that check `name` of `report` passed; returns its log.
fn assert_passed(report: &CheckReport, name: &str) -> Option<String> {
    let outcome = report
        .get(name)
        .unwrap_or_else(|| panic!("check {name} is not in this boot's list of checks"));
    assert!(
        outcome.passed(),
        "guest check {name} failed (exit status {:?}):\n{}\n--- console ---\n{}",
        outcome.status,
        outcome.log,
        report.console
    );
    Some(outcome.log.clone())
}

#[test]
fn controller_moves_between_vfio_pci_and_kernel_driver_and_serves_direct_io() {
    check("kernel_driver_roundtrip");
}

#[test]
fn vfio_ioctls_maps_bar0_and_identifies_controller_by_dma() {
    let log = check("vfio_probe");
    eprintln!("{}", log.unwrap_or_default());
}

#[test]
fn harness_builds_the_namespaces_and_mdts_it_was_asked_for() {
    check("kernel_reference_config");
}

#[test]
fn kernel_driver_reports_lba_out_of_range_past_namespace_end() {
    check("kernel_lba_out_of_range");
}

#[test]
fn nvme_setup_binds_diagnoses_and_unbinds_a_real_controller() {
    check("setup_bind_unbind");
}

#[test]
fn identify_through_vfio_matches_kernel_id_ctrl_and_id_ns() {
    check("identify_matches_kernel");
}

#[test]
fn bytes_written_by_either_driver_read_back_identically_by_the_other() {
    check("data_crosscheck");
}

#[test]
fn random_mixed_io_on_two_queue_pairs_at_qd32_verifies() {
    check("perf_mixed_verify");
}

#[test]
fn polled_and_msix_interrupt_modes_both_complete_io() {
    check("perf_poll_and_interrupt");
}

#[test]
fn second_namespace_with_4k_lbas_and_small_mdts_controller_work() {
    check("namespaces_and_mdts");
}

#[test]
fn reset_and_shutdown_leave_device_usable_by_kernel_driver() {
    check("reset_shutdown");
}

#[test]
fn read_past_namespace_end_reports_lba_out_of_range_by_name() {
    check("read_past_end");
}

/// `nvme-perf --verify` (random reads and writes at QD 32) killed with SIGKILL: the
/// next open works, every block of the area is whole (old or new pattern, never
/// torn), the kernel driver takes the controller back, the hugepages are free.
#[test]
fn perf_killed_mid_write_leaves_whole_blocks_and_a_reusable_controller() {
    let log = check("perf_kill_verify");
    eprintln!("{}", log.unwrap_or_default());
}

/// `nvme-dio` writing with `--dsync` killed with SIGKILL: every write it reported
/// done reads back byte for byte through our driver and the kernel's; writes never
/// started read as before; the hugepages are free.
#[test]
fn dio_dsync_writes_reported_done_before_sigkill_read_back() {
    let log = check("dio_kill_dsync");
    eprintln!("{}", log.unwrap_or_default());
}

/// `nvme-store`: files put with and without `--dsync` read back byte for byte in
/// later processes; a `put --dsync` killed with SIGKILL leaves a store fsck finds
/// clean and a file holding a prefix of its source with every chunk reported done.
#[test]
fn store_files_survive_a_put_killed_mid_copy() {
    let log = check("store_kill_put");
    eprintln!("{}", log.unwrap_or_default());
}

/// Measurement, printed with `--nocapture`: our polled 4 KiB randread against
/// the kernel's (fio io_uring `--hipri`) at QD1 and QD32, in alternating rounds
/// of one boot, per round and as medians, then ours alone at QD128 (does a
/// deeper queue still buy throughput?) (`nvme-perf` always an optimised build).
/// Asserted: every run finishes without error and fio's completions were
/// polled.
#[test]
fn nvme_perf_randread_runs_beside_kernel_polled_baseline() {
    let log = check("perf_vs_kernel");
    eprintln!("{}", log.unwrap_or_default());
}

/// Identify through vfio = nvme-cli through the kernel (`id-ctrl`, `id-ns`,
/// `ns-descs`), field for field, on every namespace format and both controllers;
/// our decoded format fields agree with the raw ones and the configuration.
/// Prints each controller's MDTS, SGLS and FUSES and each namespace's format.
#[test]
fn identify_matches_nvme_cli_on_every_metadata_and_protection_format() {
    let log = format_check("formats_identify_matches_nvme_cli");
    eprintln!("{}", log.unwrap_or_default());
}

/// nvme-perf --verify runs clean on each metadata format it supports (extended
/// LBAs, PRACT on protection-only metadata) and refuses the others up front.
#[test]
fn nvme_perf_verify_runs_clean_on_every_supported_metadata_format() {
    let log = format_check("formats_perf_verify");
    eprintln!("{}", log.unwrap_or_default());
}

/// What our driver writes with PRACT (or a separate metadata buffer) the kernel
/// reads back, checking the protection information, and the other way round.
#[test]
fn kernel_reads_back_what_we_wrote_on_metadata_and_protection_formats() {
    let log = format_check("formats_kernel_reads_back");
    eprintln!("{}", log.unwrap_or_default());
}

/// nvme-dio through vfio: the device's Compare (match and mismatch), PRACT on
/// protection-only formats read back by the kernel, refusal of other metadata formats.
#[test]
fn dio_compares_on_the_device_and_runs_through_pract_on_protection_formats() {
    let log = format_check("formats_dio_compare_and_pract");
    eprintln!("{}", log.unwrap_or_default());
}

/// 1 MiB verified I/O on a controller whose MDTS is 8 KiB.
#[test]
fn transfer_above_mdts_is_split_and_verifies() {
    let log = format_check("formats_transfer_above_mdts");
    eprintln!("{}", log.unwrap_or_default());
}

/// The zoned namespace: identify through vfio = `nvme id-ns`, `nvme zns id-ns` and
/// `nvme zns id-ctrl` through the kernel (command set, zone size from the LBA format
/// extension, MAR, MOR, ZASL), the configuration and the kernel's zoned block device.
#[test]
fn identify_reports_the_zoned_namespace_as_nvme_cli_and_the_kernel_see_it() {
    let log = format_check("zns_identify_matches_nvme_cli");
    eprintln!("{}", log.unwrap_or_default());
}

/// Zones written through vfio with sequential writes and Zone Appends (each at the
/// write pointer) read back identically through the kernel's zoned block device, and
/// a zone the kernel wrote reads back through ours; a write off the write pointer is
/// refused as Zone Invalid Write, an append above ZASL before it reaches the device.
#[test]
fn zones_written_with_appends_and_writes_read_back_through_the_kernel() {
    let log = format_check("zns_kernel_reads_back");
    eprintln!("{}", log.unwrap_or_default());
}

/// nvme-zns report --json = `nvme zns report-zones -o json` for every zone, with
/// zones empty, open, closed, full and partly written, and after reset --all.
#[test]
fn zone_report_matches_nvme_cli_for_every_zone() {
    let log = format_check("zns_report_matches_nvme_cli");
    eprintln!("{}", log.unwrap_or_default());
}

/// nvme-perf -w append --verify runs clean on the zoned namespace; -w randwrite is
/// refused with a message about zones.
#[test]
fn nvme_perf_appends_verify_and_random_writes_are_refused_on_zones() {
    let log = format_check("zns_perf_append");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP: `nvme-identify` on the Linux target's subsystem over our transport =
/// `nvme id-ctrl`/`id-ns` through the kernel's nvme-tcp initiator (vid, ssvid, sn,
/// mn, fr, subnqn, nn, cntrltype, ioccsz/iorcsz; nsze, ncap, nuse, the LBA format).
#[test]
fn tcp_identify_matches_nvme_cli_through_the_kernel_initiator() {
    let log = tcp_check("tcp_identify_matches_nvme_cli");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP: our discovery controller's log = `nvme discover -o json`, record for
/// record, and it lists the target's subsystem.
#[test]
fn tcp_discovery_lists_what_nvme_discover_lists() {
    let log = tcp_check("tcp_discovery");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP: bytes written by nvme-dio and nvme-perf over our transport read back
/// identically through the kernel's initiator and the other way round, in-capsule
/// (4 KiB) and R2T-sized (1 MiB) writes.
#[test]
fn tcp_bytes_written_by_either_initiator_read_back_by_the_other() {
    let log = tcp_check("tcp_data_crosscheck");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP: `nvme-perf -w randrw --verify` on 4 queue pairs (4 KiB) and 2 queue
/// pairs (128 KiB) is clean.
#[test]
fn tcp_perf_verify_on_several_queue_pairs_is_clean() {
    let log = tcp_check("tcp_perf_verify");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP: the target's port going away mid-run ends nvme-perf with an error that
/// names the connection, within 60 s and not by a signal; the port comes back.
#[test]
fn tcp_port_removed_mid_run_ends_perf_with_a_connection_error() {
    let log = tcp_check("tcp_port_kill");
    eprintln!("{}", log.unwrap_or_default());
}

/// NVMe/TCP measurement, printed with `--nocapture`: 4 KiB randread at QD1 and
/// QD32 over loopback to the same nvmet subsystem, fio io_uring on the kernel's
/// nvme-tcp initiator against our `nvme-perf` (optimised build), alternating rounds
/// of one boot, per round and as medians, with the CPU per I/O of both. Asserted:
/// every run finished without error and the report is complete (every round of
/// both sides and both medians); never a speed.
#[test]
fn tcp_perf_randread_runs_beside_the_kernel_nvme_tcp_initiator() {
    let Some(log) = tcp_check("tcp_perf_vs_kernel") else {
        return;
    };
    eprintln!("{log}");
    for qd in [1, 32] {
        let rounds = log
            .lines()
            .filter(|l| l.starts_with("round ") && l.contains(&format!(" QD{qd}: kernel ")))
            .filter(|l| l.contains("| ours ") && l.contains("ours/kernel"))
            .count();
        assert_eq!(
            rounds, 3,
            "QD{qd}: not 3 rounds of both sides in the report:\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.starts_with(&format!("median QD{qd} "))
                    && l.contains("kernel")
                    && l.contains("| ours ")
                    && l.contains("IOPS ratio")
                    && l.matches("CPU/IO").count() == 4),
            "QD{qd}: no complete median line in the report:\n{log}"
        );
    }
}
