//! nvme-setup: prepare a Linux host for user-space NVMe (bind to vfio-pci, reserve
//! hugepages) and diagnose what keeps a controller from opening.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use nvme_tools::cli;
use nvme_tools::setup::{self, hugepages, BindOptions, Host, PciAddress, SetupError, User};
use serde::Serialize;

const EXAMPLES: &str = "\
Examples:
  nvme-setup status                       controllers, drivers, IOMMU groups, hugepages
  sudo nvme-setup bind                    every NVMe controller not in use -> vfio-pci
  sudo nvme-setup bind 0000:01:00.0 --user alice
                                          one controller, /dev/vfio/<group> owned by alice
  sudo nvme-setup unbind 0000:01:00.0     back to the kernel nvme driver
  sudo nvme-setup hugepages --count 1024  1024 x 2M pages, hugetlbfs at /dev/hugepages
  sudo nvme-setup hugepages --count 4 --size 1G --node 1
  nvme-setup diagnose 0000:01:00.0        what keeps the controller from opening, with fixes
  nvme-setup --json status                machine-readable output

Exit status: 0 success, 1 failure (or a failed diagnose check), 2 bad usage (unknown
flag, malformed PCI address or page size).
Logging: RUST_LOG=debug nvme-setup ... (to stderr).";

/// Prepare a Linux host for user-space NVMe: bind controllers to vfio-pci, reserve
/// hugepages, and diagnose what keeps a controller from opening.
#[derive(Parser, Debug)]
#[command(name = "nvme-setup", version, after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Use DIR instead of /sys (a fake tree for testing; nothing reaches the kernel).
    #[arg(long, global = true, value_name = "DIR", default_value = "/sys")]
    sysfs: PathBuf,
    /// Use DIR instead of /proc (mounts, swaps, cmdline, self/limits, meminfo).
    #[arg(long, global = true, value_name = "DIR", default_value = "/proc")]
    proc: PathBuf,
    /// Use DIR instead of /dev (vfio nodes, hugetlbfs mount point).
    #[arg(long, global = true, value_name = "DIR", default_value = "/dev")]
    dev: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show NVMe controllers, drivers, IOMMU groups, use, hugepages, memlock, IOMMU, VFIO.
    Status,
    /// Bind NVMe controllers to vfio-pci (default: every controller not in use).
    Bind(BindArgs),
    /// Return NVMe controllers to the kernel nvme driver (default: all not on it).
    Unbind {
        /// PCI addresses (DDDD:BB:DD.F).
        addrs: Vec<String>,
    },
    /// Reserve hugepages and mount hugetlbfs if none is mounted.
    Hugepages(HugepageArgs),
    /// Check every precondition of opening a controller and print the fix for each failure.
    Diagnose {
        /// PCI address (default: every controller on vfio-pci).
        addr: Option<String>,
        /// The user who will run the application (default: the sudo caller, or you).
        #[arg(long, value_name = "NAME|UID")]
        user: Option<String>,
    },
}

#[derive(Args, Debug)]
struct BindArgs {
    /// PCI addresses (DDDD:BB:DD.F).
    addrs: Vec<String>,
    /// Bind even a controller with mounted filesystems, swap or holders.
    #[arg(long)]
    force: bool,
    /// Hand /dev/vfio/<group> to this user so the application can run unprivileged.
    #[arg(long, value_name = "NAME|UID")]
    user: Option<String>,
}

#[derive(Args, Debug)]
struct HugepageArgs {
    /// Number of pages to hold reserved (0 releases them).
    #[arg(long)]
    count: u64,
    /// Page size.
    #[arg(long, default_value = "2M", value_name = "2M|1G")]
    size: String,
    /// Reserve on this NUMA node only.
    #[arg(long, value_name = "N")]
    node: Option<u32>,
    /// Where to mount hugetlbfs if no mount of this page size exists.
    #[arg(long, value_name = "DIR")]
    mount: Option<PathBuf>,
}

fn addrs(list: &[String]) -> Result<Vec<PciAddress>, SetupError> {
    list.iter().map(|s| Ok(s.parse()?)).collect()
}

/// Prints the report; a closed pipe (`nvme-setup status | head`) ends output quietly.
fn emit<T: Serialize + std::fmt::Display>(json: bool, value: &T) -> Result<(), SetupError> {
    let text = if json {
        let mut s = serde_json::to_string_pretty(value).map_err(SetupError::Json)?;
        s.push('\n');
        s
    } else {
        value.to_string()
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(SetupError::Write {
            path: PathBuf::from("<stdout>"),
            value: String::new(),
            source: e,
        }),
        _ => Ok(()),
    }
}

impl std::fmt::Display for ReservationView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        let place = r.node.map(|n| format!(" on node {n}")).unwrap_or_default();
        writeln!(
            f,
            "{} hugepages{place}: {} reserved (was {}, asked {})",
            hugepages::size_label(r.size_kib),
            r.given,
            r.previous,
            r.requested
        )?;
        match &r.mount {
            setup::MountOutcome::AlreadyMounted { path } => {
                writeln!(f, "hugetlbfs already mounted at {}", path.display())?
            }
            setup::MountOutcome::Mounted { path } => {
                writeln!(f, "mounted hugetlbfs at {}", path.display())?
            }
            setup::MountOutcome::Skipped { path } => {
                writeln!(f, "hugetlbfs not mounted at {} (fake tree)", path.display())?
            }
            setup::MountOutcome::NotNeeded => {}
        }
        for a in &r.actions {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct ReservationView<'a>(&'a setup::Reservation);

/// Runs the command; `Ok(false)` means it ran but found a problem (diagnose).
fn run(cli: Cli) -> Result<bool, SetupError> {
    let host = Host {
        sys: setup::SysfsRoot::new(cli.sysfs),
        proc: setup::ProcRoot::new(cli.proc),
        dev: cli.dev,
    };
    match cli.command {
        Cmd::Status => emit(cli.json, &setup::Status::read(&host)?)?,
        Cmd::Bind(a) => {
            let targets = addrs(&a.addrs)?;
            let user = a.user.as_deref().map(User::lookup).transpose()?;
            let opts = BindOptions {
                force: a.force,
                user,
            };
            emit(cli.json, &setup::bind(&host, &targets, &opts)?)?;
        }
        Cmd::Unbind { addrs: list } => emit(cli.json, &setup::unbind(&host, &addrs(&list)?)?)?,
        Cmd::Hugepages(a) => {
            let size = hugepages::parse_size(&host, &a.size)?;
            let r = hugepages::reserve(&host, a.count, size, a.node, a.mount.as_deref())?;
            emit(cli.json, &ReservationView(&r))?;
        }
        Cmd::Diagnose { addr, user } => {
            let addr = addr.as_deref().map(str::parse).transpose()?;
            let user = match user {
                Some(u) => User::lookup(&u)?,
                None => User::invoking()?,
            };
            let d = setup::diagnose(&host, addr, &user)?;
            emit(cli.json, &d)?;
            return Ok(d.ok);
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_args("nvme-setup");
    nvme_tools::init_logging();
    let json = cli.json;
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(cli::EXIT_FAILURE),
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("nvme-setup: error: {e}");
            match e {
                SetupError::BadPciAddress(_) | SetupError::BadHugepageSize { .. } => {
                    ExitCode::from(cli::EXIT_USAGE)
                }
                _ => ExitCode::from(cli::EXIT_FAILURE),
            }
        }
    }
}
