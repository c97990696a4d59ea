//! The opt-in command log: what the controller executed, for tests of upper layers.

use hugepages::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nvme_spec::command::Psdt;
use nvme_spec::Status;

/// One executed command as the controller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// Submission queue id (0 = admin).
    pub qid: u16,
    /// Command identifier.
    pub cid: u16,
    /// Opcode byte.
    pub opcode: u8,
    /// Namespace id.
    pub nsid: u32,
    /// Starting LBA (CDW10-11) for I/O commands that have one, else 0.
    pub slba: u64,
    /// Number of logical blocks (not zero based) for I/O commands that have one, else 0.
    pub blocks: u32,
    /// Force Unit Access bit (CDW12 bit 30) for Read, Write, Write Zeroes, Compare, Verify.
    pub fua: bool,
    /// Deallocate bit (Write Zeroes CDW12 bit 25, or Dataset Management attribute AD).
    pub deac: bool,
    /// Status the controller completed the command with (before any fault rewrote the
    /// completion; dropped or held commands log the status they would have had).
    pub status: Status,
    /// The fused operation field (CDW0.FUSE): 0 normal, 1 first and 2 second command of
    /// a fused operation.
    pub fuse: u8,
    /// The submission queue slot the command was fetched from.
    pub sq_slot: u16,
    /// How the data pointer was given (CDW0.PSDT): PRPs or an SGL, and what MPTR held.
    pub psdt: Psdt,
}

pub(crate) struct LogState {
    pub(crate) enabled: AtomicBool,
    pub(crate) entries: Mutex<Vec<LogEntry>>,
}

impl LogState {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            entries: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, entry: LogEntry) {
        lock(&self.entries).push(entry);
    }
}

/// Handle to the command log. Recording is off unless enabled (here or with `log=on`).
#[derive(Clone)]
pub struct CommandLog {
    pub(crate) state: Arc<LogState>,
}

impl CommandLog {
    /// Starts recording executed commands.
    pub fn enable(&self) {
        self.state.enabled.store(true, Ordering::Relaxed);
    }

    /// Stops recording (entries already recorded are kept).
    pub fn disable(&self) {
        self.state.enabled.store(false, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        self.state.enabled()
    }

    /// A copy of every entry recorded so far, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        lock(&self.state.entries).clone()
    }

    /// Removes and returns every entry recorded so far, oldest first.
    pub fn take(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.state.entries))
    }

    /// Entries of I/O queues only (qid != 0), oldest first.
    pub fn io_entries(&self) -> Vec<LogEntry> {
        self.entries().into_iter().filter(|e| e.qid != 0).collect()
    }

    /// Discards every recorded entry.
    pub fn clear(&self) {
        self.take();
    }
}

impl std::fmt::Debug for CommandLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandLog")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}
