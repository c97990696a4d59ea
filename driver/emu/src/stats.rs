//! Counters: per queue (no shared cache line on the hot path) and controller wide.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept per submission queue slot, summed on demand.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QueueCounters {
    pub commands: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub other_io: u64,
    pub failed: u64,
    pub dma_errors: u64,
    /// 512-byte units read by Read (SMART Data Units Read before scaling).
    pub read_units: u64,
    /// 512-byte units written by Write.
    pub write_units: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl QueueCounters {
    pub(crate) fn add(&mut self, o: &QueueCounters) {
        self.commands += o.commands;
        self.reads += o.reads;
        self.writes += o.writes;
        self.flushes += o.flushes;
        self.other_io += o.other_io;
        self.failed += o.failed;
        self.dma_errors += o.dma_errors;
        self.read_units += o.read_units;
        self.write_units += o.write_units;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
    }
}

/// Controller-wide counters for rare events.
#[derive(Debug, Default)]
pub(crate) struct GlobalCounters {
    pub dma_errors: AtomicU64,
    pub invalid_doorbells: AtomicU64,
    pub power_cuts: AtomicU64,
    pub lost_blocks: AtomicU64,
    pub resets: AtomicU64,
}

impl GlobalCounters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the controller's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EmuStats {
    /// Commands fetched from any submission queue (admin included).
    pub commands: u64,
    /// Admin commands fetched.
    pub admin_commands: u64,
    /// Read commands executed.
    pub reads: u64,
    /// Write commands executed.
    pub writes: u64,
    /// Flush commands executed.
    pub flushes: u64,
    /// Other I/O commands (Write Zeroes, Dataset Management, Verify, Compare, unknown).
    pub other_io: u64,
    /// Commands completed with a status other than success.
    pub failed: u64,
    /// DMA accesses that hit an unmapped IOVA (each fails its command or, for queue
    /// entries, the controller).
    pub dma_errors: u64,
    /// Doorbell writes with an invalid queue or value.
    pub invalid_doorbell_writes: u64,
    /// Bytes read by Read commands.
    pub bytes_read: u64,
    /// Bytes written by Write commands.
    pub bytes_written: u64,
    /// Power cuts simulated.
    pub power_cuts: u64,
    /// Cached blocks lost to power cuts.
    pub lost_blocks: u64,
    /// Controller resets (CC.EN 1 to 0, or function reset).
    pub resets: u64,
}
