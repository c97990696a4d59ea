//! Hugepage pools as sysfs shows them, and reserving pages in them.
//!
//! Global pools live in `<root>/kernel/mm/hugepages/hugepages-<N>kB/`, per-node pools in
//! `<root>/devices/system/node/node<M>/hugepages/hugepages-<N>kB/`. The root is a
//! parameter ([`Sysfs::new`]) so the same code runs against a fake tree in tests.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{Error, PageSize};

/// A sysfs tree: `/sys` by default, or a fake tree for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/sys")
    }
}

/// Counters of one global hugepage pool (`/sys/kernel/mm/hugepages/hugepages-<N>kB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// The page size of the pool.
    pub size: PageSize,
    /// Pages in the pool (`nr_hugepages`), persistent and surplus.
    pub total: u64,
    /// Pages not yet faulted into any mapping (`free_hugepages`), reserved ones included.
    pub free: u64,
    /// Free pages promised to existing mappings (`resv_hugepages`).
    pub reserved: u64,
    /// Pages above the persistent pool size (`surplus_hugepages`).
    pub surplus: u64,
    /// Limit on surplus pages (`nr_overcommit_hugepages`).
    pub overcommit: u64,
}

impl PoolStats {
    /// Pages a new mapping can still get: free and unpromised pages, plus the surplus
    /// the overcommit limit still allows (which the kernel may fail to find).
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved) + self.overcommit.saturating_sub(self.surplus)
    }

    /// Free pages not promised to any mapping.
    pub fn unreserved_free(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }
}

/// Counters of one NUMA node's hugepage pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePoolStats {
    /// The NUMA node.
    pub node: u32,
    /// The page size of the pool.
    pub size: PageSize,
    /// Pages in the node's pool (`nr_hugepages`).
    pub total: u64,
    /// Pages not yet faulted into any mapping (`free_hugepages`).
    pub free: u64,
    /// Pages above the persistent pool size (`surplus_hugepages`).
    pub surplus: u64,
}

impl Sysfs {
    /// A sysfs tree rooted at `root` (normally `/sys`).
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    /// The root of the tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the global pool of `size` pages.
    pub fn pool_dir(&self, size: PageSize) -> PathBuf {
        self.root
            .join("kernel/mm/hugepages")
            .join(format!("hugepages-{}kB", size.kib()))
    }

    /// Directory of `node`'s pool of `size` pages.
    pub fn node_pool_dir(&self, node: u32, size: PageSize) -> PathBuf {
        self.root
            .join("devices/system/node")
            .join(format!("node{node}"))
            .join("hugepages")
            .join(format!("hugepages-{}kB", size.kib()))
    }

    /// Hugepage sizes the kernel offers, ascending. Empty if the kernel has no hugetlb
    /// support.
    pub fn page_sizes(&self) -> Result<Vec<PageSize>, Error> {
        let dir = self.root.join("kernel/mm/hugepages");
        let mut sizes: Vec<PageSize> = read_dir_names(&dir)?
            .iter()
            .filter_map(|name| {
                let kib = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
                PageSize::from_bytes(kib.parse::<u64>().ok()?.checked_mul(1024)?)
            })
            .collect();
        sizes.sort();
        Ok(sizes)
    }

    /// NUMA nodes that sysfs lists, ascending. Empty on kernels without NUMA support.
    pub fn nodes(&self) -> Result<Vec<u32>, Error> {
        let dir = self.root.join("devices/system/node");
        let mut nodes: Vec<u32> = read_dir_names(&dir)?
            .iter()
            .filter_map(|name| name.strip_prefix("node")?.parse().ok())
            .collect();
        nodes.sort();
        Ok(nodes)
    }

    /// Counters of the global pool of `size` pages.
    pub fn pool(&self, size: PageSize) -> Result<PoolStats, Error> {
        let dir = self.pool_dir(size);
        if !dir.is_dir() {
            return Err(self.unsupported(size));
        }
        Ok(PoolStats {
            size,
            total: read_u64(&dir.join("nr_hugepages"))?,
            free: read_u64(&dir.join("free_hugepages"))?,
            reserved: read_u64(&dir.join("resv_hugepages"))?,
            surplus: read_u64(&dir.join("surplus_hugepages"))?,
            overcommit: read_u64(&dir.join("nr_overcommit_hugepages"))?,
        })
    }

    /// Counters of every global pool, by ascending page size.
    pub fn pools(&self) -> Result<Vec<PoolStats>, Error> {
        self.page_sizes()?
            .into_iter()
            .map(|size| self.pool(size))
            .collect()
    }

