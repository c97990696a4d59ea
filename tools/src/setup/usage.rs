//! Whether the kernel is using a controller: mounted filesystems, swap, and block
//! devices stacked on top (device-mapper, md) on its namespaces and partitions.

use std::path::Path;

use hugepages::unescape_mount_field as unescape;

use serde::Serialize;

use super::{Host, PciAddress, ProcRoot, SetupError, SysfsRoot};

/// One mounted filesystem from `/proc/self/mountinfo` or `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mounted device or pseudo-source (`/dev/nvme0n1p1`, `nodev`).
    pub source: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type.
    pub fstype: String,
    /// `major:minor` of the backing device (mountinfo only).
    pub dev: Option<String>,
    /// Mount options and superblock options, comma-separated.
    pub options: String,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 6 || r.len() < 2 {
                return None;
            }
            Some(Mount {
                source: unescape(r[1]),
                mount_point: unescape(l[4]),
                fstype: r[0].to_string(),
                dev: Some(l[2].to_string()),
                options: format!("{},{}", l[5], r.get(2).unwrap_or(&"")),
            })
        })
        .collect()
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(Mount {
                source: unescape(f[0]),
                mount_point: unescape(f[1]),
                fstype: f[2].to_string(),
                dev: None,
                options: f[3].to_string(),
            })
        })
        .collect()
}

impl ProcRoot {
    /// The mount table: `self/mountinfo` if present, else `mounts`.
    pub fn mounts(&self) -> Result<Vec<Mount>, SetupError> {
        if let Some(text) = self.read("self/mountinfo")? {
            return Ok(parse_mountinfo(&text));
        }
        Ok(self
            .read("mounts")?
            .map(|t| parse_mounts(&t))
            .unwrap_or_default())
    }

    /// The active swap devices and files from `swaps`.
    pub fn swaps(&self) -> Result<Vec<String>, SetupError> {
        let text = self.read("swaps")?.unwrap_or_default();
        Ok(text
            .lines()
            .skip(1) // header: Filename Type Size Used Priority
            .filter_map(|l| l.split_whitespace().next().map(unescape))
            .collect())
    }
}

/// Something that makes a controller busy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Use {
    /// A namespace or partition holds a mounted filesystem.
    Mounted {
        /// The block device (`nvme0n1p1`).
        device: String,
        /// Where it is mounted.
        mount_point: String,
    },
    /// A namespace or partition is active swap.
    Swap {
        /// The block device.
        device: String,
    },
    /// A namespace or partition is open exclusively (ZFS, a VM, a raw-device database).
    Busy {
        /// The block device.
        device: String,
    },
    /// A block device is stacked on a namespace or partition (dm, md, bcache).
    Holder {
        /// The block device held.
        device: String,
        /// The holder (`dm-0`).
        holder: String,
    },
}

/// Whether block device node `node` is held open exclusively by someone (the kernel
/// answers an `O_EXCL` open of a block device with `EBUSY` then). Not a block device
/// (a fake tree) or not openable: `false`.
fn exclusively_open(node: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let is_block = std::fs::metadata(node).is_ok_and(|m| m.file_type().is_block_device());
    if !is_block {
        return false;
    }
    let open = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::EXCL.bits() as i32)
        .open(node);
    matches!(open, Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()))
}

impl std::fmt::Display for Use {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Use::Mounted {
                device,
                mount_point,
            } => write!(f, "{device} mounted on {mount_point}"),
            Use::Swap { device } => write!(f, "{device} is swap"),
            Use::Holder { device, holder } => write!(f, "{device} held by {holder}"),
            Use::Busy { device } => write!(f, "{device} is open exclusively"),
        }
    }
}

/// A namespace block device or one of its partitions.
#[derive(Clone, Debug)]
struct BlockDev {
    name: String,
    /// `block/<disk>` or `block/<disk>/<partition>`.
    rel: String,
    /// `major:minor`.
    dev: Option<String>,
}

fn path_mentions(path: &Path, addr: &str) -> bool {
    path.components().any(|c| c.as_os_str() == addr)
}

