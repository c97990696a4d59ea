//! The DMA allocator over real regions, with the null mapper standing in for an IOMMU.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use hugepages::{
    AllocatorOptions, Backing, DmaAllocator, DmaBuffer, DmaMapper, DmaSegment, Error, IovaRange,
    MapError, NullMapper, PageSize, Pagemap, RegionOptions,
};

const MIB2: usize = 2 << 20;

fn allocator(mapper: &Arc<NullMapper>, options: AllocatorOptions) -> DmaAllocator {
    DmaAllocator::new(mapper.clone(), options).unwrap()
}

fn small_pages(region_size: usize) -> AllocatorOptions {
    AllocatorOptions {
        region_size,
        region: RegionOptions {
            page_size: PageSize::SIZE_4K,
            ..RegionOptions::default()
        },
        ..AllocatorOptions::default()
    }
}

/// The device's view: the host address the IOMMU model maps the buffer's IOVAs to.
fn device_view(mapper: &NullMapper, buf: &DmaBuffer) -> *mut u8 {
    mapper
        .translate(buf.iova(), buf.len())
        .expect("buffer IOVAs mapped contiguously")
}

#[test]
fn every_allocation_is_aligned_in_host_and_iova_space() {
    let Some(_pages) = common::hugepages(2) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, AllocatorOptions::default());
    let mut bufs = Vec::new();
    for (len, align) in [
        (1, 1),
        (4096, 4096),
        (100, 64),
        (520, 512),
        (64 << 10, 4096),
        (3, 8),
        (8192, 8192),
        (4096, 4096),
        (1 << 20, 1 << 20),
    ] {
        let buf = alloc.alloc(len, align).unwrap();
        assert_eq!(buf.len(), len);
        assert_eq!(buf.iova() % align as u64, 0, "iova of {len}/{align}");
        assert_eq!(buf.as_ptr() as usize % align, 0, "ptr of {len}/{align}");
        assert_eq!(buf.as_ptr() as usize % 64, 0);
        assert_eq!(device_view(&mapper, &buf), buf.as_ptr());
        assert_eq!(buf.backing(), Backing::HugePages(PageSize::SIZE_2M));
        bufs.push(buf);
    }
    // No two buffers share a byte.
    let mut ranges: Vec<_> = bufs.iter().map(|b| (b.iova(), b.len() as u64)).collect();
    ranges.sort();
    assert!(ranges.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    assert!(matches!(
        alloc.alloc(64, 3),
        Err(Error::InvalidAlignment { align: 3, .. })
    ));
    assert!(matches!(
        alloc.alloc(64, 4 << 20),
        Err(Error::InvalidAlignment { .. })
    ));
    assert!(matches!(
        alloc.alloc(0, 64),
        Err(Error::InvalidLength { len: 0 })
    ));
}

#[test]
fn buffers_are_zeroed_even_when_space_is_reused() {
    let Some(_pages) = common::hugepages(1) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, AllocatorOptions::default());
    let mut first = alloc.alloc_pages(8192).unwrap();
    assert!(first.compare(0, &[0u8; 8192]).unwrap());
    first.fill(0, 8192, 0xa5).unwrap();
    let iova = first.iova();
    drop(first);
    let second = alloc.alloc_pages(8192).unwrap();
    assert_eq!(second.iova(), iova, "freed space is reused first");
    assert!(second.compare(0, &[0u8; 8192]).unwrap());
}

#[test]
fn freed_buffers_coalesce_so_a_whole_region_fits_again() {
    let Some(_pages) = common::hugepages(1) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, AllocatorOptions::default());
    let quarters: Vec<_> = (0..4)
        .map(|_| alloc.alloc(MIB2 / 4, 4096).unwrap())
        .collect();
    let stats = alloc.stats();
    assert_eq!((stats.regions, stats.free_bytes), (1, 0));
    let region_iova = alloc.regions()[0].iova;
    // Free out of order: middle ones first, then the ends.
    let mut quarters = quarters.into_iter().map(Some).collect::<Vec<_>>();
    for i in [2, 1, 3, 0] {
        quarters[i] = None;
    }
    assert_eq!(alloc.stats().free_bytes, MIB2);
    let whole = alloc.alloc(MIB2, 4096).unwrap();
    assert_eq!(whole.iova(), region_iova);
    assert_eq!(alloc.stats().regions, 1, "no new region needed");
}

