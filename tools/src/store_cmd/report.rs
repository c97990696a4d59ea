//! What an `nvme-store` run prints: one report per subcommand, as text or JSON.
//!
//! The JSON field names are stable: `op`, the subcommand's own fields, and the
//! run's counters flattened beside them (the names `nvme-dio` uses, plus the
//! store's journal counters).

use std::fmt;

use dio::DioStats;
use serde::Serialize;
use store::{ExtentInfo, FileStat, FsckReport, StoreCounters};

/// The commands one operation caused, after the store was opened (so the
/// open's replay and checkpoint are not counted, except by `mkfs` and `fsck`,
/// whose whole run is the operation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// File bytes transferred to or from the caller (data and metadata I/O).
    pub bytes: u64,
    /// NVMe commands issued (reads, writes, write zeroes, flushes).
    pub commands: u64,
    /// Write and Write Zeroes commands with Force Unit Access.
    pub fua_commands: u64,
    /// Flush commands.
    pub flush_commands: u64,
    /// Bytes zeroed on the device for partial blocks of new extents.
    pub zeroed_bytes: u64,
    /// Journal transactions made durable.
    pub journal_commits: u64,
    /// Journal blocks written.
    pub journal_blocks: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

impl Counters {
    /// The difference between two readings of the engine's and the store's counters.
    pub fn between(dio: (DioStats, DioStats), store: (StoreCounters, StoreCounters)) -> Counters {
        let (a, b) = dio;
        let (s, t) = store;
        Counters {
            bytes: b.bytes - a.bytes,
            commands: b.commands - a.commands,
            fua_commands: b.fua_commands - a.fua_commands,
            flush_commands: b.flush_commands - a.flush_commands,
            zeroed_bytes: b.zeroed_bytes - a.zeroed_bytes,
            journal_commits: t.journal_commits - s.journal_commits,
            journal_blocks: t.journal_blocks - s.journal_blocks,
            checkpoints: t.checkpoints - s.checkpoints,
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} bytes, {} command{} ({} FUA, {} flush), {} bytes zeroed; {} journal commit{} ({} block{}), {} checkpoint{}",
            self.bytes,
            self.commands,
            s(self.commands),
            self.fua_commands,
            self.flush_commands,
            self.zeroed_bytes,
            self.journal_commits,
            s(self.journal_commits),
            self.journal_blocks,
            s(self.journal_blocks),
            self.checkpoints,
            s(self.checkpoints),
        )
    }
}

/// A file's attributes, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// The name.
    pub name: String,
    /// The file's number.
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Store blocks allocated (written or unwritten).
    pub blocks: u64,
    /// Last data change, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// Last attribute change, nanoseconds since the Unix epoch.
    pub ctime_ns: u64,
    /// File flags.
    pub flags: u32,
}

impl From<FileStat> for FileEntry {
    fn from(s: FileStat) -> Self {
        FileEntry {
            name: s.name,
            id: s.id,
            size: s.size,
            blocks: s.blocks,
            mtime_ns: s.mtime,
            ctime_ns: s.ctime,
            flags: s.flags,
        }
    }
}

/// A run of a file's blocks, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// File offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Byte address on the namespace.
    pub addr: u64,
    /// Allocated but never written (reads as zeros).
    pub unwritten: bool,
    /// Shared with another file (a clone).
    pub shared: bool,
}

impl From<ExtentInfo> for Extent {
    fn from(e: ExtentInfo) -> Self {
        Extent {
            offset: e.offset,
            length: e.length,
            addr: e.addr,
            unwritten: e.unwritten,
            shared: e.shared,
        }
    }
}

/// The store's layout, as `mkfs` made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The format's identity, 32 hexadecimal digits.
    pub uuid: String,
    /// First byte of the region on the namespace.
    pub region_offset: u64,
    /// Store block size in bytes.
    pub block_size: u32,
    /// Blocks in the region.
    pub total_blocks: u64,
    /// Blocks of each of the two checkpoint areas.
    pub checkpoint_blocks: u64,
    /// Blocks of the journal.
    pub journal_blocks: u64,
    /// Blocks for file data.
    pub data_blocks: u64,
}

/// The check's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// No problem found.
    pub clean: bool,
    /// Files.
    pub files: u64,
    /// Data blocks referenced by files.
    pub used_blocks: u64,
    /// Free data blocks.
    pub free_blocks: u64,
    /// Data blocks referenced more than once.
    pub shared_blocks: u64,
    /// The checkpoint area loaded (`A` or `B`).
    pub checkpoint_area: &'static str,
    /// Its sequence number.
    pub checkpoint_seq: u64,
    /// Why checkpoint A and B were rejected (`null`: valid).
    pub checkpoint_rejected: [Option<&'static str>; 2],
    /// Journal transactions after the checkpoint, replayed in memory.
    pub journal_transactions: u64,
    /// Each problem as a sentence.
    pub problems: Vec<String>,
}

impl From<FsckReport> for Check {
    fn from(r: FsckReport) -> Self {
        Check {
            clean: r.is_clean(),
            files: r.files,
            used_blocks: r.used_blocks,
            free_blocks: r.free_blocks,
            shared_blocks: r.shared_blocks,
            checkpoint_area: if r.checkpoint_area == 0 { "A" } else { "B" },
            checkpoint_seq: r.checkpoint_seq,
            checkpoint_rejected: r.checkpoint_rejected,
            journal_transactions: r.journal_transactions,
            problems: r.problems,
        }
    }
}

