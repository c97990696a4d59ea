//! `bind` to vfio-pci and `unbind` back to nvme, the way SPDK's setup.sh does it:
//! `driver_override`, unbind from the current driver, then `drivers_probe`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::iommu::Node;
use super::usage::uses;
use super::users::User;
use super::{run_command, Action, Host, PciAddress, PciDevice, SetupError};

/// The driver user-space I/O needs.
pub const VFIO_DRIVER: &str = "vfio-pci";
/// The kernel's NVMe driver.
pub const KERNEL_DRIVER: &str = "nvme";

/// How long to wait for udev/devtmpfs to create `/dev/vfio/<group>` after binding.
const NODE_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the driver link to change after `drivers_probe`.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Options of `nvme-setup bind`.
#[derive(Clone, Debug, Default)]
pub struct BindOptions {
    /// Take controllers even when they are in use.
    pub force: bool,
    /// Hand `/dev/vfio/<group>` to this user.
    pub user: Option<User>,
}

/// What `bind` or `unbind` did with one controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindResult {
    /// The kernel attached the wanted driver.
    Bound,
    /// It was on the wanted driver already; nothing written.
    Already,
    /// Fake tree: the sysfs writes were made, the kernel's response cannot be observed.
    Written,
    /// Left alone (see the reason).
    Skipped,
}

/// What happened to one controller.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The controller.
    #[serde(serialize_with = "super::serialize_display")]
    pub addr: PciAddress,
    /// Its driver before.
    pub from: Option<String>,
    /// The driver it was moved to.
    pub to: String,
    /// The result.
    pub result: BindResult,
    /// Why it was skipped.
    pub reason: Option<String>,
}

/// The report of `bind` or `unbind`.
#[derive(Clone, Debug, Serialize)]
pub struct BindReport {
    /// Per-controller results.
    pub devices: Vec<Outcome>,
    /// Every write and command, in order.
    pub actions: Vec<Action>,
}

impl fmt::Display for BindReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.devices {
            let from = d.from.as_deref().unwrap_or("no driver");
            match d.result {
                BindResult::Bound => writeln!(f, "{}: {from} -> {}", d.addr, d.to)?,
                BindResult::Already => writeln!(f, "{}: already on {}", d.addr, d.to)?,
                BindResult::Written => writeln!(
                    f,
                    "{}: {from} -> {} (sysfs written; fake tree, kernel response not checked)",
                    d.addr, d.to
                )?,
                BindResult::Skipped => writeln!(
                    f,
                    "{}: skipped: {}",
                    d.addr,
                    d.reason.as_deref().unwrap_or("")
                )?,
            }
        }
        for a in &self.actions {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}

/// Looks up the explicitly named controllers, refusing unknown and non-NVMe devices.
fn named(host: &Host, addrs: &[PciAddress]) -> Result<Vec<PciDevice>, SetupError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &addr in addrs {
        if !seen.insert(addr) {
            continue;
        }
        let dev = host.sys.pci_device(addr)?;
        if !dev.is_nvme() {
            return Err(SetupError::NotNvme {
                addr,
                class: dev.class,
            });
        }
        out.push(dev);
    }
    Ok(out)
}

/// The peers that keep `dev`'s group from becoming viable once `targets` are on vfio-pci.
fn blockers(
    host: &Host,
    dev: &PciDevice,
    targets: &BTreeSet<PciAddress>,
) -> Result<Vec<PciDevice>, SetupError> {
    Ok(host
        .sys
        .group_peers(dev)?
        .into_iter()
        .filter(|p| !targets.contains(&p.addr) && !p.group_friendly())
        .collect())
}

