//! `nvme-identify`: show an NVMe controller's identity and namespaces.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use nvme::transport::tcp::TcpName;
use nvme::DeviceName;
use nvme_tools::cli;
use nvme_tools::identify::{discover, human, run, IdentifyArgs};

const TOOL: &str = "nvme-identify";

fn main() -> ExitCode {
    let args: IdentifyArgs = cli::parse_args(TOOL);
    nvme_tools::init_logging();
    if let DeviceName::Tcp(text) = &args.device {
        // A name without a subsystem NQN is a discovery controller.
        match TcpName::parse(text) {
            Ok(name) if name.subnqn.is_none() => {
                return match discover::run(&name) {
                    Ok(report) => {
                        if args.json {
                            cli::print_json(&report);
                        } else {
                            cli::print_stdout(discover::render(&report).trim_end());
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => cli::report_error(TOOL, &e),
                };
            }
            Ok(_) => {}
            Err(e) => return cli::report_error(TOOL, &e),
        }
    }
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
