//! Plumbing every tool shares: logging, argument parsing with one-line errors, sizes,
//! device names and JSON output.

use std::fmt::Display;
use std::process::ExitCode;

use clap::Parser;
use nvme::DeviceName;
use serde::Serialize;

mod error;

pub use error::ToolError;

/// Exit status for a run that failed (device error, I/O errors, verify mismatches).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad command-line input.
pub const EXIT_USAGE: u8 = 2;

/// Parses the process arguments; on bad input prints one line `TOOL: error: ...` and
/// exits with [`EXIT_USAGE`]; `--help` and `--version` print and exit 0.
pub fn parse_args<T: Parser>(tool: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => exit_clap_error(tool, err),
    }
}

/// Reports a `clap` error the house way and exits.
pub fn exit_clap_error(tool: &str, err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            std::process::exit(
                if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    i32::from(EXIT_USAGE)
                } else {
                    0
                },
            );
        }
        _ => {
            eprintln!(
                "{tool}: error: {} (try '{tool} --help')",
                clap_error_line(&err)
            );
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}

/// The first paragraph of a `clap` error on one line, without its `error: ` prefix.
pub fn clap_error_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = paragraph.join(" ");
    let line = line.trim_start_matches("error: ").trim();
    if line.is_empty() {
        "bad arguments".to_string()
    } else {
        line.to_string()
    }
}

/// Prints `TOOL: error: MESSAGE` on one line and returns [`EXIT_FAILURE`].
pub fn report_error(tool: &str, err: &dyn Display) -> ExitCode {
    let msg = err.to_string().replace('\n', " ");
    eprintln!("{tool}: error: {msg}");
    ExitCode::from(EXIT_FAILURE)
}

/// Parses a device name for `clap` (`emu`, `emu:OPTIONS` or a PCI address).
pub fn parse_device(text: &str) -> Result<DeviceName, nvme::DeviceNameError> {
    text.parse()
}

/// Parses a byte count with an optional binary suffix (`4096`, `4k`, `1M`, `2GiB`) or a
/// `0x` hexadecimal number, for `clap`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map_err(|_| format!("'{text}' is not a hexadecimal byte count"));
    }
    // A lower-case `b` counts as `B` here (`4kb`), but not after an `i` (`4kib`).
    let unit = match t.strip_suffix('b') {
        Some(rest) if !rest.ends_with('i') => format!("{rest}B"),
        _ => t.to_string(),
    };
    hugepages::parse_size(&unit)
        .ok_or_else(|| format!("'{text}' is not a byte count (examples: 4096, 4k, 1M, 0x1000)"))
}

/// The active namespace IDs of `ctrl` as a list for messages (`1, 2`), or `none`.
pub fn active_namespaces<T: nvme::Transport>(ctrl: &nvme::Controller<T>) -> String {
    let ids: Vec<String> = ctrl
        .namespaces()
        .iter()
        .map(|n| n.nsid.to_string())
        .collect();
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// Writes `text` and a newline to stdout; a closed pipe (`| head`) is not an error
/// worth a panic, so write errors are ignored.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Prints `value` as pretty JSON on stdout followed by a newline.
pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print_stdout(&text),
        // The report types hold only numbers and strings; this cannot fail in practice,
        // but say so instead of panicking if it does.
        Err(e) => eprintln!("error: cannot encode the report as JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_accept_suffixes_and_hex() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("0x1000"), Ok(4096));
        assert!(parse_bytes("four").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert_eq!(parse_bytes("4kb"), Ok(4096));
        assert_eq!(parse_bytes("4KB"), Ok(4096));
        assert_eq!(parse_bytes("4b"), Ok(4));
        assert!(parse_bytes("4kib").is_err());
        assert!(parse_bytes("4Bb").is_err());
    }

    #[test]
    fn device_names_are_checked_with_the_expected_forms_in_the_message() {
        assert!(parse_device("emu:lba=4096").is_ok());
        assert!(parse_device("0000:01:00.0").is_ok());
        let msg = parse_device("nvme0").unwrap_err().to_string();
        assert!(msg.contains("emu[:options]"), "{msg}");
    }
}