fn ensure_driver(host: &Host, driver: &str, actions: &mut Vec<Action>) -> Result<(), SetupError> {
    if host.sys.driver_loaded(driver) {
        return Ok(());
    }
    if !host.is_live() {
        actions.push(Action::Skipped {
            what: format!("modprobe {driver}"),
            why: "fake sysfs tree".into(),
        });
        return Ok(());
    }
    run_command(Command::new("modprobe").arg(driver), actions)?;
    if !host.sys.driver_loaded(driver) {
        return Err(SetupError::DriverMissing {
            driver: driver.into(),
            path: host.sys.path(format!("bus/pci/drivers/{driver}")),
        });
    }
    Ok(())
}

/// Moves `dev` to `driver` (`None`: clear the override and let the kernel pick).
fn rebind(
    host: &Host,
    dev: &PciDevice,
    driver: Option<&str>,
    wanted: &str,
    actions: &mut Vec<Action>,
) -> Result<BindResult, SetupError> {
    let dir = format!("bus/pci/devices/{}", dev.addr);
    let addr_line = format!("{}\n", dev.addr);
    host.sys.write(
        format!("{dir}/driver_override"),
        &format!("{}\n", driver.unwrap_or("")),
        actions,
    )?;
    if let Some(current) = &dev.driver {
        host.sys.write(
            format!("bus/pci/drivers/{current}/unbind"),
            &addr_line,
            actions,
        )?;
    }
    host.sys
        .write("bus/pci/drivers_probe", &addr_line, actions)?;
    if !host.is_live() {
        return Ok(BindResult::Written);
    }
    // drivers_probe attaches synchronously, but give a slow probe a moment anyway.
    let deadline = Instant::now() + PROBE_WAIT;
    let mut now = host.sys.link_name(format!("{dir}/driver"))?;
    while now.as_deref() != Some(wanted) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = host.sys.link_name(format!("{dir}/driver"))?;
    }
    if now.as_deref() != Some(wanted) {
        return Err(SetupError::BindFailed {
            addr: dev.addr,
            wanted: wanted.into(),
            actual: now.unwrap_or_else(|| "no driver".into()),
        });
    }
    Ok(BindResult::Bound)
}