    /// Counters of `node`'s pool of `size` pages.
    pub fn node_pool(&self, node: u32, size: PageSize) -> Result<NodePoolStats, Error> {
        let dir = self.node_pool_dir(node, size);
        if !dir.is_dir() {
            return Err(Error::UnknownNode { node, size });
        }
        Ok(NodePoolStats {
            node,
            size,
            total: read_u64(&dir.join("nr_hugepages"))?,
            free: read_u64(&dir.join("free_hugepages"))?,
            surplus: read_u64(&dir.join("surplus_hugepages"))?,
        })
    }

    /// Counters of the pool of `size` pages on every node that has one.
    pub fn node_pools(&self, size: PageSize) -> Result<Vec<NodePoolStats>, Error> {
        self.nodes()?
            .into_iter()
            .filter(|&node| self.node_pool_dir(node, size).is_dir())
            .map(|node| self.node_pool(node, size))
            .collect()
    }

    /// Sets the persistent pool of `size` pages (on `node`, if given) to `count` pages
    /// and returns the pool size the kernel reports afterwards.
    ///
    /// This may shrink the pool; use [`Sysfs::ensure_available`] to only grow it. Needs
    /// root. Fails with [`Error::NotPermitted`] when the write is refused and with
    /// [`Error::ReservationShort`] when the kernel found fewer pages than asked for.
    pub fn reserve(&self, size: PageSize, count: u64, node: Option<u32>) -> Result<u64, Error> {
        let path = match node {
            None => {
                if !self.pool_dir(size).is_dir() {
                    return Err(self.unsupported(size));
                }
                self.pool_dir(size).join("nr_hugepages")
            }
            Some(n) => {
                if !self.node_pool_dir(n, size).is_dir() {
                    return Err(Error::UnknownNode { node: n, size });
                }
                self.node_pool_dir(n, size).join("nr_hugepages")
            }
        };
        write_sysfs(&path, count).map_err(|source| match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => Error::NotPermitted {
                path: path.clone(),
                cmdline: boot_cmdline(size, count, node),
                source,
            },
            _ => Error::Write {
                path: path.clone(),
                source,
            },
        })?;
        let got = read_u64(&path)?;
        if got < count {
            return Err(Error::ReservationShort {
                size,
                node,
                requested: count,
                got,
                cmdline: boot_cmdline(size, count, node),
            });
        }
        tracing::info!(%size, count = got, ?node, "hugepage pool size set");
        Ok(got)
    }

    /// Grows the global pool of `size` pages so that at least `count` pages are
    /// available to new mappings; never shrinks it. Returns the counters afterwards.
    pub fn ensure_available(&self, size: PageSize, count: u64) -> Result<PoolStats, Error> {
        let stats = self.pool(size)?;
        let available = stats.unreserved_free();
        if available >= count {
            return Ok(stats);
        }
        let target = stats.total + (count - available);
        self.reserve(size, target, None)?;
        self.pool(size)
    }

    fn unsupported(&self, size: PageSize) -> Error {
        Error::UnsupportedPageSize {
            size,
            present: self
                .page_sizes()
                .unwrap_or_default()
                .into_iter()
                .map(PageSize::bytes)
                .collect(),
        }
    }
}

/// The kernel command line that reserves `count` pages of `size` at boot.
fn boot_cmdline(size: PageSize, count: u64, node: Option<u32>) -> String {
    let pages = match node {
        Some(n) => format!("hugepages={n}:{count}"),
        None => format!("hugepages={count}"),
    };
    if size == PageSize::SIZE_2M {
        pages
    } else {
        format!("hugepagesz={} {pages}", size.short_name())
    }
}

fn write_sysfs(path: &Path, value: u64) -> io::Result<()> {
    // One write(2) with the whole value, as sysfs attributes expect.
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(format!("{value}\n").as_bytes())
}

/// The entry names of directory `dir`, sorted; empty if it does not exist. Names that
/// are not UTF-8 are converted lossily (sysfs and procfs names are ASCII).
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = entries
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<String>>>()?;
    names.sort();
    Ok(names)
}

/// [`list_dir`] with a failure reported as [`Error::Read`] of `dir`.
fn read_dir_names(dir: &Path) -> Result<Vec<String>, Error> {
    list_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        contents: text.trim().to_string(),
    })
}

