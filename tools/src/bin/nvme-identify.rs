//! `nvme-identify`: show an NVMe controller's identity and namespaces.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use nvme_tools::cli;
use nvme_tools::identify::{human, run, IdentifyArgs};

const TOOL: &str = "nvme-identify";

fn main() -> ExitCode {
    let args: IdentifyArgs = cli::parse_args(TOOL);
    nvme_tools::init_logging();
    match run::run(&args.device.to_string()) {
        Ok(report) => {
            if args.json {
                cli::print_json(&report);
            } else {
                cli::print_stdout(human::render(&report).trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => cli::report_error(TOOL, &e),
    }
}
