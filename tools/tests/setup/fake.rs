//! A fake host for `nvme-setup`: `sys/`, `proc/` and `dev/` trees in a temporary
//! directory, laid out (with real symlinks) the way Linux lays them out.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const NVME_CLASS: u32 = 0x010802;

/// The fake host.
pub struct FakeHost {
    dir: tempfile::TempDir,
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().expect("exited by signal"),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl FakeHost {
    /// A host with no devices, no IOMMU, no vfio, no hugepages reserved, memlock 8 MiB.
    pub fn bare() -> Self {
        let h = FakeHost {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for d in [
            "sys/bus/pci/devices",
            "sys/kernel/iommu_groups",
            "sys/class/iommu",
            "sys/block",
            "proc/self",
            "dev",
        ] {
            fs::create_dir_all(h.root().join(d)).unwrap();
        }
        h.write("sys/bus/pci/drivers_probe", "");
        h.driver("nvme");
        for size in [2048, 1048576] {
            h.hugepages(size, 0, 0);
            h.node_hugepages(0, size, 0, 0);
        }
        h.write("proc/mounts", "/dev/sda1 / ext4 rw,relatime 0 0\n");
        h.write(
            "proc/swaps",
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        );
        h.write(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n",
        );
        h.write(
            "proc/meminfo",
            "MemTotal:       16318412 kB\nHugepagesize:       2048 kB\n",
        );
        h.memlock(Some(8 * 1024 * 1024));
        h
    }

    /// A host where everything is in place: IOMMU on, vfio-pci loaded, controller
    /// 0000:01:00.0 alone in group 5 on vfio-pci with /dev/vfio/5 owned by the test's
    /// user, 64 free 2M hugepages, unlimited memlock.
    pub fn ready() -> Self {
        let h = FakeHost::bare();
        h.enable_iommu();
        h.load_vfio();
        h.pci("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(5));
        h.vfio_node(5, 0o600);
        h.hugepages(2048, 64, 64);
        h.node_hugepages(0, 2048, 64, 64);
        h.memlock(None);
        h
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.root().join("sys").join(rel)
    }

    /// Writes `content` to `rel` (under the fake root), creating directories.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// Appends a line to `rel`.
    pub fn append(&self, rel: &str, line: &str) {
        let p = self.root().join(rel);
        let mut s = fs::read_to_string(&p).unwrap_or_default();
        s.push_str(line);
        s.push('\n');
        fs::write(p, s).unwrap();
    }

    /// The trimmed content of sysfs attribute `rel`.
    pub fn read_sys(&self, rel: &str) -> String {
        fs::read_to_string(self.sys(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .trim()
            .to_string()
    }

    pub fn link(&self, rel: &str, target: &str) {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    /// Registers a PCI driver (its directory with `bind`/`unbind`).
    pub fn driver(&self, name: &str) {
        self.write(&format!("sys/bus/pci/drivers/{name}/bind"), "");
        self.write(&format!("sys/bus/pci/drivers/{name}/unbind"), "");
    }

    /// Adds a PCI function with vendor 8086, device 0953, NUMA node 0.
    pub fn pci(&self, addr: &str, class: u32, driver: Option<&str>, group: Option<u32>) {
        let d = format!("sys/bus/pci/devices/{addr}");
        self.write(&format!("{d}/vendor"), "0x8086\n");
        self.write(&format!("{d}/device"), "0x0953\n");
        self.write(&format!("{d}/class"), &format!("{class:#08x}\n"));
        self.write(&format!("{d}/numa_node"), "0\n");
        self.write(&format!("{d}/driver_override"), "(null)\n");
        if let Some(drv) = driver {
            self.driver(drv);
            self.link(
                &format!("{d}/driver"),
                &format!("../../../../bus/pci/drivers/{drv}"),
            );
        }
        if let Some(g) = group {
            let gdir = format!("sys/kernel/iommu_groups/{g}/devices");
            fs::create_dir_all(self.root().join(&gdir)).unwrap();
            self.link(
                &format!("{gdir}/{addr}"),
                &format!("../../../../bus/pci/devices/{addr}"),
            );
            self.link(
                &format!("{d}/iommu_group"),
                &format!("../../../../kernel/iommu_groups/{g}"),
            );
        }
    }

    /// Adds namespace `disk` (`major:minor` = `dev`) of the controller at `addr`, with
    /// `partitions` as (name, dev); `block/<disk>` links into the device tree like sysfs.
    pub fn namespace(&self, addr: &str, disk: &str, dev: &str, partitions: &[(&str, &str)]) {
        let d = format!("sys/bus/pci/devices/{addr}/nvme/nvme0/{disk}");
        self.write(&format!("{d}/dev"), &format!("{dev}\n"));
        fs::create_dir_all(self.root().join(format!("{d}/holders"))).unwrap();
        for (name, pdev) in partitions {
            self.write(&format!("{d}/{name}/dev"), &format!("{pdev}\n"));
            self.write(&format!("{d}/{name}/partition"), "1\n");
            fs::create_dir_all(self.root().join(format!("{d}/{name}/holders"))).unwrap();
        }
        self.link(
            &format!("sys/block/{disk}"),
            &format!("../bus/pci/devices/{addr}/nvme/nvme0/{disk}"),
        );
    }

    /// Makes `holder` (e.g. `dm-0`) hold block device `rel` (`nvme0n1` or `nvme0n1/nvme0n1p1`).
    pub fn holder(&self, rel: &str, holder: &str) {
        fs::create_dir_all(self.sys(&format!("block/{rel}/holders/{holder}"))).unwrap();
    }

    pub fn hugepages(&self, size_kib: u64, total: u64, free: u64) {
        let d = format!("sys/kernel/mm/hugepages/hugepages-{size_kib}kB");
        self.write(&format!("{d}/nr_hugepages"), &format!("{total}\n"));
        self.write(&format!("{d}/free_hugepages"), &format!("{free}\n"));
        for zero in [
            "resv_hugepages",
            "surplus_hugepages",
            "nr_overcommit_hugepages",
        ] {
            self.write(&format!("{d}/{zero}"), "0\n");
        }
    }

    pub fn node_hugepages(&self, node: u32, size_kib: u64, total: u64, free: u64) {
        let d = format!("sys/devices/system/node/node{node}/hugepages/hugepages-{size_kib}kB");
        self.write(&format!("{d}/nr_hugepages"), &format!("{total}\n"));
        self.write(&format!("{d}/free_hugepages"), &format!("{free}\n"));
        self.write(&format!("{d}/surplus_hugepages"), "0\n");
    }

    /// Sets the soft and hard memlock limit (`None`: unlimited).
    pub fn memlock(&self, bytes: Option<u64>) {
        let v = bytes.map_or("unlimited".to_string(), |b| b.to_string());
        self.write(
            "proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            1024                 1048576              files     \n\
                 Max locked memory         {v:<20} {v:<20} bytes     \n"
            ),
        );
    }

    /// Writes `self/status` with the effective capability mask `cap_eff`.
    pub fn cap_eff(&self, cap_eff: u64) {
        self.write(
            "proc/self/status",
            &format!(
                "Name:\tnvme-setup\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
                 CapPrm:\t{cap_eff:016x}\nCapEff:\t{cap_eff:016x}\nCapBnd:\t000001ffffffffff\n"
            ),
        );
    }

    pub fn enable_iommu(&self) {
        fs::create_dir_all(self.sys("class/iommu/dmar0")).unwrap();
    }

    pub fn load_vfio(&self) {
        self.driver("vfio-pci");
        self.write("dev/vfio/vfio", "");
        self.chmod("dev/vfio/vfio", 0o666);
    }

    pub fn vfio_node(&self, group: u32, mode: u32) {
        let rel = format!("dev/vfio/{group}");
        self.write(&rel, "");
        self.chmod(&rel, mode);
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.root().join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The uid that owns files this test creates (the test's effective uid).
    pub fn my_uid(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(self.root()).unwrap().uid()
    }

    /// The binary pointed at this fake host, with a clean environment for logging/sudo.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nvme-setup"));
        c.arg("--sysfs")
            .arg(self.root().join("sys"))
            .arg("--proc")
            .arg(self.root().join("proc"))
            .arg("--dev")
            .arg(self.root().join("dev"))
            .env_remove("RUST_LOG")
            .env_remove("SUDO_UID");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd()
            .args(args)
            .output()
            .expect("run nvme-setup")
            .into()
    }
}
