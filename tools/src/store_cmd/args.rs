//! `nvme-store` command line: a device, the store's place on it and one subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nvme::DeviceName;

use crate::cli::{parse_bytes, parse_device};

const EXAMPLES: &str = "\
Examples:
  nvme-store emu:file=disk.img,size=64M mkfs
  nvme-store emu:file=disk.img,size=64M put data.bin data --dsync
  nvme-store emu:file=disk.img,size=64M ls --json
  nvme-store emu:file=disk.img,size=64M get data back.bin
  nvme-store emu:file=disk.img,size=64M clone data data.snap
  nvme-store 0000:01:00.0 --region 1G:4G fsck

Each run opens the store (replaying its journal), does one operation, makes it
durable and exits: files persist across runs on a file-backed `emu:file=...` device
and on a real one. With --json each run prints one object whose fields include the
run's commands: commands, fua_commands, flush_commands, journal_commits,
journal_blocks and checkpoints.";

/// A persistent store of named files on an NVMe namespace: mkfs, ls, stat, put, get,
/// rm, mv, clone, fsck.
#[derive(Debug, Clone, Parser)]
#[command(name = "nvme-store", version, after_help = EXAMPLES)]
pub struct StoreArgs {
    /// Device: `emu`, `emu:OPTIONS` (e.g. `emu:file=disk.img,size=64M`) or a PCI address.
    #[arg(value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceName,

    /// Namespace ID.
    #[arg(long = "ns", global = true, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub nsid: u32,

    /// The store's bytes on the namespace, `START:LEN` (e.g. `1M:64M`); default: the
    /// whole namespace. Every run on one store must give the same region.
    #[arg(long = "region", global = true, value_parser = parse_region, value_name = "START:LEN")]
    pub region: Option<(u64, u64)>,

    /// Print the result as JSON on stdout.
    #[arg(long = "json", global = true)]
    pub json: bool,

    /// The operation.
    #[command(subcommand)]
    pub command: Command,
}

/// One operation on the store.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Format the region as an empty store (refused on an existing store without --force).
    Mkfs {
        /// Store block size in bytes: a power of two, at least the namespace's logical block.
        #[arg(long = "block-size", value_parser = parse_bytes, default_value = "4096")]
        block_size: u64,
        /// Format even if the region already holds a store (its files are lost).
        #[arg(long)]
        force: bool,
    },
    /// List the files.
    Ls,
    /// A file's attributes and extents.
    Stat {
        /// The file's name.
        name: String,
    },
    /// Copy a host file into the store as a new file.
    Put {
        /// The host file to copy.
        host_file: PathBuf,
        /// The new file's name (1 to 255 bytes).
        name: String,
        /// O_DSYNC writes: each chunk is durable when its write completes (a pure
        /// overwrite would be one FUA write; new blocks also commit the journal).
        /// Without it the data and metadata are made durable by one fsync at the end.
        #[arg(long)]
        dsync: bool,
        /// Bytes per write request.
        #[arg(long, value_parser = parse_bytes, default_value = "1M")]
        chunk: u64,
        /// Print a JSON line on stdout (flushed) as each chunk's write completes
        /// (offset, length, crc32, dsync): what a killed put had acknowledged.
        #[arg(long = "report-writes")]
        report_writes: bool,
    },
    /// Copy a file of the store to a host file, or to stdout with `-`.
    Get {
        /// The file's name.
        name: String,
        /// The host file to create, or `-` for stdout (the report then goes to stderr,
        /// and only with --json).
        host_file: PathBuf,
    },
    /// Remove a file (blocks shared with a clone stay with the clone).
    Rm {
        /// The file's name.
        name: String,
    },
    /// Rename a file (replacing a file named NEW, as rename(2)).
    Mv {
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
    /// Make DST a copy of SRC that shares SRC's blocks (copy on write).
    Clone {
        /// The source file.
        src: String,
        /// The new file.
        dst: String,
    },
    /// Check every structure of the store without changing it (exit status 1 when
    /// problems are found).
    Fsck,
}

impl Command {
    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Mkfs { .. } => "mkfs",
            Command::Ls => "ls",
            Command::Stat { .. } => "stat",
            Command::Put { .. } => "put",
            Command::Get { .. } => "get",
            Command::Rm { .. } => "rm",
            Command::Mv { .. } => "mv",
            Command::Clone { .. } => "clone",
            Command::Fsck => "fsck",
        }
    }
}

/// Parses `START:LEN` (each a byte count with an optional suffix) for `clap`.
pub fn parse_region(text: &str) -> Result<(u64, u64), String> {
    let (start, len) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not START:LEN (example: 1M:64M)"))?;
    let start = parse_bytes(start)?;
    let len = parse_bytes(len)?;
    if len == 0 {
        return Err(format!("'{text}': the region's length must not be zero"));
    }
    start
        .checked_add(len)
        .ok_or_else(|| format!("'{text}': the region ends past 2^64"))?;
    Ok((start, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<StoreArgs, clap::Error> {
        StoreArgs::try_parse_from(std::iter::once("nvme-store").chain(words.split_whitespace()))
    }

    #[test]
    fn global_flags_may_follow_the_subcommand() {
        let a = parse("emu put in.bin f --dsync --json --ns 2 --region 1M:8M").unwrap();
        assert!(a.json);
        assert_eq!(a.nsid, 2);
        assert_eq!(a.region, Some((1 << 20, 8 << 20)));
        assert_eq!(
            a.command,
            Command::Put {
                host_file: "in.bin".into(),
                name: "f".into(),
                dsync: true,
                chunk: 1 << 20,
                report_writes: false,
            }
        );
    }

    #[test]
    fn regions_need_a_start_and_a_nonzero_length() {
        assert_eq!(parse_region("0:4k"), Ok((0, 4096)));
        assert!(parse_region("4k").unwrap_err().contains("START:LEN"));
        assert!(parse_region("0:0").unwrap_err().contains("zero"));
        assert!(parse_region("0xffffffffffffffff:1").is_err());
    }

    #[test]
    fn a_bad_device_name_and_a_missing_subcommand_are_usage_errors() {
        assert!(parse("nvme0 ls").is_err());
        assert!(parse("emu").is_err());
        assert!(parse("emu cp a b").is_err());
    }
}
