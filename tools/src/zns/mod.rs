//! `nvme-zns`: zone reports and zone actions on a zoned namespace.

pub mod model;
pub mod run;

use clap::{Args, Parser, Subcommand};
use nvme::spec::zns::{ZoneReportFilter, ZoneSendAction};
use nvme::DeviceName;

use crate::cli::parse_device;

/// The separator between commands run in one process.
pub const STEP_SEPARATOR: &str = "+";

const EXAMPLES: &str = "\
Several commands separated by a lone '+' run in order on one open device (an `emu`
device's zones live only for the process):
  nvme-zns emu:zoned open --zone 0 + finish --zone 0x800 + report --json

Examples:
  nvme-zns emu:zoned,zone_size=1M report
      every zone of namespace 1 as a table
  nvme-zns emu:zoned,zone_size=1M report --state empty --json
      the empty zones as `nvme zns report-zones -o json` prints them
  nvme-zns 0000:01:00.0 --ns 2 reset --zone 0x800
      reset the zone starting at LBA 0x800
  nvme-zns 0000:01:00.0 finish --all
      finish every open or closed zone (the select-all bit)

States for --state: all, empty, imp_opened, exp_opened, closed, full, readonly,
offline (nvme-cli's names; the spellings implicitly-opened, explicitly-opened and
read-only, and the Zone Receive Action Specific values 0-7 work too).

JSON (report --json): {\"nr_zones\": N, \"zone_list\": [{\"slba\", \"wp\", \"cap\",
\"state\", \"type\", \"attrs\"}, ...]} with numbers in decimal, as nvme-cli 2.3 prints
it; like nvme-cli 2.3, \"attrs\" holds the Zone Attributes Information byte (ZAI).";

/// Report and manage the zones of a zoned namespace (NVMe Zoned Namespace Command Set).
#[derive(Debug, Clone, Parser)]
#[command(name = "nvme-zns", version, after_help = EXAMPLES)]
pub struct ZnsArgs {
    /// Device: `emu`, `emu:OPTIONS` (e.g. `emu:zoned,zone_size=1M`) or a PCI address.
    #[arg(value_parser = parse_device, value_name = "DEVICE")]
    pub device: DeviceName,

    /// Namespace ID.
    #[arg(long = "ns", default_value_t = 1, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub nsid: u32,

    /// What to do.
    #[command(subcommand)]
    pub command: ZnsCommand,
}

/// One `nvme-zns` command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ZnsCommand {
    /// List zones: start LBA, write pointer, capacity, state, type and attributes.
    Report(ReportArgs),
    /// Reset zones: Empty, write pointer at the zone start, data deallocated.
    Reset(Target),
    /// Open zones explicitly.
    Open(Target),
    /// Close open zones.
    Close(Target),
    /// Finish zones: they become Full.
    Finish(Target),
    /// Take Read Only zones offline.
    Offline(Target),
}

impl ZnsCommand {
    /// The Zone Management Send action of an action command; `None` for `report`.
    pub fn action(&self) -> Option<(ZoneSendAction, &Target)> {
        Some(match self {
            ZnsCommand::Report(_) => return None,
            ZnsCommand::Reset(t) => (ZoneSendAction::Reset, t),
            ZnsCommand::Open(t) => (ZoneSendAction::Open, t),
            ZnsCommand::Close(t) => (ZoneSendAction::Close, t),
            ZnsCommand::Finish(t) => (ZoneSendAction::Finish, t),
            ZnsCommand::Offline(t) => (ZoneSendAction::Offline, t),
        })
    }
}

/// `report`'s flags.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReportArgs {
    /// Only zones in this state (see below).
    #[arg(long, short = 'S', value_parser = parse_state, default_value = "all")]
    pub state: ZoneReportFilter,
    /// One Report Zones command with the Partial Report bit: the zones that fit in one
    /// report buffer, and `nr_zones` counting those listed.
    #[arg(long, short = 'p')]
    pub partial: bool,
    /// Print JSON as `nvme zns report-zones -o json` does.
    #[arg(long)]
    pub json: bool,
}

/// The zones an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Start LBA of the zone (decimal or 0x hexadecimal).
    #[arg(long, value_parser = parse_lba, value_name = "ZSLBA")]
    pub zone: Option<u64>,
    /// Every zone in a state the action applies to (the select-all bit).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Parser)]
#[command(name = "nvme-zns", bin_name = "nvme-zns DEVICE", no_binary_name = true)]
struct StepCli {
    #[command(subcommand)]
    command: ZnsCommand,
}