#[test]
fn allocator_grows_by_regions_and_large_requests_get_their_own() {
    let Some(_pages) = common::hugepages(6) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, AllocatorOptions::default());
    let a = alloc.alloc(MIB2, 4096).unwrap();
    let b = alloc.alloc(4096, 4096).unwrap();
    assert_eq!(alloc.stats().regions, 2);
    let big = alloc.alloc(5 << 20, 4096).unwrap();
    assert_eq!(big.len(), 5 << 20);
    let regions = alloc.regions();
    assert_eq!(regions.len(), 3);
    assert_eq!(
        regions[2].len,
        6 << 20,
        "dedicated region rounded to hugepages"
    );
    assert_eq!(regions[2].iova, big.iova());
    // The whole buffer is one contiguous IOVA range mapping onto its host memory.
    assert_eq!(device_view(&mapper, &big), big.as_ptr());
    // IOVAs ascend with the regions, aligned to the page size, skipping the zero page.
    assert!(regions.windows(2).all(|w| w[0].iova < w[1].iova));
    assert!(regions
        .iter()
        .all(|r| r.iova % MIB2 as u64 == 0 && r.iova != 0));
    assert_eq!(mapper.mappings().len(), 3);
    drop((a, b, big));
}

#[test]
fn byte_limit_is_a_typed_error() {
    let Some(_pages) = common::hugepages(1) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let options = AllocatorOptions {
        max_bytes: MIB2,
        ..AllocatorOptions::default()
    };
    let alloc = allocator(&mapper, options);
    let _all = alloc.alloc(MIB2, 4096).unwrap();
    let err = alloc.alloc(64, 64).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { requested, in_use, max_bytes }
            if requested == MIB2 && in_use == MIB2 && max_bytes == MIB2),
        "{err}"
    );
    assert!(err.to_string().starts_with("DMA memory limit reached"));
}

#[test]
fn iova_exhaustion_is_a_typed_error() {
    let mapper = Arc::new(NullMapper::with_ranges(vec![0x10_0000..=0x2f_ffff]));
    let alloc = allocator(&mapper, small_pages(1 << 20));
    let _a = alloc.alloc(1 << 20, 4096).unwrap();
    let _b = alloc.alloc(1 << 20, 4096).unwrap();
    assert!(matches!(
        alloc.alloc(64, 64),
        Err(Error::IovaExhausted { len: 0x10_0000, .. })
    ));
}

#[test]
fn regions_avoid_the_interrupt_window_even_when_the_mapper_offers_it() {
    let mapper = Arc::new(NullMapper::with_ranges(vec![0xfed0_0000..=0xfeff_ffff]));
    let alloc = allocator(&mapper, small_pages(1 << 20));
    let a = alloc.alloc(1 << 20, 4096).unwrap();
    let b = alloc.alloc(1 << 20, 4096).unwrap();
    assert_eq!(a.iova(), 0xfed0_0000);
    assert_eq!(b.iova(), 0xfef0_0000, "0xfee00000..=0xfeefffff skipped");
    assert!(matches!(
        alloc.alloc(64, 64),
        Err(Error::IovaExhausted { .. })
    ));
}

#[test]
fn forced_small_pages_are_visible_in_buffer_properties() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let buf = alloc.alloc_pages(4096).unwrap();
    assert_eq!(buf.backing(), Backing::SmallPages);
    assert_eq!(buf.page_size(), PageSize::SIZE_4K);
    assert_eq!(alloc.stats().hugepage_regions, 0);
    assert_eq!(alloc.regions()[0].len, 64 << 10);
}

#[test]
fn regions_are_unmapped_only_when_allocator_and_buffers_are_gone() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let buf = alloc.alloc(100, 64).unwrap();
    let clone = alloc.clone();
    drop(alloc);
    assert_eq!(mapper.mappings().len(), 1);
    drop(clone);
    assert_eq!(
        mapper.mappings().len(),
        1,
        "the buffer keeps its region mapped"
    );
    let mut buf = buf;
    buf.write(0, b"still mapped").unwrap();
    assert!(buf.compare(0, b"still mapped").unwrap());
    drop(buf);
    assert!(mapper.mappings().is_empty());
}

#[test]
fn trim_releases_only_regions_without_buffers() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let keep = alloc.alloc(64 << 10, 4096).unwrap();
    let gone = alloc.alloc(64 << 10, 4096).unwrap();
    let gone_iova = gone.iova();
    drop(gone);
    assert_eq!(alloc.trim(), 64 << 10);
    assert_eq!(mapper.mappings(), vec![(keep.iova(), 64 << 10)]);
    assert_eq!(alloc.stats().region_bytes, 64 << 10);
    // The released IOVAs are handed out again.
    let again = alloc.alloc(4096, 4096).unwrap();
    assert_eq!(again.iova(), gone_iova);
}

/// A mapper that refuses the first IOVAs it is offered and can be told to fail.
struct Picky {
    inner: NullMapper,
    taken_below: u64,
    fail: bool,
}

