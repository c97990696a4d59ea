//! The filesystem views the tool works on: `/sys`, `/proc` and `/dev`, each under a
//! configurable root so a fake tree in a temporary directory can stand in for the host.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Action, SetupError};

fn read_trimmed(path: &Path) -> Result<Option<String>, SetupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn list_dir(path: &Path) -> Result<Vec<String>, SetupError> {
    hugepages::list_dir(path).map_err(|source| SetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A sysfs tree: `/sys` on the host, or a fake copy for tests.
#[derive(Clone, Debug)]
pub struct SysfsRoot {
    root: PathBuf,
}

impl SysfsRoot {
    /// The host's `/sys`.
    pub const LIVE: &'static str = "/sys";

    /// A sysfs tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysfsRoot { root: root.into() }
    }

    /// Whether this is the host's own `/sys`, where writes reach the kernel.
    pub fn is_live(&self) -> bool {
        self.root == Path::new(Self::LIVE)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Whether `rel` exists (following symlinks).
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }

    /// The trimmed content of attribute `rel`, or `None` if it does not exist.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Option<String>, SetupError> {
        read_trimmed(&self.path(rel))
    }

    /// A hexadecimal attribute such as `vendor` (`0x8086`), or `None` if absent.
    pub fn read_hex(&self, rel: impl AsRef<Path>) -> Result<Option<u32>, SetupError> {
        let path = self.path(rel);
        let Some(text) = read_trimmed(&path)? else {
            return Ok(None);
        };
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        u32::from_str_radix(digits, 16)
            .map(Some)
            .map_err(|_| SetupError::Parse {
                path,
                content: text.clone(),
                expected: "a hexadecimal number such as 0x8086",
            })
    }

    /// The last component of symlink `rel` (e.g. the driver name behind `driver`).
    pub fn link_name(&self, rel: impl AsRef<Path>) -> Result<Option<String>, SetupError> {
        let path = self.path(rel);
        match fs::read_link(&path) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(SetupError::Read { path, source }),
        }
    }

    /// The sorted entry names of directory `rel`; empty if it does not exist.
    pub fn list(&self, rel: impl AsRef<Path>) -> Result<Vec<String>, SetupError> {
        list_dir(&self.path(rel))
    }

    /// The fully resolved path of `rel`, or `None` if it does not resolve.
    pub fn canonical(&self, rel: impl AsRef<Path>) -> Option<PathBuf> {
        fs::canonicalize(self.path(rel)).ok()
    }

    /// Writes `value` to existing attribute `rel` the way `echo value > file` does, and
    /// records the write in `log`. A missing attribute is an error, never created.
    pub fn write(
        &self,
        rel: impl AsRef<Path>,
        value: &str,
        log: &mut Vec<Action>,
    ) -> Result<(), SetupError> {
        let path = self.path(rel);
        tracing::info!(path = %path.display(), value, "sysfs write");
        let result = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()));
        result.map_err(|e| SetupError::write(path.clone(), value, e))?;
        log.push(Action::Write {
            path,
            value: value.trim_end().to_string(),
        });
        Ok(())
    }
}

/// A procfs tree: `/proc` on the host, or a fake copy for tests.
#[derive(Clone, Debug)]
pub struct ProcRoot {
    root: PathBuf,
}

impl ProcRoot {
    /// A procfs tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcRoot { root: root.into() }
    }

    /// `rel` under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// The content of `rel` (untrimmed), or `None` if it does not exist.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Option<String>, SetupError> {
        let path = self.path(rel);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SetupError::Read { path, source }),
        }
    }
}

/// The roots of the three trees the tool reads and writes.
#[derive(Clone, Debug)]
pub struct Host {
    /// Stands in for `/sys`.
    pub sys: SysfsRoot,
    /// Stands in for `/proc`.
    pub proc: ProcRoot,
    /// Stands in for `/dev`.
    pub dev: PathBuf,
}

impl Host {
    /// The running machine: `/sys`, `/proc` and `/dev`.
    pub fn live() -> Self {
        Host {
            sys: SysfsRoot::new(SysfsRoot::LIVE),
            proc: ProcRoot::new("/proc"),
            dev: PathBuf::from("/dev"),
        }
    }

    /// Whether writes reach the kernel; a fake tree only records them, and the tool then
    /// skips what a file write cannot fake (modprobe, mount, checking the kernel's response).
    pub fn is_live(&self) -> bool {
        self.sys.is_live()
    }

    /// `rel` under the `/dev` root.
    pub fn dev_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dev.join(rel)
    }

    /// Fails with [`SetupError::NotRoot`] when about to write the live `/sys` without root.
    pub fn require_root(&self, what: &Path) -> Result<(), SetupError> {
        if self.is_live() && super::users::effective_uid() != Some(0) {
            return Err(SetupError::NotRoot {
                path: what.to_path_buf(),
            });
        }
        Ok(())
    }
}
