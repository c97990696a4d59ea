//! `nvme-dio`: direct I/O to an NVMe namespace or to files of an in-memory extent
//! layer, step by step.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use nvme_tools::cli::{self, EXIT_USAGE};
use nvme_tools::dio_cmd::args::{parse_script, DioArgs, ScriptError};
use nvme_tools::dio_cmd::run;

const TOOL: &str = "nvme-dio";

fn main() -> ExitCode {
    let mut args: DioArgs = cli::parse_args(TOOL);
    // `--json` may follow the device among the step words; it is a global flag.
    let before = args.script.len();
    args.script.retain(|w| w != "--json");
    args.json |= args.script.len() != before;
    let before = args.script.len();
    args.script.retain(|w| w != "--report-writes");
    args.report_writes |= args.script.len() != before;
    let steps = match parse_script(&args.script) {
        Ok(steps) => steps,
        Err(ScriptError::Help(text)) => {
            cli::print_stdout(text.trim_end());
            return ExitCode::SUCCESS;
        }
        Err(ScriptError::Bad(msg)) => {
            eprintln!("{TOOL}: error: {msg} (try '{TOOL} --help')");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    nvme_tools::init_logging();
    match run::run(
        &args.device.to_string(),
        args.nsid,
        &steps,
        args.report_writes,
    ) {
        Ok(report) => {
            if args.json {
                cli::print_json(&report);
            } else {
                cli::print_stdout(&report.human());
            }
            ExitCode::SUCCESS
        }
        Err(e) => cli::report_error(TOOL, &e),
    }
}
