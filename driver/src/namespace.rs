//! Active namespaces as the driver uses them on the I/O path.

use crate::pi::Protection;
use crate::spec::identify::{CommandSetId, IdentifyNamespace, IdentifyNamespaceNvm};
use crate::zns::ZonedInfo;

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
    /// The NVM Command Set Identify Namespace data (CNS 05h: each format's guard size
    /// and storage tag size), read when the controller reports extended LBA formats
    /// (CTRATT.ELBAS); `None` means every format uses the 16-bit guard.
    pub nvm: Option<Box<IdentifyNamespaceNvm>>,
    /// The namespace's I/O command set (the CSI of its descriptor list; NVM when the
    /// controller does not report one). I/O to a command set the driver does not
    /// implement is refused with [`crate::Error::UnsupportedCommandSet`].
    pub command_set: CommandSetId,
    /// Zone geometry and limits of a zoned namespace (CSI 02h); `None` otherwise.
    pub zoned: Option<ZonedInfo>,
}

impl Namespace {
    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.lba_size))
    }
}

/// The I/O path's view of a namespace: its size and what a command's buffers must hold
/// per block, decoded once from the in-use format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsGeometry {
    pub nsid: u32,
    /// log2 of the data bytes per block.
    pub lba_shift: u32,
    pub blocks: u64,
    /// Data-buffer bytes per block: data plus metadata for extended LBAs (520, 4104,
    /// 4160: not a power of two).
    pub block_bytes: u32,
    /// Separate-buffer (MPTR) metadata bytes per block; 0 for extended or no metadata.
    pub separate_md: u16,
    /// Protection information is enabled and is the whole metadata: with PRACT the
    /// controller inserts and strips it and no metadata moves.
    pub pi_only: bool,
    /// The protection information layout, when the namespace has one the driver can
    /// fill commands for.
    pub pi: Option<Protection>,
    /// The format is reserved or inconsistent (`IdentifyNamespace::format` failed),
    /// or the namespace's command set is one the driver does not implement.
    pub bad_format: bool,
    /// The namespace's command set (CSI).
    pub command_set: CommandSetId,
    /// The driver cannot do I/O in the namespace's command set (one it does not
    /// implement, or a zoned namespace whose zone data could not be read).
    pub unusable_set: bool,
    /// Blocks per zone of a zoned namespace; 0 when it is not zoned.
    pub zone_blocks: u64,
    /// Largest Zone Append in bytes (ZASL, else no limit beyond the transfer size).
    pub zone_append_bytes: u64,
}

impl NsGeometry {
    fn of(n: &Namespace) -> Self {
        let mut g = NsGeometry {
            nsid: n.nsid,
            lba_shift: n.lba_size.trailing_zeros(),
            blocks: n.blocks,
            block_bytes: n.lba_size,
            separate_md: 0,
            pi_only: false,
            pi: None,
            bad_format: true,
            command_set: n.command_set,
            unusable_set: !is_usable(n),
            zone_blocks: n.zoned.map_or(0, |z| z.zone_size_blocks),
            zone_append_bytes: n.zoned.and_then(|z| z.zasl_bytes).unwrap_or(u64::MAX),
        };
        if g.unusable_set {
            return g;
        }
        // An inconsistent protection format (a reserved guard format, metadata
        // smaller than its tuple) leaves the namespace unusable; one the driver cannot
        // generate tuples for is used without its help.
        let pi = match Protection::of(n) {
            Ok(pi) => Ok(pi),
            Err(crate::Error::UnsupportedProtection { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        if let (Ok(f), Ok(pi)) = (n.identify.format(), pi) {
            if f.data_size == n.lba_size {
                g.block_bytes = f.transfer_block_size();
                g.separate_md = f.separate_metadata_size();
                g.pi_only = pi.is_some_and(|p| p.is_pi_only());
                g.pi = pi;
                g.bad_format = false;
            }
        }
        g
    }

    /// Start LBA of the zone holding `lba` (a zoned namespace: `zone_blocks` is not 0).
    pub fn zone_start(&self, lba: u64) -> u64 {
        lba - lba % self.zone_blocks.max(1)
    }

    /// Data-buffer bytes per block for a command with `pract` set or not.
    #[inline]
    pub fn data_block_bytes(&self, pract: bool) -> u32 {
        if pract && self.pi_only {
            1 << self.lba_shift
        } else {
            self.block_bytes
        }
    }

    /// Separate metadata bytes per block a command must carry, with `pract` or not.
    #[inline]
    pub fn metadata_block_bytes(&self, pract: bool) -> u16 {
        if pract && self.pi_only {
            0
        } else {
            self.separate_md
        }
    }
}

/// Whether the driver can do I/O in the namespace's command set: NVM, and Zoned
/// Namespace (whose reads and writes are NVM commands) once its zones are known.
fn is_usable(n: &Namespace) -> bool {
    match n.command_set {
        CommandSetId::NVM => true,
        CommandSetId::ZONED => n.zoned.is_some(),
        _ => false,
    }
}

/// Sorted by NSID; looked up directly when NSIDs are dense (the usual 1..=n).
#[derive(Debug, Clone, Default)]
pub(crate) struct NsTable {
    entries: Vec<NsGeometry>,
}

impl NsTable {
    pub fn new(namespaces: &[Namespace]) -> Self {
        let mut entries: Vec<NsGeometry> = namespaces.iter().map(NsGeometry::of).collect();
        entries.sort_by_key(|e| e.nsid);
        NsTable { entries }
    }

    #[inline]
    pub fn get(&self, nsid: u32) -> Option<&NsGeometry> {
        let direct = (nsid as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .filter(|e| e.nsid == nsid);
        if let Some(e) = direct {
            return Some(e);
        }
        self.entries
            .binary_search_by_key(&nsid, |e| e.nsid)
            .ok()
            .map(|i| &self.entries[i])
    }
}
