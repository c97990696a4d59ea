//! On-disk structures: the superblock, checkpoint headers and journal block
//! headers, each versioned and checksummed (see the crate docs for the picture).

use crate::codec::{crc32c, Dec, Enc};
use crate::error::StoreError;

/// The superblock's magic number ("NVMSTORE").
pub(crate) const SB_MAGIC: u64 = u64::from_le_bytes(*b"NVMSTORE");
/// A checkpoint header's magic number ("NVMSCKPT").
pub(crate) const CKPT_MAGIC: u64 = u64::from_le_bytes(*b"NVMSCKPT");
/// A journal block's magic number ("JRNL").
pub(crate) const JRNL_MAGIC: u32 = u32::from_le_bytes(*b"JRNL");
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a journal block's header.
pub(crate) const JBLOCK_HEADER: usize = 44;

/// Where the store's areas lie, in store blocks from the region's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Byte offset of the region on the namespace.
    pub base: u64,
    /// Store block size in bytes.
    pub block_size: u32,
    /// Blocks in the region.
    pub total_blocks: u64,
    /// Blocks of each of the two checkpoint areas.
    pub checkpoint_blocks: u64,
    /// Blocks of the journal.
    pub journal_blocks: u64,
    /// Blocks of the data area (the rest).
    pub data_blocks: u64,
}

impl Geometry {
    /// The first block of checkpoint area `area` (0 = A, 1 = B).
    pub fn checkpoint_start(&self, area: usize) -> u64 {
        1 + area as u64 * self.checkpoint_blocks
    }
    /// The first journal block.
    pub fn journal_start(&self) -> u64 {
        1 + 2 * self.checkpoint_blocks
    }
    /// The first data block.
    pub fn data_start(&self) -> u64 {
        self.journal_start() + self.journal_blocks
    }
    /// The device byte address of store block `block`.
    pub fn addr(&self, block: u64) -> u64 {
        self.base + block * u64::from(self.block_size)
    }
    /// The device byte address of data block `dev`.
    pub fn data_addr(&self, dev: u64) -> u64 {
        self.addr(self.data_start() + dev)
    }
}

/// The superblock: written once, at format, with FUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// The layout.
    pub geo: Geometry,
    /// This format's identity; every checkpoint and journal block carries it, so
    /// blocks left by an earlier format of the region are never trusted.
    pub uuid: [u8; 16],
}

impl Superblock {
    pub(crate) fn format_id(&self) -> u64 {
        let mut a = [0; 8];
        a.copy_from_slice(&self.uuid[..8]);
        u64::from_le_bytes(a)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u64(SB_MAGIC);
        e.u32(FORMAT_VERSION);
        e.u32(self.geo.block_size);
        e.0.extend_from_slice(&self.uuid);
        e.u64(self.geo.base);
        e.u64(self.geo.total_blocks);
        e.u64(self.geo.checkpoint_blocks);
        e.u64(self.geo.journal_blocks);
        e.u64(self.geo.data_blocks);
        let crc = crc32c(&e.0);
        e.u32(crc);
        e.0
    }

    /// Decodes and validates a superblock read from a region at `base`.
    pub(crate) fn decode(b: &[u8], base: u64) -> Result<Superblock, StoreError> {
        let bad = |reason| StoreError::BadSuperblock { reason };
        let mut d = Dec::new(b);
        if d.u64().map_err(bad)? != SB_MAGIC {
            return Err(bad("the magic number is not a store's"));
        }
        let version = d.u32().map_err(bad)?;
        let block_size = d.u32().map_err(bad)?;
        let mut uuid = [0; 16];
        for u in &mut uuid {
            *u = d.u8().map_err(bad)?;
        }
        let geo = Geometry {
            base: d.u64().map_err(bad)?,
            block_size,
            total_blocks: d.u64().map_err(bad)?,
            checkpoint_blocks: d.u64().map_err(bad)?,
            journal_blocks: d.u64().map_err(bad)?,
            data_blocks: d.u64().map_err(bad)?,
        };
        const LEN: usize = 8 + 4 + 4 + 16 + 8 * 5;
        let crc = d.u32().map_err(bad)?;
        if crc32c(&b[..LEN]) != crc {
            return Err(bad("its checksum does not match (damaged)"));
        }
        if version != FORMAT_VERSION {
            return Err(bad("it was written by an unknown format version"));
        }
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            return Err(bad("its block size is not a power of two in 512..=65536"));
        }
        if geo.base != base {
            return Err(bad("it was formatted for a region at another offset"));
        }
        let sum = 1u64
            .checked_add(geo.checkpoint_blocks.saturating_mul(2))
            .and_then(|s| s.checked_add(geo.journal_blocks))
            .and_then(|s| s.checked_add(geo.data_blocks));
        if sum != Some(geo.total_blocks) || geo.checkpoint_blocks < 2 || geo.journal_blocks < 2 {
            return Err(bad("its areas do not add up to the region"));
        }
        Ok(Superblock { geo, uuid })
    }
}

