//! `nvme-zns`: report and manage the zones of a zoned namespace.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use nvme_tools::cli;
use nvme_tools::zns::run::Session;
use nvme_tools::zns::{model, parse_command_line, ZnsCommand};

const TOOL: &str = "nvme-zns";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (args, commands) = match parse_command_line(&argv) {
        Ok(parsed) => parsed,
        Err(e) => cli::exit_clap_error(TOOL, e),
    };
    nvme_tools::init_logging();
    let device = args.device.to_string();
    let mut session = match Session::open(&device, args.nsid) {
        Ok(s) => s,
        Err(e) => return cli::report_error(TOOL, &e),
    };
    for command in &commands {
        let result = match command {
            ZnsCommand::Report(report) => session.report(report).map(|r| {
                if report.json {
                    cli::print_json(&r.json());
                } else {
                    cli::print_stdout(model::render(r.nr_zones, &r.zones).trim_end());
                }
            }),
            command => match command.action() {
                Some((action, target)) => session
                    .action(action, target.zone)
                    .map(|line| cli::print_stdout(&line)),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            return cli::report_error(TOOL, &e);
        }
    }
    ExitCode::SUCCESS
}