fn wait_for_node(host: &Host, group: u32) -> Option<Node> {
    let path = host.dev_path(format!("vfio/{group}"));
    let deadline = Instant::now()
        + if host.is_live() {
            NODE_WAIT
        } else {
            Duration::ZERO
        };
    loop {
        if let Some(n) = Node::stat(&path) {
            return Some(n);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Binds NVMe controllers to vfio-pci: the named ones, or every controller not in use.
///
/// Refuses (before writing anything) a named controller that is in use unless
/// `opts.force`, one without an IOMMU group, and one whose IOMMU group holds a device
/// on a driver that keeps the group from becoming viable.
pub fn bind(
    host: &Host,
    addrs: &[PciAddress],
    opts: &BindOptions,
) -> Result<BindReport, SetupError> {
    let explicit = !addrs.is_empty();
    let candidates = if explicit {
        named(host, addrs)?
    } else {
        host.sys.nvme_controllers()?
    };
    if candidates.is_empty() {
        return Err(SetupError::NothingToDo(
            "no NVMe controllers found (no device of class 0x010802 in /sys/bus/pci/devices)"
                .into(),
        ));
    }
    let mut devices = Vec::new();
    let mut targets = Vec::new();
    for dev in candidates {
        let busy = if dev.on_vfio() {
            Vec::new()
        } else {
            uses(host, dev.addr)?
        };
        let refusal = if busy.is_empty() || opts.force {
            None
        } else {
            let list = busy
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if explicit {
                return Err(SetupError::InUse {
                    addr: dev.addr,
                    uses: list,
                });
            }
            Some(format!(
                "in use ({list}); name it and pass --force to take it"
            ))
        };
        match refusal {
            Some(reason) => devices.push(Outcome {
                addr: dev.addr,
                from: dev.driver.clone(),
                to: VFIO_DRIVER.into(),
                result: BindResult::Skipped,
                reason: Some(reason),
            }),
            None => targets.push(dev),
        }
    }
    let target_set: BTreeSet<PciAddress> = targets.iter().map(|d| d.addr).collect();
    for dev in &targets {
        let Some(group) = dev.iommu_group else {
            return Err(SetupError::NoIommuGroup { addr: dev.addr });
        };
        let b = blockers(host, dev, &target_set)?;
        if !b.is_empty() {
            return Err(SetupError::GroupNotViable {
                addr: dev.addr,
                group,
                blockers: b
                    .iter()
                    .map(PciDevice::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if targets.is_empty() {
        let reasons: Vec<String> = devices
            .iter()
            .map(|d| format!("{}: {}", d.addr, d.reason.as_deref().unwrap_or("")))
            .collect();
        return Err(SetupError::NothingToDo(format!(
            "no NVMe controller can be bound: {}",
            reasons.join("; ")
        )));
    }
    host.require_root(&host.sys.path("bus/pci/drivers_probe"))?;
    let mut actions = Vec::new();
    ensure_driver(host, VFIO_DRIVER, &mut actions)?;
    for dev in &targets {
        let result = if dev.on_vfio() {
            BindResult::Already
        } else {
            rebind(host, dev, Some(VFIO_DRIVER), VFIO_DRIVER, &mut actions)?
        };
        devices.push(Outcome {
            addr: dev.addr,
            from: dev.driver.clone(),
            to: VFIO_DRIVER.into(),
            result,
            reason: None,
        });
    }
    if let Some(user) = &opts.user {
        let groups: BTreeSet<(u32, PciAddress)> = targets
            .iter()
            .filter_map(|d| Some((d.iommu_group?, d.addr)))
            .collect();
        let mut done = BTreeSet::new();
        for (group, addr) in groups {
            if !done.insert(group) {
                continue;
            }
            let path = host.dev_path(format!("vfio/{group}"));
            if wait_for_node(host, group).is_none() {
                return Err(SetupError::GroupNodeMissing { path, addr });
            }
            chown(&path, user, &mut actions)?;
        }
    }
    devices.sort_by_key(|d| d.addr);
    Ok(BindReport { devices, actions })
}

fn chown(path: &std::path::Path, user: &User, actions: &mut Vec<Action>) -> Result<(), SetupError> {
    std::os::unix::fs::chown(path, Some(user.uid), user.gid).map_err(|source| {
        SetupError::Chown {
            path: path.to_path_buf(),
            uid: user.uid,
            source,
        }
    })?;
    actions.push(Action::Chown {
        path: PathBuf::from(path),
        uid: user.uid,
        gid: user.gid,
    });
    Ok(())
}

/// Returns NVMe controllers to the kernel's nvme driver: the named ones, or every
/// controller on vfio-pci (or left without a driver).
pub fn unbind(host: &Host, addrs: &[PciAddress]) -> Result<BindReport, SetupError> {
    let targets: Vec<PciDevice> = if addrs.is_empty() {
        host.sys
            .nvme_controllers()?
            .into_iter()
            .filter(|d| d.driver.as_deref() != Some(KERNEL_DRIVER))
            .collect()
    } else {
        named(host, addrs)?
    };
    if targets.is_empty() {
        return Err(SetupError::NothingToDo(
            "no NVMe controller to return to the nvme driver: all are on it already".into(),
        ));
    }
    host.require_root(&host.sys.path("bus/pci/drivers_probe"))?;
    let mut actions = Vec::new();
    ensure_driver(host, KERNEL_DRIVER, &mut actions)?;
    let mut devices = Vec::new();
    for dev in &targets {
        let result =
            if dev.driver.as_deref() == Some(KERNEL_DRIVER) && dev.driver_override.is_none() {
                BindResult::Already
            } else {
                rebind(host, dev, None, KERNEL_DRIVER, &mut actions)?
            };
        devices.push(Outcome {
            addr: dev.addr,
            from: dev.driver.clone(),
            to: KERNEL_DRIVER.into(),
            result,
            reason: None,
        });
    }
    Ok(BindReport { devices, actions })
}