/// A checkpoint area's header (the area's first block; the payload follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointHeader {
    pub format_id: u64,
    /// This mount's random identity: only journal blocks carrying it are replayed.
    pub epoch: u64,
    /// The sequence number of the last journal transaction the snapshot holds.
    pub seq: u64,
    /// The journal block (0-based in the journal) where replay starts.
    pub journal_head: u64,
    pub payload_len: u64,
    pub payload_crc: u32,
}

impl CheckpointHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u64(CKPT_MAGIC);
        e.u32(FORMAT_VERSION);
        e.u64(self.format_id);
        e.u64(self.epoch);
        e.u64(self.seq);
        e.u64(self.journal_head);
        e.u64(self.payload_len);
        e.u32(self.payload_crc);
        let crc = crc32c(&e.0);
        e.u32(crc);
        e.0
    }

    pub(crate) fn decode(b: &[u8], format_id: u64) -> Result<Self, &'static str> {
        let mut d = Dec::new(b);
        if d.u64()? != CKPT_MAGIC {
            return Err("no checkpoint magic");
        }
        let version = d.u32()?;
        let h = CheckpointHeader {
            format_id: d.u64()?,
            epoch: d.u64()?,
            seq: d.u64()?,
            journal_head: d.u64()?,
            payload_len: d.u64()?,
            payload_crc: d.u32()?,
        };
        let crc = d.u32()?;
        if crc32c(&b[..56]) != crc {
            return Err("header checksum mismatch");
        }
        if version != FORMAT_VERSION {
            return Err("unknown checkpoint version");
        }
        if h.format_id != format_id {
            return Err("left by an earlier format of the region");
        }
        Ok(h)
    }
}

/// A journal block's header; `count` blocks with one `seq` make a transaction,
/// and the last of them is its commit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournalHeader {
    /// The epoch of the checkpoint the journal continues.
    pub epoch: u64,
    pub seq: u64,
    pub index: u32,
    pub count: u32,
    /// Payload bytes in this block.
    pub used: u32,
    /// CRC-32C of the whole transaction's payload (all blocks).
    pub total_crc: u32,
}

impl JournalHeader {
    /// Fills `block` (header and payload already placed after the header) with
    /// the header and the block's checksum.
    pub(crate) fn seal(&self, block: &mut [u8]) {
        let mut e = Enc::default();
        e.u32(JRNL_MAGIC);
        e.u16(FORMAT_VERSION as u16);
        e.u16(0);
        e.u64(self.epoch);
        e.u64(self.seq);
        e.u32(self.index);
        e.u32(self.count);
        e.u32(self.used);
        e.u32(self.total_crc);
        block[..40].copy_from_slice(&e.0);
        block[40..44].fill(0);
        let crc = crc32c(block);
        block[40..44].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a journal block, checking its checksum and format identity.
    pub(crate) fn open(block: &[u8], epoch: u64) -> Result<Self, &'static str> {
        if block.len() < JBLOCK_HEADER {
            return Err("journal block too small");
        }
        let mut d = Dec::new(block);
        if d.u32()? != JRNL_MAGIC {
            return Err("no journal magic");
        }
        let version = d.u16()?;
        let _flags = d.u16()?;
        let h = JournalHeader {
            epoch: d.u64()?,
            seq: d.u64()?,
            index: d.u32()?,
            count: d.u32()?,
            used: d.u32()?,
            total_crc: d.u32()?,
        };
        let crc = d.u32()?;
        let mut copy = block.to_vec();
        copy[40..44].fill(0);
        if crc32c(&copy) != crc {
            return Err("journal block checksum mismatch");
        }
        if u32::from(version) != FORMAT_VERSION || h.epoch != epoch {
            return Err("journal block of another mount or format");
        }
        if h.used as usize > block.len() - JBLOCK_HEADER || h.index >= h.count {
            return Err("journal block header out of range");
        }
        Ok(h)
    }
}
