//! `nvme-setup diagnose`: every precondition of opening a controller through VFIO,
//! each failure with the exact command or setting that fixes it.

use std::fmt;

use serde::Serialize;

use super::bind::VFIO_DRIVER;
use super::hugepages::pools;
use super::iommu::{has_ipc_lock, memlock, IommuState, Node, VfioState};
use super::usage::uses;
use super::users::User;
use super::{Host, PciAddress, PciDevice, SetupError};

/// The fix for an inactive IOMMU.
pub const IOMMU_FIX: &str =
    "add intel_iommu=on (Intel) or amd_iommu=on (AMD) to the kernel command line and reboot";

/// One precondition and its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Short stable name (`iommu`, `vfio-driver`, `bound`, ...).
    pub name: &'static str,
    /// The device checked, for per-device checks.
    #[serde(serialize_with = "super::serialize_display_opt")]
    pub device: Option<PciAddress>,
    /// Whether it holds.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it fails.
    pub fix: Option<String>,
}

/// All checks of one `diagnose` run.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    /// True when every check passed.
    pub ok: bool,
    /// The checks in the order a user should fix them.
    pub checks: Vec<Check>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let who = c.device.map(|d| format!("{d} ")).unwrap_or_default();
            let mark = if c.ok { "ok  " } else { "FAIL" };
            writeln!(f, "{mark} {}{}: {}", who, c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "     fix: {fix}")?;
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            writeln!(f, "all {} checks passed", self.checks.len())
        } else {
            writeln!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, name: &'static str, device: Option<PciAddress>, detail: String) {
        self.0.push(Check {
            name,
            device,
            ok: true,
            detail,
            fix: None,
        });
    }

    fn fail(
        &mut self,
        name: &'static str,
        device: Option<PciAddress>,
        detail: String,
        fix: String,
    ) {
        self.0.push(Check {
            name,
            device,
            ok: false,
            detail,
            fix: Some(fix),
        });
    }
}

fn platform(host: &Host, user: &User, checks: &mut Checks) -> Result<(), SetupError> {
    let iommu = IommuState::read(host)?;
    if iommu.active {
        checks.pass(
            "iommu",
            None,
            format!(
                "IOMMU active ({} group{})",
                iommu.groups,
                if iommu.groups == 1 { "" } else { "s" }
            ),
        );
    } else if iommu.requested_on_cmdline() {
        checks.fail(
            "iommu",
            None,
            format!(
                "no IOMMU although the kernel command line has {}",
                iommu.cmdline.join(" ")
            ),
            "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup and reboot".into(),
        );
    } else {
        checks.fail(
            "iommu",
            None,
            "no IOMMU: /sys/class/iommu and /sys/kernel/iommu_groups are empty".into(),
            IOMMU_FIX.into(),
        );
    }
    let vfio = VfioState::read(host)?;
    if vfio.driver_loaded {
        checks.pass("vfio-driver", None, "vfio-pci driver loaded".into());
    } else {
        checks.fail(
            "vfio-driver",
            None,
            "vfio-pci driver not loaded (no /sys/bus/pci/drivers/vfio-pci)".into(),
            "sudo modprobe vfio-pci (nvme-setup bind also loads it)".into(),
        );
    }
    let container = host.dev_path("vfio/vfio");
    if let Some(node) = &vfio.container {
        if user.can_open(node) {
            checks.pass(
                "vfio-dev",
                None,
                format!("{node} opens for user {}", user.label()),
            );
        } else {
            checks.fail(
                "vfio-dev",
                None,
                format!("{node} does not open read-write for user {}", user.label()),
                format!(
                    "sudo chmod 0666 {} (the kernel's default)",
                    container.display()
                ),
            );
        }
    } else {
        checks.fail(
            "vfio-dev",
            None,
            format!("{} missing", container.display()),
            "sudo modprobe vfio-pci (it creates /dev/vfio/vfio)".into(),
        );
    }
    Ok(())
}

