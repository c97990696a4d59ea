//! Per-command flags and options of read and write commands.

bitflags::bitflags! {
    /// Flags of one read or write command.
    ///
    /// Each flag's value (except the host-only [`IoFlags::NO_RETRY`]) is its bit in
    /// command dword 12 of the NVM Read and Write commands (NVM Command Set 1.0, §3.2.4 and §3.2.6), so Limited Retry (bit 31) and
    /// the protection-information field PRINFO (PRACT bit 29, PRCHK bits 26..=28) fit
    /// beside FUA when they are offered.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct IoFlags: u32 {
        /// Force Unit Access: a write is durable (in non-volatile media) before it
        /// completes, with no Flush needed afterwards.
        const FUA = 1 << 30;
        /// Protection Information Action: on a namespace formatted with protection
        /// information the controller generates it on writes and strips it on reads.
        /// When the metadata is exactly the 8-byte tuple, no metadata moves between host
        /// and controller, so the buffers hold data only.
        const PRACT = 1 << 29;
        /// Protection Information Check, guard: the controller checks each block's
        /// guard (on writes the host's tuples, on reads the stored ones).
        const PRCHK_GUARD = 1 << 28;
        /// Protection Information Check, application tag: compared with
        /// [`IoOptions::app_tag`] under [`IoOptions::app_tag_mask`].
        const PRCHK_APP = 1 << 27;
        /// Protection Information Check, reference tag: compared with the initial
        /// reference tag (plus the block's index for types 1 and 2).
        const PRCHK_REF = 1 << 26;
        /// All three protection information checks.
        const PRCHK = Self::PRCHK_GUARD.bits() | Self::PRCHK_APP.bits() | Self::PRCHK_REF.bits();
        /// Host only, never sent to the controller: the driver does not resubmit this
        /// command after a failure (a controller reset, a transient status); its first
        /// error is reported. Its value is a bit of dword 12 the NVM Read and Write
        /// commands reserve (bit 16), cleared from the command before it is queued.
        const NO_RETRY = 1 << 16;
    }
}

/// What a read or write carries beyond its blocks and data buffer (the counterpart of
/// SPDK's `spdk_nvme_ns_cmd_ext_io_opts`).
///
/// Built with struct update syntax, `IoOptions { flags: IoFlags::FUA,
/// ..Default::default() }`, so fields added later do not break callers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoOptions {
    /// Command flags (FUA, PRACT, ...).
    pub flags: IoFlags,
    /// The separate metadata buffer (MPTR) of a namespace formatted with metadata in a
    /// separate buffer: one contiguous, dword-aligned segment of exactly `blocks` times
    /// the metadata size. `None` on every other format.
    pub metadata: Option<crate::queue::prp::Segment>,
    /// Application tag (CDW15 bits 15:0) of a namespace with protection information:
    /// what PRACT and [`crate::pi::generate`] write, and what [`IoFlags::PRCHK_APP`]
    /// compares under the mask.
    pub app_tag: u16,
    /// Application tag mask (CDW15 bits 31:16): the bits of the tag that are compared.
    pub app_tag_mask: u16,
    /// Initial logical block reference tag (CDW14; bits 47:32 in CDW3 for the 16-byte
    /// tuple). `None`: for protection types 1 and 2 the starting LBA's low bits, as
    /// Linux fills it; for type 3 zero.
    pub ref_tag: Option<u64>,
}
