//! [`Kiocb`]: one direct-I/O request's position and flags (Linux's `struct kiocb`).

bitflags::bitflags! {
    /// Per-request flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct KiocbFlags: u32 {
        /// Data must be durable when the request completes (O_DSYNC).
        const DSYNC = 1 << 0;
        /// Data and metadata must be durable (O_SYNC); implies a cache flush.
        const SYNC = 1 << 1;
        /// Poll for the completion in the submitting thread instead of sleeping.
        const HIPRI = 1 << 2;
        /// Fail with `Again` rather than block.
        const NOWAIT = 1 << 3;
    }
}

/// A direct-I/O request: where it goes and how it must complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kiocb {
    /// File position in bytes; advanced by the bytes transferred on success.
    pub pos: u64,
    /// Request flags.
    pub flags: KiocbFlags,
}

impl Kiocb {
    /// A request at `pos` with `flags`.
    pub fn new(pos: u64, flags: KiocbFlags) -> Self {
        Kiocb { pos, flags }
    }

    /// Whether the request needs data durability at completion (DSYNC or SYNC).
    pub fn is_dsync(&self) -> bool {
        self.flags.intersects(KiocbFlags::DSYNC | KiocbFlags::SYNC)
    }
}
