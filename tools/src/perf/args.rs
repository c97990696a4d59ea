//! `nvme-perf` command line (flags follow `spdk_nvme_perf` where it has them).

use clap::{Parser, ValueEnum};
use nvme::DeviceName;

use crate::cli::{parse_bytes, parse_device};

const EXAMPLES: &str = "\
Examples:
  nvme-perf emu -q 32 -o 4096 -w randread -t 5
      4 KiB random reads at queue depth 32 for 5 seconds on the emulated controller
  nvme-perf emu:lba=4096 -w randrw -M 70 -q 16 -t 3 --verify
      70/30 random read/write mix; every read of a block this run wrote is checked
  nvme-perf 0000:01:00.0 -w write -o 128k -q 8 --qpairs 2 -t 10 --json
      sequential 128 KiB writes from two threads on a vfio-bound controller, as JSON

The progress line (once per second) appears when stderr is a terminal and --json is off.
Exit status: 0 when every I/O succeeded and no verify mismatch was found.";

/// Measure I/O performance of an NVMe namespace.
#[derive(Debug, Clone, Parser)]
#[command(name = "nvme-perf", version, after_help = EXAMPLES)]
pub struct PerfArgs {
    /// Device: `emu`, `emu:OPTIONS` (e.g. `emu:size=4G,lba=4096`) or a PCI address.
    #[arg(value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceName,

    /// Queue depth: I/Os kept outstanding per queue pair (the queue has one more entry).
    #[arg(short = 'q', long = "queue-depth", value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65534))]
    pub queue_depth: u32,

    /// I/O size in data bytes (suffixes k, M accepted); a multiple of the LBA data size.
    /// On an extended-LBA format each buffer also holds every block's metadata.
    #[arg(short = 'o', long = "io-size", value_name = "BYTES", default_value = "4096", value_parser = parse_bytes)]
    pub io_size: u64,

    /// Workload pattern.
    #[arg(short = 'w', long = "workload", value_enum, default_value_t = Workload::Randread)]
    pub workload: Workload,

    /// Read percentage for the `rw` and `randrw` mixes (0..=100).
    #[arg(short = 'M', long = "rwmixread", value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rwmixread: u8,

    /// Measured run time in seconds.
    #[arg(short = 't', long = "time", value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub time: f64,

    /// I/Os each queue pair submits before it stops, as an additional end of the run
    /// (whichever of this and `-t` comes first); counts warm-up I/Os too.
    #[arg(short = 'd', long = "number-ios", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub number_ios: Option<u64>,

    /// Seconds of I/O before measuring starts (not counted in the results).
    #[arg(long = "warmup", value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds_or_zero)]
    pub warmup: f64,

    /// Number of queue pairs, each driven by its own thread.
    #[arg(long = "qpairs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub qpairs: u16,

    /// Namespace ID.
    #[arg(long = "ns", value_name = "NSID", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub nsid: u32,

    /// How completions are reaped: busy polling or sleeping on the queue's interrupt.
    #[arg(long = "mode", value_enum, default_value_t = CompletionMode::Poll)]
    pub mode: CompletionMode,

    /// Ring only MMIO doorbells: do not hand the controller shadow doorbell buffers
    /// (Doorbell Buffer Config) even when it offers them.
    #[arg(long = "no-shadow-doorbells")]
    pub no_shadow_doorbells: bool,

    /// Describe every data transfer with an SGL instead of PRPs (the separate metadata
    /// too, where the controller accepts metadata SGLs); an error when the controller
    /// does not support SGLs.
    #[arg(long = "sgl")]
    pub sgl: bool,

    /// Check every read of a block this run wrote against the pattern written there.
    #[arg(long = "verify")]
    pub verify: bool,

    /// Limit I/O to the first BYTES of the namespace (default: all of it).
    #[arg(long = "span", value_parser = parse_bytes, value_name = "BYTES")]
    pub span: Option<u64>,

    /// Protection information: `off` leaves the metadata to the tool (it carries the
    /// pattern); `pract` has the controller generate the tuple on writes (and strip
    /// it on reads where the metadata is only the tuple); `host` fills the tuples on
    /// the host and has the controller check them. With `--verify`, tuples that come
    /// back are checked on the host too.
    #[arg(long = "pi", value_enum, default_value_t = PiMode::Off)]
    pub pi: PiMode,

    /// Print the results as JSON on stdout.
    #[arg(long = "json")]
    pub json: bool,

    /// Test hook (emu only): the controller corrupts the first byte of every block it
    /// reads, to prove that --verify catches mismatches.
    #[arg(long = "inject-read-corruption", hide = true)]
    pub inject_read_corruption: bool,

    /// Instead of a workload: read the --span area once (-o bytes per read) and check
    /// that every block is a whole block of the --verify pattern for its own LBA, of
    /// any write generation (after a writer was killed: old or new data, never torn);
    /// counts blocks per outcome and fails on any torn, misplaced or foreign block.
    #[arg(long = "check-pattern")]
    pub check_pattern: bool,