/// The disks in `block/` that belong to the controller at `addr`: the disk's own path, its
/// `device` link, or (native multipath) one of its `multipath/` paths lies under `addr`.
fn disks_of(sys: &SysfsRoot, addr: PciAddress) -> Result<Vec<String>, SetupError> {
    let a = addr.to_string();
    let mut out = Vec::new();
    for disk in sys.list("block")? {
        let base = format!("block/{disk}");
        let mut mine = [base.clone(), format!("{base}/device")]
            .iter()
            .filter_map(|rel| sys.canonical(rel))
            .any(|p| path_mentions(&p, &a));
        if !mine {
            mine = sys
                .list(format!("{base}/multipath"))?
                .iter()
                .filter_map(|p| sys.canonical(format!("{base}/multipath/{p}")))
                .any(|p| path_mentions(&p, &a));
        }
        if mine {
            out.push(disk);
        }
    }
    Ok(out)
}

fn block_devs(sys: &SysfsRoot, addr: PciAddress) -> Result<Vec<BlockDev>, SetupError> {
    let mut out = Vec::new();
    for disk in disks_of(sys, addr)? {
        let rel = format!("block/{disk}");
        out.push(BlockDev {
            name: disk.clone(),
            dev: sys.read(format!("{rel}/dev"))?,
            rel: rel.clone(),
        });
        for part in sys.list(&rel)? {
            let prel = format!("{rel}/{part}");
            if sys.exists(format!("{prel}/partition")) {
                out.push(BlockDev {
                    name: part,
                    dev: sys.read(format!("{prel}/dev"))?,
                    rel: prel,
                });
            }
        }
    }
    Ok(out)
}

/// The block devices (namespaces and partitions) the kernel exposes for `addr`.
pub fn block_device_names(sys: &SysfsRoot, addr: PciAddress) -> Result<Vec<String>, SetupError> {
    Ok(block_devs(sys, addr)?.into_iter().map(|b| b.name).collect())
}

/// Everything that uses the controller at `addr`; empty when it is free to take.
pub fn uses(host: &Host, addr: PciAddress) -> Result<Vec<Use>, SetupError> {
    let devs = block_devs(&host.sys, addr)?;
    if devs.is_empty() {
        return Ok(Vec::new());
    }
    let mounts = host.proc.mounts()?;
    let swaps = host.proc.swaps()?;
    let mut out = Vec::new();
    for b in &devs {
        let node = format!("/dev/{}", b.name);
        for m in &mounts {
            let same_dev = b.dev.is_some() && m.dev == b.dev;
            if same_dev || m.source == node {
                out.push(Use::Mounted {
                    device: b.name.clone(),
                    mount_point: m.mount_point.clone(),
                });
            }
        }
        if swaps.contains(&node) {
            out.push(Use::Swap {
                device: b.name.clone(),
            });
        }
        for holder in host.sys.list(format!("{}/holders", b.rel))? {
            out.push(Use::Holder {
                device: b.name.clone(),
                holder,
            });
        }
    }
    if out.is_empty() {
        // Users the tables above miss (a ZFS pool, a VM, mdadm without holders yet) still
        // hold the disk open exclusively; an O_EXCL open of the node finds them.
        for b in &devs {
            if exclusively_open(&host.dev_path(&b.name)) {
                out.push(Use::Busy {
                    device: b.name.clone(),
                });
            }
        }
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_device_numbers_and_unescaped_paths() {
        let text = "36 35 259:1 / /mnt/my\\040disk rw,noatime shared:1 - ext4 /dev/nvme0n1p1 rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].dev.as_deref(), Some("259:1"));
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert_eq!(m[0].source, "/dev/nvme0n1p1");
        assert_eq!(m[0].fstype, "ext4");
    }

    #[test]
    fn proc_mounts_lines_parse_source_and_type() {
        let m = parse_mounts("nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n");
        assert_eq!(m[0].fstype, "hugetlbfs");
        assert_eq!(m[0].options, "rw,relatime,pagesize=2M");
    }
}
