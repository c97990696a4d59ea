//! Properties of the allocator under random sequences of allocations and frees.

use std::sync::Arc;

use hugepages::{
    AllocatorOptions, DmaAllocator, DmaBuffer, NullMapper, PageSize, RegionOptions,
    RESERVED_IOVA_RANGES,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc { len: usize, align_log2: u32 },
    Free { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..100_000, 0u32..13).prop_map(|(len, align_log2)| Op::Alloc { len, align_log2 }),
        2 => any::<usize>().prop_map(|index| Op::Free { index }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Live buffers never overlap, are aligned as asked in host and IOVA space, and
    /// are mapped where the device will look; freeing everything gives all bytes back.
    #[test]
    fn live_buffers_are_disjoint_aligned_and_fully_returned(ops in proptest::collection::vec(op(), 1..80)) {
        // A window straddling the MSI hole, so region IOVAs must step around it.
        let mapper = Arc::new(NullMapper::with_ranges(vec![0xfec0_0000..=0xffff_ffff]));
        let options = AllocatorOptions {
            region_size: 64 << 10,
            region: RegionOptions { page_size: PageSize::SIZE_4K, ..RegionOptions::default() },
            ..AllocatorOptions::default()
        };
        let alloc = DmaAllocator::new(mapper.clone(), options).unwrap();
        let mut live: Vec<DmaBuffer> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { len, align_log2 } => {
                    let align = 1usize << align_log2;
                    let buf = alloc.alloc(len, align).unwrap();
                    prop_assert_eq!(buf.iova() % align as u64, 0);
                    prop_assert_eq!(buf.as_ptr() as usize % align, 0);
                    prop_assert_eq!(mapper.translate(buf.iova(), len), Some(buf.as_ptr()));
                    for hole in &RESERVED_IOVA_RANGES {
                        let last = buf.iova() + len as u64 - 1;
                        prop_assert!(last < *hole.start() || buf.iova() > *hole.end());
                    }
                    live.push(buf);
                }
                Op::Free { index } if !live.is_empty() => {
                    live.swap_remove(index % live.len());
                }
                Op::Free { .. } => {}
            }
            let mut spans: Vec<(u64, u64)> =
                live.iter().map(|b| (b.iova(), b.iova() + b.len() as u64)).collect();
            spans.sort();
            prop_assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlap: {spans:x?}");
        }
        live.clear();
        let stats = alloc.stats();
        prop_assert_eq!(stats.free_bytes, stats.region_bytes);
        prop_assert_eq!(alloc.trim(), stats.region_bytes);
        prop_assert!(mapper.mappings().is_empty());
    }
}