/// Parses a command line (without the program name) of commands separated by
/// [`STEP_SEPARATOR`]: the first with the device and `--ns`, the rest commands only.
pub fn parse_command_line(args: &[String]) -> Result<(ZnsArgs, Vec<ZnsCommand>), clap::Error> {
    let mut parts = args.split(|a| a == STEP_SEPARATOR);
    let first = parts.next().unwrap_or_default();
    let head = ZnsArgs::try_parse_from(
        std::iter::once("nvme-zns").chain(first.iter().map(String::as_str)),
    )?;
    let mut commands = vec![head.command.clone()];
    for part in parts {
        commands.push(StepCli::try_parse_from(part)?.command);
    }
    Ok((head, commands))
}

/// Parses an LBA in decimal or `0x` hexadecimal.
pub fn parse_lba(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("'{text}' is not an LBA (decimal, or hexadecimal with 0x)"))
}

/// Parses a zone state name (nvme-cli's or the specification's) or a ZRASF value.
pub fn parse_state(text: &str) -> Result<ZoneReportFilter, String> {
    let t = text.trim().to_ascii_lowercase().replace('-', "_");
    let filter = match t.as_str() {
        "all" | "0" => ZoneReportFilter::All,
        "empty" | "1" => ZoneReportFilter::Empty,
        "imp_opened" | "implicitly_opened" | "2" => ZoneReportFilter::ImplicitlyOpened,
        "exp_opened" | "explicitly_opened" | "3" => ZoneReportFilter::ExplicitlyOpened,
        "closed" | "4" => ZoneReportFilter::Closed,
        "full" | "5" => ZoneReportFilter::Full,
        "readonly" | "read_only" | "6" => ZoneReportFilter::ReadOnly,
        "offline" | "7" => ZoneReportFilter::Offline,
        _ => {
            return Err(format!(
                "'{text}' is not a zone state (all, empty, imp_opened, exp_opened, closed, full, readonly, offline)"
            ))
        }
    };
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_accept_nvme_cli_names_spec_names_and_numbers() {
        assert_eq!(parse_state("EMPTY"), Ok(ZoneReportFilter::Empty));
        assert_eq!(
            parse_state("imp_opened"),
            Ok(ZoneReportFilter::ImplicitlyOpened)
        );
        assert_eq!(
            parse_state("explicitly-opened"),
            Ok(ZoneReportFilter::ExplicitlyOpened)
        );
        assert_eq!(parse_state("6"), Ok(ZoneReportFilter::ReadOnly));
        assert_eq!(parse_state("read-only"), Ok(ZoneReportFilter::ReadOnly));
        let e = parse_state("open").unwrap_err();
        assert!(e.contains("imp_opened"), "{e}");
        assert!(parse_state("8").is_err());
    }

    #[test]
    fn lbas_are_decimal_or_hex() {
        assert_eq!(parse_lba("2048"), Ok(2048));
        assert_eq!(parse_lba("0x800"), Ok(0x800));
        assert!(parse_lba("0x").is_err());
        assert!(parse_lba("-1").is_err());
    }

    #[test]
    fn commands_chain_with_a_lone_plus() {
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let (head, cmds) = parse_command_line(&words(
            "emu --ns 3 open --zone 0 + report --state closed + reset --all",
        ))
        .unwrap();
        assert_eq!(head.nsid, 3);
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0].action().map(|(a, _)| a), Some(ZoneSendAction::Open));
        assert!(matches!(&cmds[1], ZnsCommand::Report(r) if r.state == ZoneReportFilter::Closed));
        assert_eq!(
            cmds[2].action().map(|(a, t)| (a, t.all)),
            Some((ZoneSendAction::Reset, true))
        );
        assert!(parse_command_line(&words("emu report + bogus")).is_err());
        assert!(parse_command_line(&words("emu report +")).is_err());
    }

    #[test]
    fn an_action_needs_exactly_one_target() {
        let parse = |args: &[&str]| ZnsArgs::try_parse_from(args);
        let a = parse(&["nvme-zns", "emu", "reset", "--zone", "0x800"]).unwrap();
        assert_eq!(
            a.command.action().map(|(act, t)| (act, t.zone, t.all)),
            Some((ZoneSendAction::Reset, Some(0x800), false))
        );
        let a = parse(&["nvme-zns", "emu", "finish", "--all", "--ns", "2"]).unwrap();
        assert_eq!(a.nsid, 2);
        assert!(parse(&["nvme-zns", "emu", "open"]).is_err());
        assert!(parse(&["nvme-zns", "emu", "close", "--all", "--zone", "0"]).is_err());
        let r = parse(&["nvme-zns", "emu", "report", "--state", "full", "--json"]).unwrap();
        assert_eq!(
            r.command,
            ZnsCommand::Report(ReportArgs {
                state: ZoneReportFilter::Full,
                partial: false,
                json: true
            })
        );
    }
}
