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
    // A tcp:// name without a subsystem NQN is a discovery controller.
    let discovery = match &args.device {
        DeviceName::Tcp(text) => match TcpName::parse(text) {
            Ok(name) => name.subnqn.is_none().then_some(name),
            Err(e) => return cli::report_error(TOOL, &e),
        },
        _ => None,
    };
    let printed = match discovery {
        Some(name) => discover::run(&name).map(|r| print(args.json, &r, || discover::render(&r))),
        None => {
            run::run(&args.device.to_string()).map(|r| print(args.json, &r, || human::render(&r)))
        }
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::report_error(TOOL, &e),
    }
}

/// Prints `report` as JSON, or as the text `render` makes.
fn print<T: serde::Serialize>(json: bool, report: &T, render: impl FnOnce() -> String) {
    if json {
        cli::print_json(report);
    } else {
        cli::print_stdout(render().trim_end());
    }
}
