//! `nvme-dio` command line: a device and a script of steps separated by `+`.
//!
//! Each step is parsed by its own `clap` parser, so `nvme-dio emu write --help` shows
//! the step's flags. The in-memory extent layer and an `emu` RAM device live only for
//! the process, which is why one run takes several steps.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nvme::DeviceName;

use crate::cli::{clap_error_line, parse_bytes, parse_device};

/// The separator between steps.
pub const STEP_SEPARATOR: &str = "+";

const EXAMPLES: &str = "\
Steps (separate several with a lone '+'; they run in order in one process):
  write --offset B --input FILE [--dsync | --sync] [--hipri] [--file NAME]
  read  --offset B --length B --output FILE [--hipri] [--file NAME]
  fallocate --file NAME --offset B --length B     (unwritten extents, like fallocate(2))
  compare --offset B (--input FILE | --pattern BYTE --length B) [--file NAME]
                     (the device compares; a difference fails the run, exit status 1)
Without --file a step addresses the raw namespace (byte N of the namespace); with
--file NAME it addresses a file of the in-memory extent-mapped layer, created on first
use and kept until the process exits. The layer uses the whole namespace, so do not mix
raw writes and files in one script unless you mean to overwrite file data. Offsets and
lengths must be multiples of the namespace's logical block size. `nvme-dio DEVICE STEP
--help` shows a step's flags.

Examples:
  nvme-dio emu:file=disk.img,size=64M write --offset 0 --input data.bin --dsync
  nvme-dio emu:file=disk.img,size=64M read --offset 0 --length 4096 --output back.bin
  nvme-dio --json emu write --file a --offset 0 --input data.bin --dsync \\
      + write --file a --offset 0 --input data.bin --dsync
      a new file's data is made durable with a flush; the overwrite with FUA
  nvme-dio emu fallocate --file a --offset 0 --length 1M + write --file a --offset 0 --input d.bin --dsync

With --json the totals and each step report bytes, commands, fua_commands,
flush_commands and zeroed_bytes.";

/// Direct I/O to an NVMe namespace or to files of an in-memory extent layer (dd over
/// the dio layer).
#[derive(Debug, Clone, Parser)]
#[command(name = "nvme-dio", version, after_help = EXAMPLES)]
pub struct DioArgs {
    /// Print the results as JSON on stdout.
    #[arg(long = "json")]
    pub json: bool,

    /// Print a JSON line on stdout as each write request completes (step, file,
    /// offset, length, crc32 of its bytes), flushed at once: what a process that
    /// is killed had acknowledged.
    #[arg(long = "report-writes")]
    pub report_writes: bool,

    /// Namespace ID.
    #[arg(long = "ns", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub nsid: u32,

    /// Device: `emu`, `emu:OPTIONS` (e.g. `emu:file=disk.img,size=64M`) or a PCI address.
    #[arg(value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceName,

    /// The steps: `write ...`, `read ...`, `compare ...`, `fallocate ...`, separated by `+`.
    #[arg(value_name = "STEP", required = true, trailing_var_arg = true,
          allow_hyphen_values = true, num_args = 1..)]
    pub script: Vec<String>,
}

#[derive(Debug, Parser)]
#[command(name = "nvme-dio", bin_name = "nvme-dio DEVICE", no_binary_name = true)]
struct StepCli {
    #[command(subcommand)]
    step: Step,
}

/// One operation of the script.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Step {
    /// Write the contents of a host file at an offset.
    Write {
        /// Byte offset (a multiple of the logical block size).
        #[arg(long, value_parser = parse_bytes)]
        offset: u64,
        /// Host file whose bytes are written (its size must be a multiple of the block size).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// O_DSYNC: the data is durable when the write completes.
        #[arg(long, conflicts_with = "sync")]
        dsync: bool,
        /// O_SYNC: data and metadata are durable when the write completes.
        #[arg(long)]
        sync: bool,
        /// Poll for completion in this thread (IOCB_HIPRI) instead of sleeping.
        #[arg(long)]
        hipri: bool,
        /// Write into this file of the extent layer instead of the raw namespace.
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Read a byte range into a host file.
    Read {
        /// Byte offset (a multiple of the logical block size).
        #[arg(long, value_parser = parse_bytes)]
        offset: u64,
        /// Bytes to read (a multiple of the logical block size).
        #[arg(long, value_parser = parse_bytes)]
        length: u64,
        /// Host file to create with the bytes read.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Poll for completion in this thread (IOCB_HIPRI) instead of sleeping.
        #[arg(long)]
        hipri: bool,
        /// Read from this file of the extent layer instead of the raw namespace.
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Have the device compare a byte range with expected contents (NVMe Compare on
    /// mapped blocks; holes and unwritten extents must be expected as zeros).
    Compare {
        /// Byte offset (a multiple of the logical block size).
        #[arg(long, value_parser = parse_bytes)]
        offset: u64,
        /// Host file holding the expected bytes (its size must be a multiple of the
        /// block size).
        #[arg(long, value_name = "FILE", required_unless_present = "pattern")]
        input: Option<PathBuf>,
        /// Expect every byte to be this value (0..=255) instead of an input file.
        #[arg(
            long,
            value_name = "BYTE",
            conflicts_with = "input",
            requires = "length"
        )]
        pattern: Option<u8>,
        /// Bytes to compare with --pattern.
        #[arg(long, value_parser = parse_bytes, requires = "pattern")]
        length: Option<u64>,
        /// Compare this file of the extent layer instead of the raw namespace.
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Preallocate unwritten extents in a file of the extent layer.
    Fallocate {
        /// The file (created if new).
        #[arg(long, value_name = "NAME")]
        file: String,
        /// Byte offset.
        #[arg(long, value_parser = parse_bytes)]
        offset: u64,
        /// Bytes to preallocate.
        #[arg(long, value_parser = parse_bytes)]
        length: u64,
    },
}

impl Step {
    /// The step's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Write { .. } => "write",
            Step::Read { .. } => "read",
            Step::Fallocate { .. } => "fallocate",
            Step::Compare { .. } => "compare",
        }
    }

    /// The extent-layer file the step addresses, if any.
    pub fn file(&self) -> Option<&str> {
        match self {
            Step::Write { file, .. } | Step::Read { file, .. } | Step::Compare { file, .. } => {
                file.as_deref()
            }
            Step::Fallocate { file, .. } => Some(file),
        }
    }
}

/// A script that failed to parse: either a real error or a help request to print.
#[derive(Debug)]
pub enum ScriptError {
    /// `--help` inside a step: print this and exit 0.
    Help(String),
    /// A one-line description of what is wrong.
    Bad(String),
}

/// Splits the words after DEVICE at `+` and parses each step.
pub fn parse_script(words: &[String]) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for (i, segment) in words.split(|w| w == STEP_SEPARATOR).enumerate() {
        if segment.is_empty() {
            return Err(ScriptError::Bad(format!(
                "step {} is empty: write steps as 'write ... + read ...'",
                i + 1
            )));
        }
        match StepCli::try_parse_from(segment) {
            Ok(cli) => steps.push(cli.step),
            Err(e) => {
                use clap::error::ErrorKind;
                return Err(match e.kind() {
                    ErrorKind::DisplayHelp
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                        ScriptError::Help(e.render().to_string())
                    }
                    _ => ScriptError::Bad(format!(
                        "step {} ({}): {}",
                        i + 1,
                        segment[0],
                        clap_error_line(&e)
                    )),
                });
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn steps_split_at_plus_and_parse_in_order() {
        let steps = parse_script(&words(
            "write --offset 4k --input a.bin --dsync + read --offset 0 --length 8192 --output b --file f",
        ))
        .unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0],
            Step::Write {
                offset: 4096,
                input: "a.bin".into(),
                dsync: true,
                sync: false,
                hipri: false,
                file: None
            }
        );
        assert_eq!(steps[1].name(), "read");
        assert_eq!(steps[1].file(), Some("f"));
    }

    #[test]
    fn a_bad_step_names_its_position() {
        let Err(ScriptError::Bad(msg)) = parse_script(&words(
            "read --offset 0 --length 512 --output x + write --offset 0",
        )) else {
            panic!("expected a parse error")
        };
        assert!(msg.starts_with("step 2 (write):"), "{msg}");
        assert!(msg.contains("--input"), "{msg}");
    }

    #[test]
    fn dsync_and_sync_exclude_each_other_and_empty_steps_are_rejected() {
        assert!(parse_script(&words("write --offset 0 --input a --dsync --sync")).is_err());
        assert!(parse_script(&words("read --offset 0 --length 512 --output x +")).is_err());
    }

    #[test]
    fn step_help_is_a_help_request() {
        assert!(matches!(
            parse_script(&words("write --help")),
            Err(ScriptError::Help(_))
        ));
    }
}