impl DmaMapper for Picky {
    fn iova_ranges(&self) -> Vec<IovaRange> {
        self.inner.iova_ranges()
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<(), MapError> {
        if self.fail {
            return Err(MapError::Os {
                op: "VFIO_IOMMU_MAP_DMA",
                iova,
                len,
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        if iova < self.taken_below {
            return Err(MapError::Overlap { iova, len });
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.inner.map(vaddr, len, iova) }
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<(), MapError> {
        self.inner.unmap(iova, len)
    }
}

#[test]
fn mapper_clash_moves_the_region_to_the_next_free_iova() {
    let mapper = Arc::new(Picky {
        inner: NullMapper::new(),
        taken_below: 0x5_1000,
        fail: false,
    });
    let alloc = DmaAllocator::new(mapper.clone(), small_pages(64 << 10)).unwrap();
    // 64 KiB regions from 0x1000 on: 0x1000, 0x11000, .. 0x41000 clash, 0x51000 fits.
    let buf = alloc.alloc(4096, 4096).unwrap();
    assert_eq!(buf.iova(), 0x5_1000);
    // The refused IOVAs were not kept: a later region tries them again and moves on.
    let second = alloc.alloc(64 << 10, 4096).unwrap();
    assert_eq!(second.iova(), 0x6_1000);
    assert_eq!(mapper.inner.mappings().len(), 2);
}

#[test]
fn endless_mapper_clashes_end_in_a_typed_error() {
    let mapper = Arc::new(Picky {
        inner: NullMapper::new(),
        taken_below: 1 << 40,
        fail: false,
    });
    let alloc = DmaAllocator::new(mapper.clone(), small_pages(64 << 10)).unwrap();
    let err = alloc.alloc(64, 64).unwrap_err();
    assert!(matches!(err, Error::Map(MapError::Overlap { .. })), "{err}");
    assert!(mapper.inner.mappings().is_empty());
}

#[test]
fn mapper_refusal_is_a_typed_error_and_maps_nothing() {
    let mapper = Arc::new(Picky {
        inner: NullMapper::new(),
        taken_below: 0,
        fail: true,
    });
    let alloc = DmaAllocator::new(mapper.clone(), small_pages(64 << 10)).unwrap();
    let err = alloc.alloc(64, 64).unwrap_err();
    assert!(matches!(err, Error::Map(MapError::Os { .. })), "{err}");
    assert_eq!(alloc.stats().regions, 0);
}

#[test]
fn bad_region_size_is_rejected() {
    let mapper = Arc::new(NullMapper::new());
    for region_size in [0, 4096] {
        let options = AllocatorOptions {
            region_size,
            ..AllocatorOptions::default()
        };
        assert!(matches!(
            DmaAllocator::new(mapper.clone(), options),
            Err(Error::InvalidOptions { .. })
        ));
    }
}

/// Runs an access that is out of range: a bug, so it panics in debug builds (`None`)
/// and returns an error in release builds (`Some`, for the caller to match).
fn refused<T>(access: impl FnOnce() -> T) -> Option<T> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(access));
    if cfg!(debug_assertions) {
        assert!(
            r.is_err(),
            "an out-of-range access must panic in debug builds"
        );
        None
    } else {
        Some(r.expect("an out-of-range access must not panic in release builds"))
    }
}

#[test]
fn buffer_accessors_are_bounds_checked_and_little_endian() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let mut buf = alloc.alloc(100, 64).unwrap();
    buf.write_u32(4, 0x0403_0201).unwrap();
    buf.write_u64(8, 0x0c0b_0a09_0807_0605).unwrap();
    let mut bytes = [0u8; 12];
    buf.read(4, &mut bytes).unwrap();
    assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(buf.read_u32(4).unwrap(), 0x0403_0201);
    assert_eq!(buf.read_u64(8).unwrap(), 0x0c0b_0a09_0807_0605);
    // What the device sees at the buffer's IOVA is what was written.
    let dev = device_view(&mapper, &buf);
    // SAFETY: `dev` maps the buffer's bytes; nothing writes them concurrently.
    assert_eq!(unsafe { dev.add(4).read() }, 1);

    buf.fill(90, 10, 0xee).unwrap();
    assert!(buf.compare(90, &[0xee; 10]).unwrap());
    assert!(!buf.compare(89, &[0xee; 10]).unwrap());

    let oob = |r: Option<Result<(), Error>>| {
        r.is_none_or(|r| matches!(r, Err(Error::OutOfBounds { size: 100, .. })))
    };
    assert!(oob(refused(|| buf.write(99, b"ab"))));
    assert!(oob(refused(|| buf.fill(0, 101, 0))));
    assert!(oob(refused(|| buf.fill(usize::MAX, 2, 0))));
    assert!(oob(refused(|| buf.read(100, &mut [0u8; 1]))));
    assert!(oob(refused(|| buf.write_u32(97, 0))));
    assert!(oob(refused(|| buf.read_u64(96).map(drop))));
    assert!(oob(refused(|| buf.compare(50, &[0; 51]).map(drop))));
    assert!(oob(refused(|| buf.segment(0, 101).map(drop))));
    assert!(refused(|| buf.read_u32(2)).is_none_or(|r| matches!(
        r,
        Err(Error::Misaligned {
            offset: 2,
            width: 4
        })
    )));
    assert!(refused(|| buf.write_u64(4, 0)).is_none_or(|r| matches!(
        r,
        Err(Error::Misaligned {
            offset: 4,
            width: 8
        })
    )));
    assert!(
        buf.read(100, &mut []).is_ok(),
        "empty access at the end is in bounds"
    );
}

#[test]
fn segments_describe_contiguous_sub_ranges() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let buf = alloc.alloc(16384, 4096).unwrap();
    let seg: DmaSegment = buf.segment(4096 + 10, 5000).unwrap();
    assert_eq!(seg.iova, buf.iova() + 4106);
    assert_eq!(seg.len, 5000);
    assert_eq!(seg.ptr, buf.as_ptr().wrapping_add(4106));
    assert_eq!(mapper.translate(seg.iova, seg.len), Some(seg.ptr));
    let whole = buf.as_segment();
    assert_eq!((whole.iova, whole.len), (buf.iova(), 16384));
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DmaAllocator>();
    send_sync::<DmaBuffer>();
    send_sync::<DmaSegment>();
}

#[test]
fn concurrent_allocation_never_hands_out_the_same_bytes_twice() {
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, small_pages(64 << 10));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let alloc = alloc.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..64 {
                    let mut buf = alloc.alloc(64 * (1 + (i % 7)), 64).unwrap();
                    buf.fill(0, buf.len(), t as u8 + 1).unwrap();
                    if i % 3 == 0 {
                        drop(buf);
                    } else {
                        mine.push(buf);
                    }
                }
                for buf in &mine {
                    let expect = vec![t as u8 + 1; buf.len()];
                    assert!(buf.compare(0, &expect).unwrap(), "buffer overwritten");
                }
                mine
            })
        })
        .collect();
    let all: Vec<DmaBuffer> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut seen = BTreeSet::new();
    for buf in &all {
        for off in (0..buf.len()).step_by(64) {
            assert!(
                seen.insert(buf.iova() + off as u64),
                "IOVA handed out twice"
            );
        }
    }
}

