//! Shared set-up for tests that need real hugepages.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

use hugepages::{PageSize, Sysfs};

/// Serialises the tests of one binary that consume hugepages, so that one test's check
/// of the free count is not invalidated by another's allocation.
static HUGEPAGES: Mutex<()> = Mutex::new(());

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this process may read physical frame numbers from pagemap.
pub fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    caps & (1 << CAP_SYS_ADMIN) != 0
}

/// Makes sure `count` 2 MiB hugepages are free for this test, growing the pool (never
/// shrinking it) when running as root. Returns a guard to hold while using them, or
/// `None` (after saying so on stderr) when they cannot be had outside CI. Under
/// `CI=true` a shortage fails the test.
pub fn hugepages(count: u64) -> Option<MutexGuard<'static, ()>> {
    let guard = HUGEPAGES.lock().unwrap_or_else(PoisonError::into_inner);
    let sysfs = Sysfs::default();
    let size = PageSize::SIZE_2M;
    let mut pool = sysfs.pool(size).expect("2 MiB hugepage pool in sysfs");
    if pool.unreserved_free() < count && is_root() {
        match sysfs.ensure_available(size, count) {
            Ok(after) => pool = after,
            Err(e) => eprintln!("could not reserve {count} hugepages: {e}"),
        }
    }
    if pool.unreserved_free() >= count {
        return Some(guard);
    }
    let msg = format!(
        "test needs {count} free 2 MiB hugepages, {} free; run as root or reserve some \
         (echo N > /proc/sys/vm/nr_hugepages)",
        pool.unreserved_free()
    );
    assert!(!in_ci(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}
