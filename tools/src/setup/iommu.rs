//! Platform state that VFIO needs: an active IOMMU, the vfio-pci driver, the VFIO
//! device nodes, and a locked-memory limit large enough to pin DMA memory.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::{Host, SetupError};

/// Whether the IOMMU is on, and what says so.
#[derive(Clone, Debug, Serialize)]
pub struct IommuState {
    /// IOMMU units registered with the kernel and groups exist.
    pub active: bool,
    /// Entries of `/sys/class/iommu` (`dmar0`, `ivhd0`).
    pub units: Vec<String>,
    /// Number of `/sys/kernel/iommu_groups`.
    pub groups: usize,
    /// IOMMU switches on the kernel command line (`intel_iommu=on`, `iommu=pt`).
    pub cmdline: Vec<String>,
}

impl IommuState {
    /// Reads the IOMMU state.
    pub fn read(host: &Host) -> Result<Self, SetupError> {
        let units = host.sys.list("class/iommu")?;
        let groups = host.sys.list("kernel/iommu_groups")?.len();
        let cmdline = host
            .proc
            .read("cmdline")?
            .unwrap_or_default()
            .split_whitespace()
            .filter(|w| {
                w.starts_with("intel_iommu=")
                    || w.starts_with("amd_iommu")
                    || w.starts_with("iommu=")
            })
            .map(str::to_string)
            .collect();
        Ok(IommuState {
            active: !units.is_empty() || groups > 0,
            units,
            groups,
            cmdline,
        })
    }

    /// Whether the command line asks for an IOMMU (so an inactive one is a firmware matter).
    pub fn requested_on_cmdline(&self) -> bool {
        self.cmdline
            .iter()
            .any(|w| w == "intel_iommu=on" || (w.starts_with("amd_iommu") && w != "amd_iommu=off"))
    }
}

/// Ownership and mode of a device node.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// The node.
    pub path: PathBuf,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits, e.g. `0o600`.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:04o}"))
}

impl Node {
    /// The node at `path`, or `None` if it does not exist.
    pub fn stat(path: &Path) -> Option<Node> {
        let md = std::fs::metadata(path).ok()?;
        Some(Node {
            path: path.to_path_buf(),
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o7777,
        })
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (mode {:04o}, uid {}, gid {})",
            self.path.display(),
            self.mode,
            self.uid,
            self.gid
        )
    }
}

/// The VFIO side: driver, container node and group nodes.
#[derive(Clone, Debug, Serialize)]
pub struct VfioState {
    /// `vfio-pci` is registered as a PCI driver.
    pub driver_loaded: bool,
    /// `/dev/vfio/vfio`, the container node.
    pub container: Option<Node>,
    /// `/dev/vfio/<group>` nodes.
    pub groups: Vec<Node>,
    /// VFIO's unsafe no-IOMMU mode is enabled.
    pub noiommu: bool,
}

impl VfioState {
    /// Reads the VFIO state.
    pub fn read(host: &Host) -> Result<Self, SetupError> {
        let dir = host.dev_path("vfio");
        let mut groups = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "vfio")
                .collect();
            names.sort();
            groups = names
                .iter()
                .filter_map(|n| Node::stat(&dir.join(n)))
                .collect();
        }
        let noiommu = host
            .sys
            .read("module/vfio/parameters/enable_unsafe_noiommu_mode")?
            .is_some_and(|v| v == "Y");
        Ok(VfioState {
            driver_loaded: host.sys.driver_loaded("vfio-pci"),
            container: Node::stat(&dir.join("vfio")),
            groups,
            noiommu,
        })
    }
}

/// A resource limit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// At most this many bytes.
    Bytes(u64),
}

impl Limit {
    /// Whether `bytes` fit under the limit.
    pub fn allows(self, bytes: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Bytes(b) => bytes <= b,
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Unlimited => s.serialize_str("unlimited"),
            Limit::Bytes(b) => s.serialize_u64(*b),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(b) => write!(f, "{} KiB", b / 1024),
        }
    }
}

/// `CAP_IPC_LOCK`'s bit in the capability sets of `/proc/<pid>/status` (linux/capability.h).
pub const CAP_IPC_LOCK: u32 = 14;

/// Whether this process has `CAP_IPC_LOCK` in its effective set (`CapEff` of
/// `self/status`), which exempts it from `RLIMIT_MEMLOCK`; `None` when `/proc` does not say.
pub fn has_ipc_lock(host: &Host) -> Result<Option<bool>, SetupError> {
    let Some(text) = host.proc.read("self/status")? else {
        return Ok(None);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("CapEff:")) else {
        return Ok(None);
    };
    let hex = line["CapEff:".len()..].trim();
    u64::from_str_radix(hex, 16)
        .map(|caps| Some((caps >> CAP_IPC_LOCK) & 1 == 1))
        .map_err(|_| SetupError::Parse {
            path: host.proc.path("self/status"),
            content: line.to_string(),
            expected: "CapEff: <hexadecimal capability mask>",
        })
}

/// The soft `RLIMIT_MEMLOCK` of this process, from `self/limits`; VFIO charges every
/// pinned DMA page against it (unless the process has `CAP_IPC_LOCK`).
pub fn memlock(host: &Host) -> Result<Option<Limit>, SetupError> {
    let path = host.proc.path("self/limits");
    let Some(text) = host.proc.read("self/limits")? else {
        return Ok(None);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("Max locked memory")) else {
        return Ok(None);
    };
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    match soft {
        "unlimited" => Ok(Some(Limit::Unlimited)),
        n => n
            .parse()
            .map(|b| Some(Limit::Bytes(b)))
            .map_err(|_| SetupError::Parse {
                path,
                content: line.to_string(),
                expected: "Max locked memory <soft> <hard> bytes",
            }),
    }
}
