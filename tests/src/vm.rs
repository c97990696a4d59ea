//! QEMU test guests: boot, run a command or a batch of checks, collect results.
//!
//! A thin typed front to `tests/vm/run-guest` (see its header for what the
//! guest looks like). One boot costs a few seconds of emulation, so callers
//! batch their checks: [`Guest::run_checks`] runs several scripts from
//! `tests/vm/guest/checks/` in one boot and reports each one separately.
//!
//! ```no_run
//! use nvme_e2e::vm::{Controller, Guest, Namespace};
//! let report = Guest::new()
//!     .controller(
//!         Controller::new("deadbeef")
//!             .second_namespace(4096)
//!             .namespace(Namespace::new(3, 512).metadata(8, true).protection(1, false)),
//!     )
//!     .run_checks(&["kernel_driver_roundtrip"])
//!     .unwrap();
//! assert!(report.get("kernel_driver_roundtrip").unwrap().passed());
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Root of the workspace (the directory that holds `tests/vm`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        Path::to_path_buf,
    )
}

/// Directory of the harness scripts (`tests/vm`).
pub fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm")
}

/// Whether this is a CI run (`CI=true`), where guest tests must not be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Installs missing packages (as root) and builds the cached kernel and
/// initramfs; returns the cache directory. [`Error::Unavailable`] when the
/// host lacks a package and cannot install it.
pub fn prepare() -> Result<PathBuf, Error> {
    let script = vm_dir().join("prepare");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io {
            what: format!("run {}", script.display()),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
        Some(3 | 4) => Err(Error::Unavailable { reason: stderr }),
        code => Err(Error::Harness {
            script,
            status: code.unwrap_or(-1),
            stderr,
        }),
    }
}

/// Builds the binaries of the workspace packages `packages` into the directory
/// `bin_dir` (`<target>/debug` or `<target>/release`) with the cargo that runs
/// the tests, so that guest checks run up-to-date tools.
///
/// A release build is `cargo build --release --bins -p PACKAGE`, one per
/// package. A debug build is one build of what `cargo test --workspace` builds
/// (every package's binaries and tests, so `packages` among them): only the
/// same feature resolution, dev-dependencies included, makes it a no-op under
/// the workspace's test run instead of a second build of the shared
/// dependencies with other features.
pub fn build_bins(packages: &[&str], bin_dir: &Path) -> Result<(), Error> {
    let target = bin_dir.parent().ok_or_else(|| Error::Harness {
        script: bin_dir.to_path_buf(),
        status: -1,
        stderr: "not a <target>/<profile> directory".into(),
    })?;
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        packages
            .iter()
            .try_for_each(|p| cargo_build(target, &["--release", "-p", p]))
    } else {
        cargo_build(target, &["--workspace", "--tests"])
    }
}