#[test]
fn buffer_in_a_hugepage_is_physically_contiguous() {
    let Some(_pages) = common::hugepages(1) else {
        return;
    };
    let mapper = Arc::new(NullMapper::new());
    let alloc = allocator(&mapper, AllocatorOptions::default());
    let buf = alloc.alloc(256 << 10, 4096).unwrap();
    if !common::has_cap_sys_admin() {
        assert!(matches!(
            buf.phys_addr(0),
            Err(Error::PhysicalAddressHidden { .. })
        ));
        return;
    }
    let first = buf.phys_addr(0).unwrap();
    assert_ne!(first, 0);
    for off in (0..buf.len()).step_by(4096) {
        assert_eq!(buf.phys_addr(off).unwrap(), first + off as u64);
    }
    let pagemap = Pagemap::open().unwrap();
    assert_eq!(pagemap.virt_to_phys(buf.as_ptr()).unwrap(), first);
    assert!(matches!(
        buf.phys_addr(buf.len()),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn no_memory_for_a_new_region_is_a_typed_error() {
    let gigantic_free = hugepages::Sysfs::default()
        .pool(PageSize::SIZE_1G)
        .map(|p| p.available())
        .unwrap_or(0);
    if gigantic_free > 0 {
        eprintln!("SKIPPED: 1 GiB hugepages are free here; this test needs none free");
        return;
    }
    let mapper = Arc::new(NullMapper::new());
    let options = AllocatorOptions {
        region_size: 1 << 30,
        region: RegionOptions {
            page_size: PageSize::SIZE_1G,
            allow_fallback: false,
            shared: false,
            pinned: true,
        },
        ..AllocatorOptions::default()
    };
    let alloc = allocator(&mapper, options);
    let err = alloc.alloc(4096, 4096).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoFreeHugepages { .. } | Error::UnsupportedPageSize { .. }
        ),
        "{err}"
    );
    assert!(mapper.mappings().is_empty());
    assert_eq!(alloc.stats().regions, 0);
}