fn memory(host: &Host, user: &User, checks: &mut Checks) -> Result<(), SetupError> {
    let pools = pools(host)?;
    let free: u64 = pools.iter().map(|p| p.free).sum();
    let reserved: u64 = pools.iter().map(|p| p.total_bytes()).sum();
    if free > 0 {
        let detail = pools
            .iter()
            .filter(|p| p.total > 0)
            .map(|p| {
                format!(
                    "{} of {} {} hugepages free",
                    p.free,
                    p.total,
                    super::hugepages::size_label(p.size_kib)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        checks.pass("hugepages", None, detail);
    } else {
        let detail = if reserved == 0 {
            "no hugepages reserved".to_string()
        } else {
            "all reserved hugepages are in use".to_string()
        };
        checks.fail(
            "hugepages",
            None,
            detail,
            "sudo nvme-setup hugepages --count 64".into(),
        );
    }
    // VFIO does not charge pinned pages to a process with CAP_IPC_LOCK.
    let exempt = has_ipc_lock(host)? == Some(true);
    match memlock(host)? {
        _ if exempt => checks.pass(
            "memlock",
            None,
            "this process has CAP_IPC_LOCK (CapEff bit 14 in /proc/self/status), so the \
             locked-memory limit does not apply"
                .into(),
        ),
        _ if user.uid == 0 => checks.pass(
            "memlock",
            None,
            "root has CAP_IPC_LOCK, so the locked-memory limit does not apply".into(),
        ),
        Some(limit) if limit.allows(reserved) => checks.pass(
            "memlock",
            None,
            format!(
                "this process's locked-memory limit {limit} covers the {} KiB of hugepages \
                 reserved",
                reserved / 1024
            ),
        ),
        Some(limit) => {
            let need = reserved.div_ceil(1024);
            checks.fail(
                "memlock",
                None,
                format!(
                    "this process's locked-memory limit {limit} is below the {need} KiB of \
                     hugepages reserved (VFIO pins DMA memory against it)"
                ),
                format!(
                    "raise it to at least {need} KiB: `ulimit -l unlimited` (or `ulimit -l \
                     {need}`) in the shell that starts the application, or add `<user> - \
                     memlock unlimited` to /etc/security/limits.conf and log in again"
                ),
            )
        }
        None => checks.pass(
            "memlock",
            None,
            "locked-memory limit not reported by /proc/self/limits".into(),
        ),
    }
    Ok(())
}

fn device(
    host: &Host,
    dev: &PciDevice,
    user: &User,
    checks: &mut Checks,
) -> Result<(), SetupError> {
    let a = Some(dev.addr);
    if !dev.is_nvme() {
        checks.fail(
            "nvme",
            a,
            format!(
                "class {:#08x} is not an NVMe controller (0x010802)",
                dev.class
            ),
            "name an NVMe controller; `nvme-setup status` lists them".into(),
        );
        return Ok(());
    }
    if dev.on_vfio() {
        checks.pass("bound", a, format!("bound to {VFIO_DRIVER}"));
    } else {
        let busy = uses(host, dev.addr)?;
        let now = dev.driver.as_deref().unwrap_or("no driver");
        let fix = if busy.is_empty() {
            format!("sudo nvme-setup bind {}", dev.addr)
        } else {
            let list = busy
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "it is in use ({list}): stop using it, then sudo nvme-setup bind {}",
                dev.addr
            )
        };
        checks.fail(
            "bound",
            a,
            format!("bound to {now}, not {VFIO_DRIVER}"),
            fix,
        );
    }
    let Some(group) = dev.iommu_group else {
        checks.fail("iommu-group", a, "no IOMMU group".into(), IOMMU_FIX.into());
        return Ok(());
    };
    let peers = host.sys.group_peers(dev)?;
    let blockers: Vec<&PciDevice> = peers.iter().filter(|p| !p.group_friendly()).collect();
    if blockers.is_empty() {
        let with = if peers.is_empty() {
            "alone".to_string()
        } else {
            format!(
                "with {}",
                peers
                    .iter()
                    .map(PciDevice::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        checks.pass(
            "group-viable",
            a,
            format!("IOMMU group {group} viable ({with})"),
        );
    } else {
        let names: Vec<String> = blockers.iter().map(|p| p.describe()).collect();
        let cmds: Vec<String> = blockers
            .iter()
            .map(|p| format!("echo {0} > /sys/bus/pci/devices/{0}/driver/unbind", p.addr))
            .collect();
        checks.fail(
            "group-viable",
            a,
            format!("IOMMU group {group} not viable: {}", names.join(", ")),
            format!(
                "release them from their drivers ({}) or move the controller to a slot with its \
                 own IOMMU group",
                cmds.join("; ")
            ),
        );
    }
    let path = host.dev_path(format!("vfio/{group}"));
    match Node::stat(&path) {
        None => checks.fail(
            "group-node",
            a,
            format!("{} missing", path.display()),
            format!(
                "sudo nvme-setup bind {} (the node appears once it is bound)",
                dev.addr
            ),
        ),
        Some(node) if user.can_open(&node) => checks.pass(
            "group-node",
            a,
            format!("{node} opens for user {}", user.label()),
        ),
        Some(node) => checks.fail(
            "group-node",
            a,
            format!("{node} does not open read-write for user {}", user.label()),
            format!(
                "sudo nvme-setup bind {} --user {} (or sudo chown {} {})",
                dev.addr,
                user.label(),
                user.label(),
                path.display()
            ),
        ),
    }
    Ok(())
}

/// Checks the platform, memory and the controller at `addr` (or every controller on
/// vfio-pci) for `user`, the user who will open the device.
pub fn diagnose(
    host: &Host,
    addr: Option<PciAddress>,
    user: &User,
) -> Result<Diagnosis, SetupError> {
    let mut checks = Checks(Vec::new());
    platform(host, user, &mut checks)?;
    match addr {
        Some(addr) => {
            let dev = host.sys.pci_device(addr)?;
            device(host, &dev, user, &mut checks)?;
        }
        None => {
            let all = host.sys.nvme_controllers()?;
            let mine: Vec<&PciDevice> = all.iter().filter(|d| d.on_vfio()).collect();
            if all.is_empty() {
                checks.fail(
                    "controller",
                    None,
                    "no NVMe controller found".into(),
                    "check that the SSD is seated and visible in lspci".into(),
                );
            } else if mine.is_empty() {
                let names: Vec<String> = all.iter().map(|d| d.addr.to_string()).collect();
                checks.fail(
                    "controller",
                    None,
                    format!(
                        "no NVMe controller on {VFIO_DRIVER} (found {})",
                        names.join(", ")
                    ),
                    format!("sudo nvme-setup bind {}", names[0]),
                );
            }
            for dev in mine {
                device(host, dev, user, &mut checks)?;
            }
        }
    }
    memory(host, user, &mut checks)?;
    let ok = checks.0.iter().all(|c| c.ok);
    Ok(Diagnosis {
        ok,
        checks: checks.0,
    })
}
