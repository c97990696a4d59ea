//! Finding hugetlbfs mounts in `/proc/mounts`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, PageSize};

/// One mounted hugetlbfs file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Its page size (`pagesize=` option); `None` means the kernel's default size.
    pub page_size: Option<PageSize>,
    /// The raw mount options.
    pub options: String,
}

/// The hugetlbfs mounts listed in `/proc/mounts`.
pub fn hugetlbfs_mounts() -> Result<Vec<HugetlbfsMount>, Error> {
    hugetlbfs_mounts_in(Path::new("/proc/mounts"))
}

/// The hugetlbfs mounts listed in a file in `/proc/mounts` format.
pub fn hugetlbfs_mounts_in(path: &Path) -> Result<Vec<HugetlbfsMount>, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_hugetlbfs_mounts(&text))
}

/// The hugetlbfs mounts in `text`, which has the format of `/proc/mounts`
/// (`device mount-point type options dump pass`, with octal escapes in paths).
pub fn parse_hugetlbfs_mounts(text: &str) -> Vec<HugetlbfsMount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            if fields.next()? != "hugetlbfs" {
                return None;
            }
            let options = fields.next().unwrap_or("").to_string();
            let page_size = options
                .split(',')
                .find_map(|opt| opt.strip_prefix("pagesize="))
                .and_then(PageSize::parse);
            Some(HugetlbfsMount {
                mount_point: PathBuf::from(unescape_mount_field(mount_point)),
                page_size,
                options,
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of spaces, tabs, newlines and backslashes in a
/// field of `/proc/mounts`, `/proc/self/mountinfo` or `/proc/swaps` (`mangle()` in
/// `fs/proc_namespace.c`). A backslash not followed by three octal digits of at most
/// `\377` stays as it is.
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match escape {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
none /mnt/huge\\0401g hugetlbfs rw,relatime,pagesize=1024M 0 0
nodefault /mnt/plain hugetlbfs rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
";

    #[test]
    fn only_hugetlbfs_lines_are_returned_with_their_page_size() {
        let mounts = parse_hugetlbfs_mounts(MOUNTS);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/dev/hugepages"));
        assert_eq!(mounts[0].page_size, Some(PageSize::SIZE_2M));
        assert_eq!(mounts[1].mount_point, PathBuf::from("/mnt/huge 1g"));
        assert_eq!(mounts[1].page_size, Some(PageSize::SIZE_1G));
        assert_eq!(mounts[2].page_size, None);
        assert_eq!(mounts[2].options, "rw,relatime");
    }

    #[test]
    fn truncated_lines_and_stray_backslashes_do_not_panic() {
        let mounts = parse_hugetlbfs_mounts("x\nx /a\\ hugetlbfs\nx /b\\9 hugetlbfs rw\n");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/a\\"));
        assert_eq!(mounts[1].mount_point, PathBuf::from("/b\\9"));
    }

    #[test]
    fn mount_fields_lose_their_octal_escapes() {
        assert_eq!(unescape_mount_field("/mnt/a\\040b\\011c"), "/mnt/a b\tc");
        assert_eq!(unescape_mount_field("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mount_field("/x\\400"), "/x\\400");
        assert_eq!(unescape_mount_field("/x\\04"), "/x\\04");
        assert_eq!(unescape_mount_field("plain"), "plain");
    }

    #[test]
    fn mounts_file_is_read_from_the_given_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts");
        std::fs::write(&path, MOUNTS).unwrap();
        assert_eq!(hugetlbfs_mounts_in(&path).unwrap().len(), 3);
        assert!(matches!(
            hugetlbfs_mounts_in(&dir.path().join("missing")),
            Err(Error::Read { .. })
        ));
    }
}
