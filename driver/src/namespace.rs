//! Active namespaces as the driver uses them on the I/O path.

use crate::spec::identify::IdentifyNamespace;

/// One active namespace.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Namespace ID.
    pub nsid: u32,
    /// Bytes per logical block.
    pub lba_size: u32,
    /// Namespace size in logical blocks (NSZE).
    pub blocks: u64,
    /// Metadata bytes per block of the active format.
    pub metadata_size: u16,
    /// The Identify Namespace data.
    pub identify: Box<IdentifyNamespace>,
}

impl Namespace {
    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.lba_size))
    }
}

/// The I/O path's view of the namespaces: NSID → block size and size, without locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsGeometry {
    pub nsid: u32,
    pub lba_shift: u32,
    pub blocks: u64,
}

/// Sorted by NSID; looked up directly when NSIDs are dense (the usual 1..=n).
#[derive(Debug, Clone, Default)]
pub(crate) struct NsTable {
    entries: Vec<NsGeometry>,
}

impl NsTable {
    pub fn new(namespaces: &[Namespace]) -> Self {
        let mut entries: Vec<NsGeometry> = namespaces
            .iter()
            .map(|n| NsGeometry {
                nsid: n.nsid,
                lba_shift: n.lba_size.trailing_zeros(),
                blocks: n.blocks,
            })
            .collect();
        entries.sort_by_key(|e| e.nsid);
        NsTable { entries }
    }

    #[inline]
    pub fn get(&self, nsid: u32) -> Option<NsGeometry> {
        let direct = (nsid as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .filter(|e| e.nsid == nsid);
        if let Some(e) = direct {
            return Some(*e);
        }
        self.entries
            .binary_search_by_key(&nsid, |e| e.nsid)
            .ok()
            .map(|i| self.entries[i])
    }
}
