//! Per-command flags of read and write commands.

bitflags::bitflags! {
    /// Flags of one read or write command.
    ///
    /// Each flag's value is its bit in command dword 12 of the NVM Read and Write
    /// commands (NVM Command Set 1.0, §3.2.4 and §3.2.6), so Limited Retry (bit 31) and
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
    }
}
