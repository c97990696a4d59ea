//! DMA regions on real hugepages and real page tables.

mod common;

use std::os::unix::fs::FileExt;

use hugepages::{Backing, DmaRegion, Error, PageSize, Pagemap, RegionOptions, Sysfs};

const MIB2: usize = 2 << 20;

fn all_zero(region: &DmaRegion) -> bool {
    let mut chunk = vec![0u8; 64 << 10];
    (0..region.len()).step_by(chunk.len()).all(|off| {
        let n = chunk.len().min(region.len() - off);
        // SAFETY: `off..off + n` is in bounds of the region; no device is attached and
        // nothing else writes it.
        unsafe { std::ptr::copy_nonoverlapping(region.as_ptr().add(off), chunk.as_mut_ptr(), n) };
        chunk[..n].iter().all(|&b| b == 0)
    })
}

#[test]
fn hugepage_region_is_aligned_zeroed_and_rounded_to_whole_pages() {
    let Some(_pages) = common::hugepages(2) else {
        return;
    };
    let region = DmaRegion::new(MIB2 + 1, &RegionOptions::default()).unwrap();
    assert_eq!(region.backing(), Backing::HugePages(PageSize::SIZE_2M));
    assert_eq!(region.page_size(), PageSize::SIZE_2M);
    assert_eq!(region.len(), 2 * MIB2);
    assert_eq!(region.as_ptr() as usize % MIB2, 0);
    assert!(region.fd().is_none());
    assert!(all_zero(&region));
}

#[test]
fn hugepage_region_is_physically_contiguous_within_each_hugepage() {
    let Some(_pages) = common::hugepages(2) else {
        return;
    };
    let region = DmaRegion::new(2 * MIB2, &RegionOptions::default()).unwrap();
    assert_eq!(region.backing(), Backing::HugePages(PageSize::SIZE_2M));
    let pagemap = Pagemap::open().unwrap();
    if !common::has_cap_sys_admin() {
        assert!(matches!(
            pagemap.pfn(region.as_ptr()),
            Err(Error::PhysicalAddressHidden { .. })
        ));
        eprintln!("SKIPPED contiguity check: no CAP_SYS_ADMIN, pagemap hides PFNs");
        return;
    }
    for huge in 0..2 {
        let base = huge * MIB2;
        let first = pagemap.pfn(region.as_ptr().wrapping_add(base)).unwrap();
        assert_ne!(first, 0);
        // A 2 MiB page starts on a 2 MiB physical boundary.
        assert_eq!(first % 512, 0, "hugepage {huge} starts at PFN {first:#x}");
        for page in 1..512 {
            let pfn = pagemap
                .pfn(region.as_ptr().wrapping_add(base + page * 4096))
                .unwrap();
            assert_eq!(
                pfn,
                first + page as u64,
                "4 KiB page {page} of hugepage {huge}"
            );
        }
    }
    let phys = region.phys_addr(0x1234).unwrap();
    assert_eq!(phys, pagemap.pfn(region.as_ptr()).unwrap() * 4096 + 0x1234);
    assert!(matches!(
        region.phys_addr(region.len()),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn shared_region_is_a_hugetlb_memfd_seeing_the_same_bytes() {
    let Some(_pages) = common::hugepages(1) else {
        return;
    };
    let options = RegionOptions {
        shared: true,
        ..RegionOptions::default()
    };
    let region = DmaRegion::new(4096, &options).unwrap();
    assert_eq!(region.backing(), Backing::HugePages(PageSize::SIZE_2M));
    let file = std::fs::File::from(region.fd().unwrap().try_clone_to_owned().unwrap());
    assert_eq!(file.metadata().unwrap().len(), MIB2 as u64);
    // SAFETY: in bounds; nothing else accesses the region.
    unsafe {
        region
            .as_ptr()
            .add(MIB2 - 3)
            .copy_from_nonoverlapping(b"abc".as_ptr(), 3)
    };
    let mut back = [0u8; 3];
    file.read_exact_at(&mut back, (MIB2 - 3) as u64).unwrap();
    assert_eq!(&back, b"abc");
}

#[test]
fn small_pages_asked_for_outright_are_resident_and_zeroed() {
    let options = RegionOptions {
        page_size: PageSize::SIZE_4K,
        ..RegionOptions::default()
    };
    let region = DmaRegion::new(10_000, &options).unwrap();
    assert_eq!(region.backing(), Backing::SmallPages);
    assert_eq!(region.page_size(), PageSize::SIZE_4K);
    assert_eq!(region.len(), 12288);
    assert!(all_zero(&region));
    let pagemap = Pagemap::open().unwrap();
    for page in 0..3 {
        match pagemap.pfn(region.as_ptr().wrapping_add(page * 4096)) {
            Ok(pfn) => assert_ne!(pfn, 0),
            Err(Error::PhysicalAddressHidden { .. }) => assert!(!common::has_cap_sys_admin()),
            Err(other) => panic!("page {page} not resident: {other}"),
        }
    }
}

#[test]
fn zero_length_region_is_refused() {
    assert!(matches!(
        DmaRegion::new(0, &RegionOptions::default()),
        Err(Error::InvalidLength { len: 0 })
    ));
}

/// With no 1 GiB page free, a region asking for one either fails with a message saying
/// how to reserve some, or falls back to small pages, as the options choose.
#[test]
fn gigantic_pages_unavailable_fall_back_or_fail_as_the_options_choose() {
    let pool = Sysfs::default().pool(PageSize::SIZE_1G);
    if pool.as_ref().is_ok_and(|p| p.available() > 0) {
        eprintln!("SKIPPED: 1 GiB hugepages are free here; this test needs none free");
        return;
    }
    let strict = RegionOptions {
        page_size: PageSize::SIZE_1G,
        allow_fallback: false,
        shared: false,
        pinned: true,
    };
    let err = DmaRegion::new(MIB2, &strict).unwrap_err();
    if pool.is_ok() {
        assert!(
            matches!(err, Error::NoFreeHugepages { needed: 1, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with("no free 1 GiB hugepages"), "{msg}");
        assert!(msg.contains("nvme-setup hugepages --count"), "{msg}");
        assert!(msg.contains("hugepages-1048576kB/nr_hugepages"), "{msg}");
    } else {
        assert!(matches!(err, Error::UnsupportedPageSize { .. }), "{err}");
    }
    let lenient = RegionOptions {
        allow_fallback: true,
        ..strict
    };
    let region = DmaRegion::new(MIB2 + 1, &lenient).unwrap();
    assert_eq!(region.backing(), Backing::SmallPages);
    assert_eq!(region.page_size(), PageSize::SIZE_4K);
    assert_eq!(region.len(), MIB2 + 4096);
    // Still aligned as the caller asked, so IOVA and host alignment can match.
    assert_eq!(region.as_ptr() as usize % (1 << 30), 0);
    assert!(all_zero(&region));
}
