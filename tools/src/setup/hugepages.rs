//! Hugepage pools and their reservation (through the `hugepages` crate's sysfs view),
//! plus the hugetlbfs mount that DMA memory is allocated from.

use std::path::{Path, PathBuf};
use std::process::Command;

use hugepages::{parse_hugetlbfs_mounts, PageSize, Sysfs};
use serde::Serialize;

use super::{run_command, Action, Host, SetupError};

/// Hugepages of one size on one NUMA node.
#[derive(Clone, Debug, Serialize)]
pub struct NodePool {
    /// NUMA node number.
    pub node: u32,
    /// Pages reserved on the node.
    pub total: u64,
    /// Of those, pages not in use.
    pub free: u64,
}

/// Hugepages of one size, machine-wide and per node.
#[derive(Clone, Debug, Serialize)]
pub struct HugepagePool {
    /// Page size in KiB (2048, 1048576).
    pub size_kib: u64,
    /// Pages reserved (`nr_hugepages`).
    pub total: u64,
    /// Of those, pages not in use (`free_hugepages`).
    pub free: u64,
    /// Of the free pages, those promised to existing mappings (`resv_hugepages`).
    pub reserved: u64,
    /// The same per NUMA node; empty without NUMA information.
    pub nodes: Vec<NodePool>,
}

impl HugepagePool {
    /// Bytes reserved in this pool.
    pub fn total_bytes(&self) -> u64 {
        self.total
            .saturating_mul(self.size_kib)
            .saturating_mul(1024)
    }
}

fn sysfs(host: &Host) -> Sysfs {
    Sysfs::new(host.sys.root())
}

/// Every hugepage pool with its per-node split.
pub fn pools(host: &Host) -> Result<Vec<HugepagePool>, SetupError> {
    let sys = sysfs(host);
    let mut out = Vec::new();
    for p in sys.pools()? {
        let nodes = sys
            .node_pools(p.size)?
            .into_iter()
            .map(|n| NodePool {
                node: n.node,
                total: n.total,
                free: n.free,
            })
            .collect();
        out.push(HugepagePool {
            size_kib: p.size.kib(),
            total: p.total,
            free: p.free,
            reserved: p.reserved,
            nodes,
        });
    }
    Ok(out)
}

/// Parses a page size such as `2M` or `1G`.
pub fn parse_size(host: &Host, text: &str) -> Result<PageSize, SetupError> {
    PageSize::parse(text)
        .filter(|s| s.bytes() > PageSize::SIZE_4K.bytes())
        .ok_or_else(|| SetupError::BadHugepageSize {
            input: text.to_string(),
            available: sysfs(host)
                .page_sizes()
                .unwrap_or_default()
                .into_iter()
                .map(PageSize::short_name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The kernel's default hugepage size (`Hugepagesize:` in `/proc/meminfo`), 2M if unknown.
fn default_size(host: &Host) -> Result<PageSize, SetupError> {
    let text = host.proc.read("meminfo")?.unwrap_or_default();
    Ok(text
        .lines()
        .find_map(|l| {
            let kib: u64 = l
                .strip_prefix("Hugepagesize:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            PageSize::from_bytes(kib.checked_mul(1024)?)
        })
        .unwrap_or(PageSize::SIZE_2M))
}

/// What happened to the hugetlbfs mount.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MountOutcome {
    /// A hugetlbfs of this page size was already mounted.
    AlreadyMounted {
        /// Where.
        path: PathBuf,
    },
    /// The tool mounted one.
    Mounted {
        /// Where.
        path: PathBuf,
    },
    /// Not mounted because the tree is fake (mounting would touch the real host).
    Skipped {
        /// Where it would have gone.
        path: PathBuf,
    },
    /// No pages reserved, so nothing to mount.
    NotNeeded,
}

/// The result of `nvme-setup hugepages`.
#[derive(Clone, Debug, Serialize)]
pub struct Reservation {
    /// Page size in KiB.
    pub size_kib: u64,
    /// The node reserved on, or `None` for the kernel's spread over all nodes.
    pub node: Option<u32>,
    /// Pages reserved before.
    pub previous: u64,
    /// Pages asked for.
    pub requested: u64,
    /// Pages the kernel reserved.
    pub given: u64,
    /// The hugetlbfs mount.
    pub mount: MountOutcome,
    /// The writes and commands carried out.
    pub actions: Vec<Action>,
}

/// Sets the pool of `size` pages (on `node`, or spread by the kernel) to `count`, fails
/// when the kernel gives fewer (after setting the pool back to what it was), and mounts hugetlbfs at `mount_dir` (default
/// `/dev/hugepages`, `/dev/hugepages-1G` for a non-default size) when no hugetlbfs of
/// that page size is mounted.
pub fn reserve(
    host: &Host,
    count: u64,
    size: PageSize,
    node: Option<u32>,
    mount_dir: Option<&Path>,
) -> Result<Reservation, SetupError> {
    let sys = sysfs(host);
    let (previous, path) = match node {
        None => (sys.pool(size)?.total, sys.pool_dir(size)),
        Some(n) => (sys.node_pool(n, size)?.total, sys.node_pool_dir(n, size)),
    };
    let path = path.join("nr_hugepages");
    host.require_root(&path)?;
    let given = match sys.reserve(size, count, node) {
        Ok(given) => given,
        Err(short @ hugepages::Error::ReservationShort { .. }) => {
            // Do not leave the host holding a partial pool nobody asked for: the pages
            // it grabbed are gone from everyone else.
            let restored = sys.reserve(size, previous, node).is_ok();
            return Err(SetupError::HugepagesShort {
                source: short,
                previous,
                restored,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut actions = vec![Action::Write {
        path,
        value: count.to_string(),
    }];
    let default = default_size(host)?;
    let mount = if count == 0 {
        MountOutcome::NotNeeded
    } else if let Some(m) = parse_hugetlbfs_mounts(&host.proc.read("mounts")?.unwrap_or_default())
        .into_iter()
        .find(|m| m.page_size.unwrap_or(default) == size)
    {
        MountOutcome::AlreadyMounted {
            path: m.mount_point,
        }
    } else {
        let dir = match mount_dir {
            Some(d) => d.to_path_buf(),
            None if size == default => host.dev_path("hugepages"),
            None => host.dev_path(format!("hugepages-{}", size.short_name())),
        };
        if host.is_live() {
            std::fs::create_dir_all(&dir).map_err(|e| SetupError::write(dir.clone(), "", e))?;
            run_command(
                Command::new("mount")
                    .args(["-t", "hugetlbfs", "-o"])
                    .arg(format!("pagesize={}", size.short_name()))
                    .arg("nodev")
                    .arg(&dir),
                &mut actions,
            )?;
            MountOutcome::Mounted { path: dir }
        } else {
            MountOutcome::Skipped { path: dir }
        }
    };
    Ok(Reservation {
        size_kib: size.kib(),
        node,
        previous,
        requested: count,
        given,
        mount,
        actions,
    })
}

/// `2048` KiB → `"2M"`.
pub fn size_label(kib: u64) -> String {
    kib.checked_mul(1024)
        .and_then(PageSize::from_bytes)
        .map_or_else(|| format!("{kib}K"), PageSize::short_name)
}