/// Builds fake sysfs trees for tests.
#[cfg(test)]
pub(crate) mod fake {
    use std::fs;
    use std::path::Path;

    use crate::PageSize;

    /// Creates a global pool directory with the given counters.
    pub fn pool(root: &Path, size: PageSize, total: u64, free: u64, resv: u64) {
        let dir = root
            .join("kernel/mm/hugepages")
            .join(format!("hugepages-{}kB", size.kib()));
        fs::create_dir_all(&dir).unwrap();
        for (name, value) in [
            ("nr_hugepages", total),
            ("free_hugepages", free),
            ("resv_hugepages", resv),
            ("surplus_hugepages", 0),
            ("nr_overcommit_hugepages", 0),
        ] {
            fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
    }

    /// Creates a node pool directory with the given counters.
    pub fn node_pool(root: &Path, node: u32, size: PageSize, total: u64, free: u64) {
        let dir = root
            .join(format!("devices/system/node/node{node}/hugepages"))
            .join(format!("hugepages-{}kB", size.kib()));
        fs::create_dir_all(&dir).unwrap();
        for (name, value) in [
            ("nr_hugepages", total),
            ("free_hugepages", free),
            ("surplus_hugepages", 0),
        ] {
            fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn list_dir_sorts_names_and_treats_a_missing_directory_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["node1", "node0", "possible"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(
            list_dir(dir.path()).unwrap(),
            vec!["node0", "node1", "possible"]
        );
        assert!(list_dir(&dir.path().join("missing")).unwrap().is_empty());
        let file = dir.path().join("node0/file");
        fs::write(&file, "").unwrap();
        assert!(list_dir(&file).is_err());
    }

    #[test]
    fn page_sizes_and_pools_come_from_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_1G, 2, 1, 0);
        fake::pool(dir.path(), PageSize::SIZE_2M, 64, 10, 3);
        fs::create_dir_all(dir.path().join("kernel/mm/hugepages/not-a-pool")).unwrap();
        let sysfs = Sysfs::new(dir.path());
        assert_eq!(
            sysfs.page_sizes().unwrap(),
            vec![PageSize::SIZE_2M, PageSize::SIZE_1G]
        );
        let pool = sysfs.pool(PageSize::SIZE_2M).unwrap();
        assert_eq!(
            pool,
            PoolStats {
                size: PageSize::SIZE_2M,
                total: 64,
                free: 10,
                reserved: 3,
                surplus: 0,
                overcommit: 0
            }
        );
        assert_eq!(pool.available(), 7);
        assert_eq!(sysfs.pools().unwrap().len(), 2);
    }

    #[test]
    fn node_pools_are_listed_per_node() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 6, 6, 0);
        fake::node_pool(dir.path(), 0, PageSize::SIZE_2M, 4, 4);
        fake::node_pool(dir.path(), 1, PageSize::SIZE_2M, 2, 1);
        fs::create_dir_all(dir.path().join("devices/system/node/possible")).unwrap();
        let sysfs = Sysfs::new(dir.path());
        assert_eq!(sysfs.nodes().unwrap(), vec![0, 1]);
        let pools = sysfs.node_pools(PageSize::SIZE_2M).unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!((pools[1].node, pools[1].total, pools[1].free), (1, 2, 1));
        assert!(matches!(
            sysfs.node_pool(7, PageSize::SIZE_2M),
            Err(Error::UnknownNode { node: 7, .. })
        ));
    }

    #[test]
    fn missing_size_is_a_typed_error_listing_present_sizes() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let err = Sysfs::new(dir.path()).pool(PageSize::SIZE_1G).unwrap_err();
        match err {
            Error::UnsupportedPageSize { present, .. } => assert_eq!(present, vec![2 << 20]),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn garbage_in_a_counter_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        fs::write(
            sysfs.pool_dir(PageSize::SIZE_2M).join("free_hugepages"),
            "lots\n",
        )
        .unwrap();
        assert!(matches!(
            sysfs.pool(PageSize::SIZE_2M),
            Err(Error::Parse { contents, .. }) if contents == "lots"
        ));
    }

    #[test]
    fn reserve_writes_the_count_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        fake::node_pool(dir.path(), 0, PageSize::SIZE_2M, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        assert_eq!(sysfs.reserve(PageSize::SIZE_2M, 8, None).unwrap(), 8);
        assert_eq!(sysfs.pool(PageSize::SIZE_2M).unwrap().total, 8);
        assert_eq!(sysfs.reserve(PageSize::SIZE_2M, 3, Some(0)).unwrap(), 3);
        assert_eq!(sysfs.node_pool(0, PageSize::SIZE_2M).unwrap().total, 3);
    }

    #[test]
    fn ensure_available_only_grows_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 10, 4, 1);
        let sysfs = Sysfs::new(dir.path());
        // 3 unreserved free pages; 5 needed: grow the pool by 2.
        sysfs.ensure_available(PageSize::SIZE_2M, 5).unwrap();
        assert_eq!(sysfs.pool(PageSize::SIZE_2M).unwrap().total, 12);
        // Enough free already: nothing written.
        fake::pool(dir.path(), PageSize::SIZE_2M, 10, 9, 0);
        sysfs.ensure_available(PageSize::SIZE_2M, 5).unwrap();
        assert_eq!(sysfs.pool(PageSize::SIZE_2M).unwrap().total, 10);
    }

    /// Plays the kernel's part for one write-then-read of `path` (a FIFO): consumes
    /// what is written, then serves `reply` to the next reader.
    fn fake_kernel_attribute(
        path: PathBuf,
        reply: &'static str,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut reader = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .unwrap();
            let mut written = Vec::new();
            // Read until the writer has written something and closed its end.
            loop {
                let mut buf = [0u8; 64];
                match reader.read(&mut buf) {
                    Ok(0) if !written.is_empty() => break,
                    Ok(n) => written.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("fifo read: {e}"),
                }
                assert!(Instant::now() < deadline, "nobody wrote the attribute");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(reader);
            // Opening a FIFO for writing without blocking succeeds once a reader exists.
            let mut writer = loop {
                match fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(w) => break w,
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                    Err(e) => panic!("fifo open: {e}"),
                }
                assert!(Instant::now() < deadline, "nobody read the attribute back");
                std::thread::sleep(Duration::from_millis(1));
            };
            writer.write_all(reply.as_bytes()).unwrap();
            String::from_utf8(written).unwrap()
        })
    }

    fn make_fifo(path: &Path) {
        fs::remove_file(path).unwrap();
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", io::Error::last_os_error());
    }

    #[test]
    fn kernel_giving_fewer_pages_reports_fragmentation_and_boot_option() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let attr = sysfs.pool_dir(PageSize::SIZE_2M).join("nr_hugepages");
        make_fifo(&attr);
        let kernel = fake_kernel_attribute(attr, "12\n");
        let err = sysfs.reserve(PageSize::SIZE_2M, 64, None).unwrap_err();
        assert_eq!(kernel.join().unwrap(), "64\n");
        assert!(matches!(
            err,
            Error::ReservationShort {
                requested: 64,
                got: 12,
                node: None,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "asked for 64 x 2 MiB, kernel gave 12: memory is fragmented; \
             reserve at boot with hugepages=64"
        );
    }

    #[test]
    fn short_gigantic_reservation_names_the_page_size_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_1G, 0, 0, 0);
        fake::node_pool(dir.path(), 1, PageSize::SIZE_1G, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let attr = sysfs
            .node_pool_dir(1, PageSize::SIZE_1G)
            .join("nr_hugepages");
        make_fifo(&attr);
        let kernel = fake_kernel_attribute(attr, "1\n");
        let err = sysfs.reserve(PageSize::SIZE_1G, 4, Some(1)).unwrap_err();
        assert_eq!(kernel.join().unwrap(), "4\n");
        assert_eq!(
            err.to_string(),
            "asked for 4 x 1 GiB on node 1, kernel gave 1: memory is fragmented; \
             reserve at boot with hugepagesz=1G hugepages=1:4"
        );
    }

    #[test]
    fn refused_write_says_run_as_root() {
        let dir = tempfile::tempdir().unwrap();
        fake::pool(dir.path(), PageSize::SIZE_2M, 0, 0, 0);
        let sysfs = Sysfs::new(dir.path());
        let attr = sysfs.pool_dir(PageSize::SIZE_2M).join("nr_hugepages");
        // A read-only kernfs attribute refuses opening for write with EACCES, even for
        // root: the same refusal a non-root user gets from nr_hugepages.
        fs::remove_file(&attr).unwrap();
        std::os::unix::fs::symlink("/sys/devices/system/cpu/online", &attr).unwrap();
        let err = sysfs.reserve(PageSize::SIZE_2M, 4, None).unwrap_err();
        assert!(matches!(err, Error::NotPermitted { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("run as root"), "{msg}");
        assert!(msg.contains("hugepages=4"), "{msg}");
    }
}