/// Runs `cargo build --quiet --bins --target-dir TARGET ARGS...` in the
/// workspace.
fn cargo_build(target: &Path, args: &[&str]) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(repo_root())
        .args(["build", "--quiet", "--bins", "--target-dir"])
        .arg(target)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io {
            what: format!(
                "run {} build {}",
                Path::new(&cargo).display(),
                args.join(" ")
            ),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Harness {
            script: PathBuf::from(cargo),
            status: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// An extra namespace of a [`Controller`] (QEMU's `-device nvme-ns`), on a fresh
/// sparse image. QEMU sizes it as image bytes / (data + metadata bytes per block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    nsid: u32,
    lba_bytes: u32,
    size_mib: u32,
    props: Vec<(String, String)>,
}

impl Namespace {
    /// Namespace `nsid` (2 or more: 1 is the controller's own drive) of 64 MiB with
    /// `lba_bytes`-byte logical blocks and no metadata.
    pub fn new(nsid: u32, lba_bytes: u32) -> Self {
        Self {
            nsid,
            lba_bytes,
            size_mib: 64,
            props: Vec::new(),
        }
    }

    /// Sets the image size.
    pub fn size_mib(mut self, mib: u32) -> Self {
        self.size_mib = mib;
        self
    }

    /// Formats with `ms` metadata bytes per block, interleaved with the data
    /// (extended LBA, QEMU's `mset=1`) or in a separate buffer (`mset=0`).
    pub fn metadata(self, ms: u16, extended: bool) -> Self {
        self.prop("ms", &ms.to_string())
            .prop("mset", if extended { "1" } else { "0" })
    }

    /// Enables protection information of type `pi` (1 to 3) in the first or the last
    /// 8 bytes of the metadata (QEMU's `pil=1` or `pil=0`).
    pub fn protection(self, pi: u8, first: bool) -> Self {
        self.prop("pi", &pi.to_string())
            .prop("pil", if first { "1" } else { "0" })
    }

    /// Makes the namespace zoned (QEMU's `zoned=true`) with zones of `zone_size_mib`
    /// MiB, at most `max_open` open and `max_active` active zones at once.
    pub fn zoned(self, zone_size_mib: u32, max_open: u32, max_active: u32) -> Self {
        self.prop("zoned", "true")
            .prop("zoned.zone_size", &format!("{zone_size_mib}M"))
            .prop("zoned.max_open", &max_open.to_string())
            .prop("zoned.max_active", &max_active.to_string())
    }

    /// Sets any other `nvme-ns` property (`eui64`, `uuid`, ...).
    pub fn prop(mut self, key: &str, value: &str) -> Self {
        self.props.push((key.into(), value.into()));
        self
    }

    /// The `nsN=...,nsNsize=...` part of run-guest's `--nvme` spec.
    fn spec(&self) -> String {
        let mut s = format!("ns{}={}", self.nsid, self.lba_bytes);
        for (k, v) in &self.props {
            s.push_str(&format!(":{k}={v}"));
        }
        s.push_str(&format!(",ns{}size={}", self.nsid, self.size_mib));
        s
    }
}

/// One emulated NVMe controller and its namespaces (fresh sparse images).
#[derive(Debug, Clone)]
pub struct Controller {
    serial: String,
    size_mib: u32,
    namespaces: Vec<Namespace>,
    props: Vec<(String, String)>,
}

impl Controller {
    /// A controller with serial number `serial` and a 256 MiB namespace 1 of 512-byte LBAs.
    pub fn new(serial: &str) -> Self {
        Self {
            serial: serial.into(),
            size_mib: 256,
            namespaces: Vec::new(),
            props: Vec::new(),
        }
    }

    /// Sets namespace 1's size.
    pub fn size_mib(mut self, mib: u32) -> Self {
        self.size_mib = mib;
        self
    }

    /// Sets MDTS (maximum data transfer size, 2^n minimum pages).
    pub fn mdts(self, n: u8) -> Self {
        self.prop("mdts", &n.to_string())
    }

    /// Adds namespace 2 (64 MiB) with `lba_size`-byte logical blocks.
    pub fn second_namespace(self, lba_size: u32) -> Self {
        self.namespace(Namespace::new(2, lba_size))
    }

    /// Adds a namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespaces.push(ns);
        self
    }

    /// Sets any other property of QEMU's `-device nvme` (`max_ioqpairs`, `msix_qsize`, ...).
    pub fn prop(mut self, key: &str, value: &str) -> Self {
        self.props.push((key.into(), value.into()));
        self
    }

    /// The serial number.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The `--nvme` spec for run-guest.
    fn spec(&self) -> String {
        let mut s = format!("serial={},size={}", self.serial, self.size_mib);
        for ns in &self.namespaces {
            s.push(',');
            s.push_str(&ns.spec());
        }
        for (k, v) in &self.props {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

/// A guest configuration: controllers, kernel arguments, environment, timeout.
#[derive(Debug, Clone)]
pub struct Guest {
    controllers: Vec<Controller>,
    kernel_args: Vec<String>,
    env: Vec<(String, String)>,
    shares: Vec<PathBuf>,
    timeout: Duration,
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

impl Guest {
    /// A guest with no controller and a 240 s timeout.
    pub fn new() -> Self {
        Self {
            controllers: Vec::new(),
            kernel_args: Vec::new(),
            env: Vec::new(),
            shares: Vec::new(),
            timeout: Duration::from_secs(240),
        }
    }

    /// Adds a controller; the n-th (from 0) is at guest PCI address `0000:00:0{4+n}.0`.
    pub fn controller(mut self, c: Controller) -> Self {
        self.controllers.push(c);
        self
    }

    /// Adds a kernel command-line argument (e.g. `nvme.poll_queues=1`).
    pub fn kernel_arg(mut self, arg: &str) -> Self {
        self.kernel_args.push(arg.into());
        self
    }

    /// Sets an environment variable for the guest command.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Makes host directory `dir` visible, read-only, at the same path in the
    /// guest (the workspace always is; a build directory elsewhere, or under
    /// `/tmp`, which the guest covers with a fresh tmpfs, needs this).
    pub fn share(mut self, dir: &Path) -> Self {
        self.shares.push(dir.to_path_buf());
        self
    }

    /// Kills the guest after `timeout` (the whole boot, not one check).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Guest PCI address of controller `index`.
    pub fn bdf(index: usize) -> String {
        format!("0000:00:{:02x}.0", 4 + index)
    }

    /// Boots the guest, runs `command` (in the host's root, read-only, from
    /// the workspace directory) and returns its exit status and console.
    pub fn run(&self, command: &[&str]) -> Result<GuestRun, Error> {
        let xfer = tempfile::Builder::new()
            .prefix("nvme-vm-xfer.")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create the guest transfer directory".into(),
                source,
            })?;
        let script = vm_dir().join("run-guest");
        let mut cmd = Command::new(&script);
        cmd.current_dir(repo_root())
            .stdin(Stdio::null())
            .arg("--xfer")
            .arg(xfer.path())
            .arg("--timeout")
            .arg(self.timeout.as_secs().max(1).to_string());
        for c in &self.controllers {
            cmd.arg("--nvme").arg(c.spec());
        }
        for d in &self.shares {
            cmd.arg("--share").arg(d);
        }
        for a in &self.kernel_args {
            cmd.arg("--append").arg(a);
        }
        cmd.arg("--").arg("env");
        for (k, v) in &self.env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(command);

        let start = Instant::now();
        let out = cmd.output().map_err(|source| Error::Io {
            what: format!("run {}", script.display()),
            source,
        })?;
        let elapsed = start.elapsed();
        let console = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let status = std::fs::read_to_string(xfer.path().join("exit-status"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        match status {
            Some(status) => Ok(GuestRun {
                status,
                console,
                stderr,
                elapsed,
                xfer,
            }),
            None if out.status.code() == Some(2) || console.is_empty() => Err(Error::Harness {
                script,
                status: out.status.code().unwrap_or(-1),
                stderr,
            }),
            None => Err(Error::GuestDidNotFinish {
                stderr,
                console_tail: tail(&console, 40),
            }),
        }
    }

    /// Boots the guest once and runs each named check
    /// (`tests/vm/guest/checks/<name>.sh`) in order, each with its own
    /// result; a failing check does not stop the next ones.
    pub fn run_checks(&self, checks: &[&str]) -> Result<CheckReport, Error> {
        let runner = vm_dir().join("guest").join("run-checks.sh");
        let runner = runner.to_string_lossy();
        let mut command = vec!["bash", runner.as_ref()];
        command.extend_from_slice(checks);
        let run = self.run(&command)?;
        let dir = run.xfer.path().join("checks");
        let checks = checks
            .iter()
            .map(|name| {
                let status = std::fs::read_to_string(dir.join(format!("{name}.status"))).ok();
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                let mut fields = status.as_deref().unwrap_or("").split_whitespace();
                let status = fields.next().and_then(|s| s.parse().ok());
                let ms = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                CheckOutcome {
                    name: (*name).to_string(),
                    status,
                    elapsed: Duration::from_millis(ms),
                    log,
                }
            })
            .collect();
        // The transfer directory goes away here: a report kept for the whole
        // test run (in a static) must not keep a temporary directory alive.
        Ok(CheckReport {
            status: run.status,
            console: run.console,
            elapsed: run.elapsed,
            checks,
        })
    }
}

/// The result of one guest boot.
#[derive(Debug)]
pub struct GuestRun {
    /// The command's exit status in the guest.
    pub status: i32,
    /// Everything the guest printed on its serial console.
    pub console: String,
    /// run-guest's own messages.
    pub stderr: String,
    /// Wall time from launch to QEMU's exit.
    pub elapsed: Duration,
    /// The transfer directory (`/run/vm` in the guest); removed on drop.
    pub xfer: tempfile::TempDir,
}

/// The result of one check script.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// Check name.
    pub name: String,
    /// Exit status; `None` when the check did not run (the guest stopped first).
    pub status: Option<i32>,
    /// Wall time of the check in the guest.
    pub elapsed: Duration,
    /// Its standard output and error.
    pub log: String,
}

impl CheckOutcome {
    /// Whether the check ran and exited 0.
    pub fn passed(&self) -> bool {
        self.status == Some(0)
    }
}

/// Per-check results of one boot.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Exit status of the check runner: the number of failed checks.
    pub status: i32,
    /// Everything the guest printed on its serial console.
    pub console: String,
    /// Wall time of the boot, from launch to QEMU's exit.
    pub elapsed: Duration,
    /// One outcome per requested check, in order.
    pub checks: Vec<CheckOutcome>,
}

impl CheckReport {
    /// The outcome of check `name`.
    pub fn get(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// One line per check plus the boot's wall time.
    pub fn summary(&self) -> String {
        let mut s = format!("guest boot + checks: {:.1} s\n", self.elapsed.as_secs_f64());
        for c in &self.checks {
            let verdict = match c.status {
                Some(0) => "pass".to_string(),
                Some(n) => format!("FAIL (exit {n})"),
                None => "did not run".to_string(),
            };
            s.push_str(&format!(
                "  {:<40} {verdict:<14} {:.1} s\n",
                c.name,
                c.elapsed.as_secs_f64()
            ));
        }
        s
    }
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_spec_carries_serial_size_second_namespace_and_properties() {
        let c = Controller::new("abc")
            .size_mib(64)
            .second_namespace(4096)
            .mdts(2)
            .prop("max_ioqpairs", "4");
        assert_eq!(
            c.spec(),
            "serial=abc,size=64,ns2=4096,ns2size=64,mdts=2,max_ioqpairs=4"
        );
    }

    #[test]
    fn namespace_spec_carries_metadata_protection_and_other_properties_in_order() {
        let c = Controller::new("f").namespace(
            Namespace::new(5, 4096)
                .size_mib(16)
                .metadata(8, false)
                .protection(1, false)
                .prop("eui64", "0x1"),
        );
        assert_eq!(
            c.spec(),
            "serial=f,size=256,ns5=4096:ms=8:mset=0:pi=1:pil=0:eui64=0x1,ns5size=16"
        );
        let ext = Namespace::new(2, 512)
            .metadata(16, true)
            .protection(2, true);
        assert_eq!(ext.spec(), "ns2=512:ms=16:mset=1:pi=2:pil=1,ns2size=64");
    }

    #[test]
    fn zoned_namespace_spec_carries_qemu_zone_properties() {
        let ns = Namespace::new(2, 4096).size_mib(32).zoned(1, 4, 6);
        assert_eq!(
            ns.spec(),
            "ns2=4096:zoned=true:zoned.zone_size=1M:zoned.max_open=4:zoned.max_active=6,ns2size=32"
        );
    }

    #[test]
    fn controllers_sit_at_consecutive_guest_pci_slots_from_four() {
        assert_eq!(Guest::bdf(0), "0000:00:04.0");
        assert_eq!(Guest::bdf(11), "0000:00:0f.0");
    }

    #[test]
    fn summary_names_failed_and_missing_checks() {
        let outcome = |name: &str, status| CheckOutcome {
            name: name.into(),
            status,
            elapsed: Duration::from_millis(1500),
            log: String::new(),
        };
        let report = CheckReport {
            status: 1,
            console: String::new(),
            elapsed: Duration::from_secs(10),
            checks: vec![
                outcome("a", Some(0)),
                outcome("b", Some(1)),
                outcome("c", None),
            ],
        };
        let s = report.summary();
        assert!(s.contains("pass"), "{s}");
        assert!(s.contains("FAIL (exit 1)"), "{s}");
        assert!(s.contains("did not run"), "{s}");
        assert!(report.get("a").is_some_and(CheckOutcome::passed));
        assert!(!report.get("c").is_some_and(CheckOutcome::passed));
    }

    /// Runs `script` in `sh` with the guest's shell helpers sourced and
    /// `NVME_VM_XFER` set to `xfer`; returns its standard output.
    fn guest_sh(xfer: &Path, script: &str) -> String {
        let lib = repo_root().join("tests/vm/guest/lib.sh");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(". '{}'; {script}", lib.display()))
            .env("NVME_VM_XFER", xfer)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    #[test]
    fn host_steal_is_the_share_of_host_cpu_time_between_two_readings() {
        let xfer = std::env::temp_dir().join(format!("nvme-e2e-steal-{}", std::process::id()));
        std::fs::create_dir_all(&xfer).unwrap();
        // user +50, system +10, idle +70, steal +10; guest +20 is already in user: 10 of 140.
        std::fs::write(xfer.join("host-cpu"), "cpu  150 0 60 870 10 0 0 50 20 0\n").unwrap();
        let out = guest_sh(
            &xfer,
            "after=$(host_cpu); host_steal 'cpu  100 0 50 800 10 0 0 40 0 0' \"$after\"",
        );
        assert_eq!(out, "7\n");
        // Without run-guest's readings the share is unknown, not zero.
        std::fs::remove_file(xfer.join("host-cpu")).unwrap();
        let out = guest_sh(
            &xfer,
            "host_steal \"$(host_cpu)\" 'cpu 1 0 1 1 0 0 0 0 0 0'",
        );
        assert_eq!(out, "-\n");
        std::fs::remove_dir_all(&xfer).unwrap();
    }
}