    /// Soak under faults (emu only): the controller fails reads with Unrecovered Read
    /// Error, drops and delays completions at the given rates per 1000 commands, and
    /// the controller is reset every few seconds; the report matches every injected
    /// fault with what the host saw. KIND=VALUE list, e.g.
    /// `media=2,drop=1,delay=20:10ms,reset=2`.
    #[arg(long = "inject-faults", value_name = "SPEC", value_parser = super::soak::parse_fault_spec)]
    pub inject_faults: Option<super::soak::FaultSpec>,

    /// Seed of the workload's and the injected faults' random choices (default: new
    /// each run; the report names it).
    #[arg(long = "seed", value_name = "N")]
    pub seed: Option<u64>,

    /// I/O command deadline before the driver aborts it (default 30 s, 1 s with
    /// `--inject-faults`).
    #[arg(long = "io-timeout", value_name = "SECONDS", value_parser = parse_seconds)]
    pub io_timeout: Option<f64>,

    /// How long an aborted command may take before the driver resets the controller
    /// (default 2 s, 0.25 s with `--inject-faults`).
    #[arg(long = "abort-timeout", value_name = "SECONDS", value_parser = parse_seconds)]
    pub abort_timeout: Option<f64>,

    /// How many times the driver resubmits a command that a controller reset cut
    /// short or that failed with a transient status (default 5; 0: never).
    #[arg(long = "retries", value_name = "N")]
    pub retries: Option<u8>,
}

/// The I/O pattern (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    Randread,
    /// Random writes.
    Randwrite,
    /// Sequential mix of reads and writes (`-M` sets the read share).
    Rw,
    /// Random mix of reads and writes (`-M` sets the read share).
    Randrw,
    /// Zone Append to the zones of a zoned namespace (the device places the data).
    Append,
}

impl Workload {
    /// Whether offsets are random rather than sequential.
    pub fn is_random(self) -> bool {
        matches!(
            self,
            Workload::Randread | Workload::Randwrite | Workload::Randrw
        )
    }

    /// Percentage of I/Os that are reads, given `-M`.
    pub fn read_percent(self, rwmixread: u8) -> u8 {
        match self {
            Workload::Read | Workload::Randread => 100,
            Workload::Write | Workload::Randwrite | Workload::Append => 0,
            Workload::Rw | Workload::Randrw => rwmixread.min(100),
        }
    }

    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::Randread => "randread",
            Workload::Randwrite => "randwrite",
            Workload::Rw => "rw",
            Workload::Randrw => "randrw",
            Workload::Append => "append",
        }
    }
}

/// How completions are reaped (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionMode {
    /// Busy-poll the completion queue in the submitting thread.
    Poll,
    /// Sleep on the queue pair's interrupt between completions.
    Interrupt,
}

/// How protection information is handled (`--pi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PiMode {
    /// Commands carry no PRINFO bits.
    Off,
    /// Every read and write sets PRACT: the controller generates the tuple on
    /// writes; where the metadata is only the tuple it also strips it on reads and
    /// buffers hold data only, otherwise the other metadata moves as without PI.
    Pract,
    /// The host generates each write's tuples (nvme::pi), reads and writes set PRCHK,
    /// and `--verify` also checks the tuples read back.
    Host,
}

impl PiMode {
    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PiMode::Off => "off",
            PiMode::Pract => "pract",
            PiMode::Host => "host",
        }
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "'{text}' is not a duration in seconds (0 < t <= 86400)"
        )),
    }
}

fn parse_seconds_or_zero(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{text}' is not a duration in seconds (0 <= t <= 86400)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdk_style_flags_parse() {
        let a = PerfArgs::try_parse_from([
            "nvme-perf",
            "emu",
            "-q",
            "32",
            "-o",
            "4096",
            "-w",
            "randread",
            "-t",
            "5",
        ])
        .unwrap();
        assert_eq!(a.queue_depth, 32);
        assert_eq!(a.io_size, 4096);
        assert_eq!(a.workload, Workload::Randread);
        assert_eq!(a.time, 5.0);
        assert_eq!(a.qpairs, 1);
        assert_eq!(a.mode, CompletionMode::Poll);
        assert_eq!(a.number_ios, None);
        let a = PerfArgs::try_parse_from(["nvme-perf", "emu", "-d", "1000"]).unwrap();
        assert_eq!(a.number_ios, Some(1000));
    }

    #[test]
    fn mix_percentage_applies_only_to_mixes() {
        assert_eq!(Workload::Randrw.read_percent(70), 70);
        assert_eq!(Workload::Randread.read_percent(70), 100);
        assert_eq!(Workload::Write.read_percent(70), 0);
    }

    #[test]
    fn zero_queue_depth_and_bad_workload_are_rejected() {
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-q", "0"]).is_err());
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-w", "trim"]).is_err());
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-t", "0"]).is_err());
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-M", "101"]).is_err());
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-q", "65535"]).is_err());
        assert!(PerfArgs::try_parse_from(["nvme-perf", "emu", "-d", "0"]).is_err());
    }
}