/// What the operation did, by subcommand (`op` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Outcome {
    /// `mkfs`.
    Mkfs {
        /// The new layout.
        #[serde(flatten)]
        layout: Layout,
    },
    /// `ls`.
    Ls {
        /// Every file, by name.
        files: Vec<FileEntry>,
        /// Free data blocks.
        free_blocks: u64,
        /// Store block size.
        block_size: u32,
    },
    /// `stat`.
    Stat {
        /// The file.
        file: FileEntry,
        /// Its extents.
        extents: Vec<Extent>,
    },
    /// `put`.
    Put {
        /// The new file.
        name: String,
        /// Bytes copied.
        size: u64,
        /// Whether the writes were O_DSYNC.
        dsync: bool,
        /// Write requests.
        writes: u64,
    },
    /// `get`.
    Get {
        /// The file.
        name: String,
        /// Bytes copied out.
        size: u64,
    },
    /// `rm`.
    Rm {
        /// The removed file.
        name: String,
    },
    /// `mv`.
    Mv {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
        /// Whether a file named `to` was replaced.
        replaced: bool,
    },
    /// `clone`.
    Clone {
        /// The source.
        from: String,
        /// The new file.
        to: String,
        /// Its size in bytes.
        size: u64,
        /// Blocks of the new file shared with others.
        shared_blocks: u64,
    },
    /// `fsck`.
    Fsck {
        /// The findings.
        #[serde(flatten)]
        check: Check,
    },
}

/// One run's report (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    /// What the operation did.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The commands it caused.
    #[serde(flatten)]
    pub counters: Counters,
}

impl StoreReport {
    /// Whether the run succeeded (only `fsck` can report a failure here).
    pub fn ok(&self) -> bool {
        !matches!(&self.outcome, Outcome::Fsck { check } if !check.clean)
    }

    /// The human-readable summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        match &self.outcome {
            Outcome::Mkfs { layout: l } => s.push_str(&format!(
                "formatted store {} at byte {}: {} blocks of {} bytes ({} data, 2 x {} checkpoint, {} journal)\n",
                l.uuid,
                l.region_offset,
                l.total_blocks,
                l.block_size,
                l.data_blocks,
                l.checkpoint_blocks,
                l.journal_blocks
            )),
            Outcome::Ls {
                files,
                free_blocks,
                block_size,
            } => {
                for f in files {
                    s.push_str(&format!("{:>12} {:>8} {}\n", f.size, f.blocks, f.name));
                }
                s.push_str(&format!(
                    "{} file{}, {} free blocks of {} bytes\n",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    free_blocks,
                    block_size
                ));
            }
            Outcome::Stat { file, extents } => {
                s.push_str(&format!(
                    "{}: file {}, {} bytes, {} blocks, flags {:#x}, mtime {} ns, ctime {} ns\n",
                    file.name,
                    file.id,
                    file.size,
                    file.blocks,
                    file.flags,
                    file.mtime_ns,
                    file.ctime_ns
                ));
                for e in extents {
                    s.push_str(&format!(
                        "  offset {} length {} at byte {}{}{}\n",
                        e.offset,
                        e.length,
                        e.addr,
                        if e.unwritten { " unwritten" } else { "" },
                        if e.shared { " shared" } else { "" }
                    ));
                }
            }
            Outcome::Put {
                name,
                size,
                dsync,
                writes,
            } => s.push_str(&format!(
                "put {name}: {size} bytes in {writes} write{}{}\n",
                if *writes == 1 { "" } else { "s" },
                if *dsync { " (O_DSYNC)" } else { "" }
            )),
            Outcome::Get { name, size } => s.push_str(&format!("get {name}: {size} bytes\n")),
            Outcome::Rm { name } => s.push_str(&format!("removed {name}\n")),
            Outcome::Mv { from, to, replaced } => s.push_str(&format!(
                "renamed {from} to {to}{}\n",
                if *replaced { " (replaced the old one)" } else { "" }
            )),
            Outcome::Clone {
                from,
                to,
                size,
                shared_blocks,
            } => s.push_str(&format!(
                "cloned {from} to {to}: {size} bytes, {shared_blocks} shared blocks\n"
            )),
            Outcome::Fsck { check: c } => {
                s.push_str(&format!(
                    "fsck: {}: {} files, {} used, {} free, {} shared blocks; checkpoint {} (seq {}), {} journal transactions replayed\n",
                    if c.clean { "clean" } else { "PROBLEMS FOUND" },
                    c.files,
                    c.used_blocks,
                    c.free_blocks,
                    c.shared_blocks,
                    c.checkpoint_area,
                    c.checkpoint_seq,
                    c.journal_transactions
                ));
                for (area, why) in ["A", "B"].iter().zip(c.checkpoint_rejected) {
                    if let Some(why) = why {
                        s.push_str(&format!("  checkpoint {area} rejected: {why}\n"));
                    }
                }
                for p in &c.problems {
                    s.push_str(&format!("  problem: {p}\n"));
                }
            }
        }
        s.push_str(&format!("commands: {}", self.counters));
        s
    }
}
