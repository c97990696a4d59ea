//! Wild DMA: the device follows PRP2 as a list when it is not one, reads past the end
//! of a list page and reads random IOVAs. Only reads: what a device writes into memory
//! the driver mapped no driver can prevent. The IOMMU model refuses every read outside
//! mapped memory; the counts say how many it allowed and refused.

use rand::Rng;

use super::{bump, Hostile};
use crate::iommu::{MemView, IOVA_LIMIT};

/// Entries of one PRP list page the walk follows at most.
const WALK_ENTRIES: u64 = 16;

impl Hostile {
    /// Before executing a command with data pointers `prp1`/`prp2`, sometimes reads host
    /// memory the command never offered.
    pub(crate) fn wild_walk(&self, view: &mut MemView, prp1: u64, prp2: u64) {
        let c = &self.counters;
        let Some((kind, random)) = self.maybe(&c.dma_walks, &c.dma_walks_wild, |rng| {
            (rng.gen_range(0..3), rng.gen::<u64>() & IOVA_LIMIT)
        }) else {
            return;
        };
        let mut read = |iova: u64| -> Option<u64> {
            match view.read_u64(iova) {
                Ok(v) => {
                    bump(&c.wild_reads_allowed);
                    Some(v)
                }
                Err(_) => {
                    bump(&c.wild_reads_refused);
                    None
                }
            }
        };
        match kind {
            // PRP2 as a list, and every entry in it as a data pointer.
            0 => {
                for i in 0..WALK_ENTRIES {
                    match read((prp2 & !7).wrapping_add(8 * i)) {
                        Some(entry) => {
                            read(entry & !7);
                        }
                        None => break,
                    }
                }
            }
            // Past the end of the page PRP2 or PRP1 names.
            1 => {
                let page_end = |a: u64| (a | 0xfff).wrapping_add(1);
                read(page_end(prp2));
                read(page_end(prp1));
            }
            _ => {
                read(random & !7);
            }
        }
    }
}
