//! The stack against a real NVMe controller behind real VFIO: QEMU's NVMe
//! controller in a guest with an emulated Intel IOMMU (see `tests/vm/`).
//!
//! All checks run in one boot (TCG emulation is slow); each test function
//! asserts the result of its own guest script, `tests/vm/guest/checks/<name>.sh`.
//! To add a check: write the script, add its name to [`CHECKS`] and add a
//! test function calling [`check`].
//!
//! Outside CI the tests are skipped, loudly, when the host cannot run QEMU
//! guests (packages missing and not root); with `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nvme_e2e::vm::{self, CheckReport, Controller, Guest};

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
    // The measurement last: alternating kernel and nvme-perf rounds.
    ("perf_vs_kernel", &[TOOLS]),
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
/// covers the whole batch under slow emulation (about 3 minutes here).
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
        .timeout(Duration::from_secs(420))
}

/// The shared boot's report; `None` when guests are unavailable outside CI.
fn report() -> Option<&'static CheckReport> {
    static REPORT: OnceLock<Result<CheckReport, String>> = OnceLock::new();
    static UNAVAILABLE: OnceLock<Option<String>> = OnceLock::new();
    let unavailable = UNAVAILABLE.get_or_init(|| match vm::prepare() {
        Ok(_) => None,
        Err(e @ nvme_e2e::Error::Unavailable { .. }) if !vm::in_ci() => Some(e.to_string()),
        Err(e) => panic!("cannot prepare the QEMU guest: {e}"),
    });
    if let Some(reason) = unavailable {
        eprintln!("\n*** SKIPPED: QEMU/VFIO end-to-end checks need a host that can run them.\n*** {reason}\n*** (with CI=true this is a failure)\n");
        return None;
    }
    let report = REPORT.get_or_init(|| {
        let mut packages: Vec<&str> = CHECKS.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        packages.sort_unstable();
        packages.dedup();
        vm::build_bins(&packages, &bin_dir()).map_err(|e| e.to_string())?;
        if release_bin_dir() != bin_dir() {
            vm::build_bins(&[TOOLS], &release_bin_dir()).map_err(|e| e.to_string())?;
        }
        let names: Vec<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
        let r = guest().run_checks(&names).map_err(|e| e.to_string());
        if let Ok(r) = &r {
            eprintln!("{}", r.summary());
        }
        r
    });
    match report {
        Ok(r) => Some(r),
        Err(e) => panic!("the QEMU guest did not run its checks: {e}"),
    }
}

/// Asserts that guest check `name` passed; returns its log.
fn check(name: &str) -> Option<String> {
    let report = report()?;
    let outcome = report
        .get(name)
        .unwrap_or_else(|| panic!("check {name} is not in CHECKS"));
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
