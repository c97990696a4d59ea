//! `nvme-store`: a persistent store of named files on an NVMe namespace.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use nvme_tools::cli::{self, EXIT_FAILURE};
use nvme_tools::store_cmd::args::{Command, StoreArgs};
use nvme_tools::store_cmd::run::{self, WriteDone};

const TOOL: &str = "nvme-store";

fn main() -> ExitCode {
    let args: StoreArgs = cli::parse_args(TOOL);
    nvme_tools::init_logging();
    let mut print_write = |w: &WriteDone| {
        // A line that cannot be written reports nothing: the caller does not count it.
        if let Ok(line) = serde_json::to_string(w) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    };
    match run::run(&args, &mut print_write) {
        Ok(report) => {
            // `get NAME -` writes the file's bytes on stdout: the report may only
            // go to stderr, and only when asked for.
            let to_stdout = !matches!(&args.command,
                Command::Get { host_file, .. } if host_file == Path::new("-"));
            if to_stdout {
                if args.json {
                    cli::print_json(&report);
                } else {
                    cli::print_stdout(&report.human());
                }
            } else if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => eprintln!("{text}"),
                    Err(e) => eprintln!("{TOOL}: error: cannot encode the report as JSON: {e}"),
                }
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{TOOL}: error: fsck found problems in the store");
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Err(e) => cli::report_error(TOOL, &e),
    }
}
