//! Virtual-to-physical translation through `/proc/self/pagemap`.
//!
//! Physical addresses matter only without an IOMMU (VFIO no-IOMMU mode) and in tests.
//! The kernel shows frame numbers only to processes with `CAP_SYS_ADMIN`; others read
//! a PFN of 0, which [`Pagemap::virt_to_phys`] reports as
//! [`Error::PhysicalAddressHidden`] rather than returning a wrong address.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Error, PageSize};

/// Bit 63 of a pagemap entry: the page is present in RAM.
const PRESENT: u64 = 1 << 63;
/// Bits 0-54 of a pagemap entry: the page frame number, when present.
const PFN_MASK: u64 = (1 << 55) - 1;

/// An open `/proc/self/pagemap`, for repeated lookups.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    path: PathBuf,
    base: PageSize,
}

impl Pagemap {
    /// Opens `/proc/self/pagemap`.
    pub fn open() -> Result<Pagemap, Error> {
        let path = Path::new("/proc/self/pagemap");
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Pagemap {
            file,
            path: path.to_path_buf(),
            base: PageSize::base(),
        })
    }

    /// The page frame number of the base page holding `addr`.
    pub fn pfn(&self, addr: *const u8) -> Result<u64, Error> {
        let vaddr = addr as usize;
        let index = (vaddr as u64) / self.base.bytes();
        let mut entry = [0u8; 8];
        self.file
            .read_exact_at(&mut entry, index * 8)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?;
        let entry = u64::from_ne_bytes(entry);
        if entry & PRESENT == 0 {
            return Err(Error::NotResident { vaddr });
        }
        match entry & PFN_MASK {
            0 => Err(Error::PhysicalAddressHidden { vaddr }),
            pfn => Ok(pfn),
        }
    }

    /// The physical address of `addr`. The page must be resident; the answer holds only
    /// while the page stays pinned (hugepages and locked pages are not swapped, but the
    /// kernel may still migrate ordinary pages).
    pub fn virt_to_phys(&self, addr: *const u8) -> Result<u64, Error> {
        let pfn = self.pfn(addr)?;
        let offset = (addr as u64) & (self.base.bytes() - 1);
        Ok(pfn * self.base.bytes() + offset)
    }
}

/// The physical address of `addr` (opens `/proc/self/pagemap` for one lookup).
pub fn virt_to_phys(addr: *const u8) -> Result<u64, Error> {
    Pagemap::open()?.virt_to_phys(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_cap_sys_admin() -> bool {
        const CAP_SYS_ADMIN: u32 = 21;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
    }

    #[test]
    fn unmapped_address_is_not_resident() {
        let pagemap = Pagemap::open().unwrap();
        // The zero page is never mapped in a user process.
        assert!(matches!(
            pagemap.virt_to_phys(std::ptr::null()),
            Err(Error::NotResident { vaddr: 0 })
        ));
    }

    #[test]
    fn resident_stack_page_translates_or_reports_missing_capability() {
        let local = [7u8; 64];
        let addr = std::hint::black_box(&local).as_ptr();
        match virt_to_phys(addr) {
            Ok(phys) => {
                assert_ne!(phys >> 12, 0);
                assert_eq!(phys & 0xfff, addr as u64 & 0xfff);
            }
            Err(Error::PhysicalAddressHidden { .. }) => {
                assert!(!has_cap_sys_admin(), "CAP_SYS_ADMIN must see PFNs");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
}
